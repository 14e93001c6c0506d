#!/usr/bin/env node
/**
 * A minimal OpenID Connect issuer for the bench rows that need an identity
 * (gateway-bearer, gateway-policies): discovery + JWKS over plain http on
 * loopback, and one long-lived RS256 access token that wrk sends on every
 * request. Not a test double for sign-in: it only has what bearer
 * verification reads (issuer, jwks_uri).
 *
 *   node bench/issuer.mjs mint  DIR PORT   # writes DIR/key.json (private JWK) and DIR/token
 *   node bench/issuer.mjs serve DIR PORT   # serves discovery and the public JWK on 127.0.0.1:PORT
 *
 * The token's claims are what the bench configs expect: aud api://bench,
 * scp user_impersonation, preferred_username bench@example.test, groups
 * [engineering, bench], amr [pwd, mfa], department "R&D".
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { join } from 'node:path';
import { SignJWT, exportJWK, generateKeyPair, importJWK } from 'jose';

const [mode, dir, portArg] = process.argv.slice(2);
const port = Number(portArg);
if (!['mint', 'serve'].includes(mode ?? '') || !dir || !Number.isInteger(port) || port <= 0) {
  process.stderr.write('usage: issuer.mjs mint|serve DIR PORT\n');
  process.exit(2);
}
const issuer = `http://127.0.0.1:${port}`;
const KID = 'bench-1';

if (mode === 'mint') {
  mkdirSync(dir, { recursive: true });
  const { privateKey } = await generateKeyPair('RS256', { extractable: true });
  const jwk = { ...(await exportJWK(privateKey)), kid: KID, alg: 'RS256', use: 'sig' };
  writeFileSync(join(dir, 'key.json'), JSON.stringify(jwk), { mode: 0o600 });
  const now = Math.floor(Date.now() / 1000);
  const token = await new SignJWT({
    scp: 'user_impersonation',
    preferred_username: 'bench@example.test',
    name: 'Bench User',
    groups: ['engineering', 'bench'],
    amr: ['pwd', 'mfa'],
    department: 'R&D',
  })
    .setProtectedHeader({ alg: 'RS256', kid: KID, typ: 'JWT' })
    .setIssuer(issuer)
    .setAudience('api://bench')
    .setSubject('bench-user-1')
    .setIssuedAt(now)
    .setNotBefore(now - 60)
    .setExpirationTime(now + 24 * 3600)
    .sign(privateKey);
  writeFileSync(join(dir, 'token'), token, { mode: 0o600 });
  process.stdout.write(`${join(dir, 'token')}\n`);
} else {
  const priv = JSON.parse(readFileSync(join(dir, 'key.json'), 'utf8'));
  await importJWK(priv, 'RS256'); // fail early on a damaged key file
  const { kty, n, e } = priv;
  const jwks = JSON.stringify({ keys: [{ kty, n, e, kid: KID, alg: 'RS256', use: 'sig' }] });
  const discovery = JSON.stringify({
    issuer,
    jwks_uri: `${issuer}/jwks`,
    authorization_endpoint: `${issuer}/authorize`,
    token_endpoint: `${issuer}/token`,
    response_types_supported: ['code'],
    subject_types_supported: ['public'],
    id_token_signing_alg_values_supported: ['RS256'],
    code_challenge_methods_supported: ['S256'],
  });
  let served = 0;
  const server = http.createServer((req, res) => {
    served++;
    const body = req.url === '/.well-known/openid-configuration' ? discovery : req.url === '/jwks' ? jwks : undefined;
    res.writeHead(body ? 200 : 404, { 'content-type': 'application/json', 'cache-control': 'max-age=3600' });
    res.end(body ?? '{"error":"not_found"}');
    process.stdout.write(`${new Date().toISOString()} ${req.method} ${req.url} -> ${body ? 200 : 404} (#${served})\n`);
  });
  server.listen(port, '127.0.0.1', () => process.stdout.write(`bench issuer on ${issuer}\n`));
  const stop = () => server.close(() => process.exit(0));
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}
