/**
 * A provider whose discovery document lacks a usable endpoint is an outage of the sign-in
 * service (503, the field named in the log), found before anyone is sent to sign in: users
 * signed in at the provider and then got 401 at the callback, in a loop, or a 500 on every page.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { eventually, request, sleep, startGateway } from '../support/harness.js';

/** A provider that publishes only a discovery document, `edit` applied to a sound one; `/status/N` answers N, `/moved` redirects. */
async function startIssuer(edit: (doc: Record<string, unknown>) => void): Promise<{ url: string; close(): void }> {
  const server = http.createServer((req, res) => {
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const status = /^\/status\/(\d+)\//.exec(req.url!)?.[1];
    if (status) return void res.writeHead(Number(status)).end('{}');
    if (req.url!.startsWith('/moved/')) return void res.writeHead(302, { location: `${url}/.well-known/openid-configuration` }).end();
    if (req.url !== '/.well-known/openid-configuration') return void res.writeHead(404).end();
    const doc: Record<string, unknown> = {
      issuer: url,
      authorization_endpoint: `${url}/auth`,
      token_endpoint: `${url}/token`,
      jwks_uri: `${url}/jwks`,
      response_types_supported: ['code'],
      subject_types_supported: ['public'],
      id_token_signing_alg_values_supported: ['RS256'],
    };
    edit(doc);
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(doc));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, close: () => server.close() };
}

/** A gateway with one oidc app signing in at `issuer` (whose app is never reached). */
const oidcAppYaml = (issuer: string) => `
gateway:
  publicUrl: http://gw.test
  listen: { http: 127.0.0.1:0 }
identity: { issuer: ${issuer}, clientId: drawbridge, clientSecret: s }
session: { secrets: ["0123456789abcdef0123456789abcdef"] }
apps:
  - name: Web
    externalUrl: http://web.test/
    internalUrl: http://127.0.0.1:9/
    preAuth: oidc
`;

describe('identity: a discovery document without usable endpoints', function () {
  this.timeout(20_000);
  const cases: [string, (d: Record<string, unknown>) => void, RegExp][] = [
    ['no token_endpoint', (d) => delete d.token_endpoint, /token_endpoint is missing/],
    ['a token_endpoint that is not a URL', (d) => (d.token_endpoint = 'token please'), /token_endpoint is not an https URL/],
    ['a jwks_uri that is a number', (d) => (d.jwks_uri = 42), /jwks_uri is not an https URL \(42\)/],
    ['no authorization_endpoint', (d) => delete d.authorization_endpoint, /authorization_endpoint is missing/],
    ['a javascript: authorization_endpoint', (d) => (d.authorization_endpoint = 'javascript:alert(1)'), /authorization_endpoint is not an https URL/],
    ['an http endpoint on another host for a loopback issuer', (d) => (d.token_endpoint = 'http://idp.example.test/token'), /token_endpoint is not an https URL/],
  ];
  for (const [what, edit, logged] of cases) {
    it(`${what}: the browser gets 503 before it is sent to the provider, and the log names the field`, () => expect503(edit, logged));
  }

  // Read and parsed whole, a 400 MB one took 16 s, stalled every app's requests for 12 s and took 2.9 GB.
  it('a document over 1 MiB: 503 at once, logged as too large', async () => {
    const t0 = Date.now();
    await expect503((d) => (d.padding = 'x'.repeat(2 << 20)), /larger than 1 MiB/);
    assert.ok(Date.now() - t0 < 3000, `${Date.now() - t0} ms`);
  });

  async function expect503(edit: (d: Record<string, unknown>) => void, logged: RegExp): Promise<void> {
    const issuer = await startIssuer(edit);
    const gw = await startGateway(oidcAppYaml(issuer.url));
    try {
      const res = await new Promise<http.IncomingMessage>((resolve, reject) =>
        http.get({ port: gw.port, host: '127.0.0.1', path: '/page', headers: { host: 'web.test', accept: 'text/html', 'sec-fetch-mode': 'navigate' } }, (r) => resolve(r.resume())).on('error', reject),
      );
      assert.equal(res.statusCode, 503);
      assert.equal(res.headers.location, undefined, 'not sent to the provider');
      assert.equal(res.headers['retry-after'], '5');
      // the id on the page finds the line that says why
      const id = res.headers['x-correlation-id'];
      assert.ok(id);
      assert.ok(gw.logs.some((l) => l.msg === 'identity provider unavailable' && l.correlationId === id && logged.test(JSON.stringify(l))), JSON.stringify(gw.logs.filter((l) => l.level === 'error' || l.level === 50)));
      // More requests while it lasts: each request's line has the reason; the error is not written again with its stack each time
      const more = await Promise.all(Array.from({ length: 20 }, () => request(`${gw.url}/page`, { headers: { host: 'web.test', accept: 'text/html', 'sec-fetch-mode': 'navigate' } })));
      assert.deepEqual([...new Set(more.map((r) => r.status))], [503]);
      await eventually(() => more.every((r) => gw.logs.some((l) => l.correlationId === r.headers["x-correlation-id"] && l.status === 503 && logged.test(JSON.stringify(l.reasons))))).catch(() => assert.fail(JSON.stringify(gw.logs.filter((l) => l.correlationId === more[0]!.headers["x-correlation-id"]))));
      assert.equal(gw.logs.filter((l) => l.msg === 'identity provider unavailable').length, 1);
    } finally {
      await gw.stop();
      issuer.close();
    }
  }
});

