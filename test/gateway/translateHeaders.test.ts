import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { request, startGateway, type TestGateway } from '../support/harness.js';

/** An app that answers /say?h=NAME&v=VALUE (under any path) with that header, `{base}` in VALUE standing for its own URL. */
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
  - name: Graf
    externalUrl: http://tr.test/grafana/
    internalUrl: ${base}/
    preAuth: passthrough
  - name: Same
    externalUrl: http://127.0.0.1/same/
    internalUrl: ${base}/same/
    preAuth: passthrough
  - name: Off
    externalUrl: http://off.test/
    internalUrl: ${base}/
    preAuth: passthrough
    translateUrls: { headers: false }
`;

describe('translateUrls.headers: Location, Content-Location, Refresh, Link and Set-Cookie through a real app', () => {
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

  it('a path-absolute URL under an internal path prefix that is not the external one is moved to the external prefix (it would land in another app)', async () => {
    const hr = (name: string, v: string) => seen(name, v, 'tr.test', '/hr');
    assert.equal(await hr('location', '/Intranet/HR/people?q=1#top'), '/hr/people?q=1#top');
    assert.equal(await hr('location', '/Intranet/HR/'), '/hr/');
    assert.equal(await hr('location', '/Intranet/HR'), '/hr/', "the prefix without its slash: the app's own slash redirect");
    assert.equal(await hr('location', '/Intranet/HR?next=1'), '/hr/?next=1');
    assert.equal(await hr('content-location', '/Intranet/HR/doc'), '/hr/doc');
    assert.equal(await hr('refresh', '0; url=/Intranet/HR/x'), '0; url=/hr/x');
    for (const v of ['/Intranet/HRx', '/intranet/hr/x', '/other/x', '//127.0.0.1/Intranet/HR/x', '/\\evil.test/Intranet/HR/', 'Intranet/HR/x', '?x=/Intranet/HR/']) {
      assert.equal(await hr('location', v), v, v);
    }
    assert.equal(await seen('location', '/Intranet/HR/x'), '/Intranet/HR/x', 'internal and external prefix alike (/): nothing to move');
  });

  it('the internal prefix without its slash, then a query or fragment, is the app too', async () => {
    assert.equal(await seen('location', '{base}/Intranet/HR?next=1', 'tr.test', '/hr'), 'http://tr.test/hr/?next=1');
    assert.equal(await seen('location', '{base}/Intranet/HR#f', 'tr.test', '/hr'), 'http://tr.test/hr/#f');
    assert.equal(await seen('location', '{base}/Intranet/HRx?next=1', 'tr.test', '/hr'), `${app.base}/Intranet/HRx?next=1`);
  });

  it('dot segments are resolved first, as the browser will: a URL that leaves the prefix is not made a sibling app\'s external URL', async () => {
    const hr = (v: string) => seen('location', v, 'tr.test', '/hr');
    for (const v of ['{base}/Intranet/HR/../payroll/x', '{base}/Intranet/HR/a/../../payroll/', '/Intranet/HR/../payroll/x', '/Intranet/HR/%2E%2e/payroll/x', '/Intranet/HR/..\\payroll', '/Intranet/HR/..']) {
      assert.equal(await hr(v), v.replaceAll('{base}', app.base), v);
    }
    assert.equal(await hr('{base}/Intranet/HR/a/../b?x=../..'), 'http://tr.test/hr/b?x=../..', 'one that stays inside comes out resolved');
    assert.equal(await hr('/Intranet/HR/a/./b'), '/hr/a/b');
  });

  it('Link: each URI-reference is translated, parameters (quoted ones too) stay', async () => {
    const link = '<{base}/Intranet/HR/app.css>; rel=preload; as=style, </Intranet/HR/app.js>; rel=preload; title="<{base}/Intranet/HR/t>, x", <https://cdn.test/f.woff2>; rel=preload';
    assert.equal(
      await seen('link', link, 'tr.test', '/hr'),
      `<http://tr.test/hr/app.css>; rel=preload; as=style, </hr/app.js>; rel=preload; title="<${app.base}/Intranet/HR/t>, x", <https://cdn.test/f.woff2>; rel=preload`,
    );
  });

  it("Set-Cookie: a Path under the internal prefix moves to the external one, a Domain naming the internal host is dropped (the cookie is the external host's)", async () => {
    const hr = (v: string) => seen('set-cookie', v, 'tr.test', '/hr');
    assert.equal(await hr('sid=1; Path=/Intranet/HR/; HttpOnly'), 'sid=1; Path=/hr/; HttpOnly');
    assert.equal(await hr('sid=1; path=/Intranet/HR'), 'sid=1; path=/hr');
    assert.equal(await hr('sid=1; Path=/Intranet/HR/admin; Secure'), 'sid=1; Path=/hr/admin; Secure');
    assert.equal(await hr('sid=1; Domain=127.0.0.1; Path=/Intranet/HR/'), 'sid=1; Path=/hr/');
    assert.equal(await hr('sid=1; domain=.127.0.0.1'), 'sid=1');
    for (const v of ['sid=1; Path=/', 'sid=1; Path=/Intranet/HRx', 'sid=1; Domain=corp.example; Path=/other/', 'sid=1', 'v=Path=/Intranet/HR/']) assert.equal(await hr(v), v, v);
    assert.equal(await seen('set-cookie', 'sid=1; Domain=127.0.0.1; Path=/x', 'tr.test'), 'sid=1; Path=/x', 'the same prefix: only the Domain goes');
    assert.equal(await seen('set-cookie', 'sid=1; Domain=127.0.0.1', 'off.test'), 'sid=1; Domain=127.0.0.1', 'headers: false');
  });

  it('an app published under a prefix from its root, that knows its public path (Grafana, Kibana), keeps its path-absolute URLs and cookie paths', async () => {
    const graf = (name: string, v: string) => seen(name, v, 'tr.test', '/grafana');
    assert.equal(await graf('location', '/grafana/login'), '/grafana/login');
    assert.equal(await graf('set-cookie', 'grafana_session=1; Path=/grafana; HttpOnly'), 'grafana_session=1; Path=/grafana; HttpOnly');
    // its absolute internal URLs still move, as they always did
    assert.equal(await graf('location', '{base}/login'), 'http://tr.test/grafana/login');
  });

  it("a cookie Domain naming the internal host is kept when that is the host the client used too (it reaches the host's subdomains)", async () => {
    assert.equal(await seen('set-cookie', 'sid=1; Domain=127.0.0.1; Path=/same/', '127.0.0.1', '/same'), 'sid=1; Domain=127.0.0.1; Path=/same/');
  });

  it('translateUrls.headers: false leaves every header as the app wrote it', async () => {
    assert.equal(await seen('location', '{base}/x', 'off.test'), `${app.base}/x`);
    assert.equal(await seen('refresh', '5; url={base}/x', 'off.test'), `5; url=${app.base}/x`);
    assert.equal(await seen('link', '<{base}/x>; rel=preload', 'off.test'), `<${app.base}/x>; rel=preload`);
  });
});
