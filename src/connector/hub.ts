/**
 * The gateway side of connectors: a TLS listener that connectors dial out to.
 *
 *   GET  /v1/ca      the connector CA certificate (the connector checks it against the pin in its token)
 *   POST /v1/enroll  token + CSR -> client certificate (no client certificate needed)
 *   POST /v1/renew   CSR -> fresh client certificate (mutual TLS)
 *   GET  /v1/tunnel  upgrade to drawbridge-h2 or WebSocket (mutual TLS); HTTP/2 runs over it with
 *                    the gateway as the client (see channelLink.ts)
 *
 * Who a connector is comes only from its verified client certificate
 * (`socket.authorized` against our CA), never from a header.
 */
import http2, { type ClientHttp2Session } from 'node:http2';
import https from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { hostname } from 'node:os';
import { existsSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Duplex } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import type { Logger } from 'pino';
import { throttledLog } from '../observability/throttledLog.js';
import { WebSocketServer } from 'ws';
import { parseDuration } from '../config/duration.js';
import { warnIfExposed } from '../config/stateFile.js';
import type { Config } from '../config/load.js';
import type { AppConfig } from '../config/schema.js';
import { addressOf, closeServer, listen, parseListen, SERVER_TLS } from '../gateway/listen.js';
import { sharesHttpsPort } from '../gateway/sharedTlsPort.js';
import type { Upstream } from '../gateway/upstream.js';
import { ConnectorCa, EnrollmentError, MIN_RENEWAL_GAP_MS, SERVER_CERT_LIFETIME_MS, identityOfCert, issuedAt } from './ca.js';
import { StreamWindows } from './streamWindow.js';
import { OFFER_CONNECTOR_ALPN, MAX_FRAME_BYTES, SESSION_MEMORY_MB, SESSION_WINDOW, STREAM_WINDOW, SWITCHING_TO_TUNNEL, TUNNEL_PROTOCOL, channelStream, unblockedStream, type ChannelTransport } from './channelLink.js';
import { KnownConnectors } from './knownConnectors.js';
import { CLIENT_PREFACE_BYTES, goawayReason, onOwnGoaway } from './ownGoaway.js';
import { ChannelRegistry, type Balancing, type Channel, type ConnectorSummary, type GroupCounts } from './registry.js';
import { decodeToken, NOT_RECORDED, TokenStore } from './tokens.js';
import { TunnelUpstream } from './tunnelUpstream.js';

export const DEFAULT_CERT_LIFETIME_MS = 30 * 86400_000;
const MAX_BODY_BYTES = 64 << 10;
/** what a client of the connectors listener gets for its TLS handshake, and then for its request head (the public https listener's handshake too) */
export const HANDSHAKE_TIMEOUT_MS = 10_000;
/** HTTP status of an enrollment or renewal refusal, by its code; anything else is 400 */
const REFUSAL_STATUS: Record<string, number> = { ERR_NOT_AUTHENTICATED: 403, ERR_REVOKED: 403, ERR_CERT_EXPIRED: 403, ERR_NOT_FOUND: 404, ERR_BODY_TOO_LARGE: 413, ERR_TOO_MANY_CHANNELS: 429, ERR_RENEWED_RECENTLY: 429, [NOT_RECORDED]: 503 };
/** refusals of a token whose signature is this gateway's: someone was given it, so each is worth a line */
const SIGNED_TOKEN_REFUSALS = new Set(['ERR_TOKEN_EXPIRED', 'ERR_TOKEN_USED']);
/** the most tokens and connectors whose refusals are throttled apart (past it the throttles start again) */
const MAX_REFUSAL_SUBJECTS = 10_000;
/** what a channel asked for while the hub stops gets: the connector dials again (the next gateway, a restart) */
const STOPPING_ANSWER = 'HTTP/1.1 503 Service Unavailable\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: 0\r\n\r\n';
/** seconds a connector is told to wait after the gateway's own storage failed it */
const RETRY_AFTER_S = 30;
/**
 * Channels one connector may hold at once. `connector run --channels` goes up
 * to 16, and after a network break its redials can meet old channels the hub
 * has not yet dropped for missed pings: twice that. Without a cap one
 * certificate holder could open thousands (about 90 KB and one fd each, all
 * pinged), spending the gateway's memory and fds for every group.
 */
export const MAX_CHANNELS_PER_CONNECTOR = 32;
/** the longest delay setTimeout takes */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** An accepted channel's byte stream, whichever transport carried it. */
interface AcceptedLink {
  transport: ChannelTransport;
  stream: Duplex;
  terminate(): void;
  onClose(fn: () => void): void;
}

export interface HubOptions {
  pingIntervalMs?: number;
  /** the hub's own TLS certificate's lifetime (tests shorten it) */
  serverCertLifetimeMs?: number;
}

interface ServerTls {
  keyPem: string;
  certPem: string;
  notAfter: Date;
}

