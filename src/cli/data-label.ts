// `bonsai data label`: a teacher rates documents for a quality classifier to learn from (the
// phi-1 / FineWeb-Edu recipe). Each document — or a seeded random sample of --sample N — goes
// into the rubric (FineWeb-Edu's additive 0–5 educational-value prompt by default, or a file
// with {text}), the teacher answers (a model in this process, --teacher, or an OpenAI-compatible
// server, --endpoint), and the score is read from the reply ("Educational score: N"). Output is
// JSONL: each document's fields (its text under --text-field) plus `label` (a number, or null
// when no reply held a score after --retries re-asks, or the teacher refused the request) and
// `label_reply`, in input order.
//
// --out FILE is appended to, one write per record, and resumed: a rerun skips the documents
// already in it (by their `id` field when they have one, else by their text) and truncates a
// final line cut by a kill. A document whose request failed (after the teacher's own retries)
// is not written; the step then exits non-zero, and running it again labels just those.
import * as fs from "node:fs";
import type { TeacherUsage } from "../data/teacher.js";
import { type DataRecord, readRecords } from "../data/records.js";
import { inputLines } from "../data/record-files-node.js";
import { murmur3x86_32 } from "../data/dedup/hash.js";
import { BUILTIN_RUBRICS, DEFAULT_SCORE_PATTERN, type LabelResult, checkRubric, labelDocument } from "../data/classifier/label.js";
import { Rng, deriveSeed } from "../util/rng.js";
import { type FlagSpec, Flags, UsageError, backendFlags } from "./args.js";
import { RateLine, recordIo } from "./data.js";
import { teacherFlags, teacherFromFlags } from "./teacher-flags.js";

const rubricNames = Object.keys(BUILTIN_RUBRICS);

export const labelFlags: FlagSpec = {
  ...teacherFlags,
  rubric: { type: "string", help: `the prompt: ${rubricNames.join(", ")} (default: FineWeb-Edu's additive 0–5 educational-value rubric) or a file holding {text} where the document goes` },
  "print-rubric": { type: "boolean", help: "print the rubric (--rubric's) and exit" },
  "score-pattern": { type: "string", help: 'a regular expression (case-insensitive) whose first group is the score in a reply; its last match counts (default: "Educational score: N")' },
  "label-range": { type: "string", help: "MIN-MAX: a score outside it is not a score (0-5)" },
  sample: { type: "string", help: "label a seeded random sample of N documents (reservoir sampling; kept in input order) instead of all" },
  seed: { type: "string", help: "the sample's seed, and the teacher's sampling seeds with each document's index and attempt (1337)" },
  concurrency: { type: "string", help: "requests at once (4); an in-process teacher decodes that many together" },
  "max-tokens": { type: "string", help: "most tokens of a reply (256: the rubric asks for ≤ 100 words and the score line)" },
  "max-chars": { type: "string", help: "only a document's first N characters go into the prompt (10000; 0 = all)" },
  temperature: { type: "string", help: "the first answer's temperature (0: greedy); re-asks after a reply without a score use --retry-temperature when it is 0" },
  "retry-temperature": { type: "string", help: "the temperature of re-asks after a greedy first answer (0.7)" },
  retries: { type: "string", help: "re-asks of a reply without a score (then the document is recorded unlabelled), and --endpoint's retries of a request on 429, 5xx, network errors and timeouts (3)" },
  out: { type: "string", help: "the JSONL file to append labelled records to, resumed when it exists (required; - writes to stdout, without resuming)" },
  documents: { type: "string", help: "input format: jsonl (default), stories or lines; the output is JSONL" },
  "text-field": { type: "string", help: 'jsonl: the field holding the text (default "text"); the output keeps it there' },
  strict: { type: "boolean", help: "stop at the first malformed JSONL line (default: count it, name its line on stderr, skip it)" },
  quiet: { type: "boolean", help: "no progress line" },
  ...backendFlags,
};


/** MIN-MAX (e.g. "0-5", "1-10", "-1-1"). */
export function parseRange(raw: string | undefined, flag: string, fallback: [number, number]): [number, number] {
  if (raw === undefined) return fallback;
  const m = /^\s*(-?\d+(?:\.\d+)?)\s*-\s*(-?\d+(?:\.\d+)?)\s*$/.exec(raw);
  if (!m || !(Number(m[1]) < Number(m[2]))) throw new UsageError(`--${flag} must be MIN-MAX with MIN < MAX (got "${raw}")`);
  return [Number(m[1]), Number(m[2])];
}

