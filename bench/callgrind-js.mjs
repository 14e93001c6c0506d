#!/usr/bin/env node
// Names the JavaScript in a callgrind dump. callgrind names V8's builtins and C++ but reports
// JIT-compiled JavaScript as bare addresses (`???:0x...`); node started with --perf-basic-prof
// writes /tmp/perf-<pid>.map, one line per code object V8 made ("start size name"). This reads
// callgrind_annotate's exclusive counts, puts every bare address in the code object that holds
// it (the last one made there: V8 reuses freed code space) and sums by JavaScript function.
//
//   node bench/callgrind-js.mjs CALLGRIND_OUT PERF_MAP [REQUESTS] [TOP]
//
// With REQUESTS the counts are per request. Used by bench/instructions.sh (INSTR_JS=1).
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

const [file, mapFile, requestsArg, topArg] = process.argv.slice(2);
if (!file || !mapFile) {
  console.error('usage: node bench/callgrind-js.mjs CALLGRIND_OUT PERF_MAP [REQUESTS] [TOP]');
  process.exit(2);
}
const per = Number(requestsArg ?? 1) || 1;
const top = Number(topArg ?? 40) || 40;

/** code objects by start address, later entries over earlier ones */
const code = [];
for (const line of readFileSync(mapFile, 'utf8').split('\n')) {
  const m = /^([0-9a-f]+) ([0-9a-f]+) (.*)$/.exec(line);
  if (m) code.push({ start: BigInt('0x' + m[1]), end: BigInt('0x' + m[1]) + BigInt('0x' + m[2]), name: m[3], order: code.length });
}
code.sort((a, b) => (a.start < b.start ? -1 : a.start > b.start ? 1 : a.order - b.order));

function nameOf(addr) {
  // the last-made code object that starts at or before addr and still covers it
  let lo = 0;
  let hi = code.length - 1;
  let at = -1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (code[mid].start <= addr) {
      at = mid;
      lo = mid + 1;
    } else hi = mid - 1;
  }
  let best;
  for (let i = at; i >= 0 && i > at - 64; i--) {
    const c = code[i];
    if (c.start <= addr && addr < c.end && (!best || c.order > best.order)) best = c;
  }
  return best?.name;
}

const annotated = execFileSync('callgrind_annotate', ['--threshold=100', file], { encoding: 'utf8', maxBuffer: 256 << 20 });
let total = 0;
let named = 0;
let unknown = 0;
const byName = new Map();
for (const line of annotated.split('\n')) {
  const m = /^\s*([\d,]+) \([^)]*\)\s+(.*)$/.exec(line);
  if (!m) continue;
  const count = Number(m[1].replace(/,/g, ''));
  const fn = m[2];
  if (fn.startsWith('PROGRAM TOTALS')) {
    total = count;
    continue;
  }
  const bare = /^\?\?\?:0x([0-9a-f]+) \[\?\?\?\]$/.exec(fn);
  let name = fn.replace(/ \[[^\]]*\]$/, '').replace(/^\?\?\?:/, '');
  if (bare) {
    const js = nameOf(BigInt('0x' + bare[1]));
    if (js) {
      name = js.replace(/^(JS|LazyCompile|Function): ?/, '');
      named += count;
    } else {
      name = '(unnamed code)';
      unknown += count;
    }
  }
  byName.set(name, (byName.get(name) ?? 0) + count);
}
const fmt = (n) => Math.round(n / per).toLocaleString('en-US');
console.log(`${file}: ${fmt(total)} instructions${per > 1 ? ' per request' : ''}; JavaScript named from the perf map ${fmt(named)}, bare addresses not in it ${fmt(unknown)}`);
for (const [name, count] of [...byName].sort((a, b) => b[1] - a[1]).slice(0, top)) console.log(`${fmt(count).padStart(12)}  ${name}`);