export function targetOf(u: URL): string {
  const port = u.port || (u.protocol === 'https:' ? '443' : '80');
  const host = u.hostname.startsWith('[') ? u.hostname : u.hostname.includes(':') ? `[${u.hostname}]` : u.hostname;
  return `${host}:${port}`;
}

export class ConnectorHub {
  readonly registry = new ChannelRegistry();
  /** each group's targets in the live config */
  private targets = new Map<string, string[]>();
  /** the targets of configs a reload replaced, while their requests run */
  private readonly lingering = new Set<Map<string, string[]>>();
  private revoked = new Set<string>();
  private lifetimeMs = DEFAULT_CERT_LIFETIME_MS;
  private readonly wss = new WebSocketServer({ noServer: true, maxPayload: MAX_FRAME_BYTES, perMessageDeflate: false });
  private readonly server: https.Server;
  private readonly pingTimer: NodeJS.Timeout;
  private readonly tokens: TokenStore;
  /** the listing as saved in stateDir, so a restart still lists the connectors that went away */
  private readonly known: KnownConnectors;
  private nextChannel = 1;
  private listenAt?: string;
  private readonly pingMs: number;
  private readonly serverCertLifetimeMs: number;
  private serverCertRenewAt: number;
  private serverCertTimer?: NodeJS.Timeout;
  private stopped = false;
  /** whether the hub is on gateway.listen.https's port, as it started (a reload does not change it) */
  sharesHttpsPort = false;

  private constructor(
    readonly ca: ConnectorCa,
    tls: ServerTls,
    /** what the hub's certificate names: the names connectors dial */
    private names: string[],
    readonly stateDir: string,
    readonly log: Logger,
    opts: HubOptions,
  ) {
    this.tokens = new TokenStore(stateDir);
    this.known = new KnownConnectors(join(stateDir, 'connectors', 'known.json'), log, () => this.connectors());
    this.registry.restore(this.known.load());
    this.registry.onChange = () => this.known.changed();
    this.registry.mayReturn = (id) => !this.revoked.has(revokedForm(id));
    // The listener is open to the internet and needs no certificate to connect to: a TCP
    // connection that never finishes its handshake, or never sends its request, holds a file
    // descriptor. Node's defaults (120 s, 60 s) let a few hundred of them starve the gateway.
    // ALPN: connectors offer CONNECTOR_ALPN (and take it on a port of its own too); clients that
    // offer http/1.1 alone (curl, older connectors) still get it.
    this.server = https.createServer(
      { ...this.tlsContext(tls), requestCert: true, rejectUnauthorized: false, handshakeTimeout: HANDSHAKE_TIMEOUT_MS, requestTimeout: 60_000, ...OFFER_CONNECTOR_ALPN },
      (req, res) => void this.onRequest(req, res),
    );
    // Node's headersTimeout only runs once a request has begun: a client that finished its
    // handshake and then sent nothing would keep its socket. It gets the same time as the handshake.
    this.server.on('secureConnection', (socket: TLSSocket) => {
      const timer = setTimeout(() => socket.destroy(), HANDSHAKE_TIMEOUT_MS).unref();
      this.firstRequestDue.set(socket, timer);
      socket.once('close', () => clearTimeout(timer));
    });
    this.serverCertLifetimeMs = opts.serverCertLifetimeMs ?? SERVER_CERT_LIFETIME_MS;
    this.serverCertRenewAt = Date.now() + (this.serverCertLifetimeMs * 2) / 3;
    this.scheduleServerCertRenewal();
    this.server.on('upgrade', (req, socket, head) => this.onUpgrade(req, socket, head));
    const handshakeRefused = throttledLog(this.log, 'connector TLS handshake refused');
    this.server.on('tlsClientError', (err) => handshakeRefused({ reason: err.message }));
    // DRAWBRIDGE_CONNECTOR_PING_MS: a knob for tests and very lossy networks, not a config key
    this.pingMs = opts.pingIntervalMs ?? (Number(process.env.DRAWBRIDGE_CONNECTOR_PING_MS) || 5000);
    this.pingTimer = setInterval(() => this.pingAll(), this.pingMs);
    this.pingTimer.unref();
  }

  /**
   * Creates the CA on first start, then listens on connectors.listen; or, when that is
   * gateway.listen.https's address (sharesHttpsPort), leaves the listening to the gateway, which
   * hands it its connections (`tlsServer`) and then calls `announce`.
   */
  static async start(config: Config, configDir: string, logger: Logger, opts: HubOptions = {}): Promise<ConnectorHub> {
    const stateDir = resolve(configDir, config.gateway.stateDir ?? './state');
    const ca = await ConnectorCa.loadOrCreate(stateDir);
    const addr = parseListen(config.connectors!.listen);
    const names = hubNames(config, config.connectors!);
    const hub = new ConnectorHub(ca, await ca.issueServer(names, opts.serverCertLifetimeMs), names, stateDir, logger.child({ component: 'connectors' }), opts);
    hub.sharesHttpsPort = sharesHttpsPort(config);
    hub.applyConfig(config);
    if (!hub.sharesHttpsPort) await listen(hub.server, addr);
    if (ca.created) hub.logNewCa(config);
    for (const file of ['ca.key', 'token.key']) warnIfExposed(join(stateDir, 'connectors', file), hub.log);
    if (!hub.sharesHttpsPort) hub.announce();
    return hub;
  }

