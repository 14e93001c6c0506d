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
import { startEchoBackend, startGateway, type EchoBackend, type TestGateway } from '../support/harness.js';

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
});
