import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { copyFileSync, mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import net from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { join } from 'node:path';
import { generateKeyPair } from '../../src/connector/ca.js';
import { assertOnlyStrongSuites, datedCert, selfSignedCert } from '../support/certs.js';
import { eventually, rawRequest, request, startEchoBackend, startGateway, tempDir, type EchoBackend, type TestGateway } from '../support/harness.js';

function httpsGet(port: number, host: string, ca: string, path = '/'): Promise<{ status: number; body: string; peerCn: string }> {
  return new Promise((resolve, reject) => {
    const req = https.request({ host: '127.0.0.1', port, path, servername: host, headers: { host }, ca, agent: false }, (res) => {
      let body = '';
      const peerCn = String((res.socket as import('node:tls').TLSSocket).getPeerCertificate().subject?.CN);
      res.on('data', (c) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode!, body, peerCn }));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('TLS listener, http -> https redirect, certificate reload, admin', function () {
  this.timeout(30_000);
  let backend: EchoBackend;
  let gw: TestGateway;
  let dir: string;
  let ca1: string;
  before(async () => {
    backend = await startEchoBackend();
    dir = tempDir();
    const c = selfSignedCert(dir, 'one', ['echo.test', 'localhost']);
    ca1 = c.certPem;
    copyFileSync(c.cert, join(dir, 'gateway.crt'));
    copyFileSync(c.key, join(dir, 'gateway.key'));
    mkdirSync(join(dir, 'state', 'acme-challenge'), { recursive: true });
    writeFileSync(join(dir, 'state', 'acme-challenge', 'tok_123'), 'tok_123.thumbprint');
    gw = await startGateway(
      `
gateway:
  publicUrl: https://echo.test:8443
  listen: { https: 127.0.0.1:0, http: 127.0.0.1:0 }
  tls: { cert: ./gateway.crt, key: ./gateway.key }
  admin: { listen: 127.0.0.1:0 }
  stateDir: ./state
apps:
  - name: Echo
    externalUrl: https://echo.test:8443/
    internalUrl: ${backend.url}/
    preAuth: passthrough
  - name: Elsewhere
    externalUrl: https://echo.test:9443/other/
    internalUrl: ${backend.url}/
    preAuth: passthrough
  - name: V6
    externalUrl: https://[::1]:8443/
    internalUrl: ${backend.url}/
    preAuth: passthrough
`,
      { dir },
    );
  });
  after(async () => {
    await gw.stop();
    await backend.close();
  });
  const httpsPort = () => Number(gw.server.addresses().https!.split(':').pop());
  const httpPort = () => Number(gw.server.addresses().http!.split(':').pop());

  it('serves apps over real TLS and tells the app the client used https', async () => {
    const res = await httpsGet(httpsPort(), 'echo.test', ca1, '/x');
    assert.equal(res.status, 200);
    assert.equal(JSON.parse(res.body).headers['x-forwarded-proto'], 'https');
  });

  it('redirects plain http to https (308, same path and query)', async () => {
    const res = await request(`http://127.0.0.1:${httpPort()}/a/b?c=d`, { headers: { host: 'echo.test' } });
    assert.equal(res.status, 308);
    assert.equal(res.headers.location, 'https://echo.test:8443/a/b?c=d');
    assert.equal(backend.received.filter((r) => r.url === '/a/b?c=d').length, 0, 'nothing forwarded over plain http');
  });

  it('redirects to the port of the app published at the path (its externalUrl), not publicUrl\'s', async () => {
    const res = await request(`http://127.0.0.1:${httpPort()}/other/x?y=1`, { headers: { host: 'echo.test' } });
    assert.equal(res.status, 308);
    assert.equal(res.headers.location, 'https://echo.test:9443/other/x?y=1');
  });

  it('redirects an app published at an IPv6 address too', async () => {
    const res = await request(`http://127.0.0.1:${httpPort()}/v6?q=1`, { headers: { host: '[::1]' } });
    assert.equal(res.status, 308);
    assert.equal(res.headers.location, 'https://[::1]:8443/v6?q=1');
  });

  it('redirects an absolute-form target to its path; one for another host than Host, or with userinfo, gets 400', async () => {
    const ask = (target: string, host = 'Host: echo.test\r\n') => rawRequest(httpPort(), `GET ${target} HTTP/1.1\r\n${host}Connection: close\r\n\r\n`);
    assert.match(await ask('http://echo.test/a/b?c=d'), /^HTTP\/1\.1 308 [^]*\r\nlocation: https:\/\/echo\.test:8443\/a\/b\?c=d\r\n/i);
    assert.match(await ask('http://echo.test/http11', ''), /^HTTP\/1\.1 400 /, 'HTTP/1.1 without Host');
    assert.match(await rawRequest(httpPort(), 'GET http://echo.test/http10 HTTP/1.0\r\n\r\n'), /^HTTP\/1\.1 308 [^]*\r\nlocation: https:\/\/echo\.test:8443\/http10\r\n/i, 'HTTP/1.0 without Host');
    for (const target of ['http://evil.test/a', 'http://u:p@echo.test/a']) {
      const answer = await ask(target);
      assert.match(answer, /^HTTP\/1\.1 400 /, target);
      assert.doesNotMatch(answer, /\r\nlocation:/i, target);
    }
  });

  it('redirects only hosts an app is published on: another Host gets 404, not a redirect to it', async () => {
    for (const host of ['evil.test', 'evil.test:8080', 'echo.test.evil.test']) {
      const res = await request(`http://127.0.0.1:${httpPort()}/p`, { headers: { host, accept: 'application/json' } });
      assert.equal(res.status, 404, host);
      assert.equal(res.headers.location, undefined, host);
    }
    assert.equal((await request(`http://127.0.0.1:${httpPort()}/p`, { headers: { host: 'ECHO.test' } })).status, 308, 'a published host in any case');
  });

  it('refuses what the https side would refuse instead of redirecting it: two Host lines, a port past 65535, HTTP/2.0 (400)', async () => {
    for (const head of ['GET /p HTTP/1.1\r\nHost: echo.test\r\nHost: evil.test\r\n', 'GET /p HTTP/1.1\r\nHost: echo.test:99999\r\n', 'GET /p HTTP/2.0\r\nHost: echo.test\r\n']) {
      const answer = await rawRequest(httpPort(), `${head}Connection: close\r\n\r\n`);
      assert.match(answer, /^HTTP\/1\.1 400 /, head);
      assert.doesNotMatch(answer, /\r\nlocation:/i, head);
    }
  });

  it('the redirect follows ports changed by a reload (it kept the port the gateway started with)', async () => {
    const before = readFileSync(gw.configFile, 'utf8');
    try {
      writeFileSync(gw.configFile, before.replace('publicUrl: https://echo.test:8443', 'publicUrl: https://echo.test').replace('externalUrl: https://echo.test:8443/', 'externalUrl: https://echo.test/'));
      assert.equal(await gw.server.reload(), 'success');
      const res = await request(`http://127.0.0.1:${httpPort()}/a?b=c`, { headers: { host: 'echo.test' } });
      assert.equal(res.headers.location, 'https://echo.test/a?b=c');
    } finally {
      writeFileSync(gw.configFile, before);
      await gw.server.reload();
    }
    assert.equal((await request(`http://127.0.0.1:${httpPort()}/a`, { headers: { host: 'echo.test' } })).headers.location, 'https://echo.test:8443/a');
  });

  it('answers ACME http-01 challenges on http instead of redirecting them', async () => {
    const res = await request(`http://127.0.0.1:${httpPort()}/.well-known/acme-challenge/tok_123`, { headers: { host: 'echo.test' } });
    assert.equal(res.status, 200);
    assert.equal(res.body, 'tok_123.thumbprint');
    const missing = await request(`http://127.0.0.1:${httpPort()}/.well-known/acme-challenge/nope`, { headers: { host: 'echo.test' } });
    assert.equal(missing.status, 404);
  });

  it('the served certificate\'s end date: a gauge, a warning once it is 14 days away, an error once it has passed', async () => {
    const until = Date.parse(new X509Certificate(readFileSync(join(dir, 'gateway.crt'))).validTo);
    const metrics = await request(`${gw.adminUrl}/metrics`);
    assert.match(metrics.body, new RegExp(`^drawbridge_tls_certificate_expiry_timestamp_seconds ${Math.floor(until / 1000)}$`, 'm'));
    // the test certificate is good for two days: said at start, once
    const near = gw.logs.filter((l) => /the certificate the https listener serves expires at/.test(String(l.msg)));
    assert.equal(near.length, 1);
    assert.equal(near[0]!.level, 40);
    assert.equal(near[0]!.file, join(dir, 'gateway.crt'));
    gw.server.checkCertificateDates();
    assert.equal(gw.logs.filter((l) => /serves expires at/.test(String(l.msg))).length, 1, 'not again at the next check');
    // as the hourly check would see it once the end date has passed
    gw.server.checkCertificateDates(until + 1000);
    gw.server.checkCertificateDates(until + 2000);
    const passed = gw.logs.filter((l) => /the certificate the https listener serves expired at/.test(String(l.msg)));
    assert.equal(passed.length, 1);
    assert.equal(passed[0]!.level, 50);
  });

  it('an ACME answer that is a FIFO or a device is refused (404) at once; the gateway goes on serving', async () => {
    const acme = join(dir, 'state', 'acme-challenge');
    execFileSync('mkfifo', [join(acme, 'tok_fifo')]);
    symlinkSync('/dev/zero', join(acme, 'tok_zero'));
    try {
      for (const name of ['tok_fifo', 'tok_zero']) {
        const started = Date.now();
        const res = await request(`http://127.0.0.1:${httpPort()}/.well-known/acme-challenge/${name}`, { headers: { host: 'echo.test' } });
        assert.equal(res.status, 404, name);
        assert.ok(Date.now() - started < 2000, `${name}: answered at once`);
      }
      assert.equal((await httpsGet(httpsPort(), 'echo.test', ca1, '/after-acme')).status, 200);
    } finally {
      rmSync(join(acme, 'tok_fifo'));
      rmSync(join(acme, 'tok_zero'));
    }
  });

  it('a certificate file replaced by a FIFO is refused at once, the served certificate is kept, and the gateway goes on serving', async () => {
    const good = readFileSync(join(dir, 'gateway.crt'));
    rmSync(join(dir, 'gateway.crt'));
    execFileSync('mkfifo', [join(dir, 'gateway.crt')]);
    try {
      const started = Date.now();
      assert.equal(await gw.server.reload('test'), 'failure');
      assert.ok(Date.now() - started < 3000, 'the reload did not wait on the FIFO');
      assert.equal((await httpsGet(httpsPort(), 'echo.test', ca1, '/after-fifo')).status, 200);
    } finally {
      rmSync(join(dir, 'gateway.crt'));
      writeFileSync(join(dir, 'gateway.crt'), good);
      await gw.server.reload('test');
    }
  });

  it('swaps the certificate live when the files change, without dropping the listener', async () => {
    const c2 = selfSignedCert(dir, 'two', ['echo.test', 'second.test']);
    copyFileSync(c2.key, join(dir, 'gateway.key'));
    copyFileSync(c2.cert, join(dir, 'gateway.crt'));
    await eventually(async () => (await httpsGet(httpsPort(), 'echo.test', c2.certPem).catch(() => ({ peerCn: '' }))).peerCn === 'echo.test', 3000);
    const res = await httpsGet(httpsPort(), 'echo.test', c2.certPem);
    assert.equal(res.status, 200);
    await assert.rejects(httpsGet(httpsPort(), 'echo.test', ca1), 'the old certificate is no longer served');
  });

  it('refuses a reload to a certificate that cannot be used (garbage, or a key of another certificate): the reload fails and the served certificate stays', async () => {
    const served = () => httpsGet(httpsPort(), 'echo.test', readFileSync(join(dir, 'gateway.crt'), 'utf8')).then((r) => r.peerCn);
    const cn = await served();
    const good = { cert: readFileSync(join(dir, 'gateway.crt')), key: readFileSync(join(dir, 'gateway.key')) };
    const generation = gw.server.generation!.id;
    const metric = async () => /^drawbridge_config_last_reload_success (\d)$/m.exec((await request(`${gw.adminUrl}/metrics`)).body)?.[1];
    try {
      writeFileSync(join(dir, 'gateway.crt'), 'garbage\n');
      assert.equal(await gw.server.reload('test'), 'failure');
      assert.equal(await metric(), '0');
      assert.ok(
        gw.logs.some((l) => /gateway\.config\.yaml:\d+:\d+: error: gateway\.tls\.cert: file "\.\/gateway\.crt" holds no PEM certificate/.test(String(l.problem))),
        'the reload is rejected with the position of the key',
      );
      assert.ok(!gw.logs.some((l) => l.msg === 'new gateway certificate could not be loaded; keeping the old one'));

      const other = selfSignedCert(dir, 'three', ['echo.test']);
      copyFileSync(other.cert, join(dir, 'gateway.crt'));
      assert.equal(await gw.server.reload('test'), 'failure');
      assert.equal(await metric(), '0');
      assert.ok(gw.logs.some((l) => /error: gateway\.tls\.key: is not the private key of the certificate in gateway\.tls\.cert/.test(String(l.problem))));
      assert.equal(gw.server.generation!.id, generation, 'the last good generation keeps serving');
      const res = await httpsGet(httpsPort(), 'echo.test', good.cert.toString());
      assert.equal(res.status, 200);
      assert.equal(res.peerCn, cn, 'the last good certificate keeps serving');
    } finally {
      writeFileSync(join(dir, 'gateway.key'), good.key);
      writeFileSync(join(dir, 'gateway.crt'), good.cert);
      await gw.server.reload('test');
    }
    assert.equal(await metric(), '1');
  });

  it('refuses a reload to a certificate out of its dates (expired, or valid only from later) while the served one is valid: no client could use it', async () => {
    const served = () => httpsGet(httpsPort(), 'echo.test', readFileSync(join(dir, 'gateway.crt'), 'utf8')).then((r) => r.peerCn);
    const good = { cert: readFileSync(join(dir, 'gateway.crt')), key: readFileSync(join(dir, 'gateway.key')) };
    const cn = await served();
    const kp = await generateKeyPair();
    const day = 86_400_000;
    try {
      for (const [notBefore, notAfter, said] of [
        [Date.now() - 30 * day, Date.now() - day, /the certificate expired on/],
        [Date.now() + 2 * day, Date.now() + 30 * day, /the certificate is valid only from/],
      ] as const) {
        writeFileSync(join(dir, 'gateway.key'), kp.keyPem);
        writeFileSync(join(dir, 'gateway.crt'), await datedCert(kp.keys, 'echo.test', notBefore, notAfter, '03', 'out-of-dates'));
        assert.equal(await gw.server.reload('test'), 'failure');
        assert.ok(gw.logs.some((l) => said.test(JSON.stringify(l)) && /the certificate served now is kept/.test(JSON.stringify(l))), String(said));
        writeFileSync(join(dir, 'gateway.crt'), good.cert);
        writeFileSync(join(dir, 'gateway.key'), good.key);
        assert.equal(await served(), cn, 'the valid certificate keeps serving');
      }
    } finally {
      writeFileSync(join(dir, 'gateway.key'), good.key);
      writeFileSync(join(dir, 'gateway.crt'), good.cert);
      await gw.server.reload('test');
    }
  });

  it('a reload that leaves the certificate files alone keeps the served TLS context: clients resume their sessions across it, and no certificate reload is said', async () => {
    const before = readFileSync(gw.configFile, 'utf8');
    const said = () => gw.logs.filter((l) => l.msg === 'gateway certificate reloaded').length;
    const ca = readFileSync(join(dir, 'gateway.crt'), 'utf8');
    const connect = (session?: Buffer) =>
      new Promise<{ reused: boolean; session?: Buffer }>((resolve, reject) => {
        let ticket: Buffer | undefined;
        const s = tlsConnect({ host: '127.0.0.1', port: httpsPort(), servername: 'echo.test', ca, session }, () => s.write('GET / HTTP/1.1\r\nhost: echo.test\r\nconnection: close\r\n\r\n'));
        s.on('session', (t: Buffer) => (ticket = t));
        s.on('data', () => undefined);
        s.on('end', () => resolve({ reused: s.isSessionReused(), session: ticket }));
        s.on('error', reject);
      });
    const first = await connect();
    assert.ok(first.session, 'a session to resume');
    const saidBefore = said();
    try {
      writeFileSync(gw.configFile, before.replace('name: Elsewhere', 'name: Elsewhere2'));
      assert.equal(await gw.server.reload('test'), 'success');
      assert.equal((await connect(first.session)).reused, true, 'the session resumes: the TLS context was not rebuilt');
      assert.equal(said(), saidBefore);
    } finally {
      writeFileSync(gw.configFile, before);
      await gw.server.reload('test');
    }
  });

  it('refuses a reload to a key OpenSSL will not serve (RSA 512): the reload fails at gateway.tls before anything is swapped, and the served certificate stays', async () => {
    const good = { cert: readFileSync(join(dir, 'gateway.crt')), key: readFileSync(join(dir, 'gateway.key')) };
    const generation = gw.server.generation!.id;
    try {
      execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:512', '-nodes', '-keyout', join(dir, 'gateway.key'), '-out', join(dir, 'gateway.crt'), '-days', '2', '-subj', '/CN=echo.test', '-addext', 'subjectAltName=DNS:echo.test'], { stdio: 'pipe' });
      assert.equal(await gw.server.reload('test'), 'failure');
      assert.ok(gw.logs.some((l) => /gateway\.tls: the certificate and key cannot be used: .*key too small/.test(JSON.stringify(l))), 'said at gateway.tls, in OpenSSL\'s words');
      assert.equal(gw.server.generation!.id, generation, 'the last good generation keeps serving');
      const res = await httpsGet(httpsPort(), 'echo.test', good.cert.toString());
      assert.equal(res.status, 200);
    } finally {
      writeFileSync(join(dir, 'gateway.key'), good.key);
      writeFileSync(join(dir, 'gateway.crt'), good.cert);
      await gw.server.reload('test');
    }
  });

  it('a new key that is not the certificate\'s fails the reload at gateway.tls.key, without the line about a renewal held up by another part', async () => {
    const good = readFileSync(join(dir, 'gateway.key'));
    const other = selfSignedCert(dir, 'other-key', ['echo.test']);
    const waiting = () => gw.logs.filter((l) => /certificate files changed but are not applied/.test(String(l.msg))).length;
    const before = waiting();
    try {
      copyFileSync(other.key, join(dir, 'gateway.key'));
      assert.equal(await gw.server.reload('test'), 'failure');
      assert.ok(gw.logs.some((l) => /gateway\.tls\.key/.test(JSON.stringify(l)) && /is not the private key of the certificate/.test(JSON.stringify(l))));
      assert.equal(waiting(), before);
    } finally {
      writeFileSync(join(dir, 'gateway.key'), good);
      await gw.server.reload('test');
    }
  });

  it('a renewed certificate held up by an unrelated error in the file is said, with when the served one runs out', async () => {
    const good = { cert: readFileSync(join(dir, 'gateway.crt')), key: readFileSync(join(dir, 'gateway.key')), config: readFileSync(gw.configFile, 'utf8') };
    try {
      writeFileSync(gw.configFile, good.config.replace('preAuth: passthrough', 'preAuth: passthrough\n    backendTimout: 5s'));
      const renewed = selfSignedCert(dir, 'renewed', ['echo.test']);
      copyFileSync(renewed.key, join(dir, 'gateway.key'));
      copyFileSync(renewed.cert, join(dir, 'gateway.crt'));
      assert.equal(await gw.server.reload('test'), 'failure');
      const said = gw.logs.find((l) => /certificate files changed but are not applied while the config is invalid/.test(String(l.msg)));
      assert.ok(said, 'said');
      assert.equal(said.level, 50, 'at error');
      assert.match(String(said.servedUntil), /^\d{4}-\d\d-\d\dT/);
      // said once per waiting certificate, not at every poll that finds the file still invalid
      const told = () => gw.logs.filter((l) => /certificate files changed but are not applied/.test(String(l.msg))).length;
      const before = told();
      writeFileSync(gw.configFile, good.config.replace('preAuth: passthrough', 'preAuth: passthrough\n    backendTimout: 6s'));
      assert.equal(await gw.server.reload('test'), 'failure');
      assert.equal(await gw.server.reload('test'), 'failure');
      assert.equal(told(), before);
    } finally {
      writeFileSync(gw.configFile, good.config);
      writeFileSync(join(dir, 'gateway.key'), good.key);
      writeFileSync(join(dir, 'gateway.crt'), good.cert);
      await gw.server.reload('test');
    }
  });

  it('TLS 1.2 only with forward secrecy and AEAD suites, also after a certificate reload: RSA key exchange, CBC and SHA-1 suites are refused', async () => {
    await assertOnlyStrongSuites(httpsPort());
  });

  it('drops a connection that never finishes its TLS handshake after 10 s, as the connectors listener does (it held a descriptor for 120 s)', async function () {
    this.timeout(30_000);
    const bare = net.connect(httpsPort(), '127.0.0.1'); // not a byte of TLS
    const t0 = Date.now();
    const ms = await new Promise<number>((resolve) => {
      bare.on('error', () => undefined);
      bare.on('close', () => resolve(Date.now() - t0));
    });
    assert.ok(ms >= 9_000 && ms < 15_000, `closed after ${ms} ms`);
  });

  it('admin: healthz, readyz with the generation, and Prometheus metrics', async () => {
    assert.deepEqual((await request(`${gw.adminUrl}/healthz`)).json(), { status: 'ok' });
    const ready = (await request(`${gw.adminUrl}/readyz`)).json();
    assert.equal(ready.status, 'ready');
    assert.equal(typeof ready.generation, 'number');
    const m = (await request(`${gw.adminUrl}/metrics`)).body;
    assert.match(m, /drawbridge_requests_total\{app="Echo",status="200"\} [1-9]/);
    assert.match(m, /drawbridge_request_duration_seconds_bucket\{le="0.005",app="Echo"\}/);
    assert.match(m, /drawbridge_config_generation [1-9]/);
  });
});

describe('a gateway that cannot start', () => {
  it('leaves no listener behind when a port is taken', async () => {
    const blocker = await startEchoBackend();
    const dir = tempDir();
    const yaml = `
gateway:
  publicUrl: http://gw.test
  listen: { http: 127.0.0.1:0 }
  admin: { listen: 127.0.0.1:${blocker.port} }
apps:
  - name: Echo
    externalUrl: http://echo.test/
    internalUrl: ${blocker.url}/
    preAuth: passthrough
`;
    const { GatewayServer } = await import('../../src/gateway/server.js');
    const pino = (await import('pino')).default;
    writeFileSync(join(dir, 'gateway.config.yaml'), yaml);
    const server = new GatewayServer({ configFile: join(dir, 'gateway.config.yaml'), logger: pino({ level: 'silent' }) });
    await assert.rejects(server.start(), /EADDRINUSE/);
    assert.ok(Object.values(server.addresses()).every((a) => a === undefined), 'the public listener that did open was closed again');
    await blocker.close();
  });
});

describe('a gateway whose certificate has run out', function () {
  this.timeout(30_000);
  it('takes a renewal that starts later at the next reload: no client takes the expired one any more, so nothing is kept by refusing it', async () => {
    const backend = await startEchoBackend();
    const dir = tempDir();
    const kp = await generateKeyPair();
    const day = 86_400_000;
    const cert = (serialNumber: string, notBefore: number, notAfter: number) => datedCert(kp.keys, 'echo.test', notBefore, notAfter, serialNumber);
    writeFileSync(join(dir, 'gateway.key'), kp.keyPem);
    writeFileSync(join(dir, 'gateway.crt'), await cert('05', Date.now() - 30 * day, Date.now() - day));
    const gw = await startGateway(
      `
gateway:
  publicUrl: https://echo.test
  listen: { https: 127.0.0.1:0 }
  tls: { cert: ./gateway.crt, key: ./gateway.key }
apps:
  - name: Echo
    externalUrl: https://echo.test/
    internalUrl: ${backend.url}/
    preAuth: passthrough
`,
      { dir },
    );
    try {
      const later = await cert('06', Date.now() + 3_600_000, Date.now() + 90 * day);
      writeFileSync(join(dir, 'gateway.crt'), later);
      assert.equal(await gw.server.reload('test'), 'success');
      const served = await new Promise<X509Certificate>((resolve, reject) => {
        const s = tlsConnect({ host: '127.0.0.1', port: gw.port, servername: 'echo.test', rejectUnauthorized: false }, () => (resolve(s.getPeerX509Certificate()!), s.destroy()));
        s.on('error', reject);
      });
      assert.equal(served.fingerprint256, new X509Certificate(later).fingerprint256);
    } finally {
      await gw.stop();
      await backend.close();
    }
  });
});