  /** the hub's TLS server, for the gateway to hand connections to when they share a port */
  get tlsServer(): https.Server {
    return this.server;
  }

  announce(): void {
    this.log.info({ address: this.address(), caPin: this.ca.pin, ...(this.sharesHttpsPort && { sharedWith: 'gateway.listen.https' }) }, 'connector hub listening');
  }

  /**
   * A new CA is silent trouble when the gateway had connectors: they keep redialling with
   * "self-signed certificate in certificate chain" and nothing says why. Warn when this
   * stateDir shows it was used before (tokens used, connectors listed or revoked, an audit log).
   * A first start says so, where it read as a warning to re-enroll connectors there never were.
   */
  private logNewCa(config: Config): void {
    const dir = join(this.stateDir, 'connectors');
    const usedBefore =
      existsSync(join(dir, 'used-tokens.jsonl')) || nonEmpty(join(dir, 'known.json')) || (config.connectors?.revoked ?? []).length > 0 || nonEmpty(join(this.stateDir, 'audit', 'audit.log'));
    if (!usedBefore) return void this.log.info({ dir, caPin: this.ca.pin }, `created the connector CA in ${dir} (a first start: no connector was enrolled with this stateDir)`);
    this.log.warn({ dir, caPin: this.ca.pin }, `created a new connector CA in ${dir}; connectors enrolled with another CA must be enrolled again (token create, then connector enroll)`);
  }

  private tlsContext(tls: ServerTls): { key: string; cert: string; ca: string[] } & typeof SERVER_TLS {
    return { key: tls.keyPem, cert: tls.certPem, ca: [this.ca.certPem], ...SERVER_TLS };
  }

  /**
   * The hub's certificate is made at start. A gateway running past its expiry
   * would present an expired one, and every connector would refuse every new
   * channel; so it is replaced while running, at two thirds of its lifetime:
   * new handshakes get the new one, open channels go on.
   */
  private scheduleServerCertRenewal(): void {
    clearTimeout(this.serverCertTimer);
    const wait = this.serverCertRenewAt - Date.now();
    this.serverCertTimer = setTimeout(() => (Date.now() >= this.serverCertRenewAt ? void this.renewServerCert() : this.scheduleServerCertRenewal()), Math.max(0, Math.min(wait, MAX_TIMER_MS)));
    this.serverCertTimer.unref();
  }

  private async renewServerCert(): Promise<void> {
    try {
      const tls = await this.ca.issueServer(this.names, this.serverCertLifetimeMs);
      if (this.stopped) return;
      this.server.setSecureContext(this.tlsContext(tls));
      this.serverCertRenewAt = Date.now() + (this.serverCertLifetimeMs * 2) / 3;
      this.log.info({ notAfter: tls.notAfter }, 'connector hub TLS certificate renewed');
    } catch (e) {
      this.log.error({ reason: (e as Error).message }, 'could not renew the connector hub TLS certificate; retrying in a minute');
      this.serverCertRenewAt = Date.now() + 60_000;
    }
    this.scheduleServerCertRenewal();
  }

  address(): string | undefined {
    return addressOf(this.server);
  }

