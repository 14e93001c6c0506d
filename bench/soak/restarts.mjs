// One connector across many gateway restarts: the gateway is SIGKILLed and started again N times
// (default 25) while the same connector process keeps running. After each reconnection it prints
// the connector's RSS, fds, heap and active handles (probe.cjs), to tell a growth per restart
// (a channel, timer or listener left behind by each lost gateway) from the allocator's noise.
// Usage: node bench/soak/restarts.mjs [N] [h2|websocket]   (after `npx tsc -p .`)
import { execFileSync, spawn } from 'node:child_process';
import { appendFileSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, startEchoBackend, tempDir } from '../../dist/test/support/harness.js';

const REPO = resolve(fileURLToPath(import.meta.url), '../../..');
const CLI = join(REPO, 'dist/src/cli.js');
const PROBE = join(REPO, 'bench/soak/probe.cjs');
const N = Number(process.argv[2] ?? 25);
const TRANSPORT = process.argv[3] ?? 'h2';
const OUT = process.env.SOAK_DIR ?? tempDir('soak-restarts-');
const PROBE_DIR = join(OUT, 'probe');
mkdirSync(PROBE_DIR, { recursive: true });
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const backend = await startEchoBackend();
const [HTTP, ADMIN, HUB] = [await freePort(), await freePort(), await freePort()];
const configFile = join(OUT, 'gateway.config.yaml');
writeFileSync(
  configFile,
  `gateway:
  publicUrl: http://localhost
  listen: { http: 127.0.0.1:${HTTP} }
  admin: { listen: 127.0.0.1:${ADMIN} }
  stateDir: ./state
connectors:
  listen: 127.0.0.1:${HUB}
connectorGroups:
  g1: {}
apps:
  - name: Tunnel
    externalUrl: http://tunnel.localhost/
    internalUrl: ${backend.url}/
    connectorGroup: g1
    preAuth: passthrough
`,
);
const env = { ...process.env, SOAK_PROBE_DIR: PROBE_DIR, DRAWBRIDGE_LOG_LEVEL: 'warn' };
const node = (args, log) => {
  const c = spawn(process.execPath, ['--expose-gc', '--heapsnapshot-signal=SIGUSR2', '--require', PROBE, CLI, ...args], { cwd: OUT, stdio: ['ignore', 'pipe', 'pipe'], env });
  for (const s of [c.stdout, c.stderr]) s.on('data', (d) => appendFileSync(join(OUT, log), d));
  c.exited = new Promise((r) => c.on('exit', r));
  return c;
};
async function until(fn, ms = 30_000) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await Promise.resolve().then(fn).catch(() => undefined);
    if (v) return v;
    if (Date.now() > end) throw new Error('timed out');
    await sleep(100);
  }
}
const channels = async () => {
  const j = await (await fetch(`http://127.0.0.1:${ADMIN}/connectors`)).json();
  return (j.connectors ?? []).find((c) => c.active)?.channels ?? 0;
};
const startGateway = () => node(['gateway', '--config', configFile, '--no-watch'], 'gateway.log');

let gw = startGateway();
await until(async () => (await fetch(`http://127.0.0.1:${ADMIN}/readyz`)).ok);
const token = execFileSync(process.execPath, [CLI, 'token', 'create', '--group', 'g1', '--config', configFile], { cwd: OUT }).toString().trim();
const conn = node(['connector', 'run', '--state-dir', join(OUT, 'conn'), '--transport', TRANSPORT, '--gateway', `https://127.0.0.1:${HUB}`, '--token', token], 'connector.log');
const stat = () => {
  const rss = Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${conn.pid}/status`, 'utf8'))[1]) / 1024;
  const p = JSON.parse(readFileSync(join(PROBE_DIR, `${conn.pid}.json`), 'utf8'));
  const fds = readdirSync(`/proc/${conn.pid}/fd`).length;
  return `rss=${rss.toFixed(0)}M fds=${fds} heap=${(p.heapUsed / 2 ** 20).toFixed(1)}M timers=${p.resources.Timeout ?? 0} handles=${JSON.stringify(p.handles)} listeners=${JSON.stringify(p.listeners)}`;
};
for (let i = 0; i <= N; i++) {
  await until(async () => (await channels()) >= 2);
  for (let j = 0; j < 20; j++) await fetch(`http://127.0.0.1:${HTTP}/x`, { headers: { host: 'tunnel.localhost' } }).then((r) => r.text());
  await sleep(2500); // (the probe writes every 2 s)
  console.log(`restart ${i}: connector ${stat()}`);
  if (conn.exitCode !== null) throw new Error(`the connector exited (${conn.exitCode}): see ${OUT}/connector.log`);
  if (i === N) break;
  gw.kill('SIGKILL');
  await gw.exited;
  gw = startGateway();
}
conn.kill('SIGKILL');
gw.kill('SIGKILL');
await backend.close();
process.exit(0);
