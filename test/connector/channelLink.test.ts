/**
 * The two channel transports: HTTP/2 straight on TLS after an upgrade to
 * drawbridge-h2 (the default) and HTTP/2 over a WebSocket. Both carry real
 * connector processes; bad input on the h2 upgrade is refused or closes only
 * that channel.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import http from 'node:http';
import https from 'node:https';
import { join } from 'node:path';
import tls from 'node:tls';
import { WebSocket, WebSocketServer } from 'ws';
import { ConnectorCa, createCsr, generateKeyPair } from '../../src/connector/ca.js';
import { MAX_FRAME_BYTES, TUNNEL_PROTOCOL, channelStream, dialChannel, unblockedStream } from '../../src/connector/channelLink.js';
import type { ConnectorHub } from '../../src/connector/hub.js';
import { eventually, request, startEchoBackend, tempDir, type EchoBackend, type TestGateway } from '../support/harness.js';
import { gatewayYaml, hubUrl, killConnector, startConnector, startHubGateway, token, waitChannels, type ConnectorProcess } from './support.js';

/** Sends `bytes` over mutual TLS to the hub and returns everything it answers until it closes. */
async function rawTls(hub: ConnectorHub, creds: { key: string; cert: string }, bytes: string): Promise<string> {
  const [host, port] = hub.address()!.split(':');
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host, port: Number(port), ...creds, ca: hub.ca.certPem, servername: 'localhost' }, () => s.write(bytes));
    const chunks: Buffer[] = [];
    s.on('data', (c: Buffer) => chunks.push(c));
    s.on('error', reject);
    s.on('close', () => resolve(Buffer.concat(chunks).toString('latin1')));
    setTimeout(() => s.destroy(), 3000).unref();
  });
}

async function clientCert(hub: ConnectorHub, id: string): Promise<{ key: string; cert: string }> {
  const kp = await generateKeyPair();
  return { key: kp.keyPem, cert: (await hub.ca.issueClient(await createCsr(kp.keys, id), kp.publicKeyDer, 'g1', 3600_000, id)).certPem };
}

