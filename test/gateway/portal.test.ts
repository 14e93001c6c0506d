import assert from 'node:assert/strict';
import { selfSignedCert } from '../support/certs.js';
import { request, startGateway, tempDir } from '../support/harness.js';
import { Browser, startStack, type Stack } from '../identity/support.js';

/**
 * The app portal at gateway.publicUrl (http://portal.localhost here): a signed-in user sees the
 * apps whose assignment admits them and that are not hidden, and nothing of the others.
 * USERS (test/identity/support.ts): bob is in finance, alice in engineering, both in everyone.
 */
function portalApps(backend: string): string {
  return `
  - name: Web
    externalUrl: http://web.localhost/
    internalUrl: ${backend}/
  - name: Finance
    externalUrl: http://finance.localhost/
    internalUrl: ${backend}/
    assignment: { groups: [finance] }
  - name: EngWiki
    externalUrl: http://other.localhost/
    internalUrl: ${backend}/
    assignment: { groups: [ENGINEERING], users: [carol] }
  - name: SecretApi
    externalUrl: http://api.localhost/
    internalUrl: ${backend}/
    assignment: { groups: [finance, engineering] }
    visibleToUsers: false
  - name: Wild
    externalUrl: http://*.wild.localhost/
    internalUrl: ${backend}/
  - name: Open
    externalUrl: http://open.localhost/
    internalUrl: ${backend}/
    preAuth: passthrough
  - name: Board
    externalUrl: http://portal.localhost/board/
    internalUrl: ${backend}/
    preAuth: passthrough
`;
}

