/**
 * A broken or hostile gateway must not take the connector down. This file mirrors no single src
 * file: it attacks a REAL connector child process (agent.ts, channelLink.ts) from a scripted
 * gateway, a TLS server whose certificate the connector's enrolled CA signed (as the hub's is),
 * speaking the channel protocol (the `h2` upgrade on GET /v1/tunnel, then HTTP/2 with the gateway
 * as the client; POST /v1/renew), and then misbehaving.
 */
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import http2, { type ClientHttp2Session } from 'node:http2';
import type http from 'node:http';
import { join } from 'node:path';
import type { TLSSocket } from 'node:tls';
import { eventually, tempDir } from '../support/harness.js';
import { ConnectorCa } from '../../src/connector/ca.js';
import { SWITCHING_TO_TUNNEL, unblockedStream } from '../../src/connector/channelLink.js';
import { enrolledStateDir, killConnector, rawChannel, sendTargets, startConnector, startScriptedGateway, type ConnectorProcess, type RenewRequest, type ScriptedGateway } from './support.js';
import { FLAG, FRAME, flood, frame, headerBlock, u32 } from '../support/h2Frames.js';
import { cpuMs, rssMiB } from '../support/procStats.js';

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
      // (each frame the connector sends is emitted on the socket as 'frame')
      rawChannel(s, true);
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

  it('an error Node reports itself (a WINDOW_UPDATE past 2^31-1) is said once, in its words, not also as a GOAWAY of the connector\'s own', async () => {
    channels[0]!.write(frame(FRAME.WINDOW_UPDATE, 0, 0, u32(0x7fffffff)));
    await eventually(() => conn.logs().find((l) => l.msg === 'channel session error' && /Flow control error/.test(String(l.reason))), 3000, 20);
    await eventually(() => channels.length >= 2 || undefined, 3000, 20);
    assert.equal(conn.logs().filter((l) => /broke the HTTP\/2 protocol/.test(String(l.msg))).length, 0);
  });
});
