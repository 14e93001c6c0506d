/**
 * One gateway process per stateDir, with real `drawbridge gateway` processes: a second one on the
 * same stateDir is refused with one line, the commands that only read the stateDir keep working
 * beside a running gateway, a rolling restart waits for the draining one, and a lock whose
 * holder is gone is taken over.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { chmodSync, existsSync, mkdirSync, readFileSync, statSync, symlinkSync, unlinkSync, utimesSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { hostname } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { LOCK_FILE, StateDirLock } from '../../src/gateway/stateLock.js';
import { eventually, request, spawnGateway, startEchoBackend, startGateway, tempDir, type EchoBackend, type GatewayProcess } from '../support/harness.js';
import { gatewayYaml, runCli } from '../connector/support.js';

describe('gateway: one gateway process per stateDir (stateDir/gateway.lock)', function () {
  this.timeout(60_000);
  let backend: EchoBackend;
  const running: GatewayProcess[] = [];
  before(async () => (backend = await startEchoBackend()));
  afterEach(() => {
    for (const gw of running.splice(0)) gw.child.kill('SIGKILL');
  });
  after(() => backend.close());

  /** the connector hub's config (for token create and connectors), and an app served directly (direct.test) */
  const configIn = (dir: string, adminPort = 0): string => {
    const file = join(dir, 'gateway.config.yaml');
    const direct = `  - name: Direct\n    externalUrl: http://direct.test/\n    internalUrl: ${backend.url}/\n    preAuth: passthrough\n`;
    writeFileSync(file, gatewayYaml(backend, '', direct).replace('admin: { listen: 127.0.0.1:0 }', `admin: { listen: 127.0.0.1:${adminPort} }`));
    return file;
  };
  const spawn = (file: string): GatewayProcess => {
    const gw = spawnGateway(file);
    running.push(gw);
    return gw;
  };
  const started = (gw: GatewayProcess) => eventually(() => gw.output().includes('"msg":"gateway started"'), 15_000);

  it('refuses a second gateway on the same stateDir with one line naming it, the holder and what to do (exit 1); the read-only commands keep working', async () => {
    const dir = tempDir();
    const file = configIn(dir, 24510);
    const a = spawn(file);
    await started(a);
    const b = spawn(file);
    const { code } = await b.exited;
    assert.equal(code, 1);
    const stateDir = join(dir, 'state');
    assert.equal(
      b.output(),
      `drawbridge gateway: stateDir ${stateDir} is in use by another gateway (pid ${a.child.pid} on host ${hostname()}, started ${JSON.parse(readFileSync(join(stateDir, 'gateway.lock'), 'utf8')).startedAt}); only one gateway process may use a stateDir. Stop that gateway first, or give this one its own gateway.stateDir. A lock left by a gateway that is gone is taken over by itself (${join(stateDir, 'gateway.lock')})\n`,
    );

    // token create, connectors, lint and what-if read the stateDir (or nothing of it) and take no lock
    const token = await runCli(['token', 'create', '-g', 'g1', '-c', file]);
    assert.equal(token.code, 0, token.stderr);
    assert.match(token.stdout, /^dbt1\.\S+\n$/);
    const connectors = await runCli(['connectors', '-c', file, '--json']);
    assert.equal(connectors.code, 0, connectors.stderr);
    assert.deepEqual(JSON.parse(connectors.stdout), []);
    const lint = await runCli(['lint', file]);
    assert.equal(lint.code, 0, lint.stdout + lint.stderr);
    const whatIf = await runCli(['what-if', '-c', file, '--app', 'App']);
    assert.equal(whatIf.code, 0, whatIf.stdout + whatIf.stderr);
    assert.equal((await request(`http://127.0.0.1:${await a.port()}/`, { headers: { host: 'direct.test' } })).status, 200, 'the first gateway still serves');

    // once the first has stopped, a new one starts
    a.child.kill('SIGTERM');
    assert.equal((await a.exited).code, 0);
    assert.equal(existsSync(join(stateDir, 'gateway.lock')), false, 'the lock is let go of on stop');
    const c = spawn(file);
    await started(c);
    assert.doesNotMatch(c.output(), /taken over/);
  });

  it('a rolling restart: a gateway started while the old one drains waits for it, then starts', async () => {
    const file = configIn(tempDir());
    const a = spawn(file);
    const port = await a.port();
    // long enough for the new process to start (seconds on a loaded machine) while the old one drains
    const slow = request(`http://127.0.0.1:${port}/slow?ms=12000`, { headers: { host: 'direct.test' } });
    await eventually(() => backend.received.some((r) => r.url === '/slow?ms=12000'));
    a.child.kill('SIGTERM');
    await eventually(() => a.output().includes('stopping: finishing in-flight requests'));
    const b = spawn(file);
    await eventually(() => b.output().includes('waiting for the gateway that is stopping'), 11_000);
    assert.match(b.output(), new RegExp(`waiting for the gateway that is stopping \\(pid ${a.child.pid} on `));
    assert.equal((await slow).status, 200, 'the old one finished its request');
    const aExit = await a.exited;
    assert.equal(aExit.code, 0);
    await started(b);
    assert.doesNotMatch(b.output(), /taken over|in use/);
  });

  it('takes over a lock whose holder is gone (a pid of this host that is not running, or a heartbeat older than 30 s), saying so', async () => {
    const deadPid = spawnSync(process.execPath, ['-e', '']).pid!;
    const cases = [
      { holder: { pid: deadPid, host: hostname() }, age: 0, says: `its holder, pid ${deadPid} on this host, is not running` },
      // another host (or pid namespace): its pid cannot be checked, its heartbeat can
      { holder: { pid: process.pid, host: 'elsewhere.example' }, age: 60, says: 'its heartbeat is 6\\d s old' },
    ];
    for (const c of cases) {
      const dir = tempDir();
      const file = configIn(dir);
      const lock = join(dir, 'state', 'gateway.lock');
      mkdirSync(join(dir, 'state'));
      writeFileSync(lock, JSON.stringify({ ...c.holder, startedAt: new Date().toISOString(), id: 'old' }));
      const then = new Date(Date.now() - c.age * 1000);
      utimesSync(lock, then, then);
      const gw = spawn(file);
      await started(gw);
      const line = gw.output().split('\n').find((l) => l.includes('stateDir lock taken over'));
      assert.ok(line, gw.output());
      assert.match(line, new RegExp(`"msg":"stateDir lock taken over: ${c.says}`));
      assert.equal(JSON.parse(readFileSync(lock, 'utf8')).pid, gw.child.pid);
    }
  });

  it('a fresh lock of a gateway on another host is not taken over', async () => {
    const dir = tempDir();
    const file = configIn(dir);
    mkdirSync(join(dir, 'state'));
    writeFileSync(join(dir, 'state', 'gateway.lock'), JSON.stringify({ pid: 4242, host: 'elsewhere.example', startedAt: '2026-01-01T00:00:00.000Z', id: 'x' }));
    const gw = spawn(file);
    assert.equal((await gw.exited).code, 1);
    assert.match(gw.output(), /^drawbridge gateway: stateDir \S+ is in use by another gateway \(pid 4242 on host elsewhere\.example, started 2026-01-01T00:00:00\.000Z\); only one gateway process/);
  });

  it('lets go of the lock on a fatal exit too (a second SIGTERM during the drain)', async () => {
    const dir = tempDir();
    const a = spawn(configIn(dir));
    const port = await a.port();
    void request(`http://127.0.0.1:${port}/slow?ms=5000`, { headers: { host: 'direct.test' } }).catch(() => undefined);
    await eventually(() => backend.received.filter((r) => r.url === '/slow?ms=5000').length > 0);
    a.child.kill('SIGTERM');
    await eventually(() => a.output().includes('stopping: finishing in-flight requests'));
    await new Promise((r) => setTimeout(r, 600)); // past the window in which the same signal counts as forwarded
    a.child.kill('SIGTERM');
    assert.equal((await a.exited).code, 1);
    assert.equal(existsSync(join(dir, 'state', 'gateway.lock')), false);
  });

  it('warns at start when the stateDir is writable by group or others, naming it and the chmod', async () => {
    const dir = tempDir();
    const file = configIn(dir);
    const stateDir = join(dir, 'state');
    mkdirSync(stateDir);
    chmodSync(stateDir, 0o777);
    const gw = spawn(file);
    await started(gw);
    assert.match(gw.output(), new RegExp(`"msg":"stateDir ${stateDir} is writable by group or others \\(mode 777\\): another local user could plant symlinks or files where the gateway keeps its keys and audit log; run: chmod go-w ${stateDir}"`));
    const quiet = spawn(configIn(tempDir()));
    await started(quiet);
    assert.doesNotMatch(quiet.output(), /writable by group or others/);
  });
});

