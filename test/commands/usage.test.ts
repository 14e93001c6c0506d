import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { join, resolve } from 'node:path';
import { ConnectorCa } from '../../src/connector/ca.js';
import { createToken } from '../../src/connector/tokens.js';
import { tempDir, type TestGateway } from '../support/harness.js';
import { hubUrl, killConnector, startConnector, startEnrolledHub, token, waitChannels, type EnrolledHub } from '../connector/support.js';

const CLI = resolve('dist/src/cli.js');

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function run(args: string[], env: NodeJS.ProcessEnv = {}, cwd?: string): Promise<Run> {
  return new Promise((r) => {
    execFile(process.execPath, [CLI, ...args], { env: { ...process.env, DRAWBRIDGE_DEBUG: '', ...env }, timeout: 15_000, cwd }, (err, stdout, stderr) =>
      r({ code: err ? (typeof err.code === 'number' ? err.code : null) : 0, stdout, stderr }),
    );
  });
}

/** What a user must see: the exit code, the problem on the first line, and no JavaScript stack. */
function assertOneLine(r: Run, code: number, command: string, problem: RegExp): void {
  const shown = `exit ${r.code}\n${r.stderr}`;
  assert.equal(r.code, code, shown);
  const [first, ...rest] = r.stderr.split('\n');
  assert.ok(first.startsWith(`drawbridge ${command}: `), shown);
  assert.match(first, problem, shown);
  assert.doesNotMatch(r.stderr, /^\s+at /m, `no stack trace:\n${shown}`);
  // Bad usage says how the command is used; a failure is the one line alone.
  if (code === 2 && !/^cannot read /.test(first.slice(`drawbridge ${command}: `.length))) assert.match(rest.join('\n'), new RegExp(`^usage: drawbridge ${command.split(' ')[0]} `, 'm'), shown);
}

