import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { eventually, request, startEchoBackend, tempDir, type EchoBackend, type TestGateway } from '../support/harness.js';
import { gatewayYaml, hubUrl, killConnector, startConnector, startHubGateway, token, waitChannels, type ConnectorProcess } from './support.js';

describe('connector certificate renewal', function () {
  this.timeout(55_000);
  let backend: EchoBackend;
  let gw: TestGateway;
  let c: ConnectorProcess;

  before(async () => {
    backend = await startEchoBackend();
    gw = await startHubGateway(gatewayYaml(backend).replace('  listen: 127.0.0.1:0\n', '  listen: 127.0.0.1:0\n  certificateLifetime: 1m\n'));
  });
  after(async () => {
    await killConnector(c);
    await gw.stop();
    await backend.close();
  });

  it('renews over mutual TLS at two thirds of a short lifetime, keeps serving, and reconnects with the new certificate', async () => {
    const dir = join(tempDir(), 'conn');
    c = startConnector(dir, { gateway: hubUrl(gw), token: token(gw) });
    await waitChannels(gw, 2);
    const first = new X509Certificate(readFileSync(join(dir, 'cert.pem')));
    const firstKey = readFileSync(join(dir, 'key.pem'), 'utf8');
    const lifetime = Date.parse(first.validTo) - Date.parse(first.validFrom) - 60_000;
    assert.ok(Math.abs(lifetime - 60_000) < 2000, `lifetime ${lifetime}`);
    // renewal is due at notAfter - lifetime/3 (about 40 s after enrollment)
    await eventually(() => c.logs().some((l) => l.msg === 'certificate renewed'), 50_000, 200);
    const renewedAt = Date.now();
    const second = new X509Certificate(readFileSync(join(dir, 'cert.pem')));
    assert.notEqual(second.serialNumber, first.serialNumber);
    assert.equal(second.subject, first.subject, 'same connector id and group');
    assert.notEqual(readFileSync(join(dir, 'key.pem'), 'utf8'), firstKey, 'a fresh key pair');
    assert.ok(renewedAt < Date.parse(first.validTo), 'renewed before the old certificate ran out');
    assert.ok(gw.logs.some((l) => l.msg === 'connector certificate renewed' && l.connector === first.subject.match(/CN=([^\n,]+)/)![1]));
    // the channels the connector kept are listed with the new certificate's expiry
    const listed = gw.server.connectorHub!.connectors().find((l) => l.id === first.subject.match(/CN=([^\n,]+)/)![1])!;
    assert.equal(listed.certExpiry, new Date(second.validTo).toISOString());
    // still serving; a reconnect uses the new certificate (the hub reports its expiry)
    assert.equal((await request(`${gw.url}/x`, { headers: { host: 'app.test' } })).status, 200);
    for (const ch of gw.server.connectorHub!.registry.all()) ch.terminate();
    await eventually(() => gw.server.connectorHub!.registry.all().some((ch) => ch.ready && ch.certExpiry.getTime() === Date.parse(second.validTo)), 5000);
    assert.equal((await request(`${gw.url}/y`, { headers: { host: 'app.test' } })).status, 200);
  });
});
