/**
 * The byte stream a connector channel's HTTP/2 session runs on. The gateway
 * accepts two transports on `GET /v1/tunnel`, both inside mutual TLS:
 *
 * - `h2` (the default): an HTTP/1.1 Upgrade to `drawbridge-h2`, after which
 *   the TLS connection carries HTTP/2 itself, the way cloudflared runs its
 *   tunnel (through unblockedStream below). No WebSocket framing, masking or
 *   message assembly on either side.
 * - `websocket`: RFC 6455, with HTTP/2 over `ws.createWebSocketStream`, for
 *   front ends that pass no upgrade but WebSocket.
 *
 * A TLS-inspecting middlebox cannot sit in either path: it would have to present
 * the connector's client certificate, whose key never leaves the connector.
 */
import { EventEmitter } from 'node:events';
import https from 'node:https';
import { Duplex } from 'node:stream';
import type { ConnectionOptions, TLSSocket } from 'node:tls';
import { WebSocket, createWebSocketStream } from 'ws';
import { BufferPool } from './bufferPool.js';
import { connectThrough, dialVia, type OutboundProxy } from '../gateway/outboundProxy.js';
import { gatherIntoPool } from '../gateway/turnGather.js';
import { readIntoSharedBuffer } from './tlsRecords.js';

export const TUNNEL_PROTOCOL = 'drawbridge-h2';
/**
 * The ALPN protocol id a connector offers on every TLS connection to the gateway (enrollment,
 * renewal, channels), before http/1.1. It is what lets connectors.listen share the public https
 * port: the gateway hands a connection that offers it to the connector hub (gateway/sharedTlsPort.ts).
 */
export const CONNECTOR_ALPN = 'drawbridge-connector/1';
/**
 * The ALPN list of both ends (https.request and ws hand it to tls.connect, their option types
 * leave it out; the hub's server takes the same): ours first, http/1.1 for every other client.
 */
export const OFFER_CONNECTOR_ALPN: Pick<ConnectionOptions, 'ALPNProtocols'> = { ALPNProtocols: [CONNECTOR_ALPN, 'http/1.1'] };
export const CHANNEL_TRANSPORTS = ['h2', 'websocket'] as const;
export type ChannelTransport = (typeof CHANNEL_TRANSPORTS)[number];
/** a WebSocket message carries at most one write of the HTTP/2 session; anything bigger is garbage */
export const MAX_FRAME_BYTES = 4 << 20;

/**
 * The gateway's way to end a relay stream it no longer wants (its client left): a stream of its
 * own, POST CANCEL_PATH naming the stream in CANCEL_HEADER, on which the connector resets it.
 * An RST_STREAM from the gateway would do it at once, but the connector is the HTTP/2 server,
 * and nghttp2 ends a server's session after 1,000 resets from its peer plus 33 a second (its
 * guard against the rapid-reset attack): clients that gave up downloads at 100 a second cut
 * every request on the channel. A reset sent by the connector is not counted.
 */
export const CANCEL_PATH = '/v1/cancel';
export const CANCEL_HEADER = 'x-drawbridge-stream';

/**
 * Node's maxSessionMemory for channel sessions, in MB: high enough never to be reached. Node 20
 * counts the bytes queued on a stream that is then reset and never takes them off its count (the
 * memory itself is freed): at 64 MB a connector refused every new stream (ENHANCE_YOUR_CALM) once
 * some thousand downloads had been given up, and then its session failed, cutting every request
 * on the channel. What a channel holds is bounded by its windows, the connector's STREAM_ROOM and
 * MAX_QUEUED_FOR_PEER instead.
 */
export const SESSION_MEMORY_MB = 1 << 20;
/**
 * HTTP/2 flow-control windows of a channel, the same on both ends: a 1 MiB
 * response never waits for a WINDOW_UPDATE, and they bound what
 * unblockedStream can queue for the peer. STREAM_WINDOW is the largest a
 * stream gets: StreamWindows shrinks it as streams open.
 */
export const STREAM_WINDOW = 8 << 20;
export const SESSION_WINDOW = 4 * STREAM_WINDOW;
/** what unblockedStream may hold for a peer that reads nothing: our windows, plus frame headers and control frames */
export const MAX_QUEUED_FOR_PEER = SESSION_WINDOW + (16 << 20);

