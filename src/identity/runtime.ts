/**
 * Everything identity needs for one generation, built once from the validated
 * config: the OIDC client (discovery cached), the cookie sealers, the bearer
 * verifiers per audience, and per-app cookie settings. Found again by the
 * gateway's own endpoints through the generation's config object.
 */
import type { Logger } from 'pino';
import { createHash } from 'node:crypto';
import { parseDuration } from '../config/duration.js';
import type { Config } from '../config/load.js';
import { DEFAULT_ALGORITHMS, DEFAULT_SCOPES, type AppConfig } from '../config/schema.js';
import { BearerVerifier } from './bearer.js';
import { issuerKeys, type IssuerKeyGetter } from './issuerKeys.js';
import { ASSERTION_CLAIMS, POLICY_CLAIMS, type ClaimNames } from './claims.js';
import { keptOidcClient, type OidcClient } from './discovery.js';
import { CookieSealer } from './sessionCookie.js';
import { CredentialCache } from './credentialCache.js';
import type { JWTVerifyGetKey } from 'jose';
import { SessionRevocations } from './revocations.js';
import { externalUrlOf, prefixOf, type Router } from '../gateway/router.js';

export const LOGIN_COOKIE = 'drawbridge_login';
export const DEFAULT_SESSION_COOKIE = 'drawbridge_session';
export const CALLBACK_PATH = '/.drawbridge/callback';
export const SIGN_OUT_PATH = '/.drawbridge/sign-out';
export const SIGNED_OUT_PATH = '/.drawbridge/signed-out';
export const SIGN_IN_PATH = '/.drawbridge/sign-in';
export const ME_PATH = '/.drawbridge/me';
export const LOGIN_TTL_SEC = 600;

export interface AppIdentity {
  name: string;
  externalUrl: string;
  /** path prefix ending in '/' */
  prefix: string;
  cookieName: string;
  lifetimeSec: number;
  httpOnly: boolean;
  /** as configured; effective only on https */
  secure: boolean;
  persistent: boolean;
  /** the session ends no later than the sign-in's ID token (session.cookie.endWithIdToken) */
  endWithIdToken: boolean;
  sameSite: 'lax' | 'strict' | 'none';
  audience?: string;
  requiredScopes: readonly string[];
  /** forward the client's bearer token to the app (default off) */
  forwardToken: boolean;
}

export class IdentityRuntime {
  readonly client: OidcClient;
  readonly sessions: CookieSealer;
  readonly logins: CookieSealer;
  readonly claimNames: ClaimNames;
  readonly scopes: string;
  readonly algorithms: readonly string[];
  readonly clockToleranceSec: number;
  readonly apps = new Map<string, AppIdentity>();
  /** groups that any rule in the config refers to, lower-cased: kept when a session must shrink */
  readonly referencedGroups: ReadonlySet<string>;
  /** names a trimmed session's groups by the config they were trimmed for (session.ts) */
  readonly referencedGroupsDigest: string;
  /** identity.issuer and clientId, as a session's binding names them (session.ts bindingOf) */
  readonly signedInBy: string;
  /**
   * identity.claims and identity.scopes when they differ from the defaults (undefined for the
   * defaults, so sessions made before it existed match them): a session keeps the user and groups
   * those claims, asked for with those scopes, gave at sign-in (session.ts staleness). A scope
   * added by a reload (profile, which carries the groups) brings claims an older session lacks.
   */
  readonly claimSourcesKey?: string;
  /**
   * The claims a browser session keeps: those the built-in rules read, and every claim the config
   * names (policy claim conditions, the compliant-device claim, identity headers), so a rule reads
   * the same claims from a session as from a bearer token.
   */
  readonly sessionClaims: readonly string[];
  /** those of sessionClaims only this config reads (beyond POLICY_CLAIMS): a session records them, and is stale without one */
  readonly configClaims: readonly string[];
  /**
   * Session cookies already decrypted, by their exact value (at most a minute; the
   * expiry and binding are still checked on every request). One per generation, so
   * a secret removed by a reload takes effect at once.
   */
  readonly openedSessions = new CredentialCache<object>(OPENED_SESSIONS_MAX);
  private jwks?: IssuerKeyGetter;
  private readonly verifiers = new Map<string, BearerVerifier>();
  /** each app's verifier once made, found without building the audience key */
  private readonly verifierOfApp = new WeakMap<AppIdentity, BearerVerifier>();

