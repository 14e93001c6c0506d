// The kcd-shim plugin against real HTTP: a small delegation service on loopback,
// and (end to end) a real gateway and echo backend from the Drawbridge test harness.
import assert from 'node:assert/strict';
import http from 'node:http';
import { writeFileSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import pino from 'pino';
import kcdShim from '../index.js';

const here = dirname(fileURLToPath(import.meta.url));
const pluginFile = join(here, '..', 'index.js');
const repo = join(here, '..', '..', '..');
const { loadConfigText } = await import(join(repo, 'dist/src/config/load.js'));
const identity = await import(join(repo, 'dist/test/identity/support.js'));

const context = {
  logger: pino({ level: 'silent' }),
  now: Date.now,
  app: { name: 'Payroll', externalUrl: 'https://payroll.example.test/', internalUrl: 'http://127.0.0.1:1/' },
  configDir: here,
  stateDir: here,
};

/** @param {string} [user] */
function requestContext(user = 'alice@example.test') {
  return {
    id: 'corr-1',
    method: 'GET',
    path: '/',
    search: '',
    host: 'payroll.example.test',
    protocol: 'https',
    headers: { authorization: 'Negotiate forged-by-client' },
    clientIp: '127.0.0.1',
    peerIp: '127.0.0.1',
    upgrade: false,
    startedAt: Date.now(),
    app: { name: 'Payroll', externalUrl: 'https://payroll.example.test/' },
    identity: user ? { user, groups: [], via: 'session', claims: {} } : undefined,
    upstreamHeaders: {},
  };
}

/**
 * A delegation service: answers with `reply(body)` ({status, body} or 'hang').
 * @param {(body: any) => ({status: number, body: string} | 'hang')} reply
 */
async function startDelegationService(reply) {
  /** @type {{ body: any, headers: http.IncomingHttpHeaders, method: string }[]} */
  const received = [];
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const body = JSON.parse(Buffer.concat(chunks).toString('utf8') || 'null');
      received.push({ body, headers: req.headers, method: req.method ?? '' });
      const r = reply(body);
      if (r === 'hang') return;
      res.writeHead(r.status, { 'content-type': 'application/json' }).end(r.body);
    });
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', () => r(undefined)));
  const port = /** @type {import('node:net').AddressInfo} */ (server.address()).port;
  return {
    url: `http://127.0.0.1:${port}/delegate`,
    received,
    close: () => new Promise((r) => { server.closeAllConnections(); server.close(() => r(undefined)); }),
  };
}

const SPN = 'HTTP/payroll.corp.internal@CORP.INTERNAL';
const ticketFor = (user) => Buffer.from(`ticket:${user}`).toString('base64');

