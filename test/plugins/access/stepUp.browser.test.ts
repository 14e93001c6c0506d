import assert from 'node:assert/strict';
import { chromium, type Browser } from 'playwright-core';
import { startStack, type Stack } from '../../identity/support.js';

const ARGS = ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic'];

/** Conditional access in Chromium: the MFA step-up round trip and the deny page. */
describe('conditional access in a real browser', function () {
  this.timeout(60_000);
  let s: Stack;
  let browser: Browser;
  before(async () => {
    s = await startStack({
      extraYaml: `policies:
  mfa:
    grant: requireMfa
  no-weekday-or-weekend:
    when: { groups: [everyone] }
    grant: block
`,
      apps: (backend) => `
  - name: Web
    externalUrl: http://web.localhost/
    internalUrl: ${backend}/
    preAuth: oidc
    conditionalAccess: [mfa]
  - name: Blocked
    externalUrl: http://other.localhost/
    internalUrl: ${backend}/
    preAuth: oidc
    conditionalAccess: [no-weekday-or-weekend]
`,
    });
    browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ARGS });
  });
  after(async () => {
    await browser?.close();
    await s?.stop();
  });

  it('carol signs in with a password, is sent back for MFA, enters her code and lands on the deep link', async () => {
    const ctx = await browser.newContext();
    const page = await ctx.newPage();
    const deep = `${s.origin('web')}/reports/q3?year=2026`;
    await page.goto(deep);
    assert.ok(page.url().startsWith(s.idp.issuer + '/interaction/'), page.url());
    await page.fill('#username', 'carol');
    await page.fill('#password', 'carol-pw');
    // The gateway's access stage sends her back to the provider with acr_values=mfa. The provider
    // asks for a multi-factor sign-in (password again, then the one-time code).
    await Promise.all([page.waitForURL((u) => u.href.startsWith(s.idp.issuer + '/interaction/') && !u.href.endsWith('/login')), page.click('button[type=submit]')]);
    await page.waitForSelector('#code, #password');
    if (await page.$('#password')) {
      assert.match((await page.textContent('body'))!, /multi-factor/);
      if (await page.$('#username')) await page.fill('#username', 'carol');
      await page.fill('#password', 'carol-pw');
      await Promise.all([page.waitForSelector('#code'), page.click('button[type=submit]')]);
    }
    await page.fill('#code', s.codes.get('carol')!);
    await Promise.all([page.waitForURL(deep), page.click('button[type=submit]')]);
    const echoed = JSON.parse((await page.textContent('body'))!);
    assert.equal(echoed.url, '/reports/q3?year=2026');
    await page.goto(`${s.origin('web')}/.drawbridge/me`);
    assert.equal(JSON.parse((await page.textContent('body'))!).claims.acr, 'mfa');
    await ctx.close();
  });

  it('a blocked user sees the Entra-style page with the correlation id', async () => {
    const ctx = await browser.newContext();
    const page = await ctx.newPage();
    await page.goto(`${s.origin('other')}/`);
    await page.fill('#username', 'bob');
    await page.fill('#password', 'bob-pw');
    const [res] = await Promise.all([page.waitForResponse((r) => r.url().startsWith(s.origin('other')) && r.status() === 403), page.click('button[type=submit]')]);
    await page.waitForLoadState();
    assert.match((await page.textContent('h1'))!, /This corporate app can.t be accessed/);
    const body = (await page.textContent('body'))!;
    assert.match(body, /access policy blocks this app/);
    assert.ok(body.includes(res.headers()['x-correlation-id']!), 'the page shows the correlation id');
    assert.ok(!body.includes('no-weekday-or-weekend'), 'policy names stay in the audit log, not on the page');
    await ctx.close();
  });
});
