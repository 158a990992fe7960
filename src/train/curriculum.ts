// Curriculum learning: train on easy samples first. Three pieces, each a few lines:
//   1. a difficulty score per sample (scorer): its token count, a field of its JSONL record, its
//      loss under a reference model (teacher-loss), or its loss under the student itself,
//      recomputed as training goes (self-paced);
//   2. a competence c(t) ∈ (0, 1] of training progress t = iter / iters (pacing): the fraction
//      of the data, easiest first, the model is ready for;
//   3. per-sample weights w_i(t) from the sample's difficulty rank and c(t), and the weighted
//      objective Σ w_i·L_i / Σ w_i over a batch's samples (L_i: sample i's mean per-token loss).
// Hard mode draws only among the easiest ⌈c·N⌉ samples (all with w = 1); soft mode draws
// among all samples and weighs them:
//      w_i = exp(−max(0, rank_i + 1 − ⌈c·N⌉) / (τ·N))
// (rank_i: 0 for the easiest): 1 inside the competence, decaying with the share of the data
// between the sample and the competence frontier, e^−1 at τ·N samples past it (τ = softness).
// Hard self-paced learning is SPL's binary regime (Kumar et al. 2010) with the threshold λ(t)
// at the c(t)-quantile of the student's losses. Every draw comes from the trainer's per-step
// generator, so a resumed run draws the same batches (self-paced scores are saved in state()).
import { Tensor, noGrad, scope } from "../tensor/tensor.js";
import { weightedSum } from "../tensor/ops.js";
import type { Llama } from "../nn/llama.js";
import { sampleBatch, sampleWindowBatches, type Batch, type SampleBatch } from "../data/batches.js";
import type { Sample } from "../data/documents.js";
import type { Rng } from "../util/rng.js";

// ---------------------------------------------------------------------------------------------
// Pacing: competence c(t) of progress t = iter / iters.

export type PacingName = "none" | "linear" | "root" | "step" | "exp";
export const pacingNames: readonly PacingName[] = ["none", "linear", "root", "step", "exp"];

export interface Pacing {
  name: PacingName;
  /** c0: the competence at t = 0, the easiest fraction trained on first (0.1). */
  c0: number;
  /** T: the fraction of training after which c = 1 (0.5). */
  fullAt: number;
  /** `step`: stages before full competence (4). */
  stages: number;
}

/**
 * c(t), with u = t / T:
 *   none    1
 *   linear  min(1, c0 + (1 − c0)·u)
 *   root    min(1, √(u·(1 − c0²) + c0²))          (Platanios et al. 2019, competence-based)
 *   step    c0 + (1 − c0)·⌊S·u⌋ / S, 1 from u ≥ 1  (S equal stages, "baby steps")
 *   exp     min(1, c0^(1 − u))                     (c0 at t = 0, growing ×(1/c0) by t = T)
 */
export function competence(p: Pacing, t: number): number {
  const u = t / p.fullAt;
  if (p.name === "none" || u >= 1) return 1;
  switch (p.name) {
    case "linear":
      return Math.min(1, p.c0 + (1 - p.c0) * u);
    case "root":
      return Math.min(1, Math.sqrt(u * (1 - p.c0 * p.c0) + p.c0 * p.c0));
    case "step":
      return Math.min(1, p.c0 + ((1 - p.c0) * Math.floor(p.stages * u)) / p.stages);
    case "exp":
      return Math.min(1, Math.pow(p.c0, 1 - u));
  }
}

// ---------------------------------------------------------------------------------------------
// Ranks and weights.

/** Sample indices from easiest (lowest score) to hardest; ties keep sample order. */
export function difficultyOrder(scores: ArrayLike<number>): Int32Array {
  const order = Int32Array.from({ length: scores.length }, (_, i) => i);
  return order.sort((a, b) => scores[a] - scores[b] || a - b);
}

/** ⌈c·N⌉ samples are within competence: at least 1; c·N within 1e-9 of an integer counts as it. */
export function eligibleCount(c: number, n: number): number {
  return Math.min(n, Math.max(1, Math.ceil(c * n - 1e-9)));
}

export type CurriculumMode = "hard" | "soft";

/** The weight of the sample at difficulty rank `rank` of `n`, when `k` = ⌈c·N⌉ are eligible (see the top). */
export function rankWeight(mode: CurriculumMode, rank: number, k: number, n: number, softness: number): number {
  if (rank < k) return 1;
  return mode === "hard" ? 0 : Math.exp(-(rank + 1 - k) / (softness * n));
}

