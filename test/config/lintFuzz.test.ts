/**
 * Whatever an operator saves, lint and the loader answer with problems at
 * positions, never an exception: a seeded run of mutations of the reference
 * file (lines dropped, doubled or re-indented, values swapped for hostile
 * scalars, bytes inserted).
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadConfigText } from '../../src/config/load.js';
import { ConfigUnreadableError } from '../../src/errors.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
const FIXTURE = join(ROOT, 'test/fixtures/gateway.config.reference.yaml');

const VALUES = ['', '~', '-1', '0', '1e309', '99999999999999999999', '[]', '{}', '[a, [b, {c: d}]]', '"x"', "'unterminated", '"\\u0000"', '*nope', '&a x', '!!binary AAAA', '!!js/function f', '${env:NOPE}', '${file:/nonexistent}', '${env:}', '${', 'http://', 'https://*.*.x/', '::', '300.1.1.1/40', '-', '? x', '|', '>-', 'yes', 'NaN', '.inf', '2026-13-45', 'x'.repeat(5000)];
const BYTES = ['\t', '\0', '\r', '\uFEFF', ':', '- ', '  ', '#', '"', '{', ']', '&', '*', '!', '%', '@', '`', '\u2028'];

function prng(seed: number): () => number {
  return () => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed / 0x7fffffff;
  };
}

function mutate(lines: string[], rnd: () => number): string {
  const out = [...lines];
  const pick = <T>(a: readonly T[]) => a[Math.floor(rnd() * a.length)]!;
  for (let n = 1 + Math.floor(rnd() * 3); n > 0; n--) {
    const i = Math.floor(rnd() * out.length);
    switch (Math.floor(rnd() * 6)) {
      case 0:
        out.splice(i, 1);
        break;
      case 1:
        out.splice(i, 0, out[i]!);
        break;
      case 2:
        out[i] = (rnd() < 0.5 ? '  ' : '') + out[i]!.replace(/^ {1,2}/, '');
        break;
      case 3:
        out[i] = out[i]!.replace(/:\s+(\S.*)$/, () => `: ${pick(VALUES)}`);
        break;
      case 4: {
        const at = Math.floor(rnd() * (out[i]!.length + 1));
        out[i] = out[i]!.slice(0, at) + pick(BYTES) + out[i]!.slice(at);
        break;
      }
      default:
        out[i] = out[i]!.replace(/^(\s*)([A-Za-z][\w-]*):/, (_m, sp: string) => `${sp}${pick(['x', 'apps', 'listen', 'when', 'grant', '"a b"', '1'])}:`);
    }
  }
  return out.join('\n');
}

describe('config: hostile edits of the reference file', function () {
  this.timeout(120_000);
  it('600 seeded mutations: each loads to a config or to problems with line and column, never a throw', async () => {
    const lines = readFileSync(FIXTURE, 'utf8').split('\n');
    const rnd = prng(20261130);
    let withProblems = 0;
    let unreadable = 0;
    for (let k = 0; k < 600; k++) {
      const text = mutate(lines, rnd);
      let r;
      try {
        r = await loadConfigText(text, join(ROOT, 'test/fixtures/fuzzed.yaml'), { mode: 'lint', env: {} });
      } catch (e) {
        // text that is not YAML at all is the one refusal by exception: exit 2, still with its position
        if (e instanceof ConfigUnreadableError && /fuzzed\.yaml:\d+:\d+: not valid YAML: \S/.test(e.message)) {
          unreadable++;
          continue;
        }
        assert.fail(`mutation ${k} threw ${(e as Error).stack}\n--- input ---\n${text}`);
      }
      const errors = r.problems.filter((p) => p.severity === 'error');
      if (errors.length) withProblems++;
      else assert.ok(r.config, `mutation ${k}: no error and no config`);
      for (const p of r.problems) {
        assert.ok(Number.isInteger(p.line) && p.line! >= 1 && Number.isInteger(p.col) && p.col! >= 1, `mutation ${k}: ${JSON.stringify(p)}`);
        assert.ok(p.message.length > 0 && !/undefined|\[object Object\]/.test(p.message), `mutation ${k}: ${p.message}`);
      }
    }
    // the mutations must actually break things, or this proves nothing
    assert.ok(withProblems > 200 && unreadable > 50, `${withProblems} of 600 mutations had errors, ${unreadable} were not YAML`);
  });
});
