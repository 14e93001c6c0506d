/**
 * translateUrls.body: the app's internal URL, written into its HTML, CSS and
 * JavaScript, becomes the external one, so links and scripts keep working
 * for remote users (Entra's "translate URLs in application body").
 *
 * Streaming: nothing is buffered beyond one URL's length across chunk
 * boundaries. Bytes, not characters: a URL is ASCII, so no UTF-8 sequence is
 * split or changed. The scheme and host match without regard to case, as
 * browsers read them.
 *
 * A HEAD answer gets the head the GET would get (no Content-Length, weak
 * ETag, the same encoding), and no body.
 *
 * A partial response (206, or anything with Content-Range) passes untouched:
 * its range counts the app's bytes. A rewritten body says `Accept-Ranges:
 * none`, since the app can only serve ranges of its own bytes. Range requests
 * still reach the app: dropping them would cost every video and download on
 * the app its seeking and resuming, for pages that are rarely asked in parts.
 *
 * Only uncompressed bodies are rewritten: the gateway asks the app for
 * `accept-encoding: identity` (edge.ts), and a body that comes compressed
 * anyway passes untouched rather than being inflated here. The rewritten
 * body is gzipped again for a client that accepts gzip, flushed whenever the
 * app's body goes idle, so a page the app streams still arrives as it is written.
 */
import type { OutgoingHttpHeaders } from 'node:http';
import { Transform, type TransformCallback } from 'node:stream';
import zlib from 'node:zlib';

const TRANSLATABLE = /^\s*(text\/html|application\/xhtml\+xml|text\/css|text\/javascript|application\/(x-)?javascript|application\/ecmascript)\s*(;|$)/i;

export interface BodyTranslation {
  /** origin + path prefix of the internal URL, e.g. http://10.0.0.5:8080/app/ */
  readonly from: string;
  /** the same for the URL the client used, e.g. https://hr.example.test/ */
  readonly to: string;
}

/**
 * The rewriting stream for this response, or undefined when its body is not
 * one to touch. Adjusts the response headers it is given: the length changes
 * and the representation is no longer byte-identical (weak ETag).
 */
export function bodyTranslator(t: BodyTranslation, method: string, status: number, headers: OutgoingHttpHeaders, acceptEncoding?: string | string[], ifNoneMatch?: string): Transform | undefined {
  if (status === 304) return void revalidated(headers, ifNoneMatch);
  if (status === 204 || (status >= 100 && status < 200)) return undefined;
  // A part of the app's body (206, or a 416 naming its length) is counted in the app's bytes: rewritten,
  // it would no longer fit its Content-Range, and a client putting parts together would corrupt the file.
  if (status === 206 || headers['content-range'] !== undefined) return undefined;
  const type = headers['content-type'];
  if (typeof type !== 'string' || !TRANSLATABLE.test(type)) return undefined;
  const encoding = headers['content-encoding'];
  if (encoding !== undefined && String(encoding).trim().toLowerCase() !== 'identity') return undefined;
  delete headers['content-length'];
  markRewritten(headers);
  const gzip = acceptsGzip(acceptEncoding);
  if (gzip) headers['content-encoding'] = 'gzip';
  // A HEAD answer has no body to rewrite, but the head a GET would get (RFC 9110 9.3.2): the app's
  // Content-Length is of a page the client would never receive.
  if (method === 'HEAD') return undefined;
  const rewriter = new UrlRewriter(t.from, t.to);
  return gzip ? new RewriteGzip(rewriter) : new Rewrite(rewriter);
}

/** the head of a rewritten body, but for its length and encoding */
function markRewritten(headers: OutgoingHttpHeaders): void {
  const etag = headers['etag'];
  if (typeof etag === 'string' && !etag.startsWith('W/')) headers['etag'] = `W/${etag}`;
  const vary = headers['vary'];
  headers['vary'] = vary === undefined || vary === '' ? 'accept-encoding' : `${String(vary)}, accept-encoding`;
  // The app's ranges are of its own bytes, not of these: a client must not resume or split this body by range.
  headers['accept-ranges'] = 'none';
}

/**
 * A 304 carries the ETag and Vary the 200 would have carried (RFC 9110 15.4.5), and a cache
 * updates the stored page's head from it (RFC 9111 4.3.4): with the app's strong tag, a
 * rewritten page would be labelled with a validator of the app's bytes. A 304 has no
 * Content-Type to tell whether that 200 was rewritten; a client revalidating with the app's
 * strong tag made weak, which only a rewritten page is given, says it was.
 */
function revalidated(headers: OutgoingHttpHeaders, ifNoneMatch: string | undefined): void {
  const etag = headers['etag'];
  if (typeof etag !== 'string' || etag.startsWith('W/') || !ifNoneMatch?.includes(`W/${etag}`)) return;
  markRewritten(headers);
}

/** true when the client lists gzip (or *) with a q above 0 */
export function acceptsGzip(header: string | string[] | undefined): boolean {
  for (const part of String(header ?? '').split(',')) {
    const [name, ...params] = part.split(';').map((x) => x.trim().toLowerCase());
    if (name !== 'gzip' && name !== 'x-gzip' && name !== '*') continue;
    const q = params.find((p) => p.startsWith('q='));
    if (q === undefined || Number(q.slice(2)) > 0) return true;
  }
  return false;
}

