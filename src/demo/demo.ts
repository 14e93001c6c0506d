/**
 * `npm start`: the whole product on localhost, in one process tree. Each part
 * is the real thing (the same gateway the `gateway` command runs).
 */
import { dirname, resolve } from 'node:path';
import { GatewayServer } from '../gateway/server.js';
import { runUntilSignalled } from '../commands/gateway.js';
import { preferThroughputHeap } from '../commands/heapGrowth.js';
import { listen } from '../gateway/listen.js';
import { loadConfigText, readConfigText, type Config } from '../config/load.js';
import { DrawbridgeError } from '../errors.js';
import { createSampleApp } from './sampleApp.js';
import { startDemoIdp } from '../identity/provider/demoIdp.js';
import { portalUrl } from '../identity/portal.js';
import type { ChildProcess } from 'node:child_process';
import { startDemoConnector, stopDemoConnector } from '../connector/demoConnector.js';
import { parseCommandArgs } from '../commands/usage.js';

const USAGE = `drawbridge demo [--config FILE]
the sample app, the identity provider and the gateway on localhost (--config: gateway.config.yaml);
DEMO_APP_PORT (3001) and DEMO_IDP_PORT (9000) move the sample app and the identity provider
`;

/** The demo's environment is wrong (a DEMO_*_PORT that is not a port). */
export class DemoError extends DrawbridgeError {}

export async function demoCommand(args: string[]): Promise<number> {
  const { values } = parseCommandArgs({ args, options: { config: { type: 'string', short: 'c', default: 'gateway.config.yaml' } } }, USAGE);
  const configFile = resolve(values.config!);
  // Every part of the demo is on this machine: a developer's HTTPS_PROXY (a corporate proxy, which
  // cannot reach this loopback) would take the gateway's calls to its identity provider and the
  // connector's dials (a child, which inherits this environment).
  for (const v of ['HTTPS_PROXY', 'https_proxy']) delete process.env[v];
  const appPort = demoPort('DEMO_APP_PORT', 3001);
  const idpPort = demoPort('DEMO_IDP_PORT', 9000);
  // Read before anything listens or writes .demo-state: a mistyped --config must leave nothing behind.
  // Lint mode, because the secrets it reads with ${file:...} are written by the provider, below.
  const preview = await loadConfigText(await readConfigText(configFile), configFile, { mode: 'lint' });
  const mismatch = preview.config && portMismatch(preview.config, appPort, idpPort);
  if (mismatch) process.stderr.write(`drawbridge demo: warning: ${mismatch}\n`);
  preferThroughputHeap();
  const app = createSampleApp();
  await listen(app, { host: '127.0.0.1', port: appPort });
  const closeApp = () => new Promise<void>((r) => app.close(() => r()));
  let demoIdp: Awaited<ReturnType<typeof startDemoIdp>> | undefined;
  const gateway = new GatewayServer({ configFile });
  try {
    // The embedded provider first: it writes the secrets the config reads with ${file:...}.
    demoIdp = await startDemoIdp(resolve(dirname(configFile), '.demo-state'), { port: idpPort });
    await gateway.start();
  } catch (e) {
    // A part that cannot start (a busy port) ends the demo: the parts already listening must not
    // keep the process, and the terminal, after the one-line error.
    await Promise.all([closeApp(), demoIdp?.idp.close()]);
    throw e;
  }
  // Apps behind a connector group are reached through a real connector process.
  const connector = startDemoConnector(gateway, resolve(configFile, '..', '.demo-state/connector'));
  // The handlers go in before anything is waited for or printed: a signal sent as soon as the
  // banner is read would otherwise meet the default action and kill the demo, its connector left behind.
  runUntilSignalled(gateway, () => Promise.all([stopDemoConnector(connector), closeApp(), demoIdp!.idp.close()]).then(() => undefined), 'stop');
  // The banner says the apps are ready: a click before the connector's first channel was a 504.
  const connected = !connector || (await connectorUp(gateway, connector, CONNECTOR_WAIT_MS));
  const gen = gateway.generation!;
  const lines = ['', 'Drawbridge demo is running.', ''];
  for (const a of gen.apps.values()) lines.push(`  ${a.name.padEnd(10)} ${a.externalUrl.padEnd(34)} -> ${a.internalUrl.href} (${a.preAuth})`);
  const portal = portalUrl(gen);
  if (portal) {
    // (loopback hosts are let in by the provider anyway; a publicUrl of another name is not)
    const origin = new URL(portal).origin;
    demoIdp.idp.allowRedirectUri(`${origin}/.drawbridge/callback`);
    demoIdp.idp.allowPostLogoutUri(`${origin}/.drawbridge/signed-out`);
    lines.push(`  ${'portal'.padEnd(10)} ${portal.padEnd(34)}    the apps each user may open, after sign-in`);
  }
  const admin = gateway.addresses().admin;
  lines.push('', ...demoIdp.banner, '');
  if (admin) lines.push(`  admin      http://${admin}/metrics`);
  lines.push(`  config     ${configFile} (edit it: the gateway reloads on save)`, '');
  if (!connected) lines.push(`The demo connector has no channel to the gateway after ${CONNECTOR_WAIT_MS / 1000} s (its log is above): apps behind it answer 504 until it connects.`, '');
  lines.push('Open the first URL in a browser. Ctrl-C stops everything.', '');
  process.stderr.write(lines.join('\n') + '\n');
  return -1;
}

