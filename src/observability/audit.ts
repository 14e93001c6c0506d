/**
 * The audit trail: one JSON line per access decision (allow, deny, step-up,
 * sign-in redirect, error) and per sign-in and sign-out at the gateway's own
 * endpoints, with who, from where, to which app, and why.
 * Written to `stateDir/audit/audit.log`, rotated by size, counted in metrics.
 *
 * What never goes in: query strings (they carry codes and tokens), header
 * values, cookies, tokens. Reasons are stage-written text; anything in them
 * that looks like a JWT is redacted as a last line of defence.
 *
 * A write that fails (disk full, a lost mount) does not stop the gateway: requests are still
 * served, the records that could not be written are counted in
 * drawbridge_audit_records_lost_total, and the file is reopened (at most once a second) until a
 * write succeeds again. Failing open is the choice: a full disk taking every app down, and
 * /readyz pulling every replica at once, would be worse than a gap the metric shows.
 *
 * The lines of one event-loop turn are written together, synchronously, from the main thread (as
 * the log's are, see logOutput.ts). A write handed to the thread pool could still be waiting
 * there when a defect ends the process (`process.exit` in processFaults): the records of the
 * last requests, the ones an investigation of that crash needs most, were lost. Now nothing is
 * ever in flight, and the process's exit writes what the turn had gathered.
 */
import { closeSync, existsSync, fstatSync, openSync, readdirSync, readSync, renameSync, rmSync, writeSync } from 'node:fs';
import { basename, join } from 'node:path';
import type { Logger } from 'pino';
import { makeDirs } from '../config/stateFile.js';
import { AUDIT_KEEP_FILES, AUDIT_ROTATE_AT_MIB } from '../config/schema.js';
import { policyNamesIn } from '../policy/engine.js';
import type { Metrics } from './metrics.js';
import { isoTime } from './isoTime.js';

/** What the edge reports when a request is finished. */
export interface DecisionEvent {
  readonly correlationId: string;
  readonly app: string;
  /** the edge's outcome: allow, deny, step-up, redirect, respond, upgrade, timeout, upstream-error, error; sign-in, sign-in-refused, sign-out at the gateway's own endpoints */
  readonly decision: string;
  readonly stepUp?: boolean;
  readonly status: number;
  readonly method?: string;
  /** the path without the query string */
  readonly path?: string;
  readonly user?: string;
  readonly clientIp?: string;
  readonly reasons?: readonly string[];
}

export type AuditDecision = 'allow' | 'deny' | 'step-up' | 'redirect' | 'respond' | 'sign-in' | 'sign-out' | 'error';

export interface AuditRecord {
  time: string;
  correlationId: string;
  app: string;
  user?: string;
  clientIp?: string;
  method?: string;
  path?: string;
  decision: AuditDecision;
  status: number;
  policies: string[];
  reasons: string[];
}

export interface AuditOptions {
  /** rotate when the file reaches this size (default 10 MiB) */
  maxBytes?: number;
  /** rotated files kept: audit.log.1 ... audit.log.N (default 5) */
  keep?: number;
  metrics?: Metrics;
  logger?: Logger;
  now?: () => number;
}

/** After a failed write, the file is reopened at most this often; records in between are lost (and counted). */
const REOPEN_EVERY_MS = 1000;
/** While writes keep failing, the error is logged at most this often, with the count lost so far. */
const LOG_EVERY_MS = 60_000;

const JWT_LIKE = /eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*/g;

export function auditDecisionOf(e: Pick<DecisionEvent, 'decision' | 'stepUp' | 'status'>): AuditDecision {
  switch (e.decision) {
    case 'allow':
    case 'upgrade':
    case 'timeout':
    case 'upstream-error':
    case 'client-timeout':
      // the gateway let the request through; what the app did afterwards is not an access decision
      return 'allow';
    case 'step-up':
      return 'step-up';
    case 'deny':
      return e.stepUp ? 'step-up' : 'deny';
    case 'redirect':
      return 'redirect';
    case 'sign-in':
    case 'sign-out':
      return e.decision;
    case 'sign-in-refused':
      // a callback the gateway would not turn into a session: replayed, forged, or the provider said no
      return 'deny';
    case 'respond':
      // A stage's own answer with an error status (the 401 for a refused bearer token) refused access.
      return e.status >= 400 ? 'deny' : 'respond';
    default:
      return 'error';
  }
}

