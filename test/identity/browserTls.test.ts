import assert from 'node:assert/strict';
import http from 'node:http';
import https from 'node:https';
import { readFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
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
  /** a sibling https site under the same parent domain as app One, which the gateway does not publish */
  let sibling: https.Server;
  let planted: string[] = [];
  before(async () => {
    backend = await startEchoBackend();
    idp = await EmbeddedIdp.start({ clientId: 'drawbridge', clientSecret: CLIENT_SECRET, users: USERS });
    const dir = tempDir();
    const cert = selfSignedCert(dir, 'gateway', ['secure.localhost', 'one.apps.example.test', 'evil.apps.example.test', 'framed.apps.example.test', 'plain.apps.example.test']);
    sibling = https.createServer({ cert: cert.certPem, key: readFileSync(cert.key) }, (_req, res) => res.writeHead(200, { 'set-cookie': planted, 'content-type': 'text/html' }).end('<p>sibling</p>'));
    await new Promise<void>((r) => sibling.listen(0, '127.0.0.1', r));
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
  - name: Framed
    externalUrl: https://framed.apps.example.test/
    internalUrl: ${backend.url}/
    preAuth: oidc
    cookies: { sameSite: none }
  - name: Plain
    externalUrl: https://plain.apps.example.test/
    internalUrl: ${backend.url}/
    preAuth: oidc
    cookies: { secure: false, httpOnly: false }
`,
      { dir },
    );
    const port = Number(gw.server.addresses().https!.split(':').pop());
    origin = `https://secure.localhost:${port}`;
    idp.allowRedirectUri(`${origin}/.drawbridge/callback`);
    idp.allowRedirectUri(`https://one.apps.example.test:${port}/.drawbridge/callback`);
    idp.allowRedirectUri(`https://plain.apps.example.test:${port}/.drawbridge/callback`);
    browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: [...ARGS, '--host-resolver-rules=MAP *.example.test 127.0.0.1'] });
  });
  after(async () => {
    await browser?.close();
    await gw?.stop();
    await idp?.close();
    await backend?.close();
    await new Promise((r) => sibling?.close(r));
  });

  it('signs in and keeps the session in a Secure, HttpOnly __Host- cookie the app never sees', async () => {
    const ctx = await browser.newContext({ ignoreHTTPSErrors: true });
    const page = await ctx.newPage();
    await page.goto(`${origin}/deep?x=1`);
    // The sign-in in flight is a __Host- cookie too: no sibling subdomain can set one (see the cookie-tossing test).
    const login = (await ctx.cookies(origin)).find((c) => /^__Host-drawbridge_login_[A-Za-z0-9_-]{8}$/.test(c.name));
    assert.ok(login, JSON.stringify(await ctx.cookies(origin)));
    assert.deepEqual([login.domain, login.path, login.secure, login.httpOnly], ['secure.localhost', '/', true, true]);
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

  it("an app's cookies: { secure: false, httpOnly: false } over https: the session cookie is neither Secure nor HttpOnly, so it has no __Host- prefix", async () => {
    const plain = `https://plain.apps.example.test:${new URL(origin).port}`;
    const ctx = await browser.newContext({ ignoreHTTPSErrors: true });
    const page = await ctx.newPage();
    await page.goto(`${plain}/deep`);
    await page.fill('#username', 'carol');
    await page.fill('#password', 'carol-pw');
    await Promise.all([page.waitForURL(`${plain}/deep`), page.click('button[type=submit]')]);
    const cookies = await ctx.cookies(plain);
    const cookie = cookies.find((c) => c.name.endsWith('drawbridge_session'));
    assert.ok(cookie, JSON.stringify(cookies));
    assert.deepEqual([cookie.name, cookie.secure, cookie.httpOnly, cookie.sameSite], ['drawbridge_session', false, false, 'Strict']);
    assert.equal(await page.evaluate(() => document.cookie.includes('drawbridge_session=')), true, 'scripts see it');
    await ctx.close();
  });

  it('an app whose session cookie is SameSite=None (embedded in another site) starts its sign-in with a SameSite=None login cookie, which a frame can keep; other apps keep Lax', async () => {
    const loginCookieOf = (host: string) =>
      new Promise<string>((resolve, reject) => {
        const req = https.request({ host: '127.0.0.1', port: new URL(origin).port, path: '/deep', servername: host, rejectUnauthorized: false, headers: { host: `${host}:${new URL(origin).port}` } }, (res) => {
          res.resume();
          resolve([res.headers['set-cookie'] ?? []].flat().find((c) => c.startsWith('__Host-drawbridge_login_')) ?? 'none');
        });
        req.on('error', reject);
        req.end();
      });
    const framed = await loginCookieOf('framed.apps.example.test');
    assert.match(framed, /; Secure/);
    assert.match(framed, /; SameSite=None/);
    assert.match(await loginCookieOf('one.apps.example.test'), /; SameSite=Lax/);
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

  it('login CSRF by cookie tossing: a sibling subdomain cannot plant its own sign-in in flight, under any name', async () => {
    const port = new URL(origin).port;
    const one = `https://one.apps.example.test:${port}`;
    // The attacker starts a sign-in on the app, signs in at the provider as bob, and keeps the callback URL unopened.
    const attacker = await untilCallback(`${one}/documents`, 'bob', 'bob-pw');
    const [name, value] = [...attacker.cookies].find(([n]) => n.includes('drawbridge_login_'))!;
    const slot = name.slice(name.indexOf('drawbridge_login_') + 'drawbridge_login_'.length);
    // The sibling's page plants that sign-in for the parent domain, under every name the gateway has used.
    planted = ['__Host-', '__Secure-', ''].map((p) => `${p}drawbridge_login_${slot}=${value}; Domain=apps.example.test; Path=/; Secure; HttpOnly; SameSite=Lax`);
    const ctx = await browser.newContext({ ignoreHTTPSErrors: true });
    const page = await ctx.newPage();
    await page.goto(`https://evil.apps.example.test:${(sibling.address() as AddressInfo).port}/`);
    const names = (await ctx.cookies(one)).map((c) => `${c.domain}:${c.name}`).sort();
    assert.deepEqual(names, [`.apps.example.test:__Secure-drawbridge_login_${slot}`, `.apps.example.test:drawbridge_login_${slot}`], 'the browser refuses a __Host- cookie with Domain');
    // ... and sends the victim to the attacker's callback: no sign-in of this browser, no session.
    const before = backend.received.length;
    const res = await page.goto(attacker.callback);
    assert.equal(res!.status(), 400);
    assert.match((await page.textContent('body'))!, /This sign-in was not started in this browser/);
    assert.equal((await ctx.cookies(one)).filter((c) => c.name.includes('drawbridge_session')).length, 0);
    await page.goto(`${one}/documents`);
    assert.ok(page.url().startsWith(idp.issuer), `the victim is asked to sign in, not let in as bob: ${page.url()}`);
    assert.equal(backend.received.length, before);
    await ctx.close();
  });
});

/**
 * The attacker's own user agent, up to the provider's redirect back to the gateway (not followed):
 * the callback URL and the gateway's cookies. Talks to 127.0.0.1 whatever the host name.
 */
async function untilCallback(start: string, user: string, password: string): Promise<{ callback: string; cookies: Map<string, string> }> {
  const jars = new Map<string, Map<string, string>>();
  const send = (url: URL, method = 'GET', body?: string) =>
    new Promise<{ status: number; location?: string; body: string }>((resolve, reject) => {
      const jar = jars.get(url.host) ?? new Map<string, string>();
      jars.set(url.host, jar);
      const headers: Record<string, string> = { host: url.host, accept: 'text/html', ...(jar.size ? { cookie: [...jar].map(([k, v]) => `${k}=${v}`).join('; ') } : {}), ...(body ? { 'content-type': 'application/x-www-form-urlencoded' } : {}) };
      const opts = { host: '127.0.0.1', port: url.port, path: url.pathname + url.search, method, headers, servername: url.hostname, rejectUnauthorized: false };
      const req = (url.protocol === 'https:' ? https : http).request(opts, (res) => {
        for (const sc of res.headers['set-cookie'] ?? []) {
          const pair = sc.split(';')[0]!;
          jar.set(pair.slice(0, pair.indexOf('=')), pair.slice(pair.indexOf('=') + 1));
        }
        let b = '';
        res.on('data', (c) => (b += c));
        res.on('end', () => resolve({ status: res.statusCode!, location: res.headers.location, body: b }));
      });
      req.on('error', reject);
      req.end(body);
    });
  let url = new URL(start);
  let method = 'GET';
  let body: string | undefined;
  for (let i = 0; i < 15; i++) {
    if (url.pathname === '/.drawbridge/callback') return { callback: url.href, cookies: jars.get(new URL(start).host)! };
    const res = await send(url, method, body);
    [method, body] = ['GET', undefined];
    if (res.location) {
      url = new URL(res.location, url);
      continue;
    }
    const action = /<form method="post" action="([^"]+)"/.exec(res.body)?.[1];
    if (!action?.endsWith('/login')) throw new Error(`unexpected ${res.status} at ${url.href}`);
    [url, method, body] = [new URL(action.replace(/&#(\d+);/g, (_, c) => String.fromCharCode(Number(c))), url), 'POST', new URLSearchParams({ username: user, password }).toString()];
  }
  throw new Error('the provider never sent the attacker back');
}
