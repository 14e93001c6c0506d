/**
 * The connector listing survives a gateway restart (knownConnectors.ts): a connector that went
 * away is still listed as inactive by the next gateway on the same stateDir, and active again once
 * it dials back. A saved listing that is not ours is set aside, with a warning, and changes
 * nothing else. Real gateways, a real connector process.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { eventually, freePort, request, startEchoBackend, tempDir, type EchoBackend, type TestGateway } from '../support/harness.js';
import { gatewayYaml, hubUrl, killConnector, startConnector, startHubGateway, token, waitChannels, type ConnectorProcess } from './support.js';

const listing = async (gw: TestGateway): Promise<Record<string, any>[]> => (await request(`${gw.adminUrl}/connectors`)).json().connectors;

describe('connector listing across gateway restarts', function () {
  this.timeout(60_000);
  let backend: EchoBackend;
  const gateways: TestGateway[] = [];
  const procs: ConnectorProcess[] = [];
  before(async () => {
    backend = await startEchoBackend();
  });
  after(async () => {
    for (const p of procs) await killConnector(p);
    for (const g of gateways) await g.stop().catch(() => undefined);
    await backend?.close();
  });
  const start = async (yaml: string, dir: string) => {
    const gw = await startHubGateway(yaml, dir);
    gateways.push(gw);
    return gw;
  };

  it('a connector that went away is listed as inactive by the next gateway, with its last seen time, and as live once it dials back', async () => {
    const dir = tempDir();
    // the same connector address across the restart, so the connector can find the second gateway
    const yaml = gatewayYaml(backend).replace('connectors:\n  listen: 127.0.0.1:0', `connectors:\n  listen: 127.0.0.1:${await freePort()}`);
    const first = await start(yaml, dir);
    const state = join(dir, 'conn');
    const conn = startConnector(state, { gateway: hubUrl(first), token: token(first) });
    procs.push(conn);
    const id = (await waitChannels(first, 2))[0].connectorId;
    await killConnector(conn);
    const gone = (await eventually(async () => {
      const l = await listing(first);
      return l.length === 1 && l[0].active === false ? l[0] : undefined;
    }, 10_000, 50))!;
    await first.stop();
    const file = join(dir, 'state', 'connectors', 'known.json');
    assert.equal(statSync(file).mode & 0o777, 0o600);

    const second = await start(yaml, dir);
    const after = await listing(second);
    assert.deepEqual(after, [{ ...gone }], 'the same row as before the restart');
    assert.deepEqual(
      after.map((c) => [c.id, c.group, c.version, c.transport, c.channels, c.inflight, c.active]),
      [[id, 'g1', '0.1.0', 'h2', 0, 0, false]],
    );

    const back = startConnector(state);
    procs.push(back);
    await waitChannels(second, 2);
    const live = await listing(second);
    assert.deepEqual(live.map((c) => [c.id, c.channels, c.active]), [[id, 2, true]]);
    assert.ok(Date.parse(live[0].lastSeen) > Date.parse(gone.lastSeen));
    // and the file follows within a second or so: this connector live, last seen now
    await eventually(() => {
      const saved = JSON.parse(readFileSync(file, 'utf8')).connectors;
      return saved.length === 1 && saved[0].id === id && Date.parse(saved[0].lastSeen) > Date.parse(gone.lastSeen);
    }, 5000, 100);
  });

  it('a gateway stopped while its connector is live lists it as inactive after the restart', async () => {
    const dir = tempDir();
    const yaml = gatewayYaml(backend);
    const first = await start(yaml, dir);
    const conn = startConnector(join(dir, 'conn'), { gateway: hubUrl(first), token: token(first) });
    procs.push(conn);
    const id = (await waitChannels(first, 2))[0].connectorId;
    const stoppedAt = Date.now();
    await first.stop();
    // (the second gateway has another connector address: this connector cannot find it)
    const second = await start(yaml, dir);
    const l = await listing(second);
    assert.deepEqual(l.map((c) => [c.id, c.group, c.active]), [[id, 'g1', false]]);
    assert.ok(Date.parse(l[0].lastSeen) <= stoppedAt, `${l[0].lastSeen} after the stop at ${new Date(stoppedAt).toISOString()}`);
    await killConnector(conn);
  });

  it('leaves out what is older than 10 days or is not a connector, and sets aside a file that is not a listing, serving as before', async () => {
    const now = Date.now();
    const row = (id: string, ageMs: number) => ({ id, group: 'g1', version: '0.1.0', address: '10.0.0.9:50000', transport: 'websocket', lastSeen: new Date(now - ageMs).toISOString(), certExpiry: new Date(now + 86_400_000).toISOString() });

    const dir = tempDir();
    mkdirSync(join(dir, 'state', 'connectors'), { recursive: true });
    const file = join(dir, 'state', 'connectors', 'known.json');
    writeFileSync(file, JSON.stringify({ format: 1, connectors: [row('recent', 3600_000), row('old', 11 * 86_400_000), { ...row('bad', 0), transport: 'carrier-pigeon' }, 'nonsense'] }));
    const gw = await start(gatewayYaml(backend), dir);
    assert.deepEqual((await listing(gw)).map((c) => [c.id, c.active, c.address, c.transport]), [['recent', false, '10.0.0.9:50000', 'websocket']]);
    assert.ok(gw.logs.some((l) => l.skipped === 2 && /not connectors were left out/.test(String(l.msg))), 'the two that are not connectors are logged');
    await gw.stop();

    const broken = tempDir();
    mkdirSync(join(broken, 'state', 'connectors'), { recursive: true });
    const brokenFile = join(broken, 'state', 'connectors', 'known.json');
    writeFileSync(brokenFile, '{"format": 1, "connectors": [');
    const gw2 = await start(gatewayYaml(backend), broken);
    assert.deepEqual(await listing(gw2), []);
    const warned = gw2.logs.find((l) => /saved connector listing is not valid JSON/.test(String(l.msg)));
    assert.ok(warned, 'a warning names the file');
    assert.equal(warned!.file, brokenFile);
    assert.ok(existsSync(`${brokenFile}.unreadable`), 'kept beside for a look');
    await gw2.stop();

    // one far larger than 5,000 rows is not read at all
    const huge = tempDir();
    mkdirSync(join(huge, 'state', 'connectors'), { recursive: true });
    writeFileSync(join(huge, 'state', 'connectors', 'known.json'), JSON.stringify({ format: 1, connectors: Array.from({ length: 60_000 }, (_, i) => row(`c${i}`, 1000)) }));
    const gw3 = await start(gatewayYaml(backend), huge);
    assert.deepEqual(await listing(gw3), []);
    assert.ok(gw3.logs.some((l) => l.reason === 'larger than 8 MiB'), 'the size is the reason given');
    // the gateway serves as before: a connector still enrolls and carries requests
    const conn = startConnector(join(huge, 'conn'), { gateway: hubUrl(gw3), token: token(gw3) });
    procs.push(conn);
    await waitChannels(gw3, 2);
    assert.equal((await request(`${gw3.url}/`, { headers: { host: 'app.test' } })).status, 200);
  });
});