describe('gateway: the app portal at publicUrl', function () {
  this.timeout(30_000);
  let s: Stack;
  let portal: string;
  const signIn = async (user: 'alice' | 'bob') => {
    const b = new Browser();
    const { res, url } = await b.browse(`${portal}/`, { user, password: `${user}-pw`, code: () => s.codes.get(user) });
    return { b, res, url };
  };
  before(async () => {
    s = await startStack({ apps: portalApps, publicUrl: 'http://portal.localhost' });
    portal = s.origin('portal');
  });
  after(async () => s?.stop());

  it('bob signs in at the portal and sees the apps assigned to him, not a hidden one nor one assigned only to others', async () => {
    const { res, url } = await signIn('bob');
    assert.equal(url, `${portal}/`);
    assert.equal(res.status, 200, res.body);
    assert.match(String(res.headers['content-type']), /^text\/html/);
    assert.equal(res.headers['cache-control'], 'no-store');
    assert.match(String(res.headers['content-security-policy']), /default-src 'none'/);
    for (const [name, url] of [['Web', 'http://web.localhost/'], ['Finance', 'http://finance.localhost/'], ['Open', 'http://open.localhost/'], ['Board', 'http://portal.localhost/board/']]) {
      assert.ok(res.body.includes(`<a href="${url}">${name}</a>`), `${name} in ${res.body}`);
    }
    // not assigned, hidden, and a wildcard host (no single address): not named at all
    for (const absent of ['EngWiki', 'other.localhost', 'SecretApi', 'api.localhost', 'Wild']) assert.ok(!res.body.includes(absent), `${absent} in ${res.body}`);
    assert.match(res.body, /Signed in as bob/);
  });

  it('alice sees another list: the group rule ignores case as the access stage does', async () => {
    const { b, res } = await signIn('alice');
    assert.equal(res.status, 200, res.body);
    const json = (await b.get(`${portal}/`, { accept: 'application/json' })).json();
    assert.deepEqual(
      json.apps.map((a: { name: string }) => a.name),
      ['Web', 'EngWiki', 'Open', 'Board'],
    );
    // and the app itself lets her in, as the list said
    assert.equal((await b.browse(`http://other.localhost:${s.gw.port}/`, { user: 'alice', password: 'alice-pw', code: () => s.codes.get('alice') })).res.status, 200);
  });

  it('answers JSON to a client that asks for it', async () => {
    const { b } = await signIn('bob');
    const res = await b.get(`${portal}/`, { accept: 'application/json' });
    assert.equal(res.status, 200);
    assert.equal(res.headers['content-type'], 'application/json');
    assert.equal(res.headers['cache-control'], 'no-store');
    assert.deepEqual(res.json(), {
      user: 'bob',
      apps: [
        { name: 'Web', url: 'http://web.localhost/' },
        { name: 'Finance', url: 'http://finance.localhost/' },
        { name: 'Open', url: 'http://open.localhost/' },
        { name: 'Board', url: 'http://portal.localhost/board/' },
      ],
      signOut: '/.drawbridge/sign-out',
    });
  });

  it('without a session: a browser is sent to the provider with the portal callback, an API client gets 401', async () => {
    const b = new Browser();
    const nav = await b.get(`${portal}/`);
    assert.equal(nav.status, 302);
    const loc = new URL(nav.headers.location!);
    assert.equal(loc.origin, s.idp.issuer);
    assert.equal(loc.searchParams.get('redirect_uri'), `${portal}/.drawbridge/callback`);
    for (const headers of [{ accept: 'application/json' }, { 'sec-fetch-mode': 'cors' }] as Record<string, string>[]) {
      const api = await new Browser().get(`${portal}/`, headers);
      assert.equal(api.status, 401);
      assert.equal(api.headers['content-type'], 'application/problem+json');
      assert.match(String(api.headers['www-authenticate']), /^Bearer /);
      assert.ok(!api.body.includes('Web'));
    }
    // only the page: anything else under the portal's address is not found
    assert.equal((await b.get(`${portal}/other`)).status, 404);
  });

  it("the portal's cookie opens no app and is not forwarded; an app's cookie is not the portal's", async () => {
    const { b } = await signIn('bob');
    const portalCookie = b.cookieHeader(new URL(portal).host);
    const value = /drawbridge_portal=([^;]+)/.exec(portalCookie)?.[1];
    assert.ok(value, portalCookie);
    // under an app's session cookie name, at the app's host: sign in again
    const atApp = await new Browser().get(`${s.origin('web')}/`, { cookie: `drawbridge_session=${value}` });
    assert.equal(atApp.status, 302);
    assert.ok(atApp.headers.location!.startsWith(s.idp.issuer));
    // an app on the portal's host gets the request without the portal's cookie
    const before = s.backend.received.length;
    assert.equal((await new Browser().get(`${portal}/board/x`, { cookie: `${portalCookie}; mine=1` })).status, 200);
    assert.equal(s.backend.received.slice(before)[0]!.headers.cookie, 'mine=1');
    // an app's session under the portal's name: sign in again
    const web = new Browser();
    assert.equal((await web.browse(`${s.origin('web')}/`, { user: 'bob', password: 'bob-pw' })).res.status, 200);
    const appValue = /drawbridge_session=([^;]+)/.exec(web.cookieHeader(new URL(s.origin('web')).host))?.[1];
    assert.ok(appValue);
    const atPortal = await new Browser().get(`${portal}/`, { cookie: `drawbridge_portal=${appValue}` });
    assert.equal(atPortal.status, 302);
    assert.ok(atPortal.headers.location!.startsWith(s.idp.issuer));
  });

  it('signs out like an app: the session is revoked and the page asks for sign-in again', async () => {
    const { b } = await signIn('bob');
    const cookie = b.cookieHeader(new URL(portal).host);
    const out = await b.get(`${portal}/.drawbridge/sign-out`, { 'sec-fetch-site': 'same-origin', 'sec-fetch-mode': 'navigate' });
    assert.equal(out.status, 302);
    assert.ok(out.headers.location!.startsWith(s.idp.issuer), out.headers.location);
    // a copy of the cookie taken before
    assert.equal((await new Browser().get(`${portal}/`, { cookie, accept: 'application/json' })).status, 401);
  });
});

