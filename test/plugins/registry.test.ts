import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { RequestContext } from '../../src/pipeline/stage.js';
import { loadPlugins } from '../../src/plugins/registry.js';
import { tempDir } from '../support/harness.js';

/** dist/test/plugins -> dist/src/cli.js */
const CLI = resolve(dirname(fileURLToPath(import.meta.url)), '../../src/cli.js');

const plugin = (tag: string) => `export default {
  name: 'tagger', kind: 'sso', apiVersion: 1, description: 'sets x-tag', optionsSchema: { type: 'object' },
  create: () => ({ name: 'tagger', kind: 'sso', run: () => ({ kind: 'continue', setHeaders: { 'x-tag': '${tag}' } }) }),
};
`;

/** What a reload gets from the loader when an operator edits a local plugin file. */
describe('plugin loading across reloads', () => {
  const dir = tempDir();
  const file = join(dir, 'tagger.mjs');
  const tagOf = async () => {
    const { loaded, failures } = await loadPlugins(['./tagger.mjs'], dir);
    assert.deepEqual(failures, []);
    const p = loaded.find((l) => l.plugin.name === 'tagger')!.plugin;
    const stage = await p.create({}, {} as never);
    return (stage.run({} as RequestContext) as { setHeaders: Record<string, string> }).setHeaders['x-tag'];
  };

  it('an edited file is loaded again with its new code; an unchanged one is the module already loaded', async () => {
    writeFileSync(file, plugin('one'));
    assert.equal(await tagOf(), 'one');
    writeFileSync(file, plugin('two'));
    assert.equal(await tagOf(), 'two');
    const a = (await loadPlugins(['./tagger.mjs'], dir)).loaded.at(-1)!.plugin;
    const b = (await loadPlugins(['./tagger.mjs'], dir)).loaded.at(-1)!.plugin;
    assert.equal(a, b, 'same content, same module: no new copy per reload');
  });

  it('a syntax error in an edited file is a load failure (the reload is refused), not the old code', async () => {
    writeFileSync(file, plugin('three').replace('export default {', 'export default {{'));
    const { failures } = await loadPlugins(['./tagger.mjs'], dir);
    assert.equal(failures.length, 1);
    assert.match(failures[0]!.message, /plugin "\.\/tagger\.mjs" failed to load/);
  });
});

/** Runs the real CLI; resolves with its exit code (null: killed, still running after 15 s), output and how long it ran. */
function cli(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number | null; out: string; ms: number }> {
  return new Promise((done) => {
    const t0 = Date.now();
    const child = spawn(process.execPath, [CLI, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    const kill = setTimeout(() => child.kill('SIGKILL'), 15_000);
    let out = '';
    child.stdout.on('data', (c) => (out += c));
    child.stderr.on('data', (c) => (out += c));
    child.on('exit', (code) => {
      clearTimeout(kill);
      done({ code, out, ms: Date.now() - t0 });
    });
  });
}

/** A config whose app uses the sso plugin `name` from the plugins: entry `specifier` (line 6). */
const lintConfig = (specifier: string, name: string, options = '{}') => `gateway:
  publicUrl: http://gw.test
  listen: { http: 127.0.0.1:0 }
identity: { issuer: http://127.0.0.1:19900, clientId: drawbridge, clientSecret: s }
session: { secrets: ["0123456789abcdef0123456789abcdef"] }
plugins: [${JSON.stringify(specifier)}]
apps:
  - name: Payroll
    externalUrl: http://payroll.test/
    internalUrl: http://127.0.0.1:19901/
    sso: { plugin: ${name}, options: ${options} }
`;

describe('plugin loading: a module whose import never finishes', function () {
  this.timeout(20_000);
  const dir = tempDir();
  // a top-level await on something that never comes (an event, a service that never answers)
  writeFileSync(join(dir, 'tla.mjs'), `await new Promise(() => {});\nexport default { name: 'tla', kind: 'sso', apiVersion: 1, optionsSchema: { type: 'object' }, create: () => ({ name: 'tla', kind: 'sso', run: () => ({ kind: 'continue' }) }) };\n`);
  const file = join(dir, 'gateway.config.yaml');
  writeFileSync(file, lintConfig('./tla.mjs', 'tla'));

  it('lint fails it at its plugins: entry once the deadline passes, instead of exiting 0 with no output', async () => {
    const r = await cli(['lint', file], { DRAWBRIDGE_PLUGIN_TIMEOUT: '1s' });
    assert.equal(r.code, 1, r.out);
    assert.match(r.out, new RegExp(`^${file.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}:6:11: error: plugins\\[0\\]: plugin "\\./tla\\.mjs" failed to load: importing \\S*tla\\.mjs did not finish within 1 s, the limit for a plugin \\(DRAWBRIDGE_PLUGIN_TIMEOUT\\)$`, 'm'));
    assert.ok(r.ms < 10_000, `took ${r.ms} ms`);
  });

  it('the gateway refuses to start (exit 1) with the same problem', async () => {
    const r = await cli(['gateway', '--config', file, '--no-watch'], { DRAWBRIDGE_PLUGIN_TIMEOUT: '1s' });
    assert.equal(r.code, 1, r.out);
    assert.match(r.out, /:6:11: error: plugins\[0\]: plugin "\.\/tla\.mjs" failed to load: importing \S*tla\.mjs did not finish within 1 s/);
  });

  it('is a load failure, not "not found" (which lint only warns about)', async () => {
    const { failures } = await loadPlugins(['./tla.mjs'], dir, { timeoutMs: 200 });
    assert.equal(failures.length, 1);
    assert.equal(failures[0]!.notFound, false);
    assert.match(failures[0]!.message, /did not finish within 200 ms/);
  });
});
