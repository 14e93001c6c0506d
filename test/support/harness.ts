/**
 * Shared test helpers: a real echo backend, a real gateway on loopback with
 * ephemeral ports, and a plain HTTP client. No mocks: every test talks TCP.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import * as netModule from 'node:net';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { WebSocketServer } from 'ws';
import { GatewayServer, type GatewayOptions } from '../../src/gateway/server.js';
import { Metrics } from '../../src/observability/metrics.js';
import { preferThroughputHeap } from '../../src/commands/heapGrowth.js';
import { gzipSync } from 'node:zlib';

// Every test dials loopback: a proxy set on the machine that runs them would take the in-process
// gateways' calls to their identity provider, and every child process's (they inherit this
// environment). Tests of the proxy set their own, NO_PROXY included.
for (const v of ['HTTPS_PROXY', 'https_proxy', 'NO_PROXY', 'no_proxy']) delete process.env[v];

export interface EchoBackend {
  url: string;
  port: number;
  /** every request the backend received, in order */
  received: { method: string; url: string; headers: http.IncomingHttpHeaders; body: Buffer }[];
  close(): Promise<void>;
}

/**
 * GET/POST anything: answers JSON {method,url,headers,body}. Special paths:
 * /slow?ms=N waits N ms, /status/NNN answers NNN, /redirect sends a Location to
 * itself, /big?bytes=N sends N bytes, /ws echoes WebSocket messages (/ws?ms=N switches after N ms).
 * Any answer, a 101 included, carries a Set-Cookie for each `set-cookie` query parameter, and
 * an HTTP answer the `clear-site-data` parameter as that header.
 */
export async function startEchoBackend(): Promise<EchoBackend> {
  const received: EchoBackend['received'] = [];
  const wss = new WebSocketServer({ noServer: true });
  // (a bad frame from a client under test is ws's 'error' on that socket: without a listener it took the test process down)
  wss.on('connection', (ws) => ws.on('error', () => ws.terminate()).on('message', (m, bin) => ws.send(m, { binary: bin })));
  const cookiesAsked = (url: string) => new URL(url, 'http://x').searchParams.getAll('set-cookie');
  wss.on('headers', (lines, req) => {
    for (const c of cookiesAsked(req.url!)) lines.push(`Set-Cookie: ${c}`);
  });
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      received.push({ method: req.method!, url: req.url!, headers: req.headers, body });
      const u = new URL(req.url!, 'http://x');
      const setCookies = cookiesAsked(req.url!);
      if (setCookies.length) res.setHeader('set-cookie', setCookies);
      const clear = u.searchParams.get('clear-site-data');
      if (clear !== null) res.setHeader('clear-site-data', clear);
      const reply = () => {
        if (u.pathname.startsWith('/status/')) return void res.writeHead(Number(u.pathname.slice(8)), { 'content-type': 'text/plain' }).end('status');
        if (u.pathname === '/redirect') return void res.writeHead(302, { location: `http://127.0.0.1:${port}/landed` }).end();
        if (u.pathname === '/page') {
          // an HTML page that links to the app's own internal URL; ?gzip=1 compresses it whatever the client asked for
          const html = Buffer.from(`<a href="http://127.0.0.1:${port}/landed">in</a> <img src="http://127.0.0.1:${port}/logo.png">`);
          const gz = u.searchParams.get('gzip') === '1';
          const out = gz ? gzipSync(html) : html;
          return void res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'content-length': out.length, ...(gz ? { 'content-encoding': 'gzip' } : {}) }).end(out);
        }
        if (u.pathname === '/big') {
          const n = Number(u.searchParams.get('bytes') ?? 1 << 20);
          return void res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': n }).end(Buffer.alloc(n, 7));
        }
        res.writeHead(200, { 'content-type': 'application/json', 'x-backend': 'echo', connection: 'keep-alive' });
        res.end(JSON.stringify({ method: req.method, url: req.url, headers: req.headers, body: body.toString('utf8') }));
      };
      const ms = u.pathname === '/slow' ? Number(u.searchParams.get('ms') ?? 1000) : 0;
      if (ms) setTimeout(reply, ms);
      else reply();
    });
  });
  server.on('upgrade', (req, socket, head) => {
    received.push({ method: req.method!, url: req.url!, headers: req.headers, body: Buffer.alloc(0) });
    // /ws?ms=N: the app takes N ms to switch protocols
    const ms = Number(new URL(req.url!, 'http://x').searchParams.get('ms') ?? 0);
    setTimeout(() => wss.handleUpgrade(req, socket, head, (ws) => wss.emit('connection', ws, req)), ms);
  });
  server.keepAliveTimeout = 60_000;
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    received,
    close: () =>
      new Promise((r) => {
        for (const c of wss.clients) c.terminate();
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

export function tempDir(prefix = 'drawbridge-test-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

export interface TestGateway {
  server: GatewayServer;
  /** http://127.0.0.1:PORT of the http listener */
  url: string;
  port: number;
  adminUrl?: string;
  configFile: string;
  dir: string;
  logs: Record<string, unknown>[];
  stop(): Promise<void>;
}

/**
 * Starts a real gateway in this process on ephemeral ports. `yaml` is the
 * config text; use listen `http: 127.0.0.1:0`. Log lines are collected.
 */
/** a port free now, for a listener that must keep its number across a restart (port 0 would give each start another) */
export async function freePort(): Promise<number> {
  const s = netModule.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const { port } = s.address() as AddressInfo;
  await new Promise((r) => s.close(r));
  return port;
}

export async function startGateway(yaml: string, opts: Partial<GatewayOptions> & { dir?: string; file?: string } = {}): Promise<TestGateway> {
  const dir = opts.dir ?? tempDir();
  const configFile = join(dir, opts.file ?? 'gateway.config.yaml');
  writeFileSync(configFile, yaml);
  const logs: Record<string, unknown>[] = [];
  const logger = pino({ level: 'debug' }, { write: (line: string) => void logs.push(JSON.parse(line)) });
  // as `drawbridge gateway` does before it builds its server: every in-process gateway runs with
  // the heap growth it ships with, whichever test file starts one first
  preferThroughputHeap();
  const server = new GatewayServer({ configFile, logger, metrics: new Metrics({ defaultMetrics: false }), debounceMs: 50, ...opts });
  await server.start();
  const a = server.addresses();
  const hostPort = a.http ?? a.https!;
  const port = Number(hostPort.slice(hostPort.lastIndexOf(':') + 1));
  return { server, url: `http://127.0.0.1:${port}`, port, adminUrl: a.admin ? `http://${a.admin}` : undefined, configFile, dir, logs, stop: () => server.stop() };
}

export interface SimpleResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
  /** the body's bytes, for bodies that are not text */
  raw: Buffer;
  json<T = any>(): T;
}

/** One HTTP/1.1 request with full control of headers (including Host), no redirects followed. */
export function request(url: string, opts: { method?: string; headers?: Record<string, string | string[]>; body?: string | Buffer; agent?: http.Agent | false; localAddress?: string } = {}): Promise<SimpleResponse> {
  return new Promise((resolve, reject) => {
    // Not new URL(): it would resolve dot segments and %2e before the gateway sees them.
    const m = /^http:\/\/([^/:]+):(\d+)(\/.*)?$/.exec(url);
    if (!m) throw new Error(`request(): unsupported URL ${url}`);
    const req = http.request(
      { host: m[1], port: Number(m[2]), path: m[3] ?? '/', method: opts.method ?? 'GET', headers: opts.headers, agent: opts.agent ?? false, localAddress: opts.localAddress, setHost: !(opts.headers && Object.keys(opts.headers).some((k) => k.toLowerCase() === 'host')) },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const raw = Buffer.concat(chunks);
          const body = raw.toString('utf8');
          resolve({ status: res.statusCode!, headers: res.headers, body, raw, json: () => JSON.parse(body) });
        });
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(opts.body);
  });
}

/**
 * Sends raw bytes and returns the raw answer (for framing attacks the client library would refuse
 * to send), read until the gateway closes the connection or `waitMs` passes. A reset after an
 * answer (a server closing on bytes it left unread) ends it like a close; one before any answer fails.
 */
export function rawRequest(port: number, bytes: string, waitMs = 1000): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = netModule.connect(port, '127.0.0.1', () => socket.write(bytes));
    const chunks: Buffer[] = [];
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('error', (e) => (chunks.length ? undefined : reject(e)));
    const done = () => resolve(Buffer.concat(chunks).toString('latin1'));
    socket.on('close', done);
    setTimeout(() => {
      socket.destroy();
      done();
    }, waitMs);
  });
}


