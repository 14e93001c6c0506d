import assert from 'node:assert/strict';
import { request, startEchoBackend, startGateway, type EchoBackend, type TestGateway } from '../support/harness.js';

const config = (backend: string, extra = '') => `
gateway:
  publicUrl: http://gw.test
  listen: { http: 127.0.0.1:0 }
apps:
  - name: Echo
    externalUrl: http://echo.test/
    internalUrl: ${backend}/
    preAuth: passthrough
${extra}`;

describe('edge: routing and forwarding through a real backend', () => {
  let backend: EchoBackend;
  let gw: TestGateway;
  before(async () => {
    backend = await startEchoBackend();
    gw = await startGateway(config(backend.url));
  });
  after(async () => {
    await gw.stop();
    await backend.close();
  });

  it('forwards a request for a published host and returns the app answer with a correlation id', async () => {
    const res = await request(`${gw.url}/hello?x=1`, { headers: { host: 'echo.test' } });
    assert.equal(res.status, 200);
    assert.equal(res.json().url, '/hello?x=1');
    assert.match(String(res.headers['x-correlation-id']), /^[0-9a-f-]{36}$/);
    assert.equal(res.json().headers['x-correlation-id'], res.headers['x-correlation-id']);
  });
});
