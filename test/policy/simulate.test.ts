import assert from 'node:assert/strict';
import { loadConfigFile, type Config } from '../../src/config/load.js';
import { WhatIfError, whatIf, type WhatIfResult } from '../../src/policy/simulate.js';
import { request } from '../support/harness.js';
import { defaultApps, startStack, userToken, USERS, type Stack } from '../identity/support.js';

/**
 * what-if against the gateway it simulates: the same config, a real token from the real
 * provider, and what-if given that token's claims. A case where what-if says ALLOW and the
 * gateway refuses passes a test-policies case in CI while every real client is refused.
 */
describe('what-if agrees with the running gateway', function () {
  this.timeout(20_000);
  let s: Stack;
  let config: Config;
  before(async () => {
    s = await startStack({
      // an Entra user in too many groups: the token says so instead of listing them
      users: [...USERS, { username: 'olly', password: 'olly-pw', name: 'Olly', email: 'olly@example.test', groups: [], mfa: false, claims: { hasgroups: true, groups: undefined } }],
      // the default apps (Api requires a scope, Finance sets no audience), and one requiring a scope no token here has
      apps: (backend) => `${defaultApps(backend)}
  - name: Admin
    externalUrl: http://app.localhost/
    internalUrl: ${backend}/
    preAuth: oidc
    audience: api://secret
    requiredScopes: [admin.write]
`,
    });
    const loaded = await loadConfigFile(s.gw.configFile, { mode: 'lint' });
    assert.ok(loaded.config, JSON.stringify(loaded.problems));
    config = loaded.config;
  });
  after(async () => s?.stop());

  const claimsOf = (token: string): Record<string, unknown> => JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString());

  for (const [label, app, host, audience, scope, status, issuedTo] of [
    ['a token for the app, with the scope it requires', 'Api', 'api', 'api://secret', 'user_impersonation', 200, 'user'],
    ['a token without the scope the app requires', 'Admin', 'app', 'api://secret', 'user_impersonation', 403, 'user'],
    ['any token, to an app with no audience', 'Finance', 'finance', 'api://web', undefined, 401, 'user'],
    ['an app-only token (client credentials), with the scope the app requires', 'Api', 'api', 'api://secret', 'user_impersonation', 401, 'app'],
    ['an app-only token to an app that requires no scope', 'Web', 'web', 'api://web', undefined, 401, 'app'],
  ] as const) {
    it(`${label}: gateway ${status}, what-if the same`, async () => {
      const token = issuedTo === 'app' ? await s.idp.clientCredentialsToken(audience, scope) : await userToken(s, 'bob', 'bob-pw', audience, scope);
      const res = await request(`${s.gw.url}/x`, { headers: { host: `${host}.localhost`, authorization: `Bearer ${token}`, accept: 'application/json' } });
      assert.equal(res.status, status, res.body);
      const claims = claimsOf(token);
      const r = await whatIf(config, { app, user: String(claims.sub), client: 'native', claims, path: '/x' });
      assert.equal(r.decision, status === 200 ? 'allow' : 'deny');
      if (status !== 200) {
        assert.equal(r.status, status);
        assert.equal(r.publicReason, res.json().error_description, 'what-if quotes what the client is told');
      }
    });
  }

  it('a group overage (hasgroups): the gateway refuses a group assignment, and what-if given the same claims says so', async () => {
    const { Browser } = await import('../identity/support.js');
    const flow = await new Browser().browse(`${s.origin('finance')}/`, { user: 'olly', password: 'olly-pw' });
    assert.equal(flow.res.status, 403);
    const r = await whatIf(config, { app: 'Finance', user: 'olly', groups: ['finance'], claims: { hasgroups: true } });
    assert.deepEqual([r.decision, r.status], ['deny', 403], JSON.stringify(r.reasons));
  });

  it('TRACE: the gateway answers 405 before any app; what-if says DENY (405) even for a sign-in app without --user', async () => {
    const res = await request(`${s.gw.url}/x`, { method: 'TRACE', headers: { host: 'web.localhost' } });
    assert.equal(res.status, 405);
    for (const app of ['Open', 'Web']) {
      const r: WhatIfResult = await whatIf(config, { app, method: 'trace', path: '/x' });
      assert.deepEqual([r.decision, r.status], ['deny', 405], app);
    }
  });

  it('a method the HTTP parser does not know: the gateway answers 400; what-if refuses the input', async () => {
    const res = await request(`${s.gw.url}/x`, { method: 'FROB', headers: { host: 'open.localhost' } });
    assert.equal(res.status, 400);
    await assert.rejects(whatIf(config, { app: 'Open', method: 'FROB' }), (e) => e instanceof WhatIfError && /answers 400/.test(e.message));
  });
});
