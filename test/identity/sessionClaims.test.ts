import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { request } from '../support/harness.js';
import { Browser, USERS, startStack, userToken, type Stack } from './support.js';

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

/**
 * A session keeps only the claims the config read when it was made. A reload that adds a rule on
 * another claim used to find nothing to match in the sessions signed in before it, and their users
 * kept access until the session expired: such a session now sends the browser to sign in again,
 * silently while the provider's session lasts, and the new session is judged by the new rule.
 */
describe('identity: a reload that reads a claim earlier sessions did not keep', function () {
  this.timeout(30_000);
  let s: Stack;
  const users = [
    ...USERS,
    { username: 'tess', password: 'tess-pw', name: 'Tess', email: 'tess@example.test', groups: ['everyone'], mfa: false, claims: { contract: 'temp' } },
    { username: 'perm', password: 'perm-pw', name: 'Perm', email: 'perm@example.test', groups: ['everyone'], mfa: false, claims: { contract: 'staff' } },
  ];
  const app = `
  - name: Web
    externalUrl: http://web.localhost/
    internalUrl: BACKEND/
    preAuth: oidc
`;
  before(async () => {
    s = await startStack({ users, watch: false, apps: (b) => app.replace('BACKEND', b) });
  });
  after(async () => s?.stop());

  it('a block on a new claim reaches a session signed in before the reload; a session the rule does not name carries on after a silent sign-in', async () => {
    const tess = new Browser();
    const perm = new Browser();
    assert.equal((await tess.browse(`${s.origin('web')}/`, { user: 'tess', password: 'tess-pw' })).res.status, 200);
    assert.equal((await perm.browse(`${s.origin('web')}/`, { user: 'perm', password: 'perm-pw' })).res.status, 200);
    const yaml = readFileSync(s.gw.configFile, 'utf8');
    writeFileSync(
      s.gw.configFile,
      yaml.replace('    preAuth: oidc\n', '    preAuth: oidc\n    conditionalAccess: [no-temps]\n') + `policies:\n  no-temps:\n    when: { claims: { contract: { equals: temp } } }\n    grant: block\n`,
    );
    assert.equal(await s.gw.server.reload(), 'success');
    // no password this time: the provider's session signs them in again
    const after = await tess.browse(`${s.origin('web')}/`);
    assert.equal(after.res.status, 403, after.hops.join('\n'));
    assert.ok(after.hops.some((h) => h.startsWith(s.idp.issuer)), 'signed in again at the provider');
    assert.ok(s.gw.logs.some((l) => /the session was built before the config read the claim contract: sign in again/.test(JSON.stringify(l.reasons ?? ''))));
    const carriesOn = await perm.browse(`${s.origin('web')}/`);
    assert.equal(carriesOn.res.status, 200, carriesOn.hops.join('\n'));
    // the new session is judged without another sign-in
    const again = await perm.browse(`${s.origin('web')}/x`);
    assert.deepEqual(again.hops, [`${s.origin('web')}/x`]);
    assert.equal(again.res.status, 200);
  });
});

describe('identity: a reload that names the user or the groups by other claims', function () {
  this.timeout(30_000);
  let s: Stack;
  // tess's provider groups say everyone; her app roles (another claim) say contractors
  const users = [...USERS, { username: 'tess', password: 'tess-pw', name: 'Tess', email: 'tess@example.test', groups: ['everyone'], mfa: false, claims: { roles: ['contractors'] } }];
  const app = `
  - name: Web
    externalUrl: http://web.localhost/
    internalUrl: BACKEND/
    preAuth: oidc
    conditionalAccess: [no-contractors, not-bob-by-mail]
`;
  const policies = `policies:\n  no-contractors:\n    when: { groups: [contractors] }\n    grant: block\n  not-bob-by-mail:\n    when: { users: [bob@example.test] }\n    grant: block\n`;
  before(async () => {
    s = await startStack({ users, watch: false, apps: (b) => app.replace('BACKEND', b), extraYaml: policies });
  });
  after(async () => s?.stop());

  it('identity.claims.groups and claims.user changed by a reload reach sessions signed in before it: a block on the new claim applies after a silent sign-in', async () => {
    const tess = new Browser();
    const bob = new Browser();
    assert.equal((await tess.browse(`${s.origin('web')}/`, { user: 'tess', password: 'tess-pw' })).res.status, 200);
    assert.equal((await bob.browse(`${s.origin('web')}/`, { user: 'bob', password: 'bob-pw' })).res.status, 200);
    const carol = new Browser();
    assert.equal((await carol.browse(`${s.origin('web')}/`, { user: 'carol', password: 'carol-pw' })).res.status, 200);
    const yaml = readFileSync(s.gw.configFile, 'utf8');
    writeFileSync(s.gw.configFile, yaml.replace('  clockTolerance: 5s\n', '  clockTolerance: 5s\n  claims: { user: email, groups: roles }\n'));
    assert.equal(await s.gw.server.reload(), 'success');
    const tessAfter = await tess.browse(`${s.origin('web')}/`);
    assert.equal(tessAfter.res.status, 403, tessAfter.hops.join('\n'));
    assert.ok(tessAfter.hops.some((h) => h.startsWith(s.idp.issuer)), 'signed in again at the provider, without a password');
    const bobAfter = await bob.browse(`${s.origin('web')}/`);
    assert.equal(bobAfter.res.status, 403, bobAfter.hops.join('\n'));
    assert.ok(s.gw.logs.some((l) => /identity.claims/.test(JSON.stringify(l.reasons ?? ''))), 'the log says why');
    // carol is neither: she carries on, named by her email now
    const carolAfter = await carol.browse(`${s.origin('web')}/`);
    assert.equal(carolAfter.res.status, 200, carolAfter.hops.join('\n'));
    assert.equal((await carol.get(`${s.origin('web')}/.drawbridge/me`)).json().user, 'carol@example.test');
  });
});

