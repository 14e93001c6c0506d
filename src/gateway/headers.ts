/**
 * Header hygiene at the trust boundary. Order matters and is fixed: strip
 * everything the client must not control, then let stages set their own.
 */
import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';
import { withoutCookies } from '../identity/cookies.js';

/** RFC 9110 7.6.1 plus the de-facto ones proxies must not forward. */
export const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authenticate',
  'proxy-authorization',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'http2-settings',
]);

/**
 * Request headers only the gateway sets on what it forwards: how the body is framed, how the
 * connection behaves, where it goes. A stage's decision may not set them (decisionProblem.ts), and
 * what a stage wrote into the request itself is replaced before it leaves (edge.ts forward):
 * behind a connector a stage's Content-Length was sent as given, and the rest of the client's
 * body was read as a second request no stage had checked.
 */
export const GATEWAY_FRAMED = new Set([...HOP_BY_HOP, 'content-length', 'expect', 'host']);

/**
 * Request headers of the exchange itself, which clients send to any app: its framing, what the
 * body is, what answer is wanted, who asks. A stage's stripHeaders drops its names on every app
 * of the config (an identity header forged through another app is still forged), so one of these
 * there would be taken from every app's requests: a plugin listing Content-Type cost another
 * app's POSTs theirs. compile refuses them.
 */
export const EXCHANGE_HEADERS = new Set([
  ...GATEWAY_FRAMED,
  'content-type',
  'content-encoding',
  'content-language',
  'content-range',
  'accept',
  'accept-charset',
  'accept-encoding',
  'accept-language',
  'range',
  'if-match',
  'if-none-match',
  'if-modified-since',
  'if-unmodified-since',
  'if-range',
  'cache-control',
  'pragma',
  'origin',
  'referer',
  'user-agent',
  'sec-websocket-key',
  'sec-websocket-version',
  'sec-websocket-protocol',
  'sec-websocket-extensions',
]);

/** The first name in `headers` (any letter case) that `owned` says is not the caller's to set. */
export function firstOwnedName(headers: object, owned: (lowerCaseName: string) => boolean): string | undefined {
  for (const name in headers) if (owned(name.toLowerCase())) return name;
  return undefined;
}

/**
 * Headers a client could use to impersonate the gateway's view of the
 * request. They are rebuilt by the forwarded-headers stage from what the
 * gateway itself saw (and trusted proxies said). Every `x-forwarded*` name is
 * one too, matched by prefix (isClientForwarding).
 */
const CLIENT_FORWARDING_HEADERS = new Set([
  'forwarded',
  'x-real-ip',
  'x-client-ip',
  'true-client-ip',
  'x-original-url',
  'x-original-uri',
  'x-rewrite-url',
  'x-correlation-id',
  // other spellings of the client's address, scheme or host that frameworks read (PHP apps' HTTP_CLIENT_IP...)
  'x-original-forwarded-for',
  'client-ip',
  'x-cluster-client-ip',
  'cf-connecting-ip',
  'fastly-client-ip',
  'x-proxyuser-ip',
  'x-host',
  'x-original-host',
  'x-url-scheme',
  'front-end-https',
  // httpoxy: CGI turns it into HTTP_PROXY, which HTTP clients in the app then use
  'proxy',
  // the client cannot ask us to hold the body: the gateway answers 100-continue itself
  'expect',
]);

/** (Rack reads X-Forwarded-Ssl and -Scheme, others -Uri or -Path: no list of them is complete.) */
function isClientForwarding(key: string): boolean {
  return CLIENT_FORWARDING_HEADERS.has(key) || key.startsWith('x-forwarded');
}

/**
 * Headers that ask a framework to act on another method than the one sent (ASP.NET Web API,
 * Express method-override, Symfony and Laravel read them). Rules (`when.methods`) see the method
 * that is forwarded, so a client may not change it behind them. Also with their `_` and `.`
 * spellings, which CGI-style backends fold into the same variable.
 */
const METHOD_OVERRIDE_HEADERS = new Set(['x-http-method-override', 'x-http-method', 'x-method-override']);

export const CORRELATION_HEADER = 'x-correlation-id';

/** A (dashed, lower-case) name the client never gets to send the app: the gateway drops it or sets its own. */
function isStripped(key: string, appStrip: ReadonlySet<string>): boolean {
  return HOP_BY_HOP.has(key) || isClientForwarding(key) || METHOD_OVERRIDE_HEADERS.has(key) || appStrip.has(key);
}

/** Names listed in a Connection header (lower case). */
export function connectionTokens(value: string | string[] | undefined): string[] {
  if (!value) return [];
  const joined = Array.isArray(value) ? value.join(',') : value;
  const out: string[] = [];
  for (const t of joined.split(',')) {
    const name = t.trim().toLowerCase();
    if (name) out.push(name);
  }
  return out;
}

/**
 * Copies request headers for the upstream, leaving out hop-by-hop headers,
 * headers named in Connection, client copies of forwarding headers, method overrides, and the
 * strip list (every app's identity headers and their look-alikes), and the
 * gateway's cookies from Cookie.
 */
export function upstreamRequestHeaders(incoming: IncomingHttpHeaders, appStrip: ReadonlySet<string>, isGatewayCookie?: (name: string) => boolean): Record<string, string | string[]> {
  const named = incoming.connection ? new Set(connectionTokens(incoming.connection)) : undefined;
  const out: Record<string, string | string[]> = {};
  for (const key in incoming) {
    if (isStripped(key, appStrip) || (named && named.has(key))) continue;
    // Underscore and dot spellings are folded into the same variable as the dashed name by CGI-style
    // backends (X_Forwarded_For and X-Forwarded-For are both HTTP_X_FORWARDED_FOR), where the client's
    // value would sit beside or ahead of the gateway's: every spelling of a stripped name is stripped.
    if ((key.includes('_') || key.includes('.')) && isStripped(key.replace(/[_.]/g, '-'), appStrip)) continue;
    const v = key === 'cookie' && isGatewayCookie ? withoutCookies(incoming.cookie, isGatewayCookie) : incoming[key];
    if (v !== undefined) out[key] = v;
  }
  return out;
}

