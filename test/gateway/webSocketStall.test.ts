/**
 * A relayed WebSocket one side of which stopped taking bytes (webSocketStall.ts), direct and
 * through a connector: the app's backendTimeout (1 s here) ends it, the app's connection
 * included, whether the client is still there or left; a quiet WebSocket and a slow reader
 * that keeps taking bytes are left alone; a client's FIN frees an app that would hold on. A raw TCP app answers each handshake as its path
 * says, so it can stop reading, which no WebSocket library lets an app do on purpose.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import net from 'node:net';
import { eventually, sleep, type TestGateway } from '../support/harness.js';
import { killConnector, startBothWays, type ConnectorProcess } from '../connector/support.js';

const KEY = 'dGhlIHNhbXBsZSBub25jZQ==';
const UPGRADE = (host: string, path: string) => `GET ${path} HTTP/1.1\r\nHost: ${host}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: ${KEY}\r\n\r\n`;
const ACCEPT = createHash('sha1').update(`${KEY}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64');
/** an unmasked binary frame of 64 KiB, as an app sends them */
const APP_FRAME = Buffer.concat([Buffer.from([0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0]), Buffer.alloc(64 << 10, 7)]);
/** what a client sends: bytes the gateway relays without reading them */
const CLIENT_BYTES = Buffer.alloc(256 << 10, 1);

