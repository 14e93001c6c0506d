/**
 * The direct upstream: the gateway itself connects to the app's internal URL.
 *
 * Built on undici (maintained by the Node.js project) rather than http-proxy,
 * which http-proxy-middleware 3 uses: http-proxy is unmaintained and has
 * request-smuggling and crash reports, and http-proxy-middleware 4 needs
 * Node 22. undici's pool is also several times cheaper per request than
 * http.request, which is what lets the gateway keep up with bare proxies.
 */
import { readPemFile } from '../config/pem.js';
import { createHash } from 'node:crypto';
import http, { type IncomingMessage, type OutgoingHttpHeaders, type ServerResponse } from 'node:http';
import https from 'node:https';
import type { Duplex, Transform } from 'node:stream';
import { Pool, util as undiciUtil, type Dispatcher } from 'undici';
import { appResponseValue, CORRELATION_HEADER, downstreamResponseHeaders, type AppCookieGuard } from './headers.js';
import { holdHead } from './heldHead.js';
import { coalescedBody } from './requestBody.js';
import { bodyTranslator, type BodyTranslation } from './translateBody.js';
import { translateHeaders, translateLink, translateSetCookie, type UrlTranslation } from './translateHeaders.js';
import { relayWebSocket } from './webSocketClose.js';
import { EarlyBytes } from './earlyBytes.js';

export interface ForwardRequest {
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
  readonly method: string;
  /** path on the internal app, with the query */
  readonly path: string;
  readonly headers: Record<string, string | string[]>;
  readonly timeoutMs: number;
  /** translates internal URLs in Location, Content-Location, Refresh, Link and the app's cookies (translateHeaders.ts); undefined: leave them */
  readonly translateUrls?: UrlTranslation;
  /** rewrites internal URLs in HTML, CSS and JavaScript bodies (translateUrls.body) */
  readonly translateBody?: BodyTranslation;
  /** leaves the gateway's own cookies out of what the app's answer sets or clears */
  readonly cookies?: AppCookieGuard;
  /** let in by a browser session: an answer that says nothing of caching is marked private */
  readonly signedIn?: boolean;
}

export interface UpstreamFailure {
  status: 502 | 504 | 500 | 400;
  /** safe to show */
  reason: string;
  /** for the log */
  detail: string;
  /** the response had already started; the client connection was cut */
  afterHeaders: boolean;
  /** a 504 because the app's connection went quiet for backendTimeout mid-exchange (not while connecting) */
  appQuiet?: boolean;
}

/** what the client's copy of the app's answer to an upgrade (a 101, or a refusal) is held to */
export type UpgradeAnswer = Pick<ForwardRequest, 'cookies' | 'translateUrls'>;

/** ends an exchange with the app early; `done` is then called without a failure */
export type CancelForward = () => void;

export interface Upstream {
  forward(f: ForwardRequest, done: (failure?: UpstreamFailure) => void): CancelForward;
  upgrade(req: IncomingMessage, socket: Duplex, head: Buffer, path: string, headers: Record<string, string | string[]>, timeoutMs: number, answer: UpgradeAnswer, done: (failure?: UpstreamFailure) => void): void;
  close(): Promise<void>;
}

/**
 * The longest the gateway waits to connect to an app (TCP and TLS), and the
 * tunnel for the connector's answer to a CONNECT, when backendTimeout is not
 * shorter: an address that drops the connection attempt is a 504 in seconds.
 */
export const CONNECT_TIMEOUT_MS = 10_000;

export interface BackendTlsOptions {
  ca?: string;
  verify?: boolean;
  serverName?: string;
}

/** the client's reason when the app answered, but not with valid HTTP for this request */
const NOT_HTTP = "The app's answer was not valid HTTP.";

/** how much of an app's response may wait for a slow client before the app's connection is paused */
const CLIENT_ROOM = 256 << 10;

/**
 * What the client gets for the app's response head: the headers after hygiene
 * and URL translation, and the stream the body must pass through, if any.
 * Shared by the direct and the tunnel upstream.
 */
