/**
 * A connector holding a valid certificate is still outside the gateway's trust
 * for what it sends back: a compromised or broken one must not crash the
 * gateway, leak garbage to clients as if it were a response, or hold other
 * apps hostage. Here the "connector" is this test, speaking HTTP/2 by hand
 * over each channel transport so it can misbehave in ways the real one never does.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import https from 'node:https';
import http2, { type Http2Session, type ServerHttp2Stream } from 'node:http2';
import { createCsr, generateKeyPair } from '../../src/connector/ca.js';
import { CHANNEL_TRANSPORTS, TUNNEL_PROTOCOL, type ChannelLink, type ChannelTransport } from '../../src/connector/channelLink.js';
import { Duplex } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import type { ConnectorHub } from '../../src/connector/hub.js';
import { eventually, rawRequest, request, startEchoBackend, type EchoBackend, type TestGateway } from '../support/harness.js';
import { gatewayYaml, rogueChannelStream, startHubGateway } from './support.js';

/** Each app's internal URL names a port the rogue connector maps to one misbehaviour; nothing listens there. */
const BEHAVIOURS = {
  garbage: 7101,
  hugeHeaders: 7102,
  refused: 7103,
  truncated: 7104,
  silent: 7105,
  smuggled: 7106,
  hopByHop: 7107,
  goaway: 7108,
} as const;
type Behaviour = keyof typeof BEHAVIOURS;

/** The gateway of support.ts (groups g1, g2), a direct app to show it keeps serving, and one g2 app per misbehaviour. */
function yaml(backend: EchoBackend): string {
  const rogueApps = Object.entries(BEHAVIOURS).map(
    ([name, port]) => `
  - name: ${name}
    externalUrl: http://${name.toLowerCase()}.test/
    internalUrl: http://127.0.0.1:${port}/
    connectorGroup: g2
    preAuth: passthrough
    websockets: true
    backendTimeout: 2s`,
  );
  return gatewayYaml(
    backend,
    '',
    `
  - name: Healthy
    externalUrl: http://healthy.test/
    internalUrl: ${backend.url}/
    preAuth: passthrough${rogueApps.join('')}`,
  );
}

interface Rogue {
  link: ChannelLink;
  session: Http2Session;
  /** CONNECT streams the gateway opened, by behaviour */
  opened: Map<Behaviour, number>;
}

async function rogueConnector(hub: ConnectorHub, transport: ChannelTransport, act: (b: Behaviour, stream: ServerHttp2Stream, session: Http2Session) => void): Promise<Rogue> {
  const { link, stream } = await rogueChannelStream(hub, transport);
  stream.on('error', () => undefined);
  const session = http2.performServerHandshake(stream);
  session.on('error', () => undefined);
  const opened = new Map<Behaviour, number>();
  session.on('stream', (stream, headers) => {
    stream.on('error', () => undefined);
    if (headers[':path'] === '/v1/targets') {
      stream.resume();
      return void stream.on('end', () => stream.respond({ ':status': 200 }, { endStream: true }));
    }
    const port = Number(String(headers[':authority']).split(':')[1]);
    const b = (Object.keys(BEHAVIOURS) as Behaviour[]).find((k) => BEHAVIOURS[k] === port)!;
    opened.set(b, (opened.get(b) ?? 0) + 1);
    act(b, stream, session);
  });
  return { link, session, opened };
}

