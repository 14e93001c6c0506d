/**
 * deploy/systemd: the units an operator installs to run the gateway and a connector as services.
 *
 * systemd's own parser checks each unit (`systemd-analyze verify`). No service manager runs
 * here (systemd is not PID 1), so the units' contract with the processes is played the way
 * systemd plays it: the state directory made with its mode, the environment file read, the
 * specifiers and ${STATE_DIRECTORY} expanded, UMask set, ExecStart run, ExecReload run with
 * $MAINPID, KillSignal sent and the exit awaited within TimeoutStopSec, a clean stop being an
 * exit Restart=on-failure leaves alone. The processes themselves are the real ones.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { eventually, jsonLines, request, startEchoBackend, tempDir, type EchoBackend } from '../support/harness.js';
import { gatewayYaml, hubUrl, startHubGateway, token, waitChannels } from '../connector/support.js';
import type { TestGateway } from '../support/harness.js';

const REPO = resolve(fileURLToPath(import.meta.url), '../../../..');
const UNITS = join(REPO, 'deploy/systemd');
/** where the units expect the checkout (README: Running as a service) */
const INSTALLED_AT = '/opt/drawbridge';

type Unit = Map<string, Map<string, string[]>>;

/** A unit file's [Section] Key=Value lines (a key may repeat), comments and blank lines left out. */
function readUnit(file: string): Unit {
  const unit: Unit = new Map();
  let section = '';
  for (const raw of readFileSync(file, 'utf8').split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith('#') || line.startsWith(';')) continue;
    const head = /^\[(.+)\]$/.exec(line);
    if (head) {
      section = head[1]!;
      unit.set(section, unit.get(section) ?? new Map());
      continue;
    }
    const eq = line.indexOf('=');
    const values = unit.get(section)!;
    const key = line.slice(0, eq);
    values.set(key, [...(values.get(key) ?? []), line.slice(eq + 1)]);
  }
  return unit;
}

function service(unit: Unit, key: string): string | undefined {
  return unit.get('Service')?.get(key)?.at(-1);
}

/** systemd's time span as the units write it: `45`, `45s`, `2min` */
function spanMs(v: string): number {
  const m = /^(\d+)\s*(s|min)?$/.exec(v);
  if (!m) throw new Error(`time span ${v} is not one this test reads`);
  return Number(m[1]) * (m[2] === 'min' ? 60_000 : 1000);
}

/** KEY=value lines of an environment file */
function readEnvironmentFile(file: string): Record<string, string> {
  return Object.fromEntries(
    readFileSync(file, 'utf8')
      .split('\n')
      .filter((l) => l.trim() && !l.trim().startsWith('#'))
      .map((l) => [l.slice(0, l.indexOf('=')).trim(), l.slice(l.indexOf('=') + 1).trim()]),
  );
}

/** processes started by startUnit and not exited yet: a failed assertion must not leave one running */
const running = new Set<ChildProcess>();

interface Started {
  child: ChildProcess;
  output(): string;
  exited: Promise<number | string>;
}

/**
 * Starts a unit's ExecStart as systemd would: `files` maps the unit's paths (the environment
 * file, the config) to where the test keeps them; the state directory is made under `root`.
 */
function startUnit(name: string, unit: Unit, root: string, files: Record<string, string>): Started & { stateDir: string } {
  const mapped = (p: string) => files[p] ?? p;
  const stateDir = join(root, 'var/lib', (service(unit, 'StateDirectory') ?? '').replace('%N', name));
  mkdirSync(stateDir, { recursive: true, mode: Number.parseInt(service(unit, 'StateDirectoryMode') ?? '0755', 8) });
  const env: Record<string, string> = { PATH: process.env.PATH ?? '/usr/bin:/bin', STATE_DIRECTORY: stateDir };
  for (const f of unit.get('Service')?.get('EnvironmentFile') ?? []) {
    const optional = f.startsWith('-');
    const file = mapped((optional ? f.slice(1) : f).replace('%N', name));
    try {
      Object.assign(env, readEnvironmentFile(file));
    } catch (e) {
      if (!optional) throw e;
    }
  }
  const argv = service(unit, 'ExecStart')!
    .split(/\s+/)
    .map((a) => mapped(a.replace('${STATE_DIRECTORY}', stateDir).replace(INSTALLED_AT, REPO)));
  assert.equal(argv[0], '/usr/bin/node', 'the units run the system Node (Debian and NodeSource packages install it there)');
  argv[0] = process.execPath;
  const umask = service(unit, 'UMask') ?? '0022';
  const child = spawn('/bin/sh', ['-c', `umask ${umask} && exec "$@"`, 'sh', ...argv], { env, cwd: root, stdio: ['ignore', 'pipe', 'pipe'] }); // (systemd starts services in /: `root` stands for it)
  let out = '';
  child.stdout!.on('data', (c) => (out += c));
  child.stderr!.on('data', (c) => (out += c));
  running.add(child);
  const exited = new Promise<number | string>((r) => child.on('exit', (code, signal) => (running.delete(child), r(signal ?? code ?? -1))));
  return { child, output: () => out, exited, stateDir };
}