/** The gateway's answer to an `h2` upgrade; the HTTP/2 client preface follows it. */
export const SWITCHING_TO_TUNNEL = `HTTP/1.1 101 Switching Protocols\r\nconnection: Upgrade\r\nupgrade: ${TUNNEL_PROTOCOL}\r\n\r\n`;

export interface DialOptions {
  /** https://host:port of the gateway's connectors.listen */
  gateway: string;
  transport: ChannelTransport;
  /** the client certificate and its key (a channel without them is refused; tests try that) */
  key?: string;
  cert?: string;
  ca?: string;
  headers: Record<string, string>;
  handshakeTimeoutMs: number;
  /** an HTTP proxy to CONNECT through (outboundProxy.ts); the TLS with the gateway runs inside it */
  proxy?: OutboundProxy;
}

/**
 * One dialled channel. Events: `open` (the byte stream for HTTP/2), `refused`
 * (the gateway's HTTP status), `error`, and `close` exactly once at the end,
 * whether or not it ever opened.
 */
export interface ChannelLink extends EventEmitter {
  on(event: 'open', fn: (stream: Duplex) => void): this;
  on(event: 'refused', fn: (status: number) => void): this;
  on(event: 'error', fn: (err: Error) => void): this;
  on(event: 'close', fn: () => void): this;
  /** ends the transport after what is queued */
  close(): void;
  /** cuts the transport now */
  terminate(): void;
}

export function dialChannel(opts: DialOptions): ChannelLink {
  return opts.transport === 'websocket' ? dialWebSocket(opts) : dialUpgrade(opts);
}

function dialUpgrade(opts: DialOptions): ChannelLink {
  const link = new EventEmitter() as ChannelLink;
  let socket: TLSSocket | undefined;
  let ended = false;
  const end = () => {
    if (ended) return;
    ended = true;
    link.emit('close');
  };
  const req = https.request(new URL('/v1/tunnel', opts.gateway), {
    key: opts.key,
    cert: opts.cert,
    ca: opts.ca,
    ...OFFER_CONNECTOR_ALPN,
    ...dialVia(opts.proxy),
    headers: { ...opts.headers, connection: 'Upgrade', upgrade: TUNNEL_PROTOCOL },
    timeout: opts.handshakeTimeoutMs,
  });
  req.on('timeout', () => req.destroy(new Error('the gateway did not answer the channel upgrade in time')));
  req.on('error', (err) => link.emit('error', err));
  req.on('response', (res) => {
    link.emit('refused', res.statusCode ?? 0);
    res.resume();
    req.destroy();
  });
  req.on('upgrade', (res, sock, head) => {
    socket = sock as TLSSocket;
    socket.on('error', (err) => link.emit('error', err));
    socket.on('close', end);
    if (String(res.headers.upgrade).toLowerCase() !== TUNNEL_PROTOCOL) {
      link.emit('error', new Error(`the gateway switched to ${String(res.headers.upgrade)}, not ${TUNNEL_PROTOCOL}`));
      return void socket.destroy();
    }
    socket.setTimeout(0);
    link.emit('open', unblockedStream(socket, head));
  });
  req.on('close', () => {
    if (!socket) end();
  });
  req.end();
  link.close = () => (socket ? socket.end() : req.destroy());
  link.terminate = () => (socket ? socket.destroy() : req.destroy());
  return link;
}

function dialWebSocket(opts: DialOptions): ChannelLink {
  const link = new EventEmitter() as ChannelLink;
  const url = new URL('/v1/tunnel', opts.gateway);
  url.protocol = 'wss:';
  const ws = new WebSocket(url, {
    key: opts.key,
    cert: opts.cert,
    ca: opts.ca,
    ...OFFER_CONNECTOR_ALPN,
    perMessageDeflate: false,
    maxPayload: MAX_FRAME_BYTES,
    // (ws dials with its own connection, never pooled, when there is no proxy)
    ...(opts.proxy && { createConnection: connectThrough(opts.proxy) }),
    headers: opts.headers,
    handshakeTimeout: opts.handshakeTimeoutMs,
    // Masking guards browsers against proxy cache poisoning; inside TLS between our own
    // processes it only costs CPU (the gateway's unmasking was 13% of a bulk download).
    // ws skips both masking and unmasking for an all-zero mask.
    generateMask: (mask: Buffer) => void mask.fill(0),
  });
  ws.on('unexpected-response', (_req, res) => {
    link.emit('refused', res.statusCode ?? 0);
    ws.terminate();
  });
  ws.on('error', (err) => link.emit('error', err));
  ws.on('open', () => link.emit('open', channelStream(ws)));
  ws.on('close', () => link.emit('close'));
  link.close = () => ws.close();
  link.terminate = () => ws.terminate();
  return link;
}

