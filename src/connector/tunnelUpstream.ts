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
import { readFileSync } from 'node:fs';
import http, { type IncomingMessage } from 'node:http';
import type { ClientHttp2Stream } from 'node:http2';
import { Duplex } from 'node:stream';
import tls from 'node:tls';
import { downstreamResponseHeaders } from '../gateway/headers.js';
import { classify, pipeUpgrade, type BackendTlsOptions, type ForwardRequest, type Upstream, type UpstreamFailure } from '../gateway/upstream.js';
import type { ConnectorHub } from './hub.js';
import { targetOf } from './hub.js';
import type { Channel } from './registry.js';

const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE', 'TRACE']);
const REWRITABLE = ['location', 'content-location', 'refresh'] as const;
const CONNECT_TIMEOUT_MS = 10_000;

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
  private readonly tls?: { ca?: Buffer; rejectUnauthorized: boolean; servername?: string; host: string };

  constructor(
    private readonly hub: ConnectorHub,
    private readonly group: string,
    url: URL,
    tlsOpts: BackendTlsOptions = {},
    resolvePath: (p: string) => string = (p) => p,
  ) {
    this.target = targetOf(url);
    if (url.protocol === 'https:') {
      this.tls = {
        ca: tlsOpts.ca ? readFileSync(resolvePath(tlsOpts.ca)) : undefined,
        rejectUnauthorized: tlsOpts.verify !== false,
        // checked against the certificate when there is no server name (an IP address)
        host: url.hostname.replace(/^\[|\]$/g, ''),
        servername: tlsOpts.serverName ?? (/^[0-9.]+$/.test(url.hostname) || url.hostname.includes(':') ? undefined : url.hostname),
      };
    }
  }

  /** Opens a CONNECT stream to the target; resolves with the byte stream to the app. */
  private dial(avoid: string | undefined, timeoutMs: number): Promise<{ socket: Duplex; channel: Channel }> {
    const channel = this.hub.registry.pick(this.group, avoid);
    if (!channel) return Promise.reject(Object.assign(new NotDialed(`no live connector in group ${this.group}`, 504), { channel: undefined }));
    return new Promise((resolve, reject) => {
      let stream: ClientHttp2Stream;
      try {
        stream = channel.session.request({ ':method': 'CONNECT', ':authority': this.target }, { endStream: false });
      } catch (e) {
        return reject(Object.assign(new NotDialed(`connector ${channel.connectorId}: ${(e as Error).message}`, 502), { channel }));
      }
      channel.inflight++;
      stream.once('close', () => channel.inflight--);
      const timer = setTimeout(() => stream.close(http2Cancel), Math.min(timeoutMs, CONNECT_TIMEOUT_MS));
      const fail = (err: Error) => {
        clearTimeout(timer);
        reject(Object.assign(new NotDialed(`connector ${channel.connectorId}: ${err.message}`, 502), { channel }));
      };
      stream.once('error', fail);
      stream.once('close', () => fail(new Error(`stream closed before the connector answered (code ${stream.rstCode})`)));
      stream.once('response', (h) => {
        clearTimeout(timer);
        stream.removeListener('error', fail);
        const status = Number(h[':status']);
        if (status !== 200) {
          stream.close();
          const why = String(h['x-drawbridge-error'] ?? '');
          return reject(Object.assign(new DialRefused(`connector ${channel.connectorId} could not reach ${this.target}: ${status} ${why}`), { channel }));
        }
        let socket: Duplex = new StreamSocket(stream);
        if (this.tls) socket = tls.connect({ socket, host: this.tls.host, ca: this.tls.ca ? [this.tls.ca] : undefined, rejectUnauthorized: this.tls.rejectUnauthorized, servername: this.tls.servername, ALPNProtocols: ['http/1.1'] });
        resolve({ socket, channel });
      });
    });
  }

  forward(f: ForwardRequest, done: (failure?: UpstreamFailure) => void): void {
    const { req, res } = f;
    const hasBody = req.headers['transfer-encoding'] !== undefined || (req.headers['content-length'] !== undefined && req.headers['content-length'] !== '0');
    const replayable = IDEMPOTENT.has(f.method) && !hasBody;
    let clientGone = false;
    res.once('close', () => {
      if (!res.writableFinished) clientGone = true;
    });

    const attempt = (n: number, avoid?: string) => {
      this.dial(avoid, f.timeoutMs).then(
        ({ socket, channel }) => {
          if (clientGone) return void socket.destroy();
          let started = false;
          const upReq = http.request({
            method: f.method,
            path: f.path,
            headers: f.headers,
            createConnection: () => socket as never,
            timeout: f.timeoutMs,
          });
          res.once('close', () => {
            if (!res.writableFinished) upReq.destroy();
          });
          upReq.on('timeout', () => upReq.destroy(Object.assign(new Error('the app did not answer in time'), { code: 'UND_ERR_HEADERS_TIMEOUT' })));
          upReq.on('error', (err) => {
            if (clientGone) return done();
            if (!started && replayable && n === 0) {
              this.hub.log.warn({ connector: channel.connectorId, reason: err.message }, 'tunnel stream failed before the response: retrying once on another connector');
              return attempt(1, channel.connectorId);
            }
            const failure = classify(err, started);
            if (started) res.destroy();
            done(failure);
          });
          upReq.on('response', (upRes: IncomingMessage) => {
            started = true;
            upReq.setTimeout(0);
            const out = downstreamResponseHeaders(upRes.headers as Record<string, string | string[]>);
            if (f.rewriteLocation) {
              for (const h of REWRITABLE) {
                const v = out[h];
                if (typeof v === 'string') out[h] = f.rewriteLocation(v);
              }
            }
            res.writeHead(upRes.statusCode ?? 502, out);
            upRes.pipe(res);
            upRes.on('error', () => res.destroy());
            upRes.on('aborted', () => res.destroy());
            upRes.on('end', () => done());
          });
          if (hasBody) req.pipe(upReq);
          else upReq.end();
        },
        (err: NotDialed & { channel?: Channel }) => {
          if (clientGone) return done();
          if (err instanceof DialRefused) return done({ status: 502, reason: "The connector can't reach the app.", detail: err.message, afterHeaders: false });
          // Nothing reached the app: any method may try another connector once.
          if (err.channel && n === 0) {
            this.hub.log.warn({ reason: err.message }, 'tunnel stream failed before the connector answered: retrying once on another connector');
            return attempt(1, err.channel.connectorId);
          }
          done({ status: err.status === 504 ? 504 : 502, reason: err.status === 504 ? 'No connector is available for this app.' : "The connector can't reach the app.", detail: err.message, afterHeaders: false });
        },
      );
    };
    attempt(0);
  }

  upgrade(req: IncomingMessage, socket: Duplex, head: Buffer, path: string, headers: Record<string, string | string[]>, timeoutMs: number, done: (failure?: UpstreamFailure) => void): void {
    this.dial(undefined, timeoutMs).then(
      ({ socket: up }) => {
        const upReq = http.request({
          method: req.method,
          path,
          headers: { ...headers, connection: 'Upgrade', upgrade: 'websocket' },
          timeout: timeoutMs,
          createConnection: () => up as never,
        });
        pipeUpgrade(upReq, socket, head, done);
      },
      (err: NotDialed) => {
        const status = err instanceof DialRefused ? 502 : err.status === 504 ? 504 : 502;
        done({ status: status as 502 | 504, reason: status === 504 ? 'No connector is available for this app.' : "The connector can't reach the app.", detail: err.message, afterHeaders: false });
      },
    );
  }

  async close(): Promise<void> {
    /* channels belong to the hub; streams end with their requests */
  }
}

