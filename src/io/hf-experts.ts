// Mixtral's file layout of a MoE layer: HF keeps each expert's matrices apart
// (`model.layers.N.block_sparse_moe.experts.M.w1.weight`, [out, in]); Bonsai holds them stacked,
// one [E, out, in] tensor per kind (`…block_sparse_moe.experts.w1.weight`, see nn/config.ts), so
// each expert kernel runs over one buffer. These convert between the two on the host.
import type { HostTensor, NamedTensors } from "../format/host-tensor.js";
import { type LlamaConfig, isMoe, isStackedExpert, numExperts, parameterNames, parameterShape } from "../nn/config.js";

const STACKED = /^(model\.layers\.\d+\.block_sparse_moe\.experts)\.(w[123]\.weight)$/;

/** HF's name of expert `e`'s part of a stacked parameter, or null when `name` is not one. */
export function hfExpertName(name: string, e: number): string | null {
  const m = STACKED.exec(name);
  return m ? `${m[1]}.${e}.${m[2]}` : null;
}

/** The tensors in HF's per-expert layout (stacked experts split); other tensors as they are. */
export function splitExperts(config: LlamaConfig, tensors: NamedTensors): NamedTensors {
  if (!isMoe(config)) return tensors;
  const out: NamedTensors = new Map();
  for (const [name, t] of tensors) {
    if (!isStackedExpert(name)) {
      out.set(name, t);
      continue;
    }
    const [E, rows, cols] = t.shape;
    for (let e = 0; e < E; e++) out.set(hfExpertName(name, e)!, { shape: [rows, cols], data: t.data.subarray(e * rows * cols, (e + 1) * rows * cols) });
  }
  return out;
}

/**
 * The tensors with each layer's per-expert matrices stacked (the parameters Bonsai holds); a
 * missing expert or one of the wrong shape is a one-line error. Already stacked tensors pass.
 */
export function stackExperts(config: LlamaConfig, tensors: NamedTensors): NamedTensors {
  if (!isMoe(config)) return tensors;
  const out: NamedTensors = new Map(tensors);
  const E = numExperts(config);
  for (const name of parameterNames(config)) {
    if (!isStackedExpert(name) || tensors.has(name)) continue;
    const [, rows, cols] = parameterShape(config, name);
    const data = new Float32Array(E * rows * cols);
    for (let e = 0; e < E; e++) {
      const part: HostTensor | undefined = tensors.get(hfExpertName(name, e)!);
      if (!part) throw new Error(`model weights lack tensor ${hfExpertName(name, e)} (num_local_experts is ${E})`);
      if (part.shape.join(",") !== `${rows},${cols}`) throw new Error(`model: ${hfExpertName(name, e)} has shape [${part.shape}], config needs [${rows}, ${cols}]`);
      data.set(part.data, e * rows * cols);
      out.delete(hfExpertName(name, e)!);
    }
    out.set(name, { shape: [E, rows, cols], data });
  }
  const extra = [...tensors.keys()].find((n) => /\.block_sparse_moe\.experts\.(\d+)\./.test(n) && Number(/\.experts\.(\d+)\./.exec(n)![1]) >= E);
  if (extra) throw new Error(`model weights hold ${extra}, but num_local_experts is ${E}`);
  return out;
}
