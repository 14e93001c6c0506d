/**
 * Reads the PEM files a config names and says, in an operator's words, why one
 * cannot be used: a file that exists but holds no certificate (or a key that
 * does not belong to its certificate) would otherwise pass the config checks
 * and fail only when TLS is set up, or on every request to the app.
 */
import { X509Certificate, createPrivateKey, type KeyObject } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';

/** Far above any real CA bundle (the Mozilla bundle is about 220 KB); keeps a misnamed disk image out of memory. */
const MAX_PEM_BYTES = 4 * 1024 * 1024;

const CERT_BLOCK = /-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g;

export type PemRead<T> = { ok: true; value: T } | { ok: false; message: string };

function readPem(file: string): PemRead<string> {
  try {
    const st = statSync(file);
    if (!st.isFile()) return { ok: false, message: 'is not a regular file' };
    if (st.size > MAX_PEM_BYTES) return { ok: false, message: `is ${st.size} bytes, too large for a PEM file` };
    return { ok: true, value: readFileSync(file, 'latin1') };
  } catch (e) {
    return { ok: false, message: `cannot be read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})` };
  }
}

/** Every certificate in a PEM file (a chain or a CA bundle); at least one. */
export function readCertificates(file: string): PemRead<X509Certificate[]> {
  const text = readPem(file);
  if (!text.ok) return text;
  const blocks = text.value.match(CERT_BLOCK) ?? [];
  if (blocks.length === 0) return { ok: false, message: 'holds no PEM certificate (no -----BEGIN CERTIFICATE----- block)' };
  const certs: X509Certificate[] = [];
  for (const [i, block] of blocks.entries()) {
    try {
      certs.push(new X509Certificate(block));
    } catch {
      return { ok: false, message: blocks.length > 1 ? `certificate ${i + 1} of ${blocks.length} is not a valid X.509 certificate` : 'holds a certificate block that is not a valid X.509 certificate' };
    }
  }
  return { ok: true, value: certs };
}

/** The private key in a PEM file. */
export function readPrivateKey(file: string): PemRead<KeyObject> {
  const text = readPem(file);
  if (!text.ok) return text;
  if (!/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(text.value)) return { ok: false, message: 'holds no PEM private key (no -----BEGIN ... PRIVATE KEY----- block)' };
  if (/-----BEGIN ENCRYPTED PRIVATE KEY-----|Proc-Type: 4,ENCRYPTED/.test(text.value)) return { ok: false, message: 'holds an encrypted private key; the gateway has no passphrase setting, so it must be unencrypted' };
  try {
    return { ok: true, value: createPrivateKey(text.value) };
  } catch {
    return { ok: false, message: 'holds a private key block that cannot be parsed' };
  }
}

/** Whether `key` is the private key of the first (leaf) certificate. */
export function keyMatches(leaf: X509Certificate, key: KeyObject): boolean {
  try {
    return leaf.checkPrivateKey(key);
  } catch {
    return false;
  }
}
