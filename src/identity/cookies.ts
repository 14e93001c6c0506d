/** Cookie header parsing and Set-Cookie building for the gateway's own cookies. */

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
