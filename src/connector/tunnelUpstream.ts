/**
 * The upstream for apps behind a connector group. Each upstream connection is
 * one HTTP/2 CONNECT stream on a connector channel; the gateway still speaks
 * HTTP/1.1 to the app over it (header hygiene, timeouts, error mapping), and
 * wraps it in TLS itself for https apps so the app's certificate is checked
 * end to end.
 *
 * One stream per request keeps balancing, drain and retry exact: a request
 * is bound to one connector, a draining connector gets no new request, and a
 * request that failed is known never to have reached the app when the
 * connector had not answered the CONNECT yet.
 */
import http, { type IncomingMessage } from 'node:http';
import type { ClientHttp2Session, ClientHttp2Stream } from 'node:http2';
import { Duplex, type Readable } from 'node:stream';
import { util as undiciUtil } from 'undici';
import tls from 'node:tls';
import { readPemFile } from '../config/pem.js';
import { holdHead } from '../gateway/heldHead.js';
import { relay } from '../gateway/relay.js';
import { STALL_ANSWERS } from '../gateway/stall.js';
import { coalescedBody } from '../gateway/requestBody.js';
import { CORRELATION_HEADER } from '../gateway/headers.js';
import { EarlyBytes } from '../gateway/earlyBytes.js';
import { classify, clientResponse, CONNECT_TIMEOUT_MS, flushHeadForDuplex, invalidStatus, pipeUpgrade, relayInterim, type BackendTlsOptions, type CancelForward, type ForwardRequest, type Upstream, type UpstreamFailure, type UpgradeAnswer } from '../gateway/upstream.js';
import type { ConnectorHub } from './hub.js';
import { targetOf } from './hub.js';
import { COMEBACK_WAIT_MS, type Channel } from './registry.js';
import { CANCEL_HEADER, CANCEL_PATH } from './channelLink.js';

const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE', 'TRACE']);
/** how much of a response may wait for a slow client before the tunnel stream is paused */
const CLIENT_ROOM = 256 << 10;
/** tunnel connections carrying a WebSocket: never pooled, and in flight until they close */
const upgradedStreams = new WeakSet<object>();

/** A failure before the connector dialed the app: the app never saw a byte. */
class NotDialed extends Error {
  constructor(
    message: string,
    readonly status: number,
  ) {
    super(message);
  }
}

export class TunnelUpstream implements Upstream {
  private readonly target: string;
  private readonly agent: http.Agent;
  private readonly tls?: { ca?: Buffer; rejectUnauthorized: boolean; servername?: string; host: string };

  constructor(
    private readonly hub: ConnectorHub,
    private readonly group: string,
    url: URL,
    tlsOpts: BackendTlsOptions = {},
    resolvePath: (p: string) => string = (p) => p,
  ) {
    this.target = targetOf(url);
    this.agent = tunnelAgent(this);
    if (url.protocol === 'https:') {
      this.tls = {
        ca: tlsOpts.ca ? readPemFile(resolvePath(tlsOpts.ca)) : undefined,
        rejectUnauthorized: tlsOpts.verify !== false,
        // checked against the certificate when there is no server name (an IP address)
        host: url.hostname.replace(/^\[|\]$/g, ''),
        servername: tlsOpts.serverName ?? (/^[0-9.]+$/.test(url.hostname) || url.hostname.includes(':') ? undefined : url.hostname),
      };
    }
  }

  /**
   * Opens a CONNECT stream to the target on `on` (or a channel picked now, waiting for a connector
   * expected back; `gone` says the client left meanwhile, `whenGone` is handed the call that ends
   * the wait when it leaves); resolves with the byte stream to the app.
   */
  dial(avoid: string | undefined, timeoutMs: number, { on, gone, whenGone }: { on?: Channel; gone?: () => boolean; whenGone?: (cancel: () => void) => void } = {}): Promise<{ socket: Duplex; channel: Channel }> {
    if (on) return this.dialOn(on, timeoutMs);
    const wait = Math.min(COMEBACK_WAIT_MS, timeoutMs);
    const picked = this.hub.registry.pickOrWait(this.group, avoid, wait, whenGone);
    if (!(picked instanceof Promise)) return picked ? this.dialOn(picked, timeoutMs) : Promise.reject(this.noConnector());
    const since = Date.now();
    return picked.then((channel) => {
      // A client that left during the wait gets no stream: when the connector came back, every
      // request given up on in the meantime still opened one, and the connector a connection to
      // the app for each (a burst of useless connections to an app that was just coming back).
      if (gone?.()) throw Object.assign(new NotDialed('the client left while its request waited for a connector', 499), { channel: undefined });
      if (!channel) throw this.noConnector(wait);
      return this.dialOn(channel, Math.max(1, timeoutMs - (Date.now() - since)));
    });
  }

