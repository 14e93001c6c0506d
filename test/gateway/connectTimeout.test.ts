/**
 * backendTimeout bounds the whole wait for an app, connecting included: an
 * https app that accepts the TCP connection and never answers the TLS
 * handshake got its 504 after the connect timeout of the layer below (10 s),
 * whatever backendTimeout said. Direct and through a connector, for requests
 * and WebSocket upgrades. Through a connector it waited twice backendTimeout
 * (the socket's idle timer was deferred once), or the tunnel pool's own 4 s.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import http from 'node:http';
import net from 'node:net';
import { join } from 'node:path';
import tls from 'node:tls';
import { ConnectorCa } from '../../src/connector/ca.js';
import { request, tempDir } from '../support/harness.js';
import { gatewayYaml, hubUrl, killConnector, startConnector, startHubGateway, token, waitChannels, type ConnectorProcess } from '../connector/support.js';
import type { TestGateway } from '../support/harness.js';

/** The same app twice, direct (direct<x>.test) and through the connector group g1 (tunnelled<x>.test), with a 2 s backendTimeout. */
function appPair(name: string, url: string, extra = ''): string {
  const host = name ? `-${name.toLowerCase()}` : '';
  const app = (via: 'Direct' | 'Tunnelled', group: string) => `  - name: ${via}${name}
    externalUrl: http://${via.toLowerCase()}${host}.test/
    internalUrl: ${url}/
${group}    preAuth: passthrough
    backendTimeout: 2s
    websockets: true
${extra}`;
  return app('Direct', '') + app('Tunnelled', '    connectorGroup: g1\n');
}

describe('upstream: backendTimeout covers connecting to the app', function () {
  this.timeout(30_000);
  let silent: net.Server;
  let mute: tls.Server;
  let blackhole: ChildProcess;
  let gw: TestGateway;
  let conn: ConnectorProcess;
  const held = new Set<net.Socket>();

  before(async () => {
    // takes connections and says nothing: a TLS handshake to it never completes
    // (the sockets they take are held, and closed after the tests)
    const hold = (s: net.Socket) => {
      held.add(s);
      s.on('error', () => undefined);
      s.on('close', () => held.delete(s));
    };
    silent = net.createServer(hold);
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    const url = `https://127.0.0.1:${(silent.address() as net.AddressInfo).port}`;
    // completes the TLS handshake, then never answers the request
    const leaf = await (await ConnectorCa.loadOrCreate(tempDir())).issueServer(['127.0.0.1']);
    mute = tls.createServer({ key: leaf.keyPem, cert: leaf.certPem }, hold);
    await new Promise<void>((r) => mute.listen(0, '127.0.0.1', r));
    const muteUrl = `https://127.0.0.1:${(mute.address() as net.AddressInfo).port}`;
    // A TCP connect to it hangs: a stopped process's listen queue (backlog 1; Node makes 0 its
    // default of 511), once full, drops further SYNs.
    blackhole = spawn(process.execPath, ['-e', `require('net').createServer().listen({ port: 0, host: '127.0.0.1', backlog: 1 }, function () { console.log(this.address().port) })`]);
    const holePort = await new Promise<number>((r) => blackhole.stdout!.once('data', (d: Buffer) => r(Number(String(d).trim()))));
    blackhole.kill('SIGSTOP');
    for (let i = 0; i < 3; i++) {
      const c = net.connect(holePort, '127.0.0.1');
      c.on('error', () => undefined);
      held.add(c);
    }
    await new Promise((r) => setTimeout(r, 300));
    const probe = net.connect(holePort, '127.0.0.1');
    held.add(probe.on('error', () => undefined));
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(probe.readyState, 'opening', 'a connect to the blackhole must hang');
    gw = await startHubGateway(
      gatewayYaml(
        { url: 'http://127.0.0.1:1' },
        '',
        [
          appPair('', url),
          appPair('Mute', muteUrl, '    backend: { tls: { verify: false } }\n'),
          appPair('Hole', `http://127.0.0.1:${holePort}`),
        ].join(''),
      ),
    );
    conn = startConnector(join(gw.dir, 'conn'), { gateway: hubUrl(gw), token: token(gw), args: ['--channels', '1'] });
    await waitChannels(gw, 1);
  });
  after(async () => {
    await killConnector(conn);
    await gw?.stop();
    for (const s of held) s.destroy();
    blackhole?.kill('SIGKILL');
    await new Promise((r) => silent.close(r));
    await new Promise((r) => mute.close(r));
  });

  // 2 s, not 1: the direct upstream's timers have a coarse tick (a 1 s limit fired after up to 1.5 s)
  const inTime = (ms: number) => assert.ok(ms >= 1900 && ms < 3500, `answered after ${ms} ms, not about 2 s`);

  const cases = [
    ['direct', 'a TLS handshake the app never answers', 'direct.test'],
    ['through a connector', 'a TLS handshake the app never answers', 'tunnelled.test'],
    ['direct', 'a request the app takes over TLS and never answers', 'direct-mute.test'],
    ['through a connector', 'a request the app takes over TLS and never answers', 'tunnelled-mute.test'],
    ['direct', 'a TCP connect the app never answers', 'direct-hole.test'],
    ['through a connector', 'a TCP connect the app never answers', 'tunnelled-hole.test'],
  ] as const;
  for (const [via, what, host] of cases) {
    it(`${via}: ${what} is a 504 after backendTimeout (2 s), not after 4 or 10 s`, async () => {
      const t0 = Date.now();
      const res = await request(`${gw.url}/`, { headers: { host, accept: 'application/json' } });
      const ms = Date.now() - t0;
      assert.equal(res.status, 504, res.body);
      assert.match(res.body, /did not answer in time/);
      inTime(ms);
    });

    it(`${via}: ${what}, as a WebSocket upgrade: 504 after backendTimeout too`, async () => {
      const t0 = Date.now();
      const status = await new Promise<number>((resolve, reject) => {
        const req = http.request(`${gw.url}/ws`, { headers: { host, connection: 'Upgrade', upgrade: 'websocket', 'sec-websocket-version': '13', 'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==' } });
        req.on('response', (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        });
        req.on('upgrade', (_res, socket) => {
          socket.destroy();
          reject(new Error('upgraded'));
        });
        req.on('error', reject);
        req.end();
      });
      assert.equal(status, 504);
      inTime(Date.now() - t0);
    });
  }

  // The client sends its whole body; the app takes the connection and never reads it.
  for (const [via, host] of [['direct', 'direct-mute.test'], ['through a connector', 'tunnelled-mute.test']] as const) {
    it(`${via}: an https app that never reads a 12 MiB upload is a 504 after backendTimeout, not twice it`, async () => {
      const t0 = Date.now();
      const status = await new Promise<number>((resolve, reject) => {
        const req = http.request(`${gw.url}/upload`, { method: 'POST', headers: { host, accept: 'application/json', 'content-length': String(12 << 20) } });
        req.on('response', (res) => {
          // the gateway answers before it has read the whole upload: the rest is not sent
          // (writing on would meet the reset after the response let go of the socket)
          resolve(res.statusCode ?? 0);
          req.destroy();
        });
        req.on('socket', (socket) => socket.on('error', () => undefined));
        req.on('error', reject);
        req.end(Buffer.alloc(12 << 20, 97));
      });
      assert.equal(status, 504);
      inTime(Date.now() - t0);
    });
  }
});
