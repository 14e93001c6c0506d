#!/usr/bin/env node
/**
 * Top functions by self time in a V8 .cpuprofile (node --cpu-prof), with
 * file:line, plus self time summed per file, so "what in our code costs the
 * most" is one read.
 *
 *   node bench/cpuprofile-top.mjs FILE.cpuprofile [N=25]
 */
import { readFileSync } from 'node:fs';

const [file, nArg] = process.argv.slice(2);
if (!file) {
  process.stderr.write('usage: cpuprofile-top.mjs FILE.cpuprofile [N]\n');
  process.exit(2);
}
const n = Number(nArg ?? 25);
const prof = JSON.parse(readFileSync(file, 'utf8'));

// self time per node = sum of the sample intervals attributed to it
const selfUs = new Map();
const { samples, timeDeltas } = prof;
for (let i = 0; i < samples.length; i++) selfUs.set(samples[i], (selfUs.get(samples[i]) ?? 0) + Math.max(0, timeDeltas[i] ?? 0));
const total = [...selfUs.values()].reduce((a, b) => a + b, 0);

const short = (url) =>
  url
    .replace(/^file:\/\//, '')
    .replace(/^.*\/node_modules\//, 'node_modules/')
    .replace(/^.*\/dist\//, 'dist/');
const byFn = new Map();
const byFile = new Map();
for (const node of prof.nodes) {
  const us = selfUs.get(node.id) ?? 0;
  if (!us) continue;
  const cf = node.callFrame;
  const where = cf.url ? `${short(cf.url)}:${cf.lineNumber + 1}` : '(native)';
  const key = `${cf.functionName || '(anonymous)'}\t${where}`;
  byFn.set(key, (byFn.get(key) ?? 0) + us);
  const f = cf.url ? short(cf.url) : `(${cf.functionName || 'native'})`;
  byFile.set(f, (byFile.get(f) ?? 0) + us);
}
const pct = (us) => ((100 * us) / total).toFixed(1).padStart(5);
const ms = (us) => (us / 1000).toFixed(0).padStart(7);
const out = [`${file}: ${(total / 1e6).toFixed(2)} s sampled`, '', `top ${n} functions by self time`, '   self ms      %  function  (file:line)'];
for (const [key, us] of [...byFn].sort((a, b) => b[1] - a[1]).slice(0, n)) {
  const [fn, where] = key.split('\t');
  out.push(`${ms(us)}  ${pct(us)}  ${fn}  (${where})`);
}
out.push('', 'self time by file (top 20)');
for (const [f, us] of [...byFile].sort((a, b) => b[1] - a[1]).slice(0, 20)) out.push(`${ms(us)}  ${pct(us)}  ${f}`);
process.stdout.write(out.join('\n') + '\n');
