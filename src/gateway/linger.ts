/**
 * How long a client may go on sending a request body the gateway has already answered.
 *
 * An answer can come before the upload is over: a 404 for an unknown host, a deny, a sign-in
 * redirect, an app's early 413. The rest of the body is then read and dropped, so the client gets
 * to read the answer and its next request on the connection is served. Read without limit, a
 * client could drip bytes of a body nobody wants (the public listener has no request timeout,
 * and each byte put off Node's 5 s idle timer) and hold the connection for as long as it liked.
 *
 * So the drop is bounded the way nginx bounds its lingering close: LINGER_MS after the answer
 * left, a body still coming ends the connection. A silent client is already closed by Node's
 * keep-alive timeout.
 */
import type { IncomingMessage } from 'node:http';

/** nginx's lingering_time; DRAWBRIDGE_LINGER_MS is a knob for tests, not a config key */
export const LINGER_MS = 30_000;

/**
 * Called once the answer to `req` has left: when the body is not complete by LINGER_MS from now,
 * the connection is closed and `onCut` told (once) how long the body was given.
 */
export function boundUnwantedBody(req: IncomingMessage, onCut: (ms: number) => void): void {
  if (req.complete) return;
  const socket = req.socket;
  if (!socket || socket.destroyed) return;
  const ms = Number(process.env.DRAWBRIDGE_LINGER_MS) || LINGER_MS;
  const timer = setTimeout(() => {
    if (req.complete || socket.destroyed) return;
    socket.destroy();
    onCut(ms);
  }, ms).unref();
  // Both listeners go as soon as either fires: the socket outlives the request on a kept-alive
  // connection, and a 'close' listener left on it per early answer piled up there (with the
  // request it held) until the client hung up: MaxListenersExceededWarning after 10 of them.
  const stop = () => {
    clearTimeout(timer);
    req.removeListener('end', stop);
    socket.removeListener('close', stop);
  };
  req.once('end', stop);
  socket.once('close', stop);
}
