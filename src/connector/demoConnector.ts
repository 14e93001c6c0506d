/**
 * For `npm start`: runs one connector as a real child process next to the
 * demo gateway. It enrolls on first start with a token made here and reuses
 * its state directory afterwards, unless that enrollment names another
 * gateway address (the demo's ports were moved): then it enrolls again.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { rmSync } from 'node:fs';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { GatewayServer } from '../gateway/server.js';
import { isEnrolled, storedEnrollment } from './stateDir.js';
import { createToken } from './tokens.js';

export function startDemoConnector(gateway: GatewayServer, stateDir: string): ChildProcess | undefined {
  const hub = gateway.connectorHub;
  const config = gateway.config;
  if (!hub || !config) return undefined;
  const group = (config.apps as readonly { connectorGroup?: string }[]).find((a) => a.connectorGroup)?.connectorGroup;
  if (!group) return undefined;
  const cli = resolve(fileURLToPath(import.meta.url), '../../cli.js');
  const args = [cli, 'connector', 'run', '--state-dir', stateDir];
  const gatewayUrl = `https://${hub.address()!.replace(/^0\.0\.0\.0:|^\[::\]:/, '127.0.0.1:')}`;
  const enrolledWith = isEnrolled(stateDir) ? storedGateway(stateDir) : undefined;
  if (enrolledWith !== undefined && enrolledWith !== new URL(gatewayUrl).origin) {
    // A connector dials the gateway it enrolled with, for good (see `connector run`); after the
    // README's "move the demo ports" it dialled the old port forever and Hello answered 504.
    // This state dir is the demo's own, so the demo starts it over.
    gateway.log.warn({ stateDir, enrolledWith, gateway: gatewayUrl }, `demo connector: enrolled with ${enrolledWith}, but connectors.listen is now ${gatewayUrl}: enrolling it again`);
    rmSync(stateDir, { recursive: true, force: true });
  }
  // The token goes in the environment: on the command line any local user's `ps` showed it while it enrolled.
  const env = { ...process.env };
  if (!isEnrolled(stateDir)) {
    args.push('--gateway', gatewayUrl);
    env.DRAWBRIDGE_TOKEN = createToken(hub.stateDir, group, 10 * 60_000, hub.ca.pin);
  }
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'inherit', 'inherit'], env });
  child.on('exit', (code, signal) => gateway.log.info({ code, signal }, 'demo connector exited'));
  return child;
}

/** The origin the state dir enrolled with; undefined when connector.json cannot say (connector run names that). */
function storedGateway(stateDir: string): string | undefined {
  const gateway: unknown = storedEnrollment(stateDir)?.gateway;
  return typeof gateway === 'string' && URL.canParse(gateway) ? new URL(gateway).origin : undefined;
}

export function stopDemoConnector(child: ChildProcess | undefined): Promise<void> {
  return new Promise((r) => {
    if (!child || child.exitCode !== null || child.signalCode !== null) return r();
    child.once('exit', () => r());
    child.kill('SIGTERM');
  });
}
