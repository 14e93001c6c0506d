/** Real certificates for tests, made with the openssl CLI (.ci/run installs it). */
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

export interface TestCert {
  cert: string;
  key: string;
  certPem: string;
}

/** A self-signed certificate for `names` (DNS names), written into dir as <base>.crt/.key. */
export function selfSignedCert(dir: string, base: string, names: string[]): TestCert {
  const cert = join(dir, `${base}.crt`);
  const key = join(dir, `${base}.key`);
  const ext = join(dir, `${base}.ext`);
  writeFileSync(ext, `subjectAltName=${names.map((n) => (/^[\d.]+$/.test(n) ? `IP:${n}` : `DNS:${n}`)).join(',')}\n`);
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', key, '-out', cert, '-days', '2', '-subj', `/CN=${names[0]}`, '-addext', `subjectAltName=${names.map((n) => (/^[\d.]+$/.test(n) ? `IP:${n}` : `DNS:${n}`)).join(',')}`], { stdio: 'pipe' });
  return { cert, key, certPem: execFileSync('cat', [cert]).toString() };
}
