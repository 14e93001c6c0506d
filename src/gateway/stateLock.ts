/**
 * One gateway process per stateDir. The revoked sessions are read once at start and pruned
 * from memory, the assertion keys and the audit log are rotated by whoever holds them, and the
 * connector CA and token key live there too: two gateways on one stateDir each forget the
 * other's sign-outs and overwrite the other's files. So the gateway holds stateDir/gateway.lock
 * while it runs, and a second one on the same stateDir refuses to start.
 *
 * The lock file is created with O_EXCL and holds who has it (pid, host, start time); the holder
 * refreshes its mtime every HEARTBEAT_MS (the heartbeat). A lock is stale, and taken over, when
 * its holder is gone: on this host and its pid is not alive, or its heartbeat is older than
 * STALE_MS (a holder in another pid namespace or on another host that shares the folder).
 *
 * A rolling restart starts the new process while the old one drains (up to DRAIN_GRACE_MS).
 * The old one marks the lock `stopping` when its drain begins, and the new one waits for such a
 * lock (up to STOPPING_WAIT_MS, saying so) instead of failing; a lock whose holder is serving is
 * refused at once, so a second gateway started by mistake is told so without a wait.
 *
 * A connector's state dir is held the same way (connector.lock): two connectors on one dir are
 * one connector id with two sets of channels, and each renewal rewrites the key and certificate
 * the other process started from.
 */
