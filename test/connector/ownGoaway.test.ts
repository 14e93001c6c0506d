import assert from 'node:assert/strict';
import http2 from 'node:http2';
import { Duplex, PassThrough } from 'node:stream';
import { CLIENT_PREFACE_BYTES, goawayReason, onOwnGoaway, type OwnGoaway } from '../../src/connector/ownGoaway.js';
import { CLIENT_PREFACE, FRAME, frame, u32 } from '../support/h2Frames.js';

/** a stream that takes writes and drops them, watched by onOwnGoaway */
function watched(preface: number): { stream: Duplex; seen: OwnGoaway[] } {
  const stream = new PassThrough();
  stream.resume();
  const seen: OwnGoaway[] = [];
  onOwnGoaway(stream, preface, (g) => seen.push(g));
  return { stream, seen };
}

const goaway = (code: number, debug = '') => frame(FRAME.GOAWAY, 0, 0, Buffer.concat([u32(0), u32(code), Buffer.from(debug)]));
const turn = () => new Promise((r) => setImmediate(r));

describe('onOwnGoaway: the GOAWAY an HTTP/2 session sends by itself', () => {
  const cases: { description: string; writes: Buffer[]; preface?: number; expect: OwnGoaway[] }[] = [
    { description: 'a GOAWAY with an error code, after other frames', writes: [frame(FRAME.SETTINGS, 0, 0), frame(FRAME.DATA, 0, 1, Buffer.alloc(100)), goaway(1, 'DATA: stream in idle')], expect: [{ code: 1, debug: 'DATA: stream in idle' }] },
    { description: 'NO_ERROR (a drain\'s goodbye) is not a failure', writes: [goaway(0)], expect: [] },
    { description: 'a DATA payload that holds the bytes of a GOAWAY is data', writes: [frame(FRAME.DATA, 0, 1, goaway(1, 'inside'))], expect: [] },
    { description: 'a client\'s preface is passed over', preface: CLIENT_PREFACE_BYTES, writes: [CLIENT_PREFACE, goaway(11)], expect: [{ code: 11, debug: '' }] },
    { description: 'told once, however many follow', writes: [goaway(2), goaway(1)], expect: [{ code: 2, debug: '' }] },
  ];
  for (const c of cases) {
    it(`${c.description} (whole writes, and one byte a write)`, async () => {
      for (const split of [false, true]) {
        const { stream, seen } = watched(c.preface ?? 0);
        for (const w of c.writes) {
          if (!split) stream.write(w);
          else for (const b of w) stream.write(Buffer.from([b]));
        }
        await turn();
        assert.deepEqual(seen, c.expect, split ? 'one byte a write' : 'whole writes');
      }
    });
  }

  it('a long debug text is cut, and the frames after it are still read', async () => {
    const { stream, seen } = watched(0);
    stream.write(goaway(0, 'x'.repeat(5000)));
    stream.write(goaway(3, 'y'.repeat(5000)));
    await turn();
    assert.equal(seen.length, 1);
    assert.equal(seen[0]!.code, 3);
    assert.equal(seen[0]!.debug, 'y'.repeat(200));
  });

  it('sees what a real session writes: nothing for its preface, SETTINGS and a close(), a code for goaway(code)', async () => {
    for (const [end, expect] of [
      ['close', []],
      ['goaway', [3]],
    ] as const) {
      // (a peer that sends nothing: what the session writes goes nowhere)
      const wire = new Duplex({ read: () => undefined, write: (_c, _e, cb) => cb() });
      const seen: number[] = [];
      onOwnGoaway(wire, CLIENT_PREFACE_BYTES, (g) => seen.push(g.code));
      const session = http2.connect('http://x.invalid', { createConnection: () => wire });
      session.on('error', () => undefined);
      await turn();
      if (end === 'close') session.close();
      else session.goaway(http2.constants.NGHTTP2_FLOW_CONTROL_ERROR);
      await new Promise((r) => setTimeout(r, 50));
      assert.deepEqual(seen, expect, end);
    }
  });

  it('a log line\'s reason is nghttp2\'s debug text, else the error code\'s name', () => {
    assert.equal(goawayReason({ code: 1, debug: 'DATA: stream in idle' }), 'DATA: stream in idle');
    assert.equal(goawayReason({ code: 11, debug: '' }), 'ENHANCE_YOUR_CALM (code 11)');
    assert.equal(goawayReason({ code: 99, debug: '' }), 'HTTP/2 error (code 99)');
  });
});
