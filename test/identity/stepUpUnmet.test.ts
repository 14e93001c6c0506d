import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { EmbeddedIdp } from '../../src/identity/provider/embeddedIdp.js';
import { FAKETIME_LIB } from '../support/faketime.js';
import { eventually, spawnGateway, startEchoBackend, tempDir, type EchoBackend, type GatewayProcess } from '../support/harness.js';
import { Browser, CLIENT_SECRET, gatewayYaml, SECRET_A, startStack, USERS, type Stack } from './support.js';

/**
 * A provider that ignores acr_values (as Entra does) answers an MFA step-up from its single
 * sign-on session: the sign-in comes back without MFA. The embedded provider does not know the
 * acr value `c1`, so it answers exactly like that.
 */
describe('identity: an MFA step-up the provider does not honour', function () {
  this.timeout(30_000);
  let s: Stack;
  before(async () => {
    s = await startStack({
      identityYaml: '  mfaAcrValues: [c1]',
      extraYaml: `policies:
  mfa:
    grant: requireMfa
`,
      apps: (b) => `
  - name: Web
    externalUrl: http://web.localhost/
    internalUrl: ${b}/
    preAuth: oidc
    conditionalAccess: [mfa]
`,
    });
  });
  after(async () => s?.stop());

  it('ends on a page saying the sign-in did not provide MFA, not in a redirect loop', async () => {
    const b = new Browser();
    const { res, url, hops } = await b.browse(`${s.origin('web')}/payroll?month=11`, { user: 'carol', password: 'carol-pw' }, 30);
    assert.equal(res.status, 403, hops.join('\n'));
    assert.ok(url.startsWith(`${s.origin('web')}/.drawbridge/callback`), url);
    assert.match(res.headers['content-type'] ?? '', /text\/html/);
    assert.match(res.body, /requires multi-factor authentication, and your sign-in did not provide it/);
    assert.equal(hops.filter((h) => h.includes('acr_values=c1')).length, 1, 'one step-up, not a loop');
    assert.equal(s.backend.received.length, 0, 'nothing reached the app');
    // Opening the app again is one more round, again ending on the page.
    const again = await b.browse(`${s.origin('web')}/payroll`, undefined, 30);
    assert.equal(again.res.status, 403, again.hops.join('\n'));
  });
});

/**
 * A sign-in frequency step-up sends the browser back with max_age. A provider whose clock is
 * behind the gateway's returns a sign-in that is already too old by the gateway's clock: it failed
 * the frequency at the next request, which asked again, for ever (a password every round). The
 * gateway runs under libfaketime, ahead of the provider in this process.
 */
describe('identity: a sign-in frequency step-up answered by a provider whose clock is behind', function () {
  this.timeout(60_000);
  let idp: EmbeddedIdp;
  let backend: EchoBackend;
  let gw: GatewayProcess;
  let origin: string;
  let offsetFile: string;
  before(async function () {
    if (!FAKETIME_LIB) this.skip();
    idp = await EmbeddedIdp.start({ clientId: 'drawbridge', clientSecret: CLIENT_SECRET, users: USERS });
    backend = await startEchoBackend();
    const dir = tempDir();
    offsetFile = join(dir, 'faketime');
    writeFileSync(offsetFile, '+0\n');
    const file = join(dir, 'gateway.config.yaml');
    const apps = `
  - name: Web
    externalUrl: http://web.localhost/
    internalUrl: ${backend.url}/
    preAuth: oidc
    conditionalAccess: [fresh]
`;
    writeFileSync(file, gatewayYaml(idp.issuer, [SECRET_A], apps, `policies:\n  fresh:\n    when: { paths: [/fresh/**] }\n    session: { signInFrequency: 1m }\n`));
    gw = spawnGateway(file, ['--no-watch'], { LD_PRELOAD: FAKETIME_LIB, FAKETIME_TIMESTAMP_FILE: offsetFile, FAKETIME_NO_CACHE: '1', FAKETIME_DONT_FAKE_MONOTONIC: '1' });
    origin = `http://web.localhost:${await gw.port()}`;
    idp.allowRedirectUri(`${origin}/.drawbridge/callback`);
  });
  after(async () => {
    gw?.child.kill('SIGTERM');
    await gw?.exited;
    await idp?.close();
    await backend?.close();
  });

  // 63 s: within the 5 s clockTolerance openid-client allows past max_age (the gateway's own check);
  // 90 s: past it (openid-client's refusal, said the same way)
  for (const behind of [63, 90]) {
    it(`${behind} s behind: one page saying the sign-in is not recent enough, after one step-up, not a loop`, async () => {
      writeFileSync(offsetFile, `+${behind}\n`);
      const { res, hops } = await new Browser().browse(`${origin}/fresh/report`, { user: 'carol', password: 'carol-pw' }, 30);
      assert.equal(res.status, 403, hops.join('\n'));
      assert.match(res.body, /requires a recent sign-in, and the identity provider reported an older one/);
      assert.equal(hops.filter((h) => h.includes('max_age=60')).length, 1, hops.join('\n'));
      assert.ok(!backend.received.some((r) => r.url.startsWith('/fresh/')), 'nothing reached the app');
    });
  }

  // the other way round: the provider's clock ahead (the gateway's behind) by more than clockTolerance
  // (60 s): its sign-ins are dated in the gateway's future, which the frequency check does not take
  it('90 s ahead: one page saying the clocks disagree, after one step-up, and an error naming both clocks', async () => {
    writeFileSync(offsetFile, '-90\n');
    const { res, hops } = await new Browser().browse(`${origin}/fresh/report`, { user: 'carol', password: 'carol-pw' }, 30);
    assert.equal(res.status, 403, hops.join('\n'));
    assert.match(res.body, /dated yours ahead of the gateway&#39;s clock|dated yours ahead of the gateway's clock/);
    assert.equal(hops.filter((h) => h.includes('max_age=60')).length, 1, hops.join('\n'));
    assert.ok(!backend.received.some((r) => r.url.startsWith('/fresh/')), 'nothing reached the app');
    // (90 s less the seconds the sign-in took: more than one on a loaded machine)
    const ahead = (await eventually(() => /"level":"error"[^\n]*dated a sign-in (\d+) s after the gateway's clock/.exec(gw.output())))!;
    assert.ok(Number(ahead[1]) > 60 && Number(ahead[1]) <= 91, ahead[0]);
  });
});
