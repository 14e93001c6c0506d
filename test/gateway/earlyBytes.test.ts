import assert from 'node:assert/strict';
import net, { type AddressInfo } from 'node:net';
import { EarlyBytes } from '../../src/gateway/earlyBytes.js';
import { eventually, sleep } from '../support/harness.js';

/** a connected pair on loopback: `server` is the gateway's side of an upgrade, `client` the browser's */
async function pair(): Promise<{ client: net.Socket; server: net.Socket; close: () => void }> {
  const listener = net.createServer({ allowHalfOpen: true, pauseOnConnect: true });
  await new Promise<void>((r) => listener.listen(0, '127.0.0.1', r));
  const accepted = new Promise<net.Socket>((r) => listener.once('connection', r));
  const client = net.connect((listener.address() as AddressInfo).port, '127.0.0.1');
  const server = await accepted;
  return { client, server, close: () => (client.destroy(), server.destroy(), listener.close()) };
}

describe('EarlyBytes: the client side of an upgrade while the app is found', () => {
  it('keeps what the client sends before the 101, after the head, in order, and leaves the rest unread once stopped', async () => {
    const { client, server, close } = await pair();
    try {
      const early = new EarlyBytes(server, Buffer.from('head|'));
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
    } finally {
      close();
    }
  });

  it('sees a client that hangs up (its FIN, which only reading shows), destroys its socket and says so once', async () => {
    const { client, server, close } = await pair();
    try {
      const early = new EarlyBytes(server, Buffer.alloc(0));
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
    } finally {
      close();
    }
  });

  it('takes a client that sends more than a handshake may (64 KiB before the 101) as gone', async () => {
    const { client, server, close } = await pair();
    try {
      const early = new EarlyBytes(server, Buffer.alloc(0));
      client.on('error', () => undefined);
      client.write(Buffer.alloc(65 << 10, 1));
      await eventually(() => early.left);
      assert.ok(server.destroyed);
      assert.ok(Buffer.concat(early.chunks).length <= 64 << 10);
    } finally {
      close();
    }
  });

  it('after stop() a hang-up is no longer its to see', async () => {
    const { client, server, close } = await pair();
    try {
      const early = new EarlyBytes(server, Buffer.alloc(0));
      let told = 0;
      early.whenLeft(() => told++);
      early.stop();
      client.end();
      await sleep(150);
      assert.equal(early.left, false);
      assert.equal(told, 0);
    } finally {
      close();
    }
  });
});
