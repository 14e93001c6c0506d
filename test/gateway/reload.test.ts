import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { appendFileSync, mkdirSync, renameSync, symlinkSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import WebSocket from 'ws';
import { dirname, join } from 'node:path';
import { eventually, request, sleep, spawnGateway, startEchoBackend, startGateway, tempDir, type EchoBackend, type TestGateway } from '../support/harness.js';
import { EmbeddedIdp } from '../../src/identity/provider/embeddedIdp.js';
import { Browser, CLIENT_SECRET, SECRET_A, USERS, gatewayYaml } from '../identity/support.js';
import { PROBE_PLUGIN, releaseHungCreates, traceLines } from '../plugins/support.js';

const cfg = (backend: string, version: string, extraApp = '') => `
gateway:
  publicUrl: http://gw.test
  listen: { http: 127.0.0.1:0 }
  admin: { listen: 127.0.0.1:0 }
apps:
  - name: Echo
    externalUrl: http://echo.test/
    internalUrl: ${backend}/${version}/
    preAuth: passthrough
${extraApp}`;

const BROKEN = `
gateway:
  publicUrl: http://gw.test
  listen: { http: 127.0.0.1:0 }
apps:
  - name: Echo
    externalUrl: http://echo.test/
    internalUrl: not a url
    preAuth: passthroug
`;

/** Keeps `conns` keep-alive connections busy until stopped; counts every failure. */
function load(url: string, conns: number) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: conns });
  let running = true;
  const stats = { ok: 0, failed: 0, errors: [] as string[], versions: new Set<string>() };
  const worker = async () => {
    while (running) {
      try {
        const res = await request(`${url}/probe`, { headers: { host: 'echo.test' }, agent });
        if (res.status === 200) {
          stats.ok++;
          stats.versions.add(res.json().url.split('/')[1]);
        } else {
          stats.failed++;
          stats.errors.push(`${res.status} ${res.body.slice(0, 120)}`);
        }
      } catch (e) {
        stats.failed++;
        stats.errors.push((e as Error).message);
      }
    }
  };
  const workers = Array.from({ length: conns }, worker);
  return {
    stats,
    stop: async () => {
      running = false;
      await Promise.all(workers);
      agent.destroy();
    },
  };
}

async function seenVersion(gw: TestGateway): Promise<string> {
  const res = await request(`${gw.url}/probe`, { headers: { host: 'echo.test' } });
  return res.status === 200 ? res.json().url.split('/')[1] : `status ${res.status}`;
}

