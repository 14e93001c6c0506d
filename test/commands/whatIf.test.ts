import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { tempDir } from '../support/harness.js';

const CLI = resolve('dist/src/cli.js');

function run(args: string[], cwd?: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((r) => {
    execFile(process.execPath, [CLI, ...args], { cwd }, (err, stdout, stderr) => r({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }));
  });
}

const CONFIG = `
gateway:
  publicUrl: https://apps.example.test
  listen: { http: 8080 }
identity:
  issuer: https://login.example.test/v2.0
  clientId: drawbridge
  clientSecret: \${env:NOT_SET_IN_TESTS}
session:
  secrets:
    - \${env:NOT_SET_EITHER}
locations:
  corp: [203.0.113.0/24]
policies:
  mfa-outside-corp:
    when: { notLocations: [corp] }
    grant: requireMfa
  finance-weekdays-only:
    when:
      groups: [finance]
      time: { days: [sat, sun], timezone: Europe/Berlin }
    grant: block
  fresh-sign-in:
    when: { apps: [Payroll] }
    session: { signInFrequency: 1h }
  no-admin-pages:
    when: { apps: [Status], paths: ["/~admin/**"] }
    grant: block
  hr-admin:
    when: { apps: [Hr], paths: ["/hr/admin/**"] }
    grant: block
apps:
  - name: Payroll
    externalUrl: http://payroll.apps.example.test/
    internalUrl: http://10.0.0.5/
    audience: api://payroll
    requiredScopes: [payroll.read]
    assignment: { groups: [finance] }
    conditionalAccess: [finance-weekdays-only, mfa-outside-corp]
  - name: Status
    externalUrl: http://status.apps.example.test/
    internalUrl: http://10.0.0.6/
    preAuth: passthrough
    conditionalAccess: [mfa-outside-corp]
  - name: Hr
    externalUrl: http://intranet.apps.example.test/hr/
    internalUrl: http://10.0.0.7/
    preAuth: passthrough
    conditionalAccess: [hr-admin]
  - name: Intranet
    externalUrl: http://intranet.apps.example.test/
    internalUrl: http://10.0.0.7/
    preAuth: passthrough
`;