/**
 * The TLS socket as the byte stream HTTP/2 runs on, with writes that complete
 * at once. Node's HTTP/2 stops reading its socket while one of its writes is
 * in progress; on a socket whose kernel buffer is full, that write lasts until
 * the peer reads. When both ends send in bulk (a download and an upload on one
 * channel), each waited for the other: the channel froze until pings failed.
 * Queued bytes are bounded by HTTP/2 flow control: the peer's windows, and
 * MAX_QUEUED_FOR_PEER for a peer that announces windows no real end would.
 *
 * Made for HTTP/2's JS stream adapter, which copies each piece it reads before
 * its 'data' listener returns: the buffer of a piece read that way is used again
 * for the next one. A reader that keeps pieces must copy them.
 */
export function unblockedStream(socket: TLSSocket, head?: Buffer): Duplex {
  socket.setNoDelay(true);
  /** written by HTTP/2, not yet handed to the TLS socket: pooled batches, the last one still filling */
  const queue: Batch[] = [];
  let writing = false;
  let ending = false;
  // The windows that bound the queue are the peer's to announce. A peer that announces
  // huge ones and then stops reading (a rogue connector with a valid certificate) would
  // have us queue every upload in memory: past what our own windows allow, it is cut.
  // Counted by the batches that hold it (a peer that stops reading and sends PINGs has a 17-byte
  // ACK queued per PING; queued one by one, those once held twenty times their bytes in memory).
  const overflowing = () => queue.length * WRITE_BATCH_BYTES + socket.writableLength > MAX_QUEUED_FOR_PEER;
  const cut = (): void => void stream.destroy(Object.assign(new Error(`the peer stopped reading: more than ${MAX_QUEUED_FOR_PEER >> 20} MiB queued for it`), { code: 'ERR_PEER_NOT_READING' }));
  // One write to the TLS socket at a time, each a single buffer. Handed several (corked
  // writes, or what queued behind a busy socket), Node's TLS socket copies them into a new
  // allocation of their total size before it encrypts; behind a full kernel buffer those
  // batches grew to megabytes, and the copy and its page faults were a third of the
  // connector's CPU in a bulk download.
  const pump = (): void => {
    if (writing || socket.destroyed) return;
    const next = queue.shift();
    if (!next) {
      if (ending && !socket.writableEnded) socket.end();
      return;
    }
    writing = true;
    socket.write(Buffer.from(next.bytes.buffer, next.bytes.byteOffset, next.used), (err) => {
      writing = false;
      // (a failed write may still be referenced by the socket being torn down)
      if (!err) writeBatches.give(next.bytes);
      pump();
    });
  };
  // Every write is copied into the batch being filled as it arrives, not kept until the socket
  // takes it. What HTTP/2 hands over is a fresh copy of each frame (Node's JS stream adapter
  // makes one per write); kept in the queue, those lived long enough behind a busy socket
  // (8-18 MiB queued in a bulk download) to reach V8's old generation, and the connector ran a
  // full GC every 150 ms. Copied now, they die young, and what waits is in buffers used again.
  const enqueue = (chunk: Buffer): void => {
    let at = 0;
    while (at < chunk.length) {
      let last = queue[queue.length - 1];
      if (!last || last.used === WRITE_BATCH_BYTES) {
        last = { bytes: writeBatches.take(), used: 0 };
        queue.push(last);
      }
      const n = Math.min(chunk.length - at, WRITE_BATCH_BYTES - last.used);
      last.bytes.set(n === chunk.length ? chunk : chunk.subarray(at, at + n), last.used);
      last.used += n;
      at += n;
    }
  };
  /** a write is complete once queued (the point of this stream), unless too much waits for a peer that stopped reading */
  const sendQueued = (cb: () => void): void => {
    pump();
    if (overflowing()) return cut();
    cb();
  };
  const stream: Duplex = new Duplex({
    read() {
      socket.resume();
    },
    write(chunk: Buffer, _enc, cb) {
      enqueue(chunk);
      sendQueued(cb);
    },
    writev(chunks, cb) {
      for (const { chunk } of chunks) enqueue(chunk as Buffer);
      sendQueued(cb);
    },
    final(cb) {
      ending = true;
      pump();
      cb();
    },
    destroy(err, cb) {
      queue.length = 0;
      socket.destroy();
      cb(err);
    },
  });
  // what arrived with the 101 (the gateway's HTTP/2 preface) comes first
  if (head?.length) stream.push(head);
  // What the socket brings in one turn is handed on in one piece, up to WRITE_BATCH_BYTES. Node's
  // TLS socket emits each TLS record (at most 16 KiB) by itself, and HTTP/2 frames straddle
  // records: pushed one by one, every record cost a pass through the JS stream adapter into
  // nghttp2, and most frames reached the relay in two halves, each its own 'data' event.
  // The piece is a buffer of the write batches' pool, handed back when HTTP/2 took it at once:
  // its JS stream adapter copies what it is given into nghttp2 before push returns, unless it
  // has stopped reading (then the piece waits in the stream's buffer, which readableLength shows).
  const arrived = gatherIntoPool(writeBatches, (chunk) => {
    if (!stream.push(chunk)) socket.pause();
    return stream.readableLength === 0;
  });
  // Each record is read into the process's one buffer and copied into the piece at once (no
  // Buffer and 'data' event per record); 'data' only when the socket is not as Node 20 builds it.
  if (!readIntoSharedBuffer(socket, (bytes) => arrived.add(bytes))) socket.on('data', (chunk: Buffer) => arrived.add(chunk));
  socket.on('end', () => {
    arrived.flush();
    stream.push(null);
  });
  socket.on('error', (err) => stream.destroy(err));
  socket.on('close', () => stream.destroy());
  return stream;
}

