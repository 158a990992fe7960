// `bonsai train`: pre-train a Llama model on a text file, with checkpoints that resume exactly.
import { appendFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { type FlagSpec, Flags, UsageError, backendFlags, backendFromFlags, describeBackend } from "./args.js";
import { Progress, formatDuration } from "./progress.js";
import type { Backend } from "../backend/backend.js";
import { Llama } from "../nn/llama.js";
import { type LlamaConfig, defaultIntermediateSize, isMoe, validateConfig } from "../nn/config.js";
import { type Objective, type RouterStats, Trainer, type TrainOptions } from "../train/trainer.js";
import { splitTrainVal } from "../data/batches.js";
import { CharTokenizer } from "../tokenizer/char-tokenizer.js";
import type { Tokenizer } from "../tokenizer/tokenizer.js";
import { jsonFile, modelFiles } from "../io/checkpoint.js";
import { serializeSafetensors } from "../format/safetensors.js";
import { loadModel, loadTokenizerFile, readCheckpointJson, readCheckpointTensors, readTextFile, writeCheckpoint } from "../io/model-files-node.js";
import type { AdamW } from "../train/adamw.js";
import { QAT_FILE, applyQat, parseQatSetting, qatFile } from "../train/qat.js";
import { Curriculum, type CurriculumState, curriculumMetrics } from "../train/curriculum.js";
import { concatSamples, splitDocuments, splitSamples, tokenizeDocuments } from "../data/documents.js";
import { type CurriculumSettings, SHAPE_FLAGS, curriculumFlags, curriculumFromFlags, initFlags, moeFlags, moeFromFlags, qatFlags, qatFromFlags } from "./training-flags.js";
import { upcycle } from "../nn/upcycle.js";

export const trainFlags: FlagSpec = {
  data: { type: "string", help: "training text file" },
  tokenizer: { type: "string", help: "\"char\" (default: characters of the file) or a Bonsai tokenizer .json" },
  layers: { type: "string", help: "decoder layers (4)" },
  heads: { type: "string", help: "attention heads (4)" },
  "kv-heads": { type: "string", help: "key/value heads, dividing heads; 1 = MQA (= heads)" },
  dim: { type: "string", help: "hidden size (128)" },
  "intermediate-size": { type: "string", help: "SwiGLU width (2/3·4·dim rounded up to 32)" },
  "tie-embeddings": { type: "boolean", help: "share the token embedding and the LM head" },
  "rope-theta": { type: "string", help: "rotary base (10000)" },
  "block-size": { type: "string", help: "context length in tokens (64)" },
  "batch-size": { type: "string", help: "sequences per micro-batch (12)" },
  "grad-accum": { type: "string", help: "micro-batches per optimizer step (1)" },
  iters: { type: "string", help: "optimizer steps (2000)" },
  lr: { type: "string", help: "peak learning rate (1e-3)" },
  "min-lr": { type: "string", help: "learning rate at the end of the cosine (1e-4)" },
  warmup: { type: "string", help: "linear warm-up steps (100)" },
  "decay-iters": { type: "string", help: "step where the cosine reaches min-lr (= iters)" },
  "weight-decay": { type: "string", help: "AdamW decoupled weight decay on matrices (0.1)" },
  beta1: { type: "string", help: "AdamW β1 (0.9)" },
  beta2: { type: "string", help: "AdamW β2 (0.99)" },
  "grad-clip": { type: "string", help: "clip the global gradient norm; 0 = off (1.0)" },
  dropout: { type: "string", help: "dropout probability during training (0)" },
  "eval-interval": { type: "string", help: "evaluate and checkpoint every N steps (250)" },
  "eval-iters": { type: "string", help: "batches per split in each evaluation (20)" },
  "log-interval": { type: "string", help: "progress line every N steps when stderr is not a terminal (100)" },
  seed: { type: "string", help: "seed of initialisation, batches and dropout (1337)" },
  out: { type: "string", help: "checkpoint directory" },
  resume: { type: "boolean", help: "continue the run saved in --out" },
  ...moeFlags,
  ...backendFlags,
  ...initFlags,
  ...qatFlags,
  ...curriculumFlags,
};

const STATE_FILE = "training_state.json";
const OPTIMIZER_FILE = "optimizer.safetensors";
const METRICS_FILE = "metrics.jsonl";
const CURRICULUM_STATE_FILE = "curriculum_state.json";

interface TrainingState {
  format: "bonsai-training-state";
  version: 1;
  /** Completed iterations: a resumed run starts here. */
  iter: number;
  optimizerStep: number;
  options: TrainOptions;
  data: { path: string; bytes: number; fnv1a: string };
  /** What the run's objective was configured with (distillation: loss and teacher); absent for `train`. */
  objective?: Record<string, unknown>;
  /** The model the run started from (--init), for the record. */
  init?: string;
  /** A curriculum run's settings; its scores are in curriculum_state.json. */
  curriculum?: CurriculumSettings;
}

/** FNV-1a of the data file, to refuse resuming on different data. */
function fnv1a(text: string): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193);
  return (h >>> 0).toString(16).padStart(8, "0");
}