export function clientResponse(f: ForwardRequest, status: number, headers: Record<string, string | string[]>): { headers: OutgoingHttpHeaders; body?: Transform } {
  const out = appHead(headers, f.cookies, f.translateUrls);
  // a 204 carries no length (RFC 9110 8.6): one from the app would tell a client to wait for bytes that never come
  if (status === 204) delete out['content-length'];
  // A page shown to a signed-in user is that user's: a shared cache in front of the gateway that
  // stored it would give it to the next client, signed in or not (RFC 9111 3.5 spares answers to
  // requests with Authorization, not with cookies). The app, which the gateway keeps the session
  // cookie from, often does not know it answered someone signed in.
  if (f.signedIn && out['cache-control'] === undefined) out['cache-control'] = 'private';
  return { headers: out, body: f.translateBody ? bodyTranslator(f.translateBody, f.method, status, out, f.req.headers['accept-encoding'], f.req.headers['if-none-match']) : undefined };
}

/** The app's response headers as the client gets them: after hygiene, then URL translation. */
function appHead(headers: Record<string, string | string[]>, cookies: AppCookieGuard | undefined, translateUrls: UrlTranslation | undefined): OutgoingHttpHeaders {
  const out = downstreamResponseHeaders(headers, cookies);
  if (translateUrls) translateHeaders(out, translateUrls);
  return out;
}

/**
 * Passes on an app's interim answer, as a proxy must (RFC 9110 15.2): 102 Processing tells
 * a client with a read timeout of its own that the app is still working, 103 Early Hints lets
 * a browser fetch what the page will need. Not 100 (Node's server answers a client's Expect
 * itself), not to an HTTP/1.0 client (it knows no 1xx), and no other 1xx (none is in use,
 * and Node has no way to write one). A 103 keeps its end-to-end fields and goes only with a
 * Link Node can write: the links are its point, and it is only a hint.
 */
export function relayInterim(f: ForwardRequest, status: number, headers: Record<string, string | string[] | undefined>): void {
  const { req, res } = f;
  if (res.headersSent || res.destroyed || (req.httpVersionMajor === 1 && req.httpVersionMinor === 0)) return;
  if (status === 102) return void res.writeProcessing();
  if (status !== 103 || !headers.link) return;
  const hints: Record<string, string | string[]> = {};
  for (const [name, value] of Object.entries(downstreamResponseHeaders(headers, f.cookies))) {
    // (Node writes each field as one line: a list in one value, a cookie list would be corrupted)
    if (name === 'set-cookie' || value === undefined) continue;
    if (name !== 'link') hints[name] = Array.isArray(value) ? value.join(', ') : String(value);
    else hints[name] = splitLinks(value as string | string[]).map((l) => (f.translateUrls ? translateLink(l, f.translateUrls) : l));
  }
  try {
    res.writeEarlyHints(hints);
  } catch {
    // a Link Node refuses to write (malformed): the final answer follows anyway
  }
}

/** One Link field's links (`<a>; rel=preload, <b>; rel=preload`), apart: Node takes one link per value. */
function splitLinks(value: string | string[]): string[] {
  const links: string[] = [];
  for (const field of Array.isArray(value) ? value : [value]) {
    let start = 0;
    let inUri = false;
    let inQuotes = false;
    for (let i = 0; i <= field.length; i++) {
      const c = field[i];
      if (c === undefined || (c === ',' && !inUri && !inQuotes)) {
        const link = field.slice(start, i).trim();
        if (link) links.push(link);
        start = i + 1;
      } else if (c === '"' && !inUri) inQuotes = !inQuotes;
      else if (c === '<' && !inQuotes) inUri = true;
      else if (c === '>' && !inQuotes) inUri = false;
    }
  }
  return links;
}

/**
 * Node holds a response head back for the first body byte. While the client is still sending
 * its body, it may be waiting for that head (an app that speaks first, full duplex): it goes
 * out at once then. A request already in whole (every GET) costs nothing more: its head leaves
 * with the body, in one write.
 */
export function flushHeadForDuplex(f: ForwardRequest): void {
  if (!f.req.complete) f.res.flushHeaders();
}


export class DirectUpstream implements Upstream {
  private readonly pool: Pool;
  private readonly tls?: { ca?: Buffer; rejectUnauthorized: boolean; servername?: string };

