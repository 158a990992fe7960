// `bonsai data dedup`: exact and MinHash deduplication (data/dedup/), one-shot on one input or as
// stages over shards, after datatrove 0.10.0's four MinHash stages:
//   bonsai data dedup --exact [input] [--out F]          one pass: the first of each normalised text kept
//   bonsai data dedup --minhash [input] [--out F]        every stage below in-process (temporary files)
//   bonsai data dedup signatures SHARD --shard-id I --out sigs/I.bin [--exact]
//   bonsai data dedup buckets sigs/*.bin [--band B] --out pairs/B.bin
//   bonsai data dedup clusters sigs/*.bin pairs/*.bin --out remove.bin
//   bonsai data dedup filter SHARD --shard-id I --remove remove.bin --out clean/I.jsonl
// The record passes (--exact and every filter) run on data.ts' runRecordStep, so --out, --stats,
// --documents, --text-field and --strict mean what they mean in every step; each removed
// document's --stats line names its rule (dedup:exact or dedup:minhash), the kept document it
// duplicates (its line and index, and in the staged form its shard) and, for MinHash, the pair's
// estimated Jaccard.
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { ExactIndex, exactHash } from "../data/dedup/exact.js";
import { type DedupMode, type DedupOptions, dedupOptions, describeOptions } from "../data/dedup/format.js";
import { MINHASH_DEFAULTS, minhashSettings } from "../data/dedup/minhash.js";
import { murmur3x86_32, utf8 } from "../data/dedup/hash.js";
import { findClusters, findPairs, readRemovals, writeSignatures, type Removal } from "../data/dedup-files-node.js";
import { type DataRecord, readRecords } from "../data/records.js";
import { inputLines, withRereadableInput } from "../data/record-files-node.js";
import { type FlagSpec, Flags, UsageError } from "./args.js";
import { RateLine, type Verdict, recordIo, recordIoFlags, runRecordStep } from "./data.js";

const modeFlags: FlagSpec = {
  exact: { type: "boolean", help: "exact dedup: documents whose normalised text (case, spacing, punctuation, numbers, accents) is the same" },
  minhash: { type: "boolean", help: "MinHash near-dedup: documents sharing an LSH band of their word n-gram signature (signatures' default)" },
};

const minhashFlags: FlagSpec = {
  ngram: { type: "string", help: `MinHash: words per shingle (default ${MINHASH_DEFAULTS.ngram})` },
  bands: { type: "string", help: `MinHash: LSH bands (default ${MINHASH_DEFAULTS.bands})` },
  rows: { type: "string", help: `MinHash: hashes per band (default ${MINHASH_DEFAULTS.rows}); a pair of Jaccard s matches with probability 1−(1−s^rows)^bands` },
  seed: { type: "string", help: `MinHash: seed of the hash functions (default ${MINHASH_DEFAULTS.seed}); every shard must use the same` },
};

// Flag specs built on first use: data.ts imports this file, so its bindings (recordIoFlags) are
// not yet initialised while this module evaluates.
const specs = once(() => {
  const readFlags: FlagSpec = {
    documents: recordIoFlags.documents,
    "text-field": recordIoFlags["text-field"],
    strict: recordIoFlags.strict,
    quiet: recordIoFlags.quiet,
  };
  const shardFlag: FlagSpec = { "shard-id": { type: "string", help: "signatures, filter: the shard's number (a whole number; each shard its own)" } };
  const out: FlagSpec[string] = { type: "string", help: "signatures, buckets, clusters: the binary file written" };
  const band: FlagSpec[string] = { type: "string", help: "buckets: only this band (0-based; default: every band), to run the bands in parallel" };
  const remove: FlagSpec[string] = { type: "string", help: "filter: the removal list clusters wrote" };
  return {
    oneShot: { ...modeFlags, ...minhashFlags, ...recordIoFlags } as FlagSpec,
    signatures: { ...modeFlags, ...minhashFlags, ...readFlags, ...shardFlag, out } as FlagSpec,
    buckets: { band, out, quiet: recordIoFlags.quiet } as FlagSpec,
    clusters: { out, quiet: recordIoFlags.quiet } as FlagSpec,
    filter: { ...shardFlag, remove, ...recordIoFlags } as FlagSpec,
    /** Every flag of every form, for --help. */
    all: { ...modeFlags, ...minhashFlags, ...shardFlag, band, remove, ...recordIoFlags, out: { type: "string", help: `${recordIoFlags.out.help}; the stages' binary file` } } as FlagSpec,
  };
});

function once<T>(make: () => T): () => T {
  let value: T | undefined;
  return () => (value ??= make());
}

