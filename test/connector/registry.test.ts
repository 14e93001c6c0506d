import assert from 'node:assert/strict';
import { ChannelRegistry } from '../../src/connector/registry.js';

// The choice of a channel is pure logic; the processes around it are tested in failover.test.ts.
describe('channel registry', () => {
  it('round-robin groups alternate between connectors for new connections', async () => {
    const reg = new ChannelRegistry();
    reg.balancing.set('g', 'round-robin');
    const session = { closed: false, destroyed: false } as never;
    const mk = (id: string, inflight: number) => ({ key: id, connectorId: id, group: 'g', version: '1', address: '-', transport: 'h2' as const, certExpiry: new Date(Date.now() + 3600_000), session, openedAt: 0, inflight, streams: inflight, lastSeen: 0, ready: true, draining: false, missedPings: 0, terminate() {} });
    const a = mk('a', 5);
    const b = mk('b', 0);
    reg.add(a);
    reg.add(b);
    assert.deepEqual([reg.pick('g'), reg.pick('g'), reg.pick('g'), reg.pick('g')].map((c) => c!.connectorId), ['a', 'b', 'a', 'b']);
    reg.balancing.set('g', 'least-inflight');
    assert.equal(reg.pick('g')!.connectorId, 'b');
    // a retry avoids the connector that failed; a draining or late-pinging one is not chosen while others are healthy
    assert.equal(reg.pick('g', 'b')!.connectorId, 'a');
    b.missedPings = 1;
    assert.equal(reg.pick('g')!.connectorId, 'a');
    a.draining = true;
    assert.equal(reg.pick('g')!.connectorId, 'b', 'a channel that missed one ping is still better than none');
    b.certExpiry = new Date(Date.now() - 1000);
    assert.equal(reg.pick('g'), undefined, 'nor is one whose certificate expired');
    b.certExpiry = new Date(Date.now() + 3600_000);
    b.ready = false;
    assert.equal(reg.pick('g'), undefined);
  });
});