  private noConnector(waitedMs?: number): NotDialed {
    const waited = waitedMs === undefined ? '' : ` (one was connected recently; none came back within ${Math.round(waitedMs / 100) / 10} s)`;
    return Object.assign(new NotDialed(`no live connector in group ${this.group}${waited}`, 504), { channel: undefined });
  }

  private dialOn(channel: Channel, timeoutMs: number): Promise<{ socket: Duplex; channel: Channel }> {
    return new Promise((resolve, reject) => {
      let stream: ClientHttp2Stream;
      try {
        stream = channel.session.request({ ':method': 'CONNECT', ':authority': this.target }, { endStream: false });
      } catch (e) {
        return reject(Object.assign(new NotDialed(`connector ${channel.connectorId}: ${(e as Error).message}`, 502), { channel }));
      }
      channel.windows.track(stream);
      const load = new InFlight(channel);
      stream.once('close', () => load.set(false));
      // Bounds the CONNECT (the connector connecting to the app) and, for an https app, the TLS
      // handshake with it, as connecting is bounded for direct apps: a 504, not retried (another
      // connector would wait on the same app). The socket's own idle timer let a handshake wait
      // twice as long (Node puts it off once while a write on a JS stream is pending). A CONNECT
      // still unanswered is the app's silence only if the connector answers a ping: one that
      // froze, its channel still in rotation until its pings are missed, is a failed dial,
      // retried on another connector.
      let handshake: tls.TLSSocket | undefined;
      const timedOut = () => {
        reject(Object.assign(new Error(handshake ? `the app at ${this.target} did not complete the TLS handshake in time` : `connector ${channel.connectorId} did not connect to ${this.target} in time`), { code: 'UND_ERR_CONNECT_TIMEOUT', channel }));
        handshake?.destroy();
        cancelThroughConnector(stream);
      };
      const timer = setTimeout(() => {
        if (handshake) return timedOut();
        answersPing(channel, PING_GRACE_MS, (alive) => {
          if (alive) return timedOut();
          reject(Object.assign(new NotDialed(`connector ${channel.connectorId} answered neither the CONNECT nor a ping in time`, 502), { channel }));
          stream.close(http2Cancel);
        });
      }, Math.min(timeoutMs, CONNECT_TIMEOUT_MS));
      const fail = (err: Error) => {
        clearTimeout(timer);
        reject(Object.assign(new NotDialed(`connector ${channel.connectorId}: ${err.message}`, 502), { channel }));
      };
      stream.once('error', fail);
      stream.once('close', () => fail(new Error(`stream closed before the connector answered (code ${stream.rstCode})`)));
      const ready = (socket: Duplex & { setTimeout(ms: number): unknown }, tunnel: StreamSocket) => {
        clearTimeout(timer);
        tunnel.handingOff = true;
        Object.assign(socket, { connectorId: channel.connectorId, channel, load, tunnel });
        // What net.createConnection does with its timeout option: http arms no timer on a
        // socket it did not make, so without this a silent app would hold a request forever.
        socket.setTimeout(timeoutMs);
        // A connector that says goodbye gets no more requests on idle kept-alive connections.
        // An upgraded connection has no request either (Node lets go of it at the 101), but it is
        // in flight like a stream the drain lets finish: cut here, every WebSocket on a connector
        // closed at its SIGTERM, without the drain timeout other streams get.
        const onGoaway = () => {
          if (!(socket as { _httpMessage?: unknown })._httpMessage && !upgradedStreams.has(socket)) socket.destroy();
        };
        channel.session.on('goaway', onGoaway);
        socket.once('close', () => channel.session.removeListener('goaway', onGoaway));
        resolve({ socket, channel });
      };
      stream.once('response', (h, flags: number) => {
        const status = Number(h[':status']);
        if (status !== 200) {
          clearTimeout(timer);
          // `fail` stays on: the channel can still break while this stream closes.
          // A refusal the connector ended is finished by ending our side too, not by a reset:
          // every reset counts toward the connector's rapid-reset guard (1,000, then 33 a
          // second), and an app that was down under load had the channel closed every few
          // seconds, failing the other apps' requests on it.
          if (flags & http2EndStream) {
            stream.resume();
            stream.end();
          } else cancelThroughConnector(stream);
          const why = String(h['x-drawbridge-error'] ?? '');
          return reject(Object.assign(new DialRefused(`connector ${channel.connectorId} could not reach ${this.target}: ${status} ${why}`), { channel }));
        }
        stream.removeListener('error', fail);
        const raw = new StreamSocket(stream, channel.connectorId);
        if (!this.tls) return ready(raw, raw);
        const secure = tls.connect({ socket: raw, host: this.tls.host, ca: this.tls.ca ? [this.tls.ca] : undefined, rejectUnauthorized: this.tls.rejectUnauthorized, servername: this.tls.servername, ALPNProtocols: ['http/1.1'] });
        handshake = secure;
        secure.on('error', ignoreError);
        // a rejected certificate keeps its own code, which the error page and log name
        const refused = (err: Error) => {
          clearTimeout(timer);
          secure.destroy();
          cancelThroughConnector(stream);
          reject(Object.assign(err, { channel }));
        };
        secure.once('error', refused);
        secure.once('secureConnect', () => {
          secure.removeListener('error', refused);
          keepTimeOnStream(secure, raw);
          ready(secure, raw);
        });
      });
    });
  }

