import pino, { type Logger } from 'pino';
import { UsageError } from '../errors.js';
import { isoTime } from './isoTime.js';

/**
 * JSON logs. Anything that can carry a secret is redacted by path, so a
 * careless `log.info({ headers })` cannot leak a token or cookie.
 */
export const REDACT_PATHS = [
  'headers.authorization',
  'headers.cookie',
  'headers["proxy-authorization"]',
  'headers["set-cookie"]',
  'req.headers.authorization',
  'req.headers.cookie',
  'config.session.secrets',
  'config.identity.clientSecret',
  'clientSecret',
  'secrets',
  'token',
  'accessToken',
  'idToken',
  'refreshToken',
  'password',
];

/**
 * A plugin's logger also redacts credentials one or two levels down: an author's debugging line
 * `log.info({ ctx })` or `{ request: { headers } }` wrote the client's bearer token to the log.
 * Wildcards cost on every line, so only plugins' lines pay for them.
 */
export const PLUGIN_REDACT_PATHS = [
  ...REDACT_PATHS,
  'upstreamHeaders.authorization',
  'upstreamHeaders.cookie',
  '*.headers.authorization',
  '*.headers.cookie',
  '*.headers["proxy-authorization"]',
  '*.upstreamHeaders.authorization',
  '*.upstreamHeaders.cookie',
  '*.*.headers.authorization',
  '*.*.headers.cookie',
  '*.*.headers["proxy-authorization"]',
  '*.*.upstreamHeaders.authorization',
  '*.*.upstreamHeaders.cookie',
];

export interface LoggerOptions {
  level?: string;
  /** write synchronously (CLI tools, tests); the gateway writes asynchronously */
  sync?: boolean;
  destination?: number | string;
  name?: string;
}

/** pino's levels, the names DRAWBRIDGE_LOG_LEVEL takes (in any case); `silent` logs nothing */
export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

/**
 * The level from DRAWBRIDGE_LOG_LEVEL, `info` when unset or empty. pino refuses an unknown level
 * by throwing from its constructor: a typo such as `warning` or `INFO` stopped the gateway and
 * the connector with a stack trace, which this project keeps for its own bugs.
 */
export function logLevelFrom(env: NodeJS.ProcessEnv = process.env): string {
  const raw = env.DRAWBRIDGE_LOG_LEVEL?.trim();
  if (!raw) return 'info';
  const level = raw.toLowerCase();
  if (!(LOG_LEVELS as readonly string[]).includes(level)) throw new UsageError(`DRAWBRIDGE_LOG_LEVEL must be one of ${LOG_LEVELS.join(', ')}, not ${JSON.stringify(raw)}`);
  return level;
}

export function createLogger(opts: LoggerOptions = {}): Logger {
  const level = opts.level ?? logLevelFrom();
  const dest = pino.destination({ dest: opts.destination ?? 1, sync: opts.sync ?? false, minLength: opts.sync ? 0 : 16_384, maxWrite: 65_536 });
  const lines = opts.sync ? dest : new LinesPerTurn(dest);
  const logger = pino(
    {
      level,
      name: opts.name ?? 'drawbridge',
      base: { pid: process.pid },
      redact: { paths: REDACT_PATHS, censor: '[redacted]' },
      // pino's stdTimeFunctions.isoTime, with each millisecond formatted once
      timestamp: () => `,"time":"${isoTime(Date.now())}"`,
      formatters: { level: (label) => ({ level: label }) },
    },
    lines,
  );
  dropWritesOnFailure(dest);
  if (!opts.sync) {
    // Buffered for throughput, but never held back for long: operators tail these.
    const flusher = setInterval(() => lines.flush(), 500);
    flusher.unref();
    // Flush the async buffer on the way out so the last lines are not lost.
    process.once('exit', () => {
      try {
        lines.flushSync();
      } catch {
        /* destination already closed */
      }
    });
  }
  return logger;
}

type Destination = ReturnType<typeof pino.destination>;

/**
 * Hands the lines of one event-loop turn to the destination as one string. sonic-boom measures
 * the UTF-8 length of its whole pending buffer on every write, a buffer that grows to 16 KiB:
 * per request line that was most of the logging's cost (about 3 of its 5.7 us), paid again for
 * each line of a busy turn. The lines stay in order and are written asynchronously as before.
 * Handed over in chunks, the destination can also wait for 16 KiB before it writes (each
 * asynchronous write costs tens of microseconds of the thread pool's CPU): a loop of request
 * lines in turns of 25 cost 5-6 us a line before, 3 now. A quiet process's lines still leave
 * within the half-second flush.
 */
class LinesPerTurn {
  private pending: string[] = [];
  private scheduled = false;
  constructor(private readonly dest: Destination) {}

  write(line: string): boolean {
    this.pending.push(line);
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(this.handOver);
    }
    return true;
  }

  private readonly handOver = (): void => {
    this.scheduled = false;
    if (!this.pending.length) return;
    const chunk = this.pending.length === 1 ? this.pending[0]! : this.pending.join('');
    this.pending = [];
    // (pino ends its destination at beforeExit: a line after that is dropped, not an uncaught throw)
    if (!(this.dest as unknown as { destroyed: boolean }).destroyed) this.dest.write(chunk);
  };

  flush(): void {
    this.handOver();
    this.dest.flush();
  }

  flushSync(): void {
    this.handOver();
    this.dest.flushSync();
  }
}

/**
 * A destination that fails (the terminal the process was started from closed: EIO; a pipe
 * whose reader left: EPIPE) must not take the process with it. Its error had no listener, so it
 * became an uncaught exception, and the exit's flushSync then retried the failing write for ever
 * (sonic-boom sleeps and retries any error there): the gateway held its ports and answered
 * nothing, SIGTERM included. From the first error on, lines are dropped; the process serves on.
 */
function dropWritesOnFailure(dest: Destination): void {
  dest.once('error', () => {
    Object.assign(dest, { write: () => true, flush: () => undefined, flushSync: () => undefined });
    dest.on('error', () => undefined);
  });
}
