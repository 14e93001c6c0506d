/**
 * The gateway process: public listeners, the admin listener, and the config
 * lifecycle (load -> compile -> swap, and again on every change).
 */
import { randomUUID } from 'node:crypto';
import http from 'node:http';
import https from 'node:https';
import { readRegularFile } from '../config/regularFile.js';
import { join, resolve } from 'node:path';
import type { Server } from 'node:net';
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import { loadConfigText, readConfigText, type Config, type LoadResult } from '../config/load.js';
import { ConfigWatcher, contentHash } from '../config/watch.js';
import { ConfigInvalidError, formatProblem } from '../errors.js';
import { createLogger } from '../observability/logger.js';
import { Metrics } from '../observability/metrics.js';
import { loggedTarget } from '../observability/loggedTarget.js';
import { AuditLog } from '../observability/audit.js';
import { compile, directUpstream, type CompileDeps } from '../pipeline/compile.js';
import { ConnectorHub, HANDSHAKE_TIMEOUT_MS } from '../connector/hub.js';
import { GenerationHolder, type Generation } from '../pipeline/generation.js';
import type { Express } from 'express';
import { ADMIN_METHODS, adminApp } from './admin.js';
import { acceptAbsoluteForm, ALLOWED_METHODS, Edge, malformedHead, NO_VALID_HOST, REFUSED_METHODS } from './edge.js';
import { installIdentity } from '../identity/signIn.js';
import { installPortal } from './portal.js';
import { portalAt } from '../identity/portal.js';
import { expireLoginCookies } from '../identity/loginState.js';
import { onSessionRevoked } from '../identity/revocations.js';
import { renderPage, sendError } from './errorPages.js';
import { addressOf, closeServer, listen, parseListen, SERVER_TLS } from './listen.js';
import { SharedTlsPort, sharesHttpsPort } from './sharedTlsPort.js';
import { ServedCertificates, type CertificateChange } from './servedCertificates.js';
import { AppCertificateError } from './appCertificates.js';
import { formatPath } from '../config/source.js';
import { CONNECTOR_ALPN } from '../connector/channelLink.js';
import { CORRELATION_HEADER } from './headers.js';
import { externalUrlOf, hostnameOf } from './router.js';
import { StateDirLock, warnIfStateDirOpen } from './stateLock.js';
import { pluginDeadlineMs } from '../plugins/deadline.js';

/**
 * The public listeners' HTTP options. No request timeout: uploads take as long as they take
 * (stall.ts bounds silences instead). A request without Host is the edge's to refuse, with
 * its page and a correlation id, not Node's bare 400 that no log line records. Node checks the
 * headers timeout only every connectionsCheckingInterval (30 s by default): a request head that
 * never came was cut after 75-90 s, not 60. TCP keep-alive probes after a minute of silence:
 * a WebSocket or event stream whose client vanished without a FIN (a closed laptop, a NAT that
 * dropped the flow) fails nothing while both ends are quiet, and held its app connection and
 * connector stream for good; the kernel now finds the dead peer and the socket closes.
 */
/**
 * A request head may have MAX_HEAD_BYTES; Node's parser takes twice that, so that a head over the
 * limit reaches the request handler whole and its 431 can expire the gateway's login cookies (Node's
 * own overflow error shows only the parser's last read: over https, a TLS record after the first
 * 16 KiB, which held none of them).
 */
const MAX_HEAD_BYTES = 16 * 1024;
/** the 431 reason for a head over the size limit (cookies are what grows) */
const HEAD_TOO_LARGE = 'The request headers are too large. Clearing the cookies of this site in the browser fixes it.';
/** an http-01 answer is a token and a key thumbprint: some 90 bytes */
const MAX_ACME_ANSWER_BYTES = 4096;
const PUBLIC_LISTENER = { requestTimeout: 0, headersTimeout: 60_000, requireHostHeader: false, connectionsCheckingInterval: 5_000, keepAlive: true, keepAliveInitialDelay: 60_000, maxHeaderSize: 2 * MAX_HEAD_BYTES } as const;


/** the bytes of a parsed request head, as the client sent it (give or take its line endings) */
function headBytes(req: http.IncomingMessage): number {
  let n = (req.method?.length ?? 0) + (req.url?.length ?? 0) + 12;
  for (const field of req.rawHeaders) n += field.length + 2;
  return n;
}

/**
 * Header lines a request to a public listener may have. Node keeps only the first
 * `maxHeadersCount` of them but frames the body by all: a Content-Length or Transfer-Encoding
 * past the limit would vanish, and the app would run another request than the one sent. The
 * listeners parse one line more, so that a request over the limit is seen, and refused (431).
 */
const MAX_HEADER_LINES = 2000;

