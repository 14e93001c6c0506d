import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { eventually, sleep, spawnGateway, startGateway, tempDir } from '../support/harness.js';
import { PROBE_PLUGIN, traceLines } from '../plugins/support.js';
import { Browser, startStack, type Stack } from '../identity/support.js';

/** An sso plugin that carries a ticket in the header its options name, as kcd-shim does with delegationHeader. */
const TICKET_PLUGIN = `export default {
  name: 'ticket-sso', kind: 'sso', apiVersion: 1,
  optionsSchema: { type: 'object', properties: { header: { type: 'string' } }, required: ['header'], additionalProperties: false },
  create(options) {
    const header = options.header.toLowerCase();
    return { name: 'ticket-sso', kind: 'sso', stripHeaders: [header], run: (ctx) => ({ kind: 'continue', setHeaders: { [header]: 'Negotiate real-for-' + ctx.identity.user } }) };
  },
};
`;

describe('pipeline: compile turns a plugin\'s stripHeaders into what the edge drops', function () {
  this.timeout(30_000);
  let s: Stack;
  before(async () => {
    const dir = tempDir();
    const plugin = join(dir, 'ticket-sso.mjs');
    writeFileSync(plugin, TICKET_PLUGIN);
    s = await startStack({
      extraYaml: `plugins: [${JSON.stringify(plugin)}]`,
      apps: (backend) => `
  - name: Payroll
    externalUrl: http://app.localhost/
    internalUrl: ${backend}/
    preAuth: oidc
    sso: { plugin: ticket-sso, options: { header: X_Kerberos_Ticket } }
`,
    });
  });
  after(async () => s?.stop());

  const last = () => s.backend.received[s.backend.received.length - 1]!;

  it('a name written with "_" also drops the client\'s dashed and dotted spellings; the app gets only the plugin\'s value', async () => {
    const b = new Browser();
    assert.equal((await b.browse(`${s.origin('app')}/`, { user: 'carol', password: 'carol-pw' })).res.status, 200);
    const res = await b.get(`${s.origin('app')}/pay`, { 'x-kerberos-ticket': 'Negotiate forged', 'x.kerberos.ticket': 'Negotiate forged2', 'x_kerberos_ticket': 'Negotiate forged3' });
    assert.equal(res.status, 200);
    const h = last().headers;
    assert.equal(last().url, '/pay');
    assert.equal(h['x_kerberos_ticket'], 'Negotiate real-for-carol');
    assert.equal(h['x-kerberos-ticket'], undefined);
    assert.equal(h['x.kerberos.ticket'], undefined);
  });
});

/** An sso plugin whose create() misbehaves as options.mode says. */
const ODD_PLUGIN = `export default {
  name: 'odd', kind: 'sso', apiVersion: 1, optionsSchema: { type: 'object' },
  create(options) {
    if (options.mode === 'throws') throw new Error('tokenEndpoint is not reachable from here');
    const run = () => ({ kind: 'continue' });
    if (options.mode === 'no-run') return { name: 'odd', kind: 'sso' };
    if (options.mode === 'bad-strip') return { name: 'odd', kind: 'sso', run, stripHeaders: ['x ok'] };
    if (options.mode === 'shared-strip') return { name: 'odd', kind: 'sso', run, stripHeaders: ['x-remote-user', 'Content_Type'] };
    return { name: 'odd', kind: options.mode, run };
  },
};
`;

