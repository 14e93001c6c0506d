/**
 * Bearer access tokens from native clients and scripts. Everything that can be
 * refused without a key is refused first, from the token's own header: no
 * outbound fetch for alg none, HMAC, embedded keys, key URLs, crit or JWE.
 * Only then is the issuer's JWKS consulted (cached; an unknown kid refreshes
 * it at most once per cooldown).
 */
import { decodeProtectedHeader, errors, jwtVerify, type JWTPayload, type JWTVerifyGetKey } from 'jose';
import type { Identity } from '../pipeline/stage.js';
import { appOnlySignal, identityFromClaims, type ClaimNames } from './claims.js';
import { SIGNATURE_ALGORITHMS } from '../config/schema.js';
import { newIssuerKeys } from './issuerKeys.js';
import { CredentialCache } from './credentialCache.js';

export interface BearerOptions {
  issuer: string;
  /** the app's audience */
  audience: string;
  algorithms: readonly string[];
  clockToleranceSec: number;
  requiredScopes: readonly string[];
  claimNames: ClaimNames;
  /** the gateway's own client id: a token for it is an ID token, not an access token */
  clientId: string;
  now?: () => number;
}

export class BearerError extends Error {
  constructor(
    /** stable, machine-readable: which check failed (safe to show) */
    readonly check: string,
    /** what the client is told */
    readonly publicMessage: string,
    /** more for the log */
    readonly detail?: string,
    /** insufficient_scope (403) or invalid_token (401) */
    readonly oauthError: 'invalid_token' | 'insufficient_scope' = 'invalid_token',
  ) {
    super(`${check}: ${detail ?? publicMessage}`);
  }
}

const ALLOWED_HEADER = new Set(['alg', 'kid', 'typ', 'x5t', 'x5t#S256', 'cty']);
const ACCESS_TOKEN_TYPES = new Set(['jwt', 'at+jwt', 'application/at+jwt']);
/** Text from the unverified token header, as messages may quote it: short, printable ASCII only. */
const shown = (s: string): string => (s.length > 40 ? `${s.slice(0, 40)}...` : s).replace(/[^\x20-\x7e]/g, '?');

/** How long a verified token is remembered (bounded by its own exp). */
export const VERIFIED_CACHE_MS = 60_000;
const VERIFIED_CACHE_MAX = 10_000;

interface Verified {
  identity: Identity;
  payload: JWTPayload;
}

export class BearerVerifier {
  /**
   * Tokens already verified, by their exact text: an API client sends the
   * same token many times, and the signature check dominates the cost. An
   * entry lives at most a minute and never past the token's exp; the whole
   * cache is dropped when the JWKS changes, so a removed key stops working.
   */
  private readonly verified = new CredentialCache<Verified>(VERIFIED_CACHE_MAX);
  private seenKeys: unknown;

  constructor(
    private readonly jwks: JWTVerifyGetKey,
    private readonly opts: BearerOptions,
  ) {
    for (const a of opts.algorithms) if (!SIGNATURE_ALGORITHMS.includes(a)) throw new Error(`identity.algorithms: ${a} is not an asymmetric signature algorithm`);
  }

  /** this very token as verified before, while its cache entry lives; undefined: ask verify() */
  verifiedBefore(token: string): Verified | undefined {
    return this.verified.get(token, this.clock());
  }

  async verify(token: string): Promise<Verified> {
    const hit = this.verifiedBefore(token);
    if (hit) return hit;
    const now = this.clock();
    let result: Verified;
    try {
      result = await this.verifyFully(token);
    } finally {
      this.noticeKeyChange();
    }
    const until = Math.min(now + VERIFIED_CACHE_MS, ((result.payload.exp ?? 0) + this.opts.clockToleranceSec) * 1000);
    if (until > now) this.verified.set(token, result, until);
    return result;
  }

  private clock(): number {
    return this.opts.now?.() ?? Date.now();
  }

  private noticeKeyChange(): void {
    const current = (this.jwks as { jwks?: () => unknown }).jwks?.();
    if (current !== this.seenKeys) {
      this.verified.clear();
      this.seenKeys = current;
    }
  }

