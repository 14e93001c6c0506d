/**
 * `drawbridge lint` and the start-time counterpart, run as the real CLI in a
 * child process: exit codes, output formats, several files in one run.
 */
import assert from 'node:assert/strict';
import { execFile, execFileSync, spawn } from 'node:child_process';
import { mkdirSync, readFileSync, realpathSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { sleep, tempDir } from '../support/harness.js';

/** dist/test/commands -> repo root */
const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
const CLI = join(ROOT, 'dist/src/cli.js');
const REFERENCE = join(ROOT, 'test/fixtures/gateway.config.reference.yaml');

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the CLI with a clean environment (no DRAWBRIDGE_* secrets), killed after `timeoutMs`. */
function cli(args: string[], opts: { env?: Record<string, string>; timeoutMs?: number; cwd?: string } = {}): Promise<Run> {
  return new Promise((done) => {
    const child = execFile(process.execPath, [CLI, ...args], { cwd: opts.cwd ?? ROOT, env: { PATH: process.env.PATH ?? '', ...opts.env }, timeout: opts.timeoutMs ?? 15_000 }, (err, stdout, stderr) => {
      done({ code: err ? (typeof err.code === 'number' ? err.code : null) : 0, stdout, stderr });
    });
    child.stdin?.end();
  });
}

const dir = tempDir('drawbridge-cli-');
const write = (name: string, text: string | Buffer) => {
  const file = join(dir, name);
  writeFileSync(file, text);
  return file;
};

const INVALID = write(
  'invalid.yaml',
  `gateway:
  publicUrl: http://localhost:8080
  listen: { http: 127.0.0.1:0 }
apps:
  - name: Hello
    externalUrl: http://hello.localhost/
    internalUrl: http://127.0.0.1:3001/
    preAuth: passthrough
    connectorGroup: eu
    backendTimeout: 10 minutes
`,
);
const VALID = write(
  'valid.yaml',
  `gateway:
  publicUrl: http://localhost:8080
  listen: { http: 127.0.0.1:0 }
apps:
  - name: Hello
    externalUrl: http://hello.localhost/
    internalUrl: http://127.0.0.1:3001/
    preAuth: passthrough
`,
);
const UNSET_ENV = write(
  'unset-env.yaml',
  `gateway:
  publicUrl: http://localhost:8080
  listen: { http: 127.0.0.1:0 }
identity: { issuer: http://127.0.0.1:9, clientId: drawbridge, clientSecret: "\${env:DB_CLI_TEST_SECRET}" }
apps: []
`,
);
const GARBAGE = write('garbage.yaml', Buffer.from('\u0000\u0001 apps: [\n  {{ not: yaml\n', 'utf8'));

describe('drawbridge lint (CLI)', function () {
  this.timeout(30_000);

  it('exits 0 for the demo gateway.config.yaml', async () => {
    // Its secrets are generated on the first `npm start`, so before that they are warnings.
    const r = await cli(['lint', 'gateway.config.yaml']);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.doesNotMatch(r.stdout, /: error: /);
    assert.match(r.stderr, /1 file\(s\): 0 error\(s\)/);
  });

  it('exits 0 for a valid file and prints nothing but the summary', async () => {
    const r = await cli(['lint', VALID]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.equal(r.stdout, '');
    assert.equal(r.stderr, `1 file(s): 0 error(s), 0 warning(s) (${VALID})\n`);
  });

  it('exits 0 for the reference file (unset secrets and absent files are warnings)', async () => {
    const r = await cli(['lint', REFERENCE]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /warning: identity\.clientSecret: environment variable DRAWBRIDGE_CLIENT_SECRET is not set/);
    assert.doesNotMatch(r.stdout, /: error: /);
  });

  it('lints the discovered gateway.config.yaml when no file is given, and names it', async () => {
    const r = await cli(['lint']);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    // The demo file's secrets are generated on the first `npm start`: before that they are warnings.
    assert.match(r.stderr, /^1 file\(s\): 0 error\(s\), \d+ warning\(s\) /);
    assert.ok(r.stderr.endsWith(` (${join(ROOT, 'gateway.config.yaml')})\n`), r.stderr);
  });

  it('exits 1 for an invalid file and prints every problem as FILE:LINE:COL: severity: path: message', async () => {
    const r = await cli(['lint', INVALID]);
    assert.equal(r.code, 1);
    assert.deepEqual(r.stdout.trim().split('\n'), [
      `${INVALID}:9:21: error: apps[0].connectorGroup: unknown connector group "eu" (none defined)`,
      `${INVALID}:10:21: error: apps[0].backendTimeout: "10 minutes" is not allowed here: must be "default", "long" or a duration such as 90s`,
    ]);
    assert.match(r.stderr, /1 file\(s\): 2 error\(s\), 0 warning\(s\)/);
  });

  it('exits 2 for a file that cannot be read', async () => {
    const missing = join(dir, 'missing.yaml');
    const r = await cli(['lint', missing]);
    assert.equal(r.code, 2);
    assert.match(r.stdout, new RegExp(`^${missing.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}:1:1: error: cannot read .*ENOENT`));
  });

  it('exits 2 for non-YAML garbage, with the position of the parse error', async () => {
    const r = await cli(['lint', GARBAGE]);
    assert.equal(r.code, 2);
    assert.match(r.stdout, new RegExp(`^${GARBAGE.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}:\\d+:\\d+: error: not valid YAML: `));
  });

  it('--format json is parseable and counts errors and warnings', async () => {
    const r = await cli(['lint', '--format', 'json', INVALID, UNSET_ENV]);
    assert.equal(r.code, 1);
    const out = JSON.parse(r.stdout);
    assert.equal(out.valid, false);
    assert.deepEqual(out.files, [INVALID, UNSET_ENV]);
    assert.equal(out.errors, 2);
    assert.equal(out.warnings, 1);
    assert.deepEqual(out.problems.map((p: any) => [p.file, p.line, p.col, p.severity, p.path]), [
      [INVALID, 9, 21, 'error', 'apps[0].connectorGroup'],
      [INVALID, 10, 21, 'error', 'apps[0].backendTimeout'],
      [UNSET_ENV, 4, 77, 'warning', 'identity.clientSecret'],
    ]);
    assert.match(out.problems[2].message, /environment variable DB_CLI_TEST_SECRET is not set/);
  });

  it('--format json through a pipe read slowly is whole: the exit waits for the output (it was cut at 64 KiB)', async () => {
    const apps = Array.from({ length: 3000 }, (_, i) => `  - { name: a${i}, externalUrl: 'http://a${i}.localhost/', internalUrl: 'http://127.0.0.1:1/', preAuth: bogus }`).join('\n');
    const big = write('big.yaml', `gateway: { publicUrl: "http://localhost:1", listen: { http: "127.0.0.1:1" } }\napps:\n${apps}\n`);
    const child = spawn(process.execPath, [CLI, 'lint', '--format', 'json', big], { cwd: ROOT, env: { PATH: process.env.PATH ?? '' }, stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout.pause();
    // the reader comes late: the pipe fills (64 KiB) and the rest waits in the process
    await sleep(800);
    const chunks: Buffer[] = [];
    child.stdout.on('data', (c: Buffer) => chunks.push(c)).resume();
    const code = await new Promise<number | null>((r) => child.on('close', r));
    assert.equal(code, 1);
    const out = JSON.parse(Buffer.concat(chunks).toString('utf8'));
    assert.ok(Buffer.concat(chunks).length > 64 << 10, `${Buffer.concat(chunks).length} bytes`);
    assert.equal(out.errors, 3000);
  });

  it('--format github prints workflow commands that annotate the lines', async () => {
    const r = await cli(['lint', '--format', 'github', INVALID]);
    assert.equal(r.code, 1);
    assert.deepEqual(r.stdout.trim().split('\n'), [
      `::error file=${INVALID},line=9,col=21::apps[0].connectorGroup: unknown connector group "eu" (none defined)`,
      `::error file=${INVALID},line=10,col=21::apps[0].backendTimeout: "10 minutes" is not allowed here: must be "default", "long" or a duration such as 90s`,
    ]);
  });

  it('--format github escapes the file= property (a name with , : or a line break cannot add properties or commands)', async () => {
    const sub = join(dir, 'github-names');
    mkdirSync(sub, { recursive: true });
    writeFileSync(join(sub, 'a,line=99,title=x:y.yaml'), readFileSync(INVALID));
    writeFileSync(join(sub, 'n\n::warning file=evil.yaml,line=1::injected x.yaml'), readFileSync(INVALID));
    const r = await cli(['lint', '--format', 'github', 'a,line=99,title=x:y.yaml', 'n\n::warning file=evil.yaml,line=1::injected x.yaml'], { cwd: sub });
    assert.equal(r.code, 1);
    const out = r.stdout.trim().split('\n');
    assert.equal(out.length, 4, r.stdout);
    assert.equal(out[0], '::error file=a%2Cline=99%2Ctitle=x%3Ay.yaml,line=9,col=21::apps[0].connectorGroup: unknown connector group "eu" (none defined)');
    assert.ok(out[2]!.startsWith('::error file=n%0A%3A%3Awarning file=evil.yaml%2Cline=1%3A%3Ainjected x.yaml,line=9,col=21::'), out[2]);
  });

  it('exits 2 at once for a config path that is a FIFO or a device, found or named, and for a self-referencing alias (json still JSON)', async () => {
    const root = realpathSync(tempDir('drawbridge-fifo-'));
    writeFileSync(join(root, 'package.json'), '{"name":"ops"}\n');
    mkdirSync(join(root, 'sub'));
    const fifo = join(root, 'gateway.config.yaml');
    execFileSync('mkfifo', [fifo]);
    const cyclic = write('cyclic.yaml', 'gateway: &g\n  x: *g\napps: []\n');
    const [found, zero, json] = await Promise.all([cli(['lint'], { cwd: join(root, 'sub'), timeoutMs: 5000 }), cli(['lint', '/dev/zero'], { timeoutMs: 5000 }), cli(['lint', '--format', 'json', cyclic])]);
    assert.equal(found.code, 2, found.stdout + found.stderr);
    assert.equal(found.stdout, `${fifo}:1:1: error: cannot read the file: it is a named pipe (FIFO), not a regular file\n`);
    assert.equal(zero.code, 2, zero.stdout + zero.stderr);
    assert.equal(zero.stdout, '/dev/zero:1:1: error: cannot read the file: it is a character device, not a regular file\n');
    assert.equal(json.code, 2, json.stdout + json.stderr);
    assert.deepEqual(JSON.parse(json.stdout).problems, [{ severity: 'error', message: 'not valid YAML: alias *g is inside the value its anchor &g names, which would make that value contain itself', path: '', file: cyclic, line: 2, col: 6 }]);
  });

  it('refuses an unknown --format with exit 2', async () => {
    const r = await cli(['lint', '--format', 'xml', INVALID]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /--format must be text, json or github/);
  });

  it('an unset ${env:X} is a warning in lint (exit 0), but `drawbridge gateway` refuses to start and names it', async () => {
    const [lint, start, withSecret] = await Promise.all([
      cli(['lint', UNSET_ENV]),
      cli(['gateway', '--config', UNSET_ENV], { timeoutMs: 15_000 }),
      cli(['lint', UNSET_ENV], { env: { DB_CLI_TEST_SECRET: 'set' } }),
    ]);
    assert.equal(lint.code, 0, lint.stdout + lint.stderr);
    assert.match(lint.stdout, /:4:77: warning: identity\.clientSecret: environment variable DB_CLI_TEST_SECRET is not set/);

    assert.notEqual(start.code, 0);
    assert.notEqual(start.code, null, 'the gateway exited by itself instead of serving');
    assert.match(start.stderr, /4:77: error: identity\.clientSecret: environment variable DB_CLI_TEST_SECRET is not set/);

    assert.doesNotMatch(withSecret.stdout, /DB_CLI_TEST_SECRET/);
  });

  it('a signInFrequency of 0s: lint and `drawbridge gateway` refuse it alike, at the value', async () => {
    // The policy reaches the app through when.apps: the start used to fail at the app, saying "not a duration".
    const file = write(
      'sign-in-frequency.yaml',
      `gateway:
  publicUrl: http://localhost:8080
  listen: { http: 127.0.0.1:0 }
identity: { issuer: http://127.0.0.1:9, clientId: drawbridge, clientSecret: s }
session: { secrets: ["0123456789abcdef0123456789abcdef"] }
policies:
  fresh-sign-in:
    when: { apps: [Payroll] }
    session: { signInFrequency: 0s }
apps:
  - name: Payroll
    externalUrl: http://payroll.localhost/
    internalUrl: http://127.0.0.1:3001/
`,
    );
    const [lint, start] = await Promise.all([cli(['lint', file]), cli(['gateway', '--config', file])]);
    const expected = `${file}:9:33: error: policies.fresh-sign-in.session.signInFrequency: must be at least 1s`;
    assert.equal(lint.code, 1, lint.stdout + lint.stderr);
    assert.ok(lint.stdout.includes(expected), lint.stdout);
    assert.notEqual(start.code, 0);
    assert.notEqual(start.code, null, 'the gateway exited by itself instead of serving');
    assert.ok(start.stderr.includes(expected), start.stderr);
    assert.doesNotMatch(start.stderr, /not a duration|apps\[0\]/);
  });

  it('several files in one run: every file is reported and the worst exit code wins', async () => {
    const valid = VALID;
    // Independent runs, in parallel: each CLI start costs a second on a busy machine.
    const [mixed, unreadable, allValid] = await Promise.all([cli(['lint', valid, INVALID, UNSET_ENV]), cli(['lint', INVALID, GARBAGE, valid]), cli(['lint', valid, REFERENCE])]);
    assert.equal(mixed.code, 1, mixed.stdout + mixed.stderr);
    assert.match(mixed.stdout, new RegExp(`invalid\\.yaml:9:21: error`));
    assert.match(mixed.stdout, /unset-env\.yaml:4:77: warning/);
    assert.match(mixed.stderr, /3 file\(s\): 2 error\(s\), 1 warning\(s\)/);

    assert.equal(unreadable.code, 2, `unreadable beats invalid\n${unreadable.stdout}${unreadable.stderr}`);
    assert.match(unreadable.stdout, /invalid\.yaml:9:21: error/);
    assert.match(unreadable.stdout, /garbage\.yaml:\d+:\d+: error: not valid YAML/);

    assert.equal(allValid.code, 0, allValid.stdout + allValid.stderr);
  });
});

describe('drawbridge lint and gateway without a file: which one they found', function () {
  this.timeout(30_000);
  /** a project whose root holds a valid config, with a subdirectory `sub` */
  const project = () => {
    const root = realpathSync(tempDir('drawbridge-found-'));
    writeFileSync(join(root, 'package.json'), '{"name":"ops"}\n');
    writeFileSync(join(root, 'gateway.config.yaml'), readFileSync(VALID));
    mkdirSync(join(root, 'sub'));
    return root;
  };

  it("an empty gateway.config.yaml in the working directory is the file, reported as empty, not skipped for the parent's", async () => {
    const root = project();
    const empty = join(root, 'sub', 'gateway.config.yaml');
    writeFileSync(empty, '');
    const [lint, start] = await Promise.all([cli(['lint'], { cwd: join(root, 'sub') }), cli(['gateway'], { cwd: join(root, 'sub') })]);
    const expected = `${empty}:1:1: error: the file is empty: it needs at least gateway: and apps:`;
    assert.equal(lint.code, 1, lint.stdout + lint.stderr);
    assert.equal(lint.stdout, `${expected}\n`);
    assert.equal(lint.stderr, `1 file(s): 1 error(s), 0 warning(s) (${empty})\n`);
    assert.notEqual(start.code, null, 'the gateway served a file instead of refusing the empty one');
    assert.notEqual(start.code, 0);
    assert.ok(start.stderr.includes(expected), start.stderr);
  });

  it('`gateway started` names the file the gateway found and serves', async () => {
    const root = project();
    const child = spawn(process.execPath, [CLI, 'gateway', '--no-watch'], { cwd: join(root, 'sub'), env: { PATH: process.env.PATH ?? '' }, stdio: ['ignore', 'pipe', 'pipe'] });
    try {
      const started = await new Promise<Record<string, unknown>>((done, fail) => {
        let out = '';
        child.stdout.on('data', (d: Buffer) => {
          out += d;
          const line = out.split('\n').find((l) => l.includes('"gateway started"'));
          if (line) done(JSON.parse(line));
        });
        child.on('exit', (code) => fail(new Error(`exited ${code} before starting: ${out}`)));
      });
      assert.equal(started.config, join(root, 'gateway.config.yaml'));
    } finally {
      child.kill('SIGTERM');
    }
  });
});