/** a pooled buffer of the queue and how much of it is written */
interface Batch {
  bytes: Uint8Array;
  used: number;
}

/** the most one write of unblockedStream hands the TLS socket, and the most one piece of its reads hands HTTP/2 */
const WRITE_BATCH_BYTES = 256 << 10;
/**
 * Enough batches for what a bulk download usually has queued (8-18 MiB behind a busy socket),
 * so that none is allocated afresh while it lasts: a fresh one that waits is the long-lived
 * external memory that sets off full GCs. They stay allocated once used, in the connector and
 * the gateway alike (one pool per process). A channel's reads are gathered into them too.
 */
const writeBatches = new BufferPool(WRITE_BATCH_BYTES, 80);

/** the most one WebSocket message carries of the writes queued behind a busy socket */
const MAX_BATCH_BYTES = 1 << 20;

/**
 * The WebSocket as a byte stream for HTTP/2. Writes queued while the socket
 * is busy (an HTTP/2 frame header and its payload, several frames) go out
 * together, up to 1 MiB per message: per-message work dominated bulk
 * transfers, and one unbounded message could pass the peer's MAX_FRAME_BYTES.
 */
export function channelStream(ws: WebSocket): Duplex {
  const duplex = createWebSocketStream(ws);
  (duplex as Duplex & { _writev: Duplex['_writev'] })._writev = (chunks, cb) => {
    if (ws.readyState !== ws.OPEN) return cb(new Error('WebSocket is not open'));
    let batch: Buffer[] = [];
    let size = 0;
    const send = (done?: (err?: Error) => void) => {
      ws.send(batch.length === 1 ? batch[0] : Buffer.concat(batch, size), done);
      batch = [];
      size = 0;
    };
    for (const { chunk } of chunks) {
      if (size > 0 && size + (chunk as Buffer).length > MAX_BATCH_BYTES) send();
      batch.push(chunk as Buffer);
      size += (chunk as Buffer).length;
    }
    send(cb);
  };
  return duplex;
}
