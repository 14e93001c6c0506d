import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { RequestContext } from '../../src/pipeline/stage.js';
import { loadPlugins } from '../../src/plugins/registry.js';
import { tempDir } from '../support/harness.js';

const plugin = (tag: string) => `export default {
  name: 'tagger', kind: 'sso', apiVersion: 1, description: 'sets x-tag', optionsSchema: { type: 'object' },
  create: () => ({ name: 'tagger', kind: 'sso', run: () => ({ kind: 'continue', setHeaders: { 'x-tag': '${tag}' } }) }),
};
`;

/** What a reload gets from the loader when an operator edits a local plugin file. */
describe('plugin loading across reloads', () => {
  const dir = tempDir();
  const file = join(dir, 'tagger.mjs');
  const tagOf = async () => {
    const { loaded, failures } = await loadPlugins(['./tagger.mjs'], dir);
    assert.deepEqual(failures, []);
    const p = loaded.find((l) => l.plugin.name === 'tagger')!.plugin;
    const stage = await p.create({}, {} as never);
    return (stage.run({} as RequestContext) as { setHeaders: Record<string, string> }).setHeaders['x-tag'];
  };

  it('an edited file is loaded again with its new code; an unchanged one is the module already loaded', async () => {
    writeFileSync(file, plugin('one'));
    assert.equal(await tagOf(), 'one');
    writeFileSync(file, plugin('two'));
    assert.equal(await tagOf(), 'two');
    const a = (await loadPlugins(['./tagger.mjs'], dir)).loaded.at(-1)!.plugin;
    const b = (await loadPlugins(['./tagger.mjs'], dir)).loaded.at(-1)!.plugin;
    assert.equal(a, b, 'same content, same module: no new copy per reload');
  });

  it('a syntax error in an edited file is a load failure (the reload is refused), not the old code', async () => {
    writeFileSync(file, plugin('three').replace('export default {', 'export default {{'));
    const { failures } = await loadPlugins(['./tagger.mjs'], dir);
    assert.equal(failures.length, 1);
    assert.match(failures[0]!.message, /plugin "\.\/tagger\.mjs" failed to load/);
  });
});
