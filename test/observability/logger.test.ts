/**
 * The log destination of the real `drawbridge gateway` process failing for good: the terminal
 * it was started from closed (EIO), or the reader of its stdout pipe left (EPIPE). The gateway
 * serves on without logs and still stops on SIGTERM.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { eventually, freePort, request, sleep, spawnGateway, startEchoBackend, tempDir, type EchoBackend } from '../support/harness.js';

describe('logger: a log destination that fails', function () {
  this.timeout(30_000);
  let backend: EchoBackend;
  before(async () => {
    backend = await startEchoBackend();
  });
  after(async () => backend.close());

  const configFile = () => {
    const file = join(tempDir(), 'gateway.config.yaml');
    writeFileSync(
      file,
      `gateway:
  publicUrl: http://gw.test
  listen: { http: 127.0.0.1:0 }
apps:
  - name: Echo
    externalUrl: http://echo.test/
    internalUrl: ${backend.url}/
    preAuth: passthrough
`,
    );
    return file;
  };
  /** the gateway under the pty: killed after the test whatever happened (a hung one ignores SIGTERM, and a failed test never reaches its own cleanup) */
  let ptyGateway: number | undefined;
  afterEach(() => {
    if (ptyGateway !== undefined && alive(ptyGateway)) process.kill(ptyGateway, 'SIGKILL');
    ptyGateway = undefined;
  });
  const alive = (pid: number) => {
    try {
      process.kill(pid, 0);
      return true;
    } catch {
      return false;
    }
  };

  it('the terminal it runs in closes: requests are still served, and SIGTERM still stops it (it hung on the EIO writes, holding its ports)', async () => {
    // a real terminal: script(1) runs the gateway on a pty; killing script closes it (SIGHUP, then EIO on every write)
    const term = spawn('setsid', ['script', '-qfc', `exec ${process.execPath} dist/src/cli.js gateway --config ${configFile()} --no-watch`, '/dev/null'], { stdio: ['ignore', 'pipe', 'ignore'] });
    let out = '';
    term.stdout!.on('data', (c) => (out += c));
    const port = Number(await eventually(() => /"http":"127\.0\.0\.1:(\d+)"/.exec(out)?.[1], 10_000));
    const pid = Number(/"pid":(\d+)/.exec(out)![1]);
    ptyGateway = pid;
    const get = () => request(`http://127.0.0.1:${port}/x`, { headers: { host: 'echo.test' } }).then((r) => r.status, (e: Error) => e.message);
    assert.equal(await get(), 200);
    term.kill('SIGKILL');
    await sleep(500);
    for (let i = 0; i < 3; i++) {
      assert.equal(await get(), 200, `request ${i} after the terminal closed`);
      await sleep(300);
    }
    process.kill(pid, 'SIGTERM');
    await eventually(() => !alive(pid), 10_000).catch(() => assert.fail('the gateway is still running 10 s after SIGTERM'));
  });

  it('a stdout whose reader left (EPIPE): requests are still served, and SIGTERM still stops the gateway', async () => {
    const gw = spawnGateway(configFile());
    const port = await gw.port();
    const get = () => request(`http://127.0.0.1:${port}/x`, { headers: { host: 'echo.test' } }).then((r) => r.status, (e: Error) => e.message);
    assert.equal(await get(), 200);
    gw.child.stdout!.destroy();
    // each request writes a line: the first failed write is the destination's error
    for (let i = 0; i < 5; i++) {
      assert.equal(await get(), 200, `request ${i} after stdout went`);
      await sleep(600);
    }
    gw.child.kill('SIGTERM');
    const exit = await Promise.race([gw.exited, sleep(10_000).then(() => undefined)]);
    if (!exit) gw.child.kill('SIGKILL');
    assert.ok(exit, 'the gateway is still running 10 s after SIGTERM');
    assert.equal(exit.code, 0);
  });
});

describe('logger: DRAWBRIDGE_LOG_LEVEL', function () {
  this.timeout(30_000);
  let backend: EchoBackend;
  before(async () => {
    backend = await startEchoBackend();
  });
  after(async () => backend.close());

  const configFile = (port: number | 0 = 0) => {
    const file = join(tempDir(), 'gateway.config.yaml');
    writeFileSync(file, `gateway:\n  publicUrl: http://gw.test\n  listen: { http: 127.0.0.1:${port} }\napps:\n  - name: Echo\n    externalUrl: http://echo.test/\n    internalUrl: ${backend.url}/\n    preAuth: passthrough\n`);
    return file;
  };

  for (const level of ['warning', 'verbose', '3']) {
    it(`${JSON.stringify(level)} is refused in one line naming the variable and the levels, exit 2 (it was a pino stack trace)`, async () => {
      const gw = spawnGateway(configFile(), ['--no-watch'], { DRAWBRIDGE_LOG_LEVEL: level });
      const exit = await Promise.race([gw.exited, sleep(10_000).then(() => undefined)]);
      if (!exit) gw.child.kill('SIGKILL');
      assert.ok(exit, 'the gateway started with a log level it cannot use');
      assert.equal(exit.code, 2);
      assert.equal(gw.output().split('\n')[0], `drawbridge gateway: DRAWBRIDGE_LOG_LEVEL must be one of fatal, error, warn, info, debug, trace, silent, not "${level}"`);
      assert.doesNotMatch(gw.output(), /\n\s+at /, 'no stack trace');
    });
  }

  it('a level in capitals is taken ("WARN"): the gateway serves, and its per-request info lines are left out', async () => {
    const port = await freePort();
    const gw = spawnGateway(configFile(port), ['--no-watch'], { DRAWBRIDGE_LOG_LEVEL: ' WARN ' });
    try {
      const status = await eventually(() => request(`http://127.0.0.1:${port}/x`, { headers: { host: 'echo.test' } }).then((r) => r.status), 10_000);
      assert.equal(status, 200);
      assert.equal(gw.child.exitCode, null);
      assert.doesNotMatch(gw.output(), /"msg":"request"|"msg":"gateway started"/, 'no info lines at warn');
    } finally {
      gw.child.kill('SIGTERM');
      await gw.exited;
    }
  });
});