const stages = ["signatures", "buckets", "clusters", "filter"] as const;

const help = "exact and MinHash dedup: one-shot (--exact | --minhash) or staged over shards (signatures, buckets, clusters, filter)";

export const dedupStep = {
  run,
  get flags(): FlagSpec {
    return specs().all;
  },
  help,
};

async function run(argv: string[]): Promise<void> {
  const stage = stages.find((s) => s === argv[0]);
  if (stage === undefined) return oneShot(argv);
  const rest = argv.slice(1);
  const f = Flags.parse(rest, specs()[stage]);
  if (stage === "signatures") return signaturesStage(f);
  if (stage === "buckets") return bucketsStage(f);
  if (stage === "clusters") return clustersStage(f);
  return filterStage(f);
}

/** --exact or --minhash, each refusing the other's flags; `fallback` when neither is given. */
function modeOf(f: Flags, fallback?: DedupMode): DedupMode {
  if (f.bool("exact") && f.bool("minhash")) throw new UsageError("--exact and --minhash are two dedups: run one, then the other on its output");
  const mode = f.bool("exact") ? "exact" : f.bool("minhash") ? "minhash" : fallback;
  if (mode === undefined) throw new UsageError(`choose --exact or --minhash (or a stage: ${stages.join(", ")})`);
  if (mode === "exact") for (const k of Object.keys(minhashFlags)) if (f.has(k)) throw new UsageError(`--${k} applies to --minhash, not --exact`);
  return mode;
}

function optionsOf(f: Flags, mode: DedupMode): DedupOptions {
  const io = recordIo(f);
  const settings = (() => {
    try {
      return minhashSettings({ ngram: f.int("ngram", MINHASH_DEFAULTS.ngram, 1), bands: f.int("bands", MINHASH_DEFAULTS.bands, 1), rows: f.int("rows", MINHASH_DEFAULTS.rows, 1), seed: f.int("seed", MINHASH_DEFAULTS.seed, 0) });
    } catch (e) {
      throw new UsageError((e as Error).message);
    }
  })();
  return dedupOptions(mode, settings, io.format, io.textField);
}

function shardIdOf(f: Flags): number {
  if (!f.has("shard-id")) throw new UsageError("--shard-id is required");
  return f.num("shard-id", 0, { integer: true, min: 0, max: 0xfffffffe });
}

/** --out of a stage: a binary file, never stdout. */
function binaryOut(f: Flags): string {
  const out = f.required("out");
  if (out === "-") throw new UsageError("--out must name a file: the stages write binary files, not stdout");
  return out;
}

const elapsed = (t0: number): string => `${((performance.now() - t0) / 1000).toFixed(1)} s`;

/** Every document of a file (or stdin) with a progress line; malformed lines reported unless `quietMalformed`. */
function recordsOf(f: Flags, input: string, head: string, quietMalformed = false): { records: AsyncIterable<DataRecord>; done: () => void } {
  const io = recordIo(f);
  const source = inputLines(input);
  const progress = new RateLine(head, f.bool("quiet"), source.totalBytes);
  let n = 0;
  const records = readRecords(source.lines, {
    format: io.format, textField: io.textField, strict: io.strict, name: source.name,
    onMalformed: (line, reason) => {
      if (!quietMalformed) progress.log(`${head}: ${source.name} line ${line}: ${reason}; skipped`);
    },
  });
  async function* counted(): AsyncGenerator<DataRecord> {
    for await (const r of records) {
      yield r;
      progress.tick(++n, source.bytesRead());
    }
  }
  return { records: counted(), done: () => progress.done() };
}

async function signaturesStage(f: Flags): Promise<void> {
  const mode = modeOf(f, "minhash");
  const options = optionsOf(f, mode);
  const shard = shardIdOf(f);
  const out = binaryOut(f);
  const { input } = recordIo(f);
  const t0 = performance.now();
  const head = "bonsai data dedup signatures";
  const src = recordsOf(f, input, head);
  let stats;
  try {
    stats = await writeSignatures(src.records, options, shard, out);
  } finally {
    src.done();
  }
  const without = stats.docs - stats.entries;
  process.stderr.write(`${head}: shard ${shard}, ${stats.docs} documents${without ? ` (${without} without words: never matched)` : ""}, ${describeOptions(options)} → ${out}, ${elapsed(t0)}\n`);
}

function bucketsStage(f: Flags): void {
  if (f.positionals.length === 0) throw new UsageError("buckets needs the signature files of every shard");
  const band = f.has("band") ? f.int("band", 0, 0) : null;
  const out = binaryOut(f);
  const t0 = performance.now();
  const s = findPairs(f.positionals, band, out);
  process.stderr.write(`bonsai data dedup buckets: ${s.shards} shard${s.shards === 1 ? "" : "s"}, ${s.docs} documents, ${band === null ? "every band" : `band ${band}`}: ${s.pairs} pair${s.pairs === 1 ? "" : "s"} → ${out}, ${elapsed(t0)}\n`);
}

