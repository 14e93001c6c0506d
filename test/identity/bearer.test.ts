import assert from 'node:assert/strict';
import { createPrivateKey, createPublicKey, generateKeyPairSync, sign as rsaSign, type KeyObject } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { CompactEncrypt, exportJWK, SignJWT } from 'jose';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { BearerError, BearerVerifier, remoteJwks } from '../../src/identity/bearer.js';
import WebSocket from 'ws';
import { rawRequest, request } from '../support/harness.js';
import { Browser, startStack, userToken, type Stack } from './support.js';

const b64 = (o: unknown) => Buffer.from(typeof o === 'string' ? o : JSON.stringify(o)).toString('base64url');

/** Signs any header we like (jose refuses to produce some of the attacks). */
function rawJwt(header: Record<string, unknown>, payload: Record<string, unknown>, key: KeyObject): string {
  const input = `${b64(header)}.${b64(payload)}`;
  return `${input}.${rsaSign('sha256', Buffer.from(input), key).toString('base64url')}`;
}

describe('identity: bearer tokens', function () {
  this.timeout(20_000);

  describe('tokens from the real provider, through the gateway', () => {
    let s: Stack;
    before(async () => {
      s = await startStack();
    });
    after(async () => s?.stop());

    it('a user token for the app audience gets through; the token itself is not forwarded', async () => {
      const token = await userToken(s, 'bob', 'bob-pw', 'api://web');
      const before = s.backend.received.length;
      const res = await request(`${s.gw.url}/hello`, { headers: { host: 'web.localhost', authorization: `Bearer ${token}`, accept: 'application/json', cookie: 'app_pref=1; drawbridge_session=junk' } });
      assert.equal(res.status, 200, res.body);
      const got = s.backend.received.slice(before);
      assert.equal(got.length, 1);
      assert.equal(got[0]!.headers.authorization, undefined);
      assert.equal(got[0]!.headers.cookie, 'app_pref=1');
    });

    it('the same token sent again (let in from the verified-token cache) is still kept from the app, and the request is still the user\'s in the audit trail', async () => {
      const token = await userToken(s, 'bob', 'bob-pw', 'api://web');
      const audit = () => readFileSync(join(s.gw.dir, 'state', 'audit', 'audit.log'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
      const before = s.backend.received.length;
      const ids: string[] = [];
      for (let i = 0; i < 3; i++) {
        const res = await request(`${s.gw.url}/again/${i}`, { headers: { host: 'web.localhost', authorization: `Bearer ${token}`, accept: 'application/json', cookie: 'app_pref=1; drawbridge_session=junk' } });
        assert.equal(res.status, 200, res.body);
        ids.push(String(res.headers['x-correlation-id']));
      }
      const got = s.backend.received.slice(before);
      assert.deepEqual(got.map((r) => r.url), ['/again/0', '/again/1', '/again/2']);
      for (const r of got) {
        assert.equal(r.headers.authorization, undefined, r.url);
        assert.equal(r.headers.cookie, 'app_pref=1', r.url);
      }
      for (const until = Date.now() + 2000; !ids.every((id) => audit().some((rec) => rec.correlationId === id)) && Date.now() < until; ) await new Promise((r) => setTimeout(r, 20));
      for (const id of ids) {
        const rec = audit().find((r) => r.correlationId === id);
        assert.equal(rec.user, 'bob', JSON.stringify(rec));
        assert.equal(rec.decision, 'allow', JSON.stringify(rec));
      }
    });

    it('two Authorization headers get 400 at the edge in either order, and nothing reaches the app (Node keeps the first; a proxy in front may judge the last)', async () => {
      const good = await userToken(s, 'bob', 'bob-pw', 'api://web');
      const bad = `${good.slice(0, -4)}AAAA`;
      const before = s.backend.received.length;
      for (const [first, second] of [[good, bad], [bad, good], [good, good]]) {
        const answer = await rawRequest(s.gw.port, `GET /hello HTTP/1.1\r\nHost: web.localhost\r\nAuthorization: Bearer ${first}\r\nAuthorization: Bearer ${second}\r\nAccept: application/json\r\nConnection: close\r\n\r\n`);
        assert.match(answer, /^HTTP\/1\.1 400 /, first === good ? 'good first' : 'bad first');
        assert.match(answer, /more than one Authorization header/);
      }
      // whatever the schemes (here Basic, then Bearer in lower case)
      const basic = await rawRequest(s.gw.port, `GET /hello HTTP/1.1\r\nHost: web.localhost\r\nAuthorization: Basic Ym9iOnB3\r\nauthorization: Bearer ${good}\r\nConnection: close\r\n\r\n`);
      assert.match(basic, /^HTTP\/1\.1 400 /);
      assert.equal(s.backend.received.length, before, 'nothing was forwarded');
      const one = await rawRequest(s.gw.port, `GET /hello HTTP/1.1\r\nHost: web.localhost\r\nAuthorization: Bearer ${good}\r\nConnection: close\r\n\r\n`);
      assert.match(one, /^HTTP\/1\.1 200 /, 'one header is served as before');
    });

    it('a token for another audience gets 401 invalid_token naming the aud check', async () => {
      const token = await userToken(s, 'bob', 'bob-pw', 'api://other');
      const res = await request(`${s.gw.url}/hello`, { headers: { host: 'web.localhost', authorization: `Bearer ${token}` } });
      assert.equal(res.status, 401);
      assert.match(String(res.headers['www-authenticate']), /^Bearer .*error="invalid_token"/);
      assert.equal(res.json().check, 'aud');
      assert.equal(res.headers.location, undefined);
    });

    it('a token header the client wrote is never echoed raw into WWW-Authenticate: 401, and the gateway keeps serving', async () => {
      const junk = (header: Record<string, unknown>) => `${b64(header)}.${b64({ sub: 'x' })}.c2ln`;
      for (const [header, check] of [
        [{ alg: '€', typ: 'JWT' }, 'alg'],
        [{ alg: 'none\r\nSet-Cookie: a=1' }, 'alg'],
        [{ alg: 'RS256', 'x\r\ny': 1 }, 'header'],
        [{ alg: 'A'.repeat(2000) }, 'alg'],
      ] as const) {
        const res = await request(`${s.gw.url}/hello`, { headers: { host: 'web.localhost', authorization: `Bearer ${junk(header)}` } });
        assert.equal(res.status, 401, JSON.stringify(header).slice(0, 40));
        const challenge = String(res.headers['www-authenticate']);
        assert.match(challenge, /^Bearer .*error="invalid_token", error_description="[\x20-\x7e]{1,200}"$/);
        assert.equal(res.headers['set-cookie'], undefined);
        assert.equal(res.json().check, check);
      }
      const token = await userToken(s, 'bob', 'bob-pw', 'api://web');
      assert.equal((await request(`${s.gw.url}/hello`, { headers: { host: 'web.localhost', authorization: `Bearer ${token}` } })).status, 200, 'still serving');
    });

    it('requiredScopes: a token with the scope passes (oidc-provider names it in the RFC 9068 scope claim, not scp)', async () => {
      const token = await userToken(s, 'bob', 'bob-pw', 'api://secret', 'user_impersonation');
      const payload = JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString());
      assert.equal(payload.scope, 'user_impersonation');
      assert.equal(payload.scp, undefined, 'the provider adds no scp of its own');
      const res = await request(`${s.gw.url}/x`, { headers: { host: 'api.localhost', authorization: `Bearer ${token}` } });
      assert.equal(res.status, 200, res.body);
    });

    it('requiredScopes: a token for the audience without the scope gets 403 insufficient_scope, and the app sees nothing', async () => {
      const token = await userToken(s, 'bob', 'bob-pw', 'api://secret', 'profile');
      const payload = JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString());
      assert.equal(payload.aud, 'api://secret');
      assert.ok(!String(payload.scope ?? '').split(' ').includes('user_impersonation'), String(payload.scope));
      const before = s.backend.received.length;
      const res = await request(`${s.gw.url}/x`, { headers: { host: 'api.localhost', authorization: `Bearer ${token}` } });
      assert.equal(res.status, 403, res.body);
      assert.match(String(res.headers['www-authenticate']), /^Bearer .*error="insufficient_scope"/);
      assert.equal(s.backend.received.length, before);
    });

    it('an app without an audience accepts no bearer token', async () => {
      const token = await userToken(s, 'bob', 'bob-pw', 'api://web');
      const res = await request(`${s.gw.url}/x`, { headers: { host: 'finance.localhost', authorization: `Bearer ${token}` } });
      assert.equal(res.status, 401);
    });

    it('a Bearer header is judged alone, the session cookie beside it unread (401 on an app without audience, or for a token not the provider\'s); Basic reaches the app untouched', async () => {
      const b = new Browser();
      for (const app of ['finance', 'web']) assert.equal((await b.browse(`${s.origin(app)}/x`, { user: 'bob', password: 'bob-pw' })).res.status, 200, `${app}: signed in`);
      const before = s.backend.received.length;
      const token = await userToken(s, 'bob', 'bob-pw', 'api://web');
      const refused = await b.get(`${s.origin('finance')}/x`, { authorization: `Bearer ${token}`, accept: 'application/json' });
      assert.equal(refused.status, 401, 'the session did not count');
      assert.equal(refused.json().detail, 'This app accepts no bearer tokens.');
      // the app's own front end with a token of its own (an API key, say), on an app with an audience
      const own = await b.get(`${s.origin('web')}/x`, { authorization: 'Bearer glsa_0123456789abcdef', accept: 'application/json' });
      assert.equal(own.status, 401);
      assert.equal(own.json().check, 'format');
      assert.equal(s.backend.received.length, before, 'neither reached the app');
      const basic = await b.get(`${s.origin('finance')}/x`, { authorization: 'Basic Ym9iOmFwcC1wdw==' });
      assert.equal(basic.status, 200, 'the session counts under another scheme');
      assert.equal(s.backend.received.at(-1)!.headers.authorization, 'Basic Ym9iOmFwcC1wdw==', 'Basic reached the app as sent');
    });

    it('an app-only token (client credentials: no user, its sub is the client id) gets 401 app_token; nothing reaches the app; the log and the audit say why', async () => {
      const audit = () => readFileSync(join(s.gw.dir, 'state', 'audit', 'audit.log'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
      for (const [host, audience, scope] of [['web', 'api://web', undefined], ['api', 'api://secret', 'user_impersonation']] as const) {
        const token = await s.idp.clientCredentialsToken(audience, scope);
        const before = s.backend.received.length;
        const res = await request(`${s.gw.url}/x`, { headers: { host: `${host}.localhost`, authorization: `Bearer ${token}`, accept: 'application/json' } });
        assert.equal(res.status, 401, res.body);
        assert.equal(res.headers['www-authenticate'], `Bearer realm="${host === 'web' ? 'Web' : 'Api'}", error="invalid_token", error_description="The token was issued to an application, not to a user."`);
        assert.equal(res.json().check, 'app_token');
        assert.equal(s.backend.received.length, before, host);
        const id = res.headers['x-correlation-id'];
        const log = s.gw.logs.find((l) => l.correlationId === id && l.msg === 'bearer token refused');
        assert.equal(log?.check, 'app_token');
        assert.equal(log?.detail, 'app-only token: sub equals client_id');
        await new Promise((r) => setTimeout(r, 50));
        const rec = audit().find((r) => r.correlationId === id);
        assert.equal(rec?.decision, 'deny');
        // the request line says what the audit trail says: a filter on deny finds it in both
        assert.equal(s.gw.logs.find((l) => l.correlationId === id && l.msg === 'request')?.decision, 'deny');
        assert.equal(rec?.user, undefined, 'the client id is nobody\'s user name');
        assert.match(rec?.reasons[0], /^bearer token refused \(app_token\): The token was issued to an application/);
      }
    });

    it('key rotation: new kid accepted after one JWKS refresh; a removed key stops verifying', async () => {
      const jwksUri = `${s.idp.issuer}/jwks`;
      const v = new BearerVerifier(remoteJwks(jwksUri, 300), { issuer: s.idp.issuer, audience: 'api://web', algorithms: ['RS256'], clockToleranceSec: 5, requiredScopes: [], claimNames: { groups: 'groups' }, clientId: 'drawbridge' });
      const hits = () => s.idp.hits.get('/jwks') ?? 0;
      const t1 = await userToken(s, 'bob', 'bob-pw', 'api://web');
      const h0 = hits();
      await v.verify(t1);
      assert.equal(hits(), h0 + 1);
      await v.verify(t1);
      assert.equal(hits(), h0 + 1, 'cached');
      await s.idp.rotateKeys();
      const t2 = await userToken(s, 'bob', 'bob-pw', 'api://web');
      assert.notEqual(JSON.parse(Buffer.from(t2.split('.')[0]!, 'base64url').toString()).kid, JSON.parse(Buffer.from(t1.split('.')[0]!, 'base64url').toString()).kid);
      await new Promise((r) => setTimeout(r, 350));
      await v.verify(t2);
      assert.equal(hits(), h0 + 2, 'exactly one refresh for the new kid');
      await v.verify(t1);
      await s.idp.rotateKeys({ dropOld: true });
      const t3 = await userToken(s, 'bob', 'bob-pw', 'api://web');
      await new Promise((r) => setTimeout(r, 350));
      await v.verify(t3);
      await new Promise((r) => setTimeout(r, 350));
      await assert.rejects(v.verify(t1), (e: BearerError) => e.check === 'kid');
      await assert.rejects(v.verify(t2), (e: BearerError) => e.check === 'kid');
    });
  });

  describe('a WebSocket opened with a token lasts no longer than the token', () => {
    let s: Stack;
    before(async () => {
      s = await startStack({
        accessTokenTtlSec: 3,
        apps: (b) => `
  - name: Live
    externalUrl: http://live.localhost/
    internalUrl: ${b}/
    preAuth: oidc
    audience: api://web
    websockets: true
`,
      });
    });
    after(async () => s?.stop());

    it('the connection is closed when the token expires', async () => {
      const token = await userToken(s, 'bob', 'bob-pw', 'api://web');
      const exp = JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString()).exp as number;
      const ws = new WebSocket(`ws://127.0.0.1:${s.gw.port}/ws`, { headers: { host: new URL(s.origin('live')).host, authorization: `Bearer ${token}` } });
      await new Promise((r, j) => (ws.once('open', r), ws.once('error', j)));
      const echoed = await new Promise<string>((r) => (ws.once('message', (m) => r(String(m))), ws.send('while valid')));
      assert.equal(echoed, 'while valid');
      const closedAt = await Promise.race([
        new Promise<number>((r) => ws.once('close', () => r(Date.now()))),
        new Promise<never>((_, j) => setTimeout(() => j(new Error('still open 5 s after the token expired')), exp * 1000 - Date.now() + 5000)),
      ]);
      assert.ok(closedAt >= exp * 1000 - 50, `closed ${exp * 1000 - closedAt} ms before exp`);
      assert.ok(closedAt < exp * 1000 + 1500, `closed ${closedAt - exp * 1000} ms after exp`);
      assert.ok(s.gw.logs.some((l) => /WebSocket closed: its token expired/.test(String(l.msg))));
    });

    it('an upgrade with a token past its exp is refused (401 invalid_token), though clockTolerance still admits the token on a plain request', async () => {
      const token = await userToken(s, 'bob', 'bob-pw', 'api://web');
      const exp = JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString()).exp as number;
      await new Promise((r) => setTimeout(r, exp * 1000 - Date.now() + 200));
      const host = new URL(s.origin('live')).host;
      // the default clockTolerance (60 s) lets the token through on a request that ends...
      assert.equal((await request(`${s.gw.url}/x`, { headers: { host, authorization: `Bearer ${token}` } })).status, 200);
      // ...but a WebSocket would be closed at exp, at once: the client is told to fetch a new token instead
      const before = s.backend.received.length;
      const refused = await new Promise<{ status?: number; challenge?: string; body: string }>((resolve) => {
        const ws = new WebSocket(`ws://127.0.0.1:${s.gw.port}/ws`, { headers: { host, authorization: `Bearer ${token}` } });
        ws.once('open', () => (ws.close(), resolve({ body: 'opened' })));
        ws.once('unexpected-response', (_q, res) => {
          let body = '';
          res.on('data', (c) => (body += c)).on('end', () => resolve({ status: res.statusCode, challenge: String(res.headers['www-authenticate']), body }));
        });
      });
      assert.equal(refused.status, 401, refused.body);
      assert.match(refused.challenge!, /error="invalid_token"/);
      assert.equal(JSON.parse(refused.body).check, 'exp');
      assert.equal(s.backend.received.length, before, 'the upgrade reached the app');
    });
  });

  describe('forged tokens (jose-minted), refused with the failing check named', () => {
    const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const attacker = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const ISS = 'https://issuer.test';
    const NOW = 1_800_000_000_000;
    let server: http.Server;
    let hits = 0;
    let jwksUri = '';
    before(async () => {
      const jwk = { ...(await exportJWK(publicKey)), kid: 'k1', alg: 'RS256', use: 'sig' };
      server = http.createServer((_req, res) => {
        hits++;
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: [jwk] }));
      });
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
      jwksUri = `http://127.0.0.1:${(server.address() as AddressInfo).port}/jwks`;
    });
    after(() => new Promise<void>((r) => server.close(() => r())));

    const verifier = (now = NOW) => new BearerVerifier(remoteJwks(jwksUri, 60_000), { issuer: ISS, audience: 'api://app', algorithms: ['RS256', 'PS256', 'ES256'], clockToleranceSec: 60, requiredScopes: ['read'], claimNames: { user: 'preferred_username', groups: 'groups' }, clientId: 'drawbridge', now: () => now });
    const sec = NOW / 1000;
    const claims = (over: Record<string, unknown> = {}) => ({ iss: ISS, aud: 'api://app', sub: 'u1', preferred_username: 'alice', scp: 'read write', iat: sec - 10, exp: sec + 600, ...over });
    const good = (over: Record<string, unknown> = {}, header: Record<string, unknown> = {}) => rawJwt({ alg: 'RS256', kid: 'k1', typ: 'at+jwt', ...header }, claims(over), privateKey);

    it('a well-formed token passes (the table below is not vacuous)', async () => {
      const { identity } = await verifier().verify(good());
      assert.equal(identity.user, 'alice');
      assert.equal(identity.via, 'bearer');
    });

    const publicPem = publicKey.export({ type: 'spki', format: 'pem' }) as string;
    const offline: [string, string, () => Promise<string> | string][] = [
      ['alg none', 'alg', () => `${b64({ alg: 'none', typ: 'JWT' })}.${b64(claims())}.`],
      ['alg none with a signature part', 'alg', () => `${b64({ alg: 'none' })}.${b64(claims())}.${b64('x')}`],
      ['HS256 keyed with the public key', 'alg', () => new SignJWT(claims()).setProtectedHeader({ alg: 'HS256', kid: 'k1' }).sign(new TextEncoder().encode(publicPem))],
      ['embedded jwk', 'header', async () => rawJwt({ alg: 'RS256', jwk: await exportJWK(attacker.publicKey) }, claims(), attacker.privateKey)],
      ['jku pointing elsewhere', 'header', () => rawJwt({ alg: 'RS256', kid: 'k1', jku: 'http://127.0.0.1:1/evil.json' }, claims(), attacker.privateKey)],
      ['x5u pointing elsewhere', 'header', () => rawJwt({ alg: 'RS256', kid: 'k1', x5u: 'http://127.0.0.1:1/evil.pem' }, claims(), attacker.privateKey)],
      ['x5c chain', 'header', () => rawJwt({ alg: 'RS256', x5c: ['MIIB'] }, claims(), attacker.privateKey)],
      ['crit extension', 'header', () => rawJwt({ alg: 'RS256', kid: 'k1', crit: ['http://x'], 'http://x': 1 }, claims(), privateKey)],
      ['JWE instead of JWS', 'format', () => new CompactEncrypt(Buffer.from(JSON.stringify(claims()))).setProtectedHeader({ alg: 'RSA-OAEP-256', enc: 'A256GCM' }).encrypt(publicKey)],
      ['not a JWT', 'format', () => 'abc.def'],
      ['non-canonical base64url (stray bits in the last signature character)', 'format', () => { const t = good(); const last = t.at(-1)!; const alt = [...'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'].find((c) => c !== last && Buffer.from(t.split('.')[2]!.slice(0, -1) + c, 'base64url').equals(Buffer.from(t.split('.')[2]!, 'base64url')))!; return t.slice(0, -1) + alt; }],
      ['ID token typ', 'typ', () => good({}, { typ: 'id_token+jwt' })],
      ['alg outside the pinned list (RS512)', 'alg', () => good({}, { alg: 'RS512' })],
      ['alg as a list naming a pinned one', 'alg', () => good({}, { alg: ['RS256'] })],
    ];
    for (const [name, check, mint] of offline) {
      it(`${name}: refused (${check}) without fetching the JWKS`, async () => {
        const before = hits;
        const t0 = performance.now();
        await assert.rejects(verifier().verify(await mint()), (e: unknown) => e instanceof BearerError && e.check === check);
        assert.equal(hits, before, 'no outbound fetch');
        assert.ok(performance.now() - t0 < 500, 'fast');
      });
    }

    const online: [string, string, () => string, number?][] = [
      ['wrong issuer', 'iss', () => good({ iss: 'https://evil.test' })],
      ['wrong audience', 'aud', () => good({ aud: 'api://other' })],
      ['expired beyond the tolerance', 'exp', () => good({ exp: sec - 61 })],
      ['not yet valid beyond the tolerance', 'nbf', () => good({ nbf: sec + 61 })],
      ['no exp at all', 'exp', () => good({ exp: undefined })],
      ['ID token (nonce, aud = client id) as an access token', 'token_type', () => good({ aud: ['api://app', 'drawbridge'], nonce: 'n' }, { typ: 'JWT' })],
      // each ID-token sign alone (mut32: dropping either check let such a token through)
      ['ID token by its nonce alone (aud the app\'s)', 'token_type', () => good({ nonce: 'n' }, { typ: 'JWT' })],
      ['ID token by its audience alone (names the gateway\'s client id, no nonce)', 'token_type', () => good({ aud: ['api://app', 'drawbridge'] })],
      ['missing scope', 'scope', () => good({ scp: 'write' })],
      ['missing scope (RFC 9068 scope claim)', 'scope', () => good({ scp: undefined, scope: 'openid write' })],
      ['scope as a list (RFC 9068 says a string)', 'scope', () => good({ scp: undefined, scope: ['read'] })],
      // scopes are matched whole (mut32: a substring match let readonly stand for read)
      ['a scope that only contains the required one', 'scope', () => good({ scp: 'readonly write' })],
      ['roles as a string (roles is a list)', 'scope', () => good({ scp: undefined, roles: 'read' })],
      ['signed by an unknown key with a known kid', 'signature', () => rawJwt({ alg: 'RS256', kid: 'k1' }, claims(), attacker.privateKey)],
      ['payload changed after signing', 'signature', () => { const [h, , sig] = good().split('.'); return `${h}.${b64(claims({ preferred_username: 'admin' }))}.${sig}`; }],
      ['unknown kid', 'kid', () => rawJwt({ alg: 'RS256', kid: 'k9' }, claims(), attacker.privateKey)],
      ['a genuine signature but no string naming the user', 'user', () => good({ sub: 42, preferred_username: undefined })],
      // the config names preferred_username: an app-only token's sub (a client id) must not stand in for it
      ['the configured user claim missing', 'user', () => good({ preferred_username: undefined, sub: 'alice' })],
      // app-only tokens, refused even when they carry the configured user claim
      ['Entra app-only (idtyp app)', 'app_token', () => good({ idtyp: 'app', sub: 'sp-object-id', oid: undefined })],
      ['Entra app-only without idtyp (oid equals sub: the service principal)', 'app_token', () => good({ sub: '0f6c1a52-sp', oid: '0f6c1a52-sp', scp: undefined })],
      ['sub is the client (client_id, RFC 9068)', 'app_token', () => good({ sub: 'daemon', client_id: 'daemon' })],
      ['sub is the client (azp)', 'app_token', () => good({ sub: 'daemon', azp: 'daemon' })],
      ['sub is the client (Entra v1 appid)', 'app_token', () => good({ sub: 'daemon', appid: 'daemon' })],
      ['Auth0 client credentials (gty, sub <client>@clients)', 'app_token', () => good({ gty: 'client-credentials', sub: 'AbC123@clients', azp: 'AbC123' })],
      ['Okta client credentials (sub equals cid)', 'app_token', () => good({ sub: '0oa1client', cid: '0oa1client' })],
    ];
    for (const [name, check, mint] of online) {
      it(`${name}: refused (${check})`, async () => {
        await assert.rejects(verifier().verify(mint()), (e: unknown) => e instanceof BearerError && e.check === check);
      });
    }

    it('a user token naming its client and the user object passes: Entra (idtyp user, oid and sub differ), RFC 9068 (client_id, azp)', async () => {
      const entra = await verifier().verify(good({ idtyp: 'user', oid: 'user-object-id', sub: 'pairwise-sub', azp: 'client-app-id', appid: 'client-app-id' }));
      assert.equal(entra.identity.user, 'alice');
      assert.equal((await verifier().verify(good({ client_id: 'native-app', azp: 'native-app' }))).identity.user, 'alice');
      // Azure AD B2C: sub is the user's object id, so oid equals sub in a user's token too
      assert.equal((await verifier().verify(good({ oid: 'b2c-user-object', sub: 'b2c-user-object', tfp: 'B2C_1_signin' }))).identity.user, 'alice');
    });

    it('without a configured user claim, the user is preferred_username, then upn, email, sub', async () => {
      const v = new BearerVerifier(remoteJwks(jwksUri, 60_000), { issuer: ISS, audience: 'api://app', algorithms: ['RS256'], clockToleranceSec: 60, requiredScopes: [], claimNames: { groups: 'groups' }, clientId: 'drawbridge', now: () => NOW });
      assert.equal((await v.verify(good())).identity.user, 'alice');
      assert.equal((await v.verify(good({ preferred_username: undefined, upn: 'alice@corp.test' }))).identity.user, 'alice@corp.test');
      assert.equal((await v.verify(good({ preferred_username: undefined }))).identity.user, 'u1');
    });

    it('lifetime edges with a frozen clock: inside the tolerance passes, past it fails', async () => {
      await verifier(NOW + 59_000).verify(good({ exp: sec }));
      await assert.rejects(verifier(NOW + 61_000).verify(good({ exp: sec })), (e: BearerError) => e.check === 'exp');
      await verifier(NOW).verify(good({ nbf: sec + 59 }));
      await assert.rejects(verifier(NOW).verify(good({ nbf: sec + 61 })), (e: BearerError) => e.check === 'nbf');
    });

    it('the verified-token cache never outlives the token (frozen clock moved past exp)', async () => {
      let now = NOW;
      const v = new BearerVerifier(remoteJwks(jwksUri, 60_000), { issuer: ISS, audience: 'api://app', algorithms: ['RS256'], clockToleranceSec: 60, requiredScopes: [], claimNames: { user: 'preferred_username', groups: 'groups' }, clientId: 'drawbridge', now: () => now });
      const t = good({ exp: sec + 10 });
      await v.verify(t);
      now = NOW + 69_000;
      await v.verify(t);
      now = NOW + 71_000;
      await assert.rejects(v.verify(t), (e: BearerError) => e.check === 'exp');
    });

    it('a cache hit needs the whole token: one that shares a verified token\'s signature, with another payload or header, is verified and refused', async () => {
      const v = verifier();
      const t = good();
      assert.equal((await v.verify(t)).identity.user, 'alice');
      const [h, , sig] = t.split('.');
      const payloadSwapped = `${h}.${b64(claims({ preferred_username: 'admin' }))}.${sig}`;
      await assert.rejects(v.verify(payloadSwapped), (e: BearerError) => e.check === 'signature');
      const headerSwapped = `${b64({ alg: 'RS256', kid: 'k1', typ: 'JWT' })}.${t.split('.')[1]}.${sig}`;
      await assert.rejects(v.verify(headerSwapped), (e: BearerError) => e.check === 'signature');
      // and the genuine token is still served, from the cache or afresh
      assert.equal((await v.verify(t)).identity.user, 'alice');
    });

    it('the RFC 9068 scope claim (space-separated: oidc-provider, Keycloak, Auth0) satisfies requiredScopes as scp does (Entra, Okta)', async () => {
      assert.equal((await verifier().verify(good({ scp: undefined, scope: 'openid read' }))).identity.user, 'alice');
      assert.equal((await verifier().verify(good({ scp: ['read'] }))).identity.user, 'alice');
      // a B2C-style user (oid equals sub) whose provider names the scopes in scope is still a user
      assert.equal((await verifier().verify(good({ scp: undefined, scope: 'read', oid: 'b2c-user-object', sub: 'b2c-user-object' }))).identity.user, 'alice');
    });

    it('roles satisfy requiredScopes too; overage marks groups incomplete', async () => {
      const { identity } = await verifier().verify(good({ scp: undefined, roles: ['read'], groups: ['g1'], _claim_names: { groups: 'src1' } }));
      assert.equal(identity.groupsIncomplete, true);
    });

    it('a private key in the pinned algorithm list is refused at build time (no HMAC)', () => {
      assert.throws(() => new BearerVerifier(remoteJwks(jwksUri), { issuer: ISS, audience: 'a', algorithms: ['HS256'], clockToleranceSec: 0, requiredScopes: [], claimNames: { user: 'sub', groups: 'groups' }, clientId: 'c' }));
      void createPrivateKey;
      void createPublicKey;
    });
  });
});

