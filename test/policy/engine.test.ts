import assert from 'node:assert/strict';
import type { Identity } from '../../src/pipeline/stage.js';
import { PolicySet, policyNamesFor, stepUpChallenge, type PolicySpec } from '../../src/policy/engine.js';
import type { PolicyInput } from '../../src/policy/conditions.js';

const locations = { corp: ['203.0.113.0/24', '2001:db8:1::/48'], home: ['198.51.100.7'] };
// Wednesday 2026-11-18 10:00 in Berlin (CET, UTC+1)
const WED_10_BERLIN = Date.parse('2026-11-18T09:00:00Z');
const SAT_10_BERLIN = Date.parse('2026-11-21T09:00:00Z');
const NOW_S = Math.floor(WED_10_BERLIN / 1000);

const alice = (over: Partial<Identity> = {}, claims: Record<string, unknown> = {}): Identity => ({
  user: 'alice@example.test',
  groups: ['engineering', 'everyone'],
  via: 'session',
  claims: { amr: ['pwd'], auth_time: NOW_S - 600, ...claims },
  ...over,
});

const input = (over: Partial<PolicyInput> = {}): PolicyInput => ({ app: 'Wiki', identity: alice(), clientIp: '192.0.2.10', method: 'GET', path: '/', now: WED_10_BERLIN, ...over });

const evaluate = (policies: Record<string, PolicySpec>, i: PolicyInput) => new PolicySet(Object.keys(policies), policies, locations).evaluate(i);
const block = (when: PolicySpec['when']): Record<string, PolicySpec> => ({ p: { when, grant: 'block' } });

