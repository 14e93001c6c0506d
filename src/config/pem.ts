/**
 * Reads the PEM files a config names and says, in an operator's words, why one
 * cannot be used: a file that exists but holds no certificate (or a key that
 * does not belong to its certificate) would otherwise pass the config checks
 * and fail only when TLS is set up, or on every request to the app.
 */
import { X509Certificate, createPrivateKey, type KeyObject } from 'node:crypto';
import { isIP } from 'node:net';
import tls from 'node:tls';
import { FileTooLargeError, NotARegularFileError, readRegularFile } from './regularFile.js';

/** Far above any real CA bundle (the Mozilla bundle is about 220 KB); keeps a misnamed disk image out of memory. */
const MAX_PEM_BYTES = 4 * 1024 * 1024;

/**
 * The bytes of a PEM file the config names (a certificate, a key, a CA bundle), for the checks
 * here and for the listeners and upstreams that use it: read as a regular file of at most
 * MAX_PEM_BYTES, so a FIFO or a device put in its place cannot hold the gateway or fill its memory.
 */
export function readPemFile(file: string): Buffer {
  return readRegularFile(file, MAX_PEM_BYTES);
}

const CERT_BLOCK = /-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g;

export type PemRead<T> = { ok: true; value: T } | { ok: false; message: string };

function readPem(file: string): PemRead<string> {
  try {
    return { ok: true, value: readPemFile(file).toString('latin1') };
  } catch (e) {
    if (e instanceof NotARegularFileError) return { ok: false, message: 'is not a regular file' };
    if (e instanceof FileTooLargeError) return { ok: false, message: `is ${String(e.details.size)} bytes, too large for a PEM file` };
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

const day = (d: string) => new Date(d).toISOString().slice(0, 10);

/** Named curves browsers take a certificate's key on (P-256, P-384; OpenSSL also P-521). */
const SERVED_CURVES = new Set(['prime256v1', 'secp384r1', 'secp521r1']);

/**
 * Who refuses the certificate for its key, whatever its names and dates: an RSA key under 2048
 * bits, a DSA key, an EC key on a curve browsers do not offer. Node's own OpenSSL serves each of
 * them without a word, so only the clients would find out.
 */
export function weakKey(leaf: X509Certificate): string | undefined {
  const { asymmetricKeyType: type, asymmetricKeyDetails: details = {} } = leaf.publicKey;
  if ((type === 'rsa' || type === 'rsa-pss') && (details.modulusLength ?? 0) < 2048) {
    return `the certificate's RSA key has ${details.modulusLength} bits: curl and other clients of a system OpenSSL at security level 2 (Debian, Ubuntu, RHEL) refuse it ("EE certificate key too weak")`;
  }
  if (type === 'dsa') return "the certificate's key is DSA: browsers and TLS 1.3 clients refuse it";
  if (type === 'ec' && !SERVED_CURVES.has(String(details.namedCurve))) return `the certificate's key is on the curve ${details.namedCurve}, which browsers do not offer: they refuse it`;
  return undefined;
}

/** Why no client would accept the certificate now (expired, or not valid yet); undefined when it is within its dates. */
export function outsideValidity(cert: X509Certificate, now = Date.now()): string | undefined {
  if (Date.parse(cert.validTo) < now) return `the certificate expired on ${day(cert.validTo)}`;
  if (Date.parse(cert.validFrom) > now) return `the certificate is valid only from ${day(cert.validFrom)}`;
  return undefined;
}

/**
 * The hosts a served certificate does not cover. A `*.` host stands for any one name under it,
 * which a wildcard certificate for that domain covers.
 */
export function uncoveredHosts(leaf: X509Certificate, hosts: Iterable<string>): string[] {
  const out: string[] = [];
  for (const h of new Set(hosts)) {
    const name = h.startsWith('*.') ? `any-name${h.slice(1)}` : h;
    const covered = isIP(name) ? leaf.checkIP(name) !== undefined : leaf.checkHost(name) !== undefined;
    if (!covered) out.push(h);
  }
  return out;
}

/** Node's public roots, parsed once on first use (lint and start only) */
let publicRoots: X509Certificate[] | undefined;

/**
 * The issuer the last certificate of a chain file names when neither the file nor the public
 * roots hold it, and the certificate says where its issuer is fetched from (Authority
 * Information Access, "CA Issuers"), or undefined. certbot's cert.pem (the leaf alone,
 * fullchain.pem being the whole chain) works in browsers, which fetch a missing intermediate
 * from there, and fails in curl, Node and Java, which do not. Public CAs and AD CS write that
 * address into what they issue; a private root made with openssl does not, and a leaf it signed
 * needs nothing more in the file (TLS lets the trust anchor be left out): it was warned at
 * every lint, start and reload, with advice that changed nothing.
 */
export function missingIssuer(certs: readonly X509Certificate[]): string | undefined {
  const last = certs[certs.length - 1]!;
  if (!/^CA Issuers - /m.test(last.infoAccess ?? '')) return undefined;
  if (last.checkIssued(last) || certs.some((c) => last.checkIssued(c))) return undefined;
  publicRoots ??= tls.rootCertificates.map((pem) => new X509Certificate(pem));
  if (publicRoots.some((root) => last.checkIssued(root))) return undefined;
  return last.issuer.replace(/\n/g, ', ');
}

/** The first certificate in a chain file that the one after it did not sign (1-based), or undefined when each link holds. */
export function brokenLink(certs: readonly X509Certificate[]): number | undefined {
  for (let i = 0; i + 1 < certs.length; i++) if (!certs[i]!.checkIssued(certs[i + 1]!)) return i + 1;
  return undefined;
}
