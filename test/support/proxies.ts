/**
 * Real HTTP proxies on loopback, as a private network's outbound proxy: Debian's tinyproxy (it
 * takes CONNECT, with Basic credentials when given, and logs each one), tinyproxy behind socat's
 * TLS (an https:// proxy) and mitmproxy (it inspects TLS). .ci/run installs all three.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { selfSignedCert } from './certs.js';
import { eventually, freePort, tempDir } from './harness.js';

export interface Tinyproxy {
  port: number;
  /** http://[user:password@]127.0.0.1:port */
  url: string;
  /** the CONNECT targets it was asked for, in order (host:port) */
  connects(): string[];
  stop(): Promise<void>;
  /** starts it again on the same port and config (after stop) */
  restart(): Promise<void>;
}

/** A proxy process: started, its output kept, ready once `port` takes connections; stop kills it. */
interface ProxyProcess {
  output(): string;
  stop(): Promise<void>;
}

async function startProxyProcess(command: string, args: string[], port: number, env?: NodeJS.ProcessEnv, readyMs = 5000): Promise<ProxyProcess> {
  const child: ChildProcess = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], env: env ?? process.env });
  let out = '';
  child.stdout!.on('data', (c) => (out += c));
  child.stderr!.on('data', (c) => (out += c));
  await eventually(
    () => {
      if (child.exitCode !== null) throw new Error(`${command} exited ${child.exitCode}: ${out.trim()}`);
      return new Promise<boolean>((resolve) => {
        const s = net.connect(port, '127.0.0.1', () => resolve(Boolean(s.end())));
        s.on('error', () => resolve(false));
      });
    },
    readyMs,
    50,
  );
  return {
    output: () => out,
    stop: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGKILL');
      await exited;
    },
  };
}

function assertInstalled(command: string, pkg: string): void {
  if (spawnSync(command, ['-h']).error) throw new Error(`${command} is not installed (apt-get install ${pkg}; .ci/run installs it)`);
}

/** `user` and `password`: letters, digits and `-_.` (tinyproxy's config takes no others) */
export async function startTinyproxy(opts: { user?: string; password?: string } = {}): Promise<Tinyproxy> {
  assertInstalled('tinyproxy', 'tinyproxy');
  const dir = tempDir('drawbridge-tinyproxy-');
  const port = await freePort();
  const conf = join(dir, 'tinyproxy.conf');
  const lines = [`Port ${port}`, 'Listen 127.0.0.1', 'Timeout 600', 'Allow 127.0.0.1', 'LogLevel Connect', 'MaxClients 200'];
  if (opts.user) lines.push(`BasicAuth ${opts.user} ${opts.password ?? ''}`);
  writeFileSync(conf, lines.join('\n') + '\n');
  // (the log of every run, restarts included)
  let earlier = '';
  let current = await startProxyProcess('tinyproxy', ['-d', '-c', conf], port);
  const auth = opts.user ? `${encodeURIComponent(opts.user)}:${encodeURIComponent(opts.password ?? '')}@` : '';
  return {
    port,
    url: `http://${auth}127.0.0.1:${port}`,
    connects: () => [...(earlier + current.output()).matchAll(/Request \(file descriptor \d+\): CONNECT (\S+) HTTP/g)].map((m) => m[1]!),
    stop: () => current.stop(),
    restart: async () => {
      earlier += current.output();
      current = await startProxyProcess('tinyproxy', ['-d', '-c', conf], port);
    },
  };
}

/**
 * mitmproxy's mitmdump on loopback: a proxy that inspects TLS, answering CONNECT with a
 * certificate of its own CA (with `insecureUpstream`, it reaches a gateway whose certificate it
 * cannot verify, as an inspecting proxy told to trust it would).
 */
export async function startMitmproxy(opts: { insecureUpstream?: boolean } = {}): Promise<{ url: string; stop(): Promise<void> }> {
  assertInstalled('mitmdump', 'mitmproxy');
  const dir = tempDir('drawbridge-mitmproxy-');
  const port = await freePort();
  const args = ['--listen-host', '127.0.0.1', '--listen-port', String(port), '--set', `confdir=${dir}`, ...(opts.insecureUpstream ? ['--ssl-insecure'] : [])];
  const proc = await startProxyProcess('mitmdump', args, port, { ...process.env, HOME: dir }, 20_000);
  return { url: `http://127.0.0.1:${port}`, stop: proc.stop };
}

/**
 * An https:// proxy: socat takes TLS on its own port, with a self-signed certificate for
 * 127.0.0.1 (`caFile`), and hands each connection to `behind` (tinyproxy, which logs the CONNECTs).
 */
export async function startTlsProxy(behind: Tinyproxy): Promise<{ url: string; caFile: string; stop(): Promise<void> }> {
  assertInstalled('socat', 'socat');
  const dir = tempDir('drawbridge-tlsproxy-');
  const cert = selfSignedCert(dir, 'proxy', ['127.0.0.1']);
  const port = await freePort();
  const listen = `OPENSSL-LISTEN:${port},bind=127.0.0.1,reuseaddr,fork,cert=${cert.cert},key=${cert.key},verify=0`;
  const proc = await startProxyProcess('socat', [listen, `TCP:127.0.0.1:${behind.port}`], port);
  const url = new URL(behind.url);
  url.protocol = 'https:';
  url.port = String(port);
  return { url: url.href.replace(/\/$/, ''), caFile: cert.cert, stop: proc.stop };
}
