// `bonsai data train-classifier` and `bonsai data score`: the fast half of the phi-1 /
// FineWeb-Edu recipe. train-classifier learns, from a teacher's labels (`bonsai data label`), a
// linear classifier over hashed word n-grams (DCLM's fastText-style filter) or over mean-pooled
// Bonsai embeddings, reports on held-out documents how well it reproduces the teacher, and saves
// it (data/classifier/classifier.ts's file). score adds its score to every record; keeping the
// best is `bonsai data filter --min-score X` (its --score-field defaults to "score", as here).
//   bonsai data label docs.jsonl --endpoint http://localhost:8000/v1 --model M --sample 5000 --out labels.jsonl
//   bonsai data train-classifier labels.jsonl --out edu.clf --report edu.json
//   bonsai data score docs.jsonl --classifier edu.clf | bonsai data filter - --rules none --min-score 3 --out edu.jsonl
import * as fs from "node:fs";
import { loadModel } from "../io/model-files-node.js";
import { readRecords } from "../data/records.js";
import { inputLines, TextSink } from "../data/record-files-node.js";
import { type FeatureSpec, ClassifierFileError, QualityClassifier, describeFeatures } from "../data/classifier/classifier.js";
import { type HashedFeatureSpec, type SparseVector, HashedFeaturizer, checkHashedFeatureSpec } from "../data/classifier/features.js";
import { EmbeddingFeaturizer, embeddingModelMismatch } from "../data/classifier/embeddings.js";
import { type ClassifierReport, trainClassifier } from "../data/classifier/train.js";
import type { BinaryMetrics } from "../data/classifier/metrics.js";
import { type FlagSpec, Flags, UsageError, backendFlags, describeModelPlace, modelPlaceFromFlags } from "./args.js";
import { RateLine, recordIo, recordIoFlags, runRecordStep } from "./data.js";
import { parseRange } from "./data-label.js";
import type { Llama } from "../nn/llama.js";

/** The three steps of the classifier recipe, registered together (data-command.ts). */
export { labelStep } from "./data-label.js";

const embeddingFlags: FlagSpec = {
  model: { type: "string", help: "--features embeddings: the Bonsai model whose mean-pooled final hidden states are the features" },
  tokenizer: { type: "string", help: "--features embeddings: a tokenizer file overriding the model's" },
  ...backendFlags,
};

/** The model for embedding features, loaded after the flags were checked; `check` says why it cannot serve (then it is refused). */
async function loadEmbeddingModel(f: Flags, step: string, check: (model: Llama) => string | null = () => null): Promise<{ model: Llama; tokenizer: NonNullable<ReturnType<typeof loadModel>["tokenizer"]> }> {
  const { where } = await modelPlaceFromFlags(f);
  const { model, tokenizer } = loadModel(f.required("model"), where, f.str("tokenizer"));
  const why = tokenizer ? check(model) : "it has no tokenizer; pass --tokenizer";
  if (why !== null) {
    model.dispose();
    throw new UsageError(`--model ${f.required("model")}: ${why}`);
  }
  process.stderr.write(`bonsai data ${step}: embeddings of ${f.required("model")} on ${describeModelPlace(model)}\n`);
  return { model, tokenizer: tokenizer! };
}

// ---------------------------------------------------------------------------------------------
// train-classifier

