/**
 * The embedded provider as `npm start` runs it: secrets generated once into
 * the demo state directory (the gateway config reads them with ${file:...}),
 * demo users with passwords printed on start. For the demo only.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { makeDirs } from '../../config/stateFile.js';
import { EmbeddedIdp, demoUsers, type ApiAudience, type DemoUser } from './embeddedIdp.js';

export const DEMO_CLIENT_ID = 'drawbridge';

/** Reads a secret file, creating it with a random value first if needed. */
export function ensureSecretFile(file: string, bytes = 36): string {
  if (!existsSync(file)) writeFileSync(file, randomBytes(bytes).toString('base64url'), { mode: 0o600 });
  return readFileSync(file, 'utf8').trim();
}

export interface DemoIdp {
  idp: EmbeddedIdp;
  users: DemoUser[];
  /** lines to print: issuer, users, passwords, groups, MFA */
  banner: string[];
}

export async function startDemoIdp(stateDir: string, opts: { port: number; audiences?: ApiAudience[] }): Promise<DemoIdp> {
  // (its secrets are 0600 too; a folder others can list would still show what it holds)
  makeDirs(stateDir);
  ensureSecretFile(join(stateDir, 'session-secret'), 48);
  const clientSecret = ensureSecretFile(join(stateDir, 'client-secret'));
  const passwordsFile = join(stateDir, 'demo-users.json');
  let passwords: Record<string, string> = {};
  try {
    passwords = JSON.parse(readFileSync(passwordsFile, 'utf8'));
  } catch {
    /* first start */
  }
  const users = demoUsers((u) => passwords[u] ?? randomBytes(6).toString('base64url'));
  writeFileSync(passwordsFile, JSON.stringify(Object.fromEntries(users.map((u) => [u.username, u.password])), null, 2), { mode: 0o600 });
  const idp = await EmbeddedIdp.start({
    port: opts.port,
    clientId: DEMO_CLIENT_ID,
    clientSecret,
    users,
    audiences: opts.audiences ?? [{ audience: 'api://team', scopes: ['user_impersonation'] }],
    allowLoopbackCallbacks: true,
    onOneTimeCode: (user, code) => process.stderr.write(`\n  [embedded IdP] one-time code for ${user}: ${code}\n\n`),
  });
  const banner = [
    `  identity   ${idp.issuer} (embedded provider: for the demo and tests only)`,
    ...users.map((u) => `    ${u.username.padEnd(6)} password ${u.password.padEnd(10)} groups ${u.groups.join(',').padEnd(22)}${u.mfa ? ' MFA: one-time code printed here' : ''}`),
  ];
  return { idp, users, banner };
}
