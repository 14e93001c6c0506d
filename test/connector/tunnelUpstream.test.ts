import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import http2 from 'node:http2';
import https from 'node:https';
import net, { type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { createHook } from 'node:async_hooks';
import { WebSocket } from 'ws';
import { ConnectorCa, createCsr, generateKeyPair } from '../../src/connector/ca.js';
import { CANCEL_HEADER, CANCEL_PATH } from '../../src/connector/channelLink.js';
import { TunnelUpstream } from '../../src/connector/tunnelUpstream.js';
import { eventually, rawRequest, request, sleep, startEchoBackend, tempDir, type EchoBackend, type TestGateway } from '../support/harness.js';
import { EXPECTED_INTERIM, INTERIM_ANSWER, interimAnswers } from '../support/interim.js';
import { gatewayYaml, hubUrl, killConnector, startConnector, startHubGateway, token, waitChannels, type ConnectorProcess } from './support.js';

describe('tunnel upstream: apps behind a connector', function () {
  this.timeout(40_000);
  let backend: EchoBackend;
  let gw: TestGateway;
  let conn: ConnectorProcess;
  let tlsBackend: https.Server;
  let early: http.Server;
  let switcher: net.Server;
  let trailing: net.Server;
  let working: net.Server;
  let hangup: net.Server;
  let speaksFirst: http.Server;
  let closer: net.Server;
  let twoLengths: net.Server;
  let patient: http.Server;
  /** the request lines the app with two Content-Lengths received */
  const twoLengthsSaw: string[] = [];
  /** what the closing app received, in order */
  const closerSaw: string[] = [];
  let dir: string;
  const host = (h: string) => ({ host: h });

  before(async () => {
    backend = await startEchoBackend();
    dir = tempDir();
    // an https app with a certificate from a private root
    const privateRoot = await ConnectorCa.loadOrCreate(tempDir());
    const leaf = await privateRoot.issueServer(['127.0.0.1']);
    writeFileSync(join(dir, 'private-root.pem'), privateRoot.certPem);
    tlsBackend = https.createServer({ key: leaf.keyPem, cert: leaf.certPem }, (req, res) => res.end(`tls app saw ${req.url}`));
    await new Promise<void>((r) => tlsBackend.listen(0, '127.0.0.1', r));
    const tlsUrl = `https://127.0.0.1:${(tlsBackend.address() as AddressInfo).port}`;
    // refuses every upload at once, without reading it
    early = http.createServer((_req, res) => res.writeHead(413, { 'content-type': 'text/plain' }).end('too large'));
    await new Promise<void>((r) => early.listen(0, '127.0.0.1', r));
    // answers every request with 101 Switching Protocols, upgrade asked or not, and keeps the connection
    switcher = net.createServer((s) => {
      s.on('error', () => undefined);
      s.once('data', () => s.write('HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\n\r\nnot http any more'));
    });
    await new Promise<void>((r) => switcher.listen(0, '127.0.0.1', r));
    // answers 204 and 304 with bytes behind them, and HEAD with its GET body (do_HEAD calling do_GET)
    trailing = net.createServer((s) => {
      s.on('error', () => undefined);
      s.once('data', (d) => {
        const [method, path] = d.toString('latin1').split(' ');
        if (path === '/204') s.write('HTTP/1.1 204 No Content\r\n\r\nSTRAY-BYTES');
        else if (path === '/304') s.write('HTTP/1.1 304 Not Modified\r\netag: "a"\r\n\r\nSTRAY-BYTES');
        else if (method === 'HEAD') s.write('HTTP/1.1 200 OK\r\ncontent-length: 7\r\ncontent-type: text/plain\r\n\r\nrawok\r\n');
      });
    });
    await new Promise<void>((r) => trailing.listen(0, '127.0.0.1', r));
    // answers its head at once and then echoes the body (a client may wait for that head to send it)
    speaksFirst = http.createServer((req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.flushHeaders();
      req.pipe(res);
    });
    await new Promise<void>((r) => speaksFirst.listen(0, '127.0.0.1', r));
    working = net.createServer((s) => {
      s.on('error', () => undefined);
      s.once('data', () => s.end(INTERIM_ANSWER));
    });
    await new Promise<void>((r) => working.listen(0, '127.0.0.1', r));
    // hangs up on every request without a word
    hangup = net.createServer((s) => {
      s.on('error', () => undefined);
      s.once('data', () => s.destroy());
    });
    await new Promise<void>((r) => hangup.listen(0, '127.0.0.1', r));
    // a keep-alive app that closes an idle connection after 300 ms, and closes after answering
    // /close-after, both without a Connection: close (gunicorn closes idle ones after 2 s)
    closer = net.createServer((s) => {
      s.on('error', () => undefined);
      let idle: NodeJS.Timeout | undefined;
      const arm = () => {
        clearTimeout(idle);
        idle = setTimeout(() => s.end(), 300);
      };
      arm();
      let head = '';
      /** the app has decided to close this connection: what arrives now crossed its close on the way */
      let closing = false;
      s.on('data', (d) => {
        head += d.toString('latin1');
        for (let end = head.indexOf('\r\n\r\n'); end >= 0; end = head.indexOf('\r\n\r\n')) {
          const path = head.slice(0, end).split(' ')[1]!;
          const length = Number(/\r\ncontent-length: *(\d+)/i.exec(head.slice(0, end))?.[1] ?? 0);
          head = head.slice(end + 4 + length);
          if (closing) {
            closerSaw.push(`lost ${path}`);
            continue;
          }
          closerSaw.push(path);
          const answer = `HTTP/1.1 200 OK\r\ncontent-length: ${path.length}\r\n\r\n${path}`;
          if (path === '/late') {
            // answers after 4.2 s, then its idle timer (as a kept-alive app's would, counting
            // from an answer a stalled connector delivers late) closes the connection
            clearTimeout(idle);
            idle = setTimeout(() => {
              s.write(answer);
              closing = true;
              idle = setTimeout(() => s.end(), 150);
            }, 4200);
          } else if (path.startsWith('/close-after')) {
            clearTimeout(idle);
            s.end(answer);
          } else {
            s.write(answer);
            arm();
          }
        }
      });
      s.on('close', () => clearTimeout(idle));
    });
    await new Promise<void>((r) => closer.listen(0, '127.0.0.1', r));
    // runs each request, then answers it with two different Content-Lengths (a head no parser takes)
    twoLengths = net.createServer((s) => {
      s.on('error', () => undefined);
      s.once('data', (d) => {
        twoLengthsSaw.push(d.toString('latin1').split('\r\n', 1)[0]!);
        s.write('HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\nok!');
      });
    });
    await new Promise<void>((r) => twoLengths.listen(0, '127.0.0.1', r));
    // answers /wait?ms=N after N ms, and keeps connections alive for long
    patient = http.createServer((req, res) => {
      const ms = Number(new URL(req.url!, 'http://x').searchParams.get('ms'));
      setTimeout(() => res.end(`waited ${ms}`), ms);
    });
    patient.keepAliveTimeout = 30_000;
    await new Promise<void>((r) => patient.listen(0, '127.0.0.1', r));
    const apps = `
  - name: NoConnector
    externalUrl: http://lonely.test/
    internalUrl: ${backend.url}/
    connectorGroup: g2
    preAuth: passthrough
  - name: Fresh
    externalUrl: http://fresh.test/
    internalUrl: ${backend.url}/
    connectorGroup: g1
    preAuth: passthrough
  - name: Down
    externalUrl: http://down.test/
    internalUrl: http://127.0.0.1:1/
    connectorGroup: g1
    preAuth: passthrough
  - name: Tls
    externalUrl: http://tls.test/
    internalUrl: ${tlsUrl}/
    connectorGroup: g1
    preAuth: passthrough
    backend: { tls: { ca: ./private-root.pem } }
  - name: TlsUntrusted
    externalUrl: http://untrusted.test/
    internalUrl: ${tlsUrl}/other/
    connectorGroup: g1
    preAuth: passthrough
  - name: Early
    externalUrl: http://early.test/
    internalUrl: http://127.0.0.1:${(early.address() as AddressInfo).port}/
    connectorGroup: g1
    preAuth: passthrough
  - name: Translated
    externalUrl: http://translated.test/
    internalUrl: ${backend.url}/
    connectorGroup: g1
    preAuth: passthrough
    translateUrls: { body: true }
  - name: Switcher
    externalUrl: http://switcher.test/
    internalUrl: http://127.0.0.1:${(switcher.address() as AddressInfo).port}/
    connectorGroup: g1
    preAuth: passthrough
    backendTimeout: 5s
  - name: Trailing
    externalUrl: http://trailing.test/
    internalUrl: http://127.0.0.1:${(trailing.address() as AddressInfo).port}/
    connectorGroup: g1
    preAuth: passthrough
  - name: SpeaksFirst
    externalUrl: http://speaks-first.test/
    internalUrl: http://127.0.0.1:${(speaksFirst.address() as AddressInfo).port}/
    connectorGroup: g1
    preAuth: passthrough
    backendTimeout: 3s
  - name: Working
    externalUrl: http://working.test/
    internalUrl: http://127.0.0.1:${(working.address() as AddressInfo).port}/
    connectorGroup: g1
    preAuth: passthrough
  - name: Closer
    externalUrl: http://closer.test/
    internalUrl: http://127.0.0.1:${(closer.address() as AddressInfo).port}/
    connectorGroup: g1
    preAuth: passthrough
    backendTimeout: 5s
  - name: Patient
    externalUrl: http://patient.test/
    internalUrl: http://127.0.0.1:${(patient.address() as AddressInfo).port}/
    connectorGroup: g1
    preAuth: passthrough
    backendTimeout: 4s
  - name: TwoLengths
    externalUrl: http://two-lengths.test/
    internalUrl: http://127.0.0.1:${(twoLengths.address() as AddressInfo).port}/
    connectorGroup: g1
    preAuth: passthrough
  - name: Hangup
    externalUrl: http://hangup.test/
    internalUrl: http://127.0.0.1:${(hangup.address() as AddressInfo).port}/
    connectorGroup: g1
    preAuth: passthrough
`;
    gw = await startHubGateway(gatewayYaml(backend, '', apps), dir);
    conn = startConnector(join(dir, 'conn'), { gateway: hubUrl(gw), token: token(gw) });
    await waitChannels(gw, 2);
  });
  after(async () => {
    await killConnector(conn);
    await gw.stop();
    await backend.close();
    tlsBackend.close();
    early.closeAllConnections();
    early.close();
    switcher.close();
    trailing.close();
    working.close();
    hangup.close();
    closer.close();
    twoLengths.close();
    patient.closeAllConnections();
    patient.close();
    speaksFirst.closeAllConnections();
    speaksFirst.close();
  });

  it('an app that switches protocols on a request that asked for no upgrade: 502 at once, not a client left waiting', async () => {
    const started = Date.now();
    const res = await request(`${gw.url}/plain`, { headers: { host: 'switcher.test', accept: 'application/json' } });
    assert.equal(res.status, 502);
    assert.ok(Date.now() - started < 2000, `answered after ${Date.now() - started} ms`);
    assert.match(JSON.stringify(res.json()), /not valid HTTP/);
    await eventually(() => gw.server.connectorHub!.registry.all().every((c) => c.inflight === 0));
  });

  it('a 204, a 304 or a HEAD answer with stray bytes behind it is relayed, as a direct app\'s is, not an empty reply', async () => {
    const noContent = await request(`${gw.url}/204`, { headers: host('trailing.test') });
    assert.equal(noContent.status, 204);
    assert.equal(noContent.body, '');
    const notModified = await request(`${gw.url}/304`, { headers: host('trailing.test') });
    assert.equal(notModified.status, 304);
    assert.equal(notModified.headers.etag, '"a"');
    const head = await request(`${gw.url}/x`, { method: 'HEAD', headers: host('trailing.test') });
    assert.equal(head.status, 200);
    assert.equal(head.headers['content-length'], '7');
    assert.equal(head.body, '');
    await eventually(() => gw.server.connectorHub!.registry.all().every((c) => c.inflight === 0));
  });

  it('an app\'s 102 and 103 reach the client, without hop-by-hop fields, as from a direct app', async () => {
    const got = await interimAnswers(gw.port, 'working.test');
    assert.equal(got.status, 200);
    assert.equal(got.body, 'done');
    assert.deepEqual(got.interim, EXPECTED_INTERIM);
  });

  it('a POST whose client sends its body only after the app\'s head reaches the app at once (the head is not held for the body)', async () => {
    const started = Date.now();
    const got = await new Promise<{ status: number; headAfter: number; body: string }>((resolve, reject) => {
      const r = http.request({ host: '127.0.0.1', port: gw.port, method: 'POST', path: '/duplex', headers: { host: 'speaks-first.test', 'transfer-encoding': 'chunked' }, agent: false }, (res) => {
        const headAfter = Date.now() - started;
        let body = '';
        res.on('data', (c) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode!, headAfter, body }));
        if (res.statusCode === 200) r.end('sent after the head');
      });
      r.on('error', reject);
      r.flushHeaders();
    });
    assert.equal(got.status, 200);
    assert.ok(got.headAfter < 1500, `the app's head came ${got.headAfter} ms after the request`);
    assert.equal(got.body, 'sent after the head');
  });

  it('carries GET and streamed POST bodies both ways', async () => {
    const res = await request(`${gw.url}/a/b?c=d`, { headers: { host: 'app.test', 'x-test': '1' } });
    assert.equal(res.status, 200);
    assert.equal(res.headers['x-backend'], 'echo');
    assert.equal(res.json().url, '/a/b?c=d');
    assert.equal(res.json().headers['x-test'], '1');
    const body = Buffer.alloc(3 << 20, 'z').toString();
    const post = await request(`${gw.url}/upload`, { method: 'POST', headers: { host: 'app.test', 'content-type': 'text/plain' }, body });
    assert.equal(post.status, 200);
    assert.equal(post.json().body.length, body.length);
    const big = await request(`${gw.url}/big?bytes=${5 << 20}`, { headers: { host: 'app.test' } });
    assert.equal(big.body.length, 5 << 20);
  });

  it('a GET, HEAD, DELETE or OPTIONS with a chunked body reaches the app as one request with its body chunked, never as a second request (smuggling)', async () => {
    for (const method of ['GET', 'HEAD', 'DELETE', 'OPTIONS']) {
      const before = backend.received.length;
      const tag = `smuggled-${method}`;
      const inner = `GET /${tag} HTTP/1.1\r\nHost: app.test\r\nX-Remote-User: admin\r\n\r\n`;
      const answer = await rawRequest(gw.port, `${method} /outer-${method} HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n${inner.length.toString(16)}\r\n${inner}\r\n0\r\n\r\n`, 1500);
      assert.match(answer, /^HTTP\/1\.1 200 /, method);
      await sleep(200);
      const got = backend.received.slice(before);
      assert.deepEqual(got.map((r) => `${r.method} ${r.url}`), [`${method} /outer-${method}`], `${method}: what the app received`);
      assert.equal(got[0]!.headers['transfer-encoding'], 'chunked', method);
      assert.equal(got[0]!.body.toString('latin1'), inner, `${method}: the body, whole`);
    }
  });

  it('a request padded with 1,100 distinct headers reaches the app with its Host and correlation id (it answered 400 without a Host)', async () => {
    const headers: Record<string, string> = { host: 'app.test' };
    for (let i = 0; i < 1100; i++) headers[`x-pad-${i}`] = 'a';
    const res = await request(`${gw.url}/padded`, { headers });
    assert.equal(res.status, 200);
    const seen = res.json().headers;
    assert.equal(seen.host, new URL(backend.url).host);
    assert.equal(seen['x-correlation-id'], res.headers['x-correlation-id']);
    assert.equal(seen['x-pad-0'], 'a');
  });

  it('an app that closed a kept-alive connection (idle, or after its answer) gets the next request on a new one at once, not a 504 after backendTimeout', async () => {
    for (const [first, pause] of [['/idle-first', 700], ['/close-after-answer', 100]] as const) {
      assert.equal((await request(`${gw.url}${first}`, { headers: host('closer.test') })).status, 200);
      await new Promise((r) => setTimeout(r, pause));
      const t0 = Date.now();
      const next = await request(`${gw.url}${first}-next`, { headers: host('closer.test') });
      assert.equal(next.status, 200, `after ${first}: ${next.status} in ${Date.now() - t0} ms`);
      assert.equal(next.body, `${first}-next`);
      assert.ok(Date.now() - t0 < 2000, `after ${first}: answered in ${Date.now() - t0} ms`);
    }
    assert.deepEqual(closerSaw, ['/idle-first', '/idle-first-next', '/close-after-answer', '/close-after-answer-next'], 'each request reached the app once');
  });

  it('a kept-alive connection whose answer came more than 4 s after its request is not reused: a POST right after goes out on a new one, not into the app\'s close (502)', async () => {
    // A connector that stalls (a paused VM, a long GC) delivers an answer late, and the app's
    // idle timer may have run from when it answered: its close is then still on the way.
    const mark = closerSaw.length;
    assert.equal((await request(`${gw.url}/late`, { headers: host('closer.test') })).status, 200);
    const post = await request(`${gw.url}/late-next`, { method: 'POST', headers: { ...host('closer.test'), 'content-type': 'text/plain' }, body: 'once' });
    assert.equal(post.status, 200, post.body.slice(0, 300));
    assert.equal(post.body, '/late-next');
    assert.deepEqual(closerSaw.slice(mark), ['/late', '/late-next']);
  });

  it('a kept-alive connection taken from the pool gives the next request the app\'s whole backendTimeout (4 s here, as long as the pool keeps connections)', async () => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    try {
      const get = (ms: number) =>
        new Promise<{ status: number; body: string }>((resolve, reject) => {
          http
            .get(`${gw.url}/wait?ms=${ms}`, { agent, headers: host('patient.test') }, (res) => {
              let body = '';
              res.on('data', (c) => (body += c));
              res.on('end', () => resolve({ status: res.statusCode!, body }));
            })
            .on('error', reject);
        });
      assert.deepEqual(await get(3000), { status: 200, body: 'waited 3000' });
      const t0 = Date.now();
      const second = await get(1500);
      assert.equal(second.status, 200, `${second.status} after ${Date.now() - t0} ms: ${second.body.slice(0, 200)}`);
    } finally {
      agent.destroy();
    }
  });

  it('an app whose answer does not parse gets each request once (a DELETE it ran is not retried), and the client gets 502', async () => {
    for (const method of ['DELETE', 'GET']) {
      const mark = twoLengthsSaw.length;
      const r = await request(`${gw.url}/d/item-1`, { method, headers: host('two-lengths.test') });
      assert.equal(r.status, 502);
      await sleep(200);
      assert.deepEqual(twoLengthsSaw.slice(mark), [`${method} /d/item-1 HTTP/1.1`]);
    }
  });

  it('translateUrls.body works through the tunnel too', async () => {
    const page = await request(`${gw.url}/page`, { headers: host('translated.test') });
    assert.equal(page.status, 200);
    assert.equal(page.body, '<a href="http://translated.test/landed">in</a> <img src="http://translated.test/logo.png">');
  });

  it('carries WebSocket connections', async () => {
    const ws = new WebSocket(`ws://127.0.0.1:${gw.port}/ws`, { headers: { host: 'app.test' } });
    await new Promise((r, j) => (ws.once('open', r), ws.once('error', j)));
    const got: string[] = [];
    ws.on('message', (m) => got.push(String(m)));
    for (let i = 0; i < 5; i++) ws.send(`hello ${i}`);
    await eventually(() => got.length === 5);
    assert.deepEqual(got, [0, 1, 2, 3, 4].map((i) => `hello ${i}`));
    ws.close();
    assert.equal(backend.received.filter((r) => r.url === '/ws').length, 1);
  });

  it('a client that leaves while its WebSocket upgrade is being dialled gets no WebSocket made at the app for it', async () => {
    // the dial made slow: the client resets its connection while it runs
    const dial = TunnelUpstream.prototype.dial;
    TunnelUpstream.prototype.dial = async function (this: TunnelUpstream, ...args: Parameters<typeof dial>) {
      const r = await dial.apply(this, args);
      await sleep(500);
      return r;
    };
    try {
      const s = net.connect(gw.port, '127.0.0.1', () =>
        s.write('GET /ws-left HTTP/1.1\r\nHost: app.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n'),
      );
      s.on('error', () => undefined);
      await sleep(150);
      s.resetAndDestroy();
      await sleep(1200);
      assert.deepEqual(backend.received.filter((r) => r.url === '/ws-left'), [], 'the app got an upgrade for a client that had left');
    } finally {
      TunnelUpstream.prototype.dial = dial;
    }
  });

  it('a tunnel connection that breaks while it is handed to a request: no crash, the POST is sent once on a new stream', async () => {
    // The race the failover tests hit now and then, made certain: the first
    // dial's socket is already destroyed (with an error) when http gets it.
    const dial = TunnelUpstream.prototype.dial;
    let dials = 0;
    TunnelUpstream.prototype.dial = async function (this: TunnelUpstream, ...args: Parameters<typeof dial>) {
      const r = await dial.apply(this, args);
      if (dials++ === 0) r.socket.destroy(Object.assign(new Error('channel broke in the hand-off'), { code: 'ECONNRESET' }));
      return r;
    };
    try {
      backend.received.length = 0;
      const res = await request(`${gw.url}/handoff`, { method: 'POST', headers: { host: 'fresh.test', 'content-type': 'text/plain' }, body: 'exactly once' });
      assert.equal(res.status, 200);
      assert.equal(res.json().body, 'exactly once');
      assert.equal(dials, 2);
      assert.deepEqual(
        backend.received.filter((r) => r.url === '/handoff').map((r) => r.body.toString()),
        ['exactly once'],
      );
    } finally {
      TunnelUpstream.prototype.dial = dial;
    }
  });

  it('a WebSocket whose tunnel stream breaks in the hand-off gets 502 at once, not after the backend timeout', async () => {
    const dial = TunnelUpstream.prototype.dial;
    TunnelUpstream.prototype.dial = async function (this: TunnelUpstream, ...args: Parameters<typeof dial>) {
      const r = await dial.apply(this, args);
      r.socket.destroy(Object.assign(new Error('channel broke in the hand-off'), { code: 'ECONNRESET' }));
      return r;
    };
    try {
      const started = Date.now();
      const ws = new WebSocket(`ws://127.0.0.1:${gw.port}/ws`, { headers: { host: 'app.test' } });
      const status = await new Promise<number>((resolve, reject) => {
        ws.on('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
        ws.on('open', () => reject(new Error('opened over a dead stream')));
        ws.on('error', () => undefined);
      });
      assert.equal(status, 502);
      assert.ok(Date.now() - started < 5_000, `answered after ${Date.now() - started} ms`);
    } finally {
      TunnelUpstream.prototype.dial = dial;
    }
  });

  it('answers 504 "Gateway time-out" when no connector of the group is connected', async () => {
    const res = await request(`${gw.url}/`, { headers: host('lonely.test') });
    assert.equal(res.status, 504);
    assert.match(res.body, /Gateway time-out/);
    assert.ok(gw.logs.some((l) => l.status === 504 && JSON.stringify(l.reasons).includes('no live connector in group g2')));
  });

  it('answers 502 "Bad gateway" when the connector cannot reach the app', async () => {
    const res = await request(`${gw.url}/`, { headers: host('down.test') });
    assert.equal(res.status, 502);
    assert.match(res.body, /Bad gateway/);
    await eventually(() => conn.logs().some((l) => l.msg === 'the app could not be reached' && l.reason === 'ECONNREFUSED'));
  });

  it('a GET retried after the app hung up: the retry warning carries the correlation id the client\'s 502 shows', async () => {
    const res = await request(`${gw.url}/gone`, { headers: host('hangup.test') });
    assert.equal(res.status, 502);
    const id = res.headers['x-correlation-id'];
    assert.ok(id);
    const retry = await eventually(() => gw.logs.find((l) => /retrying once on another connector/.test(String(l.msg)) && l.correlationId === id));
    assert.ok(retry, JSON.stringify(gw.logs.filter((l) => /retrying/.test(String(l.msg)))));
  });

  it('validates https apps end to end: a private root via backend.tls.ca, 502 with the reason logged otherwise', async () => {
    const ok = await request(`${gw.url}/x`, { headers: host('tls.test') });
    assert.equal(ok.status, 200);
    assert.equal(ok.body, 'tls app saw /x');
    const bad = await request(`${gw.url}/x`, { headers: host('untrusted.test') });
    assert.equal(bad.status, 502);
    await eventually(() => gw.logs.some((l) => l.status === 502 && /backend certificate rejected/.test(JSON.stringify(l))));
  });

  it('the connector refuses targets outside the list the gateway pushed, and follows reloads', async () => {
    const ch = gw.server.connectorHub!.registry.all()[0];
    const status = (authority: string) =>
      new Promise<number>((resolve, reject) => {
        const s = ch.session.request({ ':method': 'CONNECT', ':authority': authority });
        s.on('response', (h) => {
          resolve(Number(h[':status']));
          s.close();
        });
        s.on('error', reject);
      });
    assert.equal(await status('127.0.0.1:22'), 403);
    assert.equal(await status('169.254.169.254:80'), 403);
    assert.equal(await status(new URL(backend.url).host), 200);
    await eventually(() => conn.logs().some((l) => l.msg?.toString().startsWith('target refused') && l.target === '169.254.169.254:80'));
    // a reload that moves the Down app: the old target is withdrawn, the new one allowed
    assert.equal(await status('127.0.0.1:1'), 502);
    writeFileSync(gw.configFile, readFileSync(gw.configFile, 'utf8').replace('internalUrl: http://127.0.0.1:1/', 'internalUrl: http://127.0.0.1:2/'));
    assert.equal(await gw.server.reload('test'), 'success');
    await eventually(async () => (await status('127.0.0.1:1')) === 403);
    assert.equal(await status('127.0.0.1:2'), 502);
  });

  it('a cancel for a CONNECT that waits for a target list still arriving ends it at once (not the gateway\'s reset 2 s later)', async () => {
    const ch = gw.server.connectorHub!.registry.all()[0]!;
    // a target list on its way: the connector holds a CONNECT to a target it does not list until it is read
    const arriving = ch.session.request({ ':method': 'POST', ':path': '/v1/targets', 'content-type': 'application/json' });
    arriving.on('error', () => undefined);
    const waiting = ch.session.request({ ':method': 'CONNECT', ':authority': '127.0.0.1:3' });
    waiting.on('error', () => undefined);
    const closed = new Promise<number>((r) => waiting.on('close', () => r(waiting.rstCode ?? -1)));
    await sleep(100);
    assert.equal(typeof waiting.id, 'number');
    const cancel = ch.session.request({ ':method': 'POST', ':path': CANCEL_PATH, [CANCEL_HEADER]: String(waiting.id) }, { endStream: true });
    cancel.resume();
    const code = await Promise.race([closed, sleep(1000).then(() => 'still open')]);
    arriving.close();
    assert.equal(code, http2.constants.NGHTTP2_CANCEL);
  });

  it('1,000 concurrent slow requests on one connector all complete', async () => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 2000 });
    const one = (i: number) =>
      new Promise<number | string>((resolve) => {
        const r = http.get({ host: '127.0.0.1', port: gw.port, path: `/slow?ms=1000&i=${i}`, headers: { host: 'app.test' }, agent }, (res) => {
          res.resume();
          res.on('end', () => resolve(res.statusCode!));
        });
        r.on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? 'error'));
      });
    const before = backend.received.length;
    const statuses = await Promise.all(Array.from({ length: 1000 }, (_, i) => one(i)));
    agent.destroy();
    assert.deepEqual([...new Set(statuses)], [200]);
    assert.equal(backend.received.length - before, 1000);
  });

  it('a client that leaves in the middle of an upload the app already refused frees its tunnel stream', async () => {
    const streams = () => gw.server.connectorHub!.registry.all().reduce((n, c) => n + c.streams, 0);
    await eventually(() => streams() === 0, 10_000, 50);
    for (let i = 0; i < 3; i++) {
      await new Promise<void>((resolve) => {
        const r = http.request({ host: '127.0.0.1', port: gw.port, path: '/upload', method: 'POST', headers: { host: 'early.test', 'content-length': String(64 << 20) }, agent: false });
        r.on('response', (res) => {
          assert.equal(res.statusCode, 413);
          // the app answered; the client stops its upload half-way and goes
          setTimeout(() => (r.destroy(), resolve()), 200);
        });
        // (or the gateway, having answered, closes first and the client's next write fails)
        r.on('error', () => resolve());
        const chunk = Buffer.alloc(64 << 10, 97);
        const pump = () => {
          while (!r.destroyed && r.write(chunk));
          if (!r.destroyed) r.once('drain', pump);
        };
        pump();
      });
    }
    // (the request had left Node's queue when its response finished, so nothing told it the client went)
    await eventually(() => streams() === 0, 5000, 50);
  });

  it('a client that leaves in the middle of a large download frees its tunnel stream and what it had buffered', async () => {
    const streams = () => gw.server.connectorHub!.registry.all().reduce((n, c) => n + c.streams, 0);
    // kept-alive connections of earlier tests close after the tunnel agent's idle timeout
    await eventually(() => streams() === 0, 10_000, 50);
    for (let i = 0; i < 3; i++) {
      await new Promise<void>((resolve, reject) => {
        const r = http.get({ host: '127.0.0.1', port: gw.port, path: `/big?bytes=${64 << 20}`, headers: { host: 'app.test' }, agent: false }, (res) => {
          res.once('data', () => {
            // stop reading, so the gateway holds data for this client, then go
            res.pause();
            setTimeout(() => (r.destroy(), resolve()), 200);
          });
        });
        r.on('error', (e: NodeJS.ErrnoException) => (e.code === 'ECONNRESET' ? undefined : reject(e)));
      });
    }
    await eventually(() => streams() === 0, 3000, 50);
  });

  it('bad input on a channel: garbage and oversized frames close only that channel, an abandoned stream blocks nothing', async () => {
    const hub = gw.server.connectorHub!;
    const kp = await generateKeyPair();
    const cert = (await hub.ca.issueClient(await createCsr(kp.keys, 'x'), kp.publicKeyDer, 'g1', 3600_000, 'c-fuzzer')).certPem;
    const open = () =>
      new Promise<WebSocket>((r, j) => {
        const ws = new WebSocket(`wss://${hub.address()}/v1/tunnel`, { key: kp.keyPem, cert, ca: hub.ca.certPem, maxPayload: 64 << 20 });
        ws.once('open', () => r(ws));
        ws.once('error', j);
      });
    const garbage = await open();
    garbage.send(Buffer.from('this is not HTTP/2 at all, just garbage bytes\r\n\r\n'.repeat(10)));
    await new Promise((r) => garbage.once('close', r));
    const oversized = await open();
    const code = await new Promise<number>((r) => {
      oversized.once('close', (c) => r(c));
      oversized.send(Buffer.alloc(5 << 20));
    });
    assert.equal(code, 1009);
    await eventually(() => gw.logs.some((l) => l.connector === 'c-fuzzer' && /channel (error|broken)/.test(String(l.msg))));
    await eventually(() => !hub.registry.all().some((c) => c.connectorId === 'c-fuzzer'), 3000);

    // an abandoned stream: opened to an allowed target and never used
    const ch = hub.registry.all().find((c) => c.connectorId !== 'c-fuzzer')!;
    const abandoned = ch.session.request({ ':method': 'CONNECT', ':authority': new URL(backend.url).host });
    await new Promise((r) => abandoned.once('response', r));
    const results = await Promise.all(Array.from({ length: 20 }, (_, i) => request(`${gw.url}/after-fuzz/${i}`, { headers: { host: 'app.test' } })));
    assert.deepEqual(results.map((r) => r.status), Array(20).fill(200));
    abandoned.close();
    await eventually(() => abandoned.closed);
    await sleep(10);
  });
});

