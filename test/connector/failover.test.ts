import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { WebSocket } from 'ws';
import { eventually, freePort, request, sleep, startEchoBackend, tempDir, type EchoBackend, type TestGateway } from '../support/harness.js';
import { gatewayYaml, hubUrl, killConnector, startConnector, startHubGateway, token, waitChannels, type ConnectorProcess } from './support.js';

interface LoadResult {
  statuses: Map<number | string, number>;
  total: number;
  failed: { status: number | string; body: string }[];
}

/** `workers` clients in a loop until `stop()`; each request is a GET or (postEvery) a uniquely numbered POST. */
function load(gw: TestGateway, workers: number, opts: { path?: string; postEvery?: number } = {}) {
  let running = true;
  const res: LoadResult = { statuses: new Map(), total: 0, failed: [] };
  let seq = 0;
  const worker = async () => {
    while (running) {
      const n = seq++;
      const isPost = opts.postEvery !== undefined && n % opts.postEvery === 0;
      let status: number | string;
      let body = '';
      try {
        const r = await request(`${gw.url}${opts.path ?? '/slow?ms=30'}&n=${n}`, { method: isPost ? 'POST' : 'GET', headers: { host: 'app.test', ...(isPost ? { 'content-type': 'text/plain' } : {}) }, body: isPost ? `post-${n}` : undefined });
        status = r.status;
        body = r.body;
      } catch (e) {
        status = (e as NodeJS.ErrnoException).code ?? 'error';
      }
      res.total++;
      res.statuses.set(status, (res.statuses.get(status) ?? 0) + 1);
      if (status !== 200) res.failed.push({ status, body: body.slice(0, 200) });
    }
  };
  const all = Promise.all(Array.from({ length: workers }, worker));
  return {
    stop: async () => {
      running = false;
      await all;
      return res;
    },
  };
}

/** drawbridge_connector_waits_total as scraped: { 'g1 served': n, ... } */
async function waitsCounted(gw: TestGateway): Promise<Record<string, number>> {
  const text = await gw.server.metrics.registry.metrics();
  return Object.fromEntries([...text.matchAll(/^drawbridge_connector_waits_total\{group="(\w+)",outcome="(\w+)"\} (\d+)$/gm)].map((m) => [`${m[1]} ${m[2]}`, Number(m[3])]));
}

function postsReceived(backend: EchoBackend): Map<string, number> {
  const m = new Map<string, number>();
  for (const r of backend.received) if (r.method === 'POST') m.set(r.body.toString(), (m.get(r.body.toString()) ?? 0) + 1);
  return m;
}

