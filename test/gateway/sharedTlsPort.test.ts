/**
 * connectors.listen on gateway.listen.https's own address: one port, two TLS servers, told apart
 * by the connector's ALPN id. Real gateway, real connector process, real TLS clients on loopback.
 */
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import net, { type AddressInfo } from 'node:net';
import { join } from 'node:path';
import tls from 'node:tls';
import { CONNECTOR_ALPN } from '../../src/connector/channelLink.js';
import { readClientHello } from '../../src/gateway/sharedTlsPort.js';
import { selfSignedCert, type TestCert } from '../support/certs.js';
import { eventually, freePort, rawRequest, sleep, spawnGateway, startEchoBackend, startGateway, tempDir, type EchoBackend, type TestGateway } from '../support/harness.js';
import { hubUrl, killConnector, startConnector, token, waitChannels, type ConnectorProcess } from '../connector/support.js';

function sharedYaml(port: number, backend: EchoBackend, connectorsListen = `127.0.0.1:${port}`): string {
  return `
gateway:
  publicUrl: https://direct.test:${port}
  listen: { https: 127.0.0.1:${port} }
  tls: { cert: ./public.crt, key: ./public.key }
  admin: { listen: 127.0.0.1:0 }
  stateDir: ./state
connectors:
  listen: ${connectorsListen}
connectorGroups:
  g1: {}
apps:
  - name: Direct
    externalUrl: https://direct.test:${port}/
    internalUrl: ${backend.url}/
    preAuth: passthrough
  - name: Tunnelled
    externalUrl: https://app.test:${port}/
    internalUrl: ${backend.url}/
    connectorGroup: g1
    preAuth: passthrough
`;
}

/** GET over TLS to host (by SNI and Host) on port; also what certificate the server showed. */
function get(port: number, host: string, ca: string, path = '/'): Promise<{ status: number; body: string; fingerprint: string }> {
  return new Promise((resolve, reject) => {
    const req = https.get({ host: '127.0.0.1', port, path, servername: host, headers: { host: `${host}:${port}` }, ca, agent: false }, (res) => {
      const fingerprint = (res.socket as tls.TLSSocket).getPeerCertificate().fingerprint256;
      let body = '';
      res.on('data', (c) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode!, body, fingerprint }));
    });
    req.on('error', reject);
  });
}

function closedAfter(s: net.Socket): Promise<number> {
  const t0 = Date.now();
  return new Promise((resolve) => {
    s.on('error', () => undefined);
    s.on('close', () => resolve(Date.now() - t0));
  });
}

/** The first bytes a real TLS client sends, offering `alpn`. */
async function capturedHello(alpn?: string[]): Promise<Buffer> {
  const server = net.createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const got = new Promise<Buffer>((resolve) => server.once('connection', (s) => s.once('data', (b: Buffer) => (s.destroy(), resolve(b)))));
  const c = tls.connect({ port: (server.address() as AddressInfo).port, host: '127.0.0.1', servername: 'x.test', ALPNProtocols: alpn });
  c.on('error', () => undefined);
  const hello = await got;
  c.destroy();
  server.close();
  return hello;
}

describe('shared TLS port: reading the ClientHello', () => {
  it('reads the ALPN list, says a cut-short hello is partial and plain HTTP is something else', async () => {
    const hello = await capturedHello([CONNECTOR_ALPN, 'http/1.1']);
    assert.deepEqual(readClientHello(hello), { kind: 'hello', alpn: [CONNECTOR_ALPN, 'http/1.1'] });
    assert.deepEqual(readClientHello(await capturedHello()), { kind: 'hello', alpn: [] });
    for (const n of [1, 4, 5, 40, hello.length - 1]) assert.deepEqual(readClientHello(hello.subarray(0, n)), { kind: 'partial' }, `first ${n} bytes`);
    assert.deepEqual(readClientHello(Buffer.from('GET / HTTP/1.1\r\n')), { kind: 'other' });
    assert.deepEqual(readClientHello(Buffer.from([0x16, 0x03, 0x01, 0x00, 0x05, 0x02, 0, 0, 1, 0])), { kind: 'other' }, 'a handshake that is no ClientHello');
  });

  it('reads a hello split over two records (allowed, and what some clients do)', async () => {
    const hello = await capturedHello([CONNECTOR_ALPN]);
    const body = hello.subarray(5);
    const record = (part: Buffer) => Buffer.concat([Buffer.from([0x16, 0x03, 0x01, part.length >> 8, part.length & 0xff]), part]);
    const split = Buffer.concat([record(body.subarray(0, 50)), record(body.subarray(50))]);
    assert.deepEqual(readClientHello(split), { kind: 'hello', alpn: [CONNECTOR_ALPN] });
    assert.deepEqual(readClientHello(split.subarray(0, 60)), { kind: 'partial' });
  });
});