export interface GatewayOptions {
  configFile: string;
  logger?: Logger;
  metrics?: Metrics;
  env?: NodeJS.ProcessEnv;
  /** watch the file and reload on change (default true) */
  watch?: boolean;
  debounceMs?: number;
  /** the watcher's safety poll, for lost events (default 5 s) */
  pollMs?: number;
  /** hooks for subsystems that add upstreams and stages */
  compileHooks?: Pick<CompileDeps, 'upstreamFor' | 'extraStages'>;
  /** how long a reload may run before the next one goes ahead without it (default RELOAD_STUCK_MS) */
  reloadStuckMs?: number;
}

/** `superseded`: the reload ran so long that a later one went ahead, and its result was dropped. */
export type ReloadOutcome = 'success' | 'failure' | 'unchanged' | 'superseded';

/**
 * Longer than any reload that finishes: every plugin import and create() has its own deadline
 * (30 s by default), and a reload runs a few of them at most.
 */
export const RELOAD_STUCK_MS = 120_000;

/** the reload reason of the watcher's safety poll, which runs whether or not anything changed */
const POLL = 'safety poll';

export class GatewayServer {
  readonly holder = new GenerationHolder();
  readonly log: Logger;
  readonly metrics: Metrics;
  readonly edges: { http: Edge; https: Edge };
  private readonly stopRevocations: () => void;
  private servers: { http?: Server; https?: Server; admin?: Server } = {};
  private watcher?: ConfigWatcher;
  private reloading?: ReloadAttempt;
  /** a reload asked for while one ran: it runs when that one ends, and its callers get its outcome */
  private next?: { reason: string; outcome: Promise<ReloadOutcome>; start: (o: Promise<ReloadOutcome>) => void };
  private lastProblems: string[] = [];
  /** what the https listener serves, and their end dates (with an https listener) */
  private certificates?: ServedCertificates;
  /** what only a restart changes, as the gateway started */
  private started?: StartedSettings;
  /** one JSON line per decision in stateDir/audit (the stateDir of the config the gateway started with) */
  audit?: AuditLog;
  /** the connector endpoint, when `connectors:` is configured */
  connectorHub?: ConnectorHub;
  /** stateDir/gateway.lock, held while the gateway runs: one gateway process per stateDir */
  private lock?: StateDirLock;

  constructor(private readonly opts: GatewayOptions) {
    this.log = opts.logger ?? createLogger();
    this.metrics = opts.metrics ?? new Metrics();
    this.edges = { http: new Edge(this.holder, this.log, this.metrics, 'http'), https: new Edge(this.holder, this.log, this.metrics, 'https') };
    installIdentity(this.edges, this.log);
    installPortal(this.edges);
    this.stopRevocations = onSessionRevoked((id) => {
      for (const edge of [this.edges.http, this.edges.https]) edge.closeUpgradesOfSession(id);
    });
  }

  get generation(): Generation | undefined {
    return this.holder.current;
  }

  get config(): Config | undefined {
    return this.holder.current?.config;
  }

  /** Loads the config (throwing ConfigInvalidError with every problem), then listens. */
  async start(): Promise<void> {
    const { result, hash } = await this.read();
    if (!result.config) throw new ConfigInvalidError(result.problems, this.opts.configFile);
    this.logWarnings(result);
    this.started = startedSettings(result.config, result.dir);
    // Before anything in the stateDir is read or written: a second gateway there is refused, not run beside the first.
    this.lock = await StateDirLock.acquire(this.started.stateDir, { log: this.log });
    warnIfStateDirOpen(this.started.stateDir, this.log);
    let gen: Generation;
    try {
      this.audit = new AuditLog(join(this.started.stateDir, 'audit'), { metrics: this.metrics, logger: this.log, ...auditRetention(result.config) });
      for (const edge of [this.edges.http, this.edges.https]) edge.onDecision = (e) => void this.audit?.record(e);
      // The hub comes first: compiling an app behind a connector group needs it.
      if (result.config.connectors) {
        const hub = (this.connectorHub = await ConnectorHub.start(result.config, result.dir, this.log));
        this.metrics.connectorCounts = () => hub.groupCounts();
        hub.registry.onWaitEnded = (group, outcome) => this.metrics.connectorWaits.inc({ group, outcome });
      }
      gen = await compile(result.config, hash, this.compileDeps(result));
      this.holder.swap(gen);
      this.metrics.generation.set(gen.id);
      this.metrics.configValid.set(1);
      await this.listenAll(result.config, result.dir);
      if (this.opts.watch !== false) {
        this.watcher = new ConfigWatcher(this.opts.configFile, () => void this.reload('file changed'), { debounceMs: this.opts.debounceMs ?? 100, pollMs: this.opts.pollMs ?? 5000, onPoll: () => void this.reload(POLL) });
        await this.watcher.start(result.referencedFiles);
      }
    } catch (e) {
      // A gateway that failed to start must not leave a listener (or the connector hub) behind.
      await this.stop().catch(() => undefined);
      throw redacted(e, result.redact);
    }
    // The file may have been found by searching upwards: say which one is served.
    this.log.info({ config: resolve(this.opts.configFile), generation: gen.id, apps: [...gen.apps.keys()], addresses: this.addresses() }, 'gateway started');
  }