  constructor(
    private readonly target: URL,
    tls: BackendTlsOptions = {},
    configDirResolve: (p: string) => string = (p) => p,
    private readonly connectTimeoutMs = CONNECT_TIMEOUT_MS,
  ) {
    if (target.protocol === 'https:') {
      this.tls = {
        ca: tls.ca ? readPemFile(configDirResolve(tls.ca)) : undefined,
        rejectUnauthorized: tls.verify !== false,
        servername: tls.serverName ?? (isIp(target.hostname) ? undefined : target.hostname),
      };
    }
    this.pool = new Pool(target.origin, {
      keepAliveTimeout: 30_000,
      keepAliveMaxTimeout: 600_000,
      connect: { timeout: connectTimeoutMs, ...(this.tls ? { ...this.tls, ca: this.tls.ca ? [this.tls.ca] : undefined } : {}) },
    });
  }

  forward(f: ForwardRequest, done: (failure?: UpstreamFailure) => void): CancelForward {
    const { req } = f;
    const hasBody = req.headers['transfer-encoding'] !== undefined || (req.headers['content-length'] !== undefined && req.headers['content-length'] !== '0');
    const exchange = new Exchange(f, done);
    this.pool.dispatch(
      {
        path: f.path,
        method: f.method as Dispatcher.HttpMethod,
        headers: f.headers,
        body: hasBody ? coalescedBody(req) : null,
        headersTimeout: f.timeoutMs,
        bodyTimeout: f.timeoutMs,
        // undici takes the name to send and check from each request's Host otherwise (the pool's own
        // servername loses to it): backend.tls.serverName was ignored, and a Host that varied would
        // have closed the connection at each change
        ...(this.tls?.servername ? { servername: this.tls.servername } : {}),
      } as Dispatcher.DispatchOptions,
      exchange,
    );
    return exchange.cancel;
  }

  upgrade(req: IncomingMessage, socket: Duplex, head: Buffer, path: string, headers: Record<string, string | string[]>, timeoutMs: number, answer: UpgradeAnswer, done: (failure?: UpstreamFailure) => void): void {
    const mod = this.target.protocol === 'https:' ? https : http;
    const upReq = mod.request({
      host: this.target.hostname,
      port: this.target.port || (this.target.protocol === 'https:' ? 443 : 80),
      method: req.method,
      path,
      headers: { ...headers, connection: 'Upgrade', upgrade: 'websocket' },
      timeout: timeoutMs,
      agent: false,
      ...(this.tls ?? {}),
    });
    boundConnect(upReq, this.tls ? 'secureConnect' : 'connect', Math.min(timeoutMs, this.connectTimeoutMs));
    pipeUpgrade(upReq, socket, new EarlyBytes(socket, head), answer, done);
  }

  close(): Promise<void> {
    return this.pool.close();
  }
}

/**
 * One request to a direct app, as undici's dispatch handler: the app's head
 * goes to the client after hygiene, its body with backpressure (a full client
 * socket pauses the app's), and a failure is told to the edge once, classified.
 *
 * A handler of our own rather than `pool.stream()`: that wraps each request in
 * an AsyncResource, an abort signal and `stream.finished()`'s listeners on the
 * response, all per request on the hot path, for what the client's `close`
 * and undici's callbacks say here directly.
 */
class Exchange implements Dispatcher.DispatchHandler {
  private abortApp?: (err?: Error) => void;
  /** the edge was told how it ended (or that there is nothing to tell) */
  private over = false;
  private clientGone = false;
  /** where the app's body goes (the client response, or the URL translator in front of it); set once the app's head went to the client */
  private sink?: NodeJS.WritableStream & { writableNeedDrain?: boolean; readonly writableLength: number };

  constructor(
    private readonly f: ForwardRequest,
    private readonly done: (failure?: UpstreamFailure) => void,
  ) {
    f.res.once('close', this.onClientClose);
  }

  /** the edge ends the exchange early (a stall it answered): the app's side goes, nothing more is told */
  readonly cancel: CancelForward = () => {
    if (this.over) return;
    this.clientGone = true;
    this.abortApp?.();
  };

  private readonly onClientClose = (): void => {
    if (this.over || this.f.res.writableFinished) return;
    this.cancel();
  };

  private end(failure?: UpstreamFailure): void {
    if (this.over) return;
    this.over = true;
    this.f.res.removeListener('close', this.onClientClose);
    this.done(failure);
  }

