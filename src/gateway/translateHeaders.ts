/**
 * translateUrls.headers: the app's internal URL in Location, Content-Location,
 * Refresh and Link becomes the URL the client used, and its cookies' Path and
 * Domain the external ones.
 *
 * The edge says what is internal and what replaces it (a UrlTranslation);
 * this module decides where in each header the URL is and in which form it is
 * compared. The scheme and host are compared without regard to case, as
 * browsers read them (and as body translation does); the path is compared
 * exactly. A URL on any other host is left as it is, so no header can be
 * turned into a redirect elsewhere.
 *
 * A path-absolute URL (`/inta/x`) is resolved by the browser against the URL
 * it used: when the app's internal path prefix is not its external one, such
 * a URL under the internal prefix names another app's path (the root app's,
 * most often), so it is rewritten to the external prefix, as an explicit
 * nginx proxy_redirect would. Stock servers redirect with one (a directory's
 * slash redirect, Tomcat's relative redirects). Not from an internal `/`
 * (pathsMapped).
 */
import type { OutgoingHttpHeaders } from 'node:http';

/** What one response's URLs are translated from and to. */
export interface UrlTranslation {
  /** internalUrl's origin (lower case, as URL spells it) and path prefix: http://10.0.0.5:8080/app/ */
  readonly internalBase: string;
  /** internalUrl's path prefix, ending in `/` */
  readonly internalPrefix: string;
  /** internalUrl's host name without port: a cookie's Domain that names it is the app's host */
  readonly internalHostname: string;
  /** the host name the client used, without port */
  readonly externalHostname: string;
  /** the app's URL as the client reached it: its scheme, its Host, the external path prefix */
  readonly externalBase: string;
  /** externalUrl's path prefix, ending in `/` */
  readonly externalPrefix: string;
}

const URL_HEADERS = ['location', 'content-location'] as const;

