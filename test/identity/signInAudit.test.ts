import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { eventually } from '../support/harness.js';
import { Browser, startStack, type Stack } from './support.js';

/** Sign-ins and sign-outs happen at the gateway's own endpoints; the audit trail keeps them beside the access decisions. */
describe('identity: sign-in and sign-out in the audit trail', function () {
  this.timeout(20_000);
  let s: Stack;
  before(async () => {
    s = await startStack();
  });
  after(async () => s?.stop());

  const auditLines = (): Record<string, any>[] => {
    const file = join(s.gw.dir, 'state', 'audit', 'audit.log');
    if (!existsSync(file)) return [];
    return readFileSync(file, 'utf8').trim().split('\n').filter(Boolean).map((l) => JSON.parse(l));
  };
  /** the audit lines of the request whose answer carried this correlation id (written a moment after the answer) */
  const linesOf = async (id: string | string[] | undefined): Promise<Record<string, any>[]> =>
    (await eventually(() => {
      const got = auditLines().filter((l) => l.correlationId === id);
      return got.length ? got : undefined;
    }))!;

  /** Signs in up to the provider's redirect back; returns the callback URL, not followed. */
  async function callbackFor(b: Browser, user = 'bob'): Promise<string> {
    let url = (await b.get(`${s.origin('web')}/deep`)).headers.location!;
    for (let i = 0; i < 10; i++) {
      const res = await b.get(url);
      const action = /<form method="post" action="([^"]+)"/.exec(res.body)?.[1];
      if (res.status === 200 && action?.endsWith('/login')) {
        const r = await b.send('POST', new URL(action, url).href, { 'content-type': 'application/x-www-form-urlencoded' }, `username=${user}&password=${user}-pw`);
        url = new URL(r.headers.location!, url).href;
        continue;
      }
      url = new URL(res.headers.location!, url).href;
      if (url.includes('/.drawbridge/callback')) return url;
    }
    throw new Error('the provider never sent the browser back');
  }

  it('a finished sign-in is a sign-in line: app, user, client address, how the user signed in, no code or state', async () => {
    const b = new Browser();
    const callback = await callbackFor(b);
    const res = await b.get(callback);
    assert.equal(res.status, 302);
    const [line, ...more] = await linesOf(res.headers['x-correlation-id']);
    assert.equal(more.length, 0);
    assert.equal(line!.decision, 'sign-in');
    assert.equal(line!.app, 'Web');
    assert.equal(line!.user, 'bob');
    assert.equal(line!.clientIp, '127.0.0.1');
    assert.equal(line!.method, 'GET');
    assert.equal(line!.path, '/.drawbridge/callback');
    assert.equal(line!.status, 302);
    assert.deepEqual(line!.reasons, ['amr: pwd', 'acr: pwd']);
    const u = new URL(callback);
    const text = JSON.stringify(line);
    assert.ok(!text.includes(u.searchParams.get('code')!) && !text.includes(u.searchParams.get('state')!), text);
    // the request log names the app too, not '-'
    const logged = s.gw.logs.find((l) => l.msg === 'request' && l.correlationId === res.headers['x-correlation-id']);
    assert.equal(logged?.app, 'Web');
    assert.equal(logged?.decision, 'sign-in');
  });

  it('a callback refused for an app sign-in (a forged code, the provider saying no) is a deny line with the reason', async () => {
    const b = new Browser();
    const forged = new URL(await callbackFor(b));
    forged.searchParams.set('code', 'forged-code');
    const res = await b.get(forged.href);
    assert.equal(res.status, 401);
    const [line] = await linesOf(res.headers['x-correlation-id']);
    assert.equal(line!.decision, 'deny');
    assert.equal(line!.app, 'Web');
    assert.equal(line!.user, undefined);
    assert.equal(line!.status, 401);
    // the provider's own code, not openid-client's "server responded with an error in the response body"
    assert.match(line!.reasons[0], /^sign-in refused: the token endpoint answered 400 invalid_grant: /);
    const logged = s.gw.logs.find((l) => l.msg === 'sign-in callback refused' && l.correlationId === res.headers['x-correlation-id']);
    assert.match(String(logged?.reason), /^the token endpoint answered 400 invalid_grant: /, JSON.stringify(logged));

    const b2 = new Browser();
    const denied = new URL(await callbackFor(b2));
    denied.searchParams.delete('code');
    denied.searchParams.set('error', 'access_denied');
    denied.searchParams.set('error_description', 'x'.repeat(5000));
    const res2 = await b2.get(denied.href);
    assert.equal(res2.status, 403);
    const [line2] = await linesOf(res2.headers['x-correlation-id']);
    assert.equal(line2!.decision, 'deny');
    assert.match(line2!.reasons[0], /provider error access_denied/);
    assert.ok(line2!.reasons[0].length < 400, 'the provider\'s text is cut short');
  });

  it('a callback no sign-in of this browser started writes no audit line: there is no app to tie it to', async () => {
    const callback = await callbackFor(new Browser());
    const res = await new Browser().get(callback);
    assert.equal(res.status, 400);
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(auditLines().filter((l) => l.correlationId === res.headers['x-correlation-id']).length, 0);
    assert.ok(s.gw.logs.some((l) => l.msg === 'sign-in callback refused' && l.correlationId === res.headers['x-correlation-id']));
  });

  it('a sign-out is a sign-out line for the user whose session it revoked; one without a session writes none', async () => {
    const b = new Browser();
    await b.browse(`${s.origin('web')}/`, { user: 'carol', password: 'carol-pw' });
    const out = await b.get(`${s.origin('web')}/.drawbridge/sign-out`, { 'sec-fetch-site': 'same-origin' });
    assert.equal(out.status, 302);
    const [line] = await linesOf(out.headers['x-correlation-id']);
    assert.equal(line!.decision, 'sign-out');
    assert.equal(line!.app, 'Web');
    assert.equal(line!.user, 'carol');
    assert.equal(line!.status, 302);

    const nobody = await new Browser().get(`${s.origin('web')}/.drawbridge/sign-out`, { 'sec-fetch-site': 'same-origin' });
    assert.equal(nobody.status, 302);
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(auditLines().filter((l) => l.correlationId === nobody.headers['x-correlation-id']).length, 0);
  });

  it('sign-ins and sign-outs are counted by app in drawbridge_decisions_total', async () => {
    const body = await s.gw.server.metrics.registry.metrics();
    assert.match(body, /drawbridge_decisions_total\{app="Web",decision="sign-in"\} [1-9]/);
    assert.match(body, /drawbridge_decisions_total\{app="Web",decision="sign-out"\} [1-9]/);
  });
});
