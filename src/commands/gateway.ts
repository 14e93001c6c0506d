import { parseArgs } from 'node:util';
import { discoverConfig } from '../config/load.js';
import { GatewayServer } from '../gateway/server.js';

export async function gatewayCommand(args: string[]): Promise<number> {
  const { values } = parseArgs({ args, options: { config: { type: 'string', short: 'c' }, 'no-watch': { type: 'boolean', default: false } } });
  const file = values.config ?? (await discoverConfig());
  if (!file) {
    process.stderr.write('drawbridge gateway: no --config given and no gateway.config.yaml found\n');
    return 2;
  }
  // --no-watch: reload only on SIGHUP (for orchestrators that signal after a rollout).
  const gateway = new GatewayServer({ configFile: file, watch: !values['no-watch'] });
  await gateway.start();
  runUntilSignalled(gateway);
  return -1;
}

/** SIGHUP reloads; SIGTERM/SIGINT stop taking connections and finish in-flight requests. */
export function runUntilSignalled(gateway: GatewayServer, extraStop: () => Promise<void> = async () => undefined): void {
  process.on('SIGHUP', () => void gateway.reload('SIGHUP'));
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    gateway.log.info({ signal }, 'stopping');
    const force = setTimeout(() => process.exit(1), 10_000);
    force.unref();
    void Promise.all([gateway.stop(), extraStop()]).finally(() => process.exit(0));
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}
