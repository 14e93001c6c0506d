/**
 * `drawbridge schema`: the committed schema/gateway.config.schema.json must be
 * what the command prints, a valid draft 2020-12 schema, and accept what the
 * gateway accepts (the reference file, the demo file) as editors see them.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { copyFileSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { parse } from 'yaml';
import { tempDir } from '../support/harness.js';

/** dist/test/commands -> repo root */
const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
const FIXTURE = join(ROOT, 'test/fixtures/gateway.config.reference.yaml');
const COMMITTED_SCHEMA = join(ROOT, 'schema/gateway.config.schema.json');
const CLI = join(ROOT, 'dist/src/cli.js');

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
    // the identity runtime's default when neither session.cookie nor the app's cookies set it
    assert.equal(schema.properties.session.properties.cookie.properties.sameSite.default, 'lax');
    // an app's cookie key left out takes session.cookie's value, whatever that is: no default of its own
    const appCookies = schema.properties.apps.items.properties.cookies.properties;
    assert.deepEqual(Object.keys(appCookies).filter((k) => JSON.stringify(appCookies[k]).includes('"default"')), []);
    assert.match(appCookies.lifetime.description, /Default: session\.cookie's\./);
  });

  it('describes every key the reference file uses (editors show it on hover)', () => {
    const schema = JSON.parse(printed);
    const undocumented: string[] = [];
    const walk = (value: unknown, node: any, path: string): void => {
      if (Array.isArray(value)) return value.forEach((v, i) => walk(v, node.items, `${path}[${i}]`));
      if (!value || typeof value !== 'object') return;
      for (const [key, v] of Object.entries(value)) {
        const child = node.properties?.[key] ?? (node.patternProperties ? Object.values(node.patternProperties)[0] : undefined);
        const at = path ? `${path}.${key}` : key;
        if (!child) undocumented.push(`${at} (not in the schema)`);
        else if (!child.description && !child.anyOf?.every((b: any) => b.description)) undocumented.push(at);
        if (child && at !== 'apps[2].sso.options') walk(v, child, at);
      }
    };
    walk(parse(readFileSync(FIXTURE, 'utf8')), schema, '');
    assert.deepEqual(undocumented, []);
  });

  it('accepts the reference file as editors see it (${env:} references are plain strings)', () => {
    const ajv = new Ajv2020({ strict: false, allErrors: true });
    const validate = ajv.compile(JSON.parse(printed));
    const data = parse(readFileSync(FIXTURE, 'utf8'));
    assert.equal(validate(data), true, JSON.stringify(validate.errors, null, 2));
    assert.equal(data.identity.clientSecret, '${env:DRAWBRIDGE_CLIENT_SECRET}');
  });

  it('accepts the bench configs, whose modeline points at it (ports as 127.0.0.1:${env:GATEWAY_PORT})', () => {
    const validate = new Ajv2020({ strict: false, allErrors: true }).compile(JSON.parse(printed));
    for (const f of ['gateway.bench.yaml', 'gateway.bench-bearer.yaml', 'gateway.bench-policies.yaml', 'gateway.bench-connector.yaml']) {
      const text = readFileSync(join(ROOT, 'bench', f), 'utf8');
      assert.match(text, /yaml-language-server: \$schema=/);
      assert.equal(validate(parse(text)), true, `${f}: ${JSON.stringify(validate.errors)}`);
    }
  });

  it('accepts the demo gateway.config.yaml, which points editors at it with a modeline', () => {
    const text = readFileSync(join(ROOT, 'gateway.config.yaml'), 'utf8');
    assert.equal(text.split('\n')[0], '# yaml-language-server: $schema=./schema/gateway.config.schema.json');
    const validate = new Ajv2020({ strict: false }).compile(JSON.parse(printed));
    assert.equal(validate(parse(text)), true, JSON.stringify(validate.errors));
  });

  it('accepts a whole-value ${env:} or ${file:} reference where lint does (ports, booleans, durations, patterned strings)', () => {
    const validate = new Ajv2020({ strict: false, allErrors: true }).compile(JSON.parse(printed));
    const data = parse(readFileSync(FIXTURE, 'utf8'));
    data.gateway.listen.http = '${env:PORT}';
    data.gateway.listen.https = '${file:/run/secrets/https-listen}';
    data.apps[0].websockets = '${env:WS}';
    data.apps[0].backendTimeout = '${env:BT}';
    data.session.cookie.lifetime = '${env:LIFETIME}';
    assert.equal(validate(data), true, JSON.stringify(validate.errors, null, 2));
    // Part of a string of a given form (host:port, a duration): only lint can check the resolved text.
    data.gateway.listen.http = '127.0.0.1:${env:PORT}';
    data.session.cookie.lifetime = '${env:HOURS}h';
    assert.equal(validate(data), true, JSON.stringify(validate.errors, null, 2));
    // a reference in part of a boolean, or a malformed one, is still a string the value's rules apply to
    data.apps[0].websockets = 'x${env:WS}';
    data.apps[0].backendTimeout = '${env:BT';
    assert.equal(validate(data), false);
    assert.deepEqual([...new Set(validate.errors!.map((e) => e.instancePath))].sort(), ['/apps/0/backendTimeout', '/apps/0/websockets']);
  });

  it('rejects what editors should flag (an unknown key)', () => {
    const validate = new Ajv2020({ strict: false }).compile(JSON.parse(printed));
    const data = parse(readFileSync(FIXTURE, 'utf8'));
    data.apps[0].websocket = true;
    assert.equal(validate(data), false);
  });

  it('with --config, the options schema of each sso plugin the file loads is included', async () => {
    // The reference loads ./plugins-examples/kcd-shim: lay it out beside a copy.
    const dir = tempDir('drawbridge-schema-');
    copyFileSync(FIXTURE, join(dir, 'gateway.config.yaml'));
    symlinkSync(join(ROOT, 'plugins-examples'), join(dir, 'plugins-examples'));
    const { stdout } = await promisify(execFile)(process.execPath, [CLI, 'schema', '--config', join(dir, 'gateway.config.yaml')], { cwd: ROOT });
    const validate = new Ajv2020({ strict: false }).compile(JSON.parse(stdout));
    const data = parse(readFileSync(FIXTURE, 'utf8'));
    assert.equal(validate(data), true, JSON.stringify(validate.errors));
    const payroll = data.apps.find((a: { name: string }) => a.name === 'Payroll');
    payroll.sso.options.servicePrincipal = 'payroll';
    assert.equal(validate(data), false, 'a servicePrincipal that is not SERVICE/host@REALM is flagged');
    assert.ok(validate.errors!.some((e) => e.instancePath.endsWith('/sso/options/servicePrincipal')), JSON.stringify(validate.errors));
  });

  it('with --config, a plugin it cannot find or load is reported on stderr, at its plugins: entry', async () => {
    const dir = tempDir('drawbridge-schema-');
    const config = join(dir, 'gateway.config.yaml');
    const run = (plugin: string) => {
      writeFileSync(config, `gateway: { publicUrl: http://localhost:8080, listen: { http: 8080 } }\nplugins: [${plugin}]\napps: []\n`);
      return promisify(execFile)(process.execPath, [CLI, 'schema', '--config', config], { cwd: dir }).then(
        ({ stdout, stderr }) => ({ code: 0, stdout, stderr }),
        (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, stdout: e.stdout, stderr: e.stderr }),
      );
    };
    const missing = await run('drawbridge-plugin-absent');
    assert.equal(missing.code, 0);
    assert.match(missing.stderr, new RegExp(`^${config}:2:11: warning: plugins\\[0\\]: plugin "drawbridge-plugin-absent" not found .*its options were not checked\\n$`));
    assert.ok(JSON.parse(missing.stdout).properties);

    writeFileSync(join(dir, 'bad.mjs'), `export default { name: 'bad', kind: 'sso', apiVersion: 1, optionsSchema: { type: 'objekt' }, create() {} };\n`);
    const broken = await run('./bad.mjs');
    assert.equal(broken.code, 1);
    assert.equal(broken.stdout, '', 'nothing to redirect into schema.json: the schema would lack the plugin');
    assert.match(broken.stderr, new RegExp(`^${config}:2:11: error: plugins\\[0\\]: plugin "./bad.mjs": optionsSchema is not a valid JSON Schema: [^\\n]*\\n$`));
  });
});
