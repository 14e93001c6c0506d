/**
 * The ISO 8601 time of a log line or an audit record. Under load several requests finish in the
 * same millisecond, and each wrote one log line and one audit record: Date#toISOString was about
 * 2% of the gateway's CPU on 100-byte responses (bench/profile.sh). V8 formats it through
 * snprintf (about 6,900 instructions a call, callgrind), so the date and time up to the second
 * are formatted once a second and the milliseconds appended from a table.
 */
let isoAt = NaN;
let iso = '';
let secondAt = NaN;
let secondPrefix = '';
/** the farthest from 1970 a Date can be (ECMA-262 21.4.1.1) */
const MAX_DATE_MS = 8.64e15;
/** ".000Z" to ".999Z" without the dot: the prefix keeps it */
const MILLIS = Array.from({ length: 1000 }, (_, i) => `${String(i).padStart(3, '0')}Z`);

export function isoTime(ms: number): string {
  if (ms === isoAt) return iso;
  // (a fractional time, and one Date cannot show, which throws, are Date's to write)
  if (!Number.isInteger(ms) || Math.abs(ms) > MAX_DATE_MS) return new Date(ms).toISOString();
  const second = Math.floor(ms / 1000);
  if (second !== secondAt) {
    // "2026-12-06T03:40:20." (any year toISOString can write: the prefix is everything before the milliseconds)
    const full = new Date(second * 1000).toISOString();
    secondPrefix = full.slice(0, full.length - 4);
    secondAt = second;
  }
  isoAt = ms;
  iso = secondPrefix + MILLIS[ms - second * 1000]!;
  return iso;
}
