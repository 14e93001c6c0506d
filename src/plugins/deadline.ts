/**
 * How long a plugin's own code may keep the gateway waiting: importing its module, its
 * create() and its stage's dispose(). A promise that never settles (a top-level await on an
 * event, a service that never answers) otherwise stalls lint, the start or a reload for good,
 * and lint and the gateway used to exit 0 without a word when nothing else kept Node alive.
 */
import { parseDuration } from '../config/duration.js';
import { DrawbridgeError, UsageError } from '../errors.js';

export const PLUGIN_DEADLINE_DEFAULT_MS = 30_000;

/** The knob: a duration ("30s", "500ms"); "0" waits for ever. Meant for tests and for a plugin known to be slow. */
export const PLUGIN_DEADLINE_ENV = 'DRAWBRIDGE_PLUGIN_TIMEOUT';

/**
 * The deadline in ms from the environment; 0 means none. A value that is not a duration is refused:
 * taken as the default, a `5 min` or `30sec` meant to give a slow plugin longer left it 30 s
 * without a word, and the operator read the plugin's timeout as the plugin's fault.
 */
export function pluginDeadlineMs(env: NodeJS.ProcessEnv = process.env): number {
  const v = env[PLUGIN_DEADLINE_ENV]?.trim();
  if (v === undefined || v === '') return PLUGIN_DEADLINE_DEFAULT_MS;
  if (v === '0') return 0;
  const ms = parseDuration(v);
  if (ms === undefined) throw new UsageError(`${PLUGIN_DEADLINE_ENV} must be a duration (30s, 2m, 500ms) or 0 for no limit, not ${JSON.stringify(v)}`);
  return ms;
}

export class PluginTimeoutError extends DrawbridgeError {
  constructor(what: string, ms: number) {
    super('ERR_PLUGIN_TIMEOUT', `${what} did not finish within ${formatMs(ms)}, the limit for a plugin (${PLUGIN_DEADLINE_ENV})`, { timeoutMs: ms });
  }
}

/**
 * `work`, or a PluginTimeoutError once `ms` pass (never when ms is 0). The work itself cannot be
 * cancelled: what it yields after the deadline goes to `late`, so a stage built too late can still
 * be disposed. The timer is not unref'd on purpose: it is what keeps a process with nothing else
 * to do alive long enough to say which plugin hung.
 */
export function withDeadline<T>(work: Promise<T>, ms: number, what: string, late?: (value: T) => void): Promise<T> {
  if (!(ms > 0)) return work;
  return new Promise<T>((resolve, reject) => {
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      reject(new PluginTimeoutError(what, ms));
    }, ms);
    work.then(
      (v) => {
        clearTimeout(timer);
        if (timedOut) late?.(v);
        else resolve(v);
      },
      (e) => {
        clearTimeout(timer);
        if (!timedOut) reject(e);
      },
    );
  });
}

export function formatMs(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000} s` : `${ms} ms`;
}
