import assert from 'node:assert/strict';
import { createCipheriv, createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { eventually, tempDir, type TestGateway } from '../support/harness.js';
import { gatewayYaml, hubUrl, killConnector, startConnector, startHubGateway, token, waitChannels, type ConnectorProcess } from './support.js';

const MiB = 1 << 20;

/** Deterministic pseudo-random bytes (AES-CTR over zeros), one MiB at a time: `seed` names the stream. */
function randomStream(seed: number): () => Buffer {
  const key = createHash('sha256').update(String(seed)).digest().subarray(0, 16);
  const cipher = createCipheriv('aes-128-ctr', key, Buffer.alloc(16));
  const zeros = Buffer.alloc(MiB);
  return () => cipher.update(zeros);
}

function expectedDigest(seed: number, mib: number): string {
  const next = randomStream(seed);
  const h = createHash('sha256');
  for (let i = 0; i < mib; i++) h.update(next());
  return h.digest('hex');
}
// 256 MiB in CI; DRAWBRIDGE_TEST_TUNNEL_MIB=1024 for the 1 GiB figures in the README
const SIZE_MIB = Number(process.env.DRAWBRIDGE_TEST_TUNNEL_MIB) || 256;

describe('tunnel streaming: large bodies are never buffered whole', function () {
  this.timeout(50_000 + SIZE_MIB * 200);
  let backend: http.Server;
  let gw: TestGateway;
  let conn: ConnectorProcess;
  const chunk = Buffer.alloc(MiB, 7);
  const held: http.ServerResponse[] = [];

  before(async () => {
    // The gateway runs in this process (startGateway sets its heap growth as `drawbridge gateway`
    // does), the connector in its own (`connector run` sets it itself): the bound is checked with
    // the heap growth both ship with.
    // a backend that streams a download and counts an upload, holding one MiB at a time
    backend = http.createServer((req, res) => {
      if (req.url === '/hold') {
        // the head and a first byte now, the rest when the test lets go
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.write('x');
        held.push(res);
        return;
      }
      const random = /^\/random\/(\d+)\/(\d+)$/.exec(req.url ?? '');
      if (random && req.method === 'POST') {
        const h = createHash('sha256');
        req.on('data', (c: Buffer) => h.update(c));
        req.on('end', () => res.end(h.digest('hex')));
        return;
      }
      if (random) {
        const [seed, mib] = [Number(random[1]), Number(random[2])];
        const next = randomStream(seed);
        res.writeHead(200, { 'content-length': mib * MiB });
        let i = 0;
        const write = () => {
          while (i < mib) {
            i++;
            if (!res.write(next())) return void res.once('drain', write);
          }
          res.end();
        };
        return write();
      }
      if (req.method === 'POST') {
        let n = 0;
        req.on('data', (c: Buffer) => (n += c.length));
        req.on('end', () => res.end(String(n)));
        return;
      }
      res.writeHead(200, { 'content-length': SIZE_MIB * MiB });
      let i = 0;
      const write = () => {
        while (i < SIZE_MIB) {
          i++;
          if (!res.write(chunk)) return void res.once('drain', write);
        }
        res.end();
      };
      write();
    });
    await new Promise<void>((r) => backend.listen(0, '127.0.0.1', r));
    const dir = tempDir();
    gw = await startHubGateway(gatewayYaml({ url: `http://127.0.0.1:${(backend.address() as AddressInfo).port}` }), dir);
    conn = startConnector(join(dir, 'conn'), { gateway: hubUrl(gw), token: token(gw) });
    await waitChannels(gw, 2);
  });
  after(async () => {
    await killConnector(conn);
    await gw.stop();
    backend.close();
  });

  const rss = () => process.memoryUsage().rss / MiB;
  const connectorRss = () => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${conn.child.pid}/status`, 'utf8'))![1]) / 1024;

  async function watchPeaks<T>(fn: () => Promise<T>): Promise<{ value: T; gateway: number; connector: number }> {
    const base = { gateway: rss(), connector: connectorRss() };
    const peak = { ...base };
    const timer = setInterval(() => {
      peak.gateway = Math.max(peak.gateway, rss());
      peak.connector = Math.max(peak.connector, connectorRss());
    }, 50);
    try {
      const value = await fn();
      return { value, gateway: peak.gateway - base.gateway, connector: peak.connector - base.connector };
    } finally {
      clearInterval(timer);
    }
  }

  it(`downloads ${SIZE_MIB} MiB through the tunnel with bounded memory in the gateway and the connector`, async () => {
    const r = await watchPeaks(
      () =>
        new Promise<number>((resolve, reject) => {
          http
            .get({ host: '127.0.0.1', port: gw.port, path: '/download', headers: { host: 'app.test' } }, (res) => {
              let n = 0;
              res.on('data', (c: Buffer) => (n += c.length));
              res.on('end', () => resolve(n));
            })
            .on('error', reject);
        }),
    );
    assert.equal(r.value, SIZE_MIB * MiB);
    if (process.env.DRAWBRIDGE_TEST_TUNNEL_MIB) console.log(`      download: gateway +${r.gateway.toFixed(0)} MiB, connector +${r.connector.toFixed(0)} MiB`);
    assert.ok(r.gateway < 100, `gateway process grew ${r.gateway.toFixed(0)} MiB`);
    assert.ok(r.connector < 100, `connector grew ${r.connector.toFixed(0)} MiB`);
  });

  it(`uploads ${SIZE_MIB} MiB through the tunnel with bounded memory in the gateway and the connector`, async () => {
    const r = await watchPeaks(
      () =>
        new Promise<string>((resolve, reject) => {
          const req = http.request({ host: '127.0.0.1', port: gw.port, path: '/upload', method: 'POST', headers: { host: 'app.test', 'content-length': SIZE_MIB * MiB } }, (res) => {
            let b = '';
            res.on('data', (c) => (b += c));
            res.on('end', () => resolve(b));
          });
          req.on('error', reject);
          let i = 0;
          const write = () => {
            while (i < SIZE_MIB) {
              i++;
              if (!req.write(chunk)) return void req.once('drain', write);
            }
            req.end();
          };
          write();
        }),
    );
    assert.equal(r.value, String(SIZE_MIB * MiB));
    if (process.env.DRAWBRIDGE_TEST_TUNNEL_MIB) console.log(`      upload: gateway +${r.gateway.toFixed(0)} MiB, connector +${r.connector.toFixed(0)} MiB`);
    assert.ok(r.gateway < 100, `gateway process grew ${r.gateway.toFixed(0)} MiB`);
    assert.ok(r.connector < 100, `connector grew ${r.connector.toFixed(0)} MiB`);
  });

  it('1,000 quiet streams (the app answered and holds its body) cost the connector little memory each, and all complete', async () => {
    // Each app socket holds the buffer for its next read while it waits: 128 KiB each was 125 MiB here.
    const agent = new http.Agent({ keepAlive: false, maxSockets: 2000 });
    const base = connectorRss();
    const done = Array.from(
      { length: 1000 },
      () =>
        new Promise<string>((resolve) => {
          http
            .get({ host: '127.0.0.1', port: gw.port, path: '/hold', headers: { host: 'app.test' }, agent }, (res) => {
              let b = '';
              res.on('data', (c) => (b += c));
              res.on('end', () => resolve(`${res.statusCode} ${b}`));
            })
            .on('error', (e) => resolve(e.message));
        }),
    );
    await eventually(() => held.length === 1000, 30_000, 100);
    await new Promise((r) => setTimeout(r, 500));
    const grown = connectorRss() - base;
    for (const res of held.splice(0)) res.end('y');
    assert.deepEqual([...new Set(await Promise.all(done))], ['200 xy']);
    agent.destroy();
    assert.ok(grown < 60, `the connector grew ${grown.toFixed(0)} MiB with 1,000 quiet streams`);
  });

  it('eight 32 MiB downloads and uploads of random bytes at once arrive byte for byte', async () => {
    const seeds = [1, 2, 3, 4, 5, 6, 7, 8];
    const downloads = seeds.map(
      (seed) =>
        new Promise<string>((resolve, reject) => {
          http
            .get({ host: '127.0.0.1', port: gw.port, path: `/random/${seed}/32`, headers: { host: 'app.test' } }, (res) => {
              const h = createHash('sha256');
              res.on('data', (c: Buffer) => h.update(c));
              res.on('end', () => resolve(h.digest('hex')));
            })
            .on('error', reject);
        }),
    );
    const uploads = seeds.map(
      (seed) =>
        new Promise<string>((resolve, reject) => {
          const req = http.request({ host: '127.0.0.1', port: gw.port, path: `/random/${seed + 100}/32`, method: 'POST', headers: { host: 'app.test', 'content-length': 32 * MiB } }, (res) => {
            let b = '';
            res.on('data', (c) => (b += c));
            res.on('end', () => resolve(b));
          });
          req.on('error', reject);
          const next = randomStream(seed + 100);
          let i = 0;
          const write = () => {
            while (i < 32) {
              i++;
              if (!req.write(next())) return void req.once('drain', write);
            }
            req.end();
          };
          write();
        }),
    );
    const [down, up] = await Promise.all([Promise.all(downloads), Promise.all(uploads)]);
    assert.deepEqual(down, seeds.map((seed) => expectedDigest(seed, 32)));
    assert.deepEqual(up, seeds.map((seed) => expectedDigest(seed + 100, 32)));
  });
});
