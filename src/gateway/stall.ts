/**
 * Who stopped a proxied exchange from moving. The public listener has no
 * request timeout (uploads may take as long as they take), so a client that
 * stops sending its body, or stops taking the response, would otherwise hold a
 * connection to the app, and whatever the gateway queued for it, for as long as
 * it kept its socket open. The app's `backendTimeout` bounds how long one
 * exchange may go without progress in either direction, the way it already
 * bounds the app.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { answerBegun } from './heldHead.js';

export type Stall =
  /** the client sent part of its body, then nothing */
  | 'client-upload'
  /** the body waits in the gateway because the app stopped reading it */
  | 'app-upload'
  /** the response waits in the gateway because the client stopped reading it */
  | 'client-download';

/** What the edge does about each stall: the log's decision and reason, and the page when no response has begun. */
export const STALL_ANSWERS: Readonly<Record<Stall, { decision: string; logged: string; page?: { status: 408 | 504; reason: string } }>> = {
  'client-upload': { decision: 'client-timeout', logged: 'the client sent no request body bytes', page: { status: 408, reason: 'The request body stopped arriving before it was complete.' } },
  'app-upload': { decision: 'timeout', logged: 'the app read no request body bytes', page: { status: 504, reason: 'The app did not answer in time.' } },
  'client-download': { decision: 'client-timeout', logged: 'the client took no response bytes' },
};

export function whoStalled(req: IncomingMessage, res: ServerResponse): Stall | undefined {
  if (!req.complete) {
    // Bytes the gateway holds and has not passed on mean the app is the one not reading.
    if (req.isPaused() || req.readableLength > 0) return answerBegun(res) ? undefined : 'app-upload';
    return 'client-upload';
  }
  if (res.headersSent && (res.writableLength > 0 || (res.socket?.writableLength ?? 0) > 0)) return 'client-download';
  // Waiting on the app, whose own timers (headers, body, tunnel socket) answer for it.
  return undefined;
}

/**
 * Calls `onStall` when no bytes moved on the client's connection, either way, for
 * `ms`, and the stall is one the app's own timers do not cover. Moved means read
 * from the client, or handed to the kernel for it: a slow client that still takes
 * bytes is making progress.
 *
 * A timer of its own that samples the connection, not the socket's idle timer:
 * Node puts that one off once when a write is pending whose queue changed since it
 * was armed, which is exactly a client that stopped reading (it was cut after
 * twice backendTimeout). Sampled four times a period: a stall is acted on between
 * `ms` and 1.25 `ms` after the last byte moved.
 */
export function watchStall(req: IncomingMessage, res: ServerResponse, ms: number, onStall: (stall: Stall) => void): void {
  const socket = req.socket as Socket & { _bytesDispatched?: number };
  const moved = () => socket.bytesRead + (socket._bytesDispatched ?? socket.bytesWritten ?? 0);
  let last = moved();
  let quietSince = Date.now();
  const timer = setInterval(
    () => {
      const now = moved();
      if (now !== last) {
        last = now;
        quietSince = Date.now();
        return;
      }
      if (Date.now() - quietSince < ms) return;
      const stall = whoStalled(req, res);
      // waiting on the app, whose own timers answer for it: the client's side starts over
      if (!stall) return void (quietSince = Date.now());
      clearInterval(timer);
      onStall(stall);
    },
    Math.max(25, Math.floor(ms / 4)),
  ).unref();
  res.once('close', () => clearInterval(timer));
}
