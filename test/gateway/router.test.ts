import assert from 'node:assert/strict';
import { Router, hostnameOf } from '../../src/gateway/router.js';

describe('Router: host and path prefix, most specific wins', () => {
  const r = new Router<{ name: string }>();
  r.add('apps.test', '/', { name: 'root' });
  r.add('apps.test', '/api/', { name: 'api' });
  r.add('apps.test', '/api/v2/', { name: 'api-v2' });
  r.add('*.wild.test', '/', { name: 'wild' });
  r.add('exact.wild.test', '/', { name: 'exact' });
  r.add('partial.wild.test', '/only/', { name: 'partial' });

  const cases: [string, string, string, string | undefined][] = [
    ['root prefix catches everything', 'apps.test', '/x/y', 'root'],
    ['longer prefix wins', 'apps.test', '/api/users', 'api'],
    ['longest prefix wins', 'apps.test', '/api/v2/users', 'api-v2'],
    ['prefix without its slash still matches', 'apps.test', '/api', 'api'],
    ['prefix must end on a segment boundary', 'apps.test', '/apix', 'root'],
    ['wildcard matches one label', 'a.wild.test', '/', 'wild'],
    ['exact host beats wildcard', 'exact.wild.test', '/', 'exact'],
    ['wildcard does not match two labels', 'a.b.wild.test', '/', undefined],
    ['wildcard does not match the bare domain', 'wild.test', '/', undefined],
    ['wildcard does not match an empty label (mut32)', '.wild.test', '/', undefined],
    ['unknown host', 'other.test', '/', undefined],
    // (mut32) an exact host whose prefixes miss the path still falls back to the wildcard app
    ['exact host without a matching prefix falls back to the wildcard', 'partial.wild.test', '/other', 'wild'],
  ];
  for (const [desc, host, path, want] of cases) {
    it(desc, () => assert.equal(r.match(host, path)?.target.name, want));
  }

  it('hostnameOf lower-cases, drops the port and a trailing dot, and refuses junk', () => {
    assert.equal(hostnameOf('Apps.Test:8443'), 'apps.test');
    assert.equal(hostnameOf('apps.test.'), 'apps.test');
    assert.equal(hostnameOf('[::1]:80'), '[::1]');
    assert.equal(hostnameOf('a b'), undefined);
    assert.equal(hostnameOf('a.test:80x'), undefined);
    assert.equal(hostnameOf('evil.test/x'), undefined);
    assert.equal(hostnameOf(''), undefined);
    assert.equal(hostnameOf('a.test:'), 'a.test'); // an empty port is allowed (RFC 3986)
    assert.equal(hostnameOf('a.test:65535'), 'a.test');
    assert.equal(hostnameOf('a.test:65536'), undefined);
    assert.equal(hostnameOf('a.test:99999'), undefined);
    assert.equal(hostnameOf('[::1]garbage'), undefined);
    assert.equal(hostnameOf('[::1]:99999'), undefined);
    assert.equal(hostnameOf(undefined), undefined);
  });
});

describe('Router: a path that is a deeper prefix to a lenient server goes to that prefix', () => {
  // IIS ignores letter case and drops trailing dots and spaces from names: /ADMIN/x, /admin./x and
  // /admin%20/x are its /admin/x. Taken by the root app, they reached the admin app's pages past its sign-in.
  const r = new Router<{ name: string }>();
  r.add('iis.test', '/', { name: 'root' });
  r.add('iis.test', '/admin/', { name: 'admin' });
  r.add('iis.test', '/admin/reports/', { name: 'reports' });
  r.add('iis.test', '/Mixed/', { name: 'mixed' });

  const cases: [string, string, string, string | undefined][] = [
    ['upper case', '/ADMIN/x', 'admin', '/admin/x'],
    ['a trailing dot', '/admin./x', 'admin', '/admin/x'],
    ['trailing dots and spaces', '/admin.%20./x', 'admin', '/admin/x'],
    ['a raw trailing space is no path (normalized away), an encoded one is', '/admin%20/x', 'admin', '/admin/x'],
    ['the prefix alone, without its slash', '/Admin', 'admin', '/admin'],
    ['the prefix alone, with its slash', '/ADMIN/', 'admin', '/admin/'],
    ['the deepest prefix it spells', '/ADMIN/Reports./q', 'reports', '/admin/reports/q'],
    ['a spelling of a deeper prefix under an exact shallower one', '/admin/REPORTS/q', 'reports', '/admin/reports/q'],
    ["a config prefix's own spelling is kept", '/mixed/a', 'mixed', '/Mixed/a'],
  ];
  for (const [desc, path, want, canonical] of cases) {
    it(`${desc}: ${path} -> ${want} at ${canonical}`, () => {
      const m = r.match('iis.test', path);
      assert.equal(m?.target.name, want);
      assert.equal(m?.canonical, canonical);
    });
  }
  const exact: [string, string, string][] = [
    ['the exact spelling has no canonical form to go to', '/admin/x', 'admin'],
    ['exact under the deeper prefix', '/admin/reports/q', 'reports'],
    ['a name that only starts like the prefix stays with the root', '/administrator/x', 'root'],
    ['dots inside a name are not trailing dots', '/ad.min/x', 'root'],
    ['the root app keeps what no prefix spells', '/other/x', 'root'],
    ['case and dots below the prefix are the app\'s own business', '/admin/X./y', 'admin'],
  ];
  for (const [desc, path, want] of exact) {
    it(`${desc}: ${path} -> ${want}`, () => {
      const m = r.match('iis.test', path);
      assert.equal(m?.target.name, want);
      assert.equal(m?.canonical, undefined);
    });
  }
  it('an app alone on its host is found under another spelling too', () => {
    const one = new Router<{ name: string }>();
    one.add('one.test', '/app/', { name: 'app' });
    assert.deepEqual(one.match('one.test', '/APP/x'), { target: { name: 'app' }, prefix: '/app/', canonical: '/app/x' });
    assert.equal(one.match('one.test', '/other'), undefined);
  });
});
