import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { tempDir, type TestGateway } from '../support/harness.js';
import { gatewayYaml, hubUrl, killConnector, startConnector, startHubGateway, token, waitChannels, type ConnectorProcess } from './support.js';

const MiB = 1 << 20;
// 256 MiB in CI; DRAWBRIDGE_TEST_TUNNEL_MIB=1024 for the 1 GiB figures in the README
const SIZE_MIB = Number(process.env.DRAWBRIDGE_TEST_TUNNEL_MIB) || 256;

describe('tunnel streaming: large bodies are never buffered whole', function () {
  this.timeout(50_000 + SIZE_MIB * 200);
  let backend: http.Server;
  let gw: TestGateway;
  let conn: ConnectorProcess;
  const chunk = Buffer.alloc(MiB, 7);

  before(async () => {
    // a backend that streams a download and counts an upload, holding one MiB at a time
    backend = http.createServer((req, res) => {
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
});