describe('hot reload', function () {
  this.timeout(60_000);
  let backend: EchoBackend;
  before(async () => {
    backend = await startEchoBackend();
  });
  after(() => backend.close());

  it('keeps 50 busy connections error-free through 20 rewrites (valid and invalid, by rename and in place), each valid change live within 1 s', async () => {
    const gw = await startGateway(cfg(backend.url, 'v0'));
    const traffic = load(gw.url, 50);
    try {
      await eventually(() => traffic.stats.ok > 100, 5000);
      for (let i = 1; i <= 20; i++) {
        const valid = i % 2 === 0;
        const text = valid ? cfg(backend.url, `v${i}`) : BROKEN;
        if (i % 4 < 2) {
          // the way editors such as vim save: write a temp file, rename it over the config
          const tmp = join(gw.dir, `.gateway.config.yaml.${i}.tmp`);
          writeFileSync(tmp, text);
          renameSync(tmp, gw.configFile);
        } else {
          writeFileSync(gw.configFile, text);
        }
        if (valid) {
          const t0 = Date.now();
          await eventually(async () => (await seenVersion(gw)) === `v${i}`, 1000, 20);
          assert.ok(Date.now() - t0 <= 1000, `change ${i} visible within 1 s`);
        } else {
          await sleep(250);
          assert.equal(await seenVersion(gw), `v${i - 1}`, 'an invalid file leaves the last good config serving');
        }
      }
    } finally {
      await traffic.stop();
      await gw.stop();
    }
    assert.equal(traffic.stats.failed, 0, `failed requests: ${traffic.stats.errors.slice(0, 5).join('; ')}`);
    assert.ok(traffic.stats.ok > 500, `requests served: ${traffic.stats.ok}`);
  });

  it('logs each problem of an invalid file with line and column, keeps serving, and shows it in metrics', async () => {
    const gw = await startGateway(cfg(backend.url, 'good'));
    try {
      writeFileSync(gw.configFile, BROKEN);
      await eventually(() => gw.logs.some((l) => String(l.problem ?? '').includes('error: apps[0].internalUrl')), 2000);
      const problems = gw.logs.filter((l) => l.problem).map((l) => String(l.problem));
      assert.ok(problems.some((p) => /gateway\.config\.yaml:8:18: error: apps\[0\]\.internalUrl: "not a url" is not a valid URL/.test(p)), problems.join('\n'));
      assert.ok(problems.some((p) => /gateway\.config\.yaml:9:14: error: apps\[0\]\.preAuth/.test(p)), problems.join('\n'));
      assert.equal(await seenVersion(gw), 'good');
      const metrics = (await request(`${gw.adminUrl}/metrics`)).body;
      assert.match(metrics, /^drawbridge_config_last_reload_success 0$/m);
      assert.match(metrics, /drawbridge_config_reloads_total\{outcome="failure"\} [1-9]/);
      const ready = await request(`${gw.adminUrl}/readyz`);
      assert.equal(ready.status, 200, 'still ready: a good config is live');

      // Undoing the edit (the file is again exactly what is live) is the fix: the gauge says so,
      // and breaking it the same way again is logged again.
      writeFileSync(gw.configFile, cfg(backend.url, 'good'));
      await eventually(async () => /^drawbridge_config_last_reload_success 1$/m.test((await request(`${gw.adminUrl}/metrics`)).body), 2000);
      const logged = gw.logs.filter((l) => l.problem).length;
      writeFileSync(gw.configFile, BROKEN);
      await eventually(() => gw.logs.filter((l) => l.problem).length > logged, 2000);
      assert.match((await request(`${gw.adminUrl}/metrics`)).body, /^drawbridge_config_last_reload_success 0$/m);
    } finally {
      await gw.stop();
    }
  });

  it('the safety poll is not counted as a reload: a broken save is one failure however long it stays, an untouched file no reload at all', async () => {
    const gw = await startGateway(cfg(backend.url, 'good'), { pollMs: 50 });
    const count = async (outcome: string) => Number(new RegExp(`drawbridge_config_reloads_total\\{outcome="${outcome}"\\} (\\d+)`).exec((await request(`${gw.adminUrl}/metrics`)).body)?.[1] ?? 0);
    // saved whole (by rename): a poll reading a half-written file would see a second, different break
    const save = (text: string) => {
      writeFileSync(`${gw.configFile}.tmp`, text);
      renameSync(`${gw.configFile}.tmp`, gw.configFile);
    };
    try {
      await sleep(500); // ten polls of a file nobody touched
      assert.equal(await count('unchanged'), 0);
      assert.equal(await count('failure'), 0);
      save(BROKEN);
      await eventually(async () => (await count('failure')) === 1, 2000);
      await sleep(500);
      assert.equal(await count('failure'), 1, 'still one failed edit after ten polls read it');
      // the poll still finds what an event missed: another broken edit counts, as does the fix
      save(BROKEN.replace('not a url', 'still not a url'));
      await eventually(async () => (await count('failure')) === 2, 2000);
      save(cfg(backend.url, 'fixed'));
      await eventually(async () => (await count('success')) === 1, 2000);
      assert.equal(await seenVersion(gw), 'fixed');
    } finally {
      await gw.stop();
    }
  });

  it('drops a removed app on the next request and picks up a new internalUrl', async () => {
    const other = `  - name: Other
    externalUrl: http://other.test/
    internalUrl: ${backend.url}/other/
    preAuth: passthrough
`;
    const gw = await startGateway(cfg(backend.url, 'a', other));
    try {
      assert.equal((await request(`${gw.url}/`, { headers: { host: 'other.test' } })).status, 200);
      const gen = gw.server.generation!.id;
      writeFileSync(gw.configFile, cfg(backend.url, 'b'));
      await eventually(() => gw.server.generation!.id !== gen, 2000);
      assert.equal((await request(`${gw.url}/`, { headers: { host: 'other.test' } })).status, 404);
      assert.equal(await seenVersion(gw), 'b');
    } finally {
      await gw.stop();
    }
  });

  it('closes open WebSockets of an app whose entry or policies changed; others stay open', async () => {
    const apps = (blockEcho: boolean) => `
gateway:
  publicUrl: http://gw.test
  listen: { http: 127.0.0.1:0 }
locations:
  nowhere: [192.0.2.0/24]
policies:
  only-from-nowhere:
    when: { notLocations: [nowhere] }
    grant: ${blockEcho ? 'block' : 'allow'}
apps:
  - name: Echo
    externalUrl: http://echo.test/
    internalUrl: ${backend.url}/
    preAuth: passthrough
    websockets: true
    conditionalAccess: [only-from-nowhere]
  - name: Other
    externalUrl: http://other.test/
    internalUrl: ${backend.url}/
    preAuth: passthrough
    websockets: true
`;
    const gw = await startGateway(apps(false));
    const open = async (host: string) => {
      const ws = new WebSocket(`ws://127.0.0.1:${gw.port}/ws`, { headers: { host } });
      await new Promise((r, j) => (ws.once('open', r), ws.once('error', j)));
      return ws;
    };
    const echoes = (ws: WebSocket) =>
      new Promise<string>((resolve, reject) => {
        ws.once('message', (m) => resolve(String(m)));
        ws.once('close', () => reject(new Error('closed')));
        ws.send('still there?');
      });
    try {
      const echo = await open('echo.test');
      const other = await open('other.test');
      const closed = new Promise<number>((r) => echo.once('close', () => r(Date.now())));
      // a save that changes nothing these apps depend on (an unrelated app is added) closes nothing
      const gen = gw.server.generation!.id;
      writeFileSync(gw.configFile, apps(false) + `  - name: Third\n    externalUrl: http://third.test/\n    internalUrl: ${backend.url}/\n    preAuth: passthrough\n`);
      await eventually(() => gw.server.generation!.id !== gen, 2000);
      assert.equal(await echoes(echo), 'still there?');
      assert.equal(await echoes(other), 'still there?');
      // the policy on Echo now blocks: its open WebSocket is cut, Other's is not
      const changedAt = Date.now();
      writeFileSync(gw.configFile, apps(true));
      const at = await Promise.race([closed, sleep(3000).then(() => assert.fail('the WebSocket of the changed app is still open 3 s after the save'))]);
      assert.ok(at - changedAt < 2000, `closed ${at - changedAt} ms after the save`);
      assert.equal(await echoes(other), 'still there?');
      assert.ok(gw.logs.some((l) => /WebSocket closed: its app or access rules changed/.test(String(l.msg)) && l.app === 'Echo'));
      // and a new connection to Echo is refused by the policy
      await assert.rejects(open('echo.test'), /403/);
      other.close();
    } finally {
      await gw.stop();
    }
  });

  it('a WebSocket the app was still switching to when a reload removed its app, or turned its WebSockets off, is closed at the 101', async () => {
    const apps = (echo: string) => `
gateway:
  publicUrl: http://gw.test
  listen: { http: 127.0.0.1:0 }
apps:
${echo}  - name: Other
    externalUrl: http://other.test/
    internalUrl: ${backend.url}/
    preAuth: passthrough
    websockets: true
`;
    const echo = (websockets: boolean) => `  - name: Echo\n    externalUrl: http://echo.test/\n    internalUrl: ${backend.url}/\n    preAuth: passthrough\n    websockets: ${websockets}\n`;
    const gw = await startGateway(apps(echo(true)), { watch: false });
    // the app takes 800 ms to answer the upgrade; the reload lands in between
    const raced = async (next: string) => {
      writeFileSync(gw.configFile, apps(echo(true)));
      await gw.server.reload();
      const ws = new WebSocket(`ws://127.0.0.1:${gw.port}/ws?ms=800`, { headers: { host: 'echo.test' } });
      const closed = new Promise<number>((r) => ws.once('close', () => r(Date.now())));
      ws.on('error', () => undefined);
      let openedAt = 0;
      ws.once('open', () => (openedAt = Date.now()));
      await sleep(200);
      writeFileSync(gw.configFile, next);
      assert.equal(await gw.server.reload(), 'success');
      const at = await Promise.race([closed, sleep(3000).then(() => assert.fail(`the WebSocket is still open ${openedAt ? Date.now() - openedAt : '?'} ms after the 101`))]);
      assert.ok(!openedAt || at - openedAt < 500, `closed ${at - openedAt} ms after the 101`);
    };
    try {
      await raced(apps(''));
      await raced(apps(echo(false)));
      assert.equal(gw.logs.filter((l) => /WebSocket closed: its app or access rules changed/.test(String(l.msg)) && l.app === 'Echo').length, 2);
      // a reload that leaves Echo's access as it was does not close one
      writeFileSync(gw.configFile, apps(echo(true)));
      assert.equal(await gw.server.reload(), 'success');
      const ws = new WebSocket(`ws://127.0.0.1:${gw.port}/ws?ms=800`, { headers: { host: 'echo.test' } });
      await sleep(200);
      writeFileSync(gw.configFile, apps(echo(true)) + `  - name: Third\n    externalUrl: http://third.test/\n    internalUrl: ${backend.url}/\n    preAuth: passthrough\n`);
      assert.equal(await gw.server.reload(), 'success');
      await new Promise((r, j) => (ws.once('open', r), ws.once('error', j)));
      const echoed = new Promise<string>((r, j) => (ws.once('message', (m) => r(String(m))), ws.once('close', () => j(new Error('closed')))));
      ws.send('still there?');
      assert.equal(await echoed, 'still there?');
      ws.close();
    } finally {
      await gw.stop();
    }
  });

  it('files written beside the config that it does not name (a log, a lock) are no save: no reload is counted', async () => {
    const gw = await startGateway(cfg(backend.url, 'first'));
    const count = async (outcome: string) => Number(new RegExp(`drawbridge_config_reloads_total\\{outcome="${outcome}"\\} (\\d+)`).exec((await request(`${gw.adminUrl}/metrics`)).body)?.[1] ?? 0);
    try {
      const beside = join(dirname(gw.configFile), 'gateway.log');
      for (let i = 0; i < 8; i++) {
        appendFileSync(beside, `line ${i}\n`);
        await sleep(150);
      }
      await sleep(300);
      assert.equal(await count('unchanged'), 0);
      assert.equal(await count('success'), 0);
      // a save of the config itself still reloads (positive control)
      writeFileSync(gw.configFile, cfg(backend.url, 'second'));
      await eventually(async () => (await seenVersion(gw)) === 'second', 2000);
      assert.equal(await count('success'), 1);
    } finally {
      await gw.stop();
    }
  });

  it('a config folder full of other files costs no watcher per file (a home folder or /etc would have used one inotify watch each)', async () => {
    const watchers = () => process.getActiveResourcesInfo().filter((r) => r === 'FSEventWrap').length;
    const before = watchers();
    const dir = tempDir();
    for (let i = 0; i < 300; i++) writeFileSync(join(dir, `other-${i}.txt`), 'x');
    const gw = await startGateway(cfg(backend.url, 'first'), { dir });
    try {
      await sleep(300);
      assert.ok(watchers() - before <= 3, `${watchers() - before} watchers for a folder of 301 files`);
      // the folder is still watched: a save by rename and one in place are both seen
      writeFileSync(join(dir, 'next.yaml'), cfg(backend.url, 'second'));
      renameSync(join(dir, 'next.yaml'), gw.configFile);
      await eventually(async () => (await seenVersion(gw)) === 'second', 2000);
      writeFileSync(gw.configFile, cfg(backend.url, 'third'));
      await eventually(async () => (await seenVersion(gw)) === 'third', 2000);
    } finally {
      await gw.stop();
    }
  });

  it('ignores a save that does not change the content', async () => {
    const text = cfg(backend.url, 'same');
    const gw = await startGateway(text);
    try {
      const gen = gw.server.generation!.id;
      writeFileSync(gw.configFile, text);
      await eventually(async () => /drawbridge_config_reloads_total\{outcome="unchanged"\} [1-9]/.test((await request(`${gw.adminUrl}/metrics`)).body), 2000);
      assert.equal(gw.server.generation!.id, gen);
    } finally {
      await gw.stop();
    }
  });

  it('warns, per key, that listener and stateDir changes need a restart, and keeps the started stateDir for everything (signing keys too)', async () => {
    const { AssertionKeyStore } = await import('../../src/plugins/headers/assertionKeys.js');
    const dir = tempDir();
    const text = (listen: string, admin: string, stateDir: string) => `
gateway:
  publicUrl: http://gw.test
  listen: { http: ${listen} }
  admin: { listen: ${admin} }
  stateDir: ${stateDir}
identity: { issuer: http://127.0.0.1:9, clientId: drawbridge, clientSecret: s }
session: { secrets: ["0123456789abcdef0123456789abcdef"] }
apps:
  - name: Echo
    externalUrl: http://echo.test/
    internalUrl: ${backend.url}/v1/
    preAuth: passthrough
  - name: Signed
    externalUrl: http://signed.test/
    internalUrl: ${backend.url}/v1/
    headers: { assertion: X-Drawbridge-Assertion }
`;
    const gw = await startGateway(text('127.0.0.1:0', '127.0.0.1:0', './state'), { dir });
    try {
      const before = gw.server.addresses();
      const generation = gw.server.generation!.id;
      writeFileSync(gw.configFile, text('127.0.0.1:19601', '127.0.0.1:19602', './moved').replace('/v1/', '/v2/'));
      await eventually(async () => (await seenVersion(gw)) === 'v2', 2000);
      assert.ok(gw.server.generation!.id > generation, 'the rest of the file was applied');
      const warned = gw.logs.filter((l) => typeof l.msg === 'string' && l.msg.includes('takes effect after a restart')).map((l) => l.key);
      assert.deepEqual([...new Set(warned)].sort(), ['gateway.admin.listen', 'gateway.listen.http', 'gateway.stateDir']);
      assert.deepEqual(gw.server.addresses(), before, 'the listeners stay where they were');
      assert.ok(AssertionKeyStore.existing(join(dir, 'state')), 'the signing keys stay in the started stateDir');
      assert.equal(AssertionKeyStore.existing(join(dir, 'moved')), undefined, 'no new signing key in the new folder');
    } finally {
      await gw.stop();
    }
  });

  it('connectors: added by a reload is warned about (its listener opens after a restart); an app that needs it fails the reload', async () => {
    const connectors = '\nconnectors:\n  listen: 127.0.0.1:0\nconnectorGroups:\n  site: {}\n';
    const siteApp = `  - name: Site\n    externalUrl: http://site.test/\n    internalUrl: ${backend.url}/\n    connectorGroup: site\n    preAuth: passthrough\n`;
    const gw = await startGateway(cfg(backend.url, 'v1'));
    const refused = () => gw.logs.filter((l) => JSON.stringify(l).includes('connectors: was added after the gateway started; restart it')).length;
    try {
      const generation = gw.server.generation!.id;
      writeFileSync(gw.configFile, cfg(backend.url, 'v2') + connectors);
      await eventually(async () => (await seenVersion(gw)) === 'v2', 2000);
      assert.ok(gw.server.generation!.id > generation, 'the rest of the file was applied');
      assert.ok(gw.logs.some((l) => l.key === 'connectors.listen' && /added: the connector listener opens after a restart/.test(String(l.msg))), 'warned');
      assert.equal(gw.server.addresses().connectors, undefined, 'no connector listener yet');
      assert.equal(refused(), 0);
      writeFileSync(gw.configFile, cfg(backend.url, 'v3', siteApp) + connectors);
      await eventually(() => refused() > 0, 2000);
      assert.equal(await seenVersion(gw), 'v2', 'the last good config keeps serving');
    } finally {
      await gw.stop();
    }
  });

  it('reloads when a file the config refers to changes (${file:...})', async () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'internal-url'), `${backend.url}/from-file-1/\n`);
    const text = cfg(backend.url, 'x').replace(`internalUrl: ${backend.url}/x/`, 'internalUrl: ${file:./internal-url}');
    const gw = await startGateway(text, { dir });
    try {
      assert.equal(await seenVersion(gw), 'from-file-1');
      writeFileSync(join(dir, 'internal-url'), `${backend.url}/from-file-2/\n`);
      await eventually(async () => (await seenVersion(gw)) === 'from-file-2', 1500);
    } finally {
      await gw.stop();
    }
  });

  /**
   * A plugin's module runs while the config loads, after ${file:} values were read: one that
   * rewrites ./internal-url is a write landing between the read that built the generation and any
   * later read, every time, with no timing luck. Such a write must be applied by the next reload.
   */
  const rotatingPlugin = (dir: string, to: string) => {
    writeFileSync(
      join(dir, 'rotate.mjs'),
      `import { writeFileSync } from 'node:fs';\nwriteFileSync(new URL('./internal-url', import.meta.url), ${JSON.stringify(`${to}\n`)});\nexport default { name: 'rotate', kind: 'headers', apiVersion: 1, optionsSchema: {}, create() { return {}; } };\n`,
    );
  };
  const fromFile = (withPlugin: boolean) => cfg(backend.url, 'x').replace(`internalUrl: ${backend.url}/x/`, 'internalUrl: ${file:./internal-url}') + (withPlugin ? 'plugins: [./rotate.mjs]\n' : '');

  it('a ${file:} value written while the gateway starts is applied by the next reload, not taken for the live one', async () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'internal-url'), `${backend.url}/read-at-start/\n`);
    rotatingPlugin(dir, `${backend.url}/written-during-start/`);
    const gw = await startGateway(fromFile(true), { dir, watch: false });
    try {
      assert.equal(await seenVersion(gw), 'read-at-start', 'the generation is built from what was read');
      assert.equal(await gw.server.reload(), 'success');
      assert.equal(await seenVersion(gw), 'written-during-start');
      assert.equal(await gw.server.reload(), 'unchanged', 'and then nothing more has changed');
    } finally {
      await gw.stop();
    }
  });

  it('a ${file:} value written while a reload loads the config is applied by the next reload (the gateway does not serve the old one for good)', async () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'internal-url'), `${backend.url}/first/\n`);
    const gw = await startGateway(fromFile(false), { dir, watch: false });
    try {
      assert.equal(await seenVersion(gw), 'first');
      // The operator changes the config and the secret together; the secret changes again mid-reload.
      writeFileSync(join(dir, 'internal-url'), `${backend.url}/second/\n`);
      rotatingPlugin(dir, `${backend.url}/third/`);
      writeFileSync(gw.configFile, fromFile(true));
      assert.equal(await gw.server.reload(), 'success');
      assert.equal(await seenVersion(gw), 'second');
      assert.equal(await gw.server.reload(), 'success', 'the write that landed during the reload is a change');
      assert.equal(await seenVersion(gw), 'third');
      assert.equal(await gw.server.reload(), 'unchanged');
    } finally {
      await gw.stop();
    }
  });

  it('reloads on a Kubernetes-style ..data symlink swap', async () => {
    const dir = tempDir();
    mkdirSync(join(dir, '..2026_01'));
    writeFileSync(join(dir, '..2026_01', 'gateway.config.yaml'), cfg(backend.url, 'k1'));
    symlinkSync('..2026_01', join(dir, '..data'));
    symlinkSync('..data/gateway.config.yaml', join(dir, 'gateway.config.yaml'));
    const { GatewayServer } = await import('../../src/gateway/server.js');
    const { Metrics } = await import('../../src/observability/metrics.js');
    const pino = (await import('pino')).default;
    const server = new GatewayServer({ configFile: join(dir, 'gateway.config.yaml'), logger: pino({ level: 'silent' }), metrics: new Metrics({ defaultMetrics: false }), debounceMs: 50 });
    await server.start();
    const port = Number(server.addresses().http!.split(':').pop());
    const gw = { url: `http://127.0.0.1:${port}` } as TestGateway;
    try {
      assert.equal(await seenVersion(gw), 'k1');
      mkdirSync(join(dir, '..2026_02'));
      writeFileSync(join(dir, '..2026_02', 'gateway.config.yaml'), cfg(backend.url, 'k2'));
      symlinkSync('..2026_02', join(dir, '..data_tmp'));
      renameSync(join(dir, '..data_tmp'), join(dir, '..data'));
      await eventually(async () => (await seenVersion(gw)) === 'k2', 1500);
    } finally {
      await server.stop();
    }
  });

  it('a config path that becomes a FIFO fails the reload at once, and the gateway still exits on SIGTERM', async () => {
    const dir = tempDir();
    const file = join(dir, 'gateway.config.yaml');
    writeFileSync(file, cfg(backend.url, 'f1'));
    const { child, port, exited, output } = spawnGateway(file);
    try {
      await port();
      // read blocking, open() waited for a writer on a pool thread, and exiting joined that thread
      renameSync(file, join(dir, 'good.yaml'));
      execFileSync('mkfifo', [file]);
      child.kill('SIGHUP');
      await eventually(() => output().includes('not a regular file'), 5000);
      assert.match(output(), /config rejected, still serving generation 1: cannot read [^\n]*gateway\.config\.yaml: it is a named pipe \(FIFO\), not a regular file/);
      child.kill('SIGTERM');
      const stopped = await Promise.race([exited, sleep(10_000).then(() => undefined)]);
      assert.ok(stopped, 'still running 10 s after SIGTERM');
      assert.equal(stopped.code, 0);
    } finally {
      child.kill('SIGKILL');
    }
  });

  it('reloads on SIGHUP (the real CLI, with watching off)', async () => {
    const dir = tempDir();
    const file = join(dir, 'gateway.config.yaml');
    writeFileSync(file, cfg(backend.url, 'h1'));
    const { child, port, exited, output } = spawnGateway(file);
    try {
      const addr = await port();
      const gw = { url: `http://127.0.0.1:${addr}` } as TestGateway;
      assert.equal(await seenVersion(gw), 'h1');
      // a SIGHUP that finds nothing changed says so: the operator who sent it gets an answer
      child.kill('SIGHUP');
      await eventually(() => output().includes('reload: the config and the files it refers to are unchanged'), 3000);
      writeFileSync(file, cfg(backend.url, 'h2'));
      await sleep(400);
      assert.equal(await seenVersion(gw), 'h1', 'no watcher: nothing changes without the signal');
      child.kill('SIGHUP');
      await eventually(async () => (await seenVersion(gw)) === 'h2', 2000);
      // a SIGHUP on a file still broken is answered each time, with the problem again
      writeFileSync(file, cfg(backend.url, 'h3').replace('apps:', 'apps: ['));
      const rejections = () => output().split('\n').filter((l) => l.includes('config rejected, still serving')).length;
      child.kill('SIGHUP');
      await eventually(() => rejections() >= 1, 3000);
      const first = rejections();
      child.kill('SIGHUP');
      await eventually(() => rejections() >= 2 * first, 3000);
      assert.equal(await seenVersion(gw), 'h2');
    } finally {
      child.kill('SIGTERM');
      await exited;
    }
  });
});

