// The weight of a linear projection: a float tensor (trainable) or a quantized matrix
// (inference only). The model's layer loop applies either through `applyWeight`, so one
// statement of the model math serves training, float inference and quantized inference.
import { Tensor } from "../tensor/tensor.js";
import { QuantizedWeight } from "../tensor/quantized-weight.js";
import * as op from "../tensor/ops.js";

export type Weight = Tensor | QuantizedWeight;

/** y = x Wᵀ */
export function applyWeight(x: Tensor, w: Weight): Tensor {
  return w instanceof QuantizedWeight ? op.linearQuantized(x, w) : op.linear(x, w);
}

/**
 * Projections of x that output `widths` features each: one weight per output, or one fused
 * weight (rows of all outputs stacked, see nn/fusion.ts) whose result is split.
 */
export function applyWeights(x: Tensor, ws: readonly Weight[], widths: readonly number[]): Tensor[] {
  if (ws.length === widths.length) return ws.map((w) => applyWeight(x, w));
  if (ws.length !== 1) throw new Error(`applyWeights: ${ws.length} weights for ${widths.length} outputs`);
  return op.splitColumns(applyWeight(x, ws[0]), widths);
}

/**
 * Weights that are allocated but filled from a model file on first use (io/lazy-weights.ts).
 * The model asks for each part before it applies it; a part is read once, the first time.
 */
export interface DeferredWeights {
  /** Fill the embedding table, layer `l`'s weights, or the final norm and LM head, unless done. */
  ensure(part: "embed" | "head" | number): void;
  /** Fill every weight not yet filled (training and saving need them all). */
  ensureAll(): void;
  /**
   * Fusion: fill `target` instead of `parts` (unread matrices of one part of the model), their
   * rows stacked in order, float values times `gain`'s column (a folded RMSNorm; null: none), so
   * the parts never take memory. With `blockRows` (no gain), the parts' rows interleave in
   * blocks of that many: block 0 of every part in order, then block 1, … (stacked experts: each
   * expert's gate rows, then its up rows). False, changing nothing, when a part was read already.
   */
  stack(parts: readonly Weight[], target: Weight, gain: Tensor | null, blockRows?: number): boolean;
  /** Stop reading: the model is being disposed. */
  close(): void;
}
