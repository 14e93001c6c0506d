/**
 * Where to send the browser after sign-in. Only URLs of the same published
 * app are honoured; anything else (other hosts, protocol-relative or
 * backslash forms, control characters, credentials, look-alike hosts) falls
 * back to the app's root. Open redirects start here, so the rule is an allow
 * list: same origin, same path prefix, nothing odd anywhere in the string.
 */

import { normalizeTarget } from '../gateway/normalize.js';
import type { StepUp } from '../pipeline/stage.js';
import { SIGN_IN_PATH } from './runtime.js';

export interface AppLocation {
  /** scheme://host[:port] as the browser sees the app */
  origin: string;
  /** the app's path prefix, ending in '/' */
  prefix: string;
}

/** The URL this request asked for, relative to its origin: what sign-in comes back to (`;jsessionid=` and query kept). */
export function requestedTarget(ctx: { readonly path: string; readonly pathParams: string; readonly search: string }): string {
  return ctx.path + ctx.pathParams + ctx.search;
}

/**
 * The gateway's sign-in link back to `target` (a path and query of this host): a page links to it
 * where a browser cannot be sent to sign in at once (a form post, whose body would be lost). A
 * step-up travels with it, so the new sign-in is the fresher or stronger one asked for, not one the
 * provider's session answers with the old auth_time.
 */
export function signInLink(target: string, stepUp?: StepUp): string {
  const q = new URLSearchParams({ returnUrl: target });
  if (stepUp?.maxAge !== undefined) q.set('max_age', String(stepUp.maxAge));
  if (stepUp?.acrValues) q.set('acr_values', stepUp.acrValues);
  return `${SIGN_IN_PATH}?${q}`;
}

export function appRoot(app: AppLocation): string {
  return app.origin + app.prefix;
}

// Raw control characters, whitespace and backslashes, anywhere: browsers strip or reinterpret
// them, so a string that contains them means something else to them.
const RAW_SUSPICIOUS = /[\u0000-\u001f\u007f\\\s]/;
// In the path, also their percent-encoded forms: an app or a browser that decodes the path
// could read `/%5Cevil` as `/\evil`. Not in the query: it never changes where the browser
// goes, and `?path=C%3A%5Cdir` or `?msg=a%0Ab` are everyday deep links.
const ENCODED_SUSPICIOUS = /%(?:[01][0-9a-f]|7f|5c)/i;
const DECODED_SUSPICIOUS = /[\u0000-\u001f\u007f\\]/;

const OWNED_ON_EVERY_HOST = ['/.drawbridge/', '/.well-known/drawbridge/'];

export function safeReturnUrl(candidate: string | undefined | null, app: AppLocation): string {
  const root = appRoot(app);
  if (typeof candidate !== 'string' || candidate === '' || candidate.length > 4096) return root;
  if (RAW_SUSPICIOUS.test(candidate)) return root;
  const rawPath = candidate.split(/[?#]/, 1)[0]!;
  if (ENCODED_SUSPICIOUS.test(rawPath)) return root;
  let decodedPath: string;
  try {
    decodedPath = decodeURIComponent(rawPath);
  } catch {
    return root;
  }
  // A double-encoded path must be as harmless as the plain one. An encoded space is not a
  // concern in a path (`/Shared%20Documents/`): the URL is resolved and its origin checked below.
  if (DECODED_SUSPICIOUS.test(decodedPath) || ENCODED_SUSPICIOUS.test(decodedPath) || decodedPath.startsWith('//')) return root;
  const relative = candidate.startsWith('/');
  if (relative && candidate.startsWith('//')) return root;
  if (!relative && !candidate.toLowerCase().startsWith(app.origin.toLowerCase() + '/') && candidate.toLowerCase() !== app.origin.toLowerCase()) return root;
  let url: URL;
  try {
    url = new URL(candidate, root);
  } catch {
    return root;
  }
  if (url.origin !== app.origin || url.username || url.password) return root;
  // Checked in the form the gateway routes, not as the URL parser leaves it: the gateway folds
  // duplicate slashes and decodes `%2E`, so `/a//.drawbridge/sign-out` (or `/x/..//.drawbridge/…`,
  // which a browser resolves to `//.drawbridge/…`) is the sign-out a plain check let through.
  const routed = normalizeTarget(url.pathname + url.search);
  if (!routed.ok) return root;
  if (routed.path !== app.prefix.slice(0, -1) && !routed.path.startsWith(app.prefix)) return root;
  // Paths the gateway owns (sign-out among them) are never a place to land after sign-in: at the
  // host root and under the app's prefix.
  if ([...OWNED_ON_EVERY_HOST, app.prefix + '.drawbridge/'].some((p) => routed.path.startsWith(p))) return root;
  return url.href;
}