  onConnect(abort: (err?: Error) => void): void {
    // a client that left while the request waited for a pooled connection
    if (this.clientGone) return abort();
    this.abortApp = abort;
  }

  onHeaders(statusCode: number, rawHeaders: Buffer[], resume: () => void): boolean {
    if (statusCode < 200) {
      // (undici has already put off backendTimeout for it: a sign of life)
      relayInterim(this.f, statusCode, undiciUtil.parseHeaders(rawHeaders) as Record<string, string | string[]>);
      return true; // the final answer follows
    }
    const { f } = this;
    const invalid = invalidStatus(statusCode);
    if (invalid) {
      this.end(invalid);
      this.abortApp?.(new Error(invalid.detail));
      return false;
    }
    const r = clientResponse(f, statusCode, undiciUtil.parseHeaders(rawHeaders) as Record<string, string | string[]>);
    holdHead(f.res, statusCode, r.headers, r.body);
    // A 204 or 304 has no body whatever its Content-Length says (RFC 9112 6.3), and a 304 may carry
    // the length the 200 would have had (ASP.NET does). undici counts that length as missing
    // bytes and fails the exchange, which cut an answer the client already had whole.
    if (statusCode === 204 || statusCode === 304) {
      f.res.end();
      this.end();
      return true;
    }
    flushHeadForDuplex(f);
    let sink: NodeJS.WritableStream & { writableNeedDrain?: boolean; readonly writableLength: number } = f.res;
    if (r.body) {
      r.body.on('error', (err) => this.onError(err));
      r.body.pipe(f.res);
      sink = r.body;
    }
    sink.on('drain', resume);
    this.sink = sink;
    return sink.writableNeedDrain !== true;
  }

  onData(chunk: Buffer): boolean {
    // undici hands an empty chunk when it resumes a paused parser: written, it was a write(2) of nothing
    if (chunk.length === 0) return true;
    const sink = this.sink!;
    // Room, as relay() gives a tunnelled body: a ServerResponse's write is false for every 64 KiB read
    // (the socket is corked until the next tick, over its 16 KiB highWaterMark), and each false paused
    // the app's connection, waited for 'drain' and resumed it: one read and one write(2) a turn of the
    // event loop. The 'drain' that resumes it is due once any write was false.
    return sink.write(chunk) || sink.writableLength <= CLIENT_ROOM;
  }

  onComplete(): void {
    this.sink?.end();
    this.end();
  }

  onError(err: Error): void {
    if (this.over) return;
    // the client left (or the edge cancelled): there is no one to tell
    if (this.clientGone) return this.end();
    // (an app head not yet sent is taken back by the error page)
    const started = this.f.res.headersSent;
    this.end(classify(err, started));
    if (started) {
      this.abortApp?.(err);
      this.f.res.destroy();
    }
  }
}

/**
 * Connecting (TCP, and TLS for an https app) within `ms`, as undici bounds it for
 * requests. The request's own timeout is the socket's idle timer, which Node put
 * off once during a TLS handshake the app never answered: twice backendTimeout.
 */
function boundConnect(upReq: http.ClientRequest, connected: 'connect' | 'secureConnect', ms: number): void {
  upReq.once('socket', (socket) => {
    const timer = setTimeout(() => upReq.destroy(Object.assign(new Error('connecting to the app timed out'), { code: 'UND_ERR_CONNECT_TIMEOUT' })), ms);
    socket.once(connected, () => clearTimeout(timer));
    socket.once('close', () => clearTimeout(timer));
  });
}

/** RFC 6455 4.2.2: the accept value that proves the app read this handshake's key */
const WEBSOCKET_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';

/**
 * Why the app's 101 is no WebSocket handshake answer for this request, if it is not. A 101
 * with another Upgrade (h2c) or without the key's accept value would make the client's
 * connection a raw pipe to an app that may still be reading HTTP on it: later requests on it
 * would reach the app without the pipeline (WebSocket smuggling).
 */
