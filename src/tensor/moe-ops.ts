// The ops of a sparse mixture-of-experts layer (nn/moe.ts), each one graph node over the
// backend's MoE kernels with its backward written out. Expert ids stay on the backend: a tensor
// of whole numbers without gradient, read by the expert kernels there.
import { Tensor, record, trackBuf } from "./tensor.js";
import { QuantizedWeight } from "./quantized-weight.js";

/** The top-k routing of router probabilities [T, E]: renormalised weights [T, k] and expert ids [T, k]. */
export interface Routing {
  weights: Tensor;
  ids: Tensor;
  k: number;
}

/** Mixtral's routing: the k most probable experts of each row, their probabilities renormalised to sum 1. */
export function topKRouting(probs: Tensor, k: number): Routing {
  const be = probs.backend;
  const experts = probs.shape[probs.shape.length - 1], rows = probs.size / experts;
  if (!(Number.isInteger(k) && k >= 1 && k <= experts)) throw new Error(`moe: experts per token must be in [1, ${experts}] (got ${k})`);
  const weights = Tensor.zeros(be, [rows, k]);
  const ids = Tensor.zeros(be, [rows, k]);
  be.moeTopK(weights.data, ids.data, probs.data, rows, experts, k);
  record(weights, [probs], () => be.moeTopKBackward(probs.ensureGrad(), weights.grad!, probs.data, weights.data, ids.data, rows, experts, k));
  return { weights, ids, k };
}

/** How many of the routed slots went to each expert: [E], no gradient (the layer's expert load). */
export function expertCounts(ids: Tensor, experts: number): Tensor {
  const counts = Tensor.zeros(ids.backend, [experts]);
  ids.backend.moeCounts(counts.data, ids.data, ids.size, experts);
  return counts;
}

/**
 * Every routed slot through its expert: y[t·k + j] = x[t or t·k + j] · W_eᵀ with e = ids[t, j].
 * W: the experts stacked [E, n, in] (float, trainable) or quantized [E·n, in] (inference only).
 * x is [T, in] (shared by a row's k slots) or [T·k, in] (one input per slot); y is [T·k, n].
 */
export function experts(x: Tensor, w: Tensor | QuantizedWeight, routing: Routing, numExperts: number): Tensor {
  const be = x.backend;
  const { ids, k } = routing;
  const rows = ids.size / k, kin = x.shape[x.shape.length - 1];
  const xPerSlot = x.size / kin === rows * k && k > 1;
  if (x.size / kin !== rows && !xPerSlot) throw new Error(`moe: input of ${x.size / kin} rows for ${rows} tokens × ${k} slots`);
  const n = w instanceof QuantizedWeight ? w.shape[0] / numExperts : w.shape[1];
  const wantShape = w instanceof QuantizedWeight ? [numExperts * n, kin] : [numExperts, n, kin];
  if (!Number.isInteger(n) || w.shape.join(",") !== wantShape.join(",")) throw new Error(`moe: expert weights [${w.shape}] do not fit ${numExperts} experts of input ${kin}`);
  const y = Tensor.zeros(be, [rows * k, n]);
  if (w instanceof QuantizedWeight) {
    if (x.requiresGrad) throw new Error("moe: quantized experts have no backward pass; run inference under noGrad");
    be.matmulExpertsQuantized(y.data, x.data, w.data, ids.data, rows, k, numExperts, n, kin, xPerSlot);
    return y;
  }
  be.matmulExperts(y.data, x.data, w.data, ids.data, rows, k, numExperts, n, kin, xPerSlot);
  return record(y, [x, w], () =>
    be.matmulExpertsBackward(x.requiresGrad ? x.ensureGrad() : null, w.requiresGrad ? w.ensureGrad() : null, y.grad!, x.data, w.data, ids.data, rows, k, numExperts, n, kin, xPerSlot),
  );
}