class DialRefused extends NotDialed {
  constructor(message: string) {
    super(message, 502);
  }
}

const http2Cancel = 8; // NGHTTP2_CANCEL

/**
 * The CONNECT stream as the socket of an HTTP/1.1 request. Only Buffers reach
 * the HTTP/2 stream, one write at a time: a corked header string plus body
 * written straight to an Http2Stream that runs over a JS stream (the
 * WebSocket) arrived corrupted at the app in our tests (Node 20.20).
 */
class StreamSocket extends Duplex {
  constructor(private readonly s: ClientHttp2Stream) {
    super({ allowHalfOpen: true });
    s.on('data', (c: Buffer) => {
      if (!this.push(c)) s.pause();
    });
    s.on('end', () => this.push(null));
    s.on('error', (e) => this.destroy(e));
    s.on('close', () => {
      if (!this.destroyed) this.destroy(s.rstCode && s.rstCode !== 0 ? Object.assign(new Error(`tunnel stream reset (code ${s.rstCode})`), { code: 'ECONNRESET' }) : undefined);
    });
    s.on('timeout', () => this.emit('timeout'));
  }

  override _read(): void {
    this.s.resume();
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.s.write(chunk, cb);
  }

  override _final(cb: (err?: Error | null) => void): void {
    this.s.end(cb);
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    if (!this.s.destroyed) this.s.close(err ? http2Cancel : 0);
    cb(err);
  }

  setTimeout(ms: number, cb?: () => void): this {
    this.s.setTimeout(ms);
    if (cb) this.once('timeout', cb);
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
