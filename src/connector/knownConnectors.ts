/**
 * The connector listing kept in stateDir (`connectors/known.json`), so that a gateway restart does
 * not forget the connectors that went away. Entra application proxy lists a connector that
 * stopped calling in as inactive for 10 days; kept only in memory, a restart (an upgrade, a
 * crash) emptied the list, and an operator asking after it "which connector did we lose?" found
 * nothing.
 *
 * Only what the listing shows is kept: id, group, version, address, transport, last seen,
 * certificate expiry. The file is written whole (a temporary file renamed over it), at most once
 * a second after a connector comes or goes, once a minute while connectors are live (their last
 * seen moves), and when the gateway stops. A file that cannot be read or parsed is logged and set
 * aside; the listing starts empty, and the gateway runs as before: the file is a record, never a
 * reason not to serve.
 */
import { readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import type { Logger } from 'pino';
import { makeDirs } from '../config/stateFile.js';
import { throttledLog } from '../observability/throttledLog.js';
import { INACTIVE_KEPT_MAX, INACTIVE_KEPT_MS, type ConnectorSummary } from './registry.js';

const FORMAT = 1;
/** after a connector comes or goes */
const SAVE_AFTER_CHANGE_MS = 1000;
/** while connectors are live: their last seen moves with every ping */
const SAVE_EVERY_MS = 60_000;
const MAX_FILE_BYTES = 8 << 20;
/** no field of a real summary comes near this: longer means the file is not ours */
const MAX_FIELD = 512;

type Kept = Pick<ConnectorSummary, 'id' | 'group' | 'version' | 'address' | 'transport' | 'lastSeen' | 'certExpiry'>;

export class KnownConnectors {
  private timer?: NodeJS.Timeout;
  private lastSavedAt = 0;
  private lastSaved = '';
  private readonly saveFailed: (fields: Record<string, unknown>) => void;

  constructor(
    readonly file: string,
    private readonly log: Logger,
    /** what to write: the listing as it is now */
    private readonly current: () => ConnectorSummary[],
  ) {
    this.saveFailed = throttledLog(log, 'the connector listing could not be saved in stateDir; a restart will not list the connectors that went away', 3600_000);
  }

  /** The connectors of the file last seen less than 10 days ago, as inactive; [] without a usable file. */
  load(now = Date.now()): ConnectorSummary[] {
    let text: string;
    try {
      // 5,000 rows are about 1.5 MB: a larger file is not one this gateway wrote
      if (statSync(this.file).size > MAX_FILE_BYTES) {
        this.setAside(`larger than ${MAX_FILE_BYTES >> 20} MiB`);
        return [];
      }
      text = readFileSync(this.file, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') this.log.warn({ file: this.file, reason: (e as Error).message }, 'the saved connector listing could not be read; connectors that went away before this start are not listed');
      return [];
    }
    let entries: unknown;
    try {
      const doc = JSON.parse(text) as { format?: unknown; connectors?: unknown };
      if (doc?.format !== FORMAT || !Array.isArray(doc.connectors)) throw new Error(`not a connector listing of format ${FORMAT}`);
      entries = doc.connectors;
    } catch (e) {
      this.setAside((e as Error).message);
      return [];
    }
    const out: ConnectorSummary[] = [];
    let skipped = 0;
    for (const e of entries as unknown[]) {
      const k = keptOf(e);
      if (!k) {
        skipped++;
        continue;
      }
      if (now - Date.parse(k.lastSeen) >= INACTIVE_KEPT_MS) continue;
      out.push({ ...k, channels: 0, inflight: 0, draining: false, active: false });
    }
    if (skipped) this.log.warn({ file: this.file, skipped }, 'entries of the saved connector listing that are not connectors were left out');
    // the most recently seen are kept when there are more than the listing holds
    return out.sort((a, b) => Date.parse(a.lastSeen) - Date.parse(b.lastSeen)).slice(-INACTIVE_KEPT_MAX);
  }

  /** A connector came or went: saved within a second. */
  changed(): void {
    if (this.timer) return;
    this.timer = setTimeout(() => this.saveNow(), SAVE_AFTER_CHANGE_MS).unref();
  }

  /** Called on every ping round: saves when a minute has passed since the last save. */
  tick(now = Date.now()): void {
    if (now - this.lastSavedAt >= SAVE_EVERY_MS) this.changed();
  }

  saveNow(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    this.lastSavedAt = Date.now();
    const connectors: Kept[] = this.current().map(({ id, group, version, address, transport, lastSeen, certExpiry }) => ({ id, group, version, address, transport, lastSeen, certExpiry }));
    const text = JSON.stringify({ format: FORMAT, connectors }, null, 1) + '\n';
    if (text === this.lastSaved) return;
    try {
      makeDirs(dirname(this.file));
      const tmp = `${this.file}.tmp`;
      writeFileSync(tmp, text, { mode: 0o600 });
      renameSync(tmp, this.file);
      this.lastSaved = text;
    } catch (e) {
      this.saveFailed({ file: this.file, reason: (e as Error).message });
    }
  }

  /** An unreadable file is kept beside, for whoever wants to look, and not read again. */
  private setAside(reason: string): void {
    const aside = `${this.file}.unreadable`;
    try {
      renameSync(this.file, aside);
    } catch {
      /* left where it is: the next save replaces it */
    }
    this.log.warn({ file: this.file, setAsideAs: aside, reason }, 'the saved connector listing is not valid JSON of this gateway; connectors that went away before this start are not listed');
  }
}

function keptOf(e: unknown): Kept | undefined {
  if (e === null || typeof e !== 'object') return undefined;
  const o = e as Record<string, unknown>;
  const text = (k: string) => typeof o[k] === 'string' && (o[k] as string).length > 0 && (o[k] as string).length <= MAX_FIELD;
  if (!['id', 'group', 'version', 'address', 'lastSeen', 'certExpiry'].every(text)) return undefined;
  if (o.transport !== 'h2' && o.transport !== 'websocket') return undefined;
  if (Number.isNaN(Date.parse(o.lastSeen as string)) || Number.isNaN(Date.parse(o.certExpiry as string))) return undefined;
  return { id: o.id, group: o.group, version: o.version, address: o.address, transport: o.transport, lastSeen: o.lastSeen, certExpiry: o.certExpiry } as Kept;
}