describe('gateway: the app portal under a path of publicUrl', function () {
  this.timeout(30_000);

  it('is served at that path, with its session cookie, me and sign-out there', async () => {
    const s = await startStack({ publicUrl: 'http://portal.localhost/my' });
    try {
      const b = new Browser();
      const at = `${s.origin('portal')}/my/`;
      assert.equal((await b.get(`${s.origin('portal')}/my`)).headers.location, '/my/');
      const { res, url } = await b.browse(at, { user: 'bob', password: 'bob-pw' });
      assert.equal(url, at);
      assert.equal(res.status, 200, res.body);
      assert.ok(b.setCookies.some((c) => c.startsWith('drawbridge_portal=') && c.includes('Path=/my/')), b.setCookies.join('\n'));
      const me = await b.get(`${at}.drawbridge/me`);
      assert.equal(me.status, 200);
      assert.equal(me.json().user, 'bob');
      assert.equal((await b.get(`${s.origin('portal')}/`)).status, 404);
      // the chain starts at the host root and comes to the portal's step
      const out = await b.get(`${s.origin('portal')}/.drawbridge/sign-out`, { 'sec-fetch-site': 'same-origin', 'sec-fetch-mode': 'navigate' });
      assert.equal(out.headers.location, `${at}.drawbridge/sign-out?step=1`);
      await b.get(out.headers.location!, { 'sec-fetch-site': 'same-origin', 'sec-fetch-mode': 'navigate' });
      assert.equal((await b.get(`${at}.drawbridge/me`)).status, 401);
    } finally {
      await s.stop();
    }
  });
});

describe('gateway: where there is no app portal', function () {
  this.timeout(30_000);

  it('an app published at the root of publicUrl takes the address', async () => {
    const s = await startStack({
      publicUrl: 'http://portal.localhost',
      apps: (backend) => `
  - name: Home
    externalUrl: http://portal.localhost/
    internalUrl: ${backend}/
    preAuth: passthrough
`,
    });
    try {
      const res = await new Browser().get(`${s.origin('portal')}/`);
      assert.equal(res.status, 200);
      assert.equal(res.json().url, '/');
      assert.equal((await new Browser().get(`${s.origin('portal')}/.drawbridge/me`)).status, 404);
    } finally {
      await s.stop();
    }
  });

  it('without identity: nothing at publicUrl', async () => {
    const gw = await startGateway(`gateway:
  publicUrl: http://portal.localhost
  listen: { http: 127.0.0.1:0 }
apps:
  - name: Open
    externalUrl: http://open.localhost/
    internalUrl: http://127.0.0.1:1/
    preAuth: passthrough
`);
    try {
      const res = await request(`${gw.url}/`, { headers: { host: `portal.localhost:${gw.port}`, accept: 'text/html' } });
      assert.equal(res.status, 404);
    } finally {
      await gw.stop();
    }
  });
});

describe('gateway: the app portal behind an https listener', function () {
  this.timeout(30_000);

  it('plain http to publicUrl is redirected to the portal over https, as an app\'s address is; a host nothing is published on is not', async () => {
    const dir = tempDir();
    selfSignedCert(dir, 'gateway', ['portal.test']);
    const gw = await startGateway(
      `gateway:
  publicUrl: https://portal.test:8443
  listen: { https: 127.0.0.1:0, http: 127.0.0.1:0 }
  tls: { cert: ./gateway.crt, key: ./gateway.key }
identity:
  issuer: http://127.0.0.1:1
  clientId: drawbridge
  clientSecret: a-client-secret-for-tests
session:
  secrets: [${'s'.repeat(32)}]
apps:
  - name: Web
    externalUrl: https://web.test/
    internalUrl: http://127.0.0.1:1/
`,
      { dir },
    );
    try {
      const httpPort = Number(gw.server.addresses().http!.split(':').pop());
      const ask = (path: string, host = 'portal.test') => request(`http://127.0.0.1:${httpPort}${path}`, { headers: { host, accept: 'application/json' } });
      for (const [path, location] of [
        ['/', 'https://portal.test:8443/'],
        ['/?from=bookmark', 'https://portal.test:8443/?from=bookmark'],
        ['/.drawbridge/me', 'https://portal.test:8443/.drawbridge/me'],
      ] as const) {
        const res = await ask(path);
        assert.equal(res.status, 308, path);
        assert.equal(res.headers.location, location, path);
      }
      assert.equal((await ask('/', 'web.test')).headers.location, 'https://web.test/', 'an app, as before');
      const other = await ask('/', 'elsewhere.test');
      assert.equal(other.status, 404);
      assert.equal(other.headers.location, undefined);
    } finally {
      await gw.stop();
    }
  });
});
