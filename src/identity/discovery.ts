/**
 * The gateway as an OpenID Connect client (openid-client 6). Discovery runs
 * once per generation and is cached; while the provider cannot be reached the
 * gateway answers 503 and tries again after a short pause, never crashes and
 * never lets anyone through.
 */
import * as oidc from 'openid-client';
import type { Logger } from 'pino';
import { DrawbridgeError } from '../errors.js';
import { ProviderAnswerTooLarge, ProviderAnswerUnusable, ProviderNoAnswer, providerFetch } from './providerFetch.js';

export class ProviderUnavailableError extends DrawbridgeError {
  constructor(issuer: string, cause: string, code = 'ERR_IDP_UNAVAILABLE', message = `the identity provider ${issuer} cannot be reached: ${cause}`) {
    super(code, message, { issuer });
  }
}

/**
 * The provider answered, with a discovery document the gateway cannot use: an issuer that does
 * not match (another tenant, Entra's v1 issuer for a v2 one), a 404, an HTML page, a missing
 * endpoint. Users still get the 503 of an outage, but it is a configuration to fix, and was
 * logged as "cannot be reached" though the provider had answered.
 */
export class DiscoveryUnusableError extends ProviderUnavailableError {
  constructor(issuer: string, cause: string) {
    super(issuer, cause, 'ERR_IDP_DISCOVERY_UNUSABLE', `the discovery document of the identity provider ${issuer} cannot be used: ${cause} (check identity.issuer)`);
  }
}

/**
 * The provider refused the gateway itself at its token endpoint: a wrong or expired client
 * secret (Entra's expire after two years at most), a client id it does not know, or a client
 * not allowed the authorization code grant. No user can fix that by signing in again.
 */
export class ClientRefusedError extends DrawbridgeError {
  constructor(issuer: string, error: string) {
    super('ERR_IDP_CLIENT_REFUSED', `the identity provider ${issuer} refused the gateway's client credentials (${error}): check identity.clientId and identity.clientSecret`, { issuer, error });
  }
}

const CLIENT_ERRORS = new Set(['invalid_client', 'unauthorized_client']);

/**
 * The token endpoint's OAuth error when it names the client as the problem. openid-client
 * reports a body error as ResponseBodyError, and a 401 with a WWW-Authenticate challenge
 * (how RFC 6749 5.2 answers a failed client authentication) as a list of challenges.
 */
export function clientRefusal(e: unknown): string | undefined {
  const err = e as { code?: string; error?: unknown; cause?: unknown; status?: number };
  if (err?.code === 'OAUTH_RESPONSE_BODY_ERROR' && typeof err.error === 'string' && CLIENT_ERRORS.has(err.error)) return err.error;
  if (err?.code === 'OAUTH_WWW_AUTHENTICATE_CHALLENGE' && Array.isArray(err.cause)) {
    for (const c of err.cause as { parameters?: { error?: unknown } }[]) {
      const named = c?.parameters?.error;
      if (typeof named === 'string' && CLIENT_ERRORS.has(named)) return named;
    }
    // a 401 with a challenge and no error named is still the client's authentication failing
    if (err.status === 401) return 'invalid_client';
  }
  return undefined;
}

/** `e` and its causes, innermost last (openid-client wraps what its fetch throws). */
function causes(e: unknown): unknown[] {
  const chain: unknown[] = [];
  for (let c = e; c && typeof c === 'object' && chain.length < 6; c = (c as { cause?: unknown }).cause) chain.push(c);
  return chain;
}

/** What went wrong, in the words of our own fetch when it was that (openid-client's wrapper says "something went wrong"). */
function causeText(e: unknown): string {
  const ours = causes(e).find((c) => c instanceof ProviderNoAnswer || c instanceof ProviderAnswerTooLarge || c instanceof ProviderAnswerUnusable);
  return ((ours ?? e) as Error).message;
}

