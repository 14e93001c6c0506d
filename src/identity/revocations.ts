/**
 * Sessions ended by sign-out before their cookie expires.
 *
 * A session cookie is self-contained: clearing it in the browser does not
 * make a copy of it (lifted from a shared machine, a proxy log, a backup)
 * stop working. Sign-out therefore records the session's id until the
 * cookie's own expiry, in stateDir so a restart does not bring it back.
 * One store per stateDir, shared by every config generation.
 *
 * File: stateDir/sessions/revoked.jsonl, one {"j": id, "exp": seconds} per line.
 */
import { appendFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { readStateFile, makeDirs } from '../config/stateFile.js';

/** expired lines are dropped when they outnumber live ones by this much */
const PRUNE_SLACK = 1000;

const listeners = new Set<(id: string) => void>();

/** Calls `fn` with the id of every session revoked in this process from now on; returns the unsubscribe. */
export function onSessionRevoked(fn: (id: string) => void): () => void {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

export class SessionRevocations {
  private static readonly byDir = new Map<string, SessionRevocations>();
  private readonly revoked = new Map<string, number>();
  private lines = 0;

  /** The store of this stateDir in this process. */
  static at(stateDir: string): SessionRevocations {
    const dir = resolve(stateDir);
    let r = SessionRevocations.byDir.get(dir);
    if (!r) {
      r = SessionRevocations.read(dir);
      SessionRevocations.byDir.set(dir, r);
    }
    return r;
  }

  /** What a gateway starting on this stateDir knows. */
  static read(stateDir: string): SessionRevocations {
    return new SessionRevocations(join(resolve(stateDir), 'sessions', 'revoked.jsonl'));
  }

  private constructor(private readonly file: string) {
    const text = readStateFile(file, 'move it aside and start again (sessions signed out before are accepted again until their cookies expire)') ?? '';
    for (const line of text.split('\n')) {
      if (!line) continue;
      this.lines++;
      try {
        const { j, exp } = JSON.parse(line) as { j?: unknown; exp?: unknown };
        if (typeof j === 'string') this.revoked.set(j, typeof exp === 'number' ? exp : Infinity);
      } catch {
        /* a torn last line: that sign-out did not finish */
      }
    }
  }

  has(id: string, nowSec: number): boolean {
    const exp = this.revoked.get(id);
    return exp !== undefined && exp > nowSec;
  }

  /** Records the session as ended until `exp` (seconds); throws if stateDir cannot be written. */
  revoke(id: string, exp: number, nowSec: number): void {
    if (this.revoked.has(id)) return;
    // in memory first: the sign-out takes effect in this process even if the disk refuses
    this.revoked.set(id, exp);
    for (const fn of listeners) fn(id);
    for (const [j, e] of this.revoked) if (e <= nowSec) this.revoked.delete(j);
    makeDirs(dirname(this.file));
    const line = JSON.stringify({ j: id, exp }) + '\n';
    if (this.lines - this.revoked.size < PRUNE_SLACK) {
      appendFileSync(this.file, line, { mode: 0o600 });
      this.lines++;
      return;
    }
    const tmp = `${this.file}.tmp`;
    writeFileSync(tmp, [...this.revoked].map(([j, e]) => JSON.stringify({ j, exp: e }) + '\n').join(''), { mode: 0o600 });
    renameSync(tmp, this.file);
    this.lines = this.revoked.size;
  }
}
