/**
 * HTTP/2-level abuse of a connector channel, both ways. This file mirrors no single src file: it
 * writes raw HTTP/2 frames (a 9-byte header and a payload, HPACK literals by hand) where
 * node:http2 cannot misbehave enough, first as a scripted gateway against a REAL connector child
 * process (agent.ts, channelLink.ts), then as a rogue connector with a valid certificate against a
 * real gateway (hub.ts, tunnelUpstream.ts). Each attack must leave the attacked process running,
 * serving its other channels, with its memory bounded; the offending channel may be closed.
 */
import assert from 'node:assert/strict';
import http2, { type ClientHttp2Session } from 'node:http2';
import net from 'node:net';
import { join } from 'node:path';
import type { Duplex } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import type { ChannelTransport } from '../../src/connector/channelLink.js';
import type { ConnectorHub } from '../../src/connector/hub.js';
import { eventually, request, sleep, startEchoBackend, tempDir, type EchoBackend, type TestGateway } from '../support/harness.js';
import { enrolledStateDir, gatewayYaml, killConnector, rogueChannelStream, sendTargets, startConnector, startHubGateway, startScriptedGateway, token, type ConnectorProcess, type ScriptedGateway } from './support.js';
import { CLIENT_PREFACE, FLAG, FRAME, STATUS_200, flood, frame, headerBlock, readFrames, settingsFrame, u32 } from '../support/h2Frames.js';
import { cpuMs, rssMiB } from '../support/procStats.js';

const BULK_MIB = 200;

/** Writes `mib` MiB of `fill` to `s` as fast as it drains, while it is open, then calls `then`; returns how many MiB it has written so far. */
function pour(s: net.Socket, mib: number, fill: number, then?: () => void): () => number {
  const chunk = Buffer.alloc(1 << 20, fill);
  let sent = 0;
  const write = (): void => {
    while (sent < mib && !s.destroyed) {
      sent++;
      if (!s.write(chunk)) return void s.once('drain', write);
    }
    then?.();
  };
  write();
  return () => sent;
}

// --- a scripted gateway (support.ts): the first channel is the attacker's (wantRaw), the others plain HTTP/2 ---

/** A GET through a CONNECT stream on `session` to `target`: the app's status line, or what went wrong. */
function getThrough(session: ClientHttp2Session, target: string, ms = 5000): Promise<string> {
  return new Promise((resolve) => {
    const s = session.request({ ':method': 'CONNECT', ':authority': target });
    const timer = setTimeout(() => (s.close(), resolve(`timeout ${JSON.stringify(got.slice(0, 80))} ${s.state?.state}`)), ms);
    let got = '';
    s.on('response', (h) => {
      if (h[':status'] !== 200) return void (clearTimeout(timer), resolve(`CONNECT ${h[':status']}`));
      s.write(`GET /alive HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n`);
    });
    s.on('data', (c: Buffer) => {
      got += c.toString('latin1');
      if (!got.includes('\r\n')) return;
      clearTimeout(timer);
      resolve(got.split('\r\n')[0]!);
      s.close();
    });
    s.on('error', (e: NodeJS.ErrnoException) => (clearTimeout(timer), resolve(e.code ?? e.message)));
  });
}

