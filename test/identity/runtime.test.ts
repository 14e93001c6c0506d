/**
 * The identity: and session.cookie keys the operator sets (gateway.config.reference.yaml), as a
 * user meets them through the real gateway and provider: which scopes the sign-in asks for, which
 * claims name the user and the groups, which signature algorithms are accepted, and the session
 * cookie's attributes. Each test here fails when runtime.ts stops reading its key.
 */
import assert from 'node:assert/strict';
import { request, sleep } from '../support/harness.js';
import { Browser, USERS, startStack, userToken, type Stack } from './support.js';

/** an app that needs the group `payroll` and tells the backend who came */
const payrollApp = (b: string) => `
  - name: Web
    externalUrl: http://web.localhost/
    internalUrl: ${b}/
    preAuth: oidc
    audience: api://web
    assignment: { groups: [payroll] }
    headers:
      identity: { X-Remote-User: user, X-Remote-Groups: groups }
  - name: Finance
    externalUrl: http://finance.localhost/
    internalUrl: ${b}/
    preAuth: oidc
    assignment: { groups: [finance] }
`;

/** the identity headers the backend saw on its last request */
const lastSeen = (s: Stack) => {
  const h = s.backend.received.at(-1)!.headers;
  return { user: h['x-remote-user'], groups: h['x-remote-groups'] };
};

describe('identity: the identity: keys through the gateway', function () {
  this.timeout(30_000);

  describe('claims: { user, groups }', () => {
    let s: Stack;
    before(async () => {
      // bob is in team payroll, carol in none: `team` is a claim of the provider's, not `groups`
      const users = USERS.map((u) => ({ ...u, claims: { team: u.username === 'bob' ? ['payroll'] : ['support'] } }));
      s = await startStack({ users, apps: payrollApp, identityYaml: '  claims: { user: email, groups: team }' });
    });
    after(async () => s?.stop());

    it('claims.user names the user by the configured claim, in the session, the identity header and for a bearer token', async () => {
      const b = new Browser();
      const { res } = await b.browse(`${s.origin('web')}/x`, { user: 'bob', password: 'bob-pw' });
      assert.equal(res.status, 200, res.body);
      assert.equal(lastSeen(s).user, 'bob@example.test');
      assert.equal((await b.get(`${s.origin('web')}/.drawbridge/me`)).json().user, 'bob@example.test');
      const token = await userToken(s, 'bob', 'bob-pw', 'api://web', 'read');
      const api = await request(`http://127.0.0.1:${s.gw.port}/y`, { headers: { host: `web.localhost:${s.gw.port}`, authorization: `Bearer ${token}` } });
      assert.equal(api.status, 200, api.body);
      assert.equal(lastSeen(s).user, 'bob@example.test');
    });

    it('claims.groups: assignment and the groups header read the configured claim, not `groups`', async () => {
      const bob = new Browser();
      assert.equal((await bob.browse(`${s.origin('web')}/x`, { user: 'bob', password: 'bob-pw' })).res.status, 200);
      assert.equal(lastSeen(s).groups, 'payroll');
      // bob's `groups` claim says finance, but that is not the claim the config names
      assert.equal((await bob.browse(`${s.origin('finance')}/x`)).res.status, 403);
      const carol = new Browser();
      assert.equal((await carol.browse(`${s.origin('web')}/x`, { user: 'carol', password: 'carol-pw' })).res.status, 403);
    });
  });

  describe('scopes', () => {
    let s: Stack;
    before(async () => {
      // no profile scope: the provider sends neither preferred_username nor groups
      s = await startStack({ apps: payrollApp, identityYaml: '  scopes: [openid, email]' });
    });
    after(async () => s?.stop());

    it('the sign-in asks the provider for the configured scopes, and gets only what they grant', async () => {
      const b = new Browser();
      const start = await b.get(`${s.origin('finance')}/x`);
      assert.equal(start.status, 302);
      assert.equal(new URL(start.headers.location!).searchParams.get('scope'), 'openid email');
      const { res } = await b.browse(`${s.origin('finance')}/x`, { user: 'bob', password: 'bob-pw' });
      // without profile the ID token has no groups: bob's finance membership is not seen
      assert.equal(res.status, 403, res.body);
      const me = (await b.get(`${s.origin('finance')}/.drawbridge/me`)).json();
      assert.equal(me.user, 'bob@example.test', 'no preferred_username: the user is named by email');
      assert.deepEqual(me.groups, []);
    });
  });

  describe('clockTolerance', () => {
    let s: Stack;
    before(async () => {
      // support.ts writes `clockTolerance: 5s`; access tokens live 2 s
      s = await startStack({ accessTokenTtlSec: 2 });
    });
    after(async () => s?.stop());

    it('a bearer token is accepted for the configured 5 s past its exp, and refused after (not the default 60 s)', async () => {
      const token = await userToken(s, 'bob', 'bob-pw', 'api://web', 'read');
      const exp = JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString()).exp as number;
      const get = () => request(`http://127.0.0.1:${s.gw.port}/y`, { headers: { host: `web.localhost:${s.gw.port}`, authorization: `Bearer ${token}` } });
      const at = (sec: number) => sleep(Math.max(0, sec * 1000 - Date.now()));
      await at(exp + 2);
      assert.equal((await get()).status, 200, 'within the tolerance');
      await at(exp + 7);
      const late = await get();
      assert.equal(late.status, 401, late.body);
    });
  });

  describe('algorithms', () => {
    let s: Stack;
    before(async () => {
      // the embedded provider signs with RS256 only
      s = await startStack({ apps: payrollApp, identityYaml: '  algorithms: [ES256]' });
    });
    after(async () => s?.stop());

    it('a token signed with an algorithm the list leaves out is refused: no browser session, and 401 for a bearer token', async () => {
      const before = s.backend.received.length;
      const b = new Browser();
      const { res } = await b.browse(`${s.origin('finance')}/x`, { user: 'bob', password: 'bob-pw' });
      assert.equal(res.status, 401, res.body);
      assert.equal((await b.get(`${s.origin('finance')}/.drawbridge/me`, { accept: 'application/json' })).status, 401);
      const token = await userToken(s, 'bob', 'bob-pw', 'api://web', 'read');
      const api = await request(`http://127.0.0.1:${s.gw.port}/y`, { headers: { host: `web.localhost:${s.gw.port}`, authorization: `Bearer ${token}` } });
      assert.equal(api.status, 401, api.body);
      assert.equal(s.backend.received.length, before, 'the app saw nothing');
    });
  });
});

describe('identity: session.cookie keys through the gateway', function () {
  this.timeout(30_000);
  let s: Stack;
  before(async () => {
    s = await startStack({ extraYaml: '  cookie: { name: team_session, lifetime: 2h, httpOnly: false, persistent: true, sameSite: strict }' });
  });
  after(async () => s?.stop());

  it('name, lifetime, httpOnly, persistent and sameSite shape the Set-Cookie a browser gets after sign-in', async () => {
    const b = new Browser();
    const { res } = await b.browse(`${s.origin('web')}/x`, { user: 'bob', password: 'bob-pw' });
    assert.equal(res.status, 200, res.body);
    const session = b.setCookies.find((c) => c.startsWith('team_session='));
    assert.ok(session, `a team_session cookie among ${b.setCookies.join(' | ')}`);
    const attrs = session.split(';').slice(1).map((a) => a.trim().toLowerCase());
    assert.ok(!attrs.includes('httponly'), session);
    assert.ok(attrs.includes('samesite=strict'), session);
    assert.ok(attrs.includes('max-age=7200'), session);
  });
});
