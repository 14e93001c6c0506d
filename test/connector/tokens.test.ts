import assert from 'node:assert/strict';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { TokenStore, createToken } from '../../src/connector/tokens.js';
import { tempDir } from '../support/harness.js';

describe('connector enrollment tokens: one use, remembered across restarts, the used list pruned', () => {
  const HOUR = 3600_000;
  const usedLines = (dir: string) => readFileSync(join(dir, 'connectors', 'used-tokens.jsonl'), 'utf8').trim().split('\n');

  it('a token is accepted once; a new store on the same stateDir (a restart) still refuses it', () => {
    const dir = tempDir();
    const t = createToken(dir, 'g1', HOUR, 'pin');
    assert.equal(new TokenStore(dir).consume(t).g, 'g1');
    assert.throws(() => new TokenStore(dir).consume(t), { code: 'ERR_TOKEN_USED' });
  });

  it('a token from another gateway, a damaged one and an expired one are refused with their own codes', () => {
    const dir = tempDir();
    const store = new TokenStore(dir);
    assert.throws(() => store.check(createToken(tempDir(), 'g1', HOUR, 'pin')), { code: 'ERR_TOKEN_SIGNATURE' });
    assert.throws(() => store.check('dbt1.%%%.x'), { code: 'ERR_TOKEN_MALFORMED' });
    const t0 = Date.now();
    const t = createToken(dir, 'g1', 1000, 'pin', t0);
    assert.throws(() => store.check(t, t0 + 1000), { code: 'ERR_TOKEN_EXPIRED' });
  });

  it('removing token.key on a running gateway voids the tokens not yet used at once, and tokens made with the new key work without a restart', () => {
    const dir = tempDir();
    const store = new TokenStore(dir); // the running gateway's
    const leaked = createToken(dir, 'g1', HOUR, 'pin');
    assert.equal(store.check(leaked).g, 'g1');
    rmSync(join(dir, 'connectors', 'token.key'));
    assert.throws(() => store.consume(leaked), { code: 'ERR_TOKEN_SIGNATURE' });
    const fresh = createToken(dir, 'g1', HOUR, 'pin'); // token create writes a new key
    assert.equal(store.consume(fresh).g, 'g1');
  });

  it('lines of used tokens that have expired since are dropped on the next use; live ones stay', () => {
    const dir = tempDir();
    const store = new TokenStore(dir);
    const t0 = Date.now();
    const short = createToken(dir, 'g1', 1000, 'pin', t0);
    const long = createToken(dir, 'g1', HOUR, 'pin', t0);
    store.consume(short, t0);
    store.consume(long, t0);
    assert.equal(usedLines(dir).length, 2);
    const later = createToken(dir, 'g1', HOUR, 'pin', t0 + 5000);
    store.consume(later, t0 + 5000);
    assert.equal(usedLines(dir).length, 2, 'the expired token left the list');
    assert.throws(() => store.consume(long, t0 + 6000), { code: 'ERR_TOKEN_USED' });
    assert.throws(() => store.consume(short, t0 + 6000), { code: 'ERR_TOKEN_EXPIRED' });
  });
});
