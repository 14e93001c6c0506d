import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import pino from 'pino';
import { join } from 'node:path';
import { AuditLog, auditRecordOf } from '../../src/observability/audit.js';
import { Metrics } from '../../src/observability/metrics.js';
import { eventually, request, sleep, startEchoBackend, startGateway, tempDir, type EchoBackend, type TestGateway } from '../support/harness.js';

const lines = (f: string) => readFileSync(f, 'utf8').trim().split('\n').map((l) => JSON.parse(l));

describe('audit log: one JSON line per decision, rotated by size, no secrets', () => {
  it('maps edge outcomes to decisions and keeps queries and tokens out', () => {
    const r = auditRecordOf(
      { correlationId: 'c1', app: 'A', decision: 'deny', stepUp: true, status: 401, method: 'GET', path: '/x?code=abc', user: 'bob', clientIp: '192.0.2.1', reasons: ['policy mfa: applied (x); requireMfa unmet: needs mfa', 'bearer eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJib2IifQ.c2lnbmF0dXJl rejected'] },
      Date.parse('2026-11-22T05:00:00Z'),
    );
    assert.equal(r.decision, 'step-up');
    assert.equal(r.path, '/x');
    assert.deepEqual(r.policies, ['mfa']);
    assert.equal(r.time, '2026-11-22T05:00:00.000Z');
    assert.ok(!JSON.stringify(r).includes('eyJ'), JSON.stringify(r));
    assert.equal(auditRecordOf({ correlationId: 'c', app: 'A', decision: 'upstream-error', status: 502 }, 0).decision, 'allow');
    assert.equal(auditRecordOf({ correlationId: 'c', app: 'A', decision: 'error', status: 500 }, 0).decision, 'error');
    assert.equal(auditRecordOf({ correlationId: 'c', app: 'A', decision: 'respond', status: 401 }, 0).decision, 'deny', 'a refused bearer token (a stage answering 401) is a deny');
    assert.equal(auditRecordOf({ correlationId: 'c', app: 'A', decision: 'respond', status: 200 }, 0).decision, 'respond');
  });

  it('rotates at the size limit, keeps N files, and counts every decision', async () => {
    const dir = tempDir();
    const metrics = new Metrics({ defaultMetrics: false });
    const log = new AuditLog(dir, { maxBytes: 2048, keep: 2, metrics });
    for (let i = 0; i < 60; i++) log.record({ correlationId: `id-${i}`, app: 'A', decision: i % 3 ? 'allow' : 'deny', status: i % 3 ? 200 : 403, reasons: ['x'.repeat(50)] });
    await log.close();
    const file = join(dir, 'audit.log');
    assert.ok(existsSync(`${file}.1`) && existsSync(`${file}.2`));
    assert.ok(!existsSync(`${file}.3`), 'only `keep` rotated files are kept');
    for (const f of [file, `${file}.1`, `${file}.2`]) assert.ok(statSync(f).size <= 2048, `${f} is over the limit`);
    const newest = lines(file);
    assert.equal(newest[newest.length - 1].correlationId, 'id-59', 'the newest decision is in audit.log');
    const all = [...lines(`${file}.2`), ...lines(`${file}.1`), ...newest].map((r) => Number(r.correlationId.slice(3)));
    assert.deepEqual(all, [...all].sort((a, b) => a - b), 'rotated files hold older lines, in order, none lost between them');
    assert.equal(all[all.length - 1], 59);
    const m = await metrics.registry.getSingleMetricAsString('drawbridge_decisions_total');
    assert.match(m, /decision="deny"\} 20/);
    assert.match(m, /decision="allow"\} 40/);
    assert.match(await metrics.registry.getSingleMetricAsString('drawbridge_decisions_total'), /decision="deny"\} 20/, 'a second scrape counts nothing twice');
    const more = new AuditLog(tempDir(), { metrics });
    more.record({ correlationId: 'late', app: 'A', decision: 'deny', status: 403 });
    await more.close();
    assert.match(await metrics.registry.getSingleMetricAsString('drawbridge_decisions_total'), /decision="deny"\} 21/, 'decisions after a scrape show in the next one');
    assert.equal(statSync(file).mode & 0o777, 0o600);
  });

  it('recovers after a write error (disk full, then space freed), counting and logging the records it lost', async () => {
    const dir = tempDir();
    const file = join(dir, 'audit.log');
    // /dev/full: every write fails with ENOSPC, as on a full disk.
    symlinkSync('/dev/full', file);
    const metrics = new Metrics({ defaultMetrics: false });
    const logs: Record<string, unknown>[] = [];
    const logger = pino({ level: 'debug' }, { write: (l: string) => void logs.push(JSON.parse(l)) });
    const log = new AuditLog(dir, { metrics, logger });
    const decide = (id: string) => log.record({ correlationId: id, app: 'A', decision: 'allow', status: 200 });
    const value = async (name: string) => Number(/ (\d+)$/m.exec(await metrics.registry.getSingleMetricAsString(name))![1]);

    decide('full-1');
    decide('full-2');
    await sleep(50);
    decide('full-3');
    await eventually(async () => (await value('drawbridge_audit_records_lost_total')) === 3).catch(async () => assert.fail(`lost ${await value('drawbridge_audit_records_lost_total')}, not 3`));
    assert.equal(await value('drawbridge_audit_log_writable'), 0);
    const errors = logs.filter((l) => l.level === 50);
    assert.equal(errors.length, 1, 'logged once, not once per record');
    assert.match(String(errors[0].msg), /audit log cannot be written/);

    rmSync(file); // space freed
    await sleep(1100);
    decide('after-1');
    await sleep(50);
    decide('after-2');
    await log.close();
    assert.deepEqual(lines(file).map((r) => r.correlationId), ['after-1', 'after-2'], 'the audit trail is written again, without a restart');
    assert.equal(await value('drawbridge_audit_records_lost_total'), 3);
    assert.equal(await value('drawbridge_audit_log_writable'), 1);
    const back = logs.find((l) => /written again/.test(String(l.msg)));
    assert.equal(back?.lost, 3);
  });
});

