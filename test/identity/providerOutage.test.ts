import assert from 'node:assert/strict';
import type { RequestListener, Server, ServerResponse } from 'node:http';
import { readFileSync, writeFileSync } from 'node:fs';
import { request } from '../support/harness.js';
import { Browser, startStack, userToken, type Stack } from './support.js';

/** The provider goes away between the sign-in page and the callback's token request. */
describe('identity: provider unreachable or slow at the callback', function () {
  this.timeout(30_000);
  let s: Stack;
  before(async () => {
    s = await startStack();
  });
  after(async () => s?.stop());

  /** Runs bob's sign-in up to the provider's redirect back to the gateway, without following it. */
  async function callbackUrl(b: Browser): Promise<string> {
    let url = (await b.get(`${s.origin('web')}/deep?x=1`)).headers.location!;
    for (let i = 0; i < 10; i++) {
      const res = await b.get(url);
      if (res.status === 200 && /action="[^"]+\/login"/.test(res.body)) {
        const action = new URL(/action="([^"]+)"/.exec(res.body)![1]!, url).href;
        const r2 = await b.send('POST', action, { 'content-type': 'application/x-www-form-urlencoded' }, 'username=bob&password=bob-pw');
        url = new URL(r2.headers.location!, action).href;
        continue;
      }
      url = new URL(res.headers.location!, url).href;
      if (url.includes('/.drawbridge/callback')) return url;
    }
    throw new Error('no callback');
  }

  /** Replaces the provider's request handling (`real` answers as usual) until the returned function puts it back. */
  function provider(behaviour: (real: RequestListener) => RequestListener): () => void {
    // The embedded provider's own listener: the test plays an outage on the provider's real port.
    const server = (s.idp as unknown as { server: Server }).server;
    const saved = server.listeners('request') as RequestListener[];
    server.removeAllListeners('request');
    server.on('request', behaviour((req, res) => saved.forEach((l) => l.call(server, req, res))));
    return () => {
      server.removeAllListeners('request');
      for (const l of saved) server.on('request', l);
    };
  }

  /** The provider answers its token endpoint with `answer`, everything else as usual. */
  function token(answer: (res: ServerResponse) => unknown): (real: RequestListener) => RequestListener {
    return (real) => (req, res) => (req.url?.startsWith('/token') ? void req.resume().on('end', () => answer(res)) : real(req, res));
  }

  // The first case runs first: the gateway has not fetched the provider's keys yet.
  for (const [what, behaviour, within, codeSpent] of [
    ['answers the token request but not the key set request', ((real) => (req, res) => (req.url?.startsWith('/jwks') ? res.writeHead(503).end() : real(req, res))) as (real: RequestListener) => RequestListener, 3000, true],
    ['closes connections', (() => (req) => req.socket.destroy()) as (real: RequestListener) => RequestListener, 3000, false],
    ['does not answer (5 s timeout)', (() => () => undefined) as (real: RequestListener) => RequestListener, 7000, false],
    // (each was a 401 "could not be verified", the login cookie cleared: a reload could not finish)
    ['resets the connection in the middle of the token answer', token((res) => (res.writeHead(200, { 'content-type': 'application/json' }), res.write('{"access_token":"'), setTimeout(() => res.socket?.destroy(), 50))), 3000, false],
    ['sends the token answer\'s head and then nothing (5 s in all)', token((res) => (res.writeHead(200, { 'content-type': 'application/json' }), res.write('{"access_token":"'))), 7000, false],
    // (Entra's token endpoint sends it; it was a 401 logged as "server responded with an error in the response body")
    ['answers the token request with the OAuth error temporarily_unavailable', token((res) => res.writeHead(400, { 'content-type': 'application/json' }).end('{"error":"temporarily_unavailable","error_description":"try later"}')), 3000, false],
    ['answers the token request with 2 MiB of JSON', token((res) => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ access_token: 'x'.repeat(2 << 20) }))), 3000, false],
    ['answers the token request with a 200 HTML page (a proxy\'s maintenance page)', token((res) => res.writeHead(200, { 'content-type': 'text/html' }).end('<html><body>Down for maintenance</body></html>')), 3000, false],
  ] as const) {
    it(`a provider that ${what}: 503 page with Retry-After, logged as an outage; ${codeSpent ? 'opening the app again' : 'a reload'} finishes the sign-in`, async () => {
      const b = new Browser();
      const callback = await callbackUrl(b);
      const host = new URL(s.origin('web')).host;
      const logins = () => [...(b.jar.get(host)?.keys() ?? [])].filter((k) => k.startsWith('drawbridge_login_'));
      assert.equal(logins().length, 1);
      const restore = provider(behaviour);
      const t0 = Date.now();
      let down;
      try {
        down = await b.get(callback);
      } finally {
        restore();
      }
      assert.ok(Date.now() - t0 < within, `${Date.now() - t0} ms`);
      assert.equal(down.status, 503, down.body.slice(0, 300));
      assert.equal(down.headers['retry-after'], '5');
      assert.match(down.body, /sign-in service cannot be reached right now/);
      assert.ok(s.gw.logs.some((l) => l.msg === 'identity provider unavailable' && l.correlationId === down.headers['x-correlation-id']), 'logged as an outage');
      assert.equal(logins().length, 1, 'the login cookie is kept');
      if (codeSpent) {
        // The provider redeemed the code before the keys failed: a reload cannot finish, opening the app again does (provider SSO).
        const { url } = await b.browse(`${s.origin('web')}/deep?x=1`);
        assert.equal(url, `${s.origin('web')}/deep?x=1`);
        return;
      }
      // The provider is back: the same callback (a reload) finishes the sign-in.
      const again = await b.get(callback);
      assert.equal(again.status, 302, again.body.slice(0, 300));
      assert.equal(again.headers.location, `${s.origin('web')}/deep?x=1`);
      assert.equal((await b.get(`${s.origin('web')}/deep?x=1`)).status, 200);
    });
  }

  // The keys were kept across reloads, but reaching them took discovery, which each generation did
  // anew: a bearer token that had just verified got 503 (after 5 s with a provider that hung).
  it('a reload while the provider is down keeps bearer tokens and new sign-ins working', async () => {
    const token = await userToken(s, 'bob', 'bob-pw', 'api://web');
    const bearer = () => request(`${s.gw.url}/x`, { headers: { host: new URL(s.origin('web')).host, authorization: `Bearer ${token}` } });
    assert.equal((await bearer()).status, 200);
    const restore = provider(() => (req) => req.socket.destroy());
    try {
      writeFileSync(s.gw.configFile, readFileSync(s.gw.configFile, 'utf8') + '\n# an unrelated edit\n');
      assert.ok(['success', 'unchanged'].includes(await s.gw.server.reload('test')));
      const t0 = Date.now();
      const after = await bearer();
      assert.equal(after.status, 200, after.body.slice(0, 300));
      assert.ok(Date.now() - t0 < 1000, `${Date.now() - t0} ms`);
      const start = await new Browser().get(`${s.origin('web')}/y`);
      assert.equal(start.status, 302, 'a new browser is still sent to sign in');
      assert.ok(s.gw.logs.some((l) => l.msg === 'discovering the identity provider again after the reload failed: the discovery document held stays in use'));
    } finally {
      restore();
    }
  });
});
