/** `drawbridge demo` (what `npm start` runs) as a real process. */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { tempDir } from '../support/harness.js';

/** Loopback ports free right now (listened on, then released). */
async function freePorts(n: number): Promise<number[]> {
  const servers = await Promise.all(Array.from({ length: n }, () => new Promise<net.Server>((r) => { const s = net.createServer(); s.listen(0, '127.0.0.1', () => r(s)); })));
  const ports = servers.map((s) => (s.address() as AddressInfo).port);
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  return ports;
}

describe('drawbridge demo', function () {
  this.timeout(30_000);

  it('exits 1 with the one-line error when the gateway port is busy, closing the sample app and the provider', async () => {
    const [gw, admin, hub, app, idp] = await freePorts(5);
    const dir = tempDir();
    const config = readFileSync('gateway.config.yaml', 'utf8').replace(/8080/g, String(gw)).replace(/9090/g, String(admin)).replace(/8444/g, String(hub)).replace(/3001/g, String(app)).replace(/9000/g, String(idp));
    writeFileSync(join(dir, 'gateway.config.yaml'), config);
    const busy = net.createServer();
    await new Promise<void>((r) => busy.listen(gw, '127.0.0.1', r));
    try {
      const child = spawn(process.execPath, [join(process.cwd(), 'dist/src/cli.js'), 'demo', '--config', join(dir, 'gateway.config.yaml')], {
        cwd: dir,
        env: { ...process.env, DEMO_APP_PORT: String(app), DEMO_IDP_PORT: String(idp) },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let err = '';
      child.stderr.on('data', (c) => (err += c));
      const code = await new Promise<number | null>((resolve, reject) => {
        const t = setTimeout(() => {
          child.kill('SIGKILL');
          reject(new Error(`the demo still runs 15 s after: ${err}`));
        }, 15_000);
        child.once('exit', (c) => (clearTimeout(t), resolve(c)));
      });
      assert.equal(code, 1);
      assert.match(err, new RegExp(`127\\.0\\.0\\.1:${gw} is already in use`));
    } finally {
      busy.close();
    }
  });
});
