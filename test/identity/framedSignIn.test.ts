import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { chromium, type Browser, type BrowserContext, type Frame, type Page } from 'playwright-core';
import { eventually } from '../support/harness.js';
import { startStack, type Stack } from './support.js';

const ARGS = ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic'];

/**
 * An app's page in a frame when the session is missing or has ended. Sign-in cannot happen in a
 * frame: the provider's cookies are third-party there (and Entra's pages refuse to be framed), so a
 * redirect to the provider left the frame on the provider's "invalid_request" error. The frame
 * must say what to do instead: sign in in a new window.
 *
 * A real HTML server plays the app (/dash frames /widget) and, under another host name, a page of
 * another site that frames the app: both on loopback, so Chromium's local-network checks let the
 * frame load (a routed page counts as public).
 */
describe('identity: an app page in a frame without a session, in Chromium', function () {
  this.timeout(120_000);
  let s: Stack;
  let html: http.Server;
  let elsewhere: string;
  let browser: Browser;
  /** the methods of the requests that reached /save */
  const saved: string[] = [];
  before(async () => {
    html = http.createServer((req, res) => {
      const host = String(req.headers['x-drawbridge-original-host'] ?? req.headers.host);
      let body = '<p id="widget">Widget content</p>';
      if (req.url === '/host-page') body = `<h1>Dashboard of another site</h1><iframe id="f" src="${s.origin('web')}/widget" width="800" height="400"></iframe>`;
      else if (req.url === '/form-widget') body = '<form method="post" action="/save"><input name="note" value="typed"><button id="save">Save</button></form>';
      else if (req.url === '/save') {
        saved.push(req.method!);
        body = '<p id="saved">Saved</p>';
      } else if (req.url === '/dash-form') body = '<h1>Dash</h1><iframe id="f" src="/form-widget" width="800" height="400"></iframe>';
      else if (req.url === '/dash-admin') body = '<h1>Dash</h1><iframe id="f" src="/admin/panel" width="800" height="400"></iframe>';
      else if (req.url === '/dash-finance') body = '<h1>Dash</h1><iframe id="f" src="/fin/ledger" width="800" height="400"></iframe>';
      else if (req.url === '/dash') body = '<h1>Dash</h1><iframe id="f" src="/widget" width="800" height="400"></iframe>';
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'x-served-for': host }).end(`<!doctype html><html><body>${body}</body></html>`);
    });
    await new Promise<void>((r) => html.listen(0, '127.0.0.1', r));
    const port = (html.address() as AddressInfo).port;
    elsewhere = `http://elsewhere.localhost:${port}`;
    s = await startStack({
      apps: () => `
  - name: Web
    externalUrl: http://web.localhost/
    internalUrl: http://127.0.0.1:${port}/
    preAuth: oidc
    conditionalAccess: [admin-mfa]
  - name: Finance
    externalUrl: http://web.localhost/fin/
    internalUrl: http://127.0.0.1:${port}/
    preAuth: oidc
    assignment: { groups: [finance] }
`,
      extraYaml: 'policies:\n  admin-mfa:\n    when: { paths: [/admin/**] }\n    grant: requireMfa\n',
    });
    browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ARGS });
  });
  after(async () => {
    await browser?.close();
    await s?.stop();
    await new Promise((r) => html?.close(r));
  });

  const frameOf = (page: Page): Frame => page.frames().find((f) => f !== page.mainFrame())!;
  const text = async (f: Frame) => ((await f.textContent('body').catch(() => '')) ?? '').replace(/\s+/g, ' ');
  /** what the frame shows once it offers a new window; the assertion quotes what it showed instead */
  async function frameOffersNewWindow(page: Page): Promise<string> {
    let last = '';
    try {
      return (await eventually(async () => {
        last = await text(frameOf(page));
        return /new window/.test(last) ? last : undefined;
      }, 20_000))!;
    } catch {
      assert.fail(`the frame shows ${JSON.stringify(last.slice(0, 300))} (${frameOf(page).url()})`);
    }
  }

  async function signIn(page: Page): Promise<void> {
    await page.fill('#username', 'bob');
    await page.fill('#password', 'bob-pw');
    await page.click('button[type=submit]');
  }

  /** a new tab of `ctx` where bob has signed in at Web's `path` and is shown it */
  async function signedInAt(ctx: BrowserContext, path: string): Promise<Page> {
    const page = await ctx.newPage();
    await page.goto(s.origin('web') + path);
    await signIn(page);
    await page.waitForURL(s.origin('web') + path, { timeout: 20_000 });
    return page;
  }

  /** bob signs out of Web in another tab, as a user does while a page stays open */
  async function signOutInAnotherTab(ctx: BrowserContext): Promise<void> {
    const other = await ctx.newPage();
    await other.goto(`${s.origin('web')}/.drawbridge/sign-out`);
    await other.waitForURL(`${s.origin('web')}/.drawbridge/signed-out`);
    await other.close();
  }

  it("in another site's page: the frame says to open the app in a new window, never the provider's error, and that window signs in and shows it", async () => {
    const ctx = await browser.newContext();
    const page = await ctx.newPage();
    const framed: string[] = [];
    page.on('response', (r) => {
      if (r.frame() !== page.mainFrame()) framed.push(`${r.status()} ${r.url()}`);
    });
    await page.goto(`${elsewhere}/host-page`);
    const shown = await frameOffersNewWindow(page);
    assert.match(shown, /Sign-in required/, shown);
    assert.doesNotMatch(shown, /invalid_request|Sign-in problem/);
    assert.ok(framed.every((h) => !h.includes(s.idp.issuer)), `the frame went to the provider:\n${framed.join('\n')}`);
    // the link opens the framed page itself in a new window (a top-level navigation), where sign-in works
    const link = frameOf(page).locator('a[target=_blank]');
    assert.equal(await link.count(), 1);
    const [popup] = await Promise.all([ctx.waitForEvent('page'), link.click()]);
    await popup.waitForSelector('#username', { timeout: 20_000 });
    await signIn(popup);
    await popup.waitForURL(`${s.origin('web')}/widget`, { timeout: 20_000 });
    assert.match(await popup.textContent('body') ?? '', /Widget content/);
    // The session cookie is SameSite=Lax: another site's frame never gets it, and the frame says so
    // again when the page is reloaded (no loop, no provider page).
    await page.reload();
    const again = await frameOffersNewWindow(page);
    assert.match(again, /another site/, again);
    await ctx.close();
  });

  it("in the app's own page, after the session ended: the frame says to sign in in a new window, and shows the page again after that", async () => {
    const ctx = await browser.newContext();
    const W = s.origin('web');
    const page = await signedInAt(ctx, '/dash');
    await eventually(async () => /Widget content/.test(await text(frameOf(page))), 20_000);
    await signOutInAnotherTab(ctx);
    // the page's frame navigates again (a widget that refreshes itself)
    await page.evaluate(() => {
      const f = document.getElementById('f') as HTMLIFrameElement;
      f.src = '/widget?refresh=1';
    });
    const shown = await frameOffersNewWindow(page);
    assert.doesNotMatch(shown, /invalid_request|Sign-in problem|another site/, shown);
    const [popup] = await Promise.all([ctx.waitForEvent('page'), frameOf(page).locator('a[target=_blank]').click()]);
    await popup.waitForSelector('#username', { timeout: 20_000 });
    await signIn(popup);
    await popup.waitForURL(`${W}/widget?refresh=1`, { timeout: 20_000 });
    // back in the first window, the frame's other link shows the page here again
    await frameOf(page).locator('a[target=_self]').click();
    await eventually(async () => /Widget content/.test(await text(frameOf(page))), 20_000);
    await ctx.close();
  });

  it("a form in a frame posted after the session ended: nothing reaches the app, and the frame's sign-in link opens a new window", async () => {
    const ctx = await browser.newContext();
    const W = s.origin('web');
    const page = await signedInAt(ctx, '/dash-form');
    await eventually(async () => (await frameOf(page).$('#save')) !== null, 20_000);
    await signOutInAnotherTab(ctx);
    saved.length = 0;
    await frameOf(page).click('#save');
    await eventually(async () => /not passed on/.test(await text(frameOf(page))), 20_000);
    assert.deepEqual(saved, []);
    const link = frameOf(page).locator('a', { hasText: 'Sign in again' });
    assert.equal(await link.getAttribute('target'), '_blank');
    const [popup] = await Promise.all([ctx.waitForEvent('page'), link.click()]);
    await popup.waitForSelector('#username', { timeout: 20_000 });
    await signIn(popup);
    // back on the form's page (its Referer), in a window of its own
    await popup.waitForURL(`${W}/form-widget`, { timeout: 20_000 });
    await ctx.close();
  });

  it('a frame whose page needs a stronger sign-in (a policy asks for MFA): the frame says to sign in in a new window, which asks for the second factor, and the frame shows the page after', async () => {
    const ctx = await browser.newContext();
    const W = s.origin('web');
    // bob signs in with his password; the page itself needs no more
    const page = await signedInAt(ctx, '/dash-admin');
    const shown = await frameOffersNewWindow(page);
    assert.doesNotMatch(shown, /invalid_request|Sign-in problem/, shown);
    const [popup] = await Promise.all([ctx.waitForEvent('page'), frameOf(page).locator('a[target=_blank]').click()]);
    // the embedded provider asks for the password again, then the one-time code
    await popup.waitForSelector('#username', { timeout: 20_000 });
    assert.match((await popup.textContent('body'))!, /multi-factor/);
    await signIn(popup);
    await popup.waitForSelector('#code', { timeout: 20_000 });
    await popup.fill('#code', s.codes.get('bob')!);
    await Promise.all([popup.waitForURL(`${W}/admin/panel`, { timeout: 20_000 }), popup.click('button[type=submit]')]);
    await frameOf(page).locator('a[target=_self]').click();
    await eventually(async () => /Widget content/.test(await text(frameOf(page))), 20_000);
    await ctx.close();
  });

  it("a frame of an app the user is not assigned to: the 403 page's sign-in link (as someone else) opens a new window", async () => {
    const ctx = await browser.newContext();
    const page = await ctx.newPage();
    // carol (not in finance) is signed in to Finance (under /fin/ on Web's host): its 403 page
    const W = s.origin('web');
    await page.goto(`${W}/fin/start`);
    await page.fill('#username', 'carol');
    await page.fill('#password', 'carol-pw');
    const [denied] = await Promise.all([page.waitForResponse((r) => r.url() === `${W}/fin/start`), page.click('button[type=submit]')]);
    assert.equal(denied.status(), 403);
    // the same in a frame of a page of Web (signed in through the provider's session)
    await page.goto(`${W}/dash-finance`);
    await page.waitForURL(`${W}/dash-finance`, { timeout: 20_000 });
    await eventually(async () => /not assigned/.test(await text(frameOf(page))), 20_000);
    const link = frameOf(page).locator('a', { hasText: 'Sign in again' });
    assert.equal(await link.getAttribute('target'), '_blank');
    const [popup] = await Promise.all([ctx.waitForEvent('page'), link.click()]);
    // a sign-in of its own in that window: through the provider (which still has carol) and back to the page
    await popup.waitForURL(`${W}/fin/ledger`, { timeout: 20_000 });
    await ctx.close();
  });
});
