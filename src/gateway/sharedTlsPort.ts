/**
 * One TCP port for two TLS servers: the public https listener and the connector hub.
 *
 * Why: connector hosts are often allowed out on 443 only (Entra's connectors need nothing
 * else), and a second port meant a second public address. Why by ALPN, before any TLS: the two
 * servers must keep their own certificates (public vs connector CA), client-certificate request
 * and timeouts, and SNI cannot tell them apart (connectors dial the public name). The connector
 * offers CONNECTOR_ALPN on every connection to the gateway; a browser never does.
 *
 * The listener reads the ClientHello (at most MAX_HELLO_BYTES, within the handshake timeout),
 * pushes the bytes back and hands the socket to the chosen server as its own 'connection'
 * (Node's TLSSocket reads what is already buffered on the socket it wraps). Anything that is no
 * ClientHello goes to the public server, which fails its handshake as it would on its own port.
 */
import net, { type Server, type Socket } from 'node:net';
import type { Config } from '../config/load.js';
import { fedBy, listen, parseListen, type ListenAddress } from './listen.js';

/** a ClientHello is a few hundred bytes (2 KB with post-quantum key shares): past this, it is not one we sort */
export const MAX_HELLO_BYTES = 16 << 10;

/** What the first bytes of a connection are: not yet a whole ClientHello, one (with its ALPN list), or something else. */
export type Hello = { kind: 'partial' } | { kind: 'hello'; alpn: string[] } | { kind: 'other' };

const HANDSHAKE = 0x16;
const CLIENT_HELLO = 0x01;
const ALPN_EXTENSION = 0x0010;
/** the largest record payload TLS allows (2^14), with the room TLS 1.2 gives compressed and encrypted records */
const MAX_RECORD = (1 << 14) + 2048;

/** Reads a ClientHello from the start of `buf` (RFC 8446 4.1.2, RFC 7301), spread over as many handshake records as it takes. */
export function readClientHello(buf: Buffer): Hello {
  return new ClientHelloReader().push(buf);
}

/**
 * Reads a ClientHello as its bytes arrive: each byte is copied and each record header read once.
 * Why not read the whole buffer again at every chunk: a hello may come as thousands of 1-byte
 * records, one per TCP segment, and reading (and joining) all of them again for each one took
 * the gateway ~5 s of CPU per 16 KiB connection, any client's to open (sec29 #1).
 */
export class ClientHelloReader {
  private buf = Buffer.alloc(0);
  /** bytes held in buf */
  private held = 0;
  /** where the next record header starts */
  private at = 0;
  /** the handshake message's bytes in buf, record by record */
  private readonly ranges: [number, number][] = [];
  private have = 0;
  /** the ClientHello's length, once its first 4 bytes are in (-1 before) */
  private size = -1;

  /** every byte pushed so far */
  get bytes(): Buffer {
    return this.buf.subarray(0, this.held);
  }

  push(chunk: Buffer): Hello {
    this.append(chunk);
    const b = this.buf;
    while (this.at + 5 <= this.held) {
      const at = this.at;
      const length = b.readUInt16BE(at + 3);
      if (b[at] !== HANDSHAKE || b[at + 1] !== 3 || length === 0 || length > MAX_RECORD) return { kind: 'other' };
      if (at + 5 + length > this.held) break;
      this.ranges.push([at + 5, at + 5 + length]);
      this.have += length;
      this.at = at + 5 + length;
      if (b[this.ranges[0]![0]] !== CLIENT_HELLO) return { kind: 'other' };
      // (at most 4 records hold the first 4 bytes: each has at least one)
      if (this.size < 0 && this.have >= 4) this.size = this.message().readUIntBE(1, 3);
      if (this.size >= 0 && this.have >= 4 + this.size) return helloBody(this.message().subarray(4, 4 + this.size));
    }
    // A first byte that is no handshake record says enough (plain HTTP, garbage).
    if (this.held > this.at && b[this.at] !== HANDSHAKE) return { kind: 'other' };
    return { kind: 'partial' };
  }

  private append(chunk: Buffer): void {
    if (this.held + chunk.length > this.buf.length) {
      // doubling: each byte is copied a bounded number of times however the chunks come
      const grown = Buffer.allocUnsafe(Math.max(this.held + chunk.length, this.buf.length * 2));
      this.buf.copy(grown, 0, 0, this.held);
      this.buf = grown;
    }
    chunk.copy(this.buf, this.held);
    this.held += chunk.length;
  }

  private message(): Buffer {
    return Buffer.concat(this.ranges.map(([from, to]) => this.buf.subarray(from, to)));
  }
}

