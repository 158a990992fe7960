// Samples for curriculum learning: a text split into documents (stories separated by
// <|endoftext|>, lines, or JSONL records), tokenized one by one, so that a loss — and hence a
// difficulty and a weight — belongs to one sample. Batches built from samples are in
// batches.ts (sampleBatch).
import type { Tokenizer } from "../tokenizer/tokenizer.js";

export type DocumentFormat = "stories" | "lines" | "jsonl";
export const documentFormats: readonly DocumentFormat[] = ["stories", "lines", "jsonl"];

/** TinyStories' separator between stories. */
export const END_OF_TEXT = "<|endoftext|>";

export interface Document {
  text: string;
  /** Numeric fields of a JSONL record (other than the text), for the `field:NAME` scorer. */
  fields: Record<string, number>;
  /** 1-based line of the input where the document starts, for messages. */
  line: number;
}

export interface SplitOptions {
  /** JSONL: the field holding the text ("text"). */
  textField?: string;
  /** Prefix of error messages, e.g. the file name ("jsonl"). */
  name?: string;
}

/**
 * Split `text` into documents. stories: pieces between <|endoftext|> markers, trimmed of the
 * whitespace around them; lines: every line ("\n" or "\r\n" ends it) as it is; jsonl: one JSON
 * object per line with a string field `textField`, numeric fields kept. Empty (whitespace-only)
 * pieces and lines are skipped.
 */
export function splitDocuments(text: string, format: DocumentFormat, opts: SplitOptions = {}): Document[] {
  const name = opts.name ?? format;
  const docs: Document[] = [];
  if (format === "stories") {
    let line = 1;
    for (const piece of text.split(END_OF_TEXT)) {
      const story = piece.trim();
      if (story !== "") docs.push({ text: story, fields: {}, line: line + newlines(piece.slice(0, piece.indexOf(story))) });
      line += newlines(piece);
    }
  } else if (format === "lines") {
    text.split(/\r?\n/).forEach((line, i) => {
      if (line.trim() !== "") docs.push({ text: line, fields: {}, line: i + 1 });
    });
  } else if (format === "jsonl") {
    const field = opts.textField ?? "text";
    text.split(/\r?\n/).forEach((line, i) => {
      if (line.trim() === "") return;
      const r = parseJsonlLine(line, field);
      if (typeof r === "string") throw new Error(`${name} line ${i + 1}: ${r}`);
      const fields: Record<string, number> = {};
      for (const [k, v] of Object.entries(r)) if (k !== field && typeof v === "number" && Number.isFinite(v)) fields[k] = v;
      docs.push({ text: r[field] as string, fields, line: i + 1 });
    });
  } else {
    throw new Error(`unknown document format "${String(format)}" (expected ${documentFormats.join(", ")})`);
  }
  if (docs.length === 0) throw new Error(`${name}: no documents (empty input)`);
  return docs;
}

/** The object of a JSONL line with a string field `field`, or why the line is malformed. */
export function parseJsonlLine(line: string, field: string): Record<string, unknown> | string {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch (e) {
    return `invalid JSON (${(e as Error).message.split("\n")[0]})`;
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) return "expected a JSON object";
  if (typeof (value as Record<string, unknown>)[field] !== "string") return `no string field "${field}"`;
  return value as Record<string, unknown>;
}

function newlines(s: string): number {
  let n = 0;
  for (let i = s.indexOf("\n"); i >= 0; i = s.indexOf("\n", i + 1)) n++;
  return n;
}

/** A tokenized document: the unit a curriculum scores, weights and draws. */
export interface Sample {
  ids: Int32Array;
  fields: Record<string, number>;
  line: number;
}

export interface TokenizeOptions {
  /** Start every sample with BOS (if the tokenizer has one). */
  addBos?: boolean;
  /** End every sample with EOS (if the tokenizer has one), so the model learns where documents end. */
  addEos?: boolean;
}

/**
 * Tokenize documents one by one. Samples of fewer than 2 tokens predict nothing and are
 * dropped; `dropped` counts them.
 */
export function tokenizeDocuments(docs: readonly Document[], tokenizer: Tokenizer, opts: TokenizeOptions = {}): { samples: Sample[]; dropped: number } {
  const samples: Sample[] = [];
  let dropped = 0;
  for (const d of docs) {
    const ids = tokenizer.encode(d.text, { addBos: opts.addBos ?? false });
    if (opts.addEos && tokenizer.eosId !== null) ids.push(tokenizer.eosId);
    if (ids.length < 2) dropped++;
    else samples.push({ ids: Int32Array.from(ids), fields: d.fields, line: d.line });
  }
  if (samples.length === 0) throw new Error(`no sample has 2 or more tokens (${docs.length} documents)`);
  return { samples, dropped };
}

/**
 * Hold out the last `1 − trainFraction` of the samples (10% by default) as validation, in file
 * order like splitTrainVal does for a token stream. Both parts must be non-empty.
 */
export function splitSamples<T>(samples: readonly T[], trainFraction = 0.9): { train: T[]; val: T[] } {
  if (!(trainFraction > 0 && trainFraction < 1)) throw new Error(`train fraction must be in (0, 1) (got ${trainFraction})`);
  const n = Math.floor(samples.length * trainFraction);
  if (n === 0 || n === samples.length) throw new Error(`${samples.length} sample(s) are too few to hold out ${Math.round((1 - trainFraction) * 100)}% for validation`);
  return { train: samples.slice(0, n), val: samples.slice(n) };
}

/** The samples' tokens one after another: a stream for the trainer's evaluation (randomBatch). */
export function concatSamples(samples: readonly Sample[]): Int32Array {
  let n = 0;
  for (const s of samples) n += s.ids.length;
  const out = new Int32Array(n);
  let at = 0;
  for (const s of samples) {
    out.set(s.ids, at);
    at += s.ids.length;
  }
  return out;
}