/** how long the demo waits for its connector's first channel before it prints the banner anyway */
const CONNECTOR_WAIT_MS = 15_000;

/** Resolves true once the gateway holds a ready channel, false when the connector exits or `ms` pass. */
async function connectorUp(gateway: GatewayServer, connector: ChildProcess, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline && connector.exitCode === null && connector.signalCode === null) {
    if (gateway.connectorHub?.registry.all().some((c) => c.ready && !c.draining)) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return false;
}

/** A port from the environment; Number('abc') reached listen() and came back as a stack trace. */
function demoPort(name: string, fallback: number): number {
  const text = process.env[name];
  if (text === undefined || text === '') return fallback;
  const port = /^\d+$/.test(text.trim()) ? Number(text) : NaN;
  if (!Number.isSafeInteger(port) || port < 1 || port > 65535) throw new DemoError('ERR_DEMO_PORT', `${name} must be a port number from 1 to 65535, not ${JSON.stringify(text)}`);
  return port;
}

const LOOPBACK = new Set(['127.0.0.1', 'localhost', '[::1]']);

/**
 * The sample app and the provider listen where DEMO_*_PORT say, the config says where the gateway
 * looks for them: a config moved without the environment (or the other way) started cleanly and
 * then answered 502 and 503. Only loopback URLs are compared; anything else is the user's own setup.
 */
export function portMismatch(config: Config, appPort: number, idpPort: number): string | undefined {
  const parts: string[] = [];
  const appPorts = new Set<number>();
  for (const a of config.apps ?? []) {
    const u = urlOf(a.internalUrl);
    if (u && LOOPBACK.has(u.hostname)) appPorts.add(portOf(u));
  }
  if (appPorts.size > 0 && !appPorts.has(appPort)) parts.push(`apps' internalUrl use port ${[...appPorts].join(', ')}, not DEMO_APP_PORT ${appPort}`);
  const issuer = urlOf(config.identity?.issuer);
  if (issuer && LOOPBACK.has(issuer.hostname) && portOf(issuer) !== idpPort) parts.push(`identity.issuer uses port ${portOf(issuer)}, not DEMO_IDP_PORT ${idpPort}`);
  if (parts.length === 0) return undefined;
  return `the config does not point at the ports the demo starts: ${parts.join('; ')} (set DEMO_APP_PORT and DEMO_IDP_PORT to the config's ports)`;
}

function urlOf(text: unknown): URL | undefined {
  return typeof text === 'string' && URL.canParse(text) ? new URL(text) : undefined;
}

function portOf(u: URL): number {
  return u.port ? Number(u.port) : u.protocol === 'https:' ? 443 : 80;
}
