#!/usr/bin/env node
/**
 * Prints the ratios the issues set as targets, from one harness result
 * (results/<ts>.json): every figure compares rows measured in the same run.
 *
 *   node bench/summary.mjs bench/results/<ts>.json [--markdown]
 *
 * "paired" is the ratio of the two rows' req/s within each round (the same
 * minute of machine noise), shown beside the ratio of the means.
 */
import { readFileSync } from 'node:fs';
import { CHECKS, targetOf } from './targets.mjs';

const [file, ...flags] = process.argv.slice(2);
if (!file) {
  process.stderr.write('usage: summary.mjs RESULT.json [--markdown]\n');
  process.exit(2);
}
const markdown = flags.includes('--markdown');
const result = JSON.parse(readFileSync(file, 'utf8'));

const perRound = (run, scen, target) =>
  Object.fromEntries(
    run.runs
      .filter((r) => r.phase === 'measure' && r.scenario === scen && r.target === target && r.wrk && r.wrk.duration_us > 0)
      .map((r) => [r.round, r.wrk.requests / (r.wrk.duration_us / 1e6)]),
  );
const fmt = (x, d = 2) => (x == null || !Number.isFinite(x) ? '–' : x.toFixed(d));

const scenarios = result.settings.scenarios;
const lines = [];
lines.push(`Drawbridge bench ${result.timestamp}: ${result.settings.rounds} round(s) x ${result.settings.duration_s}s, wrk -t${result.settings.wrk_threads} -c${result.settings.wrk_connections}; ${result.host.cpus} CPUs (${result.host.cpu_model}), Node ${result.host.node}`);
lines.push('');
const header = ['row', 'vs', 'scenario', 'row req/s', 'vs req/s', 'ratio', 'paired per round', 'target', 'met', 'row p50/p99 ms', 'vs p50/p99 ms'];
const table = [];
for (const [row, base, target, why] of CHECKS) {
  for (const scen of scenarios) {
    const rows = result.summary[scen] ?? [];
    const a = rows.find((r) => r.target === row);
    const b = rows.find((r) => r.target === base);
    if (!a || !b) continue;
    const ratio = b.rps_mean ? a.rps_mean / b.rps_mean : null;
    const ra = perRound(result, scen, row);
    const rb = perRound(result, scen, base);
    const paired = Object.keys(ra).filter((k) => rb[k] > 0).map((k) => fmt(ra[k] / rb[k]));
    const want = targetOf(row, base, scen, target);
    let met = want == null ? '' : ratio != null && ratio >= want ? 'yes' : 'NO';
    if (row === 'gateway-connector' && base === 'localtunnel' && met === 'yes' && !(a.p99_ms < b.p99_ms)) met = 'NO (p99)';
    table.push([row, base, scen, fmt(a.rps_mean, 0), fmt(b.rps_mean, 0), fmt(ratio), paired.join(' / '), want == null ? '' : `>= ${fmt(want, 2)}`, met, `${fmt(a.p50_ms)} / ${fmt(a.p99_ms)}`, `${fmt(b.p50_ms)} / ${fmt(b.p99_ms)}`, why]);
  }
}
const unavailable = result.targets.filter((t) => t.name.startsWith('gateway') && t.status !== 'ok');

if (markdown) {
  lines.push(`| ${header.join(' | ')} |`);
  lines.push(`|${header.map(() => '---').join('|')}|`);
  for (const t of table) lines.push(`| ${t.slice(0, header.length).join(' | ')} |`);
} else {
  const widths = header.map((h, i) => Math.max(h.length, ...table.map((t) => String(t[i]).length)));
  const line = (cells) => cells.slice(0, header.length).map((c, i) => String(c).padEnd(widths[i])).join('  ');
  lines.push(line(header));
  for (const t of table) lines.push(line(t));
}
if (unavailable.length) {
  lines.push('');
  for (const t of unavailable) lines.push(`${markdown ? '- ' : ''}${t.name}: ${t.status}${t.reason ? ` (${t.reason})` : ''}`);
}
process.stdout.write(lines.join('\n') + '\n');
