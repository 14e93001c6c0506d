import assert from 'node:assert/strict';
import { appendFileSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { SessionRevocations } from '../../src/identity/revocations.js';
import { tempDir } from '../support/harness.js';

describe('identity: revoked sessions in stateDir', () => {
  it('a revoked session stays revoked until its own expiry, for this process and for one that starts later', () => {
    const dir = tempDir();
    const store = SessionRevocations.at(dir);
    assert.equal(SessionRevocations.at(dir), store, 'one store per stateDir, shared by generations');
    store.revoke('a', 2000, 1000);
    store.revoke('b', 1500, 1000);
    assert.equal(store.has('a', 1400), true);
    assert.equal(store.has('c', 1400), false);
    const later = SessionRevocations.read(dir);
    assert.equal(later.has('a', 1400), true);
    assert.equal(later.has('b', 1400), true);
    assert.equal(later.has('b', 1500), false, 'the cookie itself has expired by then');
  });

  it('a torn last line (a crash mid-write) is ignored, the rest still counts', () => {
    const dir = tempDir();
    SessionRevocations.read(dir).revoke('kept', 5000, 1000);
    appendFileSync(join(dir, 'sessions', 'revoked.jsonl'), '{"j":"tor');
    const r = SessionRevocations.read(dir);
    assert.equal(r.has('kept', 1000), true);
    assert.equal(r.has('tor', 1000), false);
  });

  it('expired lines are dropped once they pile up; live ones are never dropped', () => {
    const dir = tempDir();
    const store = SessionRevocations.read(dir);
    store.revoke('forever', 1e9, 0);
    for (let i = 1; i <= 1100; i++) store.revoke(`s${i}`, i + 1, i);
    const lines = readFileSync(join(dir, 'sessions', 'revoked.jsonl'), 'utf8').trim().split('\n');
    assert.ok(lines.length < 200, `${lines.length} lines`);
    const again = SessionRevocations.read(dir);
    assert.equal(again.has('forever', 1200), true);
    assert.equal(again.has('s1100', 1100), true);
  });
});