function notWebSocketAnswer(upReq: http.ClientRequest, upRes: IncomingMessage): string | undefined {
  if (String(upRes.headers.upgrade ?? '').toLowerCase() !== 'websocket') return `the app switched to ${JSON.stringify(String(upRes.headers.upgrade ?? '')).slice(0, 80)}, not websocket`;
  const key = upReq.getHeader('sec-websocket-key');
  // (the edge refuses a handshake without one; without it no 101 could be checked)
  if (typeof key !== 'string') return 'the request had no Sec-WebSocket-Key to check the 101 against';
  const expected = createHash('sha1').update(key + WEBSOCKET_GUID).digest('base64');
  if (upRes.headers['sec-websocket-accept'] !== expected) return "the app's 101 does not carry the Sec-WebSocket-Accept of the request's key";
  return undefined;
}

/**
 * Relays an upgrade request: the app's 101 is copied to the client and both
 * sockets are spliced; a non-101 answer is relayed as a normal response.
 */
export function pipeUpgrade(upReq: http.ClientRequest, socket: Duplex, early: EarlyBytes, answer: UpgradeAnswer, done: (failure?: UpstreamFailure) => void): void {
  const { cookies, translateUrls } = answer;
  let answered = false;
  // what the edge sent the app; the client's answer carries it too
  const correlationId = String(upReq.getHeader(CORRELATION_HEADER) ?? '');
  socket.on('error', () => upReq.destroy());
  // (a client that leaves before the app answers ends the app's request: EarlyBytes)
  early.whenLeft(() => {
    if (answered) return;
    answered = true;
    upReq.destroy();
  });
  const stopReading = () => early.stop();
  upReq.on('timeout', () => upReq.destroy(Object.assign(new Error('timed out'), { code: 'UND_ERR_HEADERS_TIMEOUT' })));
  upReq.on('error', (err) => {
    if (answered) return socket.destroy();
    answered = true;
    done(classify(err, false));
  });
  upReq.on('response', (upRes) => {
    answered = true;
    stopReading();
    const invalid = invalidStatus(upRes.statusCode ?? 0);
    if (invalid) {
      upRes.on('error', () => undefined).resume();
      upReq.destroy();
      return done(invalid);
    }
    relayRefusal(upReq, upRes, socket, answer, done);
  });
  upReq.on('upgrade', (upRes, upSocket, upHead) => {
    answered = true;
    stopReading();
    upReq.setTimeout(0);
    const wrong = notWebSocketAnswer(upReq, upRes);
    if (wrong) {
      upSocket.destroy();
      return done({ status: 502, reason: NOT_HTTP, detail: wrong, afterHeaders: false });
    }
    const lines = [`HTTP/1.1 101 Switching Protocols`];
    for (let i = 0; i < upRes.rawHeaders.length; i += 2) {
      const name = upRes.rawHeaders[i]!.toLowerCase();
      if (name === CORRELATION_HEADER) continue;
      // (a browser takes cookies from a 101 too)
      const kept = cookies ? appResponseValue(name, upRes.rawHeaders[i + 1]!, cookies) : upRes.rawHeaders[i + 1];
      for (const v of [kept ?? []].flat()) lines.push(`${upRes.rawHeaders[i]}: ${translateUrls && name === 'set-cookie' ? translateSetCookie(v, translateUrls) : v}`);
    }
    lines.push(`${CORRELATION_HEADER}: ${correlationId}`);
    socket.write(lines.join('\r\n') + '\r\n\r\n');
    for (const chunk of early.chunks) upSocket.write(chunk);
    relayWebSocket(socket, upSocket, upHead);
    done();
  });
  upReq.end();
}

/**
 * The app answered an upgrade with something other than 101: the answer goes to the client as
 * an ordinary response, through the ServerResponse the edge gave the upgrade's socket. Node
 * frames its body, so one the app cuts stays visibly cut (written raw, a chunked body lost
 * its framing and a cut one read as complete); the request log carries the app's status;
 * and the socket closes when the answer is done. `done` is called only if the answer fails:
 * the socket never becomes a WebSocket. A body the app cuts, or a client that leaves,
 * closes the other side too (neither was watched: a broken answer hung the client, and a
 * client that left kept its socket in CLOSE-WAIT).
 */
