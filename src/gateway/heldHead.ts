/**
 * The app's response head, put on the client's response without being written. Node sends a head
 * with the first body byte anyway (flushHeadForDuplex aside), so holding it changes nothing on the
 * wire; what it changes is that a failure before that byte can still have its own answer. An app
 * that sent its head and then went quiet, or closed, got the client an empty reply, not a 504 or
 * 502 page, because the head had been written.
 */
import type { OutgoingHttpHeaders, ServerResponse } from 'node:http';
import type { Transform } from 'node:stream';

const HELD = Symbol('the app head held on this response');
type Holding = ServerResponse & { [HELD]?: { headers: OutgoingHttpHeaders; body?: Transform } };

/** `body`: what the app's body goes through on its way to `res` (the URL translator), let go of if the head is taken back */
export function holdHead(res: ServerResponse, status: number, headers: OutgoingHttpHeaders, body?: Transform): void {
  res.statusCode = status;
  for (const name in headers) {
    const value = headers[name];
    if (value !== undefined && name !== 'content-length') res.setHeader(name, value);
  }
  // Last: Node rewrites a Content-Disposition it writes after a Content-Length as if its value
  // were Latin-1 (nodejs/node#46528), and a raw UTF-8 file name (日本) lost its bytes for good.
  const length = headers['content-length'];
  if (length !== undefined) res.setHeader('content-length', length);
  (res as Holding)[HELD] = { headers, body };
}

/** the app's answer has begun: its head is held on `res`, or went out */
export function answerBegun(res: ServerResponse): boolean {
  return res.headersSent || (res as Holding)[HELD] !== undefined;
}

/**
 * Makes `res` free for an answer of the gateway's own: an app head still held on it is taken back
 * (its fields, its status, the translator writing to it). False once a head went out: then the
 * client's connection can only be cut.
 */
export function withdrawHead(res: ServerResponse): boolean {
  if (res.headersSent) return false;
  const held = (res as Holding)[HELD];
  if (held) {
    (res as Holding)[HELD] = undefined;
    held.body?.unpipe(res).destroy();
    for (const name in held.headers) res.removeHeader(name);
    res.statusCode = 200;
  }
  return true;
}
