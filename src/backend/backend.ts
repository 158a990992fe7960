// The kernel interface. A backend owns where numbers live (a JS typed array, a region of
// WebAssembly memory, later a GPU buffer) and implements the coarse kernels the autograd ops
// are built from. Model code never talks to a backend directly; it uses tensor ops.
//
// Conventions shared by every kernel:
// - Matrices are row-major. Shapes are given explicitly as numbers (no strides, no views).
// - Kernels named `...Backward` ACCUMULATE into their gradient outputs (`dx += ...`), as in
//   llm.c: gradient buffers start at zero and every consumer of a tensor adds its share.
// - Activations of attention-shaped tensors use the layout [batch, seq, heads, headDim], which is
//   exactly what a projection `x @ W^T` produces, so no transposes are needed between ops.
// - Buffers must hold at least the numbers the shapes imply; token ids and targets must be in
//   range. Backends throw rather than read or write out of bounds (in WebAssembly memory an
//   overrun would silently corrupt a neighbouring tensor).
// - Outputs may alias inputs only where stated (rope; elementwise ops); never for matmul.
// - Kernels only enqueue work; what they write is visible to later kernels in call order. Numbers
//   come back to the host only through `read`, `readInto`, `readTopK`, `sum` and `sumSquares`, which are
//   asynchronous because a GPU returns them asynchronously (the CPU backends resolve at once).
//   Host arrays passed to a kernel (token ids, targets) may be reused as soon as it returns.
import type { TopK } from "./top-k.js";

/** Numbers owned by a backend. Opaque to callers except for their count. */
export interface Buf {
  readonly length: number;
}

export type FloatArray = Float32Array | Float64Array;

/**
 * Weight formats a backend can hold and multiply by, as ggml stores them: Q8_0 and Q4_0 blocks,
 * or plain F16 (no blocks; llama-quantize keeps a matrix F16 when its rows are not whole blocks).
 */
export type QuantType = "q8_0" | "q4_0" | "f16";

/** The block formats among them: 32 values share one f16 scale. */
export type BlockQuantType = Exclude<QuantType, "f16">;

/** Bytes per block of 32 values: an f16 scale d, then 32 int8 (Q8_0) or 16 bytes of nibbles (Q4_0). */
export const QUANT_BLOCK_BYTES: Readonly<Record<BlockQuantType, number>> = { q8_0: 34, q4_0: 18 };

/** Bytes of one row of `cols` values of `type` (cols a multiple of 32 for the block formats). */
export function quantRowBytes(type: QuantType, cols: number): number {
  return type === "f16" ? cols * 2 : (cols / 32) * QUANT_BLOCK_BYTES[type];
}

/**
 * A matrix [rows, cols] of quantized weights owned by a backend, row-major: each row is cols/32
 * whole blocks (cols f16 values for "f16"), so rows can be permuted as byte ranges. Opaque to
 * callers except for its shape.
 */
export interface QBuf {
  readonly type: QuantType;
  readonly rows: number;
  readonly cols: number;
}

export interface Backend {
  readonly name: string;
  /** Precision of stored numbers: `f64` for the reference backend used in gradient checks. */
  readonly dtype: "f32" | "f64";
  /** Release what the backend holds outside its buffers (worker threads). Optional. */
  dispose?(): void;

  // ---- memory -------------------------------------------------------------------------------
  /** Allocate `length` numbers, zero-filled. */
  alloc(length: number): Buf;
  /** Release a buffer. Using it afterwards is an error. Freeing twice is an error. */
  free(buf: Buf): void;
  /** Copy host numbers into `buf` starting at element `offset` (default 0). */
  write(buf: Buf, src: ArrayLike<number>, offset?: number): void;
  /** Copy `length` numbers starting at `offset` out to a fresh host array (default: all). */
  read(buf: Buf, offset?: number, length?: number): Promise<FloatArray>;
  /** Copy `dst.length` numbers starting at `offset` (default 0) into `dst`: a host array the caller reuses. */
  readInto(buf: Buf, dst: FloatArray, offset?: number): Promise<void>;
  /**
   * read, at once: only backends whose memory the host reads directly (the CPU backends) have it.
   * For host decisions in the middle of a pass (which experts to page in), not for results.
   */
  readSync?(buf: Buf, offset?: number, length?: number): FloatArray;
  /**
   * The min(k, n) largest of the `n` numbers at `offset`, with their indices (relative to
   * `offset`), largest first and equal values by lower index (backend/top-k.ts): a sampler's
   * greedy or top-k choice without the whole row crossing to the host.
   */
  readTopK(buf: Buf, offset: number, n: number, k: number): Promise<TopK>;
  fill(buf: Buf, value: number): void;
  /** dst[dstOffset + i] = src[srcOffset + i] for i < n. */
  copy(dst: Buf, dstOffset: number, src: Buf, srcOffset: number, n: number): void;

