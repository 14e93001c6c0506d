/**
 * Checks a schema cannot express: references between sections, duplicates,
 * and values that need parsing (CIDR, duration, URL, timezone).
 */
import { existsSync } from 'node:fs';
import { isIP } from 'node:net';
import { resolve } from 'node:path';
import { DURATION_PATTERN, parseDuration } from './duration.js';
import { parseCidr, parseIp } from './net.js';
import { formatPath, type KeyPath } from './source.js';
import type { LoadedPlugin } from '../plugins/registry.js';
import { validateAgainst } from './validate.js';
import { canonicalPath, lenientPath } from '../gateway/normalize.js';
import { GROUPS_INCOMPLETE_HEADER } from '../plugins/headers/identityHeaders.js';
import { externalUrlOf, hostPatternOf, hostPatternsFor, prefixOf, Router, wildcardHostOf } from '../gateway/router.js';
import type { X509Certificate } from 'node:crypto';
import { brokenLink, keyMatches, missingIssuer, outsideValidity, readCertificates, readPrivateKey, uncoveredHosts, weakKey } from './pem.js';
import { octalMode, permissionsOf } from './stateFile.js';

export interface CrossIssue {
  path: KeyPath;
  atKey?: boolean;
  message: string;
  severity: 'error' | 'warning';
  /** a file that is missing here may exist where the gateway runs */
  environmental?: boolean;
}

const MAX_CERTIFICATE_LIFETIME_MS = 365 * 86_400_000;
const MIN_COOKIE_LIFETIME_MS = 1000;
const MAX_COOKIE_LIFETIME_MS = 400 * 86_400_000;
const MAX_CLOCK_TOLERANCE_MS = 10 * 60_000;

const HOURS_WINDOW = /^\d{2}:\d{2}-\d{2}:\d{2}$/;

/** Header names an identity mapping may never set: the gateway or HTTP framing owns them. */
const RESERVED_HEADERS = new Set(['host', 'content-length', 'transfer-encoding', 'connection', 'upgrade', 'te', 'trailer', 'keep-alive', 'cookie', 'authorization', 'x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host', 'forwarded', 'x-correlation-id', GROUPS_INCOMPLETE_HEADER]);

/**
 * A header name as an app may read it: letter case ignored (HTTP), and `_` and `.` read as `-`
 * (CGI-style servers, older WSGI ones and PHP put all three in one HTTP_X_REMOTE_USER variable).
 */
const foldedHeader = (name: string) => name.toLowerCase().replace(/[_.]/g, '-');
/**
 * nginx (underscores_in_headers off, its default), Apache httpd 2.4 for CGI-style apps and
 * gunicorn 22+ drop a request header whose name has `_` or `.`: an SSO header so named never
 * reached such an app, without a word. Only a warning: other servers take them.
 */
const droppedName = (name: string) => {
  const c = /[_.]/.exec(name)?.[0];
  return c && `${name} has ${c} in its name: nginx (by default), Apache httpd 2.4 for CGI-style apps (PHP, WSGI) and gunicorn drop such headers, and the app would never get it; write ${name.replace(/[_.]/g, '-')}`;
};
const sameBecause = (a: string, b: string) => (a.toLowerCase() === b.toLowerCase() ? 'header names ignore letter case' : 'CGI-style servers read _ and . as -');

export interface CrossCheckInput {
  raw: any;
  configDir: string;
  plugins: readonly LoadedPlugin[];
  /** names of plugins that could not be loaded here (lint) */
  unloadedPluginNames: ReadonlySet<string>;
  /** paths (JSON of KeyPath) whose value came from an unresolved ${...} */
  unresolved: ReadonlySet<string>;
  /** the text as written (by JSON of KeyPath) of values a ${...} was resolved in (SubstitutionResult.written) */
  written: ReadonlyMap<string, string>;
}

/** a DNS name as a certificate carries it: dot-separated labels of letters, digits and inner hyphens */
const DNS_NAME = /^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;

/**
 * Why a path written in the config would never meet a request path (those are compared
 * normalized), or undefined when it is in that form. `show` quotes the path as the message
 * about its key does. `written`: the value as written, when a ${...} was resolved in it; the
 * path and its normalized form are computed from the secret then, and only `written` is shown.
 */
function pathFormProblem(path: string, show: (p: string) => string, verb: 'match' | 'start with', written: string | undefined): string | undefined {
  const canonical = canonicalPath(path);
  if (canonical === path) return undefined;
  const shown = written === undefined ? show(path) : `the path ${JSON.stringify(written)} resolves to`;
  if (canonical === undefined) return `no request path can ${verb} ${shown} (an encoded slash, or ';' parameters on a segment)`;
  if (written !== undefined) return `request paths are compared in normalized form, so ${shown} would never match: make it resolve to the path's normalized form (dot segments resolved, characters a browser encodes encoded)`;
  return `request paths are compared in normalized form, so ${shown} would never match: write ${show(canonical)}`;
}

