/**
 * A broken or hostile gateway must not take the connector down. This file mirrors no single src
 * file: it attacks a REAL connector child process (agent.ts, channelLink.ts) from a scripted
 * gateway, a TLS server whose certificate the connector's enrolled CA signed (as the hub's is),
 * speaking the channel protocol (the `h2` upgrade on GET /v1/tunnel, then HTTP/2 with the gateway
 * as the client; POST /v1/renew), and then misbehaving.
 */
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import http2, { type ClientHttp2Session } from 'node:http2';
import type http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import { join } from 'node:path';
import type { TLSSocket } from 'node:tls';
import { eventually, tempDir } from '../support/harness.js';
import { ConnectorCa, createCsr, generateKeyPair } from '../../src/connector/ca.js';
import { SWITCHING_TO_TUNNEL, unblockedStream } from '../../src/connector/channelLink.js';
import { killConnector, startConnector, type ConnectorProcess } from './support.js';
import { CLIENT_PREFACE, FLAG, FRAME, frame, headerBlock, readFrames, settingsFrame, u32 } from '../support/h2Frames.js';
import { cpuMs, rssMiB } from '../support/procStats.js';

interface RenewRequest {
  csr: string;
  publicKey: string;
}

/** The scripted gateway: `renew` answers POST /v1/renew; every channel becomes an HTTP/2 client session in `sessions`. */
interface ScriptedGateway {
  url: string;
  ca: ConnectorCa;
  renewals: number;
  renew: (body: RenewRequest, res: http.ServerResponse) => void | Promise<void>;
  sessions: ClientHttp2Session[];
  /** channel upgrades asked for */
  upgrades: number;
  /** when set, answers the upgrade instead of a channel */
  onUpgrade?: (socket: TLSSocket) => void;
  close(): void;
}

async function startScriptedGateway(dir: string): Promise<ScriptedGateway> {
  const ca = await ConnectorCa.loadOrCreate(dir);
  const tls = await ca.issueServer(['127.0.0.1', 'localhost']);
  const sockets = new Set<net.Socket>();
  const gw: ScriptedGateway = {
    url: '',
    ca,
    renewals: 0,
    renew: (_b, res) => void res.writeHead(503).end(),
    sessions: [],
    upgrades: 0,
    close: () => {
      for (const s of gw.sessions) s.destroy();
      for (const s of sockets) s.destroy();
      server.close();
    },
  };
  const server = https.createServer({ key: tls.keyPem, cert: tls.certPem, ca: ca.certPem, requestCert: true, rejectUnauthorized: false }, (req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      if (req.url !== '/v1/renew') return void res.writeHead(404).end();
      gw.renewals++;
      void gw.renew(JSON.parse(Buffer.concat(chunks).toString('utf8')) as RenewRequest, res);
    });
  });
  server.on('connection', (s: net.Socket) => (sockets.add(s), s.on('close', () => sockets.delete(s))));
  server.on('upgrade', (_req, socket: net.Socket) => {
    gw.upgrades++;
    if (gw.onUpgrade) return gw.onUpgrade(socket as TLSSocket);
    socket.write(SWITCHING_TO_TUNNEL);
    const session = http2.connect('http://connector.invalid', { createConnection: () => unblockedStream(socket as TLSSocket) });
    session.on('error', () => undefined);
    gw.sessions.push(session);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  gw.url = `https://127.0.0.1:${(server.address() as net.AddressInfo).port}`;
  return gw;
}

/** A state dir as `connector enroll` leaves it, its certificate from `ca`, for `lifetimeMs`. */
async function enrolledStateDir(ca: ConnectorCa, gateway: string, dir: string, lifetimeMs: number): Promise<string> {
  const kp = await generateKeyPair();
  const issued = await ca.issueClient(await createCsr(kp.keys, 'drawbridge-connector'), kp.publicKeyDer, 'g1', lifetimeMs, 'c-rogue');
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'key.pem'), kp.keyPem, { mode: 0o600 });
  writeFileSync(join(dir, 'cert.pem'), issued.certPem);
  writeFileSync(join(dir, 'ca.pem'), ca.certPem);
  writeFileSync(join(dir, 'connector.json'), JSON.stringify({ id: issued.id, group: 'g1', gateway, notAfter: issued.notAfter.toISOString() }));
  return dir;
}

