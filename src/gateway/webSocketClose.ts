/**
 * Closing a relayed WebSocket from the gateway with a close frame the client can read.
 *
 * The gateway relays a WebSocket as bytes and never parses it, so when it ends one (sign-out,
 * an expired session, rules that stopped allowing it, a stop) it used to drop the TCP
 * connection: a browser saw code 1006 and no reason, could not tell a sign-out from a network
 * fault, and reconnected in a loop. A close frame may only go between two of the app's frames
 * (RFC 6455 5.4 allows it between the fragments of a message, never inside a frame), so the
 * bytes from the app are followed frame by frame, header lengths only, no payload is read.
 * When a close is asked for in the middle of a frame, the rest of that frame is relayed first,
 * for at most MID_FRAME_WAIT_MS; then the frame goes out, or the connection is dropped as before.
 */
import type { Duplex } from 'node:stream';

/** RFC 6455 7.4.1 */
export const CLOSE_POLICY_VIOLATION = 1008;
export const CLOSE_GOING_AWAY = 1001;

const MID_FRAME_WAIT_MS = 1000;
/** how long the client has to answer the close frame before the connection is dropped */
const CLOSE_ANSWER_MS = 1000;

/**
 * Where a stream of server-to-client WebSocket frames stands: inside a frame (its header or
 * payload still coming) or between two frames. Unmasked frames, as a server sends them.
 */
export class FrameBoundary {
  /** payload bytes of the current frame still to come */
  private payloadLeft = 0;
  /** the start of a header split across chunks */
  private partial: Buffer | undefined;
  /** the app has sent its close frame: nothing may follow it */
  closeSent = false;

  get between(): boolean {
    return this.payloadLeft === 0 && this.partial === undefined;
  }

  /**
   * Follows `chunk` and returns how many of its bytes it took: all of them, or with
   * `stopBetween` only those up to the first end of a frame.
   */
  feed(chunk: Buffer, stopBetween = false): number {
    let at = 0;
    while (at < chunk.length) {
      if (this.payloadLeft > 0) {
        const take = Math.min(this.payloadLeft, chunk.length - at);
        this.payloadLeft -= take;
        at += take;
      } else {
        // (a header is at most 14 bytes: only a split one is copied, and only that much)
        const from = this.partial?.length ?? 0;
        const head = this.partial ? Buffer.concat([this.partial, chunk.subarray(at, at + 14)]) : chunk.subarray(at);
        const size = headerSize(head);
        if (size === undefined || head.length < size) {
          this.partial = Buffer.from(head);
          return chunk.length;
        }
        this.partial = undefined;
        at += size - from;
        this.payloadLeft = payloadLength(head);
        if ((head[0]! & 0x0f) === 0x8) this.closeSent = true;
      }
      if (stopBetween && this.between) return at;
    }
    return at;
  }
}

/** the header's length in bytes, once its first two bytes are known */
function headerSize(b: Buffer): number | undefined {
  if (b.length < 2) return undefined;
  const len7 = b[1]! & 0x7f;
  const mask = b[1]! & 0x80 ? 4 : 0;
  return 2 + (len7 === 126 ? 2 : len7 === 127 ? 8 : 0) + mask;
}

function payloadLength(b: Buffer): number {
  const len7 = b[1]! & 0x7f;
  if (len7 === 126) return b.readUInt16BE(2);
  // (beyond 2^53 it cannot be relayed anyway; the connection ends before then)
  if (len7 === 127) return Number(b.readBigUInt64BE(2));
  return len7;
}

/** A close frame from the server: unmasked, the code, a reason cut to the 123 bytes allowed. */
export function closeFrame(code: number, reason: string): Buffer {
  let text = Buffer.from(reason, 'utf8');
  if (text.length > 123) text = Buffer.from(text.subarray(0, 123).toString('utf8').replace(/\uFFFD+$/, ''), 'utf8');
  const frame = Buffer.alloc(4 + text.length);
  frame[0] = 0x88; // FIN + close
  frame[1] = 2 + text.length;
  frame.writeUInt16BE(code, 2);
  text.copy(frame, 4);
  return frame;
}

interface Relay {
  app: Duplex;
  frames: FrameBoundary;
  /** the listeners relayWebSocket added to the app's side */
  follow: (chunk: Buffer) => void;
  appClosed: () => void;
}