  forward(f: ForwardRequest, done: (failure?: UpstreamFailure) => void): CancelForward {
    const { req, res } = f;
    const hasBody = req.headers['transfer-encoding'] !== undefined || (req.headers['content-length'] !== undefined && req.headers['content-length'] !== '0');
    const replayable = IDEMPOTENT.has(f.method) && !hasBody;
    // A body without a length goes chunked, whatever the method. The gateway removed the client's
    // Transfer-Encoding (hop-by-hop), and Node's client chunks by default only for methods that
    // usually carry a body: a GET's body left raw, and the app read it as a second request, one
    // that no rule had seen (request smuggling).
    const headers = hasBody && req.headers['content-length'] === undefined ? { ...f.headers, 'transfer-encoding': 'chunked' } : f.headers;
    let clientGone = false;
    /** the attempt in flight (a retry replaces the first) */
    let current: http.ClientRequest | undefined;
    // (destroying an attempt that already ended is a no-op: a kept-alive one is marked destroyed when its socket is freed)
    /** ends a wait for a connector (set while the dial waits for one) */
    let endWait: (() => void) | undefined;
    const abort = () => {
      clientGone = true;
      current?.destroy();
      endWait?.();
    };
    res.once('close', () => {
      if (!res.writableFinished) abort();
    });

    // First try: a kept-alive connection from the pool (or a new stream). A
    // retry always dials a new stream, on another connector when there is one.
    const send = (n: number, avoid?: string) => {
      let started = false;
      let answer: IncomingMessage | undefined;
      /** the client's body on its way to the app */
      let body: Readable | undefined;
      // (none usable now: the dial waits for one to come back, outside the pool)
      const first = n === 0 ? this.hub.registry.pick(this.group) : undefined;
      const upReq = http.request({
        method: f.method,
        path: f.path,
        headers,
        timeout: f.timeoutMs,
        ...(first
          ? // The balancing choice is made per request; the pool keeps idle connections per channel (tunnelAgent).
            { agent: this.agent, channel: first, dialTimeoutMs: f.timeoutMs }
          : {
              // (agent: false would make Node build a plain Agent and ignore createConnection)
              createConnection: (_o: unknown, cb: (err: Error | null, s?: Duplex) => void) => {
                this.dial(avoid, f.timeoutMs, { gone: () => clientGone, whenGone: (end) => (clientGone ? end() : (endWait = end)) }).then(({ socket }) => cb(null, socket), (e: Error) => cb(e));
                return undefined;
              },
            }),
      } as http.RequestOptions);
      current = upReq;
      // An answer (the app's own, or the gateway's page for a failure) that comes before the app
      // read the whole upload: the rest is read and dropped. Left unread, the client, still
      // sending, never read the answer, and its next request on the connection waited behind it
      // until Node reset the connection 5 s later.
      // (Not body.destroy(), which drains the client too: the body must go on watching the
      // client's connection, whose close is what frees the tunnel stream of an answered upload.)
      const dropRestOfBody = () => {
        if (body && !req.complete) body.unpipe(upReq).resume();
      };
      // a status outside 200-599 (a 101 included) is an answer, not a failed dial: no retry elsewhere
      const notHttp = (failure: UpstreamFailure) => {
        upReq.removeAllListeners('error').on('error', () => undefined);
        upReq.destroy();
        dropRestOfBody();
        done(failure);
      };
      // (a body still going out when the app went quiet is one the app stopped reading)
      upReq.on('timeout', () => upReq.destroy(Object.assign(new Error(upReq.writableFinished ? 'the app did not answer in time' : `${STALL_ANSWERS['app-upload'].logged} for ${f.timeoutMs / 1000} s`), { code: 'UND_ERR_HEADERS_TIMEOUT' })));
      upReq.on('error', (err: Error & { channel?: Channel }) => {
        if (clientGone) return done();
        if (err instanceof DialRefused) return done({ status: 502, reason: "The connector can't reach the app.", detail: err.message, afterHeaders: false });
        if (err instanceof NotDialed && err.status === 504) return done({ status: 504, reason: 'No connector is available for this app.', detail: err.message, afterHeaders: false });
        const failedOn = (upReq.socket as { connectorId?: string } | null)?.connectorId ?? err.channel?.connectorId;
        // Nothing reached the app when the connector never answered the CONNECT (any method),
        // and replaying an idempotent request without a body is harmless.
        // An app that timed out (on the request, or on the TLS handshake before it) would most
        // likely time out again: a retry would double the wait and its load.
        const timedOut = (err as NodeJS.ErrnoException).code === 'UND_ERR_HEADERS_TIMEOUT' || (err as NodeJS.ErrnoException).code === 'UND_ERR_CONNECT_TIMEOUT';
        // An answer that came back and failed to parse (two lengths, a bare LF) means the app ran the
        // request: not sent twice. (Bytes are counted on plain connections; an https app's handshake
        // bytes would count too, so there the parser's error says it.)
        const conn = upReq.socket as Partial<StreamSocket> | null;
        const answeredBadly = (conn?.bytesArrived ?? 0) > (conn?.arrivedBeforeRequest ?? 0) || String((err as NodeJS.ErrnoException).code).startsWith('HPE_');
        if (n === 0 && !started && !timedOut && !answeredBadly && (err instanceof NotDialed || replayable)) {
          this.hub.log.warn({ correlationId: f.headers[CORRELATION_HEADER], connector: failedOn, reason: err.message }, 'tunnel stream failed before the response: retrying once on another connector');
          return send(1, failedOn);
        }
        // Bytes after a complete answer (a 204, a 304 or a HEAD answered with a body) fail Node's
        // parser, which drops the connection: the answer itself is whole and ends as usual ('end').
        // Destroyed here, the client got an empty reply where a direct app's answer is relayed.
        if (answer?.complete) return;
        if (answer) return answerCut(err);
        dropRestOfBody();
        done(err instanceof NotDialed ? { status: 502 as const, reason: "The connector can't reach the app.", detail: err.message, afterHeaders: false } : classify(err, false));
      });
      /**
       * The app's answer ended early (went quiet, or its connection closed). Once any of it went
       * out, the client's connection can only be cut; a head still held is taken back for the page.
       */
      let cut = false;
      const answerCut = (err: Error) => {
        if (cut) return;
        cut = true;
        if (res.headersSent) {
          // what relay() holds corked for this turn goes out first: the part of the answer that came
          while (res.writableCorked > 0) res.uncork();
          res.destroy();
        }
        done(classify(err, res.headersSent));
      };
      upReq.on('response', (upRes: IncomingMessage) => {
        const invalid = invalidStatus(upRes.statusCode ?? 0);
        if (invalid) {
          upRes.on('error', () => undefined).resume();
          return notHttp(invalid);
        }
        started = true;
        answer = upRes;
        upReq.setTimeout(0);
        watchBodyIdle(upReq, upRes, f.timeoutMs);
        const status = upRes.statusCode ?? 502;
        // (a field the app sent twice stays two, as in direct mode: Node's `headers` joins lists
        // such as two WWW-Authenticate challenges into one line, and keeps the first Location)
        const r = clientResponse(f, status, undiciUtil.parseHeaders(upRes.rawHeaders) as Record<string, string | string[]>);
        holdHead(res, status, r.headers, r.body);
        flushHeadForDuplex(f);
        relay(r.body ? upRes.pipe(r.body) : upRes, res, { maxBuffered: CLIENT_ROOM, coalesce: true });
        upRes.on('error', answerCut);
        upRes.on('aborted', () => answerCut(Object.assign(new Error('the app closed its connection before its answer was complete'), { code: 'ECONNRESET' })));
        upRes.on('end', () => {
          // (an answer before the app read the whole upload: a 413, a 401 to an expired session)
          dropRestOfBody();
          done();
        });
      });
      // (its bytes put off the idle timer like any others: a sign of life)
      upReq.on('information', (info: { statusCode: number; headers: http.IncomingHttpHeaders }) => relayInterim(f, info.statusCode, info.headers));
      // A 101 to a request that asked for no upgrade: Node emits it as 'upgrade', and without a
      // listener it dropped the connection and told the request nothing (no answer, no timeout).
      upReq.on('upgrade', (upRes: IncomingMessage, socket: Duplex) => {
        socket.destroy();
        notHttp(invalidStatus(upRes.statusCode ?? 0)!);
      });
      // A dead socket is a failed dial: retried, with the body still unread.
      failOnDeadSocket(upReq);
      countInFlight(upReq);
      // The body is read only once a live connection exists, so a failed dial can still be retried.
      // (A client that leaves mid-body errors it; res's 'close' has already aborted the attempt.)
      // Node holds the head back for the first body byte: a client that sends its body only once
      // the app has answered (the app speaks first) never got its request to the app, and a 408
      // after backendTimeout. With no byte waiting the head goes out alone; a body already here
      // still leaves with it in one write.
      if (hasBody)
        upReq.once('socket', (socket: Duplex) => {
          if (socket.destroyed) return;
          if (req.readableLength === 0 && !req.readableEnded) upReq.flushHeaders();
          body = coalescedBody(req).on('error', () => upReq.destroy());
          body.pipe(upReq);
        });
      else upReq.end();
    };
    send(0);
    return abort;
  }

