/**
 * For benchmarks and manual tests only: starts the embedded provider and
 * prints one long-lived JWT access token for an audience, then keeps serving
 * the provider's JWKS (the gateway verifies against it) until stopped.
 *
 *   node dist/src/identity/provider/devToken.js --audience api://bench [--scope user_impersonation] [--ttl 86400] [--port 0]
 *
 * Prints one JSON line {issuer, clientId, clientSecret, audience, token}; point
 * the gateway's identity.issuer at `issuer` and give the app `audience`.
 */
import { randomBytes } from 'node:crypto';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { EmbeddedIdp } from './embeddedIdp.js';

export interface DevTokenIssuer {
  idp: EmbeddedIdp;
  issuer: string;
  clientId: string;
  clientSecret: string;
  token: string;
  close(): Promise<void>;
}

/** In-process variant for test and bench code. */
export async function startDevTokenIssuer(opts: { audience: string; scope?: string; ttlSec?: number; port?: number }): Promise<DevTokenIssuer> {
  const clientSecret = randomBytes(24).toString('base64url');
  const scopes = opts.scope ? opts.scope.split(' ') : ['user_impersonation'];
  const idp = await EmbeddedIdp.start({ port: opts.port ?? 0, clientId: 'drawbridge', clientSecret, audiences: [{ audience: opts.audience, scopes }], accessTokenTtlSec: opts.ttlSec ?? 86_400 });
  const token = await idp.clientCredentialsToken(opts.audience, scopes.join(' '));
  return { idp, issuer: idp.issuer, clientId: 'drawbridge', clientSecret, token, close: () => idp.close() };
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const { values } = parseArgs({ options: { audience: { type: 'string', default: 'api://bench' }, scope: { type: 'string' }, ttl: { type: 'string', default: '86400' }, port: { type: 'string', default: '0' } } });
  const t = await startDevTokenIssuer({ audience: values.audience!, scope: values.scope, ttlSec: Number(values.ttl), port: Number(values.port) });
  process.stdout.write(JSON.stringify({ issuer: t.issuer, clientId: t.clientId, clientSecret: t.clientSecret, audience: values.audience, token: t.token }) + '\n');
  const stop = () => void t.close().finally(() => process.exit(0));
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}
