import assert from 'node:assert/strict';
import https from 'node:https';
import { chromium, type Browser } from 'playwright-core';
import { EmbeddedIdp } from '../../src/identity/provider/embeddedIdp.js';
import { selfSignedCert } from '../support/certs.js';
import { startEchoBackend, startGateway, tempDir, type EchoBackend, type TestGateway } from '../support/harness.js';
import { CLIENT_SECRET, SECRET_A, USERS } from './support.js';

const ARGS = ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic'];

describe('identity: sign-in over https in Chromium (__Host- session cookie)', function () {
  this.timeout(60_000);
  let idp: EmbeddedIdp;
  let gw: TestGateway;
  let backend: EchoBackend;
  let browser: Browser;
  let origin = '';
  before(async () => {
    backend = await startEchoBackend();
    idp = await EmbeddedIdp.start({ clientId: 'drawbridge', clientSecret: CLIENT_SECRET, users: USERS });
    const dir = tempDir();
    selfSignedCert(dir, 'gateway', ['secure.localhost', 'one.apps.example.test']);
    gw = await startGateway(
      `gateway:
  publicUrl: https://secure.localhost
  listen: { https: 127.0.0.1:0 }
  tls: { cert: ./gateway.crt, key: ./gateway.key }
identity:
  issuer: ${idp.issuer}
  clientId: drawbridge
  clientSecret: ${CLIENT_SECRET}
session:
  secrets: [${SECRET_A}]
  cookie: { sameSite: strict }
apps:
  - name: Secure
    externalUrl: https://secure.localhost/
    internalUrl: ${backend.url}/
    preAuth: oidc
  - name: One
    externalUrl: https://one.apps.example.test/
    internalUrl: ${backend.url}/
    preAuth: oidc
`,
      { dir },
    );
    const port = Number(gw.server.addresses().https!.split(':').pop());
    origin = `https://secure.localhost:${port}`;
    idp.allowRedirectUri(`${origin}/.drawbridge/callback`);
    browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: [...ARGS, '--host-resolver-rules=MAP *.example.test 127.0.0.1'] });
  });
  after(async () => {
    await browser?.close();
    await gw?.stop();
    await idp?.close();
    await backend?.close();
  });

  it('signs in and keeps the session in a Secure, HttpOnly __Host- cookie the app never sees', async () => {
    const ctx = await browser.newContext({ ignoreHTTPSErrors: true });
    const page = await ctx.newPage();
    await page.goto(`${origin}/deep?x=1`);
    await page.fill('#username', 'carol');
    await page.fill('#password', 'carol-pw');
    await Promise.all([page.waitForURL(`${origin}/deep?x=1`), page.click('button[type=submit]')]);
    const echoed = JSON.parse((await page.textContent('body'))!);
    assert.equal(echoed.url, '/deep?x=1');
    assert.equal(echoed.headers.cookie, undefined);
    const cookie = (await ctx.cookies(origin)).find((c) => c.name === '__Host-drawbridge_session');
    assert.ok(cookie, JSON.stringify(await ctx.cookies(origin)));
    assert.equal(cookie.secure, true);
    assert.equal(cookie.httpOnly, true);
    assert.equal(cookie.path, '/');
    assert.equal(cookie.sameSite, 'Strict');
    // A second visit uses the cookie: no trip to the provider.
    await page.goto(`${origin}/again`);
    assert.equal(page.url(), `${origin}/again`);
    await ctx.close();

    // The same value under the unprefixed name is what a sibling subdomain or an http
    // response could plant: it opens nothing, alone or sent before the real one.
    const api = (cookie: string) =>
      new Promise<{ status: number; body: string }>((resolve, reject) => {
        const req = https.request({ host: '127.0.0.1', port: new URL(origin).port, path: '/api', servername: 'secure.localhost', rejectUnauthorized: false, headers: { host: new URL(origin).host, cookie, accept: 'application/json' } }, (res) => {
          let body = '';
          res.on('data', (c) => (body += c));
          res.on('end', () => resolve({ status: res.statusCode!, body }));
        });
        req.on('error', reject);
        req.end();
      });
    assert.equal((await api(`__Host-drawbridge_session=${cookie.value}`)).status, 200);
    assert.equal((await api(`drawbridge_session=${cookie.value}`)).status, 401);
    const before = backend.received.length;
    const both = await api(`drawbridge_session=${'x'.repeat(10)}; __Host-drawbridge_session=${cookie.value}`);
    assert.equal(both.status, 200);
    assert.equal(JSON.parse(both.body).headers.cookie, undefined, 'neither name reaches the app');
    assert.equal(backend.received.length, before + 1);
  });

  it('the signed-out page, which any site can send the browser to, leaves every cookie of other sites alone', async () => {
    const ctx = await browser.newContext({ ignoreHTTPSErrors: true });
    const port = new URL(origin).port;
    // Cookies of company sites under the same registrable domain that the gateway does not publish.
    await ctx.addCookies([
      { name: 'corp_portal', value: '1', domain: '.example.test', path: '/', secure: true },
      { name: 'www_pref', value: '1', domain: 'www.example.test', path: '/', secure: true },
    ]);
    const page = await ctx.newPage();
    const res = await page.goto(`https://one.apps.example.test:${port}/.drawbridge/signed-out`);
    assert.match((await page.textContent('h1'))!, /signed out/);
    assert.equal(res!.headers()['clear-site-data'], undefined);
    const names = (await ctx.cookies()).map((c) => `${c.domain}:${c.name}`).sort();
    assert.deepEqual(names, ['.example.test:corp_portal', 'www.example.test:www_pref']);
    await ctx.close();
  });
});