describe('connectors.listen sharing gateway.listen.https', function () {
  this.timeout(60_000);
  let backend: EchoBackend;
  let cert: TestCert;
  let gw: TestGateway;
  let port: number;
  let conn: ConnectorProcess | undefined;
  before(async () => {
    backend = await startEchoBackend();
    const dir = tempDir();
    cert = selfSignedCert(dir, 'public', ['direct.test', 'app.test']);
    port = await freePort();
    gw = await startGateway(sharedYaml(port, backend), { dir, watch: false });
  });
  after(async () => {
    if (conn) await killConnector(conn);
    await gw.stop();
    await backend.close();
  });
  const publicFingerprint = () => new X509Certificate(cert.certPem).fingerprint256;

  it('listens once: an https client reaches a passthrough app and sees the public certificate, and the hub says it shares the port', async () => {
    const res = await get(port, 'direct.test', cert.certPem, '/hello');
    assert.equal(res.status, 200);
    assert.equal(JSON.parse(res.body).url, '/hello');
    assert.equal(res.fingerprint, publicFingerprint());
    assert.deepEqual(gw.server.addresses().connectors, `127.0.0.1:${port}`);
    assert.equal(gw.server.addresses().https, `127.0.0.1:${port}`);
    const listening = gw.logs.find((l) => l.msg === 'connector hub listening');
    assert.equal(listening?.address, `127.0.0.1:${port}`);
    assert.equal(listening?.sharedWith, 'gateway.listen.https');
  });

  it('a connector enrolls and opens its channels through the same port, and the app behind it answers through the tunnel', async () => {
    assert.equal(hubUrl(gw), `https://127.0.0.1:${port}`);
    conn = startConnector(join(gw.dir, 'conn'), { gateway: hubUrl(gw), token: token(gw) });
    await waitChannels(gw, 2);
    const before = backend.received.length;
    const res = await get(port, 'app.test', cert.certPem, '/through');
    assert.equal(res.status, 200);
    assert.equal(JSON.parse(res.body).url, '/through');
    assert.equal(backend.received.length, before + 1);
    assert.equal(res.fingerprint, publicFingerprint(), 'the public certificate for the app, whatever carries it');
  });

  it('a client offering the connector ALPN id gets the hub (its connector-CA certificate), which refuses a tunnel without a client certificate as on a port of its own', async () => {
    const hub = gw.server.connectorHub!;
    const s = tls.connect({ port, host: '127.0.0.1', servername: 'localhost', ALPNProtocols: [CONNECTOR_ALPN], ca: hub.ca.certPem });
    await new Promise<void>((resolve, reject) => s.once('secureConnect', resolve).once('error', reject));
    assert.equal(s.alpnProtocol, CONNECTOR_ALPN);
    assert.ok(s.authorized, 'the hub certificate is of the connector CA');
    s.write('GET /v1/tunnel HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: drawbridge-h2\r\n\r\n');
    const answer = await new Promise<string>((resolve) => {
      let text = '';
      s.on('data', (c) => (text += c));
      s.on('close', () => resolve(text));
      s.on('error', () => undefined);
    });
    assert.match(answer, /^HTTP\/1\.1 403 /);
    assert.ok(gw.logs.some((l) => /none presented/.test(JSON.stringify(l))), 'refused as a client without a certificate');
  });

  it('plain HTTP and garbage bytes are closed without an answer from an app; a connection that sends nothing is closed within the handshake timeout; the port still serves', async function () {
    this.timeout(30_000);
    const silent = net.connect(port, '127.0.0.1');
    const halfHello = net.connect(port, '127.0.0.1', async () => halfHello.write((await capturedHello([CONNECTOR_ALPN])).subarray(0, 20)));
    const timings = Promise.all([closedAfter(silent), closedAfter(halfHello)]);
    const plain = await rawRequest(port, 'GET / HTTP/1.1\r\nHost: direct.test\r\n\r\n', 5000);
    assert.doesNotMatch(plain, /x-backend|HTTP\/1\.1 200/);
    await rawRequest(port, '\x16\x03\x01\x00\x10garbage-garbage!', 5000);
    await rawRequest(port, '\x00'.repeat(20_000), 5000);
    assert.equal((await get(port, 'direct.test', cert.certPem)).status, 200, 'served while those wait');
    for (const ms of await timings) assert.ok(ms >= 9_000 && ms < 15_000, `closed after ${ms} ms`);
    assert.equal((await get(port, 'direct.test', cert.certPem)).status, 200);
    assert.equal((await get(port, 'app.test', cert.certPem)).status, 200);
  });

  it('arms TCP keep-alive probes on public connections as the https listener does on a port of its own (an open WebSocket whose client vanished is found)', async () => {
    const s = tls.connect({ port, host: '127.0.0.1', servername: 'direct.test', ca: cert.certPem });
    await new Promise<void>((resolve, reject) => s.once('secureConnect', resolve).once('error', reject));
    const line = execFileSync('ss', ['-tnoH', 'state', 'established', `( sport = :${port} and dport = :${s.localPort} )`], { encoding: 'utf8' });
    s.destroy();
    assert.match(line, /timer:\(keepalive,/, `the gateway's socket: ${line}`);
  });

  it('an app certificate (apps[].tls) is served by SNI on the shared port too, and connectors still get the hub', async () => {
    const own = selfSignedCert(gw.dir, 'own', ['app.test']);
    writeFileSync(gw.configFile, sharedYaml(port, backend).replace('    connectorGroup: g1\n', '    connectorGroup: g1\n    tls: { cert: ./own.crt, key: ./own.key }\n'));
    try {
      assert.equal(await gw.server.reload('test'), 'success');
      assert.equal((await get(port, 'app.test', own.certPem)).fingerprint, new X509Certificate(own.certPem).fingerprint256);
      assert.equal((await get(port, 'direct.test', cert.certPem)).fingerprint, publicFingerprint());
      const hub = await new Promise<string>((resolve, reject) => {
        const s = tls.connect({ host: '127.0.0.1', port, servername: 'app.test', ALPNProtocols: [CONNECTOR_ALPN], rejectUnauthorized: false }, () => (resolve(String(s.getPeerCertificate().issuer?.CN)), s.destroy()));
        s.on('error', reject);
      });
      assert.match(hub, /connector/i, 'the connector ALPN id still gets the hub\'s certificate');
    } finally {
      writeFileSync(gw.configFile, sharedYaml(port, backend));
      assert.equal(await gw.server.reload('test'), 'success');
    }
  });

  it('a reload that would end the sharing says it takes a restart, and the port goes on as started', async () => {
    const other = await freePort();
    writeFileSync(gw.configFile, sharedYaml(port, backend, `127.0.0.1:${other}`));
    assert.equal(await gw.server.reload('test'), 'success');
    const said = gw.logs.filter((l) => l.level === 40 && /after a restart/.test(String(l.msg)) && /share/.test(String(l.msg)));
    assert.equal(said.length, 1, JSON.stringify(gw.logs.filter((l) => l.level === 40)));
    assert.equal((await get(port, 'app.test', cert.certPem)).status, 200);
    writeFileSync(gw.configFile, sharedYaml(port, backend));
    assert.equal(await gw.server.reload('test'), 'success');
  });
});

describe('connectors.listen sharing gateway.listen.https: stopping', function () {
  this.timeout(60_000);
  it('drains: requests in flight, direct and through the tunnel, finish; then the port is closed', async () => {
    const backend = await startEchoBackend();
    const dir = tempDir();
    const cert = selfSignedCert(dir, 'public', ['direct.test', 'app.test']);
    const port = await freePort();
    const gw = await startGateway(sharedYaml(port, backend), { dir, watch: false });
    const conn = startConnector(join(dir, 'conn'), { gateway: hubUrl(gw), token: token(gw) });
    try {
      await waitChannels(gw, 2);
      const direct = get(port, 'direct.test', cert.certPem, '/slow?ms=800');
      const tunnelled = get(port, 'app.test', cert.certPem, '/slow?ms=800');
      await eventually(() => backend.received.filter((r) => r.url.startsWith('/slow')).length === 2);
      const stopped = gw.stop();
      assert.deepEqual((await Promise.all([direct, tunnelled])).map((r) => r.status), [200, 200]);
      await stopped;
      const refused = await new Promise<string>((resolve) => net.connect(port, '127.0.0.1').on('error', (e: NodeJS.ErrnoException) => resolve(e.code!)).on('connect', () => resolve('connected')));
      assert.equal(refused, 'ECONNREFUSED');
    } finally {
      await killConnector(conn);
      await gw.stop();
      await backend.close();
    }
  });
});

/** CPU seconds a process has used so far (user + system), from the kernel's own count */
function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(fields[11]) + Number(fields[12])) / Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }));
}

