/**
 * A response still streaming after a re-check interval (server-sent events here) is held to the
 * rules an open WebSocket is (edge.ts sweepLongResponses): cut at sign-out, when its token
 * expires, and when a reload removes its app. Real provider, real gateway, a real SSE backend.
 */
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Browser, defaultApps, startStack, userToken, type Stack } from '../identity/support.js';

/** /sse: an event every 100 ms for as long as the client stays; anything else: ok. */
async function startSseBackend(): Promise<{ url: string; close: () => Promise<void> }> {
  const server = http.createServer((req, res) => {
    if (req.url !== '/sse') return void res.writeHead(200, { 'content-type': 'text/plain' }).end('ok');
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store' });
    let n = 0;
    const timer = setInterval(() => res.write(`data: ${n++}\n\n`), 100);
    res.on('close', () => clearInterval(timer));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () => new Promise((r) => (server.closeAllConnections(), server.close(() => r()))),
  };
}

describe('edge: long-lived responses are held to the rules of open WebSockets', function () {
  this.timeout(30_000);
  let s: Stack;
  let sse: Awaited<ReturnType<typeof startSseBackend>>;
  const saved = process.env.DRAWBRIDGE_WS_RECHECK_MS;
  const passthroughFeed = (url: string) => `  - name: OpenFeed
    externalUrl: http://openfeed.localhost/
    internalUrl: ${url}/
    preAuth: passthrough
`;
  before(async () => {
    process.env.DRAWBRIDGE_WS_RECHECK_MS = '300';
    sse = await startSseBackend();
    s = await startStack({
      accessTokenTtlSec: 3,
      watch: false,
      extraYaml: `policies:
  fresh-sign-in:
    when: { apps: [FreshFeed] }
    session: { signInFrequency: 2s }`,
      apps: (b) => `${defaultApps(b)}
  - name: FreshFeed
    externalUrl: http://freshfeed.localhost/
    internalUrl: ${sse.url}/
    preAuth: oidc
    conditionalAccess: [fresh-sign-in]
  - name: Feed
    externalUrl: http://feed.localhost/
    internalUrl: ${sse.url}/
    preAuth: oidc
    audience: api://web
${passthroughFeed(sse.url)}`,
    });
    for (const h of ['feed', 'freshfeed']) s.idp.allowRedirectUri(`${s.origin(h)}/.drawbridge/callback`);
  });
  after(async () => {
    if (saved === undefined) delete process.env.DRAWBRIDGE_WS_RECHECK_MS;
    else process.env.DRAWBRIDGE_WS_RECHECK_MS = saved;
    await s?.stop();
    await sse?.close();
  });

  /** Opens the stream; `ended` resolves with the time it stopped. */
  async function stream(app: string, headers: Record<string, string> = {}): Promise<{ ended: Promise<number>; events: () => number }> {
    const host = new URL(s.origin(app)).host;
    let events = 0;
    let ended!: Promise<number>;
    await new Promise<void>((resolve, reject) => {
      const req = http.get({ host: '127.0.0.1', port: s.gw.port, path: '/sse', headers: { host, accept: 'text/event-stream', ...headers } }, (res) => {
        if (res.statusCode !== 200) return reject(new Error(`status ${res.statusCode}`));
        res.on('data', (c: Buffer) => (events += String(c).split('data:').length - 1));
        resolve();
      });
      ended = new Promise((r) => req.once('close', () => r(Date.now())));
      req.on('error', () => undefined);
    });
    return { ended, events: () => events };
  }
  const within = (p: Promise<number>, ms: number, what: string) => Promise.race([p, new Promise<never>((_, j) => setTimeout(() => j(new Error(`${what}: still streaming ${ms} ms later`)), ms))]);
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

  it('sign-out cuts the streams its session opened, and only those', async () => {
    const signedIn = async (user: string) => {
      const b = new Browser();
      const { res } = await b.browse(`${s.origin('feed')}/`, { user, password: `${user}-pw` });
      assert.equal(res.status, 200, res.body);
      return { b, feed: await stream('feed', { cookie: b.cookieHeader(new URL(s.origin('feed')).host) }) };
    };
    const leaving = await signedIn('bob');
    const staying = await signedIn('carol');
    await sleep(500);
    const t0 = Date.now();
    await leaving.b.get(`${s.origin('feed')}/.drawbridge/sign-out`, { 'sec-fetch-site': 'same-origin', 'sec-fetch-mode': 'navigate' });
    assert.ok((await within(leaving.feed.ended, 2000, 'the signed-out stream')) - t0 < 1000);
    const seen = staying.feed.events();
    await sleep(500);
    assert.ok(staying.feed.events() > seen, 'the other session stream stopped too');
    assert.ok(s.gw.logs.some((l) => l.msg === 'response cut: its session was signed out' && l.user === 'bob'));
  });

  it('a stream whose sign-in grows older than signInFrequency is cut, as a WebSocket is; one on an app without the rule runs on', async () => {
    const open = async (app: string) => {
      const b = new Browser();
      const { res } = await b.browse(`${s.origin(app)}/`, { user: 'bob', password: 'bob-pw' });
      assert.equal(res.status, 200, res.body);
      return stream(app, { cookie: b.cookieHeader(new URL(s.origin(app)).host) });
    };
    const t0 = Date.now();
    const fresh = await open('freshfeed');
    const steady = await open('feed');
    // auth_time has a resolution of one second; a re-check interval and its own sweep on top
    const at = await within(fresh.ended, 8000, 'the stream past its sign-in frequency');
    assert.ok(at - t0 >= 1000, `cut after ${at - t0} ms`);
    assert.ok(fresh.events() > 5);
    assert.ok(s.gw.logs.some((l) => /^response cut: its access rules no longer allow it \(.*sign-in/i.test(String(l.msg)) && l.app === 'FreshFeed' && l.user === 'bob'));
    const seen = steady.events();
    await sleep(700);
    assert.ok(steady.events() > seen, 'the stream of the app without the rule stopped too');
  });

  it('a stream opened with a bearer token is cut when the token expires', async () => {
    const token = await userToken(s, 'bob', 'bob-pw', 'api://web');
    const exp = JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString()).exp as number;
    const feed = await stream('feed', { authorization: `Bearer ${token}` });
    const at = await within(feed.ended, exp * 1000 - Date.now() + 2000, 'the stream of an expired token');
    assert.ok(at >= exp * 1000 - 50, `cut ${exp * 1000 - at} ms before exp`);
    assert.ok(feed.events() > 5);
    assert.ok(s.gw.logs.some((l) => l.msg === 'response cut: its token expired'));
  });

  it('a reload that removes the app cuts its streams; a stream shorter than the re-check interval is not cut by a reload', async () => {
    const old = await stream('openfeed');
    await sleep(500);
    const young = await stream('openfeed');
    const yaml = readFileSync(s.gw.configFile, 'utf8');
    writeFileSync(s.gw.configFile, yaml.replace(passthroughFeed(sse.url), ''));
    const t0 = Date.now();
    assert.equal(await s.gw.server.reload(), 'success');
    assert.ok((await within(old.ended, 2000, 'the stream of the removed app')) - t0 < 500);
    // the young one completes on its generation until it has run a re-check interval, then goes too
    const youngAt = await within(young.ended, 2000, 'the younger stream of the removed app');
    assert.ok(youngAt - t0 > 50, `the younger stream was cut ${youngAt - t0} ms after the reload`);
    assert.ok(s.gw.logs.some((l) => l.msg === 'response cut: its app or access rules changed in the config' && l.app === 'OpenFeed'));
  });
});
