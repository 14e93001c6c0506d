/**
 * `drawbridge connectors` as a real process, against a stand-in for the admin listener: what it
 * prints for what it gets, and that it needs nothing from the config but gateway.admin.listen.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { tempDir } from '../support/harness.js';
import { runCli } from '../connector/support.js';

/** The docs audit's config: secrets the operator's shell does not have, and the admin listener. */
const config = (adminListen: string) => `
gateway:
  publicUrl: http://localhost:47180
  listen:
    http: 127.0.0.1:47180
  admin:
    listen: ${adminListen}
  stateDir: ./state
identity:
  issuer: http://127.0.0.1:47200
  clientId: drawbridge
  clientSecret: \${file:./no-such-secret}
session:
  secrets: ["\${env:DRAWBRIDGE_TEST_NO_SUCH_ENV}"]
connectors:
  listen: 127.0.0.1:47144
connectorGroups:
  g1: {}
apps:
  - name: Echo
    externalUrl: http://echo.localhost:47180/
    internalUrl: http://127.0.0.1:47101/
    preAuth: passthrough
`;

describe('drawbridge connectors', function () {
  this.timeout(15_000);
  let server: http.Server;
  let answer: { status: number; type: string; body: string };
  let file: string;

  before(async () => {
    server = http.createServer((_req, res) => res.writeHead(answer.status, { 'content-type': answer.type }).end(answer.body));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    file = join(tempDir(), 'gateway.config.yaml');
    writeFileSync(file, config(`127.0.0.1:${(server.address() as AddressInfo).port}`));
  });
  after(() => server.close());

  it('lists from a shell that lacks the config\'s ${env:...} and ${file:...} secrets', async () => {
    answer = { status: 200, type: 'application/json', body: JSON.stringify({ connectors: [] }) };
    const r = await runCli(['connectors', '--config', file]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^ID\s+GROUP\s+VERSION.*\n\(no connector is connected\)\n$/);
    assert.equal(r.stderr, '');
  });

  for (const [what, status, type, body, shown] of [
    ['JSON without a connectors list', 200, 'application/json', '{"status":"ok"}', '200 (application/json) without a connectors list: "{\\"status\\":\\"ok\\"}"'],
    ['a connectors value that is not a list', 200, 'application/json', '{"connectors":{}}', '200 (application/json) without a connectors list'],
    ['a page that is not JSON', 200, 'text/html', '<html>hello</html>', '200 (text/html) without a connectors list: "<html>hello</html>"'],
    ['a 404', 404, 'text/plain', 'not found', '404 (text/plain) without a connectors list'],
  ] as const) {
    it(`says in one line what it got when the admin port answers ${what}`, async () => {
      answer = { status, type, body };
      const r = await runCli(['connectors', '--config', file]);
      assert.equal(r.code, 1);
      assert.equal(r.stdout, '');
      assert.equal(r.stderr.split('\n').length, 2, r.stderr);
      assert.ok(r.stderr.startsWith(`drawbridge connectors: the gateway admin listener at 127.0.0.1:${(server.address() as AddressInfo).port} answered ${shown}`), r.stderr);
      assert.match(r.stderr, /is gateway\.admin\.listen the port of this gateway's admin listener\?\n$/);
    });
  }

  it('names the unset reference when gateway.admin.listen itself is one', async () => {
    const own = join(tempDir(), 'gateway.config.yaml');
    writeFileSync(own, config('${env:DRAWBRIDGE_TEST_NO_ADMIN}'));
    const r = await runCli(['connectors', '--config', own]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^drawbridge connectors: .*gateway\.config\.yaml:7:\d+: error: gateway\.admin\.listen: environment variable DRAWBRIDGE_TEST_NO_ADMIN is not set\n$/);
  });
});