export function crossCheck(input: CrossCheckInput): CrossIssue[] {
  const { raw, configDir } = input;
  const issues: CrossIssue[] = [];
  const err = (path: KeyPath, message: string, atKey = false) => issues.push({ path, message, severity: 'error', atKey });
  const warn = (path: KeyPath, message: string, atKey = false) => issues.push({ path, message, severity: 'warning', atKey });
  const unresolved = (path: KeyPath) => input.unresolved.has(JSON.stringify(path));
  const written = (path: KeyPath) => input.written.get(JSON.stringify(path));
  const fileMustExist = (path: KeyPath, file: unknown) => {
    if (typeof file !== 'string' || unresolved(path)) return;
    if (!existsSync(resolve(configDir, file))) issues.push({ path, message: `file ${JSON.stringify(file)} not found`, severity: 'error', environmental: true });
  };
  /** The file's certificates (or key) when it exists and holds them; a problem at the key otherwise. */
  const pemFile = <T>(path: KeyPath, file: unknown, read: (abs: string) => { ok: true; value: T } | { ok: false; message: string }): T | undefined => {
    if (typeof file !== 'string' || unresolved(path)) return undefined;
    const abs = resolve(configDir, file);
    if (!existsSync(abs)) return void fileMustExist(path, file);
    const r = read(abs);
    if (!r.ok) err(path, `file ${JSON.stringify(file)} ${r.message}`);
    return r.ok ? r.value : undefined;
  };
  const isObj = (v: unknown): v is Record<string, any> => !!v && typeof v === 'object' && !Array.isArray(v);
  /**
   * What clients will refuse in a served certificate file at `path` (its cert key): dates, names,
   * chain. Warnings, not errors: the file may be renewed where the gateway runs before it matters,
   * and a gateway that refused to start would take every app down with it; the file is the
   * operator's to fix, and lint says so.
   */
  const certificateWarnings = (path: KeyPath, certs: X509Certificate[] | undefined, hosts: string[]) => {
    const leaf = certs?.[0];
    if (!leaf) return;
    const at = [...path, 'cert'];
    const dates = outsideValidity(leaf);
    if (dates) warn(at, `${dates}: browsers and clients will refuse it`);
    const weak = weakKey(leaf);
    if (weak) warn(at, `${weak}; issue one with an RSA key of 2048 bits or more, or an EC P-256 key`);
    const missing = uncoveredHosts(leaf, hosts);
    if (missing.length) warn(at, `the certificate does not cover ${missing.join(', ')}: clients that check the name will refuse it`);
    const link = brokenLink(certs);
    if (link) warn(at, `certificate ${link + 1} in the file did not sign certificate ${link}: clients that need the chain will refuse it`);
    const issuer = link ? undefined : missingIssuer(certs);
    if (issuer) warn(at, `the file ends with a certificate issued by ${issuer}, which the file does not hold and which is no public root: clients that do not fetch missing intermediates (curl, Node, Java) will refuse it; use the full chain (certbot's fullchain.pem, not cert.pem), or for a private CA append its root`);
  };
  /**
   * A served certificate's key file that users beyond its owner and group can read, or its group
   * can write: any local account could pose as the gateway to its clients. Group read is left
   * alone (Debian's ssl-cert group, the service unit's drawbridge group). A warning, as the
   * gateway's own key files in stateDir get (stateFile.ts warnIfExposed): the fix is one chmod.
   */
  const keyFileMode = (path: KeyPath, file: unknown) => {
    if (typeof file !== 'string' || unresolved(path)) return;
    const mode = permissionsOf(resolve(configDir, file));
    if (mode === undefined || (mode & 0o026) === 0) return;
    const others = mode & 0o004 ? (mode & 0o002 ? 'read and replace' : 'read') : mode & 0o002 ? 'replace' : undefined;
    const who = others ? `every user of this host can ${others} it` : 'its group can replace it';
    warn(path, `the private key file's mode is ${octalMode(mode)}: ${who}, and whoever holds the key can pose as this gateway to its clients; run chmod 600 ${file} (640 when a group must read it)`);
  };
  const arr = (v: unknown): any[] => (Array.isArray(v) ? v : []);

  if (!isObj(raw)) return issues;

  // Browsers refuse SameSite=None on a cookie that is not Secure, so the gateway sends such a cookie as Lax.
  const sessionCookie = isObj(raw.session) && isObj(raw.session.cookie) ? raw.session.cookie : {};
  const NONE_NEEDS_SECURE = 'sameSite none needs a Secure cookie (browsers refuse it otherwise)';
  if (sessionCookie.sameSite === 'none' && sessionCookie.secure === false) warn(['session', 'cookie', 'sameSite'], `${NONE_NEEDS_SECURE}: with secure: false the session cookie is sent as SameSite=Lax`);
  const sameSiteNoneDowngrades = (a: Record<string, any>, i: number, ext: URL | undefined) => {
    const own = isObj(a.cookies) ? a.cookies : {};
    const cookie = { ...sessionCookie, ...own };
    if (cookie.sameSite !== 'none') return;
    const where: KeyPath | undefined = own.sameSite !== undefined ? ['apps', i, 'cookies', 'sameSite'] : own.secure !== undefined ? ['apps', i, 'cookies', 'secure'] : undefined;
    if (cookie.secure === false) {
      // Only session.cookie says so: reported there once, not for every app.
      if (where) warn(where, `${NONE_NEEDS_SECURE}: with secure: false this app's session cookie is sent as SameSite=Lax`);
    } else if (ext?.protocol === 'http:') {
      warn(where ?? ['apps', i, 'externalUrl'], `${NONE_NEEDS_SECURE}, and a cookie set over plain http cannot be Secure: this app's session cookie is sent as SameSite=Lax`);
    }
  };
  // secure: false on an https app drops Secure (and the __Host- prefix) from its session cookie:
  // the browser then also sends it over plain http, to anyone on the path who asks for
  // http://<the app's host>/. Said once where session.cookie says it, or at the app's own key.
  let insecureSessionCookieWarned = false;
  const insecureOnHttps = (a: Record<string, any>, i: number, ext: URL | undefined) => {
    const own = isObj(a.cookies) ? a.cookies : {};
    if (ext?.protocol !== 'https:' || ({ ...sessionCookie, ...own }.secure !== false)) return;
    const SENT_OVER_HTTP = "secure: false on an https app: its session cookie is sent without Secure, so the browser also sends it over plain http, where anyone on the network path can read it";
    if (own.secure === false) return warn(['apps', i, 'cookies', 'secure'], SENT_OVER_HTTP);
    if (insecureSessionCookieWarned) return;
    insecureSessionCookieWarned = true;
    warn(['session', 'cookie', 'secure'], `${SENT_OVER_HTTP} (apps[${i}] ${JSON.stringify(a.name)} and every https app that does not set its own)`);
  };
  const cookieLifetime = (path: KeyPath, value: unknown) => {
    const ms = typeof value === 'string' ? parseDuration(value) : undefined;
    // The session's expiry is whole seconds after sign-in: under a second it is expired as it is
    // issued, and every sign-in ends back at the provider, forever.
    if (ms !== undefined && ms < MIN_COOKIE_LIFETIME_MS) err(path, 'must be at least 1s: a shorter session expires as it is issued, and every sign-in would loop back to the provider');
    // Browsers keep a cookie at most 400 days (RFC 6265bis), whatever it asks for: a longer session
    // would end earlier than configured, without a word; too large to be a number, 8h was used instead.
    const overflows = ms === undefined && typeof value === 'string' && new RegExp(DURATION_PATTERN).test(value);
    if (overflows || (ms !== undefined && ms > MAX_COOKIE_LIFETIME_MS)) err(path, 'must be at most 400d: browsers keep no cookie longer');
  };
  cookieLifetime(['session', 'cookie', 'lifetime'], sessionCookie.lifetime);
  const cookieName = (path: KeyPath, value: unknown) => {
    // Browsers drop a cookie whose name has a prefix its attributes do not meet (Secure, and for
    // __Host- also Path=/), in any letter case: over http, with secure: false or under a path prefix
    // sign-in would loop. The gateway adds __Host- itself where the cookie meets it.
    const prefix = typeof value === 'string' ? /^__(host|secure)-/i.exec(value)?.[0] : undefined;
    if (prefix) err(path, `must not start with ${prefix}: the gateway adds the __Host- prefix itself where a cookie can carry it, and browsers drop a prefixed cookie that does not meet the prefix's rules (sign-in would loop)`);
  };
  cookieName(['session', 'cookie', 'name'], sessionCookie.name);
  const gw = isObj(raw.gateway) ? raw.gateway : {};
  const listen = isObj(gw.listen) ? gw.listen : {};

  // gateway
  if (typeof gw.publicUrl === 'string') checkUrl(['gateway', 'publicUrl'], gw.publicUrl, { err, allowPath: true });
  // A mapping holding only misspelt keys already has an "unknown key" each; saying it is empty too would be noise.
  if (isObj(gw.listen) && Object.keys(listen).length === 0) err(['gateway', 'listen'], 'needs at least one listener: https or http');
  if (listen.https !== undefined && !isObj(gw.tls)) err(['gateway', 'listen', 'https'], 'an https listener needs gateway.tls.cert and gateway.tls.key');
  if (isObj(gw.tls)) {
    const certs = pemFile(['gateway', 'tls', 'cert'], gw.tls.cert, readCertificates);
    const key = pemFile(['gateway', 'tls', 'key'], gw.tls.key, readPrivateKey);
    if (key) keyFileMode(['gateway', 'tls', 'key'], gw.tls.key);
    if (certs && key && !keyMatches(certs[0]!, key)) err(['gateway', 'tls', 'key'], `is not the private key of the certificate in gateway.tls.cert (${certs[0]!.subject.replace(/\n/g, ', ')})`);
    // Hosts served an app's certificate (apps[].tls, its own or its `*.` parent's, as the SNI callback picks) are not the default certificate's to cover.
    const ownCert = new Set(arr(raw.apps).flatMap((a) => (isObj(a) && isObj(a.tls) && typeof a.externalUrl === 'string' ? [httpsHostOf(a.externalUrl)] : [])).filter((h) => h && !isIP(h)));
    const hosts = [gw.publicUrl, ...arr(raw.apps).map((a) => (isObj(a) ? a.externalUrl : undefined))]
      .flatMap((u) => (typeof u === 'string' ? [httpsHostOf(u)] : []))
      .filter((h): h is string => !!h && !hostPatternsFor(h).some((p) => ownCert.has(p)));
    certificateWarnings(['gateway', 'tls'], certs, hosts);
    if (listen.https === undefined) warn(['gateway', 'tls'], 'gateway.tls is set but there is no https listener');
  }
  arr(gw.trustedProxies).forEach((c, i) => typeof c === 'string' && !parseCidr(c) && err(['gateway', 'trustedProxies', i], `${JSON.stringify(c)} is not a valid CIDR range or address`));

  // listeners: a port out of range in host:port form, or two listeners on one port, would only fail at bind time
  const listeners: { path: KeyPath; value: unknown }[] = [
    { path: ['gateway', 'listen', 'https'], value: listen.https },
    { path: ['gateway', 'listen', 'http'], value: listen.http },
    { path: ['gateway', 'admin', 'listen'], value: isObj(gw.admin) ? gw.admin.listen : undefined },
    { path: ['connectors', 'listen'], value: isObj(raw.connectors) ? raw.connectors.listen : undefined },
  ];
  const bound: { path: KeyPath; host?: string; port: number }[] = [];
  for (const l of listeners) {
    if (unresolved(l.path)) continue;
    const addr = listenAddress(l.value);
    if (!addr) continue;
    if (addr.port > 65535) {
      // A bare number out of range already has its schema error.
      if (typeof l.value === 'string') err(l.path, `port ${addr.port} is out of range (0-65535)`);
      continue;
    }
    if (l.path[1] === 'admin') {
      const exposed = adminExposure(addr.host);
      // A warning, not a different meaning: a bare port binds every interface on every listener,
      // and a container's admin port is often meant to be scraped from outside on purpose.
      // From a ${...}, the address is a secret's text: neither its host nor its port is echoed.
      const from = written(l.path);
      const fix = from === undefined ? `write 127.0.0.1:${addr.port}` : `make ${JSON.stringify(from)} resolve to 127.0.0.1 and the port`;
      if (exposed) warn(l.path, `binds ${from === undefined ? exposed : 'further than this host'}: /metrics and /connectors answer without authentication to anyone who can reach it; ${fix} (or a private address)`);
    }
    // Port 0 asks the system for a free port: never a clash.
    const clash = addr.port !== 0 && bound.find((b) => b.port === addr.port && (b.host === undefined || addr.host === undefined || b.host === addr.host));
    // connectors.listen may name the https listener's own address: connectors are then told
    // apart by their ClientHello (gateway/sharedTlsPort.ts). Only the same address: one bound to
    // every interface and one to a single address would still clash at bind time.
    const sharesHttps = clash && l.path[0] === 'connectors' && clash.path[2] === 'https';
    if (sharesHttps && clash.host !== addr.host) err(l.path, `port ${addr.port} is already taken by gateway.listen.https: to share its port, connectors.listen must name the same address (one binds every interface, the other one address)`);
    else if (clash && !sharesHttps) err(l.path, `port ${addr.port} is already taken by ${formatPath(clash.path)}`);
    else if (!clash) bound.push({ path: l.path, ...addr });
  }

  // identity and session
  const id = isObj(raw.identity) ? raw.identity : undefined;
  if (id) {
    if (typeof id.issuer === 'string' && !unresolved(['identity', 'issuer'])) checkUrl(['identity', 'issuer'], id.issuer, { err, allowPath: true, httpsUnlessLoopback: true });
    if (Array.isArray(id.scopes) && !id.scopes.includes('openid')) err(['identity', 'scopes'], 'must include "openid"');
    if (id.clientSecret === undefined) warn(['identity'], 'no clientSecret: the provider must accept a public client with PKCE');
    // an empty ${file:} or ${env:} value: every sign-in would fail at the token endpoint
    else if (typeof id.clientSecret === 'string' && !id.clientSecret.trim() && !unresolved(['identity', 'clientSecret'])) err(['identity', 'clientSecret'], 'is empty: every sign-in would be refused by the provider (leave the key out for a public client)');
    if (typeof id.clockTolerance === 'string') {
      // Every token stays good this long after it expires: a slip such as 60d for 60s would accept
      // tokens months old, without a word.
      const ms = parseDuration(id.clockTolerance);
      const overflows = ms === undefined && new RegExp(DURATION_PATTERN).test(id.clockTolerance);
      if (overflows || (ms !== undefined && ms > MAX_CLOCK_TOLERANCE_MS)) err(['identity', 'clockTolerance'], 'must be at most 10m: tokens are accepted this long after they expire, and clocks that keep time drift by seconds');
    }
  }
  const session = isObj(raw.session) ? raw.session : undefined;
  arr(session?.secrets).forEach((s, i) => {
    if (typeof s === 'string' && !unresolved(['session', 'secrets', i]) && s.length < 32) err(['session', 'secrets', i], 'a session secret needs at least 32 characters');
  });

  // connectors and groups
  const groups = isObj(raw.connectorGroups) ? raw.connectorGroups : {};
  const locations = isObj(raw.locations) ? raw.locations : {};
  for (const [name, list] of Object.entries(locations)) {
    arr(list).forEach((c, i) => typeof c === 'string' && !parseCidr(c) && err(['locations', name, i], `${JSON.stringify(c)} is not a valid CIDR range or address`));
  }
  const cl = isObj(raw.connectors) ? raw.connectors : undefined;
  if (cl && typeof cl.certificateLifetime === 'string') {
    const ms = parseDuration(cl.certificateLifetime);
    if (ms !== undefined && ms < 60_000) err(['connectors', 'certificateLifetime'], 'must be at least 1m');
    // The certificate is a connector's only credential and revocation is a list someone must remember to
    // edit: a year bounds a forgotten stolen one, like the connector listener's own certificate from the
    // same CA. (Without a bound, a lifetime past JavaScript's last date failed every enrollment.)
    const overflows = ms === undefined && new RegExp(DURATION_PATTERN).test(cl.certificateLifetime);
    if (overflows || (ms !== undefined && ms > MAX_CERTIFICATE_LIFETIME_MS)) err(['connectors', 'certificateLifetime'], 'must be at most 365d');
  }
  // an id that matches no connector revokes nothing, without a word
  if (cl) arr(cl.revoked).forEach((r, i) => typeof r === 'string' && !CONNECTOR_ID.test(r.trim()) && warn(['connectors', 'revoked', i], `${JSON.stringify(r)} is not a connector id (c- and 16 hex digits, as \`drawbridge connectors\` lists them): it revokes no connector the gateway enrolled`));
  // a name the certificate cannot carry would only show as every connector's TLS error
  if (cl) arr(cl.serverNames).forEach((n, i) => typeof n === 'string' && !isIP(n.replace(/^\[|\]$/g, '')) && !DNS_NAME.test(n) && err(['connectors', 'serverNames', i], `${JSON.stringify(n)} is not a DNS name or an IP address`));

  // apps (collected first: policies refer to them)
  const apps = arr(raw.apps);
  const appNames = new Map<string, number>();
  apps.forEach((a, i) => {
    if (isObj(a) && typeof a.name === 'string') {
      const key = a.name.toLowerCase();
      if (appNames.has(key)) err(['apps', i, 'name'], `duplicate app name ${JSON.stringify(a.name)} (also apps[${appNames.get(key)}])`);
      else appNames.set(key, i);
    }
  });

  // policies
  const policies = isObj(raw.policies) ? raw.policies : {};
  for (const [name, p] of Object.entries(policies)) {
    if (!isObj(p)) continue;
    const when = isObj(p.when) ? p.when : {};
    arr(when.apps).forEach((a, i) => typeof a === 'string' && !appNames.has(a.toLowerCase()) && err(['policies', name, 'when', 'apps', i], `unknown app ${JSON.stringify(a)}`));
    // A policy that can apply to no app is switched off without a word, as an empty condition list
    // would be: one written as tenant-wide (Entra's "all apps") left every app unguarded.
    const appsNamed = new Set(arr(when.apps).filter((a): a is string => typeof a === 'string').map((a) => a.toLowerCase()));
    const listing = apps.flatMap((a, i) => (isObj(a) && typeof a.name === 'string' && arr(a.conditionalAccess).includes(name) ? [{ i, name: a.name, at: arr(a.conditionalAccess).indexOf(name) }] : []));
    if (!appsNamed.size && !listing.length) warn(['policies', name], "applies to no app: no app lists it in conditionalAccess and its when.apps names none (a policy is never tenant-wide)", true);
    if (appsNamed.size) for (const l of listing.filter((l) => !appsNamed.has(l.name.toLowerCase()))) warn(['apps', l.i, 'conditionalAccess', l.at], `policy ${JSON.stringify(name)} never applies to ${l.name}: its when.apps names other apps only`);
    arr(when.paths).forEach((g, i) => {
      const problem = typeof g === 'string' && g.startsWith('/') ? pathFormProblem(g, JSON.stringify, 'match', written(['policies', name, 'when', 'paths', i])) : undefined;
      if (problem) err(['policies', name, 'when', 'paths', i], problem);
    });
    const globs = arr(when.paths).filter((g): g is string => typeof g === 'string' && g.startsWith('/'));
    if (globs.length) {
      // Paths are matched as the client asks for them, the app's prefix included: a glob written for
      // the internal path of an app published under a prefix never matches, and its block is skipped.
      const named = new Set(arr(when.apps).filter((a): a is string => typeof a === 'string').map((a) => a.toLowerCase()));
      const globWritten = arr(when.paths).some((_g, i) => written(['policies', name, 'when', 'paths', i]) !== undefined);
      apps.forEach((a, i) => {
        if (!isObj(a) || typeof a.name !== 'string' || typeof a.externalUrl !== 'string') return;
        const lists = arr(a.conditionalAccess).includes(name) && (!named.size || named.has(a.name.toLowerCase()));
        if (!lists && !named.has(a.name.toLowerCase())) return;
        const prefix = externalPrefixOf(a.externalUrl);
        if (prefix && prefix !== '/' && !globs.some((g) => globMayMatchUnder(g, prefix))) {
          // The prefix and the example are computed from the values: from a ${...}, they would print a secret.
          const urlWritten = written(['apps', i, 'externalUrl']);
          const at = urlWritten === undefined ? prefix : `the path of ${JSON.stringify(urlWritten)}`;
          const example = urlWritten === undefined && !globWritten ? ` (e.g. ${prefix}${globs[0]!.slice(1)})` : '';
          warn(['policies', name, 'when', 'paths'], `none of these paths can match app ${a.name}, published at ${at}: paths are matched as the client requests them, prefix included${example}`);
        }
      });
    }
    for (const key of ['locations', 'notLocations'] as const) {
      arr(when[key]).forEach((l, i) => typeof l === 'string' && !Object.hasOwn(locations, l) && err(['policies', name, 'when', key, i], `unknown location ${JSON.stringify(l)}${hint(l, Object.keys(locations))}`));
    }
    // No token has a claim with an empty name: the condition would be decided on a value that is never there.
    if (isObj(when.claims) && Object.hasOwn(when.claims, '')) err(['policies', name, 'when', 'claims', ''], 'a claim name must not be empty', true);
    if (isObj(when.time)) {
      if (typeof when.time.timezone === 'string' && !isTimezone(when.time.timezone)) err(['policies', name, 'when', 'time', 'timezone'], `${JSON.stringify(when.time.timezone)} is not an IANA timezone (e.g. Europe/Berlin)`);
      // Only a well-formed window can be compared; a malformed one already has its schema error.
      if (typeof when.time.hours === 'string' && HOURS_WINDOW.test(when.time.hours)) {
        const [from, to] = when.time.hours.split('-');
        if (from && to && from >= to) err(['policies', name, 'when', 'time', 'hours'], 'the window must end after it starts (use two policies for a window across midnight)');
      }
    }
    if (p.grant === undefined && !isObj(p.session)) err(['policies', name], 'a policy needs a grant or a session control', true);
    if (isObj(p.session) && typeof p.session.signInFrequency === 'string') {
      const ms = parseDuration(p.session.signInFrequency);
      // A sign-in's age is counted in whole seconds; the policy engine refuses 0 when it compiles the policy.
      if (ms !== undefined && ms < 1000) err(['policies', name, 'session', 'signInFrequency'], 'must be at least 1s (sign-in ages are counted in whole seconds)');
    }
  }

  // plugins by name
  const pluginByName = new Map(input.plugins.map((l) => [l.plugin.name, l.plugin]));

  // apps
  const claims = new Map<string, number>();
  const lenientClaims = new Map<string, number>();
  const audiences = new Map<string, number>();
  /** the apps seen so far on each host, with what decides who may use them */
  const onHost = new Map<string, { i: number; preAuth: string; assignment: string }[]>();
  /** the first app with a certificate of its own on each https host, with its files as resolved */
  const certOnHost = new Map<string, { i: number; certFile: unknown; keyFile: unknown }>();
  apps.forEach((a, i) => {
    if (!isObj(a)) return;
    const at = (...p: (string | number)[]): KeyPath => ['apps', i, ...p];
    const preAuth = a.preAuth ?? 'oidc';
    let ext: URL | undefined;
    if (typeof a.externalUrl === 'string') {
      ext = checkUrl(at('externalUrl'), a.externalUrl, { err, allowPath: true, wildcard: true });
      if (ext) {
        const scheme = ext.protocol.slice(0, -1);
        if (scheme === 'https' && listen.https === undefined) err(at('externalUrl'), 'is https but gateway.listen.https is not set');
        if (scheme === 'http' && listen.http === undefined) err(at('externalUrl'), 'is http but gateway.listen.http is not set');
        if (scheme === 'http' && listen.https !== undefined) err(at('externalUrl'), 'is http, but with an https listener the http listener only redirects to https');
        const problem = pathFormProblem(ext.pathname, (p) => p, 'start with', written(at('externalUrl')));
        if (problem) err(at('externalUrl'), problem);
        const host = ext.hostname.toLowerCase().replace('%2a', '*');
        const prefix = ext.pathname.endsWith('/') ? ext.pathname : ext.pathname + '/';
        const key = `${host}${prefix}`;
        if (claims.has(key)) err(at('externalUrl'), `host and path already claimed by apps[${claims.get(key)}]`);
        else {
          claims.set(key, i);
          // The gateway sends another spelling of a prefix to its app (router.ts); two prefixes
          // that are one path to IIS leave it to pick one of them for the other spellings.
          const lenientKey = `${host}${lenientPath(prefix)}`;
          const twin = lenientClaims.get(lenientKey);
          if (twin !== undefined) warn(at('externalUrl'), `its path differs from that of apps[${twin}] only in letter case or trailing dots: a server that ignores them (IIS) sees one path, and the gateway sends other spellings of it to one of the two apps`);
          else lenientClaims.set(lenientKey, i);
        }
        const here = { i, preAuth: String(preAuth), assignment: JSON.stringify(a.assignment ?? null) };
        const neighbours = onHost.get(host) ?? [];
        const other = neighbours.find((n) => n.preAuth !== here.preAuth || n.assignment !== here.assignment);
        if (other) {
          const what = other.preAuth !== here.preAuth ? `preAuth ${other.preAuth}` : 'another assignment';
          // (the host of a URL that came from a ${...} is not shown: it was resolved from a secret, perhaps)
          const shownHost = written(at('externalUrl')) === undefined ? `host ${host}` : 'its host';
          warn(at('externalUrl'), `shares ${shownHost} with apps[${other.i}], which has ${what}: apps on one host are one browser origin, so a page of either can read the other with the user's session and sign it out; publish apps with different sign-in, assignment or trust on hosts of their own`);
        }
        onHost.set(host, [...neighbours, here]);
      }
    }
    if (isObj(a.tls)) {
      const certs = pemFile(at('tls', 'cert'), a.tls.cert, readCertificates);
      const key = pemFile(at('tls', 'key'), a.tls.key, readPrivateKey);
      if (key) keyFileMode(at('tls', 'key'), a.tls.key);
      if (certs && key && !keyMatches(certs[0]!, key)) err(at('tls', 'key'), `is not the private key of the certificate in apps[${i}].tls.cert (${certs[0]!.subject.replace(/\n/g, ', ')})`);
      const host = ext && typeof a.externalUrl === 'string' ? httpsHostOf(a.externalUrl) : undefined;
      if (ext && !host) err(at('tls'), 'an app certificate is served by the https listener, and this externalUrl is http');
      // SNI carries DNS names only (RFC 6066): a client of an IP address names no host, so gets gateway.tls
      if (host && isIP(host)) err(at('tls'), `clients name no host when they connect to an IP address (SNI carries DNS names only), so this certificate would never be served: they get gateway.tls; publish the app on a DNS name, or put ${host} in gateway.tls's certificate`);
      else if (host) {
        certificateWarnings(at('tls'), certs, [host]);
        // SNI names a host, not a path: two certificates for one host could not both be served
        const first = certOnHost.get(host);
        // the files, not their spelling: ./shop.crt, shop.crt and its absolute path are one certificate
        const file = (f: unknown) => (typeof f === 'string' ? resolve(configDir, f) : f);
        const certFile = file(a.tls.cert);
        const keyFile = file(a.tls.key);
        if (first && (first.certFile !== certFile || first.keyFile !== keyFile)) err(at('tls'), `apps[${first.i}] has another certificate for host ${host}: a host is served one certificate (clients name the host, not the path, when they ask for it); give both apps the same tls`);
        else if (!first) certOnHost.set(host, { i, certFile, keyFile });
      }
    }
    if (typeof a.internalUrl === 'string' && !unresolved(at('internalUrl'))) {
      const int = checkUrl(at('internalUrl'), a.internalUrl, { err, allowPath: true });
      if (int && a.backend?.tls?.ca !== undefined && int.protocol !== 'https:') warn(at('backend', 'tls', 'ca'), 'only used for https internal URLs');
      // Headers (Location, Link, cookie paths) are translated, path-absolute URLs included; a body is
      // only searched for the whole internal URL, since a bare "/app/" in a page is as often text as a link.
      if (int && ext && prefixOf(int) !== prefixOf(ext)) {
        // paths of URLs that came from a ${...} are named by the reference as written, never shown
        const shown = (key: 'internalUrl' | 'externalUrl', path: string) => {
          const w = written(at(key));
          return w === undefined ? path : `(that of ${JSON.stringify(w)})`;
        };
        const links = written(at('internalUrl')) === undefined ? `as "${prefixOf(int)}…"` : 'under that path';
        warn(at('internalUrl'), `its path ${shown('internalUrl', prefixOf(int))} is not externalUrl's ${shown('externalUrl', prefixOf(ext))}: links the app writes into its pages ${links} are not translated and lead out of the app on the external host; publish it under the same path, or have it write relative links`);
      }
    }
    arr(a.websocketOrigins).forEach((o, j) => {
      if (typeof o !== 'string') return;
      const url = checkUrl(at('websocketOrigins', j), o, { err });
      if (url && (url.pathname !== '/' || o.endsWith('/'))) err(at('websocketOrigins', j), `must be an origin (scheme://host[:port], no path): write ${JSON.stringify(url.origin)}`);
    });
    if (a.websocketOrigins !== undefined && a.websockets !== true) warn(at('websocketOrigins'), 'ignored: the app does not accept WebSockets (websockets: true)');
    if (a.websocketOrigins !== undefined && preAuth !== 'oidc') warn(at('websocketOrigins'), 'ignored: only a session cookie is checked against the page\'s origin, and a passthrough app has none');
    if (typeof a.connectorGroup === 'string') {
      if (!(a.connectorGroup in groups)) err(at('connectorGroup'), `unknown connector group ${JSON.stringify(a.connectorGroup)}${hint(a.connectorGroup, Object.keys(groups))}`);
      else if (!cl) err(at('connectorGroup'), 'apps behind a connector group need the connectors: section');
    }
    if (preAuth === 'oidc') {
      if (typeof a.audience === 'string') {
        // A copied app entry, most likely: each app should be its own API at the provider (Entra gives each its own Application ID URI).
        const other = audiences.get(a.audience);
        if (other !== undefined) warn(at('audience'), `apps[${other}] has this audience too: a token issued for one of them is accepted by the other (assignment and policies still apply to each)`);
        else audiences.set(a.audience, i);
      }
      // An assignment names who may use the app; one that names nobody is refused when the gateway starts.
      if (isObj(a.assignment) && !arr(a.assignment.users).length && !arr(a.assignment.groups).length) err(at('assignment'), 'lists no users and no groups: nobody could use the app (leave assignment out to let every signed-in user in)');
      if (!id) err(at('preAuth'), 'preAuth oidc needs the identity: section');
      if (!session) err(at('preAuth'), 'preAuth oidc needs the session: section (secrets)');
    } else {
      if (a.assignment) err(at('assignment'), 'assignment needs preAuth: oidc (a passthrough app has no signed-in user)');
      if (a.audience) warn(at('audience'), 'ignored: a passthrough app accepts no bearer tokens');
      if (a.requiredScopes) warn(at('requiredScopes'), 'ignored: a passthrough app accepts no bearer tokens');
      if (a.headers?.identity) err(at('headers', 'identity'), 'identity headers need preAuth: oidc');
      if (a.headers?.assertion) err(at('headers', 'assertion'), 'an identity assertion needs preAuth: oidc');
      if (a.sso) err(at('sso'), 'single sign-on needs preAuth: oidc');
    }
    arr(a.conditionalAccess).forEach((p, j) => typeof p === 'string' && !Object.hasOwn(policies, p) && err(at('conditionalAccess', j), `unknown policy ${JSON.stringify(p)}${hint(p, Object.keys(policies))}`));
    if (preAuth === 'passthrough') {
      // Nobody signs in here: identity conditions count as matching and requirements cannot be met (fail closed).
      arr(a.conditionalAccess).forEach((p, j) => {
        const pol = typeof p === 'string' && Object.hasOwn(policies, p) && isObj(policies[p]) ? policies[p] : undefined;
        if (!pol) return;
        const w = isObj(pol.when) ? pol.when : {};
        const asks = [pol.grant === 'requireMfa' || pol.grant === 'requireCompliantDevice' ? pol.grant : undefined, isObj(pol.session) ? 'signInFrequency' : undefined].filter(Boolean);
        const needs = ['users', 'groups', 'claims', 'clientApps'].filter((k) => w[k] !== undefined);
        if (asks.length) warn(at('conditionalAccess', j), `policy ${p} needs ${asks.join(' and ')}, which nobody can meet without sign-in: on this passthrough app it denies every request it applies to`);
        else if (needs.length && pol.grant === 'block') warn(at('conditionalAccess', j), `policy ${p} tests ${needs.join(', ')}, unknown without sign-in and taken to match: on this passthrough app it blocks every request its other conditions match`);
      });
    }
    if (isObj(a.headers?.identity)) {
      const seen = new Map<string, string>();
      for (const h of Object.keys(a.headers.identity)) {
        if (RESERVED_HEADERS.has(foldedHeader(h))) err(at('headers', 'identity', h), `${h} cannot carry an identity: the gateway or HTTP owns it`, true);
        // In letter case only, the backend would get one of the two values, the other dropped; in
        // `_` or `.`, both are sent and a folding server reads them joined, as one.
        const first = seen.get(foldedHeader(h));
        if (first !== undefined) err(at('headers', 'identity', h), `${h} is ${first} again (${sameBecause(h, first)}): ${first.toLowerCase() === h.toLowerCase() ? 'only one of the two would be sent' : 'the app would read both values as one'}`, true);
        else seen.set(foldedHeader(h), h);
        const dropped = droppedName(h);
        if (dropped) warn(at('headers', 'identity', h), dropped);
      }
    }
    if (preAuth === 'oidc') {
      sameSiteNoneDowngrades(a, i, ext);
      insecureOnHttps(a, i, ext);
    }
    if (isObj(a.cookies)) {
      cookieLifetime(at('cookies', 'lifetime'), a.cookies.lifetime);
      cookieName(at('cookies', 'name'), a.cookies.name);
    }
    if (typeof a.headers?.assertion === 'string' && RESERVED_HEADERS.has(foldedHeader(a.headers.assertion))) err(at('headers', 'assertion'), `${a.headers.assertion} cannot carry the assertion`);
    const droppedAssertion = typeof a.headers?.assertion === 'string' && droppedName(a.headers.assertion);
    if (droppedAssertion) warn(at('headers', 'assertion'), droppedAssertion);
    if (typeof a.headers?.assertion === 'string' && isObj(a.headers.identity)) {
      const assertion = foldedHeader(a.headers.assertion);
      const same = Object.keys(a.headers.identity).find((h) => foldedHeader(h) === assertion);
      // One header, two values: the assertion is set last, so the app would read the JWT as that identity field.
      if (same !== undefined) err(at('headers', 'assertion'), `${a.headers.assertion} is also headers.identity's ${same} (${sameBecause(a.headers.assertion, same)}): the app would get the assertion in place of ${JSON.stringify(a.headers.identity[same])}`);
    }
    if (typeof a.backendTimeout === 'string' && a.backendTimeout !== 'default' && a.backendTimeout !== 'long') {
      const ms = parseDuration(a.backendTimeout);
      if (ms !== undefined && (ms < 100 || ms > 3_600_000)) err(at('backendTimeout'), 'must be between 100ms and 1h');
    }
    if (a.backend?.tls?.ca !== undefined) pemFile(at('backend', 'tls', 'ca'), a.backend.tls.ca, readCertificates);
    if (isObj(a.sso) && typeof a.sso.plugin === 'string') {
      const p = pluginByName.get(a.sso.plugin);
      if (!p) {
        if (input.unloadedPluginNames.size) {
          // A package's name need not be its plugin's (drawbridge-plugin-kcd-shim is kcd-shim): while
          // an entry is not loaded here, the name may be that one's, so lint cannot call it unknown.
          if (!input.unloadedPluginNames.has(a.sso.plugin)) issues.push({ path: at('sso', 'plugin'), message: `no plugin loaded here is named ${JSON.stringify(a.sso.plugin)}: it may be the one a plugins: entry that was not loaded provides (its options were not checked)`, severity: 'error', environmental: true });
        } else {
          const sso = [...pluginByName.values()].filter((q) => q.kind === 'sso').map((q) => q.name);
          err(at('sso', 'plugin'), `unknown plugin ${JSON.stringify(a.sso.plugin)}${sso.length ? ` (sso plugins: ${sso.join(', ')})` : ' (no sso plugin is loaded: list it under plugins:)'}`);
        }
      } else if (p.kind !== 'sso') {
        err(at('sso', 'plugin'), `plugin ${JSON.stringify(p.name)} is ${p.kind === 'access' ? 'an' : 'a'} ${p.kind} plugin, not an sso plugin`);
      } else {
        for (const s of validateAgainst(p.optionsSchema, a.sso.options ?? {}, at('sso', 'options'))) err(s.path, s.message, s.atKey);
      }
    }
  });
  portalTaken(gw.publicUrl, apps, !!id && !!session, warn);
  return issues;
}

