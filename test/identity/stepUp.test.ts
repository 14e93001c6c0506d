import assert from 'node:assert/strict';
import { Browser, startStack, type Stack } from './support.js';

describe('identity: step-up (a policy asks for MFA; the browser goes back to the provider)', function () {
  this.timeout(30_000);
  let s: Stack;
  before(async () => {
    s = await startStack({
      extraYaml: `policies:
  need-mfa:
    when: { apps: [Web] }
    grant: requireMfa
`,
      apps: (b) => `
  - name: Web
    externalUrl: http://web.localhost/
    internalUrl: ${b}/
    preAuth: oidc
    audience: api://web
    conditionalAccess: [need-mfa]
`,
    });
  });
  after(async () => s?.stop());

  it('bob signs in with a password, is sent back with acr_values=mfa, enters a code and lands where he was', async () => {
    const b = new Browser();
    const before = s.backend.received.length;
    const { url, hops, res } = await b.browse(`${s.origin('web')}/deep?x=1`, { user: 'bob', password: 'bob-pw', code: () => s.codes.get('bob') });
    assert.equal(res.status, 200, res.body.slice(0, 300));
    assert.equal(url, `${s.origin('web')}/deep?x=1`);
    const authorizeRequests = hops.filter((h) => h.startsWith(`${s.idp.issuer}/auth?`)).map((h) => new URL(h));
    assert.equal(authorizeRequests.length, 2, hops.join('\n'));
    assert.equal(authorizeRequests[0]!.searchParams.get('acr_values'), null);
    assert.equal(authorizeRequests[1]!.searchParams.get('acr_values'), 'mfa');
    assert.ok(s.codes.get('bob'), 'bob was asked for a one-time code');
    assert.equal(s.backend.received.length, before + 1, 'the app saw only the request after MFA');
    const me = (await b.get(`${s.origin('web')}/.drawbridge/me`)).json();
    assert.equal(me.claims.acr, 'mfa');
  });

  it('an API client with a token is not redirected: it gets the deny as it is', async () => {
    const token = await s.idp.clientCredentialsToken('api://web');
    const b = new Browser();
    const res = await b.get(`${s.origin('web')}/x`, { authorization: `Bearer ${token}`, accept: 'application/json' });
    assert.equal(res.headers.location, undefined);
    assert.equal(res.status, 401, res.body);
    assert.match(String(res.headers['www-authenticate']), /insufficient_user_authentication/);
  });
});
