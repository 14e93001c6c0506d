/**
 * makeDirs: mkdir -p for stateDir and its folders, which must end with Node's own error where
 * Node 20's recursive mkdirSync loops for ever (a directory that answers ENOENT, as /proc does).
 */
import assert from 'node:assert/strict';
import { mkdirSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { makeDirs } from '../../src/config/stateFile.js';
import { spawnGateway, tempDir } from '../support/harness.js';

describe('config/stateFile: makeDirs', function () {
  this.timeout(20_000);

  it('makes every missing level, private (0700), and is quiet when the dir is there', () => {
    const root = tempDir();
    const dir = join(root, 'a', 'b', 'c');
    makeDirs(dir);
    for (const d of [join(root, 'a'), join(root, 'a', 'b'), dir]) assert.equal(statSync(d).mode & 0o777, 0o700 & ~process.umask(), d);
    makeDirs(dir);
    mkdirSync(join(root, 'open'), { mode: 0o755 });
    makeDirs(join(root, 'open'));
    assert.equal(statSync(join(root, 'open')).mode & 0o777, 0o755 & ~process.umask(), 'an existing dir is left as it is');
  });

  it('fails as Node does on a file in the way or a link to nothing', () => {
    const root = tempDir();
    writeFileSync(join(root, 'file'), 'x');
    assert.throws(() => makeDirs(join(root, 'file')), (e: NodeJS.ErrnoException) => e.code === 'EEXIST');
    assert.throws(() => makeDirs(join(root, 'file', 'x', 'y')), (e: NodeJS.ErrnoException) => e.code === 'ENOTDIR');
    symlinkSync(join(root, 'nowhere', 'deeper'), join(root, 'link'));
    assert.throws(() => makeDirs(join(root, 'link', 'x')), (e: NodeJS.ErrnoException) => e.code === 'ENOENT');
  });

  it('a directory that refuses new entries with ENOENT (/proc) is an error, not an endless loop', () => {
    assert.throws(() => makeDirs('/proc/drawbridge-state/connectors'), (e: NodeJS.ErrnoException) => e.code === 'ENOENT');
  });

  /** `drawbridge gateway` on a config whose stateDir is `stateDir`: its exit code and output */
  async function gatewayWithStateDir(stateDir: string): Promise<{ code: number | null; out: string }> {
    const file = join(tempDir(), 'gateway.config.yaml');
    writeFileSync(file, `gateway:\n  publicUrl: http://gw.test\n  listen: { http: 127.0.0.1:0 }\n  stateDir: ${stateDir}\napps:\n  - name: Echo\n    externalUrl: http://echo.test/\n    internalUrl: http://127.0.0.1:1/\n    preAuth: passthrough\n`);
    const gw = spawnGateway(file);
    const killer = setTimeout(() => gw.child.kill('SIGKILL'), 10_000);
    const { code } = await gw.exited;
    clearTimeout(killer);
    return { code, out: gw.output() };
  }

  it('a gateway whose stateDir is under /proc stops at once with the reason (it spun at full CPU, saying nothing, deaf to SIGTERM)', async () => {
    const { code, out } = await gatewayWithStateDir('/proc/drawbridge-state');
    assert.equal(code, 1, out);
    assert.match(out, /^drawbridge gateway: cannot start: \/proc\/drawbridge-state: no such file or directory$/m);
  });

  it('a stateDir that is a file, or below one, is said in words (it was Node\'s "EEXIST: file already exists, mkdir ...")', async () => {
    const afile = join(tempDir(), 'afile');
    writeFileSync(afile, 'x');
    const onFile = await gatewayWithStateDir(afile);
    assert.equal(onFile.code, 1, onFile.out);
    assert.equal(onFile.out, `drawbridge gateway: cannot start: ${afile} is a file, not a directory\n`);
    const below = await gatewayWithStateDir(join(afile, 'state'));
    assert.equal(below.code, 1, below.out);
    assert.equal(below.out, `drawbridge gateway: cannot start: ${join(afile, 'state')}: a part of it is a file, not a directory\n`);
  });
});
