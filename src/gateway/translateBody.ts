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
 * Only uncompressed bodies are rewritten: the gateway asks the app for
 * `accept-encoding: identity` (edge.ts), and a body that comes compressed
 * anyway passes untouched rather than being inflated here.
 */
import type { OutgoingHttpHeaders } from 'node:http';
import { Transform, type TransformCallback } from 'node:stream';

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
export function bodyTranslator(t: BodyTranslation, method: string, status: number, headers: OutgoingHttpHeaders): Transform | undefined {
  if (method === 'HEAD' || status === 204 || status === 304 || (status >= 100 && status < 200)) return undefined;
  const type = headers['content-type'];
  if (typeof type !== 'string' || !TRANSLATABLE.test(type)) return undefined;
  const encoding = headers['content-encoding'];
  if (encoding !== undefined && String(encoding).trim().toLowerCase() !== 'identity') return undefined;
  delete headers['content-length'];
  const etag = headers['etag'];
  if (typeof etag === 'string' && !etag.startsWith('W/')) headers['etag'] = `W/${etag}`;
  return new UrlRewrite(t.from, t.to);
}

class UrlRewrite extends Transform {
  private readonly needle: Buffer;
  /** the path prefix, which unlike the scheme and host must match exactly */
  private readonly path: Buffer;
  private readonly pathAt: number;
  private readonly replacement: Buffer;
  private carry: Buffer = Buffer.alloc(0);

  constructor(from: string, to: string) {
    super();
    this.needle = Buffer.from(from.toLowerCase(), 'latin1');
    this.pathAt = new URL(from).origin.length;
    this.path = Buffer.from(from.slice(this.pathAt), 'latin1');
    this.replacement = Buffer.from(to, 'latin1');
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    const data = this.carry.length ? Buffer.concat([this.carry, chunk]) : chunk;
    // the tail that could be the start of a URL split across chunks waits for the next one
    const keep = Math.min(data.length, this.needle.length - 1);
    const { out, rest } = this.rewrite(data, data.length - keep);
    this.carry = rest;
    if (out.length) this.push(out);
    cb();
  }

  override _flush(cb: TransformCallback): void {
    const { out } = this.rewrite(this.carry, this.carry.length);
    if (out.length) this.push(out);
    cb();
  }

  /** Rewrites every match that starts before `limit`; returns what is done and what is left. */
  private rewrite(data: Buffer, limit: number): { out: Buffer; rest: Buffer } {
    const lower = lowerAscii(data);
    const parts: Buffer[] = [];
    let from = 0;
    for (let at = lower.indexOf(this.needle); at !== -1 && at < limit; at = lower.indexOf(this.needle, at + 1)) {
      if (at < from || !data.subarray(at + this.pathAt, at + this.needle.length).equals(this.path)) continue;
      parts.push(data.subarray(from, at), this.replacement);
      from = at + this.needle.length;
    }
    const end = Math.max(from, limit);
    parts.push(data.subarray(from, end));
    return { out: parts.length === 1 ? parts[0]! : Buffer.concat(parts), rest: Buffer.from(data.subarray(end)) };
  }
}

function lowerAscii(b: Buffer): Buffer {
  const out = Buffer.allocUnsafe(b.length);
  for (let i = 0; i < b.length; i++) {
    const c = b[i]!;
    out[i] = c >= 65 && c <= 90 ? c + 32 : c;
  }
  return out;
}
