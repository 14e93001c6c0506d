import assert from 'node:assert/strict';
import { join } from 'node:path';
import { loadConfigText } from '../../src/config/load.js';
import { tempDir } from '../support/harness.js';

describe('lint: conditional access on passthrough apps', () => {
  it('warns when a policy can only deny without a sign-in, and not for identity-free ones', async () => {
    const yaml = `gateway:
  publicUrl: http://gw.test
  listen: { http: 8080 }
locations:
  corp: [203.0.113.0/24]
policies:
  by-group: { when: { groups: [x] }, grant: block }
  mfa: { grant: requireMfa }
  fresh: { session: { signInFrequency: 1h } }
  office: { when: { notLocations: [corp], methods: [DELETE] }, grant: block }
apps:
  - name: A
    externalUrl: http://a.test/
    internalUrl: http://10.0.0.1/
    preAuth: passthrough
    conditionalAccess: [by-group, mfa, fresh, office]
`;
    const r = await loadConfigText(yaml, join(tempDir(), 'gateway.config.yaml'), { mode: 'lint' });
    assert.ok(r.config, 'warnings only');
    const warnings = r.problems.filter((p) => p.severity === 'warning').map((p) => `${p.path}: ${p.message}`);
    assert.equal(warnings.length, 3, warnings.join('\n'));
    assert.match(warnings[0]!, /conditionalAccess\[0\]: policy by-group tests groups, unknown without sign-in/);
    assert.match(warnings[1]!, /conditionalAccess\[1\]: policy mfa needs requireMfa/);
    assert.match(warnings[2]!, /conditionalAccess\[2\]: policy fresh needs signInFrequency/);
  });
});