/** w_i(t) of every sample, indexed by sample, for difficulty `order` (easiest first) and competence c. */
export function sampleWeights(order: ArrayLike<number>, c: number, mode: CurriculumMode, softness: number): Float64Array {
  const n = order.length, k = eligibleCount(c, n), w = new Float64Array(n);
  for (let r = 0; r < n; r++) w[order[r]] = rankWeight(mode, r, k, n, softness);
  return w;
}

// ---------------------------------------------------------------------------------------------
// The weighted objective.

/**
 * Per-position weights turning per-position losses into Σ_r w_r·L_r / Σ_r w_r, where L_r is row
 * r's mean loss over its targets (−1 ignored): position j of row r gets w_r / (n_r · Σ w).
 * Rows without targets, or a batch of zero total weight, weigh nothing.
 */
export function positionWeights(targets: Int32Array, batch: number, seq: number, rowWeights: ArrayLike<number>): Float64Array {
  if (rowWeights.length !== batch) throw new Error(`positionWeights: ${rowWeights.length} row weights for ${batch} rows`);
  const counts = new Float64Array(batch);
  let total = 0;
  for (let r = 0; r < batch; r++) {
    for (let j = 0; j < seq; j++) if (targets[r * seq + j] >= 0) counts[r]++;
    if (counts[r] > 0) total += rowWeights[r];
  }
  const w = new Float64Array(batch * seq);
  if (total <= 0) return w;
  for (let r = 0; r < batch; r++)
    for (let j = 0; j < seq; j++) if (targets[r * seq + j] >= 0) w[r * seq + j] = rowWeights[r] / (counts[r] * total);
  return w;
}

/** Σ w_r·L_r / Σ w_r of per-position losses [batch·seq] (the trainer's Objective output). */
export function sampleWeightedLoss(losses: Tensor, b: Batch, rowWeights: ArrayLike<number>): Tensor {
  return weightedSum(losses, positionWeights(b.targets, b.batch, b.seq, rowWeights));
}

// ---------------------------------------------------------------------------------------------
// Scorers: a difficulty per sample, lower = easier.

export type Scorer = { kind: "length" } | { kind: "teacher-loss" } | { kind: "self-paced" } | { kind: "field"; field: string };
export const scorerNames = ["length", "teacher-loss", "self-paced", "field:NAME"] as const;

export function parseScorer(spec: string): Scorer {
  if (spec === "length" || spec === "teacher-loss" || spec === "self-paced") return { kind: spec };
  if (spec.startsWith("field:")) {
    const field = spec.slice("field:".length);
    if (field === "") throw new Error(`curriculum scorer "field:" needs a field name (field:NAME)`);
    return { kind: "field", field };
  }
  throw new Error(`unknown curriculum scorer "${spec}" (expected ${scorerNames.join(", ")})`);
}

/** `length`: the sample's token count. */
export function lengthScores(samples: readonly Sample[]): Float64Array {
  return Float64Array.from(samples, (s) => s.ids.length);
}

/** `field:NAME`: a number stored in the sample's JSONL record. */
export function fieldScores(samples: readonly Sample[], field: string): Float64Array {
  return Float64Array.from(samples, (s) => {
    const v = s.fields[field];
    if (typeof v !== "number") throw new Error(`curriculum scorer field:${field}: the record on line ${s.line} has no numeric field "${field}"`);
    return v;
  });
}

/**
 * Each sample's mean per-token cross-entropy under `model` (no dropout, no gradient): every
 * target once (or its first `maxTargets`, when > 0), in windows of at most `seq` targets that
 * start without context (see sampleWindowBatches), `batch` windows per forward pass.
 * `teacher-loss` and `self-paced` both score with this; it is deterministic, so equal weights
 * give equal scores.
 */
