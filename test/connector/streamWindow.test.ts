import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { join } from 'node:path';
import { STREAM_WINDOW } from '../../src/connector/channelLink.js';
import { MIN_STREAM_WINDOW, STREAM_WINDOW_BUDGET, streamWindowFor } from '../../src/connector/streamWindow.js';
import { eventually, tempDir, type TestGateway } from '../support/harness.js';
import { gatewayYaml, hubUrl, killConnector, startConnector, startHubGateway, token, waitChannels, type ConnectorProcess } from './support.js';

describe('stream windows: sized by the streams a channel has open', () => {
  it('a lone stream gets the whole window; many share the budget, down to a floor', () => {
    assert.equal(streamWindowFor(1, STREAM_WINDOW), STREAM_WINDOW);
    assert.equal(streamWindowFor(8, STREAM_WINDOW), STREAM_WINDOW);
    assert.equal(streamWindowFor(9, STREAM_WINDOW), STREAM_WINDOW / 2);
    assert.equal(streamWindowFor(25, STREAM_WINDOW), 2 << 20);
    assert.equal(streamWindowFor(5000, STREAM_WINDOW), MIN_STREAM_WINDOW);
    for (const n of [1, 3, 9, 25, 100, 1000]) assert.ok(streamWindowFor(n, STREAM_WINDOW) * n <= Math.max(STREAM_WINDOW_BUDGET, n * MIN_STREAM_WINDOW), `${n} streams`);
  });

  it('grows back only once the streams fit in a quarter of the budget, so a count that hovers does not flap', () => {
    const at25 = streamWindowFor(25, STREAM_WINDOW);
    assert.equal(streamWindowFor(24, at25), at25);
    assert.equal(streamWindowFor(17, at25), at25);
    assert.equal(streamWindowFor(8, at25), 2 * at25);
    assert.equal(streamWindowFor(0, MIN_STREAM_WINDOW), STREAM_WINDOW);
  });
});

describe('stream windows: downloads through a connector whose clients stopped reading', function () {
  this.timeout(60_000);
  let app: http.Server;
  let gw: TestGateway;
  let conn: ConnectorProcess;
  const stalled: net.Socket[] = [];
  before(async () => {
    // an endless download, written as fast as it is taken
    const chunk = Buffer.alloc(64 << 10, 7);
    app = http.createServer((req, res) => {
      const bytes = Number(new URL(req.url!, 'http://x').searchParams.get('bytes') ?? Infinity);
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      let sent = 0;
      const pump = () => {
        while (sent < bytes) {
          sent += chunk.length;
          if (!res.write(chunk)) return void res.once('drain', pump);
        }
        res.end();
      };
      pump();
    });
    await new Promise<void>((r) => app.listen(0, '127.0.0.1', r));
    const url = `http://127.0.0.1:${(app.address() as net.AddressInfo).port}`;
    gw = await startHubGateway(gatewayYaml({ url }));
    conn = startConnector(join(tempDir(), 'c'), { gateway: hubUrl(gw), token: token(gw), args: ['--channels', '1'] });
    await waitChannels(gw, 1);
  });
  after(async () => {
    for (const s of stalled) s.destroy();
    await killConnector(conn);
    await gw?.stop();
    await new Promise((r) => app?.close(r));
  });

  /** a client that asks for the endless download and never reads past its head */
  const stall = () =>
    new Promise<void>((resolve, reject) => {
      const s = net.connect(gw.port, '127.0.0.1', () => s.write('GET /endless HTTP/1.1\r\nHost: app.test\r\n\r\n'));
      stalled.push(s);
      s.once('error', reject);
      s.once('data', (c: Buffer) => {
        s.pause();
        if (c.toString('latin1').startsWith('HTTP/1.1 200')) resolve();
        else reject(new Error(c.toString('latin1', 0, 80)));
      });
    });

  // With one 8 MiB window per stream, 100 of them held about 800 MB here. The sum of the windows
  // stays near the budget as they open, a few halvings of it at worst.
  it('100 of them cost the gateway a bounded amount, and a download beside them completes', async () => {
    const before = process.memoryUsage().rss;
    for (let i = 0; i < 100; i++) await stall();
    // let every stream fill what its window allows
    await new Promise((r) => setTimeout(r, 3000));
    const grown = (process.memoryUsage().rss - before) / 2 ** 20;
    assert.ok(grown < 350, `the gateway grew by ${grown.toFixed(0)} MiB`);
    const got = await new Promise<number>((resolve, reject) => {
      http.get({ port: gw.port, host: '127.0.0.1', path: `/endless?bytes=${32 << 20}`, headers: { host: 'app.test' } }, (res) => {
        let n = 0;
        res.on('data', (c: Buffer) => (n += c.length));
        res.on('end', () => resolve(n));
      }).on('error', reject);
    });
    assert.equal(got, 32 << 20);
    const [channel] = gw.server.connectorHub!.registry.all();
    for (const s of stalled) s.destroy();
    await eventually(() => channel!.streams === 0, 10_000);
  });
});