const relays = new WeakMap<Duplex, Relay>();
/** sockets whose close is under way: a second close (another reload, a re-check, a stop) leaves it to finish */
const closing = new WeakSet<Duplex>();

/**
 * Relays a switched WebSocket both ways, following the app's frames (from `appHead`, what
 * came after its 101) so that closeWebSocket can end it with a close frame. Both sides end
 * together.
 */
export function relayWebSocket(client: Duplex, app: Duplex, appHead: Buffer): void {
  const frames = new FrameBoundary();
  // the app's first bytes may have come with its 101
  if (appHead.length) {
    frames.feed(appHead);
    client.write(appHead);
  }
  const follow = (chunk: Buffer) => void frames.feed(chunk);
  // The app's side ended (its close, a reset, its connector gone) before it sent a close
  // frame: the page gets 1001 and a reason to reconnect on, not 1006 and nothing. After
  // the app's own close frame, or inside a frame, the client's side just ends as the app's did.
  let ended = false;
  const appClosed = () => {
    if (ended) return;
    ended = true;
    if (client.destroyed || !client.writable) return void client.destroy();
    if (frames.closeSent) return void client.end();
    if (!frames.between) return void client.destroy();
    endWithClose(client, CLOSE_GOING_AWAY, "the app's connection ended");
  };
  relays.set(client, { app, frames, follow, appClosed });
  app.on('data', follow);
  client.on('error', () => app.destroy());
  app.on('error', appClosed);
  app.on('end', appClosed);
  app.on('close', appClosed);
  client.on('close', () => app.destroy());
  // A client's FIN ends the WebSocket, close frame or not: nothing more can come from it. The
  // pipe passes the FIN on, and an app that does not close on it (not every server does)
  // would hold both connections, the client's half-closed, for as long as it runs.
  client.once('end', () => setTimeout(() => void (client.destroy(), app.destroy()), CLOSE_ANSWER_MS).unref());
  // (the client's end is appClosed's: a close frame may have to go before it)
  app.pipe(client, { end: false });
  client.pipe(app);
}

/** The app's side of a WebSocket relayWebSocket relays and nothing has begun to close. */
export function relayedApp(client: Duplex): Duplex | undefined {
  return relays.get(client)?.app;
}

/** Sends the close frame as the last bytes to the client; one that does not answer it is dropped. */
function endWithClose(client: Duplex, code: number, reason: string): void {
  client.end(closeFrame(code, reason));
  // the client answers with a close frame of its own and closes; one that does not is dropped
  setTimeout(() => client.destroy(), CLOSE_ANSWER_MS).unref();
  client.resume(); // its answer is read and discarded, so its end is seen
}

/**
 * Ends a relayed WebSocket with a close frame (`code`, `reason`) between two of the app's
 * frames; the app's side is dropped. A socket that is not a relayed WebSocket (its app still
 * deciding, or refused) is destroyed.
 */
export function closeWebSocket(client: Duplex, code: number, reason: string): void {
  if (closing.has(client)) return;
  const relay = relays.get(client);
  if (!relay || client.destroyed || !client.writable) return void client.destroy();
  relays.delete(client);
  closing.add(client);
  const { app, frames, follow, appClosed } = relay;
  app.unpipe(client);
  client.unpipe(app);
  app.removeListener('data', follow);
  // from here the app's side ending is no reason to drop the client before its close frame
  app.removeListener('close', appClosed);
  app.removeListener('end', appClosed);
  app.removeListener('error', appClosed);
  app.on('error', () => undefined);
  let giveUp: NodeJS.Timeout | undefined;
  const sendClose = () => {
    clearTimeout(giveUp);
    app.removeListener('data', finishFrame);
    app.destroy();
    endWithClose(client, code, reason);
  };
  // Asked for inside a frame: the rest of that frame goes out first, and nothing after it.
  const finishFrame = (chunk: Buffer) => {
    const took = frames.feed(chunk, true);
    if (!frames.between) {
      if (!client.write(chunk)) {
        app.pause();
        client.once('drain', () => app.resume());
      }
      return;
    }
    client.write(chunk.subarray(0, took));
    sendClose();
  };
  if (frames.between) return sendClose();
  giveUp = setTimeout(() => client.destroy(), MID_FRAME_WAIT_MS).unref();
  app.once('close', () => {
    if (!frames.between) client.destroy();
  });
  app.on('data', finishFrame);
  app.resume();
}