describe('pipeline: compile refuses a stage it cannot place, at the app\'s plugin reference', function () {
  this.timeout(20_000);
  const dir = tempDir();
  writeFileSync(join(dir, 'odd.mjs'), ODD_PLUGIN);
  // line 12, col 15: the value of apps[0].sso.plugin
  const config = (mode: string) => `gateway:
  publicUrl: http://gw.test
  listen: { http: 127.0.0.1:0 }
identity: { issuer: http://127.0.0.1:19900, clientId: drawbridge, clientSecret: s }
session: { secrets: ["0123456789abcdef0123456789abcdef"] }
plugins: [./odd.mjs]
apps:
  - name: Payroll
    externalUrl: http://payroll.test/
    internalUrl: http://127.0.0.1:19901/
    sso:
      plugin: odd
      options: { mode: ${JSON.stringify(mode)} }
`;
  const refusal = async (mode: string): Promise<Error & { code?: string }> => {
    let started: Awaited<ReturnType<typeof startGateway>> | undefined;
    try {
      started = await startGateway(config(mode), { dir, file: `${mode}.yaml` });
    } catch (e) {
      return e as Error;
    }
    await started.stop();
    throw new Error(`the gateway started with a stage of mode ${mode}`);
  };

  const cases: { mode: string; says: RegExp }[] = [
    { mode: 'Sso', says: /app Payroll: plugin odd: its stage has kind "Sso", but the plugin's kind is "sso"/ },
    { mode: 'access', says: /app Payroll: plugin odd: its stage has kind "access", but the plugin's kind is "sso"/ },
    { mode: 'no-run', says: /app Payroll: plugin odd: its stage has no run\(\) function/ },
    { mode: 'bad-strip', says: /app Payroll: plugin odd: its stage's stripHeaders must be a list of header names/ },
    { mode: 'shared-strip', says: /app Payroll: plugin odd: its stage's stripHeaders names Content_Type, which clients send to every app/ },
    { mode: 'throws', says: /app Payroll: plugin odd refused to build its stage: tokenEndpoint is not reachable from here/ },
  ];
  for (const c of cases) {
    it(`${c.mode}: the config is refused with the file, line and column of sso.plugin`, async () => {
      const e = await refusal(c.mode);
      assert.equal(e.code, 'ERR_CONFIG_COMPILE', e.message);
      assert.ok(e.message.startsWith(`${join(dir, `${c.mode}.yaml`)}:12:15: error: apps[0].sso.plugin: `), e.message);
      assert.match(e.message, c.says);
    });
  }
});

/** Config of one app whose sso.plugin (line 12, col 15) is PROBE_PLUGIN with these options. */
const probeConfig = (options: Record<string, string>) => `gateway:
  publicUrl: http://gw.test
  listen: { http: 127.0.0.1:0 }
identity: { issuer: http://127.0.0.1:19900, clientId: drawbridge, clientSecret: s }
session: { secrets: ["0123456789abcdef0123456789abcdef"] }
plugins: [./probe.mjs]
apps:
  - name: Payroll
    externalUrl: http://payroll.test/
    internalUrl: http://127.0.0.1:19901/
    sso:
      plugin: probe
      options: ${JSON.stringify(options)}
`;

describe('pipeline: a plugin whose create() never settles', function () {
  this.timeout(20_000);

  it('the gateway exits 1 once the deadline passes, naming the app and the file:line:col of sso.plugin (it exited 0 in silence)', async () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'probe.mjs'), PROBE_PLUGIN);
    const file = join(dir, 'gateway.config.yaml');
    writeFileSync(file, probeConfig({ mode: 'create-hangs' }));
    const t0 = Date.now();
    const gw = spawnGateway(file, ['--no-watch'], { DRAWBRIDGE_PLUGIN_TIMEOUT: '1s' });
    const kill = setTimeout(() => gw.child.kill('SIGKILL'), 15_000);
    const { code, at } = await gw.exited;
    clearTimeout(kill);
    assert.equal(code, 1, gw.output());
    assert.ok(gw.output().includes(`${file}:12:15: error: apps[0].sso.plugin: app Payroll: plugin probe did not build its stage: its create() did not finish within 1 s, the limit for a plugin (DRAWBRIDGE_PLUGIN_TIMEOUT)`), gw.output());
    assert.ok(at - t0 < 10_000, `exited after ${at - t0} ms`);
  });
});

describe('pipeline: compile disposes every stage it built for a config it refuses', function () {
  this.timeout(20_000);
  const setup = () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'probe.mjs'), PROBE_PLUGIN);
    // outside the config folder: a write there is itself a reason to reload
    return { dir, trace: join(dir, '..', `${dir.split('/').pop()}-trace.log`) };
  };

  it('at start, a stage of the wrong kind is disposed and the gateway exits 1 (it ran on, listening on nothing, its timer ticking)', async () => {
    const { dir, trace } = setup();
    const file = join(dir, 'gateway.config.yaml');
    writeFileSync(file, probeConfig({ mode: 'wrong-kind', tag: 'x', trace }));
    const gw = spawnGateway(file);
    const exited = await Promise.race([gw.exited, sleep(10_000).then(() => undefined)]);
    if (!exited) gw.child.kill('SIGKILL');
    assert.equal(exited?.code, 1, `still running after 10 s: ${gw.output()}`);
    assert.ok(gw.output().includes(`${file}:12:15: error: apps[0].sso.plugin: app Payroll: plugin probe: its stage has kind "access", but the plugin's kind is "sso"`), gw.output());
    assert.deepEqual(traceLines(trace), ['create x', 'dispose x']);
  });

  it('on reload, each attempt at a refused file (the poll retries it every few seconds) disposes the stage it built', async () => {
    const { dir, trace } = setup();
    const gw = await startGateway(probeConfig({ tag: 'good', trace }), { dir, pollMs: 300 });
    try {
      writeFileSync(gw.configFile, probeConfig({ mode: 'wrong-kind', tag: 'bad', trace }));
      await sleep(2000);
      const count = (line: string) => traceLines(trace).filter((l) => l === line).length;
      assert.ok(count('create bad') >= 3, `the broken file was built ${count('create bad')} time(s)`);
      await eventually(() => count('dispose bad') === count('create bad'), 1000);
      assert.equal(count('dispose good'), 0, 'the live generation keeps its stage');
      assert.ok(gw.logs.some((l) => /^config rejected, still serving generation \d+: .*its stage has kind "access"/.test(String(l.msg))));
    } finally {
      await gw.stop();
    }
  });

  it('a stage the app already had is disposed when a later one of the same app fails', async () => {
    const { dir, trace } = setup();
    const disposed: string[] = [];
    const extraStages = () => [{ name: 'policy-probe', kind: 'access' as const, run: () => ({ kind: 'continue' as const }), dispose: () => void disposed.push('policy-probe') }];
    await assert.rejects(startGateway(probeConfig({ mode: 'throws', tag: 'x', trace }), { dir, compileHooks: { extraStages } }), /plugin probe refused to build its stage: the ticket service said no/);
    assert.deepEqual(disposed, ['policy-probe']);
  });
});