/**
 * Past this many header lines, the headers the gateway set go to the app ahead of the client's.
 * Servers keep only so many (Node's http server the first 1,000): a client that padded its
 * request had the app drop the gateway's Host, X-Forwarded-*, correlation id and identity
 * headers, which were written after its own. Below it, the order is left as it came (no copy).
 */
export const FEW_HEADER_LINES = 100;

/**
 * The headers for the app with Host and every header the gateway or a stage set first, then
 * the client's own, each group in its order. A header is the gateway's by its name when the
 * client may not send that name (its copy was stripped), whatever the value: a client that sent
 * its own address as X-Forwarded-For, which the gateway then set to the same value, had it
 * counted as its own and pushed out again. Otherwise by a value the client did not send.
 */
export function gatewayHeadersFirst(out: Record<string, string | string[]>, client: IncomingHttpHeaders, appStrip: ReadonlySet<string>): Record<string, string | string[]> {
  const first: Record<string, string | string[]> = { host: out.host! };
  const rest: Record<string, string | string[]> = {};
  for (const k in out) if (k !== 'host') (isStripped(k, appStrip) || out[k] !== client[k] ? first : rest)[k] = out[k]!;
  return Object.assign(first, rest);
}

/**
 * Keeps the gateway's own cookies (session, sign-in) the gateway's to set. An app's response
 * comes from the origin the gateway's pages come from, so a browser takes a Set-Cookie for
 * them from any app on the host, `__Host-` names included: the backend of a passthrough app,
 * or of another team's app under another prefix, could plant its own user's session in a
 * victim's browser, finish a sign-in there, or sign users out of the other apps.
 */
export interface AppCookieGuard {
  isGatewayCookie(name: string): boolean;
  /** told the name of each Set-Cookie left out (or of the Clear-Site-Data part), for the log */
  refused(name: string): void;
}

/**
 * The name a browser gives the cookie of a Set-Cookie value. Without an `=` a browser makes a
 * cookie with an empty name and sends it back as the bare value, which a server may read as a
 * name: that text is taken as the name here, so such a cookie is refused too.
 */
export function setCookieName(value: string): string {
  const pair = value.split(';', 1)[0]!;
  const eq = pair.indexOf('=');
  return (eq < 0 ? pair : pair.slice(0, eq)).trim();
}

/** The app's Set-Cookie values without those naming a cookie of the gateway's. */
export function appSetCookies(values: string | string[], guard: AppCookieGuard): string[] {
  const kept: string[] = [];
  for (const v of Array.isArray(values) ? values : [values]) {
    const name = setCookieName(v);
    if (guard.isGatewayCookie(name)) guard.refused(name);
    else kept.push(v);
  }
  return kept;
}

/** what an app's `Clear-Site-Data: "*"` asks for, but the cookies */
const ALL_BUT_COOKIES = ['"cache"', '"storage"', '"executionContexts"'];

/**
 * The app's Clear-Site-Data without `"cookies"`: a browser applies it to every cookie of the
 * registrable domain, so one app's sign-out page (or any backend on any host under the parent
 * domain) wiped the gateway's session cookies of every app there. `"*"` keeps its other parts.
 * undefined: nothing is left to send.
 */
export function appClearSiteData(value: string | string[], guard: AppCookieGuard): string | undefined {
  const kept: string[] = [];
  let refused = false;
  for (const part of (Array.isArray(value) ? value.join(',') : value).split(',')) {
    const t = part.trim();
    if (!t) continue;
    const bare = t.replace(/^"|"$/g, '').toLowerCase();
    if (bare === 'cookies' || bare === '*') refused = true;
    if (bare === 'cookies') continue;
    if (bare === '*') kept.push(...ALL_BUT_COOKIES);
    else kept.push(t);
  }
  if (refused) guard.refused('Clear-Site-Data: "cookies"');
  return kept.length ? [...new Set(kept)].join(', ') : undefined;
}

/**
 * An app's response header as the client may get it: Set-Cookie without the gateway's cookies,
 * Clear-Site-Data without "cookies", any other as it is. undefined: nothing is left of it.
 * For parsed heads and for the raw lines of a 101 alike.
 */
export function appResponseValue(key: string, value: string | string[], cookies: AppCookieGuard): string | string[] | undefined {
  if (key === 'set-cookie') {
    const kept = appSetCookies(value, cookies);
    return kept.length ? kept : undefined;
  }
  if (key === 'clear-site-data') return appClearSiteData(value, cookies);
  return value;
}

/**
 * Response headers from the app, minus hop-by-hop ones (Node frames the response itself),
 * the app's own correlation id (the client gets the gateway's, the one in its logs), and
 * what appResponseValue leaves out.
 */
export function downstreamResponseHeaders(incoming: Record<string, string | string[] | undefined>, cookies?: AppCookieGuard): OutgoingHttpHeaders {
  const named = incoming.connection ? new Set(connectionTokens(incoming.connection)) : undefined;
  const out: OutgoingHttpHeaders = {};
  for (const key in incoming) {
    if (HOP_BY_HOP.has(key) || key === CORRELATION_HEADER || (named && named.has(key))) continue;
    const v = incoming[key];
    const kept = v === undefined || !cookies ? v : appResponseValue(key, v, cookies);
    if (kept !== undefined) out[key] = kept;
  }
  return out;
}
