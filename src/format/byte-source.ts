// Random access to the bytes of a model file, so that opening a model reads only its header
// and each tensor is read when first needed. Node reads through a file descriptor
// (io/byte-source-node.ts); anywhere else a file already in memory (an ArrayBuffer) serves.

export interface ByteSource {
  /** Total size in bytes. */
  readonly size: number;
  /** `length` bytes from `offset`; throws past the end. */
  read(offset: number, length: number): Uint8Array;
  /** Optional: `dst.length` bytes from `offset` into `dst` (a reused buffer: no allocation). */
  readInto?(offset: number, dst: Uint8Array): void;
  /** Bytes handed out so far (for tests and memory reports). */
  readonly bytesRead: number;
  close(): void;
}

export class MemorySource implements ByteSource {
  bytesRead = 0;
  constructor(private readonly bytes: Uint8Array) {}
  get size(): number {
    return this.bytes.length;
  }
  read(offset: number, length: number): Uint8Array {
    if (offset < 0 || length < 0 || offset + length > this.bytes.length)
      throw new Error(`read of ${length} bytes at ${offset} is past the end of the ${this.bytes.length}-byte file`);
    this.bytesRead += length;
    return this.bytes.subarray(offset, offset + length);
  }
  readInto(offset: number, dst: Uint8Array): void {
    dst.set(this.read(offset, dst.length));
  }
  close(): void {}
}

/** `dst.length` bytes of `source` from `offset` into `dst`, through readInto when the source has it. */
export function readInto(source: ByteSource, offset: number, dst: Uint8Array): void {
  if (source.readInto) source.readInto(offset, dst);
  else dst.set(source.read(offset, dst.length));
}
