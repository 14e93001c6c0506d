/**
 * What the gateway worked out from a long credential it is sent again and again: a bearer token
 * verified (bearer.ts), a session cookie decrypted (session.ts). An entry lives until its own
 * time and the cache holds at most `max` (the oldest written goes first).
 *
 * An entry is found by the credential's last 48 characters, not by its whole text. A Map hashes
 * the whole of a key it is handed, and a credential arrives as a fresh string on every request:
 * for an 800-character RS256 token that hash was the largest part of a cache hit (about 9,000
 * instructions a request, callgrind). The tail is the signature's (a token) or the authentication
 * tag's (a sealed cookie), which differ from one credential to the next, and a hit is confirmed
 * against the whole text: a credential that shares another's tail is a miss, worked out in full.
 */
export class CredentialCache<V> {
  private readonly entries = new Map<string, { text: string; value: V; until: number }>();

  constructor(private readonly max: number) {}

  /** the value for exactly this credential while now < its until; an expired one is dropped */
  get(text: string, now: number): V | undefined {
    const key = tailOf(text);
    const e = this.entries.get(key);
    if (!e || e.text !== text) return undefined;
    if (now < e.until) return e.value;
    this.entries.delete(key);
    return undefined;
  }

  /** whether this credential was worked out before (expired or not): it is one of ours */
  has(text: string): boolean {
    return this.entries.get(tailOf(text))?.text === text;
  }

  set(text: string, value: V, until: number): void {
    if (this.entries.size >= this.max) this.entries.delete(this.entries.keys().next().value!);
    this.entries.set(tailOf(text), { text, value, until });
  }

  clear(): void {
    this.entries.clear();
  }
}

const tailOf = (text: string): string => (text.length > 96 ? text.slice(-48) : text);
