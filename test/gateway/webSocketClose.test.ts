/**
 * Following an app's WebSocket frames (webSocketClose.ts FrameBoundary) on frames made by the
 * ws library, split across chunks at every byte, and the close frame the gateway sends,
 * read back by ws's own parser.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import * as ws from 'ws';
import WebSocket from 'ws';
import { sleep, startGateway, type TestGateway } from '../support/harness.js';
import { closeFrame, FrameBoundary } from '../../src/gateway/webSocketClose.js';

// (exported by ws, not declared by its types)
const { Receiver, Sender } = ws as unknown as {
  Receiver: new (o: object) => NodeJS.WritableStream & { once(e: 'conclude', l: (code: number, why: Buffer) => void): void };
  Sender: { frame(d: Buffer, o: object): Buffer[] };
};

/** ws's framing of one frame, as one buffer */
function frame(payload: Buffer, opcode: number, fin = true, mask = false): Buffer {
  const parts = Sender.frame(payload, { fin, opcode, mask, readOnly: false, rsv1: false });
  return Buffer.concat(parts);
}

describe('webSocketClose: FrameBoundary', () => {
  // empty, 7-bit, 16-bit and 64-bit lengths, a fragmented message with a ping between its fragments, a masked frame
  const frames = [
    frame(Buffer.alloc(0), 0x1),
    frame(Buffer.from('hello'), 0x1),
    frame(Buffer.alloc(125, 1), 0x2),
    frame(Buffer.alloc(126, 2), 0x2),
    frame(Buffer.alloc(65535, 3), 0x2),
    frame(Buffer.alloc(65536, 4), 0x2),
    frame(Buffer.from('part one '), 0x1, false),
    frame(Buffer.from('ping'), 0x9),
    frame(Buffer.from('part two'), 0x0, true),
    frame(Buffer.alloc(300, 5), 0x2, true, true),
  ];
  const stream = Buffer.concat(frames);
  const ends = new Set<number>();
  frames.reduce((at, f) => (ends.add(at + f.length), at + f.length), 0);

  it('is between frames exactly at the end of each frame, however the bytes are cut', () => {
    // every cut point through the headers and small frames, a stride through the large payloads
    const cuts = [...Array(stream.length).keys()].filter((i) => i < 400 || i % 997 === 0 || ends.has(i) || ends.has(i + 1) || ends.has(i - 1));
    for (const cut of cuts) {
      const f = new FrameBoundary();
      assert.equal(f.feed(stream.subarray(0, cut)), cut);
      assert.equal(f.between, cut === 0 || ends.has(cut), `after ${cut} bytes`);
      f.feed(stream.subarray(cut));
      assert.ok(f.between, `whole stream cut at ${cut}`);
    }
  });

  it('takes with stopBetween only the rest of the frame in progress', () => {
    for (const cut of [1, 3, 9, 200, 70_000]) {
      const f = new FrameBoundary();
      f.feed(stream.subarray(0, cut));
      if (f.between) continue;
      const took = f.feed(stream.subarray(cut), true);
      assert.ok(f.between);
      assert.ok(ends.has(cut + took), `stopped ${cut + took} bytes in, not at a frame's end`);
      assert.equal(Math.min(...[...ends].filter((e) => e > cut)), cut + took);
    }
  });

  it('closeFrame is a close frame ws reads with its code and reason, the reason cut to 123 bytes without splitting a character', async () => {
    for (const reason of ['session was signed out', 'é'.repeat(100)]) {
      const receiver = new Receiver({ isServer: false });
      const got = new Promise<[number, Buffer]>((r) => receiver.once('conclude', (code, why) => r([code, why])));
      receiver.write(closeFrame(1008, reason));
      const [code, why] = await got;
      assert.equal(code, 1008);
      assert.ok(why.length <= 123);
      assert.ok(reason.startsWith(why.toString('utf8')));
      // 61 two-byte characters fit; the 62nd would split
      assert.equal(why.length, reason.length > 61 ? 122 : Buffer.byteLength(reason));
    }
  });
});