describe('pipeline: a plugin\'s logger', function () {
  this.timeout(30_000);

  it('redacts credentials in what a plugin logs of the request: the cookies it is sent are not written', async () => {
    const dir = tempDir();
    const plugin = join(dir, 'probe.mjs');
    writeFileSync(plugin, PROBE_PLUGIN);
    const s = await startStack({
      extraYaml: `plugins: [${JSON.stringify(plugin)}]`,
      apps: (backend) => `
  - name: Payroll
    externalUrl: http://app.localhost/
    internalUrl: ${backend}/
    preAuth: oidc
    sso: { plugin: probe, options: { mode: log-ctx } }
`,
    });
    try {
      const b = new Browser();
      assert.equal((await b.browse(`${s.origin('app')}/`, { user: 'carol', password: 'carol-pw' })).res.status, 200);
      b.jar.get(new URL(s.origin('app')).host)!.set('pref', 'cookie-secret-value');
      const res = await b.get(`${s.origin('app')}/pay`);
      assert.match(JSON.parse(res.body).headers.cookie, /pref=cookie-secret-value/, 'the app gets its cookie');
      assert.equal(res.status, 200);
      const lines = s.gw.logs.filter((l) => l.msg === 'probe saw the request');
      assert.ok(lines.length >= 1);
      const text = JSON.stringify(lines);
      assert.ok(text.includes('"path":"/pay"'), text.slice(0, 300));
      assert.doesNotMatch(text, /cookie-secret-value/);
      assert.match(text, /\[redacted\]/);
    } finally {
      await s.stop();
    }
  });
});
