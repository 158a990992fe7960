// A llama GGUF opened lazily: the model's tensors are allocated on the backend at open (float
// ones) or at first write (quantized ones), and filled from the file part by part as the forward
// pass first reaches them (see lazy-weights.ts), in bounded chunks straight into backend memory.
// Same values as the eager readers (llamaTensorsFromGguf, llamaWeightsFromGguf): the same
// decoders, the same RoPE row order, only in row chunks instead of whole tensors.
import { GgmlType, dequantize, ggmlRowBytes, ggmlTypeName } from "../format/ggml-quants.js";
import { type GgufFile, isRopeProjection, llamaTensorInfo } from "./gguf-llama.js";
import { KEPT } from "./gguf-llama-quantized.js";
import { LazyWeights, readRows, ropeRowToHalf } from "./lazy-weights.js";
import { ExpertPaging } from "./expert-paging.js";
import { type LlamaConfig, headDim, isStackedExpert, parameterNames } from "../nn/config.js";
import type { Backend } from "../backend/backend.js";
import { type Placement, backendOf, partOf, placementOf } from "../nn/placement.js";
import { Llama } from "../nn/llama.js";
import type { ExpertCache } from "../nn/expert-cache.js";
import { Tensor } from "../tensor/tensor.js";
import { QuantizedWeight } from "../tensor/quantized-weight.js";

/**
 * A model on `where` (a backend, or a placement over several) whose weights are read from `f` on first use; `quantized` keeps Q8_0 /
 * Q4_0 matrices as blocks and F16 ones as f16 (as llamaWeightsFromGguf), the embedding table
 * included: its lookup dequantizes the rows it picks, and a tied head multiplies by the same
 * blocks. The model owns `f.source` from here on: it is closed once every weight is read, or
 * when the model is disposed. `expertCacheBytes` pages the experts of a MoE model (see
 * expert-paging.ts): they are never all read, so the file stays open until dispose.
 */
export function lazyLlamaFromGguf(where: Backend | Placement, f: GgufFile, config: LlamaConfig, opts: { quantized?: boolean; expertCacheBytes?: number } = {}): Llama {
  const paging = opts.expertCacheBytes === undefined ? null : new ExpertPaging(config, opts.expertCacheBytes);
  const lazy = new LazyWeights([f.source], { keepOpen: paging !== null });
  const params = new Map<string, Tensor>();
  const quantized = new Map<string, QuantizedWeight>();
  const hd = headDim(config);
  const place = placementOf(where, config.num_hidden_layers);
  let caches = new Map<number, ExpertCache>();
  try {
    for (const name of parameterNames(config)) {
      // Everything checkable is checked now, at open: shapes and types. Only the bytes wait.
      const { gguf, shape, info } = llamaTensorInfo(f, config, name);
      if (!(info.type in GgmlType))
        throw new Error(`gguf: tensor ${gguf} is ${ggmlTypeName(info.type)}, which Bonsai cannot read yet (F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1)`);
      // Rows of the last dimension: a norm is one row, stacked experts [E, out, in] E·out rows.
      const cols = shape[shape.length - 1], rows = shape.reduce((x, y) => x * y, 1) / cols;
      const rowBytes = ggmlRowBytes(info.type, cols);
      const at = f.header.dataOffset + info.offset;
      const dest = isRopeProjection(name) ? ropeRowToHalf(rows, rows / hd) : undefined;
      const backend = backendOf(place, partOf(name));
      // Matrices stay as the file holds them; stacked experts as ggml holds them, one [E·out, in] matrix.
      const keep = opts.quantized && shape.length >= 2 ? KEPT[info.type] : undefined;
      if (paging !== null && isStackedExpert(name)) {
        // One expert of ggml's {in, out, E} tensor is one contiguous range of out rows.
        const [, out] = shape;
        const decode = (bytes: Uint8Array, n: number, into: Float32Array): Float32Array => dequantize(info.type, bytes, n * cols, into);
        paging.add(name, {
          rows: out, cols, keep,
          bytes: out * (keep !== undefined ? rowBytes : cols * 4),
          read: (e, target) => readRows(f.source, at + e * out * rowBytes, out, rowBytes, keep !== undefined ? null : decode, target, lazy.staging),
        });
      } else if (keep !== undefined) {
        const q = new QuantizedWeight(backend, keep, [rows, cols], null);
        quantized.set(name, q);
        lazy.add(name, gguf, q, (target) => readRows(f.source, at, rows, rowBytes, null, target, lazy.staging, dest));
      } else {
        const t = Tensor.zeros(backend, shape, true);
        params.set(name, t);
        const decode = (bytes: Uint8Array, n: number, into: Float32Array): Float32Array => dequantize(info.type, bytes, n * cols, into);
        lazy.add(name, gguf, t, (target) => readRows(f.source, at, rows, rowBytes, decode, target, lazy.staging, dest));
      }
    }
    caches = paging?.build(place) ?? new Map();
    const model = new Llama(place, config, params, quantized, caches);
    model.deferred = lazy;
    return model;
  } catch (e) {
    for (const t of params.values()) t.dispose();
    for (const q of quantized.values()) q.dispose();
    for (const c of caches.values()) c.dispose();
    throw e;
  }
}
