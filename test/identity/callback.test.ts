import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { WebSocket } from 'ws';
import { request, startEchoBackend, startGateway } from '../support/harness.js';
import { LOGIN_SLOTS, MAX_LOGIN_COOKIE_BYTES } from '../../src/identity/loginState.js';
import { Browser, CLIENT_SECRET, defaultApps, gatewayYaml, SECRET_A, startStack, userToken, type Stack } from './support.js';

describe('identity: callback and login state', function () {
  this.timeout(30_000);
  let s: Stack;
  before(async () => {
    s = await startStack({ apps: (b) => `${defaultApps(b)}
  - name: Fwd
    externalUrl: http://app.localhost/
    internalUrl: ${b}/
    preAuth: oidc
    audience: api://web
    forwardBearerToken: true
  - name: Ws
    externalUrl: http://ws.localhost/
    internalUrl: ${b}/
    preAuth: oidc
    websockets: true
    websocketOrigins: [https://Dash.example.test]
` });
    s.idp.allowRedirectUri(`${s.origin('ws')}/.drawbridge/callback`);
  });
  after(async () => s?.stop());

  /** Runs the flow up to the provider's redirect back to the gateway, without following it. */
  async function codeFor(b: Browser, host = 'web'): Promise<string> {
    let url = (await b.get(`${s.origin(host)}/start`)).headers.location!;
    for (let i = 0; i < 10; i++) {
      const res = url.includes('/interaction/') && !url.endsWith('/login') ? await b.get(url) : await b.get(url);
      if (res.status === 200 && /action="[^"]+\/login"/.test(res.body)) {
        const action = new URL(/action="([^"]+)"/.exec(res.body)![1]!, url).href;
        const r2 = await b.send('POST', action, { 'content-type': 'application/x-www-form-urlencoded' }, 'username=bob&password=bob-pw');
        url = new URL(r2.headers.location!, action).href;
        continue;
      }
      const loc = res.headers.location!;
      url = new URL(loc, url).href;
      if (url.includes('/.drawbridge/callback')) return url;
    }
    throw new Error('no callback');
  }

  it('a callback URL replayed in another browser finds no sign-in to finish', async () => {
    const callback = await codeFor(new Browser());
    const res = await new Browser().get(callback);
    assert.equal(res.status, 400);
    assert.equal(res.headers['set-cookie'], undefined);
    // a way on: the user may just have typed a password, and Reload gives this page again
    assert.match(res.body, /<a href="\/">Open the app again<\/a>/);
  });

  it('the same callback cannot be used twice (login cookie cleared, code single-use)', async () => {
    const b = new Browser();
    const callback = await codeFor(b);
    const loginCookies = [...b.jar.get(new URL(s.origin('web')).host)!.entries()];
    const first = await b.get(callback);
    assert.equal(first.status, 302);
    assert.equal(first.headers.location, `${s.origin('web')}/start`);
    const again = new Browser();
    again.jar.set(new URL(s.origin('web')).host, new Map(loginCookies));
    const second = await again.get(callback);
    assert.equal(second.status, 401, 'the provider refuses a used code');
  });

  it('a login cookie takes one code to the provider: replays with it, with any code and all at once, are refused without a token request', async () => {
    const b = new Browser();
    const callback = new URL(await codeFor(b));
    const host = new URL(s.origin('web')).host;
    const kept = new Map(b.jar.get(host)!);
    const tokenRequests = () => [...s.idp.hits].filter(([path]) => path.endsWith('/token')).reduce((n, [, c]) => n + c, 0);
    const replay = (code: string) => {
      const again = new Browser();
      again.jar.set(host, new Map(kept));
      const url = new URL(callback);
      url.searchParams.set('code', code);
      return again.get(url.href);
    };
    const before = tokenRequests();
    const forged = await replay('forged-code');
    assert.equal(forged.status, 401, 'the provider refuses the forged code');
    assert.equal(tokenRequests(), before + 1);
    // The real code, then a burst of made-up ones: the same answer as a used code, and no request to the provider.
    const answers = [await replay(callback.searchParams.get('code')!), ...(await Promise.all(Array.from({ length: 20 }, (_, i) => replay(`code-${i}`))))];
    assert.deepEqual(new Set(answers.map((r) => r.status)), new Set([401]));
    assert.match(answers[0]!.body, /could not be verified/);
    assert.ok(answers.every((r) => [r.headers['set-cookie'] ?? []].flat().some((c) => /^drawbridge_login_[\w-]+=; .*Max-Age=0/.test(c))), 'the login cookie is cleared');
    assert.equal(tokenRequests(), before + 1, 'no token request for a replay');
    const ids = new Set(answers.map((r) => r.headers['x-correlation-id']));
    const refused = s.gw.logs.filter((l) => l.msg === 'sign-in callback refused' && ids.has(l.correlationId as string));
    assert.deepEqual(new Set(refused.map((l) => l.reason)), new Set(['this sign-in already went to the token endpoint (login state replayed)']));
    assert.equal(refused.length, 21);
  });

  it('a tampered state or code is refused', async () => {
    const b = new Browser();
    const callback = new URL(await codeFor(b));
    const badState = new URL(callback);
    const state = callback.searchParams.get('state')!;
    // (a state that already began with x stayed the same: 1 run in 64 failed)
    badState.searchParams.set('state', (state[0] === 'x' ? 'y' : 'x') + state.slice(1));
    assert.equal((await b.get(badState.href)).status, 400);
    const badCode = new URL(callback);
    badCode.searchParams.set('code', 'nope');
    assert.equal((await b.get(badCode.href)).status, 401);
  });

  it('a login cookie from one app host does not finish a sign-in on another', async () => {
    const b = new Browser();
    const callback = new URL(await codeFor(b, 'web'));
    const moved = new Browser();
    moved.jar.set(new URL(s.origin('api')).host, b.jar.get(new URL(s.origin('web')).host)!);
    const res = await moved.get(`${s.origin('api')}/.drawbridge/callback${callback.search}`);
    assert.equal(res.status, 400);
  });

  it('sign-ins started and never finished do not pile up login cookies', async () => {
    const b = new Browser();
    for (let i = 0; i < 8; i++) assert.equal((await b.get(`${s.origin('web')}/p${i}`)).status, 302);
    const logins = [...b.jar.get(new URL(s.origin('web')).host)!.keys()].filter((k) => k.startsWith('drawbridge_login_'));
    assert.ok(logins.length <= LOGIN_SLOTS, String(logins.length));
    const { url } = await b.browse(`${s.origin('web')}/last`, { user: 'bob', password: 'bob-pw' });
    assert.equal(url, `${s.origin('web')}/last`);
  });

  it('four tabs that start signing in at the same instant (one Cookie header) each keep their own sign-in, and all land on their own URL', async () => {
    const host = new URL(s.origin('web')).host;
    const logins = (b: Browser) => [...(b.jar.get(host)?.keys() ?? [])].filter((k) => k.startsWith('drawbridge_login_'));
    // With a free slot picked at random from the shared Cookie header, 4 tabs collided 9 times in 10.
    for (let round = 0; round < 3; round++) {
      const b = new Browser();
      const tabs = ['one', 'two', 'three', 'four'].map((t) => `${s.origin('web')}/tab-${t}?r=${round}`);
      const starts = await Promise.all(tabs.map((t) => b.get(t)));
      assert.deepEqual(starts.map((r) => r.status), [302, 302, 302, 302]);
      assert.equal(logins(b).length, LOGIN_SLOTS);
      for (const [i, start] of starts.entries()) {
        const { res, url } = await b.browse(start.headers.location!, { user: 'bob', password: 'bob-pw' });
        assert.equal(res.status, 200, `round ${round}, tab ${i}: ${res.status}`);
        assert.equal(url, tabs[i]);
      }
      assert.deepEqual(logins(b), [], 'each callback cleared its own');
    }
    // Starts at the same instant can each keep the newest LOGIN_SLOTS - 1 they see besides their own;
    // the next start cuts the browser back to LOGIN_SLOTS.
    const b = new Browser();
    for (let i = 0; i < LOGIN_SLOTS - 1; i++) await b.get(`${s.origin('web')}/before-${i}`);
    await Promise.all([1, 2, 3].map((i) => b.get(`${s.origin('web')}/burst-${i}`)));
    assert.equal(logins(b).length, LOGIN_SLOTS - 1 + 3);
    const last = await b.get(`${s.origin('web')}/after`);
    assert.equal(logins(b).length, LOGIN_SLOTS);
    assert.equal([last.headers['set-cookie'] ?? []].flat().filter((c) => /Max-Age=0/.test(c)).length, 3);
    assert.equal((await b.browse(last.headers.location!, { user: 'bob', password: 'bob-pw' })).url, `${s.origin('web')}/after`);
  });

  it('a callback whose sign-in this browser no longer holds, in a browser already signed in to the app (a sibling tab finished first): the app root, not a 400', async () => {
    const b = new Browser();
    const callback = await codeFor(b);
    const host = new URL(s.origin('web')).host;
    assert.equal((await b.get(callback)).status, 302);
    assert.ok(b.cookieHeader(host).includes('drawbridge_session='));
    // The callback again (back button, or a sibling tab's whose login cookie is gone): no sign-in to finish, but signed in.
    const again = await b.get(callback);
    assert.equal(again.status, 302);
    assert.equal(again.headers.location, `${s.origin('web')}/`);
    // Without a session it is the 400 it was.
    assert.equal((await new Browser().get(callback)).status, 400);
  });

  it('a browser whose cookies are over the header limit gets the 431 as a page; an API client as problem+json', async () => {
    const send = (accept: string, cookie = Array.from({ length: 40 }, (_, i) => `drawbridge_login_${i}=${'A'.repeat(430)}`).join('; '), more = '', splitAt = 0) =>
      new Promise<string>((resolve, reject) => {
        const chunks: Buffer[] = [];
        const head = `GET /.drawbridge/callback?state=x&drawbridge_login_target=1 HTTP/1.1\r\nHost: ${new URL(s.origin('web')).host}\r\nAccept: ${accept}\r\nCookie: ${cookie}\r\n${more}\r\n`;
        // (split: the head in two reads, as over https, where a TLS record holds at most 16 KiB)
        const socket = net.connect(s.gw.port, '127.0.0.1', () => {
          socket.write(splitAt ? head.slice(0, splitAt) : head);
          if (splitAt) setTimeout(() => socket.write(head.slice(splitAt)), 50);
        });
        socket.on('data', (c) => chunks.push(c)).on('end', () => resolve(Buffer.concat(chunks).toString())).on('error', reject);
      });
    const expired = (answer: string) => [...answer.matchAll(/^set-cookie: (.*)\r$/gim)].map((m) => m[1]);
    const page = await send('text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8');
    assert.match(page, /^HTTP\/1\.1 431 /);
    assert.match(page, /content-type: text\/html/i);
    assert.match(page, /This corporate app can't be accessed[\s\S]*Clearing the cookies of this site/);
    // The login cookies in the request are expired (a bounded number per answer, the next answer takes the rest), nothing of the request line's.
    assert.deepEqual(expired(page), Array.from({ length: 16 }, (_, i) => `drawbridge_login_${i}=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax`));
    const problem = await send('application/json');
    assert.match(problem, /^HTTP\/1\.1 431 /);
    assert.match(problem, /content-type: application\/problem\+json/i);
    assert.equal(expired(problem).length, 16);
    // The https names with the attributes they were set with; the app's own cookies are left alone.
    const big = `app_pref=${'p'.repeat(9000)}; __Host-drawbridge_login_Ab3-x_Yz=${'A'.repeat(4000)}; __Host-drawbridge_login_0=${'B'.repeat(4000)}`;
    assert.deepEqual(expired(await send('text/html', big)), ['__Host-drawbridge_login_Ab3-x_Yz=; Path=/; Max-Age=0; HttpOnly; Secure; SameSite=Lax', '__Host-drawbridge_login_0=; Path=/; Max-Age=0; HttpOnly; Secure; SameSite=Lax']);
    // A head that arrives in several reads: every login cookie is seen, not only those of the last read.
    const eight = Array.from({ length: 8 }, (_, i) => `drawbridge_login_${'abcdefgh'[i]!.repeat(8)}=${'C'.repeat(1790)}`).join('; ') + `; app_pref=${'p'.repeat(3000)}`;
    assert.equal(expired(await send('text/html', eight, '', 6000)).length, 8);
    // The 431 for too many header lines, too.
    const lines = await send('text/html', 'drawbridge_login_Ab3-x_Yz=x; theme=dark', 'X-A: 1\r\n'.repeat(2000));
    assert.match(lines, /^HTTP\/1\.1 431 /);
    assert.deepEqual(expired(lines), ['drawbridge_login_Ab3-x_Yz=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax']);
  });

  it('a sign-in start expires as many login cookies as the 431 does at most, so a request cannot buy an answer many times its size', async () => {
    const host = new URL(s.origin('web')).host;
    // 545 names in 15.9 KB: the answer had 546 Set-Cookie lines (46 KB)
    const names = Array.from({ length: 545 }, (_, i) => `drawbridge_login_${randomBytes(6).toString('base64url').slice(0, 7)}${i % 10}`);
    const start = await request(`${s.gw.url}/spray`, { headers: { host, accept: 'text/html', cookie: names.map((n) => `${n}=x`).join('; ') } });
    assert.equal(start.status, 302);
    const set = [start.headers['set-cookie'] ?? []].flat();
    assert.deepEqual(set.filter((c) => /Max-Age=0/.test(c)), names.slice(0, 16).map((n) => `${n}=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax`));
    assert.equal(set.filter((c) => /Max-Age=600/.test(c)).length, 1, 'and the new sign-in');
    // A browser's own few: every one that must go still goes in one answer.
    const b = new Browser();
    for (let i = 0; i < LOGIN_SLOTS + 2; i++) await b.get(`${s.origin('web')}/a${i}`);
    assert.equal([...b.jar.get(host)!.keys()].filter((k) => k.startsWith('drawbridge_login_')).length, LOGIN_SLOTS);
  });

  it('a long return URL never makes a login cookie the browser drops, and another site cannot lock the host out with them (431)', async () => {
    // High entropy, so deflate cannot shrink it: the audit's login cookies were 4,510 bytes (dropped by
    // Chromium: the callback was a 400 forever) and, at 3,550 characters, 3,990 bytes each.
    const query = (n: number) => `?q=${randomBytes(n).toString('base64url').slice(0, n)}`;
    const b = new Browser();
    const start = await b.get(`${s.origin('web')}/deep${query(4000)}`);
    const login = [start.headers['set-cookie'] ?? []].flat().find((c) => c.startsWith('drawbridge_login_'))!;
    assert.ok(login.length <= MAX_LOGIN_COOKIE_BYTES, `${login.length} bytes`);
    const { res, url } = await b.browse(start.headers.location!, { user: 'bob', password: 'bob-pw' });
    assert.equal(res.status, 200);
    assert.equal(url, `${s.origin('web')}/`, 'the app root instead');
    // A deep link of a usual length still comes back exactly.
    const shorter = `${s.origin('web')}/deep${query(900)}`;
    assert.equal((await new Browser().browse(shorter, { user: 'bob', password: 'bob-pw' })).url, shorter);
    // Sign-ins started by another site (top-level navigations) and never finished: the host still answers.
    const victim = new Browser();
    for (let i = 0; i < LOGIN_SLOTS; i++) assert.equal((await victim.get(`${s.origin('web')}/x${i}${query(3550)}`)).status, 302);
    const after = await victim.get(`${s.origin('web')}/`);
    assert.equal(after.status, 302, `${after.status}: ${victim.cookieHeader(new URL(s.origin('web')).host).length} bytes of cookies`);
  });

  /** Opens a WebSocket to the Ws app and sends a ping: the echo (`message:ping`), or how it was refused (`status:401`). */
  const pingOver = (headers: Record<string, string>) =>
    new Promise<string>((resolve) => {
      const ws = new WebSocket(`ws://127.0.0.1:${s.gw.port}/ws`, { headers });
      ws.on('open', () => ws.send('ping'));
      ws.on('message', (m) => {
        resolve(`message:${m}`);
        ws.close();
      });
      ws.on('unexpected-response', (_req, res) => resolve(`status:${res.statusCode}`));
      ws.on('error', (e) => resolve(`error:${e.message}`));
    });

  it('WebSocket upgrades need the session too; with it they reach the app without the gateway cookie', async () => {
    const b = new Browser();
    await b.browse(`${s.origin('ws')}/`, { user: 'bob', password: 'bob-pw' });
    const host = new URL(s.origin('ws')).host;
    const cookie = b.cookieHeader(host) + '; app_cookie=1';
    const open = (headers: Record<string, string>) => pingOver({ host, ...headers });
    assert.equal(await open({}), 'status:401');
    const before = s.backend.received.length;
    assert.equal(await open({ cookie }), 'message:ping');
    assert.equal(s.backend.received[before]!.headers.cookie, 'app_cookie=1');
  });

  it("a WebSocket with the session cookie opens from the app's own pages and those of websocketOrigins only: another app's page gets 403 and the app sees nothing", async () => {
    const b = new Browser();
    await b.browse(`${s.origin('ws')}/`, { user: 'bob', password: 'bob-pw' });
    const host = new URL(s.origin('ws')).host;
    const cookie = b.cookieHeader(host);
    const open = (origin: string) => pingOver({ host, cookie, origin });
    assert.equal(await open(s.origin('ws')), 'message:ping');
    assert.equal(await open('https://dash.example.test'), 'message:ping');
    const before = s.backend.received.length;
    // a sibling host (the same site, so SameSite cookies go along), a sandboxed page, and a look-alike
    // (mut32) and ones that end with the app's host: another scheme, a host with a longer name
    for (const origin of [s.origin('web'), 'null', `${s.origin('ws')}.evil.test`, 'https://dash.example.test:8443', `${s.origin('ws')}, ${s.origin('web')}`, `https://${host}`, `http://evil${host}`]) {
      assert.equal(await open(origin), 'status:403', origin);
    }
    assert.equal(s.backend.received.length, before, 'nothing reached the app');
    const refused = s.gw.logs.filter((l) => l.msg === 'request' && l.status === 403 && l.app === 'Ws');
    assert.match(JSON.stringify(refused.at(-1)?.reasons), /another origin/);
  });

  it('sign-out closes the WebSockets its session opened, and only those', async () => {
    const host = new URL(s.origin('ws')).host;
    const signedIn = async () => {
      const b = new Browser();
      await b.browse(`${s.origin('ws')}/`, { user: 'bob', password: 'bob-pw' });
      const cookie = b.cookieHeader(host);
      const ws = new WebSocket(`ws://127.0.0.1:${s.gw.port}/ws`, { headers: { host, cookie } });
      await new Promise((r, j) => (ws.once('open', r), ws.once('unexpected-response', () => j(new Error('refused')))));
      const closed = new Promise<number>((r) => ws.once('close', () => r(Date.now())));
      return { b, ws, closed };
    };
    const leaving = await signedIn();
    const staying = await signedIn();
    const t0 = Date.now();
    await leaving.b.get(`${s.origin('ws')}/.drawbridge/sign-out`, { 'sec-fetch-site': 'same-origin', 'sec-fetch-mode': 'navigate' });
    assert.ok((await leaving.closed) - t0 < 2000);
    assert.equal(staying.ws.readyState, WebSocket.OPEN);
    const echo = new Promise((r) => staying.ws.once('message', (m) => r(String(m))));
    staying.ws.send('still here');
    assert.equal(await echo, 'still here');
    assert.ok(s.gw.logs.some((l) => l.msg === 'WebSocket closed: its session was signed out'));
    staying.ws.close();
  });

  it('a WebSocket the app was still switching to when its session was signed out is closed at the 101', async () => {
    const host = new URL(s.origin('ws')).host;
    const b = new Browser();
    await b.browse(`${s.origin('ws')}/`, { user: 'carol', password: 'carol-pw' });
    // the app takes 800 ms to answer the upgrade; the sign-out lands in between
    const ws = new WebSocket(`ws://127.0.0.1:${s.gw.port}/ws?ms=800`, { headers: { host, cookie: b.cookieHeader(host) } });
    ws.on('error', () => undefined);
    let openedAt = 0;
    ws.once('open', () => (openedAt = Date.now()));
    const closed = new Promise<number>((r) => ws.once('close', () => r(Date.now())));
    await new Promise((r) => setTimeout(r, 200));
    await b.get(`${s.origin('ws')}/.drawbridge/sign-out`, { 'sec-fetch-site': 'same-origin', 'sec-fetch-mode': 'navigate' });
    const at = await Promise.race([closed, new Promise<never>((_, j) => setTimeout(() => j(new Error('the WebSocket is still open 3 s after the sign-out')), 3000))]);
    assert.ok(!openedAt || at - openedAt < 500, `closed ${at - openedAt} ms after the 101`);
    assert.ok(s.gw.logs.some((l) => l.msg === 'WebSocket closed: its session was signed out' && l.user === 'carol'));
  });

  it('forwardBearerToken: true sends the verified token on to the app', async () => {
    const token = await userToken(s, 'bob', 'bob-pw', 'api://web');
    const before = s.backend.received.length;
    const res = await new Browser().get(`${s.origin('app')}/x`, { authorization: `Bearer ${token}` });
    assert.equal(res.status, 200);
    assert.equal(s.backend.received[before]!.headers.authorization, `Bearer ${token}`);
  });

  it("a client secret the provider does not accept (expired, rotated): 502 saying it is the gateway's side, logged at error naming identity.clientSecret; the right one signs in again", async () => {
    const original = readFileSync(s.gw.configFile, 'utf8');
    writeFileSync(s.gw.configFile, original.replace(`clientSecret: ${CLIENT_SECRET}`, 'clientSecret: an-expired-secret-0123456789'));
    assert.equal(await s.gw.server.reload('test'), 'success');
    try {
      const b = new Browser();
      const { res, url } = await b.browse(`${s.origin('web')}/rotated`, { user: 'bob', password: 'bob-pw' });
      assert.match(url, /\/\.drawbridge\/callback\?/);
      assert.equal(res.status, 502);
      assert.match(res.body, /failing on the gateway&#39;s side|failing on the gateway's side/);
      assert.match(res.body, /Signing in again will not help/);
      const logged = s.gw.logs.find((l) => l.correlationId === res.headers['x-correlation-id'] && l.level === 50);
      assert.match(String((logged?.err as { message?: string })?.message), /refused the gateway's client credentials \(invalid_client\): check identity\.clientId and identity\.clientSecret/);
      assert.equal(s.backend.received.filter((r) => r.url === '/rotated').length, 0);
    } finally {
      writeFileSync(s.gw.configFile, original);
      assert.equal(await s.gw.server.reload('test'), 'success');
    }
    const { res } = await new Browser().browse(`${s.origin('web')}/rotated`, { user: 'bob', password: 'bob-pw' });
    assert.equal(res.status, 200);
  });

  it('provider unreachable: 503 page for browsers and API clients, nobody gets through, and it recovers', async () => {
    const backend = await startEchoBackend();
    const gw = await startGateway(gatewayYaml('http://127.0.0.1:1', [SECRET_A], defaultApps(backend.url)));
    try {
      const page = await request(`${gw.url}/x`, { headers: { host: 'web.localhost', accept: 'text/html' } });
      assert.equal(page.status, 503);
      assert.match(page.body, /sign-in service cannot be reached/);
      const api = await request(`${gw.url}/x`, { headers: { host: 'web.localhost', authorization: 'Bearer a.b.c' } });
      assert.equal(api.status, 503);
      assert.equal(backend.received.length, 0);
      assert.equal((await request(`${gw.url}/x`, { headers: { host: 'open.localhost' } })).status, 200, 'passthrough unaffected');
      writeFileSync(gw.configFile, gatewayYaml(s.idp.issuer, [SECRET_A], defaultApps(backend.url)));
      assert.equal(await gw.server.reload('test'), 'success');
      const ok = await request(`${gw.url}/x`, { headers: { host: `web.localhost:${gw.port}`, accept: 'text/html' } });
      assert.equal(ok.status, 302);
      assert.ok(ok.headers.location!.startsWith(s.idp.issuer));
      void CLIENT_SECRET;
    } finally {
      await gw.stop();
      await backend.close();
    }
  });
});
