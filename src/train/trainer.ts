// The training loop: random windows of the train split, AdamW with warm-up + cosine schedule,
// gradient accumulation and clipping, periodic evaluation. Every random draw of iteration `i`
// comes from a generator seeded by (seed, i, ...), so a run resumed at iteration i continues
// exactly as the uninterrupted run would have. A batch source (a Curriculum) may replace the
// random windows: its batches hold one sample per row, weighted (see curriculum.ts). Files are not
// touched here: checkpoints and metrics go through the callbacks, so this module runs in a browser too.
import { Tensor, backward, noGrad, scope } from "../tensor/tensor.js";
import { add, meanLoss } from "../tensor/ops.js";
import type { Llama } from "../nn/llama.js";
import { RoutingLog } from "../nn/moe.js";
import { isMoe, numExperts } from "../nn/config.js";
import { AdamW } from "./adamw.js";
import { learningRate, type LrSchedule } from "./schedule.js";
import { randomBatch, type Batch } from "../data/batches.js";
import { deriveSeed, Rng } from "../util/rng.js";
import { sampleWeightedLoss, type CurriculumStats, type WeightedBatch } from "./curriculum.js";

export interface TrainOptions {
  batchSize: number;
  blockSize: number;
  iters: number;
  lr: number;
  minLr: number;
  warmup: number;
  /** Iteration where the cosine reaches minLr; defaults to `iters`. */
  decayIters?: number;
  weightDecay: number;
  beta1: number;
  beta2: number;
  /** Clip the global gradient norm to this; 0 disables clipping. */
  gradClip: number;
  gradAccum: number;
  evalInterval: number;
  evalIters: number;
  seed: number;
}

export interface StepEvent {
  iter: number;
  /** The objective: the mean loss, or with a batch source the weighted Σ w·L / Σ w (mean over micro-batches). */
  loss: number;
  lr: number;
  gradNorm: number;
  /** Targets trained on (with a batch source: without the padding). */
  tokens: number;
  seconds: number;
  /** With a batch source: its weights at this step, and the plain mean per-token loss of the step's batches. */
  curriculum?: CurriculumStats & { tokenLoss: number };
  /** A MoE model's routers: the load-balancing and z losses (mean over micro-batches, before their coefficients) and each layer's expert load. */
  router?: RouterStats;
}

export interface RouterStats {
  aux: number;
  z: number;
  /** Per MoE layer, the fraction of its routed slots each expert got over the step. */
  load: { layer: number; fractions: number[] }[];
}

export interface EvalEvent {
  iter: number;
  train: number;
  val: number;
}

export interface TrainCallbacks {
  onStep?(e: StepEvent): void;
  onEval?(e: EvalEvent): void;
  /** Called after evaluations and at the end with the number of completed iterations. */
  onCheckpoint?(iter: number, optimizer: AdamW): void | Promise<void>;
  /** Polled between iterations; returning true stops the run after a checkpoint. */
  shouldStop?(): boolean;
}

/**
 * What training minimises on a batch: per-position losses [batch·seq] with the graph recorded
 * (positions whose target is −1 are ignored). The trainer averages them. Pre-training uses
 * next-token cross-entropy; distillation plugs in its teacher losses here.
 */
export interface Objective {
  /**
   * Host-side work a micro-batch needs before its graph is built (on-policy distillation samples
   * continuations with the student): the batch that rowLosses then gets. Optional.
   */
  prepare?(model: Llama, b: Batch, ctx: { iter: number; micro: number }): Promise<Batch>;
  /**
   * The losses, or the losses with the targets that say which positions count in the mean (≥ 0)
   * when the objective trains on other sequences than `b` (a teacher cache, on-policy samples).
   */
  rowLosses(model: Llama, b: Batch, ctx: ObjectiveContext): Tensor | { losses: Tensor; targets: Int32Array };
}

/** What an objective's pass over the student gets: `pass` goes to its forward (dropout seed, and a MoE model's routing log). */
export interface ObjectiveContext {
  iter: number;
  micro: number;
  pass: { dropoutSeed: number; routing?: RoutingLog };
}

export const languageModelling: Objective = {
  rowLosses: (model, b, ctx) => model.losses(b.ids, b.targets, b.batch, b.seq, ctx.pass),
};

/**
 * Training batches instead of random windows of the train split: the Curriculum. beginStep is
 * called once per optimizer step, then batch once per micro-batch with that micro-batch's
 * generator (its only source of randomness, for exact resumes). The loss is Σ w·L / Σ w over rows.
 */
export interface BatchSource {
  beginStep(iter: number, iters: number, model: Llama): Promise<CurriculumStats>;
  batch(rng: Rng, batchSize: number, blockSize: number): WeightedBatch;
}

const STREAM_BATCH = 1, STREAM_DROPOUT = 2, STREAM_EVAL = 3;

