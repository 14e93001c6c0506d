// Soak run: a real gateway and two connector processes under a mixed, messy load for
// SOAK_MINUTES (default 12), sampling each process's RSS, fd count and active handles every
// 10 s. Not a test: see README.md beside it. Needs a build (`npx tsc -p .`).
import { spawn, execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync, readFileSync, readdirSync, existsSync, rmSync, createWriteStream, appendFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { makeActions } from './load.mjs';

const REPO = resolve(fileURLToPath(import.meta.url), '../../..');
const CLI = join(REPO, 'dist/src/cli.js');
const PROBE = join(REPO, 'bench/soak/probe.cjs');
const { startEchoBackend, freePort } = await import(join(REPO, 'dist/test/support/harness.js'));
const { userToken, USERS, CLIENT_SECRET } = await import(join(REPO, 'dist/test/identity/support.js'));
const { EmbeddedIdp } = await import(join(REPO, 'dist/src/identity/provider/embeddedIdp.js'));

const MINUTES = Number(process.env.SOAK_MINUTES ?? 12);
const CONCURRENCY = Number(process.env.SOAK_CONCURRENCY ?? 12);
const RUN = process.env.SOAK_DIR ?? '/tmp/drawbridge-soak';
rmSync(RUN, { recursive: true, force: true });
mkdirSync(join(RUN, 'probe'), { recursive: true });
const PROBE_DIR = join(RUN, 'probe');
const log = (...a) => console.log(new Date().toISOString().slice(11, 19), ...a);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const backend = await startEchoBackend();
const codes = new Map();
const idp = await EmbeddedIdp.start({ clientId: 'drawbridge', clientSecret: CLIENT_SECRET, users: USERS, audiences: [{ audience: 'api://secret', scopes: ['user_impersonation'] }], onOneTimeCode: (u, c) => codes.set(u, c) });
const [gwPort, adminPort, hubPort] = [await freePort(), await freePort(), await freePort()];
const CFG = join(RUN, 'gateway.config.yaml');
let revoked = [];
function yaml(variant) {
  // variant: 'a' | 'b' valid (they differ on the connector apps), 'bad' invalid
  const tunTimeout = variant === 'b' ? '31s' : '30s';
  return `gateway:
  publicUrl: http://localhost:${gwPort}
  listen: { http: 127.0.0.1:${gwPort} }
  admin: { listen: 127.0.0.1:${adminPort} }
  stateDir: ${join(RUN, 'gw-state')}
identity:
  issuer: ${idp.issuer}
  clientId: drawbridge
  clientSecret: ${CLIENT_SECRET}
session:
  secrets: [${'s'.repeat(40)}]
  cookie: { secure: false }
connectors:
  listen: 127.0.0.1:${hubPort}
  revoked: [${revoked.join(', ')}]
connectorGroups:
  g1: {}
locations:
  here: [127.0.0.0/8]
policies:
  local-only:
    when: { notLocations: [here] }
    grant: block
  no-deletes:
    when: { methods: [DELETE] }
    grant: block
apps:
  - name: Direct
    externalUrl: http://direct.localhost/
    internalUrl: ${backend.url}/
    preAuth: passthrough
    conditionalAccess: [local-only]
    backendTimeout: 20s
  - name: Tun
    externalUrl: http://tun.localhost/
    internalUrl: ${backend.url}/
    connectorGroup: g1
    preAuth: passthrough
    conditionalAccess: [no-deletes]
    backendTimeout: ${tunTimeout}
  - name: Ws
    externalUrl: http://ws.localhost/
    internalUrl: ${backend.url}/
    connectorGroup: g1
    preAuth: passthrough
    websockets: true
    backendTimeout: ${variant === 'b' ? '21s' : '20s'}
  - name: Api
    externalUrl: http://api.localhost/
    internalUrl: ${backend.url}/
    preAuth: ${variant === 'bad' ? 'bogus' : 'oidc'}
    audience: api://secret
    requiredScopes: [user_impersonation]
    conditionalAccess: [local-only]
`;
}
writeFileSync(CFG, yaml('a'));

const env = { ...process.env, SOAK_PROBE_DIR: PROBE_DIR, DRAWBRIDGE_LOG_LEVEL: 'warn' };
function spawnLogged(name, args) {
  const out = createWriteStream(join(RUN, `${name}.log`), { flags: 'a' });
  const child = spawn(process.execPath, [...(process.env.SOAK_GC ? ['--expose-gc'] : []), '--require', PROBE, '--heapsnapshot-signal=SIGUSR2', CLI, ...args], { cwd: RUN, env, stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout.pipe(out, { end: false });
  child.stderr.pipe(out, { end: false });
  return child;
}
const gw = spawnLogged('gateway', ['gateway', '--config', CFG]);
for (let i = 0; ; i++) {
  try {
    await fetch(`http://127.0.0.1:${adminPort}/readyz`);
    break;
  } catch {
    if (i > 100) throw new Error('gateway did not start');
    await sleep(100);
  }
}
// (token create reads a valid file: the live one may hold the invalid edit of the moment)
const TOKEN_CFG = join(RUN, 'token.config.yaml');
writeFileSync(TOKEN_CFG, yaml('a'));
const tokenFor = () => execFileSync(process.execPath, [CLI, 'token', 'create', '--group', 'g1', '--ttl', '1h', '--config', TOKEN_CFG], { cwd: RUN }).toString().trim().split('\n').pop();
const connectors = {};
function startConnector(name) {
  const dir = join(RUN, name);
  const args = ['connector', 'run', '--state-dir', dir, '--drain-timeout', '2s', '--transport', process.env.SOAK_TRANSPORT ?? 'h2'];
  if (!existsSync(join(dir, 'connector.json'))) args.push('--gateway', `https://127.0.0.1:${hubPort}`, '--token', tokenFor());
  connectors[name] = spawnLogged(name, args);
}
startConnector('c1');
startConnector('c2');
const admin = async (path) => (await fetch(`http://127.0.0.1:${adminPort}${path}`)).text();
const listing = async () => JSON.parse(await admin('/connectors'));
async function waitConnectors(n) {
  for (let i = 0; i < 300; i++) {
    const l = await listing().catch(() => ({ connectors: [] }));
    const active = (l.connectors ?? l).filter?.((c) => c.active !== false && c.channels > 0) ?? [];
    if (active.length >= n) return active;
    await sleep(100);
  }
  throw new Error(`fewer than ${n} connectors`);
}
log('connectors', (await waitConnectors(2)).map((c) => c.id));
const good = await userToken({ idp, codes }, 'alice', 'alice-pw', 'api://secret');
const forged = good.slice(0, -6) + 'AAAAAA';
writeFileSync(join(RUN, 'token.txt'), good);

// ---- sampling -----------------------------------------------------------------
const samples = [];
const counts = {};
const bump = (k) => (counts[k] = (counts[k] ?? 0) + 1);
function procStats(pid) {
  try {
    const rss = Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))[1]);
    const fds = readdirSync(`/proc/${pid}/fd`).length;
    let probe = {};
    try { probe = JSON.parse(readFileSync(join(PROBE_DIR, `${pid}.json`), 'utf8')); } catch {}
    return { pid, rssKiB: rss, fds, heapMiB: +(probe.heapUsed / 2 ** 20).toFixed(1), handles: probe.handles, resources: probe.resources };
  } catch { return { pid, gone: true }; }
}
async function sample(label) {
  const s = { t: Math.round((Date.now() - t0) / 1000), label, events: { ...counts } };
  s.gateway = procStats(gw.pid);
  for (const [n, c] of Object.entries(connectors)) s[n] = procStats(c.pid);
  try {
    const l = await listing();
    s.listing = (l.connectors ?? l).map((c) => ({ id: c.id.slice(0, 8), ch: c.channels, inflight: c.inflight, active: c.active }));
  } catch (e) { s.listing = String(e); }
  samples.push(s);
  appendFileSync(join(RUN, 'samples.jsonl'), JSON.stringify(s) + '\n');
  const fmt = (p) => (p?.gone ? 'gone' : `rss ${(p.rssKiB / 1024).toFixed(0)}M fd ${p.fds} heap ${p.heapMiB}M h ${JSON.stringify(p.handles ?? {})} r ${JSON.stringify(p.resources ?? {})}`);
  log(`[${label} t=${s.t}] gw: ${fmt(s.gateway)}`);
  for (const n of Object.keys(connectors)) log(`   ${n}: ${fmt(s[n])}`);
  log('   listing', JSON.stringify(s.listing), 'events', Object.values(counts).reduce((a, b) => a + b, 0));
}

