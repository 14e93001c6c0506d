/**
 * The upgrade relay (pipeUpgrade, direct and through a connector) when the app
 * does not switch protocols: its answer reaches the client whole, or the
 * connection is cut (never a hang, never a cut body that reads as complete),
 * neither side's socket outlives the other, and the request log has the app's
 * status. A raw TCP app on loopback answers each upgrade as its path says.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { eventually, rawRequest, type TestGateway } from '../support/harness.js';
import { killConnector, startBothWays, type ConnectorProcess } from '../connector/support.js';

const UPGRADE = (host: string, path: string) => `GET ${path} HTTP/1.1\r\nHost: ${host}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n`;

/** what the app writes for each path; it never closes unless the answer says so */
const ANSWERS: Record<string, { bytes: string; close?: boolean; delayMs?: number }> = {
  '/refused': { bytes: 'HTTP/1.1 403 Forbidden\r\ncontent-length: 9\r\n\r\nforbidden' },
  '/refused-chunked': { bytes: 'HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n' },
  '/cut-length': { bytes: `HTTP/1.1 403 Forbidden\r\ncontent-length: 100000\r\n\r\n${'x'.repeat(100)}`, close: true },
  '/stall-chunked': { bytes: 'HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n' },
  '/stall-length': { bytes: `HTTP/1.1 403 Forbidden\r\ncontent-length: 100000\r\n\r\n${'x'.repeat(100)}` },
  '/silent': { bytes: '' },
  // 101s that are no answer to a WebSocket handshake: the app may go on reading HTTP on the connection
  '/h2c': { bytes: 'HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n' },
  // another protocol, though with the right accept value: the Upgrade alone must refuse it (mut32)
  '/h2c-accepted': { bytes: 'HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n' },
  '/no-accept': { bytes: 'HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n' },
  '/wrong-accept': { bytes: 'HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: AAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\n\r\n' },
  // the accept value RFC 6455 gives for the sample key UPGRADE sends
  '/switch': { bytes: 'HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n' },
  // the same, once the app took its time to decide
  '/switch-later': { bytes: 'HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n', delayMs: 400 },
};

/** what reached the app on a connection after its answer */
const afterAnswer: string[] = [];

interface Exchange {
  text: string;
  /** the gateway closed the connection (false: still open when the time was up) */
  closed: boolean;
  ms: number;
}

/** Sends an upgrade request and reads until the gateway closes the connection or `limitMs` passes. */
function exchange(port: number, host: string, path: string, limitMs: number, thenSend?: string): Promise<Exchange> {
  return new Promise((resolve) => {
    const t0 = Date.now();
    const chunks: Buffer[] = [];
    const s = net.connect(port, '127.0.0.1', () => {
      s.write(UPGRADE(host, path));
      if (thenSend) setTimeout(() => s.writable && s.write(thenSend), 200);
    });
    const end = (closed: boolean) => {
      clearTimeout(timer);
      s.destroy();
      resolve({ text: Buffer.concat(chunks).toString('latin1'), closed, ms: Date.now() - t0 });
    };
    const timer = setTimeout(() => end(false), limitMs);
    s.on('data', (c: Buffer) => chunks.push(c));
    s.on('error', () => undefined);
    s.on('close', () => end(true));
  });
}

