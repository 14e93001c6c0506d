/**
 * The gateway, the connector and the demo hold V8's heap growth between full GCs at its ceiling
 * (a factor of 4), set at run time; an operator's own --heap-growing-percent on node's command
 * line is kept. The growth V8 then uses is read from V8 itself (--trace-gc-verbose prints the
 * factor of each new limit), in a child process.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import pino from 'pino';
import { HEAP_GROWING_PERCENT, logHeapGrowth, operatorHeapGrowth, preferThroughputHeap } from '../../src/commands/heapGrowth.js';

const MODULE = fileURLToPath(new URL('../../src/commands/heapGrowth.js', import.meta.url));

/** the growth factors of the old-generation limits V8 computed in a child started with `nodeFlags`, which calls preferThroughputHeap when `tune` */
function limitFactors(nodeFlags: string[], tune: boolean): string[] {
  const script = `
    const m = await import(${JSON.stringify(MODULE)});
    if (${tune}) m.preferThroughputHeap();
    const keep = [];
    for (let i = 0; i < 300000; i++) keep.push({ i });
    globalThis.gc();
  `;
  const r = spawnSync(process.execPath, ['--expose-gc', '--trace-gc-verbose', ...nodeFlags, '--input-type=module', '-e', script], { encoding: 'utf8', timeout: 30_000 });
  assert.equal(r.status, 0, r.stderr);
  return [...r.stdout.matchAll(/\[HeapController\] Limit: old size: \d+ KB, new limit: \d+ KB \(([\d.]+)\)/g)].map((m) => m[1]!);
}

describe('commands: heap growth between full GCs', function () {
  this.timeout(60_000);

  it('reads the operator\'s own --heap-growing-percent from node\'s arguments, in each form node takes', () => {
    assert.equal(operatorHeapGrowth(['--heap-growing-percent=50']), '50');
    assert.equal(operatorHeapGrowth(['--heap_growing_percent=70']), '70');
    assert.equal(operatorHeapGrowth(['--max-old-space-size=512', '--heap-growing-percent', '20']), '20');
    assert.equal(operatorHeapGrowth(['--max-old-space-size=512', '--trace-gc']), undefined);
    assert.equal(operatorHeapGrowth([]), undefined);
  });

  it('keeps the operator\'s choice and says whose it is', () => {
    const heap = preferThroughputHeap(['--heap-growing-percent=50']);
    assert.deepEqual(heap, { percent: '50', from: 'node command line' });
    // the start log's line (gateway and connector), at debug level
    const lines: Record<string, unknown>[] = [];
    logHeapGrowth(pino({ level: 'debug' }, { write: (l: string) => void lines.push(JSON.parse(l)) }), heap);
    assert.equal(lines.length, 1);
    assert.deepEqual({ level: lines[0]!.level, msg: lines[0]!.msg, heapGrowingPercent: lines[0]!.heapGrowingPercent, setBy: lines[0]!.setBy }, { level: 20, msg: 'heap growth between full GCs', heapGrowingPercent: '50', setBy: 'node command line' });
  });

  it('holds the growth at 4 where V8 would grow the heap slowly (here: a process told to optimize for size)', () => {
    assert.equal(HEAP_GROWING_PERCENT, 300);
    const untuned = limitFactors(['--optimize-for-size'], false);
    const tuned = limitFactors(['--optimize-for-size'], true);
    assert.ok(untuned.length > 0 && tuned.length > 0, 'V8 printed no limits');
    assert.ok(untuned.every((f) => f === '1.3'), `V8's own factors: ${untuned.join(', ')}`);
    assert.ok(tuned.every((f) => f === '4.0'), `factors after preferThroughputHeap: ${tuned.join(', ')}`);
  });

  it('leaves the growth node was started with', () => {
    const kept = limitFactors(['--heap-growing-percent=50'], true);
    assert.ok(kept.length > 0 && kept.every((f) => f === '1.5'), `factors: ${kept.join(', ')}`);
  });
});
