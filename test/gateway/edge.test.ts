import assert from 'node:assert/strict';
import net from 'node:net';
import { gunzipSync } from 'node:zlib';
import WebSocket from 'ws';
import { rawRequest, request, sleep, startEchoBackend, startGateway, type EchoBackend, type TestGateway } from '../support/harness.js';

const config = (backend: string) => `
gateway:
  publicUrl: http://gw.test
  listen: { http: 127.0.0.1:0 }
  trustedProxies: [127.0.0.2/32]
apps:
  - name: Echo
    externalUrl: http://echo.test/
    internalUrl: ${backend}/
    preAuth: passthrough
    websockets: true
  - name: Prefixed
    externalUrl: http://echo.test/portal/
    internalUrl: ${backend}/internal/portal/
    preAuth: passthrough
  - name: Wild
    externalUrl: http://*.wild.test/
    internalUrl: ${backend}/
    preAuth: passthrough
    headers: { forwarded: false }
  - name: Slow
    externalUrl: http://slow.test/
    internalUrl: ${backend}/
    preAuth: passthrough
    backendTimeout: 300ms
  - name: Down
    externalUrl: http://down.test/
    internalUrl: http://127.0.0.1:1/
    preAuth: passthrough
  - name: Translated
    externalUrl: http://translated.test/
    internalUrl: ${backend}/
    preAuth: passthrough
    translateUrls: { body: true }
`;

