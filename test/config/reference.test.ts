/**
 * The operator contract: the reference file in ../shared/spec must lint clean,
 * our fixture copy must not drift from it, and the committed JSON Schema must
 * be what `drawbridge schema` prints and must accept the reference file.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { parse } from 'yaml';
import { loadConfigFile } from '../../src/config/load.js';
import { tempDir } from '../support/harness.js';

/** dist/test/config -> repo root */
const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
const FIXTURE = join(ROOT, 'test/fixtures/gateway.config.reference.yaml');
const SHARED = resolve(ROOT, '../shared/spec/gateway.config.reference.yaml');
const COMMITTED_SCHEMA = join(ROOT, 'schema/gateway.config.schema.json');
const CLI = join(ROOT, 'dist/src/cli.js');

const errorsOf = (r: Awaited<ReturnType<typeof loadConfigFile>>) => r.problems.filter((p) => p.severity === 'error').map((p) => `${p.line}:${p.col} ${p.path}: ${p.message}`);

describe('reference config', () => {
  it('the fixture is byte-identical to ../shared/spec/gateway.config.reference.yaml', function () {
    if (!existsSync(SHARED)) {
      console.warn(`      skipped: ${SHARED} is absent (this checkout has no ../shared next to it)`);
      return this.skip();
    }
    assert.ok(readFileSync(FIXTURE).equals(readFileSync(SHARED)), `test/fixtures/gateway.config.reference.yaml differs from ${SHARED}: copy it over and fix what the new contract breaks`);
  });

  for (const [name, file] of [['fixture', FIXTURE], ['shared spec', SHARED]] as const) {
    it(`the ${name} lints with zero errors`, async function () {
      if (!existsSync(file)) return this.skip();
      const r = await loadConfigFile(file, { mode: 'lint', env: {} });
      assert.deepEqual(errorsOf(r), []);
      assert.ok(r.config);
    });
  }

  it('lints with zero errors and zero warnings when its plugin, certificates and secrets are present', async () => {
    // The reference names ./plugins-examples/kcd-shim and ./certs/*: lay them out beside a copy.
    // Lint only checks that the certificate files exist, so placeholders do.
    const dir = tempDir('drawbridge-ref-');
    copyFileSync(FIXTURE, join(dir, 'gateway.config.yaml'));
    symlinkSync(join(ROOT, 'plugins-examples'), join(dir, 'plugins-examples'));
    mkdirSync(join(dir, 'certs'));
    for (const name of ['gateway.crt', 'gateway.key', 'corp-root.crt']) writeFileSync(join(dir, 'certs', name), 'placeholder\n');
    const env = { DRAWBRIDGE_CLIENT_SECRET: 'client-secret', DRAWBRIDGE_SESSION_SECRET: 's'.repeat(32) };
    const r = await loadConfigFile(join(dir, 'gateway.config.yaml'), { mode: 'lint', env });
    assert.deepEqual(r.problems.map((p) => `${p.line}:${p.col} ${p.severity} ${p.path}: ${p.message}`), []);
    assert.ok(r.plugins.some((l) => l.plugin.name === 'kcd-shim'), 'kcd-shim was loaded, so Payroll sso options were checked');
  });
});

describe('JSON Schema (drawbridge schema)', function () {
  this.timeout(20_000);
  let printed: string;
  before(async () => {
    printed = (await promisify(execFile)(process.execPath, [CLI, 'schema'], { cwd: ROOT })).stdout;
  });

  it('schema/gateway.config.schema.json is what `drawbridge schema` prints', () => {
    const committed = readFileSync(COMMITTED_SCHEMA, 'utf8');
    assert.ok(committed === printed, 'schema/gateway.config.schema.json is stale: run `node dist/src/cli.js schema > schema/gateway.config.schema.json`');
  });

  it('is a valid draft 2020-12 schema with descriptions and defaults', () => {
    const schema = JSON.parse(printed);
    assert.equal(schema.$schema, 'https://json-schema.org/draft/2020-12/schema');
    const ajv = new Ajv2020({ strict: false });
    assert.equal(ajv.validateSchema(schema), true, JSON.stringify(ajv.errors));
    assert.match(schema.properties.apps.items.properties.backendTimeout.description, /default \(85s\), long \(180s\)/);
    assert.equal(schema.properties.apps.items.properties.backendTimeout.default, 'default');
    assert.equal(schema.properties.session.properties.cookie.properties.lifetime.default, '8h');
  });

  it('accepts the reference file as editors see it (${env:} references are plain strings)', () => {
    const ajv = new Ajv2020({ strict: false, allErrors: true });
    const validate = ajv.compile(JSON.parse(printed));
    const data = parse(readFileSync(FIXTURE, 'utf8'));
    assert.equal(validate(data), true, JSON.stringify(validate.errors, null, 2));
    assert.equal(data.identity.clientSecret, '${env:DRAWBRIDGE_CLIENT_SECRET}');
  });

  it('accepts the demo gateway.config.yaml, which points editors at it with a modeline', () => {
    const text = readFileSync(join(ROOT, 'gateway.config.yaml'), 'utf8');
    assert.equal(text.split('\n')[0], '# yaml-language-server: $schema=./schema/gateway.config.schema.json');
    const validate = new Ajv2020({ strict: false }).compile(JSON.parse(printed));
    assert.equal(validate(parse(text)), true, JSON.stringify(validate.errors));
  });

  it('rejects what editors should flag (an unknown key)', () => {
    const validate = new Ajv2020({ strict: false }).compile(JSON.parse(printed));
    const data = parse(readFileSync(FIXTURE, 'utf8'));
    data.apps[0].websocket = true;
    assert.equal(validate(data), false);
  });
});
