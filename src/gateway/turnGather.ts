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

export function gatherByTurn(maxBytes: number, deliver: (chunk: Buffer) => void): TurnGather {
  let gathered: Buffer[] = [];
  let bytes = 0;
  const flush = (): void => {
    if (gathered.length === 0) return;
    const chunk = gathered.length === 1 ? gathered[0]! : Buffer.concat(gathered, bytes);
    gathered = [];
    bytes = 0;
    deliver(chunk);
  };
  const atTurnEnd = turnEnd(flush);
  return {
    add(chunk) {
      gathered.push(chunk);
      bytes += chunk.length;
      if (bytes >= maxBytes) flush();
      else atTurnEnd();
    },
    flush,
    drop() {
      gathered = [];
      bytes = 0;
    },
  };
}

/**
 * gatherByTurn into buffers of `pool`, a piece going on when the turn ends or its buffer has no
 * room for the next chunk: each chunk is copied as it is added, so it may be a view the caller
 * overwrites next (a chunk larger than a buffer goes on by itself, copied afresh), and a piece's
 * buffer goes back to the pool when `deliver` returns true (it was copied before deliver
 * returned). A fresh allocation per piece was external memory that V8 counts toward its next
 * young-generation GC.
 */
export function gatherIntoPool(pool: BufferPool, deliver: (chunk: Buffer) => boolean): TurnGather {
  let into: Uint8Array | undefined;
  let used = 0;
  const flush = (): void => {
    if (!into || used === 0) return;
    const piece = into;
    const chunk = Buffer.from(piece.buffer, piece.byteOffset, used);
    into = undefined;
    used = 0;
    if (deliver(chunk)) pool.give(piece);
  };
  const atTurnEnd = turnEnd(flush);
  return {
    add(chunk) {
      if (chunk.length > pool.size) {
        flush();
        deliver(Buffer.from(chunk));
        return;
      }
      if (used + chunk.length > pool.size) flush();
      into ??= pool.take();
      into.set(chunk, used);
      used += chunk.length;
      if (used === pool.size) flush();
      else atTurnEnd();
    },
    flush,
    drop() {
      if (into) pool.give(into);
      into = undefined;
      used = 0;
    },
  };
}

/** a call that runs `fn` once at the end of the current turn, however often it is made in it */
function turnEnd(fn: () => void): () => void {
  let queued = false;
  const run = (): void => {
    queued = false;
    fn();
  };
  return () => {
    if (queued) return;
    queued = true;
    setImmediate(run);
  };
}
