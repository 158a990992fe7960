// Differentiable ops. Each is one graph node over one or two backend kernels, with its backward
// written out explicitly. Leading dimensions are flattened: a [B, T, D] activation is `rows × D`.
import { Tensor, isGradEnabled, record, trackBuf } from "./tensor.js";
import type { QuantizedWeight } from "./quantized-weight.js";
import { type Backend, type Buf, type QuantType, type KdParams, KD_ONLY, KD_STATS } from "../backend/backend.js";

const rowsOf = (t: Tensor): number => t.size / t.shape[t.shape.length - 1];
const lastDim = (t: Tensor): number => t.shape[t.shape.length - 1];

function sameShape(a: Tensor, b: Tensor, op: string): void {
  if (a.shape.length !== b.shape.length || a.shape.some((d, i) => d !== b.shape[i]))
    throw new Error(`${op}: shapes [${a.shape}] and [${b.shape}] differ`);
}

/** y = x Wᵀ, W stored [out, in] as in PyTorch's nn.Linear. */
export function linear(x: Tensor, w: Tensor): Tensor {
  const be = x.backend;
  const [outF, inF] = w.shape;
  if (lastDim(x) !== inF) throw new Error(`linear: input has ${lastDim(x)} features, weight expects ${inF}`);
  const rows = rowsOf(x);
  const y = Tensor.zeros(be, [...x.shape.slice(0, -1), outF]);
  be.matmul(y.data, x.data, w.data, rows, outF, inF, false, true, false);
  return record(y, [x, w], () => {
    if (x.requiresGrad) be.matmul(x.ensureGrad(), y.grad!, w.data, rows, inF, outF, false, false, true);
    if (w.requiresGrad) be.matmul(w.ensureGrad(), y.grad!, x.data, outF, inF, rows, true, false, true);
  });
}

/**
 * y = x Wᵀ with W quantized ([out, in] blocks). Inference only: there is no backward, so it
 * refuses inputs that would record a graph (run under noGrad).
 */
export function linearQuantized(x: Tensor, w: QuantizedWeight): Tensor {
  if (x.requiresGrad) throw new Error("linearQuantized: no backward pass; run inference under noGrad");
  const [outF, inF] = w.shape;
  if (lastDim(x) !== inF) throw new Error(`linearQuantized: input has ${lastDim(x)} features, weight expects ${inF}`);
  const y = Tensor.zeros(x.backend, [...x.shape.slice(0, -1), outF]);
  x.backend.matmulQuantized(y.data, x.data, w.data, rowsOf(x), outF, inF, false);
  return y;
}

/**
 * y += x Wᵀ in place (W float or quantized): a residual add fused into the projection's
 * accumulate. Inference only: it overwrites y, which a graph would still need.
 */
export function linearAccumulate(y: Tensor, x: Tensor, w: Tensor | QuantizedWeight): Tensor {
  if (y.requiresGrad || x.requiresGrad) throw new Error("linearAccumulate: no backward pass; run inference under noGrad");
  const [outF, inF] = w.shape;
  if (lastDim(x) !== inF || lastDim(y) !== outF || rowsOf(x) !== rowsOf(y)) throw new Error(`linearAccumulate: [${x.shape}] · [${w.shape}]ᵀ does not fit [${y.shape}]`);
  if (w instanceof Tensor) x.backend.matmul(y.data, x.data, w.data, rowsOf(x), outF, inF, false, true, true);
  else x.backend.matmulQuantized(y.data, x.data, w.data, rowsOf(x), outF, inF, true);
  return y;
}

/**
 * The column blocks of x [..., Σ widths] as separate tensors [..., widthᵢ] (copies): the outputs
 * of a fused projection. Inference only.
 */
export function splitColumns(x: Tensor, widths: readonly number[]): Tensor[] {
  if (x.requiresGrad) throw new Error("splitColumns: no backward pass; run inference under noGrad");
  const n = lastDim(x), rows = rowsOf(x);
  if (widths.reduce((a, b) => a + b, 0) !== n) throw new Error(`splitColumns: widths [${widths}] do not add up to ${n}`);
  const be = x.backend;
  let col = 0;
  return widths.map((w) => {
    const y = Tensor.zeros(be, [...x.shape.slice(0, -1), w]);
    for (let r = 0; r < rows; r++) be.copy(y.data, r * w, x.data, r * n + col, w);
    col += w;
    return y;
  });
}

