import assert from 'node:assert/strict';
import { CredentialCache } from '../../src/identity/credentialCache.js';

describe('identity: the cache of credentials worked out (bearer tokens, session cookies)', () => {
  const body = 'h'.repeat(700);
  const tail = 's'.repeat(60);

  it('finds a credential until its time, then drops it', () => {
    const c = new CredentialCache<string>(10);
    c.set(`${body}.${tail}`, 'alice', 1_000);
    assert.equal(c.get(`${body}.${tail}`, 999), 'alice');
    assert.equal(c.has(`${body}.${tail}`), true);
    assert.equal(c.get(`${body}.${tail}`, 1_000), undefined);
    assert.equal(c.has(`${body}.${tail}`), false, 'the expired entry is gone');
  });

  it('a credential that shares a cached one\'s tail is a miss, and the cached one is still found', () => {
    const c = new CredentialCache<string>(10);
    c.set(`${body}.${tail}`, 'alice', 1_000);
    const forged = `${'x'.repeat(700)}.${tail}`;
    assert.equal(c.get(forged, 0), undefined);
    assert.equal(c.has(forged), false);
    assert.equal(c.get(`${body}.${tail}`, 0), 'alice');
  });

  it('short credentials are kept whole, and the cache holds at most its bound, the oldest going first', () => {
    const c = new CredentialCache<number>(2);
    c.set('a', 1, 10);
    c.set('b', 2, 10);
    c.set('c', 3, 10);
    assert.equal(c.get('a', 0), undefined);
    assert.equal(c.get('b', 0), 2);
    assert.equal(c.get('c', 0), 3);
    c.clear();
    assert.equal(c.get('b', 0), undefined);
  });
});