describe('connector channel transports', function () {
  this.timeout(60_000);
  let backend: EchoBackend;
  let gw: TestGateway;
  const dir = tempDir();
  const procs: ConnectorProcess[] = [];

  before(async () => {
    backend = await startEchoBackend();
    gw = await startHubGateway(gatewayYaml(backend));
  });
  after(async () => {
    for (const c of procs) await killConnector(c);
    await gw.stop();
    await backend.close();
  });

  it('a connector on each transport carries GETs, a 4 MiB download and streamed POSTs alone; /connectors names the transport', async () => {
    const h2Dir = join(dir, 'h2');
    const wsDir = join(dir, 'ws');
    let onH2 = startConnector(h2Dir, { gateway: hubUrl(gw), token: token(gw) });
    const onWs = startConnector(wsDir, { gateway: hubUrl(gw), token: token(gw), args: ['--transport', 'websocket', '--channels', '1'] });
    procs.push(onH2, onWs);
    await waitChannels(gw, 3);
    const byTransport = new Map(gw.server.connectorHub!.connectors().map((c) => [c.transport, c]));
    assert.equal(byTransport.get('h2')?.channels, 2);
    assert.equal(byTransport.get('websocket')?.channels, 1);

    const exercise = async (label: string) => {
      const body = 'p'.repeat(300_000);
      const post = await request(`${gw.url}/post/${label}`, { method: 'POST', headers: { host: 'app.test', 'content-type': 'text/plain' }, body });
      assert.equal(post.status, 200, label);
      assert.equal(JSON.parse(post.body).body, body, label);
      const big = await request(`${gw.url}/big?bytes=${4 << 20}`, { headers: { host: 'app.test' } });
      assert.equal(big.status, 200, label);
      assert.equal(big.body.length, 4 << 20, label);
      const gets = await Promise.all(Array.from({ length: 20 }, (_, i) => request(`${gw.url}/get/${label}/${i}`, { headers: { host: 'app.test' } })));
      assert.deepEqual(gets.map((r) => r.status), Array(20).fill(200), label);
    };
    // only the WebSocket connector left
    await killConnector(onH2);
    await eventually(() => gw.server.connectorHub!.connectors().filter((c) => c.active).every((c) => c.transport === 'websocket'));
    await exercise('websocket');
    // only an h2 connector left (the same enrollment, restarted)
    onH2 = startConnector(h2Dir);
    procs.push(onH2);
    await waitChannels(gw, 3);
    await killConnector(onWs);
    await eventually(() => gw.server.connectorHub!.connectors().filter((c) => c.active).every((c) => c.transport === 'h2'));
    await exercise('h2');
  });

  it('refuses an unknown upgrade token and bytes sent before its 101, with 400 and the reason logged', async () => {
    const hub = gw.server.connectorHub!;
    const creds = await clientCert(hub, 'c-upgrade');
    const head = (upgrade: string) => `GET /v1/tunnel HTTP/1.1\r\nhost: localhost\r\nconnection: Upgrade\r\nupgrade: ${upgrade}\r\n\r\n`;
    assert.match(await rawTls(hub, creds, head('h2c')), /^HTTP\/1\.1 400 /);
    assert.match(await rawTls(hub, creds, head(TUNNEL_PROTOCOL) + 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'), /^HTTP\/1\.1 400 /);
    await eventually(() => gw.logs.some((l) => /unsupported channel transport "h2c"/.test(String(l.reason))));
    await eventually(() => gw.logs.some((l) => /before the channel upgrade was answered/.test(String(l.reason))));
    assert.ok(!hub.registry.all().some((c) => c.connectorId === 'c-upgrade'));
  });

  it('garbage instead of HTTP/2 after the 101 closes only that channel; the other connectors keep serving', async () => {
    const hub = gw.server.connectorHub!;
    const before = hub.registry.all().length;
    const link = dialChannel({ gateway: `https://${hub.address()}`, transport: 'h2', ...(await clientCert(hub, 'c-garbage')), ca: hub.ca.certPem, headers: {}, handshakeTimeoutMs: 5000 });
    const stream = await new Promise<import('node:stream').Duplex>((r, j) => {
      link.once('open', r);
      link.once('error', j);
    });
    stream.on('error', () => undefined);
    stream.resume(); // reads the gateway's GOAWAY and the end of the socket
    stream.write(Buffer.from('this is not HTTP/2 at all, just garbage bytes\r\n\r\n'.repeat(20)));
    await new Promise((r) => link.once('close', r));
    await eventually(() => !hub.registry.all().some((c) => c.connectorId === 'c-garbage'));
    assert.equal(hub.registry.all().length, before);
    const results = await Promise.all(Array.from({ length: 20 }, (_, i) => request(`${gw.url}/after-garbage/${i}`, { headers: { host: 'app.test' } })));
    assert.deepEqual(results.map((r) => r.status), Array(20).fill(200));
  });

  it('a WebSocket channel splits a burst of queued writes into messages the peer accepts', async () => {
    // The hub refuses WebSocket messages over MAX_FRAME_BYTES; HTTP/2 can queue more than that while the socket is busy.
    const server = http.createServer();
    const wss = new WebSocketServer({ server, maxPayload: MAX_FRAME_BYTES });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const received: number[] = [];
    let closeCode: number | undefined;
    wss.on('connection', (ws) => {
      ws.on('message', (m: Buffer) => received.push(m.length));
      ws.on('close', (code) => (closeCode = code));
    });
    const ws = new WebSocket(`ws://127.0.0.1:${(server.address() as { port: number }).port}/`);
    await new Promise((r) => ws.once('open', r));
    const duplex = channelStream(ws);
    duplex.cork();
    for (let i = 0; i < 6; i++) duplex.write(Buffer.alloc(1 << 20, i));
    await new Promise<void>((r) => {
      duplex.uncork();
      duplex.write(Buffer.alloc(10), () => r());
    });
    await eventually(() => received.reduce((a, b) => a + b, 0) === 6 * (1 << 20) + 10);
    assert.ok(Math.max(...received) <= MAX_FRAME_BYTES, `largest message ${Math.max(...received)} bytes`);
    assert.equal(closeCode, undefined);
    ws.terminate();
    wss.close();
    server.close();
  });

  it('a 101 to another protocol: the connector drops the socket and reports the channel closed, so it dials again', async () => {
    const ca = await ConnectorCa.loadOrCreate(tempDir());
    const leaf = await ca.issueServer(['127.0.0.1']);
    const server = https.createServer({ key: leaf.keyPem, cert: leaf.certPem });
    server.on('upgrade', (_req, socket) => socket.write('HTTP/1.1 101 Switching Protocols\r\nconnection: Upgrade\r\nupgrade: websocket\r\n\r\n'));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const link = dialChannel({ gateway: `https://127.0.0.1:${(server.address() as { port: number }).port}`, transport: 'h2', ca: ca.certPem, headers: {}, handshakeTimeoutMs: 5000 });
    let opened = false;
    link.on('open', () => (opened = true));
    const error = new Promise<Error>((r) => link.once('error', r));
    await new Promise((r) => link.once('close', r));
    assert.match((await error).message, /switched to websocket, not drawbridge-h2/);
    assert.equal(opened, false);
    server.close();
  });
});

describe('unblockedStream: the channel socket as a stream whose writes complete at once', function () {
  this.timeout(30_000);

  /** a TLS connection on loopback: our end (`socket`) and the peer's (`theirs`); close `server` and `socket` when done */
  async function tlsPair(): Promise<{ server: tls.Server; socket: tls.TLSSocket; theirs: tls.TLSSocket }> {
    const ca = await ConnectorCa.loadOrCreate(tempDir());
    const leaf = await ca.issueServer(['127.0.0.1']);
    const server = tls.createServer({ key: leaf.keyPem, cert: leaf.certPem });
    const peer = once(server, 'secureConnection') as Promise<[tls.TLSSocket]>;
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const socket = tls.connect({ host: '127.0.0.1', port: (server.address() as { port: number }).port, ca: ca.certPem });
    await once(socket, 'secureConnect');
    const [theirs] = await peer;
    return { server, socket, theirs };
  }

  it('hands what one read of the socket brought to HTTP/2 in a few pieces, not one TLS record at a time, and all of it before the end', async () => {
    const { server, socket, theirs } = await tlsPair();
    try {
      // 1 MiB, 64 TLS records of 16 KiB, waiting in the kernel before this side reads any of it
      socket.pause();
      const body = randomBytes(1 << 20);
      await new Promise<void>((resolve, reject) => theirs.end(body, (err?: Error | null) => (err ? reject(err) : resolve())));
      await new Promise((r) => setTimeout(r, 100));
      const stream = unblockedStream(socket);
      const pieces: Buffer[] = [];
      // copied as it comes, as HTTP/2's JS stream adapter does (the stream reuses the buffer then)
      stream.on('data', (c: Buffer) => pieces.push(Buffer.from(c)));
      await once(stream, 'end');
      const got = Buffer.concat(pieces);
      assert.equal(got.length, body.length, 'bytes that arrived before the end were lost');
      assert.ok(got.equals(body), 'the stream delivered other bytes than the peer sent');
      // at most 256 KiB a piece, or what one turn brought: one TLS record at a time would be 64
      assert.ok(pieces.length <= 16, `1 MiB read at once reached HTTP/2 in ${pieces.length} pieces`);
    } finally {
      socket.destroy();
      server.close();
    }
  });

  it("keeps a piece that waits in the stream while HTTP/2 reads nothing: another channel's reads do not reuse its buffer", async () => {
    const held = await tlsPair();
    const busy = await tlsPair();
    try {
      // HTTP/2 stops reading its stream while one of its own writes waits; what arrived meanwhile waits in the stream
      const waiting = unblockedStream(held.socket);
      const first = randomBytes(1 << 20);
      held.theirs.write(first);
      await eventually(() => waiting.readableLength > 0 || undefined, 5000, 10);
      await new Promise((r) => setTimeout(r, 100));
      // another channel meanwhile takes a megabyte, copying each piece as HTTP/2 does
      const other = unblockedStream(busy.socket);
      const second = randomBytes(1 << 20);
      const otherPieces: Buffer[] = [];
      other.on('data', (c: Buffer) => otherPieces.push(Buffer.from(c)));
      busy.theirs.end(second);
      await once(other, 'end');
      assert.ok(Buffer.concat(otherPieces).equals(second), 'the other channel delivered other bytes than its peer sent');
      const pieces: Buffer[] = [];
      waiting.on('data', (c: Buffer) => pieces.push(Buffer.from(c)));
      held.theirs.end();
      await once(waiting, 'end');
      const got = Buffer.concat(pieces);
      assert.equal(got.length, first.length);
      assert.ok(got.equals(first), "a piece that waited in the stream was overwritten by another channel's reads");
    } finally {
      for (const { socket, server } of [held, busy]) {
        socket.destroy();
        server.close();
      }
    }
  });

  it("takes a write's bytes when it completes it: a writer that refills its buffer at once still sends what it wrote, while the peer reads nothing", async () => {
    const { server, socket, theirs } = await tlsPair();
    try {
      theirs.pause();
      const stream = unblockedStream(socket);
      // 32 MiB from one 64 KiB buffer, refilled as soon as each write completes: more than the
      // kernel's buffers take, so most of it waits in the queue while the peer reads nothing
      const WRITES = 512;
      const buf = Buffer.alloc(64 << 10);
      const sent = createHash('sha256');
      for (let i = 0; i < WRITES; i++) {
        buf.fill(i % 256);
        sent.update(buf);
        await new Promise<void>((resolve, reject) => stream.write(buf, (err) => (err ? reject(err) : resolve())));
      }
      const got = createHash('sha256');
      let n = 0;
      theirs.on('data', (c: Buffer) => {
        got.update(c);
        n += c.length;
      });
      theirs.resume();
      await eventually(() => n >= WRITES << 16 || undefined, 15_000, 20);
      assert.equal(n, WRITES << 16);
      assert.equal(got.digest('hex'), sent.digest('hex'), 'the peer received other bytes than were written');
    } finally {
      socket.destroy();
      server.close();
    }
  });
});