/** The slots' outputs [T·k, D] mixed by the routing weights into a tensor of `shape` (T rows of D). */
export function combineExperts(slots: Tensor, routing: Routing, shape: readonly number[] = [routing.weights.size / routing.k, lastDim(slots)]): Tensor {
  const be = slots.backend;
  const { weights, k } = routing;
  const rows = weights.size / k, dim = lastDim(slots);
  checkCombine(slots, rows, k, dim, shape);
  const y = Tensor.zeros(be, shape);
  be.moeCombine(y.data, slots.data, weights.data, rows, k, dim, false);
  return record(y, [slots, weights], () => {
    const dSlots = slots.requiresGrad ? slots.ensureGrad() : trackBuf(be, be.alloc(slots.size));
    const dWeights = weights.requiresGrad ? weights.ensureGrad() : trackBuf(be, be.alloc(weights.size));
    be.moeCombineBackward(dSlots, dWeights, y.grad!, slots.data, weights.data, rows, k, dim);
  });
}

/** combineExperts added into `into` in place (a fused residual; inference only). */
export function combineExpertsInto(into: Tensor, slots: Tensor, routing: Routing): Tensor {
  const { weights, k } = routing;
  if (into.requiresGrad || slots.requiresGrad || weights.requiresGrad) throw new Error("moe: combining in place has no backward pass; run inference under noGrad");
  checkCombine(slots, weights.size / k, k, lastDim(slots), into.shape);
  slots.backend.moeCombine(into.data, slots.data, weights.data, weights.size / k, k, lastDim(slots), true);
  return into;
}

const lastDim = (t: Tensor): number => t.shape[t.shape.length - 1];

function checkCombine(slots: Tensor, rows: number, k: number, dim: number, shape: readonly number[]): void {
  if (slots.size !== rows * k * dim) throw new Error(`moe: ${slots.size / dim} slot rows for ${rows} tokens × ${k} slots`);
  if (shape.reduce((a, b) => a * b, 1) !== rows * dim || shape[shape.length - 1] !== dim) throw new Error(`moe: ${rows}×${dim} outputs do not fit [${shape}]`);
}

/**
 * The Switch / Mixtral load-balancing loss over every MoE layer's router probabilities [T, E]
 * taken together (as HF's load_balancing_loss_func concatenates them): E · Σᵢ fᵢ·Pᵢ with
 * fᵢ = (slots routed to expert i) / N and Pᵢ = (Σ rows pᵢ) / N, N the rows of all layers. Its value
 * is k for a perfectly balanced router. The routed counts [E] (summed over layers) carry no gradient.
 */
export function loadBalancingLoss(probs: readonly Tensor[], counts: Tensor): Tensor {
  const be = counts.backend, E = counts.size;
  const N = probs.reduce((s, p) => s + p.size / E, 0);
  const scale = E / (N * N);
  const y = Tensor.zeros(be, [1]);
  const ones = trackBuf(be, be.alloc(Math.max(...probs.map((p) => p.size / E))));
  be.fill(ones, 1);
  const colSums = trackBuf(be, be.alloc(E));
  for (const p of probs) {
    // Σ_rows p [1, E], then · counts [E, 1], added into y.
    be.matmul(colSums, ones, p.data, 1, E, p.size / E, false, false, false);
    be.matmul(y.data, colSums, counts.data, 1, 1, E, false, false, true);
  }
  be.scale(y.data, scale);
  return record(y, [...probs], () => {
    // ∂/∂p[t, i] = scale · counts[i]: a row [1, E] = grad · counts · scale, broadcast down the rows.
    const row = trackBuf(be, be.alloc(E));
    be.matmul(row, y.grad!, counts.data, 1, E, 1, false, false, false);
    be.scale(row, scale);
    for (const p of probs) if (p.requiresGrad) be.matmul(p.ensureGrad(), ones, row, p.size / E, E, 1, false, false, true);
  });
}

/** scale · Σ over the tensors of Σ x²: the router z-loss's Σ lse² / N. */
export function scaledSumOfSquares(xs: readonly Tensor[], scale: number): Tensor {
  const be = xs[0].backend;
  const y = Tensor.zeros(be, [1]);
  for (const x of xs) be.matmul(y.data, x.data, x.data, 1, 1, x.size, false, false, true);
  be.scale(y.data, scale);
  return record(y, [...xs], () => {
    for (const x of xs) {
      if (!x.requiresGrad) continue;
      // ∂/∂x = 2·scale·grad·x
      const g = trackBuf(be, be.alloc(x.size));
      be.matmul(g, x.data, y.grad!, x.size, 1, 1, false, false, false);
      be.axpy(x.ensureGrad(), g, 2 * scale);
    }
  });
}