describe('audit log: a rotation that fails', () => {
  it('loses no record: they go on into the live file past the limit, the failure is logged once, and the next try rotates', async () => {
    const dir = tempDir();
    const file = join(dir, 'audit.log');
    // the oldest kept name taken by a directory with something in it: the rotation cannot drop it
    mkdirSync(`${file}.2/x`, { recursive: true });
    const metrics = new Metrics({ defaultMetrics: false });
    const logs: Record<string, unknown>[] = [];
    const logger = pino({ level: 'debug' }, { write: (l: string) => void logs.push(JSON.parse(l)) });
    const log = new AuditLog(dir, { maxBytes: 2048, keep: 2, metrics, logger });
    const decide = (i: number) => log.record({ correlationId: `id-${i}`, app: 'A', decision: 'allow', status: 200, reasons: ['x'.repeat(50)] });
    for (let i = 0; i < 40; i++) decide(i);
    await sleep(50);
    assert.deepEqual(lines(file).map((r) => r.correlationId), [...Array(40).keys()].map((i) => `id-${i}`), 'every record, in the live file');
    assert.ok(statSync(file).size > 2048);
    const errors = logs.filter((l) => l.level === 50);
    assert.equal(errors.length, 1, 'logged once, not once per record');
    assert.match(String(errors[0]!.msg), /audit log cannot be rotated/);
    const value = async (name: string) => Number(/ (\d+)$/m.exec(await metrics.registry.getSingleMetricAsString(name))![1]);
    assert.equal(await value('drawbridge_audit_records_lost_total'), 0);
    assert.equal(await value('drawbridge_audit_log_writable'), 1);

    // the obstacle gone, the next try (a minute later) rotates
    rmSync(`${file}.2`, { recursive: true });
    (log as unknown as { rotateRetryAt: number }).rotateRetryAt = 0;
    decide(40);
    await log.close();
    assert.deepEqual(lines(file).map((r) => r.correlationId), ['id-40']);
    assert.equal(lines(`${file}.1`).length, 40);
  });
});

