/**
 * API client or browser navigation? API clients get 401 + WWW-Authenticate and
 * JSON; only a top-level browser navigation is sent to the sign-in page (a
 * redirect would be useless, even harmful, to a script or an XHR).
 */
import type { IncomingHttpHeaders } from 'node:http';

export function isBrowserNavigation(method: string, h: Readonly<IncomingHttpHeaders>): boolean {
  if (method !== 'GET' && method !== 'HEAD') return false;
  if (h.authorization !== undefined) return false;
  if (h['x-requested-with'] !== undefined) return false;
  const mode = first(h['sec-fetch-mode']);
  if (mode !== undefined && mode !== 'navigate') return false;
  const dest = first(h['sec-fetch-dest']);
  if (dest !== undefined && dest !== 'document' && dest !== 'iframe' && dest !== 'frame') return false;
  const accept = first(h.accept);
  if (accept) {
    const a = accept.toLowerCase();
    if ((a.includes('json') || a.includes('xml') && !a.includes('xhtml')) && !a.includes('text/html')) return false;
  }
  return true;
}

/**
 * A request the browser will show as a page (a form POST, a navigation with another method):
 * it cannot be sent to sign in, since the body would be lost on the way, but it can be told
 * how to sign in.
 */
export function wantsPage(h: Readonly<IncomingHttpHeaders>): boolean {
  if (h.authorization !== undefined || h['x-requested-with'] !== undefined) return false;
  const mode = first(h['sec-fetch-mode']);
  if (mode !== undefined) return mode === 'navigate';
  return (first(h.accept) ?? '').toLowerCase().includes('text/html');
}

/** a header's value, the first of a repeated one */
export function first(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}
