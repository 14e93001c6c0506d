/**
 * A request body the gateway has already answered is read and dropped for a bounded time
 * (linger.ts): a client that goes on dripping it loses its connection; one that finishes in time
 * keeps it for its next request. Real gateway, raw client sockets, a real app that answers early.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { eventually, startGateway, type TestGateway } from '../support/harness.js';

interface Client {
  socket: net.Socket;
  /** everything the gateway sent */
  got(): string;
  closedAt?: number;
}

function connect(port: number, head: string): Client {
  const socket = net.connect(port, '127.0.0.1', () => socket.write(head));
  const c: Client = { socket, got: () => Buffer.concat(chunks).toString('latin1') };
  const chunks: Buffer[] = [];
  socket.on('data', (d: Buffer) => chunks.push(d));
  socket.on('error', () => undefined);
  socket.on('close', () => (c.closedAt = Date.now()));
  return c;
}

describe('gateway: a body still coming after its answer (linger)', function () {
  this.timeout(30_000);
  const saved = process.env.DRAWBRIDGE_LINGER_MS;
  let app: http.Server;
  let gw: TestGateway;
  before(async () => {
    process.env.DRAWBRIDGE_LINGER_MS = '1500';
    // answers at once, before the upload is read; the rest of it is dropped as it comes
    app = http.createServer((req, res) => {
      req.resume();
      res.writeHead(req.url === '/next' ? 200 : 413, { 'content-type': 'text/plain' }).end(req.url === '/next' ? 'next' : 'too large');
    });
    await new Promise<void>((r) => app.listen(0, '127.0.0.1', r));
    const port = (app.address() as net.AddressInfo).port;
    gw = await startGateway(`
gateway:
  publicUrl: http://gateway.test
  listen:
    http: 127.0.0.1:0
apps:
  - name: Early
    externalUrl: http://early.test/
    internalUrl: http://127.0.0.1:${port}/
    preAuth: passthrough
`);
  });
  after(async () => {
    if (saved === undefined) delete process.env.DRAWBRIDGE_LINGER_MS;
    else process.env.DRAWBRIDGE_LINGER_MS = saved;
    await gw?.stop();
    app?.close();
  });

  for (const [what, host, status] of [
    ["an app's early 413", 'early.test', 413],
    ['the gateway\'s own 404 for an unknown host', 'nowhere.test', 404],
  ] as const) {
    it(`after ${what}, a client that keeps dripping the body loses the connection once the linger time has passed`, async () => {
      const c = connect(gw.port, `POST /upload HTTP/1.1\r\nHost: ${host}\r\nContent-Length: 100000000\r\n\r\nfirst bytes`);
      // a byte every 200 ms puts off any idle timer for good
      const drip = setInterval(() => c.socket.writable && c.socket.write('x'), 200);
      try {
        await eventually(() => c.got().startsWith(`HTTP/1.1 ${status} `), 5000);
        const answeredAt = Date.now();
        await eventually(() => c.closedAt, 10_000);
        const after = c.closedAt! - answeredAt;
        assert.ok(after >= 1000 && after < 6000, `closed ${after} ms after the answer`);
        const id = /\r\nx-correlation-id: ([^\r]+)/.exec(c.got())![1];
        await eventually(() => gw.logs.some((l) => l.correlationId === id && /still sending a request body after its answer/.test(String(l.msg))));
      } finally {
        clearInterval(drip);
        c.socket.destroy();
      }
    });
  }

  it('a client that finishes the answered body in time keeps its connection: its next request is answered', async () => {
    const c = connect(gw.port, 'POST /upload HTTP/1.1\r\nHost: early.test\r\nContent-Length: 10\r\n\r\n12345');
    try {
      await eventually(() => c.got().startsWith('HTTP/1.1 413 '), 5000);
      await new Promise((r) => setTimeout(r, 500));
      c.socket.write('67890GET /next HTTP/1.1\r\nHost: early.test\r\n\r\n');
      await eventually(() => /\r\n\r\n9\r\ntoo large\r\n0\r\n\r\nHTTP\/1\.1 200 OK\r\n[\s\S]*\r\n\r\n4\r\nnext\r\n0\r\n\r\n$/.test(c.got()), 5000);
      // and it stays open past the linger time, as any idle keep-alive connection within Node's timeout
      await new Promise((r) => setTimeout(r, 1800));
      assert.equal(c.closedAt, undefined);
    } finally {
      c.socket.destroy();
    }
  });
  it('many early answers on one kept-alive connection leave nothing behind on it (no listener per answer)', async () => {
    // Each answered-early request used to leave a 'close' listener (holding the request) on the
    // connection until the client hung up: Node warned at the 11th, and memory grew per request.
    const warnings: string[] = [];
    const onWarning = (w: Error) => warnings.push(`${w.name}: ${w.message}`);
    process.on('warning', onWarning);
    const c = connect(gw.port, '');
    try {
      for (let i = 1; i <= 20; i++) {
        c.socket.write('POST /upload HTTP/1.1\r\nHost: early.test\r\nContent-Length: 10\r\n\r\n12345');
        await eventually(() => c.got().split('too large').length - 1 === i, 5000);
        c.socket.write('67890');
      }
      c.socket.write('GET /next HTTP/1.1\r\nHost: early.test\r\n\r\n');
      await eventually(() => c.got().endsWith('4\r\nnext\r\n0\r\n\r\n'), 5000);
      await new Promise((r) => setImmediate(r));
      assert.deepEqual(warnings.filter((w) => /MaxListeners/.test(w)), []);
    } finally {
      process.off('warning', onWarning);
      c.socket.destroy();
    }
  });
});
