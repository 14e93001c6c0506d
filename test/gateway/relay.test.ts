import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import net from 'node:net';
import { PassThrough, Readable, Writable } from 'node:stream';
import { relay } from '../../src/gateway/relay.js';
import { eventually } from '../support/harness.js';

/** A Writable that completes every write at once and records how many chunks each call to it carried. */
function recordingSink(): { sink: Writable; calls: number[] } {
  const calls: number[] = [];
  const sink = new Writable({
    write(_chunk, _enc, cb) {
      calls.push(1);
      cb();
    },
    writev(chunks, cb) {
      calls.push(chunks.length);
      cb();
    },
  });
  return { sink, calls };
}

describe('relay: bulk bytes from a source to a socket', () => {
  it('with coalesce, the chunks of one event-loop turn reach the destination in one write', async () => {
    for (const coalesce of [true, false]) {
      const src = new PassThrough();
      const { sink, calls } = recordingSink();
      relay(src, sink, { maxBuffered: 1 << 20, coalesce });
      for (let i = 0; i < 8; i++) src.write(Buffer.alloc(16 << 10, i));
      src.end();
      await new Promise((r) => sink.once('finish', r));
      assert.equal(calls.reduce((a, b) => a + b, 0), 8);
      if (coalesce) assert.deepEqual(calls, [8]);
      else assert.equal(calls.length, 8);
    }
  });

  it('pauses the source when a slow reader leaves maxBuffered bytes waiting, and delivers every byte in order', async function () {
    this.timeout(20_000);
    const total = 16 << 20;
    const chunk = 64 << 10;
    let produced = 0;
    const src = new Readable({
      read() {
        if (produced >= total) return void this.push(null);
        this.push(Buffer.alloc(chunk, (produced / chunk) % 251));
        produced += chunk;
      },
    });
    const expected = createHash('sha256');
    for (let off = 0; off < total; off += chunk) expected.update(Buffer.alloc(chunk, (off / chunk) % 251));

    const received = createHash('sha256');
    let bytes = 0;
    let reader!: net.Socket;
    const server = net.createServer((s) => {
      reader = s;
      s.pause(); // a client that does not read yet
      s.on('data', (c: Buffer) => {
        received.update(c);
        bytes += c.length;
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const dst = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
    await new Promise((r) => dst.once('connect', r));
    const maxBuffered = 256 << 10;
    let peak = 0;
    relay(src, dst, { maxBuffered, coalesce: true });
    src.on('data', () => (peak = Math.max(peak, dst.writableLength)));

    await eventually(() => src.isPaused() && produced < total, 5000);
    // the kernel's socket buffers take what they can; beyond that the relay holds at most maxBuffered and one chunk
    assert.ok(peak <= maxBuffered + chunk, `held ${peak} bytes`);
    reader.resume();
    await eventually(() => bytes === total, 15_000);
    assert.equal(received.digest('hex'), expected.digest('hex'));
    await eventually(() => dst.writableFinished);
    dst.destroy();
    server.close();
  });
});
