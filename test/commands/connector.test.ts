/**
 * `drawbridge connector run` holds its state dir: a second process on the same dir is refused
 * (it would be the same connector id with channels of its own, renewing into the other's files),
 * and a restart that starts the new process while the old one drains waits for it.
 */
import assert from 'node:assert/strict';
import { chmodSync, existsSync, readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { eventually, reachedApp, request, sleep, type SimpleResponse, type TestGateway } from '../support/harness.js';
import { hubUrl, killConnector, readyChannels, runCli, startConnector, startEnrolledHub, token, waitChannels, type ConnectorProcess, type EnrolledHub } from '../connector/support.js';

describe('connector run: one process per state dir, and signals', function () {
  this.timeout(60_000);
  let hub: EnrolledHub;
  let gw: TestGateway;
  let running: ConnectorProcess[] = [];

  before(async () => {
    hub = await startEnrolledHub();
    gw = hub.gw;
  });
  afterEach(async () => {
    await Promise.all(running.map((c) => killConnector(c)));
    running = [];
  });
  after(async () => hub?.stop());

  it('a second run on a dir in use is refused in one line, and the first keeps its channels alone', async () => {
    const first = startConnector(hub.enrolled);
    running.push(first);
    await waitChannels(gw, 2);
    const lock = JSON.parse(readFileSync(join(hub.enrolled, 'connector.lock'), 'utf8')) as { pid: number; startedAt: string };
    assert.equal(lock.pid, first.child.pid);

    const second = await runCli(['connector', 'run', '--state-dir', hub.enrolled]);
    assert.equal(second.code, 1, second.stderr);
    assert.equal(
      second.stderr,
      `drawbridge connector run: state dir ${hub.enrolled} is in use by another connector (pid ${first.child.pid} on host ${hostname()}, started ${lock.startedAt}); only one connector process may use a state dir. Stop that connector first, or give this one its own --state-dir. A lock left by a connector that is gone is taken over by itself (${join(hub.enrolled, 'connector.lock')})\n`,
    );
    assert.doesNotMatch(second.stdout, /connector starting/);
    // enroll is refused the same way while the dir is in use (before it looks at the token)
    const enroll = await runCli(['connector', 'enroll', '--gateway', hubUrl(gw), '--token', token(gw), '--state-dir', hub.enrolled]);
    assert.equal(enroll.code, 1, enroll.stderr);
    assert.match(enroll.stderr, /^drawbridge connector enroll: state dir \S+ is in use by another connector/);
    await sleep(300);
    assert.equal(readyChannels(gw).length, 2, 'no channels beside the first connector\'s');
  });

  it('a state dir other users can write is warned about at start, naming the chmod to run', async () => {
    chmodSync(hub.enrolled, 0o777);
    try {
      const c = startConnector(hub.enrolled);
      running.push(c);
      await waitChannels(gw, 2);
      const warned = await eventually(() => c.logs().find((l) => String(l.msg).startsWith(`state dir ${hub.enrolled} is writable by group or others`)), 5_000);
      assert.equal(warned!.level, 'warn');
      assert.match(String(warned!.msg), /\(mode 777\): another local user could plant symlinks or files where the connector keeps its key and certificate, and connector\.json, which names the gateway it dials; run: chmod go-w /);
    } finally {
      chmodSync(hub.enrolled, 0o700);
    }
  });

  it('a connector killed with SIGKILL leaves a lock the next run takes over', async () => {
    const first = startConnector(hub.enrolled);
    running.push(first);
    await waitChannels(gw, 2);
    await killConnector(first);
    assert.ok(existsSync(join(hub.enrolled, 'connector.lock')));
    const next = startConnector(hub.enrolled);
    running.push(next);
    await eventually(() => next.logs().some((l) => String(l.msg).startsWith('state dir lock taken over: its holder, pid')), 10_000);
    await eventually(() => readyChannels(gw).some((c) => c.connectorId === JSON.parse(readFileSync(join(hub.enrolled, 'connector.json'), 'utf8')).id), 15_000);
  });

  let busy = 0;
  /** A connector with `channels` channels up and a request in flight through it, which the app answers after `ms`. */
  async function busyConnector(args: string[], channels: number, ms: number): Promise<{ c: ConnectorProcess; slow: Promise<SimpleResponse | undefined> }> {
    const c = startConnector(hub.enrolled, { args });
    running.push(c);
    await waitChannels(gw, channels);
    // (a mark of its own: each test's request is told from the earlier ones the app received)
    const path = `/slow?ms=${ms}&busy=${++busy}`;
    const slow = request(`${gw.url}${path}`, { headers: { host: 'app.test' } }).catch(() => undefined);
    await reachedApp(hub.backend, path);
    return { c, slow };
  }

  it('a restart while the old process drains: the new one waits for it, then serves', async () => {
    // a request in flight keeps the old connector draining for about two seconds
    const { c: old, slow } = await busyConnector(['--drain-timeout', '20s'], 2, 2000);
    old.child.kill('SIGTERM');
    await eventually(() => old.logs().some((l) => l.msg === 'draining'), 5_000);
    const fresh = startConnector(hub.enrolled);
    running.push(fresh);
    await eventually(() => fresh.logs().some((l) => String(l.msg).startsWith('waiting for the connector that is stopping')), 5_000);
    assert.equal((await slow)?.status, 200, 'the drained request completed');
    assert.equal(await old.exited, 0);
    await eventually(() => fresh.logs().some((l) => l.msg === 'channel open'), 15_000);
    await waitChannels(gw, 2);
    assert.equal(fresh.child.exitCode, null, fresh.lines.join('\n'));
  });

  it('SIGHUP is ignored with a line: the connector keeps running and its in-flight request completes (it died at once, and the request got 504)', async () => {
    const { c, slow } = await busyConnector(['--channels', '1'], 1, 1500);
    c.child.kill('SIGHUP');
    await eventually(() => c.logs().find((l) => l.signal === 'SIGHUP'), 5_000);
    assert.equal(c.logs().find((l) => l.signal === 'SIGHUP')!.msg, 'SIGHUP ignored: the connector has nothing to reload (SIGTERM stops it)');
    assert.equal((await slow)?.status, 200);
    assert.equal(c.child.exitCode, null);
    assert.equal(c.child.signalCode, null);
    assert.equal((await request(`${gw.url}/after-hup`, { headers: { host: 'app.test' } })).status, 200);
  });

  it('a second SIGINT during the drain exits at once with 1, saying in-flight streams are cut; a stop signal again within moments (npm forwarding a Ctrl-C, the demo stopping its connector) is not', async () => {
    const { c, slow } = await busyConnector(['--channels', '1', '--drain-timeout', '30s'], 1, 20000);
    c.child.kill('SIGINT');
    c.child.kill('SIGINT'); // (a Ctrl-C forwarded by npm as well: not a second one)
    c.child.kill('SIGTERM'); // (nor the demo stopping its connector on the same Ctrl-C)
    await eventually(() => c.logs().some((l) => l.msg === 'draining'), 5_000);
    await sleep(700);
    assert.equal(c.child.exitCode, null, 'still draining');
    const at = Date.now();
    c.child.kill('SIGINT');
    assert.equal(await c.exited, 1);
    assert.ok(Date.now() - at < 2000, 'at once, not after the drain');
    const said = c.logs().find((l) => String(l.msg).startsWith('stopping now'));
    assert.equal(said?.msg, 'stopping now: second signal, in-flight streams are cut');
    assert.equal(said?.level, 'warn');
    await slow;
  });
});
