// Knowledge distillation as training objectives (trainer.ts `Objective`): the student's per-position
// losses against a teacher, which is either
//   - a model run on the fly on the same backend (forward only, under noGrad; any model Bonsai
//     loads, quantized GGUF included), optionally on-policy (GKD): a fraction λ of micro-batches are
//     continuations sampled from the student and scored by the teacher; or
//   - a teacher cache (train/teacher-cache.ts): the teacher's top-k log-probabilities of fixed windows,
//     computed once (`bonsai distill-cache`); micro-batches are whole cached windows drawn at random.
// The loss itself is ops.distillLosses. Every random draw derives from (seed, iter, micro), so a
// resumed run continues exactly as the uninterrupted one.
import { Tensor, noGrad, scope, unscoped } from "../tensor/tensor.js";
import { type DistillOptions, type SparseTeacher, distillLosses, kdParams } from "../tensor/ops.js";
import { KD_ONLY } from "../backend/backend.js";
import type { Llama } from "../nn/llama.js";
import type { Objective } from "./trainer.js";
import type { Batch } from "../data/batches.js";
import { deriveSeed, Rng } from "../util/rng.js";
import { Session } from "../runtime/session.js";
import { type CachedWindow, type TeacherCacheHeader, cacheWindowCount, topKLogProbs } from "./teacher-cache.js";

const STREAM_ON_POLICY = 11, STREAM_SAMPLE = 12, STREAM_CACHE = 13;

/** Student and teacher must share the vocabulary: the loss compares distributions token by token. */
export function checkSameVocab(student: Llama, teacherVocab: number, what = "the teacher"): void {
  const v = student.config.vocab_size;
  if (v !== teacherVocab) throw new Error(`vocabulary mismatch: the student has ${v} tokens, ${what} ${teacherVocab}; a student must use its teacher's tokenizer`);
}

export interface OnTheFlyOptions extends DistillOptions {
  /** Fraction λ ∈ [0, 1] of micro-batches trained on the student's own samples (default 0). */
  onPolicy?: number;
  /** Seed of the on-policy draws (the run's seed). */
  seed?: number;
}

/**
 * The teacher runs on every micro-batch. Off-policy: student and teacher see the batch's windows
 * and every position gets α·CE + (1−α)·τ²·D. On-policy micro-batches (chosen with probability λ
 * from (seed, iter, micro)): the first half of each window is the prompt, the student samples
 * the rest at temperature 1 (no gradient), and the loss is τ²·D alone (there is no ground truth)
 * on the positions that predict sampled tokens; prompt positions are left out of the mean.
 */
export function onTheFlyObjective(teacher: Llama, student: Llama, opts: OnTheFlyOptions): Objective {
  kdParams(opts); // refuse bad settings before the first batch
  checkSameVocab(student, teacher.config.vocab_size);
  const lambda = opts.onPolicy ?? 0, seed = opts.seed ?? 0;
  if (!(lambda >= 0 && lambda <= 1)) throw new Error(`on-policy fraction must be in [0, 1] (got ${lambda})`);
  if (teacher.backend !== student.backend) throw new Error("distill: teacher and student must be on the same backend");
  const onPolicy = (ctx: { iter: number; micro: number }): boolean => lambda > 0 && new Rng(deriveSeed(seed, ctx.iter, STREAM_ON_POLICY, ctx.micro)).next() < lambda;
  return {
    // An on-policy micro-batch becomes the student's continuations of its windows' first halves.
    async prepare(model, b, ctx) {
      if (b.seq > teacher.config.max_position_embeddings)
        throw new Error(`block size ${b.seq} exceeds the teacher's max_position_embeddings ${teacher.config.max_position_embeddings}`);
      if (!onPolicy(ctx)) return b;
      const ids = await sampleContinuations(model, b, new Rng(deriveSeed(seed, ctx.iter, STREAM_SAMPLE, ctx.micro)));
      return { ...b, ids, targets: onPolicyTargets(b.batch, b.seq) };
    },
    rowLosses(model, b, ctx) {
      const t = noGrad(() => scope(() => teacher.forward(b.ids, b.batch, b.seq)));
      const losses = distillLosses(model.forward(b.ids, b.batch, b.seq, ctx.pass), t, b.targets, opts);
      return onPolicy(ctx) ? { losses, targets: b.targets.map((x) => (x === KD_ONLY ? 0 : -1)) } : losses;
    },
  };
}

/** Prompt length of an on-policy window of `seq` inputs: the first half (at least one token). */
export const onPolicyPrompt = (seq: number): number => Math.max(1, Math.floor(seq / 2));

/** KD_ONLY on the positions P−1 … seq−1 that predict sampled tokens, −1 on the prompt before them. */
export function onPolicyTargets(batch: number, seq: number): Int32Array {
  const p = onPolicyPrompt(seq), t = new Int32Array(batch * seq);
  for (let r = 0; r < batch; r++) for (let i = 0; i < seq; i++) t[r * seq + i] = i >= p - 1 ? KD_ONLY : -1;
  return t;
}

