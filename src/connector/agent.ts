/**
 * The connector: runs inside the private network and only dials out. Enrollment is in
 * enroll.ts, its state dir in stateDir.ts.
 *
 * ConnectorAgent: keeps `channels` channels to the gateway (mutual TLS; the
 * two transports are in channelLink.ts), each carrying an HTTP/2 session in
 * which this side is the server. The gateway opens a CONNECT stream per
 * upstream connection; the agent dials the target only if it is on the list
 * the gateway pushed, and relays bytes with HTTP/2 flow control as
 * backpressure.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import http2, { type Http2Session, type ServerHttp2Stream, type IncomingHttpHeaders } from 'node:http2';
import net from 'node:net';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import type { Logger } from 'pino';
import { ConnectorError } from '../errors.js';
import { relay } from '../gateway/relay.js';
import { parseListen } from '../gateway/listen.js';
import { BufferPool } from './bufferPool.js';
import { MIN_RENEWAL_GAP_MS, createCsr, generateKeyPair, issuedAt, issuedBy, opensslReason, pinOf } from './ca.js';
import { formatDuration } from '../config/duration.js';
import { StreamWindows } from './streamWindow.js';
import { goawayReason, onOwnGoaway } from './ownGoaway.js';
import { CANCEL_HEADER, CANCEL_PATH, SESSION_MEMORY_MB, SESSION_WINDOW, STREAM_WINDOW, dialChannel, type ChannelLink, type ChannelTransport } from './channelLink.js';
import { proxyFor, type OutboundProxy, type ProxySetting } from '../gateway/outboundProxy.js';
import { CONNECTOR_VERSION, dialFailure, isForeignCa, postJson } from './gatewayCalls.js';
import { ENROLL_AGAIN, assertPresent, filesOf, isEnrolled, readState, readStateDirFile, tooOpen, writeAtomic, type ConnectorState, type Files } from './stateDir.js';

/** how much of an app's response may wait in a tunnel stream before the app's socket is paused */
const STREAM_ROOM = 1 << 20;

/**
 * Read buffers for app sockets, handed back once HTTP/2 has taken their bytes. A socket holds
 * the buffer for its next read while it waits, so one that is quiet (an open WebSocket, a
 * pooled keep-alive connection) reads into a small one: 128 KiB each held the connector at
 * 600 MiB with 3,000 idle WebSockets. A read that fills most of a small buffer means bulk, and
 * the next one gets a large buffer.
 */
const bulkReadBuffers = new BufferPool(128 << 10, 64);
const quietReadBuffers = new BufferPool(16 << 10, 256);
const poolOf = (buf: Uint8Array) => (buf.byteLength === bulkReadBuffers.size ? bulkReadBuffers : quietReadBuffers);

/**
 * A stream may still be answered. One the gateway reset, or whose channel closed, is closed before
 * it is destroyed, and answering it throws: a throw in a stream's handler took the connector down.
 */
function answerable(stream: ServerHttp2Stream): boolean {
  return !stream.destroyed && !stream.closed;
}

/** how long SIGTERM waits for in-flight streams unless --drain-timeout says otherwise */
export const DEFAULT_DRAIN_TIMEOUT_MS = 30_000;

export interface AgentOptions {
  stateDir: string;
  logger: Logger;
  channels?: number;
  /** how a channel is carried: HTTP/2 straight on TLS (default) or over a WebSocket */
  transport?: ChannelTransport;
  /** how long SIGTERM waits for in-flight streams */
  drainTimeoutMs?: number;
  /** --proxy or HTTPS_PROXY: channels and renewals reach the gateway through it (unless NO_PROXY covers the gateway) */
  proxy?: ProxySetting;
  /**
   * Nothing but a new enrollment helps (the certificate ran out, or the gateway's certificate has
   * not chained to the enrolled CA for FOREIGN_CA_EXIT_MS): the agent has stopped, the command exits 1.
   */
  onEnrollAgain?: () => void;
}

/**
 * The gateway pings its channels, but a connector whose gateway went silent
 * (host gone, NAT mapping dropped, a half-open connection) would never hear
 * that its channels are dead, and never dial again. So each channel pings
 * the gateway too. DRAWBRIDGE_CHANNEL_PING_MS is a knob for tests, not a
 * config key.
 */
const PING_INTERVAL_MS = Number(process.env.DRAWBRIDGE_CHANNEL_PING_MS) || 10_000;

/**
 * How long the gateway may present a certificate of another CA, with no channel opening, before
 * the connector exits (DRAWBRIDGE_FOREIGN_CA_EXIT_MS: for tests). Not at once: a name that points
 * at another gateway for a while, or a CA restored from a backup, mends without a new enrollment;
 * not never: a connector redialling forever looked healthy to its supervisor.
 */
const FOREIGN_CA_EXIT_MS = Number(process.env.DRAWBRIDGE_FOREIGN_CA_EXIT_MS) || 5 * 60_000;

/** How often a renewed certificate that could not be saved is tried again (DRAWBRIDGE_SAVE_RETRY_MS: for tests). */
const SAVE_RETRY_MS = Number(process.env.DRAWBRIDGE_SAVE_RETRY_MS) || 60_000;

