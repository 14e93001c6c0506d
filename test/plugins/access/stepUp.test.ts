import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Browser, startStack, userToken, type Stack } from '../../identity/support.js';
import { request } from '../../support/harness.js';

/** Step-up (RFC 9470) end to end: the embedded provider, the real OIDC stage, the access stage. */
describe('conditional access step-up: bearer clients get the challenge, browsers go back to the provider', function () {
  this.timeout(30_000);
  let s: Stack;
  before(async () => {
    s = await startStack({
      extraYaml: `locations:
  nowhere: [192.0.2.0/24]
policies:
  mfa-outside-nowhere:
    when: { notLocations: [nowhere] }
    grant: requireMfa
  fresh:
    session: { signInFrequency: 2s }
`,
      apps: (backend) => `
  - name: Api
    externalUrl: http://api.localhost/
    internalUrl: ${backend}/
    preAuth: oidc
    audience: api://secret
    requiredScopes: [user_impersonation]
    conditionalAccess: [mfa-outside-nowhere]
  - name: Web
    externalUrl: http://web.localhost/
    internalUrl: ${backend}/
    preAuth: oidc
    conditionalAccess: [mfa-outside-nowhere]
  - name: Fresh
    externalUrl: http://finance.localhost/
    internalUrl: ${backend}/
    preAuth: oidc
    conditionalAccess: [fresh]
`,
    });
  });
  after(async () => s?.stop());
  const audit = () =>
    readFileSync(join(s.gw.dir, 'state', 'audit', 'audit.log'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));

  it('a bearer client without MFA gets 401 insufficient_user_authentication with acr_values, and nothing reaches the app', async () => {
    const token = await userToken(s, 'bob', 'bob-pw', 'api://secret', 'user_impersonation');
    const before = s.backend.received.length;
    const res = await request(`http://127.0.0.1:${s.gw.port}/data`, { headers: { host: new URL(s.origin('api')).host, authorization: `Bearer ${token}`, accept: 'application/json' } });
    assert.equal(res.status, 401, res.body);
    const www = String(res.headers['www-authenticate']);
    assert.match(www, /^Bearer error="insufficient_user_authentication"/);
    assert.match(www, /acr_values="mfa"/);
    assert.equal(res.headers.location, undefined, 'an API client is never redirected');
    assert.match(res.json().detail, /multi-factor/);
    assert.equal(s.backend.received.length, before);
    await new Promise((r) => setTimeout(r, 50));
    const rec = audit().find((r) => r.correlationId === res.headers['x-correlation-id']);
    assert.equal(rec?.decision, 'step-up');
    assert.deepEqual(rec?.policies, ['mfa-outside-nowhere']);
    // The request log says what the audit trail and the metric say: a 401 challenge is a step-up, not a deny.
    const line = s.gw.logs.find((l) => l.msg === 'request' && l.correlationId === res.headers['x-correlation-id']);
    assert.equal(line?.decision, 'step-up', JSON.stringify(line));
    assert.ok(!JSON.stringify(audit()).includes(token.split('.')[2]!), 'the token is never in the audit log');
  });

  it('a bearer client whose sign-in did MFA meets requireMfa: the token carries the sign-in\'s amr, and the app is reached', async () => {
    const token = await userToken(s, 'alice', 'alice-pw', 'api://secret', 'user_impersonation');
    const claims = JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString());
    assert.ok(Array.isArray(claims.amr) && claims.amr.includes('mfa'), JSON.stringify(claims));
    const before = s.backend.received.length;
    const res = await request(`http://127.0.0.1:${s.gw.port}/data`, { headers: { host: new URL(s.origin('api')).host, authorization: `Bearer ${token}`, accept: 'application/json' } });
    assert.equal(res.status, 200, res.body);
    assert.equal(s.backend.received.length, before + 1);
  });

  it('a browser without MFA is sent back to the provider with acr_values=mfa, does MFA, and lands where it was', async () => {
    const b = new Browser();
    const before = s.backend.received.length;
    const { res, url, hops } = await b.browse(`${s.origin('web')}/deep/link?x=1`, { user: 'carol', password: 'carol-pw', code: () => s.codes.get('carol') });
    assert.equal(res.status, 200, res.body);
    assert.equal(url, `${s.origin('web')}/deep/link?x=1`);
    const authorizeRequests = hops.filter((h) => h.startsWith(`${s.idp.issuer}/auth?`)).map((h) => new URL(h));
    assert.equal(authorizeRequests.length, 2, hops.join('\n'));
    assert.equal(authorizeRequests[0]!.searchParams.get('acr_values'), null, 'the first sign-in asks for nothing special');
    assert.equal(authorizeRequests[1]!.searchParams.get('acr_values'), 'mfa', 'the step-up asks for MFA');
    assert.ok(s.codes.get('carol'), 'carol was asked for a one-time code');
    assert.equal(s.backend.received.length, before + 1, 'the app saw only the request after MFA');
    const me = (await b.get(`${s.origin('web')}/.drawbridge/me`)).json();
    assert.equal(me.claims.acr, 'mfa');
    const again = await b.get(`${s.origin('web')}/next`);
    assert.equal(again.status, 200, 'no second step-up once MFA is done');
  });

  it('a browser session older than signInFrequency must sign in again (max_age, prompt=login)', async () => {
    const b = new Browser();
    const first = await b.browse(`${s.origin('finance')}/`, { user: 'bob', password: 'bob-pw' });
    assert.equal(first.res.status, 200, first.res.body);
    await new Promise((r) => setTimeout(r, 3200));
    // API calls with the same session cookie cannot follow a redirect to the provider: 401 and the challenge
    const before = s.backend.received.length;
    for (const [method, headers] of [
      ['GET', { 'x-requested-with': 'XMLHttpRequest' }],
      ['GET', { accept: 'application/json' }],
      ['GET', { 'sec-fetch-mode': 'cors', 'sec-fetch-dest': 'empty' }],
      ['POST', { 'content-type': 'application/json' }],
      ['DELETE', {}],
    ] as [string, Record<string, string>][]) {
      const api = await b.send(method, `${s.origin('finance')}/api/items`, headers, method === 'POST' ? '{}' : undefined);
      assert.equal(api.status, 401, `${method} ${JSON.stringify(headers)}: ${api.body.slice(0, 200)}`);
      assert.equal(api.headers.location, undefined);
      assert.match(String(api.headers['www-authenticate']), /insufficient_user_authentication/);
      assert.match(String(api.headers['www-authenticate']), /max_age="?2/);
    }
    assert.equal(s.backend.received.length, before, 'none of them reached the app');
    const stale = await b.get(`${s.origin('finance')}/report`);
    assert.equal(stale.status, 302);
    const loc = new URL(stale.headers.location!);
    assert.equal(loc.origin, s.idp.issuer);
    assert.equal(loc.searchParams.get('max_age'), '2');
    assert.equal(loc.searchParams.get('prompt'), 'login');
    const { res, url } = await b.browse(stale.headers.location!, { user: 'bob', password: 'bob-pw' });
    assert.equal(res.status, 200, res.body);
    assert.equal(url, `${s.origin('finance')}/report`);
  });

  it('after signInFrequency lapsed, fetch and XHR get problem+json (not the HTML page), and a posted form a page whose "Sign in again" link really signs in again', async () => {
    const b = new Browser();
    assert.equal((await b.browse(`${s.origin('finance')}/`, { user: 'bob', password: 'bob-pw' })).res.status, 200);
    await new Promise((r) => setTimeout(r, 3200));
    const before = s.backend.received.length;
    for (const [method, headers] of [
      ['POST', { accept: '*/*', 'sec-fetch-mode': 'cors', 'sec-fetch-dest': 'empty', 'content-type': 'application/json' }],
      ['GET', { accept: '*/*', 'x-requested-with': 'XMLHttpRequest' }],
    ] as [string, Record<string, string>][]) {
      const api = await b.send(method, `${s.origin('finance')}/api/items`, headers, method === 'POST' ? '{}' : undefined);
      assert.equal(api.status, 401);
      assert.match(String(api.headers['content-type']), /^application\/problem\+json/, `${method}: ${api.body.slice(0, 100)}`);
      assert.equal(api.json().detail, 'This app requires you to sign in again.');
      assert.match(String(api.headers['www-authenticate']), /insufficient_user_authentication.*max_age=2/);
    }
    // The form: as after the session's lifetime, a page with a link back, here carrying the step-up.
    const form = await b.send('POST', `${s.origin('finance')}/submit?x=1`, { accept: 'text/html', 'sec-fetch-mode': 'navigate', 'content-type': 'application/x-www-form-urlencoded' }, 'a=1');
    assert.equal(form.status, 401);
    assert.match(String(form.headers['content-type']), /^text\/html/);
    const href = /<a href="([^"]+)">Sign in again<\/a>/.exec(form.body)?.[1]?.replace(/&#(\d+);/g, (_, c) => String.fromCharCode(Number(c)));
    assert.equal(href, '/.drawbridge/sign-in?returnUrl=%2Fsubmit%3Fx%3D1&max_age=2');
    assert.equal(s.backend.received.length, before, 'nothing reached the app');
    // Following it asks the provider for max_age and prompt=login, so the user signs in for real, and lands on the form's URL.
    const start = await b.get(`${s.origin('finance')}${href}`);
    const auth = new URL(start.headers.location!);
    assert.equal(auth.searchParams.get('max_age'), '2');
    assert.equal(auth.searchParams.get('prompt'), 'login');
    const { res, url } = await b.browse(start.headers.location!, { user: 'bob', password: 'bob-pw' });
    assert.equal(res.status, 200, res.body);
    assert.equal(url, `${s.origin('finance')}/submit?x=1`);
    assert.equal((await b.send('POST', `${s.origin('finance')}/submit?x=1`, { accept: 'text/html', 'sec-fetch-mode': 'navigate', 'content-type': 'application/x-www-form-urlencoded' }, 'a=1')).status, 200, 'the form goes through now');
    // A sign-in link can ask only for the MFA acr values the config knows.
    const odd = await b.get(`${s.origin('finance')}/.drawbridge/sign-in?returnUrl=/&acr_values=urn:evil&max_age=x`);
    const plain = new URL(odd.headers.location!);
    assert.deepEqual([plain.searchParams.get('acr_values'), plain.searchParams.get('max_age'), plain.searchParams.get('prompt')], [null, null, null]);
  });
});
