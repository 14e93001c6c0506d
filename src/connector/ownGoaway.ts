/**
 * Tells when this end's own HTTP/2 session gave up on a channel: the GOAWAY with an error code
 * that nghttp2 sends by itself on a connection error it handles inside (DATA on a stream never
 * opened, its rapid-reset guard, ...). Node emits nothing for those: the session stops reading
 * its byte stream and stays open. On a channel that is a dead end nobody hears of. The gateway kept
 * such a connector's channel in rotation until its pings were missed (a request waited its app's
 * backendTimeout and more, then 502); a connector whose gateway did it stopped reading its socket,
 * and with nothing else holding the event loop, its process exited 0, logging nothing.
 *
 * The frames are read off the writes HTTP/2 makes to its byte stream: nine header bytes per
 * frame, and the first bytes of a GOAWAY's payload (its error code and debug text).
 */
import type { Duplex } from 'node:stream';

/** what a client writes before its first frame (RFC 9113 3.4); a server writes none */
export const CLIENT_PREFACE_BYTES = 24;
const FRAME_HEADER_BYTES = 9;
const GOAWAY = 7;
/** the error code and at most this much of the debug text are read */
const GOAWAY_READ_BYTES = 8 + 200;

export interface OwnGoaway {
  /** HTTP/2's error code (1 PROTOCOL_ERROR, 3 FLOW_CONTROL_ERROR, 11 ENHANCE_YOUR_CALM...) */
  code: number;
  /** nghttp2's debug text, e.g. "DATA: stream in idle" (may be empty) */
  debug: string;
}

/** RFC 9113 7's error codes, by number */
const ERROR_NAMES = ['NO_ERROR', 'PROTOCOL_ERROR', 'INTERNAL_ERROR', 'FLOW_CONTROL_ERROR', 'SETTINGS_TIMEOUT', 'STREAM_CLOSED', 'FRAME_SIZE_ERROR', 'REFUSED_STREAM', 'CANCEL', 'COMPRESSION_ERROR', 'CONNECT_ERROR', 'ENHANCE_YOUR_CALM', 'INADEQUATE_SECURITY', 'HTTP_1_1_REQUIRED'];

/** What a log line says of it: nghttp2's debug text, else the code's name. */
export function goawayReason({ code, debug }: OwnGoaway): string {
  return debug || `${ERROR_NAMES[code] ?? 'HTTP/2 error'} (code ${code})`;
}

/**
 * Calls `fn` once, on the next turn, when `stream` is handed a GOAWAY with an error code. A GOAWAY
 * with NO_ERROR (session.close(): a connector draining) is a goodbye, not a failure: ignored.
 */
export function onOwnGoaway(stream: Duplex, prefaceBytes: number, fn: (g: OwnGoaway) => void): void {
  let skip = prefaceBytes;
  const header = Buffer.alloc(FRAME_HEADER_BYTES);
  let headerUsed = 0;
  /** the part of a GOAWAY's payload being read, and what follows it to pass over */
  let goaway: Buffer | undefined;
  let goawayUsed = 0;
  let goawayRest = 0;
  let done = false;
  const write = stream.write;
  const scan = (b: Buffer): void => {
    let i = 0;
    while (i < b.length && !done) {
      if (skip > 0) {
        const n = Math.min(skip, b.length - i);
        skip -= n;
        i += n;
      } else if (goaway) {
        const n = b.copy(goaway, goawayUsed, i);
        goawayUsed += n;
        i += n;
        if (goawayUsed < goaway.length) continue;
        const code = goaway.length >= 8 ? goaway.readUInt32BE(4) : 0;
        if (code !== 0) {
          done = true;
          const g = { code, debug: goaway.subarray(8).toString('latin1').replace(/[^\x20-\x7e]/g, '?') };
          setImmediate(() => fn(g));
        }
        goaway = undefined;
        skip = goawayRest;
      } else {
        const n = b.copy(header, headerUsed, i, i + FRAME_HEADER_BYTES - headerUsed);
        headerUsed += n;
        i += n;
        if (headerUsed < FRAME_HEADER_BYTES) continue;
        headerUsed = 0;
        const length = header.readUIntBE(0, 3);
        if (header[3] !== GOAWAY || length === 0) {
          skip = length;
          continue;
        }
        goaway = Buffer.alloc(Math.min(length, GOAWAY_READ_BYTES));
        goawayUsed = 0;
        goawayRest = length - goaway.length;
      }
    }
  };
  // Node's HTTP/2 hands its bytes to a JS byte stream through write() (cork, writes, uncork)
  stream.write = function (this: Duplex, chunk: unknown, ...rest: unknown[]): boolean {
    if (!done) scan(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk as Uint8Array));
    return (write as (...a: unknown[]) => boolean).call(this, chunk, ...rest);
  } as Duplex['write'];
}
