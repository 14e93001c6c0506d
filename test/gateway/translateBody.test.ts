import assert from 'node:assert/strict';
import type { OutgoingHttpHeaders } from 'node:http';
import { Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { gunzipSync } from 'node:zlib';
import { acceptsGzip, bodyTranslator } from '../../src/gateway/translateBody.js';

const T = { from: 'http://10.0.0.5:8080/hr/', to: 'https://hr.example.test/' };

async function through(chunks: (string | Buffer)[], headers: OutgoingHttpHeaders = { 'content-type': 'text/html; charset=utf-8' }, method = 'GET', status = 200): Promise<string | undefined> {
  const t = bodyTranslator(T, method, status, headers);
  if (!t) return undefined;
  return (await buffer(Readable.from(chunks.map((c) => Buffer.from(c))).pipe(t))).toString('utf8');
}

describe('translateUrls.body: the rewriting stream', () => {
  const page = '<a href="http://10.0.0.5:8080/hr/people?x=1">People</a><script src="HTTP://10.0.0.5:8080/hr/app.js"></script>' + '<p>Grüße</p>' + 'url(http://10.0.0.5:8080/hr/bg.png)';
  const want = '<a href="https://hr.example.test/people?x=1">People</a><script src="https://hr.example.test/app.js"></script>' + '<p>Grüße</p>' + 'url(https://hr.example.test/bg.png)';

  it('rewrites every occurrence, with the scheme and host in any case, however the body is cut into chunks', async () => {
    assert.equal(await through([page]), want);
    const bytes = Buffer.from(page);
    for (let cut = 1; cut < bytes.length; cut++) assert.equal(await through([bytes.subarray(0, cut), bytes.subarray(cut)]), want, `cut at ${cut}`);
    assert.equal(await through([...bytes].map((b) => Buffer.from([b]))), want, 'one byte at a time');
  });

  it('leaves other URLs alone: another port, another path prefix, the path in another case, a bare mention', async () => {
    const other = 'http://10.0.0.5:8081/hr/ http://10.0.0.5:8080/payroll/ http://10.0.0.5:8080/HR/x 10.0.0.5:8080/hr/ http://10.0.0.5:8080/hr';
    assert.equal(await through([other]), other);
  });

  it('HTML, XHTML, CSS and JavaScript only; not JSON, images, HEAD, 204 or 304', async () => {
    for (const type of ['text/html', 'application/xhtml+xml', 'text/css; charset=utf-8', 'text/javascript', 'application/javascript']) assert.equal(await through([page], { 'content-type': type }), want, type);
    for (const type of ['application/json', 'image/svg+xml', 'text/plain', 'application/octet-stream', 'text/htmlx']) assert.equal(await through([page], { 'content-type': type }), undefined, type);
    assert.equal(await through([page], {}), undefined, 'no content type');
    assert.equal(await through([page], { 'content-type': 'text/html' }, 'HEAD'), undefined);
    assert.equal(await through([page], { 'content-type': 'text/html' }, 'GET', 304), undefined);
    assert.equal(await through([page], { 'content-type': 'text/html' }, 'GET', 204), undefined);
  });

  it('gzipped again for a client that accepts gzip, whatever the cuts; Vary says so', async () => {
    const bytes = Buffer.from(page);
    for (const cut of [1, 17, 40, bytes.length - 3]) {
      const headers: OutgoingHttpHeaders = { 'content-type': 'text/html', vary: 'cookie' };
      const t = bodyTranslator(T, 'GET', 200, headers, 'br, gzip;q=0.8')!;
      assert.equal(headers['content-encoding'], 'gzip');
      assert.equal(headers.vary, 'cookie, accept-encoding');
      const zipped = await buffer(Readable.from([bytes.subarray(0, cut), bytes.subarray(cut)]).pipe(t));
      assert.equal(gunzipSync(zipped).toString('utf8'), want, `cut at ${cut}`);
    }
    const plain: OutgoingHttpHeaders = { 'content-type': 'text/html' };
    bodyTranslator(T, 'GET', 200, plain, 'gzip;q=0, br');
    assert.equal(plain['content-encoding'], undefined);
    assert.equal(plain.vary, 'accept-encoding');
    for (const [h, yes] of [['gzip', true], ['GZIP; q=0.5', true], ['*', true], ['deflate, x-gzip', true], ['gzip;q=0', false], ['br', false], ['identity', false], ['', false]] as const) assert.equal(acceptsGzip(h), yes, h);
    assert.equal(acceptsGzip(undefined), false);
  });

  it('a compressed body passes untouched; a rewritten one loses its length and its ETag turns weak', async () => {
    const gz: OutgoingHttpHeaders = { 'content-type': 'text/html', 'content-encoding': 'gzip', 'content-length': '10', etag: '"abc"' };
    assert.equal(bodyTranslator(T, 'GET', 200, gz), undefined);
    assert.equal(gz['content-length'], '10');
    const plain: OutgoingHttpHeaders = { 'content-type': 'text/html', 'content-length': '10', etag: '"abc"' };
    assert.ok(bodyTranslator(T, 'GET', 200, plain));
    assert.equal(plain['content-length'], undefined);
    assert.equal(plain.etag, 'W/"abc"');
  });
});