describe('HTTP/2 abuse from a scripted gateway against a real connector', function () {
  this.timeout(30_000);
  let gw: ScriptedGateway;
  let backend: EchoBackend;
  let target: string;
  /** an app that accepts and never reads; and one that sends BULK_MIB MiB to whoever connects */
  let sink: net.Server;
  let bulk: net.Server;
  let sinkTarget: string;
  let bulkTarget: string;
  let conn: ConnectorProcess | undefined;
  let raw: TLSSocket;
  let good: ClientHttp2Session;
  const dir = tempDir();

  before(async () => {
    gw = await startScriptedGateway(join(dir, 'gw'));
    backend = await startEchoBackend();
    target = `127.0.0.1:${backend.port}`;
    sink = net.createServer((s) => (s.pause(), s.on('error', () => undefined)));
    bulk = net.createServer((s) => {
      s.on('error', () => undefined);
      pour(s, BULK_MIB, 0x42, () => s.end());
    });
    for (const srv of [sink, bulk]) await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    sinkTarget = `127.0.0.1:${(sink.address() as net.AddressInfo).port}`;
    bulkTarget = `127.0.0.1:${(bulk.address() as net.AddressInfo).port}`;
  });
  beforeEach(async () => {
    const n = gw.raw.length;
    const m = gw.sessions.length;
    gw.wantRaw = true;
    conn = startConnector(await enrolledStateDir(gw.ca, gw.url, join(dir, `s${n}`)), { args: ['--channels', '2'] });
    raw = (await eventually(() => gw.raw[n], 10_000, 20))!;
    good = (await eventually(() => gw.sessions[m], 10_000, 20))!;
    assert.equal(await sendTargets(good, JSON.stringify({ targets: [target, sinkTarget, bulkTarget].sort() })), 200);
  });
  afterEach(async () => {
    if (conn) await killConnector(conn);
    conn = undefined;
  });
  after(async () => {
    gw.close();
    sink.close();
    bulk.close();
    await backend.close();
  });

  /** the connector still runs, and its other channel still reaches the app */
  async function stillServing(): Promise<void> {
    assert.equal(conn!.child.exitCode, null, conn!.lines.slice(-5).join('\n'));
    assert.equal(await getThrough(good, target), 'HTTP/1.1 200 OK');
  }

  /** the reasons of the channel session errors the connector logged */
  const sessionErrors = () => conn!.logs().filter((l) => l.msg === 'channel session error').map((l) => String(l.reason));

  /** runs `attack`, watching the connector's RSS; resolves with its growth in MiB at the peak */
  async function watched(attack: () => Promise<unknown>): Promise<number> {
    const pid = conn!.child.pid!;
    const base = rssMiB(pid);
    let peak = base;
    const timer = setInterval(() => {
      try {
        peak = Math.max(peak, rssMiB(pid));
      } catch {
        /* exited: said by stillServing */
      }
    }, 50);
    try {
      await attack();
      // until the connector has taken every byte of the attack (or closed the channel)
      await eventually(() => raw.destroyed || raw.isPaused() || raw.writableLength === 0 || undefined, 15_000, 20);
      await sleep(500);
    } finally {
      clearInterval(timer);
    }
    return peak - base;
  }

  for (const [what, f, n] of [
    ['SETTINGS', settingsFrame(), 400_000],
    ['PING', frame(FRAME.PING, 0, 0, Buffer.alloc(8, 1)), 400_000],
  ] as [string, Buffer, number][]) {
    it(`a ${what} flood from a gateway that reads nothing: the connector's memory stays bounded and its other channel serves`, async () => {
      raw.pause();
      const cpu = cpuMs(conn!.child.pid!);
      const grown = await watched(() => flood(raw, n, f, 2000));
      await stillServing();
      // (SETTINGS: Node's own flood guard closes the channel; PING: the ACKs are queued, bounded by MAX_QUEUED_FOR_PEER)
      assert.ok(cpuMs(conn!.child.pid!) - cpu < 5000, 'the connector spent its CPU on the flood');
      assert.ok(grown < 150, `the connector grew by ${Math.round(grown)} MiB`);
    });
  }

  it('rapid reset (HEADERS then RST_STREAM, 20,000 times): the channel may close, the connector serves on', async () => {
    const block = headerBlock([[':method', 'CONNECT'], [':authority', target]]);
    let id = 1;
    const grown = await watched(async () => {
      for (let round = 0; round < 20 && !raw.destroyed; round++) {
        const out: Buffer[] = [];
        for (let i = 0; i < 1000; i++, id += 2) out.push(frame(FRAME.HEADERS, FLAG.END_HEADERS, id, block), frame(FRAME.RST_STREAM, 0, id, u32(8)));
        raw.write(Buffer.concat(out));
        await sleep(10);
      }
    });
    // (nghttp2's guard answers with GOAWAY, which Node does not report: the connector reads it off
    // its own writes and closes the channel; a real gateway cancels through CANCEL_PATH)
    assert.ok(gw.frames.get(raw)!.some((f) => f.type === FRAME.GOAWAY), 'no GOAWAY for the reset flood');
    await eventually(() => raw.destroyed || undefined, 3000, 20);
    await stillServing();
    assert.ok(grown < 150, `the connector grew by ${Math.round(grown)} MiB`);
  });

  it('a CONTINUATION flood (a header block that never ends): the channel is closed, the connector serves on', async () => {
    const grown = await watched(async () => {
      raw.write(frame(FRAME.HEADERS, 0, 1, headerBlock([[':method', 'CONNECT'], [':authority', target]])));
      await flood(raw, 100_000, frame(FRAME.CONTINUATION, 0, 1, headerBlock([['x-a', 'b'.repeat(1000)]])), 200);
    });
    await stillServing();
    assert.ok(raw.destroyed || raw.readableEnded, 'the attacking channel is still open');
    assert.ok(grown < 150, `the connector grew by ${Math.round(grown)} MiB`);
  });

  it('a huge header block (4 MiB of headers): refused, the connector serves on', async () => {
    const block = headerBlock([[':method', 'CONNECT'], [':authority', target], ...Array.from({ length: 256 }, (_, i): [string, string] => [`x-h${i}`, 'v'.repeat(16_000)])]);
    const grown = await watched(async () => {
      for (let off = 0, first = true; off < block.length; off += 16_000, first = false) {
        const last = off + 16_000 >= block.length;
        raw.write(frame(first ? FRAME.HEADERS : FRAME.CONTINUATION, last ? FLAG.END_HEADERS : 0, 1, block.subarray(off, off + 16_000)));
      }
    });
    await stillServing();
    assert.ok(grown < 150, `the connector grew by ${Math.round(grown)} MiB`);
  });

  it('a WINDOW_UPDATE past 2^31-1 closes the channel, DATA beyond a stream window resets that stream (an app that reads nothing): the connector serves on', async () => {
    gw.wantRaw = true;
    raw.write(frame(FRAME.WINDOW_UPDATE, 0, 0, u32(0x7fffffff)));
    raw.write(frame(FRAME.WINDOW_UPDATE, 0, 0, u32(0x7fffffff)));
    await eventually(() => sessionErrors().length === 1 || undefined, 5000, 20);
    assert.equal(gw.frames.get(raw)!.find((f) => f.type === FRAME.GOAWAY)?.type, FRAME.GOAWAY);
    await stillServing();
    // a new attacking channel: the connector dials again
    const next = (await eventually(() => gw.raw[gw.raw.indexOf(raw) + 1], 10_000, 20))!;
    // DATA past the 8 MiB stream window on a CONNECT stream to an app that reads nothing
    next.write(frame(FRAME.HEADERS, FLAG.END_HEADERS, 1, headerBlock([[':method', 'CONNECT'], [':authority', sinkTarget]])));
    await sleep(200);
    const grown = await watched(() => flood(next, 4000, frame(FRAME.DATA, 0, 1, Buffer.alloc(16_384, 0x41)), 100));
    // (a stream's window overrun is that stream's error: it is reset with FLOW_CONTROL_ERROR)
    await eventually(() => gw.frames.get(next)!.find((f) => f.type === FRAME.RST_STREAM && f.stream === 1 && f.code === http2.constants.NGHTTP2_FLOW_CONTROL_ERROR), 5000, 20);
    await stillServing();
    assert.ok(grown < 150, `the connector grew by ${Math.round(grown)} MiB`);
  });

  it('a gateway that announces huge windows and never reads while an app sends 200 MiB: the channel is cut, the connector stays bounded', async () => {
    const SETTINGS_INITIAL_WINDOW_SIZE = 4;
    raw.write(Buffer.concat([settingsFrame([[SETTINGS_INITIAL_WINDOW_SIZE, 0x7fffffff]]), frame(FRAME.WINDOW_UPDATE, 0, 0, u32(0x7fffffff - 65535)), frame(FRAME.HEADERS, FLAG.END_HEADERS, 1, headerBlock([[':method', 'CONNECT'], [':authority', bulkTarget]]))]));
    await sleep(100);
    raw.pause();
    const grown = await watched(() => eventually(() => sessionErrors().length || undefined, 15_000, 50));
    assert.match(sessionErrors()[0]!, /the peer stopped reading/);
    await stillServing();
    assert.ok(grown < 150, `the connector grew by ${Math.round(grown)} MiB`);
  });

  it('an upload of 200 MiB to an app that reads nothing: the connector holds about a window of it', async () => {
    const up = good.request({ ':method': 'CONNECT', ':authority': sinkTarget });
    up.on('error', () => undefined);
    const chunk = Buffer.alloc(1 << 20, 0x43);
    let sent = 0;
    const grown = await watched(async () => {
      const until = Date.now() + 3000;
      while (Date.now() < until && sent < 200) {
        if (up.write(chunk)) sent++;
        else while (up.writableNeedDrain && Date.now() < until) await sleep(20);
      }
    });
    up.close();
    await stillServing();
    assert.ok(sent < 100, `${sent} MiB went into the tunnel`);
    assert.ok(grown < 100, `the connector grew by ${Math.round(grown)} MiB`);
  });

  it('a target list that never ends (a valid prefix, then a byte now and then): CONNECTs to targets not on the list are answered, not held for as long as it trickles', async () => {
    const list = good.request({ ':method': 'POST', ':path': '/v1/targets' });
    list.on('error', () => undefined);
    list.write('{"targets":["127.0.0.1:9"');
    const trickle = setInterval(() => list.write(' '), 100);
    try {
      await sleep(100);
      const t0 = Date.now();
      // a target on the list in use is served at once; one on neither is answered once the wait is over
      assert.equal(await getThrough(good, target), 'HTTP/1.1 200 OK');
      const pending = Array.from({ length: 500 }, () => getThrough(good, '127.0.0.1:9', 12_000));
      const answers = await Promise.all(pending);
      assert.deepEqual([...new Set(answers)], ['CONNECT 403'], `after ${Date.now() - t0} ms`);
      // (the wait is 5 s: they were held for as long as the list trickled)
      assert.ok(Date.now() - t0 < 8_000, `answered after ${Date.now() - t0} ms`);
      // (the connector's log is written asynchronously, within half a second)
      await eventually(() => conn!.logs().some((l) => /a target list from the gateway has not ended in 5 s/.test(String(l.msg))), 2000);
      await stillServing();
    } finally {
      clearInterval(trickle);
      list.close();
    }
  });

  it('5,000 CONNECT streams held while a target list is arriving: the connector stays bounded (about 10 KiB a stream), answers them all 403 after the wait', async () => {
    const list = good.request({ ':method': 'POST', ':path': '/v1/targets' });
    list.on('error', () => undefined);
    list.write('{"targets":[');
    try {
      const block = headerBlock([[':method', 'CONNECT'], [':authority', '127.0.0.1:9']]);
      const out: Buffer[] = [];
      for (let i = 0, id = 1; i < 5_000; i++, id += 2) out.push(frame(FRAME.HEADERS, FLAG.END_HEADERS, id, block));
      const cpu = cpuMs(conn!.child.pid!);
      const grown = await watched(async () => {
        raw.write(Buffer.concat(out));
        await eventually(() => gw.frames.get(raw)!.filter((f) => f.type === FRAME.HEADERS).length >= 5_000 || undefined, 15_000, 100);
      });
      assert.ok(cpuMs(conn!.child.pid!) - cpu < 5000, 'the connector spent its CPU on the streams');
      await stillServing();
      assert.ok(grown < 100, `the connector grew by ${Math.round(grown)} MiB`);
    } finally {
      list.close();
    }
  });
});

