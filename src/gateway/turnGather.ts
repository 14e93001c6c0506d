import type { BufferPool } from '../connector/bufferPool.js';

/**
 * Chunks that arrive within one turn of the event loop, handed on as one: at the turn's end
 * (`setImmediate`; `process.nextTick` is too soon, since Node runs the ticks after each chunk a
 * socket emits) or at once when `maxBytes` have gathered. A stream relayed chunk for chunk pays
 * every layer above it once per chunk; see requestBody.ts (a client's body, as the client framed
 * it) and channelLink.ts (a channel's TLS records) for what that cost.
 */
export interface TurnGather {
  /** takes a chunk; hands on what gathered once the turn ends or maxBytes are reached */
  add(chunk: Buffer): void;
  /** hands on what gathered now (before the end of the stream it came from) */
  flush(): void;
  /** forgets what gathered (the stream it was for is gone) */
  drop(): void;
}

/**
 * With `reuse`, what gathered is copied into one of its buffers rather than a fresh allocation,
 * and the buffer goes back to it when `deliver` says it is done with the chunk (returns true):
 * for a consumer that copies what it is handed before it returns. A fresh 256 KiB per turn was
 * external memory that V8 counts toward its next young-generation GC.
 */
export function gatherByTurn(maxBytes: number, deliver: (chunk: Buffer) => boolean | void, reuse?: BufferPool): TurnGather {
  let gathered: Buffer[] = [];
  let bytes = 0;
  let queued = false;
  const flush = (): void => {
    if (gathered.length === 0) return;
    if (gathered.length > 1 && reuse && bytes <= reuse.size) return deliverPooled(reuse);
    const chunk = gathered.length === 1 ? gathered[0]! : Buffer.concat(gathered, bytes);
    gathered = [];
    bytes = 0;
    deliver(chunk);
  };
  const deliverPooled = (pool: BufferPool): void => {
    const into = pool.take();
    let at = 0;
    for (const piece of gathered) {
      into.set(piece, at);
      at += piece.length;
    }
    gathered = [];
    bytes = 0;
    if (deliver(Buffer.from(into.buffer, into.byteOffset, at)) === true) pool.give(into);
  };
  const flushQueued = (): void => {
    queued = false;
    flush();
  };
  return {
    add(chunk) {
      gathered.push(chunk);
      bytes += chunk.length;
      if (bytes >= maxBytes) flush();
      else if (!queued) {
        queued = true;
        setImmediate(flushQueued);
      }
    },
    flush,
    drop() {
      gathered = [];
      bytes = 0;
    },
  };
}