interface Creds {
  key: string;
  cert: string;
  /** the file the key was read from: key.pem, or key.pem.prev after a renewal cut short */
  keyFile: string;
  ca?: string;
  notBefore: number;
  notAfter: number;
  /**
   * When this host got the certificate, on its own clock. The renewal and the expiry are timed
   * from it and the certificate's lifetime: notAfter is on the gateway's clock, and a connector
   * clock 2/3 of the lifetime ahead found every fresh certificate due at once and renewed in a loop.
   */
  receivedAt: number;
}

/** How long a certificate is issued for (its notBefore is set back CERT_BACKDATE_MS before its issue). */
function lifetimeOf(c: Creds): number {
  return c.notAfter - issuedAt(c.notBefore);
}

/** When the certificate runs out, on this host's clock. */
function localExpiry(c: Creds): number {
  return c.receivedAt + lifetimeOf(c);
}

/**
 * How far this host's clock is from the gateway's when it differs by more than a renewal can
 * absorb (a few minutes, or a sixth of a short lifetime), or undefined: the certificate's issue
 * time is the gateway's "now" when it answered.
 */
function clockSkew(c: Creds, localNow: number): number | undefined {
  const skew = localNow - issuedAt(c.notBefore);
  return Math.abs(skew) > Math.min(CLOCK_SKEW_WARN_MS, lifetimeOf(c) / 6) ? skew : undefined;
}

const CLOCK_SKEW_WARN_MS = 5 * 60_000;

/** a channel session's relay streams by stream id, each with what cuts it short */
type Relays = Map<number, () => void>;

export class ConnectorAgent {
  readonly state: ConnectorState;
  /** the certificate and key in use: after a renewal that could not be saved, not the ones on disk */
  private creds: Creds;
  /** the certificate and key in the state dir (what a restart would start from) */
  private onDisk: Creds;
  private saveTimer?: NodeJS.Timeout;
  /** the last save failed; its error line is written once per run of failures */
  private saveFailing = false;
  private lastRenewalFailure?: string;
  /** since when every handshake with the gateway found a certificate of another CA (undefined: the last one verified) */
  private foreignCaSince?: number;
  private targets = new Set<string>();
  /**
   * Target lists whose stream has begun but not yet ended. After a reload the gateway sends a new
   * list, then at once requests for what it adds; those streams arrive behind the list's, and
   * were refused (403, a 502 for the client) while its bytes were still being read.
   */
  private targetsArriving = new Set<Promise<void>>();
  /** the bytes of the target lists being read, on every channel (MAX_TARGET_LISTS_HELD) */
  private targetListBytes = 0;
  private readonly sessions = new Set<Http2Session>();
  private readonly links = new Set<ChannelLink>();
  private draining = false;
  private stopped = false;
  private renewTimer?: NodeJS.Timeout;
  private renewing = false;
  /** when the last renewal's certificate arrived, on this host's clock */
  private renewedAt?: number;
  private skewWarned = false;
  private clockBehindSaid = false;
  /** the last renewal failed; the next channel that opens tries again */
  private renewalFailed = false;
  private readonly log: Logger;
  private readonly files: Files;
  private readonly transport: ChannelTransport;
  /** the HTTP proxy every dial to the gateway goes through, if any */
  readonly proxy?: OutboundProxy;
  inflight = 0;

  constructor(private readonly opts: AgentOptions) {
    this.files = filesOf(opts.stateDir);
    this.transport = opts.transport ?? 'h2';
    if (!isEnrolled(opts.stateDir)) throw new ConnectorError('ERR_NOT_ENROLLED', `${opts.stateDir} holds no enrollment: run \`drawbridge connector enroll\` first`);
    this.state = readState(this.files.state);
    this.creds = this.readCreds();
    this.onDisk = this.creds;
    this.log = opts.logger.child({ connector: this.state.id, group: this.state.group });
    this.proxy = proxyFor(this.state.gateway, opts.proxy);
  }

