/**
 * Defects that escape every handler, in the real `drawbridge gateway` process. A plugin's
 * forgotten promise that fails must not take every user's requests down with it; an exception
 * nobody caught ends the process, saying why in the log.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { eventually, request, spawnGateway, startEchoBackend, tempDir, type EchoBackend } from '../support/harness.js';

/**
 * An sso plugin with the bugs background work in third-party code has (refreshing a ticket or a
 * key on a timer): a rejection nobody awaits, or a throw in a callback, chosen by its options.
 */
const BUGGY_PLUGIN = `export default {
  name: 'buggy', kind: 'sso', apiVersion: 1, description: 'has bugs', optionsSchema: { type: 'object' },
  create: (options) => {
    setTimeout(() => {
      if (options.fault === 'floating') for (let i = 0; i < 2; i++) Promise.reject(new Error('the plugin lost a promise'));
      else throw new Error('the plugin threw in a callback');
    }, 300);
    return { name: 'buggy', kind: 'sso', run: () => ({ kind: 'continue' }) };
  },
};
`;

function startWithBuggyPlugin(backend: EchoBackend, fault: 'floating' | 'thrown') {
  const dir = tempDir();
  writeFileSync(join(dir, 'buggy.mjs'), BUGGY_PLUGIN);
  const file = join(dir, 'gateway.config.yaml');
  writeFileSync(
    file,
    `gateway:
  publicUrl: http://gw.test
  listen: { http: 127.0.0.1:0 }
  admin: { listen: 127.0.0.1:0 }
identity: { issuer: http://127.0.0.1:9, clientId: drawbridge, clientSecret: s }
session: { secrets: ["0123456789abcdef0123456789abcdef"] }
plugins: [./buggy.mjs]
apps:
  - name: Payroll
    externalUrl: http://payroll.test/
    internalUrl: ${backend.url}/
    preAuth: oidc
    sso: { plugin: buggy, options: { fault: ${fault} } }
  - name: Echo
    externalUrl: http://echo.test/
    internalUrl: ${backend.url}/
    preAuth: passthrough
`,
  );
  return spawnGateway(file);
}

const logLines = (out: string) =>
  out
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as { level: string; msg: string; err?: { message: string; stack: string } });

describe('drawbridge gateway: defects that escape every handler', function () {
  this.timeout(20_000);
  let backend: EchoBackend;
  before(async () => (backend = await startEchoBackend()));
  after(() => backend.close());

  it('a promise a plugin let fail is logged with its stack and counted; the gateway keeps serving', async () => {
    const gw = startWithBuggyPlugin(backend, 'floating');
    try {
      const port = await gw.port();
      const admin = await gw.port('admin');
      const logged = await eventually(() => {
        const lines = logLines(gw.output()).filter((l) => l.level === 'error' && l.err?.message === 'the plugin lost a promise');
        return lines.length === 2 ? lines : null;
      });
      assert.match(logged![0]!.msg, /nothing handled it .*still serving/);
      assert.match(logged![0]!.err!.stack, /buggy\.mjs/, 'the stack points at the plugin');
      assert.equal((await request(`http://127.0.0.1:${port}/`, { headers: { host: 'echo.test' } })).status, 200, 'still serving');
      const metrics = await request(`http://127.0.0.1:${admin}/metrics`);
      assert.match(metrics.body, /^drawbridge_unhandled_rejections_total 2$/m);
    } finally {
      gw.child.kill('SIGKILL');
      await gw.exited;
    }
  });

  it('an exception nobody caught ends the process with exit 1 and a fatal log line that names it', async () => {
    const gw = startWithBuggyPlugin(backend, 'thrown');
    assert.equal((await gw.exited).code, 1);
    const fatal = logLines(gw.output()).find((l) => l.level === 'fatal');
    assert.ok(fatal, `a fatal line in the log:\n${gw.output()}`);
    assert.equal(fatal.err?.message, 'the plugin threw in a callback');
    assert.match(fatal.msg, /nobody caught/);
  });
});
