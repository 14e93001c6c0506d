/**
 * `drawbridge connectors` as a real process, against a stand-in for the admin listener: what it
 * prints for what it gets, and that it needs nothing from the config but gateway.admin.listen.
 * Then against a real gateway and connector processes: a connector that went away stays listed.
 */
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { eventually, request, startEchoBackend, tempDir, type EchoBackend, type TestGateway } from '../support/harness.js';
import { gatewayYaml, hubUrl, killConnector, runCli, startConnector, startHubGateway, token, waitChannels, type ConnectorProcess } from '../connector/support.js';

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
    assert.match(r.stdout, /^ID\s+GROUP\s+VERSION.*\n\(no connector is connected, nor was one in the last 10 days\)\n$/);
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

  it('names an IPv6 admin listener as gateway.admin.listen writes it, in brackets ("::1:9090" read as a longer address)', async () => {
    const v6 = http.createServer((_req, res) => res.writeHead(404, { 'content-type': 'text/plain' }).end('not found'));
    await new Promise<void>((r) => v6.listen(0, '::1', r));
    try {
      const port = (v6.address() as AddressInfo).port;
      const own = join(tempDir(), 'gateway.config.yaml');
      writeFileSync(own, config(`"[::1]:${port}"`));
      const r = await runCli(['connectors', '--config', own]);
      assert.equal(r.code, 1, r.stderr);
      assert.ok(r.stderr.startsWith(`drawbridge connectors: the gateway admin listener at [::1]:${port} answered 404 (text/plain)`), r.stderr);
    } finally {
      v6.close();
    }
  });

  it('lists from a config broken elsewhere (the gateway serves its last valid one), with a warning; refuses one whose admin listener is the broken part', async () => {
    answer = { status: 200, type: 'application/json', body: JSON.stringify({ connectors: [] }) };
    const dir = tempDir();
    const port = (server.address() as AddressInfo).port;
    const broken = join(dir, 'broken.yaml');
    writeFileSync(broken, config(`127.0.0.1:${port}`).replace('    preAuth: passthrough', '    preAuth: passthrough\n    connectorGroup: nope'));
    const r = await runCli(['connectors', '--config', broken]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^ID\s+GROUP/);
    assert.equal(r.stderr, `warning: ${broken} has 1 problem (\`drawbridge lint ${broken}\` lists them; a running gateway serves its last valid config): asking the admin listener it names, 127.0.0.1:${port}\n`);
    for (const [what, listen] of [
      ['not an address', 'here and there'],
      ['a port out of range', '127.0.0.1:70000'],
    ]) {
      const bad = join(dir, 'bad-admin.yaml');
      writeFileSync(bad, config(listen!).replace('    preAuth: passthrough', '    preAuth: passthrough\n    connectorGroup: nope'));
      const refused = await runCli(['connectors', '--config', bad]);
      assert.notEqual(refused.code, 0, `${what}: ${refused.stdout}`);
      assert.match(refused.stderr, /gateway\.admin\.listen/, what);
      assert.equal(refused.stdout, '');
    }
  });

  it('names the unset reference when gateway.admin.listen itself is one', async () => {
    const own = join(tempDir(), 'gateway.config.yaml');
    writeFileSync(own, config('${env:DRAWBRIDGE_TEST_NO_ADMIN}'));
    const r = await runCli(['connectors', '--config', own]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^drawbridge connectors: .*gateway\.config\.yaml:7:\d+: error: gateway\.admin\.listen: environment variable DRAWBRIDGE_TEST_NO_ADMIN is not set\n$/);
  });
});

