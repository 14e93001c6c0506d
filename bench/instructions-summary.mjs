#!/usr/bin/env node
/**
 * The report of an instruction run (bench/instructions.sh), from the rounds it gathered:
 * per row and scenario the median and range, then the ratios of the medians for the pairs the
 * issues set targets for (targets.mjs), as markdown.
 *
 *   node bench/instructions-summary.mjs OUT/rounds.txt --timestamp TS --tree REV --valgrind V \
 *     --rounds N --small N --big N --conns N --warm N --scenarios "small big"
 * rounds.txt has a line per row and scenario: "row scenario n1 n2 ..." (instructions per request).
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { CHECKS, targetOf } from './targets.mjs';

const { values: run, positionals } = parseArgs({
  allowPositionals: true,
  options: Object.fromEntries(['timestamp', 'tree', 'valgrind', 'rounds', 'small', 'big', 'conns', 'warm', 'scenarios'].map((k) => [k, { type: 'string', default: '' }])),
});
if (!positionals[0]) {
  process.stderr.write('usage: instructions-summary.mjs ROUNDS.txt --timestamp TS --tree REV ...\n');
  process.exit(2);
}
const scenarios = run.scenarios.split(' ').filter(Boolean);

/** median (the lower of the middle two), least and most of a row's rounds */
const spread = (rounds) => {
  const s = [...rounds].sort((a, b) => a - b);
  return { median: s[(s.length - 1) >> 1], min: s[0], max: s.at(-1) };
};
/** counted[row][scenario]: the spread of its rounds, rows in the order they ran */
const counted = {};
for (const line of readFileSync(positionals[0], 'utf8').split('\n')) {
  const [row, scen, ...rounds] = line.split(' ').filter(Boolean);
  if (row && rounds.length) (counted[row] ??= {})[scen] = spread(rounds.map(Number));
}

const lines = [
  `# Instructions per request, ${run.timestamp}`,
  '',
  `Tree ${run.tree}, ${process.version}, valgrind ${run.valgrind}.`,
  `${run.rounds} rounds of ${run.small} requests (100 B) and ${run.big} (1 MiB), ${run.conns} at a time, after ${run.warm} uninstrumented`,
  "warm-up requests; user-space instructions of the proxy's processes (callgrind), median and range of the rounds.",
  '',
  "| row | scenario | instructions / request (median) | rounds' range |",
  '|---|---|---:|---|',
];
for (const [row, byScenario] of Object.entries(counted)) {
  for (const [scen, c] of Object.entries(byScenario)) lines.push(`| ${row} | ${scen} | ${c.median} | ${c.min} - ${c.max} |`);
}
lines.push(
  '',
  'Ratios of the medians (fewer instructions is better; a throughput target of >= X asks for about <= 1/X here):',
  '',
  '| row | vs | scenario | instructions ratio | throughput target |',
  '|---|---|---|---:|---|',
);
for (const [row, base, target] of CHECKS) {
  for (const scen of scenarios) {
    const a = counted[row]?.[scen];
    const b = counted[base]?.[scen];
    if (!a || !b) continue;
    const want = targetOf(row, base, scen, target);
    lines.push(`| ${row} | ${base} | ${scen} | ${(a.median / b.median).toFixed(2)} | ${want == null ? "" : `>=${Number.isInteger(want) ? want.toFixed(1) : want}`} |`);
  }
}
process.stdout.write(lines.join('\n') + '\n');