  /**
   * Targets per group, load balancing and revocations from a (re)loaded config. `previousDrained`:
   * when the requests of the config before it are over. Until then its targets stay in the lists
   * connectors get: a request that config admitted may still dial its app (a stage that takes its
   * time, a retry), and was refused "target not allowed" once the new list had arrived.
   */
  applyConfig(config: Config, previousDrained?: Promise<unknown>): void {
    const section = config.connectors;
    if (!section) {
      // The listener, its certificate and its revocations stay as they were until a restart: a
      // file without the section revokes nothing, and no app can name a group without it.
      this.log.warn({ serving: this.address() }, 'connectors: was removed: the connector listener closes after a restart; until then its connectors carry no app');
    } else {
      const listenAt = String(section.listen);
      if (this.listenAt !== undefined && listenAt !== this.listenAt) this.log.warn({ listen: listenAt, serving: this.address() }, 'connectors.listen changed: it takes effect after a restart');
      this.listenAt ??= listenAt;
      const names = hubNames(config, section);
      if (names.join(' ') !== this.names.join(' ')) {
        // new handshakes get a certificate with the new names at once; open channels go on
        this.names = names;
        this.log.info({ names }, 'connector hub names changed: reissuing its TLS certificate');
        void this.renewServerCert();
      }
      this.lifetimeMs = parseDuration(section.certificateLifetime ?? '30d') ?? DEFAULT_CERT_LIFETIME_MS;
      this.revoked = new Set((section.revoked ?? []).map(revokedForm));
    }
    const targets = new Map<string, Set<string>>();
    for (const name of Object.keys(config.connectorGroups ?? {})) targets.set(name, new Set());
    for (const app of config.apps as AppConfig[]) {
      if (!app.connectorGroup) continue;
      const set = targets.get(app.connectorGroup) ?? new Set();
      set.add(targetOf(new URL(app.internalUrl)));
      targets.set(app.connectorGroup, set);
    }
    const previous = this.targets;
    this.targets = new Map([...targets].map(([g, s]) => [g, [...s].sort()]));
    if (previousDrained) {
      this.lingering.add(previous);
      void previousDrained.finally(() => {
        this.lingering.delete(previous);
        this.pushChangedTargets();
      });
    }
    for (const [g, cfg] of Object.entries(config.connectorGroups ?? {})) this.registry.balancing.set(g, ((cfg as { loadBalancing?: Balancing }).loadBalancing ?? 'least-inflight'));
    const groupless = new Set<string>();
    for (const ch of this.registry.all()) {
      const revoked = this.revoked.has(revokedForm(ch.connectorId));
      if (!revoked && !this.targets.has(ch.group) && !groupless.has(ch.connectorId)) {
        groupless.add(ch.connectorId);
        this.warnGroupless(ch);
      }
      if (revoked) {
        this.log.warn({ connector: ch.connectorId, group: ch.group }, 'connector revoked: closing its channel');
        ch.terminate();
      }
    }
    this.registry.recheckWaiting();
    this.pushChangedTargets();
  }

  /** The list each group's connectors get: the live config's targets, and those of configs whose requests are not over. */
  private listFor(group: string): string[] {
    const all = new Set(this.targets.get(group));
    for (const kept of this.lingering) for (const t of kept.get(group) ?? []) all.add(t);
    return [...all].sort();
  }

  /**
   * Sends its list again to each channel that was sent another. Per channel, not per group: a
   * group's record, updated only while it had channels, went stale while its connectors were
   * away, and a later reload that restored that stale list sent nothing (502 "target not
   * allowed" until the connector reconnected). A draining channel takes no new streams, and
   * no new work either.
   */
  private pushChangedTargets(): void {
    for (const ch of this.registry.all()) {
      if (!ch.draining && ch.sentTargets !== JSON.stringify(this.listFor(ch.group))) this.pushTargets(ch);
    }
  }