describe('tunnel upstream: clients that give up, and apps that are down', function () {
  this.timeout(120_000);
  let backend: EchoBackend;
  let resetting: net.Server;
  let gw: TestGateway;
  let conn: ConnectorProcess;
  before(async () => {
    backend = await startEchoBackend();
    // a port nothing listens on: the connector's connect to the Down app is refused at once
    const probe = net.createServer();
    await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
    const closedPort = (probe.address() as AddressInfo).port;
    await new Promise((r) => probe.close(r));
    // an app that accepts each connection and resets it at once
    resetting = net.createServer((s) => s.resetAndDestroy());
    await new Promise<void>((r) => resetting.listen(0, '127.0.0.1', r));
    const app = (name: string, port: number) => `  - name: ${name}\n    externalUrl: http://${name.toLowerCase()}.test/\n    internalUrl: http://127.0.0.1:${port}/\n    connectorGroup: g1\n    preAuth: passthrough\n`;
    gw = await startHubGateway(gatewayYaml(backend, '', app('Down', closedPort) + app('Resets', (resetting.address() as AddressInfo).port)));
    conn = startConnector(join(tempDir(), 'c'), { gateway: hubUrl(gw), token: token(gw), args: ['--channels', '1'] });
    await waitChannels(gw, 1);
  });
  after(async () => {
    await killConnector(conn);
    await gw?.stop();
    await backend?.close();
    resetting?.close();
  });

  /** `n` GETs to `host`, 50 at a time on kept-alive connections: how many got each status */
  const statusesOf = async (host: string, n: number) => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 50 });
    const statuses = new Map<number, number>();
    await Promise.all(
      Array.from({ length: 50 }, async () => {
        while (n-- > 0) {
          const res = await request(`${gw.url}/x`, { headers: { host }, agent });
          statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
        }
      }),
    );
    agent.destroy();
    return [...statuses];
  };

  /** a download given up as soon as its head arrives, as a browser that navigates away */
  const givenUp = () =>
    new Promise<boolean>((resolve) => {
      const s = net.connect(gw.port, '127.0.0.1', () => s.write('GET /big?bytes=4000000 HTTP/1.1\r\nHost: app.test\r\n\r\n'));
      let got = '';
      s.on('error', () => resolve(false));
      s.on('data', (c: Buffer) => {
        got += c.toString('latin1');
        if (!got.includes('\r\n\r\n')) return;
        s.destroy();
        resolve(got.startsWith('HTTP/1.1 200'));
      });
    });

  // Two limits of Node's HTTP/2 ended the channel here: its count of session memory, which keeps the
  // bytes of every reset stream, and nghttp2's rapid-reset guard (1,000 resets from the gateway, then
  // 33 a second). 2,000 given up in about 30 s passes neither.
  it('2,000 downloads given up at once keep the channel: other requests on it are served, and nothing is left open', async () => {
    const [channel] = gw.server.connectorHub!.registry.all();
    let left = 2000;
    let answered = 0;
    await Promise.all(
      Array.from({ length: 50 }, async () => {
        while (left-- > 0) if (await givenUp()) answered++;
      }),
    );
    assert.ok(answered > 1900, `${answered} of 2,000 got their head`);
    const res = await request(`${gw.url}/after`, { headers: { host: 'app.test' } });
    assert.equal(res.status, 200, res.body);
    // the same channel: it was never closed and dialled again
    assert.deepEqual(gw.server.connectorHub!.registry.all(), [channel]);
    assert.ok(!conn.logs().some((l) => /session error|channel closed/.test(String(l.msg))), conn.lines.filter((l) => /error|closed/.test(l)).slice(0, 3).join('\n'));
    assert.ok(!gw.logs.some((l) => /connector channel (error|broken)/.test(String(l.msg))));
    await eventually(() => channel!.streams === 0, 5000);
  });

  // Each refusal used to end with a reset from the gateway, and nghttp2's rapid-reset guard at the
  // connector (1,000 resets, then 33 a second) closed the channel: every request of every app on
  // it failed or was retried, every few seconds, for as long as the app stayed down.
  it('3,000 requests to it get 502 and keep the channel: the other app on the connector is served on the same one', async () => {
    const [channel] = gw.server.connectorHub!.registry.all();
    assert.deepEqual(await statusesOf('down.test', 3000), [[502, 3000]]);
    const res = await request(`${gw.url}/after`, { headers: { host: 'app.test' } });
    assert.equal(res.status, 200, res.body);
    assert.deepEqual(gw.server.connectorHub!.registry.all(), [channel]);
    assert.ok(!conn.logs().some((l) => /channel closed/.test(String(l.msg))), conn.lines.filter((l) => /closed/.test(l)).slice(0, 3).join('\n'));
    assert.ok(!gw.logs.some((l) => /connector channel (error|broken)/.test(String(l.msg))));
    await eventually(() => channel!.streams === 0, 5000);
  });

  // Node's http gives a request its socket a tick after picking it, and listens for the socket's
  // close only then: a tunnel stream that closed in that tick (the app reset the connection just
  // as the connector answered) left the request and its response parser in the gateway for good,
  // at a rate that took a gateway of its own past 800 MB in 45 s. Counted here by the parsers'
  // async resources, which http destroys when it frees a parser (the test's own client's too).
  it('2,000 requests to an app that resets every connection get 502 and leave no request behind in the gateway', async () => {
    const held = new Set<number>();
    const hook = createHook({
      init: (id, type) => void (type === 'HTTPCLIENTREQUEST' && held.add(id)),
      destroy: (id) => void held.delete(id),
    }).enable();
    try {
      assert.deepEqual(await statusesOf('resets.test', 2000), [[502, 2000]]);
      const [channel] = gw.server.connectorHub!.registry.all();
      await eventually(() => channel!.streams === 0, 5000);
      await eventually(() => held.size === 0, 5000).catch(() => undefined);
      assert.equal(held.size, 0, `${held.size} requests still hold their parsers`);
    } finally {
      hook.disable();
    }
  });
});