/** Rows of `table` [V, D] picked by `ids`; the result has shape [...idsShape, D]. */
export function embedding(table: Tensor, ids: Int32Array, idsShape: readonly number[]): Tensor {
  const be = table.backend;
  const dim = table.shape[1];
  const y = Tensor.zeros(be, [...idsShape, dim]);
  be.embedding(y.data, table.data, ids, dim);
  return record(y, [table], () => be.embeddingBackward(table.ensureGrad(), y.grad!, ids, dim));
}

/**
 * Rows of a quantized table [V, D] picked by `ids`, dequantized from its blocks (bitwise the rows
 * of the dequantized table); shape [...idsShape, D]. A quantized table has no gradient (quantized
 * models cannot be trained), so this runs under noGrad only.
 */
export function embeddingQuantized(table: QuantizedWeight, ids: Int32Array, idsShape: readonly number[]): Tensor {
  if (isGradEnabled()) throw new Error("embeddingQuantized: a quantized embedding has no gradient (quantized models cannot be trained); run inference under noGrad");
  const y = Tensor.zeros(table.backend, [...idsShape, table.shape[1]]);
  table.backend.embeddingQuantized(y.data, table.data, ids);
  return y;
}

export function rmsnorm(x: Tensor, w: Tensor, eps: number): Tensor {
  const be = x.backend;
  const dim = lastDim(x), rows = rowsOf(x);
  if (w.size !== dim) throw new Error(`rmsnorm: weight has ${w.size} numbers, input rows have ${dim}`);
  const y = Tensor.zeros(be, x.shape);
  const rstd = trackBuf(be, be.alloc(rows));
  be.rmsnorm(y.data, rstd, x.data, w.data, rows, dim, eps);
  return record(y, [x, w], () => {
    // The kernel needs both gradient buffers; a frozen side gets a scratch buffer.
    const dx = x.requiresGrad ? x.ensureGrad() : trackBuf(be, be.alloc(x.size));
    const dw = w.requiresGrad ? w.ensureGrad() : trackBuf(be, be.alloc(w.size));
    be.rmsnormBackward(dx, dw, y.grad!, x.data, w.data, rstd, rows, dim);
  });
}

export interface AttentionShape {
  batch: number;
  seq: number;
  heads: number;
  kvHeads: number;
  headDim: number;
}

/** Rotary embedding of x [batch, seq, heads·headDim] with precomputed cos/sin tables [maxPos, headDim/2]. */
export function rope(x: Tensor, cos: Tensor, sin: Tensor, batch: number, seq: number, heads: number, headDim: number, posOffset = 0): Tensor {
  const be = x.backend;
  if (x.size !== batch * seq * heads * headDim) throw new Error(`rope: input of ${x.size} numbers is not [${batch}, ${seq}, ${heads}, ${headDim}]`);
  if ((posOffset + seq) * (headDim / 2) > cos.size) throw new Error(`rope: position ${posOffset + seq - 1} beyond the table`);
  const y = Tensor.zeros(be, x.shape);
  be.rope(y.data, x.data, cos.data, sin.data, batch, seq, heads, headDim, posOffset);
  return record(y, [x], () => be.ropeBackward(x.ensureGrad(), y.grad!, cos.data, sin.data, batch, seq, heads, headDim, posOffset));
}

/** Causal grouped-query attention; q [B, T, H·D], k and v [B, T, KVH·D] → [B, T, H·D]. */
export function attention(q: Tensor, k: Tensor, v: Tensor, s: AttentionShape): Tensor {
  const be = q.backend;
  const { batch, seq, heads, kvHeads, headDim } = s;
  if (q.size !== batch * seq * heads * headDim) throw new Error("attention: q has the wrong size");
  if (k.size !== batch * seq * kvHeads * headDim || v.size !== k.size) throw new Error("attention: k/v have the wrong size");
  if (heads % kvHeads !== 0) throw new Error(`attention: ${kvHeads} kv heads do not divide ${heads} heads`);
  const scale = 1 / Math.sqrt(headDim);
  const y = Tensor.zeros(be, q.shape);
  const probs = trackBuf(be, be.alloc(batch * heads * seq * seq));
  be.attention(y.data, probs, q.data, k.data, v.data, batch, seq, heads, kvHeads, headDim, scale);
  return record(y, [q, k, v], () =>
    be.attentionBackward(q.ensureGrad(), k.ensureGrad(), v.ensureGrad(), y.grad!, q.data, k.data, v.data, probs, batch, seq, heads, kvHeads, headDim, scale),
  );
}

