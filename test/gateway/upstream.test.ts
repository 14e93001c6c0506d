import assert from 'node:assert/strict';
import type http from 'node:http';
import https from 'node:https';
import net, { type AddressInfo } from 'node:net';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ConnectorCa } from '../../src/connector/ca.js';
import type { Stage } from '../../src/pipeline/stage.js';
import { eventually, rawRequest, request, spawnGateway, startEchoBackend, startGateway, tempDir, type EchoBackend, type GatewayProcess, type TestGateway } from '../support/harness.js';
import { FAKETIME_LIB } from '../support/faketime.js';
import { gatewayYaml, hubUrl, killConnector, startConnector, startHubGateway, token, waitChannels, type ConnectorProcess } from '../connector/support.js';
import { EXPECTED_INTERIM, INTERIM_ANSWER, interimAnswers } from '../support/interim.js';

/**
 * A stage (as a plugin's would be) that writes a header undici refuses to send straight into the
 * request, past the checks its decision would meet (a value no HTTP message may carry, or a
 * framing header, in a decision is refused with the decision: test/pipeline/pipeline.test.ts).
 */
const badHeader = (): Stage[] => [
  {
    name: 'bad-header',
    kind: 'sso',
    run: (ctx) => {
      ctx.upstreamHeaders['x-note'] = 'a\r\nset-cookie: x=1';
      return { kind: 'continue' };
    },
  },
];

/** a gateway with one passthrough app, `name` on `host`, in direct mode to the server `app` */
function directGateway(name: string, host: string, app: net.Server | http.Server) {
  return startGateway(`gateway:
  publicUrl: http://gw.test
  listen: { http: 127.0.0.1:0 }
apps:
  - name: ${name}
    externalUrl: http://${host}/
    internalUrl: http://127.0.0.1:${(app.address() as AddressInfo).port}/
    preAuth: passthrough
`);
}

