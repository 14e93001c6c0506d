/**
 * The public listeners' client connections (server.ts PUBLIC_LISTENER). A WebSocket or a
 * long-lived response whose client vanished without a FIN (a laptop closed, a NAT that forgot
 * the flow) sends nothing the gateway could fail on when both sides are quiet: without TCP
 * keep-alive probes the connection, the app's WebSocket and its connector stream stayed for good.
 * The kernel's own socket table (`ss`) shows whether the probes are armed.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import WebSocket from 'ws';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { AssertionKeyStore } from '../../src/plugins/headers/assertionKeys.js';
import { eventually, rawRequest, request, sleep, startEchoBackend, startGateway, tempDir, type EchoBackend, type TestGateway } from '../support/harness.js';

/** the timers ss reports for the gateway's end of the connection from `clientPort` */
function timersOf(gatewayPort: number, clientPort: number): string {
  return execFileSync('ss', ['-tnoH', 'state', 'established', `( sport = :${gatewayPort} and dport = :${clientPort} )`], { encoding: 'utf8' });
}

describe('server: public listeners', function () {
  this.timeout(20_000);
  let backend: EchoBackend;
  let gw: TestGateway;
  before(async () => {
    backend = await startEchoBackend();
    gw = await startGateway(`
gateway:
  publicUrl: http://gw.test
  listen: { http: 127.0.0.1:0 }
  admin: { listen: 127.0.0.1:0 }
apps:
  - name: Echo
    externalUrl: http://echo.test/
    internalUrl: ${backend.url}/
    preAuth: passthrough
    websockets: true
`);
  });
  after(async () => {
    await gw?.stop();
    await backend?.close();
  });

  it('arm TCP keep-alive probes on client connections, so an open WebSocket whose client vanished is found', async () => {
    const ws = new WebSocket(`ws://127.0.0.1:${gw.port}/ws`, { headers: { host: 'echo.test' } });
    await new Promise((r, j) => (ws.once('open', r), ws.once('error', j)));
    const clientPort = (ws as unknown as { _socket: { localPort: number } })._socket.localPort;
    const line = timersOf(gw.port, clientPort);
    assert.match(line, /timer:\(keepalive,/, `the gateway's socket: ${line}`);
    // probes start after a minute of silence: soon enough to free what a vanished client held, rare enough to cost nothing
    const [, min, sec] = /timer:\(keepalive,(?:(\d+)min)?(?:(\d+)(?:\.\d+)?sec)?/.exec(line)!;
    const first = Number(min ?? 0) * 60 + Number(sec ?? 0);
    assert.ok(first > 30 && first <= 60, `first probe in ${first} s`);
    const echo = new Promise((r) => ws.once('message', (m) => r(String(m))));
    ws.send('still relayed');
    assert.equal(await echo, 'still relayed');
    ws.close();
  });

  /** drawbridge_requests_total{app="-"} by status, as /metrics shows it */
  async function refusedCounts(): Promise<Map<string, number>> {
    const body = (await request(`${gw.adminUrl}/metrics`)).body;
    return new Map([...body.matchAll(/^drawbridge_requests_total\{app="-",status="(\d+)"\} (\d+)$/gm)].map((m) => [m[1]!, Number(m[2])]));
  }

  it('requests refused before the edge (by the parser, CONNECT, Expect, too many header lines) are counted and get a request line with their correlation id', async () => {
    const H = 'Host: echo.test\r\n';
    const refusals: [string, string, number][] = [
      ['a space in a header name', `GET / HTTP/1.1\r\n${H}Bad Header: 1\r\n\r\n`, 400],
      ['an unknown method', `FOO / HTTP/1.1\r\n${H}\r\n`, 400],
      ['Content-Length and Transfer-Encoding', `POST / HTTP/1.1\r\n${H}Content-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`, 400],
      ['cookies over 16 KiB', `GET / HTTP/1.1\r\n${H}Accept: text/html\r\nCookie: a=${'x'.repeat(17_000)}\r\n\r\n`, 431],
      ['a URL over 16 KiB', `GET /${'a'.repeat(17_000)} HTTP/1.1\r\n${H}\r\n`, 431],
      ['2,001 header lines', `GET / HTTP/1.1\r\n${H}${'X-A: 1\r\n'.repeat(2001)}\r\n`, 431],
      ['CONNECT', `CONNECT echo.test:443 HTTP/1.1\r\nHost: echo.test:443\r\n\r\n`, 405],
      ['an unknown Expect', `GET / HTTP/1.1\r\n${H}Expect: something\r\n\r\n`, 417],
    ];
    const before = await refusedCounts();
    const expected = new Map<string, number>();
    for (const [what, bytes, status] of refusals) {
      const answer = await rawRequest(gw.port, bytes, 3000);
      assert.equal(answer.slice(9, 12), String(status), `${what}: ${answer.slice(0, 100)}`);
      const id = /\r\nx-correlation-id: ([^\r\n]+)/i.exec(answer)?.[1];
      assert.ok(id, `${what}: a correlation id`);
      await sleep(20);
      const line = gw.logs.find((l) => l.msg === 'request' && l.correlationId === id);
      assert.ok(line, `${what}: a request line`);
      assert.equal(line.status, status, what);
      assert.equal(line.app, '-', what);
      assert.equal(line.decision, 'deny', what);
      expected.set(String(status), (expected.get(String(status)) ?? 0) + 1);
    }
    const after = await refusedCounts();
    for (const [status, n] of expected) assert.equal((after.get(status) ?? 0) - (before.get(status) ?? 0), n, `drawbridge_requests_total{app="-",status="${status}"}`);
    assert.ok(!gw.logs.some((l) => JSON.stringify(l).includes('x'.repeat(100))), 'no cookie or URL in the log');
  });

  it('a HEAD refused by the parser gets the head of the GET\'s answer and no body', async () => {
    const H = 'Host: echo.test\r\n';
    for (const [what, rest, status] of [
      ['a header over 16 KiB', `${H}X-Big: ${'a'.repeat(17_000)}\r\n\r\n`, 431],
      ['cookies over 16 KiB from a browser (a page)', `${H}Accept: text/html\r\nCookie: a=${'x'.repeat(17_000)}\r\n\r\n`, 431],
      ['a space in a header name', `${H}Bad Header: 1\r\n\r\n`, 400],
    ] as const) {
      const get = await rawRequest(gw.port, `GET / HTTP/1.1\r\n${rest}`, 3000);
      const head = await rawRequest(gw.port, `HEAD / HTTP/1.1\r\n${rest}`, 3000);
      const [getHead, getBody] = get.split('\r\n\r\n');
      const [headHead, headBody] = head.split('\r\n\r\n');
      const length = (h: string) => /\r\ncontent-length: (\d+)/i.exec(h)?.[1];
      assert.equal(headHead!.slice(9, 12), String(status), `${what}: ${headHead}`);
      assert.equal(getBody!.length, Number(length(getHead!)), `${what}: the GET has its body`);
      assert.equal(length(headHead!), length(getHead!), `${what}: the HEAD keeps the GET's Content-Length`);
      assert.equal(headBody, '', `${what}: no body on the HEAD answer`);
    }
  });
});

describe('server: gateway.stateDir', function () {
  this.timeout(20_000);
  it("keeps the lock, the audit log, the connector CA and the signing keys in the configured folder, and makes no ./state beside it", async () => {
    const backend = await startEchoBackend();
    const dir = tempDir();
    const gw = await startGateway(
      `gateway:
  publicUrl: http://gw.test
  listen: { http: 127.0.0.1:0 }
  stateDir: ./var/drawbridge
connectors: { listen: 127.0.0.1:0 }
connectorGroups: { g1: {} }
identity: { issuer: http://127.0.0.1:9, clientId: drawbridge, clientSecret: s }
session: { secrets: ["0123456789abcdef0123456789abcdef"] }
apps:
  - name: Open
    externalUrl: http://open.test/
    internalUrl: ${backend.url}/
    preAuth: passthrough
  - name: Signed
    externalUrl: http://signed.test/
    internalUrl: ${backend.url}/
    headers: { assertion: X-Drawbridge-Assertion }
`,
      { dir },
    );
    try {
      assert.equal((await request(`${gw.url}/`, { headers: { host: 'open.test' } })).status, 200);
      const state = join(dir, 'var', 'drawbridge');
      assert.equal(gw.server.connectorHub!.stateDir, state);
      await eventually(() => existsSync(join(state, 'audit', 'audit.log')) || undefined);
      assert.ok(existsSync(join(state, 'gateway.lock')), readdirSync(state).join(' '));
      assert.ok(AssertionKeyStore.existing(state), 'the signing keys');
      assert.equal(existsSync(join(dir, 'state')), false, 'nothing went to the default ./state');
    } finally {
      await gw.stop();
      await backend.close();
    }
  });
});