function optionsFromFlags(f: Flags, blockSize = 64): TrainOptions {
  const iters = f.int("iters", 2000, 1);
  return {
    batchSize: f.int("batch-size", 12, 1),
    blockSize: f.int("block-size", blockSize, 1),
    iters,
    lr: f.num("lr", 1e-3, { min: 0, exclusiveMin: true }),
    minLr: f.num("min-lr", 1e-4, { min: 0 }),
    warmup: f.int("warmup", 100, 0),
    decayIters: f.int("decay-iters", iters, 1),
    weightDecay: f.num("weight-decay", 0.1, { min: 0 }),
    beta1: f.num("beta1", 0.9, { min: 0, max: 0.999999 }),
    beta2: f.num("beta2", 0.99, { min: 0, max: 0.999999 }),
    gradClip: f.num("grad-clip", 1.0, { min: 0 }),
    gradAccum: f.int("grad-accum", 1, 1),
    evalInterval: f.int("eval-interval", 250, 1),
    evalIters: f.int("eval-iters", 20, 1),
    seed: f.int("seed", 1337, 0),
  };
}

function configFromFlags(f: Flags, vocabSize: number, blockSize: number): LlamaConfig {
  const dim = f.int("dim", 128, 1), heads = f.int("heads", 4, 1);
  const config: LlamaConfig = {
    vocab_size: vocabSize,
    hidden_size: dim,
    intermediate_size: f.int("intermediate-size", defaultIntermediateSize(dim), 1),
    num_hidden_layers: f.int("layers", 4, 1),
    num_attention_heads: heads,
    num_key_value_heads: f.int("kv-heads", heads, 1),
    max_position_embeddings: blockSize,
    rms_norm_eps: 1e-5,
    rope_theta: f.num("rope-theta", 10000, { min: 0, exclusiveMin: true }),
    tie_word_embeddings: f.bool("tie-embeddings"),
    dropout: f.num("dropout", 0, { min: 0, max: 0.99 }),
  };
  if (f.has("router-noise")) throw new UsageError("--router-noise applies to upcycling: --init DENSE --experts E");
  const moe = moeFromFlags(f);
  if (moe) {
    config.num_local_experts = moe.experts;
    config.num_experts_per_tok = moe.expertsPerToken;
    config.router_aux_loss_coef = moe.auxLossCoef;
    config.router_z_loss_coef = moe.zLossCoef;
  }
  try {
    validateConfig(config);
  } catch (e) {
    throw new UsageError((e as Error).message.replace(/^config: /, "model: "));
  }
  return config;
}

export interface TrainRun {
  out: string;
  model: Llama;
  tokenizer: Tokenizer;
  valLoss: number;
}

/**
 * What distinguishes a command that trains (`train`, `distill`) from the shared run below: where
 * a fresh run's tokenizer comes from, what is minimised, and what settings a resume must keep.
 */