/**
 * Inference-only attention of q [T, H·D] (positions posOffset..posOffset+T−1) over KV caches
 * [maxSeq, KVH·D] → [T, H·D]. It has no backward, so it refuses inputs that would need one.
 */
export function attentionCached(q: Tensor, kCache: Tensor, vCache: Tensor, heads: number, kvHeads: number, headDim: number, posOffset: number): Tensor {
  if (q.requiresGrad) throw new Error("attentionCached: no backward pass; run inference under noGrad");
  const seq = q.size / (heads * headDim);
  if (!Number.isInteger(seq)) throw new Error(`attentionCached: q of ${q.size} numbers is not [T, ${heads}·${headDim}]`);
  if ((posOffset + seq) * kvHeads * headDim > kCache.size || vCache.size !== kCache.size) throw new Error(`attentionCached: positions up to ${posOffset + seq} exceed the cache`);
  if (heads % kvHeads !== 0) throw new Error(`attentionCached: ${kvHeads} kv heads do not divide ${heads} heads`);
  const y = Tensor.zeros(q.backend, q.shape);
  q.backend.attentionCached(y.data, q.data, kCache.data, vCache.data, seq, heads, kvHeads, headDim, posOffset, 1 / Math.sqrt(headDim));
  return y;
}

/** silu(gate) ⊙ up */
export function swiglu(gate: Tensor, up: Tensor): Tensor {
  sameShape(gate, up, "swiglu");
  const be = gate.backend;
  const y = Tensor.zeros(be, gate.shape);
  be.swiglu(y.data, gate.data, up.data);
  return record(y, [gate, up], () => be.swigluBackward(gate.ensureGrad(), up.ensureGrad(), y.grad!, gate.data, up.data));
}

export function add(a: Tensor, b: Tensor): Tensor {
  sameShape(a, b, "add");
  const be = a.backend;
  const y = Tensor.zeros(be, a.shape);
  be.add(y.data, a.data, b.data);
  return record(y, [a, b], () => {
    if (a.requiresGrad) be.axpy(a.ensureGrad(), y.grad!, 1);
    if (b.requiresGrad) be.axpy(b.ensureGrad(), y.grad!, 1);
  });
}

/** Inverted dropout with a counter-based mask (same mask on every backend for the same seed). */
export function dropout(x: Tensor, p: number, seed: number): Tensor {
  if (p === 0) return x;
  if (!(p > 0 && p < 1)) throw new Error(`dropout: p must be in [0, 1), got ${p}`);
  const be = x.backend;
  const y = Tensor.zeros(be, x.shape);
  const mask = trackBuf(be, be.alloc(x.size));
  be.dropout(y.data, mask, x.data, p, seed >>> 0);
  return record(y, [x], () => be.dropoutBackward(x.ensureGrad(), y.grad!, mask));
}

/** Per-row cross-entropy of logits [N, V] against targets (−1 = ignore) → losses [N]. */
export function crossEntropy(logits: Tensor, targets: Int32Array): Tensor {
  const be = logits.backend;
  const vocab = lastDim(logits), rows = rowsOf(logits);
  if (targets.length !== rows) throw new Error(`crossEntropy: ${targets.length} targets for ${rows} rows`);
  const losses = Tensor.zeros(be, [rows]);
  const lse = trackBuf(be, be.alloc(rows));
  be.crossEntropy(losses.data, lse, logits.data, targets, rows, vocab);
  return record(losses, [logits], () => be.crossEntropyBackward(logits.ensureGrad(), logits.data, lse, targets, losses.grad!, rows, vocab));
}

/** Σ wᵢ·xᵢ with host-side weights: the mean (wᵢ = 1/N) or a per-sample weighted objective. */
export function weightedSum(x: Tensor, weights: ArrayLike<number>): Tensor {
  const be = x.backend;
  const n = x.size;
  if (weights.length !== n) throw new Error(`weightedSum: ${weights.length} weights for ${n} numbers`);
  const w = trackBuf(be, be.alloc(n));
  be.write(w, weights);
  // A [1, n]·[n, 1] product on the device: the loss never leaves the backend until it is read.
  const y = Tensor.zeros(be, [1]);
  be.matmul(y.data, w, x.data, 1, 1, n, false, false, false);
  return record(y, [x], () => be.matmul(x.ensureGrad(), w, y.grad!, n, 1, 1, false, false, true));
}