export function validateTrainOptions(o: TrainOptions): void {
  const positive: (keyof TrainOptions)[] = ["batchSize", "blockSize", "iters", "gradAccum", "evalInterval", "evalIters"];
  for (const k of positive) {
    const v = o[k];
    if (typeof v !== "number" || !Number.isInteger(v) || v <= 0) throw new Error(`${k} must be a positive integer (got ${String(v)})`);
  }
  if (!(o.lr > 0)) throw new Error(`learning rate must be > 0 (got ${o.lr})`);
  if (!(o.minLr >= 0 && o.minLr <= o.lr)) throw new Error(`min learning rate must be in [0, lr] (got ${o.minLr})`);
  if (!(Number.isInteger(o.warmup) && o.warmup >= 0)) throw new Error(`warmup must be a non-negative integer (got ${o.warmup})`);
  if (!(o.weightDecay >= 0)) throw new Error(`weight decay must be >= 0 (got ${o.weightDecay})`);
  for (const [k, v] of [["beta1", o.beta1], ["beta2", o.beta2]] as const)
    if (!(v >= 0 && v < 1)) throw new Error(`${k} must be in [0, 1) (got ${v})`);
  if (!(o.gradClip >= 0)) throw new Error(`grad clip must be >= 0 (got ${o.gradClip})`);
}

export class Trainer {
  readonly optimizer: AdamW;
  private readonly schedule: LrSchedule;

  constructor(
    readonly model: Llama,
    readonly opts: TrainOptions,
    readonly data: { train: Int32Array; val: Int32Array },
    readonly objective: Objective = languageModelling,
    readonly source?: BatchSource,
  ) {
    validateTrainOptions(opts);
    if (opts.blockSize > model.config.max_position_embeddings)
      throw new Error(`block size ${opts.blockSize} exceeds the model's max_position_embeddings ${model.config.max_position_embeddings}`);
    for (const [name, split] of Object.entries(data))
      if (split.length < opts.blockSize + 1) throw new Error(`the ${name} split has ${split.length} tokens, fewer than block size + 1 = ${opts.blockSize + 1}`);
    if (model.fused) throw new Error("trainer: the model is fused for inference (its Q/K/V and gate/up are stacked, norm gains folded); load it without fusing (fuse: false, --no-fuse) to train");
    if (model.expertCaches.size > 0) throw new Error("trainer: the model pages its experts from the file (inference only); load it without an expert cache to train");
    if (model.quantized.size > 0) throw new Error("trainer: the model has quantized weights (inference only); load it dequantized to train");
    this.optimizer = new AdamW(model.parameters(), { beta1: opts.beta1, beta2: opts.beta2, eps: 1e-8, weightDecay: opts.weightDecay });
    this.schedule = { lr: opts.lr, minLr: opts.minLr, warmup: opts.warmup, decayIters: opts.decayIters ?? opts.iters };
  }

  /** Mean loss over `evalIters` random batches of each split (nanoGPT's estimate_loss). */
  async evaluate(iter: number): Promise<EvalEvent> {
    const o = this.opts;
    const mean = async (tokens: Int32Array, split: number): Promise<number> => {
      // Every batch's loss is requested before any is awaited (a GPU runs them back to back).
      const losses: Promise<number>[] = [];
      for (let i = 0; i < o.evalIters; i++) {
        const b = randomBatch(tokens, o.batchSize, o.blockSize, new Rng(deriveSeed(o.seed, iter, STREAM_EVAL, split, i)));
        losses.push(noGrad(() => scope(() => this.model.loss(b.ids, b.targets, b.batch, b.seq).item())));
      }
      let sum = 0;
      for (const l of await Promise.all(losses)) sum += l;
      return sum / o.evalIters;
    };
    return { iter, train: await mean(this.data.train, 0), val: await mean(this.data.val, 1) };
  }