// --- a rogue connector against a real gateway -------------------------------------

describe('HTTP/2 abuse from a rogue connector against a real gateway', function () {
  this.timeout(30_000);
  let backend: EchoBackend;
  let gw: TestGateway;
  const healthy = async () => assert.equal((await request(`${gw.url}/still-here`, { headers: { host: 'healthy.test' } })).status, 200);

  before(async () => {
    backend = await startEchoBackend();
    gw = await startHubGateway(
      gatewayYaml(
        backend,
        '',
        `
  - name: Healthy
    externalUrl: http://healthy.test/
    internalUrl: ${backend.url}/
    preAuth: passthrough
  - name: Rogue
    externalUrl: http://rogue.test/
    internalUrl: http://127.0.0.1:7199/
    connectorGroup: g2
    preAuth: passthrough
    backendTimeout: 3s`,
      ),
    );
  });
  after(async () => {
    await gw.stop();
    await backend.close();
  });

  /** A channel of a g2 connector, speaking HTTP/2 by hand: it answers the target list, then `attack` runs. */
  async function rogueChannel(hub: ConnectorHub, transport: ChannelTransport = 'h2'): Promise<{ stream: Duplex; streams: number[] }> {
    const { stream } = await rogueChannelStream(hub, transport);
    stream.on('error', () => undefined);
    stream.write(settingsFrame());
    // the stream ids the gateway opened (odd), from the frame headers it sends
    const streams: number[] = [];
    readFrames(
      stream,
      ({ type, flags, stream: id }) => {
        if (type === FRAME.SETTINGS && !(flags & FLAG.ACK)) stream.write(frame(FRAME.SETTINGS, FLAG.ACK, 0));
        if (type !== FRAME.HEADERS || streams.includes(id)) return;
        streams.push(id);
        // the first is the target list: answered 200
        if (id === 1) stream.write(frame(FRAME.HEADERS, FLAG.END_HEADERS | FLAG.END_STREAM, 1, STATUS_200));
      },
      CLIENT_PREFACE.length,
    );
    return { stream, streams };
  }

  /** what the gateway logged about connector channels since line `from` (warn and above) */
  const channelTrouble = (from: number) => gw.logs.slice(from).filter((l) => Number(l.level) >= 40).map((l) => `${String(l.msg)}: ${String(l.reason ?? '')}`);
  afterEach(() => void (gw.logs.length = 0));

  const rogueRequest = () => request(`${gw.url}/x`, { headers: { host: 'rogue.test' } }).catch((e: Error) => ({ status: 0, error: e.message }));
  const rss = () => process.memoryUsage().rss / (1 << 20);

  for (const [what, f, transport] of [
    ['SETTINGS', settingsFrame(), 'h2'],
    ['PING', frame(FRAME.PING, 0, 0, Buffer.alloc(8)), 'h2'],
    ['SETTINGS', settingsFrame(), 'websocket'],
    ['PING', frame(FRAME.PING, 0, 0, Buffer.alloc(8)), 'websocket'],
  ] as [string, Buffer, ChannelTransport][]) {
    it(`a ${what} flood from a connector that reads nothing (${transport} channel): the gateway stays bounded and serves`, async () => {
      const hub = gw.server.connectorHub!;
      const { stream } = await rogueChannel(hub, transport);
      await eventually(() => hub.registry.all().some((c) => c.group === 'g2' && c.ready), 5000, 20);
      stream.pause();
      const base = rss();
      await flood(stream, 400_000, f, 2000);
      await sleep(500);
      const grown = rss() - base;
      await healthy();
      assert.ok(grown < 150, `the gateway grew by ${Math.round(grown)} MiB`);
      // (SETTINGS: Node's flood guard closes the channel, and it is logged; PING: the ACKs are queued, bounded)
      if (what === 'SETTINGS') assert.ok(channelTrouble(0).some((l) => /Flooding was detected/.test(l)), channelTrouble(0).join('\n'));
      stream.destroy();
    });
  }

  for (const transport of ['h2', 'websocket'] as ChannelTransport[]) {
    it(`a connector that breaks the protocol on a ready ${transport} channel (DATA on a stream never opened) is dropped at once, nghttp2's reason logged: its app gets 504 without waiting on a dead channel`, async () => {
      const hub = gw.server.connectorHub!;
      const { stream } = await rogueChannel(hub, transport);
      await eventually(() => hub.registry.all().some((c) => c.group === 'g2' && c.ready), 5000, 20);
      // (nghttp2 answers with GOAWAY and Node says nothing: the channel stayed in rotation until 3 pings were missed)
      stream.write(frame(FRAME.DATA, 0, 99, Buffer.alloc(100)));
      await eventually(() => channelTrouble(0).find((l) => /it broke the HTTP\/2 protocol.*: DATA: stream in idle/.test(l)), 2000, 20);
      await eventually(() => !hub.registry.all().some((c) => c.group === 'g2') || undefined, 2000, 20);
      const t0 = Date.now();
      assert.equal((await rogueRequest()).status, 504);
      assert.ok(Date.now() - t0 < 4500, `answered after ${Date.now() - t0} ms`);
      await healthy();
      stream.destroy();
    });
  }

  it('streams the connector opens itself (HEADERS on even ids, PUSH_PROMISE, thousands): the channel is closed, the gateway serves', async () => {
    const hub = gw.server.connectorHub!;
    const { stream } = await rogueChannel(hub);
    await eventually(() => hub.registry.all().some((c) => c.group === 'g2' && c.ready), 5000, 20);
    const block = STATUS_200;
    const out: Buffer[] = [];
    for (let id = 2; id < 20_000; id += 2) out.push(frame(FRAME.HEADERS, FLAG.END_HEADERS, id, block));
    stream.write(Buffer.concat(out));
    await eventually(() => stream.destroyed || undefined, 5000, 20);
    await healthy();
    assert.ok(channelTrouble(0).some((l) => /connector channel error: Protocol error/.test(l)), channelTrouble(0).join('\n'));
    // a PUSH_PROMISE (the gateway's SETTINGS say no push)
    const second = await rogueChannel(hub);
    await eventually(() => hub.registry.all().some((c) => c.group === 'g2' && c.ready && !c.session.destroyed), 5000, 20);
    second.stream.write(frame(FRAME.PUSH_PROMISE, FLAG.END_HEADERS, 1, Buffer.concat([u32(2), headerBlock([[':method', 'GET'], [':path', '/'], [':scheme', 'http'], [':authority', 'x']])])));
    await eventually(() => second.stream.destroyed || undefined, 5000, 20);
    await healthy();
  });

  it('a CONTINUATION flood or a huge header block in answer to a CONNECT: that request fails, the gateway serves', async () => {
    const hub = gw.server.connectorHub!;
    for (const how of ['continuation', 'huge', 'large'] as const) {
      const { stream, streams } = await rogueChannel(hub);
      await eventually(() => hub.registry.all().some((c) => c.group === 'g2' && c.ready && !c.session.destroyed), 5000, 20);
      const asked = rogueRequest();
      const id = (await eventually(() => streams.find((s) => s > 1), 5000, 20))!;
      const base = rss();
      if (how === 'continuation') {
        stream.write(frame(FRAME.HEADERS, 0, id, STATUS_200));
        await flood(stream, 100_000, frame(FRAME.CONTINUATION, 0, id, headerBlock([['x-a', 'b'.repeat(1000)]])), 200);
      } else {
        // huge: past nghttp2's CONTINUATION limit; large: 7 frames, past the header list limit only
        const block = headerBlock([[':status', '200'], ...Array.from({ length: how === 'huge' ? 256 : 7 }, (_, i): [string, string] => [`x-h${i}`, 'v'.repeat(16_000)])]);
        for (let off = 0, first = true; off < block.length; off += 16_000, first = false) {
          stream.write(frame(first ? FRAME.HEADERS : FRAME.CONTINUATION, off + 16_000 >= block.length ? FLAG.END_HEADERS : 0, id, block.subarray(off, off + 16_000)));
        }
      }
      const answer = await asked;
      assert.ok(answer.status === 502 || answer.status === 504, `${how}: ${answer.status}`);
      assert.ok(rss() - base < 150, `${how}: the gateway grew by ${Math.round(rss() - base)} MiB`);
      await healthy();
      stream.destroy();
    }
    assert.ok(channelTrouble(0).some((l) => /Too many CONTINUATION frames/.test(l)), channelTrouble(0).join('\n'));
  });

  it('a WINDOW_UPDATE past 2^31-1, RST_STREAM and PRIORITY floods, DATA beyond the window: the gateway serves', async () => {
    const hub = gw.server.connectorHub!;
    for (const how of ['window', 'rst', 'priority', 'data'] as const) {
      const { stream, streams } = await rogueChannel(hub);
      await eventually(() => hub.registry.all().some((c) => c.group === 'g2' && c.ready && !c.session.destroyed), 5000, 20);
      const base = rss();
      if (how === 'window') {
        stream.write(frame(FRAME.WINDOW_UPDATE, 0, 0, u32(0x7fffffff)));
        stream.write(frame(FRAME.WINDOW_UPDATE, 0, 0, u32(0x7fffffff)));
        await eventually(() => stream.destroyed || undefined, 5000, 20);
        assert.ok(channelTrouble(0).some((l) => /Flow control error/.test(l)), channelTrouble(0).join('\n'));
      } else if (how === 'rst') await flood(stream, 200_000, frame(FRAME.RST_STREAM, 0, 1, u32(8)), 2000);
      else if (how === 'priority') {
        const out: Buffer[] = [];
        for (let id = 3; id < 200_000; id += 2) out.push(frame(FRAME.PRIORITY, 0, id, Buffer.concat([u32(id - 2), Buffer.from([15])])));
        stream.write(Buffer.concat(out));
      } else {
        const asked = rogueRequest();
        const id = (await eventually(() => streams.find((s) => s > 1), 5000, 20))!;
        stream.write(frame(FRAME.HEADERS, FLAG.END_HEADERS, id, STATUS_200));
        await flood(stream, 6000, frame(FRAME.DATA, 0, id, Buffer.alloc(16_384, 0x41)), 100);
        await asked;
      }
      await sleep(300);
      assert.ok(rss() - base < 150, `${how}: the gateway grew by ${Math.round(rss() - base)} MiB`);
      await healthy();
      stream.destroy();
    }
  });
});

