import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { SessionRevocations } from '../../src/identity/revocations.js';
import { request } from '../support/harness.js';
import { Browser, startStack, type Stack } from './support.js';

describe('identity: browser sign-in through the embedded provider (HTTP client)', function () {
  this.timeout(20_000);
  let s: Stack;
  before(async () => {
    s = await startStack();
  });
  after(async () => s?.stop());

  it('redirects a browser navigation to the provider with PKCE S256, state and nonce', async () => {
    const b = new Browser();
    const res = await b.get(`${s.origin('web')}/deep/link?x=1`);
    assert.equal(res.status, 302);
    const loc = new URL(res.headers.location!);
    assert.equal(loc.origin, s.idp.issuer);
    assert.equal(loc.searchParams.get('code_challenge_method'), 'S256');
    assert.ok(loc.searchParams.get('state'));
    assert.ok(loc.searchParams.get('nonce'));
    assert.equal(loc.searchParams.get('redirect_uri'), `${s.origin('web')}/.drawbridge/callback`);
    assert.equal(s.backend.received.length, 0);
  });

  it('signs bob in and lands on the deep link; the app sees neither the gateway cookies nor a token', async () => {
    const b = new Browser();
    const before = s.backend.received.length;
    const { res, url } = await b.browse(`${s.origin('web')}/deep/link?x=1`, { user: 'bob', password: 'bob-pw' });
    assert.equal(res.status, 200, res.body);
    assert.equal(url, `${s.origin('web')}/deep/link?x=1`);
    assert.equal(res.json().url, '/deep/link?x=1');
    const got = s.backend.received.slice(before);
    assert.equal(got.length, 1);
    assert.equal(got[0]!.headers.cookie, undefined);
    const me = await b.get(`${s.origin('web')}/.drawbridge/me`);
    assert.equal(me.status, 200);
    assert.equal(me.json().user, 'bob');
    assert.deepEqual(me.json().claims.amr, ['pwd']);
    assert.equal(typeof me.json().claims.auth_time, 'number');
  });

  it('alice needs the one-time code; her session says mfa', async () => {
    const b = new Browser();
    const { res } = await b.browse(`${s.origin('web')}/`, { user: 'alice', password: 'alice-pw', code: () => s.codes.get('alice') });
    assert.equal(res.status, 200, res.body);
    const me = (await b.get(`${s.origin('web')}/.drawbridge/me`)).json();
    assert.equal(me.user, 'alice');
    assert.equal(me.claims.acr, 'mfa');
    assert.ok(me.claims.amr.includes('mfa'));
    assert.deepEqual(me.groups, ['engineering', 'everyone']);
  });

  it('an API client without a token gets 401 with WWW-Authenticate: Bearer and JSON, never a redirect', async () => {
    const b = new Browser();
    for (const headers of [{ accept: 'application/json' }, { 'sec-fetch-mode': 'cors' }, { 'x-requested-with': 'XMLHttpRequest' }, { "sec-fetch-mode": "no-cors" }] as Record<string, string>[]) {
      const res = await b.get(`${s.origin('web')}/api`, headers);
      assert.equal(res.status, 401, JSON.stringify(headers));
      assert.match(String(res.headers['www-authenticate']), /^Bearer/);
      // problem+json like every other error, with OAuth's members beside the problem's
      assert.equal(res.headers['content-type'], 'application/problem+json');
      const problem = JSON.parse(res.body) as Record<string, unknown>;
      assert.equal(problem.status, 401);
      assert.equal(problem.title, 'Unauthorized');
      assert.equal(problem.correlationId, res.headers['x-correlation-id']);
      assert.equal(problem.error, 'unauthorized');
      assert.equal(problem.detail, problem.error_description);
      assert.equal(res.headers.location, undefined);
    }
    const post = await b.send('POST', `${s.origin('web')}/api`, {}, 'x');
    assert.equal(post.status, 401);
  });

  it('a form posted without a session gets a 401 page with a sign-in link back to it (or to the page of the app that sent it), not JSON and not a redirect', async () => {
    const b = new Browser();
    const nav = { accept: 'text/html,application/xhtml+xml', 'sec-fetch-mode': 'navigate', 'sec-fetch-dest': 'document', 'content-type': 'application/x-www-form-urlencoded' };
    const res = await b.send('POST', `${s.origin('web')}/orders/new?step=2`, nav, 'qty=3');
    assert.equal(res.status, 401);
    assert.equal(res.headers.location, undefined);
    assert.match(String(res.headers['www-authenticate']), /^Bearer/);
    assert.match(String(res.headers['content-type']), /^text\/html/);
    const href = /<a href="([^"]+)">Sign in again<\/a>/.exec(res.body)?.[1]?.replace(/&#(\d+);/g, (_, c) => String.fromCharCode(Number(c)));
    assert.equal(href, `/.drawbridge/sign-in?returnUrl=${encodeURIComponent('/orders/new?step=2')}`);
    assert.equal(s.backend.received.filter((r) => r.url.startsWith('/orders')).length, 0);
    const { url } = await b.browse(`${s.origin('web')}${href}`, { user: 'bob', password: 'bob-pw' });
    assert.equal(url, `${s.origin('web')}/orders/new?step=2`);
    // Sent from a page of the app (its Referer), the link comes back to that page, not to the
    // form's target as a GET; another site's page, or an odd one, is not where it goes.
    for (const [referer, back] of [
      [`${s.origin('web')}/orders/form?draft=1`, '/orders/form?draft=1'],
      ['https://elsewhere.test/orders/form', '/orders/new?step=2'],
      [`${s.origin('web')}/.drawbridge/sign-out`, '/'],
      // a same-origin page whose path begins with two slashes is not made into a link
      [`${s.origin('web')}//elsewhere.test/x`, '/orders/new?step=2'],
    ]) {
      const fromPage = await new Browser().send('POST', `${s.origin('web')}/orders/new?step=2`, { ...nav, referer }, 'qty=3');
      assert.equal(fromPage.status, 401);
      const link = /<a href="([^"]+)">Sign in again<\/a>/.exec(fromPage.body)?.[1]?.replace(/&#(\d+);/g, (_, c) => String.fromCharCode(Number(c)));
      assert.equal(link, `/.drawbridge/sign-in?returnUrl=${encodeURIComponent(back!)}`, referer);
    }
    // A script's POST still gets JSON.
    const api = await new Browser().send('POST', `${s.origin('web')}/orders/new`, { accept: 'application/json', 'sec-fetch-mode': 'cors' }, '{}');
    assert.equal(api.status, 401);
    assert.match(String(api.headers['content-type']), /json/);
  });

  it('assignment: bob (finance) and carol (user) get in, alice gets 403 Forbidden', async () => {
    for (const [user, code, want] of [['bob', 'bob-pw', 200], ['carol', 'carol-pw', 200], ['alice', 'alice-pw', 403]] as const) {
      const b = new Browser();
      const { res } = await b.browse(`${s.origin('finance')}/`, { user, password: code, code: () => s.codes.get(user) });
      assert.equal(res.status, want, `${user}: ${res.body.slice(0, 200)}`);
      if (want === 403) assert.match(res.body, /403 Forbidden/);
    }
  });

  it('a user added to the app\'s group at the provider after a 403 gets in by the page\'s "Sign in again" link, which replaces the session', async () => {
    const bob = s.idp.users.get('bob')!;
    const groups = bob.groups;
    bob.groups = ['everyone'];
    try {
      const b = new Browser();
      const { res } = await b.browse(`${s.origin('finance')}/ledger?y=1`, { user: 'bob', password: 'bob-pw' });
      assert.equal(res.status, 403);
      const href = /<a href="([^"]+)">Sign in again<\/a>/.exec(res.body)?.[1]?.replace(/&#(\d+);/g, (_, c) => String.fromCharCode(Number(c)));
      assert.equal(href, '/.drawbridge/sign-in?returnUrl=%2Fledger%3Fy%3D1');
      assert.equal((await b.get(`${s.origin('finance')}/ledger?y=1`, { accept: 'application/json' })).json().next, href, 'a script of the page gets it in problem+json');
      bob.groups = ['finance', 'everyone'];
      assert.equal((await b.get(`${s.origin('finance')}/ledger?y=1`)).status, 403, 'the session keeps the groups of its sign-in');
      // the provider's session answers at once: no password again, fresh groups
      const again = await b.browse(`${s.origin('finance')}${href}`);
      assert.equal(again.res.status, 200, again.res.body.slice(0, 200));
      assert.equal(again.url, `${s.origin('finance')}/ledger?y=1`);
    } finally {
      bob.groups = groups;
    }
  });

  it('passthrough apps keep working without identity', async () => {
    const res = await new Browser().get(`${s.origin('open')}/x`);
    assert.equal(res.status, 200);
  });

  it('sign-out ends the session', async () => {
    const b = new Browser();
    await b.browse(`${s.origin('web')}/`, { user: 'bob', password: 'bob-pw' });
    assert.equal((await b.get(`${s.origin('web')}/.drawbridge/me`)).status, 200);
    // a "Sign out" link on one of the site's own pages
    const out = await b.get(`${s.origin('web')}/.drawbridge/sign-out`, { 'sec-fetch-site': 'same-origin', 'sec-fetch-mode': 'navigate' });
    assert.equal(out.status, 302);
    assert.ok(out.headers.location!.startsWith(s.idp.issuer), out.headers.location);
    assert.equal((await b.get(`${s.origin('web')}/.drawbridge/me`)).status, 401);
    assert.equal((await b.get(`${s.origin('web')}/`)).status, 302);
  });

  it('sign-out revokes the session: a copy of the cookie taken before stops working too, also for a restarted gateway', async () => {
    const b = new Browser();
    await b.browse(`${s.origin('web')}/`, { user: 'bob', password: 'bob-pw' });
    const thief = new Browser();
    for (const [host, jar] of b.jar) thief.jar.set(host, new Map(jar));
    assert.equal((await thief.get(`${s.origin('web')}/.drawbridge/me`)).status, 200);
    const other = new Browser();
    await other.browse(`${s.origin('web')}/`, { user: 'bob', password: 'bob-pw' });

    const state = join(s.gw.dir, 'state');
    const revoked = () => readFileSync(join(state, 'sessions', 'revoked.jsonl'), 'utf8').trim().split('\n').filter(Boolean);
    const before = existsSync(join(state, 'sessions', 'revoked.jsonl')) ? revoked().length : 0;
    await b.get(`${s.origin('web')}/.drawbridge/sign-out`, { 'sec-fetch-site': 'same-origin', 'sec-fetch-mode': 'navigate' });
    assert.equal((await thief.get(`${s.origin('web')}/.drawbridge/me`)).status, 401);
    assert.equal((await thief.get(`${s.origin('web')}/`)).status, 302);
    // bob's session in another browser is his own and stays
    assert.equal((await other.get(`${s.origin('web')}/.drawbridge/me`)).status, 200);
    assert.ok(s.gw.logs.some((l) => l.msg === 'signed out: session revoked' && l.user === 'bob'));
    // what a gateway starting on this stateDir reads: the revoked session, not the live one
    const lines = revoked();
    assert.equal(lines.length, before + 1);
    const { j, exp } = JSON.parse(lines.at(-1)!);
    assert.ok(exp > Date.now() / 1000);
    assert.equal(SessionRevocations.read(state).has(j, Math.floor(Date.now() / 1000)), true);
  });

  it('sign-out cannot be triggered from another site: a cross-site GET or a prefetch gets a page with a button, a foreign POST 403', async () => {
    const b = new Browser();
    await b.browse(`${s.origin('web')}/`, { user: 'bob', password: 'bob-pw' });
    const signOut = `${s.origin('web')}/.drawbridge/sign-out`;
    const tries: [string, Record<string, string>, number][] = [
      ['GET', { 'sec-fetch-site': 'cross-site', 'sec-fetch-dest': 'image' }, 200],
      ['GET', { 'sec-fetch-site': 'same-site' }, 200],
      ['GET', { 'sec-fetch-site': 'same-origin', 'sec-purpose': 'prefetch' }, 200],
      ['GET', {}, 200], // a client that says nothing about where it comes from
      ['POST', { origin: 'http://evil.localhost:1', 'sec-fetch-site': 'cross-site' }, 403],
      ['POST', { origin: 'null' }, 403],
      ['POST', {}, 403],
      ['PUT', { origin: s.origin('web') }, 405],
    ];
    for (const [method, headers, status] of tries) {
      const res = await b.send(method, signOut, headers);
      assert.equal(res.status, status, `${method} ${JSON.stringify(headers)}`);
      assert.equal(res.headers['set-cookie'], undefined, `${method} ${JSON.stringify(headers)} must not clear cookies`);
      if (status === 200) assert.match(res.body, /<form method="post" action="\/\.drawbridge\/sign-out">/);
    }
    assert.equal((await b.get(`${s.origin('web')}/.drawbridge/me`)).status, 200, 'still signed in');
    // the button on that page: a POST from this site's origin
    const out = await b.send('POST', signOut, { origin: s.origin('web'), 'sec-fetch-site': 'same-origin', 'content-type': 'application/x-www-form-urlencoded' }, '');
    assert.equal(out.status, 302);
    assert.ok(out.headers.location!.startsWith(s.idp.issuer), out.headers.location);
    assert.equal((await b.get(`${s.origin('web')}/.drawbridge/me`)).status, 401);
  });
});

