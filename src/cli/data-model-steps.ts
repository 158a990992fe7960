// `bonsai data perplexity` and `bonsai data prune`: documents kept by a reference model's view of
// them. perplexity (CCNet, Wenzek et al. 2020): exp(mean per-token cross-entropy) of each document,
// kept between two percentiles (by default CCNet's head and middle buckets: the 70% closest to the
// reference's data). prune (Marion et al. 2023, "When Less is More"): keep a fraction of the
// documents by their mean loss — the easiest, the hardest, or the middle (their best choice) —
// the data-side twin of the curriculum's teacher-loss scorer.
//
// Both read the input twice: scores first (only numbers are kept, not text), then the records
// again, in the same order, to write those kept. stdin is spooled to a temporary file for that.
import { existsSync } from "node:fs";
import { type FlagSpec, Flags, UsageError, backendFlags, describeModelPlace, modelPlaceFromFlags } from "./args.js";
import { RateLine, recordIo, recordIoFlags, runRecordStep } from "./data.js";
import { loadModel } from "../io/model-files-node.js";
import { inputLines, withRereadableInput } from "../data/record-files-node.js";
import { readRecords } from "../data/records.js";
import { keepRankRange, pruneRange, pruneSides, type PruneSide } from "../data/rank-select.js";
import { sampleLosses } from "../train/curriculum.js";
import type { Llama } from "../nn/llama.js";
import type { Tokenizer } from "../tokenizer/tokenizer.js";

const modelFlags: FlagSpec = {
  model: { type: "string", help: "the reference model (any model bonsai loads)" },
  tokenizer: { type: "string", help: "tokenizer file overriding the model's" },
  "max-tokens": { type: "string", help: "score each document's first N tokens only; 0 = all (0)" },
  "batch-size": { type: "string", help: "windows of the model's context per forward pass (16)" },
  ...backendFlags,
};

/** Documents scored per batch of forward passes: bounds the text held at once. */
const CHUNK = 64;

/**
 * Each document's mean per-token loss under `model`, in input order: NaN for a document of fewer
 * than 2 tokens, and for one the tokenizer cannot encode (its message in `unencodable`).
 */
async function scoreInput(f: Flags, file: string, model: Llama, tokenizer: Tokenizer, step: string, unencodable: Map<number, string>): Promise<Float64Array> {
  const io = recordIo(f);
  const source = inputLines(file);
  const progress = new RateLine(`bonsai data ${step}: scoring`, f.bool("quiet"), source.totalBytes);
  const scores: number[] = [];
  const maxTargets = f.int("max-tokens", 0, 0), batch = f.int("batch-size", 16, 1);
  let chunk: Int32Array[] = [];
  const flush = async (): Promise<void> => {
    const long = chunk.map((ids, i) => ({ ids, i })).filter((s) => s.ids.length >= 2);
    const losses = long.length > 0 ? await sampleLosses(model, long.map((s) => ({ ids: s.ids, fields: {}, line: 0 })), { seq: model.config.max_position_embeddings, batch, maxTargets }) : [];
    const out = new Array<number>(chunk.length).fill(NaN);
    long.forEach((s, j) => (out[s.i] = losses[j]));
    scores.push(...out);
    chunk = [];
  };
  // BOS first, as llama.cpp's perplexity and the training windows see a document.
  for await (const r of readRecords(source.lines, { format: io.format, textField: io.textField, strict: io.strict })) {
    let ids: number[] = [];
    try {
      ids = tokenizer.encode(r.text, { addBos: true });
    } catch (e) {
      unencodable.set(scores.length + chunk.length, (e as Error).message.split("\n")[0]);
    }
    chunk.push(Int32Array.from(ids));
    if (chunk.length === CHUNK) await flush();
    progress.tick(scores.length + chunk.length, source.bytesRead());
  }
  await flush();
  progress.done();
  return Float64Array.from(scores);
}

/** What a step keeps of the scores: its flags read (and checked) before the model is loaded. */
type Selection = { rule: string; field: string; value: (loss: number) => number; keep: (scores: Float64Array) => Uint8Array };

