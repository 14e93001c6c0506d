/**
 * Stopping the real `drawbridge gateway` process: SIGTERM drains (in-flight requests finish, new
 * connections are refused, idle keep-alive connections close), a second signal exits at once.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { join } from 'node:path';
import { eventually, reachedApp, request, sleep, spawnGateway, startEchoBackend, tempDir, type EchoBackend, type GatewayProcess } from '../support/harness.js';

const cfg = (backend: string) => `
gateway:
  publicUrl: http://gw.test
  listen: { http: 127.0.0.1:0 }
apps:
  - name: Echo
    externalUrl: http://echo.test/
    internalUrl: ${backend}/
    preAuth: passthrough
    websockets: true
`;

interface Started {
  child: GatewayProcess['child'];
  port: number;
  exit: GatewayProcess['exited'];
  output: () => string;
}

async function startGatewayProcess(backend: EchoBackend): Promise<Started> {
  const file = join(tempDir(), 'gateway.config.yaml');
  writeFileSync(file, cfg(backend.url));
  const gw = spawnGateway(file);
  return { child: gw.child, port: await gw.port(), exit: gw.exited, output: gw.output };
}

/**
 * GET on a fresh keep-alive connection; resolves with status, body and when the answer ended,
 * and `closed`, when the gateway ended that connection.
 */
function slowGet(port: number, ms: number): Promise<{ status: number; body: string; at: number; closed: Promise<number> }> {
  return new Promise((resolve, reject) => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const req = http.get({ host: '127.0.0.1', port, path: `/slow?ms=${ms}`, headers: { host: 'echo.test' }, agent }, (res) => {
      const closed = new Promise<number>((r) => res.socket.once('close', () => r(Date.now())));
      let body = '';
      res.on('data', (c) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode!, body, at: Date.now(), closed }));
      res.on('error', reject);
    });
    req.on('error', reject);
  });
}