describe('drawbridge connectors and /connectors with a connector that went away', function () {
  this.timeout(60_000);
  let backend: EchoBackend;
  let gw: TestGateway;
  let cli: string;
  const procs: ConnectorProcess[] = [];

  before(async () => {
    backend = await startEchoBackend();
    gw = await startHubGateway(gatewayYaml(backend));
    // the CLI reads the admin address from the config; the gateway's is ephemeral
    cli = join(gw.dir, 'admin-view.yaml');
    writeFileSync(cli, readFileSync(gw.configFile, 'utf8').replace('admin: { listen: 127.0.0.1:0 }', `admin: { listen: ${gw.adminUrl!.slice(7)} }`));
  });
  after(async () => {
    for (const p of procs) await killConnector(p);
    await gw?.stop();
    await backend?.close();
  });

  const listing = async (): Promise<Record<string, any>[]> => (await request(`${gw.adminUrl}/connectors`)).json().connectors;
  /** drawbridge_connectors and drawbridge_connector_channels as scraped, per group */
  const gauges = async (): Promise<Record<string, string>> => {
    const text = (await request(`${gw.adminUrl}/metrics`)).body;
    return Object.fromEntries([...text.matchAll(/^(drawbridge_connectors?(?:_channels)?\{group="(\w+)"\}) (\d+)$/gm)].map((m) => [m[1], m[3]]));
  };
  const table = async (): Promise<string> => {
    const r = await runCli(['connectors', '--config', cli]);
    assert.equal(r.code, 0, r.stderr);
    return r.stdout;
  };

  it('lists a killed connector as inactive with its last seen time, one live row once it is back, and counts it per group in /metrics', async () => {
    const state = join(gw.dir, 'conn');
    const first = startConnector(state, { gateway: hubUrl(gw), token: token(gw) });
    procs.push(first);
    const id = (await waitChannels(gw, 2))[0].connectorId;
    const live = await listing();
    assert.deepEqual(live.map((c) => [c.id, c.channels, c.active, c.draining]), [[id, 2, true, false]]);
    assert.deepEqual(await gauges(), { 'drawbridge_connectors{group="g1"}': '1', 'drawbridge_connectors{group="g2"}': '0', 'drawbridge_connector_channels{group="g1"}': '2', 'drawbridge_connector_channels{group="g2"}': '0' });

    const killedAt = Date.now();
    await killConnector(first);
    const gone = (await eventually(async () => {
      const l = await listing();
      return l.length === 1 && l[0].active === false ? l : undefined;
    }, 10_000, 50))!;
    assert.deepEqual(
      gone.map((c) => [c.id, c.group, c.version, c.channels, c.inflight, c.active, c.draining]),
      [[id, 'g1', '0.1.0', 0, 0, false, false]],
    );
    assert.ok(Date.parse(gone[0].lastSeen) >= Date.parse(live[0].lastSeen) && Date.parse(gone[0].lastSeen) <= killedAt, `${live[0].lastSeen} ${gone[0].lastSeen} ${new Date(killedAt).toISOString()}`);
    assert.deepEqual(await gauges(), { 'drawbridge_connectors{group="g1"}': '0', 'drawbridge_connectors{group="g2"}': '0', 'drawbridge_connector_channels{group="g1"}': '0', 'drawbridge_connector_channels{group="g2"}': '0' });
    const shown = await table();
    assert.match(shown, new RegExp(`^${id}\\s+g1\\s+0\\.1\\.0\\s+127\\.0\\.0\\.1:\\d+\\s+h2\\s+0\\s+0\\s+${gone[0].lastSeen.replace(/\./g, '\\.')} \\(inactive\\)\\s+\\d{4}-\\S+$`, 'm'), shown);
    assert.match(shown, /\n\(no connector is connected\)\n$/);

    const again = startConnector(state);
    procs.push(again);
    await waitChannels(gw, 2);
    assert.deepEqual((await listing()).map((c) => [c.id, c.channels, c.active]), [[id, 2, true]]);
    assert.equal((await gauges())['drawbridge_connectors{group="g1"}'], '1');
    const back = await table();
    assert.doesNotMatch(back, /inactive|no connector/, back);
    assert.equal(back.trimEnd().split('\n').length, 2, back);
  });

  it('leaves a revoked connector out once its channels are closed', async () => {
    // (the connector the test above brought back)
    const id = (await waitChannels(gw, 2))[0].connectorId;
    writeFileSync(gw.configFile, gatewayYaml(backend, '', '', [id]));
    assert.equal(await gw.server.reload('test'), 'success');
    await eventually(() => gw.server.connectorHub!.registry.all().length === 0, 5000, 10);
    assert.deepEqual(await listing(), []);
    assert.match(await table(), /\n\(no connector is connected, nor was one in the last 10 days\)\n$/);
    assert.equal((await gauges())['drawbridge_connectors{group="g1"}'], '0');
  });
});