describe('logger: asynchronous lines, handed over once per event-loop turn', function () {
  this.timeout(30_000);
  const logger = new URL('../../src/observability/logger.js', import.meta.url).href;
  /** a process that logs with the gateway's logger, its stdout and exit code */
  const runScript = (body: string) =>
    new Promise<{ code: number | null; lines: string[]; firstMsBeforeExit: number }>((resolve, reject) => {
      const child = spawn(process.execPath, ['--input-type=module', '-e', `import { createLogger } from ${JSON.stringify(logger)};\nconst log = createLogger();\n${body}`], { stdio: ['ignore', 'pipe', 'inherit'] });
      let out = '';
      let first = 0;
      child.stdout.setEncoding('utf8').on('data', (d: string) => ((first ||= performance.now()), (out += d)));
      child.on('error', reject);
      child.on('close', (code) => resolve({ code, lines: out.split('\n').filter(Boolean), firstMsBeforeExit: performance.now() - first }));
    });

  it('every line of busy turns arrives, in order, when the process exits in the middle of a turn', async () => {
    // 40 turns of 250 lines; the exit comes right after the last turn's lines, before its hand-over
    const { code, lines } = await runScript(`
let n = 0;
const turn = () => {
  for (let i = 0; i < 250; i++) log.info({ n: n++, path: '/caf\\u00e9/' + 'x'.repeat(i % 50) }, 'request');
  if (n < 10000) setImmediate(turn); else process.exit(0);
};
turn();`);
    assert.equal(code, 0);
    const seen = lines.map((l) => JSON.parse(l) as { n: number; msg: string });
    assert.equal(seen.length, 10000);
    assert.ok(seen.every((l, i) => l.n === i && l.msg === 'request'), 'in the order they were logged');
  });

  it('a reader that stops reading neither stalls the process nor loses a line: the backlog waits in memory, and the exit waits for the reader', async () => {
    // 20,000 lines of ~300 bytes (6 MB, a pipe holds 64 KiB) while the reader is away for 1 s (the exit waits 2 s at most)
    const child = spawn(process.execPath, ['--input-type=module', '-e', `import { createLogger } from ${JSON.stringify(logger)};
const log = createLogger();
let n = 0, maxLag = 0, last = performance.now();
const tick = setInterval(() => { const now = performance.now(); maxLag = Math.max(maxLag, now - last - 10); last = now; }, 10);
const turn = () => {
  for (let i = 0; i < 100; i++) log.info({ n: n++, path: '/x/' + 'y'.repeat(200) }, 'request');
  if (n < 20000) setTimeout(turn, 1); else { clearInterval(tick); log.info({ n, maxLag }, 'done'); process.exit(0); }
};
turn();`], { stdio: ['ignore', 'pipe', 'inherit'] });
    child.stdout.pause();
    const closed = new Promise<number | null>((resolve) => child.on('close', resolve));
    await sleep(1000);
    assert.equal(child.exitCode, null, 'the process waits at its exit until its lines are read');
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d)).resume();
    assert.equal(await closed, 0);
    const seen = out.split('\n').filter(Boolean).map((l) => JSON.parse(l) as { n: number; msg: string; maxLag?: number });
    assert.equal(seen.length, 20001);
    assert.ok(seen.every((l, i) => l.n === i), 'in the order they were logged');
    const done = seen[20000]!;
    assert.equal(done.msg, 'done');
    assert.ok(done.maxLag! < 400, `its timers ran ${Math.round(done.maxLag!)} ms late while the reader was away`);
  });

  it('a single line of a quiet process is written within the flush interval, without waiting for more', async () => {
    const quiet = await runScript(`
log.info('one quiet line');
const started = Date.now();
const check = setInterval(() => { if (Date.now() - started > 1500) { clearInterval(check); process.exitCode = 0; } }, 100);`);
    const { code, lines, firstMsBeforeExit } = quiet;
    assert.equal(code, 0);
    assert.ok(firstMsBeforeExit > 700, `written ${Math.round(firstMsBeforeExit)} ms before the exit, not by the exit's flush`);
    assert.equal(lines.length, 1);
    assert.equal(JSON.parse(lines[0]!).msg, 'one quiet line');
  });
});
