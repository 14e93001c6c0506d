import { accessSync, constants, statSync } from 'node:fs';
import { discoverConfig } from '../config/load.js';
import { ConfigUnreadableError } from '../errors.js';
import { GatewayServer } from '../gateway/server.js';
import { DRAIN_GRACE_MS } from '../gateway/listen.js';
import { providerProxySetting } from '../identity/providerFetch.js';
import { reportProcessFaults } from '../observability/processFaults.js';
import { logHeapGrowth, preferThroughputHeap } from './heapGrowth.js';
import { onStopSignals } from './signals.js';
import { asOperational, parseCommandArgs } from './usage.js';

const USAGE = 'drawbridge gateway [--config FILE] [--no-watch]';

export async function gatewayCommand(args: string[]): Promise<number> {
  const { values } = parseCommandArgs({ args, options: { config: { type: 'string', short: 'c' }, 'no-watch': { type: 'boolean', default: false } } }, USAGE);
  const file = values.config ?? (await discoverConfig());
  if (!file) {
    process.stderr.write('drawbridge gateway: no --config given and no gateway.config.yaml found\n');
    return 2;
  }
  assertReadable(file);
  const heap = preferThroughputHeap();
  // --no-watch: reload only on SIGHUP (for orchestrators that signal after a rollout).
  const gateway = new GatewayServer({ configFile: file, watch: !values['no-watch'] });
  await asOperational('cannot start', () => gateway.start());
  logHeapGrowth(gateway.log, heap);
  // (said at start, not at the first sign-in)
  const { setting: proxy, problem } = providerProxySetting();
  if (proxy) gateway.log.info({ proxy: proxy.proxy.display, from: proxy.proxy.from, noProxy: proxy.noProxy }, 'reaching identity providers through an HTTP proxy');
  if (problem) gateway.log.error({ problem }, `${problem}: the identity provider is not asked, through a proxy or directly, until it is fixed (apps with preAuth oidc answer 503)`);
  runUntilSignalled(gateway);
  return -1;
}

/**
 * Defects that escape every handler are logged (reportProcessFaults). SIGHUP reloads. SIGTERM/SIGINT drain: stop taking connections, let in-flight requests finish
 * (up to DRAIN_GRACE_MS), then exit 0; a second one exits at once (onStopSignals).
 */
export function runUntilSignalled(gateway: GatewayServer, extraStop: () => Promise<void> = async () => undefined, onHangup: 'reload' | 'stop' = 'reload'): void {
  reportProcessFaults(gateway.log, () => gateway.metrics.unhandledRejections.inc());
  const stop = onStopSignals(
    gateway.log,
    (signal) => {
      gateway.log.info({ signal, drainMs: DRAIN_GRACE_MS }, 'stopping: finishing in-flight requests');
      // The drain is bounded by DRAIN_GRACE_MS; this bounds whatever comes after it (the connector hub, the audit file).
      const force = setTimeout(() => process.exit(1), FORCE_EXIT_MS);
      force.unref();
      // The gateway first: what it still forwards during the drain may need the rest (the demo's app and connector).
      void gateway
        .stop()
        .finally(extraStop)
        .finally(() => process.exit(0));
    },
    'in-flight requests are cut',
  );
  // (the demo runs in a terminal: its closing is the end of the demo, not a reload that leaves it holding the ports)
  process.on('SIGHUP', () => (onHangup === 'stop' ? stop('SIGHUP') : void gateway.reload('SIGHUP')));
}

/** Still inside Kubernetes' default 30 s terminationGracePeriodSeconds. */
const FORCE_EXIT_MS = DRAIN_GRACE_MS + 5_000;

/** Same exit (2) and wording as lint for a config file that cannot be read at all. */
function assertReadable(file: string): void {
  let why: string | undefined;
  try {
    if (statSync(file).isDirectory()) why = 'it is a directory';
    else accessSync(file, constants.R_OK);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    why = code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : (e as Error).message;
  }
  if (why) throw new ConfigUnreadableError(`cannot read ${file}: ${why}`, file);
}
