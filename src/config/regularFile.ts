/**
 * Reads a file the config names without ever blocking the event loop on it.
 * Config files are read synchronously, on every reload: a FIFO there waits for
 * a writer forever (open() blocks, and the whole gateway with it), and a device
 * like /dev/zero never ends. So a file is opened non-blocking (a FIFO opens at
 * once), and what is opened, not what a stat of the path said a moment before,
 * must be a regular file; symlinks are followed, so a Kubernetes secret mount
 * still reads.
 */
import { closeSync, constants, fstatSync, openSync, readSync, type Stats } from 'node:fs';
import { DrawbridgeError } from '../errors.js';

/** The message says what the file is ("is a named pipe (FIFO), not a regular file"), to follow its name. */
export class NotARegularFileError extends DrawbridgeError {
  constructor(message: string) {
    super('ERR_NOT_A_REGULAR_FILE', message);
  }
}

export class FileTooLargeError extends DrawbridgeError {
  constructor(message: string, size: number, limit: number) {
    super('ERR_FILE_TOO_LARGE', message, { size, limit });
  }
}

/** A file as it was read once: its bytes, or the error reading it gave. */
export type FileSnapshot = { bytes: Buffer } | { error: unknown };

/** readRegularFile, with its failure kept as a value (read once, used by several). */
export function snapshotOf(file: string, limit = Infinity): FileSnapshot {
  try {
    return { bytes: readRegularFile(file, limit) };
  } catch (error) {
    return { error };
  }
}

/**
 * The bytes of a regular file of at most `limit` bytes. Throws
 * NotARegularFileError, FileTooLargeError, or the system's error (ENOENT...).
 */
export function readRegularFile(file: string, limit = Infinity): Buffer {
  const fd = openSync(file, constants.O_RDONLY | constants.O_NONBLOCK);
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw new NotARegularFileError(`is ${kindOf(st)}, not a regular file`);
    if (st.size > limit) throw new FileTooLargeError(`is ${st.size} bytes, over the limit of ${limit} bytes`, st.size, limit);
    // Read to the end, not just the stat's size: a file still being written may have grown. Never past the limit.
    const cap = Math.min(limit, Number.MAX_SAFE_INTEGER);
    const chunks: Buffer[] = [];
    let total = 0;
    for (;;) {
      const chunk = Buffer.allocUnsafe(Math.min(64 << 10, Math.max(cap - total + 1, 1)));
      const n = readSync(fd, chunk, 0, chunk.length, null);
      if (n === 0) break;
      total += n;
      if (total > cap) throw new FileTooLargeError(`is over the limit of ${limit} bytes`, total, limit);
      chunks.push(chunk.subarray(0, n));
    }
    return Buffer.concat(chunks, total);
  } finally {
    closeSync(fd);
  }
}

function kindOf(st: Stats): string {
  if (st.isDirectory()) return 'a directory';
  if (st.isFIFO()) return 'a named pipe (FIFO)';
  if (st.isCharacterDevice()) return 'a character device';
  if (st.isBlockDevice()) return 'a block device';
  if (st.isSocket()) return 'a socket';
  return 'something other than a file';
}
