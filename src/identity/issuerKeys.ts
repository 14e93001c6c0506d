/**
 * The identity provider's signing keys (its JWKS), for bearer tokens and ID tokens.
 *
 * Not jose's createRemoteJWKSet, which dropped the keys it held once they were ten minutes old
 * and a refresh failed (every token refused for as long as the provider's key endpoint was
 * down, though no key had changed), counted a key endpoint answering 500 as a bad token, and
 * let failing fetches go out once per request. Here:
 * - keys are fetched again once KEYS_MAX_AGE_MS old (the request waits, as a removed key must
 *   stop working), and the ones held stay in use while a refresh fails (logged);
 * - an unknown `kid` fetches again at most once per cooldown (it may be a new key);
 * - while fetching fails, it is tried again at most once per cooldown, and verifying in
 *   between fails at once as KeysUnavailable (an outage: 503, not a bad token);
 * - a key that cannot verify with any pinned algorithm (malformed, RSA under 2048 bits, a
 *   kty no pinned algorithm uses) is left out, and a set with no usable key left is a failed
 *   fetch: it was stored as good for ten minutes, every token failing on it with no fetch
 *   again, however soon the provider mended its keys;
 * - the set is kept per gateway (stateDir) and key URL, so a reload keeps what was fetched:
 *   an unrelated reload during a provider outage made tokens fail that had verified a second
 *   earlier.
 */
import { SIGNATURE_ALGORITHMS } from '../config/schema.js';
import { createLocalJWKSet, errors, flattenedVerify, type JSONWebKeySet, type JWK, type JWTVerifyGetKey } from 'jose';
import type { Logger } from 'pino';
import { requestText } from './providerFetch.js';

/** The keys could not be had: an outage of the provider, never a verdict on a token. */
export class KeysUnavailable extends Error {
  readonly code = 'ERR_JWKS_UNAVAILABLE';
}

export const KEYS_MAX_AGE_MS = 10 * 60_000;

export type IssuerKeyGetter = JWTVerifyGetKey & {
  /** the key set in use (a new object after each refresh that succeeded) */
  jwks(): JSONWebKeySet | undefined;
  /**
   * The getter for ID tokens at the sign-in callback, which fetches whatever the cooldown (an
   * unknown kid, keys not had yet): a sign-in right after the provider rotated its key, or came
   * back, failed. Only the provider can hand the gateway an ID token there (the code exchange
   * comes first), so no client can make it fetch at will.
   */
  forSignIn: JWTVerifyGetKey;
};

class IssuerKeys {
  private set?: JSONWebKeySet;
  private local?: ReturnType<typeof createLocalJWKSet>;
  private fetchedAt = 0;
  private attemptAt = -Infinity;
  private lastError?: KeysUnavailable;
  private inflight?: Promise<void>;

  constructor(
    private readonly uri: string,
    private readonly cooldownMs: number,
    private readonly log?: Logger,
    private readonly maxAgeMs = KEYS_MAX_AGE_MS,
    private readonly algorithms: readonly string[] = SIGNATURE_ALGORITHMS,
  ) {}

  private refresh(): Promise<void> {
    this.inflight ??= this.fetchKeys().finally(() => (this.inflight = undefined));
    return this.inflight;
  }

  private async fetchKeys(): Promise<void> {
    this.attemptAt = Date.now();
    try {
      const body = JSON.parse(await getText(this.uri)) as JSONWebKeySet;
      if (!body || !Array.isArray(body.keys)) throw new Error('the key set has no keys list');
      const usable: JWK[] = [];
      const refused: string[] = [];
      for (const key of body.keys) {
        const reason = await unusableReason(key, this.algorithms);
        if (reason === undefined) usable.push(key);
        else if (reason) {
          refused.push(`kid ${String(key.kid)}: ${reason}`);
          this.log?.warn({ kid: key.kid, reason }, 'the identity provider publishes a key the gateway cannot use: it is left out');
        }
      }
      if (!usable.length) throw new Error(`the key set holds no key usable with ${this.algorithms.join(', ')}${refused.length ? `: ${refused.join('; ')}` : ''}`);
      const set = { ...body, keys: usable };
      this.local = createLocalJWKSet(set);
      this.set = set;
      this.fetchedAt = Date.now();
      this.lastError = undefined;
    } catch (e) {
      this.lastError = e instanceof KeysUnavailable ? e : new KeysUnavailable(`the provider's keys could not be fetched from ${this.uri}: ${(e as Error).message}`);
      if (this.local) this.log?.warn({ reason: this.lastError.message, keysFetchedAt: new Date(this.fetchedAt).toISOString() }, 'refreshing the identity provider keys failed: the keys held stay in use');
      throw this.lastError;
    }
  }

