/**
 * The certificates the https listener serves: gateway.tls (the default) and the apps' own
 * (apps[].tls, by SNI). Read at start and at each reload beside the live ones, checked before
 * anything is swapped (a certificate that cannot be used fails the reload), swapped into the live
 * listener without a restart, and watched for their end dates.
 */
import { X509Certificate } from 'node:crypto';
import type https from 'node:https';
import { resolve } from 'node:path';
import { createSecureContext, type SecureContext } from 'node:tls';
import type { Logger } from 'pino';
import type { Config } from '../config/load.js';
import { outsideValidity, readPemFile } from '../config/pem.js';
import { formatPath } from '../config/source.js';
import type { Metrics } from '../observability/metrics.js';
import { pairFingerprint, pickAppCertificate, readAppCertificateFiles, readAppCertificates, sameAppCertificates, type AppCertificate, type AppCertificates } from './appCertificates.js';
import { SERVER_TLS } from './listen.js';

/** how often the served certificates' end dates are looked at, and how long before one that is said */
const CERT_DATES_CHECK_MS = 60 * 60_000;
const CERT_EXPIRY_WARN_MS = 14 * 86_400_000;

/** gateway.tls's certificate and key as read, with the certificate's file and their fingerprint together */
interface GatewayTlsFiles {
  cert: Buffer;
  key: Buffer;
  certFile: string;
  fingerprint: string;
}

/** What a reload would change, checked: apply() it once the reload's generation is live. */
export interface CertificateChange {
  gateway?: GatewayTlsFiles;
  apps: AppCertificates;
}

/** What the https server is created with: the default certificate and the SNI callback for the apps'. */
export interface ListenerTls {
  cert: Buffer;
  key: Buffer;
  SNICallback: (name: string, cb: (err: Error | null, ctx?: SecureContext) => void) => void;
}

export class ServedCertificates {
  /** gateway.tls as served: its files, the fingerprint of them, and the certificate's end */
  private gateway!: { cert: Buffer; key: Buffer; fingerprint: string; file: string; until: number };
  private apps: AppCertificates = new Map();
  /** what has been said of a served certificate's end date (by fingerprint): that it is near, that it passed */
  private readonly datesSaid = new Map<string, 'near' | 'passed'>();
  /** the certificate files already said to wait for a valid config */
  private readonly waitingTold = new Set<string>();
  private readonly timer: NodeJS.Timeout;

  /** Reads the config's certificates (throws when one cannot be read or used: the gateway does not start). */
  constructor(
    config: Config,
    dir: string,
    private readonly log: Logger,
    private readonly metrics: Metrics,
  ) {
    const files = readGatewayTls(config, dir);
    this.apps = readAppCertificates(config, dir);
    this.serveGateway(files);
    this.timer = setInterval(() => this.checkDates(), CERT_DATES_CHECK_MS).unref();
  }

  /** for https.createServer (an SNI callback that gives nothing leaves the default context: gateway.tls) */
  listenerTls(): ListenerTls {
    const { cert, key } = this.gateway;
    return { cert, key, SNICallback: (name, cb) => cb(null, pickAppCertificate(this.apps, name)?.context) };
  }

  /**
   * The certificates of a config about to be loaded, checked by building their TLS contexts:
   * throws, with the key the message is about, when one cannot be used. Nothing changes yet.
   */
  prepare(config: Config, dir: string): CertificateChange {
    let gateway: GatewayTlsFiles | undefined;
    try {
      gateway = this.changedGatewayTls(config, dir);
    } catch (e) {
      throw new Error(`gateway.tls: the certificate and key cannot be used: ${(e as Error).message}`);
    }
    return { gateway, apps: readAppCertificates(config, dir, this.apps) };
  }

  /** Swaps a prepared change into the live listener. */
  apply(change: CertificateChange, server: https.Server): void {
    const appsChanged = !sameAppCertificates(change.apps, this.apps);
    this.apps = change.apps;
    this.waitingTold.clear();
    if (change.gateway) {
      server.setSecureContext({ cert: change.gateway.cert, key: change.gateway.key, ...SERVER_TLS });
      this.serveGateway(change.gateway);
      this.log.info('gateway certificate reloaded');
    } else if (appsChanged) this.published();
    if (appsChanged) this.log.info({ hosts: [...this.apps.keys()] }, 'app certificates reloaded');
  }

  /**
   * A renewed certificate waits for the whole file to be valid again: the certificates are part
   * of the config. They are the one part with an end date, so a renewal held up by an unrelated
   * typo is said, once, at its key, with when the served one runs out. `live` is the config served;
   * `refused` the tls keys (`gateway.tls`, `apps[i].tls`) whose own files the reload refused.
   */
  tellWaiting(live: Config, dir: string, refused: readonly string[] = []): void {
    const waiting: { key: string; until: number; fingerprint: string }[] = [];
    // (a file that cannot be read is left out: the reload's own problems say so)
    try {
      const { fingerprint } = readGatewayTls(live, dir);
      if (fingerprint !== this.gateway.fingerprint) waiting.push({ key: 'gateway.tls.cert', until: this.gateway.until, fingerprint });
    } catch {
      /* said by the reload */
    }
    let apps: ReturnType<typeof readAppCertificateFiles> = new Map();
    try {
      apps = readAppCertificateFiles(live, dir);
    } catch {
      /* said by the reload */
    }
    for (const files of apps.values()) {
      const now = this.apps.get(files.host);
      if (now && now.fingerprint !== files.fingerprint) waiting.push({ key: formatPath(['apps', files.index, 'tls', 'cert']), until: now.until, fingerprint: files.fingerprint });
    }
    for (const w of waiting) {
      // (the reload's own problem at that key says why those files are not served: "waiting" would mislead)
      if (refused.some((k) => w.key.startsWith(`${k}.`))) continue;
      if (this.waitingTold.has(w.fingerprint)) continue;
      this.waitingTold.add(w.fingerprint);
      const servedUntil = new Date(w.until).toISOString();
      this.log.error({ key: w.key, servedUntil }, `the certificate files changed but are not applied while the config is invalid: the served certificate runs out at ${servedUntil}`);
    }
  }

