import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import type { AppConfig } from '../../src/config/schema.js';
import type { Decision, RequestContext, Stage } from '../../src/pipeline/stage.js';
import { join } from 'node:path';
import { eventually, request, sleep, startEchoBackend, startGateway, tempDir, type EchoBackend, type TestGateway } from '../support/harness.js';
import { gatewayYaml, hubUrl, killConnector, startConnector, token, waitChannels, type ConnectorProcess } from '../connector/support.js';
import { startStack, userToken, type Stack } from '../identity/support.js';

/**
 * Stages injected through the compile hook (the way the identity and policy
 * subsystems add theirs). Behaviour is picked by the app's name.
 */
function stagesFor(app: AppConfig): Stage[] {
  const mode = app.name.toLowerCase();
  if (mode === 'bad') throw new Error('this app cannot be built');
  const stage = (kind: Stage['kind'], run: Stage['run']): Stage => ({ name: `${kind}-test`, kind, run });
  const trail = (ctx: RequestContext, kind: string) => ({ 'x-trail': `${ctx.upstreamHeaders['x-trail'] ?? ''}${ctx.upstreamHeaders['x-trail'] ? ',' : ''}${kind}` });
  // Declared out of order on purpose: the pipeline sorts by kind.
  return [
    stage('sso', (ctx) => {
      if (mode === 'thrower') throw new Error('boom in sso');
      if (mode === 'nope') return new Promise((r) => setTimeout(() => r({ kind: 'deny', status: 403, reasons: ['async says no'], publicReason: 'Not today.' }), 20));
      if (mode === 'answer') return { kind: 'respond', status: 200, headers: { 'content-type': 'text/plain' }, body: 'answered by sso' };
      if (mode === 'later') return Promise.resolve({ kind: 'continue', setHeaders: trail(ctx, 'sso') });
      // What a JavaScript plugin can return although the contract's types forbid it.
      const untyped = (d: unknown) => d as Decision;
      if (mode === 'nothing') return Promise.resolve(untyped(null));
      if (mode === 'nullsync') return untyped(null);
      if (mode === 'noreasons') return Promise.resolve(untyped({ kind: 'deny', status: 403 }));
      if (mode === 'statuszero') return untyped({ kind: 'deny', status: 0, reasons: ['zero'] });
      if (mode === 'badheader') return Promise.resolve(untyped({ kind: 'respond', status: 200, headers: { 'x-note': 'a\r\nset-cookie: x=1' }, body: 'no' }));
      if (mode === 'badlocation') return Promise.resolve(untyped({ kind: 'redirect', location: '/x\r\nset-cookie: x=1' }));
      if (mode === 'badupstream') return Promise.resolve(untyped({ kind: 'continue', setHeaders: { 'x-user': 'a\nb' } }));
      if (mode === 'bogus') return untyped({ kind: 'bogus' });
      // an answer whose framing or correlation id is the stage's, not the gateway's
      if (mode === 'answerlength') return { kind: 'respond', status: 200, headers: { 'Content-Length': '5' }, body: 'hello from plugin' };
      if (mode === 'answerid') return { kind: 'respond', status: 200, headers: { 'x-correlation-id': 'forged' }, body: 'hi' };
      if (mode === 'answercookie') return { kind: 'respond', status: 200, headers: { 'set-cookie': ['drawbridge_session=planted; Path=/', 'plugin_pref=1; Path=/'] }, body: 'hi' };
      // a thenable of the plugin's own whose then() throws
      // a header the gateway sets after this stage (the forwarded headers, the correlation id)
      if (mode === 'setsforwarded') return { kind: 'continue', setHeaders: { 'X-Forwarded-For': '10.0.0.1' } };
      // what a plugin sees of the client's cookies
      if (mode === 'seescookie') return { kind: 'respond', status: 200, headers: { 'content-type': 'text/plain' }, body: String(ctx.headers.cookie) };
      if (mode === 'thenthrows') return untyped({ then: () => { throw new Error('then broke'); } });
      if (mode === 'hang') return new Promise<Decision>(() => {});
      return { kind: 'continue', setHeaders: trail(ctx, 'sso') };
    }),
    stage('access', (ctx) => ({ kind: 'continue', setHeaders: trail(ctx, 'access') })),
  ];
}