describe('identity: a reload that changes identity.scopes', function () {
  this.timeout(30_000);
  let s: Stack;
  // dana's groups come with the profile scope
  const users = [...USERS, { username: 'dana', password: 'dana-pw', name: 'Dana', email: 'dana@example.test', groups: ['contractors'], mfa: false }];
  before(async () => {
    s = await startStack({
      users,
      watch: false,
      apps: (b) => `\n  - name: Web\n    externalUrl: http://web.localhost/\n    internalUrl: ${b}/\n    preAuth: oidc\n    conditionalAccess: [no-contractors]\n`,
      extraYaml: 'policies:\n  no-contractors:\n    when: { groups: [contractors] }\n    grant: block\n',
    });
  });
  after(async () => s?.stop());

  it('a session signed in without the scope that carries the groups signs in again once a reload asks for it: the block on her group applies', async () => {
    const yaml = readFileSync(s.gw.configFile, 'utf8');
    writeFileSync(s.gw.configFile, yaml.replace('  clockTolerance: 5s\n', '  clockTolerance: 5s\n  scopes: [openid, email]\n'));
    assert.equal(await s.gw.server.reload(), 'success');
    const dana = new Browser();
    const before = await dana.browse(`${s.origin('web')}/`, { user: 'dana', password: 'dana-pw' });
    assert.equal(before.res.status, 200, 'without profile the provider sends no groups: the block finds none');
    writeFileSync(s.gw.configFile, yaml);
    assert.equal(await s.gw.server.reload(), 'success');
    const after = await dana.browse(`${s.origin('web')}/`);
    assert.equal(after.res.status, 403, after.hops.join('\n'));
    assert.ok(after.hops.some((h) => h.startsWith(s.idp.issuer)), 'signed in again at the provider, without a password');
  });
});

/**
 * Providers do not all send groups as a list of strings. Read as no groups, a user whose one group
 * came as a string passed a block on that group; numbers are compared as their decimal form, and
 * a shape that cannot be compared counts as incomplete groups (a group block applies).
 */
describe('identity: a groups claim in another shape than a list of strings', function () {
  this.timeout(60_000);
  let s: Stack;
  const user = (username: string, groups: unknown) => ({ username, password: `${username}-pw`, name: username, email: `${username}@example.test`, groups: [], mfa: false, claims: { groups } });
  before(async () => {
    s = await startStack({
      users: [...USERS, user('gina', 'contractors'), user('ned', [1001]), user('hank', { id: 'contractors' }), user('olga', 'staff')],
      extraYaml: `policies:\n  no-contractors:\n    when: { groups: [contractors, "1001"] }\n    grant: block\n`,
      apps: (b) => `
  - name: Web
    externalUrl: http://web.localhost/
    internalUrl: ${b}/
    preAuth: oidc
    audience: api://web
    conditionalAccess: [no-contractors]
  - name: Staff
    externalUrl: http://other.localhost/
    internalUrl: ${b}/
    preAuth: oidc
    assignment: { groups: [staff] }
`,
    });
  });
  after(async () => s?.stop());

  it('a block on the group stops a string, a number and an unreadable shape, in a browser session and with a bearer token', async () => {
    for (const u of ['gina', 'ned', 'hank']) {
      const flow = await new Browser().browse(`${s.origin('web')}/`, { user: u, password: `${u}-pw` });
      assert.equal(flow.res.status, 403, `${u} (session): ${flow.res.status}`);
      const token = await userToken(s, u, `${u}-pw`, 'api://web', 'read');
      const res = await request(`http://127.0.0.1:${s.gw.port}/`, { headers: { host: new URL(s.origin('web')).host, authorization: `Bearer ${token}` } });
      assert.equal(res.status, 403, `${u} (bearer): ${res.status}`);
    }
  });

  it('a single group sent as a string is a group: assignment lets its member in', async () => {
    const flow = await new Browser().browse(`${s.origin('other')}/`, { user: 'olga', password: 'olga-pw' });
    assert.equal(flow.res.status, 200, flow.res.body.slice(0, 200));
  });
});