/** Sends the unit's KillSignal and waits TimeoutStopSec for the exit, as `systemctl stop` does. */
async function stopUnit(unit: Unit, s: Started): Promise<number | string> {
  const signal = (service(unit, 'KillSignal') ?? 'SIGTERM') as NodeJS.Signals;
  s.child.kill(signal);
  const timeout = spanMs(service(unit, 'TimeoutStopSec') ?? '90');
  let timer: NodeJS.Timeout | undefined;
  const code = await Promise.race([s.exited, new Promise<'timeout'>((r) => (timer = setTimeout(() => r('timeout'), timeout)))]);
  clearTimeout(timer);
  if (code === 'timeout') s.child.kill('SIGKILL');
  return code;
}

/** Whether Restart= starts the service again after this exit (on-failure: not after exit 0 or the KillSignal's own death). */
function restartedAfter(unit: Unit, code: number | string): boolean {
  const restart = service(unit, 'Restart') ?? 'no';
  if (restart === 'always') return true;
  if (restart !== 'on-failure') return false;
  return !(code === 0 || code === (service(unit, 'KillSignal') ?? 'SIGTERM'));
}

const logLines = (out: string) => jsonLines(out.split('\n'));

describe('deploy/systemd: the gateway and connector units', function () {
  this.timeout(90_000);
  const connectorUnit = readUnit(join(UNITS, 'drawbridge-connector.service'));
  const gatewayUnit = readUnit(join(UNITS, 'drawbridge-gateway.service'));
  afterEach(() => {
    for (const child of running) child.kill('SIGKILL');
  });

  it('systemd-analyze verify finds nothing to say about either unit', () => {
    // (the copies point at this checkout: verify checks that ExecStart's files exist)
    const dir = tempDir();
    for (const f of readdirSync(UNITS).filter((n) => n.endsWith('.service'))) {
      writeFileSync(join(dir, f), readFileSync(join(UNITS, f), 'utf8').replaceAll(INSTALLED_AT, REPO));
    }
    const units = readdirSync(dir).map((f) => join(dir, f));
    assert.equal(units.length, 2);
    // (warnings, an unknown key say, go to stderr with exit 0)
    const r = spawnSync('systemd-analyze', ['verify', ...units], { encoding: 'utf8' });
    assert.equal(r.error, undefined, 'systemd-analyze is needed (Debian package systemd; .ci/run installs it)');
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout + r.stderr, '');
    // systemd's own score of what a unit leaves a compromised service (0 sandboxed ... 10 unprotected):
    // a later edit that drops a protection shows here
    for (const unit of units) {
      const sec = spawnSync('systemd-analyze', ['security', '--offline=yes', unit], { encoding: 'utf8' });
      const level = Number(/Overall exposure level for \S+: ([\d.]+)/.exec(sec.stdout)?.[1]);
      assert.ok(level <= 3.0, `${basename(unit)}: exposure ${level}\n${sec.stdout}`);
    }
  });

  describe('drawbridge-connector.service', () => {
    let backend: EchoBackend;
    let gw: TestGateway;
    let root: string;
    let envFile: string;
    before(async () => {
      backend = await startEchoBackend();
      gw = await startHubGateway(gatewayYaml(backend));
      root = tempDir();
      envFile = join(root, 'etc/drawbridge/drawbridge-connector.env');
      mkdirSync(join(root, 'etc/drawbridge'), { recursive: true });
      // what README tells the operator to write; the gateway's connector CA is pinned by the token
      writeFileSync(envFile, `DRAWBRIDGE_GATEWAY=${hubUrl(gw)}\nDRAWBRIDGE_TOKEN=${token(gw)}\n`, { mode: 0o600 });
    });
    after(async () => {
      await gw.stop();
      await backend.close();
    });

    it('first start enrolls from the environment file into the state directory and relays; stop drains and exits 0 (not restarted); the next start reuses the enrollment, the spent token unread', async () => {
      const files = { '/etc/drawbridge/drawbridge-connector.env': envFile };
      const first = startUnit('drawbridge-connector', connectorUnit, root, files);
      try {
        await waitChannels(gw, 2, 'g1', 20_000);
      } catch (e) {
        first.child.kill('SIGKILL');
        throw new Error(`no channels: ${first.output()}`, { cause: e });
      }
      // (log lines leave in batches, at the latest every 500 ms)
      const id = await eventually(() => logLines(first.output()).find((l) => l.msg === 'enrolled')?.connector, 3000);
      // the state directory systemd made, and the key in it, are the service's alone (UMask, StateDirectoryMode)
      assert.equal(statSync(first.stateDir).mode & 0o777, 0o700);
      assert.equal(statSync(join(first.stateDir, 'key.pem')).mode & 0o777, 0o600);
      assert.equal(basename(first.stateDir), 'drawbridge-connector', 'StateDirectory=%N is the unit name');
      const res = await request(`${gw.url}/hello`, { headers: { host: 'app.test' } });
      assert.equal(res.status, 200);

      const code = await stopUnit(connectorUnit, first);
      assert.equal(code, 0, first.output());
      assert.equal(restartedAfter(connectorUnit, code), false);
      await eventually(() => (gw.server.connectorHub!.registry.all().length === 0 ? true : undefined), 10_000);

      // the token in the file is spent; a restart (a reboot, `systemctl restart`) must not need another
      const second = startUnit('drawbridge-connector', connectorUnit, root, files);
      try {
        await waitChannels(gw, 2, 'g1', 20_000);
        assert.deepEqual(new Set(gw.server.connectorHub!.registry.all().map((c) => c.connectorId)), new Set([id]));
        assert.equal((await request(`${gw.url}/hello`, { headers: { host: 'app.test' } })).status, 200);
      } finally {
        assert.equal(await stopUnit(connectorUnit, second), 0, second.output());
      }
      // (read once it exited: every line is out by then)
      assert.ok(logLines(second.output()).some((l) => l.msg === 'channel open'), second.output());
      assert.equal(logLines(second.output()).some((l) => l.msg === 'enrolled'), false, second.output());
    });

    it('a connector that cannot start (an enrollment the gateway refuses) exits non-zero, which Restart=on-failure tries again', async () => {
      const bad = join(root, 'etc/drawbridge/bad.env');
      writeFileSync(bad, `DRAWBRIDGE_GATEWAY=${hubUrl(gw)}\nDRAWBRIDGE_TOKEN=not-a-token\n`);
      const s = startUnit('drawbridge-connector-2', connectorUnit, root, { '/etc/drawbridge/drawbridge-connector-2.env': bad });
      const code = await s.exited;
      assert.notEqual(code, 0, s.output());
      assert.match(s.output(), /not a Drawbridge enrollment token/, 'refused for the token read from its own environment file');
      assert.equal(restartedAfter(connectorUnit, code), true);
    });
  });

  describe('drawbridge-gateway.service', () => {
    it('serves the config it names with the state directory systemd made; ExecReload reloads it; stop drains and exits 0 within TimeoutStopSec', async () => {
      const backend = await startEchoBackend();
      const root = tempDir();
      const stateDir = join(root, 'var/lib/drawbridge-gateway');
      const config = join(root, 'etc/drawbridge/gateway.config.yaml');
      mkdirSync(join(root, 'etc/drawbridge'), { recursive: true });
      // README: the config's stateDir is the unit's StateDirectory
      const yaml = (name: string) => `gateway:
  publicUrl: http://app.test
  listen: { http: 127.0.0.1:0 }
  stateDir: ${stateDir}
apps:
  - name: ${name}
    externalUrl: http://app.test/
    internalUrl: ${backend.url}/
    preAuth: passthrough
`;
      writeFileSync(config, yaml('App'));
      const s = startUnit('drawbridge-gateway', gatewayUnit, root, { '/etc/drawbridge/gateway.config.yaml': config });
      try {
        const port = Number(await eventually(() => /"http":"127\.0\.0\.1:(\d+)"/.exec(s.output())?.[1], 15_000));
        assert.equal((await request(`http://127.0.0.1:${port}/x`, { headers: { host: 'app.test' } })).status, 200);
        assert.ok(statSync(join(stateDir, 'audit')).isDirectory(), 'the gateway writes into the StateDirectory');

        // `systemctl reload`: ExecReload with $MAINPID
        writeFileSync(config, yaml('Renamed'));
        const reload = service(gatewayUnit, 'ExecReload')!.replace('$MAINPID', String(s.child.pid)).split(/\s+/);
        execFileSync(reload[0]!, reload.slice(1));
        await eventually(() => logLines(s.output()).find((l) => l.msg === 'config reloaded' && (l.apps as string[]).includes('Renamed')), 10_000);
      } finally {
        const code = await stopUnit(gatewayUnit, s);
        await backend.close();
        assert.equal(code, 0, s.output());
        assert.equal(restartedAfter(gatewayUnit, code), false);
      }
    });
  });
});
