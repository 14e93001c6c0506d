/**
 * Messages for plugin option schemas: a third-party schema uses any JSON
 * Schema keyword, and each must read as plain words with the right key path.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { compileSchema, suggest, validateAgainst } from '../../src/config/validate.js';
import { loadPlugins } from '../../src/plugins/registry.js';
import { tempDir } from '../support/harness.js';

const schema = {
  type: 'object',
  properties: {
    mode: { enum: ['fast', 'safe'] },
    version: { const: 1 },
    retries: { type: 'integer', minimum: 0, maximum: 5 },
    realm: { type: 'string', minLength: 3 },
    spn: { type: 'string', pattern: '^[A-Z]+/', description: 'Service principal, SERVICE/host.' },
    hosts: { type: 'array', items: { type: 'string' }, uniqueItems: true, minItems: 1, maxItems: 3 },
    nested: { type: 'object', properties: { timeoutMs: { type: 'number' } }, required: ['timeoutMs'], additionalProperties: false },
  },
  required: ['mode'],
  additionalProperties: false,
};

const cases: { description: string; value: unknown; issues: [string, string][] }[] = [
  { description: 'enum lists the allowed values', value: { mode: 'slow' }, issues: [['mode', '"slow" is not allowed here: must be "fast" or "safe"']] },
  { description: 'const names the one value', value: { mode: 'fast', version: 2 }, issues: [['version', '2 is not allowed here: must be 1']] },
  { description: 'minimum', value: { mode: 'fast', retries: -1 }, issues: [['retries', '-1 is out of range: must be >= 0']] },
  { description: 'maximum', value: { mode: 'fast', retries: 9 }, issues: [['retries', '9 is out of range: must be <= 5']] },
  { description: 'integer type', value: { mode: 'fast', retries: 1.5 }, issues: [['retries', 'must be an integer, not number 1.5']] },
  { description: 'minLength', value: { mode: 'fast', realm: 'ab' }, issues: [['realm', 'must be at least 3 characters long']] },
  { description: 'a pattern is explained by the description', value: { mode: 'fast', spn: 'http' }, issues: [['spn', '"http" is not valid: Service principal, SERVICE/host']] },
  { description: 'duplicates point at the later copy', value: { mode: 'fast', hosts: ['a', 'b', 'a'] }, issues: [['hosts[2]', '"a" is listed twice']] },
  { description: 'an empty list', value: { mode: 'fast', hosts: [] }, issues: [['hosts', 'must not be empty']] },
  { description: 'too many items', value: { mode: 'fast', hosts: ['a', 'b', 'c', 'd'] }, issues: [['hosts', 'must have at most 3 items']] },
  { description: 'a misspelt key gets a did-you-mean, and no "missing" for the same key', value: { mode: 'fast', nested: { timeoutMS: 1 } }, issues: [['nested.timeoutMS', 'unknown key "timeoutMS" (did you mean "timeoutMs"?)']] },
  { description: 'a missing key that is not misspelt', value: { nested: {} }, issues: [['', 'missing required key "mode"'], ['nested', 'missing required key "timeoutMs"']] },
  { description: 'every problem, not only the first', value: { mode: 'x', version: 0, realm: '', colour: 1 }, issues: [['colour', 'unknown key "colour"'], ['mode', '"x" is not allowed here: must be "fast" or "safe"'], ['version', '0 is not allowed here: must be 1'], ['realm', 'must be at least 3 characters long']] },
];

describe('config validate: schema messages', () => {
  for (const c of cases) {
    it(c.description, () => {
      const got = validateAgainst(schema, c.value).map((i) => [i.path.map((p) => (typeof p === 'number' ? `[${p}]` : `.${p}`)).join('').replace(/^\./, ''), i.message]);
      assert.deepEqual(got, c.issues);
    });
  }

  it('the base path is prepended (plugin options live under apps[i].sso.options)', () => {
    const [issue] = validateAgainst(schema, { mode: 'slow' }, ['apps', 2, 'sso', 'options']);
    assert.deepEqual(issue!.path, ['apps', 2, 'sso', 'options', 'mode']);
  });

  it('suggest() finds near misses only', () => {
    assert.equal(suggest('internalURL', ['internalUrl', 'externalUrl']), 'internalUrl');
    assert.equal(suggest('websocket', ['websockets', 'cookies']), 'websockets');
    assert.equal(suggest('colour', ['mode', 'version']), undefined);
  });
});

describe('config validate: formats in plugin option schemas', () => {
  const formats = { type: 'object', properties: { ip: { format: 'ipv4' }, mail: { format: 'email' }, at: { format: 'date-time' }, host: { format: 'hostname' }, url: { format: 'uri' } } };

  it('the JSON Schema formats are checked, not ignored', () => {
    const got = validateAgainst(formats, { ip: 'not-an-ip', mail: 'nobody', at: 'yesterday', host: 'a b', url: 'no url' }).map((i) => `${i.path.join('.')}: ${i.message}`);
    assert.deepEqual(got, ['ip: "not-an-ip" is not a valid ipv4', 'mail: "nobody" is not a valid email', 'at: "yesterday" is not a valid date-time', 'host: "a b" is not a valid hostname', 'url: "no url" is not a valid URL']);
    assert.deepEqual(validateAgainst(formats, { ip: '10.0.0.1', mail: 'a@example.test', at: '2024-01-02T03:04:05Z', host: 'a.example.test', url: 'https://a.example.test/' }), []);
  });

  it('an unknown format fails the compile, saying where, and writes nothing to stderr', () => {
    const write = process.stderr.write;
    let stderr = '';
    process.stderr.write = ((chunk: string) => ((stderr += chunk), true)) as typeof process.stderr.write;
    try {
      assert.throws(() => compileSchema({ type: 'object', properties: { ip: { type: 'string', format: 'ipv5' } } }), /^Error: unknown format "ipv5" at \/properties\/ip \(known: .*ipv4, ipv6.*\)$/);
    } finally {
      process.stderr.write = write;
    }
    assert.equal(stderr, '');
  });
});

describe('config validate: a plugin options schema with an $id', () => {
  it('is taken again when a reload loads the edited plugin file (a new schema under the same $id), and the new one validates', async () => {
    const dir = tempDir();
    const file = join(dir, 'ided.mjs');
    const plugin = (max: number) => `export default { name: 'ided', kind: 'sso', apiVersion: 1, optionsSchema: { $id: 'https://plugins.example.test/ided.json', type: 'object', properties: { n: { type: 'integer', maximum: ${max} } } }, create: () => ({ name: 'ided', kind: 'sso', run: () => ({ kind: 'continue' }) }) };\n`;
    for (const max of [5, 50]) {
      writeFileSync(file, plugin(max));
      const { loaded, failures } = await loadPlugins(['./ided.mjs'], dir);
      assert.deepEqual(failures.map((f) => f.message), []);
      const schema = loaded.find((l) => l.plugin.name === 'ided')!.plugin.optionsSchema;
      assert.equal(validateAgainst(schema, { n: 20 }).length, max === 5 ? 1 : 0, `maximum ${max}`);
    }
  });
});

describe('schema descriptions say what the gateway does', () => {
  it('name the app portal at publicUrl and its callback there; visibleToUsers says what it hides, and that access is unchanged', async () => {
    const { jsonSchema } = await import('../../src/config/schema.js');
    const descriptions: { path: string; text: string }[] = [];
    const walk = (node: unknown, path: string) => {
      if (!node || typeof node !== 'object') return;
      const d = (node as { description?: unknown }).description;
      if (typeof d === 'string') descriptions.push({ path, text: d });
      for (const [k, v] of Object.entries(node)) walk(v, `${path}/${k}`);
    };
    walk(jsonSchema(), '');
    const portal = descriptions.filter((d) => /portal/i.test(d.text) && !d.path.endsWith('/visibleToUsers') && !d.path.endsWith('/publicUrl'));
    assert.deepEqual(portal, []);
    const visible = descriptions.find((d) => d.path.endsWith('/visibleToUsers'))!;
    assert.match(visible.text, /app portal/);
    assert.match(visible.text, /false hides it/);
    assert.match(visible.text, /Access is unchanged/);
    const publicUrl = descriptions.find((d) => d.path.endsWith('/publicUrl'))!;
    assert.match(publicUrl.text, /app portal is served/);
    assert.match(publicUrl.text, /\/\.drawbridge\/callback on that host/);
    assert.match(publicUrl.text, /iss of identity assertions/);
  });
});