export async function sampleLosses(model: Llama, samples: readonly Sample[], opts: { seq: number; batch?: number; maxTargets?: number }): Promise<Float64Array> {
  const seq = Math.min(opts.seq, model.config.max_position_embeddings);
  const limit = opts.maxTargets ?? 0;
  if (limit > 0) samples = samples.map((s) => ({ ...s, ids: s.ids.subarray(0, limit + 1) }));
  const vocab = model.config.vocab_size;
  for (const s of samples)
    for (const id of s.ids) if (id < 0 || id >= vocab) throw new Error(`sample on line ${s.line} has token id ${id}, outside the scoring model's vocabulary of ${vocab}`);
  const sum = new Float64Array(samples.length), count = new Float64Array(samples.length);
  for (const b of sampleWindowBatches(samples, opts.batch ?? 16, seq)) {
    const rows = await noGrad(() => scope(() => model.losses(b.ids, b.targets, b.batch, b.seq).toArray()));
    for (let r = 0; r < b.batch; r++)
      for (let j = 0; j < b.seq; j++)
        if (b.targets[r * b.seq + j] >= 0) {
          sum[b.samples[r]] += rows[r * b.seq + j];
          count[b.samples[r]]++;
        }
  }
  return sum.map((s, i) => s / count[i]);
}

// ---------------------------------------------------------------------------------------------
// The curriculum: the trainer's batch source.

export interface CurriculumOptions {
  /** length | teacher-loss | self-paced | field:NAME */
  scorer: string;
  pacing: PacingName;
  mode: CurriculumMode;
  /** Pacing c0: the starting competence, in (0, 1]. */
  c0: number;
  /** Pacing T: the fraction of training reaching full competence, in (0, 1]. */
  fullAt: number;
  /** `step` pacing: number of stages (positive integer). */
  stages: number;
  /** Soft mode τ: weights fall to e^−1 at τ·N samples past the competence frontier (> 0). */
  softness: number;
  /** self-paced: re-score every K steps (at iterations 0, K, 2K, …). */
  rescoreEvery: number;
  /** Windows per forward pass when scoring by loss. */
  scoreBatch: number;
  /**
   * Loss scorers: score only the first N targets of each sample (0: all). Scoring all of them
   * costs a forward pass over all the data each time (self-paced: every rescoreEvery steps).
   */
  scoreTokens: number;
}

export const curriculumDefaults: Omit<CurriculumOptions, "scorer"> = {
  pacing: "root", mode: "hard", c0: 0.1, fullAt: 0.5, stages: 4, softness: 0.1, rescoreEvery: 100, scoreBatch: 16, scoreTokens: 0,
};

/** Fill defaults and check every option; errors name the option. */
export function curriculumOptions(o: Partial<CurriculumOptions> & { scorer: string }): CurriculumOptions {
  const r: CurriculumOptions = { ...curriculumDefaults, ...o };
  parseScorer(r.scorer);
  if (!pacingNames.includes(r.pacing)) throw new Error(`unknown pacing "${r.pacing}" (expected ${pacingNames.join(", ")})`);
  if (r.mode !== "hard" && r.mode !== "soft") throw new Error(`curriculum mode must be hard or soft (got "${r.mode}")`);
  if (!(r.c0 > 0 && r.c0 <= 1)) throw new Error(`curriculum c0 (starting competence) must be in (0, 1] (got ${r.c0})`);
  if (!(r.fullAt > 0 && r.fullAt <= 1)) throw new Error(`curriculum T (fraction of training to full competence) must be in (0, 1] (got ${r.fullAt})`);
  for (const k of ["stages", "rescoreEvery", "scoreBatch"] as const)
    if (!(Number.isInteger(r[k]) && r[k] > 0)) throw new Error(`curriculum ${k} must be a positive integer (got ${r[k]})`);
  if (!(Number.isInteger(r.scoreTokens) && r.scoreTokens >= 0)) throw new Error(`curriculum scoreTokens must be a non-negative integer (got ${r.scoreTokens})`);
  if (!(r.softness > 0)) throw new Error(`curriculum softness must be > 0 (got ${r.softness})`);
  return r;
}

/** The weights' distribution at one step, over all N samples (hard mode: 1 eligible, 0 not). */
export interface CurriculumStats {
  /** t = iter / iters */
  progress: number;
  /** c(t) */
  competence: number;
  /** ⌈c·N⌉ / N: the fraction of samples with weight 1 (hard mode: the only ones drawn). */
  eligible: number;
  weightMean: number;
  weightMin: number;
  weightP10: number;
  weightP50: number;
  weightP90: number;
  weightMax: number;
  /** self-paced: the scores were recomputed at this step. */
  rescored: boolean;
}

