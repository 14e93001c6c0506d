/**
 * What the gateway owns in a request, whichever app it is for: the session
 * (the app portal's too) and sign-in cookies, every identity and assertion header any app of the
 * generation sets, and every header any app's stage (an sso plugin's among
 * them) declares in stripHeaders. None of it may reach an app from the client.
 *
 * Per-app stripping is not enough. A browser sends an app's session cookie
 * (Path=/) to every app on the same host, passthrough ones included, and an
 * internal server is often published twice (a passthrough or bearer app beside
 * a header-SSO one): a header that one app's backend trusts must not pass
 * through the other, whose own config never names it.
 */
import type { Config } from '../config/load.js';
import type { AppConfig } from '../config/schema.js';
import { DEFAULT_SESSION_COOKIE, LOGIN_COOKIE } from '../identity/runtime.js';
import { PORTAL_COOKIE } from '../identity/portal.js';
import { stripNamesFor } from '../plugins/headers/identityHeaders.js';

export interface GatewayOwned {
  /** lower-case header names (and their `_`/`.` spellings) no client may send to any app */
  readonly headers: ReadonlySet<string>;
  isCookie(name: string): boolean;
}

const LOGIN_COOKIE_NAME = new RegExp(`^(__Host-|__Secure-)?${LOGIN_COOKIE}(_|$)`);
const owned = new WeakMap<Config, GatewayOwned>();

export function gatewayOwned(config: Config): GatewayOwned {
  let o = owned.get(config);
  if (o) return o;
  const apps = config.apps as AppConfig[];
  const sessionNames = new Set<string>([DEFAULT_SESSION_COOKIE, PORTAL_COOKIE]);
  const base = config.session?.cookie?.name;
  if (base) sessionNames.add(base);
  for (const a of apps) if (a.cookies?.name) sessionNames.add(a.cookies.name);
  const cookies = new Set<string>();
  for (const n of sessionNames) for (const p of ['', '__Host-', '__Secure-']) cookies.add(p + n);
  o = Object.freeze({
    headers: new Set(stripNamesFor(apps.flatMap(identityHeaderNames))),
    isCookie: (name: string) => cookies.has(name) || LOGIN_COOKIE_NAME.test(name),
  });
  owned.set(config, o);
  return o;
}

/** The headers an app's headers stages set from the identity: its identity headers and its signed assertion. */
export function identityHeaderNames(app: AppConfig): string[] {
  return [...Object.keys(app.headers?.identity ?? {}), ...(app.headers?.assertion ? [app.headers.assertion] : [])];
}

/**
 * Stage strips that stay their own app's business: the client's credentials for the app itself,
 * which other apps need and check on their own (kcd-shim replaces Authorization on its app; a
 * bearer or Basic-auth app beside it must still get the client's). Cookies go by name (isCookie).
 */
const CLIENT_CREDENTIALS = new Set(['authorization', 'cookie']);

/**
 * The strip list every app of the generation shares: gatewayOwned's headers plus what the stages
 * of all apps declare in stripHeaders, in every spelling. A PingAccess-style X-Auth-User that an
 * sso plugin sets is trusted by its backend exactly as an identity header is, and the same
 * internal server published as a passthrough app must not receive the client's copy.
 */
export function ownedHeaders(config: Config, stageStrips: Iterable<string>): Set<string> {
  const out = new Set(gatewayOwned(config).headers);
  for (const n of stripNamesFor([...stageStrips].filter((n) => !CLIENT_CREDENTIALS.has(n.toLowerCase())))) out.add(n);
  return out;
}
