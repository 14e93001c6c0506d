/**
 * An open WebSocket meets its app's access rules again while it stays open
 * (edge.ts recheckUpgrades): here a sign-in frequency of 2 s, which the
 * session passes at the upgrade and fails a few seconds later. Real provider,
 * real sessions, a real WebSocket echo backend.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { WebSocket } from 'ws';
import { Browser, defaultApps, startStack, type Stack } from '../identity/support.js';
import type { Stage } from '../../src/pipeline/stage.js';
import { eventually, sleep, startEchoBackend, startGateway, type EchoBackend, type TestGateway } from '../support/harness.js';

describe('edge: open WebSockets are re-checked against their access rules', function () {
  this.timeout(30_000);
  let s: Stack;
  const saved = process.env.DRAWBRIDGE_WS_RECHECK_MS;
  before(async () => {
    process.env.DRAWBRIDGE_WS_RECHECK_MS = '250';
    s = await startStack({
      extraYaml: `policies:
  fresh-sign-in:
    when: { apps: [Fresh] }
    session: { signInFrequency: 2s }`,
      apps: (b) => `${defaultApps(b)}
  - name: Fresh
    externalUrl: http://fresh.localhost/
    internalUrl: ${b}/
    preAuth: oidc
    websockets: true
    conditionalAccess: [fresh-sign-in]
  - name: Steady
    externalUrl: http://steady.localhost/
    internalUrl: ${b}/
    preAuth: oidc
    websockets: true
`,
    });
    for (const h of ['fresh', 'steady']) s.idp.allowRedirectUri(`${s.origin(h)}/.drawbridge/callback`);
  });
  after(async () => {
    if (saved === undefined) delete process.env.DRAWBRIDGE_WS_RECHECK_MS;
    else process.env.DRAWBRIDGE_WS_RECHECK_MS = saved;
    await s?.stop();
  });

  /** the close frame each app's WebSocket got */
  const closeOf: Record<string, { code: number; reason: string }> = {};

  async function openAs(app: string): Promise<{ ws: WebSocket; closedAt: Promise<number> }> {
    const b = new Browser();
    const { res } = await b.browse(`${s.origin(app)}/`, { user: 'bob', password: 'bob-pw' });
    assert.equal(res.status, 200, res.body);
    const host = new URL(s.origin(app)).host;
    const cookie = b.cookieHeader(host);
    const ws = new WebSocket(`ws://127.0.0.1:${s.gw.port}/ws`, { headers: { host, cookie } });
    await new Promise((r, j) => (ws.once('open', r), ws.once('unexpected-response', (_q, rs) => j(new Error(`refused ${rs.statusCode}`)))));
    return { ws, closedAt: new Promise((r) => ws.once('close', (code, reason) => ((closeOf[app] = { code, reason: String(reason) }), r(Date.now())))) };
  }

  it('a WebSocket whose sign-in grows older than signInFrequency is closed; one on an app without the rule stays', async () => {
    const t0 = Date.now();
    const fresh = await openAs('fresh');
    const steady = await openAs('steady');
    const closed = await fresh.closedAt;
    // auth_time has a resolution of one second; one re-check interval on top
    assert.ok(closed - t0 >= 1000 && closed - t0 < 8000, `closed after ${closed - t0} ms`);
    // a close frame the page can act on (sign in again), not a dropped connection (1006)
    assert.deepEqual(closeOf.fresh, { code: 1008, reason: 'access rules no longer allow it' });
    assert.ok(s.gw.logs.some((l) => l.msg === 'WebSocket closed: its access rules no longer allow it' && l.app === 'Fresh' && /signInFrequency|sign-in/i.test(JSON.stringify(l.reasons))));
    const deniedNow = () =>
      readFileSync(join(s.gw.dir, 'state', 'audit', 'audit.log'), 'utf8')
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l))
        .filter((a) => a.app === 'Fresh' && a.decision === 'deny');
    // the audit trail is a write stream: the line lands a moment after the close
    const denied = (await eventually(() => (deniedNow().length ? deniedNow() : undefined)))!;
    assert.equal(denied.length, 1);
    assert.match(denied[0].reasons.join(' '), /^open WebSocket closed: /);
    assert.equal(denied[0].user, 'bob');
    await new Promise((r) => setTimeout(r, 1000));
    assert.equal(steady.ws.readyState, WebSocket.OPEN);
    const echo = new Promise((r) => steady.ws.once('message', (m) => r(String(m))));
    steady.ws.send('still open');
    assert.equal(await echo, 'still open');
    steady.ws.close();
  });
});

/**
 * An access stage that never decides when a WebSocket is re-checked: the pass waited on it for
 * good, and no later pass (they do not stack) re-checked or closed anything. It gets the app's
 * backendTimeout, as a request's stage does, and its silence closes the WebSocket.
 */
describe('edge: an access stage silent at a re-check', function () {
  this.timeout(20_000);
  const saved = process.env.DRAWBRIDGE_WS_RECHECK_MS;
  let backend: EchoBackend;
  let gw: TestGateway;
  before(async () => {
    process.env.DRAWBRIDGE_WS_RECHECK_MS = '200';
    backend = await startEchoBackend();
    let calls = 0;
    // decides the upgrade, then never again
    const stages = (): Stage[] => [{ name: 'moody', kind: 'access', run: () => (calls++ === 0 ? { kind: 'continue' } : new Promise<never>(() => {})) }];
    gw = await startGateway(
      `gateway:
  publicUrl: http://gw.test
  listen: { http: 127.0.0.1:0 }
apps:
  - name: Moody
    externalUrl: http://moody.test/
    internalUrl: ${backend.url}/
    preAuth: passthrough
    websockets: true
    backendTimeout: 500ms
`,
      { compileHooks: { extraStages: stages } },
    );
  });
  after(async () => {
    if (saved === undefined) delete process.env.DRAWBRIDGE_WS_RECHECK_MS;
    else process.env.DRAWBRIDGE_WS_RECHECK_MS = saved;
    await gw?.stop();
    await backend?.close();
  });

  it('is a refusal once the app\'s backendTimeout passes: the WebSocket is closed (1008), and the re-checks go on', async () => {
    const ws = new WebSocket(`ws://127.0.0.1:${gw.port}/ws`, { headers: { host: 'moody.test' } });
    const closed = new Promise<number>((r) => ws.once('close', (code) => r(code)));
    await new Promise((r, j) => (ws.once('open', r), ws.once('error', j)));
    const code = await Promise.race([closed, sleep(5000).then(() => 0)]);
    assert.equal(code, 1008, 'still open 5 s later');
    assert.ok(gw.logs.some((l) => l.msg === 'WebSocket closed: its access rules no longer allow it' && /moody: no decision within 0.5 s/.test(JSON.stringify(l.reasons))));
  });
});
