/** `drawbridge demo` (what `npm start` runs) as a real process. */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { eventually, request, sleep, tempDir } from '../support/harness.js';
import type { Config } from '../../src/config/load.js';
import { portMismatch } from '../../src/demo/demo.js';

/** Loopback ports free right now (listened on, then released). */
async function freePorts(n: number): Promise<number[]> {
  const servers = await Promise.all(Array.from({ length: n }, () => new Promise<net.Server>((r) => { const s = net.createServer(); s.listen(0, '127.0.0.1', () => r(s)); })));
  const ports = servers.map((s) => (s.address() as AddressInfo).port);
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  return ports;
}

/** The demo config with every fixed port moved to a free one (as the README's sed does). */
async function movedConfig(dir: string, edit: (yaml: string) => string = (y) => y): Promise<{ file: string; gw: number; admin: number; hub: number; app: number; idp: number }> {
  const [gw, admin, hub, app, idp] = await freePorts(5);
  const config = readFileSync('gateway.config.yaml', 'utf8').replace(/8080/g, String(gw)).replace(/9090/g, String(admin)).replace(/8444/g, String(hub)).replace(/3001/g, String(app)).replace(/9000/g, String(idp));
  const file = join(dir, 'gateway.config.yaml');
  writeFileSync(file, edit(config));
  return { file, gw, admin, hub, app, idp };
}

interface DemoRun {
  code: number | string | null;
  err: string;
}

/** Runs the demo until it exits, or until its stderr matches `until` (then SIGINT, and waits for the exit). */
function runDemo(args: string[], env: Record<string, string>, cwd: string, until?: RegExp): Promise<DemoRun> {
  const child = spawn(process.execPath, [join(process.cwd(), 'dist/src/cli.js'), 'demo', ...args], { cwd, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  let stopped = false;
  child.stderr.on('data', (c) => {
    err += c;
    if (until && !stopped && until.test(err)) stopped = child.kill('SIGINT');
  });
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`the demo still runs 20 s after: ${err}`));
    }, 20_000);
    child.once('exit', (code, signal) => (clearTimeout(t), resolve({ code: code ?? signal, err })));
  });
}

