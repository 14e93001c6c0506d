/**
 * The browser session: what goes into the encrypted cookie and how it comes
 * back out. Bound to the app and the exact host it was issued for, so a
 * cookie lifted from one app or host is worthless on another, and to the
 * provider and client that signed the user in.
 */
import { randomBytes } from 'node:crypto';
import type { Identity } from '../pipeline/stage.js';
import { cookiesNamed, serializeCookie, clearCookie, type CookieAttributes } from './cookies.js';
import { groupsFromClaims, userFromClaims } from './claims.js';
import type { Config } from '../config/load.js';
import { existingRuntime, type AppIdentity, type IdentityRuntime } from './runtime.js';

/** Browsers keep at most 4096 bytes per cookie (name, value and attributes). */
export const MAX_COOKIE_BYTES = 4000;

interface SessionPayload {
  v: 1;
  /** id: what sign-out revokes (revocations.ts) */
  j: string;
  /** binding: app name, host, and the provider and client (bindingOf) */
  b: string;
  u: string;
  g: string[];
  /** groups incomplete (provider overage) */
  gi?: 1;
  /** groups cut down to the ones the config refers to, so the cookie fits */
  gf?: 1;
  /** with gf: the digest of the groups the config referred to then (IdentityRuntime.referencedGroupsDigest) */
  gh?: string;
  /** the claim names the config read at sign-in beyond POLICY_CLAIMS (kept in c when the token had them) */
  k?: string[];
  /** IdentityRuntime.claimSourcesKey at sign-in: which claims named the user (u) and the groups (g), asked for with which scopes */
  n?: string;
  c: Record<string, unknown>;
  iat: number;
  exp: number;
}

export class SessionTooLargeError extends Error {
  readonly code = 'ERR_SESSION_TOO_LARGE';
  /** what does not fit: the claims alone (a huge name...), or the groups the rules name */
  constructor(message: string, readonly tooLarge: 'claims' | 'groups') {
    super(message);
  }
}

/**
 * What a session is good for: the app, the exact host, and the provider and client that signed it
 * in. `bob` at one issuer (or tenant) is not necessarily `bob` at another: after a reload that
 * switches identity.issuer or identity.clientId (another tenant after a compromise, a test provider
 * replaced by production), the sessions the previous one issued end, though session.secrets stay.
 */
function bindingOf(rt: IdentityRuntime, app: AppIdentity, host: string): string {
  return `${app.name}\n${host.toLowerCase()}\n${rt.signedInBy}`;
}

export function cookieFor(app: AppIdentity, protocol: 'http' | 'https'): { name: string; attrs: Omit<CookieAttributes, 'maxAge'> } {
  // Secure cookies cannot be set over plain http; there the session cookie is host-only and unprefixed.
  const secure = app.secure && protocol === 'https';
  const atRoot = app.prefix === '/';
  const name = secure && atRoot ? `__Host-${app.cookieName}` : app.cookieName;
  return { name, attrs: { path: app.prefix, httpOnly: app.httpOnly, secure, sameSite: app.sameSite === 'none' && !secure ? 'lax' : app.sameSite } };
}

