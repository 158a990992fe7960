// `bonsai distill`: train a student from a teacher (run on the fly, or its top-k log-probabilities
// from a teacher cache), with every model and optimizer flag, checkpoint and resume of `bonsai
// train` (one shared run: train.ts runTraining). `bonsai distill-cache`: write that cache.
import { resolve } from "node:path";
import { statSync } from "node:fs";
import { type FlagSpec, Flags, UsageError, backendFlags, backendFromFlags, describeBackend } from "./args.js";
import { type TrainRun, runTraining, trainFlags } from "./train.js";
import { Progress } from "./progress.js";
import type { Backend } from "../backend/backend.js";
import type { Llama } from "../nn/llama.js";
import type { Tokenizer } from "../tokenizer/tokenizer.js";
import { tokenizerFromJSON } from "../tokenizer/load.js";
import { KD_LOSSES, type DistillOptions, type KdLoss } from "../tensor/ops.js";
import { cachedTeacherObjective, onTheFlyObjective, teacherCacheWindows } from "../train/distill.js";
import { splitTrainVal } from "../data/batches.js";
import { loadModel, readTextFile } from "../io/model-files-node.js";
import { type TeacherCacheHeader, cacheWindowCount, tokensHash } from "../train/teacher-cache.js";
import { TeacherCacheReader, TeacherCacheWriter } from "../train/teacher-cache-node.js";

const { tokenizer: _studentGetsTheTeachersTokenizer, ...studentFlags } = trainFlags;

/** The distillation flags, added to `bonsai train`'s. */
export const kdFlags: FlagSpec = {
  teacher: { type: "string", help: "teacher model: a Bonsai/HF directory, a GGUF (quantized too) or a llama2.c .bin; run on the fly" },
  "teacher-cache": { type: "string", help: "train from a cache of the teacher's top-k (bonsai distill-cache) instead of --teacher" },
  "kd-loss": { type: "string", help: "forward-kl (default), reverse-kl or jsd" },
  alpha: { type: "string", help: "weight of the ground-truth cross-entropy; the KD term gets 1 − alpha (0.5)" },
  temperature: { type: "string", help: "distillation temperature τ; the KD term is scaled by τ² (1; with --teacher-cache, the cache's)" },
  beta: { type: "string", help: "jsd: mixture weight β of the teacher; 0 = forward KL, 1 = reverse KL (0.5)" },
  "on-policy": { type: "string", help: "fraction λ of batches sampled from the student and scored by the teacher (0)" },
};

export const distillFlags: FlagSpec = {
  ...studentFlags,
  data: { type: "string", help: "training text file, tokenized with the teacher's tokenizer" },
  out: { type: "string", help: "the student's checkpoint directory" },
  ...kdFlags,
};

interface DistillSettings {
  loss: KdLoss;
  alpha: number;
  temperature: number;
  beta: number;
  onPolicy: number;
  teacher: string | null;
  teacherCache: string | null;
  [key: string]: unknown;
}

function settingsFromFlags(f: Flags): DistillSettings {
  const loss = (f.str("kd-loss") ?? "forward-kl") as KdLoss;
  if (!KD_LOSSES.includes(loss)) throw new UsageError(`--kd-loss must be one of ${KD_LOSSES.join(", ")} (got "${loss}")`);
  if (f.has("beta") && loss !== "jsd") throw new UsageError("--beta applies to --kd-loss jsd");
  const teacher = f.str("teacher"), cache = f.str("teacher-cache");
  if (teacher !== undefined && cache !== undefined) throw new UsageError("pass either --teacher or --teacher-cache, not both");
  if (teacher === undefined && cache === undefined) throw new UsageError("--teacher (or --teacher-cache) is required");
  const onPolicy = f.num("on-policy", 0, { min: 0, max: 1 });
  if (cache !== undefined && onPolicy > 0) throw new UsageError("--on-policy needs the teacher itself (--teacher), not a cache");
  if (f.has("curriculum") && cache !== undefined) throw new UsageError("--curriculum draws whole documents; a teacher cache holds fixed windows: use --teacher");
  if (f.has("curriculum") && onPolicy > 0) throw new UsageError("--on-policy samples continuations of fixed windows; it does not combine with --curriculum");
  return {
    loss,
    alpha: f.num("alpha", 0.5, { min: 0, max: 1 }),
    // A cache fixes τ: by default the run takes the cache's.
    temperature: f.num("temperature", cache !== undefined && !f.has("temperature") ? cacheTemperature(cache) : 1, { min: 0, exclusiveMin: true }),
    beta: f.num("beta", 0.5, { min: 0, max: 1 }),
    onPolicy,
    teacher: teacher === undefined ? null : resolve(teacher),
    teacherCache: cache === undefined ? null : resolve(cache),
  };
}