describe('gateway: the stateDir lock, in this process', () => {
  const yaml = (adminPort = 0) => `
gateway:
  publicUrl: http://gw.test
  listen: { http: 127.0.0.1:0 }
  admin: { listen: 127.0.0.1:${adminPort} }
apps:
  - name: Echo
    externalUrl: http://echo.test/
    internalUrl: http://127.0.0.1:9/
    preAuth: passthrough
`;

  it('a second GatewayServer on the same stateDir in one process is refused too, and the first lets go on stop', async () => {
    const dir = tempDir();
    const first = await startGateway(yaml(), { dir });
    try {
      await assert.rejects(startGateway(yaml(), { dir, file: 'again.yaml' }), (e: Error & { code?: string }) => e.code === 'ERR_STATE_DIR_LOCKED' && /\(this process\)/.test(e.message));
    } finally {
      await first.stop();
    }
    assert.equal(existsSync(join(dir, 'state', 'gateway.lock')), false);
    await (await startGateway(yaml(), { dir })).stop();
  });

  it('a gateway that fails to start lets go of the lock', async () => {
    const dir = tempDir();
    const blocker = net.createServer().listen(24520, '127.0.0.1');
    await once(blocker, 'listening');
    try {
      await assert.rejects(startGateway(yaml(24520), { dir }), /EADDRINUSE/);
    } finally {
      blocker.close();
    }
    assert.equal(existsSync(join(dir, 'state', 'gateway.lock')), false);
  });

  it('refreshes the heartbeat, and says so when the lock was taken away', async () => {
    const dir = tempDir();
    const logs: Record<string, unknown>[] = [];
    const log = pino({ level: 'debug' }, { write: (l: string) => void logs.push(JSON.parse(l)) });
    const lock = await StateDirLock.acquire(dir, { log, heartbeatMs: 50 });
    try {
      const file = join(dir, LOCK_FILE);
      const old = new Date(Date.now() - 20_000);
      utimesSync(file, old, old);
      await eventually(() => Date.now() - statSync(file).mtimeMs < 5_000);
      unlinkSync(file);
      const line = await eventually(() => logs.find((l) => l.level === 50));
      assert.match(String(line!.msg), /the stateDir lock \S+: it was removed or taken by another process; another gateway may now share this stateDir; restart this one/);
    } finally {
      lock.release();
    }
  });

  it('a lock that can no longer be read (replaced by a directory) is said once at error; the heartbeat does not end the process', async () => {
    const dir = tempDir();
    const logs: Record<string, unknown>[] = [];
    const log = pino({ level: 'debug' }, { write: (l: string) => void logs.push(JSON.parse(l)) });
    const lock = await StateDirLock.acquire(dir, { log, heartbeatMs: 30 });
    const file = join(dir, LOCK_FILE);
    try {
      unlinkSync(file);
      mkdirSync(file);
      const line = await eventually(() => logs.find((l) => l.level === 50));
      assert.match(String(line!.msg), /it cannot be read or refreshed \(.*is a directory, not a gateway lock/);
      await new Promise((r) => setTimeout(r, 150));
      assert.equal(logs.filter((l) => l.level === 50).length, 1);
    } finally {
      lock.release();
    }
    assert.ok(statSync(file).isDirectory(), 'what is not its lock is left alone');
  });

  it('a symbolic link or a directory where the lock goes stops the start with one line naming it (a dangling link spun forever)', async () => {
    for (const make of [(f: string) => symlinkSync(join(tempDir(), 'nowhere'), f), (f: string) => mkdirSync(f)]) {
      const dir = tempDir();
      const file = join(dir, LOCK_FILE);
      make(file);
      await assert.rejects(StateDirLock.acquire(dir, { log: pino({ level: 'silent' }) }), (e: Error) => e.message.startsWith(`${file} is a `) && /not a gateway lock: remove it/.test(e.message));
    }
  });

  it('a gateway whose lock was taken over does not mark it stopping nor remove it when it stops', async () => {
    const dir = tempDir();
    const lock = await StateDirLock.acquire(dir, { log: pino({ level: 'silent' }) });
    const file = join(dir, LOCK_FILE);
    const other = JSON.stringify({ pid: 4242, host: 'elsewhere', startedAt: new Date().toISOString(), id: 'the-other-gateway' }) + '\n';
    writeFileSync(file, other);
    lock.markStopping();
    lock.release();
    assert.equal(readFileSync(file, 'utf8'), other);
  });
});
