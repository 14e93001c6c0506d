/**
 * What a request was let in under can stop holding while its answer is still running: an open
 * WebSocket, an SSE stream or a long poll outlives its request's checks. This holds them to
 * their app's access rules until they end: a reload that removes the app or changes its rules,
 * a sign-out, the session or token running out, or a periodic pass of the access stages that now
 * refuses them, closes them with the reason logged. It also keeps the sockets taken over by
 * upgrades, which the HTTP server no longer tracks, to close them when the gateway stops.
 */
import type { ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import type { CompiledApp, Generation, GenerationHolder } from '../pipeline/generation.js';
import type { RequestContext } from '../pipeline/stage.js';
import { sessionSignedOut } from '../identity/session.js';
import type { DecisionEvent } from '../observability/audit.js';
import { CLOSE_GOING_AWAY, CLOSE_POLICY_VIOLATION, closeWebSocket } from './webSocketClose.js';
import { watchWebSocketStall } from './webSocketStall.js';

/** The part of a request's outcome a running answer is held to. */
export interface HeldOutcome {
  /** what the request log and audit record will say: a cut answer adds its reason */
  reasons?: readonly string[];
  /** a request routed to an app: what a response still running is held to (long-lived responses) */
  ctx?: RequestContext;
  gen?: Generation;
  res?: ServerResponse;
}

/** an app response still running, with what it is held to */
type LongResponse = HeldOutcome & Required<Pick<HeldOutcome, 'ctx' | 'gen' | 'res'>>;

const STALE_ACCESS = 'its app or access rules changed in the config';
const SIGNED_OUT = 'its session was signed out';

export class AccessRechecks {
  /**
   * Sockets taken over by upgrades (the HTTP server no longer tracks them);
   * once the WebSocket is through, the app and access fingerprint it was let in under.
   */
  private readonly upgraded = new Map<Duplex, UpgradeTag | undefined>();
  /**
   * Access rules can stop holding while a WebSocket stays open (a time window
   * ends, a sign-in grows older than signInFrequency): open WebSockets meet
   * their app's access stages again this often. DRAWBRIDGE_WS_RECHECK_MS is a
   * knob for tests, not a config key.
   */
  private readonly recheckMs = Number(process.env.DRAWBRIDGE_WS_RECHECK_MS) || 30_000;
  private recheckTimer?: NodeJS.Timeout;
  private rechecking = false;
  /**
   * Every client connection, with the app request it is answering now (Node answers one at a
   * time per connection). An SSE stream or long poll outlives its request's checks like a
   * WebSocket; once it has run for a re-check interval it is held to the same rules. Kept per
   * connection, updated by one Map.set per request: a Set of every live response, added to
   * and deleted from per request, tripled the time spent collecting garbage (measured).
   */
  private readonly answering = new Map<Socket, HeldOutcome | undefined>();

  constructor(
    private readonly holder: GenerationHolder,
    private readonly log: Logger,
    /** an open WebSocket a re-check closed is an access decision: told to the audit trail */
    private readonly onDecision: (e: DecisionEvent) => void,
  ) {}

  /** `socket` is now answering the request of `outcome` (one at a time per connection) */
  answer(socket: Socket, outcome: HeldOutcome): void {
    if (!this.answering.has(socket)) {
      socket.once('close', () => this.answering.delete(socket));
      this.startRechecks();
    }
    this.answering.set(socket, outcome);
  }

  /** the periodic re-check of WebSockets and long responses, from the first connection on */
  private startRechecks(): void {
    this.recheckTimer ??= setInterval(() => void this.recheckUpgrades(), this.recheckMs).unref();
  }

  /** `socket` answered `outcome`'s request (its response closed) */
  answered(socket: Socket, outcome: HeldOutcome): void {
    if (this.answering.get(socket) === outcome) this.answering.set(socket, undefined);
  }

  /** `socket` was taken over by an upgrade: tracked until it closes, tagged once through (trackWebSocket) */
  upgradeBegun(socket: Duplex): void {
    this.upgraded.set(socket, undefined);
    socket.once('close', () => this.upgraded.delete(socket));
  }

  /** Cuts every upgraded connection and stops the re-checks (shutdown). */
  closeAll(): void {
    for (const s of this.upgraded.keys()) closeWebSocket(s, CLOSE_GOING_AWAY, 'the gateway is stopping');
    this.upgraded.clear();
    this.answering.clear();
    clearInterval(this.recheckTimer);
    this.recheckTimer = undefined;
  }

  /** Runs the access stages of the live generation again for every open WebSocket; closes those now refused. */
  private async recheckUpgrades(): Promise<void> {
    if (this.rechecking) return; // a slow stage must not stack passes
    this.rechecking = true;
    try {
      const gen = this.holder.current;
      if (!gen) return;
      this.sweepLongResponses(gen);
      await this.recheckLongResponses(gen);
      for (const [socket, tag] of this.upgraded) {
        // a removed app or changed rules are closeStale's work; without the app there is nothing to check against
        const app = tag && gen.apps.get(tag.app);
        if (!app || socket.destroyed) continue;
        // (sign-out closes its WebSockets when it happens; this is the net under that)
        if (signedOut(gen, tag.ctx)) {
          this.closeWebSocket(socket, tag, SIGNED_OUT);
          continue;
        }
        const why = await refusalOf(app, tag.ctx);
        if (!why || socket.destroyed) continue;
        this.closeWebSocket(socket, tag, 'its access rules no longer allow it', [why]);
        // an access decision like any other: it goes to the audit trail, under the upgrade's correlation id
        const { ctx } = tag;
        this.onDecision({ correlationId: ctx.id, app: tag.app, decision: 'deny', status: 403, method: ctx.method, path: ctx.path, user: ctx.identity?.user, clientIp: ctx.clientIp, reasons: [`open WebSocket closed: ${why}`] });
      }
    } finally {
      this.rechecking = false;
    }
  }

  /** After a reload: closes WebSockets, and long-lived responses, whose app was removed or whose access rules changed. */
  closeStale(next: Generation): void {
    this.closeWebSocketsWhere((tag) => next.accessFingerprint(tag.app) !== tag.fingerprint || rerouted(next, tag.ctx), STALE_ACCESS);
    this.sweepLongResponses(next);
  }

  /** Closes WebSockets, and responses still running, that a now revoked session let in (sign-out). */
  closeSession(sessionId: string): void {
    this.closeWebSocketsWhere((tag) => tag.ctx.identity?.sessionId === sessionId, SIGNED_OUT);
    for (const o of this.answering.values()) if (o?.res && o.ctx?.identity?.sessionId === sessionId) this.cutResponse(o, SIGNED_OUT);
  }

  /**
   * Responses that have run for a re-check interval (SSE, long polls, streamed downloads) are cut
   * when their app was removed or its access changed, or their session was signed out or their
   * session or token expired. Shorter ones complete on the generation they started on.
   */
  private sweepLongResponses(live: Generation): void {
    const now = Date.now();
    for (const o of this.longResponses()) {
      const app = o.ctx.app.name;
      const expiresAt = o.ctx.identity?.expiresAt;
      if (live.accessFingerprint(app) !== o.gen.accessFingerprint(app) || rerouted(live, o.ctx)) this.cutResponse(o, STALE_ACCESS);
      else if (expiresAt !== undefined && expiresAt * 1000 <= now) this.cutResponse(o, `its ${o.ctx.identity?.via === 'bearer' ? 'token' : 'session'} expired`);
      else if (signedOut(live, o.ctx)) this.cutResponse(o, SIGNED_OUT);
    }
  }

  /**
   * A response that has run for a re-check interval meets its app's access stages again, as an
   * open WebSocket does: an SSE stream opened inside a time window or a sign-in frequency would
   * otherwise run on after the rule stopped holding, for as long as the app keeps it open.
   */
  private async recheckLongResponses(live: Generation): Promise<void> {
    for (const o of this.longResponses()) {
      const app = live.apps.get(o.ctx.app.name);
      if (!app) continue; // a removed app is sweepLongResponses' work
      const why = await refusalOf(app, o.ctx);
      if (!why || o.res.destroyed) continue;
      // (its own log line and audit record, written when it closes, carry the reason)
      this.cutResponse(o, `its access rules no longer allow it (${why})`);
    }
  }

  /** App responses still running that began a re-check interval ago or more (a list: passes await between them). */
  private longResponses(): LongResponse[] {
    const before = Date.now() - this.recheckMs;
    const out: LongResponse[] = [];
    for (const o of this.answering.values()) if (o?.res && o.ctx && o.gen && o.ctx.startedAt <= before && !o.res.destroyed) out.push(o as LongResponse);
    return out;
  }

  private cutResponse(o: HeldOutcome, why: string): void {
    this.log.info({ correlationId: o.ctx!.id, app: o.ctx!.app.name, user: o.ctx!.identity?.user }, `response cut: ${why}`);
    o.reasons = [...(o.reasons ?? []), `response cut: ${why}`];
    o.res!.destroy();
  }

  private closeWebSocketsWhere(match: (tag: UpgradeTag) => boolean, why: string): void {
    for (const [socket, tag] of this.upgraded) if (tag && match(tag)) this.closeWebSocket(socket, tag, why);
  }

  private closeWebSocket(socket: Duplex, tag: UpgradeTag, why: string, reasons?: string[]): void {
    this.log.info({ correlationId: tag.ctx.id, app: tag.app, user: tag.ctx.identity?.user, reasons }, `WebSocket closed: ${why}`);
    // (out of the re-checks, reloads and sign-outs: it is closing, and said why once)
    this.upgraded.delete(socket);
    closeWebSocket(socket, CLOSE_POLICY_VIOLATION, why.replace(/^its /, ''));
  }

  /**
   * A WebSocket that is through: tagged for reloads, sign-out and the periodic
   * access re-check, and cut when the session or token that let it in expires.
   */
  trackWebSocket(socket: Duplex, ctx: RequestContext, app: string, fingerprint: string | undefined, timeoutMs: number): void {
    const tag: UpgradeTag = { app, fingerprint, ctx };
    this.upgraded.set(socket, tag);
    watchWebSocketStall(socket, timeoutMs, (stall) => {
      const why = stall === 'app' ? `the app read none of the client's bytes for ${timeoutMs / 1000} s` : `the client took none of the app's bytes for ${timeoutMs / 1000} s`;
      this.log.warn({ correlationId: ctx.id, app, user: ctx.identity?.user }, `WebSocket closed: ${why}`);
      this.upgraded.delete(socket);
      // A client that takes nothing would not read a close frame either.
      if (stall === 'client') return void socket.destroy();
      closeWebSocket(socket, CLOSE_GOING_AWAY, 'the app stopped reading');
    });
    // A reload or sign-out while the app was deciding passed this socket by (it had no tag
    // yet): the live generation and the revocations decide now, as they would have then.
    const live = this.holder.current;
    if (!live || live.accessFingerprint(app) !== fingerprint) return this.closeWebSocket(socket, tag, STALE_ACCESS);
    if (signedOut(live, ctx)) return this.closeWebSocket(socket, tag, SIGNED_OUT);
    this.startRechecks();
    const expiresAt = ctx.identity?.expiresAt;
    if (expiresAt === undefined) return;
    const left = Math.max(0, expiresAt * 1000 - Date.now());
    if (left >= 2 ** 31 - 1) return; // beyond what a timer can hold (~24 days)
    const timer = setTimeout(() => this.closeWebSocket(socket, tag, `its ${ctx.identity?.via === 'bearer' ? 'token' : 'session'} expired`), left).unref();
    socket.once('close', () => clearTimeout(timer));
  }
}

/**
 * A reload that publishes another app where a channel's path was (a new app on `/chat/` under the
 * root app) hands that path to the new app's rules; the channel was let in under the old app's,
 * whose own entry did not change.
 */
function rerouted(gen: Generation, ctx: RequestContext): boolean {
  return gen.router.match(ctx.host, ctx.path)?.target.name !== ctx.app.name;
}

/** Whether the session that let this WebSocket in has been signed out since. */
function signedOut(gen: Generation, ctx: RequestContext): boolean {
  const id = ctx.identity?.sessionId;
  return id !== undefined && sessionSignedOut(gen.config, id);
}

interface UpgradeTag {
  readonly app: string;
  /** the app's access fingerprint when it was let in */
  readonly fingerprint: string | undefined;
  /** the upgrade request as the stages saw it (correlation id, identity), to run the access stages on again */
  readonly ctx: RequestContext;
}

/** Why the app's access stages now refuse this request, or undefined when they all let it through. */
async function refusalOf(app: CompiledApp, ctx: RequestContext): Promise<string | undefined> {
  for (const stage of app.stages) {
    if (stage.kind !== 'access') continue;
    // A stage that never decides would hold this pass, and every later one (they do not stack),
    // for good: like a request, it gets the app's backendTimeout, and silence counts as a refusal.
    let timer: NodeJS.Timeout | undefined;
    const silence = new Promise<'silent'>((r) => (timer = setTimeout(() => r('silent'), app.timeoutMs)));
    try {
      const d = await Promise.race([Promise.resolve(stage.run(ctx)), silence]);
      if (d === 'silent') return `${stage.name}: no decision within ${app.timeoutMs / 1000} s`;
      if (d.kind !== 'continue') return `${stage.name}: ${(d.reasons ?? []).join('; ') || d.kind}`;
    } catch (e) {
      return `${stage.name} failed: ${(e as Error).message}`;
    } finally {
      clearTimeout(timer);
    }
  }
  return undefined;
}
