// The sparse mixture-of-experts FFN (Mixtral's block_sparse_moe): a router picks k of E SwiGLU
// experts for each token, the chosen experts run on their tokens only, and their outputs are
// mixed by the router's renormalised probabilities:
//   p = softmax(h Wrᵀ),  {e_j} = top-k(p),  w_j = p_{e_j} / Σ_j p_{e_j}
//   y = Σ_j w_j · W2_{e_j}ᵀ (silu(W1_{e_j} h) ⊙ W3_{e_j} h)
// Training adds the routers' load-balancing and z losses (RoutingLog.loss).
import { Tensor, isGradEnabled, unscoped } from "../tensor/tensor.js";
import * as op from "../tensor/ops.js";
import * as moe from "../tensor/moe-ops.js";
import { type Weight, applyWeight } from "./weight.js";
import { type LlamaConfig, numExperts } from "./config.js";
import type { ExpertCache } from "./expert-cache.js";

/**
 * A MoE layer's weights: the router [E, dim] and the experts, all resident — stacked, gate/up
 * [E, f, dim] and down [E, dim, f] (or quantized [E·out, in]); fused (nn/fusion.ts), each
 * expert's gate rows then its up rows in one [E, 2f, dim] — or paged through a cache.
 */
export type MoeWeights =
  | { router: Weight; gate: Weight; up: Weight; down: Weight }
  | { router: Weight; gateUp: Weight; down: Weight }
  | { router: Weight; cache: ExpertCache };

/**
 * What a pass's routers did, layer by layer: the router probabilities and log-normalisers (for
 * the training losses, with their graph) and the expert counts (the load, no gradient). A pass
 * records into it only when given one (ForwardOptions.routing).
 */
export class RoutingLog {
  readonly layers: { layer: number; probs: Tensor; lse: Tensor; counts: Tensor }[] = [];

  constructor(readonly experts: number) {}

  /**
   * router_aux_loss_coef · load balancing + router_z_loss_coef · z-loss, over every layer's rows
   * taken together (HF Mixtral's load_balancing_loss_func concatenates the layers' router logits;
   * the z-loss is ST-MoE's mean of logsumexp²), with the two terms' values.
   */
  loss(c: LlamaConfig): { loss: Tensor; aux: Tensor; z: Tensor } {
    if (this.layers.length === 0) throw new Error("moe: no router ran in this pass");
    const counts = Tensor.zeros(this.layers[0].counts.backend, [this.experts]);
    for (const L of this.layers) counts.backend.add(counts.data, counts.data, L.counts.data);
    const aux = moe.loadBalancingLoss(this.layers.map((L) => L.probs), counts);
    const rows = this.layers.reduce((s, L) => s + L.lse.size, 0);
    const z = moe.scaledSumOfSquares(this.layers.map((L) => L.lse), 1 / rows);
    const weighted = (t: Tensor, coef: number): Tensor => op.weightedSum(t, [coef]);
    return { loss: op.add(weighted(aux, c.router_aux_loss_coef ?? 0), weighted(z, c.router_z_loss_coef ?? 0)), aux, z };
  }

  /** Each layer's expert counts: how many routed slots went to each expert. */
  async counts(): Promise<number[][]> {
    return Promise.all(this.layers.map(async (L) => Array.from(await L.counts.toArray())));
  }
}

/**
 * Inference's expert usage (generate --stats): every pass of a model holding one adds each
 * layer's routed slots per expert into counters on the backend, read once at the end.
 */
export class ExpertUsage {
  private readonly counters = new Map<number, Tensor>();

  constructor(readonly experts: number) {}

  add(layer: number, ids: Tensor): void {
    let c = this.counters.get(layer);
    if (!c) this.counters.set(layer, (c = unscoped(() => Tensor.zeros(ids.backend, [this.experts]))));
    ids.backend.moeCounts(c.data, ids.data, ids.size, this.experts);
  }

  /** Each layer's share of its routed slots per expert, with the slot count. */
  async perLayer(): Promise<{ layer: number; slots: number; fractions: number[] }[]> {
    const layers = [...this.counters.keys()].sort((a, b) => a - b);
    return Promise.all(
      layers.map(async (layer) => {
        const counts = Array.from(await this.counters.get(layer)!.toArray());
        const slots = counts.reduce((s, v) => s + v, 0);
        return { layer, slots, fractions: counts.map((v) => v / Math.max(slots, 1)) };
      }),
    );
  }

