const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
const N = '\\d+(?:\\.\\d+)?';
/**
 * Units from the largest down, each at most once (1h30m, 2d12h, 1m30s, 500ms): `1h1h` or `30m1h`
 * is more likely a slip than a sum, and lint says so rather than add it up.
 */
const DURATION_RE = new RegExp(`^(?=\\d)(?:${N}d)?(?:${N}h)?(?:${N}m(?!s))?(?:${N}s)?(?:${N}ms)?$`);
const PART_RE = /(\d+(?:\.\d+)?)(ms|s|m|h|d)/g;

/** Parses "90s", "1h30m", "500ms", "30d" to milliseconds; undefined when malformed. */
export function parseDuration(text: string): number | undefined {
  if (typeof text !== 'string' || !DURATION_RE.test(text)) return undefined;
  let total = 0;
  for (const m of text.matchAll(PART_RE)) total += Number(m[1]) * UNIT_MS[m[2]!]!;
  return Number.isFinite(total) ? Math.round(total) : undefined;
}

export const DURATION_PATTERN = DURATION_RE.source;

/** 2700000 -> "45m", 5400000 -> "1h30m", 50400 -> "50s": at most the two largest units, in whole seconds. */
export function formatDuration(ms: number): string {
  let left = Math.round(Math.abs(ms) / 1000) * 1000;
  const parts: string[] = [];
  for (const unit of ['d', 'h', 'm', 's'] as const) {
    const n = Math.floor(left / UNIT_MS[unit]!);
    left -= n * UNIT_MS[unit]!;
    if (n > 0 || parts.length) parts.push(`${n}${unit}`);
  }
  const shown = parts.slice(0, 2).filter((p) => !p.startsWith('0'));
  return shown.length ? shown.join('') : '0s';
}
