import assert from 'node:assert/strict';
import { request, startEchoBackend, startGateway, type EchoBackend, type TestGateway } from '../support/harness.js';

/**
 * WebDAV's COPY and MOVE act on the path their Destination header names: it meets the
 * request target's rules before anything is forwarded (pentest audit, finding 2).
 */
const config = (backend: string) => `
gateway:
  publicUrl: http://gw.test
  listen: { http: 127.0.0.1:0 }
apps:
  - name: Dav
    externalUrl: http://dav.test/
    internalUrl: ${backend}/
    preAuth: passthrough
    conditionalAccess: [blocksecret, nomoveintokeep]
  - name: DavOther
    externalUrl: http://dav.test/other/
    internalUrl: ${backend}/other/
    preAuth: passthrough
  - name: DavPub
    externalUrl: http://davpub.test/
    internalUrl: ${backend}/pub/
    preAuth: passthrough
policies:
  blocksecret:
    when: { paths: ["/secret/**"] }
    grant: block
  nomoveintokeep:
    when: { paths: ["/keep/**"], methods: [MOVE] }
    grant: block
`;

describe('edge: the Destination of COPY and MOVE is routed, checked and translated like the request target', () => {
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

  /** Sends one request and returns its answer with what the backend received meanwhile. */
  async function send(method: string, path: string, host: string, headers: Record<string, string | string[]>) {
    const before = backend.received.length;
    const res = await request(`${gw.url}${path}`, { method, headers: { host, ...headers } });
    return { res, forwarded: backend.received.slice(before) };
  }

  it('a MOVE or COPY into a path a policy blocks gets the 403 that path gets, whatever its spelling, and nothing is forwarded', async () => {
    assert.equal((await send('PUT', '/secret/config.txt', 'dav.test', {})).res.status, 403, 'the blocked path itself');
    const port = gw.port;
    for (const method of ['MOVE', 'COPY']) {
      for (const destination of ['/secret/config.txt', `http://dav.test:${port}/secret/config.txt`, 'HTTP://DAV.TEST/secret/x', '/pub/../secret/config.txt', '/%73ecret/config.txt', '/secret/x/../../secret/y']) {
        const { res, forwarded } = await send(method, '/pub/planted.txt', 'dav.test', { destination, overwrite: 'T' });
        assert.equal(res.status, 403, `${method} -> ${destination}`);
        assert.deepEqual(forwarded, [], `${method} -> ${destination}: nothing forwarded`);
      }
    }
    const denied = gw.logs.filter((l) => l.msg === 'request' && l.method === 'MOVE' && l.decision === 'deny').at(-1)!;
    assert.match(String(denied.reasons), /^Destination \/secret\/y: /, 'the log says it was the Destination that was refused');
  });

  it("a policy's method condition applies to the Destination with the request's method", async () => {
    const moved = await send('MOVE', '/pub/a.txt', 'dav.test', { destination: '/keep/a.txt' });
    assert.equal(moved.res.status, 403);
    assert.deepEqual(moved.forwarded, []);
    const copied = await send('COPY', '/pub/a.txt', 'dav.test', { destination: '/keep/a.txt' });
    assert.equal(copied.res.status, 200);
    assert.equal(copied.forwarded.length, 1);
  });

  it('a Destination on another host, in another app, outside the prefix or not a usable URL is a 400, and nothing is forwarded', async () => {
    const cases: [string, string, string | string[], RegExp][] = [
      ['dav.test', '/pub/a.txt', 'http://evil.test/pub/a.txt', /another host/],
      ['dav.test', '/pub/a.txt', 'http://davpub.test/a.txt', /another host/],
      ['davpub.test', '/readme.txt', '/../secret/outside.txt', /escapes the root/],
      ['davpub.test', '/readme.txt', '//dav.test/secret/outside.txt', /scheme-relative/],
      ['dav.test', '/pub/a.txt', '/other/a.txt', /outside this app/],
      ['dav.test', '/other/a.txt', '/pub/a.txt', /outside this app/],
      ['dav.test', '/pub/a.txt', '/.drawbridge/x', /gateway owns/],
      // (mut32) the other reserved prefix, on an app at the root where the path is otherwise its own
      ['davpub.test', '/readme.txt', '/.well-known/drawbridge/jwks.json', /gateway owns/],
      ['dav.test', '/pub/a.txt', 'ftp://dav.test/pub/b.txt', /neither/],
      ['dav.test', '/pub/a.txt', 'http://user@dav.test/pub/b.txt', /user information/],
      ['dav.test', '/pub/a.txt', '/pub/%2e%2e/secret/x', /encoded dot/],
      ['dav.test', '/pub/a.txt', '', /empty/],
      ['dav.test', '/pub/a.txt', ['/pub/b.txt', '/secret/x'], /more than one/],
    ];
    for (const [host, path, destination, reason] of cases) {
      const { res, forwarded } = await send('COPY', path, host, { destination, accept: 'application/json' });
      assert.equal(res.status, 400, `${host}${path} -> ${destination}`);
      assert.match(res.json().detail ?? res.body, reason, `${host}${path} -> ${destination}`);
      assert.deepEqual(forwarded, [], `${host}${path} -> ${destination}: nothing forwarded`);
    }
  });

  it("an allowed MOVE is forwarded with the Destination translated to the app's internal URL, as the target is", async () => {
    const internal = backend.url; // http://127.0.0.1:PORT
    const cases: [string, string, string, string][] = [
      ['dav.test', '/pub/a.txt', '/pub/b.txt', `${internal}/pub/b.txt`],
      ['dav.test', '/pub/a.txt', `http://dav.test:${gw.port}/pub/./x//b.txt`, `${internal}/pub/x/b.txt`],
      ['davpub.test', '/readme.txt', 'http://davpub.test/sub/b.txt;v=1?x=1', `${internal}/pub/sub/b.txt;v=1?x=1`],
      ['davpub.test', '/readme.txt', '/caf\u00c3\u00a9.txt', `${internal}/pub/caf%C3%A9.txt`],
    ];
    for (const [host, path, destination, expected] of cases) {
      const { res, forwarded } = await send('MOVE', path, host, { destination });
      assert.equal(res.status, 200, `${host}${path} -> ${destination}`);
      assert.equal(forwarded.length, 1);
      assert.equal(forwarded[0]!.method, 'MOVE');
      assert.equal(forwarded[0]!.headers.destination, expected, `${host}${path} -> ${destination}`);
      assert.equal(forwarded[0]!.headers.host, new URL(internal).host);
    }
  });

  it('the 405 Allow names every method that is forwarded, WebDAV included; BIND, REBIND and UNBIND are refused', async () => {
    const trace = await send('TRACE', '/pub/a.txt', 'dav.test', {});
    assert.equal(trace.res.status, 405);
    const allow = String(trace.res.headers.allow).split(', ');
    for (const m of ['GET', 'PUT', 'PROPFIND', 'MKCOL', 'COPY', 'MOVE', 'LOCK', 'REPORT']) assert.ok(allow.includes(m), `${m} is forwarded, so Allow names it`);
    for (const m of ['TRACE', 'CONNECT', 'BIND', 'REBIND', 'UNBIND']) assert.ok(!allow.includes(m), `${m} is refused, so Allow does not name it`);
    const propfind = await send('PROPFIND', '/pub/', 'dav.test', { depth: '1' });
    assert.equal(propfind.res.status, 200);
    assert.equal(propfind.forwarded.length, 1);
    for (const m of ['BIND', 'REBIND', 'UNBIND']) {
      const { res, forwarded } = await send(m, '/pub/', 'dav.test', { 'content-type': 'application/xml' });
      assert.equal(res.status, 405, m);
      assert.deepEqual(forwarded, [], `${m}: nothing forwarded`);
    }
  });
});
