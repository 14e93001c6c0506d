import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import tls from 'node:tls';
import { join } from 'node:path';
import { ConnectorCa, createCsr, generateKeyPair } from '../../src/connector/ca.js';
import { CHANNEL_TRANSPORTS, dialChannel, type ChannelTransport } from '../../src/connector/channelLink.js';
import { createToken } from '../../src/connector/tokens.js';
import { eventually, request, startEchoBackend, tempDir, type EchoBackend, type TestGateway } from '../support/harness.js';
import { gatewayYaml, hubUrl, killConnector, runCli, startConnector, startHubGateway, token, waitChannels, type ConnectorProcess } from './support.js';

function post(gw: TestGateway, path: string, body: unknown): Promise<{ status: number; body: Record<string, any> }> {
  const hub = gw.server.connectorHub!;
  const [host, port] = [hub.address()!.split(':')[0], Number(hub.address()!.split(':')[1])];
  return new Promise((resolve, reject) => {
    const text = typeof body === 'string' ? body : JSON.stringify(body);
    const req = https.request({ host, port, path, method: 'POST', ca: hub.ca.certPem, agent: false, headers: { 'content-type': 'application/json' } }, (res) => {
      let t = '';
      res.on('data', (c) => (t += c));
      res.on('end', () => resolve({ status: res.statusCode!, body: JSON.parse(t) }));
    });
    req.on('error', reject);
    req.end(text);
  });
}

/** 101 when the hub accepts the channel over that transport, else the status it refused it with */
function channelStatus(gw: TestGateway, tls: { key?: string; cert?: string }, transport: ChannelTransport): Promise<number> {
  return new Promise((resolve, reject) => {
    const hub = gw.server.connectorHub!;
    const link = dialChannel({ gateway: `https://${hub.address()}`, transport, ...tls, ca: hub.ca.certPem, headers: {}, handshakeTimeoutMs: 5000 });
    link.on('refused', resolve);
    link.on('open', () => {
      resolve(101);
      link.terminate();
    });
    link.on('error', reject);
  });
}

function refusedCodes(gw: TestGateway): string[] {
  return gw.logs.filter((l) => String(l.msg).startsWith('connector request refused') || String(l.msg).startsWith('connector channel refused')).map((l) => String(l.code));
}

