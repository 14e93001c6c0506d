/**
 * Real HTTP proxies on loopback, as a private network's outbound proxy: Debian's tinyproxy (it
 * takes CONNECT, with Basic credentials when given, and logs each one) and mitmproxy (it
 * inspects TLS). .ci/run installs both.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
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

/** `user` and `password`: letters, digits and `-_.` (tinyproxy's config takes no others) */
export async function startTinyproxy(opts: { user?: string; password?: string } = {}): Promise<Tinyproxy> {
  if (spawnSync('tinyproxy', ['-v']).error) throw new Error('tinyproxy is not installed (apt-get install tinyproxy; .ci/run installs it)');
  const dir = tempDir('drawbridge-tinyproxy-');
  const port = await freePort();
  const conf = join(dir, 'tinyproxy.conf');
  const lines = [`Port ${port}`, 'Listen 127.0.0.1', 'Timeout 600', 'Allow 127.0.0.1', 'LogLevel Connect', 'MaxClients 200'];
  if (opts.user) lines.push(`BasicAuth ${opts.user} ${opts.password ?? ''}`);
  writeFileSync(conf, lines.join('\n') + '\n');
  let log = '';
  let child: ChildProcess | undefined;
  const start = async () => {
    child = spawn('tinyproxy', ['-d', '-c', conf], { stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout!.on('data', (c) => (log += c));
    child.stderr!.on('data', (c) => (log += c));
    const c = child;
    await eventually(
      () => {
        if (c.exitCode !== null) throw new Error(`tinyproxy exited ${c.exitCode}: ${log.trim()}`);
        return new Promise<boolean>((resolve) => {
          const s = net.connect(port, '127.0.0.1', () => resolve(Boolean(s.end())));
          s.on('error', () => resolve(false));
        });
      },
      5000,
      50,
    );
  };
  const stop = async () => {
    const c = child;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    const exited = new Promise((r) => c.once('exit', r));
    c.kill('SIGKILL');
    await exited;
  };
  await start();
  const auth = opts.user ? `${encodeURIComponent(opts.user)}:${encodeURIComponent(opts.password ?? '')}@` : '';
  return {
    port,
    url: `http://${auth}127.0.0.1:${port}`,
    connects: () => [...log.matchAll(/Request \(file descriptor \d+\): CONNECT (\S+) HTTP/g)].map((m) => m[1]),
    stop,
    restart: start,
  };
}

/**
 * mitmproxy's mitmdump on loopback: a proxy that inspects TLS, answering CONNECT with a
 * certificate of its own CA (with `insecureUpstream`, it reaches a gateway whose certificate it
 * cannot verify, as an inspecting proxy told to trust it would). .ci/run installs it.
 */
export async function startMitmproxy(opts: { insecureUpstream?: boolean } = {}): Promise<{ url: string; stop(): Promise<void> }> {
  if (spawnSync('mitmdump', ['--version']).error) throw new Error('mitmdump is not installed (apt-get install mitmproxy; .ci/run installs it)');
  const dir = tempDir('drawbridge-mitmproxy-');
  const port = await freePort();
  const args = ['--listen-host', '127.0.0.1', '--listen-port', String(port), '--set', `confdir=${dir}`, ...(opts.insecureUpstream ? ['--ssl-insecure'] : [])];
  const child = spawn('mitmdump', args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, HOME: dir } });
  let log = '';
  child.stdout!.on('data', (c) => (log += c));
  child.stderr!.on('data', (c) => (log += c));
  await eventually(
    () => {
      if (child.exitCode !== null) throw new Error(`mitmdump exited ${child.exitCode}: ${log.trim()}`);
      return new Promise<boolean>((resolve) => {
        const s = net.connect(port, '127.0.0.1', () => resolve(Boolean(s.end())));
        s.on('error', () => resolve(false));
      });
    },
    20_000,
    100,
  );
  return {
    url: `http://127.0.0.1:${port}`,
    stop: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGKILL');
      await exited;
    },
  };
}
