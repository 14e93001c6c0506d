/**
 * `drawbridge token create` as a real process: it needs the state dir and the connector groups
 * of the config, not the service's secrets, and the token it prints enrolls a connector.
 */
import assert from 'node:assert/strict';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from '../support/harness.js';
import { gatewayYaml, hubUrl, runCli, startHubGateway } from '../connector/support.js';

/** Secrets the operator's shell does not have (or a demo that never started has not written). */
const SECRETS = `
identity:
  issuer: http://127.0.0.1:9
  clientId: drawbridge
  clientSecret: \${file:./no-such-secret}
session:
  secrets: ["\${env:DRAWBRIDGE_TEST_TOKEN_SECRET}"]
`;

describe('drawbridge token create', function () {
  this.timeout(20_000);

  it('works from a shell that lacks the config\'s ${env:...} and ${file:...} secrets, and the token enrolls a connector', async () => {
    const dir = tempDir();
    const file = join(dir, 'gateway.config.yaml');
    writeFileSync(file, gatewayYaml({ url: 'http://127.0.0.1:9' }, SECRETS));
    const t = await runCli(['token', 'create', '-g', 'g1', '-c', file], { DRAWBRIDGE_TEST_TOKEN_SECRET: undefined });
    assert.equal(t.code, 0, t.stderr);
    assert.match(t.stdout, /^dbt1\.\S+\n$/);
    // the first one made the connector CA, and says so (on stderr: stdout is the token alone)
    // (named where its files are: stateDir/connectors)
    assert.ok(t.stderr.includes(` connector CA in ${join(dir, 'state', 'connectors')} (pin `), t.stderr);
    assert.ok(existsSync(join(dir, 'state', 'connectors', 'ca.pem')));
    assert.match(t.stderr, /^drawbridge token create: created a new connector CA in \S+ \(pin [\w-]+\); a gateway already running on this stateDir still uses the CA it started with, so restart it before this token is used, and connectors enrolled with another CA must be enrolled again\n$/);
    const again = await runCli(['token', 'create', '-g', 'g1', '-c', file], { DRAWBRIDGE_TEST_TOKEN_SECRET: undefined });
    assert.equal(again.code, 0, again.stderr);
    assert.equal(again.stderr, '', 'the CA exists now: nothing to say');

    // the gateway, which has its secrets, starts on that state dir and accepts the token
    writeFileSync(join(dir, 'no-such-secret'), 'client-secret\n');
    process.env.DRAWBRIDGE_TEST_TOKEN_SECRET = 'a-session-secret-of-at-least-32-characters-0123456789';
    const gw = await startHubGateway(gatewayYaml({ url: 'http://127.0.0.1:9' }, SECRETS), dir);
    try {
      const e = await runCli(['connector', 'enroll', '--gateway', hubUrl(gw), '--token', t.stdout.trim(), '--state-dir', join(dir, 'conn')]);
      assert.equal(e.code, 0, e.stderr);
      assert.match(e.stdout, /enrolled connector c-[0-9a-f]+ in group g1/);
    } finally {
      delete process.env.DRAWBRIDGE_TEST_TOKEN_SECRET;
      await gw.stop();
    }
  });

  it('still says when the group is unknown, or the config has no connectors (exit 1)', async () => {
    const dir = tempDir();
    const file = join(dir, 'gateway.config.yaml');
    writeFileSync(file, gatewayYaml({ url: 'http://127.0.0.1:9' }, SECRETS));
    const unknown = await runCli(['token', 'create', '-g', 'nope', '-c', file]);
    assert.equal(unknown.code, 1);
    assert.equal(unknown.stderr, 'drawbridge token create: unknown connector group "nope" (configured: g1, g2)\n');
    const none = join(dir, 'none.yaml');
    writeFileSync(none, `gateway:\n  publicUrl: http://app.test\n  listen: { http: 127.0.0.1:0 }\napps:\n  - name: App\n    externalUrl: http://app.test/\n    internalUrl: http://127.0.0.1:9/\n    preAuth: passthrough\n`);
    const r = await runCli(['token', 'create', '-g', 'g1', '-c', none]);
    assert.equal(r.code, 1);
    assert.equal(r.stderr, 'drawbridge token create: the config has no connectors: section\n');
    // DRAWBRIDGE_DEBUG=1 adds the stack to these too, as to every other error (README, Commands)
    const debug = await runCli(['token', 'create', '-g', 'nope', '-c', file], { DRAWBRIDGE_DEBUG: '1' });
    assert.equal(debug.code, 1);
    assert.match(debug.stderr, /^drawbridge token create: unknown connector group "nope" \(configured: g1, g2\)\nOperationalError: unknown connector group[^\n]*\n\s+at /);
  });

  it('--ttl: at most 7 days (an unused token is a standing way into the group); a bad one is a usage error (exit 2)', async () => {
    const dir = tempDir();
    const file = join(dir, 'gateway.config.yaml');
    writeFileSync(file, gatewayYaml({ url: 'http://127.0.0.1:9' }));
    assert.equal((await runCli(['token', 'create', '-g', 'g1', '--ttl', '7d', '-c', file])).code, 0);
    const long = await runCli(['token', 'create', '-g', 'g1', '--ttl', '999d', '-c', file]);
    assert.equal(long.code, 2);
    assert.match(long.stderr, /--ttl 999d is longer than 7d/);
    assert.equal((await runCli(['token', 'create', '-g', 'g1', '--ttl', 'soon', '-c', file])).code, 2);
  });

  it('names gateway.stateDir when it is an unset ${env:...} (the one secret-like value it needs)', async () => {
    const dir = tempDir();
    const file = join(dir, 'gateway.config.yaml');
    writeFileSync(file, gatewayYaml({ url: 'http://127.0.0.1:9' }).replace('stateDir: ./state', 'stateDir: ${env:DRAWBRIDGE_TEST_NO_STATE_DIR}'));
    const r = await runCli(['token', 'create', '-g', 'g1', '-c', file]);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /gateway\.stateDir.*DRAWBRIDGE_TEST_NO_STATE_DIR/);
    assert.doesNotMatch(r.stderr, /^\s+at /m);
  });
});
