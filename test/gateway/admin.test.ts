/**
 * The admin listener answers every request with a status, over raw sockets:
 * it serves GET and HEAD, and Node closed a CONNECT there without a word.
 */
import assert from 'node:assert/strict';
import { lookup } from 'node:dns/promises';
import { createServer, type AddressInfo } from 'node:net';
import { hostname } from 'node:os';
import { rawRequest, request, startGateway, type TestGateway } from '../support/harness.js';
import { runCli } from '../connector/support.js';

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
    const raw = await rawRequest(port, `GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\nCONNECT /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`, 3000);
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

  it('a gateway without an https listener shows no certificate end date on /metrics (its 0, an end in 1970, fired every expiry alert)', async () => {
    const metrics = await request(`${gw.adminUrl}/metrics`);
    assert.equal(metrics.status, 200);
    assert.doesNotMatch(metrics.body, /drawbridge_tls_certificate_expiry_timestamp_seconds/);
  });

  it('GET and HEAD are served as before, and an unknown path is 404', async () => {
    assert.equal((await request(`${gw.adminUrl}/healthz`)).status, 200);
    assert.equal((await request(`${gw.adminUrl}/metrics`, { method: 'HEAD' })).status, 200);
    assert.equal((await request(`${gw.adminUrl}/nope`)).status, 404);
  });

  it('a Host that is a name of somebody else\'s (DNS rebinding from a browser): 421 on every path, nothing read', async () => {
    for (const host of ['attacker.example', `attacker.example:${port}`, 'ATTACKER.example', 'localhost.attacker.example', '127.0.0.1.attacker.example', '']) {
      for (const path of ['/metrics', '/connectors', '/readyz', '/healthz', '/nope']) {
        const res = await request(`${gw.adminUrl}${path}`, { headers: { host } });
        assert.equal(res.status, 421, `Host ${JSON.stringify(host)} ${path}: ${res.status}`);
        assert.match(String(res.headers['content-type']), /application\/json/);
        assert.match(res.json().error, /misdirected request/);
        assert.doesNotMatch(res.body, /drawbridge_|connectors"|generation/);
      }
    }
  });

  it('a Host that is an IP address, localhost or without a port is served', async () => {
    for (const host of [`127.0.0.1:${port}`, '127.0.0.1', `localhost:${port}`, 'LocalHost', `[::1]:${port}`, '[::1]', '10.1.2.3:9090']) {
      const res = await request(`${gw.adminUrl}/metrics`, { headers: { host } });
      assert.equal(res.status, 200, `Host ${JSON.stringify(host)}`);
      assert.match(res.body, /drawbridge_config_generation/);
    }
    // An absolute-form target's host is the one asked for, whatever Host says (RFC 9112 3.2.2).
    const absolute = (target: string) => rawRequest(port, `GET ${target} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nConnection: close\r\n\r\n`, 3000);
    assert.deepEqual(statusLines(await absolute('http://attacker.example/metrics')), ['HTTP/1.1 421 Misdirected Request']);
    assert.deepEqual(statusLines(await absolute('http://u@attacker.example/metrics')), ['HTTP/1.1 421 Misdirected Request']);
    assert.deepEqual(statusLines(await absolute(`http://127.0.0.1:${port}/metrics`)), ['HTTP/1.1 200 OK']);
    // two Host headers: Node reads the first, a proxy in front may have checked the last
    const twoHosts = await rawRequest(port, `GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nHost: attacker.example\r\nConnection: close\r\n\r\n`, 3000);
    assert.deepEqual(statusLines(twoHosts), ['HTTP/1.1 400 Bad Request']);
    assert.doesNotMatch(twoHosts, /drawbridge_config_generation/);
    // HTTP/1.0 without Host is no browser
    const raw = await rawRequest(port, 'GET /healthz HTTP/1.0\r\n\r\n', 3000);
    assert.deepEqual(statusLines(raw), ['HTTP/1.1 200 OK'], JSON.stringify(raw));
  });

  it('a listener on a host name answers to that name, and `drawbridge connectors` reaches it', async function () {
    const name = hostname();
    const resolved = await lookup(name, { family: 4 }).catch(() => undefined);
    if (resolved?.address !== '127.0.0.1') return this.skip();
    const free = createServer();
    await new Promise<void>((r) => free.listen(0, '127.0.0.1', r));
    const adminPort = (free.address() as AddressInfo).port;
    await new Promise((r) => free.close(r));
    const named = await startGateway(`gateway:
  publicUrl: http://localhost
  listen: { http: 127.0.0.1:0 }
  admin: { listen: "${name}:${adminPort}" }
apps: []
`);
    try {
      assert.equal((await request(`http://127.0.0.1:${adminPort}/healthz`, { headers: { host: `${name.toUpperCase()}:${adminPort}` } })).status, 200);
      assert.equal((await request(`http://127.0.0.1:${adminPort}/healthz`, { headers: { host: `other-${name}:${adminPort}` } })).status, 421);
      const cli = await runCli(['connectors', '--config', named.configFile]);
      assert.equal(cli.code, 0, cli.stderr);
      assert.match(cli.stdout, /no connector is connected/);
    } finally {
      await named.stop();
    }
  });
});