/** What a resumed run needs to continue exactly: the scores in use and the iteration they were computed at. */
export interface CurriculumState {
  scorer: string;
  scoredAt: number;
  scores: number[];
}

/** A micro-batch of samples with the weight of each row. */
export interface WeightedBatch extends SampleBatch {
  rowWeights: Float64Array;
}

export class Curriculum {
  readonly options: CurriculumOptions;
  readonly scorer: Scorer;
  readonly pacing: Pacing;
  /** Current difficulty per sample (null: self-paced before its first scoring). */
  private scoresNow: Float64Array | null = null;
  private scoredAt = -1;
  /** Sample indices easiest first, and each sample's rank in that order. */
  private order: Int32Array = new Int32Array(0);
  private ranks: Int32Array = new Int32Array(0);
  /** ⌈c·N⌉ of the current step. */
  private k = 0;
  /** The scoring window. */
  private readonly blockSize: number;

  /**
   * `blockSize`: the scoring window (the trainer's block size); `teacherScores`: the teacher-loss
   * scorer's scores (Curriculum.create computes them with the reference model).
   */
  constructor(readonly samples: readonly Sample[], options: Partial<CurriculumOptions> & { scorer: string }, ctx: { blockSize: number; teacherScores?: Float64Array }) {
    this.options = curriculumOptions(options);
    this.scorer = parseScorer(this.options.scorer);
    this.pacing = { name: this.options.pacing, c0: this.options.c0, fullAt: this.options.fullAt, stages: this.options.stages };
    if (samples.length === 0) throw new Error("curriculum: no samples");
    for (const [i, s] of samples.entries()) if (s.ids.length < 2) throw new Error(`curriculum: sample ${i} has ${s.ids.length} token(s); a sample needs 2 or more`);
    if (!(Number.isInteger(ctx.blockSize) && ctx.blockSize > 0)) throw new Error(`curriculum: blockSize must be a positive integer (got ${ctx.blockSize})`);
    this.blockSize = ctx.blockSize;
    const s = this.scorer;
    if (s.kind === "teacher-loss" && !ctx.teacherScores) throw new Error("curriculum scorer teacher-loss needs a reference model (teacher; see Curriculum.create)");
    if (s.kind === "length") this.setScores(lengthScores(samples), 0);
    else if (s.kind === "field") this.setScores(fieldScores(samples, s.field), 0);
    else if (s.kind === "teacher-loss") this.setScores(ctx.teacherScores!, 0);
  }

  /**
   * A curriculum with any scorer: `teacher`, the reference model of the teacher-loss scorer, scores
   * every sample here once (it may be disposed afterwards).
   */
  static async create(samples: readonly Sample[], options: Partial<CurriculumOptions> & { scorer: string }, ctx: { blockSize: number; teacher?: Llama }): Promise<Curriculum> {
    const o = curriculumOptions(options);
    let teacherScores: Float64Array | undefined;
    if (parseScorer(o.scorer).kind === "teacher-loss" && ctx.teacher && samples.length > 0)
      teacherScores = await sampleLosses(ctx.teacher, samples, { seq: ctx.blockSize, batch: o.scoreBatch, maxTargets: o.scoreTokens });
    return new Curriculum(samples, options, { blockSize: ctx.blockSize, teacherScores });
  }

  private lossScoring(seq: number): { seq: number; batch: number; maxTargets: number } {
    return { seq, batch: this.options.scoreBatch, maxTargets: this.options.scoreTokens };
  }

  /** The difficulty scores in use (a copy), or null before a self-paced curriculum's first scoring. */
  get scores(): Float64Array | null {
    return this.scoresNow && this.scoresNow.slice();
  }

  private setScores(scores: Float64Array, at: number): void {
    if (scores.length !== this.samples.length) throw new Error(`curriculum: ${scores.length} scores for ${this.samples.length} samples`);
    const bad = scores.findIndex((v) => !Number.isFinite(v));
    if (bad >= 0) throw new Error(`curriculum: the score of the sample on line ${this.samples[bad].line} is ${scores[bad]}`);
    this.scoresNow = scores;
    this.scoredAt = at;
    this.order = difficultyOrder(scores);
    this.ranks = new Int32Array(scores.length);
    this.order.forEach((sample, rank) => (this.ranks[sample] = rank));
  }

