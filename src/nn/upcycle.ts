// Sparse upcycling (Komatsuzaki et al. 2022): a MoE model started from a trained dense one. Each
// dense FFN is copied into all E experts and the router starts at zero (or small seeded noise),
// so every expert computes the dense FFN and any routing mixes identical outputs with weights
// summing to 1: the upcycled model first computes the dense model's function.
import { Tensor } from "../tensor/tensor.js";
import { Llama } from "./llama.js";
import { type LlamaConfig, isMoe, parameterNames, parameterShape } from "./config.js";
import { backendOf, partOf } from "./placement.js";
import { Rng, deriveSeed } from "../util/rng.js";

export interface UpcycleOptions {
  experts: number;
  expertsPerToken: number;
  auxLossCoef: number;
  zLossCoef: number;
  /** Standard deviation of the router's initial weights (0: all zero). */
  routerNoise: number;
  seed: number;
}

/** A new MoE model from the dense `dense` (whose tensors stay its own); it lives on the same placement. */
export async function upcycle(dense: Llama, o: UpcycleOptions): Promise<Llama> {
  if (isMoe(dense.config)) throw new Error(`upcycle: the model already has ${dense.config.num_local_experts} experts per layer`);
  if (dense.fused || dense.quantized.size > 0) throw new Error("upcycle: the dense model must hold float, unfused weights");
  if (!(o.routerNoise >= 0 && Number.isFinite(o.routerNoise))) throw new Error(`upcycle: router noise must be >= 0 (got ${o.routerNoise})`);
  const config: LlamaConfig = {
    ...dense.config,
    num_local_experts: o.experts,
    num_experts_per_tok: o.expertsPerToken,
    router_aux_loss_coef: o.auxLossCoef,
    router_z_loss_coef: o.zLossCoef,
  };
  const rng = new Rng(deriveSeed(o.seed, 0x0c7c1e));
  const src = new Map(dense.parameters());
  const params = new Map<string, Tensor>();
  for (const name of parameterNames(config)) {
    const be = backendOf(dense.placement, partOf(name));
    const shape = parameterShape(config, name);
    const layer = /^model\.layers\.\d+\./.exec(name)?.[0];
    const denseName = layer && { "experts.w1.weight": "mlp.gate_proj.weight", "experts.w3.weight": "mlp.up_proj.weight", "experts.w2.weight": "mlp.down_proj.weight" }[name.slice(layer.length + "block_sparse_moe.".length)];
    let values: Float32Array;
    if (denseName) {
      const ffn = Float32Array.from(await src.get(layer + denseName)!.toArray());
      values = new Float32Array(ffn.length * o.experts);
      for (let e = 0; e < o.experts; e++) values.set(ffn, e * ffn.length);
    } else if (name.endsWith("block_sparse_moe.gate.weight")) {
      values = Float32Array.from({ length: shape[0] * shape[1] }, () => o.routerNoise * rng.normal());
    } else values = Float32Array.from(await src.get(name)!.toArray());
    params.set(name, Tensor.from(be, shape, values, true));
  }
  return new Llama(dense.placement, config, params);
}