function rubricFromFlags(f: Flags): { template: string; name: string } {
  const spec = f.str("rubric") ?? "fineweb-edu";
  if (BUILTIN_RUBRICS[spec] !== undefined) return { template: BUILTIN_RUBRICS[spec], name: spec };
  let text: string;
  try {
    text = fs.readFileSync(spec, "utf8");
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new UsageError(`--rubric ${spec}: ${code === "ENOENT" ? "no such file" : code === "EISDIR" ? "is a directory" : (e as Error).message} (shipped rubrics: ${rubricNames.join(", ")})`);
  }
  try {
    return { template: checkRubric(text, `--rubric ${spec}`), name: spec };
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
}

/** Which document a record is, for resuming: its `id` field when it has one, else its text's 64-bit hash. */
export function documentKey(fields: Record<string, unknown> | undefined, text: string): string {
  const id = fields?.id;
  if (typeof id === "string" || typeof id === "number") return `id:${JSON.stringify(id)}`;
  const b = new TextEncoder().encode(text);
  return `text:${murmur3x86_32(b, 0x1abe1).toString(16)}:${murmur3x86_32(b, 0x5eed).toString(16)}:${b.length}`;
}

/**
 * The records already in `file` (the keys of their documents, counted: one text twice in the
 * input is two documents), after truncating a final line cut by a kill. A line that is not a
 * labelled record stops the run, leaving the file as it was.
 */
function readBack(file: string, textField: string, log: (line: string) => void): Map<string, number> {
  const done = new Map<string, number>();
  if (!fs.existsSync(file)) return done;
  const data = fs.readFileSync(file);
  let end = data.length;
  if (end > 0 && data[end - 1] !== 0x0a) {
    const cut = data.lastIndexOf(0x0a) + 1;
    let whole = false;
    try {
      const v = JSON.parse(data.subarray(cut).toString("utf8")) as Record<string, unknown>;
      whole = v !== null && typeof v === "object" && "label" in v && typeof v[textField] === "string";
    } catch {
      // a cut line
    }
    if (whole) fs.appendFileSync(file, "\n");
    else {
      fs.truncateSync(file, cut);
      log(`bonsai data label: ${file}: truncated a cut final line (${end - cut} bytes)`);
      end = cut;
    }
  }
  const lines = data.subarray(0, end).toString("utf8").split("\n");
  lines.forEach((line, i) => {
    if (line.trim() === "") return;
    let v: Record<string, unknown>;
    try {
      v = JSON.parse(line) as Record<string, unknown>;
    } catch {
      throw new UsageError(`${file} line ${i + 1} is not JSON: not this command's output? Give another --out`);
    }
    if (v === null || typeof v !== "object" || !("label" in v) || (v.label !== null && typeof v.label !== "number") || typeof v[textField] !== "string")
      throw new UsageError(`${file} line ${i + 1} is not a labelled record (a "${textField}" string and a "label" number or null): give another --out`);
    const key = documentKey(v, v[textField] as string);
    done.set(key, (done.get(key) ?? 0) + 1);
  });
  return done;
}

/** A seeded uniform sample of `n` records (Algorithm R), in input order. */
async function sampleRecords(records: AsyncIterable<DataRecord>, n: number, seed: number): Promise<DataRecord[]> {
  const rng = new Rng(deriveSeed(seed, 0x5a3b1e));
  const kept: DataRecord[] = [];
  let seen = 0;
  for await (const r of records) {
    if (kept.length < n) kept.push(r);
    else {
      const j = Math.floor(rng.next() * (seen + 1));
      if (j < n) kept[j] = r;
    }
    seen++;
  }
  return kept.sort((a, b) => a.line - b.line);
}

/**
 * fn over items with at most `concurrency` running, results handed to `emit` in input order; at
 * most 4 × concurrency finished results wait for a slower one ahead of them.
 */
async function orderedMap<T, R>(items: AsyncIterable<T> | Iterable<T>, concurrency: number, fn: (t: T) => Promise<R>, emit: (r: R) => Promise<void> | void): Promise<void> {
  type Slot = { done: boolean; value?: R; error?: { e: unknown } };
  const queue: Slot[] = [];
  let active = 0;
  let wake: (() => void) | null = null;
  const changed = (): Promise<void> => new Promise<void>((resolve) => (wake = resolve));
  const drain = async (): Promise<void> => {
    while (queue.length > 0 && queue[0].done) {
      const s = queue.shift()!;
      if (s.error) throw s.error.e;
      await emit(s.value as R);
    }
  };
  for await (const item of items) {
    while (active >= concurrency || queue.length >= 4 * concurrency) {
      await changed();
      await drain();
    }
    const slot: Slot = { done: false };
    queue.push(slot);
    active++;
    fn(item)
      .then((v) => (slot.value = v), (e: unknown) => (slot.error = { e }))
      .finally(() => {
        slot.done = true;
        active--;
        const w = wake;
        wake = null;
        w?.();
      });
    await drain();
  }
  while (queue.length > 0) {
    if (!queue[0].done) await changed();
    await drain();
  }
}

interface LabelSummary {
  labelled: number;
  unlabelled: number;
  refused: number;
  failed: number;
  skipped: number;
  retried: number;
  histogram: Map<number, number>;
  usage: TeacherUsage;
}

async function run(argv: string[]): Promise<void> {
  const f = Flags.parse(argv, labelFlags);
  const rubric = rubricFromFlags(f);
  if (f.bool("print-rubric")) {
    process.stdout.write(rubric.template.replace(/\n?$/, "\n"));
    return;
  }
  const io = recordIo(f);
  let pattern = DEFAULT_SCORE_PATTERN;
  const rawPattern = f.str("score-pattern");
  if (rawPattern !== undefined) {
    try {
      pattern = new RegExp(rawPattern, "gi");
    } catch (e) {
      throw new UsageError(`--score-pattern: ${(e as Error).message}`);
    }
  }
  const labelRange = parseRange(f.str("label-range"), "label-range", [0, 5]);
  const sample = f.has("sample") ? f.int("sample", 0, 1) : null;
  const seed = f.int("seed", 1337, 0);
  const concurrency = f.int("concurrency", 4, 1);
  const maxTokens = f.int("max-tokens", 256, 1);
  const maxChars = f.int("max-chars", 10_000, 0);
  const temperature = f.num("temperature", 0, { min: 0 });
  const retryTemperature = f.num("retry-temperature", 0.7, { min: 0 });
  const retries = f.int("retries", 3, 0);
  const outFile = f.required("out");
  if (io.input !== "-" && !fs.existsSync(io.input)) throw new Error(`file not found: ${io.input}`);

  let progress: RateLine | null = null;
  const log = (line: string): void => (progress ? progress.log(line) : void process.stderr.write(line + "\n"));
  const done = outFile === "-" ? new Map<string, number>() : readBack(outFile, io.textField, log);
  const before = [...done.values()].reduce((a, b) => a + b, 0);
  const teacher = await teacherFromFlags(f, { concurrency, retries, log, step: "label" })();
  process.stderr.write(`bonsai data label: teacher ${teacher.name}, rubric ${rubric.name}${sample !== null ? `, a sample of ${sample} (seed ${seed})` : ""}${before ? `; resuming ${outFile}: ${before} records there` : ""}\n`);

  const source = inputLines(io.input);
  const summary: LabelSummary = { labelled: 0, unlabelled: 0, refused: 0, failed: 0, skipped: 0, retried: 0, histogram: new Map(), usage: { prompt_tokens: 0, completion_tokens: 0 } };
  const malformed = { n: 0 };
  const records = readRecords(source.lines, {
    format: io.format, textField: io.textField, strict: io.strict, name: source.name,
    onMalformed: (line, reason) => {
      malformed.n++;
      log(`bonsai data label: ${source.name} line ${line}: ${reason}; skipped`);
    },
  });
  const chosen: AsyncIterable<DataRecord> | DataRecord[] = sample !== null ? await sampleRecords(records, sample, seed) : records;
  const total = Array.isArray(chosen) ? chosen.length : null;

  // The documents to label, each with its index in the input's (or the sample's) order for its seeds.
  let index = 0;
  async function* todo(): AsyncGenerator<{ r: DataRecord; i: number }> {
    for await (const r of chosen) {
      const i = index++;
      const key = documentKey(r.fields, r.text);
      const left = done.get(key) ?? 0;
      if (left > 0) {
        done.set(key, left - 1);
        summary.skipped++;
        continue;
      }
      yield { r, i };
    }
  }

  const fd = outFile === "-" ? null : fs.openSync(outFile, "a");
  const t0 = performance.now();
  progress = new RateLine("bonsai data label", f.bool("quiet"), total ?? source.totalBytes);
  let processed = 0, answered = 0;
  try {
    await orderedMap(
      todo(),
      concurrency,
      async ({ r, i }): Promise<{ r: DataRecord; result: LabelResult | null; error?: string }> => {
        try {
          return { r, result: await labelDocument(r.text, i, { teacher, rubric: rubric.template, maxTokens, temperature, retryTemperature, retries, seed, maxChars: maxChars || undefined, pattern, labelRange }) };
        } catch (e) {
          return { r, result: null, error: (e as Error).message };
        }
      },
      async ({ r, result, error }) => {
        processed++;
        if (result === null) {
          summary.failed++;
          log(`bonsai data label: ${source.name} line ${r.line}: ${error}; not written (run again to label it)`);
        } else {
          answered++;
          summary.usage.prompt_tokens += result.usage.prompt_tokens;
          summary.usage.completion_tokens += result.usage.completion_tokens;
          if (result.attempts > 1 && result.label !== null) summary.retried++;
          if (result.refused) {
            summary.refused++;
            // A teacher that refuses everything (a wrong model name, a prompt it cannot take) stops the run early.
            if (summary.refused === answered && summary.refused >= 3) throw new Error(`the teacher refused the first ${summary.refused} requests; the last: ${result.refused}`);
            log(`bonsai data label: ${source.name} line ${r.line}: refused (${result.refused}); recorded unlabelled`);
          } else if (result.label === null) summary.unlabelled++;
          else {
            summary.labelled++;
            summary.histogram.set(result.label, (summary.histogram.get(result.label) ?? 0) + 1);
          }
          const extra: Record<string, unknown> = { label: result.label, label_reply: result.reply };
          if (result.refused) extra.label_error = result.refused;
          const line = JSON.stringify({ ...(r.fields ?? {}), [io.textField]: r.text, ...extra }) + "\n";
          if (fd !== null) fs.writeSync(fd, line);
          else if (!process.stdout.write(line)) await new Promise<void>((resolve) => process.stdout.once("drain", () => resolve()));
        }
        progress!.tick(processed + summary.skipped, total !== null ? processed + summary.skipped : source.bytesRead(), `, ${summary.labelled} labelled`);
      },
    );
  } finally {
    progress.done();
    if (fd !== null) fs.closeSync(fd);
  }
  const seconds = (performance.now() - t0) / 1000;
  const hist = [...summary.histogram.entries()].sort((a, b) => a[0] - b[0]).map(([k, v]) => `${k}: ${v}`).join(", ");
  process.stderr.write(
    `bonsai data label: ${summary.labelled} labelled${hist ? ` (${hist})` : ""}, ${summary.unlabelled} without a score after ${retries} re-ask${retries === 1 ? "" : "s"}, ` +
      `${summary.refused} refused, ${summary.failed} failed, ${summary.retried} labelled only after a re-ask` +
      `${summary.skipped ? `, ${summary.skipped} already in ${outFile}` : ""}${malformed.n ? `, ${malformed.n} malformed line${malformed.n === 1 ? "" : "s"} skipped` : ""}; ` +
      `${(summary.usage.prompt_tokens + summary.usage.completion_tokens).toLocaleString("en-US")} tokens, ${seconds.toFixed(1)} s` +
      `${seconds > 0 ? ` (${(processed / seconds).toFixed(1)} docs/s)` : ""}\n`,
  );
  if (summary.failed > 0) throw new Error(`${summary.failed} document${summary.failed === 1 ? "" : "s"} failed; run the same command again to label them`);
}

export const labelStep = {
  run,
  flags: labelFlags,
  help: "a teacher rates documents with a rubric (FineWeb-Edu's 0–5 educational value by default): labels for train-classifier, resumable",
};
