import assert from 'node:assert/strict';
import http, { type OutgoingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { createGunzip, gunzipSync, gzipSync } from 'node:zlib';
import { acceptsGzip, bodyTranslator } from '../../src/gateway/translateBody.js';
import { request, startGateway, type TestGateway } from '../support/harness.js';

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

  it('a streamed page leaves as it is written: only a tail that could begin the internal URL waits for the next chunk', async () => {
    const t = bodyTranslator(T, 'GET', 200, { 'content-type': 'text/html' })!;
    const out: string[] = [];
    t.on('data', (c: Buffer) => out.push(c.toString()));
    const write = async (s: string) => {
      out.length = 0;
      t.write(s);
      await new Promise((r) => setImmediate(r));
      return out.join('');
    };
    assert.equal(await write('<html><body>\n'), '<html><body>\n', 'a first write shorter than the URL is not held');
    assert.equal(await write('<script>tick(1)</script>\n'), '<script>tick(1)</script>\n');
    assert.equal(await write('<a href="HTTP://10.0.0.5:80'), '<a href="', 'the start of the URL waits');
    assert.equal(await write('80/hr/x">x</a>'), 'https://hr.example.test/x">x</a>');
    assert.equal(await write('see http:'), 'see ', '"http:" could begin it');
    assert.equal(await write('//elsewhere/'), 'http://elsewhere/');
    t.end();
  });

  it('leaves other URLs alone: another port, another path prefix, the path in another case, a bare mention', async () => {
    const other = 'http://10.0.0.5:8081/hr/ http://10.0.0.5:8080/payroll/ http://10.0.0.5:8080/HR/x 10.0.0.5:8080/hr/ http://10.0.0.5:8080/hr';
    assert.equal(await through([other]), other);
  });

  it('HTML, XHTML, CSS and JavaScript only; not JSON, images, a HEAD body, 204, 304 or a part (206, Content-Range)', async () => {
    for (const type of ['text/html', 'application/xhtml+xml', 'text/css; charset=utf-8', 'text/javascript', 'application/javascript']) assert.equal(await through([page], { 'content-type': type }), want, type);
    for (const type of ['application/json', 'image/svg+xml', 'text/plain', 'application/octet-stream', 'text/htmlx']) assert.equal(await through([page], { 'content-type': type }), undefined, type);
    assert.equal(await through([page], {}), undefined, 'no content type');
    assert.equal(await through([page], { 'content-type': 'text/html' }, 'HEAD'), undefined, 'no body to rewrite');
    assert.equal(await through([page], { 'content-type': 'text/html' }, 'GET', 304), undefined);
    assert.equal(await through([page], { 'content-type': 'text/html' }, 'GET', 204), undefined);
    assert.equal(await through([page], { 'content-type': 'text/html', 'content-range': 'bytes 0-9/100' }, 'GET', 206), undefined, 'a part of the body');
    assert.equal(await through([page], { 'content-type': 'text/html', 'content-range': 'bytes */100' }, 'GET', 416), undefined, 'any answer with Content-Range');
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

  it('gzipped, a page the app writes in many small pieces at once is flushed once, not once a piece; a streamed one still leaves as it is written', async () => {
    const piece = Buffer.from(`<p>row <a href="http://10.0.0.5:8080/hr/x">x</a> ${'y'.repeat(960)}</p>\n`);
    const t = bodyTranslator(T, 'GET', 200, { 'content-type': 'text/html' }, 'gzip')!;
    const out: Buffer[] = [];
    t.on('data', (c: Buffer) => out.push(c));
    const ended = new Promise((r) => t.on('end', r));
    for (let i = 0; i < 2000; i++) t.write(piece);
    t.end();
    await ended;
    const zipped = Buffer.concat(out);
    const rewritten = piece.toString().replace('http://10.0.0.5:8080/hr/', 'https://hr.example.test/').repeat(2000);
    assert.equal(gunzipSync(zipped).toString(), rewritten);
    // A flush per piece (a sync marker and a new block each) made it several times the size of the page gzipped at once.
    assert.ok(zipped.length < 2 * gzipSync(rewritten).length, `${zipped.length} bytes, against ${gzipSync(rewritten).length} for the page gzipped at once`);

    const streamed = bodyTranslator(T, 'GET', 200, { 'content-type': 'text/html' }, 'gzip')!;
    const gunzip = createGunzip();
    let seen = '';
    streamed.pipe(gunzip).on('data', (c: Buffer) => (seen += c.toString()));
    for (const line of ['<html><body>\n', '<script>tick(1)</script>\n', '<a href="http://10.0.0.5:8080/hr/x">x</a>\n']) {
      streamed.write(line);
      const want = seen + line.replace('http://10.0.0.5:8080/hr/', 'https://hr.example.test/');
      for (let i = 0; i < 100 && seen !== want; i++) await new Promise((r) => setTimeout(r, 10));
      assert.equal(seen, want, 'each write reaches the client before the next one is made');
    }
    streamed.end();
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

describe('translateUrls.body: ranges through a real app', () => {
  let app: http.Server;
  let base: string;
  let gw: TestGateway;
  /** the page as the app stores it; every byte range it serves is of these bytes */
  const page = () => Buffer.from(`<html><a href="${base}/people">People</a> <img src="${base}/logo.png"> ${'x'.repeat(100)}</html>`);
  before(async () => {
    // An app that serves one HTML page with byte ranges, as static file servers do.
    app = http.createServer((req, res) => {
      const body = page();
      const m = /^bytes=(\d+)-(\d*)$/.exec(String(req.headers.range ?? ''));
      const common = { 'content-type': 'text/html', 'accept-ranges': 'bytes', etag: '"v1"' };
      // If-None-Match compares weakly (RFC 9110 13.1.2): W/"v1" is this page too
      if (String(req.headers['if-none-match'] ?? '').replace('W/', '') === '"v1"') return void res.writeHead(304, { etag: '"v1"', 'accept-ranges': 'bytes' }).end();
      if (!m) return void res.writeHead(200, { ...common, 'content-length': body.length }).end(body);
      const from = Number(m[1]);
      const to = Math.min(m[2] ? Number(m[2]) : body.length - 1, body.length - 1);
      if (from >= body.length) return void res.writeHead(416, { 'content-type': 'text/html', 'content-range': `bytes */${body.length}` }).end(`<p>see ${base}/</p>`);
      res.writeHead(206, { ...common, 'content-range': `bytes ${from}-${to}/${body.length}`, 'content-length': to - from + 1 }).end(body.subarray(from, to + 1));
    });
    await new Promise<void>((r) => app.listen(0, '127.0.0.1', r));
    base = `http://127.0.0.1:${(app.address() as AddressInfo).port}`;
    gw = await startGateway(`
gateway:
  publicUrl: http://gw.test
  listen: { http: 127.0.0.1:0 }
apps:
  - name: Translated
    externalUrl: http://tr.test/
    internalUrl: ${base}/
    preAuth: passthrough
    translateUrls: { body: true }
`);
  });
  after(async () => {
    await gw.stop();
    await new Promise((r) => app.close(r));
  });

  it('a 206 passes untouched: its bytes, Content-Range and Content-Length are the app’s, so parts put together are the app’s page', async () => {
    const full = page();
    const parts: Buffer[] = [];
    for (const [from, to] of [[0, 59], [60, 119], [120, '']] as const) {
      const res = await request(`${gw.url}/page`, { headers: { host: 'tr.test', range: `bytes=${from}-${to}`, 'accept-encoding': 'gzip' } });
      assert.equal(res.status, 206);
      const end = to === '' ? full.length - 1 : to;
      assert.equal(res.headers['content-range'], `bytes ${from}-${end}/${full.length}`);
      assert.equal(res.headers['content-length'], String(end - from + 1));
      assert.equal(res.headers['content-encoding'], undefined, 'not gzipped either');
      assert.deepEqual(res.raw, full.subarray(from, end + 1));
      parts.push(res.raw);
    }
    assert.deepEqual(Buffer.concat(parts), full);
  });

  it('HEAD gets the head GET gets: no Content-Length of the app\'s untranslated page, the same encoding, ETag and Accept-Ranges', async () => {
    for (const enc of ['gzip', 'identity']) {
      const get = await request(`${gw.url}/page`, { headers: { host: 'tr.test', 'accept-encoding': enc } });
      const head = await request(`${gw.url}/page`, { method: 'HEAD', headers: { host: 'tr.test', 'accept-encoding': enc } });
      assert.equal(head.status, 200);
      assert.equal(head.raw.length, 0);
      for (const name of ['content-length', 'content-encoding', 'etag', 'accept-ranges', 'vary', 'content-type']) assert.equal(head.headers[name], get.headers[name], `${enc}: ${name}`);
      assert.equal(head.headers['content-length'], undefined, 'the app\'s length is of bytes the client never gets');
    }
  });

  it('a 304 to a client revalidating the rewritten page carries the ETag and Vary its 200 carried (a cache takes them from the 304)', async () => {
    const page = await request(`${gw.url}/page`, { headers: { host: 'tr.test', 'accept-encoding': 'gzip' } });
    assert.equal(page.headers.etag, 'W/"v1"');
    const again = await request(`${gw.url}/page`, { headers: { host: 'tr.test', 'accept-encoding': 'gzip', 'if-none-match': page.headers.etag! } });
    assert.equal(again.status, 304);
    assert.equal(again.headers.etag, 'W/"v1"');
    assert.equal(again.headers.vary, page.headers.vary);
    assert.equal(again.headers['accept-ranges'], 'none');
    // the app's strong tag, which only a copy of its own bytes carries: nothing says this 304 is of a rewritten page
    const own = await request(`${gw.url}/page`, { headers: { host: 'tr.test', 'if-none-match': '"v1"' } });
    assert.equal(own.status, 304);
    assert.equal(own.headers.etag, '"v1"');
    assert.equal(own.headers.vary, undefined);
  });

  it('a 416 with Content-Range passes untouched', async () => {
    const res = await request(`${gw.url}/page`, { headers: { host: 'tr.test', range: 'bytes=9999-' } });
    assert.equal(res.status, 416);
    assert.equal(res.headers['content-range'], `bytes */${page().length}`);
    assert.equal(res.body, `<p>see ${base}/</p>`);
  });

  it('the whole page is rewritten and says it cannot be asked for in ranges', async () => {
    const res = await request(`${gw.url}/page`, { headers: { host: 'tr.test' } });
    assert.equal(res.status, 200);
    assert.match(res.body, /href="http:\/\/tr\.test\/people"/);
    assert.ok(!res.body.includes(base));
    assert.equal(res.headers['accept-ranges'], 'none');
    assert.equal(res.headers.etag, 'W/"v1"');
  });
});