function cacheTemperature(path: string): number {
  const r = TeacherCacheReader.open(path);
  r.close();
  return r.header.temperature;
}

/** The teacher for inference: quantized GGUF weights stay quantized, and the graph is fused. */
function loadTeacher(path: string, backend: Backend): { model: Llama; tokenizer: Tokenizer } {
  const loaded = loadModel(path, backend, undefined, { quantized: true, fuse: true });
  if (!loaded.tokenizer) throw new UsageError(`the teacher ${path} has no tokenizer; the student needs the teacher's`);
  return { model: loaded.model, tokenizer: loaded.tokenizer };
}

/** Run `bonsai distill` with parsed flags. */
export async function distill(f: Flags): Promise<TrainRun> {
  let teacher: { model: Llama; tokenizer: Tokenizer } | null = null;
  let cache: TeacherCacheReader | null = null;
  const openCache = (path: string): TeacherCacheReader => (cache ??= TeacherCacheReader.open(path));
  return runTraining(f, {
    command: "distill",
    flags: distillFlags,
    resumeFlags: ["teacher", "teacher-cache"],
    prepare(f, _text, backend) {
      const s = settingsFromFlags(f);
      if (s.teacherCache !== null) {
        const h = openCache(s.teacherCache).header;
        return { tokenizer: tokenizerFromJSON(h.tokenizer), vocabSize: h.vocabSize, blockSize: h.blockSize };
      }
      teacher = loadTeacher(s.teacher!, backend);
      return { tokenizer: teacher.tokenizer, vocabSize: teacher.model.config.vocab_size };
    },
    settings: settingsFromFlags,
    referenceModel: () => teacher?.model ?? null,
    objective({ f, backend, model, options, tokens, settings }) {
      const s = settings as DistillSettings;
      const kd: DistillOptions = { loss: s.loss, alpha: s.alpha, temperature: s.temperature, beta: s.beta };
      // On resume the teacher may have moved: a new path is accepted, the kind of teacher is not.
      if (s.teacherCache !== null) {
        if (f.has("teacher")) throw new UsageError("this run distils from a teacher cache; pass --teacher-cache, not --teacher");
        const reader = openCache(f.str("teacher-cache") ?? s.teacherCache);
        const h = reader.header;
        if (h.data.tokens !== tokens.length || h.data.fnv1a !== tokensHash(tokens))
          throw new UsageError(`the teacher cache ${reader.path} was made from other data (${h.data.tokens} tokens, hash ${h.data.fnv1a}), not --data tokenized as here (${tokens.length} tokens)`);
        return cachedTeacherObjective(reader, model, { ...kd, seed: options.seed, batchSize: options.batchSize, blockSize: options.blockSize });
      }
      if (f.has("teacher-cache")) throw new UsageError("this run distils from a teacher model; pass --teacher, not --teacher-cache");
      teacher ??= loadTeacher(f.str("teacher") ?? s.teacher!, backend);
      return onTheFlyObjective(teacher.model, model, { ...kd, onPolicy: s.onPolicy, seed: options.seed });
    },
    close() {
      cache?.close();
      teacher?.model.dispose();
    },
  });
}

