/** Helpers for connector tests: a gateway with a hub, real connector child processes, a scripted gateway. */
import { mkdirSync, writeFileSync } from 'node:fs';
import type http from 'node:http';
import http2, { type ClientHttp2Session } from 'node:http2';
import https from 'node:https';
import type net from 'node:net';
import type { Duplex } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import type { ConnectorHub } from '../../src/connector/hub.js';
import { ConnectorCa, createCsr, generateKeyPair } from '../../src/connector/ca.js';
import { dialChannel, SWITCHING_TO_TUNNEL, unblockedStream, type ChannelLink, type ChannelTransport } from '../../src/connector/channelLink.js';
import { spawn, type ChildProcess } from 'node:child_process';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createToken } from '../../src/connector/tokens.js';
import type { Channel } from '../../src/connector/registry.js';
import { eventually, jsonLines, startEchoBackend, startGateway, tempDir, type EchoBackend, type TestGateway } from '../support/harness.js';
import { CLIENT_PREFACE, FLAG, FRAME, frame, readFrames, settingsFrame, type ReceivedFrame } from '../support/h2Frames.js';

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
    logs: () => jsonLines(lines),
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

/** What a connector sends to renew its certificate (POST /v1/renew). */
export interface RenewRequest {
  csr: string;
  publicKey: string;
}

/**
 * A gateway a test scripts, to attack a REAL connector with: a TLS server whose certificate the
 * connector's enrolled CA signed (as the hub's is), speaking the channel protocol (the `h2`
 * upgrade on GET /v1/tunnel, then HTTP/2 with the gateway as the client; POST /v1/renew). Each
 * channel becomes an HTTP/2 client session in `sessions`, unless `wantRaw` or `onUpgrade` says otherwise.
 */
export interface ScriptedGateway {
  url: string;
  ca: ConnectorCa;
  renewals: number;
  /** answers POST /v1/renew (503 until a test sets it) */
  renew: (body: RenewRequest, res: http.ServerResponse) => void | Promise<void>;
  /** the well-behaved channels */
  sessions: ClientHttp2Session[];
  /** channel upgrades asked for */
  upgrades: number;
  /** when set, answers every upgrade itself instead of taking a channel */
  onUpgrade?: (socket: TLSSocket) => void;
  /** the next channel (one) is the attacker's: taken by rawChannel */
  wantRaw: boolean;
  /** the attackers' channels, in order, and the frames each received from the connector */
  raw: TLSSocket[];
  frames: Map<TLSSocket, ReceivedFrame[]>;
  close(): void;
}

export async function startScriptedGateway(dir: string): Promise<ScriptedGateway> {
  const ca = await ConnectorCa.loadOrCreate(dir);
  const tls = await ca.issueServer(['127.0.0.1', 'localhost']);
  const sockets = new Set<net.Socket>();
  const gw: ScriptedGateway = {
    url: '',
    ca,
    renewals: 0,
    renew: (_b, res) => void res.writeHead(503).end(),
    sessions: [],
    upgrades: 0,
    wantRaw: false,
    raw: [],
    frames: new Map(),
    close: () => {
      for (const s of gw.sessions) s.destroy();
      for (const s of sockets) s.destroy();
      server.close();
    },
  };
  const server = https.createServer({ key: tls.keyPem, cert: tls.certPem, ca: ca.certPem, requestCert: true, rejectUnauthorized: false }, (req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      if (req.url !== '/v1/renew') return void res.writeHead(404).end();
      gw.renewals++;
      void gw.renew(JSON.parse(Buffer.concat(chunks).toString('utf8')) as RenewRequest, res);
    });
  });
  server.on('connection', (s: net.Socket) => (sockets.add(s), s.on('close', () => sockets.delete(s))));
  server.on('upgrade', (_req, socket: TLSSocket) => {
    socket.on('error', () => undefined);
    gw.upgrades++;
    if (gw.onUpgrade) return gw.onUpgrade(socket);
    if (gw.wantRaw) {
      gw.wantRaw = false;
      gw.frames.set(socket, rawChannel(socket));
      return void gw.raw.push(socket);
    }
    socket.write(SWITCHING_TO_TUNNEL);
    const session = http2.connect('http://connector.invalid', { createConnection: () => unblockedStream(socket) });
    session.on('error', () => undefined);
    gw.sessions.push(session);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  gw.url = `https://127.0.0.1:${(server.address() as net.AddressInfo).port}`;
  return gw;
}

/**
 * Takes an upgraded channel as a gateway that speaks HTTP/2 by hand: 101, the client preface and
 * SETTINGS. Each frame the connector sends is kept in the list returned and emitted on the socket
 * as 'frame'; with `ack`, the connector's SETTINGS are acknowledged (without, they never apply).
 */
export function rawChannel(socket: TLSSocket, ack = false): ReceivedFrame[] {
  socket.write(SWITCHING_TO_TUNNEL);
  socket.write(Buffer.concat([CLIENT_PREFACE, settingsFrame()]));
  const got: ReceivedFrame[] = [];
  readFrames(socket, (f) => {
    if (ack && f.type === FRAME.SETTINGS && !(f.flags & FLAG.ACK)) socket.write(frame(FRAME.SETTINGS, FLAG.ACK, 0));
    got.push(f);
    socket.emit('frame', f);
  });
  return got;
}

/** A state dir as `connector enroll` leaves it, its certificate from `ca`, for `lifetimeMs`. */
export async function enrolledStateDir(ca: ConnectorCa, gateway: string, dir: string, lifetimeMs = 3600_000): Promise<string> {
  const kp = await generateKeyPair();
  const issued = await ca.issueClient(await createCsr(kp.keys, 'drawbridge-connector'), kp.publicKeyDer, 'g1', lifetimeMs, 'c-scripted');
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'key.pem'), kp.keyPem, { mode: 0o600 });
  writeFileSync(join(dir, 'cert.pem'), issued.certPem);
  writeFileSync(join(dir, 'ca.pem'), ca.certPem);
  writeFileSync(join(dir, 'connector.json'), JSON.stringify({ id: issued.id, group: 'g1', gateway, notAfter: issued.notAfter.toISOString() }));
  return dir;
}

/** Sends a target list on `session` (a scripted gateway's channel); resolves with the connector's status. */
export function sendTargets(session: ClientHttp2Session, body: string | Buffer): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = session.request({ ':method': 'POST', ':path': '/v1/targets', 'content-type': 'application/json' });
    s.on('response', (h) => resolve(Number(h[':status'])));
    s.on('error', reject);
    s.resume();
    s.end(body);
  });
}
