import assert from 'node:assert/strict';
import { PolicySet } from '../../src/policy/engine.js';
import { TimeWindow } from '../../src/policy/time.js';

/**
 * Frozen clocks around Europe/Berlin's DST changes in 2026: summer time starts
 * Sun 29 March at 02:00 CET (clocks jump to 03:00 CEST, UTC+2) and ends Sun
 * 25 October at 03:00 CEST (clocks go back to 02:00 CET, UTC+1).
 */
describe('policy time windows: wall-clock time in a named timezone across DST', () => {
  const office = new TimeWindow({ days: ['mon', 'tue', 'wed', 'thu', 'fri'], hours: '08:00-18:00', timezone: 'Europe/Berlin' });

  const cases: { desc: string; at: string; inside: boolean; local: string }[] = [
    { desc: 'Friday before the spring change, 07:30 UTC is 08:30 CET: inside', at: '2026-03-27T07:30:00Z', inside: true, local: 'fri 08:30' },
    { desc: 'Monday after the spring change, 06:30 UTC is 08:30 CEST: inside', at: '2026-03-30T06:30:00Z', inside: true, local: 'mon 08:30' },
    { desc: 'Monday after the spring change, 16:30 UTC is 18:30 CEST: outside (in winter it would be inside)', at: '2026-03-30T16:30:00Z', inside: false, local: 'mon 18:30' },
    { desc: 'Friday before the spring change, 16:30 UTC is 17:30 CET: inside', at: '2026-03-27T16:30:00Z', inside: true, local: 'fri 17:30' },
    { desc: 'Friday before the autumn change, 06:30 UTC is 08:30 CEST: inside', at: '2026-10-23T06:30:00Z', inside: true, local: 'fri 08:30' },
    { desc: 'Monday after the autumn change, 06:30 UTC is 07:30 CET: outside', at: '2026-10-26T06:30:00Z', inside: false, local: 'mon 07:30' },
    { desc: 'Monday after the autumn change, 07:00 UTC is 08:00 CET: inside (start inclusive)', at: '2026-10-26T07:00:00Z', inside: true, local: 'mon 08:00' },
  ];
  for (const c of cases) {
    it(c.desc, () => {
      const r = office.check(Date.parse(c.at));
      assert.equal(r.inside, c.inside, r.detail);
      assert.equal(r.detail, `${c.local} Europe/Berlin`);
    });
  }

  it('on the night of the spring change 02:30 does not exist: 01:00 UTC is already 03:00', () => {
    const night = new TimeWindow({ hours: '02:00-03:00', timezone: 'Europe/Berlin' });
    assert.equal(night.check(Date.parse('2026-03-29T00:59:00Z')).inside, false, '01:59 CET');
    assert.equal(night.check(Date.parse('2026-03-29T01:00:00Z')).inside, false, '03:00 CEST');
  });

  it('on the night of the autumn change 02:30 happens twice, and both are inside', () => {
    const night = new TimeWindow({ hours: '02:00-03:00', timezone: 'Europe/Berlin' });
    assert.equal(night.check(Date.parse('2026-10-25T00:30:00Z')).inside, true, '02:30 CEST');
    assert.equal(night.check(Date.parse('2026-10-25T01:30:00Z')).inside, true, '02:30 CET');
    assert.equal(night.check(Date.parse('2026-10-25T02:30:00Z')).inside, false, '03:30 CET');
  });

  it('a block outside office hours follows the change through the whole engine', () => {
    const policies = { 'after-hours': { when: { time: { hours: '18:00-24:00', timezone: 'Europe/Berlin' } }, grant: 'block' as const } };
    const set = new PolicySet(['after-hours'], policies, {});
    const at = (iso: string) => set.evaluate({ app: 'A', clientIp: '192.0.2.1', method: 'GET', path: '/', now: Date.parse(iso) }).decision;
    // 16:30 UTC is 17:30 in winter (allowed) but 18:30 in summer (blocked)
    assert.equal(at('2026-03-27T16:30:00Z'), 'allow');
    assert.equal(at('2026-03-30T16:30:00Z'), 'deny');
    assert.equal(at('2026-10-26T16:30:00Z'), 'allow');
    // 23:59 local is inside a window that ends at 24:00
    assert.equal(at('2026-10-26T22:59:00Z'), 'deny');
  });
});
