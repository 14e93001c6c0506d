/**
 * A TLS socket's decrypted bytes handed to a callback in one buffer used again for every record,
 * the way net.Socket's `onread` option does for a plain socket. Node offers that option for a TLS
 * socket only when tls.connect makes the TCP connection itself, so not for the gateway's accepted
 * channel sockets; this sets the same two fields Node's `onread` sets and tells the TLS handle to
 * read into the buffer. Read the default way, every TLS record (16 KiB at most) came as a fresh
 * Buffer through the socket's Readable and its 'data' event: a megabyte through a channel was 64
 * allocations that V8 counts toward its next young-generation GC, and 64 passes through the
 * stream machinery.
 */
import type { TLSSocket } from 'node:tls';

/** one for the process: each record is copied out before the next is read into it */
const shared = Buffer.allocUnsafe(64 << 10);

/**
 * From now on `socket` hands each piece it decrypts to `onBytes` (a view of a buffer overwritten
 * by the next piece: copy what you keep) and emits no 'data'; pause() and resume() still stop
 * and start its reading, and 'end' still comes. Returns false, changing nothing, when the socket
 * is not what Node 20 builds (its fields for `onread` not found, or bytes already waiting in it).
 */
export function readIntoSharedBuffer(socket: TLSSocket, onBytes: (bytes: Buffer) => void): boolean {
  const field = (name: string): symbol | undefined => Object.getOwnPropertySymbols(socket).find((s) => s.description === name);
  const kBuffer = field('kBuffer');
  const kBufferCb = field('kBufferCb');
  const handle = (socket as unknown as { _handle?: { useUserBuffer?: (buf: Uint8Array) => void } })._handle;
  if (!kBuffer || !kBufferCb || typeof handle?.useUserBuffer !== 'function' || socket.readableLength > 0) return false;
  const fields = socket as unknown as Record<symbol, unknown>;
  if (fields[kBuffer] !== null || fields[kBufferCb] !== null) return false;
  fields[kBuffer] = shared;
  // (returning false would stop the socket's reading: pause() is how the caller does that)
  fields[kBufferCb] = (nread: number, buf: Buffer) => void onBytes(buf.subarray(0, nread));
  handle.useUserBuffer(shared);
  return true;
}