export function auditRecordOf(e: DecisionEvent, now: number): AuditRecord {
  const reasons = e.reasons?.length ? e.reasons.map((r) => (r.includes('eyJ') ? r.replace(JWT_LIKE, '[redacted token]') : r)) : [];
  // Built field by field (no spreads): keys keep this order in the JSON line.
  const rec = { time: isoTime(now), correlationId: e.correlationId, app: e.app } as AuditRecord;
  if (e.user !== undefined) rec.user = e.user;
  if (e.clientIp !== undefined) rec.clientIp = e.clientIp;
  if (e.method !== undefined) rec.method = e.method;
  if (e.path !== undefined) {
    const q = e.path.indexOf('?');
    rec.path = cappedPath(q >= 0 ? e.path.slice(0, q) : e.path);
  }
  rec.decision = auditDecisionOf(e);
  rec.status = e.status;
  rec.policies = reasons.length ? policyNamesIn(reasons) : [];
  rec.reasons = reasons;
  return rec;
}

/**
 * Anyone can choose a request's path, and a 15,000-character one made each record 15 KB: a few
 * thousand anonymous requests then rotated every earlier record out of the kept files.
 */
export const AUDIT_PATH_MAX = 1024;

function cappedPath(path: string): string {
  return path.length <= AUDIT_PATH_MAX ? path : `${path.slice(0, AUDIT_PATH_MAX)}...(${path.length - AUDIT_PATH_MAX} more characters)`;
}

/** Rotations closer together than this are a trail being filled fast (a flood, or a too small rotateAtMiB): said at warn. */
const FAST_ROTATION_MS = 60_000;

export class AuditLog {
  readonly file: string;
  /** the live file's descriptor; undefined once closed */
  private fd?: number;
  private size = 0;
  private maxBytes!: number;
  private keep!: number;
  private lastRotationAt = -Infinity;
  private fastRotationToldAt = -Infinity;
  private readonly now: () => number;
  /** set while writes fail: since when, records lost, when to reopen, when the error was last logged */
  private outage?: { since: number; lost: number; reopenAt: number; loggedAt: number; failing: boolean };
  /** the file ends in a line cut by a failed write: the next write starts a new line */
  private cutLine = false;
  /** lines not yet written: one write per event-loop turn, not one syscall per request */
  private pending: string[] = [];
  private flushScheduled = false;
  /** a failed rotation is tried again from this time on */
  private rotateRetryAt = 0;
  /** a rotation renamed the files but could not open the new one: the live descriptor writes to audit.log.1 */
  private renamedNotOpened = false;

  constructor(readonly dir: string, private readonly opts: AuditOptions = {}) {
    this.file = join(dir, 'audit.log');
    this.setRetention(opts);
    this.now = opts.now ?? Date.now;
    makeDirs(dir);
    this.fd = this.open();
    openLogs.add(this);
    opts.metrics?.auditWritable.set(1);
  }

  /** gateway.audit as the (reloaded) config has it, its defaults for what it leaves out: the next rotation uses it. */
  setRetention(r: { maxBytes?: number; keep?: number }): void {
    const maxBytes = r.maxBytes ?? AUDIT_ROTATE_AT_MIB * 1024 * 1024;
    if (maxBytes < 1024) throw new Error('audit maxBytes must be at least 1024');
    this.maxBytes = maxBytes;
    this.keep = Math.max(1, r.keep ?? AUDIT_KEEP_FILES);
  }