describe('audit log: a rotation whose new file cannot be opened', () => {
  it('keeps writing to the renamed file, and its retries only open the new one: the file being written is never moved down the chain and deleted', async () => {
    const dir = tempDir();
    const file = join(dir, 'audit.log');
    const logs: Record<string, unknown>[] = [];
    const logger = pino({ level: 'debug' }, { write: (l: string) => void logs.push(JSON.parse(l)) });
    const log = new AuditLog(dir, { maxBytes: 1024, keep: 2, logger });
    const internals = log as unknown as { open(): number; rotateRetryAt: number };
    const realOpen = internals.open.bind(log);
    let n = 0;
    const decide = () => log.record({ correlationId: `id-${n++}`, app: 'A', decision: 'allow', status: 200, reasons: ['x'.repeat(40)] });
    // out of descriptors from the first rotation on, for three retries (a minute apart each)
    let failing = true;
    internals.open = () => {
      if (failing) throw Object.assign(new Error('EMFILE: too many open files'), { code: 'EMFILE' });
      return realOpen();
    };
    for (let retry = 0; retry < 4; retry++) {
      for (let i = 0; i < 10; i++) decide();
      await sleep(20);
      internals.rotateRetryAt = 0;
    }
    failing = false;
    for (let i = 0; i < 3; i++) decide();
    await log.close();
    const written = [`${file}.2`, `${file}.1`, file].filter((f) => existsSync(f)).flatMap((f) => lines(f).map((r) => r.correlationId));
    assert.deepEqual(written.slice(-n), Array.from({ length: n }, (_, i) => `id-${i}`), 'every record, in order, none deleted');
    assert.ok(logs.some((l) => /audit log cannot be rotated/.test(String(l.msg))));
  });
});

describe('audit log: a process that ends on a defect', () => {
  it("writes every record, in order, including the turn the exception was thrown in (they were lost in the exit)", () => {
    const dir = tempDir();
    const module = (name: string) => JSON.stringify(new URL(`../../src/observability/${name}.js`, import.meta.url).href);
    // One turn's records written, the next turn's gathered, then an exception nobody catches in
    // that same turn: the gateway's own handler (processFaults) logs it and exits.
    const script = `
      import pino from 'pino';
      import { AuditLog } from ${module('audit')};
      import { reportProcessFaults } from ${module('processFaults')};
      const log = new AuditLog(${JSON.stringify(dir)});
      reportProcessFaults(pino());
      const decide = (id) => log.record({ correlationId: id, app: 'A', decision: 'deny', status: 403, reasons: ['x'.repeat(200)] });
      for (let i = 0; i < 100; i++) decide('a-' + i);
      setImmediate(() => {
        for (let i = 0; i < 100; i++) decide('b-' + i);
        throw new Error('a defect');
      });`;
    const run = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 20_000 });
    assert.equal(run.status, 1, run.stderr);
    assert.match(run.stdout, /"level":60.*an exception nobody caught/, 'the fatal line says why it exited');
    const ids = lines(join(dir, 'audit.log')).map((r) => r.correlationId);
    const want = ['a', 'b'].flatMap((t) => Array.from({ length: 100 }, (_, i) => `${t}-${i}`));
    assert.equal(ids.length, 200, 'every record is in the file');
    assert.deepEqual(ids, want, 'in the order they were made');
  });
});

