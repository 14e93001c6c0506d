import assert from 'node:assert/strict';
import { chromium, type Browser, type Page } from 'playwright-core';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { eventually, request } from '../support/harness.js';
import { auditPayloads, defaultApps, startStack, type Stack } from './support.js';

const ARGS = ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic'];

/** more apps under path prefixes on one host than a browser follows redirects in a row */
const MANY = Array.from({ length: 24 }, (_, i) => `m${String(i).padStart(2, '0')}`);

describe('identity: the whole browser flow in Chromium', function () {
  this.timeout(60_000);
  let s: Stack;
  let browser: Browser;
  before(async () => {
    s = await startStack({
      apps: (b) => `${defaultApps(b)}
  - name: Pre
    externalUrl: http://prefix.localhost/pre/
    internalUrl: ${b}/pre/
    preAuth: oidc
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
${MANY.map((p) => `  - name: Many${p}\n    externalUrl: http://other.localhost/${p}/\n    internalUrl: ${b}/\n    preAuth: oidc\n`).join('')}`,
    });
    browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ARGS });
  });
  after(async () => {
    await browser?.close();
    await s?.stop();
  });

  it('bob opens a deep link, signs in at the provider and lands on it', async () => {
    const ctx = await browser.newContext();
    const page = await ctx.newPage();
    const deep = `${s.origin('web')}/reports/q3?year=2026`;
    await page.goto(deep);
    assert.ok(page.url().startsWith(s.idp.issuer + '/interaction/'), page.url());
    assert.match(await page.textContent('body') ?? '', /for the demo and tests only/);
    await page.fill('#username', 'bob');
    await page.fill('#password', 'bob-pw');
    await Promise.all([page.waitForURL((u) => u.href.startsWith(s.origin('web') + '/reports')), page.click('button[type=submit]')]);
    assert.equal(page.url(), deep);
    const echoed = JSON.parse((await page.textContent('body'))!);
    assert.equal(echoed.url, '/reports/q3?year=2026');
    assert.equal(echoed.headers.cookie, undefined, 'the gateway cookie never reaches the app');
    const cookies = await ctx.cookies(s.origin('web'));
    const session = cookies.find((c) => c.name === 'drawbridge_session');
    assert.ok(session, JSON.stringify(cookies));
    assert.equal(session.httpOnly, true);
    assert.equal(session.expires, -1, 'not persistent by default');
    // Another app host does not accept this session: it asks to sign in (at the provider, which remembers bob).
    await page.goto(`${s.origin('api')}/`);
    assert.ok(!page.url().startsWith(s.origin('web')));
    await ctx.close();
  });

  /** alice at the provider: password, then her one-time code, back on /start */
  async function signInAlice(page: Page): Promise<void> {
    await page.goto(`${s.origin('web')}/start`);
    await page.fill('#username', 'alice');
    await page.fill('#password', 'alice-pw');
    await Promise.all([page.waitForSelector('#code'), page.click('button[type=submit]')]);
    await page.fill('#code', s.codes.get('alice')!);
    await Promise.all([page.waitForURL(`${s.origin('web')}/start`), page.click('button[type=submit]')]);
  }

  it('alice signs in with her one-time code; sign-out ends the session', async () => {
    const ctx = await browser.newContext();
    const page = await ctx.newPage();
    await signInAlice(page);
    await page.goto(`${s.origin('web')}/.drawbridge/me`);
    const me = JSON.parse((await page.textContent('body'))!);
    assert.equal(me.user, 'alice');
    assert.equal(me.claims.acr, 'mfa');
    // Another site cannot sign her out by sending her to the sign-out URL (a top-level
    // navigation, which SameSite=Lax cookies do not stop): she gets a page with a button.
    const signOut = `${s.origin('web')}/.drawbridge/sign-out`;
    const elsewhere = `http://elsewhere.localhost:${new URL(s.origin('web')).port}/`;
    await page.route(elsewhere, (r) => r.fulfill({ contentType: 'text/html', body: `<meta http-equiv="refresh" content="0;url=${signOut}">` }));
    await page.goto(elsewhere);
    await page.waitForURL(signOut);
    await page.waitForSelector('form[method=post] button');
    const still = await page.goto(`${s.origin('web')}/.drawbridge/me`);
    assert.equal(still!.status(), 200);
    // The button on that page signs her out (a POST from the site's own origin), and so
    // does a sign-out link on one of the site's pages, like the demo app's.
    await page.goto(elsewhere);
    await page.waitForSelector('form[method=post] button');
    await Promise.all([page.waitForURL(`${s.origin('web')}/.drawbridge/signed-out`), page.click('form[method=post] button')]);
    assert.equal((await page.goto(`${s.origin('web')}/.drawbridge/me`))!.status(), 401);
    await signInAlice(page);
    await page.route(`${s.origin('web')}/with-link`, (r) => r.fulfill({ contentType: 'text/html', body: '<a id="out" href="/.drawbridge/sign-out">Sign out</a>' }));
    await page.goto(`${s.origin('web')}/with-link`);
    await Promise.all([page.waitForURL(`${s.origin('web')}/.drawbridge/signed-out`), page.click('#out')]);
    assert.match((await page.textContent('h1'))!, /signed out/);
    const res = await page.goto(`${s.origin('web')}/.drawbridge/me`);
    assert.equal(res!.status(), 401);
    await ctx.close();
  });

  it('after sign-out, Back does not show the private page from the cache: it asks again, and sign-in is required', async () => {
    const ctx = await browser.newContext();
    const page = await ctx.newPage();
    const deep = `${s.origin('web')}/private?acct=42`;
    await page.goto(deep);
    await page.fill('#username', 'bob');
    await page.fill('#password', 'bob-pw');
    const [shown] = await Promise.all([page.waitForResponse((r) => r.url() === deep), page.click('button[type=submit]')]);
    await page.waitForURL(deep);
    // the app said nothing of caching: the signed-in user's page is marked private
    assert.equal(shown.headers()['cache-control'], 'private');
    // a sign-out link on the page itself, as an app's menu has one
    await page.evaluate(() => document.body.insertAdjacentHTML('beforeend', '<a id="out" href="/.drawbridge/sign-out">Sign out</a>'));
    await Promise.all([page.waitForURL(`${s.origin('web')}/.drawbridge/signed-out`), page.click('#out')]);
    const before = s.backend.received.length;
    await page.goBack();
    await page.waitForLoadState();
    assert.ok(page.url().startsWith(s.idp.issuer + '/interaction/'), `Back showed ${page.url()}`);
    assert.equal(s.backend.received.length, before, 'nothing reached the app');
    await ctx.close();
  });

  it('an app under a path prefix opened without its trailing slash signs in once and lands on the prefix', async () => {
    const ctx = await browser.newContext();
    const page = await ctx.newPage();
    const hops: string[] = [];
    page.on('response', (r) => hops.push(`${r.status()} ${r.url()}`));
    await page.goto(`${s.origin('prefix')}/pre?tab=2`);
    await page.fill('#username', 'bob');
    await page.fill('#password', 'bob-pw');
    await Promise.all([page.waitForURL((u) => u.href.startsWith(s.origin('prefix') + '/pre/')), page.click('button[type=submit]')]);
    assert.equal(page.url(), `${s.origin('prefix')}/pre/?tab=2`, hops.join('\n'));
    assert.equal(JSON.parse((await page.textContent('body'))!).url, '/pre/?tab=2');
    // Typed again later: straight to the app, no trip to the provider.
    hops.length = 0;
    await page.goto(`${s.origin('prefix')}/pre`);
    assert.equal(page.url(), `${s.origin('prefix')}/pre/`);
    assert.ok(hops.every((h) => h.includes(s.origin('prefix'))), hops.join('\n'));
    await ctx.close();
  });

  it('one sign-out, from the host root or from a prefix app\'s own link, ends the sessions of the apps under path prefixes too, whose cookies it is never sent', async () => {
    const ctx = await browser.newContext();
    const page = await ctx.newPage();
    const o = s.origin('app');
    await page.goto(`${o}/home`);
    await page.fill('#username', 'bob');
    await page.fill('#password', 'bob-pw');
    await Promise.all([page.waitForURL(`${o}/home`), page.click('button[type=submit]')]);
    // the provider remembers bob: the prefix apps' sign-ins come straight back
    for (const p of ['/a/x', '/b/x']) {
      await page.goto(o + p);
      assert.equal(page.url(), o + p);
    }
    // every cookie the context holds (cookies(url) gives only those that URL's path would be sent)
    const saved = (await ctx.cookies()).filter((c) => c.name === 'drawbridge_session');
    assert.deepEqual(saved.map((c) => c.path).sort(), ['/', '/a/', '/b/']);
    // who is signed in to AppA, at its prefix and through the root address a page script may use
    await page.goto(`${o}/a/.drawbridge/me`);
    const me = JSON.parse((await page.textContent('body'))!);
    assert.deepEqual([me.app, me.user], ['AppA', 'bob']);
    await page.goto(`${o}/a/x`);
    const viaRoot = await page.evaluate(() => fetch('/.drawbridge/me?path=/a/').then((r) => r.json()));
    assert.deepEqual([viaRoot.app, viaRoot.user], ['AppA', 'bob']);

    // a "Sign out" link on a page of AppB, relative to its prefix (/b/.drawbridge/sign-out): the chain
    // starts at the root, so the root app and AppA are signed out too
    await page.route(`${o}/b/with-link`, (r) => r.fulfill({ contentType: 'text/html', body: '<a id="out" href=".drawbridge/sign-out">Sign out</a>' }));
    await page.goto(`${o}/b/with-link`);
    await Promise.all([page.waitForURL(`${o}/.drawbridge/signed-out`), page.click('#out')]);
    assert.deepEqual((await ctx.cookies()).filter((c) => c.name === 'drawbridge_session'), []);
    // a copy of each cookie taken before is refused: back to sign-in
    for (const c of saved) {
      const res = await request(`http://127.0.0.1:${s.gw.port}${c.path}x`, { headers: { host: new URL(o).host, cookie: `drawbridge_session=${c.value}`, accept: 'text/html' } });
      assert.equal(res.status, 302, `${c.path}: ${res.status}`);
      assert.ok(res.headers.location!.startsWith(s.idp.issuer), res.headers.location);
    }
    const audit = join(s.gw.dir, 'state', 'audit', 'audit.log');
    const signOuts = await eventually(() => {
      const lines = existsSync(audit) ? readFileSync(audit, 'utf8').trim().split('\n').map((l) => JSON.parse(l)) : [];
      const got = lines.filter((l) => l.decision === 'sign-out' && l.user === 'bob' && ['Home', 'AppA', 'AppB'].includes(l.app));
      return got.length === 3 ? got : undefined;
    });
    assert.deepEqual(signOuts!.map((l) => l.app), ['Home', 'AppA', 'AppB']);

    // Sent there by another site, bob gets the page with a button; its POST goes along the chain
    // as a POST from this origin (307), so each step needs no button of its own.
    await page.goto(`${o}/home`);
    await page.fill('#username', 'bob');
    await page.fill('#password', 'bob-pw');
    await Promise.all([page.waitForURL(`${o}/home`), page.click('button[type=submit]')]);
    for (const p of ['/a/x', '/b/x']) await page.goto(o + p);
    const again = (await ctx.cookies()).filter((c) => c.name === 'drawbridge_session');
    assert.equal(again.length, 3);
    const elsewhere = `http://elsewhere.localhost:${s.gw.port}/`;
    await page.route(elsewhere, (r) => r.fulfill({ contentType: 'text/html', body: `<meta http-equiv="refresh" content="0;url=${o}/.drawbridge/sign-out">` }));
    await page.goto(elsewhere);
    await page.waitForSelector('form[method=post] button');
    await Promise.all([page.waitForURL(`${o}/.drawbridge/signed-out`), page.click('form[method=post] button')]);
    assert.deepEqual((await ctx.cookies()).filter((c) => c.name === 'drawbridge_session'), []);
    for (const c of again) {
      const res = await request(`http://127.0.0.1:${s.gw.port}${c.path}x`, { headers: { host: new URL(o).host, cookie: `drawbridge_session=${c.value}`, accept: 'text/html' } });
      assert.equal(res.status, 302, `${c.path}: ${res.status}`);
    }
    await ctx.close();
  });

  it('a sign-out through more apps under prefixes than a browser follows redirects in a row reaches the end', async () => {
    const ctx = await browser.newContext();
    const page = await ctx.newPage();
    const o = s.origin('other');
    await page.goto(`${o}/${MANY[0]}/`);
    await page.fill('#username', 'bob');
    await page.fill('#password', 'bob-pw');
    await Promise.all([page.waitForURL(`${o}/${MANY[0]}/`), page.click('button[type=submit]')]);
    for (const p of MANY.slice(1)) await page.goto(`${o}/${p}/`);
    assert.equal((await ctx.cookies()).filter((c) => c.name === 'drawbridge_session').length, MANY.length);
    await page.route(`${o}/with-link`, (r) => r.fulfill({ contentType: 'text/html', body: '<a id="out" href="/.drawbridge/sign-out">Sign out</a>' }));
    await page.goto(`${o}/with-link`);
    await Promise.all([page.waitForURL(`${o}/.drawbridge/signed-out`), page.click('#out')]);
    assert.deepEqual((await ctx.cookies()).filter((c) => c.name === 'drawbridge_session').map((c) => c.path), []);
    await ctx.close();
  });

  it('sign-ins started again and again (or by another site) never lock the host out: a few login cookies at most', async () => {
    const ctx = await browser.newContext();
    const page = await ctx.newPage();
    // Each navigation to the app starts a sign-in and ends at the provider's page; nobody finishes them.
    for (let i = 0; i < 40; i++) await page.goto(`${s.origin('web')}/p${i}`);
    const logins = (await ctx.cookies(s.origin('web'))).filter((c) => c.name.startsWith('drawbridge_login_'));
    assert.ok(logins.length <= 4, `${logins.length} login cookies`);
    await page.goto(`${s.origin('web')}/last?x=1`);
    await page.fill('#username', 'bob');
    await page.fill('#password', 'bob-pw');
    await Promise.all([page.waitForURL(`${s.origin('web')}/last?x=1`), page.click('button[type=submit]')]);
    assert.equal(JSON.parse((await page.textContent('body'))!).headers.cookie, undefined, 'the login cookies never reach the app');
    await ctx.close();
  });

  it('two tabs signing in at once each land on their own URL', async () => {
    const ctx = await browser.newContext();
    const [a, b] = [await ctx.newPage(), await ctx.newPage()];
    await a.goto(`${s.origin('web')}/tab-a`);
    await b.goto(`${s.origin('web')}/tab-b`);
    for (const [p, where] of [[a, 'tab-a'], [b, 'tab-b']] as const) {
      await p.fill('#username', 'bob');
      await p.fill('#password', 'bob-pw');
      await Promise.all([p.waitForURL(`${s.origin('web')}/${where}`), p.click('button[type=submit]')]);
    }
    await ctx.close();
  });

  it('four tabs opened at the same instant while the provider has a session (a browser restoring its tabs) each land on their own URL', async () => {
    const ctx = await browser.newContext();
    const first = await ctx.newPage();
    await first.goto(`${s.origin('web')}/start`);
    await first.fill('#username', 'bob');
    await first.fill('#password', 'bob-pw');
    await Promise.all([first.waitForURL(`${s.origin('web')}/start`), first.click('button[type=submit]')]);
    const pages = await Promise.all(Array.from({ length: 4 }, () => ctx.newPage()));
    // Before, they shared a random slot from one Cookie header: 7 trials in 8 had a tab end on the callback's 400.
    for (let t = 0; t < 3; t++) {
      await ctx.clearCookies({ domain: 'app.localhost' });
      const targets = pages.map((_, i) => `${s.origin('app')}/${i === 1 ? 'a/' : ''}tab${i}?t=${t}`);
      await Promise.all(pages.map((p, i) => p.goto(targets[i])));
      assert.deepEqual(pages.map((p) => p.url()), targets);
    }
    await ctx.close();
  });

  it('deep links with encoded spaces, backslashes or control characters and path parameters come back exactly after sign-in', async () => {
    const ctx = await browser.newContext();
    const page = await ctx.newPage();
    for (const deep of ['/Shared%20Documents/Forms/AllItems.aspx', '/x?path=C%3A%5Cdir%5Cfile', '/x?msg=line1%0Aline2&q=%09tab', '/app/page.jsp;jsessionid=ABC123?x=1']) {
      await ctx.clearCookies();
      await page.goto(s.origin('web') + deep);
      await page.fill('#username', 'bob');
      await page.fill('#password', 'bob-pw');
      await Promise.all([page.waitForURL((u) => u.href.startsWith(s.origin('web'))), page.click('button[type=submit]')]);
      assert.equal(page.url(), s.origin('web') + deep);
      assert.equal(JSON.parse((await page.textContent('body'))!).url, deep);
    }
    await ctx.close();
  });

  it('the browser audit\'s 26 return-URL payloads all land on the app\'s own origin', async () => {
    const ctx = await browser.newContext();
    const page = await ctx.newPage();
    await page.goto(`${s.origin('web')}/`);
    await page.fill('#username', 'bob');
    await page.fill('#password', 'bob-pw');
    await Promise.all([page.waitForURL(`${s.origin('web')}/`), page.click('button[type=submit]')]);
    for (const p of auditPayloads(s.origin('web'))) {
      await page.goto(`${s.origin('web')}/.drawbridge/sign-in?returnUrl=${encodeURIComponent(p)}`);
      assert.equal(new URL(page.url()).origin, s.origin('web'), `${JSON.stringify(p)} -> ${page.url()}`);
    }
    await ctx.close();
  });
});
