import assert from 'node:assert/strict';
import { memoryStore } from '../../../src/identity/provider/memoryStore.js';

describe("embedded provider's memory store", () => {
  let clock = 1_000_000;
  const now = () => clock;
  beforeEach(() => (clock = 1_000_000));

  it('finds what was stored until its lifetime ends, and a rewrite starts a new lifetime', async () => {
    const codes = memoryStore(100, now)('AuthorizationCode');
    await codes.upsert('c1', { accountId: 'alice' }, 60);
    assert.deepEqual(await codes.find('c1'), { accountId: 'alice' });
    clock += 59_999;
    assert.ok(await codes.find('c1'), 'still live a moment before its end');
    clock += 1;
    assert.equal(await codes.find('c1'), undefined, 'gone at its end');
    await codes.upsert('c2', { accountId: 'bob' }, 10);
    clock += 9_000;
    await codes.upsert('c2', { accountId: 'bob', n: 2 }, 10);
    clock += 9_000;
    assert.deepEqual(await codes.find('c2'), { accountId: 'bob', n: 2 });
  });

  it('keeps each model apart, and each provider its own entries', async () => {
    const store = memoryStore(100, now);
    await store('Session').upsert('same-id', { kind: 'session' }, 60);
    await store('Interaction').upsert('same-id', { kind: 'interaction' }, 60);
    assert.equal((await store('Session').find('same-id'))?.kind, 'session');
    assert.equal((await store('Interaction').find('same-id'))?.kind, 'interaction');
    assert.equal(await memoryStore(100, now)('Session').find('same-id'), undefined, 'another provider sees none of it');
  });

  it('finds a session by its uid, and not after it is destroyed or rewritten with another uid', async () => {
    const sessions = memoryStore(100, now)('Session');
    await sessions.upsert('s1', { uid: 'u1', accountId: 'alice' }, 60);
    assert.equal((await sessions.findByUid('u1'))?.accountId, 'alice');
    await sessions.upsert('s1', { uid: 'u2', accountId: 'alice' }, 60);
    assert.equal(await sessions.findByUid('u1'), undefined, 'the old uid leads nowhere');
    assert.equal((await sessions.findByUid('u2'))?.accountId, 'alice');
    await sessions.destroy('s1');
    assert.equal(await sessions.findByUid('u2'), undefined);
    assert.equal(await sessions.find('s1'), undefined);
  });

  it('marks a consumed code with the time in seconds (the provider refuses a code that has it)', async () => {
    const codes = memoryStore(100, now)('AuthorizationCode');
    await codes.upsert('c1', { accountId: 'alice' }, 60);
    await codes.consume('c1');
    assert.equal((await codes.find('c1'))?.consumed, 1000);
    await codes.consume('missing');
  });

  it("revoking a grant drops what it issued (codes, access and refresh tokens), not other grants' or the grant itself", async () => {
    const store = memoryStore(100, now);
    await store('Grant').upsert('g1', { accountId: 'alice' }, 60);
    await store('AuthorizationCode').upsert('c1', { grantId: 'g1' }, 60);
    await store('AccessToken').upsert('a1', { grantId: 'g1' }, 60);
    await store('RefreshToken').upsert('r1', { grantId: 'g1' }, 60);
    await store('AccessToken').upsert('a2', { grantId: 'g2' }, 60);
    await store('AccessToken').revokeByGrantId('g1');
    assert.equal(await store('AuthorizationCode').find('c1'), undefined);
    assert.equal(await store('AccessToken').find('a1'), undefined);
    assert.equal(await store('RefreshToken').find('r1'), undefined);
    assert.ok(await store('AccessToken').find('a2'), "another grant's token stays");
    assert.ok(await store('Grant').find('g1'), 'the grant is destroyed on its own (Grant.destroy), as oidc-provider does');
  });

  it('drops entries past their end that nobody reads again (spent codes), while live ones stay', async () => {
    const store = memoryStore(1_000_000, now);
    const codes = store('AuthorizationCode');
    const sessions = store('Session');
    await sessions.upsert('s1', { uid: 'u1' }, 86_400);
    for (let i = 0; i < 998; i++) await codes.upsert(`c${i}`, { grantId: `g${i}` }, 60);
    clock += 61_000;
    // the thousandth write sweeps
    await codes.upsert('fresh', { grantId: 'gf' }, 60);
    // back in time: a code the store still held would be found again, so not finding one means it is gone
    clock -= 61_000;
    assert.equal(await codes.find('c0'), undefined, 'a spent code was swept');
    assert.equal(await codes.find('c997'), undefined);
    clock += 61_000;
    assert.ok(await sessions.findByUid('u1'), 'a live session stays');
    assert.ok(await codes.find('fresh'));
  });

  it('holds at most its bound: the least recently written entries go first', async () => {
    const tokens = memoryStore(3, now)('AccessToken');
    for (const id of ['t1', 't2', 't3']) await tokens.upsert(id, { id }, 60);
    await tokens.upsert('t1', { id: 't1', again: true }, 60);
    await tokens.upsert('t4', { id: 't4' }, 60);
    assert.equal(await tokens.find('t2'), undefined, 'the oldest write went');
    for (const id of ['t1', 't3', 't4']) assert.ok(await tokens.find(id), id);
  });
});
