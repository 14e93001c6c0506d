/**
 * Reaching out through an HTTP proxy. Many networks let nothing out but through a proxy, and
 * Entra's connectors follow the machine's proxy setting. So do the connector, dialling the
 * gateway (`--proxy URL`, else HTTPS_PROXY / https_proxy with NO_PROXY / no_proxy), and the
 * gateway, asking its identity provider for discovery, keys and tokens (the variables).
 *
 * The proxy gets a CONNECT to the host and port and then relays bytes: TLS runs inside the
 * tunnel, end to end, so the proxy sees the host's name and nothing else. For a connector, a
 * proxy that inspects TLS cannot sit there (it would need the connector's key).
 */
import type { ClientRequestArgs } from 'node:http';
import net from 'node:net';
import type { Duplex } from 'node:stream';
import tls, { type ConnectionOptions } from 'node:tls';
import { parseCidr, parseIp } from '../config/net.js';
import { UsageError } from '../errors.js';

export interface OutboundProxy {
  readonly host: string;
  readonly port: number;
  /** the Proxy-Authorization value for credentials in the URL (http://user:password@host:port) */
  readonly authorization?: string;
  /** https:// proxy: the CONNECT itself goes over TLS to the proxy (its certificate checked by the system CAs and NODE_EXTRA_CA_CERTS) */
  readonly tls: boolean;
  /** http(s)://host:port, never with the credentials: what logs and messages show */
  readonly display: string;
  /** where the setting came from: --proxy, HTTPS_PROXY, https_proxy */
  readonly from: string;
}

/** The proxy setting as given, before NO_PROXY is applied to a gateway: parsed and checked at once. */
export interface ProxySetting {
  readonly proxy: OutboundProxy;
  /** NO_PROXY's entries, for a setting from the environment; an explicit --proxy is always used */
  readonly noProxy: readonly string[];
}

/** OpenSSL's codes for a certificate that does not verify or name its host (an https:// proxy's) */
const UNTRUSTED = /CERT|SELF_SIGNED|UNABLE_TO_|ALTNAME/;
/** how long the proxy has to connect us and answer the CONNECT */
const CONNECT_TIMEOUT_MS = 15_000;
/** a CONNECT answer's head longer than this is no proxy's */
const MAX_ANSWER_HEAD = 16 * 1024;

/**
 * --proxy, else the environment's HTTPS_PROXY (https_proxy first, as curl reads it), or undefined:
 * dial directly. A value that is not an http:// or https:// proxy URL is bad usage, named with where it came from.
 */
export function proxySettingFrom(flag: string | undefined, env: NodeJS.ProcessEnv = process.env): ProxySetting | undefined {
  if (flag !== undefined) return { proxy: parseProxyUrl(flag, '--proxy'), noProxy: [] };
  const from = env.https_proxy ? 'https_proxy' : env.HTTPS_PROXY ? 'HTTPS_PROXY' : undefined;
  if (!from) return undefined;
  const noProxy = (env.no_proxy || env.NO_PROXY || '')
    .split(/[\s,]+/)
    .map((e) => e.trim().toLowerCase())
    .filter(Boolean);
  return { proxy: parseProxyUrl(env[from]!, from), noProxy };
}

/** The proxy to reach `gateway` through, or undefined when there is none or NO_PROXY covers it. */
export function proxyFor(gateway: URL | string, setting: ProxySetting | undefined): OutboundProxy | undefined {
  if (!setting) return undefined;
  const url = typeof gateway === 'string' ? new URL(gateway) : gateway;
  return bypassed(url, setting.noProxy) ? undefined : setting.proxy;
}