const app = (name: string, backend: string) => `
  - name: ${name}
    externalUrl: http://${name.toLowerCase()}.test/
    internalUrl: ${backend}/
    preAuth: passthrough`;

describe('pipeline: stages from plugins, run in kind order, deciding', function () {
  this.timeout(20_000);
  let backend: EchoBackend;
  before(async () => {
    backend = await startEchoBackend();
  });
  after(() => backend.close());

  const config = (apps: string) => `
gateway:
  publicUrl: http://gw.test
  listen: { http: 127.0.0.1:0 }
apps:${apps}
`;
  const hooks = { compileHooks: { extraStages: stagesFor } };

  it('runs stages in kind order (preauth, access, sso, headers) and forwards what they set', async () => {
    const gw = await startGateway(config(app('Plain', backend.url)), hooks);
    try {
      const res = await request(`${gw.url}/`, { headers: { host: 'plain.test', 'x-trail': 'client-sent' } });
      assert.equal(res.status, 200);
      assert.equal(res.json().headers['x-trail'], 'client-sent,access,sso');
      assert.ok(res.json().headers['x-forwarded-for'], 'the headers stage ran after it');
    } finally {
      await gw.stop();
    }
  });

  it('fails closed when a stage throws: 500, and nothing reaches the app', async () => {
    const gw = await startGateway(config(app('Thrower', backend.url)), hooks);
    try {
      const before = backend.received.length;
      const res = await request(`${gw.url}/`, { headers: { host: 'thrower.test', accept: 'application/json' } });
      assert.equal(res.status, 500);
      assert.equal(backend.received.length, before);
      assert.ok(gw.logs.some((l) => l.stage === 'sso-test' && l.level === 50), 'the error is logged with the stage');
    } finally {
      await gw.stop();
    }
  });

  it('applies async decisions: continue goes on, deny answers with the public reason', async () => {
    const gw = await startGateway(config(app('Later', backend.url) + app('Nope', backend.url) + app('Answer', backend.url)), hooks);
    try {
      const ok = await request(`${gw.url}/`, { headers: { host: 'later.test' } });
      assert.equal(ok.json().headers['x-trail'], 'access,sso');
      const before = backend.received.length;
      const no = await request(`${gw.url}/`, { headers: { host: 'nope.test', accept: 'application/json' } });
      assert.equal(no.status, 403);
      assert.equal(no.json().detail, 'Not today.');
      const answered = await request(`${gw.url}/`, { headers: { host: 'answer.test' } });
      assert.equal(answered.body, 'answered by sso');
      assert.equal(backend.received.length, before, 'deny and respond forward nothing');
      const line = gw.logs.find((l) => l.correlationId === no.headers['x-correlation-id']);
      assert.deepEqual(line?.reasons, ['async says no'], 'the full reason is logged');
    } finally {
      await gw.stop();
    }
  });

  it('fails a malformed or unsettled decision with an answer for that request, and keeps serving', async () => {
    const modes = ['Nothing', 'NullSync', 'NoReasons', 'StatusZero', 'BadHeader', 'BadLocation', 'BadUpstream', 'Bogus', 'AnswerLength', 'AnswerId', 'ThenThrows', 'SetsForwarded'];
    const hang = `
  - name: Hang
    externalUrl: http://hang.test/
    internalUrl: ${backend.url}/
    preAuth: passthrough
    backendTimeout: 400ms`;
    const gw = await startGateway(config(modes.map((m) => app(m, backend.url)).join('') + hang + app('Plain', backend.url)), hooks);
    try {
      const before = backend.received.length;
      for (const m of modes) {
        const res = await request(`${gw.url}/`, { headers: { host: `${m.toLowerCase()}.test`, accept: 'application/json' } });
        assert.equal(res.status, 500, m);
        assert.equal(res.headers['set-cookie'], undefined, `${m}: nothing of the decision is sent`);
        assert.ok(res.headers['x-correlation-id'], m);
        const line = gw.logs.find((l) => l.correlationId === res.headers['x-correlation-id'] && l.level === 50);
        assert.equal(line?.stage, 'sso-test', `${m}: the error names the stage`);
      }
      const started = Date.now();
      const hung = await request(`${gw.url}/`, { headers: { host: 'hang.test', accept: 'application/json' } });
      assert.equal(hung.status, 504);
      assert.ok(Date.now() - started < 3000, 'answered at the app\'s backendTimeout');
      assert.ok(gw.logs.some((l) => l.correlationId === hung.headers['x-correlation-id'] && l.stage === 'sso-test' && /did not decide/.test(String(l.msg))));
      assert.equal(backend.received.length, before, 'nothing reached the app');
      assert.equal((await request(`${gw.url}/`, { headers: { host: 'plain.test' } })).status, 200, 'the gateway still serves');
      await eventually(() => gw.server.generation!.inFlight === 0, 1000);
    } finally {
      await gw.stop();
    }
  });

  it('a stage\'s own answer cannot set or clear the gateway\'s cookies: that Set-Cookie is left out and logged, the others kept', async () => {
    const gw = await startGateway(config(app('AnswerCookie', backend.url)), hooks);
    try {
      const res = await request(`${gw.url}/`, { headers: { host: 'answercookie.test' } });
      assert.equal(res.status, 200);
      assert.deepEqual(res.headers['set-cookie'], ['plugin_pref=1; Path=/']);
      assert.ok(gw.logs.some((l) => l.cookie === 'drawbridge_session' && l.stage === 'sso-test' && l.level === 40));
    } finally {
      await gw.stop();
    }
  });

  it('stages after sign-in do not see the gateway\'s cookies: a session cookie is a credential for every app on the host', async () => {
    const gw = await startGateway(config(app('SeesCookie', backend.url)), hooks);
    try {
      const res = await request(`${gw.url}/`, { headers: { host: 'seescookie.test', cookie: 'pref=dark; drawbridge_session=secret-session; __Host-drawbridge_session=other; lang=en' } });
      assert.equal(res.status, 200);
      assert.equal(res.body, 'pref=dark; lang=en');
    } finally {
      await gw.stop();
    }
  });

  it('rejects a whole config when one app fails to build, and keeps the last good one serving', async () => {
    const gw = await startGateway(config(app('Plain', backend.url)), hooks);
    try {
      const gen = gw.server.generation!.id;
      writeFileSync(gw.configFile, config(app('Plain', backend.url) + app('Other', backend.url) + app('Bad', backend.url)));
      await eventually(() => gw.logs.some((l) => String(l.problem ?? '').includes('this app cannot be built')), 2000);
      assert.equal(gw.server.generation!.id, gen);
      assert.equal((await request(`${gw.url}/`, { headers: { host: 'plain.test' } })).status, 200);
      assert.equal((await request(`${gw.url}/`, { headers: { host: 'other.test' } })).status, 404, 'all or nothing: no app of the broken config is live');
    } finally {
      await gw.stop();
    }
  });

  it('finishes a request on the generation it started on, then disposes that generation', async () => {
    const gw = await startGateway(config(app('Plain', backend.url)), hooks);
    try {
      const old = gw.server.generation!;
      const slow = request(`${gw.url}/slow?ms=800`, { headers: { host: 'plain.test' } });
      await eventually(() => old.inFlight === 1, 1000);
      writeFileSync(gw.configFile, config(app('Plain', `${backend.url}/moved`)));
      await eventually(() => gw.server.generation!.id !== old.id, 2000);
      const fresh = await request(`${gw.url}/x`, { headers: { host: 'plain.test' } });
      assert.equal(fresh.json().url, '/moved/x', 'new requests use the new generation');
      assert.equal(old.inFlight, 1, 'the slow request still holds the old generation');
      const done = await slow;
      assert.equal(done.status, 200);
      assert.equal(done.json().url, '/slow?ms=800', 'it completed against the old internal URL');
      await eventually(() => old.inFlight === 0, 1000);
    } finally {
      await gw.stop();
    }
  });
});