function helloBody(b: Buffer): Hello {
  try {
    let p = 2 + 32; // legacy_version, random
    p += 1 + b.readUInt8(p); // legacy_session_id
    p += 2 + b.readUInt16BE(p); // cipher_suites
    p += 1 + b.readUInt8(p); // legacy_compression_methods
    if (p === b.length) return { kind: 'hello', alpn: [] };
    const end = p + 2 + b.readUInt16BE(p);
    if (end > b.length) return { kind: 'other' };
    for (p += 2; p + 4 <= end; ) {
      const type = b.readUInt16BE(p);
      const length = b.readUInt16BE(p + 2);
      p += 4;
      if (p + length > end) return { kind: 'other' };
      if (type === ALPN_EXTENSION) return { kind: 'hello', alpn: protocolNames(b.subarray(p, p + length)) };
      p += length;
    }
    return { kind: 'hello', alpn: [] };
  } catch {
    // RangeError: a length that points past the message
    return { kind: 'other' };
  }
}

function protocolNames(ext: Buffer): string[] {
  const names: string[] = [];
  const end = Math.min(ext.length, 2 + ext.readUInt16BE(0));
  for (let p = 2; p < end; p += 1 + ext[p]!) names.push(ext.subarray(p + 1, p + 1 + ext[p]!).toString('latin1'));
  return names;
}

/**
 * Whether connectors.listen names gateway.listen.https's own address, so that the two share its
 * port. Port 0 never shares: it asks for a free port, one for each listener.
 */
export function sharesHttpsPort(config: Pick<Config, 'gateway' | 'connectors'>): boolean {
  const https = config.gateway.listen.https;
  const connectors = config.connectors?.listen;
  if (https === undefined || connectors === undefined) return false;
  const a = parseListen(https);
  const b = parseListen(connectors);
  return a.port !== 0 && a.port === b.port && a.host?.toLowerCase() === b.host?.toLowerCase();
}

export interface SharedTlsRoutes {
  /** the ALPN protocol id that sends a connection to `byAlpn` */
  alpn: string;
  byAlpn: Server;
  /** every other connection: other or no ALPN, and whatever is not a ClientHello */
  other: Server;
}

interface Route {
  server: Server;
  stopped: boolean;
  sockets: Set<Socket>;
  drained: Promise<void>;
  emptied: () => void;
}

export class SharedTlsPort {
  readonly listener: Server;
  private readonly byAlpn: Route;
  private readonly other: Route;

  constructor(
    private readonly routes: SharedTlsRoutes,
    /** how long a connection may take to send its ClientHello (the servers' own handshake timeout then starts) */
    private readonly helloTimeoutMs: number,
  ) {
    // noDelay as Node's http servers set it for their own connections
    this.listener = net.createServer({ noDelay: true }, (socket) => this.sort(socket));
    this.byAlpn = this.route(routes.byAlpn);
    this.other = this.route(routes.other);
  }

  listen(addr: ListenAddress): Promise<void> {
    return listen(this.listener, addr);
  }

  private route(server: Server): Route {
    let emptied = () => undefined as void;
    const drained = new Promise<void>((r) => (emptied = r));
    const route: Route = { server, stopped: false, sockets: new Set(), drained, emptied: () => emptied() };
    fedBy(server, {
      listener: this.listener,
      // The port takes no more connections once either server stops: the gateway stops both.
      stop: () => {
        route.stopped = true;
        if (this.listener.listening) this.listener.close();
        if (route.sockets.size === 0) route.emptied();
      },
      drained: () => route.drained,
    });
    return route;
  }

  private sort(socket: Socket): void {
    const reader = new ClientHelloReader();
    const timer = setTimeout(() => socket.destroy(), this.helloTimeoutMs).unref();
    const drop = () => socket.destroy();
    const onData = (chunk: Buffer) => {
      const hello = reader.push(chunk);
      const buf = reader.bytes;
      if (hello.kind === 'partial' && buf.length < MAX_HELLO_BYTES) return;
      clearTimeout(timer);
      socket.off('data', onData).off('error', drop).off('end', drop).off('close', forget);
      this.handOver(hello.kind === 'hello' && hello.alpn.includes(this.routes.alpn) ? this.byAlpn : this.other, socket, buf);
    };
    const forget = () => clearTimeout(timer);
    // Before a server owns it, a connection that fails or half-closes has nothing to say.
    socket.on('data', onData).on('error', drop).on('end', drop).on('close', forget);
  }

  private handOver(route: Route, socket: Socket, read: Buffer): void {
    if (route.stopped) return void socket.destroy();
    // What net does for a server's own accepted connections, from its options: this one accepts
    // none. Without it the public listener's TCP keep-alive probes (server.ts PUBLIC_LISTENER) were
    // off on a shared port, and a WebSocket whose client vanished was held for good (sec29 #2).
    const own = route.server as Server & { keepAlive?: boolean; keepAliveInitialDelay?: number };
    if (own.keepAlive) socket.setKeepAlive(true, (own.keepAliveInitialDelay ?? 0) * 1000);
    socket.pause();
    socket.unshift(read);
    route.sockets.add(socket);
    socket.once('close', () => {
      route.sockets.delete(socket);
      if (route.stopped && route.sockets.size === 0) route.emptied();
    });
    route.server.emit('connection', socket);
  }
}