  /** sessions ended by sign-out; shared by every generation with this stateDir */
  readonly revocations: SessionRevocations;

  constructor(
    readonly config: Config,
    readonly now: () => number,
    private readonly stateDir: string,
    readonly log?: Logger,
  ) {
    this.revocations = SessionRevocations.at(stateDir);
    const id = config.identity;
    const session = config.session;
    if (!id) throw new Error('preAuth oidc needs the identity: section');
    if (!session) throw new Error('preAuth oidc needs the session: section');
    this.clockToleranceSec = Math.round((parseDuration(id.clockTolerance ?? '60s') ?? 60_000) / 1000);
    this.client = keptOidcClient(stateDir, { issuer: id.issuer, clientId: id.clientId, clientSecret: id.clientSecret, clockToleranceSec: this.clockToleranceSec }, log);
    for (const s of session.secrets) if (s.length < 32) throw new Error('a session secret needs at least 32 characters');
    this.sessions = new CookieSealer(session.secrets, 'session');
    this.logins = new CookieSealer(session.secrets, 'login');
    this.claimNames = { user: id.claims?.user, groups: id.claims?.groups ?? 'groups' };
    this.scopes = (id.scopes ?? DEFAULT_SCOPES).join(' ');
    if (this.claimNames.user !== undefined || this.claimNames.groups !== 'groups' || this.scopes !== DEFAULT_SCOPES.join(' ')) {
      this.claimSourcesKey = createHash('sha256').update(`${this.claimNames.user ?? ''}\n${this.claimNames.groups}\n${this.scopes}`).digest('base64url').slice(0, 16);
    }
    this.algorithms = id.algorithms ?? [...DEFAULT_ALGORITHMS];
    const groups = new Set<string>();
    // lower case: policy group conditions ignore case, so the session must keep `finance` for a rule on `FINANCE`
    for (const a of config.apps as AppConfig[]) for (const g of a.assignment?.groups ?? []) groups.add(g.toLowerCase());
    for (const p of Object.values((config as { policies?: Record<string, { when?: { groups?: string[] } }> }).policies ?? {})) for (const g of p.when?.groups ?? []) groups.add(g.toLowerCase());
    this.referencedGroups = groups;
    this.referencedGroupsDigest = createHash('sha256').update([...groups].sort().join('\n')).digest('base64url').slice(0, 16);
    this.signedInBy = createHash('sha256').update(`${id.issuer}\n${id.clientId}`).digest('base64url').slice(0, 16);
    this.sessionClaims = Object.freeze([...new Set([...POLICY_CLAIMS, ...claimsReadBy(config)])]);
    this.configClaims = Object.freeze(this.sessionClaims.filter((k) => !POLICY_CLAIMS.includes(k)));
  }

  /** the route table of the generation built from this config (compile.ts hands it over once complete) */
  routes?: Router<{ name: string }>;

  /**
   * The app the gateway routes `host` (lower-case, no port) and `path` to under this config: on
   * one host an app under a longer prefix takes its paths from one at the root.
   */
  appNameAt(host: string, path: string): string | undefined {
    return this.routes?.match(host, path)?.target.name;
  }

