/**
 * The edge: one handler for every public request. It picks the live
 * generation once, routes by host and normalized path, runs the app's stages
 * and hands the request to the app's upstream. Stages return decisions; only
 * this file acts on them, so no stage can skip authentication by accident.
 */
import { randomUUID } from 'node:crypto';
import http, { type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import type { Metrics } from '../observability/metrics.js';
import type { CompiledApp, Generation, GenerationHolder } from '../pipeline/generation.js';
import { isPendingDecision, type Decision, type Identity, type RequestContext, type Stage, type StepUp } from '../pipeline/stage.js';
import { decisionProblem } from '../pipeline/decisionProblem.js';
import { InvalidDecisionError } from '../errors.js';
import { isBrowserNavigation, wantsPage } from '../identity/clientKind.js';
import { isFrameNavigation } from '../identity/framedSignIn.js';
import { requestedTarget, signInLink } from '../identity/returnUrl.js';
import { withoutCookies } from '../identity/cookies.js';
import { AccessRechecks, type HeldOutcome } from './accessRechecks.js';
import { clientAddress } from './clientAddress.js';
import { checkDestination, destinationStages, headerCount, internalDestination, internalTarget, type Destination } from './destination.js';
import { sendError, type ErrorInfo, type NextStep } from './errorPages.js';
import { boundUnwantedBody } from './linger.js';
import { answerBegun } from './heldHead.js';
import { appResponseValue, CORRELATION_HEADER, FEW_HEADER_LINES, firstOwnedName, GATEWAY_FRAMED, gatewayHeadersFirst, upstreamRequestHeaders, type AppCookieGuard } from './headers.js';
import { normalizeTarget, originForm } from './normalize.js';
import { hostnameOf } from './router.js';
import { STALL_ANSWERS, watchStall, whoStalled, type Stall } from './stall.js';
import type { UpstreamFailure } from './upstream.js';
import type { DecisionEvent } from '../observability/audit.js';
import { loggedTarget } from '../observability/loggedTarget.js';
import { jwksHandler } from '../plugins/headers/assertion.js';
import { JWKS_PATH } from '../plugins/headers/assertionKeys.js';
import { dashedName, largeIdentityHead } from '../plugins/headers/identityHeaders.js';
import type { BodyTranslation } from './translateBody.js';
import type { UrlTranslation } from './translateHeaders.js';

/** Requests one connection may have waiting behind the one being answered; more closes it (nginx serves them one by one too). */
export const MAX_PIPELINED = 32;


/** Sends a browser back to the identity provider for a stronger or fresher sign-in. */
export type StepUpHandler = (req: IncomingMessage, res: ServerResponse, ctx: RequestContext, stepUp: StepUp) => void | Promise<void>;

/**
 * What a gateway-owned endpoint did for an app that belongs in the audit trail: a sign-in
 * finished or refused at the callback, a session signed out. Recorded with the request's
 * final status, method, path and client address when the answer is done.
 */
export interface OwnedEvent {
  readonly app: string;
  /** `sign-in`, `sign-in-refused` (a deny) or `sign-out` */
  readonly decision: 'sign-in' | 'sign-in-refused' | 'sign-out';
  readonly user?: string;
  readonly reasons?: readonly string[];
}

export interface InternalContext {
  id: string;
  path: string;
  search: string;
  host: string;
  protocol: 'http' | 'https';
  generation: Generation;
  /** the app path prefix the endpoint was addressed under (`/a/` for `/a/.drawbridge/me`); `/` at the host root */
  prefix: string;
  /** adds an event to the audit trail (and names the app in the request log) */
  record(e: OwnedEvent): void;
}

export type InternalHandler = (req: IncomingMessage, res: ServerResponse, ctx: InternalContext) => void | Promise<void>;

/** what became of a request, for its log line and audit record (reasons, ctx, gen, res: HeldOutcome) */
interface Outcome extends HeldOutcome {
  app?: string;
  decision: string;
  /** for the audit trail */
  user?: string;
  clientIp?: string;
  stepUp?: boolean;
  /** WebSockets: the app's access fingerprint in the generation that let it in */
  accessFingerprint?: string;
  /** a WebSocket that went through: the app's 101 went to the client on the socket, not through res */
  switched?: boolean;
  /** the identity the preauth stage set: no later stage may put another in ctx */
  identity?: Identity;
  /** what a gateway-owned endpoint recorded (sign-in, sign-out) */
  owned?: OwnedEvent[];
}

export class Edge {
  /** gateway-owned endpoints by exact path (sign-in callback, sign-out, JWKS...) */
  readonly internal = new Map<string, InternalHandler>();
  /**
   * the few of them also served under each app's path prefix, by their root path: `/a/.drawbridge/me`
   * is `/.drawbridge/me` for the app at `/a/`
   */
  readonly internalUnderPrefix = new Map<string, InternalHandler>();
  /**
   * set by the app portal (portal.ts): where a generation serves the portal on a host and path no
   * app takes, its path prefix there, and its page's handler when the path is the page
   */
  portalAt?: (gen: Generation, host: string, path: string) => { prefix: string; page?: InternalHandler } | undefined;
  /** set by the identity subsystem; without it a step-up deny is answered as a plain deny */
  stepUpHandler?: StepUpHandler;
  /** told about every finished request to an app (the audit trail) */
  onDecision?: (e: DecisionEvent) => void;
  /** requests waiting for their turn behind another response, per connection */
  private readonly pipelined = new WeakMap<Socket, number>();
  private draining = false;
  /** open WebSockets and long responses, held to their app's access rules while they run */
  private readonly rechecks: AccessRechecks;

  constructor(
    private readonly holder: GenerationHolder,
    private readonly log: Logger,
    private readonly metrics: Metrics,
    private readonly protocol: 'http' | 'https',
  ) {
    this.internal.set(JWKS_PATH, jwksHandler);
    this.rechecks = new AccessRechecks(holder, log, (e) => this.onDecision?.(e));
  }

  readonly handle = (req: IncomingMessage, res: ServerResponse): void => {
    // Node parses every request pipelined on a connection at once and queues their responses.
    // A queued request waits for its turn: run at once, one connection would fan out to as many
    // app requests as it can pipeline, and a response still queued when the client leaves never
    // closes, so its app request, log line and audit record would be lost.
    if (!res.socket) return this.waitForTurn(req, res);
    const started = performance.now();
    // While stopping, the last answer on a connection closes it (one with requests waiting behind it does not).
    if (this.draining && !this.pipelined.has(req.socket)) res.shouldKeepAlive = false;
    const id = randomUUID();
    res.setHeader(CORRELATION_HEADER, id);
    const gen = this.holder.current;
    if (!gen) {
      sendError(res, req.headers, { status: 503, reason: 'The gateway is starting.', correlationId: id });
      return;
    }
    gen.acquire();
    const outcome: Outcome = { decision: 'error' };
    const socket = req.socket;
    this.rechecks.answer(socket, outcome);
    res.once('close', () => {
      gen.release();
      this.rechecks.answered(socket, outcome);
      if (res.writableFinished) {
        boundUnwantedBody(req, (ms) => this.log.info({ correlationId: id, client: socket.remoteAddress, seconds: ms / 1000 }, 'connection closed: the client was still sending a request body after its answer had left'));
        return this.finish(req, res, id, outcome, started);
      }
      // A response cut short is logged a turn later: the direct upstream learns why (the app
      // went quiet, or the client left) from undici only after this close.
      setImmediate(() => this.finish(req, res, id, outcome, started));
    });
    try {
      this.route(req, res, id, gen, outcome);
    } catch (e) {
      this.fail(req, res, id, outcome, e);
    }
  };


  private waitForTurn(req: IncomingMessage, res: ServerResponse): void {
    const socket = req.socket;
    const waiting = (this.pipelined.get(socket) ?? 0) + 1;
    if (waiting > MAX_PIPELINED) {
      if (waiting === MAX_PIPELINED + 1) this.log.warn({ client: socket.remoteAddress, limit: MAX_PIPELINED }, 'connection closed: too many pipelined requests waiting');
      this.pipelined.set(socket, waiting);
      socket.destroy();
      return;
    }
    this.pipelined.set(socket, waiting);
    const leave = () => {
      const left = (this.pipelined.get(socket) ?? 1) - 1;
      if (left > 0) this.pipelined.set(socket, left);
      else this.pipelined.delete(socket);
    };
    const onClose = () => {
      // the client left before this request's turn: nothing was routed, forwarded or answered
      res.removeListener('socket', onTurn);
      leave();
    };
    const onTurn = () => {
      req.removeListener('close', onClose);
      leave();
      this.handle(req, res);
    };
    res.once('socket', onTurn);
    req.once('close', onClose);
  }

  /** WebSocket upgrades run the same pipeline before any 101 is sent. */
  readonly handleUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
    const res = new http.ServerResponse(req);
    res.assignSocket(socket as Socket);
    res.shouldKeepAlive = false;
    // A refused upgrade gets an ordinary response; closing the socket then emits
    // 'close' on res, which releases the generation like any other request.
    res.once('finish', () => socket.end());
    socket.on('error', () => socket.destroy());
    this.rechecks.upgradeBegun(socket);
    if (this.draining) {
      // The open WebSockets were closed when the stop began; a new one would outlive the drain.
      return sendError(res, req.headers, { status: 503, reason: 'The gateway is stopping.', correlationId: randomUUID() });
    }
    // An Upgrade we do not carry (h2c from `curl --http2`, say) may be ignored (RFC 9110 7.8):
    // a request without a body is served as plain HTTP/1.1 on this connection, then closed.
    const bodiless = req.headers['content-length'] === undefined && req.headers['transfer-encoding'] === undefined;
    if (String(req.headers.upgrade ?? '').toLowerCase() !== 'websocket' && bodiless && head.length === 0) {
      req.push(null);
      return this.handle(req, res);
    }
    (req as IncomingMessage & { upgradeHead?: Buffer }).upgradeHead = head;
    this.handle(req, res);
  };

  /**
   * The gateway is stopping: every request handled from now on is answered with Connection: close,
   * unless requests wait behind it on its connection (the last of them is). Answers already under
   * way are not tracked to be told the same (a Set of every live response, kept for this, tripled
   * the time spent collecting garbage under load: measured); their connections are closed by the
   * listener's idle sweep once they finish (closeServer).
   */
  drain(): void {
    this.draining = true;
  }

  /** Cuts every upgraded connection (shutdown). */
  closeUpgraded(): void {
    this.rechecks.closeAll();
  }

  /** After a reload: closes WebSockets, and long-lived responses, whose app was removed or whose access rules changed. */
  closeStaleUpgrades(next: Generation): void {
    this.rechecks.closeStale(next);
  }

  /** Closes WebSockets, and responses still running, that a now revoked session let in (sign-out). */
  closeUpgradesOfSession(sessionId: string): void {
    this.rechecks.closeSession(sessionId);
  }


  private route(req: IncomingMessage, res: ServerResponse, id: string, gen: Generation, outcome: Outcome): void {
    const h = req.headers;
    // Request smuggling guard: a body framed two ways is refused before anything reads it.
    if (h['transfer-encoding'] !== undefined && h['content-length'] !== undefined) return this.deny(req, res, id, outcome, 400, 'The request has both Content-Length and Transfer-Encoding.');
    // Only chunked is decoded here: a coding before it (`gzip, chunked`) would reach the app as a
    // plain body with the coding silently gone (RFC 9112 6.1: 501). Without chunked last the body
    // has no framing at all (400).
    const te = h['transfer-encoding']?.trim().toLowerCase();
    if (te !== undefined && te !== 'chunked') {
      if (!/(?:^|[\s,])chunked$/.test(te)) return this.deny(req, res, id, outcome, 400, 'The request body has no valid framing (Transfer-Encoding must end in chunked).');
      return this.deny(req, res, id, outcome, 501, 'The request uses a transfer coding the gateway does not support (only chunked).');
    }
    if (h['content-length'] !== undefined && conflictingLengths(req.rawHeaders)) return this.deny(req, res, id, outcome, 400, 'The request has conflicting Content-Length headers.');
    const malformed = malformedHead(req);
    if (malformed) return this.deny(req, res, id, outcome, 400, malformed);
    // TRACE would echo the request, gateway-set identity headers and cookies included, back to the caller.
    const refused = REFUSED_METHODS.get(req.method ?? '');
    if (refused !== undefined) {
      res.setHeader('allow', ALLOWED_METHODS);
      return this.deny(req, res, id, outcome, 405, refused);
    }
    // Max-Forwards: 0 makes the gateway the final recipient of OPTIONS (RFC 9110 7.6.2).
    if (req.method === 'OPTIONS' && String(h['max-forwards']).trim() === '0') {
      outcome.decision = 'internal';
      res.writeHead(200, { allow: ALLOWED_METHODS, 'content-length': '0' }).end();
      return;
    }
    const notOriginForm = acceptAbsoluteForm(req);
    if (notOriginForm) return this.deny(req, res, id, outcome, 400, notOriginForm);
    const host = hostnameOf(h.host);
    if (!host) return this.deny(req, res, id, outcome, 400, NO_VALID_HOST);
    const target = normalizeTarget(req.url ?? '');
    if (!target.ok) return this.deny(req, res, id, outcome, 400, `The request path is not acceptable (${target.reason}).`);

    const path = target.path;
    const owned = this.ownedEndpoint(gen, host, path);
    if (owned) return this.internalAnswer(req, res, id, gen, outcome, { path, search: target.search, host, prefix: owned.prefix }, owned.handler);

    const match = gen.router.match(host, path);
    if (!match) {
      // nothing of the portal's is an app's: it is answered here, like the endpoints above
      const portal = this.portalAt?.(gen, host, path);
      if (portal) return this.internalAnswer(req, res, id, gen, outcome, { path, search: target.search, host, prefix: portal.prefix }, portal.page);
      return this.deny(req, res, id, outcome, 404, 'No app is published at this address.');
    }
    const app = match.target;
    outcome.app = app.name;
    if (match.canonical !== undefined) {
      // Another spelling of the app's prefix (`/ADMIN/x` for `/admin/`): the client is sent to the
      // app's own, which its session cookie's Path and its rules are written for.
      const reasons = [`the path is ${match.canonical} to a server that ignores letter case and trailing dots or spaces`];
      return this.redirect(res, outcome, { kind: 'redirect', status: 307, location: match.canonical + target.params + target.search, reasons });
    }
    if ((req as { upgradeHead?: Buffer }).upgradeHead !== undefined) outcome.accessFingerprint = gen.accessFingerprint(app.name);

    const addr = clientAddress(req.socket.remoteAddress ?? '', h['x-forwarded-for'], gen.trustedProxies);
    if (!addr.ok) return this.deny(req, res, id, outcome, 400, `The client address cannot be determined (${addr.reason}).`);
    outcome.clientIp = addr.ip;

    // COPY and MOVE act on a second path: it is routed and checked like the target before anything is forwarded.
    let destination: Destination | undefined;
    if (h.destination !== undefined) {
      const checked = checkDestination(req.rawHeaders, String(h.destination), host, app, gen.router);
      if (!checked.ok) return this.deny(req, res, id, outcome, 400, `The Destination header is not acceptable (${checked.reason}).`);
      destination = checked;
    }

    const headers = upstreamRequestHeaders(h, app.stripHeaders, app.isGatewayCookie);
    const ctx: RequestContext = {
      id,
      method: req.method ?? 'GET',
      path,
      pathParams: target.params,
      search: target.search,
      host,
      protocol: this.protocol,
      headers: h,
      clientIp: addr.ip,
      peerIp: normalizePeer(req.socket.remoteAddress),
      upgrade: (req as { upgradeHead?: Buffer }).upgradeHead !== undefined,
      startedAt: Date.now(),
      app,
      upstreamHeaders: headers,
    };
    if (!ctx.upgrade) {
      outcome.ctx = ctx;
      outcome.gen = gen;
      outcome.res = res;
    }
    if (!destination) return this.runStages(req, res, ctx, app, 0, outcome);
    // strip before set: the client's Destination names the external URL, the app is sent its own
    delete headers.destination;
    const dest = destination;
    this.runStages(req, res, ctx, app, 0, outcome, app.stages, () => this.checkDestinationAccess(req, res, ctx, app, outcome, dest));
  }

  /** A gateway-owned endpoint or the portal's page answers (`handler` undefined: nothing there, a 404); nothing is forwarded. */
  private internalAnswer(req: IncomingMessage, res: ServerResponse, id: string, gen: Generation, outcome: Outcome, at: Pick<InternalContext, 'path' | 'search' | 'host' | 'prefix'>, handler: InternalHandler | undefined): void {
    outcome.decision = 'internal';
    if (!handler) return this.deny(req, res, id, outcome, 404, 'There is nothing here.');
    const record = (e: OwnedEvent) => {
      if (!outcome.owned) {
        outcome.owned = [];
        // the same address the app's requests are audited under; one that cannot be told is left out
        const addr = clientAddress(req.socket.remoteAddress ?? '', req.headers['x-forwarded-for'], gen.trustedProxies);
        if (addr.ok) outcome.clientIp = addr.ip;
        outcome.decision = e.decision;
      }
      outcome.owned.push(e);
    };
    void Promise.resolve(handler(req, res, { id, ...at, protocol: this.protocol, generation: gen, record })).catch((e) => this.fail(req, res, id, outcome, e));
  }

  /**
   * The gateway-owned endpoint a path is reserved for, if any (`handler` undefined: nothing there, a 404).
   * `/.drawbridge/` is the gateway's on every host. An app under a path prefix has its session cookie on
   * `Path=<prefix>`, which a browser sends nowhere above the prefix: sign-out and `me` must also be
   * reachable under it, so `<prefix>.drawbridge/` is the gateway's too and never reaches that app.
   */
  private ownedEndpoint(gen: Generation, host: string, path: string): { prefix: string; handler?: InternalHandler } | undefined {
    if (path.startsWith('/.drawbridge/') || path.startsWith('/.well-known/drawbridge/')) return { prefix: '/', handler: this.internal.get(path) };
    // (every request passes here: a second route lookup only for the paths that could be one)
    if (!path.includes('/.drawbridge/')) return undefined;
    // (the portal under a path prefix of publicUrl is answered there too: its cookie is on that path)
    const prefix = gen.router.match(host, path)?.prefix ?? this.portalAt?.(gen, host, path)?.prefix;
    if (!prefix || prefix === '/' || !path.startsWith(prefix + '.drawbridge/')) return undefined;
    return { prefix, handler: this.internalUnderPrefix.get(path.slice(prefix.length - 1)) };
  }

  /**
   * The Destination must be allowed as a target of its own: the app's access stages run on it with
   * the identity the request proved, and a refusal is the one that path alone would get.
   */
  private checkDestinationAccess(req: IncomingMessage, res: ServerResponse, ctx: RequestContext, app: CompiledApp, outcome: Outcome, dest: Destination): void {
    const destCtx: RequestContext = { ...ctx, path: dest.path, pathParams: dest.params, search: dest.search, upstreamHeaders: {} };
    this.runStages(req, res, destCtx, app, 0, outcome, destinationStages(app), () => {
      ctx.upstreamHeaders.destination = internalDestination(app, dest);
      outcome.decision = 'allow';
      this.forward(req, res, ctx, app, outcome);
    });
  }

  /** Runs `stages` from `from`; when all let the request through, `then` (default: forward it). */
  private runStages(req: IncomingMessage, res: ServerResponse, ctx: RequestContext, app: CompiledApp, from: number, outcome: Outcome, stages: readonly Stage[] = app.stages, then?: () => void): void {
    for (let i = from; i < stages.length; i++) {
      const stage = stages[i]!;
      let d: Decision | Promise<Decision>;
      try {
        d = stage.run(ctx);
      } catch (e) {
        return this.fail(req, res, ctx.id, outcome, e, stage.name);
      }
      if (isPendingDecision(d)) {
        // A stage that never settles must not hold the client (or its generation) for good:
        // it gets as long as the app's backend, then the client gets a 504 naming it.
        let settled = false;
        const deadline = setTimeout(() => {
          settled = true;
          this.stageTimedOut(req, res, ctx.id, outcome, stage.name, app.timeoutMs);
        }, app.timeoutMs);
        const settle = (): boolean => {
          if (settled) return false;
          settled = true;
          clearTimeout(deadline);
          return !res.destroyed;
        };
        try {
          d.then(
            (resolved) => {
              if (settle() && this.applyChecked(req, res, ctx, resolved, outcome, stage)) this.runStages(req, res, ctx, app, i + 1, outcome, stages, then);
            },
            (e) => {
              if (settle()) this.fail(req, res, ctx.id, outcome, e, stage.name);
            },
          );
        } catch (e) {
          // a plugin's own thenable whose then() throws: failed now, not at the deadline
          if (settle()) this.fail(req, res, ctx.id, outcome, e, stage.name);
        }
        return;
      }
      if (!this.applyChecked(req, res, ctx, d as Decision, outcome, stage)) return;
    }
    try {
      if (then) return then();
      outcome.decision = 'allow';
      this.forward(req, res, ctx, app, outcome);
    } catch (e) {
      this.fail(req, res, ctx.id, outcome, e);
    }
  }

  /** A malformed decision, or one the response machinery refuses, fails this request, never the process. */
  private applyChecked(req: IncomingMessage, res: ServerResponse, ctx: RequestContext, d: Decision, outcome: Outcome, stage: Stage): boolean {
    // Who the request is was settled by the preauth stage, and access was checked for that
    // identity: a later stage that returned or assigned another one had the identity headers,
    // the signed assertion and the audit trail name a user the rules never saw.
    const problem =
      decisionProblem(d) ??
      (d.kind === 'continue' && d.identity && stage.kind !== 'preauth' ? `only a preauth stage may set the identity (this is a ${stage.kind} stage)` : undefined) ??
      (ctx.identity !== outcome.identity ? 'the stage replaced ctx.identity, which only a preauth decision sets' : undefined) ??
      (d.kind === 'continue' && d.setHeaders && stage.kind !== 'headers' ? replacedLater(d.setHeaders, ctx.app as CompiledApp) : undefined);
    if (problem) {
      this.fail(req, res, ctx.id, outcome, new InvalidDecisionError(problem), stage.name);
      return false;
    }
    try {
      const goOn = this.apply(req, res, ctx, stage.kind === 'preauth' ? d : withoutGatewayCookies(d, ctx, this.log, stage.name), outcome);
      // The session cookie is a credential for every app on the host, and sign-in is done: the
      // stages after preauth (plugins among them) see the request without the gateway's cookies,
      // as the app does. (A plugin could forward it under a name of its own, or log it.)
      if (goOn && stage.kind === 'preauth' && ctx.headers.cookie !== undefined) {
        (ctx as { headers: IncomingHttpHeaders }).headers = { ...ctx.headers, cookie: withoutCookies(ctx.headers.cookie, (ctx.app as CompiledApp).isGatewayCookie) };
      }
      return goOn;
    } catch (e) {
      this.fail(req, res, ctx.id, outcome, e, stage.name);
      return false;
    }
  }

  private stageTimedOut(req: IncomingMessage, res: ServerResponse, id: string, outcome: Outcome, stage: string, timeoutMs: number): void {
    outcome.decision = 'error';
    outcome.reasons = [`stage ${stage}: no decision within ${timeoutMs / 1000} s`];
    this.log.error({ correlationId: id, app: outcome.app, stage, timeoutMs }, 'a stage did not decide in time');
    if (!res.destroyed) sendError(res, req.headers, { status: 504, reason: 'The gateway timed out while checking this request.', correlationId: id, app: outcome.app });
  }

  /** Applies one decision; true means go on to the next stage. */
  private apply(req: IncomingMessage, res: ServerResponse, ctx: RequestContext, d: Decision, outcome: Outcome): boolean {
    switch (d.kind) {
      case 'continue':
        if (d.identity) {
          (ctx as { identity?: Identity }).identity = d.identity;
          outcome.identity = d.identity;
          outcome.user = d.identity.user;
        }
        // Reasons of passing stages (e.g. the policies that applied) go to the log and the audit trail.
        if (d.reasons?.length) outcome.reasons = [...(outcome.reasons ?? []), ...d.reasons];
        if (d.setHeaders) for (const k in d.setHeaders) ctx.upstreamHeaders[k.toLowerCase()] = d.setHeaders[k]!;
        return true;
      case 'deny':
        outcome.reasons = [...(outcome.reasons ?? []), ...d.reasons];
        if (d.stepUp) outcome.stepUp = true;
        // Only a browser navigation can follow a redirect to the provider and back; an API call
        // made with the session cookie gets the stage's 401 challenge, as a bearer client does.
        if (d.stepUp && this.stepUpHandler && ctx.identity?.via === 'session' && !ctx.upgrade && isBrowserNavigation(ctx.method, ctx.headers)) {
          outcome.decision = 'step-up';
          void Promise.resolve(this.stepUpHandler(req, res, ctx, d.stepUp)).catch((e) => this.fail(req, res, ctx.id, outcome, e, 'step-up'));
          return false;
        }
        // (a 401 challenge is a step-up in the request log as in the audit trail and the metric)
        outcome.decision = d.stepUp ? 'step-up' : 'deny';
        sendError(res, req.headers, { status: d.status, reason: d.publicReason ?? defaultReason(d.status), correlationId: ctx.id, app: ctx.app.name, headers: d.headers, ...(d.stepUp ? stepUpAnswer(ctx, d.stepUp) : signInAgain(ctx, d.signInAgain)) });
        return false;
      case 'redirect':
        this.redirect(res, outcome, d);
        return false;
      case 'respond':
        // A stage's own answer with an error status (the 401 for a refused bearer token) refused
        // access: the request line says deny, as the audit trail does; a filter on it missed them.
        outcome.decision = d.status >= 400 ? 'deny' : 'respond';
        outcome.reasons = d.reasons;
        for (const [k, v] of Object.entries(d.headers ?? {})) res.setHeader(k, v);
        res.statusCode = d.status;
        res.end(d.body);
        return false;
    }
  }

  private forward(req: IncomingMessage, res: ServerResponse, ctx: RequestContext, app: CompiledApp, outcome: Outcome): void {
    const upstreamPath = internalTarget(app, ctx.path, ctx.pathParams, ctx.search);
    let headers = ctx.upstreamHeaders;
    // Framing is the client's request's, whatever a stage wrote into ctx.upstreamHeaders itself (headers.ts GATEWAY_FRAMED).
    for (const name in headers) if (GATEWAY_FRAMED.has(name.toLowerCase())) delete headers[name];
    if (req.headers['content-length'] !== undefined) headers['content-length'] = req.headers['content-length'];
    headers.host = app.internalHost;
    headers[CORRELATION_HEADER] = ctx.id;
    // a compressed body could not be rewritten without inflating it here
    if (app.translateBody && !ctx.upgrade) headers['accept-encoding'] = 'identity';
    if (req.rawHeaders.length > 2 * FEW_HEADER_LINES) headers = gatewayHeadersFirst(headers, req.headers, app.stripHeaders);
    let stalled = false;
    const cookies: AppCookieGuard = {
      isGatewayCookie: app.isGatewayCookie,
      refused: (name) => this.log.warn({ correlationId: ctx.id, app: app.name, cookie: name }, "the app's answer set or cleared a cookie of the gateway's: left out"),
    };
    const answerStall = (stall: Stall) => {
      stalled = true;
      const answer = STALL_ANSWERS[stall];
      outcome.decision = answer.decision;
      outcome.reasons = [`${answer.logged} for ${app.timeoutMs / 1000} s`];
      // The response has begun: ending the connection is all that is left (the upstream sees the close).
      if (!answer.page) return void res.destroy();
      // The page goes out first: cutting the app's side ends the client's request stream, and with it the socket.
      res.once('close', () => cancel());
      // the rest of the body may never come, so the connection cannot carry another request
      sendError(res, req.headers, { ...answer.page, correlationId: ctx.id, app: app.name, headers: { connection: 'close' } });
    };
    const done = (failure?: UpstreamFailure) => {
      // A stall was answered already; the upstream's failure is its echo.
      if (!failure || stalled) return;
      // The app went quiet waiting for the rest of a body the client stopped sending: the client's
      // stall, whichever timer saw it first (the app's connection saw the last body bytes later
      // than the client's watcher, which samples, so its timer often runs out first).
      if (failure.appQuiet && !failure.afterHeaders && !ctx.upgrade && whoStalled(req, res) === 'client-upload') return answerStall('client-upload');
      outcome.decision = failure.status === 504 ? 'timeout' : 'upstream-error';
      outcome.reasons = [failure.detail];
      if (!failure.afterHeaders) sendError(res, req.headers, { status: failure.status, reason: failure.reason, correlationId: ctx.id, app: app.name });
    };
    if (ctx.upgrade) {
      const upgradeHeader = String(req.headers.upgrade ?? '').toLowerCase();
      // Only WebSocket may switch protocols, and only for apps that allow it.
      if (upgradeHeader !== 'websocket' || !app.websockets) {
        return this.deny(req, res, ctx.id, outcome, 400, upgradeHeader === 'websocket' ? 'This app does not accept WebSocket connections.' : 'This protocol upgrade is not supported.');
      }
      // RFC 6455 4.2.1: a key of 16 bytes in base64; the app's 101 is checked against it (upstream.ts)
      if (!WEBSOCKET_KEY.test(String(req.headers['sec-websocket-key'] ?? ''))) {
        return this.deny(req, res, ctx.id, outcome, 400, 'This is not a WebSocket handshake: Sec-WebSocket-Key is missing or malformed.');
      }
      // RFC 6455 4.4: the gateway speaks version 13 on these connections (its close frame when
      // access ends, the frame boundaries it watches for one), so another version is answered here,
      // 426 with the version it takes, as the RFC asks, rather than left to an app that might accept it.
      const version = req.headers['sec-websocket-version'];
      if (version === undefined) {
        return this.deny(req, res, ctx.id, outcome, 400, 'This is not a WebSocket handshake: Sec-WebSocket-Version is missing.');
      }
      if (version !== '13') {
        return this.deny(req, res, ctx.id, outcome, 426, 'This WebSocket version is not supported: the gateway speaks version 13.', { 'sec-websocket-version': '13' });
      }
      // RFC 6455 4.1: the handshake is a GET. Another method went on to the app with the Upgrade,
      // where a server that ignores the method switched on a request that method-scoped rules saw as a POST.
      if (ctx.method !== 'GET') {
        return this.deny(req, res, ctx.id, outcome, 400, 'A WebSocket handshake is a GET request.');
      }
      // A handshake is a GET without content (RFC 6455 4.1). Its Content-Length went on to the app
      // while the bytes it counted came only after the 101, as WebSocket data: an app declining the
      // upgrade waited for a body that never came, and one reading it took the client's frames for it.
      if (!['0', undefined].includes(req.headers['content-length']) || req.headers['transfer-encoding'] !== undefined) {
        return this.deny(req, res, ctx.id, outcome, 400, 'A WebSocket handshake has no body: Content-Length or Transfer-Encoding is not allowed.');
      }
      const head = (req as { upgradeHead?: Buffer }).upgradeHead ?? Buffer.alloc(0);
      outcome.decision = 'upgrade';
      const answer = { cookies, translateUrls: app.translateHeaders ? urlTranslation(app, ctx) : undefined };
      app.upstream.upgrade(req, res.socket!, head, upstreamPath, headers, app.timeoutMs, answer, (failure) => {
        if (!failure) {
          outcome.switched = true;
          const socket = res.socket!;
          this.rechecks.trackWebSocket(socket, ctx, app.name, outcome.accessFingerprint, app.timeoutMs);
          res.detachSocket(socket);
          res.removeAllListeners('finish');
          res.emit('close');
          return;
        }
        done(failure);
      });
      return;
    }
    const translateUrls = app.translateHeaders ? urlTranslation(app, ctx) : undefined;
    const translateBody: BodyTranslation | undefined = app.translateBody ? { from: app.internalBase, to: translateUrls?.externalBase ?? externalBaseOf(app, ctx) } : undefined;
    watchStall(req, res, app.timeoutMs, answerStall);
    const cancel = app.upstream.forward({ req, res, method: ctx.method, path: upstreamPath, headers, timeoutMs: app.timeoutMs, translateUrls, translateBody, cookies, signedIn: ctx.identity?.via === 'session' }, done);
  }

  private redirect(res: ServerResponse, outcome: Outcome, d: Extract<Decision, { kind: 'redirect' }>): void {
    outcome.decision = 'redirect';
    outcome.reasons = d.reasons;
    for (const [k, v] of Object.entries(d.headers ?? {})) res.setHeader(k, v);
    res.statusCode = d.status ?? 302;
    res.setHeader('location', d.location);
    res.setHeader('cache-control', 'no-store');
    res.end();
  }

  private deny(req: IncomingMessage, res: ServerResponse, id: string, outcome: Outcome, status: number, reason: string, headers?: Record<string, string>): void {
    outcome.decision = 'deny';
    outcome.reasons = [reason];
    sendError(res, req.headers, { status, reason, correlationId: id, app: outcome.app, headers });
  }

  private fail(req: IncomingMessage, res: ServerResponse, id: string, outcome: Outcome, e: unknown, stage?: string): void {
    // Fail closed: an error anywhere in the pipeline denies.
    outcome.decision = 'error';
    outcome.reasons = [`${stage ? `stage ${stage}: ` : ''}${(e as Error)?.message ?? String(e)}`];
    this.log.error({ err: e, correlationId: id, app: outcome.app, stage }, 'request failed inside the gateway');
    // (an answer already under way is cut: sendError destroys a response whose head went out)
    sendError(res, req.headers, { status: 500, reason: 'The gateway could not process this request.', correlationId: id, app: outcome.app });
  }

  private finish(req: IncomingMessage, res: ServerResponse, id: string, outcome: Outcome, started: number): void {
    const seconds = (performance.now() - started) / 1000;
    const status = outcome.switched ? 101 : answerBegun(res) ? res.statusCode : 0;
    const app = outcome.app ?? outcome.owned?.[0]?.app ?? '-';
    this.metrics.countRequest(app, status);
    this.metrics.latency.observe({ app }, seconds);
    const target = loggedTarget(req.url);
    const largeIdentity = status === 431 && outcome.decision === 'allow' && outcome.ctx ? largeIdentityHead((outcome.ctx.app as CompiledApp).stages, outcome.ctx.upstreamHeaders) : undefined;
    if (largeIdentity) this.log.warn({ correlationId: id, app, ...largeIdentity }, "the app refused the request head as too large (431), and the gateway's identity headers and assertion were over 8 KB of it: the user's groups need a larger header limit in the app");
    if (this.onDecision) {
      try {
        if (outcome.app) this.onDecision({ correlationId: id, app, decision: outcome.decision, stepUp: outcome.stepUp, status, method: req.method, path: target.path, user: outcome.user, clientIp: outcome.clientIp, reasons: outcome.reasons });
        if (outcome.owned) for (const e of outcome.owned) this.onDecision({ correlationId: id, app: e.app, decision: e.decision, status, method: req.method, path: target.path, user: e.user, clientIp: outcome.clientIp, reasons: e.reasons });
      } catch (e) {
        this.log.error({ err: e, correlationId: id }, 'decision could not be recorded');
      }
    }
    // Field by field in the line's order, not with conditional spreads: those copy through V8's
    // slow path and leave an object JSON serialization also takes slowly (0.4 us a request).
    const line: Record<string, unknown> = { correlationId: id, app, method: req.method, path: target.path };
    if (target.query !== undefined) line.query = target.query;
    line.status = status;
    line.ms = Math.round(seconds * 1e4) / 10;
    line.decision = outcome.decision;
    if (outcome.reasons) line.reasons = outcome.reasons;
    if (!(res.writableFinished || outcome.switched)) line.aborted = true;
    this.log.info(line, 'request');
  }
}