  /** Re-reads the file; an invalid file keeps the last good generation serving. */
  reload(reason = 'requested'): Promise<ReloadOutcome> {
    // (a SIGHUP or a save during the drain: the next run reads the file)
    if (this.holder.stopping) return Promise.resolve('superseded');
    const running = this.reloading;
    if (running) {
      const runningMs = Date.now() - running.since;
      // One that replaced a stuck reload is waited for: a reload slower than the limit but working
      // would otherwise be replaced by the next poll for ever, each one as slow, none applied.
      if (runningMs < (this.opts.reloadStuckMs ?? RELOAD_STUCK_MS) || running.replaces) {
        // The running one may have read the file before this caller's edit: answering with its
        // outcome said 'unchanged' (or an older file's problems) for an edit not yet read.
        if (!this.next) {
          let start!: (o: Promise<ReloadOutcome>) => void;
          const outcome = new Promise<ReloadOutcome>((resolve) => (start = resolve));
          this.next = { reason, outcome, start };
        } else if (this.next.reason === POLL) this.next.reason = reason;
        return this.next.outcome;
      }
      // Reloads run one at a time, so one that never ends (something it awaits never settles)
      // held every later one: access removed in the file was never applied, SIGHUP included.
      // This one goes ahead; the stuck one read an older file and is dropped if it ever ends.
      this.metrics.reloads.inc({ outcome: 'failure' });
      this.log.error({ runningMs, reason: running.reason }, `a reload (${running.reason}) has run for ${Math.round(runningMs / 1000)} s without finishing: reloading again without it, and it will not be applied`);
    }
    const attempt: ReloadAttempt = { reason, since: Date.now(), done: Promise.resolve('unchanged'), replaces: running !== undefined };
    this.reloading = attempt;
    attempt.done = this.reloadOnce(reason, attempt).finally(() => {
      if (this.reloading !== attempt) return;
      this.reloading = undefined;
      const next = this.next;
      this.next = undefined;
      next?.start(this.reload(next.reason));
    });
    return attempt.done;
  }

  private async reloadOnce(reason: string, attempt: ReloadAttempt): Promise<ReloadOutcome> {
    const live = this.holder.current;
    const superseded = () => this.reloading !== attempt;
    let read: { result: LoadResult; hash: string };
    try {
      const text = await readConfigText(this.opts.configFile);
      if (superseded()) return 'superseded';
      if (live && contentHash(text, this.referenced) === live.hash) return this.unchanged(live.id, reason);
      read = await this.read(text);
    } catch (e) {
      return superseded() ? 'superseded' : this.rejected([(e as Error).message], reason);
    }
    if (superseded()) return 'superseded';
    const { result, hash } = read;
    if (live && hash === live.hash) return this.unchanged(live.id, reason);
    if (!result.config) {
      // (a refusal of a certificate or key themselves is not a renewal held up by another part)
      const refused = result.problems.flatMap((p) => (p.severity === 'error' ? (/^(gateway|apps\[\d+\])\.tls\b/.exec(p.path)?.slice(0, 1) ?? []) : []));
      if (live) this.certificates?.tellWaiting(live.config, result.dir, refused);
      return this.rejected(result.problems.filter((p) => p.severity === 'error').map(formatProblem), reason);
    }
    // The certificate is part of the config: one that cannot be used fails the reload before anything is swapped.
    let certificates: CertificateChange | undefined;
    try {
      certificates = this.certificates?.prepare(result.config, result.dir);
    } catch (e) {
      // (an app's certificate is said at its key's place in the file, as lint's problems are)
      const said = e instanceof AppCertificateError ? formatProblem({ severity: 'error', path: formatPath(e.path), message: e.problem, ...result.locate(e.path) }) : (e as Error).message;
      return this.rejected([result.redact(said)], reason);
    }
    let gen: Generation;
    try {
      gen = await compile(result.config, hash, this.compileDeps(result));
    } catch (e) {
      // A plugin's create() refusing its options may quote them, secrets resolved from ${...} included.
      return superseded() ? 'superseded' : this.rejected([result.redact((e as Error).message)], reason);
    }
    // A build that outlived the stop would go live after it: its stages never disposed (a
    // plugin's timers and connections held for good), the hub's targets pushed after it stopped.
    if (superseded() || this.holder.stopping) {
      if (superseded()) this.log.warn({ generation: gen.id, reason }, 'a reload that had been given up on finished; its generation is discarded');
      else this.log.info({ generation: gen.id, reason }, 'the gateway stopped while a reload was building; its generation is discarded');
      void gen.retire();
      return 'superseded';
    }
    this.logWarnings(result);
    this.warnRestartNeeded(result.config, result.dir);
    const replaced = this.holder.swap(gen);
    this.audit?.setRetention(auditRetention(result.config));
    if (certificates) this.certificates!.apply(certificates, this.servers.https as https.Server);
    for (const edge of [this.edges.http, this.edges.https]) edge.closeStaleUpgrades(gen);
    try {
      this.connectorHub?.applyConfig(result.config, replaced?.retire());
    } catch (e) {
      // The generation is live: what follows (watching its files, the metrics, the reloaded line) must still happen.
      this.log.error({ err: e, generation: gen.id }, 'the connector hub could not take the reloaded config; its connectors keep their previous targets');
    }
    this.referenced = result.referencedFiles;
    this.watcher?.update(result.referencedFiles);
    this.metrics.generation.set(gen.id);
    this.metrics.configValid.set(1);
    this.metrics.reloads.inc({ outcome: 'success' });
    this.lastProblems = [];
    this.log.info({ generation: gen.id, previous: live?.id, reason, apps: [...gen.apps.keys()] }, 'config reloaded');
    return 'success';
  }

