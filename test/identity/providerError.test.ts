import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { eventually } from '../support/harness.js';
import { Browser, startStack, type Stack } from './support.js';

/** The provider answers the sign-in with an error instead of a code (RFC 6749 4.1.2.1): the page says where it stopped and what to do. */
describe('identity: provider errors at the callback', function () {
  this.timeout(30_000);
  let s: Stack;
  before(async () => {
    s = await startStack();
  });
  after(async () => s?.stop());

  /** A sign-in of this browser, started at `path` on the Web app, that the provider ends with `error` (and these extra parameters). */
  async function refused(b: Browser, error: string, extra: Record<string, string> = {}, path = '/deep?x=1', headers: Record<string, string> = {}) {
    const start = await b.get(`${s.origin('web')}${path}`);
    assert.equal(start.status, 302);
    const state = new URL(start.headers.location!).searchParams.get('state')!;
    const q = new URLSearchParams({ error, ...extra, state, iss: s.idp.issuer });
    return b.get(`${s.origin('web')}/.drawbridge/callback?${q}`, headers);
  }
  const reasonOf = (body: string) => /<p><strong>([^<]*)<\/strong>: ([^<]*)<\/p>/.exec(body)?.slice(1, 3).join(': ');
  const provider = () => new URL(s.idp.issuer).host;
  /** the audit line of the request whose answer carried this correlation id (written a moment after the answer) */
  const auditLineOf = (id: unknown) =>
    eventually(() => {
      const file = join(s.gw.dir, 'state', 'audit', 'audit.log');
      if (!existsSync(file)) return undefined;
      return readFileSync(file, 'utf8').trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, any>).find((l) => l.correlationId === id);
    });

  for (const [error, status, retryAfter, says] of [
    ['access_denied', 403, undefined, /refused the sign-in: error access_denied\. It was cancelled, or the provider does not let this account use this app\. Sign in again, with another account/],
    ['temporarily_unavailable', 503, '5', /cannot complete sign-ins right now: error temporarily_unavailable\. Try again in a moment\./],
    ['server_error', 503, '5', /had an error and could not complete the sign-in: error server_error\. Try again in a moment\./],
    ['login_required', 401, undefined, /needs you to sign in at the provider: error login_required\. Sign in again\./],
    ['consent_required', 401, undefined, /needs consent for this app before it can sign you in: error consent_required\. Sign in again to give it/],
    ['interaction_required', 401, undefined, /needs you to complete a step at the provider .*: error interaction_required\. Sign in again to complete it\./],
    ['invalid_scope', 401, undefined, /refused this gateway(&#39;|')s sign-in request: error invalid_scope\. .*give the correlation ID to your administrator\./],
    ['made_up_by_someone', 401, undefined, /could not complete the sign-in: error unknown_error\. Sign in again; if this happens again/],
  ] as const) {
    it(`${error}: ${status}${retryAfter ? ' with Retry-After' : ''}, names the provider and the code, links to sign in again; logged and audited with the reason`, async () => {
      const b = new Browser();
      const res = await refused(b, error);
      assert.equal(res.status, status);
      assert.equal(res.headers['retry-after'], retryAfter);
      const reason = reasonOf(res.body)!;
      assert.ok(reason.includes(`: The identity provider (${provider()}) `), reason);
      assert.match(reason, says);
      assert.ok(!res.body.includes('made_up_by_someone'), 'an unregistered code is not reflected');
      assert.match(res.body, /<a href="\/\.drawbridge\/sign-in\?returnUrl=%2Fdeep%3Fx%3D1">Sign in again<\/a>/);
      assert.match(res.body, new RegExp(`<code>${res.headers['x-correlation-id']}</code>`));
      const login = [res.headers['set-cookie'] ?? []].flat().find((c) => c.startsWith('drawbridge_login_'));
      assert.match(login ?? '', /Max-Age=0/, 'the login cookie is cleared: no code was issued, a reload has nothing to finish');
      const logged = s.gw.logs.find((l) => l.msg === 'sign-in callback refused' && l.correlationId === res.headers['x-correlation-id']);
      assert.equal(logged?.reason, `provider error ${error}: `);
      assert.equal(logged?.app, 'Web');
      const line = (await auditLineOf(res.headers['x-correlation-id']))!;
      assert.deepEqual([line.app, line.decision, line.status, line.reasons], ['Web', 'deny', status, [`sign-in refused: provider error ${error}: `]]);
    });
  }

  it("error_description is the URL's text, not the provider's word: it never reaches the page or the problem document", async () => {
    const lure = '<b>Your account is locked</b>. Call +1 555 0100 to unlock it.';
    const res = await refused(new Browser(), 'access_denied', { error_description: lure });
    assert.equal(res.status, 403);
    assert.ok(!res.body.includes('Call +1 555') && !res.body.includes('locked'), res.body);
    const logged = s.gw.logs.find((l) => l.msg === 'sign-in callback refused' && l.correlationId === res.headers['x-correlation-id']);
    assert.equal(logged?.reason, `provider error access_denied: ${lure}`, 'the administrator still gets it in the log');
    const json = await refused(new Browser(), 'server_error', { error_description: lure }, '/deep?x=1', { accept: 'application/json' });
    assert.equal(json.status, 503);
    const problem = JSON.parse(json.body);
    assert.match(problem.detail, /error server_error/);
    assert.equal(problem.next, '/.drawbridge/sign-in?returnUrl=%2Fdeep%3Fx%3D1');
    // (not '555' alone: the provider's random port, named in the detail, held it once, 127.0.0.1:35555)
    assert.ok(!json.body.includes('Call +1 555') && !json.body.includes('locked'), json.body);
  });

  it('a real provider error (prompt=none without a provider session: login_required), then the page\'s link signs in to the deep link', async () => {
    const b = new Browser();
    const start = await b.get(`${s.origin('web')}/deep?x=1`);
    const authorize = new URL(start.headers.location!);
    authorize.searchParams.set('prompt', 'none');
    const { res, url } = await b.browse(authorize.href);
    assert.ok(url.startsWith(`${s.origin('web')}/.drawbridge/callback?error=login_required`), url);
    assert.equal(res.status, 401);
    assert.match(reasonOf(res.body)!, new RegExp(`The identity provider \\(${provider()}\\) needs you to sign in at the provider: error login_required\\.`));
    const href = /<a href="([^"]+)">Sign in again<\/a>/.exec(res.body)![1]!;
    const again = await b.browse(new URL(href, url).href, { user: 'bob', password: 'bob-pw' });
    assert.equal(again.url, `${s.origin('web')}/deep?x=1`);
    assert.equal(again.res.status, 200);
  });
});
