/**
 * What `drawbridge connector enroll` and `connector run` say when they are pointed at the wrong
 * port, given the wrong file, or find their state dir damaged: one line naming it, no OpenSSL dump.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmodSync, cpSync, existsSync, mkdirSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import type http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import { join } from 'node:path';
import { ConnectorCa, generateKeyPair, pinOf } from '../../src/connector/ca.js';
import { createToken } from '../../src/connector/tokens.js';
import { selfSignedCert } from '../support/certs.js';
import { eventually, tempDir, type TestGateway } from '../support/harness.js';
import { gatewayYaml, hubUrl, killConnector, runCli, startConnector, startEnrolledHub, startHubGateway, token, type EnrolledHub } from './support.js';

/** connector.json with some fields changed, as an operator's editor leaves it */
function editState(state: string, fields: Record<string, unknown>): void {
  const file = join(state, 'connector.json');
  writeFileSync(file, JSON.stringify({ ...JSON.parse(readFileSync(file, 'utf8')), ...fields }, null, 2));
}

describe('connector enrollment and run messages', function () {
  this.timeout(30_000);
  let hub: EnrolledHub;
  let gw: TestGateway;
  let dir: string;
  let enrolled: string;

  before(async () => {
    hub = await startEnrolledHub();
    ({ gw, dir, enrolled } = hub);
  });
  after(async () => hub?.stop());

  it('says a plain-http port is not a TLS endpoint, not "wrong version number"', async () => {
    const plain = gw.url.replace(/^http:/, 'https:');
    const r = await runCli(['connector', 'enroll', '--gateway', plain, '--token', token(gw), '--state-dir', join(dir, 'plain')]);
    assert.equal(r.code, 1);
    assert.equal(r.stderr, `drawbridge connector enroll: ${plain} is not a TLS endpoint (it answered in plain text): is this the connectors.listen port?\n`);
  });

  it('says a port that closes the connection during the TLS handshake is likely not the connectors endpoint, in one line (it was a stack trace)', async () => {
    const closer = net.createServer((s) => s.end());
    await new Promise<void>((r) => closer.listen(0, '127.0.0.1', r));
    try {
      const at = `https://127.0.0.1:${(closer.address() as net.AddressInfo).port}`;
      const r = await runCli(['connector', 'enroll', '--gateway', at, '--token', token(gw), '--state-dir', join(dir, 'closer')]);
      assert.equal(r.code, 1);
      assert.equal(r.stderr, `drawbridge connector enroll: cannot enroll at ${at}: the connection was closed before the TLS handshake finished: is this the connectors.listen endpoint?\n`);
    } finally {
      closer.close();
    }
  });

  it('says a --ca file holds no PEM certificate', async () => {
    const ca = join(dir, 'notpem.txt');
    writeFileSync(ca, 'this is not a certificate\n');
    const r = await runCli(['connector', 'enroll', '--gateway', hubUrl(gw), '--token', token(gw), '--state-dir', join(dir, 'ca'), '--ca', ca]);
    assert.equal(r.code, 1);
    assert.equal(r.stderr, `drawbridge connector enroll: ${ca} holds no PEM certificate (a -----BEGIN CERTIFICATE----- block): give the CA certificate of the gateway's connectors listener\n`);
  });

  it("says which CA --ca must be when it is another one (the public listener's, say)", async () => {
    const other = await ConnectorCa.loadOrCreate(join(dir, 'other-ca'));
    const ca = join(dir, 'other-ca.pem');
    writeFileSync(ca, other.certPem);
    const r = await runCli(['connector', 'enroll', '--gateway', hubUrl(gw), '--token', token(gw), '--state-dir', join(dir, 'other'), '--ca', ca]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^drawbridge connector enroll: cannot enroll at https:\/\/[^ ]+: the certificate is not trusted \([^)]+\): --ca must be the gateway's connector CA, the ca\.pem in its stateDir's connectors\/ folder, not the CA of its public listener\n$/);
  });

  it('takes --gateway http://... and a malformed URL as bad usage alike (exit 2)', async () => {
    const http = hubUrl(gw).replace(/^https:/, 'http:');
    const a = await runCli(['connector', 'enroll', '--gateway', http, '--token', token(gw), '--state-dir', join(dir, 'http')]);
    const b = await runCli(['connector', 'enroll', '--gateway', 'not a url', '--token', token(gw), '--state-dir', join(dir, 'http')]);
    assert.equal(a.code, 2, a.stderr);
    assert.equal(b.code, 2, b.stderr);
    assert.match(a.stderr, new RegExp(`^drawbridge connector enroll: --gateway must be https://host:port \\(the connectors\\.listen endpoint speaks TLS only\\), not "${http}"\\nusage: `));
    assert.match(b.stderr, /^drawbridge connector enroll: --gateway must be a URL like https:\/\/host:port .*not "not a url"\nusage: /);
    // both with the usage of enroll, not the generic one
    for (const r of [a, b]) assert.match(r.stderr, /\nusage: drawbridge connector enroll /);
  });

  it('connector run logs a channel to a plain-http port as not a TLS endpoint', async () => {
    const state = join(tempDir(), 'state');
    cpSync(enrolled, state, { recursive: true });
    const plain = gw.url.replace(/^http:/, 'https:');
    const json = JSON.parse(readFileSync(join(state, 'connector.json'), 'utf8'));
    writeFileSync(join(state, 'connector.json'), JSON.stringify({ ...json, gateway: plain }));
    const c = startConnector(state, { args: ['--channels', '1'] });
    try {
      const log = await eventually(() => c.logs().find((l) => l.msg === 'channel error'), 10_000, 50);
      assert.equal(log!.reason, `${plain} is not a TLS endpoint (it answered in plain text): is this the connectors.listen port?`);
    } finally {
      await killConnector(c);
    }
  });

  for (const transport of ['h2', 'websocket']) {
    it(`${transport}: connector run says once, at error, that the gateway's certificate is of another CA than the one it enrolled with, and exits 1 when that lasts`, async () => {
      // another gateway (its own stateDir, so its own connector CA) where this connector dials:
      // what a rotated CA, a lost stateDir or a name now pointing elsewhere look like from here
      const other = await startHubGateway(gatewayYaml(hub.backend));
      const state = join(tempDir(), 'state');
      cpSync(enrolled, state, { recursive: true });
      const json = JSON.parse(readFileSync(join(state, 'connector.json'), 'utf8'));
      writeFileSync(join(state, 'connector.json'), JSON.stringify({ ...json, gateway: hubUrl(other) }));
      const c = startConnector(state, { args: ['--transport', transport], env: { DRAWBRIDGE_FOREIGN_CA_EXIT_MS: '3000' } });
      try {
        // (it redialled forever, a warn per dial: "self-signed certificate in certificate chain")
        assert.equal(await Promise.race([c.exited, new Promise((r) => setTimeout(() => r('still running'), 15_000))]), 1, c.lines.join('\n'));
        const pin = pinOf(readFileSync(join(state, 'ca.pem'), 'utf8'));
        const said = `the certificate of the gateway at ${hubUrl(other)} is not signed by the CA this connector enrolled with (${join(state, 'ca.pem')}, pin ${pin})`;
        const errors = c.logs().filter((l) => l.level === 'error');
        assert.deepEqual(
          errors.map((l) => l.msg),
          [`${said}: the gateway's connector CA changed (rotated, or its stateDir replaced) or this is not the gateway it enrolled with; enroll the connector again with a new token (an empty --state-dir); it exits if this lasts 3 s`],
        );
        assert.ok(c.logs().filter((l) => l.msg === 'channel closed; reconnecting').length >= 2, 'it redialled with its backoff meanwhile');
        assert.ok(!c.logs().some((l) => l.msg === 'channel error'), c.lines.join('\n'));
        const fatal = c.logs().find((l) => l.level === 'fatal');
        const fatalMsg = String(fatal?.msg);
        assert.ok(fatalMsg.startsWith(`${said} (at every handshake since `), fatalMsg);
        assert.ok(fatalMsg.endsWith(': this connector cannot reach it again; enroll the connector again (a new token, an empty --state-dir)'), fatalMsg);
      } finally {
        await killConnector(c);
        await other.stop();
      }
    });
  }

  it('connector run warns at start when key.pem can be read or written by group or others, naming the file, its mode and the chmod; not at 0600', async () => {
    const open = join(tempDir(), 'open');
    cpSync(enrolled, open, { recursive: true });
    chmodSync(join(open, 'key.pem'), 0o644);
    const shut = join(tempDir(), 'shut');
    cpSync(enrolled, shut, { recursive: true });
    chmodSync(join(shut, 'key.pem'), 0o600);
    // (readable by its group alone is readable by others than the connector too)
    const grouped = join(tempDir(), 'grouped');
    cpSync(enrolled, grouped, { recursive: true });
    chmodSync(join(grouped, 'key.pem'), 0o640);
    const a = startConnector(open, { args: ['--channels', '1'] });
    const b = startConnector(shut, { args: ['--channels', '1'] });
    const g = startConnector(grouped, { args: ['--channels', '1'] });
    try {
      for (const c of [a, b, g]) await eventually(() => c.logs().some((l) => l.msg === 'channel open'), 10_000, 50);
      const key = join(open, 'key.pem');
      const warned = a.logs().filter((l) => l.level === 'warn' && l.file === key);
      assert.deepEqual(warned.map((l) => [l.mode, l.msg]), [['0644', `${key} can be read by its group and other users (mode 0644): whoever reads it can act as this connector and receive its apps' traffic; run chmod 600 ${key}`]]);
      assert.deepEqual(b.logs().filter((l) => l.level === 'warn'), []);
      const groupKey = join(grouped, 'key.pem');
      assert.deepEqual(g.logs().filter((l) => l.level === 'warn' && l.file === groupKey).map((l) => l.mode), ['0640']);
    } finally {
      await killConnector(a);
      await killConnector(b);
      await killConnector(g);
    }
  });

  it('a used-token list the gateway cannot write: 503, retry later, logged at error naming the file; the token stays usable', async () => {
    const used = join(gw.server.connectorHub!.stateDir, 'connectors', 'used-tokens.jsonl');
    rmSync(used, { force: true });
    mkdirSync(used);
    const t = token(gw);
    const state = join(tempDir(), 'state');
    try {
      const r = await runCli(['connector', 'enroll', '--gateway', hubUrl(gw), '--token', t, '--state-dir', state]);
      assert.equal(r.code, 1, r.stderr);
      assert.equal(r.stderr, 'drawbridge connector enroll: enrollment refused (503): the gateway could not record the enrollment; retry later\n');
      const log = await eventually(() => gw.logs.find((l) => l.code === 'ERR_ENROLLMENT_NOT_RECORDED'));
      assert.equal(log!.level, 50);
      assert.equal(log!.file, used);
      assert.equal(log!.msg, `could not record a used enrollment token in ${used}: ${used} is a directory, not a file; the enrollment was not completed (503)`);
    } finally {
      rmSync(used, { recursive: true });
    }
    const again = await runCli(['connector', 'enroll', '--gateway', hubUrl(gw), '--token', t, '--state-dir', state]);
    assert.equal(again.code, 0, again.stderr);
  });

  it('enroll into a state dir that cannot be written says so, naming the dir and the cause, before the token is spent', async function () {
    const t = token(gw);
    const enrolledBefore = gw.logs.filter((l) => l.msg === 'connector enrolled').length;
    const afile = join(tempDir(), 'afile');
    writeFileSync(afile, 'not a dir\n');
    const r = await runCli(['connector', 'enroll', '--gateway', hubUrl(gw), '--token', t, '--state-dir', afile]);
    assert.equal(r.code, 1, r.stderr);
    assert.equal(r.stderr, `drawbridge connector enroll: the state dir ${afile} cannot be written (a file stands where a directory belongs); nothing was sent to the gateway, and the token is unused\n`);
    // a read-only file system (as root, a mode cannot stop a write): it read "no such file or directory"
    const mnt = join(tempDir(), 'ro');
    mkdirSync(mnt);
    try {
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m,ro', 'tmpfs', mnt], { stdio: 'ignore' });
    } catch {
      this.skip(); // (not root, or no mount here)
    }
    try {
      for (const state of [mnt, join(mnt, 'c1')]) {
        const ro = await runCli(['connector', 'enroll', '--gateway', hubUrl(gw), '--token', t, '--state-dir', state]);
        assert.equal(ro.code, 1, ro.stderr);
        assert.equal(ro.stderr, `drawbridge connector enroll: the state dir ${state} cannot be written (read-only file system); nothing was sent to the gateway, and the token is unused\n`);
      }
    } finally {
      execFileSync('umount', [mnt]);
    }
    assert.equal(gw.logs.filter((l) => l.msg === 'connector enrolled').length, enrolledBefore, 'no connector was enrolled');
    const state = join(tempDir(), 'state');
    const again = await runCli(['connector', 'enroll', '--gateway', hubUrl(gw), '--token', t, '--state-dir', state]);
    assert.equal(again.code, 0, `the token is still usable: ${again.stderr}`);
  });

  it('enroll whose certificate cannot be saved once the gateway issued it names the connector id to revoke, and leaves no temporary files', async () => {
    const state = join(tempDir(), 'state');
    mkdirSync(join(state, 'cert.pem'), { recursive: true });
    const r = await runCli(['connector', 'enroll', '--gateway', hubUrl(gw), '--token', token(gw), '--state-dir', state]);
    assert.equal(r.code, 1, r.stderr);
    const id = (await eventually(() => gw.logs.filter((l) => l.msg === 'connector enrolled').at(-1)?.connector as string | undefined))!;
    assert.equal(r.stderr, `drawbridge connector enroll: connector ${id} was enrolled at the gateway, but its certificate cannot be saved in ${state} (${join(state, 'cert.pem')}: a directory stands where a file belongs): revoke ${id} (connectors.revoked on the gateway) and enroll again with a new token\n`);
    assert.deepEqual(readdirSync(state).filter((f) => f.includes('.tmp-')), []);
  });

  const damaged: [string, string, (state: string) => Promise<void> | void, RegExp][] = [
    ['a corrupt key.pem', 'key.pem', (s) => writeFileSync(join(s, 'key.pem'), '-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n'), /key\.pem is not a readable PEM private key \(.+\); enroll again in an empty --state-dir$/],
    ['a cert.pem cut short', 'cert.pem', (s) => writeFileSync(join(s, 'cert.pem'), '-----BEGIN CERTIFICATE-----\nMIIB\n'), /cert\.pem is not a readable PEM certificate \(.+\); enroll again in an empty --state-dir$/],
    ['a key.pem of another key pair', 'key.pem', async (s) => writeFileSync(join(s, 'key.pem'), (await generateKeyPair()).keyPem), /key\.pem is not the key of .*cert\.pem; enroll again in an empty --state-dir$/],
    // Node's EISDIR names no path: "a path names a directory where a file belongs"
    ['a key.pem that is a directory', 'key.pem', (s) => (rmSync(join(s, 'key.pem')), mkdirSync(join(s, 'key.pem'))), /key\.pem is a directory, not a PEM private key; enroll again in an empty --state-dir$/],
    ['a cert.pem that is a directory', 'cert.pem', (s) => (rmSync(join(s, 'cert.pem')), mkdirSync(join(s, 'cert.pem'))), /cert\.pem is a directory, not a PEM certificate; enroll again in an empty --state-dir$/],
    ['a ca.pem that is a directory', 'ca.pem', (s) => (rmSync(join(s, 'ca.pem')), mkdirSync(join(s, 'ca.pem'))), /ca\.pem is a directory, not a PEM certificate; enroll again in an empty --state-dir$/],
    ['a connector.json that is a directory', 'connector.json', (s) => (rmSync(join(s, 'connector.json')), mkdirSync(join(s, 'connector.json'))), /connector\.json is a directory, not a JSON file; enroll again in an empty --state-dir$/],
    // it fell back to the system roots and retried a failing handshake forever
    ['no ca.pem', 'ca.pem', (s) => rmSync(join(s, 'ca.pem')), /ca\.pem is missing \(the connector CA the gateway's certificate is checked against\); enroll again in an empty --state-dir$/],
      // taken for an empty state dir: "holds no enrollment" (exit 2), or with --token, "the enrollment token was already used"
    ['no key.pem', 'key.pem', (s) => rmSync(join(s, 'key.pem')), /key\.pem is missing; enroll again in an empty --state-dir$/],
    ['no cert.pem', 'cert.pem', (s) => rmSync(join(s, 'cert.pem')), /cert\.pem is missing; enroll again in an empty --state-dir$/],
    ['a cert.pem linked to nothing', 'cert.pem', (s) => (rmSync(join(s, 'cert.pem')), symlinkSync(join(s, 'gone.pem'), join(s, 'cert.pem'))), /cert\.pem is a symbolic link to .*gone\.pem, which does not exist; enroll again in an empty --state-dir$/],
    // a hand-edited connector.json ended in a stack trace, or in `not a URL: "/v1/tunnel"` naming no file
    ['a connector.json whose gateway is http://', 'connector.json', (s) => editState(s, { gateway: 'http://127.0.0.1:1' }), /connector\.json: "gateway" must be https:\/\/host:port \(the connectors\.listen endpoint it enrolled with\), not "http:\/\/127\.0\.0\.1:1"; enroll again in an empty --state-dir$/],
    ['a connector.json whose gateway has no scheme', 'connector.json', (s) => editState(s, { gateway: '127.0.0.1:1' }), /connector\.json: "gateway" must be https:\/\/host:port .*not "127\.0\.0\.1:1"; enroll again in an empty --state-dir$/],
    ['a connector.json of null', 'connector.json', (s) => writeFileSync(join(s, 'connector.json'), 'null\n'), /connector\.json: holds null, not the enrollment's JSON object; enroll again in an empty --state-dir$/],
    ['a connector.json of {}', 'connector.json', (s) => writeFileSync(join(s, 'connector.json'), '{}\n'), /connector\.json: "id" is missing; enroll again in an empty --state-dir$/],
  ];

  it('connector run with --gateway and --token on a state dir that lost key.pem names it, not "the enrollment token was already used"', async () => {
    const state = join(tempDir(), 'state');
    cpSync(enrolled, state, { recursive: true });
    rmSync(join(state, 'key.pem'));
    const r = await runCli(['connector', 'run', '--state-dir', state, '--gateway', hubUrl(gw), '--token', token(gw)]);
    assert.equal(r.code, 1, r.stderr);
    assert.equal(r.stderr, `drawbridge connector run: ${join(state, 'key.pem')} is missing; enroll again in an empty --state-dir\n`);
  });

  for (const [what, file, damage, said] of damaged) {
    it(`connector run names ${file} when the state dir holds ${what}, before it starts`, async () => {
      const state = join(tempDir(), 'state');
      cpSync(enrolled, state, { recursive: true });
      await damage(state);
      const r = await runCli(['connector', 'run', '--state-dir', state]);
      assert.equal(r.code, 1, r.stderr);
      assert.doesNotMatch(r.stdout + r.stderr, /connector starting/);
      const lines = r.stderr.trimEnd().split('\n');
      assert.equal(lines.length, 1, r.stderr);
      assert.ok(lines[0]!.startsWith(`drawbridge connector run: ${join(state, file)}`) || lines[0]!.includes(join(state, file)), r.stderr);
      assert.match(lines[0]!, said);
    });
  }
});

describe('connector enrollment against a gateway whose answers are broken', function () {
  this.timeout(30_000);
  let server: https.Server;
  let url: string;
  let pin: string;
  let answer: (res: http.ServerResponse, cert: string) => void;
  /** the path `answer` answers; /v1/ca otherwise gets the certificate */
  let scripted: string;
  const dir = tempDir();

  before(async () => {
    // (a scripted TLS server: the real gateway gives none of these answers, which a broken deployment
    // in front of it can; the token's pin names its certificate, so the connector trusts it)
    const c = selfSignedCert(dir, 'fake-gateway', ['127.0.0.1']);
    pin = pinOf(c.certPem);
    server = https.createServer({ key: readFileSync(c.key), cert: c.certPem }, (req, res) => {
      if (req.url !== scripted) return void res.end(c.certPem);
      req.resume();
      req.on('end', () => answer(res, c.certPem));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    url = `https://127.0.0.1:${(server.address() as net.AddressInfo).port}`;
  });
  after(() => {
    server.closeAllConnections();
    server.close();
  });

  const enroll = (name: string) => runCli(['connector', 'enroll', '--gateway', url, '--token', createToken(dir, 'g1', 60_000, pin), '--state-dir', join(dir, name)]);
  const json = (res: http.ServerResponse, body: unknown) => res.writeHead(200, { 'content-type': 'application/json' }).end(typeof body === 'string' ? body : JSON.stringify(body));

  for (const [what, path, script, said] of [
    ['GET /v1/ca answered with no certificate', '/v1/ca', (res) => res.end('hello'), /answered GET \/v1\/ca with something that is no PEM certificate \("hello"\): is it the connectors\.listen endpoint\?; nothing was sent to the gateway, and the token is unused$/],
    ['GET /v1/ca cut short', '/v1/ca', (res) => { res.write('-----BEGIN'); setTimeout(() => res.socket!.destroy(), 50); }, /cannot enroll at https:\/\/127\.0\.0\.1:\d+: the answer to \/v1\/ca was cut short$/],
    ['the enrollment answer cut short', '/v1/enroll', (res) => { res.writeHead(200, { 'content-type': 'application/json', 'content-length': 1000 }).write('{"id":'); setTimeout(() => res.socket!.destroy(), 50); }, /: the answer to \/v1\/enroll was cut short$/],
    ['no answer at all to the enrollment', '/v1/enroll', (res) => res.socket!.destroy(), /: the connection was closed before an answer came$/],
    ['200 with a body that is not JSON', '/v1/enroll', (res) => json(res, 'not json'), /answered the enrollment with no usable "id" \(null\): nothing was saved; it took the token, so make a new one$/],
    ['200 with {}', '/v1/enroll', (res) => json(res, {}), /answered the enrollment with no usable "id"/],
    ['200 with a certificate of another key', '/v1/enroll', (res, cert) => json(res, { id: 'c-0123456789abcdef', group: 'g1', notAfter: new Date(Date.now() + 3600_000).toISOString(), cert }), /answered the enrollment with a certificate of another key than this connector's: nothing was saved; it took the token, so make a new one \(and revoke c-0123456789abcdef should it be listed\)$/],
  ] as [string, string, typeof answer, RegExp][]) {
    it(`says so in one line, exit 1, and leaves no state dir: ${what}`, async () => {
      answer = script;
      scripted = path;
      const r = await enroll(what.replace(/\W+/g, '-'));
      assert.equal(r.code, 1, r.stderr);
      assert.match(r.stderr.trimEnd(), said);
      assert.equal(r.stderr.trimEnd().split('\n').length, 1, r.stderr);
      assert.equal(existsSync(join(dir, what.replace(/\W+/g, '-'))), false);
    });
  }
});
