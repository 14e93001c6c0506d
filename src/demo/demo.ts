/**
 * `npm start`: the whole product on localhost, in one process tree. Each part
 * is the real thing (the same gateway the `gateway` command runs).
 */
import { dirname, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { GatewayServer } from '../gateway/server.js';
import { runUntilSignalled } from '../commands/gateway.js';
import { listen } from '../gateway/listen.js';
import { createSampleApp } from './sampleApp.js';
import { startDemoIdp } from '../identity/provider/demoIdp.js';
import { startDemoConnector, stopDemoConnector } from '../connector/demoConnector.js';

export async function demoCommand(args: string[]): Promise<number> {
  const { values } = parseArgs({ args, options: { config: { type: 'string', default: 'gateway.config.yaml' } } });
  const configFile = resolve(values.config!);
  const appPort = Number(process.env.DEMO_APP_PORT ?? 3001);
  const app = createSampleApp();
  await listen(app, { host: '127.0.0.1', port: appPort });
  // The embedded provider first: it writes the secrets the config reads with ${file:...}.
  const demoIdp = await startDemoIdp(resolve(dirname(configFile), '.demo-state'), { port: Number(process.env.DEMO_IDP_PORT ?? 9000) });
  const gateway = new GatewayServer({ configFile });
  await gateway.start();
  // Apps behind a connector group are reached through a real connector process.
  const connector = startDemoConnector(gateway, resolve(configFile, '..', '.demo-state/connector'));
  const gen = gateway.generation!;
  const lines = ['', 'Drawbridge demo is running.', ''];
  for (const a of gen.apps.values()) lines.push(`  ${a.name.padEnd(10)} ${a.externalUrl.padEnd(34)} -> ${a.internalUrl.href} (${a.preAuth})`);
  const admin = gateway.addresses().admin;
  lines.push('', ...demoIdp.banner);
  lines.push('', `  admin      http://${admin}/metrics`, `  config     ${configFile} (edit it: the gateway reloads on save)`, '', 'Open the first URL in a browser. Ctrl-C stops everything.', '');
  process.stderr.write(lines.join('\n') + '\n');
  runUntilSignalled(gateway, () => Promise.all([stopDemoConnector(connector), new Promise<void>((r) => app.close(() => r())), demoIdp.idp.close()]).then(() => undefined));
  return -1;
}
