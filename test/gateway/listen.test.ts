import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { closeServer, listen } from '../../src/gateway/listen.js';
import { sleep } from '../support/harness.js';

/** A listener whose answers take ?ms=N. */
async function slowServer(): Promise<{ server: http.Server; port: number }> {
  const server = http.createServer((req, res) => {
    const ms = Number(new URL(req.url!, 'http://x').searchParams.get('ms') ?? 0);
    setTimeout(() => res.end(`done ${req.url}`), ms);
  });
  await listen(server, { host: '127.0.0.1', port: 0 });
  return { server, port: (server.address() as AddressInfo).port };
}

describe('closeServer (draining a listener)', () => {
  it('cuts what is still running after the grace period', async () => {
    const { server, port } = await slowServer();
    const cut = new Promise<string>((resolve) => {
      http.get({ port, host: '127.0.0.1', path: '/?ms=5000', agent: false }, () => resolve('answered')).on('error', (e) => resolve((e as NodeJS.ErrnoException).code!));
    });
    await sleep(100);
    const t0 = Date.now();
    await closeServer(server, 300);
    assert.ok(Date.now() - t0 < 1500, 'closed soon after the grace period');
    assert.equal(await cut, 'ECONNRESET');
  });

  it('answers pipelined requests in order, then closes the connection (a listener without the edge: by the idle sweep)', async () => {
    const { server, port } = await slowServer();
    const socket = net.connect(port, '127.0.0.1');
    let raw = '';
    socket.on('data', (c) => (raw += c));
    const closed = new Promise((r) => socket.once('close', r));
    socket.write('GET /?ms=400 HTTP/1.1\r\nHost: x\r\n\r\nGET /?ms=300 HTTP/1.1\r\nHost: x\r\n\r\n');
    await sleep(100);
    const stopped = closeServer(server, 5000);
    await closed;
    await stopped;
    const answers = raw.split('HTTP/1.1 ').slice(1);
    assert.equal(answers.length, 2, raw);
    assert.match(answers[0], /^200 [\s\S]*done \/\?ms=400$/);
    assert.match(answers[1], /^200 [\s\S]*done \/\?ms=300$/);
  });
});
