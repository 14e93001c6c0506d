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