/** Run a model-scored step: load the model, spool stdin, score, then keep what `select` says. */
async function modelStep(argv: string[], spec: FlagSpec, step: string, select: (f: Flags) => Selection): Promise<void> {
  const f = Flags.parse(argv, spec);
  const io = recordIo(f);
  const { rule, field, value, keep: choose } = select(f);
  if (io.input !== "-" && !existsSync(io.input)) throw new Error(`file not found: ${io.input}`);
  const { where } = await modelPlaceFromFlags(f);
  const { model, tokenizer } = loadModel(f.required("model"), where, f.str("tokenizer"));
  if (!tokenizer) throw new UsageError("the model has no tokenizer; pass --tokenizer");
  process.stderr.write(`bonsai data ${step}: reference ${f.required("model")} on ${describeModelPlace(model)}\n`);
  try {
    await withRereadableInput(io.input, async (input) => {
      const unencodable = new Map<number, string>();
      const scores = await scoreInput(f, input, model, tokenizer, step, unencodable);
      const keep = choose(scores);
      let i = 0;
      await runRecordStep(f, step, (r) => {
        const j = i++, loss = scores[j];
        if (unencodable.has(j)) return { keep: false, rule: `${step}:unencodable`, detail: { error: unencodable.get(j) } };
        if (Number.isNaN(loss)) return { keep: false, rule: `${step}:too-short`, detail: { tokens: "< 2" } };
        if (keep[j]) return { keep: true, extra: { [field]: Number(value(loss).toPrecision(6)) } };
        return { keep: false, rule, detail: { [field]: Number(value(loss).toPrecision(6)) } };
      }, input);
    });
  } finally {
    model.dispose();
  }
}

export const perplexityFlags: FlagSpec = {
  ...modelFlags,
  "min-percentile": { type: "string", help: "keep documents at or above this perplexity percentile (0)" },
  "max-percentile": { type: "string", help: "keep documents below this perplexity percentile (70: CCNet's head and middle buckets)" },
  field: { type: "string", help: 'jsonl: the field the perplexity is written to in kept records ("perplexity")' },
  ...recordIoFlags,
};

export const perplexityStep = {
  help: "per-document perplexity under a reference model (CCNet), kept between percentiles (--model PATH)",
  flags: perplexityFlags,
  run: (argv: string[]) =>
    modelStep(argv, perplexityFlags, "perplexity", (f) => {
      const lo = f.num("min-percentile", 0, { min: 0, max: 100 }), hi = f.num("max-percentile", 70, { min: 0, max: 100 });
      if (lo > hi) throw new UsageError(`--min-percentile ${lo} is above --max-percentile ${hi}`);
      return { keep: (scores) => keepRankRange(scores, lo / 100, hi / 100), rule: "perplexity:percentile", field: f.str("field") ?? "perplexity", value: Math.exp };
    }),
};

export const pruneFlags: FlagSpec = {
  ...modelFlags,
  keep: { type: "string", help: "fraction of the documents to keep, in (0, 1]" },
  by: { type: "string", help: `which: ${pruneSides.join(", ")} (middle: around the median loss, Marion et al.'s best; default)` },
  field: { type: "string", help: 'jsonl: the field the mean loss is written to in kept records ("loss")' },
  ...recordIoFlags,
};

export const pruneStep = {
  help: "loss-based pruning: keep a fraction of the documents by a reference model's mean loss (--model PATH --keep F)",
  flags: pruneFlags,
  run: (argv: string[]) =>
    modelStep(argv, pruneFlags, "prune", (f) => {
      const side = (f.str("by") ?? "middle") as PruneSide;
      if (!pruneSides.includes(side)) throw new UsageError(`--by must be one of ${pruneSides.join(", ")} (got "${side}")`);
      const fraction = f.num("keep", NaN, { min: 0, exclusiveMin: true, max: 1 });
      if (Number.isNaN(fraction)) throw new UsageError("--keep is required");
      const [from, to] = pruneRange(side, fraction);
      return { keep: (scores) => keepRankRange(scores, from, to), rule: `prune:${side}`, field: f.str("field") ?? "loss", value: (x) => x };
    }),
};