  // ---- elementwise and reductions (n = length of the first buffer) ----------------------------
  /** out = a + b (out may alias a or b) */
  add(out: Buf, a: Buf, b: Buf): void;
  /** acc += alpha * x */
  axpy(acc: Buf, x: Buf, alpha: number): void;
  /** buf *= s */
  scale(buf: Buf, s: number): void;
  sum(buf: Buf): Promise<number>;
  sumSquares(buf: Buf): Promise<number>;
  /** x[offset + r·cols + c] *= gain[c] for r < rows: W·diag(g), a norm gain folded into a matrix's columns. */
  scaleColumns(x: Buf, gain: Buf, offset: number, rows: number, cols: number): void;

  // ---- dense linear algebra ---------------------------------------------------------------------
  /**
   * C[m,n] = (accumulate ? C : 0) + op(A)[m,k] · op(B)[k,n]
   * A is stored [m,k], or [k,m] when transA; B is stored [k,n], or [n,k] when transB.
   * A linear layer y = x W^T is matmul(y, x, W, rows, out, in, false, true, false).
   */
  matmul(c: Buf, a: Buf, b: Buf, m: number, n: number, k: number, transA: boolean, transB: boolean, accumulate: boolean): void;

  // ---- quantized weights (inference only) ------------------------------------------------------
  /**
   * Hold a [rows, cols] matrix of ggml weights (`bytes`: rows · quantRowBytes(type, cols); cols a
   * multiple of 32 for the block formats, any for f16) in backend memory, as they are: it stays
   * quantized. Without `bytes` the matrix starts zero-filled, for writeQuantized to fill.
   */
  allocQuantized(type: QuantType, rows: number, cols: number, bytes?: Uint8Array): QBuf;
  /**
   * Copy whole rows into a quantized matrix: `bytes` (a multiple of quantRowBytes(type, cols))
   * becomes rows row, row + 1, …, so a loader can stream a file's rows (or a fused matrix's
   * parts) straight into backend memory without a host copy of the whole matrix.
   */
  writeQuantized(w: QBuf, row: number, bytes: Uint8Array): void;
  /** Release a quantized matrix. Using it afterwards or freeing it twice is an error. */
  freeQuantized(w: QBuf): void;
  /**
   * C[m,n] = (accumulate ? C : 0) + A[m,k] · Wᵀ, W the quantized [n, k] matrix: a linear layer
   * y = x Wᵀ whose weights are dequantized block by block on the fly (sums in float). A backend in
   * llama.cpp's numerics mode (wasm's q8Activations) rounds decode activations as ggml's CPU
   * backend does first: to Q8_0 blocks for Q8_0/Q4_0 weights, to f16 for f16 weights.
   */
  matmulQuantized(c: Buf, a: Buf, w: QBuf, m: number, n: number, k: number, accumulate: boolean): void;

  // ---- model kernels ---------------------------------------------------------------------------
  /** out[i, :] = table[ids[i], :]  (out: [ids.length, dim]) */
  embedding(out: Buf, table: Buf, ids: Int32Array, dim: number): void;
  /** dTable[ids[i], :] += dOut[i, :] */
  embeddingBackward(dTable: Buf, dOut: Buf, ids: Int32Array, dim: number): void;
  /**
   * out[i, :] = row ids[i] of the quantized table, dequantized as ggml does (d·q per block, f16
   * widened): bitwise the rows of the dequantized table, without a float copy of the table.
   * out: [ids.length, table.cols]. Inference only: a quantized table has no gradient.
   */
  embeddingQuantized(out: Buf, table: QBuf, ids: Int32Array): void;

  /** out = x / rms(x) * w per row; rstd[r] = 1 / sqrt(mean(x[r]^2) + eps) is saved for backward. */
  rmsnorm(out: Buf, rstd: Buf, x: Buf, w: Buf, rows: number, dim: number, eps: number): void;
  rmsnormBackward(dx: Buf, dw: Buf, dOut: Buf, x: Buf, w: Buf, rstd: Buf, rows: number, dim: number): void;