/**
 * An app that answers every upgrade on its own terms: after the 101 it sends one binary frame
 * of FRAME_BYTES, its payload in 1 KiB pieces every `pieceMs` (?piece=N; 0: all at once).
 */
const FRAME_BYTES = 16 << 10;
async function slowFrameApp(): Promise<{ url: string; close(): Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => undefined);
    let head = '';
    s.on('data', (c) => {
      if (head.includes('\r\n\r\n')) return;
      head += c.toString('latin1');
      if (!head.includes('\r\n\r\n')) return;
      const key = /sec-websocket-key: *(\S+)/i.exec(head)![1]!;
      const pieceMs = Number(/[?&]piece=(\d+)/.exec(head)?.[1] ?? 0);
      const accept = createHash('sha1').update(`${key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64');
      s.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`);
      const payload = Buffer.alloc(FRAME_BYTES, 7);
      const header = Buffer.from([0x82, 127, 0, 0, 0, 0, 0, 0, 0, 0]);
      header.writeUInt32BE(FRAME_BYTES, 6);
      // ?then=reset|end|close: after the frame, the app's connection is reset, ended, or ended after its close frame (4003)
      const then = /[?&]then=(\w+)/.exec(head)?.[1];
      if (then) {
        s.write(Buffer.concat([header, payload, then === 'close' ? frame(Buffer.concat([Buffer.from([0x0f, 0xa3]), Buffer.from('bye')]), 0x8) : Buffer.alloc(0)]));
        return void setTimeout(() => (then === 'reset' ? s.resetAndDestroy() : s.end()), 100);
      }
      if (!pieceMs) return void s.write(Buffer.concat([header, payload]));
      s.write(header);
      let at = 0;
      const timer = setInterval(() => {
        if (at >= FRAME_BYTES || s.destroyed) return clearInterval(timer);
        s.write(payload.subarray(at, (at += 1024)));
      }, pieceMs);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`,
    close: () => new Promise((r) => (sockets.forEach((s) => s.destroy()), server.close(() => r()))),
  };
}

describe('webSocketClose: the gateway ends a WebSocket with a close frame', function () {
  this.timeout(20_000);
  let app: Awaited<ReturnType<typeof slowFrameApp>>;
  let gw: TestGateway;
  const appEntry = (url: string) => `  - name: Frames
    externalUrl: http://frames.test/
    internalUrl: ${url}/
    preAuth: passthrough
    websockets: true
`;
  const yaml = (url: string) => `gateway:
  publicUrl: http://gw.test
  listen: { http: 127.0.0.1:0 }
apps:
${appEntry(url)}  - name: Other
    externalUrl: http://other.test/
    internalUrl: ${url}/
    preAuth: passthrough
`;
  beforeEach(async () => {
    app = await slowFrameApp();
    gw = await startGateway(yaml(app.url), { watch: false });
  });
  afterEach(async () => {
    await gw?.stop();
    await app?.close();
  });

  /** opens a WebSocket to the Frames app; what it received and how it closed */
  async function open(path: string) {
    const ws = new WebSocket(`ws://127.0.0.1:${gw.port}${path}`, { headers: { host: 'frames.test' } });
    const messages: Buffer[] = [];
    ws.on('message', (m: Buffer) => messages.push(m));
    const closed = new Promise<{ code: number; reason: string; messages: Buffer[] }>((r) => ws.once('close', (code, reason) => r({ code, reason: String(reason), messages })));
    await new Promise((r, j) => (ws.once('open', r), ws.once('error', j)));
    return { ws, closed };
  }
  const removeApp = async () => {
    writeFileSync(gw.configFile, readFileSync(gw.configFile, 'utf8').replace(appEntry(app.url), ''));
    assert.equal(await gw.server.reload(), 'success');
  };

  it('between two frames: 1008 and the reason at once, after every frame the app sent', async () => {
    const { closed } = await open('/ws');
    await sleep(200);
    await removeApp();
    const got = await closed;
    assert.equal(got.code, 1008);
    assert.equal(got.reason, 'app or access rules changed in the config');
    assert.deepEqual(got.messages.map((m) => m.length), [FRAME_BYTES]);
  });

  it('in the middle of a frame: the rest of the frame first, then the close frame', async () => {
    const { closed } = await open('/ws?piece=15');
    await sleep(60);
    const t0 = Date.now();
    await removeApp();
    const got = await closed;
    assert.equal(got.code, 1008, `closed ${Date.now() - t0} ms after the reload`);
    assert.deepEqual(got.messages.map((m) => m.length), [FRAME_BYTES]);
    assert.ok(got.messages[0]!.every((b) => b === 7));
  });

  it('a second close asked for while the first waits for the frame\'s end (another reload) changes nothing: still the whole frame, then 1008', async () => {
    const { closed } = await open('/ws?piece=15');
    await sleep(60);
    await removeApp();
    await sleep(100);
    writeFileSync(gw.configFile, readFileSync(gw.configFile, 'utf8').replace('apps:\n', 'apps:\n  - name: Late\n    externalUrl: http://late.test/\n    internalUrl: http://127.0.0.1:9/\n    preAuth: passthrough\n'));
    assert.equal(await gw.server.reload(), 'success');
    const got = await closed;
    assert.equal(got.code, 1008);
    assert.deepEqual(got.messages.map((m) => m.length), [FRAME_BYTES]);
    assert.equal(gw.logs.filter((l) => String(l.msg).startsWith('WebSocket closed')).length, 1, 'closed and logged once');
  });

  it('a frame that does not end within a second: the connection is dropped as before (1006)', async () => {
    const { closed } = await open('/ws?piece=400');
    await sleep(100);
    const t0 = Date.now();
    await removeApp();
    const got = await closed;
    assert.equal(got.code, 1006);
    assert.deepEqual(got.messages, []);
    assert.ok(Date.now() - t0 >= 900 && Date.now() - t0 < 3000, `dropped after ${Date.now() - t0} ms`);
  });

  it('a reload that publishes another app on the WebSocket\'s path closes it: the path is under that app\'s rules now', async () => {
    const { closed } = await open('/chat/ws');
    await sleep(100);
    const chat = `  - name: Chat\n    externalUrl: http://frames.test/chat/\n    internalUrl: ${app.url}/chat/\n    preAuth: passthrough\n    websockets: true\n`;
    writeFileSync(gw.configFile, readFileSync(gw.configFile, 'utf8').replace('apps:\n', `apps:\n${chat}`));
    assert.equal(await gw.server.reload(), 'success');
    const got = await closed;
    assert.equal(got.code, 1008);
    assert.equal(got.reason, 'app or access rules changed in the config');
  });

  it("an app's side that ends without the app's close frame (a reset, a plain close) gives the page 1001 and a reason, after every frame; the app's own close frame is relayed as it is", async () => {
    for (const then of ['reset', 'end']) {
      const { closed } = await open(`/ws?then=${then}`);
      const got = await closed;
      assert.equal(got.code, 1001, then);
      assert.equal(got.reason, "the app's connection ended");
      assert.deepEqual(got.messages.map((m) => m.length), [FRAME_BYTES]);
    }
    const { closed } = await open('/ws?then=close');
    const got = await closed;
    assert.equal(got.code, 4003);
    assert.equal(got.reason, 'bye');
  });

  it('a gateway that stops says 1001, going away', async () => {
    const { closed } = await open('/ws');
    await sleep(100);
    const stopping = gw.stop();
    const got = await closed;
    await stopping;
    assert.equal(got.code, 1001);
    assert.equal(got.reason, 'the gateway is stopping');
  });
});
