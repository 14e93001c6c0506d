import assert from 'node:assert/strict';
import { CidrSet } from '../../src/config/net.js';
import { clientAddress } from '../../src/gateway/clientAddress.js';

describe('clientAddress: whom the gateway believes', () => {
  const trusted = new CidrSet(['10.0.0.0/8', '2001:db8::/32']);
  const none = new CidrSet([]);
  const cases: [string, string, string | undefined, CidrSet, string | false][] = [
    ['untrusted peer: X-Forwarded-For is ignored', '203.0.113.9', '1.2.3.4', trusted, '203.0.113.9'],
    ['no trusted proxies configured: ignored', '10.1.1.1', '1.2.3.4', none, '10.1.1.1'],
    ['trusted peer: the rightmost entry', '10.1.1.1', '1.2.3.4', trusted, '1.2.3.4'],
    ['trusted chain: the rightmost untrusted entry', '10.1.1.1', '6.6.6.6, 1.2.3.4, 10.2.2.2', trusted, '1.2.3.4'],
    ['IPv4-mapped peer counts as IPv4', '::ffff:10.1.1.1', '1.2.3.4', trusted, '1.2.3.4'],
    ['IPv4-mapped client is reported as IPv4', '::ffff:203.0.113.9', undefined, trusted, '203.0.113.9'],
    ['entries with ports', '10.1.1.1', '1.2.3.4:5555', trusted, '1.2.3.4'],
    ['bracketed IPv6 entry', '10.1.1.1', '[2001:db9::1]:443', trusted, '2001:db9::1'],
    ['garbage from a trusted proxy fails closed', '10.1.1.1', 'not-an-ip', trusted, false],
    ['garbage from an untrusted peer is simply ignored', '203.0.113.9', 'not-an-ip', trusted, '203.0.113.9'],
    // (mut32) garbage right of a client entry fails closed too: skipping it believed the client's own entry
    ['garbage right of the client entry fails closed', '10.1.1.1', '1.2.3.4, not-an-ip', trusted, false],
    ['unbracketed IPv6 entry', '10.1.1.1', '2001:db9::1', trusted, '2001:db9::1'],
    ['every hop a trusted proxy: the leftmost entry, not the peer', '10.1.1.1', '10.3.3.3, 10.2.2.2', trusted, '10.3.3.3'],
  ];
  for (const [desc, peer, xff, set, want] of cases) {
    it(desc, () => {
      const r = clientAddress(peer, xff, set);
      if (want === false) assert.equal(r.ok, false);
      else assert.deepEqual(r, { ok: true, ip: want });
    });
  }
});