  private referenced: readonly string[] = [];

  /**
   * The files on disk are what is live. After a broken edit that was undone, that
   * is the fix: the gauge says valid again, and the same break later is logged anew.
   */
  private unchanged(generation: number, reason: string): ReloadOutcome {
    // The safety poll finding what is live is no reload attempt: counted, it grew every 5 s.
    if (reason !== POLL) this.metrics.reloads.inc({ outcome: 'unchanged' });
    this.metrics.configValid.set(1);
    if (this.lastProblems.length) this.log.info({ generation }, 'config file valid again (it matches the live generation)');
    // (an operator who sent SIGHUP looks for an answer; a save that changed nothing needs none)
    else if (reason === 'SIGHUP') this.log.info({ generation, reason }, 'reload: the config and the files it refers to are unchanged');
    this.lastProblems = [];
    return 'unchanged';
  }

  private rejected(problems: string[], reason: string): ReloadOutcome {
    this.metrics.configValid.set(0);
    // A broken file is one failed reload, logged once with each problem's position, however often
    // it is read again while it stays broken (the poll, and the save's own event after the poll saw
    // it first). An operator's SIGHUP is an attempt of its own, which looks for an answer.
    if (reason === 'SIGHUP' || problems.join('\n') !== this.lastProblems.join('\n')) {
      this.metrics.reloads.inc({ outcome: 'failure' });
      for (const p of problems) this.log.error({ problem: p }, `config rejected, still serving generation ${this.holder.current?.id ?? '-'}: ${p}`);
    }
    this.lastProblems = problems;
    return 'failure';
  }

  private async read(text?: string): Promise<{ result: LoadResult; hash: string }> {
    const body = text ?? (await readConfigText(this.opts.configFile));
    const result = await loadConfigText(body, this.opts.configFile, { mode: 'start', env: this.opts.env });
    if (!text) this.referenced = result.referencedFiles;
    return { result, hash: contentHash(body, result.referencedFiles, result.readFiles) };
  }

  private compileDeps(result: LoadResult): CompileDeps {
    // Every generation keeps the started stateDir: moving assertion keys and revoked sessions alone would
    // publish an unannounced signing key and forget sign-outs, while the audit log and connector CA stay.
    const deps: CompileDeps = { logger: this.log, plugins: result.plugins, configDir: result.dir, stateDir: this.started?.stateDir, locate: result.locate, pluginTimeoutMs: pluginDeadlineMs(this.opts.env), ...this.opts.compileHooks };
    const hub = this.connectorHub;
    // Apps with a connectorGroup go through the tunnel, never directly (fail closed); the others as before.
    const other = deps.upstreamFor ?? directUpstream;
    deps.upstreamFor = (app, url, dir) => {
      if (!app.connectorGroup) return other(app, url, dir);
      if (!hub) throw new Error('connectors: was added after the gateway started; restart it to open the connector listener');
      return hub.upstreamFor(app, url, dir);
    };
    return deps;
  }

  /** Listeners and the state folder stay as started; say so for each such key the new file changes (on every reload until a restart). */
  private warnRestartNeeded(config: Config, dir: string): void {
    if (!this.started) return;
    const now = startedSettings(config, dir);
    for (const key of Object.keys(now) as (keyof StartedSettings)[]) {
      if (now[key] === this.started[key]) continue;
      const name = RESTART_KEYS[key];
      this.log.warn({ key: name, configured: now[key] ?? null, inEffect: this.started[key] ?? null }, `${name} changed: it takes effect after a restart (still ${this.started[key] ?? 'unset'})`);
    }
    // (a changed connectors.listen is the hub's to tell; without a hub, nothing listens yet)
    const hub = this.connectorHub;
    if (config.connectors && hub && sharesHttpsPort(config) !== hub.sharesHttpsPort) {
      const now = hub.sharesHttpsPort ? 'no longer share' : 'share';
      this.log.warn({ key: 'connectors.listen', sharesHttpsPort: !hub.sharesHttpsPort, inEffect: hub.sharesHttpsPort }, `connectors.listen and gateway.listen.https ${now} one port after a restart (until then, as started)`);
    }
    if (config.connectors && !this.connectorHub) {
      this.log.warn({ key: 'connectors.listen', configured: String(config.connectors.listen), inEffect: null }, 'connectors.listen was added: the connector listener opens after a restart (until then an app with a connectorGroup fails the reload)');
    }
  }