describe('identity: a native client with a user token (authorization code + PKCE + resource)', function () {
  this.timeout(20_000);
  let s: Stack;
  before(async () => {
    s = await startStack();
  });
  after(async () => s?.stop());

  it('bob calls the API with his own token (user, groups and scope in it); it works only for its audience', async () => {
    const token = await userToken(s, 'bob', 'bob-pw', 'api://secret');
    const payload = JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString());
    assert.equal(payload.aud, 'api://secret');
    assert.equal(payload.scope, 'user_impersonation');
    assert.equal(payload.preferred_username, 'bob');
    assert.deepEqual(payload.groups, ['finance', 'everyone']);
    const res = await request(`${s.gw.url}/me`, { headers: { host: 'api.localhost', authorization: `Bearer ${token}`, accept: 'application/json' } });
    assert.equal(res.status, 200, res.body);
    const wrongApp = await request(`${s.gw.url}/me`, { headers: { host: 'web.localhost', authorization: `Bearer ${token}` } });
    assert.equal(wrongApp.status, 401, 'a token for api://secret is not a token for api://web');
  });
});

describe('identity: the provider goes away after discovery', function () {
  this.timeout(20_000);
  it('a bearer request whose keys cannot be fetched gets 503, not 401, and nothing reaches the app', async () => {
    const s = await startStack();
    try {
      const token = await userToken(s, 'bob', 'bob-pw', 'api://web');
      const nav = await request(`${s.gw.url}/x`, { headers: { host: `web.localhost:${s.gw.port}`, accept: 'text/html' } });
      assert.equal(nav.status, 302, 'discovery done');
      await s.idp.close();
      const res = await request(`${s.gw.url}/x`, { headers: { host: 'web.localhost', authorization: `Bearer ${token}`, accept: 'application/json' } });
      assert.equal(res.status, 503, res.body);
      assert.equal(s.backend.received.length, 0);
    } finally {
      await s.gw.stop();
      await s.backend.close();
    }
  });
});
