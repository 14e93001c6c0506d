import type { Logger } from 'pino';

/**
 * What happens to a long-running process (gateway, connector) when a defect
 * escapes every handler, in Drawbridge or in a plugin's code.
 *
 * A rejected promise nobody handled is one operation that failed unnoticed:
 * Node 20 would end the process for it, cutting every user's requests. It is
 * logged at error level with its stack, counted, and the process keeps serving.
 *
 * A thrown exception nobody caught may have stopped halfway through changing
 * shared state: the process exits (1), as Node would, but first says why in
 * the log the operator reads, not only as a stack on stderr.
 */
export function reportProcessFaults(log: Logger, onRejection: () => void = () => undefined): void {
  process.on('unhandledRejection', (reason) => {
    onRejection();
    log.error({ err: reason }, 'a promise failed and nothing handled it (a defect, in Drawbridge or a plugin); still serving');
  });
  process.on('uncaughtException', (err, origin) => {
    log.fatal({ err, origin }, 'an exception nobody caught (a defect, in Drawbridge or a plugin): exiting, since what it interrupted cannot be trusted');
    // (pino writes what is buffered when the process exits)
    process.exit(1);
  });
}
