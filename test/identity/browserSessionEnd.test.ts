import assert from 'node:assert/strict';
import { chromium, type Browser } from 'playwright-core';
import { eventually } from '../support/harness.js';
import { MIN_TOKEN_BOUND_SESSION_SEC } from '../../src/identity/session.js';
import { startStack, type Stack } from './support.js';

const ARGS = ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic'];

/**
 * session.cookie.endWithIdToken with a short ID token, in Chromium and in real time: the session
 * ends with the token (at least MIN_TOKEN_BOUND_SESSION_SEC after sign-in, so this test waits about
 * a minute), then a form posted from a page still open is not passed on and says so, and the next
 * navigation goes back through the provider without a password and shows the page.
 */
describe('identity: a session that ends with its ID token, in Chromium', function () {
  this.timeout(MIN_TOKEN_BOUND_SESSION_SEC * 1000 + 120_000);
  let s: Stack;
  let browser: Browser;
  before(async () => {
    s = await startStack({
      idTokenTtlSec: 5,
      apps: (b) => `
  - name: Tok
    externalUrl: http://app.localhost/
    internalUrl: ${b}/
    preAuth: oidc
    cookies: { endWithIdToken: true }
`,
    });
    browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ARGS });
  });
  after(async () => {
    await browser?.close();
    await s?.stop();
  });

  it('after the token ends, a form posted reaches nothing and offers sign-in back to its page; a navigation signs in silently', async () => {
    const A = s.origin('app');
    const ctx = await browser.newContext();
    const formTab = await ctx.newPage();
    await formTab.goto(`${A}/start`);
    await formTab.fill('#username', 'bob');
    await formTab.fill('#password', 'bob-pw');
    await Promise.all([formTab.waitForURL(`${A}/start`), formTab.click('button[type=submit]')]);
    const me = JSON.parse((await (await formTab.goto(`${A}/.drawbridge/me`))!.text()));
    const ends = Date.parse(me.expires);
    // a page of the app with a form (the echo backend has none: the browser is given one at the app's address)
    await formTab.route(`${A}/form`, (r) => r.fulfill({ contentType: 'text/html', body: '<form method="post" action="/submit"><input name="note" value="typed a while ago"><button id="save">Save</button></form>' }));
    await formTab.goto(`${A}/form`);

    // the session ends with the token; the gateway's clock is this process's
    await eventually(() => Date.now() > ends + 1000, MIN_TOKEN_BOUND_SESSION_SEC * 1000 + 30_000, 250);
    const before = s.backend.received.length;
    const [posted] = await Promise.all([formTab.waitForResponse((r) => r.url() === `${A}/submit`), formTab.click('#save')]);
    assert.equal(posted.status(), 401);
    await formTab.waitForLoadState();
    const said = (await formTab.textContent('body'))!.replace(/\s+/g, ' ');
    assert.match(said, /Sign-in required/);
    assert.match(said, /has ended, so what you sent was not passed on/);
    assert.equal(s.backend.received.length, before, 'nothing reached the app');

    // another tab navigates: back through the provider, no password asked, the page is shown
    const navTab = await ctx.newPage();
    const hops: string[] = [];
    navTab.on('response', (r) => hops.push(`${r.status()} ${r.url()}`));
    await navTab.goto(`${A}/next?x=1`);
    assert.equal(navTab.url(), `${A}/next?x=1`);
    assert.ok(hops.some((h) => h.includes(`${s.idp.issuer}/auth`)), `went to the provider:\n${hops.join('\n')}`);
    assert.ok(!hops.some((h) => h.includes('/interaction/')), `no sign-in page:\n${hops.join('\n')}`);
    assert.equal(JSON.parse((await navTab.textContent('body'))!).url, '/next?x=1');

    // the form's page offers its way back: to the page that had the form, where it can be sent again
    await formTab.unroute(`${A}/form`);
    await Promise.all([formTab.waitForURL(`${A}/form`), formTab.click('text=Sign in again')]);
    await ctx.close();
  });
});
