/** The demo's sample app, as a browser reaches it through the gateway. */
import assert from 'node:assert/strict';
import type { AddressInfo } from 'node:net';
import type http from 'node:http';
import { createSampleApp } from '../../src/demo/sampleApp.js';
import { listen } from '../../src/gateway/listen.js';
import { request } from '../support/harness.js';

describe('demo sample app', () => {
  let app: http.Server;
  let port: number;
  before(async () => {
    app = createSampleApp();
    await listen(app, { host: '127.0.0.1', port: 0 });
    port = (app.address() as AddressInfo).port;
  });
  after(() => app.close());

  const who = async (headers: Record<string, string>) => /<p id="who">(.*?)<\/p>/.exec((await request(`http://127.0.0.1:${port}/`, { headers })).body)?.[1] ?? '';

  it('says who the gateway named in X-Remote-User', async () => {
    assert.equal(await who({ 'x-remote-user': 'bob' }), 'Signed in as <strong>bob</strong>');
  });

  it('without identity headers says only that none were sent, not that the app is passthrough (Payroll signs users in and sends none)', async () => {
    const text = await who({});
    assert.match(text, /^The gateway sent this app no identity headers/);
    assert.doesNotMatch(text, /No signed-in user/);
  });
});