/**
 * The form of a step-up that is not a redirect to the provider, by the OIDC stage's client-kind
 * test rather than Accept alone: an API client (fetch, XHR: `Accept: *\/*`) gets problem+json as
 * when its session ended, and a page the browser shows (a form posted) gets a link that signs in
 * again with the step-up, where before it had nothing to follow.
 */
function stepUpAnswer(ctx: RequestContext, stepUp: StepUp): Pick<ErrorInfo, 'as' | 'next'> {
  if (ctx.upgrade || !wantsPage(ctx.headers)) return { as: 'problem' };
  return { as: 'page', next: signInAgainLink(ctx, stepUp) };
}

/** A deny a fresh sign-in may lift (Decision signInAgain): a browser session gets the link that replaces it. */
function signInAgain(ctx: RequestContext, asked: boolean | undefined): Pick<ErrorInfo, 'next'> {
  return asked === true ? { next: signInAgainLink(ctx) } : {};
}

/** Only a browser session is replaced by signing in again; a bearer client brings its own token. */
function signInAgainLink(ctx: RequestContext, stepUp?: StepUp): NextStep | undefined {
  if (ctx.identity?.via !== 'session') return undefined;
  return { href: signInLink(requestedTarget(ctx), stepUp), label: 'Sign in again', ...(isFrameNavigation(ctx.headers) ? { newWindow: true } : {}) };
}