  /**
   * Rotary position embedding, Hugging Face "rotate half" convention: within each head, element i
   * pairs with element i + headDim/2 and both rotate by angle pos·θ_i. headDim is even.
   * x, out: [batch, seq, heads, headDim]. cos, sin: [maxPos, headDim/2] tables. Token t of the
   * sequence is at position posOffset + t. out may alias x.
   */
  rope(out: Buf, x: Buf, cos: Buf, sin: Buf, batch: number, seq: number, heads: number, headDim: number, posOffset: number): void;
  /** dx += R(pos)^T dOut (rotation by the opposite angle). */
  ropeBackward(dx: Buf, dOut: Buf, cos: Buf, sin: Buf, batch: number, seq: number, heads: number, headDim: number, posOffset: number): void;

  /**
   * Causal self-attention with grouped-query heads (kvHeads divides heads): query head h reads KV
   * head floor(h / (heads / kvHeads)). q, out: [batch, seq, heads, headDim]; k, v: [batch, seq, kvHeads, headDim].
   * probs: [batch, heads, seq, seq], the softmax weights (zero above the diagonal), saved for backward.
   * scores = scale · q·k.
   */
  attention(out: Buf, probs: Buf, q: Buf, k: Buf, v: Buf, batch: number, seq: number, heads: number, kvHeads: number, headDim: number, scale: number): void;
  attentionBackward(dq: Buf, dk: Buf, dv: Buf, dOut: Buf, q: Buf, k: Buf, v: Buf, probs: Buf, batch: number, seq: number, heads: number, kvHeads: number, headDim: number, scale: number): void;

  /**
   * Inference attention over a KV cache (one sequence, no backward). q, out: [seq, heads, headDim],
   * the queries of positions posOffset..posOffset+seq−1; kCache, vCache: [maxSeq, kvHeads, headDim]
   * rows by position (at least posOffset + seq of them filled). Query t attends causally to cache
   * rows 0..posOffset+t, with query head h reading KV head floor(h / (heads / kvHeads)).
   */
  attentionCached(out: Buf, q: Buf, kCache: Buf, vCache: Buf, seq: number, heads: number, kvHeads: number, headDim: number, posOffset: number, scale: number): void;

  /** out = silu(gate) * up, silu(x) = x·sigmoid(x). */
  swiglu(out: Buf, gate: Buf, up: Buf): void;
  swigluBackward(dGate: Buf, dUp: Buf, dOut: Buf, gate: Buf, up: Buf): void;

  /**
   * Per-row softmax cross-entropy. logits: [rows, vocab]. losses[r] = logsumexp(logits[r]) - logits[r, t_r];
   * lse[r] = logsumexp(logits[r]) is saved for backward. Rows with targets[r] < 0 are ignored (loss 0).
   */
  crossEntropy(losses: Buf, lse: Buf, logits: Buf, targets: Int32Array, rows: number, vocab: number): void;
  /** dLogits[r, j] += dLosses[r] · (softmax(logits[r])_j − [j = t_r]); ignored rows get nothing. */
  crossEntropyBackward(dLogits: Buf, logits: Buf, lse: Buf, targets: Int32Array, dLosses: Buf, rows: number, vocab: number): void;

  /**
   * Inverted dropout: mask[i] = (dropoutUniform(seed, i) >= p) ? 1/(1-p) : 0; out = x · mask.
   * The random numbers come from the counter-based hash in `dropoutUniform` so that every backend
   * draws the same mask for the same seed, an integer in [0, 2^32).
   */
  dropout(out: Buf, mask: Buf, x: Buf, p: number, seed: number): void;
  /** dx += dOut · mask */
  dropoutBackward(dx: Buf, dOut: Buf, mask: Buf): void;

  // ---- quantization-aware training -------------------------------------------------------------
  /**
   * out = x quantized to ggml `type` blocks of 32 and dequantized (n = x.length, whole blocks): the
   * numbers a GGUF export of x holds, with the arithmetic of ggml's quantize_row_*_ref in f32 (the
   * CPU backends bit for bit; see tensor/fake-quant.ts). out may alias x.
   */
  fakeQuantize(out: Buf, x: Buf, type: BlockQuantType): void;
  /**
   * Per-row dynamic int8 fake quantization of x [rows, dim]: s = absmax/127, out = clamp(rint(x/s),
   * −127, 127)·s in f32 (a row of zeros stays zero). out may alias x.
   */
  fakeQuantizeRows(out: Buf, x: Buf, rows: number, dim: number): void;

