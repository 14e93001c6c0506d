import assert from 'node:assert/strict';
import net from 'node:net';
import { join } from 'node:path';
import { rawRequest, request, type TestGateway } from '../support/harness.js';
import { gatewayYaml, hubUrl, killConnector, startConnector, startHubGateway, token, waitChannels, type ConnectorProcess } from './support.js';

/**
 * An app (or a compromised connector's path to it) that answers one request
 * with two responses must not get the second one delivered to the next client
 * on a kept-alive upstream connection: that would hand one user's request
 * another answer, possibly crafted. Checked for direct apps (undici) and
 * tunnelled apps (http.Agent over the CONNECT stream), one connection each.
 */
describe('upstream keep-alive: an unsolicited extra response never reaches the next client', function () {
  this.timeout(30_000);
  let gw: TestGateway;
  let conn: ConnectorProcess;
  let backend: net.Server;
  /** path -> the number of the upstream connection it arrived on */
  const connOf = new Map<string, number>();
  let connections = 0;

  before(async () => {
    backend = net.createServer((s) => {
      const id = ++connections;
      let buf = '';
      s.on('data', (d) => {
        buf += d.toString('latin1');
        let end: number;
        while ((end = buf.indexOf('\r\n\r\n')) >= 0) {
          const path = buf.slice(0, end).split(' ')[1]!;
          buf = buf.slice(end + 4);
          connOf.set(path, id);
          const body = `answer for ${path}`;
          // /status/NNN answers with that status, whatever it is (an app that speaks broken HTTP)
          const status = /^\/status\/(\d{3})/.exec(path)?.[1] ?? '200';
          const own = `HTTP/1.1 ${status} ${status === '200' ? 'OK' : 'Odd'}\r\nX-Correlation-Id: from-app\r\nContent-Length: ${body.length}\r\n\r\n${body}`;
          // requests under /two/ get a second, unsolicited response right behind the first
          const extra = path.startsWith('/two/') ? 'HTTP/1.1 200 OK\r\nContent-Length: 8\r\nX-Injected: yes\r\n\r\ninjected' : '';
          s.write(own + extra);
        }
      });
      s.on('error', () => undefined);
    });
    await new Promise<void>((r) => backend.listen(0, '127.0.0.1', r));
    const url = `http://127.0.0.1:${(backend.address() as net.AddressInfo).port}`;
    gw = await startHubGateway(
      gatewayYaml(
        { url },
        '',
        `  - name: Direct
    externalUrl: http://direct.test/
    internalUrl: ${url}/
    preAuth: passthrough
    websockets: true
`,
      ),
    );
    conn = startConnector(join(gw.dir, 'conn'), { gateway: hubUrl(gw), token: token(gw), args: ['--channels', '1'] });
    await waitChannels(gw, 1);
  });
  after(async () => {
    await killConnector(conn);
    await gw.stop();
    backend.close();
  });

  for (const host of ['app.test', 'direct.test']) {
    it(`${host === 'app.test' ? 'through a connector' : 'direct'}: each client gets the answer to its own request`, async () => {
      const first = await request(`${gw.url}/two/${host}`, { headers: { host } });
      assert.equal(first.status, 200);
      assert.equal(first.body, `answer for /two/${host}`);
      for (let i = 0; i < 3; i++) {
        const next = await request(`${gw.url}/next/${host}/${i}`, { headers: { host } });
        assert.equal(next.headers['x-injected'], undefined, `request ${i} after the double answer got the injected response`);
        assert.equal(next.status, 200);
        assert.equal(next.body, `answer for /next/${host}/${i}`);
      }
      // keep-alive is on (the later requests share one upstream connection), so the extra
      // response had a connection to wait on; the one that carried it was not reused
      const later = [0, 1, 2].map((i) => connOf.get(`/next/${host}/${i}`));
      assert.equal(new Set(later).size, 1, `later requests on connections ${later.join(', ')}`);
      assert.notEqual(later[0], connOf.get(`/two/${host}`));
    });

    it(`${host === 'app.test' ? 'through a connector' : 'direct'}: a status outside 200-599 is 502, not relayed, also in answer to a WebSocket upgrade`, async () => {
      for (const code of ['600', '099', '999']) {
        const res = await request(`${gw.url}/status/${code}`, { headers: { host, accept: 'application/json' } });
        assert.equal(res.status, 502, `status ${code}`);
        assert.doesNotMatch(res.body, /answer for/);
        const up = await rawRequest(gw.port, `GET /status/${code} HTTP/1.1\r\nHost: ${host}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n`);
        assert.match(up, /^HTTP\/1\.1 502 /, `upgrade answered ${code}: ${up.split('\r\n')[0]}`);
      }
      const ok = await request(`${gw.url}/status/599`, { headers: { host } });
      assert.equal(ok.status, 599, 'the edge of the range is an answer like any other');
      assert.match(String(ok.headers['x-correlation-id']), /^[0-9a-f-]{36}$/, "the gateway's correlation id, not the app's");
      const refusedUpgrade = await rawRequest(gw.port, `GET /next/no-ws HTTP/1.1\r\nHost: ${host}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n`);
      assert.match(refusedUpgrade, /^HTTP\/1\.1 200 /);
      assert.match(refusedUpgrade, /\r\nx-correlation-id: [0-9a-f-]{36}\r\n/i);
      assert.doesNotMatch(refusedUpgrade, /from-app/);
    });
  }
});