describe('connector groups: balancing, failover and drain', function () {
  this.timeout(50_000);
  let backend: EchoBackend;
  let gw: TestGateway;
  let dir: string;
  let a: ConnectorProcess;
  let b: ConnectorProcess;

  before(async () => {
    process.env.DRAWBRIDGE_CONNECTOR_PING_MS = '200';
    backend = await startEchoBackend();
    dir = tempDir();
    gw = await startHubGateway(gatewayYaml(backend), dir);
    a = startConnector(join(dir, 'a'), { gateway: hubUrl(gw), token: token(gw) });
    b = startConnector(join(dir, 'b'), { gateway: hubUrl(gw), token: token(gw) });
    await waitChannels(gw, 4);
  });
  after(async () => {
    delete process.env.DRAWBRIDGE_CONNECTOR_PING_MS;
    await killConnector(a);
    await killConnector(b);
    await gw.stop();
    await backend.close();
  });

  async function restart(which: 'a' | 'b'): Promise<void> {
    const c = startConnector(join(dir, which));
    if (which === 'a') a = c;
    else b = c;
    await waitChannels(gw, 4);
  }

  it('spreads streams over both connectors (least in-flight)', async () => {
    const seen = new Set<string>();
    const hub = gw.server.connectorHub!;
    const l = load(gw, 20, { path: '/slow?ms=100' });
    for (let i = 0; i < 10; i++) {
      await sleep(50);
      for (const ch of hub.registry.all()) if (ch.inflight > 0) seen.add(ch.connectorId);
    }
    const r = await l.stop();
    assert.equal(r.failed.length, 0);
    assert.equal(seen.size, 2, 'both connectors carried streams');
  });

  it('requests one after another take turns between the connectors, though each could reuse the last one\'s kept-alive connection', async () => {
    const hub = gw.server.connectorHub!;
    const served: string[] = [];
    for (let i = 0; i < 6; i++) {
      const res = request(`${gw.url}/slow?ms=200`, { headers: { host: 'app.test' } });
      await sleep(100);
      served.push([...new Set(hub.registry.all().filter((ch) => ch.inflight > 0).map((ch) => ch.connectorId))].join('+'));
      assert.equal((await res).status, 200);
    }
    assert.equal(new Set(served).size, 2, `served by ${served.join(' ')}`);
    for (let i = 1; i < served.length; i++) assert.notEqual(served[i], served[i - 1], `served by ${served.join(' ')}`);
  });

  it('SIGKILL of one connector during 50 concurrent GETs: zero failed requests', async () => {
    backend.received.length = 0;
    const l = load(gw, 50);
    await sleep(700);
    await killConnector(a, 'SIGKILL');
    await sleep(1000);
    const r = await l.stop();
    assert.ok(r.total > 200, `enough load (${r.total})`);
    assert.deepEqual(r.failed, []);
    assert.ok(gw.logs.some((l) => /retrying once on another connector/.test(String(l.msg))), 'a retry happened');
    await restart('a');
  });

  it('POSTs are never sent twice, also when a connector dies under them', async () => {
    backend.received.length = 0;
    const l = load(gw, 50, { postEvery: 2 });
    await sleep(700);
    await killConnector(b, 'SIGKILL');
    await sleep(800);
    const r = await l.stop();
    const counts = postsReceived(backend);
    assert.ok(counts.size > 100, `enough POSTs (${counts.size})`);
    const twice = [...counts].filter(([, n]) => n > 1);
    assert.deepEqual(twice, []);
    // GETs never fail; a POST that was cut after it reached the app is a 502, never a replay
    for (const f of r.failed) assert.equal(f.status, 502);
    await restart('b');
  });

  it('SIGTERM drains a connector under load: zero failed requests, the connector exits 0', async () => {
    backend.received.length = 0;
    const l = load(gw, 50, { postEvery: 3, path: '/slow?ms=200' });
    await sleep(700);
    a.child.kill('SIGTERM');
    assert.equal(await a.exited, 0);
    await sleep(500);
    const r = await l.stop();
    assert.deepEqual(r.failed, []);
    assert.deepEqual([...postsReceived(backend)].filter(([, n]) => n > 1), []);
    assert.ok(a.logs().some((l) => l.msg === 'drained'));
    assert.ok(gw.logs.some((l) => /connector draining/.test(String(l.msg))));
    await restart('a');
  });

  it('SIGTERM lets an open WebSocket run until the drain timeout, as it does other in-flight streams, then the page gets 1001', async () => {
    const hub = gw.server.connectorHub!;
    // only `a` (with a short drain timeout) is up when the WebSocket opens, so it carries it
    await killConnector(a, 'SIGKILL');
    await killConnector(b, 'SIGKILL');
    await eventually(() => hub.registry.all().length === 0, 5000);
    a = startConnector(join(dir, 'a'), { args: ['--drain-timeout', '3s'] });
    await waitChannels(gw, 2);
    const ws = new WebSocket(`ws://127.0.0.1:${gw.port}/ws`, { headers: { host: 'app.test' } });
    await new Promise((r, j) => (ws.once('open', r), ws.once('error', j)));
    let closedAt = 0;
    let closed = { code: 0, reason: '' };
    ws.once('close', (code, reason) => ((closedAt = Date.now()), (closed = { code, reason: String(reason) })));
    const echo = (text: string) => new Promise<string>((r) => (ws.once('message', (m) => r(String(m))), ws.send(text)));
    assert.equal(await echo('before'), 'before');
    b = startConnector(join(dir, 'b'));
    await waitChannels(gw, 4);

    const termAt = Date.now();
    a.child.kill('SIGTERM');
    await sleep(1500);
    assert.equal(closedAt, 0, `the WebSocket was closed ${closedAt - termAt} ms after SIGTERM`);
    assert.equal(await echo('while draining'), 'while draining');
    assert.equal(await a.exited, 0);
    await eventually(() => closedAt > 0);
    assert.ok(closedAt - termAt >= 2500, `closed ${closedAt - termAt} ms after SIGTERM, before the 3 s drain timeout`);
    // a close frame the page can act on (it was 1006, no frame, when the connector cut the stream)
    assert.deepEqual(closed, { code: 1001, reason: "the app's connection ended" });
    await restart('a');
  });

  it('a connector that stops answering pings gets no new work; its GETs are retried elsewhere', async () => {
    const l = load(gw, 20);
    await sleep(500);
    b.child.kill('SIGSTOP');
    await sleep(2000);
    const r = await l.stop();
    b.child.kill('SIGCONT');
    assert.deepEqual(r.failed, []);
    assert.ok(gw.logs.some((l) => l.msg === 'connector missed a ping'));
  });
});

