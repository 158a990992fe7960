// A llama GGUF opened lazily: the model's tensors are allocated on the backend at open (float
// ones) or at first use (quantized ones, which a backend takes whole), and filled from the file
// part by part as the forward pass first reaches them (see lazy-weights.ts). Same values as the
// eager readers (llamaTensorsFromGguf, llamaWeightsFromGguf): the same decoders, the same RoPE
// row order, only in row chunks instead of whole tensors.
import { GgmlType, dequantize, ggmlRowBytes, ggmlTypeName } from "./ggml-quants.js";
import { type GgufFile, isRopeProjection, llamaTensorInfo } from "./gguf-llama.js";
import { KEPT, permuteRowsToHalf } from "./gguf-llama-quantized.js";
import { LazyWeights, fillRows, ropeRowToHalf } from "./lazy-weights.js";
import { type LlamaConfig, headDim, parameterNames } from "../nn/config.js";
import type { Backend } from "../backend/backend.js";
import { Llama } from "../nn/llama.js";
import { Tensor } from "../tensor/tensor.js";
import { QuantizedWeight } from "../tensor/quantized-weight.js";

/**
 * A model on `backend` whose weights are read from `f` on first use; `quantized` keeps Q8_0 / Q4_0
 * projections as blocks and F16 ones as f16 (as llamaWeightsFromGguf). The model owns `f.source` from here on: it is
 * closed once every weight is read, or when the model is disposed. `keepBytes` collects the
 * quantized blocks as they are read, by HF name (fusing quantized matrices needs them).
 */
export function lazyLlamaFromGguf(backend: Backend, f: GgufFile, config: LlamaConfig, opts: { quantized?: boolean; keepBytes?: Map<string, Uint8Array> } = {}): Llama {
  const lazy = new LazyWeights([f.source]);
  const params = new Map<string, Tensor>();
  const quantized = new Map<string, QuantizedWeight>();
  const hd = headDim(config);
  try {
    for (const name of parameterNames(config)) {
      // Everything checkable is checked now, at open: shapes and types. Only the bytes wait.
      const { gguf, shape, info } = llamaTensorInfo(f, config, name);
      if (!(info.type in GgmlType))
        throw new Error(`gguf: tensor ${gguf} is ${ggmlTypeName(info.type)}, which Bonsai cannot read yet (F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1)`);
      const [rows, cols] = shape.length === 2 ? shape : [1, shape[0]];
      const rowBytes = ggmlRowBytes(info.type, cols);
      const at = f.header.dataOffset + info.offset;
      const nHeads = rows / hd;
      const rope = isRopeProjection(name);
      const decode = (bytes: Uint8Array, n: number, into: Float32Array): Float32Array => dequantize(info.type, bytes, n * cols, into);
      const blocks = (bytes: Uint8Array, as = name): Uint8Array => {
        const b = rope ? permuteRowsToHalf(bytes, rows, rowBytes, nHeads) : bytes;
        opts.keepBytes?.set(as, b);
        return b;
      };
      const keep = opts.quantized ? KEPT[info.type] : undefined;

      if (keep !== undefined && shape.length === 2 && name !== "model.embed_tokens.weight") {
        const q = new QuantizedWeight(backend, keep, [rows, cols], null);
        quantized.set(name, q);
        // A backend takes quantized blocks whole: one transient host copy of this tensor.
        lazy.add(name, gguf, () => q.load(blocks(f.source.read(at, rows * rowBytes))));
        continue;
      }
      const t = Tensor.zeros(backend, shape, true);
      params.set(name, t);
      if (keep !== undefined && name === "model.embed_tokens.weight" && config.tie_word_embeddings) {
        // A tied model's head runs on the quantized embedding (as llama.cpp); the lookup needs
        // floats. One read serves both, with the embedding (the forward pass reaches it first).
        const head = new QuantizedWeight(backend, keep, [rows, cols], null);
        quantized.set("lm_head.weight", head);
        lazy.add(name, gguf, () => {
          const bytes = f.source.read(at, rows * rowBytes);
          for (let r0 = 0; r0 < rows; r0 += 1024) {
            const n = Math.min(1024, rows - r0);
            backend.write(t.data, decode(bytes.subarray(r0 * rowBytes, (r0 + n) * rowBytes), n, lazy.staging.floats(n * cols)), r0 * cols);
          }
          head.load(blocks(bytes, "lm_head.weight"));
        });
        continue;
      }
      lazy.add(name, gguf, () => fillRows(f.source, at, rows, rowBytes, decode, t, lazy.staging, rope ? ropeRowToHalf(rows, nHeads) : undefined));
    }
    const model = new Llama(backend, config, params, quantized);
    model.deferred = lazy;
    return model;
  } catch (e) {
    for (const t of params.values()) t.dispose();
    for (const q of quantized.values()) q.dispose();
    throw e;
  }
}
