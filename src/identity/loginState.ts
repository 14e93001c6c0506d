/**
 * The sign-in in flight: state, nonce, PKCE verifier and return URL in a
 * short-lived encrypted cookie. A callback URL replayed in another browser
 * finds nothing to finish.
 *
 * Bound: each sign-in's cookie has a name of its own, and a new sign-in expires
 * all but the newest few the browser holds (loginCookies), each of bounded size,
 * so sign-ins started and never finished (a user opening the app again and
 * again, or another site sending the browser to app URLs in a loop) can never
 * make the Cookie header outgrow the server's limit (431 on every gateway path
 * of the host). The cookies are `Path=/` so that the start of a sign-in, which
 * happens on an app path, sees them all. The gateway removes them before any
 * request reaches an app.
 */
import * as oidc from 'openid-client';
import { clearCookie, cookiesNamed, parseCookies, serializeCookie } from './cookies.js';
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

/** characters of the state that name its cookie: 48 random bits, so sign-ins in flight together never share one */
const ID_LENGTH = 8;
const nameOf = (state: string, secure: boolean) => `${prefix(secure)}${state.slice(0, ID_LENGTH)}`;
/** the names this gateway gives login cookies (and the single digits of the fixed slots of earlier versions) */
const nameShape = (secure: boolean) => new RegExp(`^${prefix(secure)}(?:[0-9]|[A-Za-z0-9_-]{${ID_LENGTH}})$`);

/**
 * `crossSite`: the app's session cookie is SameSite=None (an app embedded in another site's
 * frame). Its sign-in runs in that frame too, where a Lax login cookie is neither stored nor sent,
 * and the callback found no sign-in started. Only with Secure, as browsers require.
 */
const attrs = (secure: boolean, crossSite = false) => ({ path: '/', httpOnly: true, secure, sameSite: crossSite && secure ? ('none' as const) : ('lax' as const) });
const crossSiteFor = (rt: IdentityRuntime, st: LoginState) => rt.apps.get(st.a)?.sameSite === 'none';

async function openLogin(rt: IdentityRuntime, value: string): Promise<LoginState | undefined> {
  const st = await rt.logins.open<LoginState>(value);
  return st && st.v === 1 && typeof st.s === 'string' && typeof st.exp === 'number' ? st : undefined;
}

/**
 * At most this many login cookies are expired in one answer (a sign-in start's, a 431's), so that
 * a request cannot buy an answer many times its size; a browser that had more (a request made by
 * hand) loses the rest with its next answer.
 */
const MAX_EXPIRED = 4 * LOGIN_SLOTS;

/** Set-Cookies that expire the first MAX_EXPIRED of these login cookie names, with the attributes they were set with. */
function expiryOf(names: Iterable<string>, crossSite = false): string[] {
  const out: string[] = [];
  for (const name of names) {
    if (out.length === MAX_EXPIRED) break;
    out.push(clearCookie(name, attrs(name.startsWith('__Host-'), crossSite)));
  }
  return out;
}

/**
 * Login cookies opened at a sign-in start: a browser holds LOGIN_SLOTS, a few more only while
 * starts at the same instant have not been cut back yet. A request with more was made by hand,
 * to have each one decrypted with every secret.
 */
const MAX_OPENED = 2 * LOGIN_SLOTS;

/**
 * The Set-Cookies of a new sign-in: its own login cookie, and the expiry of those it leaves
 * behind. Each sign-in's cookie is named after its state. Slots chosen from the Cookie header
 * collided: tabs that start signing in at the same instant (a browser restoring its tabs) send
 * the same header, and 4 of them shared a slot 9 times in 10, the last to start overwriting the
 * others' (400 at their callbacks). The bound is kept here instead: the login cookies the request
 * carries that are expired or do not open go, and of the live ones the newest LOGIN_SLOTS - 1 stay
 * beside the new one. Every later start sees every earlier cookie, so only starts at the same
 * instant go past LOGIN_SLOTS, and the next start cuts them back. Names past MAX_OPENED go
 * unopened, and one answer expires MAX_EXPIRED at most (the unopened last). `root` (the app's
 * root URL) replaces a return URL that would make the cookie too large.
 */
