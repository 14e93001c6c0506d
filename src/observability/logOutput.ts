import { writeSync } from 'node:fs';

/**
 * Where the gateway's and the connector's log lines go: a file descriptor (stdout), written from
 * the main thread only.
 *
 * It was sonic-boom's asynchronous mode, whose writes run on the thread pool. A process that
 * exits (SIGTERM's `process.exit(0)`, the fatal line of an uncaught exception) flushes what is
 * pending synchronously, but cannot know what the write in flight has done by then: its lines
 * arrived after the later ones (seen in CI), and a part it had not written yet was lost. Here no
 * write is ever in flight outside this thread, so at the exit everything not yet written is
 * known, in order, and written.
 *
 * Lines are collected per event-loop turn and written once 16 KiB have gathered (or by the
 * half-second flush): one syscall for some seventy request lines, half the writes sonic-boom
 * made. Measured in a loop of request lines (1M, turns of 25): to a file or /dev/null 2.2-2.5
 * against 2.5-2.7 us of CPU a line; to a pipe that `cat` reads, 3.9-4.4 against 2.7-3.4 (waking
 * the reader is now this thread's work).
 *
 * A reader that stops reading (a full pipe) must not stop the gateway: the pipe is put in
 * non-blocking mode, a write that would block leaves the rest in memory, and it is tried again
 * every few milliseconds until the reader is back. A destination that fails for good (EPIPE: the
 * reader left; EIO: the terminal closed) drops every line from then on, and the process serves on.
 *
 * What waits for a stalled reader is bounded (`maxBacklog`, 64 MiB): a reader gone for minutes
 * under load must not take the process's memory. Lines past the bound are dropped, counted, and
 * their number is said (`onDropped`) once the backlog has been written.
 */
export class LogOutput {
  /** lines of the current turn, handed over at its end */
  private turn: string[] = [];
  private turnScheduled = false;
  /** handed over, not yet encoded; their length in UTF-16 units, close enough for the threshold */
  private queued: string[] = [];
  private queuedLength = 0;
  /** encoded and partly written: what a blocked or short write left */
  private unwritten: Buffer | undefined;
  private retry: NodeJS.Timeout | undefined;
  private failed = false;
  /** lines dropped since the last report, for a backlog past maxBacklog */
  private dropped = 0;
  /** told how many lines were dropped, once what waited before them is written */
  onDropped: (lines: number) => void = () => undefined;

  constructor(
    private readonly fd: number,
    private readonly minLength = 16_384,
    private readonly maxBacklog = LOG_BACKLOG_MAX,
  ) {}

  /** pino's destination contract: takes one serialized line, never refuses */
  write(line: string): boolean {
    if (this.failed) return true;
    this.turn.push(line);
    if (!this.turnScheduled) {
      this.turnScheduled = true;
      setImmediate(this.endOfTurn);
    }
    return true;
  }

  private readonly endOfTurn = (): void => {
    this.turnScheduled = false;
    this.handOver();
    if (this.queuedLength >= this.minLength && !this.retry) this.writeOut(false);
  };

  private handOver(): void {
    if (!this.turn.length) return;
    const chunk = this.turn.length === 1 ? this.turn[0]! : this.turn.join('');
    const lines = this.turn.length;
    this.turn = [];
    if (this.failed) return;
    if (this.queuedLength + (this.unwritten?.length ?? 0) + chunk.length > this.maxBacklog) {
      this.dropped += lines;
      return;
    }
    this.queued.push(chunk);
    this.queuedLength += chunk.length;
  }

  /** everything pending, now; the callback is pino's `logger.flush(cb)` */
  flush(cb?: (err?: Error) => void): void {
    this.handOver();
    if (!this.retry) this.writeOut(false);
    cb?.();
  }

  /**
   * At the exit: write everything, waiting for a stalled reader, but not for ever (a reader that
   * stopped for good must not keep the process and its ports: sonic-boom retried for ever there,
   * and a gateway whose terminal had closed ignored SIGTERM).
   */
  flushSync(waitMs = EXIT_WAIT_MS): void {
    clearTimeout(this.retry);
    this.retry = undefined;
    const deadline = Date.now() + waitMs;
    // (twice: writing the backlog out may log how many lines it dropped, a line of its own)
    for (let round = 0; round < 2; round++) {
      this.handOver();
      while (!this.writeOut(true) && Date.now() < deadline) Atomics.wait(SLEEPER, 0, 0, 2);
    }
  }

  /** @returns true when nothing is left to write */
  private writeOut(atExit: boolean): boolean {
    for (;;) {
      if (this.failed) return true;
      if (!this.unwritten) {
        if (!this.queued.length) return this.reportDropped();
        this.unwritten = Buffer.from(this.queued.length === 1 ? this.queued[0]! : this.queued.join(''), 'utf8');
        this.queued = [];
        this.queuedLength = 0;
      }
      let n: number;
      try {
        n = writeSync(this.fd, this.unwritten);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'EAGAIN') {
          if (!atExit) this.retry = setTimeout(this.retryNow, RETRY_MS).unref();
          return false;
        }
        this.fail();
        return true;
      }
      this.unwritten = n >= this.unwritten.length ? undefined : this.unwritten.subarray(n);
    }
  }

  /** @returns true: nothing is left to write (a report is a line for the next turn) */
  private reportDropped(): boolean {
    if (this.dropped) {
      const lines = this.dropped;
      this.dropped = 0;
      this.onDropped(lines);
    }
    return true;
  }

  private readonly retryNow = (): void => {
    this.retry = undefined;
    this.flush();
  };

  private fail(): void {
    this.failed = true;
    this.turn = [];
    this.queued = [];
    this.queuedLength = 0;
    this.unwritten = undefined;
  }
}

/**
 * Node opens stdout as a libuv pipe when it is a pipe or socket, which puts the descriptor in
 * non-blocking mode (process.stdout itself still blocks, in libuv, by polling): a write to a full
 * pipe then answers EAGAIN instead of stopping the event loop. A file or a terminal is left as
 * it is; their writes do not wait on a reader.
 */
export function stdoutWithoutBlocking(): number {
  void process.stdout;
  return 1;
}

/** what may wait for a stalled reader, in bytes */
export const LOG_BACKLOG_MAX = 64 << 20;
const RETRY_MS = 5;
/** inside Kubernetes' 30 s grace with the drain (20 s) and the forced exit after it (5 s) */
const EXIT_WAIT_MS = 2_000;
const SLEEPER = new Int32Array(new SharedArrayBuffer(4));