/**
 * A request to the provider (discovery, the token endpoint) that got no complete answer
 * (refused, reset, cut short, DNS, the 5 s limit: providerFetch.ts), an answer over 1 MiB
 * (something on the provider's path, not a document to parse), a 5xx or a 429: an outage, not
 * a verdict on the request.
 */
function providerOutage(e: unknown): boolean {
  const err = e as { code?: string; cause?: unknown };
  if (causes(e).some((c) => c instanceof ProviderNoAnswer || c instanceof ProviderAnswerTooLarge)) return true;
  return err?.code === 'OAUTH_RESPONSE_IS_NOT_CONFORM' && err.cause instanceof Response && (err.cause.status >= 500 || err.cause.status === 429);
}

/** the token endpoint's OAuth errors that say "later" (RFC 6749 5.2 leaves them to providers: Entra sends both) */
const LATER_ERRORS = new Set(['temporarily_unavailable', 'server_error']);

/**
 * Why the token endpoint's answer is an outage rather than a verdict on this sign-in, or
 * undefined: a provider outage (above); an answer that is no token response at all (a proxy's
 * HTML maintenance page, JSON cut short), which said "could not be verified" and dropped the
 * login cookie though a reload would finish; an OAuth error that asks to be tried later.
 */
function tokenOutage(e: unknown): string | undefined {
  if (providerOutage(e)) return causeText(e);
  const err = e as { code?: string; error?: unknown; cause?: unknown };
  if (err?.code === 'OAUTH_RESPONSE_IS_NOT_JSON' && err.cause instanceof Response) return `the token endpoint answered ${err.cause.status} with ${err.cause.headers.get('content-type') ?? 'no content-type'}, not a token response`;
  if (err?.code === 'OAUTH_PARSE_ERROR' && causes(e).some((c) => /"response" body as JSON/.test(String((c as Error).message)))) return 'the token endpoint answered with a body that is not JSON';
  if (err?.code === 'OAUTH_RESPONSE_BODY_ERROR' && typeof err.error === 'string' && LATER_ERRORS.has(err.error)) return tokenRefusal(e);
  return undefined;
}

/** A sign-in the token endpoint or the ID token check refused, for the log: the provider's error code when it gave one. */
export function tokenRefusal(e: unknown): string {
  const err = e as { code?: string; error?: unknown; error_description?: unknown; status?: unknown };
  if (err?.code !== 'OAUTH_RESPONSE_BODY_ERROR' || typeof err.error !== 'string') return causeText(e);
  return `the token endpoint answered ${String(err.status)} ${err.error}${typeof err.error_description === 'string' ? `: ${err.error_description.slice(0, 300)}` : ''}`;
}

export interface OidcClientOptions {
  issuer: string;
  clientId: string;
  clientSecret?: string;
  clockToleranceSec: number;
  /** a failed discovery is retried after this long */
  retryMs?: number;
}

/** http is allowed only for an issuer on this machine (the embedded provider, tests). */
export function isLoopbackHttp(url: URL): boolean {
  if (url.protocol !== 'http:') return false;
  const h = url.hostname;
  return h === 'localhost' || h.endsWith('.localhost') || h === '[::1]' || /^127\.\d+\.\d+\.\d+$/.test(h);
}

/**
 * The endpoints sign-in and bearer verification use, checked when the document arrives: a
 * document without a usable one sent users to sign in at the provider and then answered its
 * callback with 401 (a loop, the log pointing at the user), or every page with 500. Now it is
 * the provider's outage, 503, with the field named in the log.
 */
function checkEndpoints(meta: Record<string, unknown>, issuer: URL): void {
  for (const field of ['authorization_endpoint', 'token_endpoint', 'jwks_uri']) {
    const value = meta[field];
    let url: URL | undefined;
    try {
      url = typeof value === 'string' ? new URL(value) : undefined;
    } catch {
      url = undefined;
    }
    if (!url || !(url.protocol === 'https:' || (isLoopbackHttp(url) && isLoopbackHttp(issuer)))) {
      throw new Error(`the discovery document's ${field} is ${value === undefined ? 'missing' : `not an https URL (${JSON.stringify(value).slice(0, 100)})`}`);
    }
  }
}

