// Reading a llama GGUF for quantized execution: Q8_0, Q4_0 and F16 matrices are kept as ggml
// stores them (the backend multiplies by them, and looks embedding rows up in them, directly);
// everything else — norms, matrices of other types — is dequantized to f32 as
// llamaTensorsFromGguf does.
import { GgmlType, ggmlRowBytes } from "../format/ggml-quants.js";
import type { NamedTensors, QuantizedHostTensor } from "../format/host-tensor.js";
import { type GgufFile, isRopeProjection, llamaTensorInfo } from "./gguf-llama.js";
import { permuteRopeToHalf } from "./llama2c.js";
import { type LlamaConfig, headDim, parameterNames } from "../nn/config.js";
import type { Backend } from "../backend/backend.js";
import { type Placement, backendOf, partOf, placementOf } from "../nn/placement.js";
import { Llama } from "../nn/llama.js";
import { Tensor } from "../tensor/tensor.js";
import { QuantizedWeight } from "../tensor/quantized-weight.js";

export interface LlamaGgufWeights {
  /** Float parameters under HF names, in HF layouts. */
  tensors: NamedTensors;
  /**
   * Matrices kept quantized, under HF names, rows in HF's layout: the projections and the
   * embedding table (which a tied model's LM head multiplies by too, as llama.cpp does); stacked
   * experts [E, out, in] as one [E·out, in] matrix, as ggml holds them.
   */
  quantized: Map<string, QuantizedHostTensor>;
}

/** GGUF types kept as they are; F16 too, as llama.cpp multiplies F16 weights without widening them. */
export const KEPT: Partial<Record<number, QuantizedHostTensor["type"]>> = { [GgmlType.Q8_0]: "q8_0", [GgmlType.Q4_0]: "q4_0", [GgmlType.F16]: "f16" };

/**
 * ggml's adjacent-pair RoPE row order → HF's rotate-half order, moving whole rows of `rowBytes`
 * bytes (blocks never straddle rows, so quantized and f16 rows move like float rows).
 */
export function permuteRowsToHalf(bytes: Uint8Array, rows: number, rowBytes: number, nHeads: number): Uint8Array {
  const hd = rows / nHeads, half = hd / 2;
  if (!Number.isInteger(half) || bytes.length !== rows * rowBytes) throw new Error(`cannot permute ${rows} rows into ${nHeads} heads`);
  const out = new Uint8Array(bytes.length);
  for (let h = 0; h < nHeads; h++)
    for (let i = 0; i < half; i++)
      for (let j = 0; j < 2; j++) {
        const src = (h * hd + 2 * i + j) * rowBytes, dst = (h * hd + j * half + i) * rowBytes;
        out.set(bytes.subarray(src, src + rowBytes), dst);
      }
  return out;
}

/** The model's parameters, quantized matrices kept as blocks. Reads only those tensors. */
export function llamaWeightsFromGguf(f: GgufFile, config: LlamaConfig): LlamaGgufWeights {
  const tensors: NamedTensors = new Map();
  const quantized = new Map<string, QuantizedHostTensor>();
  const hd = headDim(config);
  for (const name of parameterNames(config)) {
    const { gguf, shape, info } = llamaTensorInfo(f, config, name);
    const rope = isRopeProjection(name);
    const type = KEPT[info.type];
    // Rows of the last dimension: stacked experts [E, out, in] are E·out rows, as ggml holds them.
    const cols = shape[shape.length - 1], rows = shape.reduce((x, y) => x * y, 1) / cols;
    const blocks = (): Uint8Array => {
      // A copy: the source may hand out a view of a buffer it reuses.
      const rowBytes = ggmlRowBytes(info.type, cols);
      const bytes = f.source.read(f.header.dataOffset + info.offset, rows * rowBytes).slice();
      return rope ? permuteRowsToHalf(bytes, rows, rowBytes, rows / hd) : bytes;
    };
    if (type !== undefined && shape.length >= 2) {
      quantized.set(name, { type, shape: [rows, cols], bytes: blocks() });
    } else {
      const t = f.read(gguf);
      t.shape = shape; // a single expert's {in, out, 1} is [out, in]
      if (rope) t.data = permuteRopeToHalf(t.data, t.shape[0], t.shape[1], t.shape[0] / hd);
      tensors.set(name, t);
    }
  }
  return { tensors, quantized };
}

/** A model on `where` (a backend, or a placement over several) whose quantized matrices stay quantized (inference only). */
export function llamaFromGgufWeights(where: Backend | Placement, config: LlamaConfig, w: LlamaGgufWeights): Llama {
  const params = new Map<string, Tensor>();
  const quantized = new Map<string, QuantizedWeight>();
  const place = placementOf(where, config.num_hidden_layers);
  const on = (name: string) => backendOf(place, partOf(name));
  try {
    for (const [name, t] of w.tensors) params.set(name, Tensor.from(on(name), t.shape, t.data, true));
    for (const [name, q] of w.quantized) quantized.set(name, new QuantizedWeight(on(name), q.type, q.shape, q.bytes));
    return new Llama(place, config, params, quantized);
  } catch (e) {
    for (const t of params.values()) t.dispose();
    for (const q of quantized.values()) q.dispose();
    throw e;
  }
}