  /**
   * A certificate that runs out while the gateway serves it is the usual failure (a renewal that
   * stopped): every client's handshake fails and nothing else would say so. Said once when it is
   * CERT_EXPIRY_WARN_MS from its end (warn), and once when it has passed (error); checked at each
   * certificate load and every CERT_DATES_CHECK_MS.
   */
  checkDates(now = Date.now()): void {
    const g = this.gateway;
    // One pair of files may be served for several hosts (a certificate naming them all, given to
    // each app, or also to gateway.tls): said once per pair, naming every host it is served for.
    const pairs = new Map<string, { cert: AppCertificate; hosts: string[] }>();
    for (const c of this.apps.values()) {
      const pair = pairs.get(c.fingerprint) ?? { cert: c, hosts: [] };
      pair.hosts.push(`${c.host} (apps[].tls of ${c.apps.join(', ')})`);
      pairs.set(c.fingerprint, pair);
    }
    const alsoForApps = pairs.get(g.fingerprint)?.hosts;
    this.tellDates(`the certificate the https listener serves${alsoForApps ? `, also for ${alsoForApps.join(', ')},` : ''}`, g, now);
    for (const [fingerprint, { cert, hosts }] of pairs) {
      if (fingerprint !== g.fingerprint) this.tellDates(`the certificate served for ${hosts.join(', ')}`, { file: cert.certFile, until: cert.until, fingerprint }, now);
    }
    for (const f of this.datesSaid.keys()) if (f !== g.fingerprint && !pairs.has(f)) this.datesSaid.delete(f);
  }

  stop(): void {
    clearInterval(this.timer);
  }

  private serveGateway({ cert, key, fingerprint, certFile }: GatewayTlsFiles): void {
    this.gateway = { cert, key, fingerprint, file: certFile, until: Date.parse(new X509Certificate(cert).validTo) };
    this.published();
  }

  /** the end dates of the served certificates, to the metrics and (when near or passed) the log */
  private published(): void {
    this.metrics.tlsCertificateServed(this.gateway.until);
    this.metrics.appCertificatesServed([...this.apps.values()]);
    this.checkDates();
  }

  private tellDates(what: string, { file, until, fingerprint }: { file: string; until: number; fingerprint: string }, now: number): void {
    const said = this.datesSaid.get(fingerprint);
    const servedUntil = new Date(until).toISOString();
    if (until <= now) {
      if (said === 'passed') return;
      this.datesSaid.set(fingerprint, 'passed');
      return void this.log.error({ file, servedUntil }, `${what} expired at ${servedUntil}: clients cannot connect; put a renewed certificate and key in place (they are picked up without a restart)`);
    }
    if (until - now > CERT_EXPIRY_WARN_MS || said) return;
    this.datesSaid.set(fingerprint, 'near');
    const days = Math.floor((until - now) / 86_400_000);
    this.log.warn({ file, servedUntil, daysLeft: days }, `${what} expires at ${servedUntil} (${days === 0 ? 'within a day' : `in ${days} day${days === 1 ? '' : 's'}`}): renew it`);
  }

  /**
   * gateway.tls's new certificate and key when they differ from the served ones, checked by
   * building a TLS context from them (throws when they cannot be used).
   */
  private changedGatewayTls(config: Config, dir: string): GatewayTlsFiles | undefined {
    if (!config.gateway.tls) return undefined;
    const tls = readGatewayTls(config, dir);
    if (tls.fingerprint === this.gateway.fingerprint) return undefined;
    createSecureContext({ cert: tls.cert, key: tls.key });
    // Out of its dates, no client would take it: a backup restored by mistake, or a renewal whose
    // start is still ahead, took every app down while the one it replaced still worked.
    const refused = outsideValidity(new X509Certificate(tls.cert));
    if (refused && !outsideValidity(new X509Certificate(this.gateway.cert))) {
      throw new Error(`${tls.certFile}: ${refused}; the certificate served now is kept${refused.includes('valid only from') ? ' until then' : ''}`);
    }
    return tls;
  }
}

function readGatewayTls(config: Config, dir: string): GatewayTlsFiles {
  const certFile = resolve(dir, config.gateway.tls!.cert);
  const cert = readPemFile(certFile);
  const key = readPemFile(resolve(dir, config.gateway.tls!.key));
  return { cert, key, certFile, fingerprint: pairFingerprint(cert, key) };
}