const misbehave = (b: Behaviour, stream: ServerHttp2Stream, session: Http2Session): void => {
  switch (b) {
    case 'garbage':
      stream.respond({ ':status': 200 });
      return void stream.end('SSH-2.0-OpenSSH_9.6\r\nnot a response at all\r\n\r\n');
    case 'hugeHeaders':
      stream.respond({ ':status': 200 });
      return void stream.end(`HTTP/1.1 200 OK\r\nx-big: ${'a'.repeat(200_000)}\r\n\r\n`);
    case 'refused':
      return void stream.respond({ ':status': 500, 'x-drawbridge-error': 'it was not me' }, { endStream: true });
    case 'truncated':
      stream.respond({ ':status': 200 });
      stream.write('HTTP/1.1 200 OK\r\ncontent-length: 100000\r\n\r\n' + 'x'.repeat(1000));
      return void setTimeout(() => stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR), 50);
    case 'silent':
      return void stream.respond({ ':status': 200 }); // and then not a byte
    case 'smuggled':
      stream.respond({ ':status': 200 });
      return void stream.end('HTTP/1.1 200 OK\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nstolen');
    case 'hopByHop':
      stream.respond({ ':status': 200 });
      return void stream.end('HTTP/1.1 200 OK\r\nconnection: keep-alive, x-internal\r\nx-internal: secret\r\nkeep-alive: timeout=5\r\nproxy-authenticate: Basic\r\ncontent-length: 2\r\n\r\nok');
    case 'goaway':
      stream.respond({ ':status': 200 });
      stream.write('HTTP/1.1 200 OK\r\ncontent-length: 100000\r\n\r\npartial');
      return void setTimeout(() => session.goaway(http2.constants.NGHTTP2_PROTOCOL_ERROR), 50);
  }
};

/** A GET that reports a truncated body instead of throwing */
function download(url: string, host: string): Promise<{ status: number; bytes: number; complete: boolean }> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { headers: { host }, agent: false }, (res) => {
      let bytes = 0;
      res.on('data', (c: Buffer) => (bytes += c.length));
      res.on('end', () => resolve({ status: res.statusCode!, bytes, complete: res.complete }));
      res.on('error', () => resolve({ status: res.statusCode!, bytes, complete: false }));
      res.on('aborted', () => resolve({ status: res.statusCode!, bytes, complete: false }));
    });
    req.on('error', reject);
  });
}

