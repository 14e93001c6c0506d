import assert from 'node:assert/strict';
import http from 'node:http';
import https from 'node:https';
import net, { type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { ConnectorCa } from '../../src/connector/ca.js';
import { eventually, sleep, startGateway, tempDir, type TestGateway } from '../support/harness.js';
import { gatewayYaml, hubUrl, killConnector, startConnector, startHubGateway, token, waitChannels, type ConnectorProcess } from '../connector/support.js';

/** What the app saw of one upload: its reads are the body's chunks as they came on the wire. */
interface Upload {
  headers: http.IncomingHttpHeaders;
  reads: number;
  bytes: number;
  body: Buffer[];
  ended: boolean;
  aborted: boolean;
}

/** An app that counts the body reads of each request (by path), and pauses the ones under /slow/ until told. */
async function startCountingApp() {
  const uploads = new Map<string, Upload>();
  const paused = new Set<http.IncomingMessage>();
  const server = http.createServer((req, res) => {
    const u: Upload = { headers: req.headers, reads: 0, bytes: 0, body: [], ended: false, aborted: false };
    uploads.set(req.url!, u);
    req.on('data', (d: Buffer) => {
      u.reads++;
      u.bytes += d.length;
      u.body.push(d);
    });
    req.on('end', () => {
      u.ended = true;
      res.end(JSON.stringify({ reads: u.reads, bytes: u.bytes }));
    });
    req.on('close', () => (u.aborted = !u.ended));
    if (req.url!.startsWith('/slow/')) {
      req.pause();
      paused.add(req);
    }
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    uploads,
    resumeAll: () => paused.forEach((r) => r.resume()),
    close: () => new Promise<void>((r) => (server.closeAllConnections(), server.close(() => r()))),
  };
}

/** A client on a raw socket, so the test decides the framing and the pauses. */
function rawClient(port: number, head: string) {
  const s = net.connect(port, '127.0.0.1');
  s.on('error', () => undefined);
  s.write(head);
  let answer = '';
  s.on('data', (d) => (answer += d));
  const closed = new Promise<string>((r) => s.on('close', () => r(answer)));
  return { s, closed };
}

const postHead = (path: string, host: string, framing: string) => `POST ${path} HTTP/1.1\r\nHost: ${host}\r\n${framing}\r\nConnection: close\r\n\r\n`;

describe('request bodies: what one turn brings goes to the app in one write, still streamed and still paced by the app', function () {
  this.timeout(60_000);
  let app: Awaited<ReturnType<typeof startCountingApp>>;
  let direct: TestGateway;
  let hub: TestGateway;
  let conn: ConnectorProcess;
  before(async () => {
    app = await startCountingApp();
    direct = await startGateway(`
gateway:
  publicUrl: http://app.test
  listen: { http: 127.0.0.1:0 }
apps:
  - name: App
    externalUrl: http://app.test/
    internalUrl: ${app.url}/
    preAuth: passthrough
`);
    const dir = tempDir();
    hub = await startHubGateway(gatewayYaml(app), dir);
    conn = startConnector(join(dir, 'conn'), { gateway: hubUrl(hub), token: token(hub) });
    await waitChannels(hub, 1);
  });
  after(async () => {
    await killConnector(conn);
    await hub.stop();
    await direct.stop();
    await app.close();
  });

  for (const [name, via, gw] of [['direct', 'direct', () => direct], ['through a connector', 'tunnel', () => hub]] as const) {
    describe(name, () => {
      it('an upload in 1-byte chunks arrives intact in a handful of chunks', async () => {
        const n = 50_000;
        const path = `/tiny/${via}`;
        const { s, closed } = rawClient(gw().port, postHead(path, 'app.test', 'Transfer-Encoding: chunked'));
        s.write('1\r\nx\r\n'.repeat(n) + '0\r\n\r\n');
        assert.match(await closed, /^HTTP\/1\.1 200/);
        const u = app.uploads.get(path)!;
        assert.equal(Buffer.concat(u.body).toString(), 'x'.repeat(n));
        assert.ok(u.reads < 100, `the app read the body in ${u.reads} chunks`);
      });

      it('a Content-Length body sent a few bytes at a time keeps exactly its length', async () => {
        const path = `/length/${via}`;
        const body = 'abcdefghij'.repeat(1000);
        const { s, closed } = rawClient(gw().port, postHead(path, 'app.test', `Content-Length: ${body.length}`));
        for (let i = 0; i < body.length; i += 7) s.write(body.slice(i, i + 7));
        assert.match(await closed, /^HTTP\/1\.1 200/);
        const u = app.uploads.get(path)!;
        assert.equal(u.headers['content-length'], String(body.length));
        assert.equal(u.headers['transfer-encoding'], undefined);
        assert.equal(Buffer.concat(u.body).toString(), body);
      });

      it('streams: what the client sent reaches the app while the client is still sending', async () => {
        const path = `/stream/${via}`;
        const { s, closed } = rawClient(gw().port, postHead(path, 'app.test', 'Transfer-Encoding: chunked'));
        s.write('5\r\nhello\r\n');
        await eventually(() => app.uploads.get(path)?.bytes === 5);
        assert.equal(app.uploads.get(path)!.ended, false);
        s.write('6\r\n world\r\n0\r\n\r\n');
        assert.match(await closed, /^HTTP\/1\.1 200/);
        assert.equal(Buffer.concat(app.uploads.get(path)!.body).toString(), 'hello world');
      });

      it('an app that stops reading pauses the client; when it reads again the whole body arrives', async () => {
        const path = `/slow/${via}`;
        const size = 96 << 20;
        const { s, closed } = rawClient(gw().port, postHead(path, 'app.test', `Content-Length: ${size}`));
        const piece = Buffer.alloc(1 << 20, 'b');
        for (let i = 0; i < 96; i++) s.write(piece);
        await eventually(() => app.uploads.has(path));
        await sleep(1500);
        const sent = s.bytesWritten - s.writableLength;
        assert.ok(sent < 48 << 20, `the client got ${sent >> 20} MiB out while the app read nothing`);
        app.resumeAll();
        assert.match(await closed, /^HTTP\/1\.1 200/);
        assert.equal(app.uploads.get(path)!.bytes, size);
      });

      it('a client that leaves mid-body aborts the app\'s request', async () => {
        const path = `/left/${via}`;
        const { s } = rawClient(gw().port, postHead(path, 'app.test', 'Content-Length: 1000'));
        s.write('0123456789');
        await eventually(() => app.uploads.get(path)?.bytes === 10);
        s.destroy();
        await eventually(() => app.uploads.get(path)!.aborted);
        assert.equal(app.uploads.get(path)!.ended, false);
      });
    });
  }
});

describe('request bodies: a client that leaves before the app is connected', function () {
  this.timeout(15_000);

  it('a POST whose client leaves while the gateway waits for the app: no crash, the app gets nothing, the gateway serves on', async () => {
    // An https app whose TLS handshake starts a second late (a busy or distant app): the request
    // waits for its connection while the client sends part of the body and leaves. The body
    // stream then failed with nobody listening, and that error ended the gateway process.
    const leaf = await (await ConnectorCa.loadOrCreate(tempDir())).issueServer(['127.0.0.1']);
    const requests: string[] = [];
    const app = https.createServer({ key: leaf.keyPem, cert: leaf.certPem }, (req, res) => {
      requests.push(`${req.method} ${req.url}`);
      req.resume().on('end', () => res.end('ok'));
    });
    const late = net.createServer((s) => void setTimeout(() => app.emit('connection', s), 1000));
    await new Promise<void>((r) => late.listen(0, '127.0.0.1', r));
    const gw = await startGateway(`
gateway:
  publicUrl: http://gw.test
  listen: { http: 127.0.0.1:0 }
apps:
  - name: Late
    externalUrl: http://late.test/
    internalUrl: https://127.0.0.1:${(late.address() as AddressInfo).port}/
    preAuth: passthrough
    backend: { tls: { verify: false } }
`);
    try {
      const client = net.connect(gw.port, '127.0.0.1');
      client.on('error', () => undefined);
      await new Promise((r) => client.once('connect', r));
      client.write('POST /upload HTTP/1.1\r\nHost: late.test\r\nContent-Length: 5\r\n\r\nab');
      await sleep(300);
      client.destroy();
      await sleep(1500);
      const after = await new Promise<number>((resolve, reject) =>
        http.get({ port: gw.port, host: '127.0.0.1', path: '/after', headers: { host: 'late.test' } }, (res) => resolve(res.resume().statusCode!)).on('error', reject),
      );
      assert.equal(after, 200);
      assert.deepEqual(requests, ['GET /after'], 'the abandoned POST never reached the app');
    } finally {
      await gw.stop();
      late.close();
    }
  });
});
