import assert from 'node:assert/strict';
import http from 'node:http';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { eventually, sleep, startEchoBackend, type EchoBackend, type TestGateway } from '../support/harness.js';
import { gatewayYaml, hubUrl, killConnector, startConnector, startHubGateway, token, waitChannels, type ConnectorProcess } from './support.js';

/**
 * A reload that changes what a group may reach pushes the new target list to its connectors,
 * and the gateway sends requests for the new targets at once: the connector must not refuse
 * them while the list is still on its way.
 */
describe('connector target list across reloads under load', function () {
  this.timeout(60_000);
  let a: EchoBackend;
  let b: EchoBackend;
  let gw: TestGateway;
  let conn: ConnectorProcess;

  before(async () => {
    a = await startEchoBackend();
    b = await startEchoBackend();
    gw = await startHubGateway(gatewayYaml(a));
    conn = startConnector(join(gw.dir, 'conn'), { gateway: hubUrl(gw), token: token(gw) });
    await waitChannels(gw, 2);
  });
  after(async () => {
    await killConnector(conn);
    await gw.stop();
    await a.close();
    await b.close();
  });

  it('switching an app\'s internalUrl between two apps 8 times while clients keep requesting: no request fails, and each switch takes effect', async () => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 10 });
    let running = true;
    const failed: string[] = [];
    let total = 0;
    const worker = async () => {
      while (running) {
        const status = await new Promise<number | string>((resolve) => {
          const req = http.get(`${gw.url}/n`, { agent, headers: { host: 'app.test' } }, (res) => {
            res.resume();
            res.on('end', () => resolve(res.statusCode ?? 0));
          });
          req.on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? 'error'));
        });
        total++;
        if (status !== 200) failed.push(String(status));
      }
    };
    const workers = Array.from({ length: 10 }, worker);
    try {
      for (let i = 1; i <= 8; i++) {
        const to = i % 2 ? b : a;
        const before = to.received.length;
        writeFileSync(gw.configFile, gatewayYaml(to));
        assert.equal(await gw.server.reload('test'), 'success');
        // the switch is visible: the new app gets requests
        await eventually(() => to.received.length > before + 20, 5000);
        await sleep(100);
      }
    } finally {
      running = false;
      await Promise.all(workers);
      agent.destroy();
    }
    assert.ok(total > 200, `only ${total} requests were made`);
    assert.deepEqual(failed, [], `${failed.length} of ${total} requests failed`);
  });

  it('channels closed while a new target list is on its way: the connector stays up and comes back (it exited on an exception)', async () => {
    for (let i = 0; i < 3; i++) {
      writeFileSync(gw.configFile, gatewayYaml(i % 2 ? a : b));
      assert.equal(await gw.server.reload('test'), 'success');
      for (const ch of gw.server.connectorHub!.registry.all()) ch.terminate();
      await waitChannels(gw, 2);
    }
    const exited = await Promise.race([conn.exited, sleep(300).then(() => 'running')]);
    assert.equal(exited, 'running');
    assert.deepEqual(conn.logs().filter((l) => (l.level as number) >= 50), []);
  });

  it('a request waiting for its connector while a reload moves its app elsewhere is served when the connector is back (by the app it was routed to), and the next goes to the new one', async () => {
    const get = () => new Promise<number>((resolve, reject) => http.get(`${gw.url}/w`, { headers: { host: 'app.test' } }, (res) => (res.resume(), resolve(res.statusCode ?? 0))).on('error', reject));
    writeFileSync(gw.configFile, gatewayYaml(a));
    await gw.server.reload('test');
    await killConnector(conn, 'SIGTERM');
    await eventually(() => gw.server.connectorHub!.registry.all().length === 0);
    const [fromA, fromB] = [a.received.length, b.received.length];
    const waiting = get();
    await sleep(300);
    writeFileSync(gw.configFile, gatewayYaml(b));
    assert.equal(await gw.server.reload('test'), 'success');
    conn = startConnector(join(gw.dir, 'conn'));
    assert.equal(await waiting, 200);
    assert.equal(a.received.length, fromA + 1, 'the waiting request reached the app of its generation');
    assert.equal(await get(), 200);
    assert.equal(b.received.length, fromB + 1);
  });

  it("a group whose connector was away at a reload gets the list of a later reload that restores the one before: its apps are reached (502 'target not allowed' until the connector reconnected)", async () => {
    const second = `  - name: Second\n    externalUrl: http://second.test/\n    internalUrl: ${b.url}/\n    connectorGroup: g1\n    preAuth: passthrough\n`;
    const get = (host: string) => new Promise<number>((resolve, reject) => http.get(`${gw.url}/n`, { headers: { host } }, (res) => (res.resume(), resolve(res.statusCode ?? 0))).on('error', reject));
    // the group reaches a and b
    writeFileSync(gw.configFile, gatewayYaml(a, '', second));
    assert.equal(await gw.server.reload('test'), 'success');
    await eventually(async () => (await get('second.test')) === 200);
    // its only connector goes, and a reload takes b from the group while no channel is there
    await killConnector(conn, 'SIGTERM');
    await eventually(() => gw.server.connectorHub!.registry.all().length === 0);
    writeFileSync(gw.configFile, gatewayYaml(a));
    assert.equal(await gw.server.reload('test'), 'success');
    conn = startConnector(join(gw.dir, 'conn'));
    await waitChannels(gw, 2);
    assert.equal(await get('app.test'), 200);
    // b comes back: the group's list is what it was before the connector left
    writeFileSync(gw.configFile, gatewayYaml(a, '', second));
    assert.equal(await gw.server.reload('test'), 'success');
    await eventually(async () => (await get('second.test')) === 200, 3000);
    await sleep(300);
    assert.equal(await get('second.test'), 200);
  });
});