for (const transport of CHANNEL_TRANSPORTS) describe(`a connector with a valid certificate that misbehaves (${transport} channel)`, function () {
  this.timeout(30_000);
  let backend: EchoBackend;
  let gw: TestGateway;
  let rogue: Rogue;
  const healthy = async () => assert.equal((await request(`${gw.url}/still-here`, { headers: { host: 'healthy.test' } })).status, 200);
  const ask = (b: Behaviour) => request(`${gw.url}/x`, { headers: { host: `${b.toLowerCase()}.test`, accept: 'application/problem+json' } });

  before(async () => {
    backend = await startEchoBackend();
    gw = await startHubGateway(yaml(backend));
    rogue = await rogueConnector(gw.server.connectorHub!, transport, misbehave);
    await eventually(() => gw.server.connectorHub!.registry.all().some((c) => c.ready));
  });
  after(async () => {
    rogue.link.terminate();
    await gw.stop();
    await backend.close();
  });

  it('bytes that are not an HTTP response: 502, nothing of them reaches the client', async () => {
    const res = await ask('garbage');
    assert.equal(res.status, 502);
    assert.equal(res.headers['content-type'], 'application/problem+json');
    assert.doesNotMatch(res.body, /SSH|not a response/);
    await healthy();
  });

  it('a response head beyond the header limit: 502', async () => {
    const res = await ask('hugeHeaders');
    assert.equal(res.status, 502);
    assert.doesNotMatch(res.body, /aaaa/);
    await healthy();
  });

  it('a CONNECT answered with 500: 502 "the connector can\'t reach the app", the connector\'s words only in the log', async () => {
    const res = await ask('refused');
    assert.equal(res.status, 502);
    assert.doesNotMatch(res.body, /it was not me/);
    assert.ok(gw.logs.some((l) => /it was not me/.test(JSON.stringify(l))));
    await healthy();
  });

  it('a body cut off by a stream reset: the client sees a truncated response, not a complete one', async () => {
    const res = await download(`${gw.url}/x`, 'truncated.test');
    assert.equal(res.status, 200);
    assert.equal(res.complete, false);
    assert.ok(res.bytes < 100_000, `got ${res.bytes} bytes`);
    await healthy();
  });

  it('a connector that accepts the stream and never answers: 504 after the app\'s backendTimeout', async () => {
    const t0 = Date.now();
    const res = await ask('silent');
    assert.equal(res.status, 504);
    const took = Date.now() - t0;
    assert.ok(took >= 1900 && took < 6000, `answered after ${took} ms`);
    // a timed-out request is not sent again: the app may still be working on it
    assert.equal(rogue.opened.get('silent'), 1);
    await healthy();
  });

  it('a WebSocket handshake it never answers: 504 after the backendTimeout, not an open socket forever', async () => {
    const t0 = Date.now();
    const reply = await rawRequest(gw.port, 'GET /ws HTTP/1.1\r\nhost: silent.test\r\nconnection: Upgrade\r\nupgrade: websocket\r\nsec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n', 5000);
    assert.match(reply, /^HTTP\/1\.1 504 /);
    assert.ok(Date.now() - t0 >= 1900, `answered after ${Date.now() - t0} ms`);
    await healthy();
  });

  it('Content-Length with Transfer-Encoding (a smuggled second response): 502, and the smuggled response never reaches anyone', async () => {
    const res = await ask('smuggled');
    assert.equal(res.status, 502);
    assert.doesNotMatch(res.body, /stolen/);
    // the next client of that app gets a fresh stream, not the smuggled leftovers
    const again = await ask('smuggled');
    assert.doesNotMatch(again.body, /stolen/);
    await healthy();
  });

  it('hop-by-hop headers and headers named in Connection are stripped from its response', async () => {
    const res = await ask('hopByHop');
    assert.equal(res.status, 200);
    assert.equal(res.body, 'ok');
    for (const h of ['x-internal', 'keep-alive', 'proxy-authenticate']) assert.equal(res.headers[h], undefined, h);
    await healthy();
  });

  it('a GOAWAY in the middle of a response: that response is cut, the channel is dropped, the gateway keeps serving', async () => {
    const res = await download(`${gw.url}/x`, 'goaway.test');
    assert.equal(res.complete, false);
    await eventually(() => !gw.server.connectorHub!.registry.all().some((c) => c.connectorId === 'c-rogue' && !c.draining));
    const after = await ask('garbage');
    assert.ok([502, 504].includes(after.status), `status ${after.status}`);
    await healthy();
  });
});

/** An h2 channel opened by hand with a certificate of the gateway's CA (group g2): its TLS socket after the 101. */
async function rogueChannel(gw: TestGateway, id: string): Promise<TLSSocket> {
  const hub = gw.server.connectorHub!;
  const kp = await generateKeyPair();
  const cert = (await hub.ca.issueClient(await createCsr(kp.keys, 'rogue'), kp.publicKeyDer, 'g2', 3600_000, id)).certPem;
  const socket = await new Promise<TLSSocket>((resolve, reject) => {
    const req = https.request(`https://${hub.address()}/v1/tunnel`, { key: kp.keyPem, cert, ca: hub.ca.certPem, agent: false, headers: { connection: 'Upgrade', upgrade: TUNNEL_PROTOCOL } });
    req.on('upgrade', (_res, s: TLSSocket) => resolve(s));
    req.on('response', (res) => reject(new Error(`refused ${res.statusCode}`)));
    req.on('error', reject);
    req.end();
  });
  socket.on('error', () => undefined);
  return socket;
}

