/**
 * The sign-in in flight: state, nonce, PKCE verifier and return URL in a
 * short-lived encrypted cookie. The cookie lives in the browser that started
 * the flow and its name carries part of the state, so parallel sign-ins in
 * several tabs do not overwrite each other, and a callback URL replayed in
 * another browser finds nothing to finish.
 */
import { randomBytes } from 'node:crypto';
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

function cookieName(state: string, secure: boolean): string {
  const tag = state.replace(/[^A-Za-z0-9]/g, '').slice(0, 10) || randomBytes(5).toString('hex');
  return `${secure ? '__Secure-' : ''}${LOGIN_COOKIE}_${tag}`;
}

const attrs = (secure: boolean) => ({ path: '/.drawbridge/', httpOnly: true, secure, sameSite: 'lax' as const });

export async function loginCookie(rt: IdentityRuntime, st: LoginState, secure: boolean): Promise<string> {
  return serializeCookie(cookieName(st.s, secure), await rt.logins.seal(st), { ...attrs(secure), maxAge: LOGIN_TTL_SEC });
}

export function clearLoginCookie(state: string, secure: boolean): string {
  return clearCookie(cookieName(state, secure), attrs(secure));
}

/** The login state for this `state` parameter, if this browser started it and it has not expired. */
export async function readLoginState(rt: IdentityRuntime, state: string, cookieHeader: string | string[] | undefined, secure: boolean): Promise<LoginState | undefined> {
  const want = cookieName(state, secure);
  for (const [name, value] of parseCookies(cookieHeader)) {
    if (name !== want) continue;
    const st = await rt.logins.open<LoginState>(value);
    if (!st || st.v !== 1 || st.s !== state || typeof st.exp !== 'number' || st.exp <= Math.floor(rt.now() / 1000)) continue;
    return st;
  }
  return undefined;
}

/** Sign-ins started and never finished pile up; keep the newest few so the Cookie header cannot outgrow the server's limit. */
export function clearStaleLogins(cookieHeader: string | string[] | undefined, secure: boolean, keep = 2): string[] {
  const ours = parseCookies(cookieHeader)
    .map(([name]) => name)
    .filter((n) => n.startsWith(`${secure ? '__Secure-' : ''}${LOGIN_COOKIE}_`));
  return ours.slice(0, Math.max(0, ours.length - keep)).map((n) => clearCookie(n, attrs(secure)));
}