  /** audit.log, created if missing (mode 600); notes whether it ends in a cut line. */
  private open(): number {
    const fd = openSync(this.file, 'a+', 0o600);
    let size: number;
    const last = Buffer.alloc(1);
    try {
      size = fstatSync(fd).size;
      this.cutLine = size > 0 && readSync(fd, last, 0, 1, size - 1) === 1 && last[0] !== 0x0a;
    } catch (e) {
      closeSync(fd);
      throw e;
    }
    this.size = size;
    return fd;
  }

  /** Records one decision; counts it in drawbridge_decisions_total. */
  record(e: DecisionEvent): AuditRecord {
    const rec = auditRecordOf(e, this.now());
    this.opts.metrics?.countDecision(rec.app, rec.decision);
    if (this.fd === undefined) return rec;
    const line = JSON.stringify(rec) + '\n';
    const bytes = Buffer.byteLength(line);
    if (this.size > 0 && this.size + bytes > this.maxBytes && Date.now() >= this.rotateRetryAt) this.rotate();
    this.size += bytes;
    this.pending.push(line);
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(() => this.flush());
    }
    return rec;
  }

  /** Writes what this turn gathered; also run at the process's exit (openLogs). */
  flush(): void {
    this.flushScheduled = false;
    if (!this.pending.length || this.fd === undefined) return;
    const lines = this.pending.length;
    let chunk = this.pending.join('');
    this.pending = [];
    if (this.outage?.failing && !this.reopen()) return this.lose(lines);
    if (this.cutLine) chunk = '\n' + chunk;
    this.cutLine = false;
    try {
      writeAll(this.fd, Buffer.from(chunk));
    } catch (err) {
      return this.writeFailed(err as Error, lines);
    }
    this.written();
  }

  /** A new descriptor once REOPEN_EVERY_MS has passed since the failure; false while it is not time or it cannot be opened. */
  private reopen(): boolean {
    const outage = this.outage!;
    if (Date.now() < outage.reopenAt) return false;
    outage.reopenAt = Date.now() + REOPEN_EVERY_MS;
    try {
      const fd = this.open();
      closeQuietly(this.fd);
      this.fd = fd;
    } catch (err) {
      this.logOutage(err as Error);
      return false;
    }
    outage.failing = false;
    return true;
  }

  /** A write that failed may have written part of its lines: the next write starts a new line. */
  private writeFailed(err: Error, lines: number): void {
    this.outage ??= { since: Date.now(), lost: 0, reopenAt: 0, loggedAt: -Infinity, failing: true };
    this.lose(lines);
    this.outage.failing = true;
    this.outage.reopenAt = Date.now() + REOPEN_EVERY_MS;
    this.cutLine = true;
    this.opts.metrics?.auditWritable.set(0);
    this.logOutage(err);
  }

  private written(): void {
    if (!this.outage || this.outage.failing) return;
    const { since, lost } = this.outage;
    this.outage = undefined;
    this.opts.metrics?.auditWritable.set(1);
    this.opts.logger?.warn({ file: this.file, lost, outageMs: Date.now() - since }, 'audit log written again after a write error');
  }

  private lose(lines: number): void {
    this.opts.metrics?.auditLost.inc(lines);
    if (this.outage) this.outage.lost += lines;
  }

  private logOutage(err: Error): void {
    const outage = this.outage!;
    if (Date.now() - outage.loggedAt < LOG_EVERY_MS) return;
    outage.loggedAt = Date.now();
    this.opts.logger?.error({ err, file: this.file, lost: outage.lost }, 'audit log cannot be written: requests are still served, their audit records are lost');
  }

  /**
   * audit.log -> audit.log.1 -> ... -> audit.log.N (dropped). The records gathered before it are written to the file renamed.
   * A rotation that fails (a folder turned read-only, a name taken by a directory) loses nothing: the
   * live descriptor stays open and takes the records past the size limit, the failure is logged at most
   * once a minute, and the rotation is tried again then. It used to end the stream first and throw,
   * so every later record was dropped, uncounted, while the metrics said the trail was written.
   */
  private rotate(): void {
    this.flush();
    const live = this.fd!;
    // The renames of a rotation whose new file could not be opened were done: this retry only
    // opens it. Renaming again would move the file being written down the chain, and after
    // `keep` retries delete it while records still went to it.
    if (this.renamedNotOpened) {
      try {
        this.fd = this.open();
      } catch (err) {
        return this.rotateFailed(err as Error);
      }
      this.renamedNotOpened = false;
      closeQuietly(live);
      this.rotateRetryAt = 0;
      return;
    }
    try {
      this.dropBeyondKeep();
      for (let i = this.keep - 1; i >= 1; i--) if (existsSync(`${this.file}.${i}`)) renameSync(`${this.file}.${i}`, `${this.file}.${i + 1}`);
      renameSync(this.file, `${this.file}.1`);
    } catch (err) {
      return this.rotateFailed(err as Error);
    }
    try {
      this.fd = this.open();
    } catch (err) {
      // the live descriptor follows its file to audit.log.1, and the records with it
      this.renamedNotOpened = true;
      return this.rotateFailed(err as Error);
    }
    closeQuietly(live);
    this.rotateRetryAt = 0;
    this.rotated();
  }

  /** Counted; rotations less than a minute apart are said at warn (at most once a minute), with what the kept files then hold. */
  private rotated(): void {
    const now = this.now();
    this.opts.metrics?.auditRotations.inc();
    const since = now - this.lastRotationAt;
    this.lastRotationAt = now;
    if (since >= FAST_ROTATION_MS || now - this.fastRotationToldAt < FAST_ROTATION_MS) return;
    this.fastRotationToldAt = now;
    const holds = Math.round((since * (this.keep + 1)) / 1000);
    this.opts.logger?.warn(
      { file: this.file, sinceLastRotationMs: since, keepFiles: this.keep, rotateAtBytes: this.maxBytes },
      `audit log rotated ${Math.round(since / 1000)} s after the previous rotation: at this rate the kept files hold the last ${holds} s of decisions; raise gateway.audit.rotateAtMiB or keepFiles, or ship the file off the host`,
    );
  }

  /**
   * Deletes audit.log.<keep> and every older file: after keepFiles was lowered (by a reload or a
   * restart), files past the new count would otherwise stay on disk for ever.
   */
  private dropBeyondKeep(): void {
    const prefix = `${basename(this.file)}.`;
    for (const name of readdirSync(this.dir)) {
      if (!name.startsWith(prefix)) continue;
      const n = name.slice(prefix.length);
      if (/^[1-9]\d*$/.test(n) && Number(n) >= this.keep) rmSync(join(this.dir, name), { force: true });
    }
  }

  private rotateFailed(err: Error): void {
    this.rotateRetryAt = Date.now() + LOG_EVERY_MS;
    this.opts.logger?.error({ err, file: this.file, bytes: this.size }, 'audit log cannot be rotated: records are still written, past the size limit; rotation is tried again in a minute');
  }

  close(): Promise<void> {
    this.flush();
    closeQuietly(this.fd);
    this.fd = undefined;
    openLogs.delete(this);
    return Promise.resolve();
  }
}

/** A short write to a regular file is a full disk or a quota: the rest is tried until write says why. */
function writeAll(fd: number, buf: Buffer): void {
  for (let off = 0; off < buf.length; ) off += writeSync(fd, buf, off);
}

function closeQuietly(fd: number | undefined): void {
  if (fd === undefined) return;
  try {
    closeSync(fd);
  } catch {
    // a descriptor on a lost mount may fail to close; it is released either way
  }
}

/**
 * Audit logs not yet closed. Whatever ends the process (an uncaught exception's exit, any
 * `process.exit`), their last turn's records are written first: one listener for all of them.
 */
const openLogs = new Set<AuditLog>();
process.once('exit', () => {
  for (const log of openLogs) log.flush();
});
