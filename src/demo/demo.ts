/**
 * `npm start`: the whole product on localhost, in one process tree. Each part
 * is the real thing (the same gateway the `gateway` command runs).
 */
import { dirname, resolve } from 'node:path';
import { GatewayServer } from '../gateway/server.js';
import { runUntilSignalled } from '../commands/gateway.js';
import { listen } from '../gateway/listen.js';
import { createSampleApp } from './sampleApp.js';
import { startDemoIdp } from '../identity/provider/demoIdp.js';
import { startDemoConnector, stopDemoConnector } from '../connector/demoConnector.js';
import { parseCommandArgs } from '../commands/usage.js';

const USAGE = `drawbridge demo [--config FILE]
the sample app, the identity provider and the gateway on localhost (--config: gateway.config.yaml);
DEMO_APP_PORT (3001) and DEMO_IDP_PORT (9000) move the sample app and the identity provider
`;

export async function demoCommand(args: string[]): Promise<number> {
  const { values } = parseCommandArgs({ args, options: { config: { type: 'string', default: 'gateway.config.yaml' } } }, USAGE);
  const configFile = resolve(values.config!);
  const appPort = Number(process.env.DEMO_APP_PORT ?? 3001);
  const app = createSampleApp();
  await listen(app, { host: '127.0.0.1', port: appPort });
  const closeApp = () => new Promise<void>((r) => app.close(() => r()));
  let demoIdp: Awaited<ReturnType<typeof startDemoIdp>> | undefined;
  const gateway = new GatewayServer({ configFile });
  try {
    // The embedded provider first: it writes the secrets the config reads with ${file:...}.
    demoIdp = await startDemoIdp(resolve(dirname(configFile), '.demo-state'), { port: Number(process.env.DEMO_IDP_PORT ?? 9000) });
    await gateway.start();
  } catch (e) {
    // A part that cannot start (a busy port) ends the demo: the parts already listening must not
    // keep the process, and the terminal, after the one-line error.
    await Promise.all([closeApp(), demoIdp?.idp.close()]);
    throw e;
  }
  // Apps behind a connector group are reached through a real connector process.
  const connector = startDemoConnector(gateway, resolve(configFile, '..', '.demo-state/connector'));
  const gen = gateway.generation!;
  const lines = ['', 'Drawbridge demo is running.', ''];
  for (const a of gen.apps.values()) lines.push(`  ${a.name.padEnd(10)} ${a.externalUrl.padEnd(34)} -> ${a.internalUrl.href} (${a.preAuth})`);
  const admin = gateway.addresses().admin;
  lines.push('', ...demoIdp.banner);
  lines.push('', `  admin      http://${admin}/metrics`, `  config     ${configFile} (edit it: the gateway reloads on save)`, '', 'Open the first URL in a browser. Ctrl-C stops everything.', '');
  process.stderr.write(lines.join('\n') + '\n');
  runUntilSignalled(gateway, () => Promise.all([stopDemoConnector(connector), closeApp(), demoIdp!.idp.close()]).then(() => undefined));
  return -1;
}