describe('connectors.listen sharing gateway.listen.https: a hello in many records', function () {
  this.timeout(60_000);
  it('costs the gateway little CPU, and other clients are served meanwhile (a hello as 1-byte records, one per segment, took seconds of CPU each)', async () => {
    const backend = await startEchoBackend();
    const dir = tempDir();
    const cert = selfSignedCert(dir, 'public', ['direct.test', 'app.test']);
    const port = await freePort();
    const file = join(dir, 'gateway.yaml');
    writeFileSync(file, sharedYaml(port, backend));
    const gw = spawnGateway(file);
    try {
      await gw.port('admin');
      await eventually(() => /connector hub listening/.test(gw.output()), 10_000);
      assert.equal((await get(port, 'direct.test', cert.certPem)).status, 200);
      const cpuBefore = cpuSeconds(gw.child.pid!);
      // A ClientHello that says it is 16 MiB long, then 1-byte records, each in a TCP segment of its own.
      const slowHello = async () => {
        const s = net.connect(port, '127.0.0.1');
        s.setNoDelay(true);
        s.on('error', () => undefined);
        await new Promise((r) => s.once('connect', r));
        s.write(Buffer.from([0x16, 3, 1, 0, 4, 1, 0xff, 0xff, 0xff]));
        for (let sent = 9; sent < 16_000 && !s.destroyed; sent += 6) {
          s.write(Buffer.from([0x16, 3, 1, 0, 1, 0]));
          await sleep(2);
        }
        s.destroy();
      };
      let sending = true;
      const attack = Promise.all(Array.from({ length: 10 }, slowHello)).finally(() => (sending = false));
      let slowest = 0;
      while (sending) {
        const t0 = Date.now();
        assert.equal((await get(port, 'direct.test', cert.certPem)).status, 200);
        slowest = Math.max(slowest, Date.now() - t0);
        await sleep(100);
      }
      await attack;
      const cpu = cpuSeconds(gw.child.pid!) - cpuBefore;
      assert.ok(cpu < 2, `the gateway used ${cpu.toFixed(1)} s of CPU on 10 such connections`);
      assert.ok(slowest < 1000, `a request meanwhile took ${slowest} ms`);
    } finally {
      gw.child.kill('SIGTERM');
      await gw.exited;
      await backend.close();
    }
  });
});
