/**
 * The CLI's own promise: a command ends with an exit code that says how it went. Run as the
 * real CLI in child processes.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { tempDir } from './support/harness.js';
import { PROBE_PLUGIN } from './plugins/support.js';

/** dist/test -> dist/src/cli.js */
const CLI = resolve(dirname(fileURLToPath(import.meta.url)), '../src/cli.js');

/** The real CLI; one still running after `killAfterMs` is killed (its code is then null). */
function cli(args: string[], env: NodeJS.ProcessEnv = {}, killAfterMs = 10_000): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((done) => {
    const child = spawn(process.execPath, [CLI, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    const kill = setTimeout(() => child.kill('SIGKILL'), killAfterMs);
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c) => (stdout += c));
    child.stderr.on('data', (c) => (stderr += c));
    child.on('exit', (code) => {
      clearTimeout(kill);
      done({ code, stdout, stderr });
    });
  });
}

const config = (plugin: string, options = '{}') => `gateway:
  publicUrl: http://gw.test
  listen: { http: 127.0.0.1:0 }
identity: { issuer: http://127.0.0.1:19900, clientId: drawbridge, clientSecret: s }
session: { secrets: ["0123456789abcdef0123456789abcdef"] }
plugins: [./plugin.mjs]
apps:
  - name: Payroll
    externalUrl: http://payroll.test/
    internalUrl: http://127.0.0.1:19901/
    sso: { plugin: ${plugin}, options: ${options} }
`;

describe('cli: a command that can no longer finish', function () {
  this.timeout(20_000);
  // With the plugin deadline off, nothing is left that could wake Node: it used to exit 0 in silence.
  const noDeadline = { DRAWBRIDGE_PLUGIN_TIMEOUT: '0' };

  it('lint with a plugin whose import never settles exits 1 and says so (a CI gate does not pass)', async () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'plugin.mjs'), `await new Promise(() => {});\nexport default {};\n`);
    writeFileSync(join(dir, 'gateway.config.yaml'), config('tla'));
    const r = await cli(['lint', join(dir, 'gateway.config.yaml')], noDeadline);
    assert.equal(r.code, 1, r.stdout + r.stderr);
    assert.match(r.stderr, /^drawbridge lint: stopped before finishing: it was waiting on something that can no longer happen \(a plugin whose import or create\(\) never settles\?\)$/m);
  });

  it('the gateway with a plugin whose create() never settles exits 1 and says so (a supervisor restarts it)', async () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'plugin.mjs'), PROBE_PLUGIN);
    writeFileSync(join(dir, 'gateway.config.yaml'), config('probe', '{ mode: create-hangs }'));
    const r = await cli(['gateway', '--config', join(dir, 'gateway.config.yaml'), '--no-watch'], noDeadline);
    assert.equal(r.code, 1, r.stdout + r.stderr);
    assert.match(r.stderr, /^drawbridge gateway: stopped before finishing: /m);
  });

  it('a command that finishes keeps its own exit code and output', async () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'plugin.mjs'), PROBE_PLUGIN);
    writeFileSync(join(dir, 'gateway.config.yaml'), config('probe'));
    const r = await cli(['lint', join(dir, 'gateway.config.yaml')], noDeadline);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.doesNotMatch(r.stderr, /stopped before finishing/);
  });
});

describe('cli: a command that finished', function () {
  this.timeout(20_000);

  it('lint exits once it is done, even when a plugin module keeps a timer of its own (it waited for good)', async () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'plugin.mjs'), PROBE_PLUGIN.replace('export default {', 'setInterval(() => undefined, 60_000);\nexport default {'));
    writeFileSync(join(dir, 'gateway.config.yaml'), config('probe'));
    const t0 = Date.now();
    const r = await cli(['lint', join(dir, 'gateway.config.yaml')], {}, 8000);
    assert.equal(r.code, 0, `${r.code === null ? 'still running after 8 s: ' : ''}${r.stdout}${r.stderr}`);
    assert.match(r.stderr, /0 error\(s\)/);
    assert.ok(Date.now() - t0 < 6000);
  });
});

describe('cli: a command that failed', function () {
  this.timeout(20_000);

  it('a gateway that failed to start exits 1, even when a plugin module keeps a timer of its own', async () => {
    const dir = tempDir();
    // a module that opens a shared resource when imported (a connection pool, a refresh timer)
    writeFileSync(join(dir, 'plugin.mjs'), PROBE_PLUGIN.replace('export default {', 'setInterval(() => undefined, 60_000);\nexport default {'));
    writeFileSync(join(dir, 'gateway.config.yaml'), config('probe', '{ mode: throws }'));
    const r = await cli(['gateway', '--config', join(dir, 'gateway.config.yaml'), '--no-watch']);
    assert.equal(r.code, 1, `${r.code === null ? 'still running after 10 s: ' : ''}${r.stdout}${r.stderr}`);
    assert.match(r.stderr, /error: apps\[0\]\.sso\.plugin: app Payroll: plugin probe refused to build its stage: the ticket service said no/);
  });
});

describe('cli: an environment variable it cannot use', function () {
  this.timeout(20_000);

  // The command line was right: a usage after the line named no command (it read "usage: drawbridge help").
  for (const [args, env, line] of [
    [['gateway', '--config', 'gateway.config.yaml', '--no-watch'], { DRAWBRIDGE_LOG_LEVEL: 'verbose' }, 'drawbridge gateway: DRAWBRIDGE_LOG_LEVEL must be one of fatal, error, warn, info, debug, trace, silent, not "verbose"'],
    [['connector', 'run', '--state-dir', 'connector-state'], { DRAWBRIDGE_LOG_LEVEL: 'verbose' }, 'drawbridge connector run: DRAWBRIDGE_LOG_LEVEL must be one of fatal, error, warn, info, debug, trace, silent, not "verbose"'],
    [['lint', 'gateway.config.yaml'], { DRAWBRIDGE_PLUGIN_TIMEOUT: '5 min' }, 'drawbridge lint: DRAWBRIDGE_PLUGIN_TIMEOUT must be a duration (30s, 2m, 500ms) or 0 for no limit, not "5 min"'],
  ] as const) {
    it(`${args.slice(0, 2).join(' ')} with ${Object.keys(env)[0]} it cannot use: exit 2, that one line and no usage`, async () => {
      const dir = tempDir();
      writeFileSync(join(dir, 'gateway.config.yaml'), 'gateway:\n  publicUrl: http://gw.test\n  listen: { http: 127.0.0.1:0 }\napps: []\n');
      mkdirSync(join(dir, 'connector-state'), { mode: 0o700 });
      writeFileSync(join(dir, 'connector-state', 'connector.json'), JSON.stringify({ id: 'c-0123456789abcdef', group: 'g', gateway: 'https://127.0.0.1:9' }));
      const r = await cli(args.map((a) => (a.includes('.') || a.endsWith('-state') ? join(dir, a) : a)), env);
      assert.equal(r.code, 2, r.stdout + r.stderr);
      assert.equal(r.stderr, `${line}\n`);
    });
  }
});