export const distillCacheFlags: FlagSpec = {
  teacher: { type: "string", help: "teacher model (directory, GGUF, llama2.c .bin)" },
  data: { type: "string", help: "text file, tokenized with the teacher's tokenizer; the cache covers its train split (first 90%)" },
  "top-k": { type: "string", help: "log-probabilities kept per position (32)" },
  "block-size": { type: "string", help: "tokens per window; the student trains with this block size (64)" },
  temperature: { type: "string", help: "temperature τ of the cached log-probabilities (1)" },
  precision: { type: "string", help: "log-probabilities as f16 (default) or f32" },
  "batch-size": { type: "string", help: "windows per teacher forward pass (8)" },
  out: { type: "string", help: "cache file to write" },
  ...backendFlags,
};

/** `bonsai distill-cache`: the teacher's top-k log-probabilities of every window of the data. */
export async function distillCacheCommand(argv: string[]): Promise<void> {
  const f = Flags.parse(argv, distillCacheFlags);
  const teacherPath = f.required("teacher"), dataPath = f.required("data"), out = f.required("out");
  const blockSize = f.int("block-size", 64, 1), temperature = f.num("temperature", 1, { min: 0, exclusiveMin: true });
  const precision = f.str("precision") ?? "f16";
  if (precision !== "f16" && precision !== "f32") throw new UsageError(`--precision must be f16 or f32 (got "${precision}")`);
  const batch = f.int("batch-size", 8, 1);
  const backend = await backendFromFlags(f);
  const teacher = loadTeacher(teacherPath, backend);
  try {
    const V = teacher.model.config.vocab_size;
    const k = f.int("top-k", Math.min(32, V), 1);
    if (k > V) throw new UsageError(`--top-k ${k} exceeds the teacher's vocabulary of ${V}`);
    if (blockSize > teacher.model.config.max_position_embeddings)
      throw new UsageError(`--block-size ${blockSize} exceeds the teacher's max_position_embeddings ${teacher.model.config.max_position_embeddings}`);
    const text = readTextFile(dataPath);
    const tokens = Int32Array.from(teacher.tokenizer.encode(text));
    const train = splitTrainVal(tokens).train;
    const windows = cacheWindowCount(train.length, blockSize);
    if (windows === 0) throw new UsageError(`${dataPath}: its train split has ${train.length} tokens, fewer than block size + 1 = ${blockSize + 1}`);
    const header: TeacherCacheHeader = {
      format: "bonsai-teacher-cache",
      version: 1,
      temperature,
      k,
      vocabSize: V,
      blockSize,
      windows,
      idType: V <= 65536 ? "u16" : "u32",
      logProbType: precision,
      data: { tokens: tokens.length, fnv1a: tokensHash(tokens) },
      teacher: resolve(teacherPath),
      tokenizer: teacher.tokenizer.toJSON(),
    };
    process.stderr.write(`bonsai distill-cache: ${windows} windows of ${blockSize} tokens, top-${k} at τ = ${temperature}, vocab ${V}, backend ${describeBackend(backend)}\n`);
    const writer = new TeacherCacheWriter(out, header);
    const progress = new Progress(windows, 100);
    try {
      let done = 0;
      for await (const w of teacherCacheWindows(teacher.model, train, { blockSize, k, temperature, batch })) {
        writer.append(w);
        progress.update(++done, `${done * blockSize} positions`, 0);
      }
      writer.close();
    } catch (e) {
      writer.abort();
      throw e;
    }
    progress.done();
    const bytes = statSync(out).size;
    process.stderr.write(`bonsai distill-cache: wrote ${out} (${bytes.toLocaleString("en-US")} bytes, ${(bytes / (windows * blockSize)).toFixed(1)} per position)\n`);
  } finally {
    teacher.model.dispose();
  }
}