describe('policy engine: each condition decides whether a policy applies', () => {
  const cases: { desc: string; when: PolicySpec['when']; input: Partial<PolicyInput>; applies: boolean; decidedBy?: string }[] = [
    { desc: 'users: listed user (case-insensitive)', when: { users: ['ALICE@example.test'] }, input: {}, applies: true },
    { desc: 'users: other user', when: { users: ['bob@example.test'] }, input: {}, applies: false, decidedBy: 'users' },
    { desc: 'groups: member of one', when: { groups: ['finance', 'engineering'] }, input: {}, applies: true },
    { desc: 'groups: member of none', when: { groups: ['finance'] }, input: {}, applies: false, decidedBy: 'groups' },
    { desc: 'groups: not in the list but the list is incomplete (overage) counts as member', when: { groups: ['finance'] }, input: { identity: alice({ groupsIncomplete: true }) }, applies: true },
    { desc: 'apps: this app', when: { apps: ['wiki'] }, input: {}, applies: true },
    { desc: 'apps: another app', when: { apps: ['Payroll'] }, input: {}, applies: false, decidedBy: 'apps' },
    { desc: 'locations: IPv4 inside', when: { locations: ['corp'] }, input: { clientIp: '203.0.113.9' }, applies: true },
    { desc: 'locations: IPv4-mapped IPv6 matches the IPv4 range', when: { locations: ['corp'] }, input: { clientIp: '::ffff:203.0.113.9' }, applies: true },
    { desc: 'locations: IPv6 inside', when: { locations: ['corp'] }, input: { clientIp: '2001:db8:1::5' }, applies: true },
    { desc: 'locations: a single address location', when: { locations: ['home'] }, input: { clientIp: '198.51.100.7' }, applies: true },
    { desc: 'locations: outside', when: { locations: ['corp'] }, input: { clientIp: '192.0.2.10' }, applies: false, decidedBy: 'locations' },
    { desc: 'notLocations: outside the office', when: { notLocations: ['corp'] }, input: { clientIp: '192.0.2.10' }, applies: true },
    { desc: 'notLocations: in the office', when: { notLocations: ['corp', 'home'] }, input: { clientIp: '203.0.113.1' }, applies: false, decidedBy: 'notLocations' },
    { desc: 'clientApps: browser session', when: { clientApps: ['browser'] }, input: {}, applies: true },
    { desc: 'clientApps: bearer is native', when: { clientApps: ['browser'] }, input: { identity: alice({ via: 'bearer' }) }, applies: false, decidedBy: 'clientApps' },
    { desc: 'devicePlatforms: Android', when: { devicePlatforms: ['android', 'ios'] }, input: { userAgent: 'Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 Chrome/120 Mobile' }, applies: true },
    { desc: 'devicePlatforms: iPhone', when: { devicePlatforms: ['ios'] }, input: { userAgent: 'Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15' }, applies: true },
    { desc: 'devicePlatforms: Windows is not mobile', when: { devicePlatforms: ['android', 'ios'] }, input: { userAgent: 'Mozilla/5.0 (Windows NT 10.0; Win64; x64)' }, applies: false, decidedBy: 'devicePlatforms' },
    { desc: 'devicePlatforms: no User-Agent is other', when: { devicePlatforms: ['other'] }, input: {}, applies: true },
    { desc: 'methods: listed', when: { methods: ['POST', 'DELETE'] }, input: { method: 'delete' }, applies: true },
    { desc: 'methods: not listed', when: { methods: ['POST'] }, input: { method: 'GET' }, applies: false, decidedBy: 'methods' },
    { desc: 'paths: * within a segment', when: { paths: ['/api/*/admin'] }, input: { path: '/api/v1/admin' }, applies: true },
    { desc: 'paths: * does not cross segments', when: { paths: ['/api/*/admin'] }, input: { path: '/api/v1/x/admin' }, applies: false, decidedBy: 'paths' },
    { desc: 'paths: ** crosses segments', when: { paths: ['/admin/**'] }, input: { path: '/admin/users/1' }, applies: true },
    { desc: 'paths: /x/** covers /x itself', when: { paths: ['/admin/**'] }, input: { path: '/admin' }, applies: true },
    { desc: 'paths: /x/** does not cover /xy', when: { paths: ['/admin/**'] }, input: { path: '/administrator' }, applies: false, decidedBy: 'paths' },
    // IIS drops trailing dots and spaces from names: these are its /admin/users
    { desc: 'paths: a trailing dot on a segment', when: { paths: ['/admin/**'] }, input: { path: '/admin./users' }, applies: true },
    { desc: 'paths: an encoded trailing space on a segment', when: { paths: ['/admin/**'] }, input: { path: '/admin%20/users' }, applies: true },
    { desc: 'paths: trailing dots and spaces, upper case, on the last segment', when: { paths: ['/admin/users'] }, input: { path: '/ADMIN/Users.%20.' }, applies: true },
    { desc: 'paths: a dot inside a name is no trailing dot', when: { paths: ['/admin/**'] }, input: { path: '/ad.min/users' }, applies: false, decidedBy: 'paths' },
    { desc: 'time: weekday inside hours', when: { time: { days: ['mon', 'tue', 'wed', 'thu', 'fri'], hours: '08:00-18:00', timezone: 'Europe/Berlin' } }, input: {}, applies: true },
    { desc: 'time: weekend', when: { time: { days: ['sat', 'sun'], timezone: 'Europe/Berlin' } }, input: {}, applies: false, decidedBy: 'time' },
    { desc: 'time: the end of the window is exclusive', when: { time: { hours: '08:00-10:00', timezone: 'Europe/Berlin' } }, input: {}, applies: false, decidedBy: 'time' },
    { desc: 'time: the day is the local one (Sat 01:00 Tokyo is Fri 16:00 UTC)', when: { time: { days: ['sat'], timezone: 'Asia/Tokyo' } }, input: { now: Date.parse('2026-11-20T16:00:00Z') }, applies: true },
    { desc: 'claims: equals', when: { claims: { risk: { equals: 'high' } } }, input: { identity: alice({}, { risk: 'high' }) }, applies: true },
    { desc: 'claims: equals, other value', when: { claims: { risk: { equals: 'high' } } }, input: { identity: alice({}, { risk: 'low' }) }, applies: false, decidedBy: 'claims.risk' },
    { desc: 'claims: equals is strict (true is not "true")', when: { claims: { device_compliant: { equals: true } } }, input: { identity: alice({}, { device_compliant: 'true' }) }, applies: false, decidedBy: 'claims.device_compliant' },
    { desc: 'claims: includes in an array', when: { claims: { roles: { includes: 'Admin' } } }, input: { identity: alice({}, { roles: ['Reader', 'Admin'] }) }, applies: true },
    { desc: 'claims: includes in a space-separated string', when: { claims: { scp: { includes: 'write' } } }, input: { identity: alice({}, { scp: 'read write' }) }, applies: true },
    { desc: 'claims: exists', when: { claims: { email: { exists: true } } }, input: { identity: alice({}, { email: 'a@x' }) }, applies: true },
    { desc: 'claims: exists false on an absent claim', when: { claims: { email: { exists: false } } }, input: {}, applies: true },
    { desc: 'claims: absent claim does not equal', when: { claims: { risk: { equals: 'high' } } }, input: {}, applies: false, decidedBy: 'claims.risk' },
    { desc: 'no conditions: always applies', when: undefined, input: {}, applies: true },
    { desc: 'all conditions must match: first miss decides', when: { groups: ['engineering'], methods: ['POST'] }, input: { method: 'GET' }, applies: false, decidedBy: 'methods' },
    { desc: 'all conditions match', when: { groups: ['engineering'], methods: ['GET'], notLocations: ['corp'], paths: ['/**'] }, input: {}, applies: true },
    { desc: 'no identity (passthrough): users is unknown and assumed to match', when: { users: ['bob@example.test'] }, input: { identity: undefined }, applies: true },
    { desc: 'no identity: a known-false location still decides', when: { groups: ['finance'], locations: ['corp'] }, input: { identity: undefined, clientIp: '192.0.2.1' }, applies: false, decidedBy: 'locations' },
  ];
  for (const c of cases) {
    it(c.desc, () => {
      const e = evaluate(block(c.when), input(c.input));
      assert.equal(e.policies[0]!.applied, c.applies, JSON.stringify(e.policies[0]));
      assert.equal(e.decision, c.applies ? 'deny' : 'allow');
      if (c.decidedBy) assert.equal(e.policies[0]!.decidedBy, c.decidedBy);
    });
  }
});

