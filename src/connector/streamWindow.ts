/**
 * The per-stream flow-control window of a channel session, sized by how many streams it has open.
 *
 * A stream's window is what its peer may send before the receiver reads: what a receiver holds
 * for a reader that stopped (a client that no longer reads a download through a connector, an app
 * that no longer reads an upload). One large window for every stream let 80 such downloads hold
 * 820 MB in the gateway. Node lets a session set the window of all its streams at once (SETTINGS),
 * not of one, so the window shrinks as streams open, keeping their sum near STREAM_WINDOW_BUDGET,
 * and grows back when they close: a lone bulk transfer still gets STREAM_WINDOW, for links with a
 * long round trip. A smaller window applies to open streams too (RFC 9113 6.9.2), but what one of
 * them already received stays where it is, so the held total is bounded by the budget times the
 * halvings from STREAM_WINDOW to MIN_STREAM_WINDOW, plus MIN_STREAM_WINDOW per stream.
 */
import type { Http2Session, Http2Stream } from 'node:http2';
import { STREAM_WINDOW } from './channelLink.js';

export const STREAM_WINDOW_BUDGET = 64 << 20;
export const MIN_STREAM_WINDOW = 64 << 10;

/**
 * The window for `open` streams, given the one in force. It halves as soon as the streams would
 * outgrow the budget, and doubles back only once they fit in a quarter of it, so a count that
 * hovers around a boundary does not send SETTINGS on every request.
 */
export function streamWindowFor(open: number, current: number): number {
  let w = current;
  while (w > MIN_STREAM_WINDOW && w * open > STREAM_WINDOW_BUDGET) w /= 2;
  while (w < STREAM_WINDOW && 4 * w * open <= STREAM_WINDOW_BUDGET) w *= 2;
  return w;
}

export class StreamWindows {
  private count = 0;
  private inForce = STREAM_WINDOW;
  private wanted = STREAM_WINDOW;

  /** `session` was created with `settings.initialWindowSize` STREAM_WINDOW */
  constructor(private readonly session: Http2Session) {
    // one SETTINGS at a time: a change asked for while one is unacknowledged waits for its ACK
    session.on('localSettings', () => this.send());
  }

  /** streams tracked and not closed yet */
  get open(): number {
    return this.count;
  }

  /** counts `stream` as open until it closes */
  track(stream: Http2Stream): void {
    this.count++;
    this.retune();
    stream.once('close', () => {
      this.count--;
      this.retune();
    });
  }

  private retune(): void {
    this.wanted = streamWindowFor(this.count, this.wanted);
    this.send();
  }

  private send(): void {
    const s = this.session;
    if (this.wanted === this.inForce || s.pendingSettingsAck || s.destroyed || s.closed) return;
    s.settings({ initialWindowSize: this.wanted });
    this.inForce = this.wanted;
  }
}