  upstreamFor(app: AppConfig, internalUrl: URL, configDir: string): Upstream {
    return new TunnelUpstream(this, app.connectorGroup!, internalUrl, app.backend?.tls ?? {}, (p) => resolve(configDir, p));
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.pingTimer);
    clearTimeout(this.serverCertTimer);
    for (const ch of this.registry.all()) ch.terminate();
    this.registry.stopWaiting();
    this.known.saveNow();
    this.registry.onChange = undefined;
    for (const ws of this.wss.clients) ws.terminate();
    await closeServer(this.server);
  }

  // --- enrollment and renewal -------------------------------------------------

  /**
   * Refusals anyone who reaches connectors.listen can cause (a made-up token, no certificate, a
   * wrong path): at most one line a minute per kind and code, like failed handshakes. A refusal
   * of a token this gateway signed, or of a connector with a certificate from its CA, names that
   * token's or connector's trouble: its first line is written at once, then at most one a minute
   * for the same token or connector (a used token or a revoked connector's certificate sent in a
   * loop wrote a line per request, 8 MB in 10 s).
   */
  private readonly quietRefusals = new Map<string, (fields: Record<string, unknown>) => void>();

  private refusedQuietly(kind: 'request' | 'channel', fields: { code: string } & Record<string, unknown>, of?: { subject: string; msg: string }): void {
    // A known subject's key holds the message too, its numbers left out: two different refusals of
    // one connector are two lines, and "renewed 3 s ago", "4 s ago"... are one.
    const key = of ? `${kind} ${fields.code} ${of.subject} ${of.msg.replace(/\d+/g, '#')}` : `${kind} ${fields.code}`;
    let warn = this.quietRefusals.get(key);
    if (!warn) {
      // Subjects are tokens this gateway signed and connectors it certified, so the map is bounded
      // by them; its cap only keeps a gateway that signed very many from holding every one.
      if (this.quietRefusals.size >= MAX_REFUSAL_SUBJECTS) this.quietRefusals.clear();
      const msg = of?.msg ?? (kind === 'request' ? 'connector request refused (from a client with no valid token or certificate)' : 'connector channel refused (from a client with no valid certificate)');
      warn = throttledLog(this.log, msg);
      this.quietRefusals.set(key, warn);
    }
    warn(fields);
  }

  /** what a refusal is about when someone this gateway knows is refused: the connector of a certificate from its CA, or a token it signed */
  private refusalSubject(sock: TLSSocket, token: string | undefined): string {
    if (sock.authorized) return `connector ${identityOfCert(sock.getPeerCertificate())?.id ?? '?'}`;
    // By its signed nonce, not as sent: the checks trim it and read base64url leniently, so ' ' + a
    // used token, or one with a character added to its MAC, was the same token under a new key.
    let nonce = '';
    try {
      nonce = token === undefined ? '' : decodeToken(token).n;
    } catch {
      /* not a token: its refusal was thrown before any signature check */
    }
    return `token ${nonce}`;
  }

  /** connections that have not sent a request yet: the timer that drops them if none comes */
  private readonly firstRequestDue = new WeakMap<object, NodeJS.Timeout>();

  private spoke(socket: object): void {
    clearTimeout(this.firstRequestDue.get(socket));
    this.firstRequestDue.delete(socket);
  }

  private async onRequest(req: IncomingMessage, res: ServerResponse): Promise<void> {
    this.spoke(req.socket);
    const sock = req.socket as TLSSocket;
    const path = (req.url ?? '').split('?')[0];
    let token: string | undefined;
    let tokenChecked = false;
    try {
      if (req.method === 'GET' && path === '/v1/ca') return void res.writeHead(200, { 'content-type': 'application/x-pem-file' }).end(this.ca.certPem);
      if (req.method === 'POST' && path === '/v1/enroll') {
        const body = await readJson(req);
        token = String(body.token ?? '');
        const payload = this.tokens.check(token);
        tokenChecked = true;
        if (!this.targets.has(payload.g)) throw new EnrollmentError('ERR_GROUP_UNKNOWN', `connector group ${payload.g} is not configured`);
        // A bad CSR leaves the token usable; the token is spent only on success.
        const issued = await this.ca.issueClient(String(body.csr ?? ''), Buffer.from(String(body.publicKey ?? ''), 'base64'), payload.g, this.lifetimeMs);
        // a reload while the CSR was checked may have removed the group
        if (!this.targets.has(payload.g)) throw new EnrollmentError('ERR_GROUP_UNKNOWN', `connector group ${payload.g} is not configured`);
        this.tokens.consume(token);
        this.log.info({ connector: issued.id, group: issued.group, address: sock.remoteAddress, notAfter: issued.notAfter }, 'connector enrolled');
        return void json(res, 200, { id: issued.id, group: issued.group, cert: issued.certPem, ca: this.ca.certPem, notAfter: issued.notAfter.toISOString() });
      }
      if (req.method === 'POST' && path === '/v1/renew') {
        const who = this.authenticate(sock);
        const body = await readJson(req);
        // Checked again once the body is in: a connector revoked by a reload while it held its body
        // back (up to the request timeout) was issued a fresh certificate; and a revoked one gets
        // 403, not the 429 below that would have it try again.
        this.authenticate(sock);
        this.refuseEarlyRenewal(sock, who.id, res);
        const issued = await this.ca.issueClient(String(body.csr ?? ''), Buffer.from(String(body.publicKey ?? ''), 'base64'), who.group, this.lifetimeMs, who.id);
        // and once it is signed: a reload may have revoked it meanwhile
        this.authenticate(sock);
        // The connector keeps its channels across a renewal (closing them would cut its
        // requests). They carry the connector id, which just proved itself with a valid
        // certificate of its own: they go on under the new certificate's expiry.
        for (const ch of this.registry.all()) if (ch.connectorId === who.id) ch.certExpiry = issued.notAfter;
        this.log.info({ connector: who.id, group: who.group, notAfter: issued.notAfter }, 'connector certificate renewed');
        return void json(res, 200, { id: issued.id, group: issued.group, cert: issued.certPem, ca: this.ca.certPem, notAfter: issued.notAfter.toISOString() });
      }
      json(res, 404, { error: 'not found' });
    } catch (e) {
      const err = e as EnrollmentError;
      const status = REFUSAL_STATUS[err.code] ?? 400;
      if (err.code === NOT_RECORDED) {
        const { file, reason } = err.details as { file: string; reason: string };
        this.log.error({ code: err.code, file, reason, path, address: sock.remoteAddress }, `could not record a used enrollment token in ${file}: ${reason}; the enrollment was not completed (503)`);
        if (!res.headersSent) res.setHeader('retry-after', String(RETRY_AFTER_S));
      } else {
        const fields = { code: err.code, reason: err.message, path, address: sock.remoteAddress };
        const known = sock.authorized || SIGNED_TOKEN_REFUSALS.has(err.code) || tokenChecked;
        this.refusedQuietly('request', fields, known ? { subject: this.refusalSubject(sock, token), msg: `connector request refused: ${err.message}` } : undefined);
      }
      if (res.headersSent) return;
      const answer = { error: err.code ?? 'ERR_BAD_REQUEST', message: err.message };
      if (status === 413) answerThenClose(req, res, status, answer);
      else json(res, status, answer);
    }
  }

  /**
   * A connector renews at two thirds of its certificate's lifetime. One that renews again within
   * moments of its last renewal is misbehaving (a clock far ahead made one renew about 30 times a
   * second, each a key, a CSR and a certificate signed here): it waits, told how long.
   */
  private refuseEarlyRenewal(sock: TLSSocket, id: string, res: ServerResponse): void {
    const cert = sock.getPeerCertificate();
    const issued = issuedAt(Date.parse(cert.valid_from));
    const wait = Math.min(MIN_RENEWAL_GAP_MS, (Date.parse(cert.valid_to) - issued) / 10) - (Date.now() - issued);
    if (!(wait > 0)) return;
    res.setHeader('retry-after', String(Math.ceil(wait / 1000)));
    throw new EnrollmentError('ERR_RENEWED_RECENTLY', `connector ${id} was issued its certificate ${Math.round((Date.now() - issued) / 1000)} s ago; renew again in ${Math.ceil(wait / 1000)} s (a connector renews at two thirds of the certificate's lifetime: is its clock ahead?)`);
  }

  /** The connector named by a verified client certificate from our CA, if not revoked. */
  private authenticate(sock: TLSSocket): { id: string; group: string; notAfter: Date } {
    // (Node's reason for a client that sent no certificate is a chain error: it sent operators looking for one)
    const presented = Object.keys(sock.getPeerCertificate() ?? {}).length > 0;
    if (!sock.authorized) throw new EnrollmentError('ERR_NOT_AUTHENTICATED', `no valid connector certificate (${presented ? (sock.authorizationError ?? 'not trusted') : 'none presented'})`);
    const cert = sock.getPeerCertificate();
    const who = identityOfCert(cert);
    if (!who) throw new EnrollmentError('ERR_NOT_AUTHENTICATED', 'the certificate is not a connector certificate');
    if (this.revoked.has(revokedForm(who.id))) throw new EnrollmentError('ERR_REVOKED', `connector ${who.id} is revoked`);
    // TLS checked the dates when the connection opened; a kept-alive one can outlive the certificate,
    // and a renewal over it would have turned an expired certificate into a fresh one.
    const notAfter = new Date(cert.valid_to);
    if (!(notAfter.getTime() > Date.now())) throw new EnrollmentError('ERR_CERT_EXPIRED', `the certificate of connector ${who.id} expired at ${notAfter.toISOString()}: enroll it again`);
    return { ...who, notAfter };
  }

  // --- channels ----------------------------------------------------------------

  private onUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    this.spoke(req.socket);
    const sock = req.socket as TLSSocket;
    socket.on('error', () => undefined);
    // A connector whose request was under way when the hub stopped (its TLS handshake, its
    // redial after the stop closed its channels) would get a channel outliving the stop: past
    // the sweep of the registry and the pings, and the listener's close waited on its socket
    // for as long as the connector kept it open (a gateway restart that never finished).
    if (this.stopped) return void socket.end(STOPPING_ANSWER);
    const transport = String(req.headers.upgrade ?? '').toLowerCase();
    let who: { id: string; group: string; notAfter: Date } | undefined;
    try {
      if ((req.url ?? '').split('?')[0] !== '/v1/tunnel') throw new EnrollmentError('ERR_NOT_FOUND', 'no such endpoint');
      who = this.authenticate(sock);
      if (this.registry.channelsOf(who.id) >= MAX_CHANNELS_PER_CONNECTOR) {
        throw new EnrollmentError('ERR_TOO_MANY_CHANNELS', `connector ${who.id} already holds ${MAX_CHANNELS_PER_CONNECTOR} channels, the most one connector may hold`);
      }
      if (transport !== TUNNEL_PROTOCOL && transport !== 'websocket') throw new EnrollmentError('ERR_BAD_REQUEST', `unsupported channel transport "${transport.slice(0, 40)}" (${TUNNEL_PROTOCOL} or websocket)`);
      // the connector speaks only after our 101: bytes before it are not a connector's
      if (transport === TUNNEL_PROTOCOL && head.length > 0) throw new EnrollmentError('ERR_BAD_REQUEST', 'data sent before the channel upgrade was answered');
    } catch (e) {
      const err = e as EnrollmentError;
      const fields = { code: err.code, reason: err.message, address: sock.remoteAddress, connector: who?.id };
      this.refusedQuietly('channel', fields, sock.authorized ? { subject: this.refusalSubject(sock, undefined), msg: `connector channel refused: ${err.message}` } : undefined);
      const status = REFUSAL_STATUS[err.code] ?? 400;
      socket.end(`HTTP/1.1 ${status} Refused\r\nconnection: close\r\ncontent-length: 0\r\n\r\n`);
      return;
    }
    if (transport === 'websocket') {
      const id = who;
      return void this.wss.handleUpgrade(req, socket, head, (ws) =>
        this.attach({ transport: 'websocket', stream: channelStream(ws), terminate: () => ws.terminate(), onClose: (fn) => ws.on('close', fn) }, id, req),
      );
    }
    const tlsSocket = socket as TLSSocket;
    tlsSocket.write(SWITCHING_TO_TUNNEL);
    this.attach({ transport: 'h2', stream: unblockedStream(tlsSocket), terminate: () => tlsSocket.destroy(), onClose: (fn) => tlsSocket.on('close', fn) }, who, req);
  }

  private attach(link: AcceptedLink, who: { id: string; group: string; notAfter: Date }, req: IncomingMessage): void {
    // (a WebSocket's handshake can finish after the stop, as above)
    if (this.stopped) return link.terminate();
    const duplex = link.stream;
    const log = this.log.child({ connector: who.id, group: who.group });
    duplex.on('error', (err) => log.warn({ reason: err.message }, 'connector channel broken'));
    // A connection error nghttp2 handles by itself (DATA on a stream never opened, ...) leaves the
    // session silent: no 'error', no 'close'; it only stops reading. The channel stayed in rotation
    // until its pings were missed, its requests waiting out the app's backendTimeout for a 502.
    onOwnGoaway(duplex, CLIENT_PREFACE_BYTES, (g) => {
      // (an error Node reports itself destroys the session, with a GOAWAY too: its 'error' said why)
      if (session.destroyed) return;
      log.warn({ channel: ch.key, code: g.code, reason: goawayReason(g) }, 'connector channel closed: it broke the HTTP/2 protocol (the gateway sent GOAWAY)');
      ch.terminate();
    });
    const session = http2.connect('http://connector.invalid', {
      createConnection: () => duplex,
      settings: { initialWindowSize: STREAM_WINDOW, enablePush: false },
      maxSessionMemory: SESSION_MEMORY_MB,
    });
    const ch: Channel = {
      key: `ch${this.nextChannel++}`,
      connectorId: who.id,
      group: who.group,
      version: String(req.headers['x-drawbridge-version'] ?? '-').slice(0, 40),
      address: `${req.socket.remoteAddress}:${req.socket.remotePort}`,
      transport: link.transport,
      certExpiry: who.notAfter,
      session,
      windows: new StreamWindows(session),
      get streams() {
        return this.windows.open;
      },
      openedAt: Date.now(),
      inflight: 0,
      lastSeen: Date.now(),
      ready: false,
      draining: false,
      missedPings: 0,
      terminate: () => {
        ch.ready = false;
        this.registry.remove(ch);
        session.destroy();
        link.terminate();
      },
    };
    session.setMaxListeners(0); // one goaway listener per kept-alive connection
    // (as at the connector's end: a session destroyed before its 'connect' must not throw here)
    session.on('connect', () => session.destroyed || session.setLocalWindowSize(SESSION_WINDOW));
    session.on('goaway', () => {
      if (!ch.draining) log.info({ channel: ch.key, inflight: ch.inflight }, 'connector draining: no new streams on this channel');
      ch.draining = true;
    });
    session.on('error', (err) => log.warn({ channel: ch.key, reason: err.message }, 'connector channel error'));
    // TLS checks the certificate at the handshake only: a channel outliving it (a connector
    // that failed to renew, a copied certificate) is closed when it expires. A renewal
    // moves certExpiry; the timer looks again when it fires.
    let expiryTimer: NodeJS.Timeout | undefined;
    const closeAtExpiry = (): void => {
      const left = ch.certExpiry.getTime() - Date.now();
      if (left <= 0) {
        log.warn({ channel: ch.key, certExpiry: ch.certExpiry }, 'connector certificate expired: closing its channel');
        return ch.terminate();
      }
      expiryTimer = setTimeout(closeAtExpiry, Math.min(left, MAX_TIMER_MS));
      expiryTimer.unref();
    };
    session.on('close', () => {
      clearTimeout(expiryTimer);
      this.registry.remove(ch);
      link.terminate();
      log.info({ channel: ch.key }, 'connector channel closed');
    });
    link.onClose(() => ch.terminate());
    this.registry.add(ch);
    log.info({ channel: ch.key, address: ch.address, version: ch.version, transport: ch.transport }, 'connector channel open');
    // (said once per connector: its first channel)
    if (!this.targets.has(ch.group) && this.registry.all().filter((c) => c.connectorId === ch.connectorId).length === 1) this.warnGroupless(ch);
    closeAtExpiry();
    this.pushTargets(ch);
  }

  /**
   * A connector whose group the config no longer has stays connected and idle: removing a group
   * revokes nothing, and a group of that name added back later is served by it at once.
   */
  private warnGroupless(ch: Channel): void {
    this.log.warn(
      { connector: ch.connectorId, group: ch.group },
      `connector ${ch.connectorId} is connected for group ${ch.group}, which the config no longer has: it gets no work, and would serve a group of that name added back; a renamed group needs its connectors enrolled again, and a retired one belongs in connectors.revoked`,
    );
  }

  /** Tells a connector which targets it may reach; the channel takes work once acknowledged. */
  private pushTargets(ch: Channel): void {
    const targets = this.listFor(ch.group);
    let stream;
    try {
      stream = ch.session.request({ ':method': 'POST', ':path': '/v1/targets', 'content-type': 'application/json' });
    } catch (e) {
      return void this.log.warn({ connector: ch.connectorId, reason: (e as Error).message }, 'could not send targets');
    }
    stream.on('response', (h) => {
      if (h[':status'] === 200) {
        // (a list that did not arrive is sent again at the next change)
        ch.sentTargets = JSON.stringify(targets);
        ch.ready = true;
        ch.lastSeen = Date.now();
        this.registry.channelReady(ch.group);
      } else this.log.warn({ connector: ch.connectorId, status: h[':status'] }, 'connector refused its target list');
    });
    stream.on('error', (err) => this.log.warn({ connector: ch.connectorId, reason: err.message }, 'could not send targets'));
    stream.resume();
    stream.end(Buffer.from(JSON.stringify({ targets })));
  }

  private pingAll(): void {
    this.known.tick();
    for (const ch of this.registry.all()) {
      if (ch.session.destroyed || ch.session.closed) continue;
      const sentAt = Date.now();
      let answered = false;
      const ok = ch.session.ping((err) => {
        answered = true;
        if (err) return;
        ch.missedPings = 0;
        ch.lastSeen = Date.now();
      });
      if (!ok) continue;
      // Judged at the next round: a channel that did not answer within one interval stops getting work.
      setTimeout(() => {
        if (answered || ch.session.destroyed) return;
        ch.missedPings++;
        this.log.warn({ connector: ch.connectorId, channel: ch.key, missed: ch.missedPings, since: Date.now() - sentAt }, 'connector missed a ping');
        if (ch.missedPings >= 3) ch.terminate();
      }, this.pingMs).unref();
    }
  }

  /**
   * The live connectors and the inactive ones. A revoked connector is left out once its channels
   * are closed: it can never connect again under that id, so "inactive" (which may come back)
   * would be wrong; connectors.revoked is where it is listed.
   */
  connectors(): ConnectorSummary[] {
    return this.registry.summary().filter((c) => c.active || !this.revoked.has(revokedForm(c.id)));
  }

  /** Live connectors and open channels per connector group of the live config, for /metrics. */
  groupCounts(): Map<string, GroupCounts> {
    return this.registry.groupCounts(this.targets.keys());
  }

  /** For tests and the admin endpoint: sessions that still exist */
  get sessions(): ClientHttp2Session[] {
    return this.registry.all().map((c) => c.session);
  }
}

