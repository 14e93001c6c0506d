/**
 * The provider's keys against a real key endpoint on loopback that answers, fails, or rotates,
 * with tokens signed by real RSA keys (jose). What a client sees is a BearerError: `jwks` is
 * an outage (503 at the gateway), anything else a refused token (401).
 */
import assert from 'node:assert/strict';
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { exportJWK, SignJWT } from 'jose';
import pino from 'pino';
import { BearerError, BearerVerifier } from '../../src/identity/bearer.js';
import { issuerKeys, newIssuerKeys } from '../../src/identity/issuerKeys.js';
import { tempDir } from '../support/harness.js';

const ISS = 'https://issuer.test';

describe('identity: the provider keys (issuerKeys)', function () {
  this.timeout(20_000);
  const k1 = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const k2 = generateKeyPairSync('rsa', { modulusLength: 2048 });
  let published: { kid: string; key: KeyObject }[] = [];
  /** JWKs served as they are instead of `published`: keys the gateway cannot use */
  let raw: object[] | undefined;
  let failing = false;
  let hits = 0;
  let server: http.Server;
  let uri = '';
  before(async () => {
    server = http.createServer(async (_req, res) => {
      hits++;
      if (failing) return void res.writeHead(500).end('down');
      if (raw) return void res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: raw }));
      const keys = await Promise.all(published.map(async ({ kid, key }) => ({ ...(await exportJWK(key)), kid, alg: 'RS256', use: 'sig' })));
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys }));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    uri = `http://127.0.0.1:${(server.address() as AddressInfo).port}/jwks`;
  });
  after(() => new Promise<void>((r) => server.close(() => r())));
  beforeEach(() => {
    published = [{ kid: 'k1', key: k1.publicKey }];
    raw = undefined;
    failing = false;
    hits = 0;
  });

  let n = 0;
  /** a fresh token each time (the verifier remembers verified ones) */
  const token = (kid: string, key: KeyObject) =>
    new SignJWT({ preferred_username: `user${n++}`, scp: 'read' }).setProtectedHeader({ alg: 'RS256', kid, typ: 'at+jwt' }).setIssuer(ISS).setAudience('api://app').setIssuedAt().setExpirationTime('5m').sign(key);
  const verifier = (keys: ReturnType<typeof newIssuerKeys>) => new BearerVerifier(keys, { issuer: ISS, audience: 'api://app', algorithms: ['RS256'], clockToleranceSec: 5, requiredScopes: [], claimNames: { groups: 'groups' }, clientId: 'drawbridge' });
  const check = (p: Promise<unknown>) => p.then(() => 'ok', (e: unknown) => (e instanceof BearerError ? e.check : `not a BearerError: ${String(e)}`));

  it('a key endpoint answering 500 is an outage (jwks), not a bad token, and is asked again at most once per cooldown', async () => {
    failing = true;
    const v = verifier(newIssuerKeys(uri, 300));
    assert.equal(await check(v.verify(await token('k1', k1.privateKey))), 'jwks');
    for (let i = 0; i < 20; i++) assert.equal(await check(v.verify(await token('k1', k1.privateKey))), 'jwks');
    assert.equal(hits, 1, 'twenty more tokens within the cooldown: no fetch');
    failing = false;
    await new Promise((r) => setTimeout(r, 350));
    assert.equal(await check(v.verify(await token('k1', k1.privateKey))), 'ok', 'after the cooldown it is asked again');
    assert.equal(hits, 2);
  });

  it('keys held stay in use while refreshing them fails past their age; a refresh that works drops a removed key', async () => {
    const keys = newIssuerKeys(uri, 100, undefined, 200);
    const v = verifier(keys);
    assert.equal(await check(v.verify(await token('k1', k1.privateKey))), 'ok');
    failing = true;
    await new Promise((r) => setTimeout(r, 300));
    for (let i = 0; i < 5; i++) assert.equal(await check(v.verify(await token('k1', k1.privateKey))), 'ok', 'the unchanged key still verifies');
    assert.ok(hits >= 2, 'a refresh was tried');
    // the provider is back, having replaced k1 by k2
    failing = false;
    published = [{ kid: 'k2', key: k2.publicKey }];
    await new Promise((r) => setTimeout(r, 300));
    await check(v.verify(await token('k2', k2.privateKey))); // (an unknown kid fetches at once)
    assert.equal(await check(v.verify(await token('k2', k2.privateKey))), 'ok');
    assert.equal(await check(v.verify(await token('k1', k1.privateKey))), 'kid', 'the removed key no longer verifies');
  });

  it('keys older than their age are fetched again before a token is verified, so a key the provider removed stops working at once', async () => {
    const v = verifier(newIssuerKeys(uri, 100, undefined, 200));
    assert.equal(await check(v.verify(await token('k1', k1.privateKey))), 'ok');
    published = [{ kid: 'k2', key: k2.publicKey }];
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(await check(v.verify(await token('k1', k1.privateKey))), 'kid');
    assert.equal(await check(v.verify(await token('k2', k2.privateKey))), 'ok');
  });

  it('a key endpoint that sends its head and then stalls is an outage after 5 s, also across garbage collections, and is asked again later', async function () {
    this.timeout(15_000);
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    const stalled: http.ServerResponse[] = [];
    const staller = http.createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.write('{"keys":[');
      stalled.push(res);
    });
    await new Promise<void>((r) => staller.listen(0, '127.0.0.1', r));
    try {
      const v = verifier(newIssuerKeys(`http://127.0.0.1:${(staller.address() as AddressInfo).port}/jwks`, 100));
      const t0 = Date.now();
      const sweeping = setInterval(gc, 200);
      const got = await check(v.verify(await token('k1', k1.privateKey)));
      clearInterval(sweeping);
      assert.equal(got, 'jwks');
      assert.ok(Date.now() - t0 < 7000, `answered after ${Date.now() - t0} ms`);
      await new Promise((r) => setTimeout(r, 150));
      await check(v.verify(await token('k1', k1.privateKey)));
      assert.equal(stalled.length, 2, 'asked again once the cooldown passed');
    } finally {
      for (const r of stalled) r.destroy();
      staller.close();
    }
  });

  it('a key the provider starts signing with is fetched on first sight (once per cooldown), and at the sign-in callback whatever the cooldown', async () => {
    const keys = newIssuerKeys(uri, 60_000);
    const v = verifier(keys);
    assert.equal(await check(v.verify(await token('k1', k1.privateKey))), 'ok');
    published = [{ kid: 'k1', key: k1.publicKey }, { kid: 'k2', key: k2.publicKey }];
    // the first fetch was just now: a bearer token with the new kid waits for the cooldown...
    assert.equal(await check(v.verify(await token('k2', k2.privateKey))), 'kid');
    assert.equal(hits, 1);
    // ...an ID token at the callback does not (only the provider hands one over there)
    const got = await keys.forSignIn({ alg: 'RS256', kid: 'k2' }, undefined as never);
    assert.ok(got, 'the new key was fetched for the sign-in');
    assert.equal(hits, 2);
  });

  it('is kept per gateway and key URL across config generations, so a reload during an outage keeps the keys', async () => {
    const stateDir = tempDir();
    assert.equal(await check(verifier(issuerKeys(stateDir, uri, ['RS256'])).verify(await token('k1', k1.privateKey))), 'ok');
    failing = true;
    // the next generation's verifier, built after the reload
    assert.equal(await check(verifier(issuerKeys(stateDir, uri, ['RS256'])).verify(await token('k1', k1.privateKey))), 'ok');
    assert.equal(hits, 1);
    // another gateway (stateDir) fetches its own
    assert.equal(await check(verifier(issuerKeys(tempDir(), uri, ['RS256'])).verify(await token('k1', k1.privateKey))), 'jwks');
  });

  /** a logger whose lines the test reads */
  const logged = () => {
    const logs: Record<string, unknown>[] = [];
    return { logs, log: pino({ level: 'debug' }, { write: (l: string) => void logs.push(JSON.parse(l)) }) };
  };
  /** k1 as the provider may botch it: each is a key set that holds no key for RS256 */
  const unusable = async (): Promise<[string, object][]> => {
    const good = { ...(await exportJWK(k1.publicKey)), kid: 'k1', alg: 'RS256', use: 'sig' };
    return [
      ['a malformed modulus', { ...good, n: 'AAAA' }],
      ['a 1024-bit RSA key', { ...(await exportJWK(generateKeyPairSync('rsa', { modulusLength: 1024 }).publicKey)), kid: 'k1', alg: 'RS256', use: 'sig' }],
      ['an EC key where RS256 alone is pinned', { ...(await exportJWK(generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey)), kid: 'k1', use: 'sig' }],
    ];
  };

  it('a key set that holds no usable key is an outage like a failed fetch (jwks), asked again once per cooldown: the fixed set is used as soon as the cooldown passes', async () => {
    for (const [what, key] of await unusable()) {
      raw = [key];
      hits = 0;
      const v = verifier(newIssuerKeys(uri, 300, undefined, undefined, ['RS256']));
      assert.equal(await check(v.verify(await token('k1', k1.privateKey))), 'jwks', what);
      for (let i = 0; i < 5; i++) assert.equal(await check(v.verify(await token('k1', k1.privateKey))), 'jwks', what);
      assert.equal(hits, 1, `${what}: no fetch within the cooldown`);
      raw = undefined;
      await new Promise((r) => setTimeout(r, 350));
      assert.equal(await check(v.verify(await token('k1', k1.privateKey))), 'ok', `${what}: the provider fixed its keys`);
      assert.equal(hits, 2, what);
    }
  });

  it('keys held stay in use when a refresh brings a set with no usable key, with a warning naming the key', async () => {
    const { logs, log } = logged();
    const v = verifier(newIssuerKeys(uri, 100, log, 200, ['RS256']));
    assert.equal(await check(v.verify(await token('k1', k1.privateKey))), 'ok');
    raw = [(await unusable())[1]![1]];
    await new Promise((r) => setTimeout(r, 300));
    for (let i = 0; i < 3; i++) assert.equal(await check(v.verify(await token('k1', k1.privateKey))), 'ok', 'the held k1 still verifies');
    // (at least once: on a loaded machine the three verifications can span the 100 ms cooldown, and a third fetch is as good a test)
    assert.ok(hits >= 2, `the refresh was tried (fetches: ${hits})`);
    const warned = logs.find((l) => l.msg === 'refreshing the identity provider keys failed: the keys held stay in use');
    assert.match(String(warned?.reason), /holds no key usable with RS256: kid k1: RS256 requires key modulusLength to be 2048 bits or larger/);
  });

  it('an unusable key beside good ones is left out with a warning; the good ones verify', async () => {
    const { logs, log } = logged();
    raw = [{ ...(await exportJWK(k2.publicKey)), kid: 'k2', alg: 'RS256', use: 'sig' }, { ...(await unusable())[0]![1], kid: 'bad' }];
    const v = verifier(newIssuerKeys(uri, 60_000, log, undefined, ['RS256']));
    assert.equal(await check(v.verify(await token('k2', k2.privateKey))), 'ok');
    assert.equal(hits, 1);
    const warned = logs.find((l) => l.msg === 'the identity provider publishes a key the gateway cannot use: it is left out');
    assert.equal(warned?.kid, 'bad');
    assert.match(String(warned?.reason), /RS256/);
    assert.equal(logs.length, 1, 'the good key is not mentioned');
  });
});