  /**
   * The key, certificate and CA, checked here: a damaged file was found only by the TLS handshake,
   * after "connector starting", as OpenSSL's "DECODER routines::unsupported" naming no file.
   */
  private readCreds(): Creds {
    const { cert: certFile, key: keyFile, ca: caFile } = this.files;
    const unusable = (file: string, what: string, e: unknown) => new ConnectorError('ERR_STATE_UNREADABLE', `${file} is not ${what} (${opensslReason(e)}); ${ENROLL_AGAIN}`);
    assertPresent(certFile);
    assertPresent(keyFile);
    const cert = readStateDirFile(certFile, 'a PEM certificate');
    let x: X509Certificate;
    try {
      x = new X509Certificate(cert);
    } catch (e) {
      throw unusable(certFile, 'a readable PEM certificate', e);
    }
    let key = readStateDirFile(keyFile, 'a PEM private key');
    let usedKeyFile = keyFile;
    try {
      if (!x.checkPrivateKey(createPrivateKey(key))) {
        // A renewal that stopped between its key.pem and its cert.pem (see renew()) left the old
        // certificate beside the new key; key.pem.prev then holds the old certificate's key.
        const prev = this.previousKeyOf(x);
        if (prev === undefined) throw new ConnectorError('ERR_STATE_UNREADABLE', `${keyFile} is not the key of ${certFile}; ${ENROLL_AGAIN}`);
        key = prev;
        usedKeyFile = this.files.prevKey;
      }
    } catch (e) {
      throw e instanceof ConnectorError ? e : unusable(keyFile, 'a readable PEM private key', e);
    }
    // Enrollment always writes ca.pem, and the hub's certificate is always signed by the connector
    // CA: without it the connector fell back to the system roots and failed every handshake, forever.
    if (!existsSync(caFile)) throw new ConnectorError('ERR_STATE_UNREADABLE', `${caFile} is missing (the connector CA the gateway's certificate is checked against); ${ENROLL_AGAIN}`);
    const ca = readStateDirFile(caFile, 'a PEM certificate');
    try {
      new X509Certificate(ca);
    } catch (e) {
      throw unusable(caFile, 'a readable PEM certificate', e);
    }
    const notBefore = Date.parse(x.validFrom);
    // cert.pem was written when the certificate arrived, by this host's clock; a copy made later
    // (cp without -p) is newer than the certificate itself, whose issue time then counts.
    const receivedAt = Math.min(statSync(certFile).mtimeMs, issuedAt(notBefore));
    return { key, cert, keyFile: usedKeyFile, ca, notBefore, notAfter: Date.parse(x.validTo), receivedAt };
  }

  /** key.pem.prev when it is the key of `cert`; undefined when it is missing, unreadable or another key. */
  private previousKeyOf(cert: X509Certificate): string | undefined {
    try {
      const pem = readFileSync(this.files.prevKey, 'utf8');
      return cert.checkPrivateKey(createPrivateKey(pem)) ? pem : undefined;
    } catch {
      return undefined;
    }
  }

  start(): void {
    const n = this.opts.channels ?? 2;
    this.log.info({ gateway: this.state.gateway, channels: n, certExpiry: new Date(this.creds.notAfter).toISOString() }, 'connector starting');
    for (const file of [this.files.key, this.files.prevKey]) {
      const open = tooOpen(file);
      if (open) this.log.warn({ file, mode: open.mode }, `${file} can be ${open.how} (mode ${open.mode}): whoever reads it can act as this connector and receive its apps' traffic; run chmod 600 ${file}`);
    }
    if (this.creds.keyFile === this.files.prevKey) {
      this.log.warn({ keyFile: this.creds.keyFile }, `${this.files.key} is not the key of ${this.files.cert} (a certificate renewal was cut short): using ${this.files.prevKey}, its key; the next renewal replaces both`);
    }
    // (a clock ahead cannot be told from an old certificate here: it is said at the next renewal)
    const skew = clockSkew(this.creds, Date.now());
    if (skew !== undefined && skew < 0) this.warnOfClockSkew(skew);
    for (let i = 0; i < n; i++) this.channel(i, 0);
    this.scheduleRenewal();
  }

