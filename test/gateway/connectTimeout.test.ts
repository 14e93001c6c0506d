/**
 * backendTimeout bounds the whole wait for an app, connecting included: an
 * https app that accepts the TCP connection and never answers the TLS
 * handshake got its 504 after the connect timeout of the layer below (10 s),
 * whatever backendTimeout said. Direct and through a connector.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { join } from 'node:path';
import { request } from '../support/harness.js';
import { gatewayYaml, hubUrl, killConnector, startConnector, startHubGateway, token, waitChannels, type ConnectorProcess } from '../connector/support.js';
import type { TestGateway } from '../support/harness.js';

describe('upstream: backendTimeout covers connecting to the app', function () {
  this.timeout(30_000);
  let silent: net.Server;
  let gw: TestGateway;
  let conn: ConnectorProcess;
  const held = new Set<net.Socket>();

  before(async () => {
    // takes connections and says nothing: a TLS handshake to it never completes
    silent = net.createServer((s) => {
      held.add(s);
      s.on('error', () => undefined);
      s.on('close', () => held.delete(s));
    });
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    const url = `https://127.0.0.1:${(silent.address() as net.AddressInfo).port}`;
    gw = await startHubGateway(
      gatewayYaml(
        { url: 'http://127.0.0.1:1' },
        '',
        `  - name: Direct
    externalUrl: http://direct.test/
    internalUrl: ${url}/
    preAuth: passthrough
    backendTimeout: 1s
  - name: Tunnelled
    externalUrl: http://tunnelled.test/
    internalUrl: ${url}/
    connectorGroup: g1
    preAuth: passthrough
    backendTimeout: 1s
`,
      ),
    );
    conn = startConnector(join(gw.dir, 'conn'), { gateway: hubUrl(gw), token: token(gw), args: ['--channels', '1'] });
    await waitChannels(gw, 1);
  });
  after(async () => {
    await killConnector(conn);
    await gw?.stop();
    for (const s of held) s.destroy();
    await new Promise((r) => silent.close(r));
  });

  for (const [via, host] of [['direct', 'direct.test'], ['through a connector', 'tunnelled.test']] as const) {
    it(`${via}: a TLS handshake the app never answers is a 504 after backendTimeout (1 s), not after 10 s`, async () => {
      const t0 = Date.now();
      const res = await request(`${gw.url}/`, { headers: { host, accept: 'application/json' } });
      const ms = Date.now() - t0;
      assert.equal(res.status, 504, res.body);
      assert.ok(ms >= 900 && ms < 3000, `answered after ${ms} ms`);
    });
  }
});