export async function createSessionCookie(rt: IdentityRuntime, app: AppIdentity, host: string, protocol: 'http' | 'https', claims: Record<string, unknown>): Promise<{ setCookie: string; identity: Identity; tokenLeftSec?: number }> {
  const now = Math.floor(rt.now() / 1000);
  const user = userFromClaims(claims, rt.claimNames);
  if (!user) throw new Error('the ID token names no user');
  const { groups, incomplete } = groupsFromClaims(claims, rt.claimNames.groups);
  const kept: Record<string, unknown> = {};
  for (const k of rt.sessionClaims) if (claims[k] !== undefined) kept[k] = claims[k];
  const { sec: lasts, tokenLeftSec } = sessionLength(app, now, claims);
  const payload: SessionPayload = { v: 1, j: randomBytes(16).toString('base64url'), b: bindingOf(rt, app, host), u: user, g: groups, c: kept, iat: now, exp: now + lasts };
  if (rt.configClaims.length) payload.k = [...rt.configClaims];
  if (rt.claimSourcesKey) payload.n = rt.claimSourcesKey;
  if (incomplete) payload.gi = 1;
  const { name, attrs } = cookieFor(app, protocol);
  const cookieAttrs: CookieAttributes = { ...attrs, ...(app.persistent ? { maxAge: lasts } : {}) };
  let value = await rt.sessions.seal(payload);
  let header = serializeCookie(name, value, cookieAttrs);
  if (header.length > MAX_COOKIE_BYTES) {
    // Keep the groups the rules look at; say so, so no group rule is fooled by the cut.
    payload.g = groups.filter((g) => rt.referencedGroups.has(g.toLowerCase()));
    payload.gf = 1;
    payload.gh = rt.referencedGroupsDigest;
    value = await rt.sessions.seal(payload);
    header = serializeCookie(name, value, cookieAttrs);
    if (header.length > MAX_COOKIE_BYTES) {
      // Which to blame, so the page sends the administrator to the right place: without any group, would it fit?
      const bare = serializeCookie(name, await rt.sessions.seal({ ...payload, g: [] }), cookieAttrs);
      const tooLarge = bare.length > MAX_COOKIE_BYTES ? 'claims' : 'groups';
      throw new SessionTooLargeError(`the session for ${user} needs ${header.length} bytes, more than a browser keeps (${tooLarge === 'claims' ? `its claims alone need ${bare.length}` : `${payload.g.length} groups the rules name`})`, tooLarge);
    }
  }
  return { setCookie: header, identity: toIdentity(payload, payload.exp), ...(tokenLeftSec !== undefined ? { tokenLeftSec } : {}) };
}

/**
 * A session that ends with its ID token still lasts this long: a token with seconds left, or a
 * gateway clock ahead of the provider's by more than the token's life, would otherwise make a
 * session that is over before the browser comes back, and a sign-in loop.
 */
export const MIN_TOKEN_BOUND_SESSION_SEC = 60;

/**
 * Seconds the new session lasts: `lifetime`, or less where it ends with the ID token; with
 * `tokenLeftSec` where the token had less than the minimum left (the caller says so in the log).
 */
function sessionLength(app: AppIdentity, now: number, claims: Record<string, unknown>): { sec: number; tokenLeftSec?: number } {
  if (!app.endWithIdToken || typeof claims.exp !== 'number') return { sec: app.lifetimeSec };
  const left = Math.floor(claims.exp) - now;
  if (left >= MIN_TOKEN_BOUND_SESSION_SEC) return { sec: Math.min(app.lifetimeSec, left) };
  return { sec: Math.min(app.lifetimeSec, MIN_TOKEN_BOUND_SESSION_SEC), tokenLeftSec: left };
}

/** `exp`: when the session ends, which a shorter lifetime since sign-in brings forward (readSession) */
function toIdentity(p: SessionPayload, exp: number): Identity {
  // (built field by field: a conditional spread copies through V8's slow path, on every request of a session)
  const id = { user: p.u, groups: Object.freeze([...p.g]) } as { -readonly [K in keyof Identity]: Identity[K] };
  if (p.gi) id.groupsIncomplete = true;
  id.via = 'session';
  const claims: Record<string, unknown> = { ...p.c };
  if (p.gf) claims.groupsFiltered = true;
  id.claims = Object.freeze(claims);
  id.expiresAt = exp;
  id.sessionId = p.j;
  return Object.freeze(id);
}

/**
 * The identity from this app's session cookie, or undefined (absent, tampered, expired, foreign...).
 * Only the name the gateway issues here counts: where that is `__Host-`, an unprefixed copy is
 * what a sibling subdomain or a plain-http response can plant, and it would win (browsers send
 * it first when its path is longer). The first valid one wins, in the order the browser sends
 * them (the most specific path first); only the first few are tried (cookiesNamed).
 */
