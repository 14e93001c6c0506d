import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { chromium, type Browser, type Page } from 'playwright-core';
import { eventually } from '../support/harness.js';
import { startStack, type Stack } from '../identity/support.js';

const ARGS = ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic'];

/**
 * The app portal as a user meets it in Chromium (portal.test.ts reads the same pages with a
 * cookie-jar client): sign in at gateway.publicUrl, open an app from the list (its own sign-in
 * passes through the provider's session without a password), sign out from the portal and from an
 * app, Back after sign-out, two tabs. Each host keeps its own session (identity/portal.ts): what
 * each sign-out leaves signed in is asserted here as what the user sees.
 */
describe('gateway: the app portal in Chromium', function () {
  this.timeout(120_000);
  let s: Stack;
  let browser: Browser;
  let portal: string;
  // the list links to the apps' configured addresses (no port); the test's gateway has one
  const withPort = (href: string) => {
    const u = new URL(href);
    u.port = String(s.gw.port);
    return u.href;
  };
  before(async () => {
    s = await startStack({
      publicUrl: 'http://portal.localhost',
      apps: (b) => `
  - name: Web
    externalUrl: http://web.localhost/
    internalUrl: ${b}/
  - name: Finance
    externalUrl: http://finance.localhost/
    internalUrl: ${b}/
    assignment: { groups: [finance] }
  - name: Board
    externalUrl: http://portal.localhost/board/
    internalUrl: ${b}/
`,
    });
    portal = `${s.origin('portal')}/`;
    browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ARGS });
  });
  after(async () => {
    await browser?.close();
    await s?.stop();
  });

  async function signInAtPortal(page: Page): Promise<void> {
    await page.goto(portal);
    assert.ok(page.url().startsWith(`${s.idp.issuer}/interaction/`), page.url());
    await page.fill('#username', 'bob');
    await page.fill('#password', 'bob-pw');
    await Promise.all([page.waitForURL(portal), page.click('button[type=submit]')]);
  }

  /** opens the app named `name` from the portal's list, as a click would (with the test's port) */
  async function openFromList(page: Page, name: string): Promise<string> {
    const href = await page.locator('li a', { hasText: name }).getAttribute('href');
    assert.ok(href, `${name} is listed`);
    const hops: string[] = [];
    const seen = (r: import('playwright-core').Response) => hops.push(r.url());
    page.on('response', seen);
    await page.goto(withPort(href));
    page.off('response', seen);
    // no sign-in page on the way: the provider's session signed the app in
    assert.ok(!hops.some((h) => h.includes('/interaction/')), hops.join('\n'));
    return page.url();
  }

  it('bob signs in at the portal, opens an app from his list without typing a password, and each app is his', async () => {
    const ctx = await browser.newContext();
    const page = await ctx.newPage();
    await signInAtPortal(page);
    assert.equal(await page.textContent('h1'), 'My apps');
    assert.deepEqual(await page.locator('li a').allTextContents(), ['Web', 'Finance', 'Board']);
    assert.match((await page.textContent('p.who'))!, /Signed in as bob/);
    for (const [name, at] of [['Web', `${s.origin('web')}/`], ['Board', `${s.origin('portal')}/board/`]]) {
      await page.goto(portal);
      assert.equal(await openFromList(page, name), at);
      assert.equal(JSON.parse((await page.textContent('body'))!).method, 'GET', 'the app answered');
    }
    await ctx.close();
  });

  it('sign-out from the portal: the signed-out page; Back and the portal ask for sign-in; an app on another host keeps its own session', async () => {
    const ctx = await browser.newContext();
    const page = await ctx.newPage();
    await signInAtPortal(page);
    await openFromList(page, 'Web');
    await page.goto(portal);
    await Promise.all([page.waitForURL(`${s.origin('portal')}/.drawbridge/signed-out`), page.click('text=Sign out')]);
    assert.equal(await page.textContent('h1'), 'You have signed out');
    // the way back to the list (the portal's configured address)
    assert.equal(await page.locator('a', { hasText: 'My apps' }).getAttribute('href'), 'http://portal.localhost/');
    // Back: the portal's page is no-store, so it is asked for again, and sign-in is required
    await page.goBack();
    await page.waitForURL((u) => u.href.startsWith(`${s.idp.issuer}/interaction/`));
    await page.goto(portal);
    assert.ok(page.url().startsWith(`${s.idp.issuer}/interaction/`), page.url());
    // The app's session is its own host's (as Entra application proxy's cookie outlives a sign-out
    // at My Apps): still open, until it ends or the app's own sign-out.
    await page.goto(`${s.origin('web')}/after`);
    assert.equal(page.url(), `${s.origin('web')}/after`);
    await ctx.close();
  });

  it('two tabs: sign-out in an app leaves the portal tab signed in; an app opened from it then asks for the password again', async () => {
    const ctx = await browser.newContext();
    const portalTab = await ctx.newPage();
    await signInAtPortal(portalTab);
    const appTab = await ctx.newPage();
    await appTab.goto(portal);
    await openFromList(appTab, 'Web');
    await appTab.goto(`${s.origin('web')}/.drawbridge/sign-out`);
    await appTab.waitForURL(`${s.origin('web')}/.drawbridge/signed-out`);
    await portalTab.reload();
    assert.match((await portalTab.textContent('p.who'))!, /Signed in as bob/);
    // the provider's session ended with the app's sign-out: the list's link leads to its sign-in page
    const href = await portalTab.locator('li a', { hasText: 'Web' }).getAttribute('href');
    await portalTab.goto(withPort(href!));
    assert.ok(portalTab.url().startsWith(`${s.idp.issuer}/interaction/`), portalTab.url());
    await portalTab.fill('#username', 'bob');
    await portalTab.fill('#password', 'bob-pw');
    await Promise.all([portalTab.waitForURL(`${s.origin('web')}/`), portalTab.click('button[type=submit]')]);
    await ctx.close();
  });

  it("in a frame (an intranet page that embeds My apps), signed in or not: a link that opens it in a new window, never the provider's error or a blocked frame", async () => {
    // another site's page, served from loopback (Chromium lets a loopback page frame a loopback address)
    const intranet = http.createServer((_req, res) => res.writeHead(200, { 'content-type': 'text/html' }).end(`<h1>Intranet</h1><iframe src="${portal}" width="800" height="400"></iframe>`));
    await new Promise<void>((r) => intranet.listen(0, '127.0.0.1', r));
    const ctx = await browser.newContext();
    try {
      const page = await ctx.newPage();
      const framed = async () => {
        await page.goto(`http://intranet.localhost:${(intranet.address() as AddressInfo).port}/`);
        const frame = page.frames().find((f) => f !== page.mainFrame())!;
        let last = '';
        await eventually(async () => /new window/.test((last = (await frame.textContent('body').catch(() => '')) ?? '')), 20_000).catch(() => assert.fail(`the frame shows ${JSON.stringify(last.slice(0, 200))} at ${frame.url()}`));
        return frame;
      };
      const frame = await framed();
      assert.equal(frame.url(), portal, 'the frame did not go to the provider');
      const [popup] = await Promise.all([ctx.waitForEvent('page'), frame.locator('a[target=_blank]').click()]);
      await popup.waitForSelector('#username', { timeout: 20_000 });
      await popup.fill('#username', 'bob');
      await popup.fill('#password', 'bob-pw');
      await Promise.all([popup.waitForURL(portal, { timeout: 20_000 }), popup.click('button[type=submit]')]);
      assert.equal(await popup.textContent('h1'), 'My apps');
      // signed in now: the frame still offers the window (the list itself is never framed)
      await framed();
    } finally {
      await ctx.close();
      await new Promise((r) => intranet.close(r));
    }
  });
});
