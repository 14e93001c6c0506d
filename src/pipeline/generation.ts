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
    for (const app of this.apps.values()) {
      for (const s of app.stages) {
        try {
          await s.dispose?.();
        } catch (e) {
          this.log.warn({ err: e, app: app.name, stage: s.name }, 'stage dispose failed');
        }
      }
      await app.upstream.close().catch((e) => this.log.warn({ err: e, app: app.name }, 'upstream close failed'));
    }
    this.log.debug({ generation: this.id }, 'generation disposed');
  }
}

/** Holds the live generation; `current` is read once per request. */
export class GenerationHolder {
  current?: Generation;

  swap(next: Generation): Generation | undefined {
    const old = this.current;
    this.current = next;
    if (old) void old.retire();
    return old;
  }
}
