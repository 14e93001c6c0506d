/**
 * The sign-in in flight: state, nonce, PKCE verifier and return URL in a
 * short-lived encrypted cookie. A callback URL replayed in another browser
 * finds nothing to finish.
 *
 * Bound: the cookie takes one of LOGIN_SLOTS fixed names, so sign-ins started
 * and never finished (a user opening the app again and again, or another site
 * sending the browser to app URLs in a loop) can never make the Cookie header
 * outgrow the server's limit (431 on every gateway path of the host). The
 * cookies are `Path=/` so that the start of a sign-in, which happens on an
 * app path, sees which slots are taken and uses a free one (else the oldest):
 * parallel sign-ins in several tabs do not overwrite each other up to that
 * many. The gateway removes them before any request reaches an app.
 */
import { randomInt } from 'node:crypto';
import * as oidc from 'openid-client';
import { clearCookie, parseCookies, serializeCookie } from './cookies.js';
import { LOGIN_COOKIE, LOGIN_TTL_SEC, type IdentityRuntime } from './runtime.js';

export interface LoginState {
  v: 1;
  /** state, nonce, verifier */
  s: string;
  n: string;
  pv: string;
  /** where to land afterwards (already checked by safeReturnUrl) */
  r: string;
  /** app name and the redirect URI used */
  a: string;
  ru: string;
  /** max_age asked for (step-up) */
  ma?: number;
  /** acr_values asked for (an MFA step-up): the callback checks the provider met it */
  acr?: string;
  exp: number;
}

export function newLoginState(rt: IdentityRuntime, app: string, redirectUri: string, returnUrl: string, stepUp?: { maxAge?: number; acrValues?: string }): LoginState {
  return {
    v: 1,
    s: oidc.randomState(),
    n: oidc.randomNonce(),
    pv: oidc.randomPKCECodeVerifier(),
    r: returnUrl,
    a: app,
    ru: redirectUri,
    ...(stepUp?.maxAge !== undefined ? { ma: stepUp.maxAge } : {}),
    ...(stepUp?.acrValues ? { acr: stepUp.acrValues } : {}),
    exp: Math.floor(rt.now() / 1000) + LOGIN_TTL_SEC,
  };
}

/** Sign-ins that can be in flight at once in one browser, per host. */
export const LOGIN_SLOTS = 4;

/**
 * The most one login cookie's Set-Cookie may take. The return URL is what grows (up to 4,096
 * characters): a cookie near 4 KB was dropped by the browser (every callback a 400), and
 * LOGIN_SLOTS of them just under it passed Node's 16 KiB header limit, so every request to the
 * host got 431 until they expired. A login cookie that would be larger carries the app's root
 * instead. LOGIN_SLOTS of these (about 450 bytes with a short return URL) and a session cookie
 * (MAX_COOKIE_BYTES) stay well under 16 KiB.
 */
export const MAX_LOGIN_COOKIE_BYTES = 1800;

/**
 * `__Host-` on https, and only that name is read there: `__Secure-` asks only for `Secure`, so a
 * sibling subdomain could set it with `Domain=` the parent domain and hand the browser its own
 * sign-in in flight (login CSRF: the victim finishes the attacker's sign-in and works in the
 * attacker's account). `__Host-` forbids `Domain` and needs `Path=/`, which these cookies have.
 * Plain http (the localhost demo) cannot set a Secure cookie, so there the name is unprefixed.
 */
const prefix = (secure: boolean) => `${secure ? '__Host-' : ''}${LOGIN_COOKIE}_`;
const slotName = (slot: number, secure: boolean) => `${prefix(secure)}${slot}`;

const attrs = (secure: boolean) => ({ path: '/', httpOnly: true, secure, sameSite: 'lax' as const });

/** This browser's login cookies that open, by slot name. */
async function loginsIn(rt: IdentityRuntime, cookieHeader: string | string[] | undefined, secure: boolean): Promise<Map<string, LoginState>> {
  const found = new Map<string, LoginState>();
  const names = new Set(Array.from({ length: LOGIN_SLOTS }, (_, i) => slotName(i, secure)));
  for (const [name, value] of parseCookies(cookieHeader)) {
    if (!names.has(name) || found.has(name)) continue;
    const st = await rt.logins.open<LoginState>(value);
    if (st && st.v === 1 && typeof st.s === 'string' && typeof st.exp === 'number') found.set(name, st);
  }
  return found;
}

/**
 * The slot for a new sign-in: one of the free ones, at random, else the one whose sign-in
 * expires first. Not the first free one: tabs that start signing in at the same instant (a
 * browser restoring its tabs) send the same Cookie header, and all took slot 0, so every
 * callback but the last one's found its sign-in overwritten (400).
 */
async function freeSlot(rt: IdentityRuntime, cookieHeader: string | string[] | undefined, secure: boolean): Promise<string> {
  const taken = await loginsIn(rt, cookieHeader, secure);
  const now = Math.floor(rt.now() / 1000);
  const free: string[] = [];
  let oldest: [string, number] | undefined;
  for (let i = 0; i < LOGIN_SLOTS; i++) {
    const name = slotName(i, secure);
    const st = taken.get(name);
    if (!st || st.exp <= now) free.push(name);
    else if (!oldest || st.exp < oldest[1]) oldest = [name, st.exp];
  }
  return free.length ? free[randomInt(free.length)]! : oldest![0];
}

/** The Set-Cookie for a new sign-in; `root` (the app's root URL) replaces a return URL that would make it too large. */
export async function loginCookie(rt: IdentityRuntime, st: LoginState, secure: boolean, cookieHeader: string | string[] | undefined, root: string): Promise<string> {
  const name = await freeSlot(rt, cookieHeader, secure);
  const a = { ...attrs(secure), maxAge: LOGIN_TTL_SEC };
  const cookie = serializeCookie(name, await rt.logins.seal(st), a);
  return cookie.length <= MAX_LOGIN_COOKIE_BYTES ? cookie : serializeCookie(name, await rt.logins.seal({ ...st, r: root }), a);
}

/** a login cookie's name, as a request (or the part of one the parser held) spells it: every name this or an earlier version issued */
const LOGIN_NAME_IN = new RegExp(`(?<![\\w-])((?:__Host-)?${LOGIN_COOKIE}_[A-Za-z0-9_-]{1,16})=`, 'g');
/** at most this many login cookies are expired in one answer */
const MAX_EXPIRED = 4 * LOGIN_SLOTS;

/**
 * Set-Cookies that expire the login cookies named in `cookieText` (a Cookie header, or the bytes of
 * a request head): a 431 sends them, so that a browser whose login cookies took its Cookie header
 * over the limit recovers with its next request instead of when they expire (10 minutes, every
 * path of the host refused meanwhile). The attributes are those they were set with.
 */
export function expireLoginCookies(cookieText: string): string[] {
  const names = new Set<string>();
  for (const m of cookieText.matchAll(LOGIN_NAME_IN)) if (names.size < MAX_EXPIRED) names.add(m[1]!);
  return [...names].map((name) => clearCookie(name, attrs(name.startsWith('__Host-'))));
}

/** The login state for this `state` parameter, if this browser started it and it has not expired, with the Set-Cookie that clears it. */
export async function readLoginState(rt: IdentityRuntime, state: string, cookieHeader: string | string[] | undefined, secure: boolean): Promise<{ st: LoginState; clear: string } | undefined> {
  const now = Math.floor(rt.now() / 1000);
  for (const [name, st] of await loginsIn(rt, cookieHeader, secure)) {
    if (st.s === state && st.exp > now) return { st, clear: clearCookie(name, attrs(secure)) };
  }
  return undefined;
}