export class OidcClient {
  private pending?: Promise<oidc.Configuration>;
  /** the last configuration discovered, in use until another is */
  private held?: oidc.Configuration;
  private rediscovering = false;
  private failedAt = 0;
  private lastFailure?: Error;

  constructor(readonly opts: OidcClientOptions) {
    const u = new URL(opts.issuer);
    if (u.protocol !== 'https:' && !isLoopbackHttp(u)) throw new Error(`identity.issuer must be https (http only for a loopback issuer): ${opts.issuer}`);
  }

  /** The discovered configuration; throws ProviderUnavailableError while the provider is down and none is held. */
  async configuration(): Promise<oidc.Configuration> {
    if (this.held) return this.held;
    if (!this.pending) {
      // (within retryMs of a failure, the failure itself again: each request's log line says why)
      if (Date.now() - this.failedAt < (this.opts.retryMs ?? 5000) && this.lastFailure) throw this.lastFailure;
      this.pending = this.discover().then(
        (c) => (this.held = c),
        (e: Error) => {
          this.pending = undefined;
          this.failedAt = Date.now();
          this.lastFailure = e;
          throw e;
        },
      );
    }
    return this.pending;
  }

  /**
   * Discovers again for a new config generation while the configuration held stays in use: a
   * changed document is taken up, and one that cannot be had keeps the one held (the provider
   * down during an unrelated reload made every bearer token 503, and each waited 5 s first
   * when the provider hung). Nothing held: nothing to do, the first request discovers.
   */
  rediscover(log?: Logger): void {
    if (!this.held || this.rediscovering) return;
    this.rediscovering = true;
    this.discover()
      .then(
        (c) => void (this.held = c),
        (e: Error) => log?.warn({ issuer: this.opts.issuer, reason: e.message }, "discovering the identity provider again after the reload failed: the discovery document held stays in use"),
      )
      .finally(() => (this.rediscovering = false));
  }

  private async discover(): Promise<oidc.Configuration> {
    const issuer = new URL(this.opts.issuer);
    const metadata: Partial<oidc.ClientMetadata> = { [oidc.clockTolerance]: this.opts.clockToleranceSec };
    if (this.opts.clientSecret) metadata.client_secret = this.opts.clientSecret;
    const auth = this.opts.clientSecret ? oidc.ClientSecretBasic(this.opts.clientSecret) : oidc.None();
    try {
      const c = await oidc.discovery(issuer, this.opts.clientId, metadata, auth, {
        execute: isLoopbackHttp(issuer) ? [oidc.allowInsecureRequests] : [],
        // discovery, and the token endpoint through the configuration it returns
        [oidc.customFetch]: providerFetch,
      });
      checkEndpoints(c.serverMetadata(), issuer);
      return c;
    } catch (e) {
      if (providerOutage(e)) throw new ProviderUnavailableError(this.opts.issuer, causeText(e));
      throw new DiscoveryUnusableError(this.opts.issuer, causeText(e));
    }
  }

  /**
   * Discovers now, in the background, when no document is held: a provider the gateway cannot
   * use is in the log at start and at each reload, where it was seen first at a user's
   * sign-in (a 503 with nothing said before).
   */
  checkNow(log?: Logger): void {
    if (!log || this.held || this.pending) return;
    this.configuration().catch((e: Error) => {
      if (e instanceof DiscoveryUnusableError) log.error({ issuer: this.opts.issuer, code: e.code, reason: e.message }, 'identity.issuer: the discovery document cannot be used; sign-in answers 503 until it is fixed');
      else log.warn({ issuer: this.opts.issuer, code: (e as { code?: string }).code, reason: e.message }, 'the identity provider cannot be reached yet; sign-in answers 503 until it can');
    });
  }