/**
 * The app portal is served at publicUrl's host and path when identity is configured, unless an app
 * is published there (identity/portal.ts): said at that app, since the operator may expect both.
 */
function portalTaken(publicUrl: unknown, apps: unknown[], signIn: boolean, warn: (p: KeyPath, m: string) => void): void {
  if (!signIn || typeof publicUrl !== 'string' || !URL.canParse(publicUrl)) return;
  const portal = new URL(publicUrl);
  const router = new Router<{ name: string; i: number }>();
  apps.forEach((a, i) => {
    const url = (a as { externalUrl?: unknown } | null)?.externalUrl;
    if (typeof url !== 'string') return;
    let ext: URL;
    try {
      ext = externalUrlOf(url);
    } catch {
      return; // (the URL's own problem is said where it is checked)
    }
    router.add(wildcardHostOf(ext), prefixOf(ext), { name: String(i), i });
  });
  const taker = router.match(hostPatternOf(portal), prefixOf(portal));
  if (taker) warn(['apps', taker.target.i, 'externalUrl'], `is where gateway.publicUrl puts the app portal (${portal.origin}${prefixOf(portal)}): the app takes the address, and the gateway serves no portal`);
}

/** host (undefined: every interface) and port of a `listen` value; undefined when the schema rejects its form anyway. */
function listenAddress(v: unknown): { host?: string; port: number } | undefined {
  if (typeof v === 'number' && Number.isInteger(v)) return { port: v };
  if (typeof v !== 'string') return undefined;
  const m = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+|[0-9A-Fa-f:.]+):([0-9]{1,5})$/.exec(v);
  if (!m) return undefined;
  const host = m[1]!.toLowerCase();
  return { host: host === '0.0.0.0' || host === '[::]' || host === '::' ? undefined : host, port: Number(m[2]) };
}