export function parseProxyUrl(text: string, from: string): OutboundProxy {
  // (a bare host:port is what many people write in HTTPS_PROXY, and curl takes it as http://)
  const withScheme = /^[a-z][a-z0-9+.-]*:\/\//i.test(text) ? text : `http://${text}`;
  // (what is shown of the value leaves out credentials: they are secrets even in a broken URL)
  const shown = JSON.stringify(text.replace(/^([^/]*\/\/)?[^/@]*@/, '$1[credentials]@'));
  if (!URL.canParse(withScheme)) throw new UsageError(`${from} must be a proxy URL like http://proxy.example:3128, not ${shown}`);
  const u = new URL(withScheme);
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new UsageError(`${from} must be an http:// or https:// proxy (one that takes CONNECT), not ${u.protocol}//`);
  const overTls = u.protocol === 'https:';
  if (!u.hostname) throw new UsageError(`${from} names no proxy host: ${shown}`);
  if ((u.pathname !== '/' && u.pathname !== '') || u.search || u.hash) throw new UsageError(`${from} must be the proxy's address alone (http://host:port), without a path or query`);
  const port = Number(u.port) || (overTls ? 443 : 80);
  const host = u.hostname.startsWith('[') ? u.hostname.slice(1, -1) : u.hostname;
  const display = `${u.protocol}//${u.port ? u.host : `${u.host}:${port}`}`;
  let authorization: string | undefined;
  if (u.username || u.password) {
    let credentials: string;
    try {
      credentials = `${decodeURIComponent(u.username)}:${decodeURIComponent(u.password)}`;
    } catch {
      // (the message leaves the credentials out: they are secrets even when mistyped)
      throw new UsageError(`${from}: the user or password in the proxy URL is not valid percent-encoding (write % as %25)`);
    }
    authorization = `Basic ${Buffer.from(credentials).toString('base64')}`;
  }
  return { host, port, authorization, tls: overTls, display, from };
}

/**
 * NO_PROXY as curl reads it: `*` for every host; a name for itself and its subdomains (a leading
 * dot is the same); an address or CIDR range for the addresses in it; `:port` after a name or
 * address narrows the entry to that port.
 */
function bypassed(gateway: URL, entries: readonly string[]): boolean {
  const host = (gateway.hostname.startsWith('[') ? gateway.hostname.slice(1, -1) : gateway.hostname).toLowerCase();
  const port = Number(gateway.port) || 443;
  const ip = parseIp(host);
  for (const raw of entries) {
    if (raw === '*') return true;
    let entry = raw;
    let entryPort: number | undefined;
    const m = /^(.*?):(\d+)$/.exec(entry);
    // (an IPv6 address has colons of its own: only [addr]:port or a name:port carries a port)
    if (m && (m[1].startsWith('[') || !m[1].includes(':'))) {
      entry = m[1];
      entryPort = Number(m[2]);
    }
    if (entryPort !== undefined && entryPort !== port) continue;
    if (entry.startsWith('[') && entry.endsWith(']')) entry = entry.slice(1, -1);
    const range = parseCidr(entry);
    if (range) {
      if (ip && ip.kind() === range[0].kind() && ip.match(range)) return true;
      continue;
    }
    const name = entry.replace(/^\*?\./, '');
    if (name && (host === name || host.endsWith(`.${name}`))) return true;
  }
  return false;
}

/**
 * A `createConnection` for https.request and ws: the TCP connection goes to the proxy, which is
 * asked to CONNECT to the host; TLS with the host then starts inside that tunnel, with the
 * request's own TLS options (client certificate, CA, ALPN), unless `overTls` is false (an http://
 * URL). Errors name the proxy, so an operator tells a proxy that refused from a host that did.
 */
