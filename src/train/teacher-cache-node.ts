// Node adapter of the teacher cache (teacher-cache.ts): a writer that appends windows to a
// temporary file and renames it into place when complete, and a reader that seeks to one window.
import { closeSync, existsSync, fstatSync, openSync, readSync, renameSync, unlinkSync, writeSync } from "node:fs";
import { type CachedWindow, type TeacherCacheHeader, decodeHeader, decodeWindow, encodeHeader, encodeWindow, headerLength, recordBytes } from "./teacher-cache.js";

export class TeacherCacheWriter {
  private fd: number;
  private written = 0;
  private readonly tmp: string;

  /** Start `path` (complete only after close(); an interrupted write leaves no cache behind). */
  constructor(
    readonly path: string,
    readonly header: TeacherCacheHeader,
  ) {
    this.tmp = path + ".partial";
    this.fd = openSync(this.tmp, "w");
    writeSync(this.fd, encodeHeader(header));
  }

  append(w: CachedWindow): void {
    if (this.written >= this.header.windows) throw new Error(`teacher cache: more than the ${this.header.windows} windows of the header`);
    writeSync(this.fd, encodeWindow(this.header, w));
    this.written++;
  }

  close(): void {
    closeSync(this.fd);
    if (this.written !== this.header.windows) {
      unlinkSync(this.tmp);
      throw new Error(`teacher cache: ${this.written} of ${this.header.windows} windows written`);
    }
    renameSync(this.tmp, this.path);
  }

  /** Give up: remove the partial file. */
  abort(): void {
    try {
      closeSync(this.fd);
    } catch {
      // already closed
    }
    if (existsSync(this.tmp)) unlinkSync(this.tmp);
  }
}

export class TeacherCacheReader {
  private readonly dataStart: number;
  private readonly record: number;

  private constructor(
    private fd: number,
    readonly header: TeacherCacheHeader,
    headerBytes: number,
    readonly path: string,
  ) {
    this.dataStart = headerBytes;
    this.record = recordBytes(header);
  }

  static open(path: string): TeacherCacheReader {
    if (!existsSync(path)) throw new Error(`teacher cache not found: ${path}`);
    const fd = openSync(path, "r");
    try {
      const first = new Uint8Array(12);
      readSync(fd, first, 0, 12, 0);
      const n = headerLength(first);
      const bytes = new Uint8Array(n);
      if (readSync(fd, bytes, 0, n, 0) !== n) throw new Error("teacher cache: truncated header");
      const header = decodeHeader(bytes);
      const expected = n + header.windows * recordBytes(header);
      const size = fstatSync(fd).size;
      if (size !== expected) throw new Error(`${path}: the teacher cache has ${size} bytes, its header implies ${expected} (truncated?)`);
      return new TeacherCacheReader(fd, header, n, path);
    } catch (e) {
      closeSync(fd);
      throw e;
    }
  }

  /** Window `w` (0 ≤ w < header.windows), read from disk. */
  window(w: number): CachedWindow {
    if (!(Number.isInteger(w) && w >= 0 && w < this.header.windows)) throw new RangeError(`teacher cache: window ${w} of ${this.header.windows}`);
    const bytes = new Uint8Array(this.record);
    readSync(this.fd, bytes, 0, this.record, this.dataStart + w * this.record);
    return decodeWindow(this.header, bytes);
  }

  close(): void {
    if (this.fd >= 0) closeSync(this.fd);
    this.fd = -1;
  }
}