describe('drawbridge gateway: stopping', function () {
  this.timeout(30_000);
  let backend: EchoBackend;
  before(async () => (backend = await startEchoBackend()));
  after(() => backend.close());

  it('SIGTERM lets a request in flight finish with 200, refuses new connections, closes idle ones, exits 0', async () => {
    const gw = await startGatewayProcess(backend);
    // An idle keep-alive connection, open before the signal.
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const warm = await request(`http://127.0.0.1:${gw.port}/`, { headers: { host: 'echo.test' }, agent });
    assert.equal(warm.status, 200);
    const idle = Object.values(agent.freeSockets).flat()[0]!;
    assert.ok(idle, 'the warm-up left an idle keep-alive connection');
    const idleClosed = new Promise<number>((r) => idle.once('close', () => r(Date.now())));

    const seen = backend.received.length;
    const inFlight = slowGet(gw.port, 1500);
    await reachedApp(backend, '/slow?ms=1500', seen);
    const signalled = Date.now();
    gw.child.kill('SIGTERM');
    assert.ok((await idleClosed) - signalled < 1000, 'the idle keep-alive connection is closed at once');
    // Refused, or reset when it reached the accept queue in the instant the listener closed: never served.
    await assert.rejects(request(`http://127.0.0.1:${gw.port}/`, { headers: { host: 'echo.test' } }), /ECONNREFUSED|ECONNRESET/);

    const answer = await inFlight;
    assert.equal(answer.status, 200, 'the in-flight request completes');
    assert.equal(JSON.parse(answer.body).url, '/slow?ms=1500');
    assert.ok((await answer.closed) - answer.at < 1000, 'its connection is closed once the answer is out');
    const exit = await gw.exit;
    assert.equal(exit.code, 0);
    assert.ok(exit.at >= answer.at - 50, 'the process waited for the answer');
    assert.match(gw.output(), /"path":"\/slow","query":"ms","status":200/);
    agent.destroy();
  });

  it('during the drain the admin listener stays: /readyz answers 503 "stopping", /metrics can be scraped; it closes with the process', async () => {
    const file = join(tempDir(), 'gateway.config.yaml');
    writeFileSync(file, cfg(backend.url).replace('  listen: { http: 127.0.0.1:0 }', '  listen: { http: 127.0.0.1:0 }\n  admin: { listen: 127.0.0.1:0 }'));
    const gw = spawnGateway(file);
    const port = await gw.port();
    const admin = `http://127.0.0.1:${await gw.port('admin')}`;
    assert.equal((await request(`${admin}/readyz`)).status, 200);
    const seen = backend.received.length;
    const inFlight = slowGet(port, 1500);
    await reachedApp(backend, '/slow?ms=1500', seen);
    gw.child.kill('SIGTERM');
    const ready = (await eventually(async () => {
      const r = await request(`${admin}/readyz`);
      return r.status === 503 ? r : undefined;
    }))!;
    assert.equal(JSON.parse(ready.body).status, 'stopping');
    const metrics = await request(`${admin}/metrics`);
    assert.equal(metrics.status, 200);
    assert.match(metrics.body, /drawbridge_config_generation/);
    assert.equal((await request(`${admin}/healthz`)).status, 200);
    assert.equal((await inFlight).status, 200);
    assert.equal((await gw.exited).code, 0);
    await assert.rejects(request(`${admin}/readyz`), /ECONNREFUSED/);
  });

  it('pipelined requests in flight at SIGTERM are all answered, in order; only the last says Connection: close', async () => {
    const gw = await startGatewayProcess(backend);
    const socket = net.connect(gw.port, '127.0.0.1');
    let raw = '';
    socket.on('data', (c: Buffer) => (raw += c.toString('latin1')));
    const closed = new Promise((r) => socket.once('close', r));
    const seen = backend.received.length;
    socket.write('GET /slow?ms=600 HTTP/1.1\r\nHost: echo.test\r\n\r\nGET /slow?ms=300 HTTP/1.1\r\nHost: echo.test\r\n\r\n');
    await reachedApp(backend, '/slow?ms=600', seen);
    gw.child.kill('SIGTERM');
    await closed;
    const answers = raw.split('HTTP/1.1 ').slice(1);
    assert.equal(answers.length, 2, raw);
    assert.match(answers[0]!, /^200 [\s\S]*Connection: keep-alive[\s\S]*slow\?ms=600/i);
    assert.match(answers[1]!, /^200 [\s\S]*Connection: close[\s\S]*slow\?ms=300/i);
    assert.equal((await gw.exit).code, 0);
  });

  it('no WebSocket opens during the drain, even on a connection kept alive from before the signal: the process still exits 0', async () => {
    const gw = await startGatewayProcess(backend);
    const socket = net.connect(gw.port, '127.0.0.1');
    let raw = '';
    socket.on('error', () => {});
    const closed = new Promise((r) => socket.once('close', r));
    socket.on('data', (c: Buffer) => {
      raw += c.toString('latin1');
      // the first answer is in: at once, a WebSocket upgrade on the same connection
      if (raw.includes('slow?ms=600') && !raw.includes('Upgrade'))
        socket.write('GET /ws HTTP/1.1\r\nHost: echo.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\nUpgrade');
    });
    const seen = backend.received.length;
    socket.write('GET /slow?ms=600 HTTP/1.1\r\nHost: echo.test\r\n\r\n');
    await reachedApp(backend, '/slow?ms=600', seen);
    const signalled = Date.now();
    gw.child.kill('SIGTERM');
    await closed;
    assert.doesNotMatch(raw, /HTTP\/1\.1 101/, 'no upgrade during the drain');
    const exit = await gw.exit;
    assert.equal(exit.code, 0);
    assert.ok(exit.at - signalled < 5000, 'the process did not wait for a WebSocket');
  });

  it('a second SIGTERM exits at once, without waiting for the drain', async () => {
    const gw = await startGatewayProcess(backend);
    const seen = backend.received.length;
    const inFlight = slowGet(gw.port, 10_000).catch((e: Error) => e);
    await reachedApp(backend, '/slow?ms=10000', seen);
    gw.child.kill('SIGTERM');
    await sleep(1500);
    assert.equal(gw.child.exitCode, null, 'still draining after the first signal');
    const second = Date.now();
    gw.child.kill('SIGTERM');
    const exit = await gw.exit;
    assert.equal(exit.code, 1);
    assert.ok(exit.at - second < 2000, `exited ${exit.at - second} ms after the second signal`);
    assert.ok((await inFlight) instanceof Error, 'the request in flight was cut');
  });

  it('Ctrl-C under npm start (SIGINT from the terminal, the same SIGINT from npm 10 ms later) drains: 200, exit 0', async () => {
    const gw = await startGatewayProcess(backend);
    const seen = backend.received.length;
    const inFlight = slowGet(gw.port, 1500);
    await reachedApp(backend, '/slow?ms=1500', seen);
    gw.child.kill('SIGINT');
    await sleep(10);
    gw.child.kill('SIGINT');
    const answer = await inFlight;
    assert.equal(answer.status, 200, 'the in-flight request completes');
    assert.equal((await gw.exit).code, 0);
    assert.doesNotMatch(gw.output(), /second signal/);
  });

  it('a second SIGINT 1.5 s after the first still exits at once (1) and cuts the request in flight', async () => {
    const gw = await startGatewayProcess(backend);
    const seen = backend.received.length;
    const inFlight = slowGet(gw.port, 10_000).catch((e: Error) => e);
    await reachedApp(backend, '/slow?ms=10000', seen);
    gw.child.kill('SIGINT');
    await sleep(1500);
    assert.equal(gw.child.exitCode, null, 'still draining after the first signal');
    const second = Date.now();
    gw.child.kill('SIGINT');
    const exit = await gw.exit;
    assert.equal(exit.code, 1);
    assert.ok(exit.at - second < 2000, `exited ${exit.at - second} ms after the second signal`);
    assert.ok((await inFlight) instanceof Error, 'the request in flight was cut');
    assert.match(gw.output(), /second signal/);
  });
});
