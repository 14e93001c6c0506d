import assert from 'node:assert/strict';
import { normalizeTarget } from '../../src/gateway/normalize.js';

describe('normalizeTarget: the path rules see is the path forwarded', () => {
  const ok: [string, string, string][] = [
    ['plain path passes untouched', '/a/b/c', '/a/b/c'],
    ['query is kept verbatim', '/a?x=%2F&y=..', '/a'],
    ['duplicate slashes collapse', '//a///b//', '/a/b/'],
    ['dot segments resolve', '/a/./b/../c', '/a/c'],
    ['trailing dot-dot keeps a directory form', '/a/b/..', '/a/'],
    ['encoded unreserved characters are decoded', '/%61%62%7E', '/ab~'],
    ['other encodings are upper-cased, not decoded', '/a%3fb%2a', '/a%3Fb%2A'],
    ['encoded space stays encoded', '/a%20b', '/a%20b'],
    ['root', '/', '/'],
    ['dots that are part of a name stay', '/a/.../b', '/a/.../b'],
    ['a doubly encoded dot inside a name stays (only whole dot segments are refused)', '/a/x%252ey', '/a/x%252ey'],
    ['a doubly encoded percent that makes no dot or slash stays', '/a/100%2541', '/a/100%2541'],
  ];
  for (const [desc, input, path] of ok) {
    it(`accepts: ${desc}`, () => {
      const r = normalizeTarget(input);
      assert.equal(r.ok, true, JSON.stringify(r));
      if (r.ok) assert.equal(r.path, path);
    });
  }
  it('keeps the query string including "?"', () => {
    const r = normalizeTarget('/a?x=%2F&y=..');
    assert.deepEqual(r, { ok: true, path: '/a', params: '', search: '?x=%2F&y=..' });
  });
  it('sets the last segment\'s parameters aside: rules see the path a servlet container maps', () => {
    assert.deepEqual(normalizeTarget('/app/page.jsp;jsessionid=AB12?x=1'), { ok: true, path: '/app/page.jsp', params: ';jsessionid=AB12', search: '?x=1' });
    assert.deepEqual(normalizeTarget('/secure;x'), { ok: true, path: '/secure', params: ';x', search: '' });
    assert.deepEqual(normalizeTarget('/a/;x'), { ok: true, path: '/a/', params: ';x', search: '' });
    assert.deepEqual(normalizeTarget('/a/./b;v=1;w=2'), { ok: true, path: '/a/b', params: ';v=1;w=2', search: '' });
    // an encoded ';' is no parameter to anyone: it stays in the name
    assert.deepEqual(normalizeTarget('/a%3bx/b'), { ok: true, path: '/a%3Bx/b', params: '', search: '' });
  });

  const bad: [string, string, RegExp][] = [
    ['encoded slash', '/a%2Fb', /encoded slash/],
    ['encoded slash lower case', '/a%2fb', /encoded slash/],
    ['encoded backslash', '/a%5Cb', /encoded slash/],
    ['raw backslash', '/a\\b', /backslash/],
    ['encoded dot-dot', '/a/%2e%2e/admin', /encoded dot/],
    ['half-encoded dot-dot', '/a/.%2E/admin', /encoded dot/],
    ['encoded single dot', '/a/%2e/b', /encoded dot/],
    ['dot-dot with a path parameter (servlet containers drop it, then climb)', '/a/..;/admin', /dot segment with parameters/],
    ['encoded dot-dot with a path parameter', '/a/%2e%2e;x=1/admin', /dot segment with parameters/],
    ['single dot with a path parameter', '/a/.;/b', /dot segment with parameters/],
    ['a parameter on a directory segment (/secure;x/data is /secure/data to a servlet container)', '/secure;x/data', /parameters on a directory segment/],
    ['an empty parameter on a directory segment', '/admin;/x', /parameters on a directory segment/],
    ['dots with a parameter on a directory segment', '/a/...;x/b', /parameters on a directory segment/],
    // an app that decodes once more (or a filter in front of it) climbs out of the prefix checked
    ['doubly encoded dot-dot', '/x/%252e%252e/secret', /doubly encoded dot segment/],
    ['doubly encoded dot-dot, upper case', '/x/%252E%252E/secret', /doubly encoded dot segment/],
    ['half doubly encoded dot-dot', '/x/.%252e/secret', /doubly encoded dot segment/],
    ['trebly encoded dot-dot', '/x/%25252e%25252e/secret', /doubly encoded dot segment/],
    ['doubly encoded single dot', '/x/%252e/secret', /doubly encoded dot segment/],
    ['doubly encoded slash', '/x%252f..%252fsecret', /doubly encoded slash/],
    ['doubly encoded backslash', '/x/a%255Cb', /doubly encoded slash/],
    ['escape above the root', '/../etc/passwd', /escapes the root/],
    ['escape above the root after collapse', '/a/../../b', /escapes the root/],
    ['encoded NUL', '/a%00b', /control/],
    ['encoded newline', '/a%0Ab', /control/],
    ['encoded DEL (mut32: only the C0 range was tested)', '/a%7Fb', /control/],
    ['malformed escape', '/a%zz', /malformed/],
    ['truncated escape', '/a%2', /malformed/],
    ['asterisk form', '*', /absolute path/],
    ['absolute form', 'http://evil.test/a', /absolute path/],
    ['fragment', '/a#b', /fragment/],
  ];
  for (const [desc, input, reason] of bad) {
    it(`refuses: ${desc}`, () => {
      const r = normalizeTarget(input);
      assert.equal(r.ok, false);
      if (!r.ok) assert.match(r.reason, reason);
    });
  }
});