  /** An app's identity (the oidc stage's), or the portal's (portal.ts), which has no entry of its own in apps:. */
  registerApp(app: Pick<AppConfig, 'name' | 'externalUrl' | 'cookies' | 'audience' | 'requiredScopes' | 'forwardBearerToken'>): AppIdentity {
    const base = { ...(this.config.session?.cookie ?? {}), ...(app.cookies ?? {}) };
    const prefix = prefixOf(externalUrlOf(app.externalUrl));
    const name = base.name ?? DEFAULT_SESSION_COOKIE;
    const ai: AppIdentity = Object.freeze({
      name: app.name,
      externalUrl: app.externalUrl,
      prefix,
      cookieName: name,
      lifetimeSec: Math.round((parseDuration(base.lifetime ?? '8h') ?? 8 * 3600_000) / 1000),
      httpOnly: base.httpOnly ?? true,
      secure: base.secure ?? true,
      persistent: base.persistent ?? false,
      endWithIdToken: base.endWithIdToken ?? false,
      sameSite: base.sameSite ?? 'lax',
      audience: app.audience,
      requiredScopes: Object.freeze([...(app.requiredScopes ?? [])]),
      forwardToken: app.forwardBearerToken === true,
    });
    this.apps.set(app.name, ai);
    return ai;
  }

  /** the app's verifier if bearerVerifier() has made or found it; undefined until then */
  bearerVerifierNow(app: AppIdentity): BearerVerifier | undefined {
    return this.verifierOfApp.get(app);
  }

  /** One verifier per audience, all sharing the issuer's JWKS cache. */
  async bearerVerifier(app: AppIdentity): Promise<BearerVerifier> {
    const known = this.bearerVerifierNow(app);
    if (known) return known;
    const audience = app.audience!;
    const key = audience + '\n' + app.requiredScopes.join(' ');
    let v = this.verifiers.get(key);
    if (!v) {
      this.jwks ??= await this.issuerKeys();
      v = new BearerVerifier(this.jwks, {
        issuer: (await this.client.configuration()).serverMetadata().issuer,
        audience,
        algorithms: this.algorithms,
        clockToleranceSec: this.clockToleranceSec,
        requiredScopes: app.requiredScopes,
        claimNames: this.claimNames,
        clientId: this.config.identity!.clientId,
        now: this.now,
      });
      this.verifiers.set(key, v);
    }
    this.verifierOfApp.set(app, v);
    return v;
  }

  /** The JWKS used for ID tokens at the callback (same cache as bearer tokens). */
  async idTokenKeys(): Promise<JWTVerifyGetKey> {
    this.jwks ??= await this.issuerKeys();
    return this.jwks.forSignIn;
  }

  /** The provider's keys, kept across reloads of this gateway (issuerKeys.ts). */
  private async issuerKeys(): Promise<IssuerKeyGetter> {
    return issuerKeys(this.stateDir, await this.client.jwksUri(), this.algorithms, this.log);
  }
}

const runtimes = new WeakMap<Config, IdentityRuntime>();

/** The runtime of this config (generation), created on first use. */
export function runtimeFor(config: Config, now: () => number, stateDir: string, log?: Logger): IdentityRuntime {
  let r = runtimes.get(config);
  if (!r) {
    r = new IdentityRuntime(config, now, stateDir, log);
    runtimes.set(config, r);
  }
  return r;
}

export function existingRuntime(config: Config): IdentityRuntime | undefined {
  return runtimes.get(config);
}

/** session cookies kept opened at the most (CredentialCache: the oldest opened goes first) */
const OPENED_SESSIONS_MAX = 10_000;

/** Identity fields an identity header may name besides claims (they are not claims of the token). */
const IDENTITY_FIELDS = new Set(['user', 'groups']);

/** Every claim name the config reads from an identity. */
function claimsReadBy(config: Config): string[] {
  const names: string[] = [];
  const c = config as {
    identity?: { compliantDevice?: { claim?: string } };
    policies?: Record<string, { when?: { claims?: Record<string, unknown> } }>;
  };
  names.push(c.identity?.compliantDevice?.claim ?? 'device_compliant');
  for (const p of Object.values(c.policies ?? {})) names.push(...Object.keys(p.when?.claims ?? {}));
  for (const a of config.apps as AppConfig[]) {
    const headers = (a.headers as { identity?: Record<string, string> } | undefined)?.identity ?? {};
    for (const field of Object.values(headers)) if (!IDENTITY_FIELDS.has(field)) names.push(field);
    // (without them a session's assertion lacked the roles the same user's bearer token gave the app)
    if ((a.headers as { assertion?: string } | undefined)?.assertion) names.push(...ASSERTION_CLAIMS);
  }
  return names;
}