export const trainClassifierFlags: FlagSpec = {
  out: { type: "string", help: "the classifier file to write (required)" },
  report: { type: "string", help: "also write the held-out report as JSON to this file" },
  holdout: { type: "string", help: "fraction of the labelled documents held out for the report, by a seeded split (0.2; 0 = train on all, no report)" },
  epochs: { type: "string", help: "passes over the training documents (5)" },
  seed: { type: "string", help: "the split's and the visiting order's seed (0): the same seed and labels give the same file" },
  threshold: { type: "string", help: "label ≥ this is the binary head's positive class (3, FineWeb-Edu's)" },
  "label-range": { type: "string", help: "MIN-MAX of the labels; the regression's score is clamped to it (0-5)" },
  "label-field": { type: "string", help: 'the field holding the label (default "label"); records where it is null or absent are skipped' },
  features: { type: "string", help: "ngrams (default: hashed word n-grams) or embeddings (mean-pooled hidden states of --model)" },
  bits: { type: "string", help: "ngrams: 2^bits hash buckets (18; 18–20 is usual)" },
  "hash-seed": { type: "string", help: "ngrams: MurmurHash3's seed (0)" },
  "word-ngrams": { type: "string", help: "ngrams: word n-grams up to N (2: unigrams and bigrams, as DCLM's fastText filter)" },
  "char-ngrams": { type: "string", help: "ngrams: also character n-grams of each word, MIN-MAX (e.g. 3-5, fastText's minn/maxn; default none)" },
  "max-tokens": { type: "string", help: "embeddings: read each document's first N tokens (default: the model's context)" },
  "learning-rate": { type: "string", help: "Adagrad's step size (0.5)" },
  l2: { type: "string", help: "L2 penalty on the weights (1e-6)" },
  ...embeddingFlags,
  "text-field": { type: "string", help: 'the field holding the text (default "text")' },
  strict: { type: "boolean", help: "stop at the first malformed JSONL line (default: count it, name its line on stderr, skip it)" },
  quiet: { type: "boolean", help: "no progress line" },
};

const pct = (x: number): string => `${(100 * x).toFixed(1)}%`;
const describeBinary = (m: BinaryMetrics): string =>
  `accuracy ${pct(m.accuracy)} (majority class ${pct(m.majorityAccuracy)}), precision ${pct(m.precision)}, recall ${pct(m.recall)}, F1 ${m.f1.toFixed(3)} (tp ${m.tp}, fp ${m.fp}, tn ${m.tn}, fn ${m.fn})`;

/** The held-out report's lines for stderr. */
export function describeReport(r: ClassifierReport): string {
  const hist = Object.entries(r.labels).sort((a, b) => Number(a[0]) - Number(b[0])).map(([k, v]) => `${k}: ${v}`).join(", ");
  const lines = [`bonsai data train-classifier: ${r.train} documents trained on, ${r.heldOut} held out; labels ${hist}; ${pct(r.positiveRate)} ≥ ${r.threshold}; ${r.features}`];
  const m = r.heldOutMetrics;
  if (m) {
    lines.push(`  held out, binary head (p ≥ 0.5) vs label ≥ ${r.threshold}: ${describeBinary(m.binary)}`);
    lines.push(`  held out, regression head: MAE ${m.regression.mae.toFixed(3)} (predicting the mean: ${m.regression.meanBaselineMae.toFixed(3)}), Spearman ${m.regression.spearman.toFixed(3)}`);
    lines.push(`  held out, regression score ≥ ${r.threshold} vs label ≥ ${r.threshold}: ${describeBinary(m.regressionDecision)}`);
  }
  return lines.join("\n");
}