// ---- load ---------------------------------------------------------------------
const { actions, agent } = makeActions({ gwPort, good, forged });
const weights = actions.reduce((a, [, w]) => a + w, 0);
let stopping = false;
const results = {};
async function worker() {
  while (!stopping) {
    let r = Math.random() * weights;
    const a = actions.find(([, w]) => (r -= w) < 0);
    bump(a[0]);
    const out = await a[2]();
    const k = `${a[0]}:${out}`;
    results[k] = (results[k] ?? 0) + 1;
  }
}

// ---- chaos --------------------------------------------------------------------
let reloads = 0;
async function reloadLoop() {
  while (!stopping) {
    await sleep(20_000);
    if (stopping) break;
    reloads++;
    const v = reloads % 2 === 0 ? 'bad' : reloads % 4 === 1 ? 'b' : 'a';
    writeFileSync(CFG, yaml(v));
    bump(`reload-${v === 'bad' ? 'invalid' : 'valid'}`);
  }
}
let kills = 0;
async function killLoop() {
  while (!stopping) {
    await sleep(60_000);
    if (stopping) break;
    const name = Object.keys(connectors).filter((n) => n !== 'c2-revoked')[kills++ % 2];
    connectors[name].kill('SIGKILL');
    bump('connector-sigkill');
    await sleep(1500);
    startConnector(name);
  }
}
async function revokeOnce() {
  await sleep((MINUTES * 60_000) / 2);
  if (stopping) return;
  const id = JSON.parse(readFileSync(join(RUN, 'c2', 'connector.json'), 'utf8')).id;
  revoked = [id];
  writeFileSync(CFG, yaml(reloads % 2 === 0 ? 'a' : 'b'));
  bump('revoke');
  log('revoked c2', id);
  await sleep(5000);
  connectors.c2.kill('SIGTERM');
  await sleep(3000);
  rmSync(join(RUN, 'c2'), { recursive: true, force: true });
  startConnector('c2'); // enrolls again with a new token: a new id
  bump('re-enroll');
  log('re-enrolled c2');
}

const t0 = Date.now();
await sleep(3000);
await sample('baseline');
const sampler = setInterval(() => void sample('load'), 10_000);
const work = Array.from({ length: CONCURRENCY }, worker);
const chaos = [reloadLoop(), killLoop(), revokeOnce()];
await sleep(MINUTES * 60_000);
stopping = true;
await Promise.all(work);
clearInterval(sampler);
agent.destroy();
log('load stopped', JSON.stringify(results));
await waitConnectors(2).catch((e) => log(String(e)));
for (const s of [5, 10, 20]) {
  await sleep(s === 5 ? 5000 : s === 10 ? 5000 : 10_000);
  await sample(`idle+${s}s`);
}
writeFileSync(join(RUN, 'results.json'), JSON.stringify({ results, counts }, null, 1));
if (process.env.SOAK_KEEP) {
  log('SOAK_KEEP: processes left running; gateway pid', gw.pid, 'admin', adminPort, 'http', gwPort);
  await new Promise(() => {});
}
await Promise.race([Promise.all(chaos), sleep(100)]);
for (const c of Object.values(connectors)) c.kill('SIGKILL');
gw.kill('SIGKILL');
await backend.close();
await idp.close();
process.exit(0);