  private logWarnings(result: LoadResult): void {
    for (const p of result.problems) if (p.severity === 'warning') this.log.warn({ problem: formatProblem(p) }, formatProblem(p));
  }

  private async listenAll(config: Config, dir: string): Promise<void> {
    const { listen: l } = config.gateway;
    if (l.https !== undefined && config.gateway.tls) {
      this.certificates = new ServedCertificates(config, dir, this.log, this.metrics);
      // A connection that never starts TLS would hold its descriptor for Node's 120 s, twice
      // what headersTimeout gives one that did: it gets what the connectors listener gives.
      const server = https.createServer({ ...this.certificates.listenerTls(), ...SERVER_TLS, ...PUBLIC_LISTENER, handshakeTimeout: HANDSHAKE_TIMEOUT_MS });
      this.limitHeaderLines(server, this.edges.https.handle, this.edges.https.handleUpgrade);
      this.guard(server);
      const hub = this.connectorHub;
      if (hub?.sharesHttpsPort) {
        // connectors.listen is this address: connectors get their own server by ALPN (README: Connectors)
        const port = new SharedTlsPort({ alpn: CONNECTOR_ALPN, byAlpn: hub.tlsServer, other: server }, HANDSHAKE_TIMEOUT_MS);
        await port.listen(parseListen(l.https));
        hub.announce();
      } else await listen(server, parseListen(l.https));
      this.servers.https = server;
    }
    if (l.http !== undefined) {
      const redirectOnly = l.https !== undefined;
      const server = http.createServer(PUBLIC_LISTENER);
      if (redirectOnly) this.limitHeaderLines(server, this.redirectToHttps(config, dir));
      else this.limitHeaderLines(server, this.edges.http.handle, this.edges.http.handleUpgrade);
      this.guard(server);
      await listen(server, parseListen(l.http));
      this.servers.http = server;
    }
    if (config.gateway.admin) {
      const connectors = (app: Express) => app.get('/connectors', (_req, res) => void res.json({ connectors: this.connectorHub?.connectors() ?? [] }));
      const server = http.createServer(adminApp(this.holder, this.metrics, connectors, parseListen(config.gateway.admin.listen).host));
      // Node closes a CONNECT nothing listens for without a word; the express app never sees it.
      server.on('connect', (_req: http.IncomingMessage, socket) => {
        socket.on('error', () => socket.destroy());
        afterPendingAnswer(socket, () => endWithProblem(socket, 405, `The admin listener serves ${ADMIN_METHODS} only.`, randomUUID(), `allow: ${ADMIN_METHODS}\r\n`));
      });
      await listen(server, parseListen(config.gateway.admin.listen));
      this.servers.admin = server;
    }
  }

  /** Looks at the served certificates' end dates as the hourly check does (`now` for tests). */
  checkCertificateDates(now = Date.now()): void {
    this.certificates?.checkDates(now);
  }

  /** Serves requests with at most MAX_HEADER_LINES header lines and MAX_HEAD_BYTES; more get 431 with a correlation id. */
  private limitHeaderLines(server: http.Server | https.Server, onRequest: http.RequestListener, onUpgrade?: (req: http.IncomingMessage, socket: Duplex, head: Buffer) => void): void {
    server.maxHeadersCount = MAX_HEADER_LINES + 1;
    const refused = (req: http.IncomingMessage): { correlationId: string; reason: string } | undefined => {
      const tooMany = req.rawHeaders.length / 2 > MAX_HEADER_LINES;
      if (!tooMany && headBytes(req) <= MAX_HEAD_BYTES) return undefined;
      const correlationId = randomUUID();
      if (tooMany) {
        this.log.warn({ correlationId, method: req.method, status: 431, limit: MAX_HEADER_LINES }, 'request with too many header lines refused');
        return { correlationId, reason: `The request has more than ${MAX_HEADER_LINES} header lines.` };
      }
      this.log.warn({ correlationId, method: req.method, status: 431, limitBytes: MAX_HEAD_BYTES }, 'request with headers over the size limit refused');
      return { correlationId, reason: HEAD_TOO_LARGE };
    };
    server.on('request', (req: http.IncomingMessage, res: http.ServerResponse) => {
      const refusal = refused(req);
      if (refusal === undefined) return onRequest(req, res);
      const { correlationId, reason } = refusal;
      res.shouldKeepAlive = false;
      this.countRefusal(correlationId, 431, reason, req);
      const expire = expireLoginCookies([req.headers.cookie ?? ''].flat().join('; '));
      // (a page only for a client that asks for one, as the parser's own 431 below: a head this large is rarely a browser's)
      const as = /text\/html/.test(String(req.headers.accept ?? '')) ? 'page' : 'problem';
      sendError(res, req.headers, { status: 431, reason, correlationId, as, ...(expire.length ? { headers: { 'set-cookie': expire } } : {}) });
    });
    if (!onUpgrade) return;
    server.on('upgrade', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => {
      socket.on('error', () => socket.destroy());
      if (pendingAnswer(socket)) {
        // Node hands over the socket while the answer to a request before this one is still going
        // out on it: taking it now would throw (the process went down) or garble that answer.
        // Browsers never pipeline an upgrade; this one is refused once that answer is out.
        const id = randomUUID();
        this.log.warn({ correlationId: id, status: 400 }, 'upgrade pipelined behind another request refused');
        const pipelined = 'An upgrade cannot be pipelined behind another request.';
        return afterPendingAnswer(socket, () => {
          this.countRefusal(id, 400, pipelined, req);
          endWithProblem(socket, 400, pipelined, id);
        });
      }
      const refusal = refused(req);
      if (refusal === undefined) return onUpgrade(req, socket, head);
      this.countRefusal(refusal.correlationId, 431, refusal.reason, req);
      endWithProblem(socket, 431, refusal.reason, refusal.correlationId);
    });
  }