  private async verifyFully(token: string): Promise<Verified> {
    const parts = token.split('.');
    if (parts.length === 5) throw new BearerError('format', 'Encrypted tokens (JWE) are not accepted.');
    if (parts.length !== 3 || parts.some((p) => !/^[A-Za-z0-9_-]*$/.test(p) || Buffer.from(p, 'base64url').toString('base64url') !== p)) throw new BearerError('format', 'The bearer token is not a signed JWT.');
    let header: ReturnType<typeof decodeProtectedHeader>;
    try {
      header = decodeProtectedHeader(token);
    } catch {
      throw new BearerError('format', 'The bearer token header cannot be read.');
    }
    // typeof, not String(): ['RS256'] would read as RS256 here, and only jose, after a key fetch, refused it
    const alg = typeof header.alg === 'string' ? header.alg : '';
    if (!this.opts.algorithms.includes(alg)) throw new BearerError('alg', `The token algorithm ${alg ? shown(alg) : header.alg === undefined ? '(none)' : '(not a string)'} is not accepted.`);
    if (!parts[2]) throw new BearerError('format', 'The bearer token is not signed.');
    for (const k of Object.keys(header)) {
      if (!ALLOWED_HEADER.has(k)) throw new BearerError('header', `The token header parameter ${shown(k)} is not accepted.`);
    }
    if (header.typ !== undefined && !ACCESS_TOKEN_TYPES.has(String(header.typ).toLowerCase())) throw new BearerError('typ', 'The token is not an access token.');

    let payload: JWTPayload;
    try {
      const now = this.opts.now?.();
      ({ payload } = await jwtVerify(token, this.jwks, {
        algorithms: [...this.opts.algorithms],
        issuer: this.opts.issuer,
        audience: this.opts.audience,
        clockTolerance: this.opts.clockToleranceSec,
        requiredClaims: ['exp'],
        ...(now !== undefined ? { currentDate: new Date(now) } : {}),
      }));
    } catch (e) {
      throw fromJose(e);
    }
    // An ID token is proof of a sign-in for the gateway, never a key to an API.
    if (payload.nonce !== undefined || payload.at_hash !== undefined || payload.c_hash !== undefined || payload.s_hash !== undefined || audiences(payload).includes(this.opts.clientId) && this.opts.clientId !== this.opts.audience) {
      throw new BearerError('token_type', 'An ID token cannot be used as an access token.');
    }
    checkIssuedToUser(payload);
    checkScopes(payload, this.opts.requiredScopes);
    const identity = identityFromClaims(payload, this.opts.claimNames, 'bearer');
    if (!identity) throw new BearerError('user', 'The token names no user.', this.opts.claimNames.user ? `no string ${this.opts.claimNames.user} claim` : 'no preferred_username, upn, email or sub claim');
    return { identity, payload };
  }
}

/**
 * Refuses a token issued to an application rather than a user (401 app_token): the gateway admits
 * users, and an app-only token's sub is a client id. what-if runs it on typed claims.
 */
export function checkIssuedToUser(claims: Record<string, unknown>): void {
  const signal = appOnlySignal(claims);
  if (signal) throw new BearerError('app_token', 'The token was issued to an application, not to a user.', `app-only token: ${signal}`);
}

/**
 * The app's requiredScopes against the scopes a token grants: `scope` (RFC 9068, space-separated:
 * oidc-provider, Keycloak, Auth0 send only this), `scp` (space-separated or a list: Entra, Okta)
 * and `roles` (a list); throws the 403 insufficient_scope BearerError. what-if runs it on typed claims.
 */
export function checkScopes(claims: Record<string, unknown>, requiredScopes: readonly string[]): void {
  if (!requiredScopes.length) return;
  const granted = new Set<string>([
    ...(typeof claims.scope === 'string' ? claims.scope.split(' ') : []),
    ...(typeof claims.scp === 'string' ? claims.scp.split(' ') : Array.isArray(claims.scp) ? claims.scp.map(String) : []),
    ...(Array.isArray(claims.roles) ? claims.roles.map(String) : []),
  ]);
  const missing = requiredScopes.filter((s) => !granted.has(s));
  if (missing.length) throw new BearerError('scope', `The token lacks the required scope ${missing.join(' ')}.`, undefined, 'insufficient_scope');
}

/** What an app without an audience tells every bearer token (oidc preauth; what-if says the same). */
export const NO_BEARER_TOKENS = 'This app accepts no bearer tokens.';

/** The status the gateway answers a refused token with: 403 for a missing scope, 401 for the rest. */
export function refusalStatus(e: BearerError): 401 | 403 {
  return e.oauthError === 'insufficient_scope' ? 403 : 401;
}

function audiences(p: JWTPayload): string[] {
  return Array.isArray(p.aud) ? p.aud : p.aud === undefined ? [] : [p.aud];
}

function fromJose(e: unknown): BearerError {
  if (e instanceof BearerError) return e;
  if (e instanceof errors.JWTExpired) return new BearerError('exp', 'The token has expired.', e.message);
  if (e instanceof errors.JWTClaimValidationFailed) {
    const claim = e.claim;
    if (claim === 'nbf') return new BearerError('nbf', 'The token is not valid yet.', e.message);
    if (claim === 'iss') return new BearerError('iss', 'The token was issued by another issuer.', e.message);
    if (claim === 'aud') return new BearerError('aud', 'The token is for another audience.', e.message);
    return new BearerError(claim || 'claims', `The token claim ${claim} is not acceptable.`, e.message);
  }
  if (e instanceof errors.JWKSNoMatchingKey) return new BearerError('kid', 'The token was signed with a key the issuer does not publish.', e.message);
  if (e instanceof errors.JWSSignatureVerificationFailed) return new BearerError('signature', 'The token signature is not valid.', e.message);
  if (e instanceof errors.JOSEAlgNotAllowed) return new BearerError('alg', 'The token algorithm is not accepted.', e.message);
  if (e instanceof errors.JWKSTimeout || (e as { code?: string })?.code === 'ERR_JWKS_TIMEOUT') return new BearerError('jwks', 'The issuer keys could not be fetched.', (e as Error).message);
  if (e instanceof errors.JOSEError) return new BearerError('token', 'The token is not valid.', `${e.code}: ${e.message}`);
  return new BearerError('jwks', 'The issuer keys could not be fetched.', (e as Error)?.message);
}

/** The issuer's JWKS, cached (issuerKeys.ts); an unknown kid refreshes it at most once per cooldown. */
export function remoteJwks(uri: string, cooldownMs = 30_000): JWTVerifyGetKey {
  return newIssuerKeys(uri, cooldownMs);
}
