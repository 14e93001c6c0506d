import pino, { type Logger } from 'pino';
import { UsageError } from '../errors.js';
import { isoTime } from './isoTime.js';
import { LOG_BACKLOG_MAX, LogOutput, stdoutWithoutBlocking } from './logOutput.js';

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
  const output = new LogOutput(stdoutWithoutBlocking());
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
    output,
  );
  output.onDropped = (lines) => logger.warn({ droppedLines: lines }, `log lines dropped: the log output was not read while more than ${LOG_BACKLOG_MAX >> 20} MiB waited for it`);
  // Buffered for throughput, but never held back for long: operators tail these.
  const flusher = setInterval(() => output.flush(), 500);
  flusher.unref();
  // The last lines (why the process stopped) are the ones that matter most.
  process.once('exit', () => output.flushSync());
  return logger;
}
