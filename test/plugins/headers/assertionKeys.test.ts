import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { AssertionKeyStore } from '../../../src/plugins/headers/assertionKeys.js';
import { eventually, tempDir } from '../../support/harness.js';

describe('assertion signing keys: kept in stateDir, rotated with overlap', () => {
  const H = 3_600_000;
  const timings = { rotateAfterMs: 24 * H, activateAfterMs: 1 * H, retainMs: 2 * H };

  it('makes one key on first start, keeps it private on disk, and reloads the same key', async () => {
    const dir = tempDir();
    const a = new AssertionKeyStore(dir, () => 0, timings);
    await a.ready();
    const kid = a.signingKey().kid;
    assert.equal(statSync(join(dir, 'assertion-keys.json')).mode & 0o777, 0o600);
    const b = new AssertionKeyStore(dir, () => 0, timings);
    await b.ready();
    assert.equal(b.signingKey().kid, kid);
    assert.deepEqual(b.jwks(), a.jwks());
  });

  it('a damaged key file fails the load with the remedy; once it is removed, as told, the next load makes a key (it kept failing until a restart)', async () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'assertion-keys.json'), '{ not json');
    const store = new AssertionKeyStore(dir, () => 0, timings);
    await assert.rejects(store.ready(), /is not readable JSON .*remove it to make a new signing key/);
    await assert.rejects(store.ready(), /is not readable JSON/, 'still damaged: still refused');
    rmSync(join(dir, 'assertion-keys.json'));
    await store.ready();
    assert.match(store.signingKey().kid, /./);
  });

  it('a key file whose private key is not the one it publishes is refused with the remedy (no app could verify what it signed)', async () => {
    const dir = tempDir();
    await new AssertionKeyStore(dir, () => 0, timings).ready();
    const file = join(dir, 'assertion-keys.json');
    const stored = JSON.parse(readFileSync(file, 'utf8'));
    const other = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'jwk' });
    stored.keys[0].jwk.d = other.d;
    writeFileSync(file, JSON.stringify(stored));
    await assert.rejects(new AssertionKeyStore(dir, () => 0, timings).ready(), /does not match its public key: restore it from a backup, or remove it/);
  });

  it('publishes the next key before signing with it and the old one after', async () => {
    const dir = tempDir();
    let t = 0;
    const store = new AssertionKeyStore(dir, () => t, timings);
    await store.ready();
    const k1 = store.signingKey().kid;

    t = 25 * H; // rotation due
    await store.maintain();
    const published = store.jwks().keys.map((k) => k.kid);
    assert.equal(published.length, 2, 'the new key is published at once');
    assert.equal(store.signingKey().kid, k1, 'but does not sign until apps could have fetched it');
    const k2 = published.find((k) => k !== k1)!;

    t = 26 * H + 1; // activated
    assert.equal(store.signingKey().kid, k2);
    assert.deepEqual(store.jwks().keys.map((k) => k.kid).sort(), [k1, k2].sort(), 'the old key stays for assertions already out');

    t = 28 * H + 2; // retained long enough
    await store.maintain();
    assert.deepEqual(store.jwks().keys.map((k) => k.kid), [k2]);
    const reloaded = new AssertionKeyStore(dir, () => t, timings);
    await reloaded.ready();
    assert.deepEqual(reloaded.jwks().keys.map((k) => k.kid), [k2], 'rotation is persisted');
  });

  it('a rotated key that cannot be saved (a full disk at rotation) is logged at error naming the file', async () => {
    const dir = tempDir();
    let t = 0;
    const errors: [Record<string, unknown>, string][] = [];
    const log = { warn: () => undefined, error: (o: Record<string, unknown>, msg: string) => void errors.push([o, msg]) };
    const store = new AssertionKeyStore(dir, () => t, timings);
    await store.ready(log as never);
    const file = join(dir, 'assertion-keys.json');
    // the save's temporary file cannot be written: what ENOSPC does, without filling a disk
    mkdirSync(`${file}.${process.pid}.tmp`);
    t = 25 * H;
    store.signingKey();
    await eventually(() => errors.length > 0);
    assert.equal(errors[0]![0].file, file);
    assert.match(String(errors[0]![0].reason), /EISDIR/);
    assert.equal(errors[0]![1], `could not save the rotated assertion keys to ${file}: the new key is used from memory and lost at the next restart`);
  });
});