describe('a connector with a valid certificate that announces huge windows and stops reading', function () {
  this.timeout(60_000);
  let backend: EchoBackend;
  let gw: TestGateway;
  before(async () => {
    backend = await startEchoBackend();
    gw = await startHubGateway(yaml(backend));
  });
  after(async () => {
    await gw.stop();
    await backend.close();
  });

  it('an upload through it is cut once the gateway holds more than its own windows allow: 502, not every byte in memory', async () => {
    // the channel by hand, so that this end can stop reading its TLS socket
    const socket = await rogueChannel(gw, 'c-hoarder');
    let reading = true;
    const duplex = new Duplex({ read: () => void (reading && socket.resume()), write: (c, _e, cb) => void socket.write(c, cb) });
    socket.on('data', (c: Buffer) => void (duplex.push(c) || socket.pause()));
    const HUGE = 2 ** 31 - 1;
    const session = http2.performServerHandshake(duplex, { settings: { initialWindowSize: HUGE } });
    session.on('error', () => undefined);
    session.on('connect', () => session.setLocalWindowSize(HUGE));
    session.on('stream', (stream, headers) => {
      stream.on('error', () => undefined);
      if (headers[':path'] === '/v1/targets') return void stream.resume().on('end', () => stream.respond({ ':status': 200 }, { endStream: true }));
      stream.respond({ ':status': 200 });
      stream.once('data', () => {
        reading = false;
        socket.pause();
      });
    });
    await eventually(() => gw.server.connectorHub!.registry.all().some((c) => c.connectorId === 'c-hoarder' && c.ready));

    let sent = 0;
    const chunk = Buffer.alloc(1 << 20);
    const status = await new Promise<number>((resolve, reject) => {
      const req = http.request(`${gw.url}/upload`, { method: 'POST', headers: { host: 'garbage.test', 'content-type': 'application/octet-stream' }, agent: false });
      req.on('response', (res) => {
        res.resume();
        resolve(res.statusCode!);
        req.destroy();
      });
      req.on('error', reject);
      const pump = () => {
        while (sent < 400 << 20) {
          sent += chunk.length;
          if (!req.write(chunk)) return void req.once('drain', pump);
        }
        req.end();
      };
      pump();
    });
    assert.equal(status, 502);
    assert.ok(sent < 160 << 20, `the gateway took ${sent >> 20} MiB of the upload from the client`);
    assert.ok(gw.logs.some((l) => /the peer stopped reading/.test(String(l.reason))), 'the channel is dropped with the reason');
    socket.destroy();
  });

  it('a channel that stops reading and sends PINGs: what is queued for it costs about its bytes, not a gigabyte (its 17-byte ACKs are copied together)', async () => {
    const socket = await rogueChannel(gw, 'c-pinger');
    socket.pause(); // never reads a byte of the gateway's
    const frame = (type: number, payload: Buffer) => {
      const h = Buffer.alloc(9);
      h.writeUIntBE(payload.length, 0, 3);
      h[3] = type;
      return Buffer.concat([h, payload]);
    };
    socket.write(frame(4, Buffer.alloc(0))); // SETTINGS: the connector's preface
    const held = () => {
      const m = process.memoryUsage();
      return m.heapUsed + m.arrayBuffers;
    };
    const before = held();
    // 400 PINGs a write, paced under nghttp2's own limit of 1,000 unanswered ones
    const burst = Buffer.concat(Array.from({ length: 400 }, () => frame(6, Buffer.alloc(8, 1))));
    for (let pings = 0; pings < 800_000 && !socket.destroyed; pings += 400) {
      socket.write(burst);
      await new Promise((r) => setTimeout(r, 2));
    }
    await new Promise((r) => setTimeout(r, 200));
    // 800,000 ACKs are 13 MiB of bytes; queued one Buffer each they held over 100 MiB of heap here (a gigabyte of RSS in a gateway process of its own)
    const grew = (held() - before) >> 20;
    assert.ok(grew < 60, `the gateway's memory grew by ${grew} MiB`);
    socket.destroy();
    assert.equal((await request(`${gw.url}/`, { headers: { host: 'healthy.test' } })).status, 200, 'the gateway serves on');
  });
});
