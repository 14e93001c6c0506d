import assert from 'node:assert/strict';
import { safeReturnUrl } from '../../src/identity/returnUrl.js';
import { auditPayloads, Browser, startStack, type Stack } from './support.js';

const APP = { origin: 'http://web.localhost:8080', prefix: '/' };
const ROOT = 'http://web.localhost:8080/';

/** Payloads that must all land on the app root. */
export const OPEN_REDIRECTS = [
  'https://evil.test/',
  'http://evil.test',
  '//evil.test',
  '//evil.test/path',
  '///evil.test',
  '////evil.test',
  '/\\evil.test',
  '\\\\evil.test',
  '\\/evil.test',
  '/%5Cevil.test',
  '/%5cevil.test',
  '%2F%2Fevil.test',
  '/%2F/evil.test',
  '/%2f%2fevil.test',
  'http:evil.test',
  'http:/evil.test',
  'https:/\\evil.test',
  'javascript:alert(1)',
  'JaVaScRiPt:alert(1)',
  'data:text/html,<script>alert(1)</script>',
  'vbscript:msgbox(1)',
  '/\tevil.test',
  '/%09/evil.test',
  '/%0d%0aSet-Cookie:x=1',
  '/\r\nLocation: http://evil.test',
  '/%00evil',
  ' //evil.test',
  'http://web.localhost:8080.evil.test/',
  'http://web.localhost:8080@evil.test/',
  'http://evil.test@web.localhost:8080/',
  'http://web.localhost.evil.test:8080/',
  'http://web.localhost:8081/',
  'https://web.localhost:8080/',
  'http://wеb.localhost:8080/', // Cyrillic e: a look-alike host
  'http://xn--wb-gmc.localhost:8080/',
  'http://other.localhost:8080/',
  '%252F%252Fevil.test',
  '/%252F%252Fevil.test%5C',
  '/.drawbridge/sign-out',
  '/%2Edrawbridge/sign-out',
  // the gateway folds duplicate slashes: these are its sign-out as it routes them
  '/x/..//.drawbridge/sign-out',
  '/x/..//%2Edrawbridge//sign-out',
  '/.well-known/drawbridge/jwks.json',
  'http://[::1]/',
  'x'.repeat(5000),
];

describe('identity: return URL after sign-in', function () {
  this.timeout(30_000);

  it(`has at least 30 open-redirect payloads (${OPEN_REDIRECTS.length})`, () => assert.ok(OPEN_REDIRECTS.length >= 30));

  for (const p of OPEN_REDIRECTS) {
    it(`refuses ${JSON.stringify(p.slice(0, 60))}`, () => assert.equal(safeReturnUrl(p, APP), ROOT));
  }

  for (const [p, want] of [
    ['/deep/link?x=1', 'http://web.localhost:8080/deep/link?x=1'],
    ['http://web.localhost:8080/a/b', 'http://web.localhost:8080/a/b'],
    ['http://WEB.localhost:8080/a', 'http://web.localhost:8080/a'],
    ['/a/../b', 'http://web.localhost:8080/b'],
    ['/search?q=%20a%2Fb', 'http://web.localhost:8080/search?q=%20a%2Fb'],
    // Deep links of everyday apps (SharePoint, IIS, Java): encoded spaces in the path, encoded
    // backslashes and control characters in the query, path parameters.
    ['/Shared%20Documents/Forms/AllItems.aspx', 'http://web.localhost:8080/Shared%20Documents/Forms/AllItems.aspx'],
    ['/wiki/Main%20Page', 'http://web.localhost:8080/wiki/Main%20Page'],
    ['/x?path=C%3A%5Cdir%5Cfile', 'http://web.localhost:8080/x?path=C%3A%5Cdir%5Cfile'],
    ['/x?msg=line1%0Aline2', 'http://web.localhost:8080/x?msg=line1%0Aline2'],
    ['/x?q=%09tab&z=%00', 'http://web.localhost:8080/x?q=%09tab&z=%00'],
    ['/app/page.jsp;jsessionid=ABC123?x=1', 'http://web.localhost:8080/app/page.jsp;jsessionid=ABC123?x=1'],
  ]) {
    it(`keeps the same-app URL ${p}`, () => assert.equal(safeReturnUrl(p, APP), want));
  }

  it('the browser audit\'s 26 payloads stay on the app\'s origin', () => {
    const payloads = auditPayloads(APP.origin);
    assert.equal(payloads.length, 26);
    for (const p of payloads) assert.equal(new URL(safeReturnUrl(p, APP)).origin, APP.origin, JSON.stringify(p));
  });

  it('an app under a path prefix: other paths on the same host fall back to its root', () => {
    const app = { origin: 'http://h.localhost', prefix: '/app/' };
    assert.equal(safeReturnUrl('/app/x', app), 'http://h.localhost/app/x');
    assert.equal(safeReturnUrl('/app', app), 'http://h.localhost/app');
    assert.equal(safeReturnUrl('/other', app), 'http://h.localhost/app/');
    assert.equal(safeReturnUrl('/application', app), 'http://h.localhost/app/');
    assert.equal(safeReturnUrl('/app/../admin', app), 'http://h.localhost/app/');
    // the gateway's own paths under the prefix (its sign-out step) are no place to land either
    assert.equal(safeReturnUrl('/app/.drawbridge/sign-out', app), 'http://h.localhost/app/');
    assert.equal(safeReturnUrl('/app/%2edrawbridge/sign-out', app), 'http://h.localhost/app/');
    assert.equal(safeReturnUrl('/app//.drawbridge/sign-out', app), 'http://h.localhost/app/');
    assert.equal(safeReturnUrl('/app/x/..//.drawbridge/sign-out', app), 'http://h.localhost/app/');
    assert.equal(safeReturnUrl('/app/x/.drawbridge/y', app), 'http://h.localhost/app/x/.drawbridge/y');
  });

  describe('through the real gateway and provider (/.drawbridge/sign-in?returnUrl=)', () => {
    let s: Stack;
    before(async () => {
      s = await startStack();
    });
    after(async () => s?.stop());

    it('every payload ends on the app root after a real sign-in; a same-app deep link is honoured', async () => {
      const b = new Browser();
      const root = `${s.origin('web')}/`;
      const first = await b.browse(`${s.origin('web')}/.drawbridge/sign-in?returnUrl=${encodeURIComponent('/deep?x=1')}`, { user: 'bob', password: 'bob-pw' });
      assert.equal(first.url, `${s.origin('web')}/deep?x=1`);
      for (const p of OPEN_REDIRECTS.slice(0, -1)) {
        const { url, hops } = await b.browse(`${s.origin('web')}/.drawbridge/sign-in?returnUrl=${encodeURIComponent(p)}`, { user: 'bob', password: 'bob-pw' });
        assert.equal(url, root, `${JSON.stringify(p)} went ${hops.join(' -> ')}`);
        assert.ok(hops.every((h) => h.startsWith(s.origin('web')) || h.startsWith(s.idp.issuer)), hops.join(' -> '));
      }
    });
  });
});
