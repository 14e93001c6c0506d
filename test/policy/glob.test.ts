/**
 * Policy path globs: what `*`, `**` and a trailing `/**` match (README,
 * "Conditions"), in time linear in the path whatever the glob.
 */
import assert from 'node:assert/strict';
import { PathGlob } from '../../src/policy/glob.js';

describe('path globs', () => {
  const cases: [string, string, boolean][] = [
    ['/a/*', '/a/b', true],
    ['/a/*', '/a/b/c', false],
    ['/a/*', '/a/', true],
    ['/a/**', '/a', true],
    ['/a/**', '/a/b/c', true],
    ['/a/**', '/ab', false],
    ['/a/**/z', '/a/z', true],
    ['/a/**/z', '/a/b/c/z', true],
    ['/a/**/z', '/a/b/c/zz', false],
    ['/*.json', '/x.json', true],
    ['/*.json', '/xjson', false],
    ['/api/v1.0/*', '/api/v1x0/a', false],
    ['/**', '/', true],
    ['/**/admin/**/*.php', '/admin/x.php', true],
    ['/**/admin/**/*.php', '/site/admin/tools/x.php', true],
    ['/**/admin/**/*.php', '/site/admin/tools/x.php/y', false],
    ['/**/admin/**/*.php', '/site/administrator/x.php', false],
    ['/a**b', '/a/x/b', true],
    ['/a/***', '/a/b/c', true],
    ['/(x)+[y]?$', '/(x)+[y]?$', true],
    ['/(x)+[y]?$', '/xxy', false],
    ['/exact', '/exact', true],
    ['/exact', '/exact/', false],
    ['/exact', '/exactly', false],
  ];
  for (const [glob, path, want] of cases) it(`${glob} ${want ? 'matches' : 'does not match'} ${path}`, () => assert.equal(new PathGlob(glob).matches(path), want));

  it('a glob with several ** against a 15 KB path that almost matches is answered in milliseconds (it took seconds, on the event loop every app shares)', () => {
    const globs: [string, string][] = [
      ['/**/reports/**/export/**/*.csv', '/' + 'reports/export/'.repeat(1040) + 'x'],
      ['/**/a/**/b/**/c/**', '/' + 'a/b/'.repeat(3900)],
      ['/**/admin/**/*.php', '/' + 'admin/'.repeat(2600)],
    ];
    for (const [pattern, path] of globs) {
      const glob = new PathGlob(pattern);
      // The median of a few runs, so that the first (not yet compiled by V8) and a busy machine do not decide.
      const times: number[] = [];
      for (let run = 0; run < 5; run++) {
        const started = performance.now();
        assert.equal(glob.matches(path), false);
        times.push(performance.now() - started);
        assert.ok(times[run]! < 1000, `${pattern} against ${path.length} bytes: ${times[run]!.toFixed(0)} ms`);
      }
      times.sort((a, b) => a - b);
      assert.ok(times[2]! < 50, `${pattern} against ${path.length} bytes: ${times.map((t) => t.toFixed(1)).join(', ')} ms`);
    }
  });

  it('matches what the regular expression it replaced matched, on 20,000 seeded random globs and paths', () => {
    const rnd = prng(20261130);
    const pick = <T>(a: readonly T[]) => a[Math.floor(rnd() * a.length)]!;
    const globParts = ['/', '/', 'a', 'b', '.', '*', '**', '/**', '/**/', '?', '(', '+'];
    const pathParts = ['/', '/', 'a', 'b', '.', 'ab', '?', '(', '+'];
    for (let n = 0; n < 20_000; n++) {
      let glob = '/';
      for (let k = Math.floor(rnd() * 7); k > 0; k--) glob += pick(globParts);
      let path = '/';
      for (let k = Math.floor(rnd() * 10); k > 0; k--) path += pick(pathParts);
      assert.equal(new PathGlob(glob).matches(path), regexOf(glob).test(path), `${glob} against ${path}`);
    }
  });
});

/**
 * The former implementation, as the reference for what a glob means. (Its
 * `.*` stopped at line breaks; the automaton's `**` does not, and normalized
 * paths cannot hold one, so the random paths have none.)
 */
function regexOf(glob: string): RegExp {
  let out = '';
  let i = 0;
  while (i < glob.length) {
    if (glob.startsWith('/**', i) && (i + 3 === glob.length || glob[i + 3] === '/')) {
      out += '(?:/.*)?';
      i += 3;
      continue;
    }
    const c = glob[i]!;
    if (c === '*') {
      out += glob[i + 1] === '*' ? '.*' : '[^/]*';
      i += glob[i + 1] === '*' ? 2 : 1;
      continue;
    }
    out += c.replace(/[.+?^${}()|[\]\\]/g, '\\$&');
    i += 1;
  }
  return new RegExp(`^${out}$`);
}

function prng(seed: number): () => number {
  return () => {
    seed = (Math.imul(seed, 1103515245) + 12345) & 0x7fffffff;
    return seed / 0x7fffffff;
  };
}