function relayRefusal(upReq: http.ClientRequest, upRes: IncomingMessage, socket: Duplex, answer: UpgradeAnswer, done: (failure?: UpstreamFailure) => void): void {
  const res = (socket as { _httpMessage?: unknown })._httpMessage;
  const fail = (detail: string, afterHeaders: boolean) => {
    upRes.unpipe();
    upRes.on('error', () => undefined).resume();
    upReq.destroy();
    done({ status: 502, reason: NOT_HTTP, detail, afterHeaders });
  };
  if (!(res instanceof http.ServerResponse) || res.headersSent) return fail('no response to relay the answer to an upgrade through', false);
  // the same answer to a plain request would be translated: the client reads both alike
  const out = appHead(upRes.headers as Record<string, string | string[]>, answer.cookies, answer.translateUrls);
  try {
    res.writeHead(upRes.statusCode!, upRes.statusMessage, out);
  } catch (e) {
    return fail(`the app's answer to an upgrade could not be relayed: ${(e as Error).message}`, false);
  }
  let over = false;
  const appFailed = (err?: Error) => {
    if (upRes.complete || over) return;
    over = true;
    res.destroy();
    upReq.destroy();
    done(classify(err ?? Object.assign(new Error("the app's answer to an upgrade ended before its body did"), { code: 'ECONNRESET' }), true));
  };
  upReq.on('error', appFailed);
  upRes.on('error', appFailed);
  upRes.on('close', () => appFailed());
  const clientLeft = () => {
    if (upRes.complete || over) return;
    over = true; // the app's side goes too, and that is no failure of the app
    upReq.destroy();
    res.destroy();
  };
  res.on('close', clientLeft);
  // A client that hangs up sends a FIN, seen only by reading: the upgraded socket has no parser
  // left to do it. What it sends is dropped, as the connection closes after this answer. Like
  // Node's server for any request, the gateway then gives up on the answer.
  socket.on('end', clientLeft);
  socket.resume();
  upRes.pipe(res);
}

const TLS_CODES = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'ERR_TLS_CERT_ALTNAME_INVALID',
  'CERT_UNTRUSTED',
]);

/**
 * An app's final status outside 200-599 is no HTTP answer (RFC 9110 15): relayed,
 * clients and caches in front would each make their own sense of it.
 */
export function invalidStatus(status: number): UpstreamFailure | undefined {
  if (status >= 200 && status <= 599) return undefined;
  return { status: 502, reason: NOT_HTTP, detail: `the app answered with status ${status}`, afterHeaders: false };
}

export function classify(err: unknown, afterHeaders: boolean): UpstreamFailure {
  const e = err as NodeJS.ErrnoException & { cause?: NodeJS.ErrnoException };
  const code = e.code ?? e.cause?.code ?? '';
  const detail = `${code || e.name}: ${e.message}`;
  if (code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_BODY_TIMEOUT' || code === 'ETIMEDOUT' || code === 'UND_ERR_CONNECT_TIMEOUT') {
    return { status: 504, reason: 'The app did not answer in time.', detail, afterHeaders, appQuiet: code !== 'UND_ERR_CONNECT_TIMEOUT' };
  }
  // undici's words for a 101 to a request that asked for no upgrade, and for any 100: the app answered, wrongly
  if (code === 'UND_ERR_SOCKET' && (e.message === 'bad upgrade' || e.message === 'bad response')) {
    return { status: 502, reason: NOT_HTTP, detail, afterHeaders };
  }
  if (code === 'UND_ERR_REQ_CONTENT_LENGTH_MISMATCH') {
    return { status: 400, reason: 'The request body did not match its Content-Length.', detail, afterHeaders };
  }
  // Raised before anything is sent: a client's headers were checked by Node's parser, so an invalid
  // one here is one a stage set (a plugin's CR/LF value, transfer-encoding, upgrade). Not the app's fault.
  if (code === 'UND_ERR_INVALID_ARG') {
    return { status: 500, reason: 'The gateway could not build a valid request for the app.', detail: `refused before sending, most likely a header a stage or plugin set: ${detail}`, afterHeaders };
  }
  if (TLS_CODES.has(code)) {
    return { status: 502, reason: "The gateway can't reach the app.", detail: `backend certificate rejected (${code}): ${e.message}`, afterHeaders };
  }
  return { status: 502, reason: "The gateway can't reach the app.", detail, afterHeaders };
}

function isIp(host: string): boolean {
  return /^[0-9.]+$/.test(host) || host.includes(':');
}