describe('identity: a discovery document the gateway cannot use is a configuration error, said at start', function () {
  this.timeout(20_000);
  const cases: [string, (d: Record<string, unknown>) => void, string, RegExp][] = [
    // another tenant, or Entra's v1 issuer given for a v2 one
    ['an issuer that does not match identity.issuer', (d) => (d.issuer = 'https://login.example.test/other-tenant/v2.0'), '', /issuer/],
    ['a 404 (a wrong path in identity.issuer)', () => undefined, '/wrong', /404|status code/],
    // an issuer behind a redirect: not followed, and the log says where it pointed
    ['a redirect', () => undefined, '/moved', /\/moved\/\.well-known\/openid-configuration answered 302, a redirect to http:\/\/127\.0\.0\.1:\d+\/\.well-known\/openid-configuration, which the gateway does not follow/],
    ['a status no HTTP answer has (600)', () => undefined, '/status/600', /answered with status 600, which is no HTTP answer/],
  ];
  for (const [what, edit, suffix, cause] of cases) {
    it(`${what}: an error naming identity.issuer as the gateway starts, before anyone signs in; requests get 503 logged as "cannot be used", not "cannot be reached"`, async () => {
      const issuer = await startIssuer(edit);
      const gw = await startGateway(oidcAppYaml(issuer.url + suffix));
      try {
        const line = await eventually(() => gw.logs.find((l) => l.level === 50 && String(l.msg).startsWith('identity.issuer: the discovery document cannot be used'))!);
        assert.equal(line.code, 'ERR_IDP_DISCOVERY_UNUSABLE');
        assert.match(String(line.reason), cause);
        assert.doesNotMatch(String(line.reason), /cannot be reached/);
        const res = await request(`${gw.url}/page`, { headers: { host: 'web.test', accept: 'text/html', 'sec-fetch-mode': 'navigate' } });
        assert.equal(res.status, 503);
        const id = res.headers['x-correlation-id'];
        await eventually(() => gw.logs.find((l) => l.correlationId === id && l.msg === 'request')!);
        const reasons = JSON.stringify(gw.logs.find((l) => l.correlationId === id && l.msg === 'request')!.reasons);
        assert.match(reasons, /discovery document of the identity provider .* cannot be used/);
        assert.doesNotMatch(reasons, /cannot be reached/);
      } finally {
        await gw.stop();
        issuer.close();
      }
    });
  }

  it('a provider that is down as the gateway starts: one warning that it cannot be reached yet, no error', async () => {
    const issuer = await startIssuer(() => undefined);
    issuer.close();
    await sleep(50);
    const gw = await startGateway(oidcAppYaml(issuer.url));
    try {
      const line = await eventually(() => gw.logs.find((l) => String(l.msg).startsWith('the identity provider cannot be reached yet'))!);
      assert.equal(line.level, 40);
      assert.equal(line.code, 'ERR_IDP_UNAVAILABLE');
      assert.equal(gw.logs.filter((l) => l.level === 50).length, 0);
    } finally {
      await gw.stop();
    }
  });

  it('a sound document: nothing logged about the provider at start', async () => {
    const issuer = await startIssuer(() => undefined);
    const gw = await startGateway(oidcAppYaml(issuer.url));
    try {
      await sleep(500);
      assert.deepEqual(gw.logs.filter((l) => (l.level as number) >= 40).map((l) => l.msg), []);
    } finally {
      await gw.stop();
      issuer.close();
    }
  });
});