/** Signs the connector's renewal CSR with `ca` for `lifetimeMs` and answers it as the hub does. */
async function answerRenewal(ca: ConnectorCa, body: RenewRequest, res: http.ServerResponse, lifetimeMs: number): Promise<void> {
  const issued = await ca.issueClient(body.csr, Buffer.from(body.publicKey, 'base64'), 'g1', lifetimeMs, 'c-rogue');
  res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ cert: issued.certPem, notAfter: issued.notAfter.toISOString() }));
}

describe('a connector against a broken or hostile gateway', function () {
  this.timeout(20_000);
  let gw: ScriptedGateway;
  let conn: ConnectorProcess | undefined;
  const dir = tempDir();

  before(async () => {
    gw = await startScriptedGateway(join(dir, 'gw'));
  });
  afterEach(async () => {
    if (conn) await killConnector(conn);
    conn = undefined;
    for (const s of gw.sessions.splice(0)) s.destroy();
    gw.renewals = 0;
    gw.upgrades = 0;
    gw.onUpgrade = undefined;
  });
  after(() => gw.close());

  it('a renewal answered with a certificate of the new key from ANOTHER CA is not used nor written to cert.pem', async () => {
    const other = await ConnectorCa.loadOrCreate(join(dir, 'other'));
    // 3 s certificate: the renewal comes at 2 s
    const state = await enrolledStateDir(gw.ca, gw.url, join(dir, 'foreign'), 3_000);
    const before = readFileSync(join(state, 'cert.pem'), 'utf8');
    gw.renew = (body, res) => answerRenewal(other, body, res, 3600_000);
    conn = startConnector(state);
    await eventually(() => conn!.logs().find((l) => l.msg === 'certificate renewal failed; retrying'), 8_000, 50);
    assert.equal(readFileSync(join(state, 'cert.pem'), 'utf8'), before);
    const failed = conn.logs().find((l) => l.msg === 'certificate renewal failed; retrying')!;
    assert.match(String(failed.reason), /not signed by the connector CA/);
    assert.equal(conn.logs().some((l) => l.msg === 'certificate renewed'), false);
  });

  it('a gateway that answers the channel upgrade with 101 then garbage does not take the connector down', async () => {
    gw.onUpgrade = (s) => s.end(SWITCHING_TO_TUNNEL + 'garbage, not an HTTP/2 preface\r\n');
    conn = startConnector(await enrolledStateDir(gw.ca, gw.url, join(dir, 'garbage'), 3600_000), { args: ['--channels', '1'] });
    await eventually(() => (gw.upgrades >= 2 && conn!.logs().some((l) => l.msg === 'channel closed; reconnecting')) || undefined, 8_000, 20);
    await new Promise((r) => setTimeout(r, 300));
    // (it exited 1 at the first: "an exception nobody caught", ERR_HTTP2_INVALID_SESSION from setLocalWindowSize)
    assert.equal(conn.child.exitCode, null, conn.lines.slice(-3).join('\n'));
  });

  for (const [what, answer] of [
    ['101 then garbage', (s: TLSSocket) => s.end(SWITCHING_TO_TUNNEL + 'garbage, not an HTTP/2 preface\r\n')],
    ['101, HTTP/2, then GOAWAY at once', (s: TLSSocket) => {
      s.write(SWITCHING_TO_TUNNEL);
      const session = http2.connect('http://connector.invalid', { createConnection: () => unblockedStream(s) });
      session.on('error', () => undefined);
      session.on('connect', () => session.close());
    }],
  ] as [string, (s: TLSSocket) => void][]) {
    it(`a gateway that answers every channel with ${what} is dialled with a growing backoff, not several times a second forever`, async () => {
      gw.onUpgrade = answer;
      conn = startConnector(await enrolledStateDir(gw.ca, gw.url, join(dir, what.replace(/\W+/g, '-')), 3600_000), { args: ['--channels', '1'] });
      await eventually(() => gw.upgrades >= 1 || undefined, 8_000, 20);
      const from = gw.upgrades;
      await new Promise((r) => setTimeout(r, 4000));
      // (backoff 250 ms, 500 ms, 1 s, 2 s with jitter: at most 4 more; it was 16-30, every 125-250 ms)
      assert.equal(conn.child.exitCode, null, conn.lines.slice(-5).join('\n'));
      assert.ok(gw.upgrades - from <= 5, `${gw.upgrades - from} channel dials in 4 s`);
    });
  }

  it('a renewal answered with a certificate that has already run out is refused, and the connector does not spin renewing', async () => {
    const state = await enrolledStateDir(gw.ca, gw.url, join(dir, 'expired'), 3_000);
    const before = readFileSync(join(state, 'cert.pem'), 'utf8');
    // a certificate whose notAfter is an hour before its issue
    gw.renew = (body, res) => answerRenewal(gw.ca, body, res, -3600_000);
    conn = startConnector(state);
    await eventually(() => gw.renewals >= 1 || undefined, 8_000, 50);
    // (before its own certificate runs out at 3 s, after which it exits asking for a new enrollment)
    await new Promise((r) => setTimeout(r, 700));
    // (it renewed as fast as the gateway answered: a new key pair each time, 100% CPU)
    assert.ok(gw.renewals <= 2, `${gw.renewals} renewals in 0.7 s`);
    assert.equal(readFileSync(join(state, 'cert.pem'), 'utf8'), before);
    const failed = conn.logs().find((l) => l.msg === 'certificate renewal failed; retrying')!;
    assert.match(String(failed.reason), /runs out before it was issued/);
    assert.ok(new X509Certificate(readFileSync(join(state, 'cert.pem'))).checkIssued(new X509Certificate(gw.ca.certPem)));
  });
});


