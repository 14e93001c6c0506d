/** Turning token claims into the gateway's Identity. */
import type { Identity } from '../pipeline/stage.js';

export interface ClaimNames {
  /**
   * The claim that names the user, when the config names one: then only that
   * claim counts. Unset: preferred_username, upn, email, then sub.
   */
  user?: string;
  groups: string;
}

/**
 * Claims the signed assertion copies from the identity when present (headers.assertion); never a
 * token. They travel in the session too when an app uses the assertion (runtime.ts claimsReadBy),
 * so a browser session gives the same assertion as the user's bearer token.
 */
export const ASSERTION_CLAIMS = ['email', 'name', 'amr', 'acr', 'auth_time', 'oid', 'tid', 'roles'];

/** Claims that policies read (issue 5) and that therefore travel in the session. */
export const POLICY_CLAIMS = ['sub', 'iss', 'amr', 'acr', 'auth_time', 'email', 'name', 'preferred_username', 'tid', 'oid', 'deviceid', 'device_id', 'device_compliant', 'device_trust', 'xms_dc'];

/**
 * The user a token names. A configured claim is the only one read: falling
 * back to `sub` would let a token without it (an app-only token, whose `sub`
 * is a client id) pass for whoever that id spells.
 */
export function userFromClaims(claims: Record<string, unknown>, names: ClaimNames): string | undefined {
  return names.user !== undefined ? firstString(claims[names.user]) : firstString(claims.preferred_username, claims.upn, claims.email, claims.sub);
}

/**
 * Why a token's claims say it was issued to an application and names no user
 * (client credentials: a daemon, a script), or undefined for a user's token.
 * Such a token's `sub` is the client's own id, which would pass for a user
 * name in identity headers, delegation requests and assignment.
 */
export function appOnlySignal(claims: Readonly<Record<string, unknown>>): string | undefined {
  // Entra's explicit marker (the optional claim idtyp) on app-only tokens.
  if (claims.idtyp === 'app') return 'idtyp is app';
  // Auth0 names the grant (gty) and makes sub `<client id>@clients`, which no other signal catches.
  if (claims.gty === 'client-credentials') return 'gty is client-credentials';
  const sub = claims.sub;
  if (typeof sub !== 'string' || !sub) return undefined;
  // RFC 9068 section 2.2: for client credentials, sub identifies the client (oidc-provider, Okta); the
  // client is client_id (RFC 9068, RFC 8693), azp (OpenID Connect), appid (Entra v1) or cid (Okta).
  for (const name of ['client_id', 'azp', 'appid', 'cid']) if (claims[name] === sub) return `sub equals ${name}`;
  // Entra app-only: sub and oid are both the service principal's object id. In a user's token oid is
  // the user's object id and sub a pairwise id for this app: they differ.
  // B2C user tokens may carry oid equal to sub too, but a user's access token grants scopes (scp,
  // or RFC 9068's scope); an app-only token never does.
  if (claims.oid === sub && claims.scp === undefined && claims.scope === undefined) return 'oid equals sub, no scp or scope';
  return undefined;
}

/** The identity a token's claims give, or undefined when they name no user. */
export function identityFromClaims(claims: Record<string, unknown>, names: ClaimNames, via: 'session' | 'bearer'): Identity | undefined {
  const user = userFromClaims(claims, names);
  if (!user) return undefined;
  const { groups, incomplete } = groupsFromClaims(claims, names.groups);
  const exp = typeof claims.exp === 'number' ? claims.exp : undefined;
  return Object.freeze({ user, groups: Object.freeze(groups), groupsIncomplete: incomplete || undefined, via, claims: Object.freeze({ ...claims }), ...(exp !== undefined ? { expiresAt: exp } : {}) });
}

/**
 * The user's groups as the rules compare them. Providers do not all send a list of strings: ADFS
 * and single-valued mappers send one group as a string, some send numeric ids. Read as no
 * groups, such a user passed every group block policy. A string is a list of one, a number its
 * decimal form; any other shape (objects, booleans) cannot be compared, so the groups count as
 * incomplete, as at an Entra overage: a group block applies and a group assignment refuses.
 */
export function groupsFromClaims(claims: Record<string, unknown>, groupsClaim: string): { groups: string[]; incomplete: boolean } {
  const raw = claims[groupsClaim];
  let incomplete = groupsOverage(claims, groupsClaim);
  const groups: string[] = [];
  for (const g of raw === undefined || raw === null ? [] : Array.isArray(raw) ? raw : [raw]) {
    if (typeof g === 'string') groups.push(g);
    else if (typeof g === 'number' && Number.isFinite(g)) groups.push(String(g));
    else incomplete = true;
  }
  return { groups, incomplete };
}

/** requireMfa's test: `amr` contains `mfa`, or `acr` is one of `identity.mfaAcrValues`. */
export function meetsMfa(claims: Readonly<Record<string, unknown>>, mfaAcrValues: readonly string[]): boolean {
  const amr = claims.amr;
  if (Array.isArray(amr) && amr.includes('mfa')) return true;
  return typeof claims.acr === 'string' && mfaAcrValues.includes(claims.acr);
}

/**
 * How long ago the sign-in the claims report (auth_time) was, in whole seconds; undefined when
 * they name no time. `ahead`: dated after `nowMs` by more than the clock tolerance. Such a
 * sign-in is no evidence of a recent one (an age below zero met every frequency, so a provider
 * clock running fast stretched them all), and signing in again gets the same kind of date.
 * The sign-in frequency check and the step-up callback read it the same way.
 */
export function signInAge(claims: Readonly<Record<string, unknown>>, nowMs: number, toleranceS: number): { ageS: number; ahead: boolean } | undefined {
  const at = claims.auth_time;
  if (typeof at !== 'number' || !Number.isFinite(at)) return undefined;
  const ageS = Math.floor(nowMs / 1000 - at);
  return { ageS, ahead: -ageS > toleranceS };
}

/** Entra leaves groups out past a limit and says so with _claim_names / hasgroups. */
export function groupsOverage(claims: Record<string, unknown>, groupsClaim: string): boolean {
  const names = claims._claim_names;
  if (names && typeof names === 'object' && groupsClaim in (names as object)) return true;
  return claims.hasgroups === true || claims.hasgroups === 'true';
}

function firstString(...vals: unknown[]): string | undefined {
  for (const v of vals) if (typeof v === 'string' && v) return v;
  return undefined;
}