  upgrade(req: IncomingMessage, socket: Duplex, head: Buffer, path: string, headers: Record<string, string | string[]>, timeoutMs: number, answer: UpgradeAnswer, done: (failure?: UpstreamFailure) => void): void {
    // (read from now: a client that leaves while its request waits for a connector ends the wait)
    const early = new EarlyBytes(socket, head);
    this.dial(undefined, timeoutMs, { gone: () => early.left, whenGone: (end) => early.whenLeft(end) }).then(
      ({ socket: up }) => {
        // A client gone while the connector dialled is seen by no one after this (pipeUpgrade
        // watches a socket that is still there): 1,499 upgrades were made for clients that had
        // left, and the app held their WebSockets. (The edge logs the request as the client's.)
        if (early.left || socket.destroyed) return void up.destroy();
        // (an upgraded connection stays in flight from its dial until it closes, and is never pooled)
        upgradedStreams.add(up);
        const upReq = http.request({
          method: req.method,
          path,
          headers: { ...headers, connection: 'Upgrade', upgrade: 'websocket' },
          timeout: timeoutMs,
          createConnection: () => up as never,
        });
        pipeUpgrade(upReq, socket, early, answer, done);
        failOnDeadSocket(upReq);
      },
      (err: Error) => {
        // (gone while waiting for a connector: as when gone during the dial, above)
        if (err instanceof NotDialed && err.status === 499) return;
        early.stop();
        if (!(err instanceof NotDialed)) return done(classify(err, false));
        const status = err instanceof DialRefused ? 502 : err.status === 504 ? 504 : 502;
        done({ status: status as 502 | 504, reason: status === 504 ? 'No connector is available for this app.' : "The connector can't reach the app.", detail: err.message, afterHeaders: false });
      },
    );
  }

