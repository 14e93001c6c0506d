import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import net from 'node:net';
import { request, startEchoBackend, startGateway, type EchoBackend } from '../support/harness.js';
import { gatewayYaml } from './support.js';

describe('connector hub lifecycle in the gateway', function () {
  this.timeout(20_000);
  let backend: EchoBackend;
  before(async () => {
    backend = await startEchoBackend();
  });
  after(() => backend.close());

  it('a reload that adds connectors: and a connector app is refused (never proxied directly) until a restart', async () => {
    const plain = `
gateway:
  publicUrl: http://app.test
  listen: { http: 127.0.0.1:0 }
apps:
  - name: Other
    externalUrl: http://other.test/
    internalUrl: ${backend.url}/
    preAuth: passthrough
`;
    const gw = await startGateway(plain, { watch: false });
    try {
      writeFileSync(gw.configFile, gatewayYaml(backend));
      assert.equal(await gw.server.reload('test'), 'failure');
      assert.ok(gw.logs.some((l) => /connectors: was added after the gateway started/.test(String(l.msg))));
      const res = await request(`${gw.url}/`, { headers: { host: 'app.test' } });
      assert.equal(res.status, 404);
      assert.equal(backend.received.length, 0);
    } finally {
      await gw.stop();
    }
  });

  it('the hub listens only when connectors: is configured, and stops with the gateway', async () => {
    const gw = await startGateway(gatewayYaml(backend), { watch: false });
    const addr = gw.server.addresses().connectors!;
    assert.match(addr, /^127\.0\.0\.1:\d+$/);
    await gw.stop();
    const err = await new Promise<NodeJS.ErrnoException>((resolve) => {
      const s = net.connect(Number(addr.split(':')[1]), '127.0.0.1');
      s.on('error', resolve);
      s.on('connect', () => resolve(Object.assign(new Error('connected'), { code: 'CONNECTED' })));
    });
    assert.equal(err.code, 'ECONNREFUSED');
  });
});
