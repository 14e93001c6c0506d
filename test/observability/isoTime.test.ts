import assert from 'node:assert/strict';
import { isoTime } from '../../src/observability/isoTime.js';

describe('observability: isoTime (log and audit timestamps)', () => {
  it('writes exactly what Date#toISOString writes, across seconds, days, leap days, years and the epoch', () => {
    const times = [
      0, 1, 999, 1000, 1001, -1, -999, -1000, -1001,
      Date.UTC(2024, 1, 29, 23, 59, 59, 999), Date.UTC(2024, 2, 1, 0, 0, 0, 0),
      Date.UTC(1999, 11, 31, 23, 59, 59, 998), Date.UTC(2000, 0, 1),
      Date.UTC(10000, 0, 1, 0, 0, 0, 5), Date.UTC(-1, 5, 1, 12, 0, 0, 7), Date.now(),
    ];
    // a run of consecutive milliseconds over a second boundary, as requests finish under load
    const start = Date.UTC(2026, 11, 6, 3, 40, 19, 990);
    for (let t = start; t < start + 30; t++) times.push(t);
    for (let i = 0; i < 2000; i++) times.push(Math.floor(Math.random() * 8.64e15 * 2 - 8.64e15));
    for (const t of times) assert.equal(isoTime(t), new Date(t).toISOString(), String(t));
  });

  it('a fractional time reads as Date reads it, and one Date cannot show throws as toISOString does', () => {
    assert.equal(isoTime(1_700_000_000_123.75), new Date(1_700_000_000_123.75).toISOString());
    assert.throws(() => isoTime(NaN), RangeError);
    assert.throws(() => isoTime(8.64e15 + 1), RangeError);
  });
});