/** A running demo: its stdout and stderr together, and stop() (SIGINT, then the exit code). */
function startDemo(args: string[], env: Record<string, string>, cwd: string): { child: ChildProcess; output: () => string; stop: () => Promise<number | null> } {
  const child = spawn(process.execPath, [join(process.cwd(), 'dist/src/cli.js'), 'demo', ...args], { cwd, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (c) => (out += c));
  child.stderr!.on('data', (c) => (out += c));
  const exit = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  return { child, output: () => out, stop: () => (child.kill('SIGINT'), exit) };
}

/** The command lines (arguments joined by spaces) of this machine's processes that contain `text`. */
function commandLinesWith(text: string): string[] {
  const lines: string[] = [];
  for (const pid of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    try {
      const line = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ');
      if (line.includes(text)) lines.push(line);
    } catch {
      // (gone meanwhile)
    }
  }
  return lines;
}

describe('drawbridge demo', function () {
  this.timeout(30_000);

  for (const [name, value] of [['DEMO_APP_PORT', 'abc'], ['DEMO_IDP_PORT', '99999']] as const) {
    it(`says in one line that ${name}=${value} is not a port, and exits 1`, async () => {
      const dir = tempDir();
      const { file } = await movedConfig(dir);
      const run = await runDemo(['--config', file], { [name]: value }, dir);
      assert.equal(run.code, 1);
      assert.equal(run.err, `drawbridge demo: ${name} must be a port number from 1 to 65535, not "${value}"\n`);
    });
  }

  it('fails on a --config that does not exist before it listens on anything or writes .demo-state', async () => {
    const dir = tempDir();
    const [app, idp] = await freePorts(2);
    const run = await runDemo(['--config', join(dir, 'nope.yaml')], { DEMO_APP_PORT: String(app), DEMO_IDP_PORT: String(idp) }, dir);
    assert.equal(run.code, 2);
    assert.match(run.err, /^drawbridge demo: cannot read .*nope\.yaml: ENOENT\n$/);
    assert.equal(existsSync(join(dir, '.demo-state')), false);
  });

  it('warns in one line when the config points at other ports than DEMO_*_PORT start, and prints no admin line without gateway.admin', async () => {
    const dir = tempDir();
    const [elsewhere] = await freePorts(1);
    const { file, app, idp } = await movedConfig(dir, (y) => y.replace(/ {2}admin:\n {4}listen: .*\n/, ''));
    const run = await runDemo(['--config', file], { DEMO_APP_PORT: String(elsewhere), DEMO_IDP_PORT: String(idp) }, dir, /Ctrl-C stops everything/);
    assert.equal(run.code, 0, run.err);
    const warnings = run.err.split('\n').filter((l) => l.includes('warning'));
    assert.deepEqual(warnings, [`drawbridge demo: warning: the config does not point at the ports the demo starts: apps' internalUrl use port ${app}, not DEMO_APP_PORT ${elsewhere} (set DEMO_APP_PORT and DEMO_IDP_PORT to the config's ports)`]);
    assert.match(run.err, /Drawbridge demo is running/);
    assert.doesNotMatch(run.err, /admin|undefined/);
  });

  it('compares identity.issuer with DEMO_IDP_PORT, and says nothing when the ports agree or the URLs are not loopback', () => {
    const config = (issuer: string, internalUrl: string) => ({ identity: { issuer }, apps: [{ internalUrl }] }) as unknown as Config;
    assert.equal(portMismatch(config('http://127.0.0.1:9000', 'http://127.0.0.1:3001/'), 3001, 9000), undefined);
    assert.equal(portMismatch(config('https://login.example.com', 'http://10.0.0.5:80/'), 3001, 9000), undefined);
    assert.equal(
      portMismatch(config('http://localhost:19000', 'http://127.0.0.1:3001/'), 3001, 9000),
      "the config does not point at the ports the demo starts: identity.issuer uses port 19000, not DEMO_IDP_PORT 9000 (set DEMO_APP_PORT and DEMO_IDP_PORT to the config's ports)",
    );
  });

  for (const which of ['gateway', 'identity provider'] as const)
  it(`exits 1 with the one-line error when the ${which} port is busy, closing the parts already listening`, async () => {
    const [gw, admin, hub, app, idp] = await freePorts(5);
    const dir = tempDir();
    const config = readFileSync('gateway.config.yaml', 'utf8').replace(/8080/g, String(gw)).replace(/9090/g, String(admin)).replace(/8444/g, String(hub)).replace(/3001/g, String(app)).replace(/9000/g, String(idp));
    writeFileSync(join(dir, 'gateway.config.yaml'), config);
    const taken = which === 'gateway' ? gw : idp;
    const busy = net.createServer();
    await new Promise<void>((r) => busy.listen(taken, '127.0.0.1', r));
    try {
      const child = spawn(process.execPath, [join(process.cwd(), 'dist/src/cli.js'), 'demo', '--config', join(dir, 'gateway.config.yaml')], {
        cwd: dir,
        env: { ...process.env, DEMO_APP_PORT: String(app), DEMO_IDP_PORT: String(idp) },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let err = '';
      child.stderr.on('data', (c) => (err += c));
      const code = await new Promise<number | null>((resolve, reject) => {
        const t = setTimeout(() => {
          child.kill('SIGKILL');
          reject(new Error(`the demo still runs 15 s after: ${err}`));
        }, 15_000);
        child.once('exit', (c) => (clearTimeout(t), resolve(c)));
      });
      assert.equal(code, 1);
      assert.match(err, new RegExp(`127\\.0\\.0\\.1:${taken} is already in use`));
      assert.doesNotMatch(err, /\n\s+at /, 'no stack trace');
    } finally {
      busy.close();
    }
  });

  it('enrolls its connector again when the connector port moved since the last start (the README recipe), and says so: Hello answers', async function () {
    this.timeout(60_000);
    const dir = tempDir();
    const { file, gw, hub, app, idp } = await movedConfig(dir);
    const env = { DEMO_APP_PORT: String(app), DEMO_IDP_PORT: String(idp) };
    const hello = async () => (await request(`http://127.0.0.1:${gw}/`, { headers: { host: `hello.localhost:${gw}` } })).status === 200;
    const first = startDemo(['--config', file], env, dir);
    try {
      await eventually(hello, 20_000, 200);
    } finally {
      assert.equal(await first.stop(), 0, first.output());
    }
    const [moved] = await freePorts(1);
    writeFileSync(file, readFileSync(file, 'utf8').replace(new RegExp(String(hub), 'g'), String(moved)));
    const second = startDemo(['--config', file], env, dir);
    try {
      await eventually(hello, 20_000, 200);
      assert.match(second.output(), new RegExp(`demo connector: enrolled with https://127\\.0\\.0\\.1:${hub}, but connectors\\.listen is now https://127\\.0\\.0\\.1:${moved}: enrolling it again`));
      assert.match(readFileSync(join(dir, '.demo-state/connector/connector.json'), 'utf8'), new RegExp(`"gateway": "https://127\\.0\\.0\\.1:${moved}"`));
    } finally {
      assert.equal(await second.stop(), 0, second.output());
    }
  });

  it('prints its banner once the connector is connected: the first click on Hello is a 200, not a 504 (first start and restart)', async function () {
    this.timeout(60_000);
    const dir = tempDir();
    const { file, gw, app, idp } = await movedConfig(dir);
    // (a developer's corporate proxy in the environment, which cannot reach this machine's loopback,
    // must not take the demo connector's dials: nothing listens on port 9)
    const env = { DEMO_APP_PORT: String(app), DEMO_IDP_PORT: String(idp), HTTPS_PROXY: 'http://127.0.0.1:9', https_proxy: 'http://127.0.0.1:9' };
    for (const start of ['first start (enrolls)', 'restart']) {
      const demo = startDemo(['--config', file], env, dir);
      try {
        await eventually(() => /Open the first URL in a browser/.test(demo.output()), 25_000, 20);
        const res = await request(`http://127.0.0.1:${gw}/`, { headers: { host: `hello.localhost:${gw}` } });
        assert.equal(res.status, 200, `${start}: ${demo.output()}`);
        assert.doesNotMatch(demo.output(), /has no channel to the gateway/);
        // oidc-provider's own store warned on every start, above the banner, that it must be replaced
        assert.doesNotMatch(demo.output(), /WARNING|development-only/);
        // what `ps` shows of its connector: no enrollment token
        const connectorArgs = commandLinesWith(join(dir, '.demo-state'));
        assert.equal(connectorArgs.length, 1, `one connector process: ${connectorArgs.join('\n')}`);
        assert.doesNotMatch(connectorArgs[0]!, /dbt1\.|--token/);
      } finally {
        assert.equal(await demo.stop(), 0, demo.output());
      }
    }
  });

  it('stops on SIGHUP (the terminal it runs in closed), its connector and sample app with it, and keeps no mode-755 state folder', async function () {
    this.timeout(60_000);
    const dir = tempDir();
    const { file, gw, app, idp } = await movedConfig(dir);
    const demo = startDemo(['--config', file], { DEMO_APP_PORT: String(app), DEMO_IDP_PORT: String(idp) }, dir);
    const exited = new Promise<number | null>((r) => demo.child.once('exit', (code) => r(code)));
    try {
      await eventually(async () => (await request(`http://127.0.0.1:${gw}/`, { headers: { host: `hello.localhost:${gw}` } })).status === 200, 20_000, 200);
      assert.equal(statSync(join(dir, '.demo-state')).mode & 0o777, 0o700);
      demo.child.kill('SIGHUP');
      const code = await Promise.race([exited, sleep(25_000).then(() => 'still running')]);
      assert.equal(code, 0, demo.output());
      const stillUp = await request(`http://127.0.0.1:${app}/`).then(() => true, () => false);
      assert.equal(stillUp, false, 'the sample app still answers');
    } finally {
      demo.child.kill('SIGKILL');
    }
  });
});