describe('upstream: a request the gateway cannot send is its own failure, not the app\'s', function () {
  this.timeout(20_000);
  let backend: EchoBackend;
  before(async () => {
    backend = await startEchoBackend();
  });
  after(() => backend.close());

  it('a stage\'s invalid header value is a 500 saying the gateway could not build the request, with the cause in the log', async () => {
    const gw = await startGateway(
      `gateway:
  publicUrl: http://gw.test
  listen: { http: 127.0.0.1:0 }
apps:
  - name: Evil
    externalUrl: http://evil.test/
    internalUrl: ${backend.url}/
    preAuth: passthrough
`,
      { compileHooks: { extraStages: badHeader } },
    );
    try {
      const before = backend.received.length;
      const res = await request(`${gw.url}/`, { headers: { host: 'evil.test', accept: 'application/json' } });
      assert.equal(res.status, 500, res.body);
      assert.match(res.body, /could not build a valid request for the app/);
      assert.doesNotMatch(res.body, /can't reach the app/);
      assert.equal(backend.received.length, before, 'nothing reached the app');
      const line = gw.logs.find((l) => l.app === 'Evil' && Array.isArray(l.reasons));
      assert.match(String((line?.reasons as string[] | undefined)?.[0]), /header a stage or plugin set: UND_ERR_INVALID_ARG/);
    } finally {
      await gw.stop();
    }
  });
});

describe('upstream: interim answers (1xx)', function () {
  this.timeout(20_000);
  let app: net.Server;
  before(async () => {
    app = net.createServer((s) => {
      s.on('error', () => undefined);
      s.once('data', () => s.end(INTERIM_ANSWER));
    });
    await new Promise<void>((r) => app.listen(0, '127.0.0.1', r));
  });
  after(() => app.close());

  it('an app\'s 102 and 103 reach the client, without hop-by-hop fields; an HTTP/1.0 client gets only the final answer', async () => {
    const gw = await directGateway('Working', 'working.test', app);
    try {
      const got = await interimAnswers(gw.port, 'working.test');
      assert.equal(got.status, 200);
      assert.equal(got.body, 'done');
      assert.deepEqual(got.interim, EXPECTED_INTERIM);
      const old = await rawRequest(gw.port, 'GET /work HTTP/1.0\r\nHost: working.test\r\n\r\n');
      assert.match(old, /^HTTP\/1\.1 200 /);
      assert.doesNotMatch(old, /HTTP\/1\.1 10[23]/);
    } finally {
      await gw.stop();
    }
  });

  it("a 103's links to the app's internal URL are translated as the final answer's are", async () => {
    const hints = net.createServer((s) => {
      s.on('error', () => undefined);
      const internal = `http://127.0.0.1:${(hints.address() as AddressInfo).port}/in`;
      s.once('data', () =>
        s.end(`HTTP/1.1 103 Early Hints\r\nLink: <${internal}/a.css>; rel=preload; as=style, </in/b.js>; rel=preload; as=script\r\n\r\nHTTP/1.1 200 OK\r\nLink: <${internal}/a.css>; rel=preload\r\nContent-Length: 4\r\nConnection: close\r\n\r\ndone`),
      );
    });
    await new Promise<void>((r) => hints.listen(0, '127.0.0.1', r));
    const gw = await startGateway(`gateway:
  publicUrl: http://gw.test
  listen: { http: 127.0.0.1:0 }
apps:
  - name: Hints
    externalUrl: http://hints.test/ext/
    internalUrl: http://127.0.0.1:${(hints.address() as AddressInfo).port}/in/
    preAuth: passthrough
`);
    try {
      const got = await interimAnswers(gw.port, 'hints.test', '/ext/work');
      assert.equal(got.status, 200);
      assert.deepEqual(got.interim, [{ status: 103, headers: { link: '<http://hints.test/ext/a.css>; rel=preload; as=style, </ext/b.js>; rel=preload; as=script' } }]);
      assert.equal(got.headers.link, '<http://hints.test/ext/a.css>; rel=preload');
    } finally {
      await gw.stop();
      hints.close();
    }
  });
});

describe('upstream: answers that have no body whatever their Content-Length says', function () {
  this.timeout(20_000);
  it('a 304 or 204 that carries a Content-Length (as ASP.NET sends) reaches the client whole, and the connection carries the next request; a 101 nobody asked for is a 502 saying the answer was not valid HTTP', async () => {
    // answers /304 and /204 with a length and no body, anything else with a plain 200
    const app = net.createServer((s) => {
      s.on('error', () => undefined);
      let head = '';
      s.on('data', (d) => {
        head += d.toString('latin1');
        for (let end = head.indexOf('\r\n\r\n'); end >= 0; end = head.indexOf('\r\n\r\n')) {
          const path = head.slice(0, end).split(' ')[1]!;
          head = head.slice(end + 4);
          if (path === '/switch') s.write('HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\n\r\n');
          else if (path === '/304') s.write('HTTP/1.1 304 Not Modified\r\ncontent-length: 100\r\netag: "a"\r\n\r\n');
          else if (path === '/204') s.write('HTTP/1.1 204 No Content\r\ncontent-length: 5\r\n\r\n');
          else s.write(`HTTP/1.1 200 OK\r\ncontent-length: ${path.length}\r\n\r\n${path}`);
        }
      });
    });
    await new Promise<void>((r) => app.listen(0, '127.0.0.1', r));
    const gw = await directGateway('Lengths', 'lengths.test', app);
    try {
      for (const status of ['304', '204']) {
        const got = await rawRequest(gw.port, `GET /${status} HTTP/1.1\r\nHost: lengths.test\r\nIf-None-Match: "a"\r\n\r\nGET /next HTTP/1.1\r\nHost: lengths.test\r\n\r\n`);
        assert.match(got, new RegExp(`^HTTP/1\\.1 ${status} `), got);
        if (status === '304') assert.match(got, /\r\netag: "a"\r\n/i);
        else assert.doesNotMatch(got.split('\r\n\r\n', 1)[0]!, /content-length/i, 'a 204 carries no Content-Length');
        assert.match(got, /HTTP\/1\.1 200 OK[\s\S]*\r\n\r\n\/next$/, got);
      }
      // (a 101 to a request that asked for no upgrade is the app's fault, not a network one)
      const switched = await request(`${gw.url}/switch`, { headers: { host: 'lengths.test', accept: 'application/json' } });
      assert.equal(switched.status, 502);
      assert.match(switched.body, /The app's answer was not valid HTTP/);
    } finally {
      await gw.stop();
      app.close();
    }
  });
});

describe('upstream: an https direct app', function () {
  this.timeout(20_000);
  it('backend.tls.serverName is the name sent (SNI) and checked, whatever internalUrl\'s host is, as through a connector', async () => {
    const root = await ConnectorCa.loadOrCreate(tempDir());
    const leaf = await root.issueServer(['alt.internal']);
    const sni: (string | false | null)[] = [];
    const app = https.createServer({ key: leaf.keyPem, cert: leaf.certPem }, (req, res) => {
      sni.push((req.socket as import('node:tls').TLSSocket).servername);
      res.end('tls app');
    });
    await new Promise<void>((r) => app.listen(0, '127.0.0.1', r));
    const dir = tempDir();
    writeFileSync(join(dir, 'root.pem'), root.certPem);
    const gw = await startGateway(
      `gateway:
  publicUrl: http://gw.test
  listen: { http: 127.0.0.1:0 }
apps:
  - name: Named
    externalUrl: http://named.test/
    internalUrl: https://localhost:${(app.address() as AddressInfo).port}/
    preAuth: passthrough
    backend: { tls: { ca: ./root.pem, serverName: alt.internal } }
`,
      { dir },
    );
    try {
      const r = await request(`${gw.url}/`, { headers: { host: 'named.test' } });
      assert.equal(r.status, 200, r.body.slice(0, 300));
      assert.equal(r.body, 'tls app');
      assert.deepEqual(sni, ['alt.internal']);
    } finally {
      await gw.stop();
      app.close();
    }
  });
});

describe('upstream: an app that sends its head and then fails', function () {
  this.timeout(30_000);
  let app: net.Server;
  let gw: TestGateway;
  let conn: ConnectorProcess;
  /** what the app writes for each path, and whether it then closes; otherwise it stays silent */
  const ANSWERS: Record<string, { bytes: string; close?: boolean; reset?: boolean }> = {
    '/head-then-silence': { bytes: 'HTTP/1.1 200 OK\r\ncontent-length: 100\r\nset-cookie: app=1\r\nx-app: yes\r\n\r\n' },
    '/head-then-close': { bytes: 'HTTP/1.1 200 OK\r\ncontent-length: 100\r\nset-cookie: app=1\r\nx-app: yes\r\n\r\n', close: true },
    '/some-then-silence': { bytes: `HTTP/1.1 200 OK\r\ncontent-length: 100\r\nx-app: yes\r\n\r\n${'x'.repeat(10)}` },
    '/some-then-close': { bytes: 'HTTP/1.1 200 OK\r\ncontent-length: 10\r\nx-app: yes\r\n\r\nabc', close: true },
    // (written as UTF-8, as PHP, Python and Java apps send a file name)
    '/utf8-name': { bytes: 'HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-disposition: attachment; filename="résumé-日本-€.pdf"\r\n\r\nok' },
    '/two-challenges': { bytes: 'HTTP/1.1 401 Unauthorized\r\nwww-authenticate: Negotiate\r\nwww-authenticate: Basic realm="x, y"\r\ncontent-length: 0\r\n\r\n' },
    // answered before the upload is read; the app reads (and drops) the rest
    '/early': { bytes: 'HTTP/1.1 413 Payload Too Large\r\ncontent-length: 3\r\n\r\nbig' },
    '/second': { bytes: 'HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nsecond' },
    // the app's connection is reset while the upload is coming (the app crashed)
    '/reset-mid-upload': { bytes: '', reset: true },
  };
  before(async () => {
    app = net.createServer((s) => {
      s.on('error', () => undefined);
      // requests one after another on a connection; a body is read and dropped
      let buffered = '';
      let skip = 0;
      s.on('data', (d) => {
        buffered += d.toString('latin1');
        for (;;) {
          const dropped = Math.min(skip, buffered.length);
          buffered = buffered.slice(dropped);
          skip -= dropped;
          const end = buffered.indexOf('\r\n\r\n');
          if (skip > 0 || end < 0) return;
          const head = buffered.slice(0, end);
          buffered = buffered.slice(end + 4);
          skip = Number(/\r\ncontent-length: *(\d+)/i.exec(head)?.[1] ?? 0);
          const answer = ANSWERS[head.split(' ')[1]!]!;
          if (answer.reset) return void s.resetAndDestroy();
          s.write(answer.bytes);
          if (answer.close) return void s.end();
        }
      });
    });
    await new Promise<void>((r) => app.listen(0, '127.0.0.1', r));
    const url = `http://127.0.0.1:${(app.address() as AddressInfo).port}`;
    const pair = (via: string, group: string) => `  - name: ${via}
    externalUrl: http://${via.toLowerCase()}.test/
    internalUrl: ${url}/
${group}    preAuth: passthrough
    backendTimeout: 2s
`;
    gw = await startHubGateway(gatewayYaml({ url }, '', pair('Direct', '') + pair('Tunnelled', '    connectorGroup: g1\n')));
    conn = startConnector(join(gw.dir, 'conn'), { gateway: hubUrl(gw), token: token(gw), args: ['--channels', '1'] });
    await waitChannels(gw, 1);
  });
  after(async () => {
    await killConnector(conn);
    await gw?.stop();
    app.close();
  });

  const logOf = (correlationId: string | undefined) => gw.logs.find((l) => l.correlationId === correlationId && l.status !== undefined);

  for (const via of ['direct', 'tunnelled']) {
    it(`${via}: a head and then silence past backendTimeout is a 504 page, without the app's fields (it was an empty reply)`, async () => {
      const res = await request(`${gw.url}/head-then-silence`, { headers: { host: `${via}.test`, accept: 'application/json' } });
      assert.equal(res.status, 504, res.body);
      assert.match(res.body, /did not answer in time/);
      assert.equal(res.headers['x-app'], undefined);
      assert.equal(res.headers['set-cookie'], undefined);
      await eventually(() => logOf(res.headers['x-correlation-id'] as string));
      assert.equal(logOf(res.headers['x-correlation-id'] as string)?.decision, 'timeout');
    });

    it(`${via}: a head and then a closed connection is a 502 page`, async () => {
      const res = await request(`${gw.url}/head-then-close`, { headers: { host: `${via}.test`, accept: 'application/json' } });
      assert.equal(res.status, 502, res.body);
      assert.equal(res.headers['x-app'], undefined);
      assert.equal(res.headers['set-cookie'], undefined);
    });

    it(`${via}: once body bytes went out, silence still cuts the connection (the head can no longer be taken back)`, async () => {
      const t0 = Date.now();
      const got = await rawRequest(gw.port, `GET /some-then-silence HTTP/1.1\r\nHost: ${via}.test\r\n\r\n`, 6000);
      assert.ok(Date.now() - t0 < 5000, 'the connection was cut');
      assert.match(got, /^HTTP\/1\.1 200 OK\r\n/);
      assert.match(got, /\r\nx-app: yes\r\n/);
      assert.ok(got.endsWith('\r\n\r\n' + 'x'.repeat(10)), JSON.stringify(got.slice(-40)));
    });

    it(`${via}: an answer the app cuts after some of its body reaches the client as far as it came, every time, and is logged as the app's failure`, async () => {
      for (let i = 0; i < 20; i++) {
        const got = await rawRequest(gw.port, `GET /some-then-close HTTP/1.1\r\nHost: ${via}.test\r\n\r\n`, 3000);
        assert.match(got, /^HTTP\/1\.1 200 OK\r\n[\s\S]*\r\n\r\nabc$/, `try ${i}: ${JSON.stringify(got)}`);
        const id = /\r\nx-correlation-id: ([^\r]+)/.exec(got)![1];
        const line = await eventually(() => logOf(id));
        assert.equal(line?.decision, 'upstream-error');
      }
    });

    it(`${via}: a raw UTF-8 file name in Content-Disposition reaches the client byte for byte (Node re-encoded it after a Content-Length)`, async () => {
      const got = Buffer.from(await rawRequest(gw.port, `GET /utf8-name HTTP/1.1\r\nHost: ${via}.test\r\nConnection: close\r\n\r\n`, 3000), 'latin1');
      assert.ok(got.includes(Buffer.from('filename="résumé-日本-€.pdf"\r\n', 'utf8')), got.toString('utf8'));
    });

    it(`${via}: a field the app sends twice reaches the client as two lines`, async () => {
      const got = await rawRequest(gw.port, `GET /two-challenges HTTP/1.1\r\nHost: ${via}.test\r\nConnection: close\r\n\r\n`, 3000);
      assert.match(got, /\r\nwww-authenticate: Negotiate\r\nwww-authenticate: Basic realm="x, y"\r\n/i, got);
    });

    it(`${via}: after an answer that came before the app read a large upload, the next request on the connection is answered`, async () => {
      const upload = 'u'.repeat(300_000);
      const got = await rawRequest(gw.port, `POST /early HTTP/1.1\r\nHost: ${via}.test\r\nContent-Length: ${upload.length}\r\n\r\n${upload}GET /second HTTP/1.1\r\nHost: ${via}.test\r\n\r\n`, 3000);
      assert.match(got, /^HTTP\/1\.1 413 /);
      assert.match(got, /\r\n\r\nbigHTTP\/1\.1 200 OK\r\n[\s\S]*\r\n\r\nsecond$/, JSON.stringify(got.slice(0, 400)));
    });

    it(`${via}: after a 502 for an app that failed in the middle of a large upload, the client gets the page and its next request on the connection is answered`, async () => {
      // larger than the tunnel's windows: most of it is still to come when the app's connection is reset
      const upload = 'u'.repeat(48 << 20);
      const got = await rawRequest(gw.port, `POST /reset-mid-upload HTTP/1.1\r\nHost: ${via}.test\r\nContent-Length: ${upload.length}\r\n\r\n${upload}GET /second HTTP/1.1\r\nHost: ${via}.test\r\n\r\n`, 4000);
      assert.match(got, /^HTTP\/1\.1 502 /, JSON.stringify(got.slice(0, 200)));
      assert.match(got, /HTTP\/1\.1 200 OK\r\n[\s\S]*\r\n\r\nsecond$/, JSON.stringify(got.slice(-300)));
    });
  }
});

describe('upstream: backendTimeout default (85 s) and long (180 s), on a gateway whose clock runs 20 times as fast', function () {
  this.timeout(60_000);
  let backend: EchoBackend;
  let gw: GatewayProcess;
  before(async function () {
    if (!FAKETIME_LIB) this.skip();
    backend = await startEchoBackend();
    const dir = tempDir();
    const file = join(dir, 'gateway.config.yaml');
    const app = (name: string, timeout?: string) => `  - name: ${name}\n    externalUrl: http://${name.toLowerCase()}.test/\n    internalUrl: ${backend.url}/\n    preAuth: passthrough\n${timeout ? `    backendTimeout: ${timeout}\n` : ''}`;
    writeFileSync(file, `gateway:\n  publicUrl: http://gw.test\n  listen: { http: 127.0.0.1:0 }\n  stateDir: ./state\napps:\n${app('Unset')}${app('Default', 'default')}${app('Long', 'long')}`);
    // The timers run 20 times as fast: 85 s is 4.25 s, 180 s is 9 s. The app (this process) keeps real time.
    gw = spawnGateway(file, ['--no-watch'], { LD_PRELOAD: FAKETIME_LIB, FAKETIME: '+0 x20', FAKETIME_NO_CACHE: '1' });
    await gw.port();
  });
  after(async () => {
    gw?.child.kill('SIGTERM');
    await gw?.exited;
    await backend?.close();
  });

  it('an app answering after 6 s (2 min for the gateway) gets a 504 under default or no backendTimeout, and its answer through under long', async () => {
    const port = await gw.port();
    const get = async (host: string) => {
      const t = Date.now();
      const res = await request(`http://127.0.0.1:${port}/slow?ms=6000`, { headers: { host } });
      return { status: res.status, sec: (Date.now() - t) / 1000 };
    };
    const [unset, byName, long] = await Promise.all([get('unset.test'), get('default.test'), get('long.test')]);
    assert.equal(unset.status, 504);
    assert.equal(byName.status, 504);
    assert.ok(byName.sec > 3 && byName.sec < 5.5, `default waited ${byName.sec} s of 4.25`);
    assert.equal(long.status, 200);
  });
});
