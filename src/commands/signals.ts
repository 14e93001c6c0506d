import type { Logger } from 'pino';

/** Longer than npm's forwarding delay (a few ms), shorter than a person pressing Ctrl-C again. */
const SAME_SIGNAL_MS = 500;

/**
 * SIGTERM/SIGINT: the first one calls `drain`; a second one exits at once (1), said at warn with
 * what it cuts: someone who presses Ctrl-C twice, or an orchestrator that gave up, wants the
 * process gone now. A stop signal within SAME_SIGNAL_MS of the first is not a second one: under
 * `npm start` a Ctrl-C reaches the process twice, from the terminal (to the whole process group)
 * and a few ms later from its parent: npm forwards the SIGINT it got, and the demo, stopping,
 * sends its connector SIGTERM (which cut the connector's drain, exit 1, with a warning, on every
 * Ctrl-C that found it still draining). Returns the handler, for other signals that stop the
 * process too.
 */
export function onStopSignals(log: Logger, drain: (signal: string) => void, cut: string): (signal: string) => void {
  let stopping: { signal: string; at: number } | undefined;
  const stop = (signal: string) => {
    if (stopping) {
      if (Date.now() - stopping.at < SAME_SIGNAL_MS) {
        log.debug({ signal }, 'stopping: a stop signal again at once (forwarded or sent by a parent such as npm or the demo), still draining');
        return;
      }
      log.warn({ signal }, `stopping now: second signal, ${cut}`);
      log.flush?.();
      process.exit(1);
    }
    stopping = { signal, at: Date.now() };
    drain(signal);
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  return stop;
}
