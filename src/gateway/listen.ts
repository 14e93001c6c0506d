import type { Server } from 'node:net';

export interface ListenAddress {
  host?: string;
  port: number;
}

/** `8443` (all interfaces) or `127.0.0.1:9090` / `[::1]:9090`. */
export function parseListen(v: number | string): ListenAddress {
  if (typeof v === 'number') return { port: v };
  const m = /^\[?([^\]]+?)\]?:(\d+)$/.exec(v);
  if (!m) throw new Error(`invalid listen address ${JSON.stringify(v)}`);
  return { host: m[1], port: Number(m[2]) };
}

export function listen(server: Server, addr: ListenAddress): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(addr.port, addr.host, () => {
      server.removeListener('error', reject);
      resolve();
    });
  });
}

/**
 * A server that listens on no port of its own: another listener hands it its connections
 * (sharedTlsPort.ts). Node's net bookkeeping of such a server counts none of them.
 */
export interface Feed {
  /** the server that listens for it */
  listener: Server;
  /** hand it no more connections */
  stop(): void;
  /** resolves once stopped and every connection handed to it has closed */
  drained(): Promise<void>;
}

const feeds = new WeakMap<Server, Feed>();

export function fedBy(server: Server, feed: Feed): void {
  feeds.set(server, feed);
  // Node's http server starts its connection list (headersTimeout, requestTimeout, and the idle
  // connections closeServer closes) on 'listening': one that never listens would keep none.
  server.emit('listening');
}

export function addressOf(server: Server | undefined): string | undefined {
  const a = (server && (feeds.get(server)?.listener ?? server))?.address();
  if (!a || typeof a === 'string') return a ?? undefined;
  return a.family === 'IPv6' ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`;
}

/**
 * How long a stopping listener lets in-flight requests finish before it cuts them. Below
 * Kubernetes' default terminationGracePeriodSeconds (30 s), with room for the rest of the
 * shutdown, so a rolling restart drains instead of being SIGKILLed mid-request. (README: Stopping.)
 */
export const DRAIN_GRACE_MS = 20_000;

type HttpServer = Server & { closeIdleConnections?: () => void; closeAllConnections?: () => void };

/** How often a draining listener closes the connections that have gone idle since. */
const IDLE_SWEEP_MS = 200;

/**
 * Stops taking connections and lets the requests in flight finish: idle keep-alive connections
 * are closed at once, a connection ends after its last answer, and whatever is still running
 * after `graceMs` is cut. Resolves when every connection is closed.
 */
export function closeServer(server: Server | undefined, graceMs = DRAIN_GRACE_MS): Promise<void> {
  return new Promise((resolve) => {
    const feed = server && feeds.get(server);
    if (!server || !(server.listening || feed)) return resolve();
    const s = server as HttpServer;
    const cut = setTimeout(() => s.closeAllConnections?.(), graceMs);
    cut.unref();
    // A connection whose answer is still running is not idle yet; once it is, it goes. (The edge
    // marks the answers it sends while stopping Connection: close, so most end by themselves.)
    const sweep = setInterval(() => s.closeIdleConnections?.(), IDLE_SWEEP_MS);
    sweep.unref();
    const done = () => {
      clearTimeout(cut);
      clearInterval(sweep);
      resolve();
    };
    if (feed) {
      feed.stop();
      // for its timers only: net's close callback would come at once, having counted no connection
      server.close();
      void feed.drained().then(done);
    } else server.close(done);
    s.closeIdleConnections?.();
  });
}

/**
 * What the TLS listeners (public https, connectors) offer: TLS 1.2 and 1.3, and in 1.2 only
 * ECDHE suites with AEAD ciphers (Mozilla's "intermediate" list). Node's default adds its
 * `HIGH` set, which let a client settle on RSA key exchange (no forward secrecy) or CBC with
 * SHA-1. Every client of the last ten years offers one of these.
 */
export const SERVER_TLS = {
  minVersion: 'TLSv1.2',
  ciphers: [
    'TLS_AES_128_GCM_SHA256',
    'TLS_AES_256_GCM_SHA384',
    'TLS_CHACHA20_POLY1305_SHA256',
    'ECDHE-ECDSA-AES128-GCM-SHA256',
    'ECDHE-RSA-AES128-GCM-SHA256',
    'ECDHE-ECDSA-AES256-GCM-SHA384',
    'ECDHE-RSA-AES256-GCM-SHA384',
    'ECDHE-ECDSA-CHACHA20-POLY1305',
    'ECDHE-RSA-CHACHA20-POLY1305',
  ].join(':'),
} as const;