export interface TrainingSetup {
  /** Command name, for messages ("train", "distill"). */
  command: string;
  /** The command's flags; on --resume only `resumeFlags` (and data, out, resume, backend, iters, log-interval) may be given. */
  flags: FlagSpec;
  resumeFlags?: readonly string[];
  /** The corpus as text instead of --data (`bonsai demo`). */
  corpus?: { name: string; text: string };
  /**
   * A fresh run's tokenizer and vocabulary size, and a default block size (the teacher cache's).
   * `init` is the model of --init with its tokenizer, when given.
   */
  prepare(f: Flags, text: string, backend: Backend, init?: { model: Llama; tokenizer: Tokenizer | null }): { tokenizer: Tokenizer; vocabSize: number; blockSize?: number };
  /** The reference model of `--curriculum teacher-loss` when --curriculum-model is not given (distill: the teacher). */
  referenceModel?(): Llama | null;
  /**
   * Settings of the objective saved in training_state.json: `fresh` from the flags, and on resume
   * the saved ones come back through `objective`.
   */
  settings?(f: Flags): Record<string, unknown>;
  /** The objective (default: next-token cross-entropy), for the fresh or resumed model. */
  objective?(run: { f: Flags; backend: Backend; model: Llama; tokenizer: Tokenizer; options: TrainOptions; tokens: Int32Array; settings: Record<string, unknown> }): Objective;
  /** Release what the objective holds (a teacher, an open cache). */
  close?(): void;
}

/** Run `bonsai train` with parsed flags; also used by `bonsai demo` with a corpus given as text. */
export async function train(f: Flags, corpus?: { name: string; text: string }): Promise<TrainRun> {
  return runTraining(f, {
    command: "train",
    flags: trainFlags,
    corpus,
    prepare(f, text, _backend, init) {
      if (init && !f.has("tokenizer")) {
        if (!init.tokenizer) throw new UsageError(`--init: ${f.str("init")} has no tokenizer; pass --tokenizer`);
        return { tokenizer: init.tokenizer, vocabSize: init.model.config.vocab_size };
      }
      const tokSpec = f.str("tokenizer") ?? "char";
      const tokenizer = tokSpec === "char" ? CharTokenizer.fromText(text) : loadTokenizerFile(tokSpec);
      return { tokenizer, vocabSize: tokenizer.vocabSize };
    },
  });
}