  /** The JWKS URI from discovery, for bearer tokens. */
  async jwksUri(): Promise<string> {
    const c = await this.configuration();
    const uri = c.serverMetadata().jwks_uri;
    if (!uri) throw new ProviderUnavailableError(this.opts.issuer, 'the provider publishes no jwks_uri');
    return uri;
  }

  async authorizationUrl(params: { redirectUri: string; scope: string; state: string; nonce: string; codeVerifier: string; acrValues?: string; maxAge?: number; prompt?: string }): Promise<URL> {
    const c = await this.configuration();
    const p: Record<string, string> = {
      redirect_uri: params.redirectUri,
      scope: params.scope,
      response_type: 'code',
      state: params.state,
      nonce: params.nonce,
      code_challenge: await oidc.calculatePKCECodeChallenge(params.codeVerifier),
      code_challenge_method: 'S256',
    };
    if (params.acrValues) p.acr_values = params.acrValues;
    if (params.maxAge !== undefined) p.max_age = String(params.maxAge);
    if (params.prompt) p.prompt = params.prompt;
    return oidc.buildAuthorizationUrl(c, p);
  }

  /** Code -> tokens; openid-client checks state, PKCE, and the ID token (iss, aud, nonce, signature, lifetime). */
  async finishSignIn(currentUrl: URL, checks: { state: string; nonce: string; codeVerifier: string; maxAge?: number }): Promise<{ claims: Record<string, unknown>; idToken: string }> {
    const c = await this.configuration();
    let tokens: Awaited<ReturnType<typeof oidc.authorizationCodeGrant>>;
    try {
      tokens = await oidc.authorizationCodeGrant(c, currentUrl, {
        expectedState: checks.state,
        expectedNonce: checks.nonce,
        pkceCodeVerifier: checks.codeVerifier,
        idTokenExpected: true,
        ...(checks.maxAge !== undefined ? { maxAge: checks.maxAge } : {}),
      });
    } catch (e) {
      const outage = tokenOutage(e);
      if (outage) throw new ProviderUnavailableError(this.opts.issuer, `token request: ${outage}`);
      const refused = clientRefusal(e);
      if (refused) throw new ClientRefusedError(this.opts.issuer, refused);
      throw e;
    }
    const claims = tokens.claims();
    if (!claims || !tokens.id_token) throw new Error('the provider returned no ID token');
    return { claims: { ...claims }, idToken: tokens.id_token };
  }

  async endSessionUrl(postLogoutRedirectUri: string): Promise<URL | undefined> {
    let c: oidc.Configuration;
    try {
      c = await this.configuration();
    } catch {
      return undefined;
    }
    if (!c.serverMetadata().end_session_endpoint) return undefined;
    return oidc.buildEndSessionUrl(c, { client_id: this.opts.clientId, post_logout_redirect_uri: postLogoutRedirectUri });
  }
}

const kept = new Map<string, { same: string; client: OidcClient }>();

/**
 * The client for the gateway whose state is in `stateDir`, shared by its config generations
 * while identity.issuer, clientId, clientSecret and clockTolerance stay the same (as the
 * provider's keys are, issuerKeys.ts): a reload starts from the discovery document held, and
 * discovers again behind it.
 */
export function keptOidcClient(stateDir: string, opts: OidcClientOptions, log?: Logger): OidcClient {
  const where = `${stateDir}\n${opts.issuer}`;
  const same = JSON.stringify([opts.clientId, opts.clientSecret ?? '', opts.clockToleranceSec, opts.retryMs ?? 0]);
  const k = kept.get(where);
  if (k?.same === same) {
    k.client.rediscover(log);
    k.client.checkNow(log);
    return k.client;
  }
  const client = new OidcClient(opts);
  kept.set(where, { same, client });
  client.checkNow(log);
  return client;
}
