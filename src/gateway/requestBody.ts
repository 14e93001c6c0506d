/**
 * The client's request body as the app gets it: what one turn of the event
 * loop brings (up to MAX_CHUNK) leaves in one write. Node's parser hands the
 * body over chunk for chunk as the client framed it, and relayed that way a
 * chunked upload of 1-byte chunks cost the gateway about 10 µs of CPU a chunk
 * (three socket writes and a chunk frame each), 125 times a normal upload.
 *
 * relay.ts corks its destination instead; that saves syscalls but still frames
 * each chunk on its own, and undici wants a Readable as the body anyway.
 *
 * Still a stream: a piece is passed on at the end of the turn it arrived in,
 * nothing waits for the body's end, and the client is paused as soon as the
 * consumer stops taking pieces (highWaterMark 0), so a slow app pauses the
 * client and the stall watch (stall.ts) sees the client's request paused.
 * A client that errors or leaves mid-body errors this stream (the consumer
 * aborts the app's request, or there is none left to tell); a consumer that destroys it destroys the request,
 * as it did when it was handed the request itself.
 */
import { Readable } from 'node:stream';
import { gatherByTurn } from './turnGather.js';

/** the most one write to the app carries; a larger turn's worth goes out in pieces this size */
export const MAX_CHUNK = 64 << 10;

export function coalescedBody(src: Readable & { socket?: Readable | null }): Readable {
  const socket = src.socket ?? undefined;
  let started = false;

  const body = new Readable({
    highWaterMark: 0,
    read() {
      if (!started) {
        started = true;
        // a client that left before the app's connection was ready: nothing will come
        if (src.destroyed && !src.readableEnded) return onClose();
        src.on('data', onData);
        src.once('end', onEnd);
        src.once('error', onError);
        src.once('close', onClose);
        // Once the response is out, Node no longer tells the request its connection died (it
        // leaves the server's queue of requests): a client that left in the middle of an upload
        // the app had already answered (a 413 before reading) held the app's request for good.
        socket?.once('close', onClose);
      }
      src.resume();
    },
    destroy(err, cb) {
      detach();
      gathered.drop();
      // The app's request ended (it failed, or was given up) while the client was still sending:
      // the rest is read and dropped, so the client reads the gateway's answer and its next
      // request on the connection is served. Destroyed, the client got a reset, often before it
      // had read the 502. (A stall's page says Connection: close, which ends the connection.)
      if (!src.readableEnded && !src.destroyed) src.on('data', () => undefined).resume();
      cb(err);
    },
  });

  // Its failure is told to whoever reads it (undici, or the tunnel's pipe). One that never got a
  // reader (undici gives up on a request whose client left while it waited for a connection, and
  // still reads the body once) has no one to tell: unheard, the error ended the gateway process.
  body.on('error', () => undefined);

  const gathered = gatherByTurn(MAX_CHUNK, (chunk) => {
    if (!body.destroyed && !body.push(chunk)) src.pause();
  });
  const onData = (chunk: Buffer) => gathered.add(chunk);
  const onEnd = () => {
    // (a kept-alive connection carries many requests: none may leave a listener on it)
    detach();
    gathered.flush();
    body.push(null);
  };
  const onError = (err: Error) => body.destroy(err);
  // an IncomingMessage whose client left may close without an error it can emit
  const onClose = () => {
    if (!src.readableEnded) body.destroy(Object.assign(new Error('the client closed its request before the body ended'), { code: 'ECONNRESET' }));
  };
  const detach = () => {
    src.removeListener('data', onData);
    src.removeListener('end', onEnd);
    src.removeListener('error', onError);
    src.removeListener('close', onClose);
    socket?.removeListener('close', onClose);
  };
  return body;
}