describe('hot reload: a plugin whose create() never settles, or refuses', function () {
  this.timeout(60_000);
  let idp: EmbeddedIdp;
  let backend: EchoBackend;
  before(async () => {
    backend = await startEchoBackend();
    idp = await EmbeddedIdp.start({ clientId: 'drawbridge', clientSecret: CLIENT_SECRET, users: USERS });
  });
  after(async () => {
    releaseHungCreates();
    await idp.close();
    await backend.close();
  });

  const yaml = (options: Record<string, string>) =>
    gatewayYaml(idp.issuer, [SECRET_A], `
  - name: Web
    externalUrl: http://web.localhost/
    internalUrl: ${backend.url}/
    preAuth: oidc
    sso: { plugin: probe, options: ${JSON.stringify(options)} }
`, 'plugins: [./probe.mjs]');

  /** a gateway whose app's sso stage tags requests with options.tag, and bob's browser signed in to it */
  async function signedIn(opts: Parameters<typeof startGateway>[1]) {
    const dir = tempDir();
    const trace = join(dir, '..', `${dir.split('/').pop()}-trace.log`);
    writeFileSync(join(dir, 'probe.mjs'), PROBE_PLUGIN);
    const gw = await startGateway(yaml({ tag: 'one', trace }), { dir, ...opts });
    const origin = `http://web.localhost:${gw.port}`;
    idp.allowRedirectUri(`${origin}/.drawbridge/callback`);
    const b = new Browser();
    assert.equal((await b.browse(`${origin}/`, { user: 'bob', password: 'bob-pw' })).res.status, 200);
    const tag = async () => {
      const r = await b.get(`${origin}/seen`);
      return r.status === 200 ? r.json().headers['x-probe'] : `status ${r.status}`;
    };
    return { gw, trace, tag };
  }

  it("a plugin's create() quoting a ${env:} value: neither the start error nor the reload's log line shows the value", async () => {
    const env = { PROBE_SECRET: 'TopSecretClientValue' };
    const withProbe = (mode: string) => yaml({ mode, tag: '${env:PROBE_SECRET}' });
    const dir = tempDir();
    writeFileSync(join(dir, 'probe.mjs'), PROBE_PLUGIN);
    await assert.rejects(startGateway(withProbe('throws-echo'), { dir, env }), (e: unknown) => {
      assert.match(String((e as Error).message), /plugin probe refused to build its stage: cannot reach https:\/\/svc\.internal\/\?key=\$\{env:PROBE_SECRET\}/);
      assert.doesNotMatch(String((e as Error).stack), /TopSecretClientValue/);
      return true;
    });
    const gw = await startGateway(withProbe('fine'), { dir, env });
    try {
      writeFileSync(gw.configFile, withProbe('throws-echo'));
      await eventually(() => gw.logs.some((l) => /^config rejected/.test(String(l.msg))), 5000);
      const rejected = gw.logs.filter((l) => /^config rejected/.test(String(l.msg)));
      assert.match(String(rejected[0]!.msg), /key=\$\{env:PROBE_SECRET\}/);
      assert.doesNotMatch(JSON.stringify(gw.logs), /TopSecretClientValue/);
    } finally {
      await gw.stop();
    }
  });

  it('the reload is rejected once the deadline passes, the next edit is applied, and the stage built too late is disposed', async () => {
    const { gw, trace, tag } = await signedIn({ env: { DRAWBRIDGE_PLUGIN_TIMEOUT: '1s' } });
    try {
      assert.equal(await tag(), 'one');
      writeFileSync(gw.configFile, yaml({ mode: 'create-hangs', tag: 'two', trace }));
      const rejected = await eventually(() => gw.logs.find((l) => /^config rejected, still serving generation \d+: .*apps\[0\]\.sso\.plugin: app Web: plugin probe did not build its stage: its create\(\) did not finish within 1 s/.test(String(l.msg))), 5000);
      assert.ok(rejected);
      assert.equal(await tag(), 'one', 'the last good generation serves meanwhile');
      // the fix for the plugin, which also changes what the app gets: applied, not queued behind the stuck one
      writeFileSync(gw.configFile, yaml({ tag: 'three', trace }));
      await eventually(async () => (await tag()) === 'three', 5000);
      releaseHungCreates();
      await eventually(() => traceLines(trace).includes('dispose two'), 3000);
      assert.equal(await tag(), 'three');
    } finally {
      await gw.stop();
    }
  });

  it('a reload still building when the gateway stops never goes live: its stages are disposed, and the stop does not wait for it', async () => {
    const { gw, trace } = await signedIn({ env: { DRAWBRIDGE_PLUGIN_TIMEOUT: '0' } });
    let stopped = false;
    try {
      writeFileSync(gw.configFile, yaml({ mode: 'create-hangs', tag: 'two', trace }));
      await eventually(() => traceLines(trace).includes('create two'), 5000);
      await gw.stop();
      stopped = true;
      const linesAtStop = gw.logs.length;
      releaseHungCreates();
      await eventually(() => traceLines(trace).includes('dispose two'), 3000).catch(() => assert.fail(`the late generation's stage was disposed: ${traceLines(trace).join(', ')}`));
      assert.deepEqual(gw.logs.slice(linesAtStop).filter((l) => l.msg === 'config reloaded'), [], 'nothing was reloaded after the stop');
      assert.equal(await gw.server.reload('SIGHUP'), 'superseded', 'a SIGHUP after the stop reloads nothing');
    } finally {
      releaseHungCreates();
      if (!stopped) await gw.stop();
    }
  });

  it('a reload slower than reloadStuckMs but working is applied: the one that replaced it is waited for, not replaced by every poll', async () => {
    const { gw, tag } = await signedIn({ reloadStuckMs: 600, pollMs: 200 });
    try {
      // each build of the new generation takes 1 s, longer than the limit
      writeFileSync(gw.configFile, yaml({ mode: 'create-slow', ms: '1000', tag: 'slow' }));
      await eventually(async () => (await tag()) === 'slow', 8000);
      const givenUp = gw.logs.filter((l) => l.level === 50 && /without finishing: reloading again without it/.test(String(l.msg)));
      assert.ok(givenUp.length <= 1, `${givenUp.length} reloads given up on`);
    } finally {
      await gw.stop();
    }
  });

  it('a reload asked for while one builds answers for the file as it is after the ask, not with the running one\'s outcome', async () => {
    const { gw, trace, tag } = await signedIn({ watch: false });
    try {
      writeFileSync(gw.configFile, yaml({ mode: 'create-slow', ms: '400', tag: 'slow', trace }));
      const first = gw.server.reload('test');
      await eventually(() => traceLines(trace).includes('create slow'), 3000);
      // (the running reload read the file before this edit)
      writeFileSync(gw.configFile, yaml({ tag: 'after', trace }));
      const second = gw.server.reload('SIGHUP');
      assert.equal(await first, 'success');
      assert.equal(await second, 'success');
      assert.equal(await tag(), 'after', 'the outcome the second caller got is that of its edit');
      // and two asks during one build share one follow-up reload, which finds its own edit only once
      writeFileSync(gw.configFile, yaml({ mode: 'create-slow', ms: '400', tag: 'slow2', trace }));
      const third = gw.server.reload('test');
      await eventually(() => traceLines(trace).includes('create slow2'), 3000);
      const [a, b] = [gw.server.reload('test'), gw.server.reload('test')];
      assert.deepEqual([await third, await a, await b], ['success', 'unchanged', 'unchanged']);
    } finally {
      await gw.stop();
    }
  });

  it('with no deadline, a reload stuck past reloadStuckMs no longer holds the next one, and is dropped if it ever finishes', async () => {
    const { gw, trace, tag } = await signedIn({ env: { DRAWBRIDGE_PLUGIN_TIMEOUT: '0' }, reloadStuckMs: 1500, pollMs: 300 });
    try {
      writeFileSync(gw.configFile, yaml({ mode: 'create-hangs', tag: 'two', trace }));
      await eventually(() => traceLines(trace).includes('create two'), 3000);
      writeFileSync(gw.configFile, yaml({ tag: 'three', trace }));
      await eventually(async () => (await tag()) === 'three', 8000);
      assert.ok(gw.logs.some((l) => l.level === 50 && /^a reload \(.*\) has run for \d+ s without finishing: reloading again without it, and it will not be applied$/.test(String(l.msg))));
      releaseHungCreates();
      await eventually(() => traceLines(trace).includes('dispose two'), 3000);
      assert.ok(gw.logs.some((l) => /a reload that had been given up on finished; its generation is discarded/.test(String(l.msg))));
      await sleep(300);
      assert.equal(await tag(), 'three', 'the stuck reload read an older file: its generation never serves');
    } finally {
      await gw.stop();
    }
  });
});