function json(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) }).end(text);
}

/** how long the rest of an oversized body is read and dropped before the connection is cut anyway */
const LINGER_MS = 10_000;

/**
 * Answers at once, but closes only once the client has sent the rest of its
 * body (read and dropped) or LINGER_MS passed: a socket closed while bytes are
 * still arriving is reset, and a client still sending (curl without
 * `Expect: 100-continue`) lost the answer to a broken pipe.
 */
function answerThenClose(req: IncomingMessage, res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), connection: 'close' });
  // the whole answer goes out now; ending the response is what closes the connection
  res.write(text);
  const end = () => {
    clearTimeout(timer);
    res.end();
  };
  const timer = setTimeout(end, LINGER_MS);
  if (req.complete) return end();
  req.once('end', end);
  req.once('close', end);
  req.resume();
}

function readJson(req: IncomingMessage): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY_BYTES) {
        // Answer 413 and close, rather than cut the socket and leave the client guessing; the rest is read and dropped.
        reject(new EnrollmentError('ERR_BODY_TOO_LARGE', `request body over ${MAX_BODY_BYTES} bytes`));
        chunks.length = 0;
      } else chunks.push(c);
    });
    req.on('end', () => {
      try {
        const v = JSON.parse(Buffer.concat(chunks).toString('utf8'));
        if (!v || typeof v !== 'object') throw new Error('not an object');
        resolve(v as Record<string, unknown>);
      } catch {
        reject(new EnrollmentError('ERR_BAD_REQUEST', 'the body is not a JSON object'));
      }
    });
    req.on('error', reject);
  });
}

function nonEmpty(file: string): boolean {
  try {
    return statSync(file).size > 0;
  } catch {
    return false;
  }
}

/**
 * The names the hub's certificate carries: the ones a connector on this host or
 * this network is likely to dial, and connectors.serverNames for the others
 * (a load balancer's name, a public address).
 */
function hubNames(config: Config, connectors: NonNullable<Config['connectors']>): string[] {
  const addr = parseListen(connectors.listen);
  const names = ['localhost', '127.0.0.1', '::1', hostname(), new URL(config.gateway.publicUrl).hostname];
  if (addr.host && addr.host !== '0.0.0.0' && addr.host !== '::') names.push(addr.host);
  for (const n of connectors.serverNames ?? []) names.push(n.toLowerCase().replace(/^\[|\]$/g, ''));
  return [...new Set(names)];
}

/** A connector id as revocations compare it: one written in capitals, or with spaces, revoked nothing. */
function revokedForm(id: string): string {
  return id.trim().toLowerCase();
}
