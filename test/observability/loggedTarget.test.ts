import assert from 'node:assert/strict';
import { loggedTarget } from '../../src/observability/loggedTarget.js';
import { rawRequest, sleep, startEchoBackend, startGateway, type EchoBackend, type TestGateway } from '../support/harness.js';

describe('observability: the request target as logs keep it', () => {
  it('keeps the path, drops ;parameters and every query value', () => {
    assert.deepEqual(loggedTarget('/a/b'), { path: '/a/b' });
    assert.deepEqual(loggedTarget('/a/b?'), { path: '/a/b', query: '' });
    assert.deepEqual(loggedTarget('/.drawbridge/callback?code=abc&state=def&iss=https%3A%2F%2Fidp'), { path: '/.drawbridge/callback', query: 'code&state&iss' });
    assert.deepEqual(loggedTarget('/x/page.jsp;jsessionid=ABC?x=1'), { path: '/x/page.jsp', query: 'x' });
    assert.deepEqual(loggedTarget('/ws?access_token=eyJ.eyJ.sig'), { path: '/ws', query: 'access_token' });
    assert.deepEqual(loggedTarget(undefined), { path: '' });
    assert.deepEqual(loggedTarget('/download?SIGNED-TOKEN-VALUE&x=1'), { path: '/download', query: '-&x' }, 'a part without = is a value: not written');
    assert.deepEqual(loggedTarget('/download?dG9rZW4tc2VjcmV0LTE==&x=1'), { path: '/download', query: '-&x' }, 'a base64 token with its padding is a value too');
    assert.deepEqual(loggedTarget('/download?dG9rZW4tc2VjcmV0LTEy=&x=1'), { path: '/download', query: '-&x' });
    assert.deepEqual(loggedTarget(`/download?${'A'.repeat(80)}=1&x=1`), { path: '/download', query: '-&x' }, 'so is a "name" longer than any parameter\'s');
    assert.deepEqual(loggedTarget('/search?q=&page=2'), { path: '/search', query: '-&page' }, 'an empty value is not told from padding');
  });

  it('bounds what a query of thousands of names can add to a line', () => {
    const t = loggedTarget(`/x?${'n&'.repeat(5000)}`);
    assert.ok(t.query!.length <= 515, `${t.query!.length}`);
  });

  it('drops a fragment, and the scheme, host and userinfo of a target that is not a path', () => {
    assert.deepEqual(loggedTarget('/cb#access_token=SECRET&token_type=bearer'), { path: '/cb' });
    assert.deepEqual(loggedTarget('/cb?x=1#access_token=SECRET&token_type=bearer'), { path: '/cb', query: 'x' }, 'the fragment\'s names are not query names');
    assert.deepEqual(loggedTarget('/cb#frag?code=SECRET'), { path: '/cb' }, 'a ? inside the fragment is not a query');
    assert.deepEqual(loggedTarget('http://alice:SECRET@app.test/x'), { path: '/x' });
    assert.deepEqual(loggedTarget('HTTPS://app.test/x/y;p=SECRET?code=SECRET#f'), { path: '/x/y', query: 'code' });
    assert.deepEqual(loggedTarget('http://alice:SE/CRET@app.test/x'), { path: '/x' }, 'a / in the password does not end the userinfo');
    assert.deepEqual(loggedTarget('http://app.test'), { path: '' });
    assert.deepEqual(loggedTarget('alice:SECRET@app.test/x'), { path: '/x' });
    assert.deepEqual(loggedTarget('*'), { path: '*' });
  });

  describe('in the request log of a real gateway', function () {
    this.timeout(20_000);
    let backend: EchoBackend;
    let gw: TestGateway;
    before(async () => {
      backend = await startEchoBackend();
      gw = await startGateway(`gateway:
  publicUrl: http://gw.test
  listen: { http: 127.0.0.1:0 }
apps:
  - name: Open
    externalUrl: http://open.test/
    internalUrl: ${backend.url}/
    preAuth: passthrough
`);
    });
    after(async () => {
      await gw?.stop();
      await backend?.close();
    });

    // A broken client sends the fragment an implicit-flow redirect carried; a proxy-minded one the absolute form, with a password.
    for (const [target, path] of [
      ['/cb#access_token=FRAGSECRET1&token_type=bearer', '/cb'],
      ['http://alice:USERINFOSECRET2@open.test/x', '/x'],
      ['http://open.test/x?code=ABSQUERYSECRET2', '/x'],
    ]) {
      it(`${target}: answered, logged with path ${path} and none of the secret`, async () => {
        const secret = /[A-Z]+SECRET\d/.exec(target!)![0];
        const answer = await rawRequest(gw.port, `GET ${target} HTTP/1.1\r\nHost: open.test\r\nConnection: close\r\n\r\n`);
        const id = /\r\nx-correlation-id: ([^\r\n]+)/i.exec(answer)?.[1];
        assert.ok(id, answer.slice(0, 200));
        await sleep(50);
        const line = gw.logs.find((l) => l.msg === 'request' && l.correlationId === id);
        assert.ok(line, 'a request line');
        assert.equal(line.path, path);
        assert.ok(!gw.logs.some((l) => JSON.stringify(l).includes(secret)), `${secret} in the log`);
      });
    }
  });
});