/** Sends a target list on `session`; resolves with the connector's status. */
function sendTargets(session: ClientHttp2Session, body: string | Buffer): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = session.request({ ':method': 'POST', ':path': '/v1/targets', 'content-type': 'application/json' });
    s.on('response', (h) => resolve(Number(h[':status'])));
    s.on('error', reject);
    s.resume();
    s.end(body);
  });
}

/** Opens a CONNECT stream; resolves with the connector's status, or the reset's code. */
function connectTo(session: ClientHttp2Session, authority: string): Promise<number | string> {
  return new Promise((resolve) => {
    const s = session.request({ ':method': 'CONNECT', ':authority': authority });
    s.on('response', (h) => {
      resolve(Number(h[':status']));
      s.close();
    });
    s.on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
    s.resume();
  });
}

describe('a connector channel to a hostile gateway', function () {
  this.timeout(20_000);
  let gw: ScriptedGateway;
  let conn: ConnectorProcess;
  let session: ClientHttp2Session;
  const dir = tempDir();

  before(async () => {
    gw = await startScriptedGateway(join(dir, 'gw'));
    conn = startConnector(await enrolledStateDir(gw.ca, gw.url, join(dir, 'state'), 3600_000), { args: ['--channels', '1'] });
    session = (await eventually(() => gw.sessions[0], 10_000, 20))!;
    assert.equal(await sendTargets(session, JSON.stringify({ targets: ['127.0.0.1:9'] })), 200);
  });
  after(async () => {
    await killConnector(conn);
    gw.close();
  });

  it('target lists that are not JSON, huge, or not host:port are refused (400, 413 when huge), and the list in use stays', async () => {
    assert.equal(await sendTargets(session, 'not json'), 400);
    assert.equal(await sendTargets(session, Buffer.alloc(3 << 20, 'x')), 413);
    assert.equal(await sendTargets(session, JSON.stringify({ targets: ['nohost', '127.0.0.1:70000'] })), 400);
    assert.equal(await sendTargets(session, JSON.stringify({ targets: Array.from({ length: 5000 }, (_, i) => `10.0.${i >> 8}.${i & 255}:80`).concat('127.0.0.1:9') })), 200);
    assert.equal(await connectTo(session, '127.0.0.1:22'), 403);
    // (a :authority that is no authority is reset by HTTP/2 itself)
    assert.ok([403, 'ERR_HTTP2_STREAM_ERROR'].includes((await connectTo(session, 'not an authority')) as never));
    assert.equal(await connectTo(session, '127.0.0.1:9'), 502);
    assert.equal(conn.child.exitCode, null);
  });

  it('target-list streams that never end do not grow the connector without bound', async () => {
    const start = rssMiB(conn.child.pid!);
    const held: http2.ClientHttp2Stream[] = [];
    for (let i = 0; i < 300; i++) {
      const s = session.request({ ':method': 'POST', ':path': '/v1/targets' });
      s.on('error', () => undefined);
      s.write(Buffer.alloc(1 << 20, ' '));
      held.push(s);
    }
    await new Promise((r) => setTimeout(r, 3000));
    const grown = rssMiB(conn.child.pid!) - start;
    for (const s of held) s.close();
    assert.equal(conn.child.exitCode, null);
    assert.ok(grown < 100, `the connector grew by ${Math.round(grown)} MiB`);
  });
});