  async close(): Promise<void> {
    // channels belong to the hub; only this app's idle connections end here
    this.agent.destroy();
  }
}

class DialRefused extends NotDialed {
  constructor(message: string) {
    super(message, 502);
  }
}

const http2Cancel = 8; // NGHTTP2_CANCEL
const http2EndStream = 0x1; // NGHTTP2_FLAG_END_STREAM
/** how long a connector has to reset a stream the gateway cancelled before the gateway resets it itself (a connector from before CANCEL_PATH) */
const CANCEL_GRACE_MS = 2000;

/** channels of connectors that refused CANCEL_PATH (from before it): their streams are reset from here */
const noCancelPath = new WeakSet<ClientHttp2Session>();

/** streams already asked for: a dial given up and the socket on it may both end the same stream */
const cancelAsked = new WeakSet<ClientHttp2Stream>();

/**
 * Ends a relay stream the gateway no longer wants by asking the connector to reset it (see
 * CANCEL_PATH). What still arrives on it is read and dropped: a paused stream would hold its
 * window of data here until the reset came. A connector that does not answer 204 (one from
 * before this), or a stream still open after CANCEL_GRACE_MS, is reset from here.
 */
function cancelThroughConnector(s: ClientHttp2Stream): void {
  const session = s.session as ClientHttp2Session | undefined;
  const reset = () => void (s.destroyed || s.close(http2Cancel));
  if (cancelAsked.has(s)) return;
  cancelAsked.add(s);
  if (s.id === undefined || !session || session.closed || session.destroyed || noCancelPath.has(session)) return reset();
  s.removeAllListeners('data');
  s.resume();
  let ask: ClientHttp2Stream;
  try {
    ask = session.request({ ':method': 'POST', ':path': CANCEL_PATH, [CANCEL_HEADER]: String(s.id) }, { endStream: true });
  } catch {
    return reset();
  }
  const fallback = setTimeout(reset, CANCEL_GRACE_MS).unref();
  s.once('close', () => clearTimeout(fallback));
  ask.on('error', reset);
  ask.on('response', (h) => {
    if (h[':status'] === 204) return;
    noCancelPath.add(session);
    reset();
  });
  ask.resume();
}
/** how long a connector whose CONNECT timed out has to answer a ping before it counts as gone */
const PING_GRACE_MS = 1000;