// --- a peer that stops reading, through a real gateway and a real connector ------------

describe('a client that stops reading, through a real gateway and connector', function () {
  this.timeout(30_000);
  let gw: TestGateway;
  let conn: ConnectorProcess;
  let bulk: net.Server;
  let sink: net.Server;
  const dir = tempDir();

  before(async () => {
    // an app that answers any request with BULK_MIB MiB, and one that never reads its request
    bulk = net.createServer((s) => {
      s.on('error', () => undefined);
      s.once('data', () => {
        s.write(`HTTP/1.1 200 OK\r\ncontent-length: ${BULK_MIB << 20}\r\n\r\n`);
        pour(s, BULK_MIB, 0x42);
      });
    });
    sink = net.createServer((s) => (s.pause(), s.on('error', () => undefined)));
    for (const srv of [bulk, sink]) await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    const port = (srv: net.Server) => (srv.address() as net.AddressInfo).port;
    gw = await startHubGateway(
      gatewayYaml(
        { url: `http://127.0.0.1:${port(bulk)}` },
        '',
        `    backendTimeout: 20s
  - name: Sink
    externalUrl: http://sink.test/
    internalUrl: http://127.0.0.1:${port(sink)}/
    connectorGroup: g1
    preAuth: passthrough
    backendTimeout: 20s
`,
      ),
      dir,
    );
    conn = startConnector(join(dir, 'conn'), { gateway: `https://${gw.server.connectorHub!.address()}`, token: token(gw), args: ['--channels', '1'] });
    await eventually(() => gw.server.connectorHub!.registry.all().some((c) => c.ready), 15_000, 50);
  });
  after(async () => {
    await killConnector(conn);
    await gw.stop();
    bulk.close();
    sink.close();
  });

  const rss = () => process.memoryUsage().rss / (1 << 20);

  /** the growth of the gateway (this process) and the connector over `ms`, at their peaks */
  async function peaks(ms: number): Promise<{ gateway: number; connector: number }> {
    const base = { gateway: rss(), connector: rssMiB(conn.child.pid!) };
    const peak = { ...base };
    const until = Date.now() + ms;
    while (Date.now() < until) {
      peak.gateway = Math.max(peak.gateway, rss());
      peak.connector = Math.max(peak.connector, rssMiB(conn.child.pid!));
      await sleep(50);
    }
    return { gateway: peak.gateway - base.gateway, connector: peak.connector - base.connector };
  }

  it(`a download of ${BULK_MIB} MiB the client never reads: neither the gateway nor the connector holds it`, async () => {
    const client = net.connect(gw.port, '127.0.0.1');
    client.on('error', () => undefined);
    client.write('GET /big HTTP/1.1\r\nhost: app.test\r\n\r\n');
    client.pause();
    const grown = await peaks(4000);
    client.destroy();
    assert.ok(grown.gateway < 100, `the gateway grew by ${Math.round(grown.gateway)} MiB`);
    assert.ok(grown.connector < 100, `the connector grew by ${Math.round(grown.connector)} MiB`);
    assert.equal(conn.child.exitCode, null);
  });

  it(`an upload of ${BULK_MIB} MiB to an app that never reads: neither the gateway nor the connector holds it`, async () => {
    const client = net.connect(gw.port, '127.0.0.1');
    client.on('error', () => undefined);
    client.write(`POST /up HTTP/1.1\r\nhost: sink.test\r\ncontent-length: ${BULK_MIB << 20}\r\n\r\n`);
    const sent = pour(client, BULK_MIB, 0x43);
    const grown = await peaks(4000);
    client.destroy();
    assert.ok(sent() < BULK_MIB, 'the whole upload was taken');
    assert.ok(grown.gateway < 100, `the gateway grew by ${Math.round(grown.gateway)} MiB`);
    assert.ok(grown.connector < 100, `the connector grew by ${Math.round(grown.connector)} MiB`);
    assert.equal(conn.child.exitCode, null);
  });
});