/** scheme and authority of an absolute URL: the part that is compared in any case */
const ORIGIN = /^[a-z][a-z\d+.-]*:\/\/[^/?#\\]*/i;

/**
 * A Refresh value as HTML's "shared declarative refresh steps" read it: a
 * delay, then `;`, `,` or whitespace, then optionally `url` and `=`, then the
 * URL, optionally quoted (the closing quote ends it).
 */
const REFRESH = /^(\s*[\d.]+(?:\s*[;,]\s*|\s+)(?:url\s*(?:=\s*)?)?)(["']?)([^]*)$/i;

/** a `.` or `..` segment in any spelling a browser resolves (`%2e`, `\` as a separator) */
const DOT_SEGMENT = /(?:^|[/\\])(?:\.|%2e){1,2}(?:[/\\]|$)/i;

/** Translates the URL-carrying headers of a response in place. */
export function translateHeaders(headers: OutgoingHttpHeaders, t: UrlTranslation): void {
  for (const name of URL_HEADERS) {
    const v = headers[name];
    if (typeof v === 'string') headers[name] = translateUrl(v, t);
  }
  const refresh = headers['refresh'];
  if (typeof refresh === 'string') headers['refresh'] = translateRefresh(refresh, t);
  const link = headers['link'];
  if (link !== undefined) headers['link'] = Array.isArray(link) ? link.map((l) => translateLink(l, t)) : translateLink(String(link), t);
  const cookies = headers['set-cookie'];
  if (cookies !== undefined) headers['set-cookie'] = (Array.isArray(cookies) ? cookies : [String(cookies)]).map((c) => translateSetCookie(c, t));
}

/** `5; url=http://internal/x` keeps its delay and spelling; only the URL changes */
export function translateRefresh(value: string, t: UrlTranslation): string {
  const m = REFRESH.exec(value);
  if (!m) return value;
  const [, head, quote, rest] = m as unknown as [string, string, string, string];
  const end = quote ? rest.indexOf(quote) : -1;
  const url = end === -1 ? rest : rest.slice(0, end);
  return head + quote + translateUrl(url, t) + rest.slice(url.length);
}

/**
 * Each `<URI-reference>` of a Link field (RFC 8288): a preload or a canonical link that
 * names the internal host fails for remote users. Parameters, quoted strings included, stay.
 */
export function translateLink(value: string, t: UrlTranslation): string {
  let out = '';
  let inQuotes = false;
  let i = 0;
  while (i < value.length) {
    const c = value[i]!;
    if (c === '<' && !inQuotes) {
      const end = value.indexOf('>', i + 1);
      if (end === -1) break;
      out += `<${translateUrl(value.slice(i + 1, end), t)}>`;
      i = end + 1;
      continue;
    }
    if (c === '"') inQuotes = !inQuotes;
    out += c;
    i++;
  }
  return out + value.slice(i);
}

/**
 * A cookie the app sets for its internal path would be sent by the browser to whatever app
 * holds that path on the external host, and never back to the app (RFC 6265 5.1.4): a Path
 * under the internal prefix is mapped to the external one (nginx's proxy_cookie_path). A
 * Domain naming the internal host is one the browser refuses: dropped, the cookie is the
 * external host's alone (proxy_cookie_domain). Any other attribute stays as written.
 */
export function translateSetCookie(value: string, t: UrlTranslation): string {
  const parts = value.split(';');
  const kept: string[] = [parts[0]!];
  for (const part of parts.slice(1)) {
    const eq = part.indexOf('=');
    const name = (eq < 0 ? part : part.slice(0, eq)).trim().toLowerCase();
    const attr = eq < 0 ? '' : part.slice(eq + 1).trim();
    // (one that also names the external host is the cookie the app meant, for its subdomains too)
    if (name === 'domain' && t.internalHostname !== t.externalHostname && attr.replace(/^\./, '').toLowerCase() === t.internalHostname) continue;
    if (name === 'path' && pathsMapped(t)) {
      const path = cookiePath(attr, t);
      if (path !== undefined) {
        kept.push(`${part.slice(0, eq + 1)}${path}`);
        continue;
      }
    }
    kept.push(part);
  }
  return kept.join(';');
}

/**
 * Whether path-absolute URLs and cookie paths move from the internal prefix to the external
 * one. Not from `/`: every path is under it, and an app published at `/grafana/` from its root
 * that already knows its public path (Grafana's root_url, Kibana's basePath) writes
 * `/grafana/login`, which would become `/grafana/grafana/login`.
 */
function pathsMapped(t: UrlTranslation): boolean {
  return t.internalPrefix !== t.externalPrefix && t.internalPrefix !== '/';
}

/** a cookie's Path under the internal prefix, on the external one; undefined otherwise (a cookie path is compared as written: no dot segments) */
function cookiePath(path: string, t: UrlTranslation): string | undefined {
  if (path.startsWith(t.internalPrefix)) return t.externalPrefix + path.slice(t.internalPrefix.length);
  if (path === t.internalPrefix.slice(0, -1)) return t.externalPrefix.slice(0, -1) || '/';
  return undefined;
}

/**
 * The URL translated when its scheme and host, in whatever case, and its path prefix,
 * exactly, are the internal ones, or when it is path-absolute under the internal prefix
 * (and that is not the external one); otherwise the URL untouched (a foreign URL keeps its
 * spelling, case included). The internal prefix without its slash counts when the path
 * ends there (`/app`, `/app?x`, `/app#f`).
 */
export function translateUrl(url: string, t: UrlTranslation): string {
  const origin = ORIGIN.exec(url);
  if (origin) {
    const rest = underPrefix(origin[0].toLowerCase() + url.slice(origin[0].length), t.internalBase, t.internalBase.length - t.internalPrefix.length);
    return rest === undefined ? url : t.externalBase + rest;
  }
  // Scheme-relative (`//host`, `/\host` as browsers read it) names a host; a relative path
  // resolves inside the app on either side.
  if (url[0] !== '/' || url[1] === '/' || url[1] === '\\' || !pathsMapped(t)) return url;
  const rest = underPrefix(url, t.internalPrefix, 0);
  return rest === undefined ? url : t.externalPrefix + rest;
}

/**
 * What follows `base` (ending in `/`) in `url`, or undefined when the URL is not under it.
 * `pathAt` is where base's path begins. Dot segments are resolved first, as the browser
 * will: `/app/../other/x` is not the app's, and rewritten to `/ext/../other/x` it would
 * land in a sibling app on the external host. A URL that resolves inside comes out resolved.
 */
function underPrefix(url: string, base: string, pathAt: number): string | undefined {
  let rest: string;
  if (url.startsWith(base)) rest = url.slice(base.length);
  else if (url.startsWith(base.slice(0, -1)) && /^(?:[?#]|$)/.test(url.slice(base.length - 1))) return url.slice(base.length - 1);
  else return undefined;
  const end = rest.search(/[?#]/);
  const path = end === -1 ? rest : rest.slice(0, end);
  if (!DOT_SEGMENT.test(path)) return rest;
  const prefix = base.slice(pathAt);
  const resolved = new URL(prefix + path, 'http://h').pathname;
  return resolved.startsWith(prefix) ? resolved.slice(prefix.length) + rest.slice(path.length) : undefined;
}
