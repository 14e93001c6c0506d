/**
 * Disposing the generation a reload replaced: every stage's dispose() and every upstream pool,
 * whatever one plugin's dispose() does. A real gateway, a real provider and a real app.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { join } from 'node:path';
import { EmbeddedIdp } from '../../src/identity/provider/embeddedIdp.js';
import { eventually, sleep, startGateway, tempDir } from '../support/harness.js';
import { Browser, CLIENT_SECRET, SECRET_A, USERS, gatewayYaml } from '../identity/support.js';
import { PROBE_PLUGIN, traceLines } from '../plugins/support.js';

/** An app that answers with the headers it got, and counts the connections open to it. */
async function countingApp() {
  const open = new Set<Socket>();
  const server = http.createServer((req, res) => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ headers: req.headers })));
  server.on('connection', (s: Socket) => {
    open.add(s);
    s.on('close', () => open.delete(s));
  });
  server.keepAliveTimeout = 60_000;
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    open: () => open.size,
    close: () => new Promise<void>((r) => (server.closeAllConnections(), server.close(() => r()))),
  };
}

describe('generation: disposing the one a reload replaced', function () {
  this.timeout(30_000);
  let idp: EmbeddedIdp;
  let app: Awaited<ReturnType<typeof countingApp>>;
  before(async () => {
    app = await countingApp();
    idp = await EmbeddedIdp.start({ clientId: 'drawbridge', clientSecret: CLIENT_SECRET, users: USERS });
  });
  after(async () => {
    await idp.close();
    await app.close();
  });

  it('a dispose() that never settles (app A) neither keeps app B\'s stage nor the old upstream pools open, and is logged', async () => {
    const dir = tempDir();
    const trace = join(dir, '..', `${dir.split('/').pop()}-trace.log`);
    writeFileSync(join(dir, 'probe.mjs'), PROBE_PLUGIN);
    const entry = (name: string, host: string, options: Record<string, string>) => `
  - name: ${name}
    externalUrl: http://${host}.localhost/
    internalUrl: ${app.url}/
    preAuth: oidc
    sso: { plugin: probe, options: ${JSON.stringify({ ...options, trace })} }`;
    const yaml = (g: number) => gatewayYaml(idp.issuer, [SECRET_A], entry('A', 'a', { mode: 'dispose-hangs', tag: `a${g}` }) + entry('B', 'b', { tag: `b${g}` }) + '\n', 'plugins: [./probe.mjs]');
    const gw = await startGateway(yaml(1), { dir, env: { DRAWBRIDGE_PLUGIN_TIMEOUT: '1s' } });
    try {
      const b = new Browser();
      for (const host of ['a', 'b']) {
        const origin = `http://${host}.localhost:${gw.port}`;
        idp.allowRedirectUri(`${origin}/.drawbridge/callback`);
        assert.equal((await b.browse(`${origin}/`, { user: 'bob', password: 'bob-pw' })).res.status, 200);
        assert.equal((await b.get(`${origin}/x`)).json().headers['x-probe'], `${host}1`);
      }
      assert.ok(app.open() >= 2, `the old generation's pools hold ${app.open()} connection(s) to the app`);

      writeFileSync(gw.configFile, yaml(2));
      await eventually(() => traceLines(trace).includes('dispose a1'), 5000);
      await eventually(() => traceLines(trace).includes('dispose b1'), 2000);
      // (nothing has been sent through the new generation yet: every connection open was the old one's)
      await eventually(() => app.open() === 0, 2000);
      const overran = await eventually(() => gw.logs.find((l) => l.msg === 'stage probe of app A: dispose() did not finish within 1 s; what it holds may stay open'), 3000);
      assert.equal(overran?.level, 40);
      assert.ok(!traceLines(trace).some((l) => l.startsWith('dispose') && l.endsWith('2')), 'the new generation\'s stages are live');
      await sleep(100);
      assert.equal((await b.get(`http://b.localhost:${gw.port}/x`)).json().headers['x-probe'], 'b2');
    } finally {
      await gw.stop();
    }
  });
});