describe('webSocketStall: a WebSocket whose app or client stopped taking bytes', function () {
  this.timeout(60_000);
  let app: net.Server;
  let gw: TestGateway;
  let conn: ConnectorProcess;
  /** the app's switched connections by path, and whether each is still open */
  const appSockets: { path: string; socket: net.Socket; closed: boolean; received: number }[] = [];

  before(async () => {
    // allowHalfOpen: /halfopen keeps its side open after the client's FIN, as some servers do;
    // every other path ends with it, as Node's default would
    app = net.createServer({ allowHalfOpen: true }, (s) => {
      s.on('error', () => undefined);
      let head = '';
      const onHead = (c: Buffer) => {
        head += c.toString('latin1');
        if (!head.includes('\r\n\r\n')) return;
        s.removeListener('data', onHead);
        const path = head.split(' ')[1]!;
        const entry = { path, socket: s, closed: false, received: 0 };
        appSockets.push(entry);
        s.on('close', () => (entry.closed = true));
        if (path !== '/halfopen') s.on('end', () => s.end());
        // /halfopen pings every 200 ms: it is how it would notice its connection closed
        else {
          const heartbeat = setInterval(() => s.write(Buffer.from([0x89, 0])), 200);
          s.once('close', () => clearInterval(heartbeat));
        }
        s.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${ACCEPT}\r\n\r\n`);
        // /deaf reads nothing more but pings every 200 ms (a server's heartbeat: it is how it
        // notices its connection closed); /firehose sends frames for as long as it may; /quiet
        // reads and sends nothing; /sleepy below
        if (path === '/deaf') {
          s.pause();
          const heartbeat = setInterval(() => s.write(Buffer.from([0x89, 0])), 200);
          return void s.once('close', () => clearInterval(heartbeat));
        }
        s.on('data', (d: Buffer) => (entry.received += d.length));
        // /sleepy reads nothing for 4 s (a worker that froze, then came back), then reads on
        if (path === '/sleepy') {
          s.pause();
          return void setTimeout(() => s.resume(), 4000);
        }
        if (path === '/firehose') {
          const pump = () => {
            while (!s.destroyed && s.write(APP_FRAME));
          };
          s.on('drain', pump);
          pump();
        }
      };
      s.on('data', onHead);
    });
    await new Promise<void>((r) => app.listen(0, '127.0.0.1', r));
    const url = `http://127.0.0.1:${(app.address() as net.AddressInfo).port}`;
    // App (app.test) goes through a connector, Ws (ws.test) is direct
    ({ gw, conn } = await startBothWays(url));
  });
  after(async () => {
    await killConnector(conn);
    await gw?.stop();
    for (const { socket } of appSockets) socket.destroy();
    await new Promise((r) => app.close(r));
  });

  /** A raw client past its 101: what it has received after the head, and whether the gateway closed it. */
  async function openRaw(host: string, path: string) {
    const s = net.connect(gw.port, '127.0.0.1');
    s.on('error', () => undefined);
    const client = { socket: s, head: '', after: [] as Buffer[], closed: false };
    s.on('close', () => (client.closed = true));
    await new Promise<void>((resolve, reject) => {
      let got = Buffer.alloc(0);
      const onData = (c: Buffer) => {
        got = Buffer.concat([got, c]);
        const end = got.indexOf('\r\n\r\n');
        if (end < 0) return;
        s.removeListener('data', onData);
        client.head = got.subarray(0, end).toString('latin1');
        if (got.length > end + 4) client.after.push(got.subarray(end + 4));
        s.on('data', (d: Buffer) => client.after.push(d));
        resolve();
      };
      s.on('data', onData);
      s.once('close', () => reject(new Error(`closed before the 101: ${got.toString('latin1')}`)));
      s.write(UPGRADE(host, path));
    });
    assert.match(client.head, /^HTTP\/1\.1 101 /);
    const correlationId = /x-correlation-id: (\S+)/i.exec(client.head)![1]!;
    const appSide = await eventually(() => appSockets.find((a) => a.path === path && !a.closed && !claimed.has(a))!);
    claimed.add(appSide);
    return { ...client, client, correlationId, appSide };
  }
  const claimed = new Set<object>();

  /** Writes until the relay pushes back for 300 ms: the bytes now wait in the gateway and the kernels. */
  async function fillTowardsApp(s: net.Socket): Promise<void> {
    let blockedSince = 0;
    for (let i = 0; i < 2000; i++) {
      if (s.writableLength === 0) blockedSince = 0;
      else if (!blockedSince) blockedSince = Date.now();
      else if (Date.now() - blockedSince > 300) return;
      if (s.writableLength === 0) s.write(CLIENT_BYTES);
      await sleep(10);
    }
    assert.fail('the relay never pushed back');
  }
  const closedLine = (id: string) => gw.logs.find((l) => l.correlationId === id && String(l.msg).startsWith('WebSocket closed'));

  for (const [via, host] of [['direct', 'ws.test'], ['through a connector', 'app.test']] as const) {
    it(`${via}: an app that stops reading gets the client 1001 "the app stopped reading", and its connection is closed`, async () => {
      const c = await openRaw(host, '/deaf');
      await fillTowardsApp(c.socket);
      const t0 = Date.now();
      await eventually(() => c.appSide.closed, 5000);
      await eventually(() => c.client.closed, 5000);
      // within 1.25 backendTimeout of the last byte moving (measured from a little after it), plus the 1 s the client has to answer
      assert.ok(Date.now() - t0 < 3500, `closed ${Date.now() - t0} ms after the relay pushed back`);
      const bytes = Buffer.concat(c.client.after);
      const close = bytes.subarray(bytes.lastIndexOf(0x88));
      assert.equal(close.readUInt16BE(2), 1001);
      assert.equal(close.subarray(4, 2 + close[1]!).toString(), 'the app stopped reading');
      const line = closedLine(c.correlationId);
      assert.equal(line?.msg, "WebSocket closed: the app read none of the client's bytes for 1 s");
      assert.equal(line?.level, 40);
    });

    it(`${via}: a client that left while the app was not reading no longer holds the app's connection`, async () => {
      // an app that sends nothing: no write of its own would fail on a closed connection
      const c = await openRaw(host, '/sleepy');
      await fillTowardsApp(c.socket);
      // gone without a word: the gateway, which stopped reading it, cannot see that
      c.socket.destroy();
      // when the app reads again it finds its connection closed, not the client's bytes still coming
      await eventually(() => c.appSide.closed, 8000);
      assert.match(String(closedLine(c.correlationId)?.msg), /the app read none/);
    });

    it(`${via}: a client that stops reading is dropped with the app's connection`, async () => {
      const c = await openRaw(host, '/firehose');
      c.socket.pause();
      await eventually(() => c.appSide.closed, 8000);
      assert.equal(closedLine(c.correlationId)?.msg, "WebSocket closed: the client took none of the app's bytes for 1 s");
      await eventually(() => c.client.closed || c.socket.readableLength > 0, 2000);
    });

    it(`${via}: a client that ends its side (FIN) frees both connections, though the app keeps its own open`, async () => {
      const c = await openRaw(host, '/halfopen');
      c.socket.end();
      await eventually(() => c.appSide.closed, 5000);
      await eventually(() => c.client.closed, 2000);
    });

    it(`${via}: a quiet WebSocket and a slow reader that keeps taking bytes stay open past backendTimeout`, async () => {
      const quiet = await openRaw(host, '/quiet');
      const slow = await openRaw(host, '/firehose');
      // the slow client takes a little every 200 ms: the app's frames wait, but they move
      slow.socket.pause();
      const reader = setInterval(() => {
        slow.socket.resume();
        setTimeout(() => slow.socket.pause(), 5);
      }, 200);
      try {
        await sleep(3000);
        assert.equal(quiet.client.closed, false);
        assert.equal(quiet.appSide.closed, false);
        assert.equal(slow.client.closed, false);
        assert.equal(slow.appSide.closed, false);
        assert.ok(slow.client.after.length > 0);
        // the quiet one still carries bytes both ways
        quiet.socket.write(Buffer.alloc(100, 2));
        await eventually(() => quiet.appSide.received === 100);
        assert.equal(closedLine(quiet.correlationId), undefined);
        assert.equal(closedLine(slow.correlationId), undefined);
      } finally {
        clearInterval(reader);
        quiet.socket.destroy();
        slow.socket.destroy();
      }
    });
  }
});