  // ---- knowledge distillation ------------------------------------------------------------------
  /**
   * Per-row distillation losses of student logits [rows, vocab] against a dense teacher (logits
   * [rows, vocab]): losses[r] = wCe·CE(t_r, softmax(s_r)) + wKd·D(p_r, q_r), where q = softmax(s/τ),
   * p = softmax(teacher/τ) and D is chosen by kd.kind (see KdParams). Target t_r ≥ 0: wCe = α,
   * wKd = (1−α)·τ²; t_r = −1: the row is ignored (loss 0); t_r = KD_ONLY (−2): no ground truth,
   * wCe = 0 and wKd = τ². stats [rows, 4] are saved for backward. The teacher gets no gradient.
   */
  distill(losses: Buf, stats: Buf, student: Buf, teacher: Buf, targets: Int32Array, rows: number, vocab: number, kd: KdParams): void;
  /** dStudent[r, :] += dLosses[r] · ∂losses[r]/∂student[r, :] (exact; ignored rows get nothing). */
  distillBackward(dStudent: Buf, student: Buf, teacher: Buf, stats: Buf, targets: Int32Array, dLosses: Buf, rows: number, vocab: number, kd: KdParams): void;
  /**
   * The same against a sparse teacher: its top-k token ids [rows, k] (distinct, < vocab) and their
   * log-probabilities at τ [rows, k] (teacherLogProbs). The teacher's residual mass
   * p_R = max(1 − Σ top-k p, 1e-30) and the student's mass on every other token q_R are one more
   * outcome, so D is a divergence of two (k+1)-outcome distributions (none when k = vocab).
   */
  distillSparse(losses: Buf, stats: Buf, student: Buf, teacherIds: Int32Array, teacherLogProbs: Buf, targets: Int32Array, rows: number, vocab: number, k: number, kd: KdParams): void;
  distillSparseBackward(dStudent: Buf, student: Buf, teacherIds: Int32Array, teacherLogProbs: Buf, stats: Buf, targets: Int32Array, dLosses: Buf, rows: number, vocab: number, k: number, kd: KdParams): void;

