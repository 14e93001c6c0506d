import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { request, startGateway, type TestGateway } from '../support/harness.js';

/** An app that answers /say?h=NAME&v=VALUE with that header, `{base}` in VALUE standing for its own URL. */
async function startHeaderApp(): Promise<{ base: string; close(): Promise<void> }> {
  const server = http.createServer((req, res) => {
    const u = new URL(req.url ?? '/', 'http://x');
    const name = u.searchParams.get('h') ?? 'x-none';
    const value = (u.searchParams.get('v') ?? '').replaceAll('{base}', base);
    res.writeHead(name === 'location' ? 302 : 200, { [name]: value, 'content-type': 'text/plain' }).end('ok');
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return { base, close: () => new Promise((r) => server.close(() => r())) };
}

const config = (base: string) => `
gateway:
  publicUrl: http://gw.test
  listen: { http: 127.0.0.1:0 }
apps:
  - name: Tr
    externalUrl: http://tr.test/
    internalUrl: ${base}/
    preAuth: passthrough
  - name: Hr
    externalUrl: http://tr.test/hr/
    internalUrl: ${base}/Intranet/HR/
    preAuth: passthrough
  - name: Off
    externalUrl: http://off.test/
    internalUrl: ${base}/
    preAuth: passthrough
    translateUrls: { headers: false }
`;

describe('translateUrls.headers: Location, Content-Location and Refresh through a real app', () => {
  let app: Awaited<ReturnType<typeof startHeaderApp>>;
  let gw: TestGateway;
  before(async () => {
    app = await startHeaderApp();
    gw = await startGateway(config(app.base));
  });
  after(async () => {
    await gw.stop();
    await app.close();
  });

  /** the header `name` the client gets when the app sends `value` */
  async function seen(name: string, value: string, host = 'tr.test', prefix = ''): Promise<string | undefined> {
    const res = await request(`${gw.url}${prefix}/say?h=${name}&v=${encodeURIComponent(value)}`, { headers: { host } });
    assert.ok(res.status === 200 || res.status === 302, `status ${res.status}`);
    const v = res.headers[name];
    return Array.isArray(v) ? v.join(', ') : v;
  }

  it('Refresh: the URL after the delay is translated, in each spelling browsers accept; the delay and spelling stay', async () => {
    assert.equal(await seen('refresh', '5; url={base}/landed?a=1'), '5; url=http://tr.test/landed?a=1');
    assert.equal(await seen('refresh', '0;URL={base}/x'), '0;URL=http://tr.test/x');
    assert.equal(await seen('refresh', "1; url='{base}/quoted' trailing"), "1; url='http://tr.test/quoted' trailing");
    assert.equal(await seen('refresh', '2, URL = "{base}/spaced"'), '2, URL = "http://tr.test/spaced"');
    assert.equal(await seen('refresh', '3 {base}/bare'), '3 http://tr.test/bare');
    assert.equal(await seen('refresh', '0.5; url={base}'), '0.5; url=http://tr.test/');
    assert.equal(await seen('refresh', '4; url=HTTP://127.0.0.1:' + new URL(app.base).port + '/upper'), '4; url=http://tr.test/upper');
  });

  it('Refresh: no URL, a relative one or another host is left as the app wrote it', async () => {
    for (const v of ['5', '5; url=/relative', '0; url=http://evil.test/{base}/', "0; url='http://Evil.Test/x'", 'garbage {base}/x']) {
      assert.equal(await seen('refresh', v), v.replaceAll('{base}', app.base), v);
    }
  });

  it('Location and Content-Location: the scheme and host match in any case', async () => {
    const upper = app.base.toUpperCase();
    assert.equal(await seen('location', `${upper}/x?Q=1`), 'http://tr.test/x?Q=1');
    assert.equal(await seen('location', `Http://127.0.0.1:${new URL(app.base).port}/Mixed/Case`), 'http://tr.test/Mixed/Case');
    assert.equal(await seen('content-location', `${upper}/doc`), 'http://tr.test/doc');
    assert.equal(await seen('location', '{base}'), 'http://tr.test/', 'the bare origin');
  });

  it('the path prefix matches exactly, in its own case', async () => {
    const upper = app.base.toUpperCase();
    assert.equal(await seen('location', `${upper}/Intranet/HR/people`, 'tr.test', '/hr'), 'http://tr.test/hr/people');
    assert.equal(await seen('location', '{base}/intranet/hr/people', 'tr.test', '/hr'), `${app.base}/intranet/hr/people`);
  });

  it('never rewrites another host, however close it looks, and keeps its case (no open redirect)', async () => {
    const port = new URL(app.base).port;
    const foreign = [
      'HTTP://Evil.Test/x',
      `http://127.0.0.1:${port}@Evil.Test/`,
      `HTTP://127.0.0.1:${port}@evil.test/`,
      `http://127.0.0.1:${port}.Evil.Test/`,
      `http://127.0.0.1:${port}0/`,
      `http://127.0.0.1:${port}\\@evil.test/`,
      `https://127.0.0.1:${port}/other-scheme`,
      `//127.0.0.1:${port}/scheme-relative`,
      `/relative/{base}/`,
    ];
    for (const v of foreign) {
      const want = v.replaceAll('{base}', app.base);
      assert.equal(await seen('location', v), want, v);
      assert.equal(await seen('refresh', `0; url=${v}`), `0; url=${want}`, `refresh ${v}`);
    }
  });

  it('translateUrls.headers: false leaves every header as the app wrote it', async () => {
    assert.equal(await seen('location', '{base}/x', 'off.test'), `${app.base}/x`);
    assert.equal(await seen('refresh', '5; url={base}/x', 'off.test'), `5; url=${app.base}/x`);
  });
});