describe('edge: forwarding, header hygiene and error paths through a real backend', () => {
  let backend: EchoBackend;
  let gw: TestGateway;
  before(async () => {
    backend = await startEchoBackend();
    gw = await startGateway(config(backend.url));
  });
  after(async () => {
    await gw.stop();
    await backend.close();
  });
  const last = () => backend.received[backend.received.length - 1]!;

  it('forwards a request for a published host with a correlation id both ways', async () => {
    const res = await request(`${gw.url}/hello?x=1`, { headers: { host: 'echo.test' } });
    assert.equal(res.status, 200);
    assert.equal(res.json().url, '/hello?x=1');
    assert.match(String(res.headers['x-correlation-id']), /^[0-9a-f-]{36}$/);
    assert.equal(last().headers['x-correlation-id'], res.headers['x-correlation-id']);
    assert.equal(last().headers.host, new URL(backend.url).host, 'the app sees its internal host');
  });

  it('maps the external path prefix onto the internal one (most specific app wins)', async () => {
    const res = await request(`${gw.url}/portal/a/b`, { headers: { host: 'echo.test' } });
    assert.equal(res.status, 200);
    assert.equal(res.json().url, '/internal/portal/a/b');
  });

  it('forwards the normalized path, not the raw one', async () => {
    const res = await request(`${gw.url}//x/./y/../%7Ez`, { headers: { host: 'echo.test' } });
    assert.equal(res.status, 200);
    assert.equal(res.json().url, '/x/~z');
  });

  it('routes wildcard hosts', async () => {
    const res = await request(`${gw.url}/w`, { headers: { host: 'team1.wild.test' } });
    assert.equal(res.status, 200);
    assert.equal(res.json().url, '/w');
  });

  it('strips hop-by-hop headers, headers named in Connection, and client forwarding headers', async () => {
    await request(`${gw.url}/h`, {
      headers: {
        host: 'echo.test',
        connection: 'keep-alive, X-Private, x-other',
        'x-private': 'secret',
        'x-other': 'also',
        'keep-alive': 'timeout=5',
        'proxy-authorization': 'Basic Zm9vOmJhcg==',
        te: 'trailers',
        'x-forwarded-for': '6.6.6.6',
        'x-forwarded-host': 'evil.test',
        'x-forwarded-proto': 'https',
        forwarded: 'for=6.6.6.6',
        'x-real-ip': '6.6.6.6',
        'x-correlation-id': 'spoofed',
        'x-forwarded-ssl': 'on',
        'x-forwarded-scheme': 'https',
        'x-forwarded-uri': '/admin',
        'client-ip': '1.1.1.1',
        'x-cluster-client-ip': '1.1.1.1',
        'x-original-host': 'evil.test',
        proxy: 'http://evil.test:8080',
        'x-kept': 'yes',
      },
    });
    const h = last().headers;
    for (const name of ['x-private', 'x-other', 'keep-alive', 'proxy-authorization', 'te', 'forwarded', 'x-real-ip', 'x-forwarded-ssl', 'x-forwarded-scheme', 'x-forwarded-uri', 'client-ip', 'x-cluster-client-ip', 'x-original-host', 'proxy']) {
      assert.equal(h[name], undefined, `${name} must not reach the app`);
    }
    assert.equal(h['x-forwarded-for'], '127.0.0.1', 'an untrusted peer cannot contribute X-Forwarded-For');
    assert.equal(h['x-forwarded-host'], 'echo.test');
    assert.equal(h['x-forwarded-proto'], 'http');
    assert.notEqual(h['x-correlation-id'], 'spoofed');
    assert.equal(h['x-kept'], 'yes');
  });

  it('strips method overrides (and their _ and . spellings): the app acts on the method the rules saw', async () => {
    const res = await request(`${gw.url}/m`, {
      method: 'POST',
      headers: { host: 'echo.test', 'x-http-method-override': 'DELETE', 'X-HTTP-Method': 'DELETE', 'x-method-override': 'DELETE', X_HTTP_Method_Override: 'DELETE', 'x.method.override': 'DELETE' },
    });
    assert.equal(res.status, 200);
    const h = last().headers;
    assert.equal(last().method, 'POST');
    for (const name of ['x-http-method-override', 'x-http-method', 'x-method-override', 'x_http_method_override', 'x.method.override']) {
      assert.equal(h[name], undefined, `${name} must not reach the app`);
    }
  });

  it('strips the underscore and dot spellings of those headers too (CGI-style backends fold them into the dashed name)', async () => {
    const spellings = ['X_Forwarded_For', 'X_Real_IP', 'X_Forwarded_Host', 'X_Forwarded_Proto', 'X_Forwarded_Ssl', 'X_Correlation_Id', 'X_Original_URL', 'Client_IP', 'True_Client_IP', 'X.Forwarded.For', 'X_Forwarded-Host', 'Keep_Alive', 'Proxy_Authorization'];
    await request(`${gw.url}/u`, { headers: { host: 'echo.test', ...Object.fromEntries(spellings.map((n) => [n, 'forged'])), 'x_kept': 'yes' } });
    const h = last().headers;
    for (const name of spellings) assert.equal(h[name.toLowerCase()], undefined, `${name} must not reach the app`);
    assert.equal(h['x-forwarded-for'], '127.0.0.1');
    assert.equal(h['x-forwarded-host'], 'echo.test');
    assert.notEqual(h['x-correlation-id'], 'forged');
    assert.equal(h['x_kept'], 'yes', 'an underscore name the gateway does not own still passes');
  });

  it('appends the peer to X-Forwarded-For only when the peer is a trusted proxy', async () => {
    const res = await new Promise<string>((resolve, reject) => {
      const s = net.connect({ host: '127.0.0.1', port: gw.port, localAddress: '127.0.0.2' }, () => {
        s.write('GET /t HTTP/1.1\r\nHost: echo.test\r\nX-Forwarded-For: 198.51.100.7\r\nX-Forwarded-Proto: https\r\nConnection: close\r\n\r\n');
      });
      const chunks: Buffer[] = [];
      s.on('data', (c) => chunks.push(c));
      s.on('end', () => resolve(Buffer.concat(chunks).toString()));
      s.on('error', reject);
    });
    assert.match(res, /^HTTP\/1\.1 200/);
    assert.equal(last().headers['x-forwarded-for'], '198.51.100.7, 127.0.0.2');
    assert.equal(last().headers['x-forwarded-proto'], 'https');
  });

  it('believes only http or https as X-Forwarded-Proto from a trusted proxy (forwarded headers stage); anything else is the scheme the gateway saw', async () => {
    // (mut32) a proxy passing on its client's header gave the app whatever scheme that client wrote
    for (const proto of ['javascript', 'https, gopher']) {
      const res = await new Promise<string>((resolve, reject) => {
        const s = net.connect({ host: '127.0.0.1', port: gw.port, localAddress: '127.0.0.2' }, () => {
          s.write(`GET /t HTTP/1.1\r\nHost: echo.test\r\nX-Forwarded-Proto: ${proto}\r\nConnection: close\r\n\r\n`);
        });
        const chunks: Buffer[] = [];
        s.on('data', (c) => chunks.push(c));
        s.on('end', () => resolve(Buffer.concat(chunks).toString()));
        s.on('error', reject);
      });
      assert.match(res, /^HTTP\/1\.1 200/);
      assert.equal(last().headers['x-forwarded-proto'], 'http', proto);
    }
  });

  it('sends no X-Forwarded-* when the app turns them off (and still strips client copies)', async () => {
    await request(`${gw.url}/nf`, { headers: { host: 'a.wild.test', 'x-forwarded-for': '6.6.6.6' } });
    assert.equal(last().headers['x-forwarded-for'], undefined);
    assert.equal(last().headers['x-forwarded-host'], undefined);
  });

  it('rewrites internal URLs in Location to the URL the client used', async () => {
    const res = await request(`${gw.url}/redirect`, { headers: { host: 'echo.test' } });
    assert.equal(res.status, 302);
    assert.equal(res.headers.location, 'http://echo.test/landed');
  });

  it('translateUrls.body: the internal URL in an HTML page becomes the one the client used; off by default; gzip passes untouched', async () => {
    const internal = new URL(backend.url).host;
    const want = '<a href="http://translated.test/landed">in</a> <img src="http://translated.test/logo.png">';
    const page = await request(`${gw.url}/page`, { headers: { host: 'translated.test' } });
    assert.equal(page.status, 200);
    assert.equal(page.body, want);
    assert.equal(page.headers['content-length'], undefined);
    assert.equal(last().headers['accept-encoding'], 'identity', 'the app is asked for a body the gateway can rewrite');
    // a client that accepts gzip gets the rewritten page gzipped again
    const zipped = await request(`${gw.url}/page`, { headers: { host: 'translated.test', 'accept-encoding': 'gzip, br' } });
    assert.equal(zipped.headers['content-encoding'], 'gzip');
    assert.match(String(zipped.headers.vary), /accept-encoding/i);
    assert.equal(gunzipSync(zipped.raw).toString(), want);
    assert.equal(last().headers['accept-encoding'], 'identity');
    const plain = await request(`${gw.url}/page`, { headers: { host: 'echo.test' } });
    assert.match(plain.body, new RegExp(`http://${internal}/landed`));
    const gz = await request(`${gw.url}/page?gzip=1`, { headers: { host: 'translated.test' } });
    assert.equal(gz.headers['content-encoding'], 'gzip');
    assert.match(gunzipSync(gz.raw).toString(), new RegExp(`http://${internal}/landed`));
  });

  it('relays request bodies (content-length and chunked) and response status codes', async () => {
    const body = 'x'.repeat(100_000);
    const a = await request(`${gw.url}/post`, { method: 'POST', headers: { host: 'echo.test', 'content-type': 'text/plain' }, body });
    assert.equal(a.json().body.length, body.length);
    const raw = await rawRequest(gw.port, 'POST /chunked HTTP/1.1\r\nHost: echo.test\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n');
    assert.match(raw, /^HTTP\/1\.1 200/);
    assert.match(raw, /"body":"hello"/);
    const s = await request(`${gw.url}/status/418`, { headers: { host: 'echo.test' } });
    assert.equal(s.status, 418);
  });

  it('answers 404 from the gateway itself for an unknown host, as HTML for browsers', async () => {
    const res = await request(`${gw.url}/`, { headers: { host: 'unknown.test', accept: 'text/html,application/xhtml+xml' } });
    assert.equal(res.status, 404);
    assert.match(String(res.headers['content-type']), /text\/html/);
    assert.match(res.body, /This corporate app can&#39;t be accessed|This corporate app can't be accessed/);
    assert.ok(res.body.includes(String(res.headers['x-correlation-id'])), 'the page shows the correlation id');
  });

  it('answers problem+json to clients that ask for JSON', async () => {
    const res = await request(`${gw.url}/`, { headers: { host: 'unknown.test', accept: 'application/json' } });
    assert.equal(res.status, 404);
    assert.match(String(res.headers['content-type']), /application\/problem\+json/);
    const p = res.json();
    assert.equal(p.status, 404);
    assert.equal(p.title, 'Not found');
    assert.equal(p.correlationId, res.headers['x-correlation-id']);
  });

  it('answers 400 to paths that cannot be normalized safely, and forwards nothing', async () => {
    const before = backend.received.length;
    for (const p of ['/a%2Fb', '/a/%2e%2e/b', '/..%2F', '/a%00', '/x/%252e%252e/portal/a', '/x%252f..%252fportal/a']) {
      const res = await request(`${gw.url}${p}`, { headers: { host: 'echo.test' } });
      assert.equal(res.status, 400, p);
    }
    assert.equal(backend.received.length, before);
  });

  it("another spelling of an app's prefix (letter case, trailing dots or spaces, as IIS reads paths) is sent to the app's own, not forwarded by the app above it", async () => {
    const before = backend.received.length;
    const cases: [string, string][] = [
      ['/PORTAL/a?q=1', '/portal/a?q=1'],
      ['/portal./a', '/portal/a'],
      ['/Portal%20/a/page.jsp;jsessionid=AB12', '/portal/a/page.jsp;jsessionid=AB12'],
      ['/PORTAL', '/portal'],
    ];
    for (const [p, location] of cases) {
      const res = await request(`${gw.url}${p}`, { method: 'POST', headers: { host: 'echo.test', 'content-type': 'text/plain' }, body: 'x' });
      assert.equal(res.status, 307, p);
      assert.equal(res.headers.location, location, p);
      assert.equal(res.headers['cache-control'], 'no-store');
    }
    // a WebSocket handshake too: the answer is the redirect, no 101 from the root app (which takes WebSockets)
    const ws = await rawRequest(gw.port, 'GET /PORTAL/ws HTTP/1.1\r\nHost: echo.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n', 500);
    assert.match(ws, /^HTTP\/1\.1 307 /, ws);
    assert.match(ws, /\r\nlocation: \/portal\/ws\r\n/i, ws);
    assert.equal(backend.received.length, before, 'the root app forwarded none of them');
    const res = await request(`${gw.url}/portal/a?q=1`, { headers: { host: 'echo.test' } });
    assert.equal(res.json().url, '/internal/portal/a?q=1');
    // names that only look alike stay the root app's
    assert.equal((await request(`${gw.url}/portals/a`, { headers: { host: 'echo.test' } })).json().url, '/portals/a');
  });

  it('path parameters: refused on a directory segment; on the last one, routed as a servlet container maps them and forwarded', async () => {
    const before = backend.received.length;
    for (const p of ['/portal;x/a', '/portal;/a', '/a;jsessionid=1/b']) {
      const res = await request(`${gw.url}${p}`, { headers: { host: 'echo.test' } });
      assert.equal(res.status, 400, p);
      assert.match(res.body, /parameters on a directory segment/);
    }
    assert.equal(backend.received.length, before);
    // `/portal;x` is `/portal` to Tomcat or Jetty: it belongs to the /portal/ app, not the root app
    let res = await request(`${gw.url}/portal;x`, { headers: { host: 'echo.test' } });
    assert.equal(res.status, 200);
    assert.equal(res.json().url, '/internal/portal;x');
    res = await request(`${gw.url}/portal/page.jsp;jsessionid=AB12?q=1`, { headers: { host: 'echo.test' } });
    assert.equal(res.json().url, '/internal/portal/page.jsp;jsessionid=AB12?q=1');
  });

  it('answers 400 to Content-Length with Transfer-Encoding and to conflicting lengths, forwarding nothing', async () => {
    const before = backend.received.length;
    const both = await rawRequest(gw.port, 'POST /smuggle HTTP/1.1\r\nHost: echo.test\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /x HTTP/1.1\r\nHost: echo.test\r\n\r\n');
    assert.match(both, /^HTTP\/1\.1 400/);
    const twice = await rawRequest(gw.port, 'POST /smuggle HTTP/1.1\r\nHost: echo.test\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde');
    assert.match(twice, /^HTTP\/1\.1 400/);
    const bad = await rawRequest(gw.port, 'GET /x HTTP/1.1\r\nHost: echo.test\r\nBad Header: x\r\n\r\n');
    assert.match(bad, /^HTTP\/1\.1 400/);
    assert.match(bad, /x-correlation-id: [0-9a-f-]{36}/, 'even a parser-level refusal carries a correlation id');
    assert.equal(backend.received.length, before, 'nothing reached the app');
  });

  it('answers 400 without a Host header, with its correlation id, in HTTP/1.0 and 1.1', async () => {
    for (const version of ['1.0', '1.1']) {
      const raw = await rawRequest(gw.port, `GET /no-host HTTP/${version}\r\n\r\n`);
      assert.match(raw, /^HTTP\/1\.1 400/, version);
      assert.match(raw, /\r\nx-correlation-id: [0-9a-f-]{36}\r\n/i, `${version}: the gateway's own answer, not Node's bare 400`);
      assert.match(raw, /no valid Host header/);
    }
  });

  it('answers 502 "Bad gateway" when the app cannot be reached', async () => {
    const res = await request(`${gw.url}/`, { headers: { host: 'down.test', accept: 'application/json' } });
    assert.equal(res.status, 502);
    assert.equal(res.json().title, 'Bad gateway');
  });

  it('logs the path without its ;parameters and the query as parameter names only: no value reaches the log', async () => {
    const res = await request(`${gw.url}/hello;jsessionid=SECRET-ONE?code=SECRET-TWO&state=s3&flag`, { headers: { host: 'echo.test' } });
    assert.equal(res.status, 200);
    assert.equal(res.json().url, '/hello;jsessionid=SECRET-ONE?code=SECRET-TWO&state=s3&flag', 'the app still gets all of it');
    const line = gw.logs.find((l) => l.correlationId === res.headers['x-correlation-id'] && l.msg === 'request');
    assert.equal(line?.path, '/hello');
    assert.equal(line?.query, 'code&state&-', 'a part without = is a value (a signed link): not written either');
    assert.ok(!gw.logs.some((l) => JSON.stringify(l).includes('SECRET-')), 'no value in any log line');
  });

  describe('pipelined requests', () => {
    /** Writes `count` pipelined GETs on one connection; resolves with what came back when the socket closes or after `closeAfterMs`. */
    const pipeline = (paths: string[], closeAfterMs: number) =>
      new Promise<string>((resolve) => {
        const socket = net.connect(gw.port, '127.0.0.1', () => socket.write(paths.map((p) => `GET ${p} HTTP/1.1\r\nHost: echo.test\r\n\r\n`).join('')));
        let out = '';
        socket.on('data', (d: Buffer) => (out += d.toString('latin1')));
        socket.on('error', () => {});
        const timer = setTimeout(() => socket.destroy(), closeAfterMs);
        socket.on('close', () => (clearTimeout(timer), resolve(out)));
      });
    const answers = (out: string) => out.split('\r\n').filter((l) => /^HTTP\/1\.1 \d{3} /.test(l)).map((l) => l.slice(9, 12));

    it('are forwarded one at a time, in order: a client that leaves takes only its current request to the app, and each forwarded one is logged', async () => {
      const tag = `p${Date.now()}`;
      const paths = Array.from({ length: 20 }, (_, i) => `/slow?ms=250&${tag}=${i}`);
      const before = backend.received.length;
      const out = await pipeline(paths, 600);
      assert.deepEqual(answers(out), ['200', '200'], 'two answered in 600 ms, one after the other');
      await new Promise((r) => setTimeout(r, 800));
      const got = backend.received.slice(before).filter((r) => r.url.includes(tag));
      assert.deepEqual(got.map((r) => r.url), paths.slice(0, 3), 'only the answered ones and the one in progress reached the app');
      assert.equal(gw.logs.filter((l) => l.msg === 'request' && l.path === '/slow' && l.query === `ms&${tag}`).length, got.length, 'each forwarded one has its log line');
    });

    it('all get their answers when the client waits', async () => {
      const tag = `q${Date.now()}`;
      const paths = Array.from({ length: 5 }, (_, i) => `/hello?${tag}=${i}`);
      const out = await pipeline(paths, 1500);
      assert.deepEqual(answers(out), ['200', '200', '200', '200', '200']);
      const order = [...out.matchAll(new RegExp(`${tag}=(\\d)`, 'g'))].map((m) => m[1]);
      assert.deepEqual(order, ['0', '1', '2', '3', '4'], 'in the order asked');
    });

    it('too many waiting on one connection closes it: the app sees at most the first', async () => {
      const tag = `r${Date.now()}`;
      const before = backend.received.length;
      const out = await pipeline(Array.from({ length: 200 }, (_, i) => `/slow?ms=300&${tag}=${i}`), 3000);
      assert.ok(answers(out).length <= 1, `got ${answers(out).length} answers`);
      await new Promise((r) => setTimeout(r, 200));
      assert.ok(backend.received.slice(before).filter((r) => r.url.includes(tag)).length <= 1);
      assert.equal((await request(`${gw.url}/hello`, { headers: { host: 'echo.test' } })).status, 200, 'the gateway still serves');
    });
  });

  it('answers 504 "Gateway time-out" when the app is slower than backendTimeout', async () => {
    const t0 = Date.now();
    const res = await request(`${gw.url}/slow?ms=3000`, { headers: { host: 'slow.test', accept: 'application/json' } });
    assert.equal(res.status, 504);
    assert.equal(res.json().title, 'Gateway time-out');
    assert.ok(Date.now() - t0 < 2500, 'it did not wait for the app');
  });

  it('a WebSocket frame the client sends before the app has switched protocols reaches the app after the handshake', async () => {
    const sock = net.connect(gw.port, '127.0.0.1');
    sock.write('GET /ws?ms=300 HTTP/1.1\r\nHost: echo.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n');
    let got = '';
    const echoed = new Promise<void>((resolve, reject) => {
      sock.on('data', (c: Buffer) => {
        got += c.toString('latin1');
        if (got.includes('\x81\x05early')) resolve();
      });
      sock.on('error', reject);
      sock.on('close', () => reject(new Error(`closed; got ${JSON.stringify(got)}`)));
    });
    // while the app is still deciding: a masked text frame (all-zero mask) "early"
    await sleep(100);
    sock.write(Buffer.concat([Buffer.from([0x81, 0x85, 0, 0, 0, 0]), Buffer.from('early')]));
    await echoed;
    assert.match(got, /^HTTP\/1\.1 101 /);
    sock.destroy();
  });

  it('lets only WebSocket upgrades through, after the pipeline, to apps that allow them', async () => {
    const ws = new WebSocket(`ws://127.0.0.1:${gw.port}/ws`, { headers: { host: 'echo.test' } });
    let cid: unknown;
    ws.on('upgrade', (res) => (cid = res.headers['x-correlation-id']));
    const echoed = await new Promise<string>((resolve, reject) => {
      ws.on('open', () => ws.send('ping through the gateway'));
      ws.on('message', (m) => resolve(m.toString()));
      ws.on('error', reject);
    });
    ws.close();
    assert.equal(echoed, 'ping through the gateway');
    assert.match(String(cid), /^[0-9a-f-]{36}$/, 'the 101 carries the correlation id');
    const line = gw.logs.find((l) => l.correlationId === cid && l.msg === 'request');
    assert.equal(line?.status, 101, 'logged with the status the client got');
    assert.equal(line?.aborted, undefined);
    const refused = await rawRequest(gw.port, 'GET /ws HTTP/1.1\r\nHost: slow.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n');
    assert.match(refused, /^HTTP\/1\.1 400/);
    // An upgrade the gateway does not carry is ignored (curl --http2 on http://): served as HTTP/1.1,
    // with neither Upgrade nor HTTP2-Settings reaching the app.
    const h2c = await rawRequest(gw.port, 'GET /h2c HTTP/1.1\r\nHost: echo.test\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n');
    assert.match(h2c, /^HTTP\/1\.1 200/);
    assert.match(h2c, /\r\nconnection: close\r\n/i);
    assert.equal(last().url, '/h2c');
    assert.equal(last().headers.upgrade, undefined);
    assert.equal(last().headers['http2-settings'], undefined);
    // with a body it cannot be read as plain HTTP any more (the parser let go of the connection)
    const withBody = await rawRequest(gw.port, 'POST /h2c HTTP/1.1\r\nHost: echo.test\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\nContent-Length: 3\r\n\r\nx=1');
    assert.match(withBody, /^HTTP\/1\.1 400/);
    // (mut32) also when the body comes after the head, in a later packet: served as plain HTTP,
    // its body would be cut off (the parser has let go) and the app left waiting for it
    const before = backend.received.length;
    const late = await new Promise<string>((resolve, reject) => {
      const s = net.connect(gw.port, '127.0.0.1', () => {
        s.write('POST /h2c-late HTTP/1.1\r\nHost: echo.test\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\nContent-Length: 3\r\n\r\n');
        setTimeout(() => s.writable && s.write('x=1'), 150);
      });
      const chunks: Buffer[] = [];
      s.on('data', (c) => chunks.push(c));
      s.on('error', reject);
      s.on('close', () => resolve(Buffer.concat(chunks).toString()));
      setTimeout(() => s.destroy(), 2000);
    });
    assert.match(late, /^HTTP\/1\.1 400/);
    assert.equal(backend.received.length, before, 'nothing reached the app');
  });

  it("leaves out the app's Set-Cookie for the gateway's session and sign-in cookies, in an answer and in a 101, and logs it", async () => {
    // What a passthrough app's backend could send to plant its own user's session in a victim's browser.
    const planted = ['__Host-drawbridge_session=planted; Path=/; Secure; HttpOnly', 'drawbridge_session=x; Path=/portal/', ' __Host-drawbridge_login_0 =y; Path=/; Secure', 'drawbridge_session', '__Secure-drawbridge_session=; Max-Age=0'];
    const own = ['theme=dark; Path=/', 'drawbridge_sessionx=kept'];
    const query = [...planted, ...own].map((c) => `set-cookie=${encodeURIComponent(c)}`).join('&');
    const res = await request(`${gw.url}/cookies?${query}`, { headers: { host: 'echo.test' } });
    assert.equal(res.status, 200);
    assert.deepEqual(res.headers['set-cookie'], own, "the app's own cookies pass as they were");
    const warned = gw.logs.filter((l) => l.correlationId === res.headers['x-correlation-id'] && l.level === 40).map((l) => l.cookie);
    assert.deepEqual(warned, ['__Host-drawbridge_session', 'drawbridge_session', '__Host-drawbridge_login_0', 'drawbridge_session', '__Secure-drawbridge_session']);
    const only = await request(`${gw.url}/cookies?set-cookie=${encodeURIComponent(planted[0]!)}`, { headers: { host: 'echo.test' } });
    assert.equal(only.headers['set-cookie'], undefined, 'no Set-Cookie is left when every one was the gateway\'s');
    const head = await new Promise<Record<string, string | string[] | undefined>>((resolve, reject) => {
      const ws = new WebSocket(`ws://127.0.0.1:${gw.port}/ws?${query}`, { headers: { host: 'echo.test' } });
      ws.on('upgrade', (r) => resolve(r.headers));
      ws.on('open', () => ws.close());
      ws.on('error', reject);
    });
    assert.deepEqual(head['set-cookie'], own, 'the same holds for the 101 of a WebSocket handshake');
  });

  it('leaves "cookies" out of the app\'s Clear-Site-Data (a browser applies it to every cookie of the parent domain, the gateway\'s sessions included), and keeps the rest', async () => {
    const clearing = async (value: string) => {
      const res = await request(`${gw.url}/logout?clear-site-data=${encodeURIComponent(value)}`, { headers: { host: 'echo.test' } });
      assert.equal(res.status, 200);
      const warned = gw.logs.some((l) => l.correlationId === res.headers['x-correlation-id'] && l.level === 40 && l.cookie === 'Clear-Site-Data: "cookies"');
      return { header: res.headers['clear-site-data'], warned };
    };
    assert.deepEqual(await clearing('"cache", "cookies"'), { header: '"cache"', warned: true });
    assert.deepEqual(await clearing('"cookies"'), { header: undefined, warned: true });
    assert.deepEqual(await clearing('"*"'), { header: '"cache", "storage", "executionContexts"', warned: true });
    assert.deepEqual(await clearing('"storage"'), { header: '"storage"', warned: false });
  });

  it('never forwards the gateway-reserved paths', async () => {
    const before = backend.received.length;
    const res = await request(`${gw.url}/.drawbridge/nothing`, { headers: { host: 'echo.test' } });
    assert.equal(res.status, 404);
    assert.equal(backend.received.length, before);
  });

  it('writes one JSON log line per request with app, status, duration, correlation id and decision', async () => {
    const res = await request(`${gw.url}/logged`, { headers: { host: 'echo.test' } });
    const id = res.headers['x-correlation-id'];
    const line = gw.logs.find((l) => l.correlationId === id && l.msg === 'request');
    assert.ok(line, 'a request line exists');
    assert.equal(line!.app, 'Echo');
    assert.equal(line!.status, 200);
    assert.equal(line!.decision, 'allow');
    assert.equal(typeof line!.ms, 'number');
  });
});
