/**
 * readIntoSharedBuffer: a TLS socket, accepted or dialled, that hands its decrypted bytes to a
 * callback through one reused buffer instead of a Buffer and a 'data' event per record.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import tls from 'node:tls';
import { ConnectorCa } from '../../src/connector/ca.js';
import { readIntoSharedBuffer } from '../../src/connector/tlsRecords.js';
import { eventually, tempDir } from '../support/harness.js';

describe('readIntoSharedBuffer: TLS records read into one buffer', function () {
  this.timeout(30_000);
  let server: tls.Server;
  let dialled: tls.TLSSocket;
  let accepted: tls.TLSSocket;

  beforeEach(async () => {
    const ca = await ConnectorCa.loadOrCreate(tempDir());
    const leaf = await ca.issueServer(['127.0.0.1']);
    server = tls.createServer({ key: leaf.keyPem, cert: leaf.certPem });
    const peer = once(server, 'secureConnection') as Promise<[tls.TLSSocket]>;
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    dialled = tls.connect({ host: '127.0.0.1', port: (server.address() as { port: number }).port, ca: ca.certPem });
    await once(dialled, 'secureConnect');
    [accepted] = await peer;
  });

  afterEach(() => {
    dialled.destroy();
    accepted.destroy();
    server.close();
  });

  /** what `socket` hands over until its end: the bytes' digest, their count and the largest piece */
  function collect(socket: tls.TLSSocket): { done: Promise<void>; got: { bytes: number; largest: number; digest: () => string } } {
    const hash = createHash('sha256');
    const got = { bytes: 0, largest: 0, digest: () => hash.digest('hex') };
    // the view is overwritten by the next piece: hashed at once, as a reader must copy at once
    assert.equal(
      readIntoSharedBuffer(socket, (bytes) => {
        hash.update(bytes);
        got.bytes += bytes.length;
        got.largest = Math.max(got.largest, bytes.length);
      }),
      true,
    );
    socket.on('data', () => assert.fail("a 'data' event came besides the callback"));
    return { done: once(socket, 'end').then(() => undefined), got };
  }

  for (const side of ['accepted', 'dialled'] as const) {
    it(`${side === 'accepted' ? 'an' : 'a'} ${side} socket hands every byte over, a record at a time, then ends`, async () => {
      const [reader, writer] = side === 'accepted' ? [accepted, dialled] : [dialled, accepted];
      const { done, got } = collect(reader);
      const body = randomBytes(4 << 20);
      writer.end(body);
      await done;
      assert.equal(got.bytes, body.length);
      assert.equal(got.digest(), createHash('sha256').update(body).digest('hex'), 'other bytes than the peer sent');
      assert.ok(got.largest <= 16 << 10, `a piece of ${got.largest} bytes: more than one TLS record`);
    });
  }

  it('pause() stops the reading until resume(): the peer meanwhile waits on its kernel buffers', async () => {
    const { done, got } = collect(accepted);
    accepted.pause();
    const body = randomBytes(8 << 20);
    dialled.end(body);
    await new Promise((r) => setTimeout(r, 300));
    // what one read had already decrypted may still come; not the 8 MiB
    const whilePaused = got.bytes;
    assert.ok(whilePaused < 1 << 20, `${whilePaused} bytes came while the socket was paused`);
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(got.bytes, whilePaused, 'bytes kept coming while the socket was paused');
    accepted.resume();
    await done;
    assert.equal(got.bytes, body.length);
    assert.equal(got.digest(), createHash('sha256').update(body).digest('hex'));
  });

  it('changes nothing when bytes already wait in the socket: they and the rest still come as data events', async () => {
    accepted.pause();
    dialled.write('first bytes');
    await eventually(() => accepted.readableLength > 0 || undefined, 5000, 10);
    assert.equal(
      readIntoSharedBuffer(accepted, () => assert.fail('the callback was called')),
      false,
    );
    const pieces: Buffer[] = [];
    accepted.on('data', (c: Buffer) => pieces.push(c));
    accepted.resume();
    dialled.end(' and the rest');
    await once(accepted, 'end');
    assert.equal(Buffer.concat(pieces).toString(), 'first bytes and the rest');
  });
});
