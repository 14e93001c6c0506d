/**
 * A line anyone on the network can cause (a TLS handshake that fails on a listener open to the
 * internet, a request while the identity provider is down) must not let them write the log: the
 * first is logged, then at most one line a period, saying how many were left out since the last.
 */
import type { Logger } from 'pino';

export function throttledLog(log: Logger, msg: string, everyMs = 60_000, level: 'warn' | 'error' = 'warn'): (fields: Record<string, unknown>) => void {
  let quietUntil = 0;
  let leftOut = 0;
  return (fields) => {
    const now = Date.now();
    if (now < quietUntil) {
      leftOut++;
      return;
    }
    quietUntil = now + everyMs;
    log[level](leftOut ? { ...fields, leftOutSinceLastLine: leftOut } : fields, msg);
    leftOut = 0;
  };
}
