// Where `bonsai data synth` writes in Node: a JSONL file it appends to and resumes from. Every
// record is one line written by one write(2) on a file opened for appending, so a killed process
// leaves whole records and at most one cut final line; on opening, the existing records are read
// back (for the ids to skip and the texts to deduplicate against) and a cut final line is
// truncated away. A failed write (a full disk) is undone with ftruncate. One process per file.
import * as fs from "node:fs";
import * as path from "node:path";
import { createInterface } from "node:readline";
import type { SynthRecord } from "./synthesize.js";

/** A record read back: the fields resuming needs, checked. */
export interface ExistingRecord {
  id: number;
  text: string;
  prompt: string;
  line: number;
}

export interface OpenedOutput {
  out: RecordLog;
  /** Records already in the file. */
  records: number;
  /** Bytes of a cut final line that were truncated away (0 when the file ended with a whole line). */
  droppedBytes: number;
}

/** The record of a line, or what is wrong with it. */
function checkRecord(line: string): ExistingRecord | string {
  let v: unknown;
  try {
    v = JSON.parse(line);
  } catch (e) {
    return `invalid JSON (${(e as Error).message.split("\n")[0]})`;
  }
  const r = v as Record<string, unknown>;
  if (r === null || typeof r !== "object" || Array.isArray(r)) return "not a JSON object";
  if (!Number.isInteger(r.id) || (r.id as number) < 0) return 'no whole-number "id"';
  if (typeof r.text !== "string" || typeof r.prompt !== "string") return 'no string "text" and "prompt"';
  return { id: r.id as number, text: r.text, prompt: r.prompt, line: 0 };
}

/** Offset just past the file's last "\n" (0 if none), read backwards in chunks. */
function endOfLastLine(fd: number, size: number): number {
  const chunk = Buffer.alloc(1 << 16);
  for (let end = size; end > 0; ) {
    const start = Math.max(0, end - chunk.length);
    const n = fs.readSync(fd, chunk, 0, end - start, start);
    const i = chunk.subarray(0, n).lastIndexOf(0x0a);
    if (i >= 0) return start + i + 1;
    end = start;
  }
  return 0;
}

/**
 * The JSONL file `file`, opened for appending, after reading back the records in it (each given
 * to `onRecord`, in order). A final line without its "\n" is a record cut by a kill: truncated
 * away (or, if it parses as a whole record, given its "\n"). Throws, leaving the file as it was,
 * when a line is not a record of this command or an id repeats.
 */
export async function openRecordLog(file: string, onRecord: (r: ExistingRecord) => void): Promise<OpenedOutput> {
  const dir = path.dirname(path.resolve(file));
  if (!fs.existsSync(dir)) throw new Error(`no such directory for ${file}: ${dir}`);
  if (fs.existsSync(file) && fs.statSync(file).isDirectory()) throw new Error(`is a directory: ${file}`);
  const fd = fs.openSync(file, "a+");
  let ok = false;
  try {
    const size = fs.fstatSync(fd).size;
    const keep = endOfLastLine(fd, size);
    let cut: string | null = null;
    if (keep < size) {
      const tail = Buffer.alloc(size - keep);
      fs.readSync(fd, tail, 0, tail.length, keep);
      cut = tail.toString("utf8");
    }
    const ids = new Set<number>();
    let records = 0, lineNo = 0;
    const take = (line: string): void => {
      lineNo++;
      if (line.trim() === "") return;
      const r = checkRecord(line);
      if (typeof r === "string") throw new Error(`${file} line ${lineNo}: ${r}; not a record of bonsai data synth (resume needs the file it wrote; give another --out)`);
      if (ids.has(r.id)) throw new Error(`${file} line ${lineNo}: id ${r.id} is there twice; not resuming over a file bonsai data synth did not write`);
      ids.add(r.id);
      records++;
      onRecord({ ...r, line: lineNo });
    };
    if (keep > 0) {
      const lines = createInterface({ input: fs.createReadStream(file, { start: 0, end: keep - 1 }), crlfDelay: Infinity });
      for await (const line of lines) take(line);
    }
    let droppedBytes = 0;
    if (cut !== null) {
      if (typeof checkRecord(cut) !== "string") {
        take(cut);
        fs.writeSync(fd, "\n");
      } else {
        fs.ftruncateSync(fd, keep);
        droppedBytes = size - keep;
      }
    }
    ok = true;
    return { out: new RecordLog(fd, fs.fstatSync(fd).size), records, droppedBytes };
  } finally {
    if (!ok) fs.closeSync(fd);
  }
}

/** Records appended to an open file, one write(2) each. */
export class RecordLog {
  private closed = false;

  constructor(
    private readonly fd: number,
    private size: number,
  ) {}

  /** Append `r` as one line. A failed write is truncated away, leaving the file as before it, and rethrown. */
  write(r: SynthRecord): void {
    if (this.closed) throw new Error("the output is closed");
    const buf = Buffer.from(JSON.stringify(r) + "\n", "utf8");
    try {
      // One write(2) for a regular file (a short write only when the disk is full: then the next call throws).
      for (let off = 0; off < buf.length; ) off += fs.writeSync(this.fd, buf, off, buf.length - off);
    } catch (e) {
      try {
        fs.ftruncateSync(this.fd, this.size);
      } catch {
        // the next start truncates the cut line instead
      }
      throw e;
    }
    this.size += buf.length;
  }

  /** Flush to the disk and close. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    try {
      fs.fsyncSync(this.fd);
    } finally {
      fs.closeSync(this.fd);
    }
  }
}
