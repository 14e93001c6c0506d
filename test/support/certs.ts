/** Real certificates for tests, made with the openssl CLI (.ci/run installs it). */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { isIP } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import * as x509 from '@peculiar/x509';

export interface TestCert {
  cert: string;
  key: string;
  certPem: string;
}

/** A self-signed certificate for `names` (DNS names), written into dir as <base>.crt/.key. */
export function selfSignedCert(dir: string, base: string, names: string[], newKey = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256']): TestCert {
  const cert = join(dir, `${base}.crt`);
  const key = join(dir, `${base}.key`);
  const ext = join(dir, `${base}.ext`);
  writeFileSync(ext, `subjectAltName=${names.map((n) => (isIP(n) ? `IP:${n}` : `DNS:${n}`)).join(',')}\n`);
  execFileSync('openssl', ['req', '-x509', ...newKey, '-nodes', '-keyout', key, '-out', cert, '-days', '2', '-subj', `/CN=${names[0]}`, '-addext', `subjectAltName=${names.map((n) => (isIP(n) ? `IP:${n}` : `DNS:${n}`)).join(',')}`], { stdio: 'pipe' });
  return { cert, key, certPem: execFileSync('cat', [cert]).toString() };
}

/** The suite a TLS 1.2 client offering only `ciphers` settles on, or the handshake error. */
export function tls12Suite(port: number, ciphers: string): Promise<string> {
  return new Promise((resolve) => {
    const s = tlsConnect({ host: '127.0.0.1', port, maxVersion: 'TLSv1.2', ciphers, rejectUnauthorized: false }, () => {
      resolve(s.getCipher().name);
      s.destroy();
    });
    s.on('error', (e: NodeJS.ErrnoException) => resolve(`refused: ${e.code ?? e.message}`));
  });
}

/** A TLS listener of ours offers no suite without forward secrecy or an AEAD cipher in TLS 1.2. */
export async function assertOnlyStrongSuites(port: number): Promise<void> {
  for (const weak of ['AES128-SHA', 'AES256-GCM-SHA384', 'ECDHE-ECDSA-AES128-SHA', 'ECDHE-RSA-AES128-SHA', 'ECDHE-ECDSA-AES256-SHA384']) assert.match(await tls12Suite(port, weak), /^refused/, weak);
  assert.equal(await tls12Suite(port, 'ECDHE-ECDSA-AES128-GCM-SHA256'), 'ECDHE-ECDSA-AES128-GCM-SHA256');
}

/**
 * A self-signed ECDSA certificate for one DNS name, valid from `notBefore` to `notAfter` (ms):
 * one out of its dates, which openssl's CLI cannot make. `keys` as from ca.ts generateKeyPair.
 */
export async function datedCert(keys: CryptoKeyPair, dnsName: string, notBefore: number, notAfter: number, serialNumber = '01', cn = dnsName): Promise<string> {
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber,
    name: `CN=${cn}`,
    notBefore: new Date(notBefore),
    notAfter: new Date(notAfter),
    keys,
    signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' },
    extensions: [new x509.SubjectAlternativeNameExtension([{ type: 'dns', value: dnsName }])],
  });
  return cert.toString('pem');
}
