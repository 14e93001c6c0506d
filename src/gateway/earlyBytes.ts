/**
 * The client's side of an upgrade, read while the gateway finds the app and the app decides. A
 * client that hangs up is seen only by reading (its FIN): unseen, a WebSocket whose client left
 * while its request waited for a connector was still dialled to the app when the connector came
 * back, and the app's request was held until backendTimeout. What a client sends before the 101
 * (it should wait for it) is kept for the app, after what came with the request, up to a bound.
 */
import type { Duplex } from 'node:stream';

/** what a client may send on an upgrade before the app's 101; more is no WebSocket handshake */
const MAX_EARLY_BYTES = 64 << 10;

export class EarlyBytes {
  /** what to send the app once it switched protocols, in order */
  readonly chunks: Buffer[];
  /** the client hung up, or sent more than a handshake may (its socket is destroyed) */
  left = false;
  private bytes = 0;
  private onGone?: () => void;
  private stopped = false;

  constructor(private readonly socket: Duplex, head: Buffer) {
    this.chunks = head.length ? [head] : [];
    socket.on('data', this.keep);
    socket.once('end', this.gone);
    socket.once('close', this.gone);
    // (a 'data' listener does not start a socket someone paused)
    socket.resume();
  }

  /** `fn` runs when the client leaves (at once if it has): one at a time, the last given */
  whenLeft(fn: () => void): void {
    if (this.left) fn();
    else this.onGone = fn;
  }

  /** The app answered: the client's side is left for the relay, unread. */
  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    this.socket.removeListener('data', this.keep);
    this.socket.removeListener('end', this.gone);
    this.socket.removeListener('close', this.gone);
    this.socket.pause();
  }

  private readonly keep = (chunk: Buffer): void => {
    this.bytes += chunk.length;
    if (this.bytes > MAX_EARLY_BYTES) return this.gone();
    this.chunks.push(chunk);
  };

  private readonly gone = (): void => {
    if (this.left) return;
    this.left = true;
    this.stop();
    this.socket.destroy();
    this.onGone?.();
  };
}