  /** One optimizer step (with gradient accumulation); returns the mean loss of its micro-batches. */
  async step(iter: number): Promise<StepEvent> {
    const o = this.opts, be = this.model.backend;
    const t0 = performance.now();
    const stats = await this.source?.beginStep(iter, o.iters, this.model);
    let tokens = 0, tokenLossSum = 0;
    const microLosses: Promise<number>[] = [];
    const c = this.model.config;
    const routerTerms: Promise<[aux: number, z: number, counts: number[][]]>[] = [];
    for (let micro = 0; micro < o.gradAccum; micro++) {
      const rng = new Rng(deriveSeed(o.seed, iter, STREAM_BATCH, micro));
      const weighted = this.source?.batch(rng, o.batchSize, o.blockSize);
      const drawn: Batch = weighted ?? randomBatch(this.data.train, o.batchSize, o.blockSize, rng);
      const b = this.objective.prepare ? await this.objective.prepare(this.model, drawn, { iter, micro }) : drawn;
      const rowLosses = scope(() => {
        const routing = isMoe(c) ? new RoutingLog(numExperts(c)) : undefined;
        const out = this.objective.rowLosses(this.model, b, { iter, micro, pass: { dropoutSeed: deriveSeed(o.seed, iter, STREAM_DROPOUT, micro), routing } });
        // An objective may say which positions count (on-policy and cached-teacher batches).
        const rows = out instanceof Tensor ? out : out.losses, targets = out instanceof Tensor ? b.targets : out.targets;
        let loss: Tensor = weighted ? sampleWeightedLoss(rows, { ...b, targets }, weighted.rowWeights) : meanLoss(rows, targets);
        // A MoE model's objective adds its routers' losses (HF Mixtral's loss + coef·aux, and the z-loss).
        if (routing) {
          if (routing.layers.length === 0) throw new Error("trainer: the objective ran the MoE model without its routing log (pass ctx.pass to forward)");
          const r = routing.loss(c);
          loss = add(loss, r.loss);
          routerTerms.push(Promise.all([r.aux.item(), r.z.item(), routing.counts()]));
        }
        backward(loss);
        microLosses.push(loss.item());
        // The unweighted per-token loss too: weighted losses of different curricula do not compare.
        return weighted ? { values: rows.toArray(), targets } : null;
      });
      if (rowLosses) {
        const values = await rowLosses.values;
        for (let j = 0; j < rowLosses.targets.length; j++)
          if (rowLosses.targets[j] >= 0) {
            tokens++;
            tokenLossSum += values[j];
          }
      }
    }
    if (o.gradAccum > 1) for (const [, p] of this.model.parameters()) if (p.grad) be.scale(p.grad, 1 / o.gradAccum);
    const gradNorm = await (o.gradClip > 0 ? this.optimizer.clipGradNorm(o.gradClip) : this.optimizer.gradNorm());
    const lr = learningRate(this.schedule, iter);
    this.optimizer.update(lr);
    this.optimizer.zeroGrad();
    let lossSum = 0;
    for (const l of await Promise.all(microLosses)) lossSum += l;
    const loss = lossSum / o.gradAccum;
    if (!Number.isFinite(loss)) throw new Error(`loss became ${loss} at iteration ${iter}; lower the learning rate`);
    const router = routerTerms.length > 0 ? routerStats(await Promise.all(routerTerms)) : undefined;
    const seconds = (performance.now() - t0) / 1000;
    const extra = router ? { router } : {};
    if (stats) return { iter, loss, lr, gradNorm, tokens, seconds, curriculum: { ...stats, tokenLoss: tokenLossSum / tokens }, ...extra };
    return { iter, loss, lr, gradNorm, tokens: o.batchSize * o.blockSize * o.gradAccum, seconds, ...extra };
  }

  /**
   * Train from iteration `start` (0, or the checkpoint's on resume) to `opts.iters`. Yields to
   * the event loop between iterations so that signals (Ctrl-C) and UIs are served.
   */
  async run(start: number, cb: TrainCallbacks = {}): Promise<{ iter: number; stopped: boolean }> {
    const o = this.opts;
    for (let iter = start; iter < o.iters; iter++) {
      await yieldToEventLoop();
      // (`cb.f?.(g())` would skip g() when f is absent: evaluate first.)
      if (iter % o.evalInterval === 0) {
        const e = await this.evaluate(iter);
        cb.onEval?.(e);
        if (iter > start) await cb.onCheckpoint?.(iter, this.optimizer);
      }
      if (cb.shouldStop?.()) {
        await cb.onCheckpoint?.(iter, this.optimizer);
        return { iter, stopped: true };
      }
      const s = await this.step(iter);
      cb.onStep?.(s);
    }
    const last = await this.evaluate(o.iters);
    cb.onEval?.(last);
    await cb.onCheckpoint?.(o.iters, this.optimizer);
    return { iter: o.iters, stopped: false };
  }
}

/** Micro-batches' router terms → the step's: mean aux and z, each layer's load from the summed counts. */
function routerStats(micro: [aux: number, z: number, counts: number[][]][]): RouterStats {
  const n = micro.length;
  return {
    aux: micro.reduce((s, m) => s + m[0], 0) / n,
    z: micro.reduce((s, m) => s + m[1], 0) / n,
    load: micro[0][2].map((layer, l) => {
      const summed = layer.map((_, e) => micro.reduce((s, m) => s + m[2][l][e], 0));
      const total = summed.reduce((s, v) => s + v, 0);
      return { layer: l, fractions: summed.map((v) => v / total) };
    }),
  };
}

const yieldToEventLoop = (): Promise<void> =>
  new Promise((resolve) => (typeof setImmediate === "function" ? setImmediate(resolve) : setTimeout(resolve, 0)));
