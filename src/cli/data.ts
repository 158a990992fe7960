// The data pipeline's step driver (`bonsai data <step>`; the steps and the dispatcher are in
// data-command.ts, since every step file imports this one). Every step streams records
// (data/records.ts) from a file or stdin to a file or stdout, so steps run alone or chained by pipes:
//   bonsai data filter corpus.jsonl | bonsai data dedup --exact - --out clean.jsonl
// Each prints a progress line and a summary on stderr, and with --stats FILE writes one JSON line
// per removed document: its input line, the rule that removed it, and the rule's figures.
import type { DocumentFormat } from "../data/documents.js";
import { documentFormats } from "../data/documents.js";
import { type DataRecord, formatRecord, readRecords } from "../data/records.js";
import { TextSink, inputLines } from "../data/record-files-node.js";
import { type FlagSpec, Flags, UsageError } from "./args.js";
import { formatDuration } from "./progress.js";

/** The input/output flags every step takes. */
export const recordIoFlags: FlagSpec = {
  out: { type: "string", help: 'output file, written whole or not at all (default "-": stdout)' },
  documents: { type: "string", help: `input and output format: ${documentFormats.join(", ")} (default jsonl)` },
  "out-documents": { type: "string", help: "output format, when not --documents' (e.g. jsonl: stories or lines become {\"text\": …} records, fields a step adds included)" },
  "text-field": { type: "string", help: 'jsonl: the field holding the text (default "text")' },
  strict: { type: "boolean", help: "stop at the first malformed JSONL line (default: count it, name its line on stderr, skip it)" },
  stats: { type: "string", help: "write one JSON line per removed document (its line, rule and figures) to this file" },
  quiet: { type: "boolean", help: "no progress line" },
};

/** What a step decides about a record: keep it (with fields to add to a JSONL record, or its text rewritten), or remove it and why. */
export type Verdict = { keep: true; extra?: Record<string, unknown>; text?: string } | { keep: false; rule: string; detail?: Record<string, unknown> };

export interface StepSummary {
  read: number;
  kept: number;
  malformed: number;
  /** Removed documents by rule. */
  removed: Record<string, number>;
  seconds: number;
}

/** The I/O a step's flags describe: the input (a positional file or "-"), the format, the sinks. */
export function recordIo(f: Flags): { input: string; format: DocumentFormat; outFormat: DocumentFormat; textField: string; strict: boolean } {
  if (f.positionals.length > 1) throw new UsageError(`one input file (or - for stdin), got ${f.positionals.length}: ${f.positionals.join(" ")}`);
  const format = (f.str("documents") ?? "jsonl") as DocumentFormat;
  if (!documentFormats.includes(format)) throw new UsageError(`--documents must be one of ${documentFormats.join(", ")} (got "${format}")`);
  const outFormat = (f.str("out-documents") ?? format) as DocumentFormat;
  if (!documentFormats.includes(outFormat)) throw new UsageError(`--out-documents must be one of ${documentFormats.join(", ")} (got "${outFormat}")`);
  return { input: f.positionals[0] ?? "-", format, outFormat, textField: f.str("text-field") ?? "text", strict: f.bool("strict") };
}

/**
 * Stream the input through `judge`, writing the kept records and --stats, with progress and a
 * summary on stderr (headed by `step`). The output and stats files appear only when the whole
 * input was read; on an error neither is touched. `input` overrides the flags' (a spooled stdin).
 */
export async function runRecordStep(f: Flags, step: string, judge: (r: DataRecord) => Verdict | Promise<Verdict>, input?: string): Promise<StepSummary> {
  const io = recordIo(f);
  const source = inputLines(input ?? io.input);
  const out = new TextSink(f.str("out") ?? "-");
  const stats = f.has("stats") ? new TextSink(f.required("stats")) : null;
  const progress = new RateLine(`bonsai data ${step}`, f.bool("quiet"), source.totalBytes);
  const summary: StepSummary = { read: 0, kept: 0, malformed: 0, removed: {}, seconds: 0 };
  const t0 = performance.now();
  try {
    const records = readRecords(source.lines, {
      format: io.format, textField: io.textField, strict: io.strict, name: source.name,
      onMalformed: (line, reason) => {
        summary.malformed++;
        progress.log(`bonsai data ${step}: ${source.name} line ${line}: ${reason}; skipped`);
      },
    });
    for await (const r of records) {
      summary.read++;
      const v = await judge(r);
      if (v.keep) {
        summary.kept++;
        await out.write(formatRecord(v.text === undefined ? r : { ...r, text: v.text }, io.outFormat, io.textField, v.extra));
      } else {
        summary.removed[v.rule] = (summary.removed[v.rule] ?? 0) + 1;
        await stats?.write(JSON.stringify({ line: r.line, rule: v.rule, ...v.detail }) + "\n");
      }
      progress.tick(summary.read, source.bytesRead());
    }
    await out.close();
    await stats?.close();
  } catch (e) {
    out.abandon();
    stats?.abandon();
    throw e;
  } finally {
    progress.done();
  }
  summary.seconds = (performance.now() - t0) / 1000;
  process.stderr.write(describeSummary(`bonsai data ${step}`, summary) + "\n");
  return summary;
}

/** "bonsai data filter: 1000 read, 812 kept, 188 removed (c4:javascript 100, …), 3 malformed lines skipped, 2.1 s (476 docs/s)". */
export function describeSummary(head: string, s: StepSummary): string {
  const removed = Object.values(s.removed).reduce((a, b) => a + b, 0);
  const rules = Object.entries(s.removed).sort((a, b) => b[1] - a[1]).map(([rule, n]) => `${rule} ${n}`).join(", ");
  const rate = s.seconds > 0 ? ` (${Math.round(s.read / s.seconds)} docs/s)` : "";
  return `${head}: ${s.read} read, ${s.kept} kept, ${removed} removed${rules ? ` (${rules})` : ""}` +
    `${s.malformed ? `, ${s.malformed} malformed line${s.malformed === 1 ? "" : "s"} skipped` : ""}, ${s.seconds.toFixed(1)} s${rate}`;
}

/** A progress line on stderr for a stream of unknown length: records, records/s, and the share of the input read. */
export class RateLine {
  private readonly tty = Boolean(process.stderr.isTTY);
  private readonly t0 = performance.now();
  private last = 0;
  private shown = false;

  constructor(private readonly head: string, private readonly quiet: boolean, private readonly totalBytes: number | null) {}

  tick(records: number, bytes: number, extra = ""): void {
    if (this.quiet) return;
    const now = performance.now();
    // A terminal redraws 10 times a second; a log gets a line every 10 seconds.
    if (now - this.last < (this.tty ? 100 : 10_000)) return;
    this.last = now;
    const s = (now - this.t0) / 1000;
    const share = this.totalBytes ? ` ${((100 * bytes) / this.totalBytes).toFixed(0)}%` : "";
    const eta = this.totalBytes && bytes > 0 ? ` | ETA ${formatDuration((s * (this.totalBytes - bytes)) / bytes)}` : "";
    const text = `${this.head}:${share} ${records} records, ${Math.round(records / Math.max(s, 1e-9))}/s${extra}${eta}`;
    process.stderr.write(this.tty ? `\r\x1b[K${text}` : `${text}\n`);
    this.shown = true;
  }

  log(line: string): void {
    process.stderr.write(this.tty && this.shown ? `\r\x1b[K${line}\n` : `${line}\n`);
  }

  done(): void {
    if (this.tty && this.shown) process.stderr.write("\r\x1b[K");
  }
}