describe('the CLI: bad usage and expected failures are one line and an exit code, not a stack trace', function () {
  this.timeout(60_000);

  describe('bad usage exits 2 with a usage hint', () => {
    const cases: [string[], string, RegExp][] = [
      [['lint', '--bogus'], 'lint', /unknown option --bogus/],
      [['lint', '--format'], 'lint', /--format needs a value/],
      [['gateway', '--bogus'], 'gateway', /unknown option --bogus/],
      [['gateway', 'extra.yaml'], 'gateway', /unexpected argument extra\.yaml/],
      [['schema', 'extra'], 'schema', /unexpected argument extra/],
      [['schema', '--config'], 'schema', /--config needs a value/],
      [['what-if', '--bogus'], 'what-if', /unknown option --bogus/],
      [['test-policies', '--bogus'], 'test-policies', /unknown option --bogus/],
      [['token', 'create', '--group', 'g1', '--bogus'], 'token create', /unknown option --bogus/],
      [['connectors', 'extra'], 'connectors', /unexpected argument extra/],
      [['connectors', '--json=yes'], 'connectors', /--json takes no value/],
      [['connector', 'run', '--bogus'], 'connector run', /unknown option --bogus/],
      [['connector', 'run', '--channels', '-3'], 'connector run', /--channels is followed by an option, not a value/],
      [['connector', 'run', '--channels=-3'], 'connector run', /--channels must be a whole number from 1 to 16, not "-3"/],
      [['connector', 'run', '--channels', 'abc'], 'connector run', /--channels must be a whole number from 1 to 16, not "abc"/],
      [['connector', 'run', '--channels', 'two'], 'connector run', /--channels must be a whole number/],
      [['connector', 'run', '--channels', '0'], 'connector run', /--channels must be a whole number from 1 to 16, not "0"/],
      [['connector', 'run', '--channels', '2.5'], 'connector run', /--channels must be a whole number/],
      [['connector', 'run', '--channels', '17'], 'connector run', /--channels must be a whole number from 1 to 16, not "17"/],
      [['connector', 'run', '--drain-timeout', 'abc'], 'connector run', /--drain-timeout must be a duration such as 30s/],
      [['connector', 'enroll', '--gateway', 'notaurl', '--token', 'x'], 'connector enroll', /--gateway must be a URL like https:\/\/host:port .*not "notaurl"/],
      // an option with a short alias is named by its long name (Node's text gave "-g, needs a value")
      [['token', 'create', '--group'], 'token create', /^drawbridge token create: --group needs a value$/],
      [['connectors', '-c'], 'connectors', /^drawbridge connectors: --config needs a value$/],
      [['what-if', '--app', 'X', '--config'], 'what-if', /^drawbridge what-if: --config needs a value$/],
      [['schema', '-c'], 'schema', /^drawbridge schema: --config needs a value$/],
      [['demo', '-c'], 'demo', /^drawbridge demo: --config needs a value$/],
      // an option given twice: the last one won in silence (a token for beta, text where JSON was asked for)
      [['token', 'create', '--group', 'alpha', '--group', 'beta'], 'token create', /^drawbridge token create: --group is given twice \(it takes one value\)$/],
      [['token', 'create', '-g', 'alpha', '--group=beta'], 'token create', /^drawbridge token create: --group is given twice/],
      [['lint', '--format', 'json', '--format', 'text'], 'lint', /^drawbridge lint: --format is given twice/],
      [['what-if', '-c', 'a.yaml', '--config', 'b.yaml', '--app', 'X'], 'what-if', /^drawbridge what-if: --config is given twice/],
      [['connectors', '--json', '--json'], 'connectors', /^drawbridge connectors: --json is given twice$/],
      // each of these printed the usage alone, or the problem alone
      [['connector', 'enroll', '--gateway', 'https://127.0.0.1:45144'], 'connector enroll', /--token is required/],
      [['connector'], 'connector', /a subcommand is required: enroll or run/],
      [['connector', 'foo'], 'connector', /unknown subcommand "foo"/],
      [['token'], 'token', /a subcommand is required: create/],
      [['token', 'list'], 'token', /unknown subcommand "list"/],
      [['token', 'create'], 'token create', /--group NAME is required/],
      [['token', 'create', '--group', 'g', '--ttl', 'soon'], 'token create', /invalid --ttl "soon"/],
      [['test-policies'], 'test-policies', /a test file is required/],
      [['test-policies', 'a.yaml', 'b.yaml'], 'test-policies', /unexpected argument b\.yaml/],
      [['lint', '--format', 'xml'], 'lint', /--format must be text, json or github, not "xml"/],
      [['connector', 'run', '--transport', 'h3'], 'connector run', /--transport must be h2 or websocket, not "h3"/],
      [['demo', '--bogus'], 'demo', /unknown option --bogus/],
      // options of a running connector, which enroll accepted and dropped
      [['connector', 'enroll', '--gateway', 'https://127.0.0.1:45999', '--token', 'x', '--channels', '9', '--transport', 'nope'], 'connector enroll', /--channels and --transport are options of connector run, not enroll/],
      [['connector', 'enroll', '--drain-timeout', '3s'], 'connector enroll', /--drain-timeout is an option of connector run, not enroll/],
    ];
    for (const [args, command, problem] of cases) {
      it(`drawbridge ${args.join(' ')}`, async () => assertOneLine(await run(args), 2, command, problem));
    }

    it('connector run with a --gateway that is no https URL shows the usage of connector run, not of enroll', async () => {
      const dir = join(tempDir(), 'state');
      const r = await run(['connector', 'run', '--state-dir', dir, '--gateway', 'http://127.0.0.1:45144', '--token', 'x']);
      assertOneLine(r, 2, 'connector run', /--gateway must be https:/);
      assert.match(r.stderr, /\nusage: drawbridge connector run \[--state-dir DIR\]/);
    });

    // A connector run as a service often takes these from its environment and gives no option:
    // it was told to fix a --transport or --gateway nobody wrote.
    const fromEnv: [string[], NodeJS.ProcessEnv, string, RegExp][] = [
      [['connector', 'run', '--state-dir', '<dir>'], { DRAWBRIDGE_CONNECTOR_TRANSPORT: 'ws' }, 'connector run', /^drawbridge connector run: DRAWBRIDGE_CONNECTOR_TRANSPORT must be h2 or websocket, not "ws"$/],
      [['connector', 'enroll', '--state-dir', '<dir>'], { DRAWBRIDGE_GATEWAY: 'http://127.0.0.1:45144', DRAWBRIDGE_TOKEN: 'x' }, 'connector enroll', /^drawbridge connector enroll: DRAWBRIDGE_GATEWAY must be https:\/\/host:port \(the connectors\.listen endpoint speaks TLS only\), not "http:\/\/127\.0\.0\.1:45144"$/],
      [['connector', 'enroll', '--state-dir', '<dir>', '--gateway', 'http://127.0.0.1:45144'], { DRAWBRIDGE_TOKEN: 'x' }, 'connector enroll', /^drawbridge connector enroll: --gateway must be https:/],
    ];
    for (const [args, env, command, problem] of fromEnv) {
      it(`${Object.keys(env).join(' ')} drawbridge ${args.join(' ')}: the problem names where the value came from`, async () => {
        const dir = join(tempDir(), 'state');
        const env0 = { ...env };
        for (const name of ['DRAWBRIDGE_CONNECTOR_TRANSPORT', 'DRAWBRIDGE_GATEWAY', 'DRAWBRIDGE_TOKEN']) env0[name] ??= undefined;
        assertOneLine(await run(args.map((a) => (a === '<dir>' ? dir : a)), env0), 2, command, problem);
        assert.equal(existsSync(dir), false, 'a refused command leaves no state dir behind');
      });
    }
    // A service file's `NAME=` (a value left out) is no value: the defaults apply, and what is
    // missing is said, not a state dir "" or a transport "".
    it('empty DRAWBRIDGE_* variables count as unset, and a refused run or enroll makes no state dir', async () => {
      const cwd = tempDir();
      const empty = { DRAWBRIDGE_CONNECTOR_STATE_DIR: '', DRAWBRIDGE_CONNECTOR_TRANSPORT: '', DRAWBRIDGE_GATEWAY: '', DRAWBRIDGE_TOKEN: '' };
      assertOneLine(await run(['connector', 'run'], empty, cwd), 2, 'connector run', /^drawbridge connector run: \.\/connector-state holds no enrollment; give --gateway and --token/);
      assertOneLine(await run(['connector', 'enroll'], empty, cwd), 2, 'connector enroll', /^drawbridge connector enroll: --gateway and --token are required/);
      assertOneLine(await run(['connector', 'run', '--gateway', 'http://127.0.0.1:1', '--token', 'x'], empty, cwd), 2, 'connector run', /--gateway must be https:/);
      assert.deepEqual(readdirSync(cwd), [], 'no ./connector-state was made');
    });
  });

  describe('--help and -h', () => {
    const commands = [['gateway'], ['lint'], ['schema'], ['what-if'], ['test-policies'], ['demo'], ['token'], ['token', 'create'], ['connector'], ['connector', 'enroll'], ['connector', 'run'], ['connectors']];
    for (const command of commands) {
      it(`drawbridge ${command.join(' ')} --help and -h print its usage, exit 0`, async () => {
        for (const flag of ['--help', '-h']) {
          const r = await run([...command, flag]);
          assert.equal(r.code, 0, `${flag}: exit ${r.code}\n${r.stderr}`);
          assert.equal(r.stderr, '');
          assert.match(r.stdout, new RegExp(`^usage:\\s+drawbridge ${command.join(' ')} `), flag);
        }
      });
    }

    it('connector --help and the README say where the state dir and the transport default from', async () => {
      const help = (await run(['connector', '--help'])).stdout;
      const readme = readFileSync(resolve('README.md'), 'utf8');
      for (const said of ['DRAWBRIDGE_CONNECTOR_STATE_DIR', './connector-state', 'DRAWBRIDGE_CONNECTOR_TRANSPORT']) {
        assert.ok(help.includes(said), `${said} in connector --help:\n${help}`);
        assert.ok(readme.includes(said), `${said} in the README`);
      }
    });

    it('drawbridge --help shows every option the README documents for each command', async () => {
      const r = await run(['--help']);
      assert.equal(r.code, 0);
      const readme = readFileSync(resolve('README.md'), 'utf8');
      const table = readme.slice(readme.indexOf('## Commands'), readme.indexOf('Every command exits 2'));
      const rows = [...table.matchAll(/^\| `drawbridge ([a-z-]+(?: (?:create|enroll|run))?)([^`]*)`/gm)];
      assert.ok(rows.length >= 10, `${rows.length} rows`);
      for (const [, command, synopsis] of rows) {
        const line = r.stdout.split('\n').findIndex((l) => l.startsWith(`  ${command} `) || l === `  ${command}`);
        assert.ok(line >= 0, `${command} is listed`);
        // a command's entry runs until the next command's line
        const entry = r.stdout.split('\n').slice(line, line + 4).join('\n').split(/\n {2}[a-z]/)[0];
        for (const flag of synopsis.match(/--[a-z-]+/g) ?? []) assert.ok(entry.includes(flag), `${command} ${flag} in:\n${entry}`);
      }
    });
  });

  it('-c is short for --config in schema and demo too (the README says so for every command)', async () => {
    const dir = tempDir();
    const file = join(dir, 'gateway.config.yaml');
    writeFileSync(file, 'plugins: [drawbridge-plugin-nowhere]\n');
    const schema = await run(['schema', '-c', file]);
    assert.equal(schema.code, 0, schema.stderr);
    assert.match(schema.stderr, /drawbridge-plugin-nowhere/, 'the plugins of the file given with -c were read');
    assertOneLine(await run(['demo', '-c', join(dir, 'nope.yaml')]), 2, 'demo', /cannot read .*nope\.yaml: ENOENT/);
  });

  describe('gateway', () => {
    const dir = tempDir();

    it('a config file that is missing or a directory is unreadable (exit 2, as in lint)', async () => {
      assertOneLine(await run(['gateway', '--config', join(dir, 'missing.yaml')]), 2, 'gateway', /cannot read .*missing\.yaml: no such file/);
      assertOneLine(await run(['gateway', '--config', dir]), 2, 'gateway', /cannot read .*: it is a directory/);
    });

    it('a port in use is one line, and a certificate that cannot be used is a config problem at its key (exit 1)', async () => {
      const taken = net.createServer();
      await new Promise<void>((r) => taken.listen(0, '127.0.0.1', r));
      try {
        const port = (taken.address() as net.AddressInfo).port;
        const file = join(dir, 'busy.yaml');
        writeFileSync(file, `gateway:\n  publicUrl: http://app.test\n  listen: { http: 127.0.0.1:${port} }\napps:\n  - name: App\n    externalUrl: http://app.test/\n    internalUrl: http://127.0.0.1:9/\n    preAuth: passthrough\n`);
        assertOneLine(await run(['gateway', '--config', file, '--no-watch']), 1, 'gateway', new RegExp(`cannot start: 127\\.0\\.0\\.1:${port} is already in use`));
      } finally {
        taken.close();
      }
      writeFileSync(join(dir, 'gw.crt'), 'not a certificate\n');
      writeFileSync(join(dir, 'gw.key'), 'not a key\n');
      const tls = join(dir, 'tls.yaml');
      writeFileSync(tls, `gateway:\n  publicUrl: https://app.test\n  listen: { https: 127.0.0.1:0 }\n  tls: { cert: ./gw.crt, key: ./gw.key }\napps:\n  - name: App\n    externalUrl: https://app.test/\n    internalUrl: http://127.0.0.1:9/\n    preAuth: passthrough\n`);
      // the config check reads certificate files now: each problem with its position, no stack
      const bad = await run(['gateway', '--config', tls, '--no-watch']);
      assert.equal(bad.code, 1, bad.stderr);
      assert.match(bad.stderr, /tls\.yaml:4:16: error: gateway\.tls\.cert: file "\.\/gw\.crt" holds no PEM certificate/);
      assert.doesNotMatch(bad.stderr, /^\s+at /m);
    });

    it('DRAWBRIDGE_DEBUG=1 adds the stack trace', async () => {
      const r = await run(['gateway', '--config', dir], { DRAWBRIDGE_DEBUG: '1' });
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr, /^drawbridge gateway: cannot read /);
      assert.match(r.stderr, /^\s+at /m);
    });
  });

  describe('connector enroll and run against a real hub', () => {
    let hub: EnrolledHub;
    let gw: TestGateway;
    let dir: string;
    let enrolled: string;

    before(async () => {
      hub = await startEnrolledHub();
      ({ gw, dir, enrolled } = hub);
    });
    after(async () => hub?.stop());

    const enroll = (gateway: string, tok: string, state = join(dir, `s-${Math.random().toString(36).slice(2)}`)) => run(['connector', 'enroll', '--gateway', gateway, '--token', tok, '--state-dir', state]);

    it('a malformed token, to enroll and to run: refused before a state dir is made (an empty one was left behind)', async () => {
      const state = join(dir, 'malformed');
      assertOneLine(await enroll(hubUrl(gw), 'garbage', state), 1, 'connector enroll', /not a Drawbridge enrollment token/);
      assertOneLine(await run(['connector', 'run', '--gateway', hubUrl(gw), '--token', 'dbt1.garbage.x', '--state-dir', state]), 1, 'connector run', /the enrollment token is damaged/);
      assert.equal(existsSync(state), false, 'no state dir left behind');
    });

    it('a reused token, and a token for a group the gateway does not have, are refused; the state dir the command made is gone again, one the operator made is kept', async () => {
      const tok = token(gw);
      assert.equal((await enroll(hubUrl(gw), tok)).code, 0);
      const state = join(dir, 'refused');
      assertOneLine(await enroll(hubUrl(gw), tok, state), 1, 'connector enroll', /enrollment refused \(\d+\): .*already used/);
      assert.equal(existsSync(state), false, 'no state dir left behind by enroll');
      assertOneLine(await run(['connector', 'run', '--gateway', hubUrl(gw), '--token', tok, '--state-dir', state]), 1, 'connector run', /enrollment refused \(\d+\): .*already used/);
      assert.equal(existsSync(state), false, 'no state dir left behind by run');
      mkdirSync(state);
      assertOneLine(await enroll(hubUrl(gw), token(gw, 'no-such-group'), state), 1, 'connector enroll', /enrollment refused \(\d+\)/);
      assert.deepEqual(readdirSync(state), [], 'the operator\'s dir is kept, empty');
    });

    it('a CA that does not match the pin, and a certificate that does not name the host', async () => {
      const other = tempDir();
      const ca = await ConnectorCa.loadOrCreate(other);
      assertOneLine(
        await enroll(hubUrl(gw), createToken(other, 'g1', 60_000, ca.pin)),
        1,
        'connector enroll',
        new RegExp(`the gateway at ${hubUrl(gw).replace(/\./g, '\\.')} presented a connector CA that does not match the pin in the token: refusing to enroll\\. The token was made by another gateway, or before this gateway's connector CA changed; make a new one with \`drawbridge token create\` on the gateway at `),
      );
      // The hub listens on 127.0.0.1; its certificate names that, not the IPv4-mapped IPv6 form.
      const mapped = hubUrl(gw).replace('127.0.0.1', '[::ffff:127.0.0.1]');
      assertOneLine(await enroll(mapped, token(gw)), 1, 'connector enroll', /cannot enroll at .*: the certificate does not name the host: .*connectors\.serverNames/);
    });

    it('into a state dir that already holds an enrollment: refused, the dir left as it was, the token unused', async () => {
      const before = ['key.pem', 'cert.pem', 'connector.json'].map((f) => readFileSync(join(enrolled, f), 'utf8'));
      const id = JSON.parse(before[2]!).id as string;
      const tok = token(gw);
      const r = await enroll(hubUrl(gw), tok, enrolled);
      assertOneLine(r, 1, 'connector enroll', new RegExp(`^drawbridge connector enroll: ${enrolled} already holds an enrollment \\(connector ${id}, group g1, gateway https://127\\.0\\.0\\.1:\\d+\\); it is left as it is\\. To enroll anew, give an empty --state-dir$`));
      assert.equal(r.stdout, '');
      assert.deepEqual(['key.pem', 'cert.pem', 'connector.json'].map((f) => readFileSync(join(enrolled, f), 'utf8')), before);
      assert.equal((await enroll(hubUrl(gw), tok)).code, 0, 'the token was not spent');
    });

    it('a --ca that is missing or a directory is said as a local file, before the gateway is contacted (it read "cannot enroll at <gateway>")', async () => {
      const state = join(dir, 'ca-missing');
      const missing = await run(['connector', 'enroll', '--gateway', hubUrl(gw), '--token', token(gw), '--state-dir', state, '--ca', join(dir, 'nowhere.pem')]);
      assertOneLine(missing, 1, 'connector enroll', new RegExp(`^drawbridge connector enroll: --ca ${join(dir, 'nowhere.pem')}: no such file$`));
      const folder = await run(['connector', 'enroll', '--gateway', hubUrl(gw), '--token', token(gw), '--state-dir', state, '--ca', dir]);
      assertOneLine(folder, 1, 'connector enroll', new RegExp(`^drawbridge connector enroll: --ca ${dir}: a directory, not a certificate file$`));
      assert.equal(existsSync(state), false, 'no state dir made for an enrollment that cannot start');
    });

    it('a gateway that does not answer', async () => {
      const closed = net.createServer();
      await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
      const port = (closed.address() as net.AddressInfo).port;
      await new Promise((r) => closed.close(r));
      const state = join(dir, 'unanswered');
      assertOneLine(await enroll(`https://127.0.0.1:${port}`, token(gw), state), 1, 'connector enroll', new RegExp(`127\\.0\\.0\\.1:${port} refused the connection`));
      assert.equal(existsSync(state), false, 'no state dir left behind');
    });

    it('run: a bad --channels stops before the connector starts (it ran with no channels and exited 0)', async () => {
      for (const n of ['abc', '0', '2.5']) {
        const r = await run(['connector', 'run', '--state-dir', enrolled, '--channels', n]);
        assertOneLine(r, 2, 'connector run', /--channels must be a whole number from 1 to 16/);
        assert.doesNotMatch(r.stdout + r.stderr, /connector starting/);
      }
      // A count in range still runs with that many channels; --drain-timeout takes a duration.
      const conn = startConnector(enrolled, { args: ['--channels', '3', '--drain-timeout', '1s'] });
      try {
        assert.equal((await waitChannels(gw, 3)).length, 3);
      } finally {
        await killConnector(conn, 'SIGTERM');
      }
      assert.equal(await conn.exited, 0, conn.lines.join('\n'));
    });

    it('run: a broken state dir is named', async () => {
      const broken = join(dir, 'broken');
      mkdirSync(broken);
      cpSync(enrolled, broken, { recursive: true });
      writeFileSync(join(broken, 'cert.pem'), 'not a certificate\n');
      assertOneLine(await run(['connector', 'run', '--state-dir', broken]), 1, 'connector run', /broken\/cert\.pem is not a readable PEM certificate \(PEM routines::no start line\); enroll again in an empty --state-dir$/);
      writeFileSync(join(broken, 'connector.json'), '{');
      assertOneLine(await run(['connector', 'run', '--state-dir', broken]), 1, 'connector run', /connector\.json is not valid JSON .*enroll again in an empty --state-dir$/);
    });
  });
});
