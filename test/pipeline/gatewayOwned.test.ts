import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { request, tempDir } from '../support/harness.js';
import { Browser, startStack, type Stack } from '../identity/support.js';

/**
 * What the gateway owns never reaches any app from a client: a browser sends an app's session
 * cookie to every app of the host, and one internal server published twice must not receive,
 * through the app that does not set them, the identity headers the other app's backend trusts.
 */
describe('pipeline: the gateway strips its cookies and every app\'s identity headers on every app', function () {
  this.timeout(30_000);
  let s: Stack;
  before(async () => {
    s = await startStack({
      apps: (backend) => `
  - name: Web
    externalUrl: http://web.localhost/
    internalUrl: ${backend}/
    preAuth: oidc
  - name: WebPublic
    externalUrl: http://web.localhost/public/
    internalUrl: ${backend}/public/
    preAuth: passthrough
  - name: Team
    externalUrl: http://app.localhost/
    internalUrl: ${backend}/
    preAuth: oidc
    headers:
      identity: { X-Remote-User: user, X-Remote-Groups: groups }
      assertion: X-Drawbridge-Assertion
  - name: Open
    externalUrl: http://open.localhost/
    internalUrl: ${backend}/
    preAuth: passthrough
`,
    });
  });
  after(async () => s?.stop());

  const last = () => s.backend.received[s.backend.received.length - 1]!;
  const at = (host: string, path: string, headers: Record<string, string>) =>
    request(`http://127.0.0.1:${s.gw.port}${path}`, { headers: { host: `${host}.localhost:${s.gw.port}`, ...headers } });

  it('a passthrough app under a signed-in app gets the app cookies but not the session cookie', async () => {
    const b = new Browser();
    const { res } = await b.browse(`${s.origin('web')}/`, { user: 'bob', password: 'bob-pw' });
    assert.equal(res.status, 200, res.body);
    const jar = b.cookieHeader(`web.localhost:${s.gw.port}`);
    assert.match(jar, /drawbridge_session=/);
    const r = await at('web', '/public/page', { cookie: `${jar}; theme=dark; drawbridge_login_abc=x` });
    assert.equal(r.status, 200);
    assert.equal(last().url, '/public/page');
    assert.equal(last().headers.cookie, 'theme=dark');
    // and what the passthrough backend could have logged is no way in
    const replay = await at('web', '/', { cookie: jar });
    assert.equal(replay.status, 200, 'the cookie itself is valid');
  });

  it('a passthrough app drops identity and assertion headers that only another app sets, in every spelling', async () => {
    const r = await at('open', '/x', { 'x-remote-user': 'admin', 'x-remote-groups': 'admins', x_remote_user: 'admin', 'x.remote.user': 'admin', 'x-drawbridge-assertion': 'forged', 'x-app-own': 'kept' });
    assert.equal(r.status, 200);
    const h = last().headers;
    for (const name of ['x-remote-user', 'x-remote-groups', 'x_remote_user', 'x.remote.user', 'x-drawbridge-assertion']) assert.equal(h[name], undefined, name);
    assert.equal(h['x-app-own'], 'kept');
  });

  it('an oidc app without header SSO drops them too; the header-SSO app sets its own values', async () => {
    const b = new Browser();
    assert.equal((await b.browse(`${s.origin('web')}/`, { user: 'carol', password: 'carol-pw' })).res.status, 200);
    await b.get(`${s.origin('web')}/me`, { 'x-remote-user': 'admin' });
    assert.equal(last().headers['x-remote-user'], undefined);

    const t = new Browser();
    assert.equal((await t.browse(`${s.origin('app')}/`, { user: 'carol', password: 'carol-pw' })).res.status, 200);
    await t.get(`${s.origin('app')}/me`, { 'x-remote-user': 'admin' });
    assert.equal(last().headers['x-remote-user'], 'carol');
    assert.notEqual(last().headers['x-drawbridge-assertion'], undefined);
  });
});

/** A PingAccess-style sso plugin: the backend trusts X-Auth-User; like kcd-shim it also replaces Authorization. */
const AUTH_USER_PLUGIN = `export default {
  name: 'auth-user', kind: 'sso', apiVersion: 1, optionsSchema: { type: 'object' },
  create: () => ({
    name: 'auth-user', kind: 'sso', stripHeaders: ['x-auth-user', 'authorization'],
    run: (ctx) => ({ kind: 'continue', setHeaders: { 'x-auth-user': ctx.identity.user, authorization: 'Negotiate for-' + ctx.identity.user } }),
  }),
};
`;

describe('pipeline: headers an sso plugin strips are dropped on every app, its client credentials only on its own', function () {
  this.timeout(30_000);
  let s: Stack;
  before(async () => {
    const plugin = join(tempDir(), 'auth-user.mjs');
    writeFileSync(plugin, AUTH_USER_PLUGIN);
    s = await startStack({
      extraYaml: `plugins: [${JSON.stringify(plugin)}]`,
      apps: (backend) => `
  - name: Intranet
    externalUrl: http://app.localhost/
    internalUrl: ${backend}/
    preAuth: oidc
    sso: { plugin: auth-user }
  - name: Open
    externalUrl: http://open.localhost/
    internalUrl: ${backend}/
    preAuth: passthrough
`,
    });
  });
  after(async () => s?.stop());

  const last = () => s.backend.received[s.backend.received.length - 1]!;

  it('a passthrough app on the same backend drops the plugin\'s header in every spelling', async () => {
    const r = await request(`http://127.0.0.1:${s.gw.port}/x`, {
      headers: { host: `open.localhost:${s.gw.port}`, 'x-auth-user': 'admin', x_auth_user: 'admin', 'x.auth.user': 'admin', authorization: 'Basic b3BlbjpzZXNhbWU=', 'x-app-own': 'kept' },
    });
    assert.equal(r.status, 200);
    const h = last().headers;
    for (const name of ['x-auth-user', 'x_auth_user', 'x.auth.user']) assert.equal(h[name], undefined, name);
    assert.equal(h.authorization, 'Basic b3BlbjpzZXNhbWU=', 'the client\'s own credentials still reach the other apps');
    assert.equal(h['x-app-own'], 'kept');
  });

  it('the plugin\'s app gets the plugin\'s values only', async () => {
    const b = new Browser();
    assert.equal((await b.browse(`${s.origin('app')}/`, { user: 'carol', password: 'carol-pw' })).res.status, 200);
    await b.get(`${s.origin('app')}/me`, { 'x-auth-user': 'admin', authorization: 'Basic Zm9yZ2Vk' });
    assert.equal(last().headers['x-auth-user'], 'carol');
    assert.equal(last().headers.authorization, 'Negotiate for-carol');
  });
});