function defaultReason(status: number): string {
  if (status === 401) return 'Sign-in is required.';
  if (status === 403) return 'You are not allowed to use this app.';
  return 'The request was refused.';
}

/**
 * Methods the gateway answers itself with 405 (and what it tells the client), before any app
 * or stage sees them; what-if reads the same table. CONNECT never reaches the edge (Node hands
 * it to server.ts), which answers it from here too.
 */
export const REFUSED_METHODS: ReadonlyMap<string, string> = new Map([
  ['TRACE', 'TRACE is not allowed.'],
  ['CONNECT', 'The gateway does not tunnel CONNECT requests.'],
  // RFC 5842: they name the resources they bind, move or unbind in the body, which the gateway
  // does not read, so no rule could ever see those paths (COPY and MOVE name theirs in Destination).
  ['BIND', 'BIND is not allowed: the gateway cannot check the resources it names.'],
  ['REBIND', 'REBIND is not allowed: the gateway cannot check the resources it names.'],
  ['UNBIND', 'UNBIND is not allowed: the gateway cannot check the resources it names.'],
]);
/**
 * The methods the gateway passes on (the Allow header of its own 405s and of OPTIONS with
 * Max-Forwards: 0): every method Node's parser accepts (it answers any other with 400) but
 * the refused ones. WebDAV, CalDAV and the like are served, so the list is long.
 */