export async function loginCookies(rt: IdentityRuntime, st: LoginState, secure: boolean, cookieHeader: string | string[] | undefined, root: string): Promise<string[]> {
  const now = Math.floor(rt.now() / 1000);
  const shape = nameShape(secure);
  const live: [string, number][] = [];
  const gone = new Set<string>();
  const unopened: string[] = [];
  const seen = new Set<string>();
  for (const [name, value] of parseCookies(cookieHeader)) {
    if (!shape.test(name) || seen.has(name)) continue;
    seen.add(name);
    // past what a browser holds, a name is expired without the decryption that would tell
    if (seen.size > MAX_OPENED) {
      unopened.push(name);
      continue;
    }
    const open = await openLogin(rt, value);
    if (open && open.exp > now) live.push([name, open.exp]);
    else gone.add(name);
  }
  if (unopened.length) rt.log?.debug({ opened: MAX_OPENED, unopened: unopened.length }, 'more login cookies than a browser holds: the rest not opened');
  // all have the same lifetime: the latest expiry is the newest sign-in
  live.sort((a, b) => b[1] - a[1]);
  for (const [name] of live.slice(LOGIN_SLOTS - 1)) gone.add(name);
  for (const name of unopened) gone.add(name);
  const name = nameOf(st.s, secure);
  const crossSite = crossSiteFor(rt, st);
  const a = { ...attrs(secure, crossSite), maxAge: LOGIN_TTL_SEC };
  let cookie = serializeCookie(name, await rt.logins.seal(st), a);
  if (cookie.length > MAX_LOGIN_COOKIE_BYTES) cookie = serializeCookie(name, await rt.logins.seal({ ...st, r: root }), a);
  return [...expiryOf(gone, crossSite), cookie];
}

/** a login cookie's name, as a request (or the part of one the parser held) spells it: every name this or an earlier version issued */
const LOGIN_NAME_IN = new RegExp(`(?<![\\w-])((?:__Host-)?${LOGIN_COOKIE}_[A-Za-z0-9_-]{1,16})=`, 'g');

/**
 * Set-Cookies that expire the login cookies named in `cookieText` (a Cookie header, or the bytes of
 * a request head): a 431 sends them, so that a browser whose login cookies took its Cookie header
 * over the limit recovers with its next request instead of when they expire (10 minutes, every
 * path of the host refused meanwhile). The attributes are those they were set with.
 */
export function expireLoginCookies(cookieText: string): string[] {
  return expiryOf(new Set(Array.from(cookieText.matchAll(LOGIN_NAME_IN), (m) => m[1]!)));
}

/** The login state for this `state` parameter, if this browser started it and it has not expired, with the Set-Cookie that clears it. */
export async function readLoginState(rt: IdentityRuntime, state: string, cookieHeader: string | string[] | undefined, secure: boolean): Promise<{ st: LoginState; clear: string } | undefined> {
  const now = Math.floor(rt.now() / 1000);
  const name = nameOf(state, secure);
  if (!nameShape(secure).test(name)) return undefined;
  for (const value of cookiesNamed(cookieHeader, name, (v) => rt.logins.keysFor(v).length > 0, rt.log).values) {
    const st = await openLogin(rt, value);
    if (st && st.s === state && st.exp > now) return { st, clear: clearCookie(name, attrs(secure, crossSiteFor(rt, st))) };
  }
  return undefined;
}

/** sign-ins whose code went to the token endpoint that this process remembers at most (the oldest are forgotten first) */
const CONSUMED_MAX = 100_000;
/** state -> its login cookie's expiry (seconds) */
const consumed = new Map<string, number>();

/**
 * Marks this sign-in's code exchange as begun; false when it already was. The login cookie is
 * what a replay carries, and clearing it binds only a browser: a client that kept it could send
 * it to the callback with any code until it expires, each time a token request in the gateway's
 * name (and providers throttle per client, so everyone's sign-in would fail). Kept per process,
 * until the cookie's own expiry; checked and marked before any await, so replays sent at once
 * are refused too.
 */
export function consumeLoginState(st: LoginState, nowSec: number): boolean {
  // Marked about in expiry order (one lifetime for all): expired ones leave from the front.
  for (const [state, exp] of consumed) {
    if (exp > nowSec) break;
    consumed.delete(state);
  }
  if (consumed.has(st.s)) return false;
  if (consumed.size >= CONSUMED_MAX) consumed.delete(consumed.keys().next().value!);
  consumed.set(st.s, st.exp);
  return true;
}

/** The provider gave no answer (an outage): the sign-in may be finished by a reload once it is back. */
export function releaseLoginState(st: LoginState): void {
  consumed.delete(st.s);
}