describe('connector groups: a connector that hangs before its pings are missed', function () {
  this.timeout(40_000);
  let backend: EchoBackend;
  let gw: TestGateway;
  let a: ConnectorProcess;
  let b: ConnectorProcess;

  before(async () => {
    // pings far apart: the stopped connector stays in rotation for the whole test
    process.env.DRAWBRIDGE_CONNECTOR_PING_MS = '30000';
    backend = await startEchoBackend();
    const dir = tempDir();
    gw = await startHubGateway(
      gatewayYaml(
        backend,
        '',
        `  - name: Quick
    externalUrl: http://quick.test/
    internalUrl: ${backend.url}/
    connectorGroup: g1
    preAuth: passthrough
    backendTimeout: 1s
`,
      ),
      dir,
    );
    a = startConnector(join(dir, 'a'), { gateway: hubUrl(gw), token: token(gw) });
    b = startConnector(join(dir, 'b'), { gateway: hubUrl(gw), token: token(gw) });
    await waitChannels(gw, 4);
  });
  after(async () => {
    delete process.env.DRAWBRIDGE_CONNECTOR_PING_MS;
    b?.child.kill('SIGCONT');
    await killConnector(a);
    await killConnector(b);
    await gw.stop();
    await backend.close();
  });

  it('a CONNECT the stopped connector never answers is retried on the other one (a ping tells a hung connector from a silent app)', async () => {
    // every request dials (the tunnel pool's idle connections are gone after 4 s)
    await sleep(4500);
    b.child.kill('SIGSTOP');
    const results = await Promise.all([1, 2, 3, 4].map((i) => request(`${gw.url}/get${i}`, { headers: { host: 'quick.test', accept: 'application/json' } })));
    b.child.kill('SIGCONT');
    assert.deepEqual(results.map((r) => r.status), [200, 200, 200, 200], results.map((r) => r.body).join('\n'));
    assert.ok(gw.logs.some((l) => /answered neither the CONNECT nor a ping/.test(JSON.stringify(l))));
  });
});

