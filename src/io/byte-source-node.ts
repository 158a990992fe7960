// A ByteSource over a file descriptor: reads exactly the ranges asked for.
import { closeSync, fstatSync, openSync, readSync } from "node:fs";
import type { ByteSource } from "../format/byte-source.js";

export class FileSource implements ByteSource {
  readonly size: number;
  bytesRead = 0;
  private fd: number | null;

  constructor(readonly path: string) {
    try {
      this.fd = openSync(path, "r");
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      throw new Error(code === "ENOENT" ? `file not found: ${path}` : `cannot open ${path}: ${(e as Error).message}`);
    }
    this.size = fstatSync(this.fd).size;
  }

  read(offset: number, length: number): Uint8Array {
    if (!(length >= 0)) throw new Error(`read of ${length} bytes at ${offset} from ${this.path}: bad length`);
    const out = new Uint8Array(length);
    this.readInto(offset, out);
    return out;
  }

  readInto(offset: number, out: Uint8Array): void {
    const length = out.length;
    if (this.fd === null) throw new Error(`${this.path} is closed`);
    if (offset < 0 || offset + length > this.size)
      throw new Error(`read of ${length} bytes at ${offset} is past the end of ${this.path} (${this.size} bytes)`);
    let done = 0;
    while (done < length) {
      const n = readSync(this.fd, out, done, length - done, offset + done);
      if (n === 0) throw new Error(`${this.path} ended early (truncated while open?)`);
      done += n;
    }
    this.bytesRead += length;
  }

  close(): void {
    if (this.fd !== null) closeSync(this.fd);
    this.fd = null;
  }
}
