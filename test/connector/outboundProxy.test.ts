import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { createToken } from '../../src/connector/tokens.js';
import { proxyFor, proxySettingFrom } from '../../src/gateway/outboundProxy.js';
import { UsageError } from '../../src/errors.js';
import { eventually, freePort, request, startEchoBackend, tempDir, type EchoBackend, type TestGateway } from '../support/harness.js';
import { FAKETIME_LIB } from '../support/faketime.js';
import { startMitmproxy, startTinyproxy, startTlsProxy, type Tinyproxy } from '../support/proxies.js';
import { gatewayYaml, hubUrl, killConnector, runCli, startConnector, startHubGateway, token, waitChannels, type ConnectorProcess } from './support.js';

const hubAuthority = (gw: TestGateway) => gw.server.connectorHub!.address()!;

describe('connector through an outbound HTTP proxy', function () {
  this.timeout(60_000);
  let backend: EchoBackend;
  let gw: TestGateway;
  let proxy: Tinyproxy;
  let dir: string;
  const procs: ConnectorProcess[] = [];

  before(async () => {
    backend = await startEchoBackend();
  });
  beforeEach(async () => {
    dir = tempDir();
    gw = await startHubGateway(gatewayYaml(backend), dir);
    proxy = await startTinyproxy({ user: 'relay', password: 'pass-w0rd' });
  });
  afterEach(async () => {
    for (const p of procs.splice(0)) await killConnector(p);
    await proxy.stop();
    await gw.stop();
  });
  after(async () => {
    await backend.close();
  });


  for (const transport of ['h2', 'websocket']) {
    it(`enrolls, opens its channels and serves requests through the proxy HTTPS_PROXY names (${transport})`, async () => {
      const conn = startConnector(join(dir, 'c'), { gateway: hubUrl(gw), token: token(gw), args: ['--transport', transport], env: { HTTPS_PROXY: proxy.url } });
      procs.push(conn);
      await waitChannels(gw, 2);
      const res = await request(`http://127.0.0.1:${gw.port}/through-proxy`, { headers: { host: 'app.test' } });
      assert.equal(res.status, 200);
      assert.ok(backend.received.some((r) => r.url === '/through-proxy'));
      // the CA fetch (the token's pin), the enrollment and both channels each asked the proxy for the hub
      const connects = proxy.connects();
      assert.ok(connects.filter((c) => c === hubAuthority(gw)).length >= 4, `CONNECTs: ${connects.join(', ')}`);
      assert.deepEqual([...new Set(connects)], [hubAuthority(gw)]);
      // (the connector's log is written asynchronously)
      const said = await eventually(() => conn.logs().find((l) => l.msg === 'reaching the gateway through an HTTP proxy'));
      assert.equal(said?.proxy, `http://127.0.0.1:${proxy.port}`);
      assert.equal(said?.from, 'HTTPS_PROXY');
      // the password is in the URL the operator gave, and nowhere in what the connector says
      assert.ok(!conn.lines.some((l) => l.includes('pass-w0rd')), 'the proxy password was logged');
    });
  }

  it('enrolls and serves through an https:// proxy whose CA NODE_EXTRA_CA_CERTS gives, and names an untrusted one', async () => {
    const tlsProxy = await startTlsProxy(proxy);
    try {
      const untrusted = await runCli(['connector', 'enroll', '--gateway', hubUrl(gw), '--token', token(gw), '--state-dir', join(dir, 'untrusted'), '--proxy', tlsProxy.url]);
      assert.equal(untrusted.code, 1, untrusted.stderr);
      assert.match(untrusted.stderr, new RegExp(`the proxy https://127\\.0\\.0\\.1:\\d+ \\(--proxy\\) presented a certificate this host does not trust \\(DEPTH_ZERO_SELF_SIGNED_CERT\\): give Node its CA with NODE_EXTRA_CA_CERTS`));
      const before = proxy.connects().length;
      const conn = startConnector(join(dir, 'c'), { gateway: hubUrl(gw), token: token(gw), args: ['--proxy', tlsProxy.url], env: { NODE_EXTRA_CA_CERTS: tlsProxy.caFile } });
      procs.push(conn);
      await waitChannels(gw, 2);
      const res = await request(`http://127.0.0.1:${gw.port}/through-https-proxy`, { headers: { host: 'app.test' } });
      assert.equal(res.status, 200);
      // (socat carries the TLS to the proxy; tinyproxy behind it logs the CONNECTs)
      assert.ok(proxy.connects().slice(before).filter((c) => c === hubAuthority(gw)).length >= 4, proxy.connects().join(', '));
    } finally {
      await tlsProxy.stop();
    }
  });

  it('redials through the proxy when the proxy restarts', async () => {
    const conn = startConnector(join(dir, 'c'), { gateway: hubUrl(gw), token: token(gw), args: ['--proxy', proxy.url, '--channels', '1'], env: { DRAWBRIDGE_CHANNEL_PING_MS: '300' } });
    procs.push(conn);
    const [before] = await waitChannels(gw, 1);
    await proxy.stop();
    await eventually(() => !gw.server.connectorHub!.registry.all().includes(before!), 10_000, 50);
    const asked = proxy.connects().length;
    await proxy.restart();
    await waitChannels(gw, 1, 'g1', 30_000);
    assert.ok(proxy.connects().length > asked, 'the channel came back without the proxy');
    const res = await request(`http://127.0.0.1:${gw.port}/after-restart`, { headers: { host: 'app.test' } });
    assert.equal(res.status, 200);
  });

  it('renews its certificate through the proxy', async function () {
    // (libfaketime, as in renewal.test.ts: the connector's clock 50 s ahead and a 1m lifetime, so it renews at once)
    if (!FAKETIME_LIB) this.skip();
    await gw.stop();
    gw = await startHubGateway(gatewayYaml(backend).replace('  listen: 127.0.0.1:0\n', '  listen: 127.0.0.1:0\n  certificateLifetime: 1m\n'), dir);
    const conn = startConnector(join(dir, 'c'), { gateway: hubUrl(gw), token: token(gw), args: ['--proxy', proxy.url, '--channels', '1'], env: { LD_PRELOAD: FAKETIME_LIB, FAKETIME: '+50', FAKETIME_DONT_FAKE_MONOTONIC: '1' } });
    procs.push(conn);
    await eventually(() => gw.logs.some((l) => l.msg === 'connector certificate renewed'), 20_000, 100);
    // the CA fetch, the enrollment, the channel and the renewal: each a CONNECT to the hub
    await eventually(() => proxy.connects().filter((c) => c === hubAuthority(gw)).length >= 4, 5000, 50);
  });

  it('says which proxy refused and why, leaves no state dir, and keeps the token unused', async () => {
    const t = token(gw);
    const state = join(dir, 'refused');
    const base = ['connector', 'enroll', '--gateway', hubUrl(gw), '--token', t, '--state-dir', state];
    const wrong = await runCli([...base, '--proxy', `http://relay:nope@127.0.0.1:${proxy.port}`]);
    assert.equal(wrong.code, 1, wrong.stderr);
    assert.match(wrong.stderr, new RegExp(`cannot enroll at https://${hubAuthority(gw)}: the proxy http://127\\.0\\.0\\.1:${proxy.port} refused CONNECT ${hubAuthority(gw)}: 401 Unauthorized: it does not take the user and password in the proxy URL\\n$`));
    assert.ok(!wrong.stderr.includes('nope'), 'the password was printed');
    const none = await runCli([...base, '--proxy', `http://127.0.0.1:${proxy.port}`]);
    assert.equal(none.code, 1, none.stderr);
    assert.match(none.stderr, /refused CONNECT \S+: 407 Proxy Authentication Required: give its user and password in the proxy URL/);
    const dead = await freePort();
    const unreachable = await runCli([...base, '--proxy', `http://127.0.0.1:${dead}`]);
    assert.equal(unreachable.code, 1, unreachable.stderr);
    assert.match(unreachable.stderr, new RegExp(`cannot reach the proxy http://127\\.0\\.0\\.1:${dead} \\(--proxy\\): ECONNREFUSED`));
    assert.equal(existsSync(state), false, 'a refused enrollment left its state dir');
    // nothing reached the gateway: the same token still enrolls
    const ok = await runCli([...base, '--proxy', proxy.url]);
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, /^enrolled connector c-/);
  });

  it('dials the gateway directly when NO_PROXY covers it, and through the proxy when it does not', async () => {
    const dead = `http://127.0.0.1:${await freePort()}`;
    const enroll = (name: string, env: Record<string, string>) => runCli(['connector', 'enroll', '--gateway', hubUrl(gw), '--token', token(gw), '--state-dir', join(dir, name)], env);
    const covered = await enroll('covered', { HTTPS_PROXY: dead, NO_PROXY: 'example.test, 127.0.0.0/8' });
    assert.equal(covered.code, 0, covered.stderr);
    const otherPort = await enroll('other-port', { https_proxy: dead, no_proxy: '127.0.0.1:1' });
    assert.equal(otherPort.code, 1);
    assert.match(otherPort.stderr, /cannot reach the proxy http:\/\/127\.0\.0\.1:\d+ \(https_proxy\): ECONNREFUSED/);
    // an explicit --proxy is used whatever NO_PROXY says
    const explicit = await runCli(['connector', 'enroll', '--gateway', hubUrl(gw), '--token', token(gw), '--state-dir', join(dir, 'explicit'), '--proxy', proxy.url], { NO_PROXY: '*' });
    assert.equal(explicit.code, 0, explicit.stderr);
    assert.ok(proxy.connects().includes(hubAuthority(gw)));
  });

  it('refuses a proxy setting that is no http(s):// proxy URL as usage (exit 2), before making the state dir', async () => {
    const state = join(dir, 'never');
    const base = ['connector', 'run', '--gateway', hubUrl(gw), '--token', token(gw), '--state-dir', state];
    for (const [args, env, said] of [
      [['--proxy', 'ftp://127.0.0.1:3128'], {}, /--proxy must be an http:\/\/ or https:\/\/ proxy \(one that takes CONNECT\), not ftp:\/\//],
      [['--proxy', 'socks5://127.0.0.1:1080'], {}, /--proxy must be an http:\/\/ or https:\/\/ proxy \(one that takes CONNECT\), not socks5:\/\//],
      [['--proxy', 'http://127.0.0.1:3128/path'], {}, /--proxy must be the proxy's address alone \(http:\/\/host:port\), without a path or query/],
      [[], { HTTPS_PROXY: 'http://exa mple:80' }, /HTTPS_PROXY must be a proxy URL like http:\/\/proxy\.example:3128, not "http:\/\/exa mple:80"/],
    ] as const) {
      const r = await runCli([...base, ...args], env);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, said);
      assert.match(r.stderr, /usage: drawbridge connector run/);
    }
    assert.equal(existsSync(state), false);
  });
});

describe('connector through a proxy that inspects TLS', function () {
  this.timeout(60_000);
  let backend: EchoBackend;
  let gw: TestGateway;
  let dir: string;
  const stops: (() => Promise<void>)[] = [];

  before(async () => {
    backend = await startEchoBackend();
    dir = tempDir();
    gw = await startHubGateway(gatewayYaml(backend), dir);
  });
  after(async () => {
    for (const stop of stops.splice(0)) await stop();
    await gw.stop();
    await backend.close();
  });

  const enrollments = () => gw.logs.filter((l) => String(l.msg).startsWith('connector enrolled')).length;

  it('refuses to enroll through it, sends it no token, says why, and the token stays good', async () => {
    const mitm = await startMitmproxy({ insecureUpstream: true });
    stops.push(mitm.stop);
    const t = token(gw);
    const state = join(dir, 'inspected');
    const before = enrollments();
    const r = await runCli(['connector', 'enroll', '--gateway', hubUrl(gw), '--token', t, '--state-dir', state, '--proxy', mitm.url]);
    assert.equal(r.code, 1, r.stderr);
    assert.match(
      r.stderr,
      new RegExp(`^drawbridge connector enroll: the gateway at ${hubUrl(gw).replace(/\./g, '\\.')} presented a certificate that the connector CA named by the token's pin did not sign \\([^)]+\\): something between this host and the gateway answers for it; if the proxy ${mitm.url.replace(/\./g, '\\.')} inspects TLS, exempt ${hubAuthority(gw).replace(/\./g, '\\.')} from inspection \\(a connector's path cannot be inspected\\); nothing was sent to the gateway, and the token is unused\\n$`),
    );
    assert.equal(existsSync(state), false);
    assert.equal(enrollments(), before);
    const direct = await runCli(['connector', 'enroll', '--gateway', hubUrl(gw), '--token', t, '--state-dir', state]);
    assert.equal(direct.code, 0, direct.stderr);
  });

  it('an enrolled connector opens no channel through it and names it in its error', async () => {
    const mitm = await startMitmproxy({ insecureUpstream: true });
    stops.push(mitm.stop);
    const state = join(dir, 'enrolled');
    const e = await runCli(['connector', 'enroll', '--gateway', hubUrl(gw), '--token', token(gw), '--state-dir', state]);
    assert.equal(e.code, 0, e.stderr);
    const conn = startConnector(state, { args: ['--proxy', mitm.url, '--channels', '1'] });
    stops.push(() => killConnector(conn));
    const said = await eventually(() => conn.logs().find((l) => l.level === 'error' && String(l.msg).startsWith('the certificate of the gateway at')), 15_000, 100);
    assert.match(String(said!.msg), new RegExp(`the proxy ${mitm.url.replace(/\./g, '\\.')} inspects TLS \\(exempt the gateway's address from inspection`));
    assert.equal(gw.server.connectorHub!.registry.all().length, 0, 'a channel opened through the inspecting proxy');
  });

  it('a proxy that answers GET /v1/ca itself (it cannot verify the gateway) is named, in one line, not a stack trace', async () => {
    const mitm = await startMitmproxy();
    stops.push(mitm.stop);
    const r = await runCli(['connector', 'enroll', '--gateway', hubUrl(gw), '--token', token(gw), '--state-dir', join(dir, 'ca-fetch'), '--proxy', mitm.url]);
    assert.equal(r.code, 1, r.stderr);
    assert.equal(r.stderr, `drawbridge connector enroll: the gateway at ${hubUrl(gw)} answered GET /v1/ca with 502, not its connector CA: is it the connectors.listen endpoint? (or the proxy ${mitm.url} answered for it); nothing was sent to the gateway, and the token is unused\n`);
  });
});

describe('outbound proxy settings', () => {
  const gateway = 'https://gw.corp.example:8443';
  const chosen = (env: NodeJS.ProcessEnv, to = gateway, flag?: string) => proxyFor(to, proxySettingFrom(flag, env))?.display;

  it('reads https_proxy before HTTPS_PROXY, a bare host:port as http://, port 80 by default', () => {
    assert.equal(chosen({ HTTPS_PROXY: 'http://upper:3128', https_proxy: 'http://lower:3128' }), 'http://lower:3128');
    assert.equal(chosen({ HTTPS_PROXY: 'proxy.corp:8080' }), 'http://proxy.corp:8080');
    assert.equal(chosen({ HTTPS_PROXY: 'http://proxy.corp' }), 'http://proxy.corp:80');
    assert.equal(chosen({ HTTPS_PROXY: 'http://[fd00::1]:3128' }), 'http://[fd00::1]:3128');
    assert.equal(chosen({}), undefined);
    assert.equal(chosen({ HTTPS_PROXY: '' }), undefined);
  });

  it('sends the URL credentials as Basic, decoded, and never shows them', () => {
    const p = proxySettingFrom('http://svc%40corp:p%3Ass@proxy.corp:3128', {})!.proxy;
    assert.equal(p.authorization, `Basic ${Buffer.from('svc@corp:p:ss').toString('base64')}`);
    assert.equal(p.display, 'http://proxy.corp:3128');
    assert.equal(p.from, '--proxy');
  });

  it('bypasses the proxy for the hosts, domains, ranges and ports NO_PROXY lists', () => {
    const cases: [string, string, boolean][] = [
      ['*', gateway, true],
      ['corp.example', gateway, true],
      ['.corp.example', gateway, true],
      ['*.corp.example', gateway, true],
      ['gw.corp.example', gateway, true],
      ['GW.CORP.EXAMPLE', gateway, true],
      ['orp.example', gateway, false],
      ['other.example, gw.corp.example:8443', gateway, true],
      ['gw.corp.example:443', gateway, false],
      ['10.0.0.0/8', 'https://10.1.2.3:8443', true],
      ['10.0.0.0/8', 'https://11.1.2.3:8443', false],
      ['10.1.2.3', 'https://10.1.2.3', true],
      ['10.1.2.3:443', 'https://10.1.2.3', true],
      ['[fd00::1]:8443', 'https://[fd00::1]:8443', true],
      ['fd00::/16', 'https://[fd00::1]:8443', true],
      ['fd00::1', 'https://[fd00::2]:8443', false],
      ['localhost', gateway, false],
    ];
    for (const [noProxy, to, bypass] of cases) {
      const p = chosen({ HTTPS_PROXY: 'http://proxy.corp:3128', NO_PROXY: noProxy }, to);
      assert.equal(p === undefined, bypass, `NO_PROXY=${noProxy} for ${to}`);
    }
    assert.equal(chosen({ https_proxy: 'http://proxy.corp:3128', no_proxy: 'corp.example' }), undefined);
    // --proxy is the operator's explicit choice: NO_PROXY does not undo it
    assert.equal(chosen({ NO_PROXY: '*' }, gateway, 'http://proxy.corp:3128'), 'http://proxy.corp:3128');
  });

  it('takes an https:// proxy (TLS to the proxy itself), port 443 by default', () => {
    const p = proxySettingFrom('https://proxy.corp', {})!.proxy;
    assert.equal(p.tls, true);
    assert.equal(p.display, 'https://proxy.corp:443');
    assert.equal(proxySettingFrom('http://proxy.corp:3128', {})!.proxy.tls, false);
  });

  it('refuses what is no http:// or https:// proxy, naming where it came from', () => {
    assert.throws(() => proxySettingFrom(undefined, { https_proxy: 'socks5://proxy.corp' }), (e: Error) => e instanceof UsageError && /^https_proxy must be an http:\/\/ or https:\/\/ proxy/.test(e.message));
    assert.throws(() => proxySettingFrom('http://proxy.corp:3128/?x=1', {}), /without a path or query/);
    assert.throws(() => proxySettingFrom('http://:3128', {}), /must be a proxy URL|names no proxy host/);
    assert.throws(() => proxySettingFrom('http://svc:pass word@proxy corp:3128', {}), (e: Error) => e.message === '--proxy must be a proxy URL like http://proxy.example:3128, not "http://[credentials]@proxy corp:3128"');
    assert.throws(() => proxySettingFrom('http://svc:50%zz@proxy.corp:3128', {}), (e: Error) => e instanceof UsageError && e.message === '--proxy: the user or password in the proxy URL is not valid percent-encoding (write % as %25)');
  });
});

describe('a proxy whose answer to CONNECT is not one', function () {
  this.timeout(30_000);
  let server: net.Server;
  let answer: (socket: net.Socket) => void;
  let port: number;

  before(async () => {
    // (scripted answers no real proxy gives: the bad input the connector must refuse in one line)
    server = net.createServer((s) => {
      sockets.add(s);
      s.on('error', () => undefined);
      s.once('data', () => answer(s));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    port = (server.address() as net.AddressInfo).port;
  });
  const sockets = new Set<net.Socket>();
  after(async () => {
    for (const s of sockets) s.destroy();
    await new Promise<void>((r) => server.close(() => r()));
  });

  const enroll = () => runCli(['connector', 'enroll', '--gateway', 'https://gw.corp.example:8443', '--token', createToken(tempDir(), 'g1', 60_000, 'A'.repeat(43)), '--state-dir', join(tempDir(), 'c'), '--proxy', `http://127.0.0.1:${port}`]);

  for (const [what, send, said] of [
    ['no HTTP status line', (s: net.Socket) => s.end('SSH-2.0-OpenSSH_9.2\r\n\r\n'), /answered CONNECT with "SSH-2\.0-OpenSSH_9\.2", not an HTTP status/],
    ['a head that never ends', (s: net.Socket) => s.write('HTTP/1.1 200 OK\r\n' + 'X-Filler: y\r\n'.repeat(2000)), /answered CONNECT with more than 16 KiB of head/],
    ['a close before the head ends', (s: net.Socket) => s.end('HTTP/1.1 200 Connection established\r\n'), /closed the connection before it answered CONNECT gw\.corp\.example:8443/],
    ['a 502 from the proxy', (s: net.Socket) => s.end('HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n'), /refused CONNECT gw\.corp\.example:8443: 502 Bad Gateway$/m],
    // (a 1xx is no tunnel: TLS through it went to a proxy that never said yes)
    ['a 1xx answer in place of a 2xx', (s: net.Socket) => s.end('HTTP/1.1 100 Continue\r\n\r\n'), /refused CONNECT gw\.corp\.example:8443: 100 Continue$/m],
    ['bytes after its 200, before the connector spoke', (s: net.Socket) => s.write('HTTP/1.1 200 Connection established\r\n\r\nHTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n'), /the proxy http:\/\/127\.0\.0\.1:\d+ sent 47 bytes after its answer to CONNECT gw\.corp\.example:8443, before anything was sent through the tunnel/],
    ['200 and then plain text instead of TLS', (s: net.Socket) => {
      s.write('HTTP/1.1 200 Connection established\r\n\r\n');
      s.once('data', () => s.write('HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n'));
    }, /https:\/\/gw\.corp\.example:8443 is not a TLS endpoint \(it answered in plain text\)/],
    ['200 and then a close instead of TLS', (s: net.Socket) => s.end('HTTP/1.1 200 Connection established\r\n\r\n'), /cannot enroll at https:\/\/gw\.corp\.example:8443: the connection was closed before the TLS handshake finished: is this the connectors.listen endpoint\?/],
  ] as const) {
    it(`says so in one line, exit 1: ${what}`, async () => {
      answer = send;
      const r = await enroll();
      assert.equal(r.code, 1, r.stderr);
      assert.match(r.stderr, said);
      assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    });
  }

  it('a proxy that accepts and never answers is given up after 15 s', async function () {
    this.timeout(40_000);
    answer = () => undefined;
    const r = await enroll();
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /the proxy http:\/\/127\.0\.0\.1:\d+ did not answer CONNECT gw\.corp\.example:8443 within 15 s/);
  });
});
