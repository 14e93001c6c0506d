/** Plugins for tests, written to a temp folder as a third-party author would write them. */
import { existsSync, readFileSync } from 'node:fs';

/**
 * An sso plugin whose create() and dispose() misbehave as `options.mode` says (`throws-echo`: create() refuses, quoting options.tag). Its stage holds a
 * timer that only dispose() releases, sets `x-probe: <tag>` on the request, and each create() and
 * dispose() appends `create <tag>` / `dispose <tag>` to the file `options.trace`. In `create-hangs`
 * create() settles only when the test calls one of `globalThis.__probeRelease` (in-process gateways);
 * in `log-ctx` its stage logs the request context through the plugin's logger.
 */
export const PROBE_PLUGIN = `import { appendFileSync } from 'node:fs';
const note = (o, what) => o.trace && appendFileSync(o.trace, what + ' ' + (o.tag ?? '-') + '\\n');
const build = (o, context) => {
  const timer = setInterval(() => undefined, 60_000);
  return {
    name: 'probe', kind: o.mode === 'wrong-kind' ? 'access' : 'sso',
    run: (ctx) => {
      // a careless debugging line: the whole request context, headers and all
      if (o.mode === 'log-ctx') context.logger.info({ ctx, request: { headers: ctx.headers } }, 'probe saw the request');
      return { kind: 'continue', setHeaders: { 'x-probe': o.tag ?? '-' } };
    },
    dispose() {
      clearInterval(timer);
      note(o, 'dispose');
      if (o.mode === 'dispose-hangs') return new Promise(() => {});
    },
  };
};
export default {
  name: 'probe', kind: 'sso', apiVersion: 1,
  optionsSchema: { type: 'object', properties: { mode: { type: 'string' }, tag: { type: 'string' }, trace: { type: 'string' }, ms: { type: 'string' } }, additionalProperties: false },
  create(o, context) {
    note(o, 'create');
    if (o.mode === 'throws') throw new Error('the ticket service said no');
    // as many a plugin's message does: it quotes the option it could not use
    if (o.mode === 'throws-echo') throw new Error('cannot reach https://svc.internal/?key=' + o.tag);
    // slow but working: a stage after o.ms milliseconds
    if (o.mode === 'create-slow') return new Promise((resolve) => setTimeout(() => resolve(build(o, context)), Number(o.ms)));
    if (o.mode === 'create-hangs') return new Promise((resolve) => (globalThis.__probeRelease ??= []).push(() => resolve(build(o, context))));
    return build(o, context);
  },
};
`;

/** the `create`/`dispose` lines PROBE_PLUGIN wrote to `trace` */
export function traceLines(trace: string): string[] {
  return existsSync(trace) ? readFileSync(trace, 'utf8').split('\n').filter(Boolean) : [];
}

/** settles every create() PROBE_PLUGIN left hanging in this process */
export function releaseHungCreates(): void {
  const g = globalThis as { __probeRelease?: (() => void)[] };
  for (const release of g.__probeRelease?.splice(0) ?? []) release();
}
