/**
 * The admin listener answers every request with a status, over raw sockets:
 * it serves GET and HEAD, and Node closed a CONNECT there without a word.
 */
import assert from 'node:assert/strict';
import { rawRequest, request, startGateway, type TestGateway } from '../support/harness.js';

/** Every status line, also one right after the previous answer's body. */
const statusLines = (raw: string) => raw.match(/HTTP\/1\.1 \d{3} [^\r\n]*/g) ?? [];
const header = (raw: string, name: string) => new RegExp(`\r\n${name}: ([^\r\n]*)`, 'i').exec(raw)?.[1];

describe('admin listener', function () {
  this.timeout(20_000);
  let gw: TestGateway;
  let port = 0;
  before(async () => {
    gw = await startGateway(`gateway:
  publicUrl: http://localhost
  listen: { http: 127.0.0.1:0 }
  admin: { listen: 127.0.0.1:0 }
apps: []
`);
    port = Number(new URL(gw.adminUrl!).port);
  });
  after(() => gw?.stop());

  it('CONNECT: 405 with Allow: GET, HEAD, then the connection is closed', async () => {
    for (const target of ['/metrics', '127.0.0.1:443', 'example.test:80']) {
      const t0 = Date.now();
      const raw = await rawRequest(port, `CONNECT ${target} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n\r\n`, 3000);
      assert.deepEqual(statusLines(raw), ['HTTP/1.1 405 Method Not Allowed'], `CONNECT ${target}: ${JSON.stringify(raw)}`);
      assert.equal(header(raw, 'allow'), 'GET, HEAD');
      assert.ok(Date.now() - t0 < 2000, 'closed at once, not left to the client');
    }
  });

  it('a CONNECT pipelined behind a GET: the GET is answered first, then the 405', async () => {
    const raw = await rawRequest(port, `GET /healthz HTTP/1.1\r\nHost: a\r\n\r\nCONNECT /metrics HTTP/1.1\r\nHost: a\r\n\r\n`, 3000);
    assert.deepEqual(statusLines(raw), ['HTTP/1.1 200 OK', 'HTTP/1.1 405 Method Not Allowed'], JSON.stringify(raw));
  });

  it('other methods: 405 with Allow: GET, HEAD; a method Node cannot parse: 400', async () => {
    for (const method of ['POST', 'PUT', 'DELETE', 'OPTIONS', 'PATCH', 'PROPFIND']) {
      const raw = await rawRequest(port, `${method} /metrics HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\nConnection: close\r\n\r\n`, 3000);
      assert.deepEqual(statusLines(raw), ['HTTP/1.1 405 Method Not Allowed'], `${method}: ${JSON.stringify(raw)}`);
      assert.equal(header(raw, 'allow'), 'GET, HEAD');
    }
    const raw = await rawRequest(port, `FROB /metrics HTTP/1.1\r\nHost: a\r\n\r\n`, 3000);
    assert.deepEqual(statusLines(raw), ['HTTP/1.1 400 Bad Request'], JSON.stringify(raw));
  });

  it('GET and HEAD are served as before, and an unknown path is 404', async () => {
    assert.equal((await request(`${gw.adminUrl}/healthz`)).status, 200);
    assert.equal((await request(`${gw.adminUrl}/metrics`, { method: 'HEAD' })).status, 200);
    assert.equal((await request(`${gw.adminUrl}/nope`)).status, 404);
  });
});
