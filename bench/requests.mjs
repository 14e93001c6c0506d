#!/usr/bin/env node
/**
 * Exactly N keep-alive GETs, C at a time, for bench/instructions.sh: a fixed count of
 * requests (wrk runs for a time), so an instruction count divides by a known number.
 *
 *   node bench/requests.mjs URL N C [Header: value]...
 * Prints {"n":N,"failed":F}; exits 1 when any request failed or was not answered 200.
 */
import http from 'node:http';

const [url, nArg, cArg, ...headerArgs] = process.argv.slice(2);
const n = Number(nArg);
const c = Number(cArg ?? 50);
if (!url || !(n > 0) || !(c > 0)) {
  process.stderr.write('usage: requests.mjs URL N C [Header: value]...\n');
  process.exit(2);
}
const headers = Object.fromEntries(headerArgs.map((h) => [h.slice(0, h.indexOf(':')).trim(), h.slice(h.indexOf(':') + 1).trim()]));
const agent = new http.Agent({ keepAlive: true, maxSockets: c });
let started = 0;
let done = 0;
let failed = 0;
await new Promise((resolve) => {
  const next = () => {
    if (started >= n) return;
    started++;
    // a request ends once: a response cut after its end, or a socket error after an error, is not a second one
    let ended = false;
    const finished = (ok) => {
      if (ended) return;
      ended = true;
      if (!ok) failed++;
      if (++done === n) resolve();
      else next();
    };
    http
      .get(url, { agent, headers }, (res) => {
        const ok = res.statusCode === 200;
        res.resume();
        res.on('end', () => finished(ok));
        res.on('error', () => finished(false));
      })
      .on('error', () => finished(false));
  };
  for (let i = 0; i < Math.min(c, n); i++) next();
});
agent.destroy();
console.log(JSON.stringify({ n, failed }));
process.exit(failed ? 1 : 0);