/** The training run shared by `bonsai train` and `bonsai distill`: data, model, checkpoints, resume, progress, metrics. */
export async function runTraining(f: Flags, setup: TrainingSetup): Promise<TrainRun> {
  const cmd = `bonsai ${setup.command}`, corpus = setup.corpus;
  const out = f.required("out");
  const backend: Backend = await backendFromFlags(f);
  const resume = f.bool("resume");
  const statePath = join(out, STATE_FILE);

  let state: TrainingState | null = null;
  let model: Llama, tokenizer: Tokenizer, options: TrainOptions, dataPath: string, text: string, settings: Record<string, unknown>;
  let curriculumSettings: CurriculumSettings | null = null;
  // A chat model fine-tuned (--init) or resumed keeps its chat template in the checkpoints.
  let chatTemplate: string | null = null;
  if (resume) {
    state = readCheckpointJson(out, STATE_FILE) as TrainingState | null;
    if (!state || state.format !== "bonsai-training-state") throw new UsageError(`--resume: ${out} holds no training run (${STATE_FILE} is missing)`);
    const changeable = ["data", "out", "resume", "backend", "threads", "kernels", "iters", "log-interval", ...(setup.resumeFlags ?? [])];
    for (const k of Object.keys(setup.flags))
      if (f.has(k) && !changeable.includes(k))
        throw new UsageError(`--resume continues the run as it was configured; --${k} cannot be changed (only --iters)`);
    if ((state.objective === undefined) !== (setup.settings === undefined))
      throw new UsageError(`--resume: ${out} holds a ${state.objective === undefined ? "train" : "distill"} run; continue it with bonsai ${state.objective === undefined ? "train" : "distill"}`);
    settings = state.objective ?? {};
    curriculumSettings = state.curriculum ?? null;
    options = { ...state.options };
    if (f.has("iters")) {
      options.iters = f.int("iters", options.iters, 1);
      if (options.iters < state.iter) throw new UsageError(`--iters ${options.iters} is below the checkpoint's iteration ${state.iter}`);
    }
    dataPath = corpus?.name ?? f.str("data") ?? state.data.path;
    text = corpus?.text ?? readTextFile(dataPath);
    if (fnv1a(text) !== state.data.fnv1a || text.length !== state.data.bytes)
      throw new UsageError(`--resume: ${dataPath} differs from the data this run was trained on (${state.data.path})`);
    const loaded = loadModel(out, backend);
    model = loaded.model;
    if (!loaded.tokenizer) throw new UsageError(`--resume: ${out} has no tokenizer file`);
    tokenizer = loaded.tokenizer;
    chatTemplate = loaded.chatTemplate;
  } else {
    if (existsSync(statePath)) throw new UsageError(`${out} already holds a training run; pass --resume to continue it, or choose another --out`);
    dataPath = corpus?.name ?? f.required("data");
    text = corpus?.text ?? readTextFile(dataPath);
    if (text.length === 0) throw new UsageError(`${dataPath} is empty`);
    const initPath = f.str("init");
    const init = initPath === undefined ? undefined : await loadInit(initPath, f, backend);
    const prepared = setup.prepare(f, text, backend, init);
    tokenizer = prepared.tokenizer;
    chatTemplate = init?.chatTemplate ?? null;
    options = optionsFromFlags(f, prepared.blockSize ?? init?.model.config.max_position_embeddings);
    settings = setup.settings?.(f) ?? {};
    if (init) {
      model = init.model;
      if (prepared.vocabSize !== model.config.vocab_size)
        throw new UsageError(`--init: the model's vocabulary is ${model.config.vocab_size} tokens, the tokenizer's ${prepared.vocabSize}`);
    } else model = Llama.init(backend, configFromFlags(f, prepared.vocabSize, options.blockSize), options.seed);
    curriculumSettings = curriculumFromFlags(f);
  }
  // Quantization-aware training: the flags of a fresh run, the checkpoint's qat.json on resume.
  const qatJson = resume ? readCheckpointJson(out, QAT_FILE) : null;
  applyQat(model, resume ? (qatJson === null ? null : parseQatSetting(qatJson)) : qatFromFlags(f));

  const tokens = Int32Array.from(tokenizer.encode(text, { parseSpecial: true }));
  let data = splitTrainVal(tokens);
  const objective = setup.objective?.({ f, backend, model, tokenizer, options, tokens, settings });
  let curriculum: Curriculum | undefined, reference: Llama | null = null;
  if (curriculumSettings) {
    // Samples are documents; the last 10% of them are the validation split.
    const cs = curriculumSettings;
    const docs = splitDocuments(text, cs.documents, { textField: cs.textField, name: dataPath });
    const split = splitSamples(tokenizeDocuments(docs, tokenizer, { addEos: true }).samples);
    data = { train: concatSamples(split.train), val: concatSamples(split.val) };
    if (cs.options.scorer === "teacher-loss") {
      if (cs.referenceModel !== null) reference = loadModel(cs.referenceModel, backend, undefined, { quantized: true, fuse: true }).model;
      const ref = reference ?? setup.referenceModel?.() ?? null;
      if (!ref) throw new UsageError("--curriculum teacher-loss needs a reference model: --curriculum-model PATH");
      if (ref.config.vocab_size !== model.config.vocab_size)
        throw new UsageError(`--curriculum-model has a vocabulary of ${ref.config.vocab_size} tokens, the model ${model.config.vocab_size}`);
      curriculum = await Curriculum.create(split.train, cs.options, { blockSize: options.blockSize, teacher: ref });
    } else curriculum = new Curriculum(split.train, cs.options, { blockSize: options.blockSize });
    const saved = state ? (readCheckpointJson(out, CURRICULUM_STATE_FILE) as CurriculumState | null) : null;
    if (saved) curriculum.loadState(saved);
  }
  const trainer = new Trainer(model, options, data, objective, curriculum);
  const start = state?.iter ?? 0;
  if (state) trainer.optimizer.loadState(state.optimizerStep, readCheckpointTensors(out, OPTIMIZER_FILE));

  mkdirSync(out, { recursive: true });
  const metricsPath = join(out, METRICS_FILE);
  truncateMetrics(metricsPath, start);
  const metric = (m: object): void => appendFileSync(metricsPath, JSON.stringify(m) + "\n");

  const c = model.config;
  process.stderr.write(
    `${cmd}: ${model.numParameters().toLocaleString("en-US")} parameters (${c.num_hidden_layers} layers, dim ${c.hidden_size}, ` +
      `${c.num_attention_heads} heads / ${c.num_key_value_heads} kv, ffn ${c.intermediate_size}), vocab ${c.vocab_size}, ` +
      `${data.train.length.toLocaleString("en-US")} train / ${data.val.length.toLocaleString("en-US")} val tokens, backend ${describeBackend(backend)}` +
      (start > 0 ? `, resuming at iteration ${start}` : "") + "\n",
  );

  const checkpoint = async (iter: number, optimizer: AdamW): Promise<void> => {
    const st: TrainingState = {
      format: "bonsai-training-state",
      version: 1,
      iter,
      optimizerStep: optimizer.step,
      options,
      data: { path: resolve(dataPath), bytes: text.length, fnv1a: fnv1a(text) },
      ...(setup.settings ? { objective: settings } : {}),
      ...(initPathOf(f, state) ? { init: initPathOf(f, state) } : {}),
      ...(curriculumSettings ? { curriculum: curriculumSettings } : {}),
    };
    const qat = qatFile(model), scores = curriculum?.state();
    const optimizerState = await optimizer.state();
    writeCheckpoint(out, [
      ...(await modelFiles(model, tokenizer, { chatTemplate })),
      ...(qat ? [qat] : []),
      ...(scores ? [jsonFile(CURRICULUM_STATE_FILE, scores)] : []),
      { name: OPTIMIZER_FILE, bytes: serializeSafetensors(optimizerState) },
      jsonFile(STATE_FILE, st),
    ]);
  };

  let stopRequested = false;
  const onSignal = (): void => {
    if (stopRequested) process.exit(130);
    stopRequested = true;
    process.stderr.write(`\n${cmd}: interrupted; saving a checkpoint (Ctrl-C again to quit without saving)\n`);
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);

  const progress = new Progress(options.iters, f.int("log-interval", 100, 1));
  const t0 = performance.now();
  let tokensSeen = 0, lastVal = NaN, emaLoss = NaN;
  let result: Awaited<ReturnType<Trainer["run"]>>;
  try {
    result = await trainer.run(start, {
      onStep(e) {
        tokensSeen += e.tokens;
        const elapsed = (performance.now() - t0) / 1000;
        const tps = tokensSeen / elapsed;
        emaLoss = Number.isNaN(emaLoss) ? e.loss : 0.9 * emaLoss + 0.1 * e.loss;
        metric({
          iter: e.iter, loss: e.loss, lr: e.lr, grad_norm: e.gradNorm, tokens_per_s: Math.round(tps), ms: +(e.seconds * 1000).toFixed(2),
          ...(e.curriculum ? curriculumMetrics(e.curriculum) : {}),
          ...(e.router ? routerMetrics(e.router) : {}),
        });
        const done = e.iter + 1;
        const eta = ((options.iters - done) * elapsed) / Math.max(done - start, 1);
        progress.update(done, `loss ${emaLoss.toFixed(4)} | ${Math.round(tps).toLocaleString("en-US")} tok/s`, eta);
      },
      onEval(e) {
        lastVal = e.val;
        metric({ iter: e.iter, train_loss: e.train, val_loss: e.val, elapsed_s: +((performance.now() - t0) / 1000).toFixed(3) });
        progress.log(`step ${e.iter}: train loss ${e.train.toFixed(4)}, val loss ${e.val.toFixed(4)}`);
      },
      onCheckpoint: checkpoint,
      shouldStop: () => stopRequested,
    });
  } finally {
    setup.close?.();
    reference?.dispose();
  }
  progress.done();
  process.off("SIGINT", onSignal);
  process.off("SIGTERM", onSignal);
  const wall = (performance.now() - t0) / 1000;
  if (result.stopped) {
    process.stderr.write(`${cmd}: stopped at iteration ${result.iter}; checkpoint in ${out} (continue with --resume)\n`);
    process.exitCode = 130;
  } else {
    process.stderr.write(`${cmd}: done in ${formatDuration(wall)} (${wall.toFixed(1)} s); model in ${out}\n`);
  }
  return { out, model, tokenizer, valLoss: lastVal };
}