describe('connector groups: a connector expected back', function () {
  this.timeout(60_000);
  let backend: EchoBackend;
  before(async () => {
    backend = await startEchoBackend();
  });
  after(async () => backend.close());
  const procs: ConnectorProcess[] = [];
  afterEach(async () => {
    for (const p of procs.splice(0)) await killConnector(p);
  });

  /** A gateway whose group g1 had one connector (state in `dir`/only), stopped by SIGTERM: it is expected back. */
  async function onlyConnectorGone(): Promise<{ gw: TestGateway; dir: string }> {
    const dir = tempDir();
    const gw = await startHubGateway(gatewayYaml(backend), dir);
    const first = startConnector(join(dir, 'only'), { gateway: hubUrl(gw), token: token(gw) });
    procs.push(first);
    await waitChannels(gw, 2);
    await killConnector(first, 'SIGTERM');
    return { gw, dir };
  }

  it('a group\'s only connector restarting (an upgrade): requests sent while it is away wait for it and are served, where they got 504', async () => {
    const { gw, dir } = await onlyConnectorGone();
    try {
      assert.equal(gw.server.connectorHub!.registry.pick('g1'), undefined, 'no connector left');
      const t0 = Date.now();
      const asked = Promise.all([1, 2, 3, 4, 5].map((i) => request(`${gw.url}/while-away/${i}`, { headers: { host: 'app.test', accept: 'application/json' } })));
      await sleep(1000);
      procs.push(startConnector(join(dir, 'only')));
      const answers = await asked;
      assert.deepEqual(answers.map((r) => r.status), [200, 200, 200, 200, 200], answers.map((r) => r.body).join('\n'));
      assert.ok(Date.now() - t0 >= 1000, 'they waited for the connector');
      assert.deepEqual(await waitsCounted(gw), { 'g1 served': 5 });
    } finally {
      await gw.stop();
    }
  });

  it('a request that waited and was served, whose client leaves before the app answers, is counted once: served, not also abandoned', async () => {
    const { gw, dir } = await onlyConnectorGone();
    try {
      const r = http.get(`${gw.url}/slow?ms=3000`, { headers: { host: 'app.test' } });
      r.on('error', () => undefined);
      await sleep(500);
      procs.push(startConnector(join(dir, 'only')));
      await eventually(async () => (await waitsCounted(gw))['g1 served'] === 1, 10_000);
      r.destroy();
      await sleep(300);
      assert.deepEqual(await waitsCounted(gw), { 'g1 served': 1 });
    } finally {
      await gw.stop();
    }
  });

  it('POSTs whose bodies arrive while the connector is away (1 MiB, and one sent in slow parts) reach the app whole and once', async () => {
    const { gw, dir } = await onlyConnectorGone();
    try {
      const big = randomBytes(1 << 20);
      const bigAnswer = request(`${gw.url}/away/big`, { method: 'POST', headers: { host: 'app.test', 'content-type': 'application/octet-stream' }, body: big });
      // a client that keeps sending while the request waits
      const parts = ['first part,', 'second part,', 'last part'];
      const slowAnswer = new Promise<number>((resolveP, rejectP) => {
        const [host, port] = gw.url.replace('http://', '').split(':');
        const req = http.request({ host, port: Number(port), path: '/away/slow', method: 'POST', headers: { host: 'app.test', 'content-length': String(parts.join('').length) }, agent: false }, (res) => {
          res.resume();
          res.on('end', () => resolveP(res.statusCode!));
        });
        req.on('error', rejectP);
        req.write(parts[0]);
        setTimeout(() => req.write(parts[1]), 400);
        setTimeout(() => req.end(parts[2]), 1500);
      });
      await sleep(800);
      procs.push(startConnector(join(dir, 'only')));
      assert.equal((await bigAnswer).status, 200);
      assert.equal(await slowAnswer, 200);
      const got = (url: string) => backend.received.filter((r) => r.url === url);
      assert.equal(got('/away/big').length, 1, 'the 1 MiB POST reached the app once');
      assert.ok(got('/away/big')[0]!.body.equals(big), 'and whole');
      assert.deepEqual(got('/away/slow').map((r) => r.body.toString()), [parts.join('')]);
    } finally {
      await gw.stop();
    }
  });

  it('a group\'s only connector upgraded under load (SIGTERM, then the new one started): zero failed GETs and POSTs, none sent twice', async () => {
    const dir = tempDir();
    const gw = await startHubGateway(gatewayYaml(backend), dir);
    try {
      const old = startConnector(join(dir, 'only'), { gateway: hubUrl(gw), token: token(gw) });
      procs.push(old);
      await waitChannels(gw, 2);
      backend.received.length = 0;
      const l = load(gw, 50, { postEvery: 3 });
      await sleep(700);
      old.child.kill('SIGTERM');
      assert.equal(await old.exited, 0);
      await sleep(500);
      procs.push(startConnector(join(dir, 'only')));
      await waitChannels(gw, 2);
      await sleep(500);
      const r = await l.stop();
      assert.ok(r.total > 200, `enough load (${r.total})`);
      assert.deepEqual(r.failed, [], JSON.stringify(gw.logs.filter((x) => Number(x.status) >= 500), null, 1));
      assert.deepEqual([...postsReceived(backend)].filter(([, n]) => n > 1), []);
    } finally {
      await gw.stop();
    }
  });

  it('a gateway restart: a request right after the start waits for the connector of the last run to dial back', async () => {
    const dir = tempDir();
    const yaml = gatewayYaml(backend).replace('connectors:\n  listen: 127.0.0.1:0', `connectors:\n  listen: 127.0.0.1:${await freePort()}`);
    const first = await startHubGateway(yaml, dir);
    procs.push(startConnector(join(dir, 'conn'), { gateway: hubUrl(first), token: token(first) }));
    await waitChannels(first, 2);
    await first.stop();
    const second = await startHubGateway(yaml, dir);
    try {
      assert.equal(second.server.connectorHub!.registry.pick('g1'), undefined, 'the connector has not dialled back yet');
      const res = await request(`${second.url}/right-after-start`, { headers: { host: 'app.test', accept: 'application/json' } });
      assert.equal(res.status, 200, res.body);
    } finally {
      await second.stop();
    }
  });

  it('a gateway that stops answers the requests waiting for a connector at once (504), where they held its drain for the wait', async () => {
    const dir = tempDir();
    const gw = await startHubGateway(gatewayYaml(backend), dir);
    const c = startConnector(join(dir, 'c'), { gateway: hubUrl(gw), token: token(gw) });
    procs.push(c);
    await waitChannels(gw, 2);
    await killConnector(c);
    await eventually(() => gw.server.connectorHub!.registry.all().length === 0, 5000, 20);
    const waiting = request(`${gw.url}/waiting`, { headers: { host: 'app.test', accept: 'application/json' } });
    await sleep(300);
    const t0 = Date.now();
    await gw.stop();
    assert.ok(Date.now() - t0 < 2000, `the stop took ${Date.now() - t0} ms`);
    assert.equal((await waiting).status, 504);
    assert.deepEqual(await waitsCounted(gw), { 'g1 released': 1 });
  });

  it('one that does not come back: 504 once the wait (here the app\'s 2 s backendTimeout) is over, saying so; a revoked one is not waited for', async () => {
    const dir = tempDir();
    const gw = await startHubGateway(gatewayYaml(backend, '', '    backendTimeout: 2s\n'), dir);
    try {
      const c = startConnector(join(dir, 'gone'), { gateway: hubUrl(gw), token: token(gw) });
      procs.push(c);
      const id = (await waitChannels(gw, 2))[0]!.connectorId;
      await killConnector(c);
      await eventually(() => gw.server.connectorHub!.registry.all().length === 0, 5000, 20);
      let t0 = Date.now();
      const late = await request(`${gw.url}/nobody`, { headers: { host: 'app.test', accept: 'application/json' } });
      assert.equal(late.status, 504);
      assert.ok(Date.now() - t0 >= 1900, `answered after ${Date.now() - t0} ms`);
      assert.ok(gw.logs.some((l) => JSON.stringify(l.reasons ?? '').includes('none came back within 2 s')), 'the log says it waited');
      // revoked, it cannot come back: the 504 is at once
      writeFileSync(gw.configFile, gatewayYaml(backend, '', '    backendTimeout: 2s\n', [id]));
      assert.equal(await gw.server.reload('test'), 'success');
      t0 = Date.now();
      assert.equal((await request(`${gw.url}/revoked`, { headers: { host: 'app.test', accept: 'application/json' } })).status, 504);
      assert.ok(Date.now() - t0 < 1000, `answered after ${Date.now() - t0} ms`);
      assert.deepEqual(await waitsCounted(gw), { 'g1 timeout': 1 }, 'the revoked one was not waited for');
    } finally {
      await gw.stop();
    }
  });
});

