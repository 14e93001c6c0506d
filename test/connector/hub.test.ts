import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import tls from 'node:tls';
import pino from 'pino';
import { loadForStart } from '../../src/config/load.js';
import { createCsr, generateKeyPair } from '../../src/connector/ca.js';
import { dialChannel } from '../../src/connector/channelLink.js';
import { ConnectorHub } from '../../src/connector/hub.js';
import type { Stage } from '../../src/pipeline/stage.js';
import { assertOnlyStrongSuites } from '../support/certs.js';
import { eventually, request, sleep, startEchoBackend, startGateway, tempDir, type EchoBackend } from '../support/harness.js';
import { gatewayYaml, hubUrl, killConnector, startConnector, startHubGateway, token, waitChannels } from './support.js';

describe('connector hub lifecycle in the gateway', function () {
  this.timeout(20_000);
  let backend: EchoBackend;
  before(async () => {
    backend = await startEchoBackend();
  });
  after(() => backend.close());

  it('a reload that adds connectors: and a connector app is refused (never proxied directly) until a restart', async () => {
    const plain = `
gateway:
  publicUrl: http://app.test
  listen: { http: 127.0.0.1:0 }
apps:
  - name: Other
    externalUrl: http://other.test/
    internalUrl: ${backend.url}/
    preAuth: passthrough
`;
    const gw = await startGateway(plain, { watch: false });
    try {
      writeFileSync(gw.configFile, gatewayYaml(backend));
      assert.equal(await gw.server.reload('test'), 'failure');
      assert.ok(gw.logs.some((l) => /connectors: was added after the gateway started/.test(String(l.msg))));
      const res = await request(`${gw.url}/`, { headers: { host: 'app.test' } });
      assert.equal(res.status, 404);
      assert.equal(backend.received.length, 0);
    } finally {
      await gw.stop();
    }
  });

  it('a connector whose group a reload removes (or a restart no longer has) is named in a warning: it stays connected and idle, and removing the group revoked nothing', async () => {
    const dir = tempDir();
    const gw = await startHubGateway(gatewayYaml(backend), dir);
    let conn = startConnector(join(dir, 'conn'), { gateway: hubUrl(gw), token: token(gw, 'g2') });
    try {
      await waitChannels(gw, 2, 'g2');
      const id = gw.server.connectorHub!.registry.all()[0]!.connectorId;
      const said = () => gw.logs.filter((l) => l.level === 40 && l.connector === id && /which the config no longer has/.test(String(l.msg)));
      assert.deepEqual(said(), []);
      writeFileSync(gw.configFile, gatewayYaml(backend).replace('  g2: {}\n', ''));
      assert.equal(await gw.server.reload('test'), 'success');
      assert.equal(said().length, 1, 'once per connector, not per channel');
      assert.match(String(said()[0]!.msg), /renamed group needs its connectors enrolled again.*connectors\.revoked/);
      // its channels open again (a connector restart, as after a gateway restart): said again, once
      await killConnector(conn);
      conn = startConnector(join(dir, 'conn'), { gateway: hubUrl(gw) });
      await eventually(() => said().length === 2, 10_000);
      await eventually(() => gw.server.connectorHub!.registry.all().length === 2);
      await sleep(300);
      assert.equal(said().length, 2);
    } finally {
      await killConnector(conn);
      await gw.stop();
    }
  });

  it('a reload that removes connectors: applies the rest of the file, says the listener closes after a restart, and revokes nothing back', async () => {
    const dir = tempDir();
    const gw = await startHubGateway(gatewayYaml(backend, '', '', ['revoked-one']), dir);
    try {
      const plain = gatewayYaml(backend).replace(/connectors:\n  listen: 127\.0\.0\.1:0\n  revoked: \[\]\nconnectorGroups:\n  g1: \{\}\n  g2: \{\}\n/, '').replace('    connectorGroup: g1\n', '');
      assert.doesNotMatch(plain, /connector/);
      writeFileSync(gw.configFile, plain);
      assert.equal(await gw.server.reload('test'), 'success');
      assert.ok(gw.logs.some((l) => l.msg === 'config reloaded'));
      assert.ok(gw.logs.some((l) => l.level === 40 && /connectors: was removed: the connector listener closes after a restart/.test(String(l.msg))));
      assert.ok(!gw.logs.some((l) => Number(l.level) >= 50), 'nothing at error');
      // the app now goes straight to the backend
      assert.equal((await request(`${gw.url}/direct`, { headers: { host: 'app.test' } })).status, 200);
      assert.ok(gw.server.connectorHub!['revoked'].has('revoked-one'));
    } finally {
      await gw.stop();
    }
  });

  it('a request admitted before a reload that moves its app still reaches the old target: the old list stays until its requests are over', async () => {
    const other = await startEchoBackend();
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    // holds /held in the pipeline, as a plugin stage that takes its time would
    const hold: Stage = { name: 'hold', kind: 'sso', run: async (ctx) => ((ctx.path.startsWith('/held') ? await held : undefined), { kind: 'continue' }) };
    const dir = tempDir();
    const gw = await startGateway(gatewayYaml(backend), { dir, watch: false, compileHooks: { extraStages: () => [hold] } });
    const conn = startConnector(join(dir, 'conn'), { gateway: hubUrl(gw), token: token(gw), args: ['--channels', '1'] });
    try {
      await waitChannels(gw, 1);
      const waiting = request(`${gw.url}/held`, { headers: { host: 'app.test' } });
      await eventually(() => gw.server['holder'].current!.inFlight > 0);
      writeFileSync(gw.configFile, gatewayYaml(other));
      assert.equal(await gw.server.reload('test'), 'success');
      // the connector has the new list (the new target is served) before the held request goes on
      assert.equal((await request(`${gw.url}/new`, { headers: { host: 'app.test' } })).status, 200);
      assert.ok(other.received.some((r) => r.url === '/new'));
      release();
      const res = await waiting;
      assert.equal(res.status, 200, res.body);
      assert.ok(backend.received.some((r) => r.url === '/held'), 'the admitted request went where its config sent it');
      // once it is over, the old target is withdrawn
      await eventually(() => conn.logs().some((l) => l.msg === 'target list from the gateway' && JSON.stringify(l.targets) === JSON.stringify([new URL(other.url).host])), 10_000);
    } finally {
      release();
      await killConnector(conn);
      await gw.stop();
      await other.close();
    }
  });

  it('the hub listens only when connectors: is configured, and stops with the gateway', async () => {
    const gw = await startGateway(gatewayYaml(backend), { watch: false });
    const addr = gw.server.addresses().connectors!;
    assert.match(addr, /^127\.0\.0\.1:\d+$/);
    await gw.stop();
    const err = await new Promise<NodeJS.ErrnoException>((resolve) => {
      const s = net.connect(Number(addr.split(':')[1]), '127.0.0.1');
      s.on('error', resolve);
      s.on('connect', () => resolve(Object.assign(new Error('connected'), { code: 'CONNECTED' })));
    });
    assert.equal(err.code, 'ECONNREFUSED');
  });

  it('a channel asked for while the gateway stops gets 503, and the stop finishes (it waited on that channel for as long as the connector held it)', async () => {
    const gw = await startGateway(gatewayYaml(backend), { watch: false });
    const hub = gw.server.connectorHub!;
    const kp = await generateKeyPair();
    const cert = (await hub.ca.issueClient(await createCsr(kp.keys, 'late'), kp.publicKeyDer, 'g1', 3600_000, 'c-late')).certPem;
    const [host, port] = hub.address()!.split(':');
    // a connector whose channel request is under way when the stop begins (half its head sent)
    const sock = tls.connect({ host, port: Number(port), key: kp.keyPem, cert, ca: hub.ca.certPem, servername: 'localhost' });
    sock.on('error', () => undefined);
    await new Promise((r) => sock.once('secureConnect', r));
    sock.write('GET /v1/tunnel HTTP/1.1\r\nhost: hub\r\n');
    await sleep(50);
    let answer = '';
    sock.on('data', (c: Buffer) => (answer += c.toString('latin1')));
    const stopped = gw.stop().then(() => 'stopped');
    sock.write('connection: Upgrade\r\nupgrade: drawbridge-h2\r\nx-drawbridge-version: test\r\n\r\n');
    try {
      const outcome = await Promise.race([stopped, sleep(5000).then(() => 'still stopping after 5 s')]);
      assert.equal(outcome, 'stopped');
      assert.match(answer, /^HTTP\/1\.1 503 /);
      assert.equal(hub.registry.all().length, 0, 'no channel was added');
    } finally {
      sock.destroy();
      await stopped;
    }
  });

  it('its TLS 1.2 offers only suites with forward secrecy and an AEAD cipher, as the public listener', async () => {
    const gw = await startGateway(gatewayYaml(backend), { watch: false });
    try {
      await assertOnlyStrongSuites(Number(gw.server.addresses().connectors!.split(':')[1]));
    } finally {
      await gw.stop();
    }
  });

  it('failed TLS handshakes, which anyone can cause, are logged once, not once each', async () => {
    const gw = await startGateway(gatewayYaml(backend), { watch: false });
    try {
      const port = Number(gw.server.addresses().connectors!.split(':')[1]);
      for (let i = 0; i < 10; i++) {
        await new Promise<void>((resolve) => {
          const s = net.connect(port, '127.0.0.1', () => s.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n'));
          s.on('error', () => resolve());
          s.on('close', () => resolve());
        });
      }
      const lines = () => gw.logs.filter((l) => l.msg === 'connector TLS handshake refused');
      await eventually(() => lines().length >= 1);
      await new Promise((r) => setTimeout(r, 100));
      assert.equal(lines().length, 1);
      assert.ok(String(lines()[0]!.reason).length > 0, 'the first says why');
    } finally {
      await gw.stop();
    }
  });

  it('drops a connection that never finishes its TLS handshake, and one that never sends its request, after 10 s (they held a descriptor for 120 s)', async function () {
    this.timeout(30_000);
    const gw = await startGateway(gatewayYaml(backend), { watch: false });
    try {
      const port = Number(gw.server.addresses().connectors!.split(':')[1]);
      const closedAfter = (s: net.Socket | tls.TLSSocket) =>
        new Promise<number>((resolve) => {
          const t0 = Date.now();
          s.on('error', () => undefined);
          s.on('close', () => resolve(Date.now() - t0));
        });
      const bare = net.connect(port, '127.0.0.1'); // not a byte of TLS
      const quiet = tls.connect({ port, host: '127.0.0.1', rejectUnauthorized: false }); // a handshake, then nothing
      const [a, b] = await Promise.all([closedAfter(bare), closedAfter(quiet)]);
      for (const ms of [a, b]) assert.ok(ms >= 9_000 && ms < 15_000, `closed after ${ms} ms`);
    } finally {
      await gw.stop();
    }
  });

  it('connectors.serverNames: a connector dialling a load balancer\'s name verifies the hub; a reload adding a name reissues the certificate', async () => {
    const yaml = (names: string[]) => gatewayYaml(backend).replace('connectors:\n', `connectors:\n  serverNames: [${names.join(', ')}]\n`);
    const gw = await startGateway(yaml(['connectors.example.test']), { watch: false });
    try {
      const hub = gw.server.connectorHub!;
      const port = Number(hub.address()!.split(':')[1]);
      // checkServerIdentity runs as a connector's would: the name it dialled must be in the certificate
      const verifies = (servername: string) =>
        new Promise<string>((resolve) => {
          const s = tls.connect({ host: '127.0.0.1', port, ca: hub.ca.certPem, servername, checkServerIdentity: (_h, cert) => tls.checkServerIdentity(servername, cert) }, () => {
            s.destroy();
            resolve('ok');
          });
          s.on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
        });
      assert.equal(await verifies('connectors.example.test'), 'ok');
      assert.equal(await verifies('lb.example.test'), 'ERR_TLS_CERT_ALTNAME_INVALID');
      writeFileSync(gw.configFile, yaml(['connectors.example.test', 'lb.example.test']));
      await gw.server.reload();
      await eventually(async () => (await verifies('lb.example.test')) === 'ok', 3000);
    } finally {
      await gw.stop();
    }
  });

  it('renews its own TLS certificate while running: new handshakes get a fresh one from the connector CA, and channels still open with it', async () => {
    const dir = tempDir();
    const file = join(dir, 'gateway.config.yaml');
    writeFileSync(file, gatewayYaml(backend));
    const { config } = await loadForStart(file);
    const logs: Record<string, unknown>[] = [];
    const logger = pino({ level: 'info' }, { write: (line: string) => void logs.push(JSON.parse(line)) });
    // renewal is due at two thirds of the lifetime: 2 s here, a year's two thirds by default
    const hub = await ConnectorHub.start(config, dir, logger, { serverCertLifetimeMs: 3000 });
    try {
      const [host, port] = hub.address()!.split(':');
      const served = () =>
        new Promise<{ serial: string; validTo: number }>((resolve, reject) => {
          const s = tls.connect({ host, port: Number(port), ca: hub.ca.certPem, servername: 'localhost' }, () => {
            const c = s.getPeerCertificate();
            s.destroy();
            resolve({ serial: c.serialNumber, validTo: Date.parse(c.valid_to) });
          });
          s.on('error', reject);
        });
      const first = await served();
      await sleep(first.validTo - Date.now() + 200);
      // past the first certificate's expiry, a connector still gets a valid one (a failed check would reject here)
      const second = await served();
      assert.notEqual(second.serial, first.serial);
      assert.ok(second.validTo > first.validTo);
      assert.ok(logs.some((l) => l.msg === 'connector hub TLS certificate renewed'));
      const kp = await generateKeyPair();
      const cert = (await hub.ca.issueClient(await createCsr(kp.keys, 'x'), kp.publicKeyDer, 'g1', 60_000, 'c-after-renewal')).certPem;
      const link = dialChannel({ gateway: `https://${hub.address()}`, transport: 'h2', key: kp.keyPem, cert, ca: hub.ca.certPem, headers: {}, handshakeTimeoutMs: 5000 });
      const outcome = await new Promise<string>((resolve) => {
        link.once('open', () => resolve('open'));
        link.once('refused', (status) => resolve(`refused ${status}`));
        link.once('error', (e) => resolve(e.message));
      });
      link.terminate();
      assert.equal(outcome, 'open', 'the client certificate is still asked for and checked');
    } finally {
      await hub.stop();
    }
  });
});
