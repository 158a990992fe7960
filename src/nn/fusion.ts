// Graph folding for inference: the same model math over fewer, larger kernels. At load time
// - Q, K and V become one [q+k+v, dim] matrix and gate and up one [2·inter, dim] matrix: one
//   matmul instead of three (two), the input read once; the result is split by copies. A MoE
//   layer's stacked experts fuse the same way, expert by expert: [E, 2·inter, dim], each expert's
//   gate rows then its up rows, one expert GEMM instead of two (paged experts stay apart).
// - RMSNorm gains fold into the projections that follow: W·(g ⊙ x̂) = (W·diag(g))·x̂, so W's
//   columns are scaled by g and the norm runs with unit gain (exact up to float rounding).
//   Float weights only: rescaling quantized blocks would re-round them. The final norm folds into
//   an untied LM head only (a tied head is the embedding table, which the lookup needs unscaled).
// - The output projections accumulate into the residual stream (matmul with accumulate) instead
//   of writing a fresh tensor that op.add then adds.
// A fused model is inference-only: it holds no separate q/k/v/gate/up parameters to train.
import type { Backend } from "../backend/backend.js";
import { Tensor } from "../tensor/tensor.js";
import { QuantizedWeight } from "../tensor/quantized-weight.js";
import type { DeferredWeights, Weight } from "./weight.js";
import type { Placement } from "./placement.js";
import type { MoeWeights } from "./moe.js";

/** The weights one layer of the loop applies; see Llama.forward. */
export interface LayerWeights {
  /** Gain of the attention RMSNorm (ones once folded into `qkv`). */
  inputNorm: Tensor;
  /** [q, k, v], or one matrix whose output columns are q‖k‖v. */
  qkv: Weight[];
  o: Weight;
  /** Gain of the MLP RMSNorm (ones once folded into a dense FFN's `gateUp`). */
  postNorm: Tensor;
  ffn: DenseFfnWeights | MoeWeights;
}

/** A dense SwiGLU MLP: [gate, up], or one matrix whose output columns are gate‖up; and down. */
export interface DenseFfnWeights {
  gateUp: Weight[];
  down: Weight;
}

/** Whether a layer's FFN is a mixture of experts (nn/moe.ts). */
export const isMoeFfn = (f: DenseFfnWeights | MoeWeights): f is MoeWeights => "router" in f;

/** Every weight a layer applies (to dispose them). */
export function layerWeightList(L: LayerWeights): Weight[] {
  const f = L.ffn;
  const ffn = !isMoeFfn(f) ? [...f.gateUp, f.down] : "cache" in f ? [f.router, ...Object.values(f.cache.weights)] : "gateUp" in f ? [f.router, f.gateUp, f.down] : [f.router, f.gate, f.up, f.down];
  return [L.inputNorm, L.postNorm, L.o, ...L.qkv, ...ffn];
}

export interface ModelWeights {
  layers: LayerWeights[];
  /** Gain of the final RMSNorm (ones once folded into `head`). */
  norm: Tensor;
  head: Weight;
  /** Output projections add into the residual stream in place (inference only). */
  accumulateResidual: boolean;
}

export interface FuseOptions {
  /**
   * The host bytes of quantized weights by HF name (a loader has them): concatenating quantized
   * matrices needs their blocks, which a backend does not hand back. Without them (and without
   * `deferred`), quantized groups stay unfused.
   */
  quantizedBytes?: (name: string) => Uint8Array | undefined;
  /**
   * The weights of a lazily loaded model: groups whose parts are still unread are read straight
   * into the fused matrix when their layer is first used (DeferredWeights.stack), so the parts
   * never take memory and the fused model stays lazy.
   */
  deferred?: DeferredWeights | null;
}

/**
 * The fused form of `w` (the unfused weights of a model): new tensors for the fused groups and the
 * folded head, the rest shared. Returns also the weights that became unused (the caller disposes them).
 */
