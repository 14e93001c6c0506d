/**
 * Watches the config file, its folder and every file it refers to. Editors
 * that save by rename and Kubernetes' ..data symlink swaps both show up as
 * events in the folder, so the folder is what is watched; the content hash
 * decides whether anything really changed. Only events on those files, or on
 * Kubernetes' `..` entries, are taken for a save: the folder may also hold the
 * stateDir (its lock is touched every 10 s) or the gateway's own log, and each
 * of their writes was counted as an `unchanged` reload and read every file again.
 */
import { createHash } from 'node:crypto';
import { basename, dirname, resolve } from 'node:path';
import chokidar, { type FSWatcher } from 'chokidar';
import { snapshotOf, type FileSnapshot } from './regularFile.js';

/** Far above any file a config refers to (the loader refuses ${file:} values over 1 MiB and PEM files over 4 MiB). */
const MAX_HASHED_BYTES = 64 * 1024 * 1024;

export interface WatchOptions {
  debounceMs?: number;
  /** a slow safety poll in case an event is lost (network file systems) */
  pollMs?: number;
  /** called by the poll (default: onChange); the poll is no event, and may find nothing new */
  onPoll?: () => void;
}

export class ConfigWatcher {
  private watcher?: FSWatcher;
  private timer?: NodeJS.Timeout;
  private poll?: NodeJS.Timeout;
  private watched = new Set<string>();
  /** the config and the files it refers to, resolved */
  private files = new Set<string>();

  constructor(
    private readonly file: string,
    private readonly onChange: () => void,
    private readonly opts: WatchOptions = {},
  ) {}

  /** Resolves once the initial scan is done: changes made before that would be missed. */
  start(referenced: readonly string[]): Promise<void> {
    // chokidar also opens a watch on each file of a watched folder, and stats it on every write
    // to it: a config in a folder of thousands of files used an inotify watch each, and the
    // gateway's own log beside it was stat'ed at every line. Only the folders themselves and
    // the files that concern the config are looked at; the folder's watch still sees a save.
    this.watcher = chokidar.watch([], { ignoreInitial: true, followSymlinks: true, depth: 0, awaitWriteFinish: false, ignored: (path) => !this.watched.has(resolve(path)) && !this.concerns(path) });
    this.watcher.on('all', (_event, path) => {
      if (this.concerns(path)) this.kick();
    });
    this.watcher.on('error', () => this.kick());
    const ready = new Promise<void>((r) => this.watcher!.once('ready', () => r()));
    this.update(referenced);
    if (this.opts.pollMs) {
      this.poll = setInterval(this.opts.onPoll ?? this.onChange, this.opts.pollMs);
      this.poll.unref();
    }
    return ready;
  }

  /** Follows the set of referenced files as the config changes. */
  update(referenced: readonly string[]): void {
    if (!this.watcher) return;
    this.files = new Set([resolve(this.file), ...referenced.map((f) => resolve(f))]);
    const want = new Set([dirname(resolve(this.file)), ...referenced.map((f) => dirname(resolve(f)))]);
    const was = this.watched;
    // (first: `ignored` reads it as the folders are added)
    this.watched = want;
    for (const p of want) if (!was.has(p)) this.watcher.add(p);
    for (const p of was) if (!want.has(p)) this.watcher.unwatch(p);
  }

  /** an event about the config or a file it refers to (a Kubernetes swap renames `..data`, which they link through) */
  private concerns(path: string): boolean {
    return this.files.has(resolve(path)) || basename(path).startsWith('..');
  }

  private kick(): void {
    clearTimeout(this.timer);
    this.timer = setTimeout(this.onChange, this.opts.debounceMs ?? 100);
  }

  async close(): Promise<void> {
    clearTimeout(this.timer);
    clearInterval(this.poll);
    await this.watcher?.close();
  }
}

/**
 * Hash of the config text and every file it refers to: unchanged hash, no reload. A file in
 * `alreadyRead` is hashed as it was read there, not read again: a generation's hash must be of
 * the bytes that built it, or a write between the two reads is taken for live and never applied.
 * The others are read now (certificates, CA files: read again when the generation is built, so
 * a write after this read only makes the next reload build once more).
 */
export function contentHash(text: string, files: readonly string[], alreadyRead: ReadonlyMap<string, FileSnapshot> = new Map()): string {
  const h = createHash('sha256').update(text);
  for (const f of [...files].sort()) {
    h.update('\0' + f + '\0');
    // (a pipe or a device named by the config is refused by the loader; read here, it would hang every reload)
    const snapshot = alreadyRead.get(f) ?? snapshotOf(f, MAX_HASHED_BYTES);
    if ('bytes' in snapshot) h.update(snapshot.bytes);
    else h.update(`<${(snapshot.error as NodeJS.ErrnoException).code ?? 'unreadable'}>`);
  }
  return h.digest('hex');
}