describe('upstream: an upgrade the app answers without switching protocols', function () {
  this.timeout(30_000);
  let app: net.Server;
  let gw: TestGateway;
  let conn: ConnectorProcess;
  /** the app's connections still open */
  const open = new Set<net.Socket>();

  before(async () => {
    app = net.createServer((s) => {
      open.add(s);
      s.on('close', () => open.delete(s));
      s.on('error', () => undefined);
      let head = '';
      let answered = false;
      s.on('data', (c: Buffer) => {
        if (answered) return void afterAnswer.push(c.toString('latin1'));
        head += c.toString('latin1');
        if (!head.includes('\r\n\r\n')) return;
        const answer = ANSWERS[head.split(' ')[1]!]!;
        answered = true;
        const send = () => {
          s.write(answer.bytes);
          if (answer.close) s.end();
        };
        if (answer.delayMs) setTimeout(send, answer.delayMs);
        else send();
      });
    });
    await new Promise<void>((r) => app.listen(0, '127.0.0.1', r));
    const url = `http://127.0.0.1:${(app.address() as net.AddressInfo).port}`;
    // a sign-in redirect as an app writes it, naming its internal URL and host
    ANSWERS['/refused-redirect'] = { bytes: `HTTP/1.1 302 Found\r\nlocation: ${url}/login?next=%2Fchat\r\nrefresh: 0; url=${url}/login\r\nset-cookie: state=1; Domain=127.0.0.1; Path=/\r\ncontent-length: 0\r\n\r\n` };
    // App (app.test) goes through a connector, Ws (ws.test) is direct
    ({ gw, conn } = await startBothWays(url));
  });
  after(async () => {
    await killConnector(conn);
    await gw?.stop();
    for (const s of open) s.destroy();
    await new Promise((r) => app.close(r));
  });

  const logOf = (text: string) => {
    const id = /x-correlation-id: ([0-9a-f-]+)/i.exec(text)?.[1];
    assert.ok(id, `a correlation id in\n${text}`);
    return gw.logs.find((l) => l.msg === 'request' && l.correlationId === id);
  };
  const settled = () => new Promise((r) => setTimeout(r, 100));
  /** Sends what `send` sends, then checks that none of it opened a connection to the app: the gateway refused it. */
  const neverReachesTheApp = async (send: () => Promise<void>) => {
    let appConnections = 0;
    const count = () => appConnections++;
    app.on('connection', count);
    try {
      await send();
      await settled();
      assert.equal(appConnections, 0, 'the app was reached');
    } finally {
      app.removeListener('connection', count);
    }
  };

  for (const [via, host] of [['direct', 'ws.test'], ['through a connector', 'app.test']] as const) {
    it(`${via}: a complete answer reaches the client whole, then the connection closes; the log has its status`, async () => {
      const a = await exchange(gw.port, host, '/refused', 5000);
      assert.ok(a.closed, `closed (got ${JSON.stringify(a.text)})`);
      assert.match(a.text, /^HTTP\/1\.1 403 Forbidden\r\n/);
      assert.match(a.text, /\r\nconnection: close\r\n/i);
      assert.ok(a.text.endsWith('\r\n\r\nforbidden'), a.text);
      await settled();
      assert.equal(logOf(a.text)?.status, 403);
      assert.equal(logOf(a.text)?.aborted, undefined);
    });

    it(`${via}: the answer's internal URLs and cookie domain are translated, as in the same answer to a plain request`, async () => {
      const a = await exchange(gw.port, host, '/refused-redirect', 5000);
      assert.match(a.text, /^HTTP\/1\.1 302 Found\r\n/);
      assert.match(a.text, new RegExp(`\r\nlocation: http://${host}/login\\?next=%2Fchat\r\n`, 'i'));
      assert.match(a.text, new RegExp(`\r\nrefresh: 0; url=http://${host}/login\r\n`, 'i'));
      assert.match(a.text, /\r\nset-cookie: state=1; Path=\/\r\n/i);
      assert.doesNotMatch(a.text, /127\.0\.0\.1/);
    });

    it(`${via}: a chunked answer keeps its chunked framing, terminator included`, async () => {
      const a = await exchange(gw.port, host, '/refused-chunked', 5000);
      assert.ok(a.closed);
      assert.match(a.text, /^HTTP\/1\.1 200 OK\r\n/);
      assert.match(a.text, /\r\ntransfer-encoding: chunked\r\n/i);
      assert.ok(a.text.endsWith('\r\n\r\n5\r\nhello\r\n0\r\n\r\n'), JSON.stringify(a.text));
      await settled();
      assert.equal(logOf(a.text)?.status, 200);
    });

    it(`${via}: a body the app cuts (it closes before its Content-Length): the client connection is cut at once, not left open`, async () => {
      const a = await exchange(gw.port, host, '/cut-length', 5000);
      assert.ok(a.closed && a.ms < 900, `closed after ${a.ms} ms (the body was cut at once; backendTimeout is 1 s)`);
      assert.match(a.text, /^HTTP\/1\.1 403 Forbidden\r\n/);
      assert.match(a.text, /\r\ncontent-length: 100000\r\n/i);
      await settled();
      assert.equal(logOf(a.text)?.status, 403);
      assert.equal(logOf(a.text)?.aborted, true);
    });

    it(`${via}: an app that goes quiet mid-body: cut after backendTimeout, and a chunked body lacks its terminator (it read as complete)`, async () => {
      const a = await exchange(gw.port, host, '/stall-chunked', 5000);
      assert.ok(a.closed && a.ms >= 900, `closed after ${a.ms} ms`);
      assert.match(a.text, /\r\ntransfer-encoding: chunked\r\n/i);
      assert.match(a.text, /\r\n\r\n5\r\nhello\r\n$/);
      await settled();
      assert.equal(logOf(a.text)?.status, 200);
      assert.equal(logOf(a.text)?.decision, 'timeout');
    });

    it(`${via}: a client that leaves mid-answer: the app connection is closed too, and the gateway keeps no socket (they stayed in CLOSE-WAIT)`, async () => {
      const before = open.size;
      const serverConnections = () => new Promise<number>((r) => gw.server['servers'].http!.getConnections((_e, n) => r(n)));
      const clients = await Promise.all(Array.from({ length: 10 }, () => exchange(gw.port, host, '/stall-length', 300)));
      for (const c of clients) assert.equal(c.closed, false, 'still open while the app keeps its body coming');
      // well before backendTimeout (1 s), which would cut them anyway
      await eventually(() => open.size === before, 500).catch(() => assert.fail(`${open.size - before} app connections still open`));
      await eventually(async () => (await serverConnections()) === 0, 500).catch(() => assert.fail('gateway sockets still open'));
    });

    it(`${via}: a 101 that is no WebSocket handshake answer (another Upgrade, no or a wrong Sec-WebSocket-Accept) is a 502, and nothing more the client sends reaches the app`, async () => {
      const openBefore = open.size;
      const smuggled = `GET /smuggled HTTP/1.1\r\nHost: ${host}\r\nX-Remote-User: admin\r\n\r\n`;
      for (const path of ['/h2c', '/h2c-accepted', '/no-accept', '/wrong-accept']) {
        afterAnswer.length = 0;
        const a = await exchange(gw.port, host, path, 3000, smuggled);
        assert.match(a.text, /^HTTP\/1\.1 502 /, `${path}: ${JSON.stringify(a.text.slice(0, 200))}`);
        assert.ok(a.closed, `${path}: closed`);
        await settled();
        assert.deepEqual(afterAnswer, [], `${path}: the app got more after its 101`);
        assert.match(JSON.stringify(logOf(a.text)?.reasons), /not websocket|Sec-WebSocket-Accept/);
      }
      // the control: a real handshake answer switches, and the client's bytes are the app's from then on
      afterAnswer.length = 0;
      const ok = await exchange(gw.port, host, '/switch', 600, smuggled);
      assert.match(ok.text, /^HTTP\/1\.1 101 /);
      assert.deepEqual(afterAnswer, [smuggled]);
      await eventually(() => open.size === openBefore, 2000);
    });

    it(`${via}: what the client sends before the 101, with its request and while the app decides, reaches the app after the 101, in order`, async () => {
      afterAnswer.length = 0;
      const got: Buffer[] = [];
      const s = net.connect(gw.port, '127.0.0.1', () => s.write(UPGRADE(host, '/switch-later') + 'one|'));
      s.on('data', (c: Buffer) => got.push(c));
      s.on('error', () => undefined);
      try {
        await new Promise((r) => setTimeout(r, 150));
        s.write('two|');
        await eventually(() => /^HTTP\/1\.1 101 /.test(Buffer.concat(got).toString('latin1')), 3000);
        await eventually(() => afterAnswer.join('') === 'one|two|', 2000).catch(() => assert.fail(`the app got ${JSON.stringify(afterAnswer)}`));
      } finally {
        s.destroy();
      }
    });

    it(`${via}: an upgrade without a valid Sec-WebSocket-Key is 400 at the gateway and never reaches the app (its 101 could not be checked)`, async () => {
      const seen = afterAnswer.length;
      await neverReachesTheApp(async () => {
        for (const key of ['', 'Sec-WebSocket-Key: short\r\n', 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=\r\n']) {
          const a = await rawRequest(gw.port, `GET /switch HTTP/1.1\r\nHost: ${host}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n${key}\r\nGET /smuggled HTTP/1.1\r\nHost: ${host}\r\n\r\n`, 2000);
          assert.match(a, /^HTTP\/1\.1 400 /, JSON.stringify(key));
        }
      });
      assert.equal(afterAnswer.length, seen);
    });

    it(`${via}: a WebSocket version other than 13 is 426 naming version 13, a missing one 400; neither reaches the app`, async () => {
      const key = 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n';
      await neverReachesTheApp(async () => {
        for (const version of ['8', '7', '13, 8', '']) {
          const a = await rawRequest(gw.port, `GET /switch HTTP/1.1\r\nHost: ${host}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: ${version}\r\n${key}\r\n`, 2000);
          assert.match(a, /^HTTP\/1\.1 426 /, version);
          assert.match(a, /\r\nsec-websocket-version: 13\r\n/i, 'the 426 names the version the gateway speaks');
        }
        const missing = await rawRequest(gw.port, `GET /switch HTTP/1.1\r\nHost: ${host}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n${key}\r\n`, 2000);
        assert.match(missing, /^HTTP\/1\.1 400 /);
      });
    });

    it(`${via}: an upgrade that declares a body (Content-Length, Transfer-Encoding) is 400 at the gateway and never reaches the app`, async () => {
      const seen = afterAnswer.length;
      const smuggled = `GET /smuggled HTTP/1.1\r\nHost: ${host}\r\n\r\n`;
      await neverReachesTheApp(async () => {
        for (const framing of [`Content-Length: ${smuggled.length}\r\n\r\n${smuggled}`, `Transfer-Encoding: chunked\r\n\r\n${smuggled.length.toString(16)}\r\n${smuggled}\r\n0\r\n\r\n`]) {
          const a = await rawRequest(gw.port, UPGRADE(host, '/switch').slice(0, -2) + framing, 2000);
          assert.match(a, /^HTTP\/1\.1 400 /, framing.split('\r\n')[0]);
        }
      });
      assert.equal(afterAnswer.length, seen);
    });

    it(`${via}: an upgrade with a method other than GET is 400 at the gateway and never reaches the app`, async () => {
      await neverReachesTheApp(async () => {
        for (const method of ['POST', 'PUT', 'DELETE', 'OPTIONS']) {
          const a = await rawRequest(gw.port, method + UPGRADE(host, '/switch').slice(3), 2000);
          assert.match(a, /^HTTP\/1\.1 400 /, method);
        }
      });
    });

    it(`${via}: a client that leaves before the app answers: the app's request is dropped at once, not held until backendTimeout`, async () => {
      const before = open.size;
      const seen = new Promise<void>((r) => app.once('connection', () => r()));
      const clients = await Promise.all(Array.from({ length: 10 }, () => exchange(gw.port, host, '/silent', 300)));
      await seen;
      for (const c of clients) assert.equal(c.text, '', 'the app said nothing yet');
      // backendTimeout (1 s) would end them anyway: well before it
      await eventually(() => open.size === before, 400).catch(() => assert.fail(`${open.size - before} app connections still open`));
      await settled();
      const aborted = gw.logs.filter((l) => l.msg === 'request' && l.path === '/silent' && l.aborted === true && l.app === (host === 'ws.test' ? 'Ws' : 'App'));
      assert.ok(aborted.length >= 10, `${aborted.length} aborted requests logged`);
    });
  }
});
