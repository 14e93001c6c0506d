/**
 * The gateway's signing keys for identity assertions, kept in stateDir so
 * every restart (and every app) signs with the same published keys.
 *
 * Rotation with overlap: a new key is made when the newest one is older than
 * `rotateAfterMs`. It is published at once but only signs once it has been
 * published for `activateAfterMs`, so apps that cache the JWKS learn it first;
 * the old key stays published for `retainMs` after its successor took over, so
 * assertions signed just before the switch still verify.
 */
import { chmodSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify, type KeyObject } from 'node:crypto';
import type { JWK } from 'jose';
import type { Logger } from 'pino';
import { readStateFile, StateFileError, warnIfExposed, makeDirs } from '../../config/stateFile.js';

export const JWKS_PATH = '/.well-known/drawbridge/jwks.json';
const FILE = 'assertion-keys.json';

export interface KeyTimings {
  rotateAfterMs: number;
  activateAfterMs: number;
  retainMs: number;
}

export const DEFAULT_TIMINGS: KeyTimings = { rotateAfterMs: 7 * 86_400_000, activateAfterMs: 10 * 60_000, retainMs: 86_400_000 };

interface StoredKey {
  kid: string;
  createdAt: number;
  jwk: JWK;
}

export interface SigningKey {
  kid: string;
  /** node:crypto key: signing is synchronous and several times cheaper than WebCrypto's */
  key: KeyObject;
}

const KEY_PROBE = Buffer.from('drawbridge assertion key check');

export class AssertionKeyStore {
  private static readonly byDir = new Map<string, AssertionKeyStore>();

  /** One store per stateDir, shared by every app's stage and the JWKS endpoint. */
  static for(stateDir: string, now: () => number = Date.now, timings: KeyTimings = DEFAULT_TIMINGS): AssertionKeyStore {
    let s = AssertionKeyStore.byDir.get(stateDir);
    if (!s) {
      s = new AssertionKeyStore(stateDir, now, timings);
      AssertionKeyStore.byDir.set(stateDir, s);
    }
    return s;
  }

  static existing(stateDir: string): AssertionKeyStore | undefined {
    return AssertionKeyStore.byDir.get(stateDir);
  }

  private keys: StoredKey[] = [];
  private imported = new Map<string, KeyObject>();
  private loading?: Promise<void>;
  private rotating?: Promise<void>;

  constructor(
    readonly dir: string,
    private readonly now: () => number = Date.now,
    private readonly timings: KeyTimings = DEFAULT_TIMINGS,
  ) {}

  /** where a key file open to others, and a rotated key that could not be saved, are told */
  private log?: Pick<Logger, 'warn' | 'error'>;

  /** Loads the keys (making the first one if there is none); `log` is the first caller's. */
  ready(log?: Pick<Logger, 'warn' | 'error'>): Promise<void> {
    this.log ??= log;
    // A load that failed (a damaged key file) is forgotten: the next reload tries again, after
    // the operator restored or removed the file as told. Kept, it refused every later reload.
    this.loading ??= this.load().catch((e: unknown) => {
      this.loading = undefined;
      throw e;
    });
    return this.loading;
  }

  private async load(): Promise<void> {
    let stored: StoredKey[] = [];
    const file = join(this.dir, FILE);
    // (removing the file makes a new key: apps that verify the assertion fetch the JWKS again)
    const remedy = 'restore it from a backup, or remove it to make a new signing key';
    const text = readStateFile(file, remedy);
    if (text !== undefined) {
      try {
        const parsed = JSON.parse(text) as { keys?: StoredKey[] };
        stored = (parsed.keys ?? []).filter((k) => k && typeof k.kid === 'string' && typeof k.createdAt === 'number' && k.jwk?.kty === 'EC' && typeof k.jwk.d === 'string');
      } catch (e) {
        throw new StateFileError('ERR_STATE_FILE', `${file} is not readable JSON (${(e as Error).message}): ${remedy}`, { file });
      }
    }
    if (this.log) warnIfExposed(join(this.dir, FILE), this.log);
    this.keys = stored.sort((a, b) => a.createdAt - b.createdAt);
    for (const k of this.keys) {
      const key = createPrivateKey({ key: k.jwk as never, format: 'jwk' });
      // The JWKS publishes x and y as stored; signing uses d. A file whose two halves differ
      // (edited, or pieced together from backups) signed assertions no app could verify.
      // (Node keeps x and y as given on import: a signature made with d is what tells)
      const published = createPublicKey({ key: { kty: 'EC', crv: k.jwk.crv, x: k.jwk.x, y: k.jwk.y } as never, format: 'jwk' });
      if (!verify('sha256', KEY_PROBE, published, sign('sha256', KEY_PROBE, key))) throw new StateFileError('ERR_STATE_FILE', `${file}: the private key of ${k.kid} does not match its public key: ${remedy}`, { file });
      this.imported.set(k.kid, key);
    }
    if (!this.keys.length) await this.addKey();
    else await this.maintain();
  }