import { randomUUID } from 'node:crypto';
import { closeSync, linkSync, lstatSync, openSync, readFileSync, renameSync, statSync, unlinkSync, utimesSync, writeFileSync, writeSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { makeDirs } from '../config/stateFile.js';
import { DrawbridgeError } from '../errors.js';
import { DRAIN_GRACE_MS } from './listen.js';

/** Who holds a lock, for its file name and for what the messages tell the operator. */
export interface LockRole {
  file: string;
  /** 'gateway' or 'connector' */
  holder: string;
  /** what the operator calls the dir */
  dir: string;
  /** how the operator gives a second process a dir of its own */
  ownDir: string;
  /** what it keeps there that another local user must not replace */
  keeps: string;
}
export const GATEWAY_LOCK: LockRole = { file: 'gateway.lock', holder: 'gateway', dir: 'stateDir', ownDir: 'gateway.stateDir', keeps: 'its keys and audit log' };
export const CONNECTOR_LOCK: LockRole = {
  file: 'connector.lock',
  holder: 'connector',
  dir: 'state dir',
  ownDir: '--state-dir',
  keeps: 'its key and certificate, and connector.json, which names the gateway it dials',
};
export const LOCK_FILE = GATEWAY_LOCK.file;
/** how often the holder refreshes the lock's mtime */
export const HEARTBEAT_MS = 10_000;
/** a heartbeat this old means the holder is gone, wherever it ran (three missed beats) */
export const STALE_MS = 30_000;
/** how long a starting gateway waits for one that is draining: its drain, and the rest of its stop */
export const STOPPING_WAIT_MS = DRAIN_GRACE_MS + 10_000;

/** Another gateway process holds the stateDir. */
export class StateDirLockedError extends DrawbridgeError {
  constructor(message: string, details: Record<string, unknown>) {
    super('ERR_STATE_DIR_LOCKED', message, details);
  }
}

interface Holder {
  pid: number;
  host: string;
  startedAt: string;
  /** this holding, so a process lets go only of its own lock */
  id: string;
  /** set when the holder's drain begins: a starting gateway waits for it */
  stopping?: boolean;
}

export interface LockOptions {
  log: Logger;
  /** default GATEWAY_LOCK */
  role?: LockRole;
  /** tests: shorter bounds */
  staleMs?: number;
  waitMs?: number;
  heartbeatMs?: number;
}

/** locks (their files) held by this process: a second GatewayServer here on one stateDir is refused like another process */
const heldHere = new Set<string>();

export class StateDirLock {
  private timer?: NodeJS.Timeout;
  private released = false;
  private lost = false;
  private readonly onExit = () => this.release();

  private constructor(
    readonly stateDir: string,
    private readonly file: string,
    private holder: Holder,
    private readonly log: Logger,
    private readonly role: LockRole,
    heartbeatMs: number,
  ) {
    heldHere.add(file);
    // A fatal exit (an uncaught exception, a second signal, the forced exit after the drain) ends in process.exit: let go there too.
    process.on('exit', this.onExit);
    this.timer = setInterval(() => this.beat(), heartbeatMs);
    this.timer.unref();
  }

  /** Takes stateDir/<role's file>, waiting for a holder that is stopping; throws StateDirLockedError when another process holds it. */
  static async acquire(stateDir: string, opts: LockOptions): Promise<StateDirLock> {
    const role = opts.role ?? GATEWAY_LOCK;
    const file = join(stateDir, role.file);
    const staleMs = opts.staleMs ?? STALE_MS;
    const waitMs = opts.waitMs ?? STOPPING_WAIT_MS;
    makeDirs(stateDir);
    const deadline = Date.now() + waitMs;
    let waiting = false;
    for (;;) {
      if (heldHere.has(file)) throw lockedError(role, stateDir, file, { pid: process.pid, host: hostname(), startedAt: '', id: '' });
      const me: Holder = { pid: process.pid, host: hostname(), startedAt: new Date().toISOString(), id: randomUUID() };
      if (create(file, me)) return new StateDirLock(stateDir, file, me, opts.log, role, opts.heartbeatMs ?? HEARTBEAT_MS);
      const seen = read(file, role);
      if (!seen) continue; // let go of between our try and the read: try again
      if (!seen.holder && Date.now() - seen.beatAt <= staleMs) {
        // Being written by a process that just created it (or damaged: taken over once its heartbeat is stale).
        await new Promise((r) => setTimeout(r, 100));
        continue;
      }
      const gone = goneReason(seen, staleMs, role);
      if (gone) {
        if (takeOver(file, seen)) opts.log.warn({ stateDir, lock: file, holder: seen.holder, reason: gone }, `${role.dir} lock taken over: ${gone}`);
        continue;
      }
      if (!seen.holder!.stopping) throw lockedError(role, stateDir, file, seen.holder!);
      if (Date.now() >= deadline) throw lockedError(role, stateDir, file, seen.holder!, waitMs);
      if (!waiting) opts.log.info({ stateDir, holder: seen.holder, waitMs }, `waiting for the ${role.holder} that is stopping (pid ${seen.holder!.pid} on ${seen.holder!.host}) to let go of the ${role.dir}`);
      waiting = true;
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  /** The drain begins: a process starting now waits for this one instead of refusing. */
  markStopping(): void {
    if (this.released || this.lost) return;
    // A process that took the lock over (this one judged gone) keeps it: writing here would hand it back to us.
    if (!this.stillHeld()) return;
    this.holder = { ...this.holder, stopping: true };
    try {
      const tmp = `${this.file}.${this.holder.id}`;
      writeFileSync(tmp, JSON.stringify(this.holder) + '\n', { mode: 0o600 });
      renameSync(tmp, this.file);
    } catch (e) {
      this.log.warn({ lock: this.file, reason: (e as Error).message }, 'could not mark the stateDir lock as stopping');
    }
  }

  /** Lets go of the lock if it is still this process's (idempotent; synchronous, for process.on('exit')). */
  release(): void {
    if (this.released) return;
    this.released = true;
    clearInterval(this.timer);
    process.off('exit', this.onExit);
    heldHere.delete(this.file);
    if (!this.stillHeld()) return;
    try {
      unlinkSync(this.file);
    } catch {
      /* gone already */
    }
  }

  /** The file still names this holding; false too when it cannot be read (it runs at exit and on a timer: it never throws). */
  private stillHeld(): boolean {
    try {
      return read(this.file, this.role)?.holder?.id === this.holder.id;
    } catch {
      return false;
    }
  }

  private beat(): void {
    if (this.released || this.lost) return;
    const now = new Date();
    let reason = 'it was removed or taken by another process';
    try {
      if (read(this.file, this.role)?.holder?.id === this.holder.id) {
        utimesSync(this.file, now, now);
        return;
      }
    } catch (e) {
      // (unreadable now: permissions changed, replaced by a directory) the process serves on; it is said once
      reason = `it cannot be read or refreshed (${(e as Error).message})`;
    }
    // Someone deleted the file, or judged this process gone (a clock jump, a process stopped for STALE_MS).
    this.lost = true;
    this.log.error({ stateDir: this.stateDir, lock: this.file }, `the ${this.role.dir} lock ${this.file}: ${reason}; another ${this.role.holder} may now share this ${this.role.dir}; restart this one`);
  }
}

/** Warns when the dir can be written by group or others: another local user could plant symlinks or files where the process writes. */
export function warnIfStateDirOpen(stateDir: string, log: Logger, role: LockRole = GATEWAY_LOCK): void {
  let mode: number;
  try {
    mode = statSync(stateDir).mode & 0o777;
  } catch {
    return;
  }
  if (mode & 0o022) log.warn({ stateDir, mode: mode.toString(8) }, `${role.dir} ${stateDir} is writable by group or others (mode ${mode.toString(8)}): another local user could plant symlinks or files where the ${role.holder} keeps ${role.keeps}; run: chmod go-w ${stateDir}`);
}

function create(file: string, me: Holder): boolean {
  let fd: number;
  try {
    fd = openSync(file, 'wx', 0o600);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw e;
  }
  try {
    writeSync(fd, JSON.stringify(me) + '\n');
  } finally {
    closeSync(fd);
  }
  return true;
}

/** The lock as found: its holder (undefined while it is being written, or when damaged) and its heartbeat. */
function read(file: string, role: LockRole): { holder?: Holder; beatAt: number; text: string } | undefined {
  try {
    // lstat: a symlink here (a dangling one made O_EXCL fail and stat say ENOENT, forever) or a directory is no lock
    const st = lstatSync(file);
    if (!st.isFile()) throw new StateDirLockedError(`${file} is ${st.isDirectory() ? 'a directory' : st.isSymbolicLink() ? 'a symbolic link' : 'not a regular file'}, not a ${role.holder} lock: remove it (no running ${role.holder} uses it)`, { lock: file });
    const beatAt = st.mtimeMs;
    const text = readFileSync(file, 'utf8');
    let holder: Holder | undefined;
    try {
      const v = JSON.parse(text) as Holder;
      if (typeof v?.pid === 'number' && typeof v.host === 'string' && typeof v.id === 'string') holder = v;
    } catch {
      /* being written, or damaged: judged by its heartbeat alone */
    }
    return { holder, beatAt, text };
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
}

/** Why the lock's holder is gone, or undefined while it may be alive. */
function goneReason(seen: { holder?: Holder; beatAt: number }, staleMs: number, role: LockRole): string | undefined {
  const age = Date.now() - seen.beatAt;
  if (age > staleMs) return `its heartbeat is ${Math.round(age / 1000)} s old (a ${role.holder} refreshes it every ${HEARTBEAT_MS / 1000} s)`;
  const h = seen.holder;
  if (!h || h.host !== hostname()) return undefined;
  // Our own pid in a lock this process does not hold: a previous life of this container (pid 1 again).
  if (h.pid === process.pid) return `it names this process's pid ${h.pid} but this process did not take it (a restarted container)`;
  if (!alive(h.pid)) return `its holder, pid ${h.pid} on this host, is not running`;
  return undefined;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    // EPERM: it exists, under another user
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Removes the stale lock, unless another starting process replaced it since it was read: the file
 * is moved aside and compared, and put back when it is not the one judged stale.
 */
function takeOver(file: string, seen: { text: string }): boolean {
  const aside = `${file}.stale-${randomUUID()}`;
  try {
    renameSync(file, aside);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw e;
  }
  let same = false;
  try {
    same = readFileSync(aside, 'utf8') === seen.text;
    if (!same) {
      try {
        linkSync(aside, file); // fails if yet another one was created meanwhile: that one stands
      } catch {
        /* the newer lock stands */
      }
    }
  } finally {
    try {
      unlinkSync(aside);
    } catch {
      /* nothing to tidy */
    }
  }
  return same;
}

/** `waitedMs`: the holder was stopping, and this long was waited for it */
function lockedError(role: LockRole, stateDir: string, file: string, holder: Holder, waitedMs?: number): StateDirLockedError {
  const who = `pid ${holder.pid} on host ${holder.host}${holder.startedAt ? `, started ${holder.startedAt}` : ''}`;
  const here = holder.pid === process.pid && holder.host === hostname() ? ' (this process)' : '';
  const why = waitedMs !== undefined ? `it was stopping but still held it after ${Math.round(waitedMs / 1000)} s` : `only one ${role.holder} process may use a ${role.dir}`;
  return new StateDirLockedError(
    `${role.dir} ${stateDir} is in use by another ${role.holder} (${who}${here}); ${why}. Stop that ${role.holder} first, or give this one its own ${role.ownDir}. A lock left by a ${role.holder} that is gone is taken over by itself (${file})`,
    { stateDir, lock: file, holder },
  );
}