class Rewrite extends Transform {
  constructor(private readonly r: UrlRewriter) {
    super();
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    const out = this.r.feed(chunk);
    if (out.length) this.push(out);
    cb();
  }

  override _flush(cb: TransformCallback): void {
    const out = this.r.finish();
    if (out.length) this.push(out);
    cb();
  }
}

/** rewritten bytes gathered before they are handed to zlib anyway, without waiting for the input to go idle */
const GZIP_BATCH = 64 << 10;

/**
 * Gzips the rewritten body. Each write to zlib, and each flush, is a trip to the thread
 * pool; the app's body comes in pieces as small as its writes (undici hands over every
 * chunk of a chunked body), and a flush per piece made a page written in 1 KiB pieces
 * 30 times slower than the same page uncompressed. So pieces are gathered, and written
 * and flushed once the input goes idle (after the event loop's turn that brought them):
 * a page the app streams still arrives as it is written, and one it sends at full speed
 * costs one flush per socket read.
 */
class RewriteGzip extends Transform {
  private readonly z = zlib.createGzip();
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private idle?: NodeJS.Immediate;

  constructor(private readonly r: UrlRewriter) {
    super();
    this.z.on('data', (c: Buffer) => this.push(c));
    this.z.on('error', (e) => this.destroy(e));
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    const out = this.r.feed(chunk);
    if (out.length) {
      this.pending.push(out);
      this.pendingBytes += out.length;
    }
    this.idle ??= setImmediate(this.flushIdle);
    // a full batch waits for zlib to take it: that is where a slow client holds the app back
    if (this.pendingBytes >= GZIP_BATCH) this.z.write(this.takePending(), () => cb());
    else cb();
  }

  private readonly flushIdle = (): void => {
    this.idle = undefined;
    if (this.destroyed) return;
    if (this.pendingBytes) this.z.write(this.takePending());
    this.z.flush(zlib.constants.Z_SYNC_FLUSH);
  };

  private takePending(): Buffer {
    const all = this.pending.length === 1 ? this.pending[0]! : Buffer.concat(this.pending);
    this.pending = [];
    this.pendingBytes = 0;
    return all;
  }

  override _flush(cb: TransformCallback): void {
    if (this.idle) clearImmediate(this.idle);
    this.idle = undefined;
    this.pending.push(this.r.finish());
    this.z.once('end', () => cb());
    this.z.end(this.takePending());
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    if (this.idle) clearImmediate(this.idle);
    this.z.destroy();
    cb(err);
  }
}

/** The rewriting itself, chunk by chunk: what is safe to send now, and the tail that waits. */
class UrlRewriter {
  private readonly needle: Buffer;
  /** the path prefix, which unlike the scheme and host must match exactly */
  private readonly path: Buffer;
  private readonly pathAt: number;
  private readonly replacement: Buffer;
  private carry: Buffer = Buffer.alloc(0);

  constructor(from: string, to: string) {
    this.needle = Buffer.from(from.toLowerCase(), 'latin1');
    this.pathAt = new URL(from).origin.length;
    this.path = Buffer.from(from.slice(this.pathAt), 'latin1');
    this.replacement = Buffer.from(to, 'latin1');
  }

  feed(chunk: Buffer): Buffer {
    const data = this.carry.length ? Buffer.concat([this.carry, chunk]) : chunk;
    const { out, rest } = this.rewrite(data, data.length - this.partialAtEnd(data));
    this.carry = rest;
    return out;
  }

  /**
   * How many bytes at the end of `data` could be the start of the internal URL, cut by the
   * chunk's end: only those wait for the next chunk. Holding back a needle's length of every
   * chunk delayed each write of a streamed page (a progress page, a build log) until the next.
   */
  private partialAtEnd(data: Buffer): number {
    for (let k = Math.min(data.length, this.needle.length - 1); k > 0; k--) {
      let i = 0;
      const at = data.length - k;
      while (i < k && lowerByte(data[at + i]!) === this.needle[i]) i++;
      if (i === k) return k;
    }
    return 0;
  }

  finish(): Buffer {
    const { out } = this.rewrite(this.carry, this.carry.length);
    this.carry = Buffer.alloc(0);
    return out;
  }

  /** Rewrites every match that starts before `limit`; returns what is done and what is left. */
  private rewrite(data: Buffer, limit: number): { out: Buffer; rest: Buffer } {
    const lower = lowerAscii(data);
    const parts: Buffer[] = [];
    let from = 0;
    let at = lower.indexOf(this.needle);
    while (at !== -1 && at < limit) {
      if (data.subarray(at + this.pathAt, at + this.needle.length).equals(this.path)) {
        parts.push(data.subarray(from, at), this.replacement);
        from = at + this.needle.length;
        at = lower.indexOf(this.needle, from);
      } else at = lower.indexOf(this.needle, at + 1);
    }
    const end = Math.max(from, limit);
    parts.push(data.subarray(from, end));
    return { out: parts.length === 1 ? parts[0]! : Buffer.concat(parts), rest: Buffer.from(data.subarray(end)) };
  }
}

function lowerByte(c: number): number {
  return c >= 65 && c <= 90 ? c + 32 : c;
}

function lowerAscii(b: Buffer): Buffer {
  const out = Buffer.allocUnsafe(b.length);
  for (let i = 0; i < b.length; i++) out[i] = lowerByte(b[i]!);
  return out;
}