  /** Keeps one channel open, reconnecting with exponential backoff and full jitter. */
  private channel(index: number, failures: number): void {
    if (this.draining || this.stopped) return;
    const link = dialChannel({
      gateway: this.state.gateway,
      transport: this.transport,
      key: this.creds.key,
      cert: this.creds.cert,
      ca: this.creds.ca,
      headers: { 'x-drawbridge-version': CONNECTOR_VERSION, 'x-drawbridge-channel': String(index) },
      handshakeTimeoutMs: 10_000,
      proxy: this.proxy,
    });
    this.links.add(link);
    let openedAt: number | undefined;
    link.on('refused', (status) => {
      this.foreignCaSince = undefined; // (the gateway's certificate verified)
      if (status === 403 && Date.now() >= localExpiry(this.creds)) return this.expired();
      // (the gateway is stopping: a restart, whose next run takes the channel)
      if (status === 503) return void this.log.info({ channel: index, status }, 'the gateway is stopping and takes no channel now; dialling again');
      this.log.error({ channel: index, status }, status === 403 ? 'the gateway refused this connector (revoked or certificate not accepted)' : 'the gateway refused the channel');
    });
    link.on('error', (err) => {
      if (isForeignCa(err)) return this.foreignCa(index, err);
      if ((err as NodeJS.ErrnoException).code === 'CERT_NOT_YET_VALID') return this.clockBehind(index, err);
      // while it drains the gateway may stop too (a demo's Ctrl-C, a host shutting down): a reset then is expected
      if (this.draining || this.stopped) return void this.log.info({ channel: index, reason: dialFailure(err, this.state.gateway) }, 'channel ended while draining');
      this.log.warn({ channel: index, reason: dialFailure(err, this.state.gateway) }, 'channel error');
    });
    link.on('open', (duplex) => {
      openedAt = Date.now();
      // A dial under way when the drain began (a redial after a lost channel) would give the
      // gateway a fresh, ready channel to a connector about to exit: new requests went there and
      // were cut when it stopped. The drain waits only on the sessions it began with.
      if (this.draining || this.stopped) {
        this.log.info({ channel: index }, 'channel opened while draining: closed');
        return void link.terminate();
      }
      this.foreignCaSince = undefined;
      this.log.info({ channel: index, transport: this.transport }, 'channel open');
      // A renewal that failed while the gateway was away is tried again as soon as it is back,
      // not at its next retry, which could fall after the certificate runs out.
      if (this.renewalFailed && !this.renewing) void this.renew();
      duplex.on('error', () => undefined); // reported by the link; the session ends with it
      // A connection error nghttp2 handles by itself (its rapid-reset guard, DATA on a stream never
      // opened...) leaves the session silent: no 'error', no 'close'; it stops reading the socket.
      // Nothing then dialled again, and with the socket no longer read nothing held the process:
      // the connector exited 0, logging nothing.
      onOwnGoaway(duplex, 0, (g) => {
        // (an error Node reports itself destroys the session, with a GOAWAY too: its 'error' said why)
        if (session.destroyed) return;
        this.log.warn({ channel: index, code: g.code, reason: goawayReason(g) }, 'channel closed: the gateway broke the HTTP/2 protocol (this connector sent GOAWAY); dialling again');
        link.terminate();
      });
      const session = http2.performServerHandshake(duplex, { settings: { initialWindowSize: STREAM_WINDOW }, maxSessionMemory: SESSION_MEMORY_MB });
      this.sessions.add(session);
      // (a session can be destroyed before its 'connect': what came with the 101 is read at once,
      // and a gateway that sent garbage there made this throw and took the whole connector down)
      session.on('connect', () => session.destroyed || session.setLocalWindowSize(SESSION_WINDOW));
      // this session's relay streams by id, with what cuts one short (the gateway's cancel)
      const relays: Relays = new Map();
      const windows = new StreamWindows(session);
      session.on('stream', (stream, headers) => {
        windows.track(stream);
        this.onStream(stream, headers, relays);
      });
      session.on('error', (err) => {
        if (this.draining || this.stopped) return void this.log.info({ channel: index, reason: err.message }, 'channel session ended while draining');
        this.log.warn({ channel: index, reason: err.message }, 'channel session error');
      });
      // the link's close destroys the session, which stops the pings
      const stopPinging = this.pingGateway(session, index, () => link.terminate());
      session.on('close', () => {
        stopPinging();
        this.sessions.delete(session);
        link.close();
      });
      link.on('close', () => session.destroy());
    });
    link.on('close', () => {
      this.links.delete(link);
      if (this.draining || this.stopped) return;
      // A channel that ended moments after it opened (a gateway that answers the upgrade and then
      // closes, sends garbage or GOAWAY) counts as a failed dial: reset to the shortest delay, it
      // was dialled every 125-250 ms for as long as the gateway kept doing it.
      const next = openedAt !== undefined && Date.now() - openedAt >= STABLE_CHANNEL_MS ? 0 : failures + 1;
      const delay = Math.min(30_000, 250 * 2 ** Math.min(next, 7)) * (0.5 + Math.random() / 2);
      this.log.info({ channel: index, retryInMs: Math.round(delay) }, 'channel closed; reconnecting');
      setTimeout(() => this.channel(index, next), delay);
    });
  }

  /**
   * The gateway's certificate does not chain to the CA this connector enrolled with. Said once at
   * error (a warn per redial, in OpenSSL's words, never said what to do); the connector exits once
   * that has lasted FOREIGN_CA_EXIT_MS. The backoff is the channel's as for any failed dial.
   */
  private foreignCa(index: number, err: Error): void {
    const now = Date.now();
    const pin = pinOf(this.creds.ca!);
    const what = `the certificate of the gateway at ${this.state.gateway} is not signed by the CA this connector enrolled with (${this.files.ca}, pin ${pin})`;
    if (this.foreignCaSince === undefined) {
      this.foreignCaSince = now;
      this.log.error(
        { channel: index, reason: err.message, code: (err as NodeJS.ErrnoException).code, caPin: pin, exitInMs: FOREIGN_CA_EXIT_MS },
        `${what}: the gateway's connector CA changed (rotated, or its stateDir replaced)${this.proxy ? `, the proxy ${this.proxy.display} inspects TLS (exempt the gateway's address from inspection: a connector's path cannot be inspected)` : ''} or this is not the gateway it enrolled with; enroll the connector again with a new token (an empty --state-dir); it exits if this lasts ${Math.round(FOREIGN_CA_EXIT_MS / 1000)} s`,
      );
      return;
    }
    this.log.debug({ channel: index, reason: err.message }, 'channel error: the gateway\'s certificate is of another CA');
    if (now - this.foreignCaSince < FOREIGN_CA_EXIT_MS) return;
    this.enrollAgain({ caPin: pin, since: new Date(this.foreignCaSince).toISOString() }, `${what} (at every handshake since ${new Date(this.foreignCaSince).toISOString()}): this connector cannot reach it again; enroll the connector again (a new token, an empty --state-dir)`);
  }

