/**
 * A relayed WebSocket that stopped moving. Once switched, a WebSocket has no request
 * timer: nothing bounded a side that stopped reading. An app that paused its socket (a
 * busy consumer, a deadlocked worker) held the client's connection, the app's, and the
 * megabytes queued between them for good, even after the client left: the gateway had
 * stopped reading the client, so its FIN was never seen. The app's `backendTimeout` bounds
 * each direction, as nginx's proxy_send_timeout and proxy_read_timeout bound an upgraded
 * connection: bytes wait for one side and it took none of them for that long. A quiet
 * WebSocket (nothing waiting) is never touched, however long it stays quiet, and a slow
 * side that still takes bytes is making progress.
 */
import type { Duplex } from 'node:stream';
import { relayedApp } from './webSocketClose.js';

/** who stopped taking bytes: the app (the client's messages wait) or the client (the app's wait) */
export type WebSocketStall = 'app' | 'client';

/** One direction of the relay: what its reader has taken, and since when it took nothing while bytes waited. */
class Direction {
  handed = 0;
  private taken = 0;
  private waitingSince = 0;
  constructor(readonly to: Duplex) {}
  /** how long bytes have waited for `to` without it taking any */
  stuckFor(now: number): number {
    const taken = this.handed - this.to.writableLength;
    if (taken !== this.taken || this.to.writableLength === 0) {
      this.taken = taken;
      this.waitingSince = now;
    }
    return now - this.waitingSince;
  }
}

/**
 * Calls `onStall` once when bytes have waited for one side of the WebSocket relayed for
 * `client` and it took none of them for `ms` (sampled four times a period, so within 1.25
 * `ms`). Stops when the relay ends or begins to close.
 */
export function watchWebSocketStall(client: Duplex, ms: number, onStall: (stall: WebSocketStall) => void): void {
  const app = relayedApp(client);
  if (!app) return;
  const toApp = new Direction(app);
  const toClient = new Direction(client);
  const countToApp = (chunk: Buffer) => void (toApp.handed += chunk.length);
  const countToClient = (chunk: Buffer) => void (toClient.handed += chunk.length);
  client.on('data', countToApp);
  app.on('data', countToClient);
  const stop = () => {
    clearInterval(timer);
    client.removeListener('data', countToApp);
    app.removeListener('data', countToClient);
  };
  const timer = setInterval(
    () => {
      // closing already (a reload, a sign-out, the app's end): its own timers finish it
      if (relayedApp(client) !== app) return stop();
      const now = Date.now();
      // (both always sampled: each keeps its own clock)
      const clientStuck = toClient.stuckFor(now) >= ms;
      const appStuck = toApp.stuckFor(now) >= ms;
      if (!clientStuck && !appStuck) return;
      stop();
      onStall(clientStuck ? 'client' : 'app');
    },
    Math.max(25, Math.floor(ms / 4)),
  ).unref();
  client.once('close', stop);
}