export function connectThrough(proxy: OutboundProxy, overTls = true): (args: ClientRequestArgs, done: (err: Error | null, socket: Duplex) => void) => undefined {
  return (args, done) => {
    // (https.request and ws hand over the whole request's options, TLS ones included)
    const opts = args as ClientRequestArgs & ConnectionOptions;
    const host = String(opts.hostname ?? opts.host ?? 'localhost').replace(/^\[(.*)\]$/, '$1');
    const port = Number(opts.port) || (overTls ? 443 : 80);
    const authority = net.isIPv6(host) ? `[${host}]:${port}` : `${host}:${port}`;
    const socket = proxy.tls ? tls.connect({ host: proxy.host, port: proxy.port, servername: net.isIP(proxy.host) ? undefined : proxy.host, ALPNProtocols: ['http/1.1'] }) : net.connect({ host: proxy.host, port: proxy.port });
    let head = Buffer.alloc(0);
    let settled = false;
    const fail = (why: string) => {
      if (settled) return;
      settled = true;
      socket.destroy();
      // (Node's request reads only the error when there is one)
      done(Object.assign(new Error(why), { code: 'ERR_PROXY' }), socket);
    };
    socket.setTimeout(CONNECT_TIMEOUT_MS, () => fail(`the proxy ${proxy.display} did not answer CONNECT ${authority} within ${CONNECT_TIMEOUT_MS / 1000} s`));
    socket.on('error', (e: NodeJS.ErrnoException) =>
      fail(
        proxy.tls && UNTRUSTED.test(String(e.code))
          ? `the proxy ${proxy.display} (${proxy.from}) presented a certificate this host does not trust (${e.code}): give Node its CA with NODE_EXTRA_CA_CERTS`
          : `cannot reach the proxy ${proxy.display} (${proxy.from}): ${e.code ?? e.message}`,
      ),
    );
    socket.on('close', () => fail(`the proxy ${proxy.display} closed the connection before it answered CONNECT ${authority}`));
    socket.on(proxy.tls ? 'secureConnect' : 'connect', () => {
      const lines = [`CONNECT ${authority} HTTP/1.1`, `Host: ${authority}`];
      if (proxy.authorization) lines.push(`Proxy-Authorization: ${proxy.authorization}`);
      socket.write(lines.join('\r\n') + '\r\n\r\n');
    });
    const onData = (chunk: Buffer) => {
      head = Buffer.concat([head, chunk]);
      const end = head.indexOf('\r\n\r\n');
      if (end < 0) {
        if (head.length > MAX_ANSWER_HEAD) fail(`the proxy ${proxy.display} answered CONNECT with more than ${MAX_ANSWER_HEAD / 1024} KiB of head`);
        return;
      }
      socket.off('data', onData);
      const statusLine = head.subarray(0, head.indexOf('\r\n')).toString('latin1');
      const m = /^HTTP\/1\.[01] (\d{3})(?: (.*))?$/.exec(statusLine);
      if (!m) return fail(`the proxy ${proxy.display} answered CONNECT with ${JSON.stringify(statusLine.slice(0, 80))}, not an HTTP status`);
      const status = Number(m[1]);
      if (status < 200 || status > 299) {
        // (some proxies, tinyproxy among them, answer wrong credentials with 401)
        const advice = status === 407 || (status === 401 && proxy.authorization) ? (proxy.authorization ? ': it does not take the user and password in the proxy URL' : ': give its user and password in the proxy URL (http://user:password@host:port)') : '';
        return fail(`the proxy ${proxy.display} refused CONNECT ${authority}: ${status}${m[2] ? ` ${m[2]}` : ''}${advice}`);
      }
      // The client speaks first in both TLS and HTTP: bytes after the answer came from no server,
      // and TLS would never see them (it reads the socket's handle, not what was read already).
      if (head.length > end + 4) return fail(`the proxy ${proxy.display} sent ${head.length - end - 4} bytes after its answer to CONNECT ${authority}, before anything was sent through the tunnel`);
      settled = true;
      socket.setTimeout(0);
      socket.removeAllListeners('error');
      socket.removeAllListeners('close');
      if (!overTls) return done(null, socket);
      const servername = opts.servername ?? (net.isIP(host) ? undefined : host);
      done(null, tls.connect({ ...opts, host, port, socket, servername }));
    };
    socket.on('data', onData);
    return undefined;
  };
}

/**
 * The options that send one https request (or ws's upgrade) to the gateway: through the proxy, or
 * straight on a connection of its own (agent: false, as before: nothing pooled between dials).
 */
export function dialVia(proxy: OutboundProxy | undefined): { agent: false } | { createConnection: ReturnType<typeof connectThrough> } {
  return proxy ? { createConnection: connectThrough(proxy) } : { agent: false };
}