/** Mean of per-row losses over the rows whose target is not ignored. */
export function meanLoss(losses: Tensor, targets: Int32Array): Tensor {
  let count = 0;
  for (const t of targets) if (t >= 0) count++;
  const w = new Float64Array(targets.length);
  for (let i = 0; i < targets.length; i++) w[i] = targets[i] >= 0 ? 1 / Math.max(count, 1) : 0;
  return weightedSum(losses, w);
}

// ---- quantization-aware training ---------------------------------------------------------------
// Fake quantization: the forward pass sees quantized numbers, the backward pass treats the rounding
// as the identity (the straight-through estimator), so the float "latent" weights keep learning.

/**
 * W fake-quantized as ggml `type` (Q8_0 or Q4_0) blocks of 32 along each row (the last dimension,
 * a multiple of 32): exactly the values a GGUF export of W dequantizes to (backend/fake-quant.ts).
 * Backward is straight-through: dW += dY.
 */
export function fakeQuantize(w: Tensor, type: QuantType): Tensor {
  const be = w.backend;
  if (lastDim(w) % 32 !== 0) throw new Error(`fakeQuantize: rows of ${lastDim(w)} are not whole blocks of 32`);
  if (type !== "q8_0" && type !== "q4_0") throw new Error(`fakeQuantize: unknown type ${String(type)} (q8_0 or q4_0)`);
  const y = Tensor.zeros(be, w.shape);
  be.fakeQuantize(y.data, w.data, type);
  return record(y, [w], () => be.axpy(w.ensureGrad(), y.grad!, 1));
}

/**
 * Per-token dynamic int8 fake quantization of activations x [..., D]: each row gets the scale
 * s = absmax/127 and becomes round(x/s)·s, round half to even, q ∈ [−127, 127], all in f32 (a row
 * of zeros stays zero). Symmetric like ggml's activation quantizers (Q8_0: d = amax/127), but per
 * row as in torchao's 8da4w scheme (whose Int8DynActInt4WeightQATQuantizer is asymmetric: a zero
 * point and [−128, 127]). Backward is straight-through: dx += dy.
 */
export function fakeQuantizeActivations(x: Tensor): Tensor {
  const be = x.backend;
  const y = Tensor.zeros(be, x.shape);
  be.fakeQuantizeRows(y.data, x.data, rowsOf(x), lastDim(x));
  return record(y, [x], () => be.axpy(x.ensureGrad(), y.grad!, 1));
}

// ---- knowledge distillation ----------------------------------------------------------------------

export type KdLoss = "forward-kl" | "reverse-kl" | "jsd";
export const KD_LOSSES: readonly KdLoss[] = ["forward-kl", "reverse-kl", "jsd"];

export interface DistillOptions {
  /** Divergence between teacher p = softmax(t/τ) and student q = softmax(s/τ). */
  loss: KdLoss;
  /** Weight of the ground-truth cross-entropy (at τ = 1) in [0, 1]; the KD term gets 1 − α. */
  alpha: number;
  /** Distillation temperature τ > 0; the KD term is scaled by τ² (Hinton et al.). */
  temperature: number;
  /** jsd only: the mixture m = β·p + (1−β)·q, β in [0, 1] (0 = forward KL, 1 = reverse KL, as TRL). */
  beta?: number;
}

/** The teacher's top-k at τ for each row: ids [N·k] and log-probabilities [N, k] (a tensor on the student's backend). */
export interface SparseTeacher {
  ids: Int32Array;
  logProbs: Tensor;
  k: number;
}

/** Kernel parameters for `opts`, checked. JSD at β = 0 / 1 is TRL's special case: the plain KLs. */
export function kdParams(opts: DistillOptions): KdParams {
  const { loss, alpha, temperature } = opts;
  const beta = opts.beta ?? 0.5;
  if (!KD_LOSSES.includes(loss)) throw new Error(`distill: unknown loss "${String(loss)}" (${KD_LOSSES.join(", ")})`);
  if (!(alpha >= 0 && alpha <= 1)) throw new Error(`distill: alpha must be in [0, 1] (got ${alpha})`);
  if (!(temperature > 0 && Number.isFinite(temperature))) throw new Error(`distill: temperature must be > 0 (got ${temperature})`);
  if (!(beta >= 0 && beta <= 1)) throw new Error(`distill: beta must be in [0, 1] (got ${beta})`);
  const kind = loss === "forward-kl" ? 0 : loss === "reverse-kl" ? 1 : beta === 0 ? 0 : beta === 1 ? 1 : 2;
  return { kind, alpha, temperature, beta };
}

