import assert from 'node:assert/strict';
import net, { type AddressInfo } from 'node:net';
import { EarlyBytes } from '../../src/gateway/earlyBytes.js';
import { eventually, sleep } from '../support/harness.js';

/**
 * Runs `test` on a connected pair on loopback, `server` the gateway's side of an upgrade (an
 * EarlyBytes on it, `head` already read) and `client` the browser's; closes both after.
 */
async function withEarly(head: Buffer, test: (early: EarlyBytes, client: net.Socket, server: net.Socket) => Promise<void>): Promise<void> {
  const listener = net.createServer({ allowHalfOpen: true, pauseOnConnect: true });
  await new Promise<void>((r) => listener.listen(0, '127.0.0.1', r));
  const accepted = new Promise<net.Socket>((r) => listener.once('connection', r));
  const client = net.connect((listener.address() as AddressInfo).port, '127.0.0.1');
  const server = await accepted;
  try {
    await test(new EarlyBytes(server, head), client, server);
  } finally {
    client.destroy();
    server.destroy();
    listener.close();
  }
}

describe('EarlyBytes: the client side of an upgrade while the app is found', () => {
  it('keeps what the client sends before the 101, after the head, in order, and leaves the rest unread once stopped', async () => {
    await withEarly(Buffer.from('head|'), async (early, client, server) => {
      client.write('one|');
      await sleep(50);
      client.write('two|');
      await eventually(() => Buffer.concat(early.chunks).toString() === 'head|one|two|');
      early.stop();
      client.write('after');
      await sleep(100);
      assert.equal(Buffer.concat(early.chunks).toString(), 'head|one|two|');
      assert.equal(early.left, false);
      // what came after stop() is still the socket's, for the relay
      server.resume();
      const rest = await new Promise<string>((r) => server.once('data', (c: Buffer) => r(c.toString())));
      assert.equal(rest, 'after');
    });
  });

  it('sees a client that hangs up (its FIN, which only reading shows), destroys its socket and says so once', async () => {
    await withEarly(Buffer.alloc(0), async (early, client, server) => {
      let told = 0;
      early.whenLeft(() => told++);
      client.end();
      await eventually(() => early.left);
      await eventually(() => server.destroyed);
      await sleep(50);
      assert.equal(told, 1);
      // a wait that starts after the client left ends at once
      let late = 0;
      early.whenLeft(() => late++);
      assert.equal(late, 1);
    });
  });

  it('takes a client that sends more than a handshake may (64 KiB before the 101) as gone', async () => {
    await withEarly(Buffer.alloc(0), async (early, client, server) => {
      client.on('error', () => undefined);
      client.write(Buffer.alloc(64 << 10, 1));
      await eventually(() => Buffer.concat(early.chunks).length === 64 << 10);
      assert.equal(early.left, false, '64 KiB is still a handshake\'s');
      client.write(Buffer.alloc(1, 1));
      await eventually(() => early.left);
      assert.ok(server.destroyed);
      assert.ok(Buffer.concat(early.chunks).length <= 64 << 10);
    });
  });

  it('after stop() a hang-up is no longer its to see', async () => {
    await withEarly(Buffer.alloc(0), async (early, client) => {
      let told = 0;
      early.whenLeft(() => told++);
      early.stop();
      client.end();
      await sleep(150);
      assert.equal(early.left, false);
      assert.equal(told, 0);
    });
  });
  it('after stop() what the client sends is the relay\'s, however much: a WebSocket that sent more than 64 KiB is not cut', async () => {
    await withEarly(Buffer.alloc(0), async (early, client, server) => {
      early.stop();
      let relayed = 0;
      server.on('data', (c: Buffer) => (relayed += c.length));
      server.resume();
      client.write(Buffer.alloc(256 << 10, 1));
      await eventually(() => relayed === 256 << 10);
      await sleep(50);
      assert.equal(early.left, false);
      assert.equal(server.destroyed, false);
      assert.equal(Buffer.concat(early.chunks).length, 0, 'nothing kept after the 101');
    });
  });
});
