// node bench/soak/burst.mjs GW_PORT ACTION N [CONCURRENCY]: N runs of one soak action against a
// running gateway (the hosts of soak.mjs's config), to tell which event a growth follows.
import { makeActions } from './load.mjs';
const [port, name, n, conc = '8'] = process.argv.slice(2);
const { actions, agent } = makeActions({ gwPort: Number(port), good: process.env.SOAK_TOKEN ?? 'x', forged: 'e30.e30.AAAA' });
const a = actions.find((x) => x[0] === name);
if (!a) throw new Error(`actions: ${actions.map((x) => x[0]).join(' ')}`);
let left = Number(n);
const results = {};
await Promise.all(Array.from({ length: Number(conc) }, async () => {
  while (left-- > 0) {
    const r = await a[2]();
    results[r] = (results[r] ?? 0) + 1;
  }
}));
agent.destroy();
console.log(name, JSON.stringify(results));