  /**
   * The gateway's certificate is not yet valid by this host's clock: the clock is behind (the
   * gateway made its certificate from its own "now"). Said once at error, with how far behind by
   * this connector's own certificate, where a warn per redial said only "certificate is not yet valid".
   */
  private clockBehind(index: number, err: Error): void {
    if (this.clockBehindSaid) return void this.log.debug({ channel: index, reason: err.message }, 'channel error: the gateway\'s certificate is not yet valid');
    this.clockBehindSaid = true;
    const now = Date.now();
    const issued = issuedAt(this.creds.notBefore);
    const by = issued > now ? `, by at least ${formatDuration(issued - now)} (this connector's certificate was issued at ${new Date(issued).toISOString()} by the gateway's clock)` : '';
    this.log.error(
      { channel: index, reason: err.message, localTime: new Date(now).toISOString(), behindMs: issued > now ? issued - now : undefined },
      `the gateway's certificate is not yet valid by this host's clock (${new Date(now).toISOString()}): the local clock is likely behind${by}; set it right (NTP). The connector keeps redialling`,
    );
  }

  /** Pings the gateway on this session; `dead` runs once a ping goes unanswered for two intervals. */
  private pingGateway(session: Http2Session, index: number, dead: () => void): () => void {
    const every = PING_INTERVAL_MS;
    let deadline: NodeJS.Timeout | undefined;
    const timer = setInterval(() => {
      if (deadline || session.destroyed) return; // the last ping is still out: its own deadline decides
      const sentAt = Date.now();
      deadline = setTimeout(() => {
        this.log.warn({ channel: index, waitedMs: Date.now() - sentAt }, 'the gateway did not answer a ping: dropping the channel and dialling again');
        dead();
      }, 2 * every).unref();
      // (a closing session answers at once; only a destroyed one throws, checked above)
      session.ping(() => {
        clearTimeout(deadline);
        deadline = undefined;
      });
    }, every);
    // (not unref'd: while a channel is meant to run, its pings hold the process, so a channel whose
    // socket stopped being read is found dead and dialled again, and the connector never exits
    // for having nothing left to wait on)
    return () => {
      clearInterval(timer);
      clearTimeout(deadline);
    };
  }

  /** `waited`: the stream already waited TARGETS_WAIT_MS for target lists that were arriving */
  private onStream(stream: ServerHttp2Stream, headers: IncomingHttpHeaders, relays: Relays, waited = false): void {
    stream.on('error', () => undefined);
    if (headers[':method'] === 'POST' && headers[':path'] === '/v1/targets') return this.onTargets(stream);
    if (headers[':method'] === 'POST' && headers[':path'] === CANCEL_PATH) {
      relays.get(Number(headers[CANCEL_HEADER]))?.();
      return void stream.respond({ ':status': 204 }, { endStream: true });
    }
    if (headers[':method'] !== 'CONNECT') {
      this.log.warn({ method: headers[':method'], path: headers[':path'] }, 'unexpected stream refused');
      return void stream.respond({ ':status': 400 }, { endStream: true });
    }
    const authority = String(headers[':authority'] ?? '');
    if (!this.targets.has(authority) && this.targetsArriving.size && !waited) {
      // (a cancel while it waits ends it here: it answered 204 and did nothing, and the gateway
      // reset the stream itself 2 s later, a reset that counts toward the channel's limit)
      // The wait is bounded: a list whose stream never ended (a valid start, then a byte now and
      // then) held every CONNECT to a target not on the list in use for as long as it trickled.
      const id = stream.id!;
      let timer: NodeJS.Timeout | undefined;
      relays.set(id, () => {
        clearTimeout(timer);
        stream.close(http2.constants.NGHTTP2_CANCEL);
      });
      const timedOut = new Promise<void>((r) => (timer = setTimeout(r, TARGETS_WAIT_MS)));
      void Promise.race([Promise.all(this.targetsArriving), timedOut]).then(() => {
        clearTimeout(timer);
        relays.delete(id);
        if (answerable(stream)) this.onStream(stream, headers, relays, true);
      });
      return;
    }
    if (!this.targets.has(authority)) {
      this.log.warn({ target: authority }, 'target refused: not an internal URL of an app published to this group');
      return void stream.respond({ ':status': 403, 'x-drawbridge-error': 'target not allowed' }, { endStream: true });
    }
    const target = parseListen(authority);
    this.inflight++;
    const resume = () => sock.resume();
    let bulk = false;
    const sock = net.connect({
      host: target.host,
      port: target.port,
      // The app's bytes are read into recycled buffers, not a fresh 64 KiB allocation per read:
      // that churn set off a full GC several times a second in a bulk download.
      onread: {
        buffer: () => (bulk ? bulkReadBuffers : quietReadBuffers).take(),
        callback: (n: number, buf: Uint8Array) => {
          if (stream.destroyed) return false;
          bulk = n > quietReadBuffers.size / 2;
          const ok = stream.write(Buffer.from(buf.buffer, buf.byteOffset, n), () => poolOf(buf).give(buf));
          if (ok || stream.writableLength <= STREAM_ROOM) return true;
          stream.once('drain', resume);
          return false;
        },
      },
    });
    sock.setNoDelay(true);
    let connected = false;
    sock.once('connect', () => {
      connected = true;
      if (!answerable(stream)) return void sock.destroy();
      stream.respond({ ':status': 200 });
      relay(stream, sock, { maxBuffered: STREAM_ROOM });
    });
    sock.on('error', (err: NodeJS.ErrnoException) => {
      if (!connected) {
        this.log.warn({ target: authority, reason: err.code ?? err.message }, 'the app could not be reached');
        if (answerable(stream) && !stream.headersSent) stream.respond({ ':status': 502, 'x-drawbridge-error': err.code ?? 'connect failed' }, { endStream: true });
      } else stream.close(http2.constants.NGHTTP2_CANCEL);
    });
    sock.on('close', () => {
      if (connected && !stream.destroyed && !stream.writableEnded) stream.end();
    });
    const id = stream.id!;
    // The app gets a reset, not a FIN: an app that stopped reading an upload would never read
    // up to a FIN, and held the request for minutes.
    relays.set(id, () => {
      if (connected && !sock.destroyed) sock.resetAndDestroy();
      else sock.destroy();
      stream.close(http2.constants.NGHTTP2_CANCEL);
    });
    stream.on('close', () => {
      this.inflight--;
      relays.delete(id);
      sock.destroy();
    });
  }

