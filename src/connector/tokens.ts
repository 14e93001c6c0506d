/**
 * One-time, expiring enrollment tokens. A token is signed with a key kept in
 * the gateway's stateDir, so `drawbridge token create` can mint one while the
 * gateway runs without talking to it; the gateway records every used token in
 * stateDir, so a token is refused the second time, also after a restart.
 *
 * Format: dbt1.<base64url JSON {g: group, e: expiry ms, n: nonce, p: CA pin}>.<base64url HMAC-SHA256>
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { appendFileSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { readStateFile, StateFileError, makeDirs } from '../config/stateFile.js';
import { EnrollmentError } from './ca.js';

export interface TokenPayload {
  /** connector group */
  g: string;
  /** expiry, ms since epoch */
  e: number;
  /** nonce: identifies the token in the used list */
  n: string;
  /** sha256 pin of the connector CA certificate */
  p: string;
}

const PREFIX = 'dbt1';

/** the code of an enrollment refused because the used-token list could not be read or written */
export const NOT_RECORDED = 'ERR_ENROLLMENT_NOT_RECORDED';

function keyOf(stateDir: string): Buffer {
  const dir = join(stateDir, 'connectors');
  makeDirs(dir);
  const file = join(dir, 'token.key');
  try {
    writeFileSync(file, randomBytes(32).toString('base64'), { mode: 0o600, flag: 'wx' });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
  }
  const remedy = 'remove it to make a new one (enrollment tokens issued and not yet used stop working)';
  const text = readStateFile(file, remedy);
  const key = Buffer.from((text ?? '').trim(), 'base64');
  if (key.length < 32) throw new StateFileError('ERR_TOKEN_KEY_DAMAGED', text === undefined ? `${file} is a link to nothing: restore it, or ${remedy}` : `${file} is damaged (not a base64 key of 32 bytes): ${remedy}`, { file });
  return key;
}

export function createToken(stateDir: string, group: string, ttlMs: number, pin: string, now = Date.now()): string {
  const payload: TokenPayload = { g: group, e: now + ttlMs, n: randomBytes(16).toString('base64url'), p: pin };
  const body = Buffer.from(JSON.stringify(payload)).toString('base64url');
  const mac = createHmac('sha256', keyOf(stateDir)).update(`${PREFIX}.${body}`).digest('base64url');
  return `${PREFIX}.${body}.${mac}`;
}

/** Reads a token's payload without checking it (the connector needs the pin). */
export function decodeToken(token: string): TokenPayload {
  const parts = token.trim().split('.');
  if (parts.length !== 3 || parts[0] !== PREFIX) throw new EnrollmentError('ERR_TOKEN_MALFORMED', 'not a Drawbridge enrollment token');
  try {
    const p = JSON.parse(Buffer.from(parts[1], 'base64url').toString('utf8')) as TokenPayload;
    if (typeof p.g !== 'string' || typeof p.e !== 'number' || typeof p.n !== 'string' || typeof p.p !== 'string') throw new Error('fields');
    return p;
  } catch {
    throw new EnrollmentError('ERR_TOKEN_MALFORMED', 'the enrollment token is damaged');
  }
}

export class TokenStore {
  private readonly usedFile: string;

  constructor(private readonly stateDir: string) {
    keyOf(stateDir); // a damaged key stops the start, naming the file
    this.usedFile = join(stateDir, 'connectors', 'used-tokens.jsonl');
  }

  /** Checks signature, expiry and one-time use; marks the token used. Throws EnrollmentError. */
  consume(token: string, now = Date.now()): TokenPayload {
    const payload = this.check(token, now);
    const line = JSON.stringify({ n: payload.n, e: payload.e, at: now }) + '\n';
    // A used token that has expired since is refused for its expiry alone: its line can go.
    const entries = this.entries();
    const live = entries.filter((u) => u.e > now);
    try {
      if (live.length === entries.length) appendFileSync(this.usedFile, line, { mode: 0o600 });
      else {
        const tmp = `${this.usedFile}.tmp`;
        writeFileSync(tmp, live.map((u) => JSON.stringify(u) + '\n').join('') + line, { mode: 0o600 });
        renameSync(tmp, this.usedFile);
      }
    } catch (e) {
      throw this.notRecorded(e);
    }
    return payload;
  }

  /** Checks signature, expiry and one-time use without using the token up. */
  check(token: string, now = Date.now()): TokenPayload {
    const payload = decodeToken(token);
    const [prefix, body, mac] = token.trim().split('.');
    // The key is read at each check, not once at start: an operator who removes it to void a
    // leaked token (as the remedy says) voids it at once, and tokens made with the new key,
    // which `token create` writes, work without a restart.
    const want = createHmac('sha256', keyOf(this.stateDir)).update(`${prefix}.${body}`).digest();
    const got = Buffer.from(mac, 'base64url');
    if (got.length !== want.length || !timingSafeEqual(got, want)) throw new EnrollmentError('ERR_TOKEN_SIGNATURE', 'the enrollment token was not issued by this gateway');
    if (payload.e <= now) throw new EnrollmentError('ERR_TOKEN_EXPIRED', `the enrollment token expired at ${new Date(payload.e).toISOString()}`);
    // Synchronous read-check-append: nothing else in this process can interleave.
    if (this.entries().some((u) => u.n === payload.n)) throw new EnrollmentError('ERR_TOKEN_USED', 'the enrollment token was already used');
    return payload;
  }

  /**
   * The used list cannot be read or written (a full disk, a directory in its place): the
   * gateway's fault, not the token's. The token stays unused and no certificate goes out;
   * the connector is told to retry, the log names the file.
   */
  private notRecorded(e: unknown): EnrollmentError {
    const reason = (e as NodeJS.ErrnoException).code === 'EISDIR' ? `${this.usedFile} is a directory, not a file` : (e as Error).message;
    return new EnrollmentError(NOT_RECORDED, 'the gateway could not record the enrollment; retry later', { file: this.usedFile, reason });
  }

  private entries(): { n: string; e: number; at?: number }[] {
    let text = '';
    try {
      text = readFileSync(this.usedFile, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw this.notRecorded(e);
    }
    const out: { n: string; e: number; at?: number }[] = [];
    for (const line of text.split('\n')) {
      if (!line) continue;
      try {
        const u = JSON.parse(line) as { n: string; e: number; at?: number };
        // an entry without a valid expiry is kept for good: pruning must never forget a live token
        out.push({ n: String(u.n), e: typeof u.e === 'number' ? u.e : Infinity, at: u.at });
      } catch {
        /* a torn last line: the token it named was never accepted */
      }
    }
    return out;
  }
}