/**
 * What a stage may not do to the request it passes on: set how its body is framed (behind a
 * connector a stage's Content-Length was sent as given, and the rest of the client's body reached
 * the app as a second request that no stage had checked), or change who the request is after the
 * preauth stage (the identity headers, the signed assertion and the audit trail then named a user
 * the access rules never saw). Real gateway, real connector process, real echo app.
 */
describe('pipeline: framing headers and the identity are not a later stage\'s to set', function () {
  this.timeout(40_000);
  let backend: EchoBackend;
  let gw: TestGateway;
  let conn: ConnectorProcess;
  const SMUGGLED = '0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\nx-remote-user: admin\r\n\r\n';
  function stagesFor(app: AppConfig): Stage[] {
    const mode = app.name.toLowerCase().replace(/^tunnel/, '');
    const sso = (run: Stage['run']): Stage[] => [{ name: 'sso-test', kind: 'sso', run }];
    const who = { user: 'admin', groups: ['admins'], via: 'session' as const, claims: {} };
    if (mode === 'framing') return sso(() => ({ kind: 'continue', setHeaders: { 'Content-Length': '5' } }));
    if (mode === 'writesframing')
      return sso((ctx) => {
        ctx.upstreamHeaders['content-length'] = '5';
        ctx.upstreamHeaders['transfer-encoding'] = 'chunked';
        ctx.upstreamHeaders.connection = 'keep-alive, x-keep';
        return { kind: 'continue' };
      });
    if (mode === 'returnsidentity') return sso(() => ({ kind: 'continue', identity: who }));
    if (mode === 'assignsidentity')
      return sso((ctx) => {
        (ctx as { identity?: unknown }).identity = who;
        return { kind: 'continue' };
      });
    if (mode === 'preauthidentity') return [{ name: 'preauth-test', kind: 'preauth', run: () => ({ kind: 'continue', identity: { ...who, user: 42 } as never }) }];
    return [];
  }
  const appOf = (name: string, tunnel: boolean) => `
  - name: ${tunnel ? 'Tunnel' : ''}${name}
    externalUrl: http://${tunnel ? 'tunnel-' : ''}${name.toLowerCase()}.test/
    internalUrl: ${backend.url}/
    preAuth: passthrough${tunnel ? '\n    connectorGroup: g1' : ''}`;
  const modes = ['Framing', 'WritesFraming', 'ReturnsIdentity', 'AssignsIdentity', 'PreauthIdentity'];
  before(async () => {
    backend = await startEchoBackend();
    const dir = tempDir();
    gw = await startGateway(gatewayYaml(backend, '', modes.flatMap((m) => [appOf(m, false), appOf(m, true)]).join('')), { dir, watch: false, compileHooks: { extraStages: stagesFor } });
    conn = startConnector(join(dir, 'conn'), { gateway: hubUrl(gw), token: token(gw) });
    await waitChannels(gw, 2);
  });
  after(async () => {
    if (conn) await killConnector(conn);
    await gw?.stop();
    await backend?.close();
  });

  for (const tunnel of [false, true]) {
    const via = tunnel ? 'through a connector' : 'direct';
    const host = (m: string) => `${tunnel ? 'tunnel-' : ''}${m.toLowerCase()}.test`;

    it(`${via}: a decision that sets Content-Length is refused (500, naming the stage), and nothing reaches the app`, async () => {
      const before = backend.received.length;
      const res = await request(`${gw.url}/upload`, { method: 'POST', headers: { host: host('Framing'), accept: 'application/json', 'content-type': 'text/plain' }, body: SMUGGLED });
      assert.equal(res.status, 500, res.body);
      assert.ok(gw.logs.some((l) => l.correlationId === res.headers['x-correlation-id'] && l.stage === 'sso-test' && /Content-Length is the gateway's to set/.test(JSON.stringify(l))));
      assert.equal(backend.received.length, before);
    });

    it(`${via}: framing a stage writes into the request itself is replaced by the client's: the app gets one request, the whole body`, async () => {
      const before = backend.received.length;
      const res = await request(`${gw.url}/upload`, { method: 'POST', headers: { host: host('WritesFraming'), 'content-type': 'text/plain' }, body: SMUGGLED });
      assert.equal(res.status, 200, res.body);
      await sleep(100);
      const got = backend.received.slice(before);
      assert.deepEqual(got.map((r) => `${r.method} ${r.url}`), ['POST /upload']);
      assert.equal(got[0]!.body.toString(), SMUGGLED);
      assert.equal(got[0]!.headers['content-length'], String(Buffer.byteLength(SMUGGLED)));
      assert.equal(got[0]!.headers['x-keep'], undefined);
    });

    it(`${via}: a later stage that returns or assigns another identity, or a preauth identity of the wrong shape, is refused (500) before the app`, async () => {
      const before = backend.received.length;
      for (const m of ['ReturnsIdentity', 'AssignsIdentity', 'PreauthIdentity']) {
        const res = await request(`${gw.url}/`, { headers: { host: host(m), accept: 'application/json' } });
        assert.equal(res.status, 500, `${m}: ${res.body}`);
        const line = gw.logs.find((l) => l.correlationId === res.headers['x-correlation-id'] && l.level === 50);
        assert.match(JSON.stringify(line), m === 'PreauthIdentity' ? /identity.user must be a non-empty string/ : /identity/, m);
      }
      assert.equal(backend.received.length, before);
    });
  }
});

describe('pipeline: a stage that sets the app\'s identity or assertion header', function () {
  this.timeout(60_000);
  let s: Stack;
  let bearer: string;
  // what the sso stage of each app sets, by app name
  const sets: Record<string, Record<string, string>> = {
    Own: { 'X-Plugin-Ticket': 'ticket-1' },
    User: { 'x-remote-user': 'admin' },
    UserUnderscore: { x_remote_user: 'admin' },
    UserDot: { 'X.Remote.User': 'admin' },
    Assertion: { 'x-drawbridge-assertion': 'forged.jwt.value' },
  };
  before(async () => {
    const apps = (backend: string) =>
      Object.keys(sets)
        .map(
          (name) => `
  - name: ${name}
    externalUrl: http://${name.toLowerCase()}.localhost/
    internalUrl: ${backend}/
    preAuth: oidc
    audience: api://web
    headers:
      identity: { X-Remote-User: user }
      assertion: X-Drawbridge-Assertion`,
        )
        .join('');
    const stages = (app: AppConfig): Stage[] => [{ name: 'sets-test', kind: 'sso', run: () => ({ kind: 'continue', setHeaders: sets[app.name]! }) }];
    s = await startStack({ apps, compileHooks: { extraStages: stages } });
    bearer = await userToken(s, 'bob', 'bob-pw', 'api://web', 'read');
  });
  after(() => s?.stop());

  it('is refused (500, naming the header) in any spelling, before the app; a header of its own reaches the app', async () => {
    const call = (name: string) => request(`${s.gw.url}/`, { headers: { host: `${name.toLowerCase()}.localhost`, authorization: `Bearer ${bearer}`, accept: 'application/json' } });
    const ok = await call('Own');
    assert.equal(ok.status, 200, ok.body);
    assert.equal(ok.json().headers['x-plugin-ticket'], 'ticket-1');
    assert.equal(ok.json().headers['x-remote-user'], 'bob');
    const before = s.backend.received.length;
    for (const name of ['User', 'UserUnderscore', 'UserDot', 'Assertion']) {
      const res = await call(name);
      assert.equal(res.status, 500, `${name}: ${res.body}`);
      const line = s.gw.logs.find((l) => l.correlationId === res.headers['x-correlation-id'] && l.level === 50);
      assert.match(JSON.stringify(line), new RegExp(`setHeaders: ${Object.keys(sets[name]!)[0]!.replace(/\./g, '\\.')} is set by the gateway after this stage`), name);
    }
    assert.equal(s.backend.received.length, before, 'nothing reached the app');
  });
});