describe('connector groups: clients that leave while their request waits for a connector', function () {
  this.timeout(60_000);
  it('end their wait as they leave (counted as abandoned), and open no stream to the app when the connector comes back (wait30 #1)', async () => {
    // counts TCP connections, which the echo backend does not
    let connections = 0;
    const app = http.createServer((_q, s) => s.end('ok')).on('connection', () => connections++);
    await new Promise<void>((r) => app.listen(0, '127.0.0.1', r));
    const url = `http://127.0.0.1:${(app.address() as AddressInfo).port}`;
    const dir = tempDir();
    const gw = await startHubGateway(gatewayYaml({ url }), dir);
    const procs: ConnectorProcess[] = [];
    try {
      procs.push(startConnector(join(dir, 'only'), { gateway: hubUrl(gw), token: token(gw) }));
      await waitChannels(gw, 2);
      await killConnector(procs.pop()!, 'SIGTERM');
      connections = 0;
      // 20 clients that give up after 300 ms while no connector is there, 5 of them WebSocket upgrades
      await Promise.all(
        Array.from({ length: 20 }, (_, i) =>
          new Promise<void>((resolve) => {
            const upgrade = i % 4 === 0 ? { connection: 'Upgrade', upgrade: 'websocket', 'sec-websocket-version': '13', 'sec-websocket-key': randomBytes(16).toString('base64') } : {};
            const r = http.get(`${gw.url}/left/${i}`, { headers: { host: 'app.test', ...upgrade } });
            r.on('error', () => resolve());
            setTimeout(() => (r.destroy(), resolve()), 300);
          }),
        ),
      );
      // each wait ends as its client leaves, not when a connector comes back or after 10 s
      await eventually(async () => (assert.deepEqual(await waitsCounted(gw), { 'g1 abandoned': 20 }), true), 2_000);
      procs.push(startConnector(join(dir, 'only')));
      await waitChannels(gw, 2);
      await sleep(500);
      assert.equal(connections, 0, 'connections opened to the app for clients that had left');
    } finally {
      for (const p of procs) await killConnector(p);
      await gw.stop();
      app.close();
    }
  });
});