/** How far an admin listener's host reaches, when further than loopback or a private network; undefined otherwise. */
function adminExposure(host: string | undefined): string | undefined {
  if (host === undefined) return 'every interface';
  if (host === 'localhost') return undefined;
  const ip = parseIp(host);
  // A host name: where it resolves is not known here.
  if (!ip) return undefined;
  return ['loopback', 'private', 'uniqueLocal', 'linkLocal', 'carrierGradeNat'].includes(ip.range()) ? undefined : `a public address (${host})`;
}

/** the known names a problem lists; past them, how many more (3,000 locations made a 20,000-character line) */
const HINT_NAMES = 10;

function hint(word: string, known: string[]): string {
  if (!known.length) return ` (none defined)`;
  const more = known.length - HINT_NAMES;
  return ` (known: ${known.slice(0, HINT_NAMES).join(', ')}${more > 0 ? ` and ${more} more` : ''})`;
}

export function isTimezone(tz: string): boolean {
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: tz });
    return tz.length > 0;
  } catch {
    return false;
  }
}

function checkUrl(
  path: KeyPath,
  text: string,
  o: { err: (p: KeyPath, m: string) => void; allowPath?: boolean; wildcard?: boolean; httpsUnlessLoopback?: boolean },
): URL | undefined {
  let url: URL;
  const probe = o.wildcard && /^https?:\/\/\*\./i.test(text) ? text.replace('*.', 'wildcard---.') : text;
  try {
    url = new URL(probe);
  } catch {
    o.err(path, `${JSON.stringify(text)} is not a valid URL`);
    return undefined;
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    o.err(path, `${JSON.stringify(text)} must be an http or https URL`);
    return undefined;
  }
  if (url.username || url.password) o.err(path, 'must not contain credentials');
  if (url.search || url.hash || text.includes('?') || text.includes('#')) o.err(path, 'must not contain a query or fragment');
  if (!o.wildcard && url.hostname.includes('*')) o.err(path, 'wildcard hosts are only allowed in externalUrl');
  // The router knows one wildcard form, a whole first label; anything else would be matched literally.
  if (o.wildcard && url.hostname.includes('*')) {
    o.err(path, 'a wildcard must be the whole first label of the host, e.g. https://*.apps.example.test/');
    return undefined;
  }
  if (o.httpsUnlessLoopback && url.protocol === 'http:' && !['localhost', '127.0.0.1', '[::1]'].includes(url.hostname)) o.err(path, 'must be https (http only for localhost)');
  return probe !== text ? new URLWithWildcard(probe) : url;
}

