/**
 * The stage and plugin contract. Built-in modes and third-party plugins are
 * written against exactly this file, so it is kept small and stable
 * (`PLUGIN_API_VERSION` changes only with a migration note).
 */
import type { IncomingHttpHeaders } from 'node:http';
import type { Logger } from 'pino';

export const PLUGIN_API_VERSION = 1;

/** Stages run in this order of kinds, whatever order they were declared in. */
export const STAGE_KINDS = ['preauth', 'access', 'sso', 'headers'] as const;
export type StageKind = (typeof STAGE_KINDS)[number];

export interface Identity {
  /** what the gateway calls the user (identity.claims.user) */
  readonly user: string;
  readonly groups: readonly string[];
  /** true when the provider said the group list was cut short (overage) */
  readonly groupsIncomplete?: boolean;
  /** how this request proved who it is */
  readonly via: 'session' | 'bearer';
  /** every claim the policies may look at (amr, acr, auth_time, email, device claims...) */
  readonly claims: Readonly<Record<string, unknown>>;
  /** epoch seconds after which this proof (session or token) is no longer valid */
  readonly expiresAt?: number;
  /** a browser session's id: what sign-out revokes (opaque) */
  readonly sessionId?: string;
}

/** What a stage may read about the request. The path is the normalized one that is forwarded. */
export interface RequestContext {
  readonly id: string;
  readonly method: string;
  readonly path: string;
  /**
   * Parameters of the last path segment (`;jsessionid=...`), or ''. Forwarded right
   * after the path; routing and rules see the path without them, as servlet
   * containers do (parameters on other segments are refused).
   */
  readonly pathParams: string;
  /** the query string including the leading '?', or '' */
  readonly search: string;
  readonly host: string;
  readonly protocol: 'http' | 'https';
  readonly headers: Readonly<IncomingHttpHeaders>;
  /** the client as the gateway trusts it (peer, or X-Forwarded-For through trusted proxies) */
  readonly clientIp: string;
  readonly peerIp: string;
  readonly upgrade: boolean;
  readonly startedAt: number;
  readonly app: { readonly name: string; readonly externalUrl: string };
  /** set by the gateway from a preauth stage's decision; later stages see it (assigning it fails the request) */
  readonly identity?: Identity;
  /**
   * Headers to send upstream, for reading: stages add to it through their decisions'
   * setHeaders, which are checked (a name only the gateway sets is a 500). A name written here
   * directly is not checked, and one the gateway owns is replaced before the request leaves.
   */
  readonly upstreamHeaders: Record<string, string | string[]>;
}

export type Decision =
  | { readonly kind: 'continue'; readonly identity?: Identity; readonly setHeaders?: Readonly<Record<string, string | string[]>>; readonly reasons?: readonly string[] }
  | {
      readonly kind: 'deny';
      readonly status: number;
      /** full reasons: audit log and logs */
      readonly reasons: readonly string[];
      /** a reason safe to show the user; defaults to the status text */
      readonly publicReason?: string;
      readonly headers?: Readonly<Record<string, string | string[]>>;
      /**
       * The user could pass after a stronger or fresher sign-in. A browser
       * (identity via session) is sent back to the provider with these; an API
       * client gets the deny as it is (the stage sets WWW-Authenticate).
       */
      readonly stepUp?: StepUp;
      /**
       * The deny rests on what the sign-in said about the user (assignment by group): a browser
       * session is offered a link that signs in again, which replaces the session with what the
       * provider says now. A session keeps its groups for its lifetime, so a user added to the
       * group at the provider got this deny until the session ended.
       */
      readonly signInAgain?: boolean;
    }
  | { readonly kind: 'redirect'; readonly location: string; readonly status?: 302 | 303 | 307; readonly headers?: Readonly<Record<string, string | string[]>>; readonly reasons?: readonly string[] }
  | { readonly kind: 'respond'; readonly status: number; readonly headers?: Readonly<Record<string, string | string[]>>; readonly body?: string | Buffer; readonly reasons?: readonly string[] };

export interface StepUp {
  /** space-separated acr values to ask the provider for (e.g. for MFA) */
  readonly acrValues?: string;
  /** seconds: the sign-in must be at most this old */
  readonly maxAge?: number;
  readonly prompt?: 'login';
}

export interface Stage {
  readonly name: string;
  readonly kind: StageKind;
  /** May return synchronously: most stages do, and the hot path avoids a microtask for them. */
  run(ctx: RequestContext): Decision | Promise<Decision>;
  /**
   * Request headers (lower case) that must never reach the app from the client,
   * typically the ones this stage sets. The edge drops them, with their `_` and
   * `.` spellings, before any stage runs: strip before set. They are dropped on
   * every app of the config, since one internal server may be published as two
   * apps; `authorization` and `cookie`, the client's own credentials, only on
   * this stage's app.
   */
  readonly stripHeaders?: readonly string[];
  /** Called once the generation that built this stage has no request left. */
  dispose?(): void | Promise<void>;
}

/**
 * What a plugin may use. Deliberately narrow: not the DI container. It has no
 * secrets, HTTP or JWKS helpers, nor a way through the app's connector group
 * (ARCHITECTURE.md plans them): a plugin's own fetch leaves from the gateway host.
 */
export interface PluginContext {
  /** its lines carry `app` already (a field of that name in a call is written a second time) and redact credentials */
  readonly logger: Logger;
  readonly now: () => number;
  readonly app: { readonly name: string; readonly externalUrl: string; readonly internalUrl: string; readonly connectorGroup?: string };
  /** directory of the config file; relative paths in options resolve against it */
  readonly configDir: string;
  readonly stateDir: string;
}

export interface Plugin<Options = Record<string, unknown>> {
  readonly name: string;
  readonly kind: StageKind;
  readonly apiVersion: typeof PLUGIN_API_VERSION;
  readonly description?: string;
  /** JSON Schema (draft 2020-12) of `options`; checked when the config loads, never per request. */
  readonly optionsSchema: Record<string, unknown>;
  create(options: Options, context: PluginContext): Stage | Promise<Stage>;
}

export const CONTINUE: Decision = Object.freeze({ kind: 'continue' });

/** Whether a stage answered later (any thenable, as plugins may return one of their own). */
export function isPendingDecision(d: Decision | Promise<Decision>): d is Promise<Decision> {
  return d !== null && typeof d === 'object' && typeof (d as Promise<Decision>).then === 'function';
}
