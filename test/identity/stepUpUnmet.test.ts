import assert from 'node:assert/strict';
import { Browser, startStack, type Stack } from './support.js';

/**
 * A provider that ignores acr_values (as Entra does) answers an MFA step-up from its single
 * sign-on session: the sign-in comes back without MFA. The embedded provider does not know the
 * acr value `c1`, so it answers exactly like that.
 */
describe('identity: an MFA step-up the provider does not honour', function () {
  this.timeout(30_000);
  let s: Stack;
  before(async () => {
    s = await startStack({
      identityYaml: '  mfaAcrValues: [c1]',
      extraYaml: `policies:
  mfa:
    grant: requireMfa
`,
      apps: (b) => `
  - name: Web
    externalUrl: http://web.localhost/
    internalUrl: ${b}/
    preAuth: oidc
    conditionalAccess: [mfa]
`,
    });
  });
  after(async () => s?.stop());

  it('ends on a page saying the sign-in did not provide MFA, not in a redirect loop', async () => {
    const b = new Browser();
    const { res, url, hops } = await b.browse(`${s.origin('web')}/payroll?month=11`, { user: 'carol', password: 'carol-pw' }, 30);
    assert.equal(res.status, 403, hops.join('\n'));
    assert.ok(url.startsWith(`${s.origin('web')}/.drawbridge/callback`), url);
    assert.match(res.headers['content-type'] ?? '', /text\/html/);
    assert.match(res.body, /requires multi-factor authentication, and your sign-in did not provide it/);
    assert.equal(hops.filter((h) => h.includes('acr_values=c1')).length, 1, 'one step-up, not a loop');
    assert.equal(s.backend.received.length, 0, 'nothing reached the app');
    // Opening the app again is one more round, again ending on the page.
    const again = await b.browse(`${s.origin('web')}/payroll`, undefined, 30);
    assert.equal(again.res.status, 403, again.hops.join('\n'));
  });
});
