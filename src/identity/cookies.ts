/** Cookie header parsing and Set-Cookie building for the gateway's own cookies. */
import type { Logger } from 'pino';

export interface CookieAttributes {
  path: string;
  httpOnly: boolean;
  secure: boolean;
  sameSite: 'lax' | 'strict' | 'none';
  /** seconds; undefined: a session cookie */
  maxAge?: number;
}

/** Every cookie in the request as [name, value] pairs, in order (duplicates kept). */
export function parseCookies(header: string | string[] | undefined): [string, string][] {
  if (!header) return [];
  const out: [string, string][] = [];
  for (const part of (Array.isArray(header) ? header.join('; ') : header).split(';')) {
    const eq = part.indexOf('=');
    if (eq < 0) continue;
    const name = part.slice(0, eq).trim();
    if (name) out.push([name, part.slice(eq + 1).trim()]);
  }
  return out;
}

/**
 * Cookies of one name opened per request. A browser sends several only when cookies of that name
 * with different paths (or domains) all match the request, and sends the most specific first.
 * Only values that name one of the gateway's keys count (a made-up one costs no decryption), so
 * cookies planted by a sibling subdomain cannot hide the real session behind a few of their own
 * unless they carry the gateway's key id; a request with dozens of those is made by hand.
 */
export const MAX_SAME_NAME = 16;

/**
 * The values of the cookies named `name` that `ours` accepts (a check without decryption), the
 * first MAX_SAME_NAME in request order, and whether any cookie of that name came at all; the rest
 * are left unopened, and said so at debug.
 */
export function cookiesNamed(header: string | string[] | undefined, name: string, ours: (value: string) => boolean, log?: Logger): { values: string[]; present: boolean } {
  const values: string[] = [];
  let present = false;
  let ignored = 0;
  for (const [n, value] of parseCookies(header)) {
    if (n !== name) continue;
    present = true;
    if (!ours(value)) continue;
    if (values.length < MAX_SAME_NAME) values.push(value);
    else ignored++;
  }
  if (ignored) log?.debug({ cookie: name, tried: MAX_SAME_NAME, ignored }, 'more cookies of one name than a browser sends: the rest not tried');
  return { values, present };
}

export function serializeCookie(name: string, value: string, a: CookieAttributes): string {
  const parts = [`${name}=${value}`, `Path=${a.path}`];
  if (a.maxAge !== undefined) parts.push(`Max-Age=${Math.max(0, Math.floor(a.maxAge))}`);
  if (a.httpOnly) parts.push('HttpOnly');
  if (a.secure) parts.push('Secure');
  parts.push(`SameSite=${a.sameSite[0]!.toUpperCase()}${a.sameSite.slice(1)}`);
  return parts.join('; ');
}

export function clearCookie(name: string, a: Omit<CookieAttributes, 'maxAge'>): string {
  return serializeCookie(name, '', { ...a, maxAge: 0 });
}

/**
 * The Cookie header without the gateway's cookies, or undefined when nothing
 * is left. The app's own cookies are kept byte for byte.
 */
export function withoutCookies(header: string | string[] | undefined, isOurs: (name: string) => boolean): string | undefined {
  if (!header) return undefined;
  const kept: string[] = [];
  for (const part of (Array.isArray(header) ? header.join('; ') : header).split(';')) {
    const eq = part.indexOf('=');
    const name = (eq < 0 ? part : part.slice(0, eq)).trim();
    if (!name) continue;
    if (!isOurs(name)) kept.push(part.trim());
  }
  return kept.length ? kept.join('; ') : undefined;
}