/** Tells `then` once whether the channel's connector answers a ping within `ms`. */
function answersPing(channel: Channel, ms: number, then: (alive: boolean) => void): void {
  let told = false;
  const tell = (alive: boolean) => {
    if (told) return;
    told = true;
    clearTimeout(unanswered);
    then(alive);
  };
  const unanswered = setTimeout(() => tell(false), ms);
  try {
    if (!channel.session.ping((err) => tell(!err))) tell(false);
  } catch {
    tell(false);
  }
}

/**
 * The app's silence in the middle of a body is bounded by backendTimeout, as
 * undici's bodyTimeout bounds it for direct apps. A body held back because the
 * client takes it slowly is not the app's silence: the stall watch at the edge
 * answers for the client.
 */
function watchBodyIdle(upReq: http.ClientRequest, upRes: IncomingMessage, ms: number): void {
  const idle = setTimeout(() => {
    if (upRes.isPaused()) return void idle.refresh();
    upReq.destroy(Object.assign(new Error('the app sent no more of its response in time'), { code: 'UND_ERR_BODY_TIMEOUT' }));
  }, ms);
  upRes.on('data', () => idle.refresh());
  upRes.once('close', () => clearTimeout(idle));
}

function ignoreError(): void {}

/**
 * The idle timeout of a TLS connection to an https app is kept by the tunnel stream
 * under it, which sees the same bytes. Node puts a TLS socket's own timer off once while
 * a write on the stream below is pending: an upload the app stopped reading was cut
 * after twice backendTimeout. (http and its agent arm the timer through setTimeout and
 * listen for 'timeout' on the TLS socket; both keep working.)
 */
function keepTimeOnStream(secure: tls.TLSSocket, raw: StreamSocket): void {
  raw.on('timeout', () => secure.emit('timeout'));
  secure.setTimeout = (ms: number, cb?: () => void) => {
    raw.setTimeout(ms);
    if (cb) {
      if (ms === 0) secure.removeListener('timeout', cb);
      else secure.once('timeout', cb);
    }
    return secure;
  };
}

/**
 * A tunnel connection's share of its channel's in-flight count (the IN-FLIGHT of
 * `drawbridge connectors`, and least-inflight balancing): one from its dial (a burst of
 * new requests must not all see the same least-loaded channel) while it carries a
 * request or an upgraded connection, none while it waits idle in the pool or once it
 * has closed. One flag per connection: no path counts it twice or forgets it.
 */
class InFlight {
  private busy = true;

  constructor(private readonly channel: Channel) {
    channel.inflight++;
  }

  set(busy: boolean): void {
    if (busy === this.busy) return;
    this.busy = busy;
    this.channel.inflight += busy ? 1 : -1;
  }
}

/** A request counts on its tunnel connection from when it has it until the request is over. */
function countInFlight(upReq: http.ClientRequest): void {
  upReq.once('socket', (socket: Duplex & { load?: InFlight }) => {
    const load = socket.load;
    // a socket dead on arrival is a failed dial (failOnDeadSocket): the request never runs on it
    if (!load || socket.destroyed) return;
    load.set(true);
    upReq.once('close', () => load.set(false));
  });
}

/**
 * Node's http hands a request its socket a tick after picking it. A tunnel
 * stream that closed in between has already emitted 'close', so the request
 * would wait for its timeout; nothing was written to it yet, so it fails as a
 * dial that never happened.
 */
