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
 * Response headers from the app, minus hop-by-hop ones (Node frames the response itself)
 * and the app's own correlation id: the client gets the gateway's, the one in its logs.
 */
export function downstreamResponseHeaders(incoming: Record<string, string | string[] | undefined>): OutgoingHttpHeaders {
  const named = incoming.connection ? new Set(connectionTokens(incoming.connection)) : undefined;
  const out: OutgoingHttpHeaders = {};
  for (const key in incoming) {
    if (HOP_BY_HOP.has(key) || key === CORRELATION_HEADER || (named && named.has(key))) continue;
    const v = incoming[key];
    if (v !== undefined) out[key] = v;
  }
  return out;
}