/**
 * Apps under a path prefix have their session cookie on Path=<prefix>, which a browser sends only
 * there: the gateway serves their sign-out and `me` under the prefix (<prefix>.drawbridge/). This
 * client sends every cookie whatever its path, so each app's session is kept in a browser of its own
 * and sent only where a real browser would send it (Chromium: browser.test.ts).
 */
describe('identity: sign-out and me for apps under a path prefix (HTTP client)', function () {
  this.timeout(30_000);
  let s: Stack;
  let o: string;
  before(async () => {
    s = await startStack({
      apps: (b) => `
  - name: Home
    externalUrl: http://app.localhost/
    internalUrl: ${b}/
    preAuth: oidc
  - name: AppA
    externalUrl: http://app.localhost/a/
    internalUrl: ${b}/a/
    preAuth: oidc
  - name: AppB
    externalUrl: http://app.localhost/b/
    internalUrl: ${b}/b/
    preAuth: oidc
  - name: Pass
    externalUrl: http://app.localhost/p/
    internalUrl: ${b}/p/
    preAuth: passthrough
`,
    });
    o = s.origin('app');
  });
  after(async () => s?.stop());

  it("a form posted without a session from a page of another app on the host gets a link back to the form's own app, not a sign-in to the other", async () => {
    const nav = { accept: 'text/html', 'sec-fetch-mode': 'navigate', 'sec-fetch-dest': 'document', 'content-type': 'application/x-www-form-urlencoded' };
    const linkOf = (body: string) => /<a href="([^"]+)">Sign in again<\/a>/.exec(body)?.[1]?.replace(/&#(\d+);/g, (_, c) => String.fromCharCode(Number(c)));
    for (const [referer, back] of [
      [`${o}/a/form`, '/orders'],
      [`${o}/root-page`, '/root-page'],
    ]) {
      const res = await new Browser().send('POST', `${o}/orders`, { ...nav, referer }, 'qty=1');
      assert.equal(res.status, 401);
      assert.equal(linkOf(res.body), `/.drawbridge/sign-in?returnUrl=${encodeURIComponent(back!)}`, referer);
    }
    // and the link signs in to the app that got the form, landing back on it
    const b = new Browser();
    const res = await b.send('POST', `${o}/orders`, { ...nav, referer: `${o}/a/form` }, 'qty=1');
    const { url } = await b.browse(`${o}${linkOf(res.body)}`, { user: 'bob', password: 'bob-pw' });
    assert.equal(url, `${o}/orders`);
    assert.equal((await b.get(`${o}/.drawbridge/me`, { accept: 'application/json' })).json().app, 'Home');
  });

  /** bob's session for the app at `prefix`, in a browser of its own */
  async function signedIn(prefix: string): Promise<{ b: Browser; cookie: string }> {
    const b = new Browser();
    const { url } = await b.browse(`${o}${prefix}x`, { user: 'bob', password: 'bob-pw' });
    assert.equal(url, `${o}${prefix}x`);
    return { b, cookie: b.cookieHeader(new URL(o).host) };
  }

  it('<prefix>.drawbridge/ is the gateway\'s: me and sign-out answer there, anything else is a 404 that reaches no backend', async () => {
    const a = await signedIn('/a/');
    const me = await a.b.get(`${o}/a/.drawbridge/me`);
    assert.equal(me.status, 200, me.body);
    assert.equal(me.json().app, 'AppA');
    assert.equal(me.json().user, 'bob');
    assert.equal(me.json().signOut, '/.drawbridge/sign-out');
    // the address callers used before: redirected to where the browser sends the app's cookie
    const viaRoot = await a.b.get(`${o}/.drawbridge/me?path=${encodeURIComponent('/a/reports')}`);
    assert.equal(viaRoot.status, 302);
    assert.equal(viaRoot.headers.location, '/a/.drawbridge/me');
    // ?path= names the app the router gives that path: /a/../b/x and /a//../b/x are AppB's requests
    for (const p of ['/a/../b/x', '/a/x/../../b/x']) assert.equal((await a.b.get(`${o}/.drawbridge/me?path=${encodeURIComponent(p)}`)).headers.location, '/b/.drawbridge/me', p);
    const before = s.backend.received.length;
    for (const path of ['/a/.drawbridge/anything-else', '/a/.drawbridge/callback', '/a/.drawbridge/sign-in', '/a/.drawbridge/', '/a/%2Edrawbridge/x', '/p/.drawbridge/x']) {
      const res = await a.b.get(o + path);
      assert.equal(res.status, 404, `${path}: ${res.status} ${res.body}`);
    }
    // a passthrough app has no sign-in: nothing to answer for
    assert.equal((await a.b.get(`${o}/p/.drawbridge/me`)).status, 404);
    assert.equal(s.backend.received.length, before, s.backend.received.slice(before).map((r) => r.url).join(' '));
    // deeper than the prefix, the path is the app's
    assert.equal((await a.b.get(`${o}/p/x/.drawbridge/x`)).status, 200);
    assert.equal(s.backend.received.at(-1)!.url, '/p/x/.drawbridge/x');
  });

  it('sign-out at the root goes on to each prefix app\'s step, which revokes the session the browser sends there; a browser without Sec-Fetch-Site clicks once', async () => {
    const home = await signedIn('/');
    const a = await signedIn('/a/');
    const b = await signedIn('/b/');
    const send = (method: string, path: string, cookie: string, headers: Record<string, string> = {}) => request(`http://127.0.0.1:${s.gw.port}${path}`, { method, headers: { host: new URL(o).host, cookie, accept: 'text/html', ...headers } });
    // such a browser is asked at each step, and the button posts to that step
    const ask = await send('GET', '/a/.drawbridge/sign-out?step=1', a.cookie);
    assert.equal(ask.status, 200);
    assert.match(ask.body, /<form method="post" action="\/a\/\.drawbridge\/sign-out\?step=1">/);
    assert.equal((await send('POST', '/a/.drawbridge/sign-out?step=1', a.cookie, { origin: 'http://evil.localhost:1' })).status, 403);
    assert.equal((await send('GET', '/a/.drawbridge/me', a.cookie)).status, 200, 'still signed in');
    // a prefix app's own link to its step (not the chain's) starts the chain at the root, POST kept a POST
    const direct = await send('GET', '/a/.drawbridge/sign-out', a.cookie, { 'sec-fetch-site': 'same-origin' });
    assert.deepEqual([direct.status, direct.headers.location], [302, `${o}/.drawbridge/sign-out`]);
    assert.equal((await send('POST', '/a/.drawbridge/sign-out', a.cookie, { origin: o })).status, 307);
    assert.equal((await send('GET', '/a/.drawbridge/me', a.cookie)).status, 200, 'still signed in: nothing ended before the root step');

    const form = { origin: o, 'content-type': 'application/x-www-form-urlencoded' };
    const atRoot = await send('POST', '/.drawbridge/sign-out', home.cookie, form);
    assert.equal(atRoot.status, 307, 'a POST stays a POST along the chain');
    assert.equal(atRoot.headers.location, `${o}/a/.drawbridge/sign-out?step=1`);
    // the prefix apps' cookies stay in the browser until their own step, or it would not send them there
    assert.deepEqual([atRoot.headers['set-cookie'] ?? []].flat().map((c) => /Path=[^;]*/i.exec(c)?.[0]), ['Path=/']);
    const atA = await send('POST', '/a/.drawbridge/sign-out?step=1', a.cookie, form);
    assert.equal(atA.status, 307);
    assert.equal(atA.headers.location, `${o}/b/.drawbridge/sign-out?step=1`);
    assert.deepEqual([atA.headers['set-cookie'] ?? []].flat().map((c) => /Path=[^;]*/i.exec(c)?.[0]), ['Path=/a/']);
    const atB = await send('POST', '/b/.drawbridge/sign-out?step=1', b.cookie, form);
    assert.equal(atB.status, 302, 'the provider is not posted to');
    assert.ok(atB.headers.location!.startsWith(s.idp.issuer), atB.headers.location);

    assert.equal((await send('GET', '/.drawbridge/me', home.cookie)).status, 401);
    assert.equal((await send('GET', '/a/.drawbridge/me', a.cookie)).status, 401);
    assert.equal((await send('GET', '/b/.drawbridge/me', b.cookie)).status, 401);
    for (const [app, id] of [['Home', atRoot], ['AppA', atA], ['AppB', atB]] as const) {
      assert.ok(s.gw.logs.some((l) => l.msg === 'signed out: session revoked' && l.app === app && l.user === 'bob' && l.correlationId === id.headers['x-correlation-id']), app);
    }
  });
});
