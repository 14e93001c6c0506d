import v8 from 'node:v8';
import type { Logger } from 'pino';

/**
 * How far V8 lets the old generation grow past what survived the last full GC before it starts
 * the next one: a factor of 1 + HEAP_GROWING_PERCENT / 100, as V8's own `--heap-growing-percent`.
 *
 * V8 picks that factor itself, up to 4 (--trace-gc-verbose prints it), but once its memory
 * reducer has run (the process sat idle for 8 s, as a gateway does between bursts) it grows the
 * heap "slowly", at 1.1-1.3, and kept to that through a 9 s run at full load. What counts toward
 * the trigger includes the memory behind ArrayBuffers, and a relay allocates that fast (what a
 * TLS socket reads arrives in new buffers, and Node copies every write through the tunnel's
 * HTTP/2 session into another), so a gateway with a 27 MB heap
 * ran 100-120 full GCs in 9 s of 1 MiB downloads through a connector, at 8-10 ms of CPU per
 * response; held at 4, it ran 5, at 4.0-4.4 ms (bench/README, "Session 44"). 4 is V8's own
 * ceiling, so the heap never grows further between full GCs than V8 itself would let it, and V8
 * still starts one before the old generation passes halfway to its maximum (--max-old-space-size).
 */
export const HEAP_GROWING_PERCENT = 300;

/** the operator's own choice on node's command line (node --heap-growing-percent=N), which is kept */
export function operatorHeapGrowth(execArgv: readonly string[]): string | undefined {
  for (let i = 0; i < execArgv.length; i++) {
    const arg = execArgv[i]!.replace(/_/g, '-');
    if (arg === '--heap-growing-percent') return execArgv[i + 1];
    if (arg.startsWith('--heap-growing-percent=')) return arg.slice('--heap-growing-percent='.length);
  }
  return undefined;
}

/** the heap growth in force, and who chose it */
export interface HeapGrowth {
  percent: string;
  from: 'drawbridge' | 'node command line';
}

/**
 * Sets the heap growth of a long-running server (gateway, connector, demo) unless node was
 * started with its own. Set at run time: V8 reads it each time it computes the next trigger.
 * Returns the percent in force and who chose it, for the start log.
 */
export function preferThroughputHeap(execArgv: readonly string[] = process.execArgv): HeapGrowth {
  const own = operatorHeapGrowth(execArgv);
  if (own !== undefined) return { percent: own, from: 'node command line' };
  v8.setFlagsFromString(`--heap-growing-percent=${HEAP_GROWING_PERCENT}`);
  return { percent: String(HEAP_GROWING_PERCENT), from: 'drawbridge' };
}

/** the start log's line for it (debug: an operator tuning memory looks for it, nobody else needs it) */
export function logHeapGrowth(log: Pick<Logger, 'debug'>, heap: HeapGrowth): void {
  log.debug({ heapGrowingPercent: heap.percent, setBy: heap.from }, 'heap growth between full GCs');
}