describe('kcd-shim plugin', function () {
  this.timeout(20_000);

  describe('contract', () => {
    it('is an sso plugin of API version 1 whose stage strips the delegation header', async () => {
      assert.equal(kcdShim.name, 'kcd-shim');
      assert.equal(kcdShim.kind, 'sso');
      assert.equal(kcdShim.apiVersion, 1);
      const stage = await kcdShim.create({ servicePrincipal: SPN }, context);
      assert.deepEqual(stage.stripHeaders, ['authorization']);
      const custom = await kcdShim.create({ servicePrincipal: SPN, delegationHeader: 'X-Kerberos' }, context);
      assert.deepEqual(custom.stripHeaders, ['x-kerberos']);
    });

    it('refuses bad options when it is built, not per request', async () => {
      await assert.rejects(async () => kcdShim.create({ servicePrincipal: 'payroll' }, context), /SERVICE\/host@REALM/);
      await assert.rejects(async () => kcdShim.create({ servicePrincipal: SPN, delegationHeader: 'bad header' }, context), /not a header name/);
      await assert.rejects(async () => kcdShim.create({ servicePrincipal: SPN, tokenEndpoint: 'ftp://x/' }, context), /http or https/);
      // headers the gateway sets itself: the ticket would be replaced and the app reached without it
      for (const h of ['Host', 'X-Forwarded-For', 'x-correlation-id', 'Content-Length']) {
        await assert.rejects(async () => kcdShim.create({ servicePrincipal: SPN, delegationHeader: h }, context), /a header the gateway sets itself/, h);
      }
    });
  });

  describe('without a delegation service', () => {
    it('denies with 502 and says that no delegation service is configured (fail closed)', async () => {
      const stage = await kcdShim.create({ servicePrincipal: SPN }, context);
      const d = await stage.run(requestContext());
      assert.equal(d.kind, 'deny');
      assert.equal(d.status, 502);
      assert.match(d.reasons[0], /no delegation service is configured/);
      assert.match(d.publicReason, /no Kerberos delegation service is configured/);
    });
  });

  describe('with a delegation service', () => {
    it('POSTs {user, servicePrincipal} and sets Authorization: Negotiate <ticket>', async () => {
      const svc = await startDelegationService((b) => ({ status: 200, body: JSON.stringify({ ticket: ticketFor(b.user) }) }));
      try {
        const stage = await kcdShim.create({ servicePrincipal: SPN, tokenEndpoint: svc.url }, context);
        const d = await stage.run(requestContext('alice@example.test'));
        assert.equal(d.kind, 'continue');
        assert.deepEqual(d.setHeaders, { authorization: `Negotiate ${ticketFor('alice@example.test')}` });
        assert.equal(svc.received.length, 1);
        assert.equal(svc.received[0].method, 'POST');
        assert.deepEqual(svc.received[0].body, { user: 'alice@example.test', servicePrincipal: SPN });
        assert.equal(svc.received[0].headers['x-correlation-id'], 'corr-1');
      } finally {
        await svc.close();
      }
    });

    it('uses the configured delegation header', async () => {
      const svc = await startDelegationService(() => ({ status: 200, body: JSON.stringify({ ticket: 'YWJj' }) }));
      try {
        const stage = await kcdShim.create({ servicePrincipal: SPN, tokenEndpoint: svc.url, delegationHeader: 'X-Kerberos' }, context);
        const d = await stage.run(requestContext());
        assert.deepEqual(d.setHeaders, { 'x-kerberos': 'Negotiate YWJj' });
      } finally {
        await svc.close();
      }
    });

    const failures = [
      { description: 'the service answers 403', reply: () => ({ status: 403, body: '{}' }), reason: /answered 403/ },
      { description: 'the answer is not JSON', reply: () => ({ status: 200, body: '<html>' }), reason: /not JSON/ },
      { description: 'the answer has no ticket', reply: () => ({ status: 200, body: '{"token":"YWJj"}' }), reason: /no base64 "ticket"/ },
      { description: 'the ticket is not base64 (header injection attempt)', reply: () => ({ status: 200, body: JSON.stringify({ ticket: 'abc\r\nX-Admin: 1' }) }), reason: /no base64 "ticket"/ },
      { description: 'the service does not answer in time', reply: () => 'hang', reason: /no answer within 300ms/ },
    ];
    for (const f of failures) {
      it(`denies with 502 when ${f.description}`, async () => {
        const svc = await startDelegationService(f.reply);
        try {
          const stage = await kcdShim.create({ servicePrincipal: SPN, tokenEndpoint: svc.url, timeoutMs: 300 }, context);
          const d = await stage.run(requestContext());
          assert.equal(d.kind, 'deny');
          assert.equal(d.status, 502);
          assert.match(d.reasons[0], f.reason);
        } finally {
          await svc.close();
        }
      });
    }

    /**
     * A service that answers 200 with a body of `mb` MB, sent as fast as it is read: the ticket
     * is at most 64 KB, so the plugin stops reading long before. `written` is what the service
     * managed to send before the plugin let go: what the gateway could have had to hold.
     * @param {number} mb
     * @param {boolean} declared  send Content-Length (else chunked)
     */
    async function startHugeService(mb, declared) {
      const state = { written: 0 };
      const chunk = Buffer.alloc(64 * 1024, 'A');
      const server = http.createServer((req, res) => {
        req.resume();
        res.writeHead(200, { 'content-type': 'application/json', ...(declared ? { 'content-length': String(mb * 1024 * 1024 + 12) } : {}) });
        res.write('{"ticket":"');
        const pump = () => {
          while (state.written < mb * 1024 * 1024) {
            state.written += chunk.length;
            if (!res.write(chunk)) return void res.once('drain', pump);
          }
          res.end('"}');
        };
        res.on('close', () => res.removeAllListeners('drain'));
        pump();
      });
      await new Promise((r) => server.listen(0, '127.0.0.1', () => r(undefined)));
      const port = /** @type {import('node:net').AddressInfo} */ (server.address()).port;
      return { url: `http://127.0.0.1:${port}/delegate`, state, close: () => new Promise((r) => { server.closeAllConnections(); server.close(() => r(undefined)); }) };
    }

    for (const declared of [true, false]) {
      it(`denies with 502 at once, without reading it whole, when the service answers 200 MB (${declared ? 'with Content-Length' : 'chunked'})`, async () => {
        const svc = await startHugeService(200, declared);
        try {
          const stage = await kcdShim.create({ servicePrincipal: SPN, tokenEndpoint: svc.url, timeoutMs: 5000 }, context);
          const before = process.memoryUsage();
          const started = performance.now();
          const d = await stage.run(requestContext());
          const ms = performance.now() - started;
          const grown = process.memoryUsage().arrayBuffers - before.arrayBuffers;
          assert.equal(d.kind, 'deny');
          assert.equal(d.status, 502);
          assert.match(d.reasons[0], /answer is too large/);
          assert.ok(ms < 1500, `took ${Math.round(ms)} ms`);
          assert.ok(grown < 64 * 1024 * 1024, `memory grew by ${grown} bytes`);
          // the plugin let go: the service stops well short of the whole answer
          await new Promise((r) => setTimeout(r, 200));
          assert.ok(svc.state.written < 64 * 1024 * 1024, `the service sent ${svc.state.written} bytes`);
        } finally {
          await svc.close();
        }
      });
    }

    it('counts the time to read the answer in timeoutMs: a body that keeps coming is a 502 when the time is up', async () => {
      const server = http.createServer((req, res) => {
        req.resume();
        res.writeHead(200, { 'content-type': 'application/json' });
        res.write('{"ticket":"');
        const t = setInterval(() => res.write('A'), 20);
        res.on('close', () => clearInterval(t));
      });
      await new Promise((r) => server.listen(0, '127.0.0.1', () => r(undefined)));
      try {
        const url = `http://127.0.0.1:${/** @type {import('node:net').AddressInfo} */ (server.address()).port}/delegate`;
        const stage = await kcdShim.create({ servicePrincipal: SPN, tokenEndpoint: url, timeoutMs: 300 }, context);
        const started = performance.now();
        const d = await stage.run(requestContext());
        assert.equal(d.status, 502);
        assert.match(d.reasons[0], /no answer within 300ms/);
        assert.ok(performance.now() - started < 1000);
      } finally {
        server.closeAllConnections();
        server.close();
      }
    });

    it('denies with 502 when the service is unreachable', async () => {
      const svc = await startDelegationService(() => ({ status: 200, body: '{}' }));
      await svc.close();
      const stage = await kcdShim.create({ servicePrincipal: SPN, tokenEndpoint: svc.url }, context);
      const d = await stage.run(requestContext());
      assert.equal(d.status, 502);
      assert.match(d.reasons[0], /ECONNREFUSED/);
    });

    it('denies when there is no signed-in user, without calling the service', async () => {
      const svc = await startDelegationService(() => ({ status: 200, body: JSON.stringify({ ticket: 'YWJj' }) }));
      try {
        const stage = await kcdShim.create({ servicePrincipal: SPN, tokenEndpoint: svc.url }, context);
        const d = await stage.run(requestContext(''));
        assert.equal(d.status, 502);
        assert.equal(svc.received.length, 0);
      } finally {
        await svc.close();
      }
    });
  });

  describe('loaded by the gateway config', () => {
    const config = (options) => `gateway:
  publicUrl: http://localhost:8080
  listen: { http: 127.0.0.1:0 }
identity: { issuer: http://127.0.0.1:9, clientId: drawbridge, clientSecret: s }
session: { secrets: ["0123456789abcdef0123456789abcdef"] }
plugins:
  - ${pluginFile}
apps:
  - name: Payroll
    externalUrl: http://payroll.localhost/
    internalUrl: http://127.0.0.1:9/
    sso:
      plugin: kcd-shim
      options: ${options}
`;

    it('accepts valid options', async () => {
      const r = await loadConfigText(config(`{ servicePrincipal: "${SPN}" }`), 'gw.yaml', { mode: 'start', env: {} });
      assert.deepEqual(r.problems.filter((p) => p.severity === 'error'), []);
      assert.ok(r.plugins.some((l) => l.plugin.name === 'kcd-shim'));
    });

    it('reports options that fail the plugin schema at their line and column', async () => {
      const r = await loadConfigText(config(`{ servicePrincipal: payroll, delegationHeadr: X }`), 'gw.yaml', { mode: 'lint', env: {} });
      const errors = r.problems.filter((p) => p.severity === 'error').map((p) => `${p.line}:${p.col} ${p.path}: ${p.message}`);
      assert.deepEqual(errors, [
        '14:36 apps[0].sso.options.servicePrincipal: "payroll" is not valid: Service principal name of the app: SERVICE/host@REALM, e.g. HTTP/payroll.corp.internal@CORP.INTERNAL',
        '14:45 apps[0].sso.options.delegationHeadr: unknown key "delegationHeadr" (did you mean "delegationHeader"?)',
      ]);
    });
  });

  describe('end to end: real sign-in, gateway and app', () => {
    /** @type {(() => Promise<unknown>)[]} */
    const cleanup = [];
    afterEach(async () => {
      while (cleanup.length) await cleanup.pop()();
    });

    /** The embedded identity provider, a gateway and an echo backend; Payroll uses kcd-shim. */
    async function stackWith(options) {
      const s = await identity.startStack({
        extraYaml: `plugins: [${JSON.stringify(pluginFile)}]`,
        apps: (backend) => `
  - name: Payroll
    externalUrl: http://app.localhost/
    internalUrl: ${backend}/
    preAuth: oidc
    sso: { plugin: kcd-shim, options: ${JSON.stringify(options)} }
`,
      });
      cleanup.push(() => s.stop());
      return s;
    }

    it('after sign-in the app receives the ticket from the delegation service, never the client\'s header', async () => {
      const svc = await startDelegationService((b) => ({ status: 200, body: JSON.stringify({ ticket: ticketFor(b.user) }) }));
      cleanup.push(() => svc.close());
      const s = await stackWith({ servicePrincipal: SPN, tokenEndpoint: svc.url });
      const browser = new identity.Browser();
      const signedIn = await browser.browse(`${s.origin('app')}/reports`, { user: 'bob', password: 'bob-pw' });
      assert.equal(signedIn.res.status, 200, signedIn.res.body);

      const before = s.backend.received.length;
      const res = await browser.get(`${s.origin('app')}/reports`, { authorization: 'Negotiate forged-by-client' });
      assert.equal(res.status, 200, res.body);
      const seen = s.backend.received.slice(before);
      assert.equal(seen.length, 1);
      assert.equal(seen[0].headers.authorization, `Negotiate ${ticketFor('bob')}`);
      assert.deepEqual(svc.received.at(-1)?.body, { user: 'bob', servicePrincipal: SPN });
    });

    it('without a delegation service a signed-in user gets a 502 page and the app receives nothing', async () => {
      const s = await stackWith({ servicePrincipal: SPN });
      const browser = new identity.Browser();
      const { res } = await browser.browse(`${s.origin('app')}/`, { user: 'bob', password: 'bob-pw' });
      assert.equal(res.status, 502);
      assert.match(res.body, /no Kerberos delegation service is configured/);
      assert.equal(s.backend.received.length, 0);
    });
  });

  it('type-checks against the drawbridge plugin contract (tsc --checkJs)', async function () {
    this.timeout(60_000);
    const { execFile } = await import('node:child_process');
    const tsc = join(repo, 'node_modules/typescript/bin/tsc');
    const out = await new Promise((resolve) => execFile(process.execPath, [tsc, '-p', join(here, '..')], { cwd: repo }, (err, stdout) => resolve({ code: err ? err.code : 0, stdout })));
    assert.equal(out.code, 0, out.stdout);
  });
});
