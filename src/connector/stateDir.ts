/**
 * The connector's state dir: connector.json, key.pem, cert.pem and ca.pem, how they are read
 * (each damage named, with what to do) and written (atomically, the key 0600).
 */
import { chmodSync, existsSync, lstatSync, readFileSync, readlinkSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ConnectorError } from '../errors.js';
import { STATE_WRITE_FAILURES, makeDirs, octalMode, permissionsOf } from '../config/stateFile.js';
import { gatewayUrlProblem } from './gatewayCalls.js';

export interface ConnectorState {
  id: string;
  group: string;
  gateway: string;
  notAfter: string;
}

export interface Files {
  state: string;
  key: string;
  /** the key of the certificate a renewal is replacing, kept until the new cert.pem is in place */
  prevKey: string;
  cert: string;
  ca: string;
}

export function filesOf(stateDir: string): Files {
  return { state: join(stateDir, 'connector.json'), key: join(stateDir, 'key.pem'), prevKey: join(stateDir, 'key.pem.prev'), cert: join(stateDir, 'cert.pem'), ca: join(stateDir, 'ca.pem') };
}

/**
 * The state dir holds an enrollment: connector.json, which enroll writes last. A missing key.pem
 * or cert.pem beside it is a damaged enrollment, named by ConnectorAgent (it read "holds no
 * enrollment", and with --token given, "the enrollment token was already used").
 */
export function isEnrolled(stateDir: string): boolean {
  return existsSync(filesOf(stateDir).state);
}

/** What a damaged state dir asks for: enroll refuses a dir that holds an enrollment, damaged or not. */
export const ENROLL_AGAIN = 'enroll again in an empty --state-dir';

/**
 * connector.json as enrollment wrote it, or why it is not: a hand-edited `gateway` (the README
 * points at it) or a `null` ended in a stack trace, and `{}` in `not a URL: "/v1/tunnel"`.
 */
export function readState(file: string): ConnectorState {
  const v = JSON.parse(readStateDirFile(file, 'a JSON file')) as Record<string, unknown> | null;
  const damaged = (what: string) => new ConnectorError('ERR_STATE_UNREADABLE', `${file}: ${what}; ${ENROLL_AGAIN}`);
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw damaged(`holds ${v === null ? 'null' : Array.isArray(v) ? 'a list' : `a ${typeof v}`}, not the enrollment's JSON object`);
  for (const field of ['id', 'group', 'gateway'] as const) {
    if (typeof v[field] !== 'string' || v[field] === '') throw damaged(`"${field}" is ${v[field] === undefined ? 'missing' : `not a name (${JSON.stringify(v[field])})`}`);
  }
  const gateway = v.gateway as string;
  if (gatewayUrlProblem(gateway)) throw damaged(`"gateway" must be https://host:port (the connectors.listen endpoint it enrolled with), not ${JSON.stringify(gateway)}`);
  return v as unknown as ConnectorState;
}

/**
 * key.pem or cert.pem is gone (or a link to nothing): named, not taken for an empty state dir.
 * lstat: a dangling link is said as one.
 */
export function assertPresent(file: string): void {
  let link = false;
  try {
    link = lstatSync(file).isSymbolicLink();
  } catch {
    throw new ConnectorError('ERR_STATE_UNREADABLE', `${file} is missing; ${ENROLL_AGAIN}`);
  }
  if (link && !existsSync(file)) throw new ConnectorError('ERR_STATE_UNREADABLE', `${file} is a symbolic link to ${readlinkSync(file)}, which does not exist; ${ENROLL_AGAIN}`);
}

/** What connector.json says of an enrollment, for messages and the demo; undefined when it cannot be read. */
export function storedEnrollment(stateDir: string): Partial<ConnectorState> | undefined {
  try {
    return JSON.parse(readFileSync(filesOf(stateDir).state, 'utf8')) as Partial<ConnectorState>;
  } catch {
    return undefined;
  }
}

export function writeAtomic(file: string, data: string, mode = 0o644): void {
  const tmp = `${file}.tmp-${process.pid}`;
  try {
    writeFileSync(tmp, data, { mode });
    chmodSync(tmp, mode);
    renameSync(tmp, file);
  } catch (e) {
    // (a full disk left a 0-byte connector.json.tmp-PID behind)
    try {
      rmSync(tmp, { force: true });
    } catch {
      /* a directory in its place: not this process's to remove */
    }
    throw e;
  }
}

export function writeFailure(e: unknown): string {
  return STATE_WRITE_FAILURES[String((e as NodeJS.ErrnoException).code)] ?? (e as Error).message;
}

/**
 * Creates the state dir, or says why it cannot be. makeDirs makes the missing levels one at a
 * time and refuses a file in the dir's place, so the cause is the real one (Node's recursive
 * mkdir read "no such file or directory" for a read-only file system).
 */
export function makeStateDir(stateDir: string): void {
  try {
    makeDirs(stateDir);
  } catch (e) {
    throw stateDirUnwritable(stateDir, e);
  }
}

/** Said of an enrollment that stopped at the state dir: the token can be given again. */
export const TOKEN_UNSPENT = '; nothing was sent to the gateway, and the token is unused';

/** The state dir, or a file in it, cannot be written. */
export function stateDirUnwritable(stateDir: string, e: unknown, file?: string): ConnectorError {
  return new ConnectorError('ERR_STATE_DIR', `the state dir ${stateDir} cannot be written (${file ? `${file}: ` : ''}${writeFailure(e)})`);
}

/**
 * A file of the state dir. Node's EISDIR carries no path, so a directory in a file's place was
 * reported as "a path names a directory where a file belongs", naming none.
 */
export function readStateDirFile(file: string, what: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EISDIR') throw new ConnectorError('ERR_STATE_UNREADABLE', `${file} is a directory, not ${what}; ${ENROLL_AGAIN}`);
    throw e;
  }
}

/**
 * How a key file is open to group or others, or undefined when only its owner can read and write
 * it (or it is missing). Enrollment writes 0600; a restore from a backup, a `cp` without -p or
 * configuration management leaves 0644, and the connector ran with it without a word.
 */
export function tooOpen(file: string): { mode: string; how: string } | undefined {
  if (process.platform === 'win32') return undefined; // no POSIX modes to check
  const mode = permissionsOf(file);
  if (mode === undefined || (mode & 0o066) === 0) return undefined;
  const what = [mode & 0o044 ? 'read' : '', mode & 0o022 ? 'written' : ''].filter(Boolean).join(' and ');
  const who = [mode & 0o060 ? 'its group' : '', mode & 0o006 ? 'other users' : ''].filter(Boolean).join(' and ');
  return { mode: octalMode(mode), how: `${what} by ${who}` };
}