  private async addKey(): Promise<void> {
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const jwk = privateKey.export({ format: 'jwk' }) as JWK;
    const createdAt = this.now();
    const kid = `${new Date(createdAt).toISOString().slice(0, 10)}-${Math.random().toString(36).slice(2, 10)}`;
    this.keys.push({ kid, createdAt, jwk });
    this.imported.set(kid, privateKey);
    this.save();
  }

  private save(): void {
    makeDirs(this.dir, 0o777);
    const file = join(this.dir, FILE);
    const tmp = `${file}.${process.pid}.tmp`;
    // Private keys: readable by the gateway's user only.
    writeFileSync(tmp, JSON.stringify({ keys: this.keys }, null, 2), { mode: 0o600 });
    chmodSync(tmp, 0o600);
    renameSync(tmp, file);
  }

  /** Rotates and retires as the clock says; cheap when nothing is due. */
  async maintain(): Promise<void> {
    const t = this.now();
    const newest = this.keys[this.keys.length - 1];
    if (!newest || t - newest.createdAt >= this.timings.rotateAfterMs) await this.addKey();
    const active = this.activeIndex(t);
    // Keys older than the active one stay while their successor has been signing for less than retainMs.
    const keep = this.keys.filter((k, i) => i >= active || t - this.activationOf(this.keys[i + 1]!) < this.timings.retainMs);
    if (keep.length !== this.keys.length) {
      for (const k of this.keys) if (!keep.includes(k)) this.imported.delete(k.kid);
      this.keys = keep;
      this.save();
    }
  }

  private activationOf(k: StoredKey): number {
    return k.createdAt + this.timings.activateAfterMs;
  }

  private activeIndex(t: number): number {
    // The newest key that has been published long enough; the oldest if none has (first start).
    for (let i = this.keys.length - 1; i > 0; i--) if (t >= this.activationOf(this.keys[i]!)) return i;
    return 0;
  }

  /** The key to sign with now. Starts a rotation in the background when one is due. */
  signingKey(): SigningKey {
    const t = this.now();
    const newest = this.keys[this.keys.length - 1];
    if (!newest) throw new Error('assertion keys are not loaded');
    const retireDue = this.keys.length > 1 && t - this.activationOf(this.keys[1]!) >= this.timings.retainMs;
    if (!this.rotating && (t - newest.createdAt >= this.timings.rotateAfterMs || retireDue)) {
      this.rotating = this.maintain().finally(() => (this.rotating = undefined));
      // Nobody awaits this: a key made but not saved (a full disk) signs from memory and is gone at
      // the next restart, when apps that cached it stop verifying what it signed until they re-fetch.
      this.rotating.catch((e) =>
        this.log?.error({ file: join(this.dir, FILE), reason: (e as Error).message }, `could not save the rotated assertion keys to ${join(this.dir, FILE)}: the new key is used from memory and lost at the next restart`),
      );
    }
    const k = this.keys[this.activeIndex(t)]!;
    return { kid: k.kid, key: this.imported.get(k.kid)! };
  }

  /** The public keys to publish (every key still kept, including the next one). */
  jwks(): { keys: JWK[] } {
    return {
      keys: this.keys.map((k) => {
        const { kty, crv, x, y } = k.jwk;
        return { kty, crv, x, y, kid: k.kid, alg: 'ES256', use: 'sig' };
      }),
    };
  }
}