describe('policy engine: grants, session control and how they combine', () => {
  const mfaOutside: PolicySpec = { when: { notLocations: ['corp'] }, grant: 'requireMfa' };
  const cases: { desc: string; policies: Record<string, PolicySpec>; input: Partial<PolicyInput>; decision: 'allow' | 'deny' | 'step-up'; status?: number; acr?: string; maxAge?: number }[] = [
    { desc: 'no policy applies: allow', policies: { a: { when: { groups: ['finance'] }, grant: 'block' } }, input: {}, decision: 'allow' },
    { desc: 'block', policies: { a: { grant: 'block' } }, input: {}, decision: 'deny', status: 403 },
    { desc: 'allow adds nothing', policies: { a: { grant: 'allow' } }, input: {}, decision: 'allow' },
    { desc: 'block wins over allow', policies: { a: { grant: 'allow' }, b: { grant: 'block' } }, input: {}, decision: 'deny', status: 403 },
    { desc: 'requireMfa without mfa: step-up asking for the mfa acr', policies: { m: mfaOutside }, input: {}, decision: 'step-up', status: 401, acr: 'mfa' },
    { desc: 'requireMfa met by amr mfa', policies: { m: mfaOutside }, input: { identity: alice({}, { amr: ['pwd', 'mfa'] }) }, decision: 'allow' },
    { desc: 'requireMfa met by the configured acr', policies: { m: mfaOutside }, input: { identity: alice({}, { acr: 'mfa' }) }, decision: 'allow' },
    { desc: 'requireMfa not applying inside the office', policies: { m: mfaOutside }, input: { clientIp: '203.0.113.7' }, decision: 'allow' },
    { desc: 'requireCompliantDevice met', policies: { d: { grant: 'requireCompliantDevice' } }, input: { identity: alice({}, { device_compliant: true }) }, decision: 'allow' },
    { desc: 'requireCompliantDevice unmet: deny (a new sign-in cannot fix it)', policies: { d: { grant: 'requireCompliantDevice' } }, input: {}, decision: 'deny', status: 403 },
    // the claim present is not enough: its value must be the configured one (mut32: any value passed)
    { desc: 'requireCompliantDevice with the claim false: deny', policies: { d: { grant: 'requireCompliantDevice' } }, input: { identity: alice({}, { device_compliant: false }) }, decision: 'deny', status: 403 },
    { desc: 'requireCompliantDevice with the claim "true" (a string): deny', policies: { d: { grant: 'requireCompliantDevice' } }, input: { identity: alice({}, { device_compliant: 'true' }) }, decision: 'deny', status: 403 },
    { desc: 'signInFrequency met', policies: { f: { session: { signInFrequency: '1h' } } }, input: {}, decision: 'allow' },
    { desc: 'signInFrequency exceeded: step-up with max_age', policies: { f: { session: { signInFrequency: '5m' } } }, input: {}, decision: 'step-up', status: 401, maxAge: 300 },
    { desc: 'signInFrequency without auth_time: step-up', policies: { f: { session: { signInFrequency: '1h' } } }, input: { identity: alice({}, { auth_time: undefined }) }, decision: 'step-up', maxAge: 3600 },
    { desc: 'signInFrequency with an auth_time ten years ahead: step-up, not fresh forever', policies: { f: { session: { signInFrequency: '1h' } } }, input: { identity: alice({}, { auth_time: NOW_S + 10 * 365 * 86400 }) }, decision: 'step-up', maxAge: 3600 },
    { desc: 'signInFrequency with an auth_time within the clock tolerance ahead: met (clocks differ)', policies: { f: { session: { signInFrequency: '1h' } } }, input: { identity: alice({}, { auth_time: NOW_S + 30 }) }, decision: 'allow' },
    { desc: 'requirements add up: mfa and freshness in one step-up, shortest frequency wins', policies: { m: mfaOutside, f1: { session: { signInFrequency: '1h' } }, f2: { session: { signInFrequency: '5m' } } }, input: {}, decision: 'step-up', acr: 'mfa', maxAge: 300 },
    { desc: 'requirements add up: mfa met but device unmet denies', policies: { m: mfaOutside, d: { grant: 'requireCompliantDevice' } }, input: { identity: alice({}, { amr: ['mfa'] }) }, decision: 'deny', status: 403 },
    { desc: 'block wins over a step-up', policies: { m: mfaOutside, b: { when: { methods: ['GET'] }, grant: 'block' } }, input: {}, decision: 'deny', status: 403 },
    { desc: 'grant and session control in one policy', policies: { x: { grant: 'requireMfa', session: { signInFrequency: '5m' } } }, input: { identity: alice({}, { amr: ['mfa'] }) }, decision: 'step-up', maxAge: 300 },
    { desc: 'no identity: a requirement cannot be met, deny (not step-up)', policies: { m: mfaOutside }, input: { identity: undefined }, decision: 'deny', status: 403 },
    { desc: 'no identity: block on groups fails closed', policies: { b: { when: { groups: ['contractors'] }, grant: 'block' } }, input: { identity: undefined }, decision: 'deny', status: 403 },
    { desc: 'unparsable client address: the policy cannot be evaluated, deny', policies: { l: { when: { locations: ['corp'] }, grant: 'allow' } }, input: { clientIp: 'not-an-ip' }, decision: 'deny', status: 403 },
  ];
  for (const c of cases) {
    it(c.desc, () => {
      const e = evaluate(c.policies, input(c.input));
      assert.equal(e.decision, c.decision, e.reasons.join('\n'));
      if (c.status) assert.equal(e.status, c.status);
      if (c.acr !== undefined) assert.equal(e.stepUp?.acrValues, c.acr);
      if (c.maxAge !== undefined) {
        assert.equal(e.stepUp?.maxAge, c.maxAge);
        assert.equal(e.stepUp?.prompt, 'login');
      }
      if (c.decision !== 'step-up') assert.equal(e.stepUp, undefined);
    });
  }

  it('reports every policy, applied or not, with the deciding condition and reasons naming the applying ones', () => {
    const e = evaluate({ 'mfa-outside': mfaOutside, 'finance-weekend': { when: { groups: ['finance'], time: { days: ['sat', 'sun'], timezone: 'Europe/Berlin' } }, grant: 'block' } }, input({ now: SAT_10_BERLIN }));
    assert.deepEqual(
      e.policies.map((p) => [p.policy, p.applied, p.decidedBy]),
      [
        ['mfa-outside', true, 'all conditions'],
        ['finance-weekend', false, 'groups'],
      ],
    );
    assert.equal(e.reasons.length, 1);
    assert.match(e.reasons[0]!, /^policy mfa-outside: applied .*requireMfa unmet: needs mfa/);
    assert.deepEqual(e.askFor, ['multi-factor authentication']);
  });

  it('builds the RFC 9470 challenge', () => {
    assert.equal(stepUpChallenge({ acrValues: 'mfa', maxAge: 300, prompt: 'login' }), 'Bearer error="insufficient_user_authentication", error_description="A stronger authentication level is required", acr_values="mfa", max_age=300');
    assert.equal(stepUpChallenge({ maxAge: 60 }), 'Bearer error="insufficient_user_authentication", error_description="A more recent authentication is required", max_age=60');
  });

  it('applies the policies an app lists, then those that name it in when.apps', () => {
    const policies: Record<string, PolicySpec> = { listed: { grant: 'allow' }, targeting: { when: { apps: ['wiki'] }, grant: 'block' }, other: { when: { apps: ['Payroll'] }, grant: 'block' } };
    assert.deepEqual(policyNamesFor({ name: 'Wiki', conditionalAccess: ['listed'] }, policies), ['listed', 'targeting']);
    assert.deepEqual(policyNamesFor({ name: 'Hello' }, policies), []);
  });

  it('uses the configured MFA acr values and device claim', () => {
    const req = { mfaAcrValues: ['c2', 'c3'], compliantDeviceClaim: 'trust', compliantDeviceValue: 'managed' };
    const set = new PolicySet(['m', 'd'], { m: { grant: 'requireMfa' }, d: { grant: 'requireCompliantDevice' } }, locations, req);
    assert.equal(set.evaluate(input({ identity: alice({}, { acr: 'c3', trust: 'managed' }) })).decision, 'allow');
    assert.equal(set.evaluate(input({ identity: alice({}, { acr: 'mfa', trust: 'managed' }) })).stepUp?.acrValues, 'c2', 'the first configured acr is asked for');
    assert.equal(set.evaluate(input({ identity: alice({}, { amr: ['mfa'], device_compliant: true }) })).decision, 'deny', 'the default device claim no longer counts');
  });

  it('rejects malformed policies when built, not per request', () => {
    assert.throws(() => new PolicySet(['x'], {}, locations), /unknown policy "x"/);
    assert.throws(() => new PolicySet(['x'], { x: { when: { locations: ['nowhere'] }, grant: 'block' } }, locations), /unknown location "nowhere"/);
    assert.throws(() => new PolicySet(['x'], { x: { when: { time: { timezone: 'Mars/Olympus' } }, grant: 'block' } }, locations), /not an IANA timezone/);
    assert.throws(() => new PolicySet(['x'], { x: { when: { paths: ['admin'] }, grant: 'block' } }, locations), /must start with \//);
    assert.throws(() => new PolicySet(['x'], { x: {} }, locations), /needs a grant or a session control/);
  });
});
