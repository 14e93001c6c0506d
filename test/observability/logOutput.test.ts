/**
 * LogOutput against a real pipe whose reader goes away: what waits for it is bounded, and what
 * was dropped is said once the reader is back. (logger.test.ts has the unbounded-looking cases:
 * order at exit, a stalled reader, EIO and EPIPE, through the gateway's own logger.)
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { sleep } from '../support/harness.js';

describe('LogOutput: the backlog a stalled reader leaves', function () {
  this.timeout(30_000);
  const module = new URL('../../src/observability/logOutput.js', import.meta.url).href;

  it('stays under its bound: lines past it are dropped, counted, and the count is written after what waited', async () => {
    // 40,000 lines of ~250 bytes (10 MB) against a 1 MiB bound while the reader is away
    const child = spawn(
      process.execPath,
      [
        '--input-type=module',
        '-e',
        `import { LogOutput, stdoutWithoutBlocking } from ${JSON.stringify(module)};
const out = new LogOutput(stdoutWithoutBlocking(), 16384, 1 << 20);
out.onDropped = (lines) => out.write(JSON.stringify({ msg: 'dropped', lines }) + '\\n');
process.once('exit', () => out.flushSync());
let n = 0;
const turn = () => {
  for (let i = 0; i < 200; i++) out.write(JSON.stringify({ n: n++, pad: 'p'.repeat(220) }) + '\\n');
  if (n < 40000) setImmediate(turn);
  // (the reader is back 1.5 s after the start)
  else setTimeout(() => { out.write(JSON.stringify({ msg: 'last' }) + '\\n'); setTimeout(() => process.exit(0), 300); }, 2500);
};
turn();`,
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    child.stdout.pause();
    const closed = new Promise<number | null>((resolve) => child.on('close', resolve));
    await sleep(1500);
    let text = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (text += d)).resume();
    assert.equal(await closed, 0);
    const lines = text.split('\n').filter(Boolean).map((l) => JSON.parse(l) as { n?: number; msg?: string; lines?: number });
    const logged = lines.filter((l) => l.n !== undefined).map((l) => l.n!);
    const report = lines.find((l) => l.msg === 'dropped');
    assert.ok(report, 'the dropped lines are said');
    assert.ok(logged.length < 40000 && logged.length > 1000, `${logged.length} lines written of 40,000`);
    assert.equal(report.lines, 40000 - logged.length, 'the count is of the lines that never arrived');
    assert.ok(logged.every((n, i) => i === 0 || n > logged[i - 1]!), 'what arrived is in order');
    // at most the bound plus the pipe's own buffer waited: the first lines, not a random pick
    assert.ok(logged.length * 250 < (1 << 20) + (1 << 20), `${logged.length} lines were held`);
    assert.equal(logged[0], 0);
    assert.deepEqual(lines.map((l) => l.msg ?? '').filter(Boolean), ['dropped', 'last'], 'the report comes after the backlog, before what was logged after it');
  });
});