/** A MoE step's router terms for metrics.jsonl: the two losses and each layer's expert load with its min and max. */
function routerMetrics(r: RouterStats): Record<string, unknown> {
  const round = (v: number): number => +v.toFixed(5);
  return {
    router_aux_loss: round(r.aux),
    router_z_loss: round(r.z),
    expert_load: r.load.map((L) => ({ layer: L.layer, fractions: L.fractions.map(round), min: round(Math.min(...L.fractions)), max: round(Math.max(...L.fractions)) })),
  };
}

/** --init: the model to start from, as trained (float weights, not fused), with its own configuration. */
async function loadInit(path: string, f: Flags, backend: Backend): Promise<{ model: Llama; tokenizer: Tokenizer | null; chatTemplate: string | null }> {
  for (const k of SHAPE_FLAGS) if (f.has(k)) throw new UsageError(`--init takes the model's configuration; --${k} cannot be given with it`);
  const loaded = loadModel(path, backend, undefined, { quantized: false, fuse: false });
  applyQat(loaded.model, null); // a QAT checkpoint's setting is not inherited: --qat says what this run does
  const c = loaded.model.config;
  if (isMoe(c)) {
    // A MoE model keeps its experts; only the router losses' weights may be changed.
    for (const k of ["experts", "experts-per-token", "router-noise"]) if (f.has(k)) throw new UsageError(`--init: ${path} already has ${c.num_local_experts} experts per layer; --${k} cannot be given with it`);
    if (f.has("aux-loss-coef")) c.router_aux_loss_coef = f.num("aux-loss-coef", 0, { min: 0 });
    if (f.has("z-loss-coef")) c.router_z_loss_coef = f.num("z-loss-coef", 0, { min: 0 });
    return loaded;
  }
  const moe = moeFromFlags(f);
  if (!moe) return loaded;
  // Sparse upcycling: every expert starts as the dense FFN.
  const model = await upcycle(loaded.model, { ...moe, routerNoise: f.num("router-noise", 0, { min: 0 }), seed: f.int("seed", 1337, 0) });
  loaded.model.dispose();
  return { model, tokenizer: loaded.tokenizer, chatTemplate: loaded.chatTemplate };
}

const initPathOf = (f: Flags, state: TrainingState | null): string | undefined =>
  state?.init ?? (f.str("init") === undefined ? undefined : resolve(f.str("init")!));

/** Drop metrics lines of iterations at or after `start` (left by an interrupted run being resumed). */
function truncateMetrics(path: string, start: number): void {
  if (!existsSync(path)) return;
  if (start === 0) {
    writeFileSync(path, "");
    return;
  }
  const kept = readFileSync(path, "utf8")
    .split("\n")
    .filter((line) => {
      if (line.trim() === "") return false;
      try {
        return (JSON.parse(line) as { iter: number }).iter < start;
      } catch {
        return false;
      }
    });
  writeFileSync(path, kept.map((l) => l + "\n").join(""));
}
