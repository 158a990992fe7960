// Where `bonsai data …` steps read and write in Node: a file or "-" (stdin/stdout), so steps chain
// through pipes. Output to a file is written beside it and renamed into place when the step ends,
// so an interrupted step leaves the old file (or none), never a cut one; output to stdout (or to a
// device or pipe named as a file, /dev/stdout) is streamed with backpressure. The --stats log of removed documents is written the same way.
import * as fs from "node:fs";
import * as path from "node:path";
import { createInterface } from "node:readline";
import { once } from "node:events";
import type { Readable, Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { tmpdir } from "node:os";

export interface LineInput {
  lines: AsyncIterable<string>;
  /** Bytes read so far, and the input's size when it is a file (for progress). */
  bytesRead(): number;
  readonly totalBytes: number | null;
  readonly name: string;
}

/** The lines of a file, or of stdin for "-" (a line's "\n" or "\r\n" removed). */
export function inputLines(file: string): LineInput {
  let stream: Readable, totalBytes: number | null = null;
  if (file === "-") stream = process.stdin;
  else {
    let st: fs.Stats;
    try {
      st = fs.statSync(file);
    } catch {
      throw new Error(`file not found: ${file}`);
    }
    if (st.isDirectory()) throw new Error(`is a directory: ${file}`);
    totalBytes = st.size;
    stream = fs.createReadStream(file);
  }
  let bytes = 0;
  stream.on("data", (chunk: Buffer | string) => (bytes += typeof chunk === "string" ? Buffer.byteLength(chunk) : chunk.length));
  const lines = createInterface({ input: stream, crlfDelay: Infinity });
  return { lines, bytesRead: () => bytes, totalBytes, name: file === "-" ? "stdin" : file };
}

/** Text written in order to a file (complete or absent: see the header) or to stdout ("-"). */
export class TextSink {
  private readonly out: Writable;
  private readonly tmp: string | null;
  private closed = false;

  constructor(readonly file: string) {
    let special = false;
    try {
      special = !fs.statSync(file).isFile(); // a device or pipe (/dev/stdout, a FIFO): written in place
    } catch {
      // absent: a new file
    }
    if (file === "-") {
      this.out = process.stdout;
      this.tmp = null;
    } else if (special) {
      this.out = fs.createWriteStream(file, { flags: "a" });
      this.tmp = null;
    } else {
      const dir = path.dirname(path.resolve(file));
      if (!fs.existsSync(dir)) throw new Error(`no such directory for ${file}: ${dir}`);
      this.tmp = `${file}.tmp-${process.pid}`;
      this.out = fs.createWriteStream(this.tmp);
    }
  }

  /** Write `text`; resolves when the stream can take more. */
  async write(text: string): Promise<void> {
    if (!this.out.write(text)) await once(this.out, "drain");
  }

  /** Flush and (for a file) move it into place. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.out === process.stdout) return;
    const stream = this.out as fs.WriteStream;
    await new Promise<void>((resolve, reject) => stream.end((e?: Error | null) => (e ? reject(e) : resolve())));
    if (this.tmp === null) return;
    const fd = fs.openSync(this.tmp, "r");
    try {
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    fs.renameSync(this.tmp, this.file);
  }

  /** Give up: a file's partial output is removed, the old file left as it was. */
  abandon(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.out === process.stdout) return;
    (this.out as fs.WriteStream).destroy();
    if (this.tmp === null) return;
    fs.rmSync(this.tmp, { force: true });
  }
}

/**
 * Run `fn` on an input a step reads twice: `file` itself, or for "-" stdin copied to a temporary
 * file first (removed afterwards).
 */
export async function withRereadableInput<T>(file: string, fn: (path: string) => Promise<T>): Promise<T> {
  if (file !== "-") return fn(file);
  const dir = fs.mkdtempSync(path.join(tmpdir(), "bonsai-stdin-"));
  try {
    const copy = path.join(dir, "stdin");
    await pipeline(process.stdin, fs.createWriteStream(copy));
    return await fn(copy);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
