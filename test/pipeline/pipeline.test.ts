import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import type { AppConfig } from '../../src/config/schema.js';
import type { Decision, RequestContext, Stage } from '../../src/pipeline/stage.js';
import { eventually, request, startEchoBackend, startGateway, type EchoBackend } from '../support/harness.js';

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
    const modes = ['Nothing', 'NullSync', 'NoReasons', 'StatusZero', 'BadHeader', 'BadLocation', 'BadUpstream', 'Bogus'];
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