/** Each window's prompt followed by tokens the student samples from softmax(logits) (KV-cached, no gradient). */
export async function sampleContinuations(model: Llama, b: Batch, rng: Rng): Promise<Int32Array> {
  const p = onPolicyPrompt(b.seq), out = new Int32Array(b.batch * b.seq);
  for (let r = 0; r < b.batch; r++) {
    const row = out.subarray(r * b.seq, (r + 1) * b.seq);
    row.set(b.ids.subarray(r * b.seq, r * b.seq + p));
    if (p === b.seq) continue;
    const session = unscoped(() => new Session(model, { maxSeq: b.seq }));
    try {
      let logits = await session.prefill(row.subarray(0, p));
      for (let i = p; i < b.seq; i++) {
        row[i] = sampleSoftmax(logits, rng);
        if (i + 1 < b.seq) logits = await session.decode(row[i]);
      }
    } finally {
      session.dispose();
    }
  }
  return out;
}

/** A token drawn from softmax(logits) (temperature 1, no truncation). */
export function sampleSoftmax(logits: ArrayLike<number>, rng: Rng): number {
  let mx = -Infinity;
  for (let j = 0; j < logits.length; j++) mx = Math.max(mx, logits[j]);
  let z = 0;
  for (let j = 0; j < logits.length; j++) z += Math.exp(logits[j] - mx);
  let u = rng.next() * z;
  for (let j = 0; j < logits.length; j++) {
    u -= Math.exp(logits[j] - mx);
    if (u < 0) return j;
  }
  return logits.length - 1;
}

/** Where cached windows come from: a TeacherCacheReader, or windows held in memory. */
export interface CachedWindowSource {
  readonly header: TeacherCacheHeader;
  window(w: number): CachedWindow;
}

/**
 * Train from a teacher cache: each micro-batch is `batch` whole windows drawn uniformly from
 * (seed, iter, micro) — the trainer's own random windows are not used — with the cached top-k as a
 * sparse teacher. The cache must have been made at the run's τ and block size.
 */
export function cachedTeacherObjective(cache: CachedWindowSource, student: Llama, opts: DistillOptions & { seed: number; batchSize: number; blockSize: number }): Objective {
  kdParams(opts);
  const h = cache.header;
  checkSameVocab(student, h.vocabSize, "the teacher cache");
  if (h.temperature !== opts.temperature) throw new Error(`the teacher cache holds log-probabilities at temperature ${h.temperature}, the run asks for ${opts.temperature}`);
  if (h.blockSize !== opts.blockSize) throw new Error(`the teacher cache has windows of ${h.blockSize} tokens, the run's block size is ${opts.blockSize}`);
  if (h.windows === 0) throw new Error("the teacher cache holds no windows");
  const B = h.blockSize, k = h.k;
  return {
    rowLosses(model, _b, ctx) {
      const rng = new Rng(deriveSeed(opts.seed, ctx.iter, STREAM_CACHE, ctx.micro));
      const n = opts.batchSize;
      const ids = new Int32Array(n * B), targets = new Int32Array(n * B), topIds = new Int32Array(n * B * k), lps = new Float32Array(n * B * k);
      for (let i = 0; i < n; i++) {
        const w = cache.window(rng.int(h.windows));
        ids.set(w.tokens.subarray(0, B), i * B);
        targets.set(w.tokens.subarray(1, B + 1), i * B);
        topIds.set(w.ids, i * B * k);
        lps.set(w.logProbs, i * B * k);
      }
      const teacher: SparseTeacher = { ids: topIds, logProbs: Tensor.from(model.backend, [n * B, k], lps), k };
      const losses = distillLosses(model.forward(ids, n, B, ctx.pass), teacher, targets, opts);
      return { losses, targets };
    },
  };
}

/**
 * The cache's windows, computed by `teacher` (forward only, `batch` windows at a time): window w
 * covers tokens [w·B, w·B + B]; each position keeps its top-k log-probabilities at τ.
 */
export async function* teacherCacheWindows(teacher: Llama, tokens: Int32Array, o: { blockSize: number; k: number; temperature: number; batch: number }): AsyncGenerator<CachedWindow> {
  const B = o.blockSize, V = teacher.config.vocab_size;
  if (B > teacher.config.max_position_embeddings) throw new Error(`block size ${B} exceeds the teacher's max_position_embeddings ${teacher.config.max_position_embeddings}`);
  if (!(Number.isInteger(o.k) && o.k >= 1 && o.k <= V)) throw new Error(`top-k must be in [1, ${V}] (got ${o.k})`);
  const windows = cacheWindowCount(tokens.length, B);
  for (let w0 = 0; w0 < windows; w0 += o.batch) {
    const n = Math.min(o.batch, windows - w0);
    const ids = tokens.slice(w0 * B, (w0 + n) * B);
    const logits = await noGrad(() => scope(() => teacher.forward(ids, n, B).toArray()));
    const top = topKLogProbs(logits, n * B, V, o.k, o.temperature);
    for (let i = 0; i < n; i++) {
      const w = w0 + i;
      yield {
        tokens: tokens.slice(w * B, w * B + B + 1),
        ids: top.ids.slice(i * B * o.k, (i + 1) * B * o.k),
        logProbs: top.logProbs.slice(i * B * o.k, (i + 1) * B * o.k),
      };
    }
  }
}
