/** `drawbridge gateway` / `lint` without a file: gateway.config.yaml is found by searching upwards. */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, realpathSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { discoverConfig } from '../../src/config/load.js';
import { tempDir } from '../support/harness.js';

describe('config discovery', () => {
  const project = () => {
    const dir = realpathSync(tempDir('drawbridge-discover-'));
    writeFileSync(join(dir, 'package.json'), '{"name":"ops"}\n');
    mkdirSync(join(dir, 'deploy', 'scripts'), { recursive: true });
    return dir;
  };

  it('finds gateway.config.yaml in the working directory', async () => {
    const dir = project();
    writeFileSync(join(dir, 'gateway.config.yaml'), 'apps: []\n');
    assert.equal(await discoverConfig(dir), join(dir, 'gateway.config.yaml'));
  });

  it('walks up from a subdirectory to the project root', async () => {
    const dir = project();
    writeFileSync(join(dir, 'gateway.config.yml'), 'apps: []\n');
    assert.equal(await discoverConfig(join(dir, 'deploy', 'scripts')), join(dir, 'gateway.config.yml'));
  });

  it('finds .config/gateway.config.yaml, and prefers gateway.config.yaml beside it', async () => {
    const dir = project();
    mkdirSync(join(dir, '.config'));
    writeFileSync(join(dir, '.config', 'gateway.config.yaml'), 'apps: []\n');
    assert.equal(await discoverConfig(dir), join(dir, '.config', 'gateway.config.yaml'));
    writeFileSync(join(dir, 'gateway.config.yaml'), 'apps: []\n');
    assert.equal(await discoverConfig(dir), join(dir, 'gateway.config.yaml'));
  });

  it('returns the path without parsing the file (a broken file is linted, not thrown here)', async () => {
    const dir = project();
    writeFileSync(join(dir, 'gateway.config.yaml'), '{{{ not yaml\n');
    assert.equal(await discoverConfig(dir), join(dir, 'gateway.config.yaml'));
  });

  it("an empty gateway.config.yaml is the file (linted as empty), not skipped for a parent directory's", async () => {
    const dir = project();
    writeFileSync(join(dir, 'gateway.config.yaml'), 'apps: []\n');
    writeFileSync(join(dir, 'deploy', 'gateway.config.yaml'), '');
    assert.equal(await discoverConfig(join(dir, 'deploy')), join(dir, 'deploy', 'gateway.config.yaml'));
  });

  it('a FIFO found there is returned without being read (reading it waited for a writer for ever); a directory of that name is passed over', async () => {
    const dir = project();
    execFileSync('mkfifo', [join(dir, 'gateway.config.yaml')]);
    assert.equal(await discoverConfig(join(dir, 'deploy')), join(dir, 'gateway.config.yaml'));
    mkdirSync(join(dir, 'deploy', 'gateway.config.yaml'));
    assert.equal(await discoverConfig(join(dir, 'deploy')), join(dir, 'gateway.config.yaml'));
  });

  it('finds nothing in a project without one', async () => {
    assert.equal(await discoverConfig(join(project(), 'deploy')), undefined);
  });
});
