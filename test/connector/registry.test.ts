import assert from 'node:assert/strict';
import { ChannelRegistry } from '../../src/connector/registry.js';
import { sleep } from '../support/harness.js';

// The choice of a channel is pure logic; the processes around it are tested in failover.test.ts.
describe('channel registry', () => {
  it('round-robin groups alternate between connectors for new connections', async () => {
    const reg = new ChannelRegistry();
    reg.balancing.set('g', 'round-robin');
    const session = { closed: false, destroyed: false } as never;
    const mk = (id: string, inflight: number) => ({ key: id, connectorId: id, group: 'g', version: '1', address: '-', transport: 'h2' as const, certExpiry: new Date(Date.now() + 3600_000), session, openedAt: 0, inflight, streams: inflight, windows: undefined as never, lastSeen: 0, ready: true, draining: false, missedPings: 0, terminate() {} });
    const a = mk('a', 5);
    const b = mk('b', 0);
    reg.add(a);
    reg.add(b);
    assert.deepEqual([reg.pick('g'), reg.pick('g'), reg.pick('g'), reg.pick('g')].map((c) => c!.connectorId), ['a', 'b', 'a', 'b']);
    reg.balancing.set('g', 'least-inflight');
    assert.equal(reg.pick('g')!.connectorId, 'b');
    assert.equal(reg.pick('g')!.connectorId, 'b', 'the least loaded, whoever\'s turn it is');
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

  it('a connector draining on one channel gets no work on its others (it drains them all; their GOAWAY is on its way)', () => {
    const reg = new ChannelRegistry();
    const session = { closed: false, destroyed: false } as never;
    const mk = (key: string, id: string) => ({ key, connectorId: id, group: 'g', version: '1', address: '-', transport: 'h2' as const, certExpiry: new Date(Date.now() + 3600_000), session, openedAt: 0, inflight: 0, streams: 0, windows: undefined as never, lastSeen: 0, ready: true, draining: false, missedPings: 0, terminate() {} });
    const a1 = mk('a1', 'a');
    const a2 = mk('a2', 'a');
    const b1 = mk('b1', 'b');
    for (const c of [a1, a2, b1]) reg.add(c);
    a1.draining = true;
    for (let i = 0; i < 4; i++) assert.equal(reg.pick('g')?.key, 'b1');
    assert.equal(reg.pick('g', 'b')?.key, 'b1', 'even when b is to be avoided: a is leaving');
    b1.draining = true;
    assert.equal(reg.pick('g'), undefined);
    assert.equal(reg.expectsBack('g'), true, 'both are still connected: a request waits for a connector to come');
  });

  it('the choice is between connectors, then between a connector\'s channels; equals take turns', () => {
    const reg = new ChannelRegistry();
    const session = { closed: false, destroyed: false } as never;
    const mk = (key: string, id: string, inflight = 0) => ({ key, connectorId: id, group: 'g', version: '1', address: '-', transport: 'h2' as const, certExpiry: new Date(Date.now() + 3600_000), session, openedAt: 0, inflight, streams: inflight, windows: undefined as never, lastSeen: 0, ready: true, draining: false, missedPings: 0, terminate() {} });
    // a has three channels, b one: b still gets every other request
    const a1 = mk('a1', 'a');
    const a2 = mk('a2', 'a');
    const a3 = mk('a3', 'a');
    const b1 = mk('b1', 'b');
    for (const c of [a1, a2, a3, b1]) reg.add(c);
    for (const mode of ['round-robin', 'least-inflight'] as const) {
      reg.balancing.set('g', mode);
      const seq = Array.from({ length: 6 }, () => reg.pick('g')!.connectorId);
      assert.equal(seq.filter((c) => c === 'b').length, 3, `${mode}: ${seq.join(' ')}`);
    }
    // least-inflight: a's load is the sum of its channels; within a, the least loaded channel
    reg.balancing.set('g', 'least-inflight');
    a1.inflight = 1;
    b1.inflight = 2;
    assert.equal(reg.pick('g')!.key, 'a2');
    a2.inflight = 1;
    a3.inflight = 1;
    assert.equal(reg.pick('g')!.key, 'b1', 'a has 3 in flight, b 2');
  });

  it('keeps a connector whose last channel closed as inactive until it is back, 10 days pass, or more than the cap went', () => {
    const day = 24 * 3600_000;
    const reg = new ChannelRegistry({ ms: 10 * day, max: 2 });
    const session = { closed: false, destroyed: false } as never;
    const mk = (key: string, id: string, lastSeen: number) => ({ key, connectorId: id, group: 'g', version: '1', address: '-', transport: 'h2' as const, certExpiry: new Date(Date.now() + 3600_000), session, openedAt: 0, inflight: 1, streams: 1, windows: undefined as never, lastSeen, ready: true, draining: true, missedPings: 0, terminate() {} });
    const t0 = Date.parse('2026-01-01T00:00:00Z');
    const a1 = mk('a1', 'a', t0 + 5000);
    const a2 = mk('a2', 'a', t0);
    for (const c of [a1, a2]) reg.add(c);
    reg.remove(a1);
    reg.remove(a1);
    assert.deepEqual(reg.summary(t0).map((c) => [c.id, c.channels, c.active]), [['a', 1, true]]);
    reg.remove(a2);
    const [gone] = reg.summary(t0);
    assert.deepEqual([gone.channels, gone.inflight, gone.active, gone.draining, gone.lastSeen], [0, 0, false, false, new Date(t0 + 5000).toISOString()], 'the latest of its channels');
    assert.equal(reg.summary(t0 + 10 * day).length, 1);
    assert.deepEqual(reg.summary(t0 + 10 * day + 5000), [], 'forgotten 10 days after it was last seen');

    reg.add(a2);
    reg.remove(a2);
    reg.add(a1);
    assert.deepEqual(reg.summary(t0).map((c) => [c.id, c.active]), [['a', true]], 'back: one live row');
    reg.remove(a1);
    for (const id of ['b', 'c']) {
      const ch = mk(id, id, t0);
      reg.add(ch);
      reg.remove(ch);
    }
    assert.deepEqual(reg.summary(t0).map((c) => c.id), ['b', 'c'], 'the longest gone forgotten first');
  });

  it('a request for a group expected back waits for its first usable channel; a group not expected back is answered at once', async () => {
    const session = { closed: false, destroyed: false } as never;
    const hour = new Date(Date.now() + 3600_000).toISOString();
    const mk = (id: string, ready: boolean) => ({ key: id, connectorId: id, group: 'g', version: '1', address: '-', transport: 'h2' as const, certExpiry: new Date(Date.now() + 3600_000), session, openedAt: 0, inflight: 0, streams: 0, windows: undefined as never, lastSeen: Date.now(), ready, draining: false, missedPings: 0, terminate() {} });
    const gone = (id: string, ago: number, certExpiry = hour) => ({ id, group: 'g', version: '1', address: '-', transport: 'h2' as const, channels: 0, inflight: 0, lastSeen: new Date(Date.now() - ago).toISOString(), certExpiry, draining: false, active: false });

    // the listing of the last run (a gateway restart): seen 2 s ago
    const reg = new ChannelRegistry();
    reg.restore([gone('a', 2000)]);
    assert.equal(reg.expectsBack('g'), true);
    const waited = reg.pickOrWait('g', undefined, 5000);
    assert.ok(waited instanceof Promise);
    const a = mk('a', false);
    reg.add(a);
    await sleep(20);
    a.ready = true; // its targets acknowledged
    reg.channelReady('g');
    assert.equal((await waited)?.connectorId, 'a');
    assert.equal(reg.pickOrWait('g', undefined, 5000), a, 'a usable channel is picked at once');

    const t0 = Date.now();
    assert.equal(await new ChannelRegistry().pickOrWait('g', undefined, 5000), undefined, 'a group that never had a connector');
    const lastRun = (summary: ReturnType<typeof gone>) => {
      const r = new ChannelRegistry();
      r.restore([summary]);
      r.mayReturn = (id) => id !== 'revoked';
      return r;
    };
    for (const [what, r] of [
      ['last seen 2 min ago', lastRun(gone('old', 120_000))],
      ['its certificate ran out', lastRun(gone('expired', 1000, new Date(Date.now() - 1).toISOString()))],
      ['revoked', lastRun(gone('revoked', 1000))],
    ] as const) {
      assert.equal(r.expectsBack('g'), false, what);
      assert.equal(await r.pickOrWait('g', undefined, 5000), undefined, what);
    }
    assert.equal(lastRun(gone('recent', 1000)).expectsBack('g'), true, 'the same, seen a second ago and valid');
    assert.ok(Date.now() - t0 < 100, 'answered at once');

    // expected back but not back in time: undefined after the wait, and the waiter is gone
    const slow = new ChannelRegistry();
    slow.restore([gone('b', 1000)]);
    const t1 = Date.now();
    assert.equal(await slow.pickOrWait('g', undefined, 300), undefined);
    assert.ok(Date.now() - t1 >= 290);
    slow.channelReady('g'); // (nothing left to call)
  });
});