describe('audit trail through a running gateway: a client cannot buy the whole trail cheaply', function () {
  this.timeout(60_000);
  let backend: EchoBackend;
  let gw: TestGateway;
  const yaml = (audit: string) => `
gateway:
  publicUrl: http://app.test
  listen: { http: 127.0.0.1:0 }
  stateDir: ./state
${audit}
apps:
  - name: App
    externalUrl: http://app.test/
    internalUrl: ${backend.url}/
    preAuth: passthrough
`;
  before(async () => {
    backend = await startEchoBackend();
  });
  afterEach(async () => gw?.stop());
  after(async () => backend.close());

  it('a long path is cut in its record, rotation follows gateway.audit, and fast rotations are said at warn and counted', async () => {
    gw = await startGateway(yaml('  audit: { rotateAtMiB: 1, keepFiles: 2 }'));
    const file = join(gw.dir, 'state', 'audit', 'audit.log');
    const long = '/' + 'a'.repeat(15_000);
    assert.equal((await request(`${gw.url}${long}`, { headers: { host: 'app.test' } })).status, 200);
    await eventually(() => existsSync(file) && readFileSync(file, 'utf8').length > 0);
    const rec = lines(file).at(-1);
    assert.equal(rec.path, `/${'a'.repeat(1023)}...(13977 more characters)`);
    // 1 MiB fills with ~1,000-byte records: about a thousand requests per rotation
    const agent = new http.Agent({ keepAlive: true, maxSockets: 20 });
    const mid = '/' + 'b'.repeat(900);
    for (let i = 0; i < 2_600; i += 20) await Promise.all(Array.from({ length: 20 }, () => request(`${gw.url}${mid}`, { headers: { host: 'app.test' }, agent })));
    agent.destroy();
    await eventually(() => existsSync(`${file}.2`));
    assert.ok(!existsSync(`${file}.3`), 'keepFiles: 2');
    for (const f of [file, `${file}.1`, `${file}.2`]) assert.ok(statSync(f).size <= 1024 * 1024, `${f} is over rotateAtMiB`);
    const warned = gw.logs.filter((l) => String(l.msg).startsWith('audit log rotated'));
    assert.equal(warned.length, 1, 'said once a minute at most');
    assert.equal(warned[0]!.level, 40);
    assert.match(String(warned[0]!.msg), /s after the previous rotation: at this rate the kept files hold the last \d+ s of decisions; raise gateway\.audit\.rotateAtMiB or keepFiles, or ship the file off the host$/);
    assert.match(await gw.server.metrics.registry.getSingleMetricAsString('drawbridge_audit_rotations_total'), /drawbridge_audit_rotations_total [23]\b/);
  });

  it('a reload applies a new gateway.audit at the next rotation', async () => {
    gw = await startGateway(yaml('  audit: { rotateAtMiB: 1, keepFiles: 1 }'));
    const file = join(gw.dir, 'state', 'audit', 'audit.log');
    writeFileSync(gw.configFile, yaml('  audit: { rotateAtMiB: 1, keepFiles: 3 }'));
    assert.equal(await gw.server.reload('test'), 'success');
    const agent = new http.Agent({ keepAlive: true, maxSockets: 20 });
    const mid = '/' + 'c'.repeat(1000);
    for (let i = 0; i < 3_400; i += 20) await Promise.all(Array.from({ length: 20 }, () => request(`${gw.url}${mid}`, { headers: { host: 'app.test' }, agent })));
    agent.destroy();
    await eventually(() => existsSync(`${file}.3`), 10_000);
  });

  it('a lowered keepFiles deletes the files past it at the next rotation (they stayed on disk for ever)', async () => {
    gw = await startGateway(yaml('  audit: { rotateAtMiB: 1, keepFiles: 3 }'));
    const file = join(gw.dir, 'state', 'audit', 'audit.log');
    const agent = new http.Agent({ keepAlive: true, maxSockets: 20 });
    const mid = '/' + 'd'.repeat(1000);
    const fill = async (n: number) => {
      for (let i = 0; i < n; i += 20) await Promise.all(Array.from({ length: 20 }, () => request(`${gw.url}${mid}`, { headers: { host: 'app.test' }, agent })));
    };
    await fill(3_400);
    await eventually(() => existsSync(`${file}.3`), 10_000);
    writeFileSync(gw.configFile, yaml('  audit: { rotateAtMiB: 1, keepFiles: 1 }'));
    assert.equal(await gw.server.reload('test'), 'success');
    await fill(1_200);
    agent.destroy();
    await eventually(() => !existsSync(`${file}.2`) && !existsSync(`${file}.3`) && existsSync(`${file}.1`), 10_000);
  });
});
