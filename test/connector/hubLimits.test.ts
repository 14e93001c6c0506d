/**
 * What the hub allows a connector holding a valid certificate: how many
 * channels, for how long its certificate carries them, and what the listing
 * says about it. The connector here is this test, relaying CONNECT streams to
 * the app by hand, so it can hold certificates and channels a real one would not.
 */
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import https from 'node:https';
import http2, { type Http2Session } from 'node:http2';
import net from 'node:net';
import type { Duplex } from 'node:stream';
import { createCsr, generateKeyPair } from '../../src/connector/ca.js';
import { dialChannel, type ChannelLink } from '../../src/connector/channelLink.js';
import { MAX_CHANNELS_PER_CONNECTOR, type ConnectorHub } from '../../src/connector/hub.js';
import { WebSocket } from 'ws';
import { eventually, request, sleep, startEchoBackend, type EchoBackend, type TestGateway } from '../support/harness.js';
import { gatewayYaml, startHubGateway } from './support.js';

interface Creds {
  key: string;
  cert: string;
  publicKeyDer: Buffer;
}

/** A certificate for connector `id` of g1, as enrollment would give it. */
async function credsFor(hub: ConnectorHub, id: string, lifetimeMs = 3600_000): Promise<Creds> {
  const kp = await generateKeyPair();
  const issued = await hub.ca.issueClient(await createCsr(kp.keys, 'hand-made'), kp.publicKeyDer, 'g1', lifetimeMs, id);
  return { key: kp.keyPem, cert: issued.certPem, publicKeyDer: kp.publicKeyDer };
}

interface HandChannel {
  link: ChannelLink;
  /** the HTTP/2 session, once the gateway accepted the channel */
  session?: Http2Session;
  /** the gateway's status, if it refused the channel */
  refused?: number;
  /** CONNECT streams open on it now (a kept-alive connection to the app is one) */
  streams: () => number;
}

/** Dials one channel and, once open, relays every CONNECT to its target as a real connector does. */
async function channel(hub: ConnectorHub, creds: Creds): Promise<HandChannel> {
  const link = dialChannel({ gateway: `https://${hub.address()}`, transport: 'h2', key: creds.key, cert: creds.cert, ca: hub.ca.certPem, headers: {}, handshakeTimeoutMs: 5000 });
  link.on('error', () => undefined);
  let open = 0;
  const streams = () => open;
  return new Promise((resolve) => {
    link.once('refused', (status) => resolve({ link, refused: status, streams }));
    link.once('open', (stream: Duplex) => {
      stream.on('error', () => undefined);
      const session = http2.performServerHandshake(stream);
      session.on('error', () => undefined);
      session.on('stream', (s, headers) => {
        s.on('error', () => undefined);
        if (headers[':path'] === '/v1/targets') {
          s.resume();
          return void s.on('end', () => s.respond({ ':status': 200 }, { endStream: true }));
        }
        open++;
        s.once('close', () => open--);
        const [, host, port] = /^\[?([^\]]+?)\]?:(\d+)$/.exec(String(headers[':authority']))!;
        const sock = net.connect(Number(port), host, () => {
          s.respond({ ':status': 200 });
          sock.pipe(s);
          s.pipe(sock);
        });
        sock.on('error', () => s.destroy());
        s.on('close', () => sock.destroy());
      });
      resolve({ link, session, streams });
    });
  });
}

