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

/** Sign-ins that can be in flight at once in one browser, per host (about 450 bytes each). */
export const LOGIN_SLOTS = 4;

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

export async function loginCookie(rt: IdentityRuntime, st: LoginState, secure: boolean, cookieHeader: string | string[] | undefined): Promise<string> {
  return serializeCookie(await freeSlot(rt, cookieHeader, secure), await rt.logins.seal(st), { ...attrs(secure), maxAge: LOGIN_TTL_SEC });
}

/** The login state for this `state` parameter, if this browser started it and it has not expired, with the Set-Cookie that clears it. */
export async function readLoginState(rt: IdentityRuntime, state: string, cookieHeader: string | string[] | undefined, secure: boolean): Promise<{ st: LoginState; clear: string } | undefined> {
  const now = Math.floor(rt.now() / 1000);
  for (const [name, st] of await loginsIn(rt, cookieHeader, secure)) {
    if (st.s === state && st.exp > now) return { st, clear: clearCookie(name, attrs(secure)) };
  }
  return undefined;
}