describe('connector enrollment, mutual TLS and revocation', function () {
  this.timeout(40_000);
  let backend: EchoBackend;
  let gw: TestGateway;
  let dir: string;
  const procs: ConnectorProcess[] = [];

  before(async () => {
    backend = await startEchoBackend();
  });
  beforeEach(async () => {
    dir = tempDir();
    gw = await startHubGateway(gatewayYaml(backend), dir);
  });
  afterEach(async () => {
    for (const p of procs.splice(0)) await killConnector(p);
    await gw.stop();
  });
  after(() => backend.close());

  it('enrolls end to end with the CLI (token create, connector enroll, run) and serves the app through the tunnel', async () => {
    const t = await runCli(['token', 'create', '--group', 'g1', '--ttl', '10m', '--config', gw.configFile]);
    assert.equal(t.code, 0, t.stderr);
    const tok = t.stdout.trim();
    assert.match(tok, /^dbt1\./);
    const state = join(dir, 'conn');
    const e = await runCli(['connector', 'enroll', '--gateway', hubUrl(gw), '--token', tok, '--state-dir', state]);
    assert.equal(e.code, 0, e.stderr);
    assert.match(e.stdout, /enrolled connector c-[0-9a-f]+ in group g1/);
    assert.equal(statSync(join(state, 'key.pem')).mode & 0o777, 0o600);
    const cert = new X509Certificate(readFileSync(join(state, 'cert.pem')));
    const ca = new X509Certificate(gw.server.connectorHub!.ca.certPem);
    assert.ok(cert.verify(ca.publicKey), 'the client certificate is signed by the connector CA');
    assert.match(cert.subject, /OU=g1/);
    // the private key never left: the certificate carries the key made locally
    assert.ok(cert.checkPrivateKey((await import('node:crypto')).createPrivateKey(readFileSync(join(state, 'key.pem')))));

    // the same command line serves every restart: --gateway and --token of the enrolled gateway say nothing
    const c = startConnector(state, { gateway: hubUrl(gw), token: tok });
    procs.push(c);
    await waitChannels(gw, 2);
    assert.ok(!c.logs().some((l) => /ignored/.test(String(l.msg))), c.lines.join('\n'));
    const res = await request(`${gw.url}/hello?x=1`, { headers: { host: 'app.test' } });
    assert.equal(res.status, 200);
    assert.equal(res.json().url, '/hello?x=1');
    assert.equal(backend.received.at(-1)!.url, '/hello?x=1');

    const admin = await request(`${gw.adminUrl}/connectors`);
    const list = admin.json().connectors;
    assert.equal(list.length, 1);
    assert.equal(list[0].group, 'g1');
    assert.equal(list[0].channels, 2);
    assert.equal(list[0].version, '0.1.0');
    assert.match(list[0].certExpiry, /^\d{4}-/);

    // a --gateway other than the one it enrolled with (the gateway moved) is not used, and the log says so
    await killConnector(c);
    procs.splice(procs.indexOf(c), 1);
    const moved = startConnector(state, { gateway: 'https://gateway.moved.test:8444', token: tok });
    procs.push(moved);
    const warned = await eventually(() => moved.logs().find((l) => /--gateway https:\/\/gateway\.moved\.test:8444 ignored/.test(String(l.msg)))).catch(() => assert.fail(moved.lines.join('\n')));
    await waitChannels(gw, 2);
    assert.equal(new URL(String(warned!.enrolledWith)).origin, new URL(hubUrl(gw)).origin);

    const cli = await runCli(['connectors', '--config', gw.configFile]);
    // the CLI reads the admin address from the config; ours is ephemeral, so use --json against a config pointing at it
    const cfg2 = join(dir, 'admin-view.yaml');
    writeFileSync(cfg2, readFileSync(gw.configFile, 'utf8').replace('admin: { listen: 127.0.0.1:0 }', `admin: { listen: ${gw.adminUrl!.slice(7)} }`));
    const cli2 = await runCli(['connectors', '--config', cfg2]);
    assert.equal(cli2.code, 0, cli2.stderr + cli.stderr);
    assert.match(cli2.stdout, /ID\s+GROUP\s+VERSION\s+ADDRESS\s+TRANSPORT\s+CHANNELS\s+IN-FLIGHT\s+LAST SEEN\s+CERT EXPIRY/);
    assert.match(cli2.stdout, new RegExp(`${list[0].id}\\s+g1\\s+0\\.1\\.0\\s+127\\.0\\.0\\.1:\\d+\\s+h2\\s+2\\s+\\d+\\s+\\d{4}-`));
  });

  it('refuses a reused token, also after a gateway restart', async () => {
    const tok = token(gw);
    const first = await runCli(['connector', 'enroll', '--gateway', hubUrl(gw), '--token', tok, '--state-dir', join(dir, 'a')]);
    assert.equal(first.code, 0, first.stderr);
    const again = await runCli(['connector', 'enroll', '--gateway', hubUrl(gw), '--token', tok, '--state-dir', join(dir, 'b')]);
    assert.notEqual(again.code, 0);
    assert.match(again.stderr, /already used/);
    await gw.stop();
    gw = await startHubGateway(readFileSync(gw.configFile, 'utf8'), dir);
    const afterRestart = await runCli(['connector', 'enroll', '--gateway', hubUrl(gw), '--token', tok, '--state-dir', join(dir, 'c')]);
    assert.notEqual(afterRestart.code, 0);
    assert.match(afterRestart.stderr, /already used/);
    assert.deepEqual(refusedCodes(gw), ['ERR_TOKEN_USED']);
  });

  it('refuses wrong, expired and damaged tokens and a CSR whose key differs from the announced one, leaving the token usable', async () => {
    const hub = gw.server.connectorHub!;
    const kp = await generateKeyPair();
    const other = await generateKeyPair();
    const csr = await createCsr(kp.keys, 'x');
    const publicKey = kp.publicKeyDer.toString('base64');

    const foreign = createToken(tempDir(), 'g1', 60_000, hub.ca.pin);
    assert.equal((await post(gw, '/v1/enroll', { token: foreign, csr, publicKey })).body.error, 'ERR_TOKEN_SIGNATURE');
    const expired = createToken(hub.stateDir, 'g1', -1000, hub.ca.pin);
    assert.equal((await post(gw, '/v1/enroll', { token: expired, csr, publicKey })).body.error, 'ERR_TOKEN_EXPIRED');
    assert.equal((await post(gw, '/v1/enroll', { token: 'dbt1.garbage.x', csr, publicKey })).body.error, 'ERR_TOKEN_MALFORMED');
    assert.equal((await post(gw, '/v1/enroll', 'not json')).status, 400);

    const good = token(gw);
    const mismatch = await post(gw, '/v1/enroll', { token: good, csr, publicKey: other.publicKeyDer.toString('base64') });
    assert.equal(mismatch.status, 400);
    assert.equal(mismatch.body.error, 'ERR_CSR_KEY_MISMATCH');
    assert.equal((await post(gw, '/v1/enroll', { token: good, csr: 'garbage', publicKey })).body.error, 'ERR_CSR_INVALID');
    // nothing changed: the same token still enrolls once
    const ok = await post(gw, '/v1/enroll', { token: good, csr, publicKey });
    assert.equal(ok.status, 200);
    assert.match(ok.body.cert, /BEGIN CERTIFICATE/);
    assert.deepEqual(refusedCodes(gw), ['ERR_TOKEN_SIGNATURE', 'ERR_TOKEN_EXPIRED', 'ERR_TOKEN_MALFORMED', 'ERR_BAD_REQUEST', 'ERR_CSR_KEY_MISMATCH', 'ERR_CSR_INVALID']);
  });

  it('a flood of made-up enrollment requests writes one log line, and a refusal of a signed token still gets its own', async () => {
    await gw.stop();
    gw = await startHubGateway(readFileSync(gw.configFile, 'utf8'), dir);
    for (let i = 0; i < 100; i += 10) await Promise.all(Array.from({ length: 10 }, () => post(gw, '/v1/enroll', { token: `dbt1.forged${i}.x` })));
    assert.equal((await post(gw, '/v1/nowhere', {})).status, 404);
    const expired = createToken(gw.server.connectorHub!.stateDir, 'g1', -1000, gw.server.connectorHub!.ca.pin);
    assert.equal((await post(gw, '/v1/enroll', { token: expired })).body.error, 'ERR_TOKEN_EXPIRED');
    // one line for each kind of made-up request (its code), not one per request
    assert.deepEqual(refusedCodes(gw), ['ERR_TOKEN_MALFORMED', 'ERR_TOKEN_EXPIRED']);
    assert.equal(gw.logs.find((l) => l.code === 'ERR_TOKEN_MALFORMED')!.msg, 'connector request refused (from a client with no valid token or certificate)');
  });

  it('a used token, or a revoked connector\'s certificate, sent in a loop: one line per token or connector, not one per request', async () => {
    const kp = await generateKeyPair();
    const csr = await createCsr(kp.keys, 'x');
    const publicKey = kp.publicKeyDer.toString('base64');
    const lines = (code: string) => gw.logs.filter((l) => l.code === code);
    const usedBefore = lines('ERR_TOKEN_USED').length;
    for (const [n, repeats] of [[0, 40], [1, 5]]) {
      const used = token(gw);
      assert.equal((await post(gw, '/v1/enroll', { token: used, csr, publicKey })).status, 200, `token ${n}`);
      for (let i = 0; i < repeats; i += 10) {
        const answers = await Promise.all(Array.from({ length: 10 }, () => post(gw, '/v1/enroll', { token: used, csr, publicKey })));
        // each still gets its refusal; only the log is spared
        assert.deepEqual([...new Set(answers.map((a) => `${a.status} ${a.body.error}`))], ['400 ERR_TOKEN_USED']);
      }
    }
    // the same token spelled another way (the checks trim it) is the same token
    const last = token(gw);
    assert.equal((await post(gw, '/v1/enroll', { token: last, csr, publicKey })).status, 200);
    for (let i = 1; i <= 10; i++) assert.equal((await post(gw, '/v1/enroll', { token: ' '.repeat(i) + last, csr, publicKey })).body.error, 'ERR_TOKEN_USED');
    assert.equal(lines('ERR_TOKEN_USED').length - usedBefore, 3, 'a line for each of the three tokens');
    assert.equal(lines('ERR_TOKEN_USED').at(-1)!.msg, 'connector request refused: the enrollment token was already used');

    const hub = gw.server.connectorHub!;
    const issued = await hub.ca.issueClient(csr, kp.publicKeyDer, 'g1', 3600_000);
    writeFileSync(gw.configFile, gatewayYaml(backend, '', '', [issued.id]));
    assert.equal(await gw.server.reload('test'), 'success');
    const revokedBefore = lines('ERR_REVOKED').length;
    for (let i = 0; i < 20; i++) assert.equal(await channelStatus(gw, { key: kp.keyPem, cert: issued.certPem }, CHANNEL_TRANSPORTS[i % CHANNEL_TRANSPORTS.length]!), 403);
    assert.equal(lines('ERR_REVOKED').length - revokedBefore, 1);
    assert.match(String(lines('ERR_REVOKED').at(-1)!.msg), /^connector channel refused: connector c-.* is revoked$/);
    writeFileSync(gw.configFile, gatewayYaml(backend));
    assert.equal(await gw.server.reload('test'), 'success');
  });

  it('one token, two enrollments at once: exactly one certificate; an oversized body gets 413', async () => {
    const kp = await generateKeyPair();
    const body = { token: token(gw), csr: await createCsr(kp.keys, 'x'), publicKey: kp.publicKeyDer.toString('base64') };
    const both = await Promise.all([post(gw, '/v1/enroll', body), post(gw, '/v1/enroll', body)]);
    assert.deepEqual(both.map((r) => r.status).sort(), [200, 400]);
    assert.equal(both.find((r) => r.status === 400)!.body.error, 'ERR_TOKEN_USED');
    const big = await post(gw, '/v1/enroll', { ...body, token: token(gw), padding: 'x'.repeat(1 << 20) });
    assert.equal(big.status, 413);
    assert.equal(big.body.error, 'ERR_BODY_TOO_LARGE');
    // the gateway still enrolls
    assert.equal((await post(gw, '/v1/enroll', { ...body, token: token(gw) })).status, 200);
  });

  it('a body far over the limit, sent in full before reading: the client gets its 413 and a clean close, not a reset under its upload', async () => {
    const hub = gw.server.connectorHub!;
    const [host, port] = hub.address()!.split(':');
    for (let i = 0; i < 3; i++) {
      const seen = await new Promise<{ answer: string; error?: string; sent: number }>((resolve) => {
        const sock = tls.connect({ host, port: Number(port), ca: hub.ca.certPem, servername: 'localhost' });
        const size = 10 << 20;
        const chunk = Buffer.alloc(64 << 10, 'x');
        let answer = '';
        let sent = 0;
        let error: string | undefined;
        sock.on('data', (c: Buffer) => (answer += c.toString('latin1')));
        sock.on('error', (e: NodeJS.ErrnoException) => (error = e.code ?? e.message));
        sock.on('close', () => resolve({ answer, error, sent }));
        sock.once('secureConnect', () => {
          sock.write(`POST /v1/enroll HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: ${size}\r\n\r\n`);
          const more = () => {
            while (sent < size && !sock.destroyed) {
              sent += chunk.length;
              if (!sock.write(chunk)) return void sock.once('drain', more);
            }
          };
          more();
        });
      });
      assert.equal(seen.error, undefined, `round ${i}: the connection was cut after ${seen.sent} bytes`);
      assert.match(seen.answer, /^HTTP\/1\.1 413 /);
      assert.match(seen.answer, /ERR_BODY_TOO_LARGE/);
    }
  });

  it('mutual TLS: refuses channels without a certificate or with one from another CA; renewal needs a valid certificate too', async () => {
    const foreignCa = await ConnectorCa.loadOrCreate(tempDir());
    const kp = await generateKeyPair();
    const issued = await foreignCa.issueClient(await createCsr(kp.keys, 'x'), kp.publicKeyDer, 'g1', 3600_000);
    for (const transport of CHANNEL_TRANSPORTS) {
      assert.equal(await channelStatus(gw, { key: kp.keyPem, cert: issued.certPem }, transport), 403, transport);
      assert.equal(await channelStatus(gw, {}, transport), 403, transport);
    }
    const renew = await post(gw, '/v1/renew', { csr: await createCsr(kp.keys, 'x'), publicKey: kp.publicKeyDer.toString('base64') });
    assert.equal(renew.status, 403);
    // Anyone can be refused this way: one line a minute per kind (channel, request), the rest counted
    // into the next line. The reason tells a client that sent no certificate from one with a foreign one.
    const refused = gw.logs.filter((l) => l.code === 'ERR_NOT_AUTHENTICATED');
    assert.deepEqual(
      refused.map((l) => `${String(l.msg).split(' (')[0]}: ${String(l.reason).replace(/\(.*\)/, (m) => (m === '(none presented)' ? m : '(foreign)'))}`),
      ['connector channel refused: no valid connector certificate (foreign)', 'connector request refused: no valid connector certificate (none presented)'],
    );
    // a certificate from our CA is accepted
    const mine = await gw.server.connectorHub!.ca.issueClient(await createCsr(kp.keys, 'x'), kp.publicKeyDer, 'g1', 3600_000);
    for (const transport of CHANNEL_TRANSPORTS) assert.equal(await channelStatus(gw, { key: kp.keyPem, cert: mine.certPem }, transport), 101, transport);
  });

  it('revocation by reload closes the live channels within a second and refuses reconnects (the id as written, in any letter case)', async () => {
    const c = startConnector(join(dir, 'r'), { gateway: hubUrl(gw), token: token(gw) });
    procs.push(c);
    const chans = await waitChannels(gw, 2);
    const id = chans[0].connectorId;
    assert.equal((await request(`${gw.url}/before`, { headers: { host: 'app.test' } })).status, 200);
    // written in capitals, as a copy from a ticket might be: it revoked nothing
    writeFileSync(gw.configFile, gatewayYaml(backend, '', '', [id.toUpperCase().replace('C-', 'c-')]));
    const t0 = Date.now();
    assert.equal(await gw.server.reload('test'), 'success');
    await eventually(() => gw.server.connectorHub!.registry.all().length === 0, 1000, 10);
    assert.ok(Date.now() - t0 < 1000);
    const res = await request(`${gw.url}/after`, { headers: { host: 'app.test' } });
    assert.equal(res.status, 504);
    assert.match(res.body, /Gateway time-out|can't be accessed/i);
    await eventually(() => gw.logs.some((l) => l.code === 'ERR_REVOKED'), 5000);
    await eventually(() => c.logs().some((l) => /refused this connector/.test(String(l.msg))), 5000);
    assert.equal(gw.server.connectorHub!.registry.all().length, 0);
  });
});
