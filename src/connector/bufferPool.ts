/**
 * Buffers handed back once their bytes have gone on, for the bulk paths of a
 * channel. A fresh large buffer per read or write is memory the kernel must
 * fault in and V8 must count and collect: on this kind of VM that cost more
 * than the copy into a buffer already in use.
 */
export class BufferPool {
  private readonly free: Uint8Array[] = [];

  constructor(
    readonly size: number,
    private readonly keep: number,
  ) {}

  take(): Uint8Array {
    return this.free.pop() ?? new Uint8Array(this.size);
  }

  give(buf: Uint8Array): void {
    if (this.free.length < this.keep && buf.byteLength === this.size) this.free.push(buf);
  }
}