  /** Malformed requests get a 4xx with a correlation id; nothing reaches an app. */
  private guard(server: Server): void {
    server.on('clientError', (err: NodeJS.ErrnoException, socket) => {
      // Only the parser's errors (and its timeout) are about what the client sent. The rest are the
      // connection's: a client that hung up, or a response the gateway cut (an app that went quiet).
      // The parser's "EOF in the middle of a request" is a client that hung up too (a cancelled
      // upload): it was logged as a malformed request refused with a 400 nobody could read.
      if ((!err.code?.startsWith('HPE_') && err.code !== 'ERR_HTTP_REQUEST_TIMEOUT') || err.code === 'HPE_INVALID_EOF_STATE') {
        this.log.debug({ code: err.code, reason: err.message }, 'client connection ended');
        return socket.destroy();
      }
      const status = err.code === 'HPE_HEADER_OVERFLOW' ? 431 : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400;
      const correlationId = randomUUID();
      this.log.warn({ correlationId, code: err.code, reason: err.message, status }, 'malformed request refused');
      if (!socket.writable) return socket.destroy();
      // A browser whose cookies outgrew the limit (the usual 431) is shown a page, not JSON; the
      // headers are only the bytes the parser held, so Accept is read from them as best it can be.
      const head = (err as { rawPacket?: Buffer }).rawPacket?.toString('latin1') ?? '';
      const html = status === 431 && /^accept:[^\r\n]*text\/html/im.test(head);
      // An answer to HEAD has no content (RFC 9110 9.3.2). Read from the same bytes: a head that
      // came in several reads shows only the last one, and is answered with the body as before.
      const bodiless = head.startsWith('HEAD ');
      // The gateway's login cookies in those bytes are expired in the answer, so a browser they took
      // over the limit recovers with its next request. Not from the request line: its target is anyone's to write.
      const expire = status === 431 ? expireLoginCookies(/^[A-Z]+ /.test(head) ? head.slice(head.indexOf('\n') + 1) : head) : [];
      const setCookies = expire.map((c) => `set-cookie: ${c}\r\n`).join('');
      const refuse = () => {
        const reason = html ? HEAD_TOO_LARGE : status === 408 ? 'The request headers did not arrive in time.' : 'The request is malformed.';
        this.countRefusal(correlationId, status, reason);
        if (html) endWithPage(socket, status, reason, correlationId, bodiless, setCookies);
        else endWithProblem(socket, status, reason, correlationId, setCookies, bodiless);
      };
      const pending = (socket as { _httpMessage?: http.ServerResponse & { req?: http.IncomingMessage } })._httpMessage;
      if (pending && !pending.req?.complete) {
        // The pending request's own body is what failed to parse: its answer cannot wait for the rest.
        return pending.headersSent ? socket.destroy() : refuse();
      }
      // A request pipelined before the malformed one may still be answering. Its answer goes first: a
      // 400 written now would be read as the answer to that request, which the app did run (a
      // client retrying it would run it twice).
      afterPendingAnswer(socket, refuse);
    });
    // The gateway is not a forward proxy: CONNECT gets an answer, not a silently closed socket.
    server.on('connect', (req: http.IncomingMessage, socket) => {
      const correlationId = randomUUID();
      this.log.warn({ correlationId, method: 'CONNECT', target: String(req.url).slice(0, 200), status: 405 }, 'CONNECT refused: the gateway is not a forward proxy');
      socket.on('error', () => socket.destroy());
      afterPendingAnswer(socket, () => {
        this.countRefusal(correlationId, 405, REFUSED_METHODS.get('CONNECT')!, req);
        endWithProblem(socket, 405, REFUSED_METHODS.get('CONNECT')!, correlationId, `allow: ${ALLOWED_METHODS}\r\n`);
      });
    });
    // An Expect other than 100-continue: 417 with a correlation id, logged, nothing forwarded.
    server.on('checkExpectation', (req: http.IncomingMessage, res: http.ServerResponse) => {
      const correlationId = randomUUID();
      this.log.warn({ correlationId, expect: String(req.headers.expect).slice(0, 100), status: 417 }, 'unsupported Expect refused');
      res.shouldKeepAlive = false;
      const reason = 'The gateway only supports Expect: 100-continue.';
      this.countRefusal(correlationId, 417, reason, req);
      sendError(res, req.headers, { status: 417, reason, correlationId });
    });
  }