export function fuseWeights(place: Placement, w: ModelWeights, names: (layer: number) => Record<"q" | "k" | "v" | "gate" | "up" | "expertGate" | "expertUp", string>, tiedHead: boolean, opts: FuseOptions = {}): { fused: ModelWeights; unused: Weight[] } {
  const created: Weight[] = [];
  const unused: Weight[] = [];
  try {
    // The unit gain of a norm whose gain was folded, made on first use (one per backend).
    const unit = new Map<Backend, Tensor>();
    const ones = (be: Backend): Tensor => {
      if (!unit.has(be)) created.push(unit.set(be, Tensor.from(be, w.norm.shape, new Float64Array(w.norm.size).fill(1))).get(be)!);
      return unit.get(be)!;
    };
    const group = (be: Backend, parts: Weight[], partNames: string[], gain: Tensor): { weights: Weight[]; folded: boolean } => {
      const fused = concatRows(be, parts, partNames, gain, opts);
      if (fused === null) return { weights: parts, folded: false };
      created.push(fused.weight);
      unused.push(...parts);
      return { weights: [fused.weight], folded: fused.folded };
    };
    const layers = w.layers.map((L, l) => {
      const n = names(l), be = place.layers[l];
      const qkv = group(be, L.qkv, [n.q, n.k, n.v], L.inputNorm);
      const fusedQkv = { ...L, qkv: qkv.weights, inputNorm: qkv.folded ? ones(be) : L.inputNorm };
      // A MoE layer's norm gain stays unfolded (the router reads it too).
      if (isMoeFfn(L.ffn)) {
        if (!("gate" in L.ffn)) return fusedQkv;
        const { router, gate, up, down } = L.ffn;
        const gateUp = stackExperts(be, gate, up, router.shape[0], [n.expertGate, n.expertUp], opts);
        if (gateUp === null) return fusedQkv;
        created.push(gateUp);
        unused.push(gate, up);
        return { ...fusedQkv, ffn: { router, gateUp, down } };
      }
      const gateUp = group(be, L.ffn.gateUp, [n.gate, n.up], L.postNorm);
      return { ...fusedQkv, ffn: { gateUp: gateUp.weights, down: L.ffn.down }, postNorm: gateUp.folded ? ones(be) : L.postNorm };
    });
    let { norm, head } = w;
    if (!tiedHead && head instanceof Tensor) {
      const scaled = concatRows(place.ends, [head], ["lm_head.weight"], norm, opts)!;
      created.push(scaled.weight);
      unused.push(head);
      head = scaled.weight;
      norm = ones(place.ends);
    }
    return { fused: { layers, norm, head, accumulateResidual: true }, unused };
  } catch (e) {
    for (const t of created) t.dispose();
    throw e;
  }
}

/**
 * The rows of `parts` stacked into one matrix; float columns scaled by `gain`. Null when the parts
 * cannot be stacked: float mixed with quantized, different quantized types (Q8_0 with F16, say), or
 * quantized blocks neither deferred nor at hand.
 */
function concatRows(be: Backend, parts: Weight[], names: string[], gain: Tensor, opts: FuseOptions): { weight: Weight; folded: boolean } | null {
  const cols = parts[0].shape[1];
  const rows = parts.reduce((s, p) => s + p.shape[0], 0);
  if (parts.every((p) => p instanceof Tensor)) {
    const fused = Tensor.zeros(be, [rows, cols]);
    if (!opts.deferred?.stack(parts, fused, gain)) copyScaledRows(be, parts as Tensor[], gain, fused);
    return { weight: fused, folded: true };
  }
  const type = (parts[0] as QuantizedWeight).type;
  if (!parts.every((p) => p instanceof QuantizedWeight && p.type === type)) return null;
  // Each row is whole blocks (or f16 values), so stacking rows is concatenating bytes. Gains are
  // not folded: rescaling quantized or f16 weights would re-round them.
  const fused = new QuantizedWeight(be, type, [rows, cols], null);
  if (opts.deferred?.stack(parts, fused, null)) return { weight: fused, folded: false };
  const bytes = names.map((n) => opts.quantizedBytes?.(n));
  if (bytes.some((b) => b === undefined)) {
    fused.dispose();
    return null;
  }
  let row = 0;
  parts.forEach((p, i) => {
    fused.writeRows(row, bytes[i]!);
    row += p.shape[0];
  });
  return { weight: fused, folded: false };
}

/**
 * Stacked experts' gate and up ([E, f, dim] each, or quantized [E·f, dim]) as one [E, 2f, dim]
 * (quantized [E·2f, dim]): expert e's gate rows, then its up rows. Null when they cannot be
 * stacked (as concatRows).
 */
function stackExperts(be: Backend, gate: Weight, up: Weight, E: number, names: string[], opts: FuseOptions): Weight | null {
  const cols = gate.shape[gate.shape.length - 1], f = gate.size / cols / E;
  if (gate instanceof Tensor && up instanceof Tensor) {
    const fused = Tensor.zeros(be, [E, 2 * f, cols]);
    if (!opts.deferred?.stack([gate, up], fused, null, f))
      for (let e = 0; e < E; e++) {
        be.copy(fused.data, 2 * e * f * cols, gate.data, e * f * cols, f * cols);
        be.copy(fused.data, (2 * e + 1) * f * cols, up.data, e * f * cols, f * cols);
      }
    return fused;
  }
  if (!(gate instanceof QuantizedWeight && up instanceof QuantizedWeight && gate.type === up.type)) return null;
  const fused = new QuantizedWeight(be, gate.type, [E * 2 * f, cols], null);
  if (opts.deferred?.stack([gate, up], fused, null, f)) return fused;
  const bytes = names.map((n) => opts.quantizedBytes?.(n));
  if (bytes.some((b) => b === undefined)) {
    fused.dispose();
    return null;
  }
  const expertBytes = bytes[0]!.length / E;
  for (let e = 0; e < E; e++) bytes.forEach((b, i) => fused.writeRows((2 * e + i) * f, b!.subarray(e * expertBytes, (e + 1) * expertBytes)));
  return fused;
}

/** `parts`' values stacked by rows into `out`, each column times its gain (W·diag(g)), on the backend. */
function copyScaledRows(be: Backend, parts: Tensor[], gain: Tensor, out: Tensor): void {
  let off = 0;
  for (const p of parts) {
    be.copy(out.data, off, p.data, 0, p.size);
    off += p.size;
  }
  be.scaleColumns(out.data, gain.data, 0, out.shape[0], out.shape[1]);
}