  private onTargets(stream: ServerHttp2Stream): void {
    let read!: () => void;
    const arriving = new Promise<void>((r) => (read = r));
    this.targetsArriving.add(arriving);
    stream.once('close', () => {
      this.targetsArriving.delete(arriving);
      read();
    });
    const chunks: Buffer[] = [];
    let size = 0;
    const slow = setTimeout(() => {
      this.log.warn(
        { receivedBytes: size, waitedMs: TARGETS_WAIT_MS },
        `a target list from the gateway has not ended in ${TARGETS_WAIT_MS / 1000} s: requests for targets not on the list in use are refused meanwhile (403 target not allowed)`,
      );
    }, TARGETS_WAIT_MS);
    stream.once('close', () => clearTimeout(slow));
    stream.once('end', () => clearTimeout(slow));
    const release = () => {
      this.targetListBytes -= size;
      size = 0;
      chunks.length = 0;
    };
    stream.once('close', release);
    stream.on('data', (c: Buffer) => {
      size += c.length;
      this.targetListBytes += c.length;
      if (size <= MAX_TARGET_LIST_BYTES && this.targetListBytes <= MAX_TARGET_LISTS_HELD) return void chunks.push(c);
      // Read on and thrown away (as before), a list past the limit still cost nothing; but every
      // list held its first MiB until it ended, and a gateway that began hundreds and never
      // ended them grew the connector by as many MiB. Refused now, and its bytes let go.
      const why = size > MAX_TARGET_LIST_BYTES ? `larger than ${MAX_TARGET_LIST_BYTES >> 20} MiB` : `more than ${MAX_TARGET_LISTS_HELD >> 20} MiB of target lists arriving at once`;
      this.log.warn({ reason: why }, 'bad target list refused');
      stream.removeAllListeners('data');
      stream.removeAllListeners('end');
      release();
      if (answerable(stream)) stream.respond({ ':status': 413, 'x-drawbridge-error': why }, { endStream: true });
      stream.close(http2.constants.NGHTTP2_CANCEL);
    });
    stream.on('end', () => {
      let status = 200;
      try {
        const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { targets?: unknown };
        if (!Array.isArray(body.targets) || !body.targets.every(isTarget)) throw new Error('targets must be a list of host:port (port 0-65535)');
        const next = new Set(body.targets as string[]);
        if ([...next].join() !== [...this.targets].join()) this.log.info({ targets: [...next] }, 'target list from the gateway');
        this.targets = next;
      } catch (e) {
        this.log.warn({ reason: (e as Error).message }, 'bad target list refused');
        status = 400;
      }
      // The list arrived whole, but its channel may have closed since.
      if (answerable(stream)) stream.respond({ ':status': status }, { endStream: true });
    });
  }

  /**
   * Renews at two thirds of the certificate's lifetime, counted from when it arrived (receivedAt,
   * this host's clock), over mutual TLS; never sooner than MIN_RENEWAL_GAP_MS after a renewal.
   */
  private scheduleRenewal(): void {
    const lifetime = lifetimeOf(this.creds);
    const at = this.creds.receivedAt + (lifetime * 2) / 3;
    const gap = this.renewedAt === undefined ? 0 : this.renewedAt + Math.min(MIN_RENEWAL_GAP_MS, lifetime / 3) - Date.now();
    this.renewIn(Math.max(0, at - Date.now(), gap));
  }

  /** The next renewal attempt, unless the connector stopped (setTimeout's longest delay at most). */
  private renewIn(ms: number): void {
    if (this.stopped) return;
    this.renewTimer = setTimeout(() => void this.renew(), Math.min(ms, 2 ** 31 - 1));
    this.renewTimer.unref();
  }