  // ---- mixture of experts ---------------------------------------------------------------------
  // A sparse MoE layer (nn/moe.ts) routes each token to k of E experts. The routing stays on the
  // backend: expert ids are numbers in a Buf (exact integers), and the expert kernels read them
  // there, as ggml's mul_mat_id does, so no forward pass waits for the host.
  /** out[r, :] = softmax(x[r, :]) for `rows` rows of `cols`. out may alias x. */
  softmax(out: Buf, x: Buf, rows: number, cols: number): void;
  /** dx[r, :] += y[r, :] ⊙ (dOut[r, :] − Σ_c dOut[r, c]·y[r, c]), y = softmax(x) as softmax wrote it. */
  softmaxBackward(dx: Buf, dOut: Buf, y: Buf, rows: number, cols: number): void;
  /** out[r] = log Σ_c exp(x[r, c]) (max-shifted). */
  logSumExp(out: Buf, x: Buf, rows: number, cols: number): void;
  /** dx[r, c] += dOut[r] · exp(x[r, c] − lse[r]). */
  logSumExpBackward(dx: Buf, dOut: Buf, x: Buf, lse: Buf, rows: number, cols: number): void;
  /**
   * Top-k routing of router probabilities probs [rows, experts] (Mixtral's): ids[r·k + j] is the
   * expert of rank j in row r (largest first, equal values by lower index; k ≤ experts) and
   * weights[r·k + j] = probs[r, ids[r·k + j]] / s_r, s_r = Σ_j probs[r, ids[r·k + j]]: the chosen
   * probabilities renormalised to sum 1.
   */
  moeTopK(weights: Buf, ids: Buf, probs: Buf, rows: number, experts: number, k: number): void;
  /** dProbs[r, ids[r·k + j]] += (dWeights[r·k + j] − Σ_i dWeights[r·k + i]·weights[r·k + i]) / s_r. */
  moeTopKBackward(dProbs: Buf, dWeights: Buf, probs: Buf, weights: Buf, ids: Buf, rows: number, experts: number, k: number): void;
  /** counts[e] += how many of the n ids are e, for e < experts (the layer's expert load). */
  moeCounts(counts: Buf, ids: Buf, n: number, experts: number): void;
  /**
   * Expert projections (ggml's mul_mat_id): for row r < rows and slot j < k, with e = ids[r·k + j],
   * out[r·k + j, :] = x[xr, :] · W_eᵀ. W [experts, n, kin] stacks the experts' [n, kin] matrices;
   * xr = r when the k slots share their row's input (xPerSlot false: x is [rows, kin]), or r·k + j
   * (xPerSlot true: x is [rows·k, kin]). out: [rows·k, n]. Each expert's rows are one GEMM on the
   * CPU backends: every routed row is computed (dropless), no expert is run for rows it did not get.
   */
  matmulExperts(out: Buf, x: Buf, w: Buf, ids: Buf, rows: number, k: number, experts: number, n: number, kin: number, xPerSlot: boolean): void;
  /**
   * Backward of matmulExperts: dx[xr, :] += dOut[r·k + j, :] · W_e and dW_e += dOut[r·k + j, :]ᵀ x[xr, :].
   * A null dx or dw is not computed (a frozen side).
   */
  matmulExpertsBackward(dx: Buf | null, dw: Buf | null, dOut: Buf, x: Buf, w: Buf, ids: Buf, rows: number, k: number, experts: number, n: number, kin: number, xPerSlot: boolean): void;
  /**
   * matmulExperts with quantized experts (inference): W is the QBuf [experts·n, kin], expert e its
   * rows [e·n, (e+1)·n) — llama.cpp's ffn_*_exps tensors as they are — dequantized on the fly as
   * matmulQuantized does (llama.cpp's numerics mode included).
   */
  matmulExpertsQuantized(out: Buf, x: Buf, w: QBuf, ids: Buf, rows: number, k: number, experts: number, n: number, kin: number, xPerSlot: boolean): void;
  /**
   * out[r, :] = (accumulate ? out[r, :] : 0) + Σ_j weights[r·k + j] · slots[r·k + j, :]: the routed
   * experts' outputs [rows·k, dim] mixed by their weights [rows·k] into [rows, dim].
   */
  moeCombine(out: Buf, slots: Buf, weights: Buf, rows: number, k: number, dim: number, accumulate: boolean): void;
  /** dSlots[r·k + j, :] += weights[r·k + j] · dOut[r, :]; dWeights[r·k + j] += dOut[r, :] · slots[r·k + j, :]. */
  moeCombineBackward(dSlots: Buf, dWeights: Buf, dOut: Buf, slots: Buf, weights: Buf, rows: number, k: number, dim: number): void;

  // ---- optimizer -------------------------------------------------------------------------------
  /**
   * One AdamW step, exactly PyTorch's torch.optim.AdamW (decoupled decay applied first):
   *   p *= 1 − lr·weightDecay
   *   m = β1·m + (1−β1)·g;  v = β2·v + (1−β2)·g²
   *   p −= (lr / (1−β1^step)) · m / (sqrt(v) / sqrt(1−β2^step) + eps)
   * step counts from 1.
   */
  adamw(param: Buf, grad: Buf, m: Buf, v: Buf, lr: number, beta1: number, beta2: number, eps: number, weightDecay: number, step: number): void;
}

/**
 * A distillation loss for the kernels. kind 0: forward KL(p‖q) (Hinton's KD); 1: reverse
 * KL(q‖p) (MiniLLM); 2: generalized JSD β·KL(p‖m) + (1−β)·KL(q‖m) with m = β·p + (1−β)·q and
 * 0 < β < 1 (TRL's generalized_jsd_loss; its β = 0 and β = 1 are kinds 0 and 1).
 * alpha ∈ [0, 1] weighs the cross-entropy; temperature τ > 0.
 */
export interface KdParams {
  kind: 0 | 1 | 2;
  alpha: number;
  temperature: number;
  beta: number;
}

/** Target of a row with no ground-truth token (on-policy samples): the KD term alone. */
export const KD_ONLY = -2;

/** Rows of distillation stats the kernels save for backward. */
export const KD_STATS = 4;

/**
 * The counter-based uniform random number in [0, 1) behind dropout masks: a murmur3-style
 * finaliser of (i·golden + seed). Both backends implement exactly this.
 */
export function dropoutUniform(seed: number, i: number): number {
  let h = (Math.imul(i, 0x9e3779b9) + seed) >>> 0;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return (h >>> 8) / 16777216;
}