/** A target-list request's header block (POST /v1/targets) and a CONNECT's. */
const targetsHead = headerBlock([[':method', 'POST'], [':scheme', 'http'], [':path', '/v1/targets'], [':authority', 'connector.invalid']]);
const connectHead = (authority: string) => headerBlock([[':method', 'CONNECT'], [':authority', authority]]);
const turn = () => new Promise((r) => setImmediate(r));

/** Writes `make(i)` for i below `n`, `batch` at a time, letting the loop turn between batches. */
async function flood(s: TLSSocket, n: number, make: (i: number) => Buffer, batch = 500): Promise<void> {
  for (let i = 0; i < n && !s.destroyed; i += batch) {
    s.write(Buffer.concat(Array.from({ length: Math.min(batch, n - i) }, (_, j) => make(i + j))));
    await turn();
  }
}

describe('a connector against HTTP/2 abuse from its gateway (frames by hand)', function () {
  this.timeout(30_000);
  let gw: ScriptedGateway;
  let conn: ConnectorProcess;
  let state: string;
  /** the connector's channels, as the scripted gateway took them: HTTP/2 preface and SETTINGS sent */
  let channels: TLSSocket[] = [];
  const dir = tempDir();

  before(async () => {
    gw = await startScriptedGateway(join(dir, 'gw'));
    state = await enrolledStateDir(gw.ca, gw.url, join(dir, 'state'), 3600_000);
    gw.onUpgrade = (s) => {
      s.write(SWITCHING_TO_TUNNEL);
      s.write(Buffer.concat([CLIENT_PREFACE, settingsFrame()]));
      // (each frame the connector sends is emitted on the socket as 'frame')
      readFrames(s, (f) => {
        if (f.type === FRAME.SETTINGS && !(f.flags & FLAG.ACK)) s.write(frame(FRAME.SETTINGS, FLAG.ACK, 0));
        s.emit('frame', f);
      });
      channels.push(s);
    };
  });
  beforeEach(async () => {
    channels = [];
    conn = startConnector(state, { args: ['--channels', '1'] });
    await eventually(() => channels[0], 10_000, 20);
    await new Promise((r) => setTimeout(r, 200));
  });
  afterEach(async () => {
    await killConnector(conn);
    for (const s of channels) s.destroy();
  });
  after(() => gw.close());

  /** the connector is up, not busy, and has a channel that answers a PING (the first one, or the one it dialled again) */
  async function holds(what: string): Promise<void> {
    assert.equal(conn.child.exitCode, null, `${what}: the connector exited\n${conn.lines.slice(-5).join('\n')}`);
    const cpu = cpuMs(conn.child.pid!);
    await new Promise((r) => setTimeout(r, 500));
    assert.ok(cpuMs(conn.child.pid!) - cpu < 300, `${what}: the connector is still busy`);
    const live = await eventually(() => channels.find((s) => !s.destroyed && !s.readableEnded), 5000, 20);
    const pong = await new Promise<boolean>((resolve) => {
      live!.on('frame', (f: { type: number; flags: number }) => f.type === FRAME.PING && f.flags & FLAG.ACK && resolve(true));
      live!.write(frame(FRAME.PING, 0, 0, Buffer.alloc(8, 7)));
      setTimeout(() => resolve(false), 2000);
    });
    assert.ok(pong, `${what}: no channel of the connector answers`);
  }

  it('a rapid-reset flood (CONNECT then RST_STREAM, 10,000 times): the connector says why the channel ended and dials again; it exited 0, logging nothing', async () => {
    const s = channels[0]!;
    // a target list that has begun and not ended: each CONNECT waits for it, open when its reset comes
    s.write(frame(FRAME.HEADERS, FLAG.END_HEADERS, 1, targetsHead));
    await flood(s, 10_000, (i) => Buffer.concat([frame(FRAME.HEADERS, FLAG.END_HEADERS, 2 * i + 3, connectHead('127.0.0.1:9')), frame(FRAME.RST_STREAM, 0, 2 * i + 3, u32(8))]));
    const said = await eventually(() => conn.logs().find((l) => /the gateway broke the HTTP\/2 protocol/.test(String(l.msg))), 5000, 20);
    // (nghttp2's text, or the code's name: INTERNAL_ERROR (code 2) here)
    assert.match(String(said!.reason), /^[A-Z_]+ \(code \d+\)$|: /);
    await eventually(() => channels.length >= 2 || undefined, 5000, 20);
    await holds('rapid reset');
  });

  it('DATA on a stream never opened, then more bytes: the channel is closed at once with nghttp2\'s reason and dialled again (it stayed, unread)', async () => {
    const s = channels[0]!;
    s.write(frame(FRAME.DATA, 0, 99, Buffer.alloc(100)));
    await new Promise((r) => setTimeout(r, 100));
    await flood(s, 2000, () => frame(FRAME.PING, 0, 0, Buffer.alloc(8)));
    const said = await eventually(() => conn.logs().find((l) => /the gateway broke the HTTP\/2 protocol/.test(String(l.msg))), 3000, 20);
    assert.match(String(said!.reason), /DATA: stream in idle/);
    await eventually(() => channels.length >= 2 || undefined, 3000, 20);
    await holds('DATA on an idle stream');
  });

  it('a target list that never ends (a valid beginning, then a byte now and then) with 1,000 CONNECTs to targets not listed waiting behind it: they cost little, and are answered 403 once the list\'s stream is reset', async () => {
    const s = channels[0]!;
    const pid = conn.child.pid!;
    const before = rssMiB(pid);
    const answered = new Set<number>();
    s.on('frame', (f: { type: number; stream: number }) => f.type === FRAME.HEADERS && f.stream > 1 && answered.add(f.stream));
    s.write(frame(FRAME.HEADERS, FLAG.END_HEADERS, 1, targetsHead));
    s.write(frame(FRAME.DATA, 0, 1, Buffer.from('{"targets":["127.0.0.1:9"')));
    await flood(s, 1000, (i) => frame(FRAME.HEADERS, FLAG.END_HEADERS | FLAG.END_STREAM, 2 * i + 3, connectHead(`127.0.0.1:${1000 + i}`)));
    for (let i = 0; i < 10; i++) {
      s.write(frame(FRAME.DATA, 0, 1, Buffer.from(' ')));
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal(answered.size, 0, 'they wait for the list');
    assert.ok(rssMiB(pid) - before < 40, `the connector grew by ${Math.round(rssMiB(pid) - before)} MiB`);
    s.write(frame(FRAME.RST_STREAM, 0, 1, u32(8)));
    await eventually(() => answered.size === 1000 || undefined, 5000, 20);
    await holds('a target list that never ends');
  });

  it('a gateway that announces the largest windows and then reads nothing while an app sends 200 MiB: the channel is cut once 48 MiB wait for it, the connector\'s memory bounded', async () => {
    const app = net.createServer((c) => {
      c.on('error', () => undefined);
      const mib = Buffer.alloc(1 << 20, 'z');
      let n = 0;
      const pump = (): void => {
        while (n++ < 200) if (!c.write(mib)) return void c.once('drain', pump);
        c.end();
      };
      pump();
    });
    await new Promise<void>((r) => app.listen(0, '127.0.0.1', r));
    const target = `127.0.0.1:${(app.address() as net.AddressInfo).port}`;
    try {
      const s = channels[0]!;
      const pid = conn.child.pid!;
      const before = rssMiB(pid);
      s.write(settingsFrame([[4, 0x7fffffff]]));
      s.write(frame(FRAME.WINDOW_UPDATE, 0, 0, u32(0x7fffffff - 65535)));
      s.write(frame(FRAME.HEADERS, FLAG.END_HEADERS, 1, targetsHead));
      s.write(frame(FRAME.DATA, FLAG.END_STREAM, 1, Buffer.from(JSON.stringify({ targets: [target] }))));
      await eventually(() => conn.logs().find((l) => l.msg === 'target list from the gateway'), 3000, 20);
      s.pause();
      s.write(frame(FRAME.HEADERS, FLAG.END_HEADERS, 3, connectHead(target)));
      const cut = await eventually(() => conn.logs().find((l) => /the peer stopped reading/.test(String(l.reason))), 10_000, 50);
      assert.ok(cut);
      const grown = rssMiB(pid) - before;
      assert.ok(grown < 150, `the connector grew by ${Math.round(grown)} MiB`);
      s.destroy(); // (paused, it would not see the connector's close)
      await holds('a gateway that reads nothing');
    } finally {
      app.close();
    }
  });

  it('DATA past a stream\'s window to an app that reads nothing: the stream is reset (FLOW_CONTROL_ERROR), nothing past the window is held', async () => {
    const app = net.createServer((c) => void c.on('error', () => undefined).pause());
    await new Promise<void>((r) => app.listen(0, '127.0.0.1', r));
    const target = `127.0.0.1:${(app.address() as net.AddressInfo).port}`;
    try {
      const s = channels[0]!;
      const pid = conn.child.pid!;
      const before = rssMiB(pid);
      let reset: number | undefined;
      s.on('frame', (f: { type: number; stream: number; payload: Buffer }) => {
        if ((f.type === FRAME.RST_STREAM && f.stream === 3) || f.type === FRAME.GOAWAY) reset ??= f.payload.readUInt32BE(f.type === FRAME.GOAWAY ? 4 : 0);
      });
      s.write(frame(FRAME.HEADERS, FLAG.END_HEADERS, 1, targetsHead));
      s.write(frame(FRAME.DATA, FLAG.END_STREAM, 1, Buffer.from(JSON.stringify({ targets: [target] }))));
      await eventually(() => conn.logs().find((l) => l.msg === 'target list from the gateway'), 3000, 20);
      s.write(frame(FRAME.HEADERS, FLAG.END_HEADERS, 3, connectHead(target)));
      await new Promise((r) => setTimeout(r, 200));
      // 64 MiB, where the stream's window is 8 MiB and the channel's 32 MiB
      await flood(s, 4096, () => frame(FRAME.DATA, 0, 3, Buffer.alloc(16_384)), 64);
      await eventually(() => reset, 10_000, 20);
      assert.equal(reset, http2.constants.NGHTTP2_FLOW_CONTROL_ERROR);
      assert.ok(rssMiB(pid) - before < 60, `the connector grew by ${Math.round(rssMiB(pid) - before)} MiB`);
      await holds('DATA past the window');
    } finally {
      app.close();
    }
  });

  it('an error Node reports itself (a WINDOW_UPDATE past 2^31-1) is said once, in its words, not also as a GOAWAY of the connector\'s own', async () => {
    channels[0]!.write(frame(FRAME.WINDOW_UPDATE, 0, 0, u32(0x7fffffff)));
    await eventually(() => conn.logs().find((l) => l.msg === 'channel session error' && /Flow control error/.test(String(l.reason))), 3000, 20);
    await eventually(() => channels.length >= 2 || undefined, 3000, 20);
    assert.equal(conn.logs().filter((l) => /broke the HTTP\/2 protocol/.test(String(l.msg))).length, 0);
  });

  const floods: [string, (s: TLSSocket) => Promise<void>][] = [
    ['200,000 SETTINGS', (s) => flood(s, 200_000, (i) => settingsFrame([[4, 65535 + (i & 1)]]))],
    ['200,000 PINGs, read', (s) => flood(s, 200_000, () => frame(FRAME.PING, 0, 0, Buffer.alloc(8)))],
    ['200,000 PINGs, none of the ACKs read', async (s) => {
      s.pause();
      for (let i = 0; i < 500 && !s.destroyed; i++) {
        s.write(Buffer.concat(Array.from({ length: 400 }, () => frame(FRAME.PING, 0, 0, Buffer.alloc(8)))));
        await new Promise((r) => setTimeout(r, 2));
      }
      s.destroy();
    }],
    ['200,000 PRIORITY frames on streams never opened', (s) => flood(s, 200_000, (i) => frame(FRAME.PRIORITY, 0, 2 * i + 3, Buffer.from([0, 0, 0, 0, 15])))],
    ['a HEADERS followed by 20,000 CONTINUATIONs (CVE-2024-27983)', async (s) => {
      s.write(frame(FRAME.HEADERS, 0, 3, connectHead('127.0.0.1:9')));
      await flood(s, 20_000, () => frame(FRAME.CONTINUATION, 0, 3, headerBlock([['x-a', 'bbb']])));
    }],
    ['a 96 KiB header block', async (s) => {
      const block = Buffer.concat([connectHead('127.0.0.1:9'), headerBlock([['x-big', 'a'.repeat(96 << 10)]])]);
      for (let o = 0; o < block.length; o += 16_000) s.write(frame(o === 0 ? FRAME.HEADERS : FRAME.CONTINUATION, o + 16_000 >= block.length ? FLAG.END_HEADERS : 0, 3, block.subarray(o, o + 16_000)));
    }],
    ['a WINDOW_UPDATE past 2^31-1', async (s) => void s.write(frame(FRAME.WINDOW_UPDATE, 0, 0, u32(0x7fffffff)))],
    ['a stream\'s WINDOW_UPDATE past 2^31-1', async (s) => {
      s.write(frame(FRAME.HEADERS, FLAG.END_HEADERS, 3, targetsHead));
      s.write(frame(FRAME.WINDOW_UPDATE, 0, 3, u32(0x7fffffff)));
    }],
  ];
  for (const [what, attack] of floods) {
    it(`${what}: the connector stays up, its memory bounded and its CPU free, and serves on (or dials again)`, async () => {
      const pid = conn.child.pid!;
      const before = rssMiB(pid);
      await attack(channels[0]!);
      await new Promise((r) => setTimeout(r, 300));
      assert.ok(rssMiB(pid) - before < 80, `${what}: the connector grew by ${Math.round(rssMiB(pid) - before)} MiB`);
      await holds(what);
    });
  }
});
