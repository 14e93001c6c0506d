import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
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

  it('an edited CommonJS file is loaded again too, and a broken edit of one is refused (it reloaded with its old code)', async () => {
    const cjs = join(dir, 'tagger.cjs');
    const load = async () => (await loadPlugins(['./tagger.cjs'], dir)).loaded.find((l) => l.plugin.name === 'tagger')?.plugin;
    const tag = async () => ((await (await load())!.create({}, {} as never)).run({} as RequestContext) as { setHeaders: Record<string, string> }).setHeaders['x-tag'];
    writeFileSync(cjs, plugin('cjs-one').replace('export default {', 'module.exports = {'));
    assert.equal(await tag(), 'cjs-one');
    writeFileSync(cjs, plugin('cjs-two').replace('export default {', 'module.exports = {'));
    assert.equal(await tag(), 'cjs-two');
    writeFileSync(cjs, plugin('cjs-three').replace('export default {', 'module.exports = {{'));
    const { failures } = await loadPlugins(['./tagger.cjs'], dir);
    assert.equal(failures.length, 1);
    assert.match(failures[0]!.message, /plugin "\.\/tagger\.cjs" failed to load/);
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

  for (const command of [['lint', file], ['gateway', '--config', file, '--no-watch']])
    it(`${command[0]}: a DRAWBRIDGE_PLUGIN_TIMEOUT that is not a duration ("5 min") is refused, exit 2, instead of leaving the 30 s limit without a word`, async () => {
      const r = await cli(command, { DRAWBRIDGE_PLUGIN_TIMEOUT: '5 min' });
      assert.equal(r.code, 2, r.out);
      assert.equal(r.out.split('\n')[0], `drawbridge ${command[0]}: DRAWBRIDGE_PLUGIN_TIMEOUT must be a duration (30s, 2m, 500ms) or 0 for no limit, not "5 min"`);
      assert.ok(r.ms < 10_000, `took ${r.ms} ms: the plugin was waited for`);
    });

  it('is a load failure, not "not found" (which lint only warns about)', async () => {
    const { failures } = await loadPlugins(['./tla.mjs'], dir, { timeoutMs: 200 });
    assert.equal(failures.length, 1);
    assert.equal(failures[0]!.notFound, false);
    assert.match(failures[0]!.message, /did not finish within 200 ms/);
  });
});

/** A plugin module's text; `cjs`: as `module.exports =`; `tsCjs`: as tsc/Babel compile `export default` to CommonJS. */
const pluginText = (name: string, opts: { description?: string; cjs?: boolean; tsCjs?: boolean; schema?: string } = {}) => {
  const object = `{ name: ${JSON.stringify(name)}, kind: 'sso', apiVersion: 1, description: ${JSON.stringify(opts.description ?? '')}, optionsSchema: ${opts.schema ?? "{ type: 'object' }"}, create: () => ({ name: ${JSON.stringify(name)}, kind: 'sso', run: () => ({ kind: 'continue' }) }) }`;
  if (opts.tsCjs) return `"use strict";\nObject.defineProperty(exports, "__esModule", { value: true });\nexports.default = ${object};\n`;
  return opts.cjs ? `module.exports = ${object};\n` : `export default ${object};\n`;
};

/** writes package `name` under dir/node_modules with these files (package.json given as an object) */
function installPackage(dir: string, name: string, files: Record<string, string | object>): void {
  for (const [path, content] of Object.entries(files)) {
    const file = join(dir, 'node_modules', name, path);
    mkdirSync(dirname(file), { recursive: true });
    writeFileSync(file, typeof content === 'string' ? content : JSON.stringify({ name, version: '1.0.0', ...content }));
  }
}

