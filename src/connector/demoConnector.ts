/**
 * For `npm start`: runs one connector as a real child process next to the
 * demo gateway. It enrolls on first start with a token made here and reuses
 * its state directory afterwards.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { GatewayServer } from '../gateway/server.js';
import { isEnrolled } from './agent.js';
import { createToken } from './tokens.js';

export function startDemoConnector(gateway: GatewayServer, stateDir: string): ChildProcess | undefined {
  const hub = gateway.connectorHub;
  const config = gateway.config;
  if (!hub || !config) return undefined;
  const group = (config.apps as readonly { connectorGroup?: string }[]).find((a) => a.connectorGroup)?.connectorGroup;
  if (!group) return undefined;
  const cli = resolve(fileURLToPath(import.meta.url), '../../cli.js');
  const args = [cli, 'connector', 'run', '--state-dir', stateDir];
  if (!isEnrolled(stateDir)) {
    const addr = hub.address()!.replace(/^0\.0\.0\.0:|^\[::\]:/, '127.0.0.1:');
    args.push('--gateway', `https://${addr}`, '--token', createToken(hub.stateDir, group, 10 * 60_000, hub.ca.pin));
  }
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'inherit', 'inherit'] });
  child.on('exit', (code, signal) => gateway.log.info({ code, signal }, 'demo connector exited'));
  return child;
}

export function stopDemoConnector(child: ChildProcess | undefined): Promise<void> {
  return new Promise((r) => {
    if (!child || child.exitCode !== null || child.signalCode !== null) return r();
    child.once('exit', () => r());
    child.kill('SIGTERM');
  });
}