  /**
   * A request refused before any edge saw it, counted and logged as the edge's own refusals are
   * (app `-`, one `request` line): users whose cookies outgrew the limit, or a flood of malformed
   * requests, were missing from drawbridge_requests_total. The warn line before it says why.
   * `req` is absent when the parser refused the head, whose method and target are not known.
   */
  private countRefusal(correlationId: string, status: number, reason: string, req?: http.IncomingMessage): void {
    this.metrics.countRequest('-', status);
    const target = req ? loggedTarget(req.url) : undefined;
    this.log.info({ correlationId, app: '-', method: req?.method, path: target?.path, ...(target?.query !== undefined ? { query: target.query } : {}), status, decision: 'deny', reasons: [reason] }, 'request');
  }

  private redirectToHttps(config: Config, dir: string): http.RequestListener {
    const httpsPort = parseListen(config.gateway.listen.https!).port;
    // publicUrl reloads like the rest of the file (the listener itself needs a restart): read from the live generation
    const publicPort = (): string => {
      const u = new URL(this.holder.current?.config.gateway.publicUrl ?? config.gateway.publicUrl);
      return u.protocol === 'https:' ? u.port : String(httpsPort);
    };
    const acmeDir = join(resolve(dir, config.gateway.stateDir ?? './state'), 'acme-challenge');
    return (req, res) => {
      res.setHeader(CORRELATION_HEADER, randomUUID());
      const url = req.url ?? '/';
      if (url.startsWith('/.well-known/acme-challenge/')) {
        const token = url.slice('/.well-known/acme-challenge/'.length);
        if (/^[A-Za-z0-9_-]+$/.test(token)) {
          let body: Buffer | undefined;
          try {
            // anyone may ask: a FIFO or a device put in the folder must not hold or fill the gateway
            body = readRegularFile(join(acmeDir, token), MAX_ACME_ANSWER_BYTES);
          } catch {
            /* no such challenge: 404 below */
          }
          if (body) return void res.writeHead(200, { 'content-type': 'text/plain' }).end(body);
        }
        return void res.writeHead(404).end();
      }
      const correlationId = String(res.getHeader(CORRELATION_HEADER) ?? '-');
      // The checks of the https side (edge.ts), so a request it would refuse is not redirected to it.
      const malformed = malformedHead(req);
      if (malformed) return sendError(res, req.headers, { status: 400, reason: malformed, correlationId });
      // an absolute-form target is redirected to its path, on the terms the https side serves it on
      const notOriginForm = acceptAbsoluteForm(req);
      if (notOriginForm) return sendError(res, req.headers, { status: 400, reason: notOriginForm, correlationId });
      const target = req.url ?? '/';
      const host = hostnameOf(req.headers.host);
      if (!host) return sendError(res, req.headers, { status: 400, reason: NO_VALID_HOST, correlationId });
      // Only to a host the gateway serves: a redirect to any Host would let a cache in front of
      // port 80 that does not key on Host be taught to send users elsewhere.
      const gen = this.holder.current;
      const path = target.split('?', 1)[0]!;
      // the app portal at publicUrl is served like an app: a user who types its address gets there
      if (!gen || (!gen.router.publishes(host) && !portalAt(gen, host, path))) return sendError(res, req.headers, { status: 404, reason: 'No app is published at this address.', correlationId });
      // To the port of the app published there (its externalUrl's), else publicUrl's: an app at
      // https://app.test:9443/ was sent to 443.
      const app = gen.router.match(host, path)?.target;
      const external = app && externalUrlOf(app.externalUrl);
      const p = external?.protocol === 'https:' ? external.port || '443' : publicPort();
      const port = p && p !== '443' ? `:${p}` : '';
      res.writeHead(308, { location: `https://${host}${port}${target.startsWith('/') ? target : '/'}` }).end();
    };
  }

  addresses(): { http?: string; https?: string; admin?: string; connectors?: string } {
    return { http: addressOf(this.servers.http), https: addressOf(this.servers.https), admin: addressOf(this.servers.admin), connectors: this.connectorHub?.address() };
  }

  async stop(): Promise<void> {
    // A gateway started now (a rolling restart) waits for this one's drain instead of being refused.
    this.lock?.markStopping();
    this.holder.stopping = true;
    this.connectorHub?.registry.stopWaiting();
    this.stopRevocations();
    this.certificates?.stop();
    await this.watcher?.close();
    this.edges.http.drain();
    this.edges.https.drain();
    this.edges.http.closeUpgraded();
    this.edges.https.closeUpgraded();
    // The admin listener stays through the drain: /readyz answers 503 (a load balancer that asks
    // stops sending), and /metrics can still be scraped while in-flight requests finish.
    await Promise.all([closeServer(this.servers.http), closeServer(this.servers.https)]);
    await closeServer(this.servers.admin);
    const gen = this.holder.current;
    this.holder.current = undefined;
    // Every connection is closed by now, so in-flight requests are ending; do not hang on a straggler.
    await Promise.race([gen?.retire(), new Promise((r) => setTimeout(r, 2000).unref())]);
    await this.connectorHub?.stop();
    await this.audit?.close();
    this.lock?.release();
    this.log.flush?.();
  }
}