  async renew(): Promise<void> {
    if (this.stopped || this.renewing) return;
    this.renewing = true;
    clearTimeout(this.renewTimer);
    try {
      const kp = await generateKeyPair();
      const csr = await createCsr(kp.keys, 'drawbridge-connector');
      const res = await postJson(new URL('/v1/renew', this.state.gateway), { csr, publicKey: kp.publicKeyDer.toString('base64') }, { key: this.creds.key, cert: this.creds.cert, ca: this.creds.ca }, this.proxy);
      if (res.status === 429 && res.body.error === 'ERR_RENEWED_RECENTLY') return this.renewLater(res.retryAfterS, String(res.body.message ?? ''));
      if (res.status !== 200) throw new Error(`${res.status} ${String(res.body.message ?? '')}`);
      const receivedAt = Date.now();
      const cert = String(res.body.cert);
      // checked before it is used or written: an answer that is no certificate of the new key must not reach the disk
      const x = new X509Certificate(cert);
      if (!x.checkPrivateKey(createPrivateKey(kp.keyPem))) throw new Error('the gateway answered with a certificate of another key');
      const problem = renewedCertProblem(x, this.creds.ca!);
      if (problem) throw new Error(`the gateway answered with a certificate ${problem}`);
      // The gateway has issued it and moved this connector's expiry to it, so it is used from now
      // on even when it cannot be saved: throwing it away (as when it was adopted only after the
      // writes) made every retry mint another certificate nobody held, and the old one ran out.
      this.creds = { ...this.creds, key: kp.keyPem, cert, keyFile: this.files.key, notBefore: Date.parse(x.validFrom), notAfter: Date.parse(x.validTo), receivedAt };
      this.renewedAt = receivedAt;
      // (the certificate's own date: the answer's "notAfter" is a copy, and a broken one went into connector.json)
      (this.state as { notAfter: string }).notAfter = new Date(x.validTo).toISOString();
      this.renewalFailed = false;
      this.lastRenewalFailure = undefined;
      const saved = this.save();
      this.log.info({ certExpiry: this.state.notAfter, saved }, 'certificate renewed');
      this.warnOfClockSkew(clockSkew(this.creds, receivedAt));
      this.scheduleRenewal();
    } catch (e) {
      this.renewalFailed = true;
      this.lastRenewalFailure = (e as Error).message;
      // Past its expiry the certificate in use can never be renewed (the gateway refuses it), and
      // retrying every second only filled the logs until a channel was refused.
      const expiry = localExpiry(this.creds);
      if (Date.now() >= expiry) return this.expired();
      // A minute, or sooner when the certificate has less than ten minutes left: with a short
      // lifetime a fixed minute let one failed try run past the expiry, and the connector was
      // locked out for good.
      const retryMs = Math.round(Math.min(60_000, Math.max(1_000, (expiry - Date.now()) / 10)));
      this.log.error({ reason: this.lastRenewalFailure, retryInMs: retryMs, certExpiry: new Date(this.creds.notAfter).toISOString() }, 'certificate renewal failed; retrying');
      this.renewIn(retryMs);
    } finally {
      this.renewing = false;
    }
  }

  /** The gateway renewed this connector moments ago (429): tried again when it says, not sooner. */
  private renewLater(retryAfterS: number | undefined, reason: string): void {
    const retryMs = Math.max(1_000, (retryAfterS ?? 60) * 1000);
    this.log.warn({ reason, retryInMs: retryMs }, 'certificate renewal deferred by the gateway (renewed moments ago); retrying');
    this.renewIn(retryMs);
  }

  /**
   * A clock a few minutes off is said once, at warn: renewals are timed from the certificate's
   * lifetime and do not depend on it, but TLS checks the gateway's certificate dates by it.
   */
  private warnOfClockSkew(skew: number | undefined): void {
    if (skew === undefined || this.skewWarned) return;
    this.skewWarned = true;
    const how = `${formatDuration(skew)} ${skew > 0 ? 'ahead of' : 'behind'}`;
    const issued = new Date(issuedAt(this.creds.notBefore)).toISOString();
    this.log.warn(
      { clockSkewMs: Math.round(skew), certIssuedAt: issued },
      `clock skew: this host's clock is about ${how} the gateway's (a certificate the gateway issued at ${issued} arrived at ${new Date(this.creds.receivedAt).toISOString()} by this clock); renewals are timed from the certificate's lifetime, but check the clock (NTP)`,
    );
  }

  /**
   * Writes the certificate in use to the state dir; true when it is there. On failure it logs once
   * per run of failures and tries again every SAVE_RETRY_MS, until it succeeds or a later renewal
   * brings another certificate to save.
   *
   * key.pem and cert.pem cannot be replaced by one rename, so the certificate on disk always has
   * its key in key.pem or key.pem.prev, whichever write fails or wherever the process dies: first
   * key.pem.prev gets the key of the certificate on disk (not of the one in use: after a failed
   * save they differ, and the one in use is not on disk), then key.pem the new key, then cert.pem
   * the new certificate. Stopped before that last rename, cert.pem is the old certificate and
   * readCreds() takes key.pem.prev for it; after it, the new pair is in place. (key.pem first and
   * cert.pem second left the new key beside the old certificate, and the next start refused the
   * state dir: "enroll again".)
   */
  private save(): boolean {
    clearTimeout(this.saveTimer);
    const inUse = this.creds;
    try {
      if (this.onDisk.cert !== inUse.cert) {
        writeAtomic(this.files.prevKey, this.onDisk.key, 0o600);
        writeAtomic(this.files.key, inUse.key, 0o600);
        writeAtomic(this.files.cert, inUse.cert);
        this.onDisk = inUse;
      }
      writeAtomic(this.files.state, JSON.stringify(this.state, null, 2) + '\n');
    } catch (e) {
      if (!this.saveFailing) {
        const onDiskUntil = new Date(this.onDisk.notAfter).toISOString();
        this.log.error(
          { stateDir: this.opts.stateDir, reason: (e as Error).message, certExpiry: new Date(inUse.notAfter).toISOString(), onDiskCertExpiry: onDiskUntil, retryInMs: SAVE_RETRY_MS },
          `the renewed certificate cannot be saved in ${this.opts.stateDir} (${(e as Error).message}): this process uses it from memory and keeps trying to save it; a restart now would start from the certificate on disk, valid until ${onDiskUntil} (after that, only a new enrollment helps)`,
        );
      }
      this.saveFailing = true;
      if (!this.stopped) {
        this.saveTimer = setTimeout(() => this.save(), SAVE_RETRY_MS);
        this.saveTimer.unref();
      }
      return false;
    }
    if (this.saveFailing) this.log.info({ stateDir: this.opts.stateDir, certExpiry: new Date(inUse.notAfter).toISOString() }, `the renewed certificate is saved in ${this.opts.stateDir} now`);
    this.saveFailing = false;
    return true;
  }

