/**
 * Certificates of apps' own domains (`apps[].tls`, Entra's custom domains), served by the https
 * listener by SNI: a client that names an app's host gets that app's certificate, every other
 * one (and a client that names none) gets gateway.tls. One gateway can so publish apps of
 * several domains without one certificate that names them all.
 *
 * A set is read whole at start and at each reload, beside the live one, and swapped in with the
 * generation: a certificate or key that cannot be used fails the reload, and the served set stays.
 */
import { createHash, X509Certificate } from 'node:crypto';
import { resolve } from 'node:path';
import { createSecureContext, type SecureContext } from 'node:tls';
import type { Config } from '../config/load.js';
import { outsideValidity, readPemFile } from '../config/pem.js';
import { formatPath, type KeyPath } from '../config/source.js';
import { DrawbridgeError } from '../errors.js';
import { SERVER_TLS } from './listen.js';
import { externalUrlOf, hostPatternsFor, wildcardHostOf } from './router.js';

export interface AppCertificate {
  /** the host it is served for: a name, or `*.` and a domain (any one name under it) */
  host: string;
  /** the apps published on that host with this certificate */
  apps: string[];
  certFile: string;
  /** the end of the certificate's validity, in ms */
  until: number;
  fingerprint: string;
  context: SecureContext;
}

/**
 * An app's certificate or key cannot be served. `path` is the key it is about (apps[i].tls.cert,
 * .key, or .tls for the pair), for the reload to say the problem at its place in the file.
 */
export class AppCertificateError extends DrawbridgeError {
  constructor(
    readonly path: KeyPath,
    readonly problem: string,
  ) {
    super('ERR_APP_CERTIFICATE', `${formatPath(path)}: ${problem}`, { path: formatPath(path) });
  }
}

/** app certificates by host (see pickAppCertificate) */
export type AppCertificates = ReadonlyMap<string, AppCertificate>;

/** An app certificate's files as read, before a TLS context is built from them. */
export interface AppCertificateFiles {
  /** the index in apps of the first app on that host: its tls is the one served */
  index: number;
  host: string;
  apps: string[];
  certFile: string;
  cert: Buffer;
  key: Buffer;
  fingerprint: string;
}

/** Reads each https app's certificate and key, one pair per host (lint refuses two: the first app's is served). */
export function readAppCertificateFiles(config: Config, dir: string): Map<string, AppCertificateFiles> {
  const out = new Map<string, AppCertificateFiles>();
  config.apps.forEach((app, i) => {
    if (!app.tls || !/^https:/i.test(app.externalUrl)) return;
    const host = wildcardHostOf(externalUrlOf(app.externalUrl));
    const same = out.get(host);
    if (same) return void same.apps.push(app.name);
    const certFile = resolve(dir, app.tls.cert);
    const read = (which: 'cert' | 'key', file: string) => {
      try {
        return readPemFile(file);
      } catch (e) {
        throw new AppCertificateError(['apps', i, 'tls', which], (e as Error).message);
      }
    };
    const cert = read('cert', certFile);
    const key = read('key', resolve(dir, app.tls.key));
    out.set(host, { index: i, host, apps: [app.name], certFile, cert, key, fingerprint: pairFingerprint(cert, key) });
  });
  return out;
}

/** What tells a certificate and key pair from another (a renewal, a swapped key): the same for gateway.tls and apps' own. */
export function pairFingerprint(cert: Buffer, key: Buffer): string {
  return createHash('sha256').update(cert).update(key).digest('base64url');
}

/**
 * Each https app's certificate with its TLS context (the served set's, when the files did not
 * change). Throws, naming the app's key, when one cannot be used, or is out of its dates while
 * the one served for that host is not: no client would take it.
 */
export function readAppCertificates(config: Config, dir: string, served: AppCertificates = new Map()): Map<string, AppCertificate> {
  const out = new Map<string, AppCertificate>();
  for (const { index, host, apps, certFile, cert, key, fingerprint } of readAppCertificateFiles(config, dir).values()) {
    const before = served.get(host);
    if (before?.fingerprint === fingerprint) {
      out.set(host, { ...before, apps });
      continue;
    }
    let context: SecureContext;
    let leaf: X509Certificate;
    try {
      context = createSecureContext({ cert, key, ...SERVER_TLS });
      leaf = new X509Certificate(cert);
    } catch (e) {
      throw new AppCertificateError(['apps', index, 'tls'], `the certificate and key cannot be used: ${(e as Error).message}`);
    }
    const refused = outsideValidity(leaf);
    if (refused && before && before.until > Date.now()) throw new AppCertificateError(['apps', index, 'tls', 'cert'], `${certFile}: ${refused}; the certificate served now for ${host} is kept`);
    out.set(host, { host, apps, certFile, until: Date.parse(leaf.validTo), fingerprint, context });
  }
  return out;
}

/** The certificate for the host a client named in its ClientHello (SNI), if an app has one. */
export function pickAppCertificate(certs: AppCertificates, servername: string): AppCertificate | undefined {
  for (const host of hostPatternsFor(servername)) {
    const cert = certs.get(host);
    if (cert) return cert;
  }
  return undefined;
}

/** Whether two sets serve the same certificates for the same hosts. */
export function sameAppCertificates(a: AppCertificates, b: AppCertificates): boolean {
  return a.size === b.size && [...a].every(([host, c]) => b.get(host)?.fingerprint === c.fingerprint);
}