  private mayFetch(): boolean {
    return Date.now() - this.attemptAt >= this.cooldownMs;
  }

  async getKey(header: Parameters<JWTVerifyGetKey>[0], token: Parameters<JWTVerifyGetKey>[1], eager: boolean): Promise<Awaited<ReturnType<JWTVerifyGetKey>>> {
    if (!this.local) {
      if (!eager && !this.mayFetch() && this.lastError) throw this.lastError;
      await this.refresh();
    } else if (Date.now() - this.fetchedAt > this.maxAgeMs && (this.inflight || this.mayFetch())) {
      // Waited for, as jose did: verified against the old keys meanwhile, a key the provider
      // removed went on working. Only a refresh that fails leaves the held keys in use.
      await this.refresh().catch(() => undefined);
    }
    try {
      return await this.local!(header, token);
    } catch (e) {
      if (!(e instanceof errors.JWKSNoMatchingKey)) throw e;
      // a key the provider may have started signing with since the last fetch: the refresh
      // under way, or one now if the cooldown allows (a refresh that fails is an outage)
      if (this.inflight) await this.inflight;
      else if (eager || this.mayFetch()) await this.refresh();
      else throw e;
      return await this.local!(header, token);
    }
  }

  getter(): IssuerKeyGetter {
    const get = ((header, token) => this.getKey(header, token, false)) as IssuerKeyGetter;
    get.jwks = () => this.set;
    get.forSignIn = (header, token) => this.getKey(header, token, true);
    return get;
  }
}

/**
 * Why jose could not verify a token with `key` under any of `algorithms`: its message when it
 * would throw on the key itself (malformed, too short), '' when no algorithm fits the key at all
 * (an encryption key, another kty or alg: not a fault, left out silently), undefined when usable.
 * The check is jose's own: a signature over nothing, through a set of this key alone, must fail
 * as a wrong signature and on nothing earlier.
 */
async function unusableReason(key: unknown, algorithms: readonly string[]): Promise<string | undefined> {
  let reason = '';
  for (const alg of algorithms) {
    const kid = (key as { kid?: unknown })?.kid;
    try {
      const header = Buffer.from(JSON.stringify({ alg, ...(typeof kid === 'string' ? { kid } : {}) })).toString('base64url');
      await flattenedVerify({ protected: header, payload: '', signature: '' }, createLocalJWKSet({ keys: [key as JWK] }));
    } catch (e) {
      if (e instanceof errors.JWSSignatureVerificationFailed) return undefined;
      if (!(e instanceof errors.JWKSNoMatchingKey)) reason ||= (e as Error).message;
    }
  }
  return reason;
}

/** A key set of its own (not shared): tests, and what-if's lookalikes. */
export function newIssuerKeys(uri: string, cooldownMs = 30_000, log?: Logger, maxAgeMs = KEYS_MAX_AGE_MS, algorithms = SIGNATURE_ALGORITHMS): IssuerKeyGetter {
  return new IssuerKeys(uri, cooldownMs, log, maxAgeMs, algorithms).getter();
}

const kept = new Map<string, IssuerKeys>();

/**
 * The provider's keys at `uri` for the gateway whose state is in `stateDir`, shared by every
 * config generation of it with the same pinned `algorithms` (the keys kept are those usable
 * with them: a reload that pins others fetches afresh). `cooldownMs`: how often an unknown
 * kid, or a failing fetch, may fetch again.
 */
export function issuerKeys(stateDir: string, uri: string, algorithms: readonly string[], log?: Logger, cooldownMs = 30_000): IssuerKeyGetter {
  const k = `${stateDir}\n${uri}\n${algorithms.join(' ')}`;
  let keys = kept.get(k);
  if (!keys) {
    keys = new IssuerKeys(uri, cooldownMs, log, KEYS_MAX_AGE_MS, algorithms);
    kept.set(k, keys);
  }
  return keys.getter();
}

/** The key set at `uri` as text (providerFetch.ts: 5 s in all, body included, and 1 MiB). */
async function getText(uri: string): Promise<string> {
  const answer = await requestText(uri, { headers: { accept: 'application/json' } });
  if (answer.status !== 200) throw new Error(`the key set answered ${answer.status}`);
  return answer.body.toString('utf8');
}
