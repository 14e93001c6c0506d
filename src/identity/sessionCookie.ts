/**
 * Encrypted cookies (jose JWE, dir + A256GCM). One key per secret, derived
 * with HKDF and a purpose label, so the session and login cookies can never
 * be swapped for each other. The first secret encrypts; every secret
 * decrypts (the one the cookie's kid names), which is how `session.secrets`
 * rotates without signing anyone out.
 */
import { createHash, hkdfSync } from 'node:crypto';
import { deflateRawSync, inflateRawSync } from 'node:zlib';
import { CompactEncrypt, compactDecrypt } from 'jose';

export type CookiePurpose = 'session' | 'login' | 'handoff';

interface Key {
  kid: string;
  key: Uint8Array;
}

export class CookieSealer {
  private readonly keys: readonly Key[];

  constructor(secrets: readonly string[], purpose: CookiePurpose) {
    if (!secrets.length) throw new Error('session.secrets needs at least one secret');
    this.keys = secrets.map((s) => {
      const key = new Uint8Array(hkdfSync('sha256', Buffer.from(s, 'utf8'), Buffer.from('drawbridge'), Buffer.from(`drawbridge ${purpose} cookie v1`), 32));
      // The kid only picks the key quickly; it reveals nothing about the secret.
      const kid = createHash('sha256').update(key).digest('base64url').slice(0, 8);
      return { kid, key };
    });
  }

  /** JSON -> deflate -> JWE compact. Deflate keeps long group lists small. */
  async seal(payload: object): Promise<string> {
    const { kid, key } = this.keys[0]!;
    const plain = deflateRawSync(Buffer.from(JSON.stringify(payload), 'utf8'));
    return new CompactEncrypt(plain).setProtectedHeader({ alg: 'dir', enc: 'A256GCM', kid }).encrypt(key);
  }

  /**
   * The keys that may open `token`, without decrypting: none for a value that is not a canonical
   * JWE naming one of this sealer's key ids. Every cookie this gateway seals names its key, and a
   * key decrypts nothing another key sealed, so a removed secret's cookie or a made-up one costs
   * no decryption, and is not counted among the cookies of one name that are tried.
   */
  keysFor(token: string | undefined): readonly Key[] {
    if (!token || token.length > 8192) return [];
    const parts = token.split('.');
    // Only the canonical encoding: base64url decoders ignore stray bits, and a
    // cookie that can be changed and still work is not what "tampered" means to anyone.
    if (parts.length !== 5 || parts.some((p) => Buffer.from(p, 'base64url').toString('base64url') !== p)) return [];
    let kid: unknown;
    try {
      kid = JSON.parse(Buffer.from(token.slice(0, token.indexOf('.')), 'base64url').toString('utf8')).kid;
    } catch {
      return [];
    }
    return this.keys.filter((k) => k.kid === kid);
  }

  /** undefined for anything that does not decrypt to a JSON object: tampered, truncated, foreign. */
  async open<T extends object>(token: string | undefined): Promise<T | undefined> {
    for (const { key } of this.keysFor(token)) {
      try {
        const { plaintext } = await compactDecrypt(token!, key, { keyManagementAlgorithms: ['dir'], contentEncryptionAlgorithms: ['A256GCM'] });
        const value = JSON.parse(inflateRawSync(plaintext, { maxOutputLength: 1 << 20 }).toString('utf8'));
        return value && typeof value === 'object' && !Array.isArray(value) ? (value as T) : undefined;
      } catch {
        /* try the next key */
      }
    }
    return undefined;
  }
}