export const ALLOWED_METHODS = http.METHODS.filter((m) => !REFUSED_METHODS.has(m)).join(', ');

/**
 * Request headers the gateway sets after every stage but its own headers stages (the forwarded
 * headers, the app's identity headers and assertion) or at the very end (the correlation id): set
 * by another stage, its value was replaced without a word, and a plugin's ticket in such a header
 * never reached the app while the client's own copy of another header did. An identity header's
 * `_` or `.` spelling would reach the app beside the gateway's value, which a CGI-style backend
 * reads as the same header.
 */
function replacedLater(setHeaders: Readonly<Record<string, unknown>>, app: CompiledApp): string | undefined {
  const name = firstOwnedName(setHeaders, (n) => n === CORRELATION_HEADER || n === 'forwarded' || n.startsWith('x-forwarded-') || app.identityHeaders.has(dashedName(n)));
  return name === undefined ? undefined : `setHeaders: ${name} is set by the gateway after this stage, which would replace the stage's value`;
}

/**
 * Sign-in is the preauth stage's: another stage's answer that sets or clears the gateway's own
 * cookies (a session, a sign-in in progress) or asks the browser to clear cookies has that part
 * left out and logged, as an app's answer does (headers.ts appResponseValue).
 */
function withoutGatewayCookies(d: Decision, ctx: RequestContext, log: Logger, stage: string): Decision {
  if (d.kind === 'continue' || !d.headers) return d;
  const headers = d.headers;
  const guard: AppCookieGuard = {
    isGatewayCookie: (ctx.app as CompiledApp).isGatewayCookie,
    refused: (name) => log.warn({ correlationId: ctx.id, app: ctx.app.name, stage, cookie: name }, "a stage's answer set or cleared a cookie of the gateway's: left out"),
  };
  const kept: Record<string, string | string[]> = {};
  for (const name in headers) {
    const v = appResponseValue(name.toLowerCase(), headers[name]!, guard);
    if (v !== undefined) kept[name] = v;
  }
  return { ...d, headers: kept };
}


