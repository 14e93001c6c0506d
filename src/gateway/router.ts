/**
 * Route table: host (exact, or one leading "*." label) and path prefix; the
 * most specific route wins. Built once per generation, read per request.
 */
/** Paths the gateway answers itself on every host; they are never forwarded. */
export const RESERVED_PREFIXES = ['/.drawbridge/', '/.well-known/drawbridge/'];

export interface RouteTarget {
  readonly name: string;
}

interface Route<T> {
  readonly prefix: string; // always ends with '/'
  readonly target: T;
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
  private readonly exact = new Map<string, Route<T>[]>();
  private readonly wildcard = new Map<string, Route<T>[]>();

  add(hostPattern: string, prefix: string, target: T): void {
    const wild = hostPattern.startsWith('*.');
    const map = wild ? this.wildcard : this.exact;
    const key = wild ? hostPattern.slice(2) : hostPattern;
    const list = map.get(key) ?? [];
    list.push({ prefix, target });
    // Longest prefix first: the first match is the most specific.
    list.sort((a, b) => b.prefix.length - a.prefix.length);
    map.set(key, list);
  }

  /** `host` is lower-case without port; `path` is normalized. */
  match(host: string, path: string): { target: T; prefix: string } | undefined {
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
    for (const [host, list] of this.exact) for (const r of list) yield { host, prefix: r.prefix, target: r.target };
    for (const [host, list] of this.wildcard) for (const r of list) yield { host: `*.${host}`, prefix: r.prefix, target: r.target };
  }
}

function pick<T>(routes: Route<T>[], path: string): { target: T; prefix: string } | undefined {
  for (const r of routes) {
    // "/app/" also claims "/app" itself, so the app can redirect to its slash form.
    if (path.startsWith(r.prefix) || path === r.prefix.slice(0, -1)) return { target: r.target, prefix: r.prefix };
  }
  return undefined;
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