  dispose(): void {
    for (const c of this.counters.values()) c.dispose();
    this.counters.clear();
  }
}

/**
 * The MoE FFN of normalised hidden states h [..., dim] → the same shape. `act` is applied to each
 * projection's input (QAT's activation fake-quantization); with `into`, the output is added to it
 * in place (a fused residual, inference only).
 */
export function moeFfn(h: Tensor, w: MoeWeights, c: LlamaConfig, layer: number, opts: { log?: RoutingLog; usage?: ExpertUsage | null; act?: (t: Tensor) => Tensor; into?: Tensor } = {}): Tensor {
  const E = numExperts(c), k = c.num_experts_per_tok!;
  const act = opts.act ?? ((t: Tensor) => t);
  const x = act(h);
  const logits = applyWeight(x, w.router);
  const probs = op.softmax(logits);
  const routing = moe.topKRouting(probs, k);
  if (opts.log) opts.log.layers.push({ layer, probs, lse: op.logSumExp(logits), counts: moe.expertCounts(routing.ids, E) });
  opts.usage?.add(layer, routing.ids);
  if ("cache" in w) return pagedExperts(x, w.cache, routing, act, opts.into ?? Tensor.zeros(x.backend, h.shape));
  const f = c.intermediate_size;
  const hidden = "gateUp" in w ? op.swiglu(...(op.splitColumns(moe.experts(x, w.gateUp, routing, E), [f, f]) as [Tensor, Tensor])) : op.swiglu(moe.experts(x, w.gate, routing, E), moe.experts(x, w.up, routing, E));
  const out = moe.experts(act(hidden), w.down, routing, E);
  return opts.into ? moe.combineExpertsInto(opts.into, out, routing) : moe.combineExperts(out, routing, h.shape);
}

/**
 * The experts of a paged layer (inference): the routed ids are read on the host, and the tokens
 * run in consecutive chunks whose experts fit the cache's slots (the whole pass when they do; a
 * decoded token's k always do), each chunk's experts made resident first. Adds into `y`.
 */
function pagedExperts(x: Tensor, cache: ExpertCache, routing: moe.Routing, act: (t: Tensor) => Tensor, y: Tensor): Tensor {
  const be = x.backend, k = routing.k;
  if (isGradEnabled()) throw new Error("moe: paged experts are for inference; run under noGrad");
  if (!be.readSync) throw new Error(`moe: expert paging needs a backend whose memory the host reads (wasm, js), not ${be.name}`);
  if (k > cache.slots) throw new Error(`moe: the expert cache holds ${cache.slots} experts per layer, a token needs ${k}`);
  const ids = be.readSync(routing.ids.data);
  const T = ids.length / k, dim = x.shape[x.shape.length - 1];
  const rows = (t: Tensor, t0: number, n: number): Tensor => {
    if (n === T) return t;
    const cols = t.size / T, part = Tensor.zeros(be, [n, cols]);
    be.copy(part.data, 0, t.data, t0 * cols, n * cols);
    return part;
  };
  for (let t0 = 0; t0 < T; ) {
    const wanted = new Set<number>();
    let t1 = t0;
    for (; t1 < T; t1++) {
      const fresh = new Set(Array.from(ids.subarray(t1 * k, (t1 + 1) * k)).filter((e) => !wanted.has(e)));
      if (wanted.size + fresh.size > cache.slots) break;
      for (const e of fresh) wanted.add(e);
    }
    const slotOf = cache.acquire([...wanted]);
    const n = t1 - t0;
    const chunk: moe.Routing = { weights: rows(routing.weights, t0, n), ids: Tensor.from(be, [n, k], Array.from(ids.subarray(t0 * k, t1 * k), (e) => slotOf.get(e)!)), k };
    const xs = rows(x, t0, n), W = cache.weights;
    const hidden = op.swiglu(moe.experts(xs, W.gate, chunk, cache.slots), moe.experts(xs, W.up, chunk, cache.slots));
    const out = moe.experts(act(hidden), W.down, chunk, cache.slots);
    if (n === T) return moe.combineExpertsInto(y, out, chunk);
    const part = rows(y, t0, n);
    moe.combineExpertsInto(part, out, chunk);
    be.copy(y.data, t0 * dim, part.data, 0, n * dim);
    t0 = t1;
  }
  return y;
}
