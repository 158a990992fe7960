// The records `bonsai data …` steps stream: documents read one at a time from lines of input
// (stories separated by <|endoftext|>, one document per line, or JSONL objects), written back in
// the same format. Streaming, so a step's memory does not grow with the corpus; a JSONL record
// keeps every field it came with, and a step may add its own (a score, an id). documents.ts reads
// the same three formats whole, for curriculum learning; both split stories the same way.
import { type DocumentFormat, END_OF_TEXT, documentFormats, parseJsonlLine } from "./documents.js";

export interface DataRecord {
  text: string;
  /** The JSONL object as read (the text field included), for writing back; absent for stories and lines. */
  fields?: Record<string, unknown>;
  /** 1-based input line where the document starts, for messages and --stats. */
  line: number;
}

export interface ReadRecordsOptions {
  format: DocumentFormat;
  /** JSONL: the field holding the text (default "text"). */
  textField?: string;
  /** Stop at the first malformed JSONL line (default: count it, report it, go on). */
  strict?: boolean;
  /** Prefix of messages, e.g. the file name. */
  name?: string;
  /** A malformed JSONL line that was skipped (not called with strict). */
  onMalformed?: (line: number, reason: string) => void;
}

/** A malformed line under --strict. */
export class MalformedRecordError extends Error {}

function checkFormat(format: DocumentFormat): void {
  if (!documentFormats.includes(format)) throw new Error(`unknown document format "${String(format)}" (expected ${documentFormats.join(", ")})`);
}

/**
 * The documents of `lines` (each line without its end-of-line), in order. Empty (whitespace-only)
 * stories and lines are skipped, as documents.ts does. A JSONL line that is not an object with a
 * string text field is malformed: reported through onMalformed and skipped, or with `strict` thrown.
 */
export async function* readRecords(lines: AsyncIterable<string>, o: ReadRecordsOptions): AsyncGenerator<DataRecord> {
  checkFormat(o.format);
  const name = o.name ?? o.format;
  const field = o.textField ?? "text";
  let n = 0;
  if (o.format === "lines") {
    for await (const line of lines) {
      n++;
      if (line.trim() !== "") yield { text: line, line: n };
    }
  } else if (o.format === "jsonl") {
    for await (const line of lines) {
      n++;
      if (line.trim() === "") continue;
      const parsed = parseJsonlLine(line, field);
      if (typeof parsed === "string") {
        if (o.strict) throw new MalformedRecordError(`${name} line ${n}: ${parsed}`);
        o.onMalformed?.(n, parsed);
        continue;
      }
      yield { text: parsed[field] as string, fields: parsed, line: n };
    }
  } else {
    // Stories: text between END_OF_TEXT markers, which may sit anywhere in a line.
    let piece = "", pieceLine = 1;
    const story = (): DataRecord | null => {
      const text = piece.trim();
      if (text === "") return null;
      const lead = piece.slice(0, piece.indexOf(text));
      return { text, line: pieceLine + (lead.match(/\n/g)?.length ?? 0) };
    };
    for await (const raw of lines) {
      n++;
      let rest = raw + "\n";
      for (let i = rest.indexOf(END_OF_TEXT); i >= 0; i = rest.indexOf(END_OF_TEXT)) {
        piece += rest.slice(0, i);
        const r = story();
        if (r) yield r;
        piece = "";
        pieceLine = n;
        rest = rest.slice(i + END_OF_TEXT.length);
      }
      piece += rest;
    }
    const r = story();
    if (r) yield r;
  }
}

/**
 * A record as output in `format`, ending with its separator: a JSONL line (its fields, the text
 * field set to `text`, and `extra` fields added), a story and <|endoftext|>, or a line. A line
 * document cannot hold a line break; one would split it in two, so it is refused.
 */
export function formatRecord(r: DataRecord, format: DocumentFormat, textField = "text", extra: Record<string, unknown> = {}): string {
  checkFormat(format);
  if (format === "jsonl") return JSON.stringify({ ...(r.fields ?? {}), [textField]: r.text, ...extra }) + "\n";
  if (format === "stories") return `${r.text}\n${END_OF_TEXT}\n`;
  if (/[\r\n]/.test(r.text)) throw new Error(`line ${r.line}: a document with a line break cannot be written as --documents lines`);
  return r.text + "\n";
}
