/**
 * The ISO 8601 time of a log line or an audit record. Under load several requests finish in the
 * same millisecond, and each wrote one log line and one audit record: Date#toISOString was about
 * 2% of the gateway's CPU on 100-byte responses (bench/profile.sh). Each millisecond is formatted once.
 */
let isoAt = NaN;
let iso = '';

export function isoTime(ms: number): string {
  if (ms !== isoAt) {
    isoAt = ms;
    iso = new Date(ms).toISOString();
  }
  return iso;
}
