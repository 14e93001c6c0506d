import assert from 'node:assert/strict';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmdirSync, statSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import net from 'node:net';
import { join } from 'node:path';
import { FAKETIME_LIB } from '../support/faketime.js';
import { eventually, request, startEchoBackend, tempDir, type EchoBackend, type TestGateway } from '../support/harness.js';
import { createCsr, generateKeyPair } from '../../src/connector/ca.js';
import { gatewayYaml, hubUrl, killConnector, readyChannels, runCli, startConnector, startHubGateway, token, waitChannels, type ConnectorProcess } from './support.js';

const idOf = (cert: X509Certificate) => cert.subject.match(/CN=([^\n,]+)/)![1]!;


describe('connector certificate renewal', function () {
  this.timeout(70_000);
  let backend: EchoBackend;
  let gw: TestGateway;
  let c: ConnectorProcess;

  /** the hub's config with a one-minute certificate lifetime, these connectors revoked */
  const shortLived = (revoked: string[] = []) => gatewayYaml(backend, '', '', revoked).replace('  listen: 127.0.0.1:0\n', '  listen: 127.0.0.1:0\n  certificateLifetime: 1m\n');
  const reconfigure = async (revoked: string[]) => {
    writeFileSync(gw.configFile, shortLived(revoked));
    await gw.server.reload('test');
  };
  /** A state dir holding a certificate the hub issued for `lifetimeMs`, enrolled with `gateway`, as `connector enroll` leaves it. */
  const handMadeStateDir = async (name: string, lifetimeMs: number, gateway = hubUrl(gw)) => {
    const hub = gw.server.connectorHub!;
    const kp = await generateKeyPair();
    const issued = await hub.ca.issueClient(await createCsr(kp.keys, 'drawbridge-connector'), kp.publicKeyDer, 'g1', lifetimeMs, `c-${name}`);
    const dir = join(tempDir(), name);
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'key.pem'), kp.keyPem, { mode: 0o600 });
    writeFileSync(join(dir, 'cert.pem'), issued.certPem);
    writeFileSync(join(dir, 'ca.pem'), hub.ca.certPem);
    writeFileSync(join(dir, 'connector.json'), JSON.stringify({ id: issued.id, group: 'g1', gateway, notAfter: issued.notAfter.toISOString() }));
    return { dir, notAfter: issued.notAfter.getTime() };
  };

  before(async () => {
    backend = await startEchoBackend();
    gw = await startHubGateway(shortLived());
  });
  after(async () => {
    if (c) await killConnector(c);
    await gw.stop();
    await backend.close();
  });

  it('renews over mutual TLS at two thirds of a short lifetime, keeps serving, and reconnects with the new certificate', async () => {
    const dir = join(tempDir(), 'conn');
    c = startConnector(dir, { gateway: hubUrl(gw), token: token(gw) });
    await waitChannels(gw, 2);
    const first = new X509Certificate(readFileSync(join(dir, 'cert.pem')));
    const firstKey = readFileSync(join(dir, 'key.pem'), 'utf8');
    const lifetime = Date.parse(first.validTo) - Date.parse(first.validFrom) - 60_000;
    assert.ok(Math.abs(lifetime - 60_000) < 2000, `lifetime ${lifetime}`);
    // renewal is due at notAfter - lifetime/3 (about 40 s after enrollment)
    await eventually(() => c.logs().some((l) => l.msg === 'certificate renewed'), 50_000, 200);
    const renewedAt = Date.now();
    const second = new X509Certificate(readFileSync(join(dir, 'cert.pem')));
    assert.notEqual(second.serialNumber, first.serialNumber);
    assert.equal(second.subject, first.subject, 'same connector id and group');
    assert.notEqual(readFileSync(join(dir, 'key.pem'), 'utf8'), firstKey, 'a fresh key pair');
    // (whoever reads a key can act as this connector: the renewal writes them as enrollment does)
    for (const f of ['key.pem', 'key.pem.prev']) if (existsSync(join(dir, f))) assert.equal(statSync(join(dir, f)).mode & 0o777, 0o600, f);
    assert.ok(renewedAt < Date.parse(first.validTo), 'renewed before the old certificate ran out');
    assert.ok(gw.logs.some((l) => l.msg === 'connector certificate renewed' && l.connector === first.subject.match(/CN=([^\n,]+)/)![1]));
    // the channels the connector kept are listed with the new certificate's expiry
    const listed = gw.server.connectorHub!.connectors().find((l) => l.id === first.subject.match(/CN=([^\n,]+)/)![1])!;
    assert.equal(listed.certExpiry, new Date(second.validTo).toISOString());
    // still serving; a reconnect uses the new certificate (the hub reports its expiry)
    assert.equal((await request(`${gw.url}/x`, { headers: { host: 'app.test' } })).status, 200);
    for (const ch of gw.server.connectorHub!.registry.all()) ch.terminate();
    await eventually(() => gw.server.connectorHub!.registry.all().some((ch) => ch.ready && ch.certExpiry.getTime() === Date.parse(second.validTo)), 5000);
    assert.equal((await request(`${gw.url}/y`, { headers: { host: 'app.test' } })).status, 200);
  });

  it('a connector whose clock runs ahead by more than two thirds of the lifetime renews once, not in a loop, and names the clock skew once', async function () {
    // (libfaketime: the connector's clock only, 50 s ahead of the gateway's with a 1m lifetime)
    if (!FAKETIME_LIB) this.skip();
    if (c) await killConnector(c);
    const dir = join(tempDir(), 'conn');
    c = startConnector(dir, { gateway: hubUrl(gw), token: token(gw), env: { LD_PRELOAD: FAKETIME_LIB, FAKETIME: '+50', FAKETIME_DONT_FAKE_MONOTONIC: '1' } });
    await eventually(() => c.logs().some((l) => l.msg === 'certificate renewed'), 20_000, 100);
    const id = idOf(new X509Certificate(readFileSync(join(dir, 'cert.pem'))));
    // (it renewed about 30 times a second, each a certificate the gateway signed)
    await new Promise((r) => setTimeout(r, 8000));
    assert.equal(c.logs().filter((l) => l.msg === 'certificate renewed').length, 1, c.lines.join('\n'));
    assert.equal(gw.logs.filter((l) => l.msg === 'connector certificate renewed' && l.connector === id).length, 1);
    const skew = c.logs().filter((l) => String(l.msg).startsWith('clock skew'));
    assert.equal(skew.length, 1, c.lines.join('\n'));
    assert.equal(skew[0]!.level, 'warn');
    assert.match(String(skew[0]!.msg), /^clock skew: this host's clock is about (49|50|51)s ahead of the gateway's .*check the clock \(NTP\)$/);
    assert.equal(c.child.exitCode, null, 'still running (its certificate is not taken for expired by the fast clock)');
    assert.equal((await request(`${gw.url}/skewed`, { headers: { host: 'app.test' } })).status, 200);
  });

  it('a connector whose clock is behind says once, at error, that its clock is likely behind and by how much, not a warn per redial', async function () {
    if (!FAKETIME_LIB) this.skip();
    if (c) await killConnector(c);
    const dir = join(tempDir(), 'conn');
    const e = await runCli(['connector', 'enroll', '--gateway', hubUrl(gw), '--token', token(gw), '--state-dir', dir]);
    assert.equal(e.code, 0, e.stderr);
    c = startConnector(dir, { args: ['--channels', '1'], env: { LD_PRELOAD: FAKETIME_LIB, FAKETIME: '-2d', FAKETIME_DONT_FAKE_MONOTONIC: '1', DRAWBRIDGE_LOG_LEVEL: 'info' } });
    // (the backoff redials within a few seconds)
    await eventually(() => c.logs().filter((l) => l.msg === 'channel closed; reconnecting').length >= 3, 20_000, 100);
    const said = c.logs().filter((l) => String(l.msg).startsWith("the gateway's certificate is not yet valid"));
    assert.equal(said.length, 1, c.lines.join('\n'));
    assert.equal(said[0]!.level, 'error');
    assert.match(String(said[0]!.msg), /^the gateway's certificate is not yet valid by this host's clock \(\S+\): the local clock is likely behind, by at least (1d23h|2d)\b.*set it right \(NTP\)/);
    assert.ok(!c.logs().some((l) => l.msg === 'channel error'), c.lines.join('\n'));
    await killConnector(c);
  });

  it('a renewal refused while the connector was revoked for a moment is tried again within seconds, before the certificate runs out', async () => {
    if (c) await killConnector(c);
    const dir = join(tempDir(), 'conn');
    c = startConnector(dir, { gateway: hubUrl(gw), token: token(gw) });
    await waitChannels(gw, 2);
    const cert = new X509Certificate(readFileSync(join(dir, 'cert.pem')));
    const notAfter = Date.parse(cert.validTo);
    const renewalAt = notAfter - (notAfter - Date.parse(cert.validFrom) - 60_000) / 3;
    // revoked from just before the renewal is due until just after: the first try is refused
    await new Promise((r) => setTimeout(r, renewalAt - Date.now() - 2000));
    await reconfigure([idOf(cert)]);
    await eventually(() => c.logs().some((l) => l.msg === 'certificate renewal failed; retrying'), 8000, 100);
    await reconfigure([]);
    // the next try comes within a tenth of what is left (a fixed minute came after the expiry)
    await eventually(() => c.logs().some((l) => l.msg === 'certificate renewed'), notAfter - Date.now(), 200);
    assert.ok(Date.now() < notAfter, 'renewed before the certificate ran out');
    await waitChannels(gw, 1, 'g1', 30_000);
    assert.equal((await request(`${gw.url}/after-renewal`, { headers: { host: 'app.test' } })).status, 200);
  });

  it('a connector revoked while it holds back the body of its renewal gets 403, not a certificate', async () => {
    if (c) await killConnector(c);
    const dir = join(tempDir(), 'conn');
    c = startConnector(dir, { gateway: hubUrl(gw), token: token(gw) });
    // (the killed connector's channels may still be listed: wait for this one's own)
    await eventually(() => existsSync(join(dir, 'cert.pem')), 15_000);
    const id = idOf(new X509Certificate(readFileSync(join(dir, 'cert.pem'))));
    await eventually(() => readyChannels(gw).filter((ch) => ch.connectorId === id).length >= 2, 15_000);
    await killConnector(c);
    const kp = await generateKeyPair();
    const body = JSON.stringify({ csr: await createCsr(kp.keys, 'x'), publicKey: kp.publicKeyDer.toString('base64') });
    const hub = new URL(hubUrl(gw));
    let held = () => undefined as void;
    const answered = new Promise<{ status: number; body: Record<string, unknown> }>((resolve, reject) => {
      const req = https.request({ host: hub.hostname, port: hub.port, path: '/v1/renew', method: 'POST', key: readFileSync(join(dir, 'key.pem')), cert: readFileSync(join(dir, 'cert.pem')), ca: readFileSync(join(dir, 'ca.pem')), servername: 'localhost', headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } }, (res) => {
        let text = '';
        res.on('data', (d) => (text += d)).on('end', () => resolve({ status: res.statusCode!, body: JSON.parse(text) }));
      });
      req.on('error', reject);
      // the head goes now (authenticated: not yet revoked); the body after the reload
      req.flushHeaders();
      held = () => req.end(body);
    });
    await new Promise((r) => setTimeout(r, 200));
    await reconfigure([id]);
    held();
    const r = await answered;
    assert.equal(r.status, 403);
    assert.equal(r.body.error, 'ERR_REVOKED');
    assert.ok(!gw.logs.some((l) => l.msg === 'connector certificate renewed' && l.connector === id));
    await reconfigure([]);
  });

  it('a renewal over a connection kept alive past the certificate\'s expiry is refused (403 ERR_CERT_EXPIRED), not turned into a fresh certificate', async () => {
    const hub = gw.server.connectorHub!;
    const held = await generateKeyPair();
    const issued = await hub.ca.issueClient(await createCsr(held.keys, 'x'), held.publicKeyDer, 'g1', 2000);
    const url = new URL(hubUrl(gw));
    const agent = new https.Agent({ keepAlive: true, maxSockets: 1 });
    const tlsOpts = { host: url.hostname, port: url.port, key: held.keyPem, cert: issued.certPem, ca: hub.ca.certPem, servername: 'localhost', agent };
    const send = (method: string, path: string, body?: string) =>
      new Promise<{ status: number; body: string; reused: boolean }>((resolve, reject) => {
        const req = https.request({ ...tlsOpts, method, path, headers: body ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } : {} }, (res) => {
          let text = '';
          res.on('data', (d) => (text += d)).on('end', () => resolve({ status: res.statusCode!, body: text, reused: req.reusedSocket }));
        });
        req.on('error', reject);
        req.end(body);
      });
    try {
      assert.equal((await send('GET', '/v1/ca')).status, 200, 'the certificate was valid when the connection opened');
      // past its notAfter (whole seconds), on the same connection (the hub keeps it 5 s)
      await new Promise((r) => setTimeout(r, issued.notAfter.getTime() - Date.now() + 300));
      const kp = await generateKeyPair();
      const r = await send('POST', '/v1/renew', JSON.stringify({ csr: await createCsr(kp.keys, 'x'), publicKey: kp.publicKeyDer.toString('base64') }));
      assert.ok(r.reused, 'the renewal went over the connection opened before the expiry');
      assert.equal(r.status, 403, r.body);
      assert.equal(JSON.parse(r.body).error, 'ERR_CERT_EXPIRED');
    } finally {
      agent.destroy();
    }
  });

  it('a renewed certificate whose saving stops between the new key and the new certificate leaves a state dir that starts again, on the old certificate, and renews from it', async () => {
    if (c) await killConnector(c);
    const dir = join(tempDir(), 'conn');
    c = startConnector(dir, { gateway: hubUrl(gw), token: token(gw) });
    await waitChannels(gw, 2);
    const first = new X509Certificate(readFileSync(join(dir, 'cert.pem')));
    // the new cert.pem cannot be written (as on a full disk): its temporary name is a directory
    const blocker = join(dir, `cert.pem.tmp-${c.child.pid}`);
    mkdirSync(blocker);
    await eventually(() => c.logs().some((l) => String(l.msg).startsWith('the renewed certificate cannot be saved in ')), 50_000, 200);
    await killConnector(c);
    rmdirSync(blocker);
    assert.ok(Date.now() < Date.parse(first.validTo), 'the old certificate is still valid');
    // restarted, it runs on the certificate it has (it refused: "key.pem is not the key of cert.pem; enroll again")
    c = startConnector(dir);
    await eventually(() => c.logs().some((l) => l.msg === 'certificate renewed') || c.child.exitCode !== null, 15_000, 100);
    assert.equal(c.child.exitCode, null, c.lines.join('\n'));
    assert.ok(c.logs().some((l) => l.msg === 'connector starting' && l.certExpiry === new Date(first.validTo).toISOString()), c.lines.join('\n'));
    const told = c.logs().find((l) => l.level === 'warn' && String(l.msg).includes('a certificate renewal was cut short'));
    assert.equal(told?.msg, `${join(dir, 'key.pem')} is not the key of ${join(dir, 'cert.pem')} (a certificate renewal was cut short): using ${join(dir, 'key.pem.prev')}, its key; the next renewal replaces both`);
    await eventually(() => c.logs().some((l) => l.msg === 'channel open'), 15_000, 100);
    assert.equal((await request(`${gw.url}/after-torn-renewal`, { headers: { host: 'app.test' } })).status, 200);
    // the renewal it made at once (the old certificate is past two thirds) left a pair that starts again
    await killConnector(c);
    const second = new X509Certificate(readFileSync(join(dir, 'cert.pem')));
    assert.notEqual(second.serialNumber, first.serialNumber);
    c = startConnector(dir);
    await eventually(() => c.logs().find((l) => l.msg === 'connector starting'), 10_000, 100);
    assert.equal(c.logs().find((l) => l.msg === 'connector starting')!.certExpiry, new Date(second.validTo).toISOString());
    await eventually(() => c.logs().some((l) => l.msg === 'channel open'), 15_000, 100);
  });

  it('a renewed certificate the state dir does not take is used from memory, said once at error naming the dir, and saved once the dir takes it', async () => {
    if (c) await killConnector(c);
    const dir = join(tempDir(), 'conn');
    c = startConnector(dir, { gateway: hubUrl(gw), token: token(gw), env: { DRAWBRIDGE_SAVE_RETRY_MS: '500' } });
    await eventually(() => existsSync(join(dir, 'cert.pem')), 15_000);
    const first = new X509Certificate(readFileSync(join(dir, 'cert.pem')));
    const firstKey = readFileSync(join(dir, 'key.pem'), 'utf8');
    const id = idOf(first);
    await eventually(() => readyChannels(gw).filter((ch) => ch.connectorId === id).length >= 2, 15_000);
    // nothing can be written in the state dir (as when it is read-only or full): key.pem.prev's temporary name is a directory
    const blocker = join(dir, `key.pem.prev.tmp-${c.child.pid}`);
    mkdirSync(blocker);
    const renewed = (await eventually(() => c.logs().find((l) => l.msg === 'certificate renewed'), 50_000, 200))!;
    assert.equal(renewed.saved, false);
    const certExpiry = String(renewed.certExpiry);
    assert.ok(Date.parse(certExpiry) > Date.parse(first.validTo));
    // a few save retries later: one error line, no further renewal, one certificate minted
    await new Promise((r) => setTimeout(r, 2000));
    const told = c.logs().filter((l) => l.level === 'error');
    assert.equal(told.length, 1, c.lines.join('\n'));
    assert.match(String(told[0]!.reason), /EISDIR/);
    assert.equal(told[0]!.msg, `the renewed certificate cannot be saved in ${dir} (${String(told[0]!.reason)}): this process uses it from memory and keeps trying to save it; a restart now would start from the certificate on disk, valid until ${new Date(first.validTo).toISOString()} (after that, only a new enrollment helps)`);
    assert.equal(gw.logs.filter((l) => l.msg === 'connector certificate renewed' && l.connector === id).length, 1);
    assert.equal(new X509Certificate(readFileSync(join(dir, 'cert.pem'))).serialNumber, first.serialNumber, 'the disk still holds the first certificate');
    // the channels it dials now present the renewed certificate: the listing's expiry is one a process holds
    for (const ch of gw.server.connectorHub!.registry.all()) if (ch.connectorId === id) ch.terminate();
    await eventually(() => readyChannels(gw).some((ch) => ch.connectorId === id && ch.certExpiry.toISOString() === certExpiry), 5000);
    assert.equal((await request(`${gw.url}/unsaved`, { headers: { host: 'app.test' } })).status, 200);
    // the dir takes files again: the renewed pair is saved, and the first certificate's key kept beside it
    rmdirSync(blocker);
    await eventually(() => c.logs().some((l) => l.msg === `the renewed certificate is saved in ${dir} now`), 5000, 100);
    const saved = new X509Certificate(readFileSync(join(dir, 'cert.pem')));
    assert.equal(new Date(saved.validTo).toISOString(), certExpiry);
    assert.ok(saved.checkPrivateKey(createPrivateKey(readFileSync(join(dir, 'key.pem'), 'utf8'))));
    assert.equal(readFileSync(join(dir, 'key.pem.prev'), 'utf8'), firstKey);
    assert.equal(JSON.parse(readFileSync(join(dir, 'connector.json'), 'utf8')).notAfter, certExpiry);
  });

  it('a renewal that fails once the certificate has run out ends the connector at once (exit 1), naming that failure', async () => {
    if (c) await killConnector(c);
    // the gateway is down from before the renewal until past the expiry: nothing listens at its address
    const gone = net.createServer();
    await new Promise<void>((r) => gone.listen(0, '127.0.0.1', r));
    const { port } = gone.address() as net.AddressInfo;
    await new Promise((r) => gone.close(r));
    const { dir, notAfter } = await handMadeStateDir('gateway-gone', 3000, `https://127.0.0.1:${port}`);
    c = startConnector(dir);
    // (it retried every second, forever, while the channels redialled)
    assert.equal(await Promise.race([c.exited, new Promise((r) => setTimeout(() => r('still running'), notAfter - Date.now() + 4000))]), 1);
    const fatal = c.logs().find((l) => l.level === 'fatal');
    assert.ok(fatal, c.lines.join('\n'));
    assert.match(String(fatal.msg), /certificate expired at .* \(its last renewal failed: .*ECONNREFUSED.*\) and the gateway no longer accepts it; .*enroll the connector again/);
    assert.ok(c.logs().filter((l) => l.msg === 'certificate renewal failed; retrying').every((l) => Date.parse(String(l.time)) < notAfter), 'no retry after the expiry');
  });

  it('a connector whose certificate ran out says it must be enrolled again, and exits 1', async () => {
    if (c) await killConnector(c);
    // a state dir whose certificate expired (a connector that was off longer than its lifetime)
    const { dir, notAfter } = await handMadeStateDir('expired', 1000);
    await new Promise((r) => setTimeout(r, Math.max(0, notAfter - Date.now() + 500)));
    c = startConnector(dir);
    assert.equal(await Promise.race([c.exited, new Promise((r) => setTimeout(() => r('still running'), 10_000))]), 1);
    const fatal = c.logs().find((l) => l.level === 'fatal' || l.level === 60);
    assert.ok(fatal, c.lines.join('\n'));
    assert.match(String(fatal.msg), /certificate expired at .* enroll the connector again/);
  });
});
