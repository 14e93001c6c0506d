/**
 * Route table: host (exact, or one leading "*." label) and path prefix; the
 * most specific route wins. Built once per generation, read per request.
 */
import { segmentKey } from './normalize.js';

/** Paths the gateway answers itself on every host; they are never forwarded. */
export const RESERVED_PREFIXES = ['/.drawbridge/', '/.well-known/drawbridge/'];

export interface RouteTarget {
  readonly name: string;
}

interface Route<T> {
  readonly prefix: string; // always ends with '/'
  readonly target: T;
  /** the prefix's segments as a lenient server reads them (segmentKey) */
  readonly keys: readonly string[];
}

/** A host's routes, longest prefix first, and the most segments any of their prefixes has. */
interface HostRoutes<T> {
  readonly list: Route<T>[];
  depth: number;
}

export interface RouteMatch<T> {
  target: T;
  prefix: string;
  /**
   * Set when the path reaches this app only as a lenient server reads it (letter case, trailing
   * dots or spaces of a segment): the same path spelled under the app's prefix, where the client
   * is sent (edge.ts). Without it, `/ADMIN/x` went to the app at `/` as its request, unchecked by
   * the `/admin/` app's sign-in and rules, and IIS served it as `/admin/x`.
   */
  canonical?: string;
}

function keysOf(prefix: string): string[] {
  return prefix.split('/').slice(1, -1).map(segmentKey);
}

export function hostPatternOf(url: URL): string {
  return url.hostname.toLowerCase().replace(/\.$/, '');
}

/**
 * The host patterns a name a client asked for (SNI) falls under, most precise first: the name
 * itself, then the `*.` host of its parent (a wildcard covers one label, as certificates do).
 */
export function hostPatternsFor(servername: string): string[] {
  const name = servername.toLowerCase().replace(/\.$/, '');
  const dot = name.indexOf('.');
  return dot > 0 ? [name, `*${name.slice(dot)}`] : [name];
}

/**
 * An app's externalUrl as a URL. A wildcard first label (`https://*.apps.example.test/`) is not a
 * host URL accepts, so it is parsed as a placeholder label; the path is the app's either way.
 */
export function externalUrlOf(externalUrl: string): URL {
  return new URL(externalUrl.replace('://*.', '://wildcard---.'));
}

/** The host pattern of a URL from externalUrlOf, its wildcard label back as `*.`. */
export function wildcardHostOf(url: URL): string {
  return hostPatternOf(url).replace(/^wildcard---\./, '*.');
}

export function prefixOf(url: URL): string {
  return url.pathname.endsWith('/') ? url.pathname : url.pathname + '/';
}

export class Router<T extends RouteTarget> {
  private readonly exact = new Map<string, HostRoutes<T>>();
  private readonly wildcard = new Map<string, HostRoutes<T>>();

  add(hostPattern: string, prefix: string, target: T): void {
    const wild = hostPattern.startsWith('*.');
    const map = wild ? this.wildcard : this.exact;
    const key = wild ? hostPattern.slice(2) : hostPattern;
    const routes = map.get(key) ?? { list: [], depth: 0 };
    const keys = keysOf(prefix);
    routes.list.push({ prefix, target, keys });
    routes.depth = Math.max(routes.depth, keys.length);
    // Longest prefix first: the first match is the most specific.
    routes.list.sort((a, b) => b.prefix.length - a.prefix.length);
    map.set(key, routes);
  }

  /** `host` is lower-case without port; `path` is normalized. */
  match(host: string, path: string): RouteMatch<T> | undefined {
    const exact = this.exact.get(host);
    const hit = exact && pick(exact, path);
    if (hit) return hit;
    const dot = host.indexOf('.');
    if (dot <= 0) return undefined;
    const wild = this.wildcard.get(host.slice(dot + 1));
    return wild && pick(wild, path);
  }