function conflictingLengths(raw: string[]): boolean {
  let seen: string | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i]!.length === 14 && raw[i]!.toLowerCase() === 'content-length') {
      const v = raw[i + 1]!.trim();
      if (seen !== undefined && seen !== v) return true;
      if (v.includes(',')) return true;
      seen = v;
    }
  }
  return false;
}

function normalizePeer(addr: string | undefined): string {
  if (!addr) return '';
  return addr.startsWith('::ffff:') && addr.includes('.') ? addr.slice(7) : addr;
}

/** The app's URL as this client reached it: its scheme, its Host, the app's external path prefix. */
function externalBaseOf(app: CompiledApp, ctx: RequestContext): string {
  const hostHeader = Array.isArray(ctx.headers.host) ? ctx.headers.host[0] : ctx.headers.host;
  return `${ctx.protocol}://${hostHeader}${app.externalPrefix}`;
}

/** What this response's URLs are translated from and to (translateHeaders.ts). */
function urlTranslation(app: CompiledApp, ctx: RequestContext): UrlTranslation {
  return {
    internalBase: app.internalBase,
    internalPrefix: app.internalPrefix,
    internalHostname: app.internalUrl.hostname,
    externalHostname: ctx.host,
    externalBase: externalBaseOf(app, ctx),
    externalPrefix: app.externalPrefix,
  };
}

