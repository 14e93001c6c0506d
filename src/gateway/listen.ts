import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Server, Socket } from 'node:net';

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
  trackResponses(server);
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(addr.port, addr.host, () => {
      server.removeListener('error', reject);
      resolve();
    });
  });
}

export function addressOf(server: Server | undefined): string | undefined {
  const a = server?.address();
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

/** Per listener: the responses not yet finished, by connection, in the order their requests came. */
interface Tracked {
  bySocket: Map<Socket, ServerResponse[]>;
  draining: boolean;
}
const tracked = new WeakMap<Server, Tracked>();

function trackResponses(server: Server): void {
  if (tracked.has(server)) return;
  const t: Tracked = { bySocket: new Map(), draining: false };
  tracked.set(server, t);
  // Prepended: it must see the response before the request handler can write its head.
  server.prependListener('request', (req: IncomingMessage, res: ServerResponse) => {
    const socket = req.socket;
    const queue = t.bySocket.get(socket) ?? [];
    queue.push(res);
    t.bySocket.set(socket, queue);
    const writeHead = res.writeHead;
    // Every head is written through writeHead (end() and write() call it implicitly). While the
    // listener drains, the last answer on a connection says Connection: close, and Node ends the
    // connection after it. Not an earlier one: a request pipelined behind it would go unanswered.
    res.writeHead = function (this: ServerResponse, ...args: Parameters<ServerResponse['writeHead']>) {
      if (t.draining && queue[queue.length - 1] === res) res.shouldKeepAlive = false;
      return writeHead.apply(this, args);
    } as ServerResponse['writeHead'];
    res.once('close', () => {
      queue.splice(queue.indexOf(res), 1);
      if (queue.length > 0) return;
      t.bySocket.delete(socket);
      // An answer whose head went out before the drain began kept its connection open: now idle, end it.
      if (t.draining && !socket.destroyed) socket.destroySoon();
    });
  });
}

/**
 * Stops taking connections and lets the requests in flight finish: idle keep-alive connections
 * are closed at once, a connection ends after its last answer, and whatever is still running
 * after `graceMs` is cut. Resolves when every connection is closed.
 */
export function closeServer(server: Server | undefined, graceMs = DRAIN_GRACE_MS): Promise<void> {
  return new Promise((resolve) => {
    if (!server || !server.listening) return resolve();
    const s = server as HttpServer;
    const t = tracked.get(server);
    if (t) t.draining = true;
    const cut = setTimeout(() => s.closeAllConnections?.(), graceMs);
    cut.unref();
    server.close(() => {
      clearTimeout(cut);
      resolve();
    });
    // close() already closes idle connections on Node >= 19; kept explicit since draining relies on it.
    s.closeIdleConnections?.();
  });
}