describe('connector groups: a reload that revokes the connector a request waits for', function () {
  this.timeout(60_000);
  it('answers the waiting request with its 504 at once (wait30 #2)', async () => {
    const backend = await startEchoBackend();
    const dir = tempDir();
    const gw = await startHubGateway(gatewayYaml(backend), dir);
    const procs: ConnectorProcess[] = [];
    try {
      procs.push(startConnector(join(dir, 'c'), { gateway: hubUrl(gw), token: token(gw) }));
      const id = (await waitChannels(gw, 2))[0]!.connectorId;
      await killConnector(procs.pop()!);
      await eventually(() => gw.server.connectorHub!.registry.all().length === 0, 5000, 20);
      const t0 = Date.now();
      const waiting = request(`${gw.url}/waits`, { headers: { host: 'app.test', accept: 'application/json' } });
      await sleep(300);
      writeFileSync(gw.configFile, gatewayYaml(backend, '', '', [id]));
      assert.equal(await gw.server.reload('test'), 'success');
      assert.equal((await waiting).status, 504);
      assert.ok(Date.now() - t0 < 3000, `answered after ${Date.now() - t0} ms`);
      assert.deepEqual(await waitsCounted(gw), { 'g1 released': 1 });
    } finally {
      for (const p of procs) await killConnector(p);
      await gw.stop();
      await backend.close();
    }
  });
});

describe('connector groups: loadBalancing from the config', function () {
  this.timeout(50_000);
  let backend: EchoBackend;
  let gw: TestGateway;
  let a: ConnectorProcess;
  let b: ConnectorProcess;

  before(async () => {
    backend = await startEchoBackend();
    const dir = tempDir();
    gw = await startHubGateway(gatewayYaml(backend).replace('  g1: {}\n', '  g1: { loadBalancing: round-robin }\n'), dir);
    a = startConnector(join(dir, 'a'), { gateway: hubUrl(gw), token: token(gw), args: ['--channels', '1'] });
    b = startConnector(join(dir, 'b'), { gateway: hubUrl(gw), token: token(gw), args: ['--channels', '1'] });
    await waitChannels(gw, 2);
  });
  after(async () => {
    await killConnector(a);
    await killConnector(b);
    await gw.stop();
    await backend.close();
  });

  /** requests in flight per connector, as the gateway counts them */
  const inflight = () => {
    const m = new Map<string, number>();
    for (const ch of gw.server.connectorHub!.registry.all()) m.set(ch.connectorId, (m.get(ch.connectorId) ?? 0) + ch.inflight);
    return m;
  };

  /**
   * With one connector busy on a long request, requests one after another: least-inflight sends
   * every one to the idle connector; round-robin takes turns, so every other one waits behind
   * the busy connector's long request. The most in flight on one connector tells them apart.
   */
  async function mostInFlightOnOne(): Promise<number> {
    const long = request(`${gw.url}/slow?ms=4000`, { headers: { host: 'app.test' } });
    await eventually(() => [...inflight().values()].some((n) => n > 0) || undefined);
    let most = 0;
    for (let i = 0; i < 4; i++) {
      let done = false;
      const r = request(`${gw.url}/slow?ms=300`, { headers: { host: 'app.test' } }).finally(() => (done = true));
      // sampled while it runs: a busy machine may open its stream late
      while (!done) {
        most = Math.max(most, ...inflight().values());
        await sleep(20);
      }
      assert.equal((await r).status, 200);
    }
    assert.equal((await long).status, 200);
    return most;
  }

  it('round-robin takes turns whatever the load; a reload to least-inflight sends new requests to the idle connector', async () => {
    assert.equal(await mostInFlightOnOne(), 2, 'round-robin: a request went to the busy connector');
    writeFileSync(gw.configFile, gatewayYaml(backend));
    await gw.server.reload();
    assert.equal(await mostInFlightOnOne(), 1, 'least-inflight: every request went to the idle connector');
  });
});
