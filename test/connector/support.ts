import type { Duplex } from 'node:stream';
import type { ConnectorHub } from '../../src/connector/hub.js';
import { createCsr, generateKeyPair } from '../../src/connector/ca.js';
import { dialChannel, type ChannelLink, type ChannelTransport } from '../../src/connector/channelLink.js';
/** Helpers for connector tests: a gateway with a hub, real connector child processes. */
import { spawn, type ChildProcess } from 'node:child_process';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createToken } from '../../src/connector/tokens.js';
import type { Channel } from '../../src/connector/registry.js';
import { eventually, startEchoBackend, startGateway, tempDir, type EchoBackend, type TestGateway } from '../support/harness.js';

export const CLI = resolve(fileURLToPath(import.meta.url), '../../../src/cli.js');

export function gatewayYaml(backend: EchoBackend | { url: string }, extra = '', appExtra = '', revoked: string[] = []): string {
  return `
gateway:
  publicUrl: http://app.test
  listen: { http: 127.0.0.1:0 }
  admin: { listen: 127.0.0.1:0 }
  stateDir: ./state
connectors:
  listen: 127.0.0.1:0
  revoked: [${revoked.join(', ')}]
connectorGroups:
  g1: {}
  g2: {}
${extra}
apps:
  - name: App
    externalUrl: http://app.test/
    internalUrl: ${backend.url}/
    connectorGroup: g1
    preAuth: passthrough
    websockets: true
${appExtra}
`;
}

/**
 * One app reached both ways, for tests that compare them: App (app.test) through a connector
 * (one channel) and Ws (ws.test) direct, both with WebSockets and a 1 s backendTimeout.
 */
export async function startBothWays(url: string): Promise<{ gw: TestGateway; conn: ConnectorProcess }> {
  const direct = `  - name: Ws\n    externalUrl: http://ws.test/\n    internalUrl: ${url}/\n    preAuth: passthrough\n    websockets: true\n    backendTimeout: 1s\n`;
  const gw = await startHubGateway(gatewayYaml({ url }, '', `    backendTimeout: 1s\n${direct}`));
  const conn = startConnector(join(gw.dir, 'conn'), { gateway: hubUrl(gw), token: token(gw), args: ['--channels', '1'] });
  await waitChannels(gw, 1);
  return { gw, conn };
}

export async function startHubGateway(yaml: string, dir = tempDir()): Promise<TestGateway> {
  return startGateway(yaml, { dir, watch: false });
}

export function hubUrl(gw: TestGateway): string {
  return `https://${gw.server.connectorHub!.address()}`;
}

export function token(gw: TestGateway, group = 'g1', ttlMs = 60_000): string {
  const hub = gw.server.connectorHub!;
  return createToken(hub.stateDir, group, ttlMs, hub.ca.pin);
}

export interface ConnectorProcess {
  child: ChildProcess;
  stateDir: string;
  lines: string[];
  /** resolves with the exit code or signal */
  exited: Promise<number | string>;
  logs(): Record<string, unknown>[];
}

export function runCli(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolveP) => {
    const child = spawn(process.execPath, [CLI, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c) => (stdout += c));
    child.stderr.on('data', (c) => (stderr += c));
    child.on('exit', (code) => resolveP({ code: code ?? -1, stdout, stderr }));
  });
}

export interface EnrolledHub {
  backend: EchoBackend;
  gw: TestGateway;
  dir: string;
  /** a state dir enrolled with `drawbridge connector enroll` (no connector runs on it) */
  enrolled: string;
  stop(): Promise<void>;
}

/** A hub gateway in front of an echo backend, and one connector state dir the CLI enrolled with it. */
export async function startEnrolledHub(): Promise<EnrolledHub> {
  const backend = await startEchoBackend();
  const dir = tempDir();
  const gw = await startHubGateway(gatewayYaml(backend), dir);
  const enrolled = join(dir, 'enrolled');
  const e = await runCli(['connector', 'enroll', '--gateway', hubUrl(gw), '--token', token(gw), '--state-dir', enrolled]);
  if (e.code !== 0) throw new Error(`enrollment failed: ${e.stderr}`);
  return {
    backend,
    gw,
    dir,
    enrolled,
    stop: async () => {
      await gw.stop();
      await backend.close();
    },
  };
}

/** Starts `drawbridge connector run` as a child process (enrolling first when a token is given). */
export function startConnector(stateDir: string, opts: { gateway?: string; token?: string; args?: string[]; env?: NodeJS.ProcessEnv } = {}): ConnectorProcess {
  const args = [CLI, 'connector', 'run', '--state-dir', stateDir, ...(opts.args ?? [])];
  if (opts.gateway) args.push('--gateway', opts.gateway);
  if (opts.token) args.push('--token', opts.token);
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, DRAWBRIDGE_LOG_LEVEL: 'info', ...opts.env } });
  const lines: string[] = [];
  let buf = '';
  const onData = (c: Buffer) => {
    buf += c.toString('utf8');
    const parts = buf.split('\n');
    buf = parts.pop()!;
    lines.push(...parts.filter(Boolean));
  };
  child.stdout!.on('data', onData);
  child.stderr!.on('data', onData);
  const exited = new Promise<number | string>((r) => child.on('exit', (code, signal) => r(signal ?? code ?? -1)));
  return {
    child,
    stateDir,
    lines,
    exited,
    logs: () =>
      lines.flatMap((l) => {
        try {
          return [JSON.parse(l) as Record<string, unknown>];
        } catch {
          return [];
        }
      }),
  };
}

export function readyChannels(gw: TestGateway, group = 'g1'): Channel[] {
  return gw.server.connectorHub!.registry.all().filter((c) => c.group === group && c.ready && !c.draining);
}

/** Waits until `n` ready channels of distinct-or-not connectors exist in the group. */
export async function waitChannels(gw: TestGateway, n: number, group = 'g1', ms = 15_000): Promise<Channel[]> {
  return (await eventually(() => (readyChannels(gw, group).length >= n ? readyChannels(gw, group) : undefined), ms, 50))!;
}

export function connectorDir(base: string, name: string): string {
  return join(base, name);
}

export async function killConnector(c: ConnectorProcess, signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
  if (c.child.exitCode !== null || c.child.signalCode !== null) return;
  c.child.kill(signal);
  await c.exited;
}

/** A channel of a made-up connector of `group`, with a certificate the hub's CA issued: for tests that speak HTTP/2 on it by hand. */
export async function rogueChannelStream(hub: ConnectorHub, transport: ChannelTransport, group = 'g2'): Promise<{ link: ChannelLink; stream: Duplex }> {
  const kp = await generateKeyPair();
  const cert = (await hub.ca.issueClient(await createCsr(kp.keys, 'rogue'), kp.publicKeyDer, group, 3600_000, 'c-rogue')).certPem;
  const link = dialChannel({ gateway: `https://${hub.address()}`, transport, key: kp.keyPem, cert, ca: hub.ca.certPem, headers: {}, handshakeTimeoutMs: 5000 });
  const stream = await new Promise<Duplex>((r, j) => {
    link.once('open', r);
    link.once('error', j);
  });
  return { link, stream };
}