function clustersStage(f: Flags): void {
  if (f.positionals.length === 0) throw new UsageError("clusters needs the signature files of every shard and the pairs files of every band");
  const out = binaryOut(f);
  const t0 = performance.now();
  const s = findClusters(f.positionals, out);
  process.stderr.write(`bonsai data dedup clusters: ${s.shards} shard${s.shards === 1 ? "" : "s"}, ${s.docs} documents, ${s.pairs} pairs: ${s.clustered - s.removed} clusters of ${s.clustered} documents, ${s.removed} to remove → ${out}, ${elapsed(t0)}\n`);
}

/** The judge of a filter pass: removals by document index, checked against the shard's document count. */
function removalJudge(mode: DedupMode, removals: Map<number, Removal>, docs: number, where: string, staged: boolean): { judge: () => Verdict; count: () => number } {
  let index = 0;
  const judge = (): Verdict => {
    const i = index++;
    if (i >= docs) throw new Error(`${where} has more documents than the ${docs} it had when signed: filter the same file, read with the same --documents and --text-field`);
    const rm = removals.get(i);
    if (!rm) return { keep: true };
    const duplicateOf = staged ? { shard: rm.keptShard, index: rm.keptIndex, line: rm.keptLine } : { index: rm.keptIndex, line: rm.keptLine };
    const detail: Record<string, unknown> = { index: i, duplicate_of: duplicateOf };
    if (mode === "minhash") detail.jaccard = Math.round(rm.jaccard * 10000) / 10000;
    return { keep: false, rule: `dedup:${mode}`, detail };
  };
  return { judge, count: () => index };
}

async function filterStage(f: Flags): Promise<void> {
  const shard = shardIdOf(f);
  const removeFile = f.required("remove");
  const io = recordIo(f);
  const list = readRemovals(removeFile, shard);
  if (list.options.documents !== io.format) throw new UsageError(`${removeFile} was made from documents read as --documents ${list.options.documents}; this filter reads --documents ${io.format}`);
  if (list.options.textFieldHash !== murmur3x86_32(utf8(io.textField))) throw new UsageError(`${removeFile} was made from documents read with another --text-field than "${io.textField}"`);
  const where = `${io.input === "-" ? "stdin" : io.input} (shard ${shard})`;
  const { judge, count } = removalJudge(list.options.mode, list.removals, list.docs, where, true);
  await runRecordStep(f, "dedup filter", judge);
  if (count() !== list.docs) throw new Error(`${where} has ${count()} documents but had ${list.docs} when signed: not the file its signatures were made from`);
}

async function oneShot(argv: string[]): Promise<void> {
  const f = Flags.parse(argv, specs().oneShot);
  const mode = modeOf(f);
  const options = optionsOf(f, mode);
  if (mode === "exact") return exactOneShot(f);
  const io = recordIo(f);
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "bonsai-dedup-"));
  try {
    // The filter pass reads the input a second time.
    await withRereadableInput(io.input, async (input) => {
      const sig = path.join(tmp, "0.sig"), pairs = path.join(tmp, "all.pairs"), remove = path.join(tmp, "remove.bin");
      const src = recordsOf(f, input, "bonsai data dedup: signatures", true);
      try {
        await writeSignatures(src.records, options, 0, sig);
      } finally {
        src.done();
      }
      findPairs([sig], null, pairs);
      findClusters([sig, pairs], remove);
      const list = readRemovals(remove, 0);
      const { judge } = removalJudge("minhash", list.removals, list.docs, io.input === "-" ? "stdin" : io.input, false);
      await runRecordStep(f, "dedup", judge, input);
    });
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

/** Exact dedup in one streaming pass: a table of 128-bit hashes of the distinct documents. */
async function exactOneShot(f: Flags): Promise<void> {
  const index = new ExactIndex();
  let lines = new Uint32Array(1024), n = 0;
  await runRecordStep(f, "dedup", (r) => {
    const id = n++;
    if (id === lines.length) {
      const grown = new Uint32Array(2 * lines.length);
      grown.set(lines);
      lines = grown;
    }
    lines[id] = r.line;
    const earlier = index.addOrMatch(id, exactHash(r.text));
    if (earlier === null) return { keep: true };
    return { keep: false, rule: "dedup:exact", detail: { index: id, duplicate_of: { index: earlier, line: lines[earlier] } } };
  });
}
