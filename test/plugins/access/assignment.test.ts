import assert from 'node:assert/strict';
import { Browser, startStack, USERS, type Stack } from '../../identity/support.js';

describe('plugins: assignment (users and groups, through real sign-in)', function () {
  this.timeout(30_000);
  let s: Stack;
  before(async () => {
    s = await startStack({
      users: [
        ...USERS,
        // The provider left groups out (Entra overage): the list it did send happens to include finance.
        // Group names differ in case between providers and configs (the rule says finance).
        { username: 'frank', password: 'frank-pw', name: 'Frank', email: 'f@example.test', groups: ['Finance'], mfa: false },
        { username: 'erin', password: 'erin-pw', name: 'Erin', email: 'e@example.test', groups: ['finance'], mfa: false, claims: { _claim_names: { groups: 'src1' }, _claim_sources: { src1: { endpoint: 'https://graph.example.test/x' } } } },
      ],
    });
  });
  after(async () => s?.stop());

  const visit = async (user: string, password: string) => (await new Browser().browse(`${s.origin('finance')}/pay`, { user, password, code: () => s.codes.get(user) })).res;

  it('a member of an assigned group gets in', async () => {
    assert.equal((await visit('bob', 'bob-pw')).status, 200);
  });

  it('group names are compared without case, as policy group conditions are', async () => {
    assert.equal((await visit('frank', 'frank-pw')).status, 200);
  });

  it('an assigned user gets in', async () => {
    assert.equal((await visit('carol', 'carol-pw')).status, 200);
  });

  it('an unassigned user gets 403 Forbidden and the app sees nothing', async () => {
    const before = s.backend.received.length;
    const res = await visit('alice', 'alice-pw');
    assert.equal(res.status, 403);
    assert.match(res.body, /403 Forbidden/);
    assert.match(res.body, /can't be accessed/);
    assert.equal(s.backend.received.length, before);
  });

  it('groups overage (_claim_names) never passes a group rule', async () => {
    const res = await visit('erin', 'erin-pw');
    assert.equal(res.status, 403);
  });
});
