/**
 * The operator contract: the reference file in ../shared/spec must lint clean,
 * and our fixture copy must not drift from it.
 */
import assert from 'node:assert/strict';
import { copyFileSync, existsSync, mkdirSync, readFileSync, symlinkSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadConfigFile } from '../../src/config/load.js';
import { selfSignedCert } from '../support/certs.js';
import { tempDir } from '../support/harness.js';

/** dist/test/config -> repo root */
const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
const FIXTURE = join(ROOT, 'test/fixtures/gateway.config.reference.yaml');
const SHARED = resolve(ROOT, '../shared/spec/gateway.config.reference.yaml');

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
    // Lint reads the certificates (and matches the key to its certificate), so they are real ones.
    const dir = tempDir('drawbridge-ref-');
    copyFileSync(FIXTURE, join(dir, 'gateway.config.yaml'));
    symlinkSync(join(ROOT, 'plugins-examples'), join(dir, 'plugins-examples'));
    mkdirSync(join(dir, 'certs'));
    const gateway = selfSignedCert(join(dir, 'certs'), 'gateway', ['apps.example.test', '*.apps.example.test']);
    selfSignedCert(join(dir, 'certs'), 'corp-root', ['corp-root.example.com']);
    assert.equal(gateway.cert, join(dir, 'certs', 'gateway.crt'));
    const env = { DRAWBRIDGE_CLIENT_SECRET: 'client-secret', DRAWBRIDGE_SESSION_SECRET: 's'.repeat(32) };
    const r = await loadConfigFile(join(dir, 'gateway.config.yaml'), { mode: 'lint', env });
    assert.deepEqual(r.problems.map((p) => `${p.line}:${p.col} ${p.severity} ${p.path}: ${p.message}`), []);
    assert.ok(r.plugins.some((l) => l.plugin.name === 'kcd-shim'), 'kcd-shim was loaded, so Payroll sso options were checked');
  });
});
