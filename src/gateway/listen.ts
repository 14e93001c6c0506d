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

export function addressOf(server: Server | undefined): string | undefined {
  const a = server?.address();
  if (!a || typeof a === 'string') return a ?? undefined;
  return a.family === 'IPv6' ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`;
}

export function closeServer(server: Server | undefined): Promise<void> {
  return new Promise((resolve) => {
    if (!server || !server.listening) return resolve();
    server.close(() => resolve());
    (server as Server & { closeAllConnections?: () => void }).closeAllConnections?.();
  });
}