export const NO_VALID_HOST = 'The request has no valid Host header.';

/**
 * An absolute-form target (`GET http://host/x`, from a client set up for a proxy) made the
 * origin form every later step reads (logs, rules, the app), in place; the reason for a 400
 * when it cannot be. RFC 9112 3.2.2 has Host ignored then, but a front proxy or a WAF may have
 * routed or checked on the Host header, so a target naming another host is refused, not
 * followed (ports are not compared: routing does not read them). HTTP/1.0 may come without
 * Host; HTTP/1.1 without one gets its 400 afterwards (RFC 9112 3.2).
 */
export function acceptAbsoluteForm(req: IncomingMessage): string | undefined {
  const absolute = originForm(req.url ?? '');
  if (!absolute) return undefined;
  if (!absolute.ok) return `The request target is not acceptable (${absolute.reason}).`;
  const h = req.headers;
  if (h.host !== undefined && hostnameOf(h.host) !== hostnameOf(absolute.authority)) return 'The request target names another host than the Host header.';
  if (req.httpVersionMinor === 0) h.host ??= absolute.authority;
  req.url = absolute.target;
  return undefined;
}

const WEBSOCKET_KEY = /^[A-Za-z0-9+/]{21}[AQgw]==$/;

/** What makes a request head unservable whatever it asks for (the https edge, and the redirect listener before it redirects). */
export function malformedHead(req: IncomingMessage): string | undefined {
  // HTTP/0.9 lines and other major versions get through Node's parser; a client error (400), not 505,
  // so that 5xx from the gateway keep meaning a fault on this side.
  if (req.httpVersionMajor !== 1) return 'Only HTTP/1.0 and HTTP/1.1 are served here.';
  // Node keeps the first Host; an app or cache behind may read the last (RFC 9112 3.2: 400).
  if (headerCount(req.rawHeaders, 'host') > 1) return 'The request has more than one Host header.';
  // The same for credentials (RFC 9110 11.6.2: not a list): Node keeps the first Authorization,
  // a WAF or proxy in front may have judged the last, a different token or user.
  if (headerCount(req.rawHeaders, 'authorization') > 1) return 'The request has more than one Authorization header.';
  return undefined;
}