function failOnDeadSocket(upReq: http.ClientRequest): void {
  upReq.once('socket', (socket: Duplex & { connectorId?: string; channel?: Channel; tunnel?: StreamSocket }) => {
    const tunnel = socket instanceof StreamSocket ? socket : socket.tunnel;
    if (tunnel) tunnel.handingOff = false;
    if (!socket.destroyed && !tunnel?.streamGone) return;
    const err = Object.assign(new NotDialed(`connector ${socket.connectorId ?? '?'}: tunnel stream closed before the request was sent`, 502), { channel: socket.channel });
    // (still open: http's own error and close handling end the request, its parser with it)
    if (!socket.destroyed) return void upReq.destroy(err);
    upReq.destroy();
    upReq.emit('error', err);
  });
}

/**
 * The CONNECT stream as the socket of an HTTP/1.1 request. Only Buffers reach
 * the HTTP/2 stream, one write at a time: a corked header string plus body
 * written straight to an Http2Stream that runs over a JS stream (the
 * WebSocket) arrived corrupted at the app in our tests (Node 20.20).
 */
class StreamSocket extends Duplex {
  constructor(
    private readonly s: ClientHttp2Stream,
    readonly connectorId: string,
  ) {
    super({ allowHalfOpen: true });
    // Node's http agent leaves a socket without an 'error' listener for a tick
    // when it moves between the pool and a request; a channel that breaks
    // right then must not take the process down. The request still learns of
    // it (its own listener, or failOnDeadSocket).
    this.on('error', ignoreError);
    s.on('data', (c: Buffer) => {
      this.bytesArrived += c.length;
      this.idle?.refresh();
      if (!this.push(c)) s.pause();
    });
    s.on('end', () => {
      this.push(null);
      // The app closed its connection (the connector ends the stream then). A request on it
      // learns so from the end; one taken from the pool would have been sent into nothing and
      // waited out backendTimeout for a 504: the agent drops a pooled socket when it closes.
      if (this.pooled) this.destroy();
    });
    s.on('error', (e) => this.streamEnded(e));
    s.on('close', () => this.streamEnded(s.rstCode && s.rstCode !== 0 ? Object.assign(new Error(`tunnel stream reset (code ${s.rstCode})`), { code: 'ECONNRESET' }) : undefined));
  }

  /** the HTTP/2 stream under this socket has closed or failed */
  get streamGone(): boolean {
    return this.s.destroyed;
  }

  /**
   * Set while the socket is on its way to a request (dialled, or taken from the pool), cleared when
   * the request has it (failOnDeadSocket). Node's http gives a request its socket a tick after
   * picking it and listens for the socket's close only then: a socket that closed in that tick was
   * never cleaned up, and the request, its parser and what they held stayed in memory (an app that
   * reset every connection: 7,000 requests in 15 s, the gateway past 800 MB in 45 s). A stream that
   * ends meanwhile destroys the socket a turn later, once the request listens.
   */
  handingOff = false;

  private streamEnded(err?: Error): void {
    if (this.destroyed) return;
    if (this.handingOff) setImmediate(() => this.destroy(err));
    else this.destroy(err);
  }

  /** waiting in the agent's pool for a request (set and cleared by tunnelAgent) */
  pooled = false;

  /** the app's side of this connection is over: the connector ended the stream */
  get appEnded(): boolean {
    return this.s.readableEnded;
  }

  /** the idle timer (setTimeout): bytes that arrived or that the stream took count as activity */
  private idle?: NodeJS.Timeout;

  override _read(): void {
    this.s.resume();
  }

  /** bytes the app's side sent on this connection, all requests together */
  bytesArrived = 0;

  /** bytesArrived when the connection's current request was given it (tunnelAgent): more since means the app answered */
  arrivedBeforeRequest = 0;

  /** when a request's bytes were last handed to this connection (Date.now()) */
  lastSentAt = 0;

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.lastSentAt = Date.now();
    this.s.write(chunk, (err) => {
      this.idle?.refresh();
      cb(err);
    });
  }

  override _final(cb: (err?: Error | null) => void): void {
    this.s.end(cb);
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    clearTimeout(this.idle);
    // A stream closed with NO_ERROR lingers until what it queued has gone out and what
    // it received has been read. Neither happens to a request cut short (a body the
    // app stopped reading, a response the client stopped taking), so the stream, its
    // window of data and the connector's connection to the app would stay for good: it is
    // cancelled, through the connector (cancelThroughConnector). One the app already ended is
    // finished by ending our side: a reset, even NO_ERROR, counts toward the connector's
    // rapid-reset guard.
    const clean = !err && this.s.writableLength === 0 && this.s.readableEnded;
    if (this.s.destroyed) return cb(err);
    if (!clean) cancelThroughConnector(this.s);
    else if (!this.s.writableEnded) this.s.end();
    else this.s.close();
    cb(err);
  }

  /** the idle timeout armed last, as net.Socket's `timeout` (the agent reads it) */
  timeout = 0;

  /**
   * An idle timer of its own, not the HTTP/2 stream's: that one, like a socket's, is put off
   * once when a write is pending and some data went out since the last write, so an upload
   * the app stopped reading waited twice backendTimeout. Here a write counts when the stream
   * has taken it, and a write the app's flow control holds back does not.
   */
  setTimeout(ms: number, cb?: () => void): this {
    this.timeout = ms;
    clearTimeout(this.idle);
    this.idle = ms > 0 ? setTimeout(() => this.emit('timeout'), ms).unref() : undefined;
    // as net.Socket: 0 with a callback removes it (http's keep-alive cleanup relies on that)
    if (cb) {
      if (ms === 0) this.removeListener('timeout', cb);
      else this.once('timeout', cb);
    }
    return this;
  }

  setNoDelay(): this {
    return this;
  }

  setKeepAlive(): this {
    return this;
  }

  ref(): this {
    return this;
  }

  unref(): this {
    return this;
  }
}