  /** whether some app is published on `host` (lower-case, without port), under any path */
  publishes(host: string): boolean {
    if (this.exact.has(host)) return true;
    const dot = host.indexOf('.');
    return dot > 0 && this.wildcard.has(host.slice(dot + 1));
  }

  *entries(): Iterable<{ host: string; prefix: string; target: T }> {
    for (const [host, { list }] of this.exact) for (const r of list) yield { host, prefix: r.prefix, target: r.target };
    for (const [host, { list }] of this.wildcard) for (const r of list) yield { host: `*.${host}`, prefix: r.prefix, target: r.target };
  }
}

/**
 * The route a path takes: the most specific prefix it starts with, unless a deeper prefix claims
 * it as a lenient server reads paths. HTTP compares paths with their letter case, but an app on
 * IIS serves `/ADMIN/x` and `/admin./x` as `/admin/x`: were the root app to take them, they would
 * reach the `/admin/` app's pages under the root app's pre-authentication. A path another spelling
 * of a deeper prefix goes to that prefix's app, whose rules are the stricter ones for it.
 */
function pick<T>(routes: HostRoutes<T>, path: string): RouteMatch<T> | undefined {
  let exact: Route<T> | undefined;
  for (const r of routes.list) {
    // "/app/" also claims "/app" itself, so the app can redirect to its slash form.
    if (path.startsWith(r.prefix) || path === r.prefix.slice(0, -1)) {
      exact = r;
      break;
    }
  }
  const depth = exact ? exact.keys.length : -1;
  // (one app per host, or a path already under the deepest prefix: nothing deeper to find)
  if (depth < routes.depth) {
    let best: { r: Route<T>; end: number } | undefined;
    for (const r of routes.list) {
      if (r.keys.length <= depth || (best && r.keys.length <= best.r.keys.length)) continue;
      const end = lenientEnd(path, r.keys);
      if (end >= 0) best = { r, end };
    }
    if (best) return { target: best.r.target, prefix: best.r.prefix, canonical: respell(best.r.prefix, path, best.end) };
  }
  return exact && { target: exact.target, prefix: exact.prefix };
}

/** the path with its first segments, up to `at`, spelled as `prefix` */
function respell(prefix: string, path: string, at: number): string {
  return at >= path.length && !path.endsWith('/') ? prefix.slice(0, -1) : prefix + path.slice(at);
}

/**
 * Where the path continues after the segments `keys` name, read leniently (segmentKey); -1 when
 * it does not start with them. A path that is just those segments ends there, like "/app" for "/app/".
 */
function lenientEnd(path: string, keys: readonly string[]): number {
  let pos = 1;
  for (let i = 0; i < keys.length; i++) {
    let stop = path.indexOf('/', pos);
    if (stop < 0) stop = path.length;
    if (segmentKey(path.slice(pos, stop)) !== keys[i]) return -1;
    if (stop === path.length) return i === keys.length - 1 ? stop : -1;
    pos = stop + 1;
  }
  return pos;
}

/** RFC 3986 allows an empty port after the colon; a number must fit in 16 bits. */
function validPort(p: string): boolean {
  return /^[0-9]{0,5}$/.test(p) && (p === '' || Number(p) <= 65535);
}

/** Host header -> lower-case hostname without port; undefined when malformed. */
export function hostnameOf(hostHeader: string | undefined): string | undefined {
  if (!hostHeader) return undefined;
  let h = hostHeader.trim().toLowerCase();
  if (h.startsWith('[')) {
    const end = h.indexOf(']');
    if (end < 0) return undefined;
    const rest = h.slice(end + 1);
    if (rest !== '' && !(rest.startsWith(':') && validPort(rest.slice(1)))) return undefined;
    return h.slice(0, end + 1);
  }
  const colon = h.indexOf(':');
  if (colon >= 0) {
    if (!validPort(h.slice(colon + 1))) return undefined;
    h = h.slice(0, colon);
  }
  if (h.endsWith('.')) h = h.slice(0, -1);
  if (!/^[a-z0-9.-]+$/.test(h) || h.length === 0) return undefined;
  return h;
}
