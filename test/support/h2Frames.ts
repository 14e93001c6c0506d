/**
 * Hand-built HTTP/2 frames (RFC 9113 4.1: a 9-byte header, then the payload), for tests whose
 * peer must misbehave beyond what node:http2 lets it: floods, frames on streams never opened,
 * windows past 2^31-1. Header blocks use HPACK literals only (no dynamic table, no Huffman).
 */
import type { Duplex } from 'node:stream';

export const FRAME = { DATA: 0, HEADERS: 1, PRIORITY: 2, RST_STREAM: 3, SETTINGS: 4, PUSH_PROMISE: 5, PING: 6, GOAWAY: 7, WINDOW_UPDATE: 8, CONTINUATION: 9 } as const;
export const FLAG = { END_STREAM: 1, ACK: 1, END_HEADERS: 4 } as const;
/** what a client sends before its first frame */
export const CLIENT_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');

export function frame(type: number, flags: number, stream: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const h = Buffer.alloc(9);
  h.writeUIntBE(payload.length, 0, 3);
  h[3] = type;
  h[4] = flags;
  h.writeUInt32BE(stream, 5);
  return Buffer.concat([h, payload]);
}

export function settingsFrame(pairs: [number, number][] = []): Buffer {
  const p = Buffer.alloc(6 * pairs.length);
  pairs.forEach(([id, value], i) => {
    p.writeUInt16BE(id, 6 * i);
    p.writeUInt32BE(value, 6 * i + 2);
  });
  return frame(FRAME.SETTINGS, 0, 0, p);
}

export function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
}

/** an HPACK string literal (no Huffman), its length in a 7-bit prefix */
function literal(s: string | Buffer): Buffer {
  const bytes = Buffer.isBuffer(s) ? s : Buffer.from(s);
  return Buffer.concat([integer(bytes.length, 7, 0), bytes]);
}

function integer(n: number, prefixBits: number, high: number): Buffer {
  const max = (1 << prefixBits) - 1;
  if (n < max) return Buffer.from([high | n]);
  const out = [high | max];
  n -= max;
  while (n >= 128) {
    out.push((n & 127) | 128);
    n >>= 7;
  }
  out.push(n);
  return Buffer.from(out);
}

/** HPACK static table indexes of the names used here */
const NAME_INDEX: Record<string, number> = { ':authority': 1, ':method': 2, ':path': 4, ':scheme': 6, ':status': 8 };

/** A header block of literals without indexing (`[name, value]` pairs). */
export function headerBlock(fields: [string, string | Buffer][]): Buffer {
  return Buffer.concat(
    fields.map(([name, value]) => {
      const index = NAME_INDEX[name];
      return index !== undefined ? Buffer.concat([integer(index, 4, 0), literal(value)]) : Buffer.concat([Buffer.from([0]), literal(name), literal(value)]);
    }),
  );
}

/** :status 200, as one byte (static table entry 8) */
export const STATUS_200 = Buffer.from([0x88]);

/** A frame as read off the wire; `code` is the error code of a GOAWAY or RST_STREAM. */
export interface ReceivedFrame {
  type: number;
  flags: number;
  stream: number;
  payload: Buffer;
  code?: number;
}

/** Calls `on` with each whole frame read from `stream` (after `skip` bytes, a client's preface). */
export function readFrames(stream: Duplex, on: (f: ReceivedFrame) => void, skip = 0): void {
  let buf = Buffer.alloc(0);
  stream.on('data', (c: Buffer) => {
    buf = Buffer.concat([buf, c]);
    if (skip > 0) {
      const n = Math.min(skip, buf.length);
      skip -= n;
      buf = buf.subarray(n);
    }
    while (buf.length >= 9) {
      const length = buf.readUIntBE(0, 3);
      if (buf.length < 9 + length) break;
      const f: ReceivedFrame = { type: buf[3]!, flags: buf[4]!, stream: buf.readUInt32BE(5) & 0x7fffffff, payload: buf.subarray(9, 9 + length) };
      // (GOAWAY: last stream id, then the code; RST_STREAM: the code alone)
      if (f.type === FRAME.GOAWAY && length >= 8) f.code = f.payload.readUInt32BE(4);
      if (f.type === FRAME.RST_STREAM && length >= 4) f.code = f.payload.readUInt32BE(0);
      on(f);
      buf = buf.subarray(9 + length);
    }
  });
}

/**
 * Writes `n` frames, `make(i)` (or the same one each time), `batch` at a time while `sock` is
 * open, letting the loop turn between batches (and waiting while more than 4 MiB is queued, so a
 * peer that reads nothing does not grow this process instead); resolves with how many it wrote.
 */
export async function flood(sock: Duplex, n: number, make: Buffer | ((i: number) => Buffer), batch = 500): Promise<number> {
  const one = (i: number) => (Buffer.isBuffer(make) ? make : make(i));
  // (the same frame each time: its batch is built once)
  const same = Buffer.isBuffer(make) ? Buffer.concat(Array.from({ length: batch }, () => make)) : undefined;
  let sent = 0;
  while (sent < n && !sock.destroyed && sock.writable) {
    const count = Math.min(batch, n - sent);
    sock.write(same && count === batch ? same : Buffer.concat(Array.from({ length: count }, (_, j) => one(sent + j))));
    sent += count;
    if (sock.writableLength > 4 << 20) await new Promise((r) => setTimeout(r, 5));
    else await new Promise((r) => setImmediate(r));
  }
  return sent;
}