/** how long a connection to the app waits in the pool, counted from its last request (apps commonly close after 5 s) */
const POOLED_IDLE_MS = 4000;

/**
 * Keeps HTTP/1.1 connections to the app alive over their tunnel streams, so a
 * request costs no CONNECT and no TCP handshake at the connector. A connection
 * whose channel is draining or unhealthy is not kept. Idle connections are
 * pooled per channel, and a request reuses one of the channel the balancing
 * picked for it: pooled for the whole group, a client's requests one after
 * another all took the same kept-alive connection, and so the same connector.
 */
function tunnelAgent(up: TunnelUpstream): http.Agent {
  const agent = new http.Agent({ keepAlive: true, keepAliveMsecs: 1000, maxSockets: Infinity, maxFreeSockets: 1024, scheduling: 'lifo', timeout: POOLED_IDLE_MS });
  const hub = (up as unknown as { hub: ConnectorHub }).hub;
  Object.assign(agent, {
    getName: (opts: { channel?: Channel }) => opts.channel?.key ?? '',
    // The request's options reach here under the agent's own: `timeout` is the agent's idle
    // timeout (4 s), so the app's backendTimeout, which bounds the dial, comes by its own name.
    createConnection: (opts: { dialTimeoutMs?: number; channel?: Channel }, cb: (err: Error | null, s?: Duplex) => void) => {
      up.dial(undefined, opts.dialTimeoutMs ?? CONNECT_TIMEOUT_MS, { on: opts.channel }).then(({ socket }) => cb(null, socket), (e: Error) => cb(e));
      return undefined;
    },
  });
  const keep = agent.keepSocketAlive.bind(agent);
  agent.keepSocketAlive = (socket) => {
    const ch = (socket as unknown as { channel?: Channel }).channel;
    if (!ch || !hub.registry.usable(ch)) return false;
    // a connection the app closed (with the end of its last answer): never used again
    if ((socket as StreamSocket).appEnded) return false;
    // The app's idle timer may have run since it answered, which can be as early as the request
    // reached it: an answer the tunnel delivered late (a connector that stalled) says nothing of
    // how long the connection has been idle there, and a request sent into the app's close on the
    // way is lost (a POST is not sent twice: 502). Idle time counts from the request, not the answer.
    const left = POOLED_IDLE_MS - (Date.now() - (socket as StreamSocket).lastSentAt);
    if (left <= 0) return false;
    const kept = keep(socket) as unknown as boolean; // (typed void, returns whether it is kept)
    if (kept) {
      (socket as StreamSocket).pooled = true;
      // (keep armed the agent's timeout, or less when the app's Keep-Alive hint said so)
      if (left < (socket as StreamSocket).timeout) (socket as StreamSocket).setTimeout(left);
    }
    return kept;
  };
  const reuse = agent.reuseSocket.bind(agent);
  agent.reuseSocket = (socket, req) => {
    const tunnel = (socket as unknown as { tunnel?: StreamSocket }).tunnel;
    if (tunnel) tunnel.handingOff = true;
    (socket as StreamSocket).pooled = false;
    (socket as StreamSocket).arrivedBeforeRequest = (socket as StreamSocket).bytesArrived;
    // The pool may have shortened the idle timer (above); Node arms the request's own only when it
    // differs from the agent's timeout, so a backendTimeout of exactly 4 s kept the short one.
    const requestTimeout = (req as { timeout?: number }).timeout;
    if (requestTimeout !== undefined) (socket as StreamSocket).setTimeout(requestTimeout);
    reuse(socket, req);
  };
  return agent;
}
