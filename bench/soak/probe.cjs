// Loaded with `node --require bench/soak/probe.cjs` into the gateway and the connectors by
// soak.mjs only (never by src): every 2 s it writes this process's active handles and
// resources by type to $SOAK_PROBE_DIR/<pid>.json, for the sampler to read.
const { writeFileSync, renameSync } = require('node:fs');
const dir = process.env.SOAK_PROBE_DIR;
if (dir) {
  const count = (names) => names.reduce((m, n) => ((m[n] = (m[n] ?? 0) + 1), m), {});
  const t = setInterval(() => {
    const handles = count(process._getActiveHandles().map((h) => h?.constructor?.name ?? typeof h));
    const resources = count(process.getActiveResourcesInfo());
    // (with --expose-gc: a full collection first, so heapUsed counts what is held, not garbage not collected yet)
    if (typeof globalThis.gc === 'function') globalThis.gc();
    const m = process.memoryUsage();
    const listeners = Object.fromEntries(process.eventNames().map((e) => [String(e), process.listenerCount(e)]));
    const file = `${dir}/${process.pid}.json`;
    writeFileSync(file + '.tmp', JSON.stringify({ at: Date.now(), handles, resources, listeners, heapUsed: m.heapUsed, external: m.external, arrayBuffers: m.arrayBuffers }));
    renameSync(file + '.tmp', file);
  }, 2000);
  t.unref();
}