/** A URL whose first host label was "*"; hostname reports it as "*.rest". */
class URLWithWildcard extends URL {
  override get hostname(): string {
    return super.hostname.replace(/^wildcard---\./, '*.');
  }
}

/** The path of an app's externalUrl, ending in `/`; undefined if it is not a URL. */
function externalPrefixOf(externalUrl: string): string | undefined {
  try {
    return prefixOf(externalUrlOf(externalUrl));
  } catch {
    return undefined;
  }
}

/** Whether some path under `prefix` could match `glob`: their literal starts agree. */
function globMayMatchUnder(glob: string, prefix: string): boolean {
  const star = glob.indexOf('*');
  const literal = star >= 0 ? glob.slice(0, star) : glob;
  return literal.startsWith(prefix) || prefix.startsWith(literal) || literal === prefix.slice(0, -1);
}

/** the ids enrollment gives connectors (ca.ts issueClient), in any letter case */
const CONNECTOR_ID = /^c-[0-9a-f]{16}$/i;

/** The host of an https URL as a certificate names it (a leading *. kept, no brackets around IPv6); undefined for another scheme or a URL that does not parse. */
function httpsHostOf(u: string): string | undefined {
  if (!/^https:\/\//i.test(u)) return undefined;
  try {
    return wildcardHostOf(externalUrlOf(u)).replace(/^\[|\]$/g, '');
  } catch {
    return undefined;
  }
}
