/**
 * The loader beyond single broken keys: several problems in one file,
 * ${env:}/${file:} in lint and at start, plugins that fail to load, and
 * files that are not YAML at all.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { ConfigInvalidError, ConfigUnreadableError } from '../../src/errors.js';
import { loadConfigFile, loadForStart } from '../../src/config/load.js';
import { contentHash } from '../../src/config/watch.js';
import { tempDir } from '../support/harness.js';

const dir = tempDir('drawbridge-load-');
let n = 0;
function write(text: string, name = `config${n++}.yaml`): string {
  const file = join(dir, name);
  writeFileSync(file, text);
  return file;
}
const lines = (r: { problems: { severity: string; line?: number; col?: number; path: string; message: string }[] }, severity: 'error' | 'warning') =>
  r.problems.filter((p) => p.severity === severity).map((p) => `${p.line}:${p.col} ${p.path}: ${p.message}`);

describe('config load', () => {
  it('reports every problem in one file, in file order, not only the first', async () => {
    const file = write(`gateway:
  publicUrl: http://localhost:8080
  listen: { http: 8080 }
  trustedProxies: [300.0.0.1]
locations:
  corp: [10.0.0.0/8]
policies:
  p: { when: { locations: [elsewhere] } }
apps:
  - name: One
    externalUrl: http://one.localhost:8080/
    internalUrl: http://127.0.0.1:3001/
    preAuth: passthrough
    backendTimeout: soon
    websocket: true
  - name: one
    externalUrl: http://one.localhost:8080/
    internalUrl: http://127.0.0.1:3002/
    preAuth: passthrough
    connectorGroup: nowhere
`);
    const r = await loadConfigFile(file, { mode: 'lint', env: {} });
    assert.deepEqual(lines(r, 'error'), [
      '4:20 gateway.trustedProxies[0]: "300.0.0.1" is not a valid CIDR range or address',
      '8:3 policies.p: a policy needs a grant or a session control',
      '8:28 policies.p.when.locations[0]: unknown location "elsewhere" (known: corp)',
      '14:21 apps[0].backendTimeout: "soon" is not allowed here: must be "default", "long" or a duration such as 90s',
      '15:5 apps[0].websocket: unknown key "websocket" (did you mean "websockets"?)',
      '16:11 apps[1].name: duplicate app name "one" (also apps[0])',
      '17:18 apps[1].externalUrl: host and path already claimed by apps[0]',
      '20:21 apps[1].connectorGroup: unknown connector group "nowhere" (none defined)',
    ]);
  });

  it('a problem quotes a long value by its start and length, and names at most ten of the known names: one line an operator can read', async () => {
    const locations = Array.from({ length: 300 }, (_, i) => `  l${i}: [10.${i >> 8}.${i & 255}.0/24]`).join('\n');
    const file = write(`gateway:
  publicUrl: http://localhost:8080
  listen: ${'x'.repeat(5000)}
locations:
${locations}
policies:
  p: { when: { locations: [elsewhere] }, grant: allow }
apps: []
`);
    const r = await loadConfigFile(file, { mode: 'lint', env: {} });
    const errors = lines(r, 'error');
    assert.equal(errors.length, 2, errors.join('\n').slice(0, 500));
    for (const e of errors) assert.ok(e.length < 400, `${e.length} characters: ${e.slice(0, 300)}`);
    assert.match(errors[0]!, /^3:11 gateway\.listen: must be a mapping, not string "x{60}…" \(5000 characters\)$/);
    assert.match(errors[1]!, /unknown location "elsewhere" \(known: l0, l1, l2, l3, l4, l5, l6, l7, l8, l9 and 290 more\)$/);
  });

  it('identity.compliantDevice may give only `equals`: the claim defaults to device_compliant, as documented', async () => {
    const file = write(`gateway:
  publicUrl: http://localhost:8080
  listen: { http: 8080 }
identity:
  issuer: http://127.0.0.1:9000
  clientId: drawbridge
  clientSecret: s
  compliantDevice: { equals: "yes" }
session:
  secrets: ["0123456789abcdef0123456789abcdef"]
apps: []
`);
    const r = await loadConfigFile(file, { mode: 'lint', env: {} });
    assert.deepEqual(lines(r, 'error'), []);
  });

  describe('${env:} and ${file:}', () => {
    const config = (secret: string) => `gateway:
  publicUrl: http://localhost:8080
  listen: { http: 8080 }
identity: { issuer: http://127.0.0.1:9000, clientId: drawbridge, clientSecret: s }
session:
  secrets: ["${secret}"]
apps: []
`;

    it('an unset variable is a warning in lint, and the value it stands for is not checked', async () => {
      const r = await loadConfigFile(write(config('${env:DB_SESSION_SECRET}')), { mode: 'lint', env: {} });
      assert.deepEqual(lines(r, 'error'), []);
      assert.deepEqual(lines(r, 'warning'), ['6:13 session.secrets[0]: environment variable DB_SESSION_SECRET is not set']);
      assert.ok(r.config, 'lint accepts the file');
    });

    it('unset variables anywhere (URLs, CIDRs, timezones, listeners, names) are only warnings in lint', async () => {
      const file = write(`gateway:
  publicUrl: \${env:PUBLIC_URL}
  listen: { http: "\${env:LISTEN}" }
  trustedProxies: ["\${env:PROXY_CIDR}"]
locations:
  corp: ["\${env:CORP_CIDR}"]
policies:
  p:
    when: { time: { timezone: "\${env:TZ_NAME}", hours: "\${env:HOURS}" } }
    grant: block
apps:
  - name: \${env:APP_NAME}
    externalUrl: \${env:EXTERNAL_URL}
    internalUrl: \${env:INTERNAL_URL}
    preAuth: passthrough
    backendTimeout: \${env:TIMEOUT}
    conditionalAccess: [p]
`);
      const lint = await loadConfigFile(file, { mode: 'lint', env: {} });
      assert.deepEqual(lines(lint, 'error'), []);
      assert.equal(lines(lint, 'warning').length, 10);
      assert.ok(lines(lint, 'warning').every((w) => / environment variable [A-Z_]+ is not set$/.test(w)), lines(lint, 'warning').join('\n'));
      // At start each is one error naming its variable, without a second one about the empty stand-in.
      const start = await loadConfigFile(file, { mode: 'start', env: {} });
      assert.equal(lines(start, 'error').length, 10, lines(start, 'error').join('\n'));
      // Once set, the values are checked like literals.
      const set = await loadConfigFile(file, {
        mode: 'start',
        env: { PUBLIC_URL: 'http://localhost:8080', LISTEN: '127.0.0.1:8080', PROXY_CIDR: '10.0.0.0/8', CORP_CIDR: '10.1.0.0/99', TZ_NAME: 'Europe/Berlin', HOURS: '08:00-18:00', APP_NAME: 'Hello', EXTERNAL_URL: 'http://hello.localhost:8080/', INTERNAL_URL: 'http://127.0.0.1:3001/', TIMEOUT: '30s' },
      });
      assert.deepEqual(lines(set, 'error'), ['6:10 locations.corp[0]: "${env:CORP_CIDR}" is not a valid CIDR range or address']);
    });

    it('a whole-value reference reads as the number or boolean the schema wants there, and stays a string elsewhere', async () => {
      const file = write(`gateway:
  publicUrl: http://localhost:8080
  listen:
    http: \${env:PORT}
  admin:
    listen: \${env:ADMIN}
identity:
  issuer: http://127.0.0.1:9000
  clientId: \${env:CLIENT_ID}
  clientSecret: s
session: { secrets: ["0123456789abcdef0123456789abcdef"] }
apps:
  - name: \${env:CLIENT_ID}
    externalUrl: http://hello.localhost:8080/
    internalUrl: http://127.0.0.1:3001/
    websockets: \${env:WEBSOCKETS}
    visibleToUsers: \${env:VISIBLE}
`);
      const env = { PORT: '8080', ADMIN: '127.0.0.1:9090', CLIENT_ID: '12345', WEBSOCKETS: 'true', VISIBLE: 'false' };
      const r = await loadForStart(file, env);
      assert.equal(r.config.gateway.listen.http, 8080);
      assert.equal(r.config.gateway.admin?.listen, '127.0.0.1:9090');
      assert.equal(r.config.identity?.clientId, '12345');
      assert.equal(r.config.apps[0]!.name, '12345');
      assert.equal(r.config.apps[0]!.websockets, true);
      assert.equal(r.config.apps[0]!.visibleToUsers, false);
      const bad = await loadConfigFile(file, { mode: 'start', env: { ...env, PORT: 'eighty', VISIBLE: 'yes' } });
      assert.deepEqual(lines(bad, 'error'), [
        '4:11 gateway.listen.http: "${env:PORT}" is not allowed here: must be a port number (0-65535) or host:port',
        '17:21 apps[0].visibleToUsers: must be a boolean, not string "${env:VISIBLE}"',
      ]);
    });

    it('an unset variable is an error at start that names it', async () => {
      const file = write(config('${env:DB_SESSION_SECRET}'));
      await assert.rejects(loadForStart(file, {}), (e: unknown) => {
        assert.ok(e instanceof ConfigInvalidError);
        assert.equal(e.code, 'ERR_CONFIG_INVALID');
        assert.match(e.message, /6:13: error: session\.secrets\[0\]: environment variable DB_SESSION_SECRET is not set/);
        return true;
      });
    });

    it('a set variable is substituted and then checked like a literal', async () => {
      const file = write(config('${env:DB_SESSION_SECRET}'));
      const short = await loadConfigFile(file, { mode: 'lint', env: { DB_SESSION_SECRET: 'short' } });
      assert.deepEqual(lines(short, 'error'), ['6:13 session.secrets[0]: a session secret needs at least 32 characters']);
      const good = await loadForStart(file, { DB_SESSION_SECRET: 'x'.repeat(40) });
      assert.equal(good.config.session?.secrets[0], 'x'.repeat(40));
      assert.ok(Object.isFrozen(good.config.session?.secrets), 'the validated config is frozen');
    });

    it('${file:} reads a file relative to the config (trailing newline dropped) and watches it', async () => {
      const secretFile = join(dir, 'session.secret');
      writeFileSync(secretFile, 'y'.repeat(33) + '\n');
      const r = await loadForStart(write(config('${file:session.secret}')), {});
      assert.equal(r.config.session?.secrets[0], 'y'.repeat(33));
      assert.ok(r.referencedFiles.includes(secretFile));
    });

    it('a ${file:} file is read once per load, and the load is hashed from those bytes: a write after the read is a change for the next reload', async () => {
      const secretFile = join(dir, 'rotated.secret');
      writeFileSync(secretFile, 'a'.repeat(33) + '\n');
      const file = write(`gateway:
  publicUrl: http://localhost:8080
  listen: { http: 8080 }
identity: { issuer: http://127.0.0.1:9000, clientId: drawbridge, clientSecret: "\${file:rotated.secret}" }
session:
  secrets: ["\${file:./rotated.secret}"]
apps: []
`);
      const r = await loadForStart(file, {});
      const asRead = contentHash(r.text, r.referencedFiles);
      writeFileSync(secretFile, 'b'.repeat(33) + '\n');
      assert.deepEqual([...r.readFiles.keys()], [secretFile], 'both references share one read');
      assert.equal(contentHash(r.text, r.referencedFiles, r.readFiles), asRead, 'the hash of what built the config');
      assert.notEqual(contentHash(r.text, r.referencedFiles), asRead, 'the file on disk now differs from it');
      assert.equal(r.config.session?.secrets[0], 'a'.repeat(33));
    });

    it('no problem shows a resolved value: lint in CI must not print secrets or files into the build log', async () => {
      const leaked = join(dir, 'leaked.env');
      writeFileSync(leaked, 'TOKEN="ghp_fromfile"\nOTHER=secret-line-two\n');
      const file = write(`gateway:
  publicUrl: \${file:leaked.env}
  listen: { http: 8080 }
apps:
  - name: A
    externalUrl: http://a.localhost:8080/
    internalUrl: \${env:CI_TOKEN}
    preAuth: passthrough
`);
      const r = await loadConfigFile(file, { mode: 'lint', env: { CI_TOKEN: 'ghp_fromenv-0123' } });
      const all = lines(r, 'error');
      assert.deepEqual(all, ['2:14 gateway.publicUrl: "${file:leaked.env}" is not a valid URL', '7:18 apps[0].internalUrl: "${env:CI_TOKEN}" is not a valid URL']);
      assert.ok(!JSON.stringify(r.problems).match(/ghp_|secret-line/), JSON.stringify(r.problems));
    });

    it('a value inside another (${env:HOME} in ${file:/proc/self/environ}) does not break the redaction of the longer one', async () => {
      // replaced in document order, the shorter value first, the environment after HOME= was printed
      writeFileSync(join(dir, 'environ'), 'PATH=/usr/bin\0HOME=/home/ci\0AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI\0');
      const file = write(`gateway:
  publicUrl: http://localhost:8080
  listen: { http: 8080 }
apps:
  - name: A
    externalUrl: http://a.localhost:8080/
    audience: \${env:HOME}
    internalUrl: \${file:environ}
    preAuth: passthrough
`);
      const r = await loadConfigFile(file, { mode: 'lint', env: { HOME: '/home/ci' } });
      assert.ok(lines(r, 'error').includes('8:18 apps[0].internalUrl: "${file:environ}" is not a valid URL'), JSON.stringify(r.problems));
      assert.doesNotMatch(JSON.stringify(r.problems), /wJalr|usr\/bin/);
    });

    it('a hint computed from a resolved value (a normalized path) names the reference, never the value', async () => {
      const file = write(`gateway:
  publicUrl: http://localhost:8080
  listen: { http: 8080 }
  admin: { listen: "\${env:ADMIN}" }
policies:
  p:
    when: { paths: ["\${env:S}"] }
    grant: block
  q:
    when: { paths: ["/x/*"] }
    grant: block
apps:
  - name: A
    externalUrl: http://a.localhost:8080/\${env:PREFIX}/
    internalUrl: http://127.0.0.1:3001/
    preAuth: passthrough
    conditionalAccess: [p, q]
  - name: B
    externalUrl: http://\${env:HOST}/b/
    internalUrl: http://127.0.0.1:3001/b/
    preAuth: passthrough
  - name: C
    externalUrl: http://\${env:HOST}/c/
    internalUrl: http://127.0.0.1:3001/c/
    preAuth: passthrough
    assignment: { groups: [g] }
`);
      // the URL parser encodes the space: what it gives is no longer the value redaction looks for
      const env = { S: '/x/../TopSecretValue123', PREFIX: 'a b/%2FHiddenPrefix99', ADMIN: '8.8.8.8:9099', HOST: 'secret-host-77.example' };
      const r = await loadConfigFile(file, { mode: 'lint', env });
      const all = r.problems.map((p) => `${p.line}:${p.col} ${p.path}: ${p.message}`);
      assert.doesNotMatch(all.join('\n'), /TopSecretValue123|HiddenPrefix99|8\.8\.8\.8|9099|secret-host-77/);
      // the lint warnings computed from URLs: the app's internal path, a host shared with another app
      assert.ok(all.some((l) => l.includes('apps[0].internalUrl: its path / is not externalUrl\'s (that of "http://a.localhost:8080/${env:PREFIX}/")')), all.join('\n'));
      assert.ok(all.some((l) => l.includes('apps[2].externalUrl: shares its host with apps[1]')), all.join('\n'));
      assert.ok(all.some((l) => l.startsWith('7:21 policies.p.when.paths[0]: request paths are compared in normalized form, so the path "${env:S}" resolves to would never match')), all.join('\n'));
      assert.ok(all.some((l) => l.includes('apps[0].externalUrl: no request path can start with the path "http://a.localhost:8080/${env:PREFIX}/" resolves to')), all.join('\n'));
      assert.ok(all.some((l) => l.includes('policies.q.when.paths: none of these paths can match app A, published at the path of "http://a.localhost:8080/${env:PREFIX}/"')), all.join('\n'));
      assert.ok(all.some((l) => l.includes('gateway.admin.listen: binds further than this host') && l.includes('make "${env:ADMIN}" resolve to 127.0.0.1')), all.join('\n'));
    });

    it('a missing ${file:} is a warning in lint and an error at start', async () => {
      const file = write(config('${file:missing.secret}'));
      const lint = await loadConfigFile(file, { mode: 'lint', env: {} });
      assert.deepEqual(lines(lint, 'warning'), ['6:13 session.secrets[0]: cannot read missing.secret: ENOENT']);
      const start = await loadConfigFile(file, { mode: 'start', env: {} });
      assert.deepEqual(lines(start, 'error'), ['6:13 session.secrets[0]: cannot read missing.secret: ENOENT']);
      assert.equal(start.config, undefined);
    });
  });

  describe('plugins', () => {
    const withPlugin = (spec: string) => `gateway:
  publicUrl: http://localhost:8080
  listen: { http: 8080 }
plugins:
  - ${spec}
apps: []
`;
    const pluginDir = join(dir, 'plugins');
    mkdirSync(pluginDir, { recursive: true });
    const plugin = (name: string, body: string) => {
      writeFileSync(join(pluginDir, name), body);
      return `./plugins/${name}`;
    };
    const broken: { description: string; file: string; body: string; message: RegExp }[] = [
      // The error's class and where to see the rest: its message may quote the file (see below).
      { description: 'throws while loading', file: 'throws.js', body: `throw new Error('boom at import');\n`, message: /failed to load: Error in \/.*\/throws\.js \(run `node \/.*\/throws\.js` for details\)$/ },
      { description: 'is not valid JavaScript', file: 'syntax.js', body: `export default { name: 'x', \n`, message: /failed to load: SyntaxError in \/.*\/syntax\.js \(run `node / },
      // Node's resolution errors name modules and paths, not the file's content: the author needs them.
      { description: 'imports a package that is not installed', file: 'nodep.mjs', body: `import 'drawbridge-no-such-dependency';\nexport default {};\n`, message: /failed to load: Error \[ERR_MODULE_NOT_FOUND\] in \/.*\/nodep\.mjs: Cannot find package 'drawbridge-no-such-dependency' imported from / },
      { description: 'requires a package that is not installed', file: 'nodep.cjs', body: `require('drawbridge-no-such-dependency');\n`, message: /failed to load: Error \[MODULE_NOT_FOUND\] in \/.*\/nodep\.cjs: Cannot find module 'drawbridge-no-such-dependency'$/ },
      { description: 'exports nothing', file: 'empty.js', body: `export const unrelated = 1;\n`, message: /exports no plugin/ },
      { description: 'has no create function', file: 'nocreate.js', body: `export default { name: 'nocreate', kind: 'sso', apiVersion: 1, optionsSchema: {} };\n`, message: /plugin nocreate: create must be a function/ },
      { description: 'speaks another API version', file: 'v2.js', body: `export default { name: 'v2', kind: 'sso', apiVersion: 2, optionsSchema: {}, create() {} };\n`, message: /apiVersion 2 is not supported/ },
      { description: 'has an unknown kind', file: 'kind.js', body: `export default { name: 'kind', kind: 'upstream', apiVersion: 1, optionsSchema: {}, create() {} };\n`, message: /kind must be one of preauth, access, sso, headers/ },
      { description: 'has an optionsSchema that is not JSON Schema', file: 'badschema.js', body: `export default { name: 'badschema', kind: 'sso', apiVersion: 1, optionsSchema: { type: 'objekt' }, create() {} };\n`, message: /^plugin "\.\/plugins\/badschema\.js": optionsSchema is not a valid JSON Schema: data\/type must be equal to one of the allowed values/ },
      { description: 'uses a format no one knows in its optionsSchema', file: 'format.js', body: `export default { name: 'format', kind: 'sso', apiVersion: 1, optionsSchema: { properties: { ip: { format: 'ipv5' } } }, create() {} };\n`, message: /^plugin "\.\/plugins\/format\.js": optionsSchema is not a valid JSON Schema: unknown format "ipv5" at \/properties\/ip/ },
      { description: 'takes a built-in name', file: 'clash.js', body: `export default { name: 'passthrough', kind: 'preauth', apiVersion: 1, optionsSchema: {}, create() {} };\n`, message: /name "passthrough" is already taken by a built-in/ },
    ];
    for (const b of broken) {
      it(`a plugin that ${b.description} fails the config, in lint and at start`, async () => {
        const file = write(withPlugin(plugin(b.file, b.body)));
        for (const mode of ['lint', 'start'] as const) {
          const r = await loadConfigFile(file, { mode, env: {} });
          const errors = r.problems.filter((p) => p.severity === 'error');
          assert.equal(errors.length, 1, lines(r, 'error').join('\n'));
          assert.equal(`${errors[0]!.line}:${errors[0]!.col} ${errors[0]!.path}`, '5:5 plugins[0]');
          assert.match(errors[0]!.message, b.message);
          assert.equal(r.config, undefined);
        }
      });
    }

    it('an optionsSchema that is not JSON Schema is one error at the plugins: entry, not a stack trace or also an unknown sso.plugin', async () => {
      writeFileSync(join(pluginDir, 'objekt.mjs'), `export default { name: 'objekt', kind: 'sso', apiVersion: 1, optionsSchema: { type: 'objekt' }, create() {} };\n`);
      const file = write(`gateway:
  publicUrl: http://localhost:8080
  listen: { http: 8080 }
identity: { issuer: http://127.0.0.1:9000, clientId: drawbridge, clientSecret: s }
session: { secrets: ["0123456789abcdef0123456789abcdef"] }
plugins: [./plugins/objekt.mjs]
apps:
  - name: A
    externalUrl: http://a.localhost:8080/
    internalUrl: http://127.0.0.1:3001/
    sso: { plugin: objekt, options: { any: thing } }
`);
      for (const mode of ['lint', 'start'] as const) {
        const r = await loadConfigFile(file, { mode, env: {} });
        assert.deepEqual(lines(r, 'error').map((l) => l.replace(/: data\/type .*/, '')), ['6:11 plugins[0]: plugin "./plugins/objekt.mjs": optionsSchema is not a valid JSON Schema']);
        assert.deepEqual(lines(r, 'warning'), []);
      }
      await assert.rejects(loadForStart(file, {}), (e: unknown) => e instanceof ConfigInvalidError && /6:11: error: plugins\[0\]: plugin "\.\/plugins\/objekt\.mjs": optionsSchema is not a valid JSON Schema/.test(e.message));
    });

    describe('an app\'s sso.plugin', () => {
      const KCD_SHIM = resolve('plugins-examples/kcd-shim/index.js');
      const withSso = (plugins: string[], name: string) => `gateway:
  publicUrl: http://localhost:8080
  listen: { http: 8080 }
identity: { issuer: http://127.0.0.1:9000, clientId: drawbridge, clientSecret: s }
session: { secrets: ["0123456789abcdef0123456789abcdef"] }
plugins: ${JSON.stringify(plugins)}
apps:
  - name: A
    externalUrl: http://a.localhost:8080/
    internalUrl: http://127.0.0.1:3001/
    sso: { plugin: ${name}, options: { servicePrincipal: HTTP/a@CORP } }
`;

      it('naming a plugin from a package not installed here, whose package name is not its plugin name, is a warning in lint and an error at start', async () => {
        const file = write(withSso(['drawbridge-plugin-kcd-shim'], 'kcd-shim'));
        const lint = await loadConfigFile(file, { mode: 'lint', env: {} });
        assert.deepEqual(lines(lint, 'error'), []);
        const warnings = lines(lint, 'warning');
        assert.equal(warnings.length, 2, warnings.join('\n'));
        assert.match(warnings[0]!, /^6:11 plugins\[0\]: plugin "drawbridge-plugin-kcd-shim" not found /);
        assert.equal(warnings[1], '11:20 apps[0].sso.plugin: no plugin loaded here is named "kcd-shim": it may be the one a plugins: entry that was not loaded provides (its options were not checked)');
        const start = await loadConfigFile(file, { mode: 'start', env: {} });
        assert.deepEqual(lines(start, 'error').map((l) => l.split(': ')[0]), ['6:11 plugins[0]', '11:20 apps[0].sso.plugin']);
      });

      it('with every plugins: entry loaded, an unknown name is an error in lint', async () => {
        const lint = await loadConfigFile(write(withSso([KCD_SHIM], 'kerberos')), { mode: 'lint', env: {} });
        assert.deepEqual(lines(lint, 'error').map((l) => l.split(' (')[0]), ['11:20 apps[0].sso.plugin: unknown plugin "kerberos"']);
      });

      it('the unknown-plugin hint lists only plugins sso.plugin accepts', async () => {
        const some = await loadConfigFile(write(withSso([KCD_SHIM], 'kerberos')), { mode: 'lint', env: {} });
        assert.deepEqual(lines(some, 'error'), ['11:20 apps[0].sso.plugin: unknown plugin "kerberos" (sso plugins: kcd-shim)']);
        const none = await loadConfigFile(write(withSso([], 'kerberos')), { mode: 'lint', env: {} });
        assert.deepEqual(lines(none, 'error'), ['11:20 apps[0].sso.plugin: unknown plugin "kerberos" (no sso plugin is loaded: list it under plugins:)']);
      });

      it('a plugin of another kind is named with its article ("an access plugin")', async () => {
        const r = await loadConfigFile(write(withSso([], 'assignment')), { mode: 'lint', env: {} });
        assert.deepEqual(lines(r, 'error'), ['11:20 apps[0].sso.plugin: plugin "assignment" is an access plugin, not an sso plugin']);
      });
    });

    describe('a plugins: entry cannot print a file that is not a plugin (lint runs in CI on proposed configs)', () => {
      const SECRET = 'hunter2SuperSecret';
      const secretFile = (name: string) => {
        writeFileSync(join(pluginDir, name), `${SECRET}\n`);
        return join(pluginDir, name);
      };
      const refused = [
        { description: 'an extensionless file (Node would run it as CommonJS)', spec: () => (secretFile('db_password'), './plugins/db_password') },
        { description: 'an absolute path', spec: () => secretFile('token') },
        { description: 'a file with another extension', spec: () => (secretFile('secret.txt'), './plugins/secret.txt') },
        { description: 'a file that is not there but could not be a plugin anyway', spec: () => './plugins/absent.json' },
      ];
      for (const r of refused) {
        it(`${r.description} is refused before it is imported, in lint too, with nothing from the file`, async () => {
          const spec = r.spec();
          const file = write(withPlugin(JSON.stringify(spec)));
          for (const mode of ['lint', 'start'] as const) {
            const result = await loadConfigFile(file, { mode, env: {} });
            assert.deepEqual(lines(result, 'error'), [`5:5 plugins[0]: plugin ${JSON.stringify(spec)} is not a JavaScript module: a plugin path must name a .js, .mjs or .cjs file (or a package folder)`]);
          }
        });
      }

      it('a .js file holding a secret fails with the error class and path only (the ReferenceError would name the secret)', async () => {
        const js = secretFile('leak.js');
        const file = write(withPlugin('./plugins/leak.js'));
        const r = await loadConfigFile(file, { mode: 'lint', env: {} });
        assert.deepEqual(lines(r, 'error'), [`5:5 plugins[0]: plugin "./plugins/leak.js" failed to load: ReferenceError in ${js} (run \`node ${js}\` for details)`]);
        assert.ok(!JSON.stringify(r.problems).includes(SECRET));
      });

      it('a file whose tokens a SyntaxError would quote is not quoted', async () => {
        writeFileSync(join(pluginDir, 'quote.mjs'), `export default { ${SECRET} ${SECRET} }\n`);
        const r = await loadConfigFile(write(withPlugin('./plugins/quote.mjs')), { mode: 'lint', env: {} });
        assert.match(lines(r, 'error')[0]!, /failed to load: SyntaxError in /);
        assert.ok(!JSON.stringify(r.problems).includes(SECRET));
      });

      it('a package whose entry point is not a .js, .mjs or .cjs file is refused before it is imported', async () => {
        const pkg = join(dir, 'node_modules', 'leaky');
        mkdirSync(pkg, { recursive: true });
        writeFileSync(join(pkg, 'package.json'), JSON.stringify({ name: 'leaky', main: 'secret' }));
        writeFileSync(join(pkg, 'secret'), `${SECRET}\n`);
        const r = await loadConfigFile(write(withPlugin('leaky')), { mode: 'lint', env: {} });
        assert.deepEqual(lines(r, 'error'), [`5:5 plugins[0]: plugin "leaky" is not a JavaScript module: it resolves to ${join(pkg, 'secret')}, and a plugin must be a .js, .mjs or .cjs file`]);
      });

      it('a package folder given by path loads through its package.json', async () => {
        const folder = join(pluginDir, 'folder-plugin');
        mkdirSync(folder, { recursive: true });
        writeFileSync(join(folder, 'package.json'), JSON.stringify({ name: 'folder-plugin', type: 'module', main: 'index.js' }));
        writeFileSync(join(folder, 'index.js'), `export default { name: 'folder-plugin', kind: 'sso', apiVersion: 1, optionsSchema: {}, create() {} };\n`);
        const r = await loadConfigFile(write(withPlugin('./plugins/folder-plugin')), { mode: 'lint', env: {} });
        assert.deepEqual(lines(r, 'error'), []);
        assert.ok(r.plugins.some((l) => l.plugin.name === 'folder-plugin'));
      });
    });

    it('a plugin that is not installed here is a warning in lint (it may exist where the gateway runs) but fails start', async () => {
      const file = write(withPlugin('./plugins/not-there.js'));
      const lint = await loadConfigFile(file, { mode: 'lint', env: {} });
      assert.deepEqual(lines(lint, 'error'), []);
      assert.match(lines(lint, 'warning')[0]!, /^5:5 plugins\[0\]: plugin ".\/plugins\/not-there.js" not found .*its options were not checked$/);
      const start = await loadConfigFile(file, { mode: 'start', env: {} });
      assert.match(lines(start, 'error')[0]!, /^5:5 plugins\[0\]: plugin ".\/plugins\/not-there.js" not found/);
    });
  });

  describe('files that are not a config at all', () => {
    it('YAML syntax errors are unreadable, with the position', async () => {
      const file = write('gateway:\n  publicUrl: [http://x\napps: []\n');
      await assert.rejects(loadConfigFile(file, { mode: 'lint' }), (e: unknown) => {
        assert.ok(e instanceof ConfigUnreadableError);
        assert.equal(e.code, 'ERR_CONFIG_UNREADABLE');
        assert.match(e.message, /not valid YAML/);
        assert.equal(typeof e.line, 'number');
        return true;
      });
    });

    it('an alias without its anchor is unreadable, at the alias', async () => {
      const file = write('gateway:\n  publicUrl: http://localhost:8080\n  listen: { http: 8080 }\napps: *apps\n');
      await assert.rejects(loadConfigFile(file, { mode: 'lint' }), (e: unknown) => {
        assert.ok(e instanceof ConfigUnreadableError);
        assert.equal(`${e.line}:${e.col}`, '4:7');
        assert.match(e.message, /alias \*apps has no anchor &apps before it/);
        return true;
      });
    });

    it('an alias bomb is refused as unreadable, not expanded', async () => {
      const rows = ['a: &a [x, x, x, x, x, x, x, x, x]'];
      for (const [name, prev] of [['b', 'a'], ['c', 'b'], ['d', 'c'], ['e', 'd'], ['f', 'e'], ['g', 'f']]) rows.push(`${name}: &${name} [${Array(9).fill(`*${prev}`).join(', ')}]`);
      const file = write(rows.join('\n') + '\n');
      await assert.rejects(loadConfigFile(file, { mode: 'lint' }), (e: unknown) => e instanceof ConfigUnreadableError && /resource exhaustion/.test(e.message));
    });

    it('an alias inside its own anchor is unreadable at the alias, not a stack overflow', async () => {
      for (const [text, at] of [
        ['gateway: &g\n  x: *g\napps: []\n', '2:6'],
        ['gateway: { publicUrl: http://localhost:8080, listen: { http: 8080 } }\nconnectorGroups: &cg\n  loop: *cg\napps: []\n', '3:9'],
        ['gateway: { publicUrl: http://localhost:8080, listen: { http: 8080 } }\napps: &a\n  - *a\n', '3:5'],
      ]) {
        await assert.rejects(loadConfigFile(write(text!), { mode: 'lint' }), (e: unknown) => {
          assert.ok(e instanceof ConfigUnreadableError, String(e));
          assert.equal(`${e.line}:${e.col}`, at, text);
          assert.match(e.message, /not valid YAML: alias \*\w+ is inside the value its anchor &\w+ names/);
          return true;
        });
      }
    });

    it('one anchor used by 60 apps is no alias bomb; a bomb is refused at the alias that crosses the limit', async () => {
      const apps = Array.from({ length: 60 }, (_, i) => `  - name: A${i}
    externalUrl: http://a${i}.localhost:8080/
    internalUrl: http://127.0.0.1:3001/
    preAuth: ${i ? '*p' : '&p passthrough'}
    headers: ${i ? '*h' : '&h { forwarded: true }'}`);
      const r = await loadConfigFile(write(`gateway:\n  publicUrl: http://localhost:8080\n  listen: { http: 8080 }\napps:\n${apps.join('\n')}\n`), { mode: 'lint' });
      assert.deepEqual(lines(r, 'error'), []);
      // a list of 400 items (401 nodes) aliased 80 times in each of 4 lists: the 10th alias of the last crosses 100,000
      const rows = ['a: &a [' + Array(400).fill('x').join(', ') + ']'];
      rows.push(`b: [${Array(80).fill('*a').join(', ')}]`, `c: [${Array(80).fill('*a').join(', ')}]`, `d: [${Array(80).fill('*a').join(', ')}]`, `e: [${Array(80).fill('*a').join(', ')}]`);
      await assert.rejects(loadConfigFile(write(rows.join('\n') + '\n'), { mode: 'lint' }), (e: unknown) => {
        assert.ok(e instanceof ConfigUnreadableError);
        assert.equal(`${e.line}:${e.col}`, `5:${5 + 4 * 9}`);
        assert.match(e.message, /with alias \*a the aliases expand to more than 100000 nodes \(refused: a resource exhaustion guard\)/);
        return true;
      });
    });

    it('a number key and the same key quoted are duplicates (2024 and "2024" are one key once loaded), at the second', async () => {
      const r = await loadConfigFile(
        write(`gateway: { publicUrl: http://localhost:8080, listen: { http: 8080 } }
policies:
  2024: { when: { paths: ["/admin/*"] }, grant: block }
  "2024": { when: { paths: ["/admin/*"] }, grant: allow }
connectorGroups:
  1: {}
  '1': {}
locations:
  true: [10.0.0.0/8]
  "true": [10.0.0.0/8]
apps: []
`),
        { mode: 'lint' },
      );
      assert.deepEqual(lines(r, 'error').filter((l) => l.includes('duplicate')), [
        '4:3 policies["2024"]: duplicate key "2024" (the later value would silently replace the earlier one)',
        '7:3 connectorGroups["1"]: duplicate key "1" (the later value would silently replace the earlier one)',
        '10:3 locations.true: duplicate key "true" (the later value would silently replace the earlier one)',
      ]);
    });

    it('ordinary anchors and aliases work', async () => {
      const file = write(`gateway:
  publicUrl: http://localhost:8080
  listen: { http: 8080 }
identity: { issuer: http://127.0.0.1:9000, clientId: drawbridge, clientSecret: s }
session: { secrets: ["0123456789abcdef0123456789abcdef"] }
apps:
  - name: One
    externalUrl: http://one.localhost:8080/
    internalUrl: http://127.0.0.1:3001/
    assignment: &finance { groups: [finance, audit] }
  - name: Two
    externalUrl: http://two.localhost:8080/
    internalUrl: http://127.0.0.1:3002/
    assignment: *finance
`);
      const r = await loadForStart(file, {});
      assert.deepEqual(r.config.apps[1]!.assignment?.groups, ['finance', 'audit']);
    });

    it('several YAML documents in one file are unreadable, in words an operator understands', async () => {
      const file = write('gateway:\n  publicUrl: http://localhost:8080\n---\napps: []\n');
      await assert.rejects(loadConfigFile(file, { mode: 'lint' }), (e: unknown) => {
        assert.ok(e instanceof ConfigUnreadableError);
        assert.equal(`${e.line}:${e.col}`, '3:1');
        assert.match(e.message, /more than one YAML document \(a --- line\)/);
        return true;
      });
    });

    it('a file that is not UTF-8 is unreadable, at the first bad byte (a Latin-1 group name would match nobody)', async () => {
      const file = join(dir, `latin1-${n++}.yaml`);
      writeFileSync(file, Buffer.concat([Buffer.from('gateway:\n  publicUrl: http://localhost:8080 # caf\u00e9 is fine\n  listen: { http: 8080 }\napps: [fin'), Buffer.from([0xe9]), Buffer.from(']\n')]));
      await assert.rejects(loadConfigFile(file, { mode: 'lint' }), (e: unknown) => {
        assert.ok(e instanceof ConfigUnreadableError);
        assert.equal(`${e.line}:${e.col}`, '4:11');
        assert.match(e.message, /not valid YAML: the file is not UTF-8 \(byte 0xe9 here\); save it as UTF-8/);
        return true;
      });
      // A UTF-8 byte-order mark is still fine.
      const bom = join(dir, `bom-${n++}.yaml`);
      writeFileSync(bom, '\ufeffgateway:\n  publicUrl: http://localhost:8080\n  listen: { http: 8080 }\napps: []\n');
      assert.deepEqual((await loadConfigFile(bom, { mode: 'lint' })).problems, []);
    });

    it('a list or mapping as a key ("? [a, b]") is unreadable at the key, without a warning on stderr', async () => {
      const warnings: string[] = [];
      const onWarning = (w: Error) => warnings.push(w.message);
      process.on('warning', onWarning);
      try {
        const file = write('gateway:\n  publicUrl: http://localhost:8080\n  listen: { http: 8080 }\n? [a, b]\n: 1\napps: []\n');
        await assert.rejects(loadConfigFile(file, { mode: 'lint' }), (e: unknown) => {
          assert.ok(e instanceof ConfigUnreadableError);
          assert.equal(`${e.line}:${e.col}`, '4:3');
          assert.match(e.message, /a key must be a single value, not a list or mapping/);
          return true;
        });
        await new Promise((r) => setImmediate(r));
      } finally {
        process.off('warning', onWarning);
      }
      assert.deepEqual(warnings, []);
    });

    it('a missing file is unreadable', async () => {
      await assert.rejects(loadConfigFile(join(dir, 'nope.yaml'), { mode: 'lint' }), (e: unknown) => e instanceof ConfigUnreadableError && /ENOENT/.test(e.message));
    });

    it('a FIFO, a device or a file over 4 MiB is unreadable at once, as a ${file:} value would be', async () => {
      const fifo = join(dir, `fifo-${n++}.yaml`);
      execFileSync('mkfifo', [fifo]);
      const big = join(dir, `big-${n++}.yaml`);
      writeFileSync(big, `# ${'x'.repeat(4 * 1024 * 1024)}\napps: []\n`);
      for (const [file, why] of [
        [fifo, 'it is a named pipe (FIFO), not a regular file'],
        ['/dev/zero', 'it is a character device, not a regular file'],
        [dir, 'it is a directory, not a regular file'],
        [big, `it is ${4 * 1024 * 1024 + 12} bytes, over the limit of 4194304 bytes`],
      ]) {
        await assert.rejects(loadConfigFile(file!, { mode: 'lint' }), (e: unknown) => e instanceof ConfigUnreadableError && e.message === `cannot read ${file}: ${why}`);
      }
    });

    it('an empty file and a scalar are invalid, not unreadable', async () => {
      const empty = await loadConfigFile(write(''), { mode: 'lint' });
      assert.deepEqual(lines(empty, 'error'), ['1:1 : the file is empty: it needs at least gateway: and apps:']);
      const scalar = await loadConfigFile(write('hello\n'), { mode: 'lint' });
      assert.deepEqual(lines(scalar, 'error'), ['1:1 : must be a mapping, not string "hello"']);
    });
  });
});
