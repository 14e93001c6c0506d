/**
 * The connector notices a gateway that went silent. A proxy between a real
 * connector process and the gateway stops passing bytes on the connections
 * it holds, without closing them: what a vanished host or a dropped NAT
 * mapping looks like from the connector. The gateway's own pings drop its
 * side; the connector must find out by itself and dial again.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import http2 from 'node:http2';
import https from 'node:https';
import net, { type AddressInfo } from 'node:net';
import { join } from 'node:path';
import type { TLSSocket } from 'node:tls';
import { SWITCHING_TO_TUNNEL, unblockedStream } from '../../src/connector/channelLink.js';
import { eventually, reachedApp, request, startEchoBackend, tempDir, type EchoBackend, type TestGateway } from '../support/harness.js';
import { createToken } from '../../src/connector/tokens.js';
import { gatewayYaml, hubUrl, killConnector, runCli, startConnector, startEnrolledHub, startHubGateway, token, waitChannels } from './support.js';

/** A TCP relay to `target` whose open connections can be silenced (bytes dropped both ways, sockets left open). */
async function silenceableRelay(target: string): Promise<{
  url: string;
  connections: () => number;
  silence: () => void;
  reset: () => void;
  /** connections made from now on get nothing from the gateway until release() (a slow network mid-dial) */
  hold: () => void;
  release: () => void;
  /** drops the oldest connection both ways (one channel lost) */
  dropOne: () => void;
  close: () => Promise<void>;
}> {
  const [host, port] = target.split(':');
  const pairs = new Set<{ silenced: boolean; held?: Buffer[]; a: net.Socket; b: net.Socket }>();
  let total = 0;
  let holding = false;
  const server = net.createServer((a) => {
    total++;
    const b = net.connect(Number(port), host);
    const pair: { silenced: boolean; held?: Buffer[]; a: net.Socket; b: net.Socket } = { silenced: false, held: holding ? [] : undefined, a, b };
    pairs.add(pair);
    a.on('data', (c) => void (pair.silenced || b.write(c)));
    b.on('data', (c) => void (pair.silenced || (pair.held ? pair.held.push(c) : a.write(c))));
    const end = () => {
      pairs.delete(pair);
      a.destroy();
      b.destroy();
    };
    // a silenced pair ignores its ends too: nothing reaches either side any more
    a.on('close', () => void (pair.silenced || end()));
    b.on('close', () => void (pair.silenced || end()));
    a.on('error', () => undefined);
    b.on('error', () => undefined);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port: p } = server.address() as net.AddressInfo;
  return {
    url: `https://127.0.0.1:${p}`,
    connections: () => total,
    silence: () => {
      for (const pair of pairs) pair.silenced = true;
    },
    /** Resets the connections on the connector's side (a TCP RST, as from a gateway host that went down), closes the gateway's. */
    reset: () => {
      for (const { a, b } of pairs) a.resetAndDestroy(), b.destroy();
    },
    hold: () => void (holding = true),
    release: () => {
      holding = false;
      for (const pair of pairs) {
        for (const c of pair.held ?? []) pair.a.write(c);
        pair.held = undefined;
      }
    },
    dropOne: () => {
      const [first] = pairs;
      first!.a.destroy();
      first!.b.destroy();
    },
    close: async () => {
      for (const { a, b } of pairs) a.destroy(), b.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

describe('connector agent: a gateway that goes silent', function () {
  this.timeout(60_000);
  let backend: EchoBackend;
  let gw: TestGateway;
  const dir = tempDir();
  const pingWas = process.env.DRAWBRIDGE_CONNECTOR_PING_MS;

  before(async () => {
    // the gateway drops channels that miss its pings within about a second
    process.env.DRAWBRIDGE_CONNECTOR_PING_MS = '300';
    backend = await startEchoBackend();
    gw = await startHubGateway(gatewayYaml(backend));
  });
  after(async () => {
    await gw.stop();
    await backend.close();
    if (pingWas === undefined) delete process.env.DRAWBRIDGE_CONNECTOR_PING_MS;
    else process.env.DRAWBRIDGE_CONNECTOR_PING_MS = pingWas;
  });

  for (const transport of ['h2', 'websocket']) {
    it(`${transport}: the connector's unanswered pings drop its channels and it dials again, without a restart`, async () => {
      const relay = await silenceableRelay(gw.server.connectorHub!.address()!);
      const c = startConnector(join(dir, transport), { gateway: relay.url, token: token(gw), args: ['--transport', transport], env: { DRAWBRIDGE_CHANNEL_PING_MS: '200' } });
      try {
        await waitChannels(gw, 2);
        const before = await request(`${gw.url}/get/before`, { headers: { host: 'app.test' } });
        assert.equal(before.status, 200);
        const dialled = relay.connections();

        relay.silence();
        // the connector dials new connections through the relay, which pass again
        await eventually(() => relay.connections() >= dialled + 2, 15_000, 50);
        const after = await eventually(async () => {
          const r = await request(`${gw.url}/get/after`, { headers: { host: 'app.test' } });
          return r.status === 200 ? r : undefined;
        }, 15_000, 100);
        assert.equal(JSON.parse(after!.body).url, '/get/after');
        assert.equal(c.child.exitCode, null, 'the connector process kept running');
        // (the connector's log is written asynchronously: the lines can arrive after the request that needed the new channels)
        const dropped = () => c.logs().filter((l) => String(l.msg).startsWith('the gateway did not answer a ping')).length;
        await eventually(() => dropped() >= 2, 3000).catch(() => assert.fail(`both channels dropped by the connector's own pings (${dropped()})`));
      } finally {
        await killConnector(c);
        await relay.close();
      }
    });
  }
});

/** An echo backend, a hub gateway, and a connector process that reaches the gateway through a silenceableRelay. */
async function relayedConnector() {
  const backend = await startEchoBackend();
  const gw = await startHubGateway(gatewayYaml(backend));
  const relay = await silenceableRelay(gw.server.connectorHub!.address()!);
  const c = startConnector(tempDir(), { gateway: relay.url, token: token(gw) });
  const stop = async () => {
    await killConnector(c);
    await relay.close();
    await gw.stop();
    await backend.close();
  };
  return { backend, gw, relay, c, stop };
}

describe('connector agent: a gateway that goes away while the connector drains', function () {
  this.timeout(30_000);

  it('logs the reset of its channels at info, not as warnings: the gateway stopping with it is expected (a demo\'s Ctrl-C stops both)', async () => {
    const { backend, gw, relay, c, stop } = await relayedConnector();
    try {
      await waitChannels(gw, 2);
      // a request in flight keeps the drain going until the reset (a POST: a GET cut short would be retried, and wait for a connector)
      const slow = request(`${gw.url}/slow?ms=3000`, { method: 'POST', headers: { host: 'app.test' }, body: 'x' }).catch(() => undefined);
      await reachedApp(backend, '/slow');
      c.child.kill('SIGTERM');
      await eventually(() => c.logs().some((l) => l.msg === 'draining'), 5000, 20);
      relay.reset();
      assert.equal(await c.exited, 0);
      await slow;
      const ended = c.logs().filter((l) => /ended while draining/.test(String(l.msg)));
      assert.ok(ended.length > 0, `the reset was seen and logged:\n${c.lines.join('\n')}`);
      assert.match(String(ended[0]!.reason), /ECONNRESET/);
      assert.deepEqual(c.logs().filter((l) => Number(l.level) >= 40), [], 'no warning or error');
    } finally {
      await stop();
    }
  });
});

describe('connector agent: a channel that opens while the connector drains', function () {
  this.timeout(30_000);

  it('is closed at once: the gateway never gets a ready channel to a connector about to exit (new requests went there and were cut)', async () => {
    const { backend, gw, relay, c, stop } = await relayedConnector();
    const registry = gw.server.connectorHub!.registry;
    const usable = () => registry.all().filter((ch) => ch.ready && !ch.draining);
    try {
      await waitChannels(gw, 2);
      // one channel is lost; its redial is slow to get through, and is still under way at the SIGTERM
      const dialled = relay.connections();
      relay.hold();
      relay.dropOne();
      await eventually(() => usable().length === 1, 5000, 20);
      await eventually(() => relay.connections() > dialled, 5000, 20);
      const slow = request(`${gw.url}/slow?ms=2000`, { method: 'POST', headers: { host: 'app.test' }, body: 'x' });
      await reachedApp(backend, '/slow');
      c.child.kill('SIGTERM');
      await eventually(() => registry.all().every((ch) => ch.draining), 5000, 20);
      const known = registry.all().map((ch) => ch.key);
      relay.release();
      // the gateway sees the late channel open (for a moment, or for good)...
      await eventually(() => registry.all().some((ch) => !known.includes(ch.key)) || c.logs().some((l) => l.msg === 'channel opened while draining: closed'), 5000, 10);
      // ...and it never becomes ready for work
      for (let i = 0; i < 20; i++, await new Promise((r) => setTimeout(r, 50))) assert.deepEqual(usable().map((ch) => ch.key), [], 'a ready channel of the draining connector');
      assert.ok(c.logs().some((l) => l.msg === 'channel opened while draining: closed'), c.lines.join('\n'));
      assert.equal((await slow).status, 200);
      assert.equal(await c.exited, 0);
    } finally {
      await stop();
    }
  });
});

describe('connector agent: a target list it could not dial', function () {
  this.timeout(30_000);

  it('is refused whole (400, logged), and the connector keeps serving the targets it had: it used to crash on a port past 65535 or no port', async () => {
    const hub = await startEnrolledHub();
    const ca = hub.gw.server.connectorHub!.ca;
    const tlsPair = await ca.issueServer(['127.0.0.1']);
    await hub.gw.stop(); // a gateway of the same CA, as a hostile or broken one would be
    let session: http2.ClientHttp2Session | undefined;
    const fake = https.createServer({ key: tlsPair.keyPem, cert: tlsPair.certPem, ca: [ca.certPem], requestCert: true, rejectUnauthorized: true });
    fake.on('upgrade', (_req, socket: TLSSocket) => {
      socket.write(SWITCHING_TO_TUNNEL);
      session = http2.connect('http://connector.invalid', { createConnection: () => unblockedStream(socket) });
      session.on('error', () => undefined);
    });
    await new Promise<void>((r) => fake.listen(0, '127.0.0.1', r));
    const state = join(hub.enrolled, 'connector.json');
    writeFileSync(state, JSON.stringify({ ...JSON.parse(readFileSync(state, 'utf8')), gateway: `https://127.0.0.1:${(fake.address() as AddressInfo).port}` }));
    const c = startConnector(hub.enrolled, { args: ['--channels', '1'] });
    try {
      await eventually(() => session !== undefined && !session.connecting, 10_000);
      const push = (targets: string[]) =>
        new Promise<number>((resolve, reject) => {
          const s = session!.request({ ':method': 'POST', ':path': '/v1/targets' });
          s.on('response', (h) => resolve(Number(h[':status'])));
          s.on('error', reject);
          s.resume();
          s.end(JSON.stringify({ targets }));
        });
      const connect = (authority: string) =>
        new Promise<string>((resolve) => {
          const s = session!.request({ ':method': 'CONNECT', ':authority': authority }, { endStream: false });
          s.on('response', (h) => {
            resolve(String(h[':status']));
            s.close();
          });
          s.on('error', (e) => resolve(`error ${(e as NodeJS.ErrnoException).code}`));
        });
      const app = new URL(hub.backend.url).host;
      assert.equal(await push([app]), 200);
      for (const bad of ['127.0.0.1:99999', 'no-port-here']) {
        assert.equal(await push([app, bad]), 400, bad);
        assert.equal(await connect(bad), '403', `${bad} is not a target`);
      }
      assert.equal(await connect(app), '200', 'the list it had still stands');
      assert.equal(c.child.exitCode, null, 'the connector process kept running');
      await eventually(() => c.logs().filter((l) => l.msg === 'bad target list refused').length === 2, 3000);
    } finally {
      await killConnector(c);
      session?.destroy();
      fake.close();
      await hub.backend.close();
    }
  });
});

describe('connector agent: enrolling with a gateway whose CA does not match the pin in the token', function () {
  this.timeout(30_000);

  // (mut32) the CA is fetched without TLS verification: only the pin check stands between the token and a gateway in the middle
  it('refuses to enroll, says why, and writes no credentials', async () => {
    const backend = await startEchoBackend();
    const dir = tempDir();
    const gw = await startHubGateway(gatewayYaml(backend), dir);
    try {
      const hub = gw.server.connectorHub!;
      // a token signed by this gateway, but pinning another CA (as one made before the CA changed would)
      const otherPin = createHash('sha256').update('another connector CA').digest('base64url');
      const tok = createToken(hub.stateDir, 'g1', 60_000, otherPin);
      const state = join(dir, 'conn');
      const e = await runCli(['connector', 'enroll', '--gateway', hubUrl(gw), '--token', tok, '--state-dir', state]);
      assert.notEqual(e.code, 0, e.stdout);
      assert.match(e.stderr, /does not match the pin in the token: refusing to enroll/);
      assert.ok(!existsSync(join(state, 'cert.pem')), 'no certificate was issued');
      // the control: the same gateway enrolls a connector whose token pins its CA
      const ok = await runCli(['connector', 'enroll', '--gateway', hubUrl(gw), '--token', token(gw), '--state-dir', join(dir, 'conn2')]);
      assert.equal(ok.code, 0, ok.stderr);
    } finally {
      await gw.stop();
      await backend.close();
    }
  });
});
