/**
 * Where the embedded provider keeps its sessions, sign-in interactions, codes, grants and tokens:
 * in memory, one store per provider, each entry gone when its lifetime ends. FOR THE DEMO AND
 * TESTS ONLY, as the provider itself: a restart forgets every sign-in.
 *
 * oidc-provider's own memory store is one list of about a thousand entries shared by every
 * provider in the process, whose entries never expire (they are only pushed out by newer ones),
 * and on each start it warns that it must be replaced before production: the first line
 * `npm start` printed, above the demo's own banner, which already says what this provider is for.
 */

/** oidc-provider's adapter contract (its docs, "Adapter"), the part the embedded provider uses. */
export interface ProviderAdapter {
  upsert(id: string, payload: StoredPayload, expiresIn?: number): Promise<void>;
  find(id: string): Promise<StoredPayload | undefined>;
  findByUid(uid: string): Promise<StoredPayload | undefined>;
  findByUserCode(userCode: string): Promise<StoredPayload | undefined>;
  consume(id: string): Promise<void>;
  destroy(id: string): Promise<void>;
  revokeByGrantId(grantId: string): Promise<void>;
}

export interface StoredPayload {
  uid?: string;
  grantId?: string;
  userCode?: string;
  consumed?: number;
  [claim: string]: unknown;
}

interface Entry {
  payload: StoredPayload;
  /** ms since the epoch; Infinity for an entry stored without a lifetime */
  expiresAt: number;
  /** the second keys it is found by: a session by its uid, a device code by its user code */
  aliases: string[];
  /** the grant that issued it, for revokeByGrantId */
  grantId?: string;
}

/** The models revoked with their grant (oidc-provider's revokeByGrantId): what a grant issued. */
const ISSUED_UNDER_A_GRANT = new Set(['AccessToken', 'AuthorizationCode', 'RefreshToken', 'DeviceCode', 'BackchannelAuthenticationRequest']);

/** What one store holds at most: a demo taken for a load test drops its oldest entries, not the host's memory. */
export const MEMORY_STORE_MAX_ENTRIES = 100_000;
/**
 * Every this many writes, entries past their end are dropped: one nobody reads again (a spent
 * code, an interaction left half-way) would otherwise stay until the bound pushed it out.
 */
const SWEEP_EVERY_WRITES = 1000;

/**
 * A store for one provider: pass it as the Provider's `adapter`. oidc-provider calls it with each
 * model's name (Session, Interaction, AuthorizationCode, Grant, AccessToken...).
 */
export function memoryStore(maxEntries = MEMORY_STORE_MAX_ENTRIES, now: () => number = Date.now): (model: string) => ProviderAdapter {
  const entries = new Map<string, Entry>();
  const aliases = new Map<string, string>();
  const byGrant = new Map<string, Set<string>>();
  let writes = 0;

  const live = (key: string): StoredPayload | undefined => {
    const entry = entries.get(key);
    if (!entry) return undefined;
    if (entry.expiresAt > now()) return entry.payload;
    drop(key);
    return undefined;
  };
  const drop = (key: string): void => {
    const entry = entries.get(key);
    if (!entry) return;
    entries.delete(key);
    for (const alias of entry.aliases) if (aliases.get(alias) === key) aliases.delete(alias);
    const issued = entry.grantId === undefined ? undefined : byGrant.get(entry.grantId);
    if (issued?.delete(key) && issued.size === 0) byGrant.delete(entry.grantId!);
  };
  const byAlias = (alias: string): StoredPayload | undefined => {
    const key = aliases.get(alias);
    return key === undefined ? undefined : live(key);
  };

  return (model: string): ProviderAdapter => {
    const keyOf = (id: string) => `${model}:${id}`;
    return {
      async upsert(id, payload, expiresIn) {
        const key = keyOf(id);
        drop(key);
        const entry: Entry = { payload, expiresAt: expiresIn === undefined ? Infinity : now() + expiresIn * 1000, aliases: [] };
        if (model === 'Session' && payload.uid !== undefined) entry.aliases.push(`uid:${payload.uid}`);
        if (payload.userCode !== undefined) entry.aliases.push(`userCode:${payload.userCode}`);
        for (const alias of entry.aliases) aliases.set(alias, key);
        if (payload.grantId !== undefined && ISSUED_UNDER_A_GRANT.has(model)) {
          entry.grantId = payload.grantId;
          let keys = byGrant.get(payload.grantId);
          if (!keys) byGrant.set(payload.grantId, (keys = new Set()));
          keys.add(key);
        }
        entries.set(key, entry);
        if (++writes % SWEEP_EVERY_WRITES === 0) for (const [k, e] of entries) if (e.expiresAt <= now()) drop(k);
        // Map keeps insertion order, and a rewrite re-inserts: the first key is the least recently written.
        while (entries.size > maxEntries) drop(entries.keys().next().value as string);
      },
      async find(id) {
        return live(keyOf(id));
      },
      async findByUid(uid) {
        return byAlias(`uid:${uid}`);
      },
      async findByUserCode(userCode) {
        return byAlias(`userCode:${userCode}`);
      },
      async consume(id) {
        const payload = live(keyOf(id));
        if (payload) payload.consumed = Math.floor(now() / 1000);
      },
      async destroy(id) {
        drop(keyOf(id));
      },
      async revokeByGrantId(grantId) {
        for (const key of [...(byGrant.get(grantId) ?? [])]) drop(key);
        byGrant.delete(grantId);
      },
    };
  };
}
