/**
 * Reading the gateway's own files in stateDir (the connector CA, the token key, the
 * revoked-session list). A damaged or misplaced one is an operator's problem to fix, not a
 * bug: it stops the start with one line that names the file and what to do about it. Node's
 * EISDIR from readFileSync carries no path, so the file is named here, where it is read.
 */
import { lstatSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import type { Logger } from 'pino';
import { OperationalError } from '../errors.js';

/** A file in stateDir that cannot be used; the message names it and says what to do. */
export class StateFileError extends OperationalError {}

/**
 * The text of a file in stateDir, or undefined when it does not exist. `remedy` is what the
 * operator can do when the file is not usable (a directory in its place, unreadable).
 */
export function readStateFile(file: string, remedy: string): string | undefined {
  try {
    return readFileSync(file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return undefined;
    if (code === 'EISDIR') throw new StateFileError('ERR_STATE_FILE', `${file} is a directory, not a file: ${remedy}`, { file });
    // the remedy is for a damaged file; an unreadable one needs its owner or mode fixed
    if (code === 'EACCES' || code === 'EPERM') throw new StateFileError('ERR_STATE_FILE', `${file}: permission denied (the gateway's user must be able to read it)`, { file });
    throw new StateFileError('ERR_STATE_FILE', `cannot read ${file}: ${(e as Error).message}`, { file });
  }
}

/**
 * Warns when a key file in stateDir can be read or written by group or others. The gateway
 * makes these 0600; a restore from backup, a `cp` without `-p` or configuration management
 * may not. Anyone who reads ca.key issues connector certificates, token.key mints enrollment
 * tokens, assertion-keys.json signs identities. A warning, not a refusal: a restore must
 * not take the gateway down, and the fix is one chmod.
 */
export function warnIfExposed(file: string, log: Pick<Logger, 'warn'>): void {
  const mode = permissionsOf(file);
  if (mode === undefined || (mode & 0o077) === 0) return;
  const octal = octalMode(mode);
  log.warn({ file, mode: octal }, `${file} is a private key readable or writable by group or others (mode ${octal}): run chmod 600 ${file}`);
}

/** A file's permission bits; undefined when it cannot be looked at (missing: nothing to warn about). */
export function permissionsOf(file: string): number | undefined {
  try {
    return statSync(file).mode & 0o777;
  } catch {
    return undefined;
  }
}

/** `0644`, as chmod takes it */
export function octalMode(mode: number): string {
  return `0${mode.toString(8).padStart(3, '0')}`;
}

/** Why a file or folder in stateDir cannot be written, in the words an operator looks for (by errno code). */
export const STATE_WRITE_FAILURES: Readonly<Record<string, string>> = {
  EROFS: 'read-only file system',
  EACCES: 'permission denied',
  EPERM: 'permission denied',
  ENOSPC: 'no space left on the device',
  EDQUOT: 'disk quota exceeded',
  ENOTDIR: 'a file stands where a directory belongs',
  EEXIST: 'a file stands where a directory belongs',
  EISDIR: 'a directory stands where a file belongs',
};

/**
 * `mkdir -p` that always ends: Node 20's `mkdirSync(dir, { recursive: true })` loops for ever, at
 * full CPU and without a word, when a directory that exists refuses a new entry with ENOENT, as
 * procfs does (a stateDir under /proc hung the gateway's start, SIGTERM unheard). The missing
 * levels are made one at a time, and the first failure is thrown with Node's own code and path.
 */
export function makeDirs(dir: string, mode = 0o700): void {
  const missing: string[] = [];
  for (let d = resolve(dir); !entryExists(d); d = dirname(d)) {
    missing.unshift(d);
    if (dirname(d) === d) break;
  }
  if (missing.length === 0) missing.push(resolve(dir));
  for (const d of missing) {
    try {
      mkdirSync(d, { mode });
    } catch (e) {
      // made meanwhile by another process, or the dir that was asked for is already there
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST' || !isDirectory(d)) throw e;
    }
  }
}

/** lstat, not stat: a link to nothing is an entry, which mkdir below it fails on (ENOENT) */
function entryExists(path: string): boolean {
  try {
    lstatSync(path);
    return true;
  } catch {
    return false;
  }
}

function isDirectory(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}