/**
 * Per-row distillation losses of student logits [N, V] → [N]:
 *   L = α·CE(y, softmax(s)) + (1−α)·τ²·D(p, q),  p = softmax(teacher/τ), q = softmax(s/τ)
 * with D = KL(p‖q) (forward-kl), KL(q‖p) (reverse-kl) or β·KL(p‖m) + (1−β)·KL(q‖m) (jsd). Target
 * −1 ignores a row; KD_ONLY (−2) marks a row without ground truth (on-policy samples): its loss is
 * τ²·D alone. The teacher is dense logits [N, V] or a sparse top-k (see Backend.distillSparse for
 * the residual mass); it is a constant: only the student gets a gradient.
 */
export function distillLosses(student: Tensor, teacher: Tensor | SparseTeacher, targets: Int32Array, opts: DistillOptions): Tensor {
  const be = student.backend;
  const vocab = lastDim(student), rows = rowsOf(student);
  const kd = kdParams(opts);
  if (targets.length !== rows) throw new Error(`distillLosses: ${targets.length} targets for ${rows} rows`);
  for (const t of targets) if (!(Number.isInteger(t) && t >= KD_ONLY && t < vocab)) throw new Error(`distillLosses: target ${t} out of range [${KD_ONLY}, ${vocab})`);
  const losses = Tensor.zeros(be, [rows]);
  const stats = trackBuf(be, be.alloc(rows * KD_STATS));
  if (teacher instanceof Tensor) {
    if (teacher.backend !== be) throw new Error("distillLosses: the teacher's logits live on another backend");
    sameShape(student, teacher, "distillLosses");
    be.distill(losses.data, stats, student.data, teacher.data, targets, rows, vocab, kd);
    return record(losses, [student], () => be.distillBackward(student.ensureGrad(), student.data, teacher.data, stats, targets, losses.grad!, rows, vocab, kd));
  }
  const { ids, logProbs, k } = teacher;
  if (!(Number.isInteger(k) && k >= 1 && k <= vocab)) throw new Error(`distillLosses: top-k ${k} must be in [1, ${vocab}]`);
  if (ids.length !== rows * k || logProbs.size !== rows * k) throw new Error(`distillLosses: the sparse teacher needs ${rows}×${k} ids and log-probabilities`);
  if (logProbs.backend !== be) throw new Error("distillLosses: the teacher's log-probabilities live on another backend");
  // Distinct ids per row: the residual outcome is "every token not listed".
  const seen = new Int32Array(vocab).fill(-1);
  for (let i = 0; i < ids.length; i++) {
    const id = ids[i], r = Math.floor(i / k);
    if (!(id >= 0 && id < vocab)) throw new Error(`distillLosses: teacher token id ${id} out of range [0, ${vocab})`);
    if (seen[id] === r) throw new Error(`distillLosses: teacher token id ${id} repeats in row ${r}`);
    seen[id] = r;
  }
  be.distillSparse(losses.data, stats, student.data, ids, logProbs.data, targets, rows, vocab, k, kd);
  return record(losses, [student], () =>
    be.distillSparseBackward(student.ensureGrad(), student.data, ids, logProbs.data, stats, targets, losses.grad!, rows, vocab, k, kd),
  );
}

// ---- softmax -------------------------------------------------------------------------------------

/** softmax over the last dimension. */
export function softmax(x: Tensor): Tensor {
  const be = x.backend;
  const rows = rowsOf(x), cols = lastDim(x);
  const y = Tensor.zeros(be, x.shape);
  be.softmax(y.data, x.data, rows, cols);
  return record(y, [x], () => be.softmaxBackward(x.ensureGrad(), y.grad!, y.data, rows, cols));
}

/** log Σ exp over the last dimension: [..., C] → [...]. */
export function logSumExp(x: Tensor): Tensor {
  const be = x.backend;
  const rows = rowsOf(x), cols = lastDim(x);
  const y = Tensor.zeros(be, x.shape.length > 1 ? x.shape.slice(0, -1) : [1]);
  be.logSumExp(y.data, x.data, rows, cols);
  return record(y, [x], () => be.logSumExpBackward(x.ensureGrad(), y.grad!, x.data, y.data, rows, cols));
}