interface ReloadAttempt {
  reason: string;
  since: number;
  done: Promise<ReloadOutcome>;
  /** it went ahead without a reload given up on as stuck: it is not given up on in turn */
  replaces: boolean;
}

/** The settings a reload cannot apply: the listeners are bound and the state folder is open. */
interface StartedSettings {
  https?: string;
  http?: string;
  admin?: string;
  stateDir: string;
}
const RESTART_KEYS: Record<keyof StartedSettings, string> = { https: 'gateway.listen.https', http: 'gateway.listen.http', admin: 'gateway.admin.listen', stateDir: 'gateway.stateDir' };

function startedSettings(config: Config, dir: string): StartedSettings {
  const text = (v: string | number | undefined) => (v === undefined ? undefined : String(v));
  const { listen: l, admin, stateDir } = config.gateway;
  return { https: text(l.https), http: text(l.http), admin: text(admin?.listen), stateDir: resolve(dir, stateDir ?? './state') };
}

/** The HTML error page written straight to a socket that no ServerResponse owns, then the connection is closed. */
function endWithPage(socket: Duplex, status: number, reason: string, correlationId: string, bodiless = false, extraHeaders = ''): void {
  const title = http.STATUS_CODES[status] ?? String(status);
  endRaw(socket, status, 'text/html; charset=utf-8', renderPage(status, title, reason, correlationId), correlationId, `cache-control: no-store\r\nx-content-type-options: nosniff\r\n${extraHeaders}`, bodiless);
}

/**
 * A problem+json answer written straight to a socket that no ServerResponse
 * owns (parser errors, CONNECT), then the connection is closed.
 */
function endWithProblem(socket: Duplex, status: number, detail: string, correlationId: string, extraHeaders = '', bodiless = false): void {
  const title = http.STATUS_CODES[status];
  endRaw(socket, status, 'application/problem+json', JSON.stringify({ type: 'about:blank', title, status, detail, correlationId }), correlationId, extraHeaders, bodiless);
}

/**
 * One answer written as raw bytes (`extraHeaders` are whole `name: value\r\n` lines), then the
 * connection is closed. `bodiless` (the answer to a HEAD) keeps the Content-Length of the body it leaves out.
 */
function endRaw(socket: Duplex, status: number, contentType: string, body: string, correlationId: string, extraHeaders: string, bodiless = false): void {
  socket.end(`HTTP/1.1 ${status} ${http.STATUS_CODES[status] ?? status}\r\nconnection: close\r\n${extraHeaders}content-type: ${contentType}\r\n${CORRELATION_HEADER}: ${correlationId}\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${bodiless ? '' : body}`);
}

/**
 * The answer to a request pipelined before the current one that still owns this connection, if any.
 * Written is not let go of: an answer the gateway wrote at once (a 404, a policy's 403) is flushed
 * but keeps the socket until its 'finish', a tick later, and taking the socket then threw (the
 * process went down).
 */
function pendingAnswer(socket: Duplex): http.ServerResponse | undefined {
  return (socket as { _httpMessage?: http.ServerResponse | null })._httpMessage ?? undefined;
}

/**
 * Runs `answer` once the answer pipelined before it on this connection is out and has let go of
 * the socket (at once if there is none): written earlier, it would be read as that request's
 * answer. A connection cut before then is closed.
 */
function afterPendingAnswer(socket: Duplex, answer: () => void): void {
  const pending = pendingAnswer(socket);
  if (!pending) return answer();
  // Node's own 'finish' listener, added before this one, lets go of the socket; check again after it.
  pending.once('finish', () => setImmediate(() => (socket.writable && !pendingAnswer(socket) ? answer() : socket.destroy())));
  pending.once('close', () => pending.writableFinished || socket.destroy());
}

/**
 * The error, its message (and stack, printed with DRAWBRIDGE_DEBUG) without the values the
 * load's ${...} resolved to: a start that fails is printed, and a plugin's create() may quote its options.
 */
function redacted(e: unknown, redact: (message: string) => string): unknown {
  if (e instanceof Error) {
    e.message = redact(e.message);
    if (e.stack) e.stack = redact(e.stack);
  }
  return e;
}

/** gateway.audit in the AuditLog's terms (it supplies the defaults). */
function auditRetention(config: Config): { maxBytes?: number; keep?: number } {
  const a = config.gateway.audit;
  return { maxBytes: a?.rotateAtMiB === undefined ? undefined : a.rotateAtMiB * 1024 * 1024, keep: a?.keepFiles };
}