export async function readSession(rt: IdentityRuntime, app: AppIdentity, host: string, protocol: 'http' | 'https', cookieHeader: string | string[] | undefined, opts: { evenIfStale?: boolean } = {}): Promise<{ identity?: Identity; present: boolean; exp?: number; sealedExp?: number; stale?: string }> {
  const binding = bindingOf(rt, app, host);
  const now = Math.floor(rt.now() / 1000);
  const issued = cookieFor(app, protocol).name;
  // present: a cookie of that name came, whether or not it could be one of ours. A value opened
  // within the minute (most requests) is ours without looking at its key id again.
  const { values, present } = cookiesNamed(cookieHeader, issued, (v) => rt.openedSessions.has(v) || rt.sessions.keysFor(v).length > 0, rt.log);
  for (const value of values) {
    const p = await openCached(rt, value, now);
    if (!p || p.v !== 1 || p.b !== binding || typeof p.u !== 'string' || !Array.isArray(p.g) || typeof p.exp !== 'number' || typeof p.iat !== 'number') continue;
    // The live lifetime bounds it too: a reload that shortens lifetime (after an incident) left
    // sessions signed in before it running for the lifetime they were made under.
    const exp = Math.min(p.exp, p.iat + app.lifetimeSec);
    if (exp <= now) continue;
    if (typeof p.j !== 'string' || rt.revocations.has(p.j, now)) continue;
    const stale = staleness(rt, p);
    if (stale && !opts.evenIfStale) return { present, stale };
    return { identity: toIdentity(p, exp), present, exp, sealedExp: p.exp };
  }
  return { present };
}

/**
 * Why a session built under an earlier config cannot be judged by the live one, if it cannot. A
 * session keeps only the claims the config read at sign-in, and a user with too many groups only
 * the groups it named: after a reload that adds a block on another claim or group, such a session
 * had nothing for the new rule to match, and its user kept access until it expired. The browser
 * signs in again instead (silently while the provider's own session lasts), and the new session
 * keeps what the live rules read.
 */
function staleness(rt: IdentityRuntime, p: SessionPayload): string | undefined {
  // (every request of a session asks: the config's list is worked out once, per runtime)
  const kept = Array.isArray(p.k) ? p.k : [];
  const missing = rt.configClaims.filter((k) => !kept.includes(k));
  if (missing.length) return `the session was built before the config read the claim ${missing.join(', ')}`;
  if (p.gf && p.gh !== rt.referencedGroupsDigest) return 'the session keeps only the groups an earlier config named';
  // Its user and groups were read from the claims identity.claims named then: after a reload to
  // others (groups: roles), a block on a role found the old groups and let its user in until the
  // session expired, and a rule on the new user name missed the old one.
  if (p.n !== rt.claimSourcesKey) return 'the session was built when identity.claims or identity.scopes named the user or the groups otherwise';
  return undefined;
}

/** Revokes the session this request carries for the app, if any; returns its user. Throws if stateDir cannot be written. */
export async function revokeSession(rt: IdentityRuntime, app: AppIdentity, host: string, protocol: 'http' | 'https', cookieHeader: string | string[] | undefined): Promise<string | undefined> {
  // (one built under an earlier config is revoked too: a reload back would make it valid again)
  const { identity, sealedExp } = await readSession(rt, app, host, protocol, cookieHeader, { evenIfStale: true });
  // readSession only accepts sessions with an id
  if (!identity?.sessionId) return undefined;
  // kept until the end sealed in the cookie, not the live lifetime's: a reload back to a longer
  // lifetime would otherwise bring the session back once its revocation was forgotten
  rt.revocations.revoke(identity.sessionId, sealedExp!, Math.floor(rt.now() / 1000));
  return identity.user;
}

/**
 * Whether sign-out has ended this session since a request proved it: an open WebSocket
 * outlives that check. Asked of the generation serving now (every generation shares the
 * revocations of the started stateDir); one without sign-in has nothing to ask.
 */
export function sessionSignedOut(config: Config, sessionId: string): boolean {
  const rt = existingRuntime(config);
  return rt !== undefined && rt.revocations.has(sessionId, Math.floor(rt.now() / 1000));
}

async function openCached(rt: IdentityRuntime, value: string, nowSec: number): Promise<SessionPayload | undefined> {
  const nowMs = nowSec * 1000;
  const hit = rt.openedSessions.get(value, nowMs);
  if (hit) return hit as SessionPayload;
  const p = await rt.sessions.open<SessionPayload>(value);
  if (p && typeof p.exp === 'number') rt.openedSessions.set(value, p, Math.min(nowMs + 60_000, p.exp * 1000));
  return p;
}

export function clearSessionCookie(app: AppIdentity, protocol: 'http' | 'https'): string {
  const { name, attrs } = cookieFor(app, protocol);
  return clearCookie(name, attrs);
}
