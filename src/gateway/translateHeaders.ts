/**
 * translateUrls.headers: the app's internal URL in Location, Content-Location
 * and Refresh becomes the URL the client used.
 *
 * The edge decides what is internal and what replaces it (a rewrite of one
 * URL by its prefix); this module decides where in each header the URL is and
 * in which form it is compared. The scheme and host are compared without
 * regard to case, as browsers read them (and as body translation does); the
 * path is compared exactly. A URL on any other host is left as it is, so no
 * header can be turned into a redirect elsewhere.
 */
import type { OutgoingHttpHeaders } from 'node:http';

/** rewrites one absolute URL that starts with the app's internal base; returns anything else as given */
export type UrlRewrite = (url: string) => string;

const URL_HEADERS = ['location', 'content-location'] as const;

/** scheme and authority of an absolute URL: the part that is compared in any case */
const ORIGIN = /^[a-z][a-z\d+.-]*:\/\/[^/?#\\]*/i;

/**
 * A Refresh value as HTML's "shared declarative refresh steps" read it: a
 * delay, then `;`, `,` or whitespace, then optionally `url` and `=`, then the
 * URL, optionally quoted (the closing quote ends it).
 */
const REFRESH = /^(\s*[\d.]+(?:\s*[;,]\s*|\s+)(?:url\s*(?:=\s*)?)?)(["']?)([^]*)$/i;

/** Translates the URL-carrying headers of a response in place. */
export function translateHeaders(headers: OutgoingHttpHeaders, rewrite: UrlRewrite): void {
  for (const name of URL_HEADERS) {
    const v = headers[name];
    if (typeof v === 'string') headers[name] = translateUrl(v, rewrite);
  }
  const refresh = headers['refresh'];
  if (typeof refresh === 'string') headers['refresh'] = translateRefresh(refresh, rewrite);
}

/** `5; url=http://internal/x` keeps its delay and spelling; only the URL changes */
export function translateRefresh(value: string, rewrite: UrlRewrite): string {
  const m = REFRESH.exec(value);
  if (!m) return value;
  const [, head, quote, rest] = m as unknown as [string, string, string, string];
  const end = quote ? rest.indexOf(quote) : -1;
  const url = end === -1 ? rest : rest.slice(0, end);
  return head + quote + translateUrl(url, rewrite) + rest.slice(url.length);
}

/**
 * The URL translated when its scheme and host, in whatever case, and its
 * path prefix, exactly, are the internal ones; otherwise the URL untouched
 * (a foreign URL keeps its spelling, case included).
 */
export function translateUrl(url: string, rewrite: UrlRewrite): string {
  const origin = ORIGIN.exec(url);
  if (!origin) return url; // relative: it names no host, the client resolves it against the one it used
  const folded = origin[0].toLowerCase() + url.slice(origin[0].length);
  const out = rewrite(folded);
  return out === folded ? url : out;
}