  /**
   * Start optimizer step `iter` of `iters`: re-score if self-paced and due (with `model`, the
   * student), set c(t), and describe the weights. Called by the trainer before the step's batches.
   */
  async beginStep(iter: number, iters: number, model: Llama): Promise<CurriculumStats> {
    let rescored = false;
    if (this.scorer.kind === "self-paced") {
      const K = this.options.rescoreEvery;
      const due = iter - (iter % K);
      if (this.scoredAt !== due) {
        if (iter !== due)
          throw new Error(`self-paced curriculum: resuming at iteration ${iter} needs the scores computed at iteration ${due} (load the saved curriculum state)`);
        this.setScores(await sampleLosses(model, this.samples, this.lossScoring(this.blockSize)), iter);
        rescored = true;
      }
    }
    const n = this.samples.length, progress = iter / iters;
    const c = competence(this.pacing, progress);
    this.k = eligibleCount(c, n);
    // w is non-increasing in rank, so its sorted values are the weights of ranks N−1 … 0.
    const { mode, softness } = this.options;
    const ascending = (j: number): number => rankWeight(mode, n - 1 - j, this.k, n, softness);
    const quantile = (p: number): number => {
      const x = p * (n - 1), lo = Math.floor(x), hi = Math.ceil(x);
      return ascending(lo) + (ascending(hi) - ascending(lo)) * (x - lo);
    };
    let sum = this.k;
    for (let r = this.k; r < n; r++) sum += rankWeight(mode, r, this.k, n, softness);
    return {
      progress, competence: c, eligible: this.k / n,
      weightMean: sum / n, weightMin: ascending(0), weightP10: quantile(0.1), weightP50: quantile(0.5), weightP90: quantile(0.9), weightMax: ascending(n - 1),
      rescored,
    };
  }

  /** w_i(t) of every sample at the current step (indexed by sample). */
  weights(): Float64Array {
    const n = this.samples.length;
    return Float64Array.from(this.ranks, (r) => rankWeight(this.options.mode, r, this.k, n, this.options.softness));
  }

  /**
   * A micro-batch of the current step: `batchSize` samples drawn uniformly (with replacement)
   * among the easiest ⌈c·N⌉ (hard) or all (soft), one window each (sampleBatch), with weights.
   */
  batch(rng: Rng, batchSize: number, blockSize: number): WeightedBatch {
    if (this.k === 0) throw new Error("curriculum: batch() before beginStep()");
    const n = this.samples.length, hard = this.options.mode === "hard";
    const picks = Int32Array.from({ length: batchSize }, () => this.order[rng.int(hard ? this.k : n)]);
    const b = sampleBatch(this.samples, picks, blockSize, rng);
    const rowWeights = Float64Array.from(picks, (i) => rankWeight(this.options.mode, this.ranks[i], this.k, n, this.options.softness));
    return { ...b, rowWeights };
  }

  /** The scores and when they were computed; for self-paced runs this must be saved with checkpoints. */
  state(): CurriculumState | null {
    return this.scoresNow && { scorer: this.options.scorer, scoredAt: this.scoredAt, scores: Array.from(this.scoresNow) };
  }

  loadState(s: CurriculumState): void {
    if (s.scorer !== this.options.scorer) throw new Error(`curriculum state was saved with scorer ${s.scorer}, not ${this.options.scorer}`);
    if (!Array.isArray(s.scores) || s.scores.length !== this.samples.length)
      throw new Error(`curriculum state has ${Array.isArray(s.scores) ? s.scores.length : "no"} scores for ${this.samples.length} samples`);
    if (!(Number.isInteger(s.scoredAt) && s.scoredAt >= 0)) throw new Error(`curriculum state: bad scoredAt ${s.scoredAt}`);
    this.setScores(Float64Array.from(s.scores), s.scoredAt);
  }
}

/** The stats as flat snake_case fields for a metrics.jsonl line. */
export function curriculumMetrics(s: CurriculumStats & { tokenLoss?: number }): Record<string, number | boolean> {
  const m: Record<string, number | boolean> = {
    competence: s.competence, eligible: s.eligible,
    w_mean: s.weightMean, w_min: s.weightMin, w_p10: s.weightP10, w_p50: s.weightP50, w_p90: s.weightP90, w_max: s.weightMax,
  };
  if (s.tokenLoss !== undefined) m.token_loss = s.tokenLoss;
  if (s.rescored) m.rescored = true;
  return m;
}
