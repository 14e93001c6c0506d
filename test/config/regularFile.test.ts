/**
 * ${file:} values that name a FIFO, a device or a huge file, through the real
 * CLI in child processes: the config is read synchronously, so before the fix a
 * FIFO froze the whole process (lint and a reloading gateway) and /dev/zero
 * filled its memory. A child process is the only way to see that in a test.
 */
import assert from 'node:assert/strict';
import { execFile, execFileSync, spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { eventually, request, startEchoBackend, tempDir, type EchoBackend } from '../support/harness.js';

/** dist/test/config -> repo root */
const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
const CLI = join(ROOT, 'dist/src/cli.js');

function lint(file: string): Promise<{ code: number | null; stdout: string; ms: number }> {
  const t0 = Date.now();
  return new Promise((done) => {
    execFile(process.execPath, [CLI, 'lint', file], { env: { PATH: process.env.PATH ?? '' }, timeout: 10_000 }, (err, stdout) => {
      done({ code: err ? (typeof err.code === 'number' ? err.code : null) : 0, stdout, ms: Date.now() - t0 });
    });
  });
}

/** A folder holding a FIFO (pipe), a 2 MiB file (big) and a small secret (url). */
function folder(backendUrl: string): string {
  const dir = tempDir('drawbridge-regular-');
  execFileSync('mkfifo', [join(dir, 'pipe')]);
  writeFileSync(join(dir, 'big'), Buffer.alloc(2 * 1024 * 1024, 'a'));
  writeFileSync(join(dir, 'url'), `${backendUrl}/v1/\n`);
  return dir;
}

const config = (internalUrl: string, adminListen = '127.0.0.1:0') => `gateway:
  publicUrl: http://gw.test
  listen: { http: 127.0.0.1:0 }
  admin: { listen: "${adminListen}" }
apps:
  - name: Echo
    externalUrl: http://echo.test/
    internalUrl: "${internalUrl}"
    preAuth: passthrough
`;

describe('${file:} reads only small regular files', function () {
  this.timeout(30_000);
  let backend: EchoBackend;
  before(async () => {
    backend = await startEchoBackend();
  });
  after(() => backend.close());

  it('lint refuses a FIFO, /dev/zero and a 2 MiB file at their line and column, and exits 1 at once', async () => {
    const dir = folder(backend.url);
    const file = join(dir, 'gateway.config.yaml');
    writeFileSync(
      file,
      `gateway:
  publicUrl: http://gw.test
  listen: { http: 127.0.0.1:0 }
  admin: { listen: "\${file:/dev/zero}" }
identity: { issuer: http://127.0.0.1:9, clientId: drawbridge, clientSecret: "\${file:pipe}" }
session: { secrets: ["\${file:./big}"] }
apps: []
`,
    );
    const r = await lint(file);
    assert.equal(r.code, 1, r.stdout);
    assert.ok(r.ms < 5000, `lint took ${r.ms} ms`);
    const errors = r.stdout.split('\n').filter((l) => l.includes(': error: '));
    assert.deepEqual(errors, [
      `${file}:4:20: error: gateway.admin.listen: cannot use /dev/zero: it is a character device, not a regular file; \${file:} reads a secret, key or certificate from a regular file`,
      `${file}:5:77: error: identity.clientSecret: cannot use pipe: it is a named pipe (FIFO), not a regular file; \${file:} reads a secret, key or certificate from a regular file`,
      `${file}:6:22: error: session.secrets[0]: cannot use ./big: it is 2097152 bytes, over the limit of 1048576 bytes; \${file:} reads a secret, key or certificate from a regular file`,
    ]);
  });

  it('a running gateway refuses a reload that names a FIFO or /dev/zero, keeps serving, and picks up the next good file', async () => {
    const dir = folder(backend.url);
    const file = join(dir, 'gateway.config.yaml');
    writeFileSync(file, config('${file:url}'));
    const child = spawn(process.execPath, [CLI, 'gateway', '--config', file], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (c) => (out += c));
    child.stderr.on('data', (c) => (out += c));
    try {
      const addr = await eventually(() => /"http":"(127\.0\.0\.1:\d+)"/.exec(out)?.[1], 10_000);
      const admin = /"admin":"(127\.0\.0\.1:\d+)"/.exec(out)![1];
      const seen = async () => {
        const res = await request(`http://${addr}/probe`, { headers: { host: 'echo.test' } });
        return res.status === 200 ? res.json().url : `status ${res.status}`;
      };
      assert.equal(await seen(), '/v1/probe');

      for (const [ref, what] of [
        ['${file:pipe}', 'is a named pipe (FIFO), not a regular file'],
        ['${file:/dev/zero}', 'is a character device, not a regular file'],
      ] as const) {
        writeFileSync(file, config(ref));
        const problem = await eventually(() => out.split('\n').find((l) => l.includes('config rejected') && l.includes(what)), 5000);
        assert.match(problem!, new RegExp(`still serving generation 1: [^"]*gateway\\.config\\.yaml:8:18: error: apps\\[0\\]\\.internalUrl: cannot use `));
        assert.equal(await seen(), '/v1/probe', 'the last good config still serves');
        assert.equal((await request(`http://${admin}/healthz`)).status, 200);
      }

      writeFileSync(join(dir, 'url'), `${backend.url}/v2/\n`);
      writeFileSync(file, config('${file:url}'));
      await eventually(async () => (await seen()) === '/v2/probe', 5000);
    } finally {
      child.kill('SIGKILL');
      await new Promise((r) => child.once('exit', r));
    }
  });

  it('a gateway whose config names a FIFO does not start: it exits 1 with the positioned problem', async () => {
    const dir = folder(backend.url);
    const file = join(dir, 'gateway.config.yaml');
    writeFileSync(file, config('${file:pipe}'));
    const r = await new Promise<{ code: number | null; output: string }>((done) => {
      execFile(process.execPath, [CLI, 'gateway', '--config', file], { cwd: dir, timeout: 10_000 }, (err, stdout, stderr) => {
        done({ code: err ? (typeof err.code === 'number' ? err.code : null) : 0, output: stdout + stderr });
      });
    });
    assert.equal(r.code, 1, r.output);
    assert.match(r.output, /gateway\.config\.yaml:8:18: error: apps\[0\]\.internalUrl: cannot use pipe: it is a named pipe \(FIFO\), not a regular file/);
  });
});
