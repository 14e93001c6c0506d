import assert from 'node:assert/strict';
import { createHash, X509Certificate } from 'node:crypto';
import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { chromium } from 'playwright-core';
import { generateKeyPair } from '../../src/connector/ca.js';
import { datedCert, selfSignedCert } from '../support/certs.js';
import { request, startEchoBackend, startGateway, tempDir, type EchoBackend, type TestGateway } from '../support/harness.js';

/** The certificate the https listener serves to a client that names `servername` (none: an IP), and what a GET through it answers. */
function fetchOver(port: number, servername: string | undefined, host: string): Promise<{ cn: string; status: string }> {
  return new Promise((resolve, reject) => {
    // (not verified here: which certificate comes back is the point; the apps' own CAs differ)
    const s = tlsConnect({ host: '127.0.0.1', port, servername, rejectUnauthorized: false }, () => {
      const cn = String(s.getPeerCertificate().subject?.CN);
      s.write(`GET /x HTTP/1.1\r\nhost: ${host}\r\nconnection: close\r\n\r\n`);
      let got = '';
      s.on('data', (c: Buffer) => (got += c.toString('latin1')));
      s.on('end', () => resolve({ cn, status: got.split('\r\n')[0]! }));
    });
    s.on('error', reject);
  });
}

describe('gateway: app certificates served by SNI (apps[].tls, custom domains)', function () {
  this.timeout(30_000);
  let backend: EchoBackend;
  let gw: TestGateway;
  const dir = tempDir();
  const yaml = (extra = '', customTls = '    tls: { cert: ./custom.crt, key: ./custom.key }\n') => `
gateway:
  publicUrl: https://gw.example.test
  listen: { https: 127.0.0.1:0 }
  tls: { cert: ./gateway.crt, key: ./gateway.key }
  admin: { listen: 127.0.0.1:0 }
  stateDir: ./state
apps:
  - name: Default
    externalUrl: https://gw.example.test/
    internalUrl: ${backend.url}/
    preAuth: passthrough
  - name: Custom
    externalUrl: https://app.contoso.test/
    internalUrl: ${backend.url}/
    preAuth: passthrough
${customTls}  - name: CustomApi
    externalUrl: https://app.contoso.test/api/
    internalUrl: ${backend.url}/
    preAuth: passthrough
${customTls}  - name: Wild
    externalUrl: https://*.fabrikam.test/
    internalUrl: ${backend.url}/
    preAuth: passthrough
    tls: { cert: ./wild.crt, key: ./wild.key }
  - name: Www
    externalUrl: https://www.contoso.test/
    internalUrl: ${backend.url}/
    preAuth: passthrough
${customTls}${extra}`;
  const port = () => Number(gw.server.addresses().https!.split(':').pop());
  /** the certificate the https listener serves to a client that names `servername` */
  const servedTo = (servername: string) =>
    new Promise<X509Certificate>((resolve, reject) => {
      const s = tlsConnect({ host: '127.0.0.1', port: port(), servername, rejectUnauthorized: false }, () => (resolve(s.getPeerX509Certificate()!), s.destroy()));
      s.on('error', reject);
    });
  const rewrite = async (text: string) => {
    writeFileSync(gw.configFile, text);
    return gw.server.reload('test');
  };

  before(async () => {
    backend = await startEchoBackend();
    selfSignedCert(dir, 'gateway', ['gw.example.test']);
    selfSignedCert(dir, 'custom', ['app.contoso.test', 'www.contoso.test']);
    selfSignedCert(dir, 'wild', ['*.fabrikam.test']);
    gw = await startGateway(yaml(), { dir });
  });
  after(async () => {
    await gw.stop();
    await backend.close();
  });

  it('a client that names an app host gets that app\'s certificate (a *. host: any one name under it); every other one, and one that names none, gets gateway.tls', async () => {
    assert.deepEqual(await fetchOver(port(), 'app.contoso.test', 'app.contoso.test'), { cn: 'app.contoso.test', status: 'HTTP/1.1 200 OK' });
    assert.deepEqual(await fetchOver(port(), 'APP.contoso.test.', 'app.contoso.test'), { cn: 'app.contoso.test', status: 'HTTP/1.1 200 OK' });
    assert.deepEqual(await fetchOver(port(), 'eu.fabrikam.test', 'eu.fabrikam.test'), { cn: '*.fabrikam.test', status: 'HTTP/1.1 200 OK' });
    assert.equal((await fetchOver(port(), 'a.b.fabrikam.test', 'gw.example.test')).cn, 'gw.example.test', 'a wildcard covers one label');
    assert.equal((await fetchOver(port(), 'gw.example.test', 'gw.example.test')).cn, 'gw.example.test');
    assert.equal((await fetchOver(port(), 'unknown.test', 'gw.example.test')).cn, 'gw.example.test');
    assert.equal((await fetchOver(port(), undefined, 'gw.example.test')).cn, 'gw.example.test');
  });

  it('Chromium that trusts only the app\'s certificate opens the app on its own domain, and refuses the gateway\'s host', async () => {
    // (the pin is the certificate's key: a page loads only if the gateway served that certificate)
    const spki = createHash('sha256').update(new X509Certificate(readFileSync(join(dir, 'custom.crt'))).publicKey.export({ type: 'spki', format: 'der' })).digest('base64');
    const browser = await chromium.launch({
      executablePath: '/usr/bin/chromium',
      args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-quic', `--ignore-certificate-errors-spki-list=${spki}`, '--host-resolver-rules=MAP *.test 127.0.0.1'],
    });
    try {
      const page = await (await browser.newContext()).newPage();
      const res = await page.goto(`https://app.contoso.test:${port()}/hello`);
      assert.equal(res?.status(), 200);
      assert.equal(JSON.parse((await page.textContent('body'))!).url, '/hello');
      await assert.rejects(page.goto(`https://gw.example.test:${port()}/`), /ERR_CERT/);
    } finally {
      await browser.close();
    }
  });

  it('each app certificate\'s end date is a gauge by host', async () => {
    const until = (f: string) => Math.floor(Date.parse(new X509Certificate(readFileSync(join(dir, f))).validTo) / 1000);
    const body = (await request(`${gw.adminUrl}/metrics`)).body;
    assert.match(body, new RegExp(`^drawbridge_app_tls_certificate_expiry_timestamp_seconds\\{host="app.contoso.test"\\} ${until('custom.crt')}$`, 'm'));
    assert.match(body, new RegExp(`^drawbridge_app_tls_certificate_expiry_timestamp_seconds\\{host="\\*.fabrikam.test"\\} ${until('wild.crt')}$`, 'm'));
    // (the test certificates are good for two days: their nearness was said once each, at start;
    // custom.crt is served for two hosts, and both are named, where the second was left out)
    const near = gw.logs.filter((l) => /^the certificate served for app\.contoso\.test \(apps\[\]\.tls of Custom, CustomApi\), www\.contoso\.test \(apps\[\]\.tls of Www\) expires at/.test(String(l.msg)));
    assert.equal(near.length, 1);
    assert.equal(gw.logs.filter((l) => /^the certificate served for .* expires at/.test(String(l.msg))).length, 2, 'one line per pair of files: custom and wild');
  });

  it('renewed files are served after the reload, without a restart; a key of another certificate fails the reload at file:line:col and the served one stays', async () => {
    selfSignedCert(dir, 'custom2', ['app.contoso.test', 'www.contoso.test']);
    copyFileSync(join(dir, 'custom2.key'), join(dir, 'custom.key'));
    copyFileSync(join(dir, 'custom2.crt'), join(dir, 'custom.crt'));
    assert.equal(await rewrite(yaml()), 'success');
    const renewed = new X509Certificate(readFileSync(join(dir, 'custom2.crt')));
    assert.equal((await servedTo('app.contoso.test')).fingerprint256, renewed.fingerprint256);
    assert.ok(gw.logs.some((l) => l.msg === 'app certificates reloaded'));

    selfSignedCert(dir, 'other', ['app.contoso.test']);
    copyFileSync(join(dir, 'other.key'), join(dir, 'custom.key'));
    try {
      // (the text is the live one: once the key is put back, what is on disk is what is live, and
      // a reload the save's own event starts between two tests finds nothing new)
      assert.equal(await rewrite(yaml()), 'failure');
      assert.ok(
        gw.logs.some((l) => /gateway\.config\.yaml:\d+:\d+: error: apps\[1\]\.tls\.key: is not the private key of the certificate in apps\[1\]\.tls\.cert/.test(String(l.problem))),
        gw.logs.map((l) => String(l.problem ?? '')).join('\n'),
      );
      assert.deepEqual(await fetchOver(port(), 'app.contoso.test', 'app.contoso.test'), { cn: 'app.contoso.test', status: 'HTTP/1.1 200 OK' });
    } finally {
      copyFileSync(join(dir, 'custom2.key'), join(dir, 'custom.key'));
    }
    assert.equal(await rewrite(yaml()), 'unchanged');
  });

  it('a renewed app certificate held up by an unrelated error in the file is said once, at its key, with when the served one runs out', async () => {
    const served = readFileSync(join(dir, 'wild.crt'));
    const servedKey = readFileSync(join(dir, 'wild.key'));
    const told = () => gw.logs.filter((l) => l.key === 'apps[3].tls.cert' && /certificate files changed but are not applied while the config is invalid/.test(String(l.msg)));
    try {
      selfSignedCert(dir, 'wild', ['*.fabrikam.test']);
      assert.equal(await rewrite(yaml('    backendTimout: 5s\n')), 'failure');
      assert.equal(told().length, 1);
      assert.equal(told()[0]!.servedUntil, new Date(new X509Certificate(served).validTo).toISOString());
      assert.equal(await rewrite(yaml('    backendTimout: 6s\n')), 'failure');
      assert.equal(told().length, 1, 'not again at the next failed reload');
    } finally {
      writeFileSync(join(dir, 'wild.crt'), served);
      writeFileSync(join(dir, 'wild.key'), servedKey);
    }
    // (the file and the certificates are those served again)
    assert.equal(await rewrite(yaml()), 'unchanged');
  });

  it('an app certificate or key refused itself is said by the reload\'s problem alone, not as a renewal held up by the file; one held up by a refused gateway.tls is said', async () => {
    const saved = ['wild.crt', 'wild.key', 'gateway.crt', 'gateway.key'].map((f) => [f, readFileSync(join(dir, f))] as const);
    const waiting = (key: string) => gw.logs.filter((l) => l.key === key && /not applied while the config is invalid/.test(String(l.msg)));
    const before = waiting('apps[3].tls.cert').length;
    try {
      // the key of another certificate: the problem names apps[3].tls.key, and nothing claims the files wait
      copyFileSync(join(dir, 'custom.key'), join(dir, 'wild.key'));
      assert.equal(await rewrite(yaml()), 'failure');
      assert.ok(gw.logs.some((l) => /apps\[3\]\.tls\.key: is not the private key/.test(String(l.msg))));
      assert.equal(waiting('apps[3].tls.cert').length, before, 'its own refusal is not a renewal held up by another part');
      // a renewed app certificate while gateway.tls's own key is refused: the app's renewal waits on it
      selfSignedCert(dir, 'wild', ['*.fabrikam.test']);
      copyFileSync(join(dir, 'custom.key'), join(dir, 'gateway.key'));
      assert.equal(await rewrite(yaml()), 'failure');
      assert.equal(waiting('apps[3].tls.cert').length, before + 1);
      assert.equal(waiting('gateway.tls.cert').length, 0);
    } finally {
      for (const [f, bytes] of saved) writeFileSync(join(dir, f), bytes);
    }
    assert.equal(await rewrite(yaml()), 'unchanged');
  });

  it('an app certificate out of its dates is refused at its key\'s file:line:col, as lint says its problems, and the served one stays', async () => {
    const saved = ['wild.crt', 'wild.key'].map((f) => [f, readFileSync(join(dir, f))] as const);
    const kp = await generateKeyPair();
    const day = 86_400_000;
    const expired = await datedCert(kp.keys, '*.fabrikam.test', Date.now() - 30 * day, Date.now() - day, '07', '*.fabrikam.test expired');
    try {
      writeFileSync(join(dir, 'wild.key'), kp.keyPem);
      writeFileSync(join(dir, 'wild.crt'), expired);
      assert.equal(await rewrite(yaml()), 'failure');
      const lines = readFileSync(gw.configFile, 'utf8').split('\n');
      const line = lines.findIndex((l) => l.includes('cert: ./wild.crt')) + 1;
      const col = lines[line - 1]!.indexOf('./wild.crt') + 1;
      const said = gw.logs.map((l) => String(l.problem ?? '')).filter((p) => /the certificate expired on/.test(p));
      assert.equal(said.length, 1, said.join('\n'));
      assert.match(said[0]!, new RegExp(`gateway\\.config\\.yaml:${line}:${col}: error: apps\\[3\\]\\.tls\\.cert: .*wild\\.crt: the certificate expired on .*; the certificate served now for \\*\\.fabrikam\\.test is kept$`));
      assert.equal((await fetchOver(port(), 'eu.fabrikam.test', 'eu.fabrikam.test')).cn, '*.fabrikam.test');
    } finally {
      for (const [f, bytes] of saved) writeFileSync(join(dir, f), bytes);
    }
    assert.equal(await rewrite(yaml()), 'unchanged');
  });

  it('an app certificate that has run out is replaced by a renewal that starts later: no client takes the served one any more, so nothing is kept by refusing it', async () => {
    const saved = ['custom.crt', 'custom.key'].map((f) => [f, readFileSync(join(dir, f))] as const);
    const kp = await generateKeyPair();
    const day = 86_400_000;
    const cert = (serialNumber: string, notBefore: number, notAfter: number) => datedCert(kp.keys, 'app.contoso.test', notBefore, notAfter, serialNumber);
    try {
      // (served run out: taken out of the file, and put back expired, as a gateway starting with it would serve it)
      assert.equal(await rewrite(yaml('', '')), 'success');
      writeFileSync(join(dir, 'custom.key'), kp.keyPem);
      writeFileSync(join(dir, 'custom.crt'), await cert('08', Date.now() - 30 * day, Date.now() - day));
      assert.equal(await rewrite(yaml()), 'success');
      const later = await cert('09', Date.now() + 3_600_000, Date.now() + 90 * day);
      writeFileSync(join(dir, 'custom.crt'), later);
      assert.equal(await rewrite(yaml()), 'success');
      assert.equal((await servedTo('app.contoso.test')).fingerprint256, new X509Certificate(later).fingerprint256);
    } finally {
      for (const [f, bytes] of saved) writeFileSync(join(dir, f), bytes);
    }
    assert.equal(await rewrite(yaml()), 'success');
  });

  it('an app certificate taken out of the file: its host gets gateway.tls at the next connection, and leaves the gauge; put back, its near end is said again', async () => {
    const near = () => gw.logs.filter((l) => /^the certificate served for app\.contoso\.test \(.*\) expires at/.test(String(l.msg))).length;
    const said = near();
    assert.equal(await rewrite(yaml('', '')), 'success');
    assert.equal((await fetchOver(port(), 'app.contoso.test', 'app.contoso.test')).cn, 'gw.example.test');
    assert.doesNotMatch((await request(`${gw.adminUrl}/metrics`)).body, /host="app\.contoso\.test"/);
    assert.equal(await rewrite(yaml()), 'success');
    assert.equal((await fetchOver(port(), 'app.contoso.test', 'app.contoso.test')).cn, 'app.contoso.test');
    assert.equal(near(), said + 1, 'served again, what was said of it before is not taken as said');
  });
});