/**
 * Waits until the app has a request whose URL starts with `path` (among those it received after
 * the first `after`): only then is the request in flight everywhere. A signal sent as soon as the
 * client wrote it can find the gateway, or the connector, with nothing in flight yet, and a test
 * that slept a fixed time instead raced a loaded machine.
 */
export async function reachedApp(backend: EchoBackend, path: string, after = 0): Promise<void> {
  await eventually(() => backend.received.slice(after).some((r) => r.url.startsWith(path)), 5000, 20);
}

/** The JSON log lines among `lines` (a process's output), other lines (usage text, warnings) left out. */
export function jsonLines(lines: readonly string[]): Record<string, unknown>[] {
  return lines.flatMap((l) => {
    try {
      return [JSON.parse(l) as Record<string, unknown>];
    } catch {
      return [];
    }
  });
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Polls `fn` until it returns truthy or `ms` passes. */
export async function eventually<T>(fn: () => Promise<T> | T, ms = 3000, step = 25): Promise<T> {
  const end = Date.now() + ms;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > end) throw last instanceof Error ? last : new Error('condition not met in time');
    await sleep(step);
  }
}

/** A real `drawbridge gateway` process (the CLI, as an operator starts it), its output collected. */
export interface GatewayProcess {
  child: ChildProcess;
  /** stdout and stderr so far */
  output(): string;
  /** resolves when the process exits: its code, and when */
  exited: Promise<{ code: number | null; at: number }>;
  /** the port a listener (`http`, `admin`) bound, read from the start line */
  port(listener?: string): Promise<number>;
}

export function spawnGateway(file: string, args: string[] = ['--no-watch'], env: NodeJS.ProcessEnv = {}): GatewayProcess {
  const child = spawn(process.execPath, ['dist/src/cli.js', 'gateway', '--config', file, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
  let out = '';
  child.stdout!.on('data', (c) => (out += c));
  child.stderr!.on('data', (c) => (out += c));
  const exited = new Promise<{ code: number | null; at: number }>((r) => child.once('exit', (code) => r({ code, at: Date.now() })));
  const port = async (listener = 'http') => Number(await eventually(() => new RegExp(`"${listener}":"127\\.0\\.0\\.1:(\\d+)"`).exec(out)?.[1], 10_000));
  return { child, output: () => out, exited, port };
}