  /** The certificate ran out (its renewals failed, or the connector was off): only a new enrollment helps. */
  private expired(): void {
    const at = new Date(this.creds.notAfter).toISOString();
    const lastFailure = this.lastRenewalFailure === undefined ? '' : ` (its last renewal failed: ${this.lastRenewalFailure})`;
    this.enrollAgain(
      { certExpiry: at, lastRenewalFailure: this.lastRenewalFailure },
      `this connector's certificate expired at ${at}${lastFailure} and the gateway no longer accepts it; nothing can renew it now: enroll the connector again (a new token, an empty --state-dir) and revoke ${this.state.id}`,
    );
  }

  /** Says at fatal why only a new enrollment helps, and stops; the command exits 1 (onEnrollAgain). */
  private enrollAgain(fields: Record<string, unknown>, msg: string): void {
    if (this.stopped) return;
    this.log.fatal({ ...fields, stateDir: this.opts.stateDir }, msg);
    this.stop();
    this.opts.onEnrollAgain?.();
  }

  /** Stops taking new streams (GOAWAY), lets in-flight ones finish, then closes. */
  async drain(): Promise<void> {
    this.draining = true;
    clearTimeout(this.renewTimer);
    this.log.info({ inflight: this.inflight }, 'draining');
    const closed = [...this.sessions].map((s) => new Promise<void>((r) => (s.closed ? r() : (s.once('close', () => r()), s.close()))));
    const timeout = new Promise<void>((r) => setTimeout(r, this.opts.drainTimeoutMs ?? DEFAULT_DRAIN_TIMEOUT_MS).unref());
    await Promise.race([Promise.all(closed), timeout]);
    this.stop();
    this.log.info('drained');
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.renewTimer);
    clearTimeout(this.saveTimer);
    for (const s of this.sessions) s.destroy();
    for (const link of this.links) link.terminate();
  }
}

/** how long a channel must have lasted for its end to dial again at the shortest backoff */
const STABLE_CHANNEL_MS = 5_000;

/**
 * How long a CONNECT to a target not on the list in use waits for target lists that are arriving.
 * A list arrives in milliseconds; the wait ends well before the gateway's own CONNECT_TIMEOUT_MS
 * (10 s), so its client gets the refusal, not a timeout.
 */
const TARGETS_WAIT_MS = 5_000;

/** the most one target list may be: the gateway's are a few KiB (hundreds of apps) */
const MAX_TARGET_LIST_BYTES = 1 << 20;
/** the most the target lists being read may hold together; past it, the list that brought more is refused */
const MAX_TARGET_LISTS_HELD = 4 * MAX_TARGET_LIST_BYTES;

/**
 * Why a renewed certificate (already known to be of the new key) must not replace the one in use,
 * or undefined. One the connector CA did not sign is refused by the gateway's handshake: taken and
 * written to cert.pem, it locked the connector out for good. One whose notAfter is not after its
 * issue has no lifetime to renew within: taken, the connector renewed again at once, as fast as
 * the gateway answered (a new key pair each time, 60 a second, 100% CPU).
 */
function renewedCertProblem(x: X509Certificate, caPem: string): string | undefined {
  const ca = new X509Certificate(caPem);
  if (!issuedBy(x, ca)) return `not signed by the connector CA (pin ${pinOf(caPem)})`;
  const notBefore = Date.parse(x.validFrom);
  const notAfter = Date.parse(x.validTo);
  if (!(notAfter > issuedAt(notBefore))) return `that runs out before it was issued (valid ${x.validFrom} to ${x.validTo})`;
  return undefined;
}

/**
 * A target as the gateway writes them (host:port, [IPv6]:port, as listen addresses are read).
 * The list is the gateway's, but one this end could not dial (no port, a port past 65535) threw
 * where the app is dialled and took the whole connector down: such a list is refused whole.
 */
function isTarget(t: unknown): t is string {
  try {
    return typeof t === 'string' && parseListen(t).port <= 65535;
  } catch {
    return false;
  }
}
