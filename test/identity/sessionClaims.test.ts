import assert from 'node:assert/strict';
import { Browser, USERS, startStack, type Stack } from './support.js';

/**
 * The claims the config names (policy claim conditions, the compliant-device claim, identity
 * headers) travel in the browser session, so a rule reads the same claims whether the user came
 * with a bearer token or signed in with a browser.
 */
describe('identity: claims the config reads are kept in the browser session', function () {
  this.timeout(30_000);
  let s: Stack;
  const users = [
    ...USERS,
    { username: 'dave', password: 'dave-pw', name: 'Dave', email: 'dave@example.test', groups: ['everyone'], mfa: false, claims: { department: 'Finance', roles: ['Admin'], managed: 'yes' } },
    { username: 'erin', password: 'erin-pw', name: 'Erin', email: 'erin@example.test', groups: ['everyone'], mfa: false, claims: { department: 'Sales', roles: ['Reader'], managed: 'no' } },
  ];
  before(async () => {
    s = await startStack({
      users,
      identityYaml: '  compliantDevice: { claim: managed, equals: "yes" }',
      extraYaml: `policies:
  no-finance:
    when: { claims: { department: { equals: Finance } } }
    grant: block
  managed-only:
    grant: requireCompliantDevice
`,
      apps: (b) => `
  - name: Web
    externalUrl: http://web.localhost/
    internalUrl: ${b}/
    preAuth: oidc
    conditionalAccess: [no-finance]
    headers:
      identity: { X-Roles: roles }
  - name: Other
    externalUrl: http://other.localhost/
    internalUrl: ${b}/
    preAuth: oidc
    conditionalAccess: [managed-only]
`,
    });
  });
  after(async () => s?.stop());

  it('a block on a claim stops the browser user it names, and lets the others through with the claim in their identity header', async () => {
    const dave = await new Browser().browse(`${s.origin('web')}/`, { user: 'dave', password: 'dave-pw' }, 30);
    assert.equal(dave.res.status, 403, dave.hops.join('\n'));
    const erin = await new Browser().browse(`${s.origin('web')}/`, { user: 'erin', password: 'erin-pw' }, 30);
    assert.equal(erin.res.status, 200, erin.hops.join('\n'));
    assert.equal(JSON.parse(erin.res.body).headers['x-roles'], 'Reader');
  });

  it('a custom compliant-device claim is read from the session: the managed device passes, the other is refused', async () => {
    const dave = await new Browser().browse(`${s.origin('other')}/`, { user: 'dave', password: 'dave-pw' }, 30);
    assert.equal(dave.res.status, 200, dave.hops.join('\n'));
    const erin = await new Browser().browse(`${s.origin('other')}/`, { user: 'erin', password: 'erin-pw' }, 30);
    assert.equal(erin.res.status, 403, erin.hops.join('\n'));
  });
});
