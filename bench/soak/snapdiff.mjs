// node bench/soak/snapdiff.mjs A.heapsnapshot B.heapsnapshot: object counts by constructor
// (and closures by function name) that grew from A to B, largest growth first.
import { readFileSync } from 'node:fs';
function counts(file) {
  const s = JSON.parse(readFileSync(file, 'utf8'));
  const f = s.snapshot.meta.node_fields, types = s.snapshot.meta.node_types[0];
  const n = f.length, iType = f.indexOf('type'), iName = f.indexOf('name'), iSize = f.indexOf('self_size');
  const out = new Map();
  for (let i = 0; i < s.nodes.length; i += n) {
    const type = types[s.nodes[i + iType]];
    if (!['object', 'closure', 'array', 'string'].includes(type)) continue;
    const name = type === 'string' ? '(string)' : `${type}:${s.strings[s.nodes[i + iName]]}`;
    const c = out.get(name) ?? { n: 0, size: 0 };
    c.n++; c.size += s.nodes[i + iSize];
    out.set(name, c);
  }
  return out;
}
const [a, b] = [counts(process.argv[2]), counts(process.argv[3])];
const rows = [...b].map(([k, v]) => [k, v.n - (a.get(k)?.n ?? 0), v.size - (a.get(k)?.size ?? 0), v.n]).filter((r) => r[1] > 0).sort((x, y) => y[1] - x[1]);
for (const r of rows.slice(0, Number(process.argv[4] ?? 40))) console.log(String(r[1]).padStart(7), String(r[2]).padStart(10), String(r[3]).padStart(8), r[0].slice(0, 100));