describe('plugin loading: packages resolved as import() resolves them', function () {
  this.timeout(20_000);
  const dir = tempDir();
  installPackage(dir, 'esm-only-plugin', { 'package.json': { type: 'module', exports: { '.': { import: './index.js' } } }, 'index.js': pluginText('esm-only') });
  installPackage(dir, '@acme/sso-plugin', { 'package.json': { type: 'module', exports: { types: './index.d.ts', default: './index.js' } }, 'index.js': pluginText('acme') });
  installPackage(dir, 'dual-plugin', {
    'package.json': { type: 'module', exports: { '.': { types: './dist/index.d.ts', import: './dist/index.js', require: './dist/index.cjs' } }, main: './dist/index.cjs' },
    'dist/index.js': pluginText('dual', { description: 'ESM build' }),
    'dist/index.cjs': pluginText('dual', { description: 'CommonJS build', cjs: true }),
  });
  installPackage(dir, 'require-only-plugin', { 'package.json': { exports: { require: './index.cjs' } }, 'index.cjs': pluginText('require-only', { cjs: true }) });
  installPackage(dir, 'legacy-plugin', { 'package.json': { main: './lib/main' }, 'lib/main.js': pluginText('legacy', { cjs: true }) });
  installPackage(dir, 'ts-cjs-plugin', { 'package.json': { main: './dist/index.js' }, 'dist/index.js': pluginText('ts-cjs-pkg', { tsCjs: true }) });
  installPackage(dir, 'many-plugins', { 'package.json': { type: 'module', exports: { './sso/*': { import: './src/*.mjs' } } }, 'src/one.mjs': pluginText('many-one') });
  installPackage(dir, 'subpaths-only', { 'package.json': { type: 'module', exports: { './extra': './extra.js' } }, 'extra.js': pluginText('extra') });
  // Node skips an excluded (null) entry of an array target and takes the next
  installPackage(dir, 'fallback-plugin', {
    'package.json': { type: 'module', exports: { '.': [null, { import: './e.js', require: './c.cjs' }] } },
    'e.js': pluginText('fallback', { description: 'ESM build' }),
    'c.cjs': pluginText('fallback', { description: 'CommonJS build', cjs: true }),
  });
  writeFileSync(join(dir, 'ts-default.cjs'), pluginText('ts-cjs', { tsCjs: true }));
  writeFileSync(join(dir, 'namespace.mjs'), `export default { helpers: {}, version: '2.0.0' };\n`);
  writeFileSync(join(dir, 'factory.mjs'), `export default function makePlugin() { return {}; }\n`);

  const load = async (specifier: string) => {
    const { loaded, failures } = await loadPlugins([specifier], dir);
    return { plugin: loaded.find((l) => l.source === specifier), failure: failures[0] };
  };

  const loads: { specifier: string; name: string; file: RegExp; description?: string }[] = [
    { specifier: 'esm-only-plugin', name: 'esm-only', file: /esm-only-plugin\/index\.js$/ },
    { specifier: '@acme/sso-plugin', name: 'acme', file: /@acme\/sso-plugin\/index\.js$/ },
    { specifier: 'dual-plugin', name: 'dual', file: /dual-plugin\/dist\/index\.js$/, description: 'ESM build' },
    { specifier: 'require-only-plugin', name: 'require-only', file: /require-only-plugin\/index\.cjs$/ },
    { specifier: 'legacy-plugin', name: 'legacy', file: /legacy-plugin\/lib\/main\.js$/ },
    { specifier: 'ts-cjs-plugin', name: 'ts-cjs-pkg', file: /ts-cjs-plugin\/dist\/index\.js$/ },
    { specifier: 'many-plugins/sso/one', name: 'many-one', file: /many-plugins\/src\/one\.mjs$/ },
    { specifier: './node_modules/dual-plugin', name: 'dual', file: /dual-plugin\/dist\/index\.js$/, description: 'ESM build' },
    { specifier: './ts-default.cjs', name: 'ts-cjs', file: /ts-default\.cjs$/ },
    { specifier: 'fallback-plugin', name: 'fallback', file: /fallback-plugin\/e\.js$/, description: 'ESM build' },
  ];
  for (const c of loads) {
    it(`${c.specifier}: loads ${c.name}${c.description ? ` (${c.description})` : ''}`, async () => {
      const { plugin, failure } = await load(c.specifier);
      assert.equal(failure, undefined, failure?.message);
      assert.equal(plugin?.plugin.name, c.name);
      assert.match(plugin!.file!, c.file);
      if (c.description) assert.equal(plugin!.plugin.description, c.description);
    });
  }

  it('inside a plugin\'s own package, its name resolves through its own exports (its example config, linted in its CI)', async () => {
    const own = tempDir();
    writeFileSync(join(own, 'package.json'), JSON.stringify({ name: 'my-sso', type: 'module', exports: { import: './index.mjs', require: './index.cjs' } }));
    writeFileSync(join(own, 'index.mjs'), pluginText('my-sso', { description: 'ESM build' }));
    writeFileSync(join(own, 'index.cjs'), pluginText('my-sso', { description: 'CommonJS build', cjs: true }));
    mkdirSync(join(own, 'examples'));
    const { loaded, failures } = await loadPlugins(['my-sso'], join(own, 'examples'));
    assert.deepEqual(failures.map((f) => f.message), []);
    assert.equal(loaded.find((l) => l.source === 'my-sso')?.plugin.description, 'ESM build');
  });

  it('a package that exports nothing for import is a load error, not "not found"', async () => {
    const { failure } = await load('subpaths-only');
    assert.equal(failure?.notFound, false);
    assert.match(failure!.message, /^plugin "subpaths-only" failed to load: package "subpaths-only" \(\S+\) exports no main entry for import/);
    assert.equal((await load('not-installed')).failure?.notFound, true);
  });

  it('a default export that is not a plugin object is named as such, with what it is', async () => {
    assert.equal((await load('./namespace.mjs')).failure?.message, `plugin "./namespace.mjs" failed to load: the module's default export is not a plugin object (it has the keys "helpers", "version"; a plugin has name, kind, apiVersion, optionsSchema, create)`);
    assert.equal((await load('./factory.mjs')).failure?.message, `plugin "./factory.mjs" failed to load: the module's default export is not a plugin object (it is a function: export the plugin object itself)`);
  });

  it('lint checks the options of an installed ESM-only plugin (it warned "not found" and checked nothing)', async () => {
    installPackage(dir, 'strict-plugin', {
      'package.json': { type: 'module', exports: { '.': { import: './index.js' } } },
      'index.js': pluginText('strict', { schema: `{ type: 'object', properties: { endpoint: { type: 'string', format: 'uri' } }, required: ['endpoint'], additionalProperties: false }` }),
    });
    const file = join(dir, 'strict.yaml');
    writeFileSync(file, lintConfig('strict-plugin', 'strict', '{ endpont: "https://kdc.example.test/" }'));
    const bad = await cli(['lint', file]);
    assert.equal(bad.code, 1, bad.out);
    assert.match(bad.out, /:11:\d+: error: apps\[0\]\.sso\.options/);
    assert.doesNotMatch(bad.out, /not found/);
    writeFileSync(file, lintConfig('strict-plugin', 'strict', '{ endpoint: "https://kdc.example.test/" }'));
    const good = await cli(['lint', file]);
    assert.equal(good.code, 0, good.out);
    assert.match(good.out, /0 error\(s\), 0 warning\(s\)/);
  });
});