describe('connector hub limits', function () {
  this.timeout(30_000);
  let backend: EchoBackend;
  let gw: TestGateway;
  let hub: ConnectorHub;
  const held: HandChannel[] = [];

  before(async () => {
    backend = await startEchoBackend();
    gw = await startHubGateway(gatewayYaml(backend));
    hub = gw.server.connectorHub!;
  });
  afterEach(() => {
    for (const c of held.splice(0)) c.link.terminate();
  });
  after(async () => {
    await gw.stop();
    await backend.close();
  });

  it(`one connector holds at most ${MAX_CHANNELS_PER_CONNECTOR} channels: the next gets 429, logged with the connector and the cap; another connector is not affected`, async () => {
    const creds = await credsFor(hub, 'c-greedy');
    for (let i = 0; i < MAX_CHANNELS_PER_CONNECTOR; i++) held.push(await channel(hub, creds));
    assert.deepEqual(held.map((c) => c.refused), held.map(() => undefined), 'the channels up to the cap open');
    const over = await channel(hub, creds);
    held.push(over);
    assert.equal(over.refused, 429);
    assert.equal(hub.registry.all().filter((c) => c.connectorId === 'c-greedy').length, MAX_CHANNELS_PER_CONNECTOR);
    const line = gw.logs.find((l) => l.code === 'ERR_TOO_MANY_CHANNELS');
    assert.ok(line, 'the refusal is logged');
    assert.equal(line.connector, 'c-greedy');
    assert.match(String(line.msg), new RegExp(`c-greedy already holds ${MAX_CHANNELS_PER_CONNECTOR} channels`));
    // another certificate holder still gets in, and the greedy one once it lets one go
    const other = await channel(hub, await credsFor(hub, 'c-other'));
    held.push(other);
    assert.equal(other.refused, undefined);
    held[0].link.terminate();
    await eventually(() => hub.registry.all().filter((c) => c.connectorId === 'c-greedy').length < MAX_CHANNELS_PER_CONNECTOR, 5000);
    const again = await channel(hub, creds);
    held.push(again);
    assert.equal(again.refused, undefined);
  });

  it('IN-FLIGHT counts requests the app is answering, not kept-alive connections waiting for the next one (the listing and least-inflight balancing)', async () => {
    const ch = await channel(hub, await credsFor(hub, 'c-count'));
    held.push(ch);
    await eventually(() => hub.registry.all().some((c) => c.connectorId === 'c-count' && c.ready), 5000);
    const inflight = () => hub.connectors().find((c) => c.id === 'c-count')!.inflight;
    const slow = request(`${gw.url}/slow?ms=1000`, { headers: { host: 'app.test' } });
    await eventually(() => inflight() === 1, 900);
    assert.equal((await slow).status, 200);
    assert.equal(ch.streams(), 1, 'the connection to the app is kept alive');
    assert.equal(inflight(), 0);
    // an upgraded connection is in flight for as long as it is open
    const ws = new WebSocket(`ws://127.0.0.1:${gw.port}/ws`, { headers: { host: 'app.test' } });
    await new Promise((r, j) => (ws.once('open', r), ws.once('error', j)));
    assert.equal(inflight(), 1);
    ws.close();
    await eventually(() => inflight() === 0, 3000);
  });

  it('a channel whose certificate expires gets no more requests and is closed; a new channel with it is refused', async () => {
    const creds = await credsFor(hub, 'c-expiring', 2500);
    const notAfter = Date.parse(new X509Certificate(creds.cert).validTo);
    held.push(await channel(hub, creds));
    await eventually(() => hub.registry.all().some((c) => c.connectorId === 'c-expiring' && c.ready), 5000);
    assert.equal((await request(`${gw.url}/before`, { headers: { host: 'app.test' } })).status, 200);
    await sleep(notAfter - Date.now() + 50);
    assert.equal((await request(`${gw.url}/after`, { headers: { host: 'app.test' } })).status, 504, 'no live connector');
    await eventually(() => !hub.registry.all().some((c) => c.connectorId === 'c-expiring'), 2000, 50);
    assert.ok(gw.logs.some((l) => l.msg === 'connector certificate expired: closing its channel' && l.connector === 'c-expiring'));
    assert.equal((await channel(hub, creds)).refused, 403);
  });

  it('a renewal moves the expiry of the connector\'s open channels: the listing shows the new one, and the channels keep serving past the old one', async () => {
    const creds = await credsFor(hub, 'c-renewing', 2500);
    const oldNotAfter = Date.parse(new X509Certificate(creds.cert).validTo);
    held.push(await channel(hub, creds));
    await eventually(() => hub.registry.all().some((c) => c.connectorId === 'c-renewing' && c.ready), 5000);
    const listed = () => hub.connectors().find((c) => c.id === 'c-renewing')!.certExpiry;
    assert.equal(listed(), new Date(oldNotAfter).toISOString());
    // (a renewal within a tenth of the lifetime of the certificate it presents is refused: 429)
    await sleep(400);
    const kp = await generateKeyPair();
    const renewed = await renew(hub, creds, { csr: await createCsr(kp.keys, 'hand-made'), publicKey: kp.publicKeyDer.toString('base64') });
    assert.equal(renewed.status, 200);
    const newNotAfter = Date.parse(new X509Certificate(String(renewed.body.cert)).validTo);
    assert.ok(newNotAfter > oldNotAfter + 3000_000);
    assert.equal(listed(), new Date(newNotAfter).toISOString());
    assert.equal(renewed.body.notAfter, new Date(newNotAfter).toISOString(), 'the answer names the expiry the certificate carries');
    await sleep(oldNotAfter - Date.now() + 50);
    assert.equal((await request(`${gw.url}/after`, { headers: { host: 'app.test' } })).status, 200);
    assert.ok(hub.registry.all().some((c) => c.connectorId === 'c-renewing'));
  });

  it('a connector that renews again moments after its certificate was issued gets 429 with Retry-After, and no certificate', async () => {
    const creds = await credsFor(hub, 'c-hasty');
    const kp = await generateKeyPair();
    const r = await renew(hub, creds, { csr: await createCsr(kp.keys, 'hand-made'), publicKey: kp.publicKeyDer.toString('base64') });
    assert.equal(r.status, 429);
    assert.equal(r.body.error, 'ERR_RENEWED_RECENTLY');
    const retryAfter = Number(r.headers['retry-after']);
    assert.ok(retryAfter > 50 && retryAfter <= 60, `retry-after ${retryAfter}`);
    assert.match(String(r.body.message), /^connector c-hasty was issued its certificate \d+ s ago; renew again in \d+ s \(a connector renews at two thirds of the certificate's lifetime: is its clock ahead\?\)$/);
    assert.equal(r.body.cert, undefined);
    assert.ok(!gw.logs.some((l) => l.msg === 'connector certificate renewed' && l.connector === 'c-hasty'));
  });
});

/** POST /v1/renew over mutual TLS with the given certificate */
function renew(hub: ConnectorHub, creds: Creds, body: unknown): Promise<{ status: number; body: Record<string, unknown>; headers: IncomingHttpHeaders }> {
  const [host, port] = hub.address()!.split(':');
  return new Promise((resolve, reject) => {
    const req = https.request({ host, port: Number(port), path: '/v1/renew', method: 'POST', key: creds.key, cert: creds.cert, ca: hub.ca.certPem, servername: 'localhost', agent: false, headers: { 'content-type': 'application/json' } }, (res) => {
      let t = '';
      res.on('data', (c) => (t += c));
      res.on('end', () => resolve({ status: res.statusCode!, body: JSON.parse(t), headers: res.headers }));
    });
    req.on('error', reject);
    req.end(JSON.stringify(body));
  });
}