function hashedSpecFromFlags(f: Flags): HashedFeatureSpec {
  let charNgrams: [number, number] | null = null;
  const raw = f.str("char-ngrams");
  if (raw !== undefined && raw !== "none") {
    const m = /^(\d+)-(\d+)$/.exec(raw.trim());
    if (!m) throw new UsageError(`--char-ngrams must be MIN-MAX (e.g. 3-5) or none (got "${raw}")`);
    charNgrams = [Number(m[1]), Number(m[2])];
  }
  const spec: HashedFeatureSpec = { kind: "hashed-ngrams", bits: f.int("bits", 18, 1), hashSeed: f.int("hash-seed", 0, 0), wordNgrams: f.int("word-ngrams", 2, 1), charNgrams };
  try {
    checkHashedFeatureSpec(spec);
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  return spec;
}

async function trainRun(argv: string[]): Promise<void> {
  const f = Flags.parse(argv, trainClassifierFlags);
  if (f.positionals.length !== 1) throw new UsageError(`give one labelled JSONL file (or - for stdin), as bonsai data label writes${f.positionals.length ? `; got ${f.positionals.join(" ")}` : ""}`);
  const input = f.positionals[0];
  const out = f.required("out");
  const holdout = f.num("holdout", 0.2, { min: 0, max: 0.9 });
  const epochs = f.int("epochs", 5, 1), seed = f.int("seed", 0, 0);
  const threshold = f.num("threshold", 3);
  const labelRange = parseRange(f.str("label-range"), "label-range", [0, 5]);
  const learningRate = f.num("learning-rate", 0.5, { min: 0, exclusiveMin: true }), l2 = f.num("l2", 1e-6, { min: 0 });
  const labelField = f.str("label-field") ?? "label", textField = f.str("text-field") ?? "text";
  const kind = f.str("features") ?? "ngrams";
  if (kind !== "ngrams" && kind !== "embeddings") throw new UsageError(`--features must be ngrams or embeddings (got "${kind}")`);
  const ngramOnly = ["bits", "hash-seed", "word-ngrams", "char-ngrams"], embeddingOnly = ["model", "tokenizer", "max-tokens", ...Object.keys(backendFlags)];
  const wrong = (kind === "ngrams" ? embeddingOnly : ngramOnly).find((n) => f.has(n));
  if (wrong) throw new UsageError(`--${wrong} applies to --features ${kind === "ngrams" ? "embeddings" : "ngrams"}`);
  if (kind === "embeddings" && !f.has("model")) throw new UsageError("--features embeddings needs --model PATH");
  const hashed = kind === "ngrams" ? hashedSpecFromFlags(f) : null;
  if (input !== "-" && !fs.existsSync(input)) throw new Error(`file not found: ${input}`);

  // The labelled documents: records whose label is a number; null (unlabelled) and absent are skipped.
  const source = inputLines(input);
  const docs: { text: string; label: number }[] = [];
  let unlabelled = 0, malformed = 0;
  for await (const r of readRecords(source.lines, {
    format: "jsonl", textField, strict: f.bool("strict"), name: source.name,
    onMalformed: (line, reason) => {
      malformed++;
      process.stderr.write(`bonsai data train-classifier: ${source.name} line ${line}: ${reason}; skipped\n`);
    },
  })) {
    const label = r.fields?.[labelField];
    if (label === null || label === undefined) unlabelled++;
    else if (typeof label !== "number" || !Number.isFinite(label)) {
      malformed++;
      process.stderr.write(`bonsai data train-classifier: ${source.name} line ${r.line}: "${labelField}" is not a number (${JSON.stringify(label)}); skipped\n`);
    } else docs.push({ text: r.text, label });
  }
  if (docs.length < 2) throw new Error(`${source.name}: ${docs.length} labelled document${docs.length === 1 ? "" : "s"} (a number in "${labelField}"); train-classifier needs at least 2`);
  if (unlabelled || malformed) process.stderr.write(`bonsai data train-classifier: ${docs.length} labelled documents; ${unlabelled} unlabelled and ${malformed} malformed skipped\n`);

  let features: FeatureSpec, featurize: (text: string) => SparseVector | Promise<SparseVector>, dispose = (): void => {};
  if (hashed) {
    const h = new HashedFeaturizer(hashed);
    features = hashed;
    featurize = (t) => h.features(t);
  } else {
    const { model, tokenizer } = await loadEmbeddingModel(f, "train-classifier");
    const spec = EmbeddingFeaturizer.specFor(model, f.required("model"), f.int("max-tokens", model.config.max_position_embeddings, 1));
    const e = new EmbeddingFeaturizer(model, tokenizer, spec);
    features = spec;
    featurize = (t) => e.features(t);
    dispose = () => model.dispose();
  }
  const progress = new RateLine("bonsai data train-classifier: features", f.bool("quiet"), docs.length);
  let result;
  try {
    result = await trainClassifier(docs, { features, featurize, threshold, labelRange, holdout, epochs, seed, learningRate, l2, onFeatures: (n) => progress.tick(n, n) });
  } catch (e) {
    if (/labelled document|held-out fraction/.test((e as Error).message)) throw new UsageError((e as Error).message);
    throw e;
  } finally {
    progress.done();
    dispose();
  }
  const { classifier, report } = result;
  const bytes = classifier.toBytes();
  const reportSink = f.has("report") ? new TextSink(f.required("report")) : null;
  // Written beside and renamed into place, as TextSink does for text: a kill leaves the old file or none.
  const tmp = `${out}.tmp-${process.pid}`;
  try {
    fs.writeFileSync(tmp, bytes);
    await reportSink?.write(JSON.stringify({ input, ...report }, null, 2) + "\n");
    await reportSink?.close();
    fs.renameSync(tmp, out);
  } catch (e) {
    fs.rmSync(tmp, { force: true });
    reportSink?.abandon();
    throw e;
  }
  process.stderr.write(describeReport(report) + "\n");
  process.stderr.write(`bonsai data train-classifier: wrote ${out} (${(bytes.length / 1024).toFixed(1)} KiB)${reportSink ? ` and ${f.required("report")}` : ""}\n`);
}

export const trainClassifierStep = {
  run: trainRun,
  flags: trainClassifierFlags,
  help: "train a quality classifier (hashed n-grams or embeddings, linear) on label's output; held-out accuracy/F1 against the teacher",
};

// ---------------------------------------------------------------------------------------------
// score

export const scoreFlags: FlagSpec = {
  classifier: { type: "string", help: "the classifier file (bonsai data train-classifier's; required)" },
  field: { type: "string", help: 'the field the score is written to (default "score": what data filter --min-score reads)' },
  head: { type: "string", help: "regression (default: the 0–5 estimate of the teacher's label, FineWeb-Edu's score) or binary (the probability that label ≥ threshold, DCLM's fastText score)" },
  digits: { type: "string", help: "significant digits of the score written (4)" },
  ...embeddingFlags,
  ...recordIoFlags,
};

/** A classifier file read, with its errors as one line. */
export function readClassifier(path: string): QualityClassifier {
  let bytes: Uint8Array;
  try {
    bytes = fs.readFileSync(path);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new UsageError(`--classifier ${path}: ${code === "ENOENT" ? "no such file" : code === "EISDIR" ? "is a directory" : (e as Error).message}`);
  }
  try {
    return QualityClassifier.fromBytes(bytes, { name: path });
  } catch (e) {
    if (e instanceof ClassifierFileError) throw new UsageError(e.message);
    throw e;
  }
}

async function scoreRun(argv: string[]): Promise<void> {
  const f = Flags.parse(argv, scoreFlags);
  const io = recordIo(f);
  if (io.outFormat !== "jsonl") throw new UsageError(`the score is a field of a JSONL record; --documents ${io.outFormat} has none (--out-documents jsonl writes stories or lines as JSONL)`);
  const field = f.str("field") ?? "score";
  if (field === io.textField) throw new UsageError(`--field ${field} is the text field`);
  const head = f.str("head") ?? "regression";
  if (head !== "regression" && head !== "binary") throw new UsageError(`--head must be regression or binary (got "${head}")`);
  const digits = f.int("digits", 4, 1);
  if (digits > 17) throw new UsageError(`--digits must be <= 17 (got ${digits})`);
  const clf = readClassifier(f.required("classifier"));
  const spec = clf.features;
  if (spec.kind === "hashed-ngrams") {
    const wrong = ["model", "tokenizer", ...Object.keys(backendFlags)].find((n) => f.has(n));
    if (wrong) throw new UsageError(`--${wrong}: ${f.required("classifier")} reads hashed n-grams, not a model's embeddings`);
  } else if (!f.has("model")) throw new UsageError(`${f.required("classifier")} reads ${describeFeatures(spec)}: give that model with --model`);
  if (io.input !== "-" && !fs.existsSync(io.input)) throw new Error(`file not found: ${io.input}`);

  let featurize: (text: string) => SparseVector | Promise<SparseVector>, dispose = (): void => {};
  if (spec.kind === "hashed-ngrams") {
    const h = new HashedFeaturizer(spec);
    featurize = (t) => h.features(t);
  } else {
    const { model, tokenizer } = await loadEmbeddingModel(f, "score", (m) => embeddingModelMismatch(spec, m));
    const e = new EmbeddingFeaturizer(model, tokenizer, spec);
    featurize = (t) => e.features(t);
    dispose = () => model.dispose();
  }
  const round = (x: number): number => Number(x.toPrecision(digits));
  try {
    await runRecordStep(f, "score", async (r) => {
      const p = clf.predict(await featurize(r.text));
      return { keep: true, extra: { [field]: round(head === "regression" ? p.score : p.probability) } };
    });
  } finally {
    dispose();
  }
}

export const scoreStep = {
  run: scoreRun,
  flags: scoreFlags,
  help: "add a quality classifier's score to every JSONL record (--classifier FILE); keep the best with data filter --min-score",
};
