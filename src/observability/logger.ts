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
  const dest = pino.destination({ dest: opts.destination ?? 1, sync: opts.sync ?? false, minLength: opts.sync ? 0 : 4096 });
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
    dest,
  );
  dropWritesOnFailure(dest);
  if (!opts.sync) {
    // Buffered for throughput, but never held back for long: operators tail these.
    const flusher = setInterval(() => dest.flush(), 500);
    flusher.unref();
    // Flush the async buffer on the way out so the last lines are not lost.
    process.once('exit', () => {
      try {
        dest.flushSync();
      } catch {
        /* destination already closed */
      }
    });
  }
  return logger;
}

/**
 * A destination that fails (the terminal the process was started from closed: EIO; a pipe
 * whose reader left: EPIPE) must not take the process with it. Its error had no listener, so it
 * became an uncaught exception, and the exit's flushSync then retried the failing write for ever
 * (sonic-boom sleeps and retries any error there): the gateway held its ports and answered
 * nothing, SIGTERM included. From the first error on, lines are dropped; the process serves on.
 */
function dropWritesOnFailure(dest: ReturnType<typeof pino.destination>): void {
  dest.once('error', () => {
    Object.assign(dest, { write: () => true, flush: () => undefined, flushSync: () => undefined });
    dest.on('error', () => undefined);
  });
}