describe('what-if and test-policies through the real CLI', function () {
  this.timeout(30_000);
  const dir = tempDir();
  const config = join(dir, 'gateway.config.yaml');
  writeFileSync(config, CONFIG);
  const WED = '2026-11-18T10:00:00+01:00';
  const SAT = '2026-11-21T10:00:00+01:00';
  const whatIf = (...a: string[]) => run(['what-if', '--config', config, ...a]);

  it('exit 0 and ALLOW: finance user on a weekday from the office', async () => {
    const r = await whatIf('--app', 'Payroll', '--user', 'bob', '--groups', 'finance', '--ip', '203.0.113.4', '--at', WED);
    assert.equal(r.code, 0, r.stderr + r.stdout);
    assert.match(r.stdout, /Decision: ALLOW/);
    assert.match(r.stdout, /finance-weekdays-only\s+not applied: time did not match \(local time wed 10:00 Europe\/Berlin\)/);
    assert.match(r.stdout, /mfa-outside-corp\s+not applied: notLocations did not match/);
    assert.match(r.stdout, /fresh-sign-in\s+APPLIED: signInFrequency 1h -> met/, 'a policy naming the app applies without being listed');
  });

  it('exit 3 and DENY: the weekend block wins over everything', async () => {
    const r = await whatIf('--app', 'payroll', '--user', 'bob', '--groups', 'finance', '--ip', '198.51.100.1', '--at', SAT);
    assert.equal(r.code, 3, r.stderr + r.stdout);
    assert.match(r.stdout, /Decision: DENY \(403\)/);
    assert.match(r.stdout, /finance-weekdays-only\s+APPLIED: block -> block/);
  });

  it('exit 4 and STEP-UP with what the user would be asked for', async () => {
    const r = await whatIf('--app', 'Payroll', '--user', 'bob', '--groups', 'finance', '--ip', '198.51.100.1', '--at', WED, '--signed-in-ago', '2h');
    assert.equal(r.code, 4, r.stderr + r.stdout);
    assert.match(r.stdout, /STEP-UP REQUIRED \(401\)/);
    assert.match(r.stdout, /Would be asked for: multi-factor authentication and a sign-in within the last 1h/);
    assert.match(r.stdout, /acr_values=mfa max_age=3600 prompt=login/);
  });

  it('--json gives the full explanation; claims and native clients count', async () => {
    const r = await whatIf('--app', 'Payroll', '--user', 'bob', '--groups', 'finance', '--ip', '198.51.100.1', '--at', WED, '--claims', '{"amr":["pwd","mfa"],"scp":"payroll.read"}', '--client', 'native', '--signed-in-ago', '5m', '--json');
    assert.equal(r.code, 0, r.stderr + r.stdout);
    const j = JSON.parse(r.stdout);
    assert.equal(j.decision, 'allow');
    assert.equal(j.identity.via, 'bearer');
    assert.deepEqual(
      j.policies.map((p: { policy: string; applied: boolean }) => [p.policy, p.applied]),
      [
        ['finance-weekdays-only', false],
        ['mfa-outside-corp', true],
        ['fresh-sign-in', true],
      ],
    );
  });

  it('a native client\'s token carries no sign-in time unless given: under a sign-in frequency it is asked to sign in again, as the gateway asks', async () => {
    const r = await whatIf('--app', 'Payroll', '--user', 'bob', '--groups', 'finance', '--ip', '203.0.113.4', '--at', WED, '--claims', '{"scp":"payroll.read"}', '--client', 'native', '--json');
    const j = JSON.parse(r.stdout);
    assert.equal(j.decision, 'step-up', r.stdout);
    assert.equal(j.stepUp.maxAge, 3600);
    assert.match(j.reasons.join(' '), /no auth_time/);
  });

  it('--at without a UTC offset is refused: it would be read in the zone of the machine running it', async () => {
    const r = await whatIf('--app', 'Status', '--at', '2026-11-18T10:00:00');
    assert.equal(r.code, 2, r.stderr + r.stdout);
    assert.match(r.stderr, /has no UTC offset: add Z or one such as \+01:00/);
    const withOffset = await whatIf('--app', 'Status', '--at', '2026-11-18T10:00:00Z');
    assert.notEqual(withOffset.code, 2, withOffset.stderr);
    assert.match(withOffset.stdout, /^What if /);
  });

  it('TRACE on an app that signs users in is refused before sign-in, not labelled passthrough; on a passthrough app it still is', async () => {
    const oidc = await whatIf('--app', 'Payroll', '--user', 'bob', '--method', 'TRACE');
    assert.equal(oidc.code, 3, oidc.stderr + oidc.stdout);
    assert.match(oidc.stdout, /^What if anyone \(refused before sign-in: who signs in does not matter\)\n {2}from .* sends TRACE \/ to Payroll/);
    assert.match(oidc.stdout, /Decision: DENY \(405\)/);
    assert.doesNotMatch(oidc.stdout, /passthrough/);
    const passthrough = await whatIf('--app', 'Status', '--method', 'TRACE');
    assert.match(passthrough.stdout, /^What if anyone \(passthrough: no sign-in\)\n/);
  });

  it('native clients: a token is refused as the gateway refuses it (no audience 401, missing scope 403), and so is TRACE (405)', async () => {
    const bob = ['--user', 'bob', '--groups', 'finance', '--ip', '203.0.113.4', '--at', WED, '--client', 'native', '--signed-in-ago', '5m'];
    const trace = await whatIf('--app', 'Status', '--method', 'TRACE');
    assert.equal(trace.code, 3, trace.stderr + trace.stdout);
    assert.match(trace.stdout, /Decision: DENY \(405\)\n\s+the user sees: TRACE is not allowed\.\nRefused before any policy/);
    const noScope = await whatIf('--app', 'Payroll', ...bob, '--claims', '{"scp":"payroll.write","roles":["reader"]}');
    assert.equal(noScope.code, 3, noScope.stderr + noScope.stdout);
    assert.match(noScope.stdout, /Decision: DENY \(403\)\n\s+the user sees: The token lacks the required scope payroll\.read\./);
    assert.equal((await whatIf('--app', 'Payroll', ...bob, '--claims', '{"roles":["payroll.read"]}')).code, 0, 'a role counts as a scope, as in the gateway');
    assert.equal((await whatIf('--app', 'Payroll', ...bob, '--claims', '{"scope":"openid payroll.read"}')).code, 0, 'the RFC 9068 scope claim counts, as in the gateway');
    const appOnly = await whatIf('--app', 'Payroll', ...bob, '--claims', '{"idtyp":"app","roles":["payroll.read"]}');
    assert.equal(appOnly.code, 3, appOnly.stderr + appOnly.stdout);
    assert.match(appOnly.stdout, /Decision: DENY \(401\)\n\s+the user sees: The token was issued to an application, not to a user\./);
    assert.match(appOnly.stdout, /bearer token refused \(app_token\): .*\(app-only token: idtyp is app in --claims\)/);
    assert.equal((await whatIf('--app', 'Payroll', ...bob.filter((a) => a !== '--client' && a !== 'native'), '--claims', '{"scp":"payroll.write"}')).code, 0, 'a browser session has no token scopes');
    const file = join(dir, 'native.test.yaml');
    writeFileSync(file, `config: ./gateway.config.yaml
cases:
  - { name: native without audience, app: Hr2, user: bob, client: native, ip: 203.0.113.4, expect: { decision: deny, status: 401 } }
  - { name: browser without audience, app: Hr2, user: bob, ip: 203.0.113.4, expect: allow }
`);
    writeFileSync(join(dir, 'gateway.config.yaml'), CONFIG + `  - name: Hr2
    externalUrl: http://hr2.apps.example.test/
    internalUrl: http://10.0.0.8/
`);
    try {
      const r = await run(['test-policies', file]);
      assert.equal(r.code, 0, r.stdout + r.stderr);
    } finally {
      writeFileSync(config, CONFIG);
    }
  });

  it("an app with an sso plugin: ALLOW says the plugin is not run (kcd-shim without a delegation service answers 502 to everyone)", async () => {
    const withSso = join(dir, 'sso.config.yaml');
    const plugins = `plugins:\n  - ${JSON.stringify(resolve('plugins-examples/kcd-shim'))}\napps:`;
    writeFileSync(withSso, `${CONFIG.replace(/^apps:$/m, plugins)}  - name: Kerberos
    externalUrl: http://kerberos.apps.example.test/
    internalUrl: http://10.0.0.8/
    sso:
      plugin: kcd-shim
      options: { servicePrincipal: HTTP/kerberos.corp.internal@CORP.INTERNAL }
`);
    const r = await run(['what-if', '--config', withSso, '--app', 'Kerberos', '--user', 'bob', '--ip', '203.0.113.4']);
    assert.equal(r.code, 0, r.stderr + r.stdout);
    assert.match(r.stdout, /Decision: ALLOW\n/);
    assert.match(r.stdout, /\nNot simulated: the app's sso plugin kcd-shim runs after these checks and may still refuse the request\n$/);
    const plain = await run(['what-if', '--config', withSso, '--app', 'Payroll', '--user', 'bob', '--groups', 'finance', '--ip', '203.0.113.4', '--at', WED]);
    assert.equal(plain.code, 0, plain.stderr + plain.stdout);
    assert.doesNotMatch(plain.stdout, /Not simulated/, 'an app without an sso plugin has nothing left out');
  });

  it('test-policies: an expected allow on an app with an sso plugin passes, and says the plugin was not run (text and --json)', async () => {
    const withSso = join(dir, 'sso-cases.config.yaml');
    const plugins = `plugins:\n  - ${JSON.stringify(resolve('plugins-examples/kcd-shim'))}\napps:`;
    writeFileSync(withSso, `${CONFIG.replace(/^apps:$/m, plugins)}  - name: Kerberos
    externalUrl: http://kerberos.apps.example.test/
    internalUrl: http://10.0.0.8/
    sso:
      plugin: kcd-shim
      options: { servicePrincipal: HTTP/kerberos.corp.internal@CORP.INTERNAL }
`);
    const cases = join(dir, 'sso-cases.yaml');
    writeFileSync(cases, `config: ./sso-cases.config.yaml
cases:
  - { name: kerberos allow, app: Kerberos, user: bob, ip: 203.0.113.4, expect: allow }
  - { name: payroll allow, app: Payroll, user: bob, groups: [finance], ip: 203.0.113.4, at: "${WED}", expect: allow }
`);
    const r = await run(['test-policies', cases]);
    assert.equal(r.code, 0, r.stderr + r.stdout);
    assert.match(r.stdout, /^ok   kerberos allow \(not simulated: the app's sso plugin kcd-shim runs after these checks and may still refuse the request\)$/m);
    assert.match(r.stdout, /^ok   payroll allow$/m);
    const json = JSON.parse((await run(['test-policies', cases, '--json'])).stdout);
    assert.deepEqual(json.cases.map((c: { notSimulated?: string }) => c.notSimulated ?? null), ["the app's sso plugin kcd-shim runs after these checks and may still refuse the request", null]);
  });

  it('exit 3 for an unassigned user, before any policy', async () => {
    const r = await whatIf('--app', 'Payroll', '--user', 'carol', '--groups', 'everyone', '--at', WED, '--json');
    assert.equal(r.code, 3);
    assert.equal(JSON.parse(r.stdout).assignment.assigned, false);
  });

  it('passthrough: an unmet requirement without sign-in denies (exit 3)', async () => {
    assert.equal((await whatIf('--app', 'Status', '--ip', '198.51.100.1')).code, 3);
    assert.equal((await whatIf('--app', 'Status', '--ip', '::ffff:203.0.113.9')).code, 0);
  });

  it('--path is normalized as the gateway normalizes it: an encoded ~ meets the rule written with ~', async () => {
    for (const path of ['/~admin/x', '/%7Eadmin/x', '/%7eadmin/./x', '//~admin//x']) {
      const r = await whatIf('--app', 'Status', '--ip', '203.0.113.4', '--path', path);
      assert.equal(r.code, 3, `${path}: ${r.stdout}`);
      assert.match(r.stdout, /no-admin-pages\s+APPLIED: block/);
    }
    assert.equal((await whatIf('--app', 'Status', '--ip', '203.0.113.4', '--path', '/public/x')).code, 0);
    const bad = await whatIf('--app', 'Status', '--ip', '203.0.113.4', '--path', '/~admin;x/y');
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /gateway answers 400 to this path \(parameters on a directory segment/);
  });

  it('--path is the path the client requests, the app\'s prefix included; one outside the prefix is refused, not judged', async () => {
    assert.equal((await whatIf('--app', 'Hr', '--ip', '203.0.113.4', '--path', '/hr/admin/users')).code, 3);
    assert.equal((await whatIf('--app', 'Hr', '--ip', '203.0.113.4', '--path', '/hr/people')).code, 0);
    const outside = await whatIf('--app', 'Hr', '--ip', '203.0.113.4', '--path', '/admin/users');
    assert.equal(outside.code, 2);
    assert.match(outside.stderr, /--path \/admin\/users is not under app Hr's prefix \/hr\//);
    // another spelling of the prefix gets a 307 to the app's own (IIS reads /HR./x as /hr/x)
    const spelled = await whatIf('--app', 'Hr', '--ip', '203.0.113.4', '--path', '/HR./admin/users');
    assert.equal(spelled.code, 2);
    assert.match(spelled.stderr, /--path \/HR\.\/admin\/users is another spelling of app Hr's prefix \/hr\/: the gateway answers 307 to \/hr\/admin\/users/);
    // the app at the host's root never sees what the app under /hr/ takes, in any spelling
    const taken = await whatIf('--app', 'Intranet', '--ip', '203.0.113.4', '--path', '/hr/admin/users');
    assert.equal(taken.code, 2);
    assert.match(taken.stderr, /--path \/hr\/admin\/users is app Hr's, published at \/hr\/ on the same host: the gateway routes it there, and app Intranet's policies never see it/);
    const takenSpelled = await whatIf('--app', 'Intranet', '--ip', '203.0.113.4', '--path', '/Hr/admin/users');
    assert.match(takenSpelled.stderr, /is app Hr's, published at \/hr\/ on the same host: the gateway answers 307 to \/hr\/admin\/users/);
    assert.equal((await whatIf('--app', 'Intranet', '--ip', '203.0.113.4', '--path', '/hrx/admin')).code, 0);
    // without --path: the app's own root, not / (which is outside the prefix)
    const root = await whatIf('--app', 'Hr', '--ip', '203.0.113.4', '--json');
    assert.equal(root.code, 0, root.stderr);
    assert.equal(JSON.parse(root.stdout).path, '/hr/');
  });

  it('exit 2 for bad usage, with a message', async () => {
    for (const args of [['--app', 'Nope'], ['--app', 'Payroll'], ['--app', 'Status', '--ip', 'x.y'], ['--app', 'Status', '--at', 'yesterday'], ['--app', 'Payroll', '--user', 'a', '--claims', '[1']]) {
      const r = await whatIf(...args);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stdout}`);
      assert.match(r.stderr, /drawbridge what-if: /);
    }
  });

  it('exit 1 for an invalid config', async () => {
    const bad = join(dir, 'bad.yaml');
    writeFileSync(bad, CONFIG.replace('notLocations: [corp]', 'notLocations: [korp]'));
    const r = await run(['what-if', '--config', bad, '--app', 'Status']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /unknown location "korp"/);
  });

  it('exit 1 with the place and key path, no stack trace, for what the gateway would refuse to start with (a path glob without /, an empty claim condition, an assignment naming nobody)', async () => {
    const variants: [string, string, RegExp][] = [
      ['paths: ["/hr/admin/**"]', 'paths: ["hr/admin/**"]', /:\d+:\d+: error: policies\.hr-admin\.when\.paths\[0\]: "hr\/admin\/\*\*" must start with \//],
      ['notLocations: [corp]', 'notLocations: [corp], claims: { tid: {} }', /:\d+:\d+: error: policies\.mfa-outside-corp\.when\.claims\.tid: needs equals, includes or exists/],
      ['assignment: { groups: [finance] }', 'assignment: { users: [], groups: [] }', /:\d+:\d+: error: apps\[0\]\.assignment: lists no users and no groups/],
    ];
    for (const [from, to, message] of variants) {
      const bad = join(dir, 'refused.yaml');
      writeFileSync(bad, CONFIG.replace(from, to));
      const r = await run(['what-if', '--config', bad, '--app', 'Payroll', '--user', 'bob', '--groups', 'finance']);
      assert.equal(r.code, 1, `${to}: ${r.stdout}${r.stderr}`);
      assert.match(r.stderr, message);
      assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
      const tests = join(dir, 'refused.test.yaml');
      writeFileSync(tests, 'config: ./refused.yaml\ncases:\n  - { app: Payroll, user: bob, groups: [finance], expect: allow }\n');
      const t = await run(['test-policies', tests]);
      assert.equal(t.code, 1, `${to}: ${t.stdout}${t.stderr}`);
      assert.match(t.stderr, message);
      assert.doesNotMatch(t.stderr, /\n\s+at /, 'no stack trace');
    }
  });

  it('test-policies: exit 0 when every case passes', async () => {
    const file = join(dir, 'ok.test.yaml');
    writeFileSync(
      file,
      `config: ./gateway.config.yaml
cases:
  - { name: weekday office, app: Payroll, user: bob, groups: [finance], ip: 203.0.113.4, at: "${WED}", expect: allow }
  - { name: weekend, app: Payroll, user: bob, groups: [finance], at: "${SAT}", expect: { decision: deny, status: 403, applied: [finance-weekdays-only, mfa-outside-corp, fresh-sign-in] } }
  - { name: outside, app: Payroll, user: bob, groups: [finance], ip: 198.51.100.1, at: "${WED}", expect: { decision: step-up, acrValues: mfa } }
`,
    );
    const r = await run(['test-policies', file]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /3 passed, 0 failed/);
  });

  it('test-policies: exit 1 and a diff for each failing case', async () => {
    const file = join(dir, 'fail.test.yaml');
    writeFileSync(
      file,
      `cases:
  - { name: wrong guess, app: Payroll, user: bob, groups: [finance], ip: 198.51.100.1, at: "${WED}", expect: { decision: allow, maxAge: 60 } }
  - { name: right guess, app: Status, ip: 203.0.113.1, expect: allow }
  - { name: typo, app: Status, ipp: 1.2.3.4, expect: allow }
  - { name: client typo, app: Status, client: Native, expect: allow }
  - { name: employee number, app: Payroll, user: 12345, groups: [finance], expect: allow }
`,
    );
    const r = await run(['test-policies', file, '--config', config]);
    assert.equal(r.code, 1, r.stdout + r.stderr);
    assert.match(r.stdout, /FAIL wrong guess\n\s+decision:\n\s+- expected "allow"\n\s+\+ actual\s+"step-up"\n\s+maxAge:\n\s+- expected 60\n\s+\+ actual\s+nothing/);
    assert.match(r.stdout, /ok   right guess/);
    assert.match(r.stdout, /FAIL typo\n\s+unknown key "ipp"/);
    assert.match(r.stdout, /FAIL client typo\n\s+client: "Native" must be browser or native/);
    assert.match(r.stdout, /FAIL employee number\n\s+user: must be a string \(quote 12345\)/);
    assert.match(r.stdout, /1 passed, 4 failed/);
  });

  it('test-policies: a malformed case fails with the field it gets wrong (no stack trace), the other cases still run; a config: that is not a name exits 2', async () => {
    const file = join(dir, 'malformed.test.yaml');
    writeFileSync(
      file,
      `config: ./gateway.config.yaml
cases:
  - null
  - { name: ip, app: Status, ip: 1, expect: deny }
  - { name: method, app: Status, method: 5, expect: allow }
  - { name: path, app: Status, path: [a], expect: allow }
  - { name: claims, app: Payroll, user: bob, claims: amr, expect: allow }
  - { name: expect, app: Status, expect: 5 }
  - { name: app, app: 5, expect: allow }
  - { name: fine, app: Status, ip: 203.0.113.1, expect: allow }
`,
    );
    const r = await run(['test-policies', file]);
    assert.equal(r.code, 1, r.stdout + r.stderr);
    assert.equal(r.stderr, '');
    assert.match(r.stdout, /FAIL case 1\n\s+a case must be a mapping \(app:, expect: \.\.\.\), not null\n/);
    assert.match(r.stdout, /FAIL ip\n\s+ip: must be a string, quote 1\n/);
    assert.match(r.stdout, /FAIL method\n\s+method: must be a string, quote 5\n/);
    assert.match(r.stdout, /FAIL path\n\s+path: must be a string, not \["a"\]\n/);
    assert.match(r.stdout, /FAIL claims\n\s+claims: must be a mapping of claim names to values, not "amr"\n/);
    assert.match(r.stdout, /FAIL expect\n\s+expect: 5 must be allow, deny, step-up or a mapping\n/);
    assert.match(r.stdout, /FAIL app\n\s+app: must be a string, quote 5\n/);
    assert.match(r.stdout, /ok   fine\n\n1 passed, 7 failed/);
    writeFileSync(file, 'config: 5\ncases: [{ app: Status, expect: allow }]\n');
    const bad = await run(['test-policies', file]);
    assert.equal(bad.code, 2, bad.stdout + bad.stderr);
    assert.match(bad.stderr, /^drawbridge test-policies: .*malformed\.test\.yaml: config: must be a file name, not 5\n$/);
  });

  it('test-policies: a value the gateway would refuse is named by the case\'s field, not by what-if\'s option the file never gave', async () => {
    const file = join(dir, 'values.test.yaml');
    writeFileSync(
      file,
      `config: ./gateway.config.yaml
cases:
  - { name: at, app: Status, at: "2026-01-01T10:00:00", expect: allow }
  - { name: ip, app: Status, ip: 999.1.1.1, expect: allow }
  - { name: method, app: Status, method: FOO, expect: allow }
  - { name: path, app: Hr, path: /admin/users, expect: allow }
  - { name: user, app: Payroll, expect: allow }
  - { name: ago, app: Payroll, user: bob, signedInAgo: 1m1m, expect: allow }
`,
    );
    const r = await run(['test-policies', file]);
    assert.equal(r.code, 1, r.stdout + r.stderr);
    assert.match(r.stdout, /FAIL at\n\s+at: "2026-01-01T10:00:00" has no UTC offset/);
    assert.match(r.stdout, /FAIL ip\n\s+ip: "999\.1\.1\.1" is not an IP address\n/);
    assert.match(r.stdout, /FAIL method\n\s+method: "FOO": the gateway answers 400/);
    assert.match(r.stdout, /FAIL path\n\s+path: \/admin\/users is not under app Hr's prefix/);
    assert.match(r.stdout, /FAIL user\n\s+app Payroll signs users in: give user: \(and groups:, claims: as needed\)\n/);
    assert.match(r.stdout, /FAIL ago\n\s+signedInAgo: "1m1m" is not a duration\n/);
    assert.doesNotMatch(r.stdout, /--/);
    // what-if itself still names its options
    const cli = await run(['what-if', '--config', join(dir, 'gateway.config.yaml'), '--app', 'Payroll', '--user', 'bob', '--signed-in-ago', '1m1m']);
    assert.equal(cli.code, 2);
    assert.match(cli.stderr, /^drawbridge what-if: --signed-in-ago "1m1m" is not a duration\n/);
  });

  it('test-policies --json: every case, its differences or problems and what-if\'s result, as one JSON document; the exit code is the same', async () => {
    const file = join(dir, 'json.test.yaml');
    writeFileSync(
      file,
      `cases:
  - { name: office, app: Payroll, user: bob, groups: [finance], ip: 203.0.113.4, at: "${WED}", expect: allow }
  - { name: wrong guess, app: Payroll, user: bob, groups: [finance], ip: 198.51.100.1, at: "${WED}", expect: { decision: allow, maxAge: 60 } }
  - { name: typo, app: Status, ipp: 1.2.3.4, expect: allow }
`,
    );
    const r = await run(['test-policies', file, '--config', config, '--json']);
    assert.equal(r.code, 1, r.stdout + r.stderr);
    const j = JSON.parse(r.stdout);
    assert.deepEqual([j.passed, j.failed, j.total, j.config], [1, 2, 3, config]);
    assert.deepEqual(j.cases.map((c: { name: string; ok: boolean }) => [c.name, c.ok]), [['office', true], ['wrong guess', false], ['typo', false]]);
    assert.equal(j.cases[0].result.decision, 'allow');
    assert.deepEqual(j.cases[1].differences, [
      { field: 'decision', expected: 'allow', actual: 'step-up' },
      { field: 'maxAge', expected: 60, actual: null },
    ]);
    assert.match(j.cases[2].problems[0], /unknown key "ipp"/);
  });

  it('test-policies: exit 2 when the file cannot be read; the shipped example passes against the demo config', async () => {
    assert.equal((await run(['test-policies', join(dir, 'missing.yaml')])).code, 2);
    // not YAML: one line naming the place, as lint says it (the parser's message quoted the file on four more lines)
    const notYaml = join(dir, 'notyaml.test.yaml');
    writeFileSync(notYaml, 'cases:\n[ app: Status\n');
    const r0 = await run(['test-policies', notYaml]);
    assert.equal(r0.code, 2, r0.stdout + r0.stderr);
    assert.match(r0.stderr, new RegExp(`^drawbridge test-policies: cannot read ${notYaml.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:\\d+:\\d+: not valid YAML: [^\n]+\n$`));
    // read as the config file is: a cycle, a FIFO, a device, non-UTF-8 and a second document are one line, exit 2
    const unusable: [string, string | undefined, RegExp][] = [
      ['cycle.test.yaml', 'config: ./gateway.config.yaml\ncases: &c\n  - *c\n', /:3:5: not valid YAML: alias \*c is inside the value its anchor &c names/],
      ['fifo.test.yaml', undefined, /cannot read .*fifo\.test\.yaml: it is a named pipe \(FIFO\), not a regular file/],
      ['/dev/zero', undefined, /cannot read \/dev\/zero: it is a character device, not a regular file/],
      ['latin1.test.yaml', 'cases:\n  - { app: Status, path: /caf\xe9, expect: allow }\n', /:2:30: not valid YAML: the file is not UTF-8 \(byte 0xe9 here\)/],
      ['two.test.yaml', 'cases: [{ app: Status, expect: allow }]\n---\ncases: []\n', /:2:1: not valid YAML: the file holds more than one YAML document \(a --- line\)/],
    ];
    for (const [name, text, message] of unusable) {
      const file = name.startsWith('/') ? name : join(dir, name);
      if (name === 'fifo.test.yaml') execFileSync('mkfifo', [file]);
      else if (text !== undefined) writeFileSync(file, Buffer.from(text, 'latin1'));
      const u = await run(['test-policies', file, '--config', config]);
      assert.equal(u.code, 2, `${name}: ${u.stdout}${u.stderr}`);
      assert.match(u.stderr, new RegExp(`^drawbridge test-policies: [^\n]*${message.source}[^\n]*\n$`));
    }
    const r = await run(['test-policies', 'policies.test.yaml'], resolve('.'));
    assert.equal(r.code, 0, r.stdout + r.stderr);
  });
});
