/**
 * A Generation is everything compiled from one config. The live one is
 * swapped with a single assignment; the old one is disposed only when the
 * last request that started on it has finished.
 */
import type { Logger } from 'pino';
import type { Config } from '../config/load.js';
import type { CidrSet } from '../config/net.js';
import type { Router } from '../gateway/router.js';
import type { Upstream } from '../gateway/upstream.js';
import { policyNamesFor, type PolicySpec } from '../policy/engine.js';
import { PLUGIN_DEADLINE_DEFAULT_MS, PluginTimeoutError, formatMs, withDeadline } from '../plugins/deadline.js';
import type { Stage } from './stage.js';

export interface CompiledApp {
  readonly name: string;
  readonly externalUrl: string;
  /** origin of the external URL (for rewriting Location headers back) */
  readonly externalOrigin: string;
  readonly externalPrefix: string;
  readonly internalUrl: URL;
  readonly internalPrefix: string;
  /** the Host header the app is sent (internalUrl.host, read once, not per request) */
  readonly internalHost: string;
  /** internalUrl's origin and internalPrefix: what URL translation replaces */
  readonly internalBase: string;
  readonly preAuth: 'oidc' | 'passthrough';
  /** stages in kind order: preauth, access, sso, headers */
  readonly stages: readonly Stage[];
  /** request headers never passed on from the client (identity headers and the like) */
  readonly stripHeaders: ReadonlySet<string>;
  /** this app's identity and assertion headers, lower case with `_` and `.` as `-`: set by its headers stages after every other stage */
  readonly identityHeaders: ReadonlySet<string>;
  /** the gateway's own cookies (any app's session, sign-in state): removed from Cookie */
  readonly isGatewayCookie: (name: string) => boolean;
  readonly timeoutMs: number;
  readonly websockets: boolean;
  readonly translateHeaders: boolean;
  readonly translateBody: boolean;
  readonly upstream: Upstream;
}

export class Generation {
  private inflight = 0;
  private retired = false;
  private disposed?: Promise<void>;
  private resolveDrained?: () => void;
  private readonly fingerprints = new Map<string, string | undefined>();

  constructor(
    readonly id: number,
    readonly config: Config,
    readonly router: Router<CompiledApp>,
    readonly apps: ReadonlyMap<string, CompiledApp>,
    readonly trustedProxies: CidrSet,
    readonly hash: string,
    private readonly log: Logger,
    /** how long one stage's dispose() may take (0: no limit) */
    private readonly disposeTimeoutMs = PLUGIN_DEADLINE_DEFAULT_MS,
  ) {}

  /**
   * Everything an app's access depends on, as one string: its entry, the
   * policies that apply to it, named locations, identity, session, trusted
   * proxies and plugins. A WebSocket outlives the request that opened it; when
   * a reload changes this, the connection is closed so the new rules apply.
   */
  accessFingerprint(appName: string): string | undefined {
    if (this.fingerprints.has(appName)) return this.fingerprints.get(appName);
    const c = this.config;
    const app = c.apps.find((a) => a.name === appName);
    let fp: string | undefined;
    if (app) {
      const policies = (c.policies ?? {}) as Readonly<Record<string, PolicySpec>>;
      const applied = policyNamesFor(app as { name: string; conditionalAccess?: readonly string[] }, policies).map((n) => [n, policies[n]]);
      fp = JSON.stringify([app, applied, c.locations ?? null, c.identity ?? null, c.session ?? null, c.gateway.trustedProxies ?? null, c.plugins ?? null]);
    }
    this.fingerprints.set(appName, fp);
    return fp;
  }

  acquire(): void {
    this.inflight++;
  }

  release(): void {
    if (--this.inflight === 0 && this.retired) this.resolveDrained?.();
  }

  get inFlight(): number {
    return this.inflight;
  }

  /** Stops taking requests (the caller already swapped it out) and disposes once drained. */
  retire(): Promise<void> {
    if (this.disposed) return this.disposed;
    this.retired = true;
    const drained = this.inflight === 0 ? Promise.resolve() : new Promise<void>((r) => (this.resolveDrained = r));
    this.disposed = drained.then(() => this.dispose());
    return this.disposed;
  }

  private async dispose(): Promise<void> {
    const apps = [...this.apps.values()];
    // The upstream pools are the gateway's own: closed whatever the stages' dispose() do.
    await Promise.allSettled([
      disposeStages(
        apps.flatMap((app) => app.stages.map((stage) => ({ app: app.name, stage }))),
        this.log,
        this.disposeTimeoutMs,
      ),
      ...apps.map((app) => app.upstream.close().catch((e) => this.log.warn({ err: e, app: app.name }, 'upstream close failed'))),
    ]);
    this.log.debug({ generation: this.id }, 'generation disposed');
  }
}

/**
 * Calls every stage's dispose(), all at once and each within `timeoutMs` (0: no limit). In turn,
 * one dispose() that never settled kept every later stage (other apps' too) from being disposed,
 * at each reload; one that throws or overruns is logged, and the others go on.
 */
export async function disposeStages(stages: readonly { app: string; stage: Stage }[], log: Logger, timeoutMs: number): Promise<void> {
  await Promise.allSettled(
    stages.map(async ({ app, stage }) => {
      // (also a stage compile refused, whose shape is not to be trusted)
      const dispose = (stage as Partial<Stage> | null)?.dispose;
      if (typeof dispose !== 'function') return;
      try {
        await withDeadline(
          Promise.resolve().then(() => dispose.call(stage)),
          timeoutMs,
          'its dispose()',
        );
      } catch (e) {
        if (e instanceof PluginTimeoutError) log.warn({ app, stage: stage.name, timeoutMs }, `stage ${stage.name} of app ${app}: dispose() did not finish within ${formatMs(timeoutMs)}; what it holds may stay open`);
        else log.warn({ err: e, app, stage: stage.name }, 'stage dispose failed');
      }
    }),
  );
}

/** Holds the live generation; `current` is read once per request. */
export class GenerationHolder {
  current?: Generation;
  /** the gateway is draining: it finishes what it has and takes nothing new (readiness says so) */
  stopping = false;

  swap(next: Generation): Generation | undefined {
    const old = this.current;
    this.current = next;
    if (old) void old.retire();
    return old;
  }
}
