// A model from safetensors files opened lazily: the headers give each tensor's byte range, the
// float parameters are allocated on the backend at open and filled by range on first use (see
// lazy-weights.ts), F16/BF16 widened chunk by chunk. Tensors the model does not use stay unread.
import type { ByteSource } from "../format/byte-source.js";
import { LazyWeights, type RowTarget, readRows } from "./lazy-weights.js";
import { type SafetensorsEntry, decodeTensor, isReadableDtype } from "../format/safetensors.js";
import { type LlamaConfig, isStackedExpert, parameterNames, parameterShape } from "../nn/config.js";
import type { Backend } from "../backend/backend.js";
import { type Placement, backendOf, partOf, placementOf } from "../nn/placement.js";
import { Llama } from "../nn/llama.js";
import { Tensor } from "../tensor/tensor.js";
import { hfExpertName } from "./hf-experts.js";
import { ExpertPaging } from "./expert-paging.js";
import type { ExpertCache } from "../nn/expert-cache.js";

/** Where a tensor lies: its file, the file's data start, and its header entry. */
export interface SafetensorsLocation {
  source: ByteSource;
  dataStart: number;
  entry: SafetensorsEntry;
}

const BYTES: Record<string, number> = { F32: 4, F16: 2, BF16: 2 };

/**
 * A model on `where` (a backend, or a placement over several) whose parameters are read from `tensors` on first use. The model owns
 * `sources` (every file the locations point into): closed once all is read, or on dispose.
 * `expertCacheBytes` pages the experts of a MoE model (see expert-paging.ts; the files stay open).
 */
export function lazyModelFromSafetensors(
  where: Backend | Placement,
  config: LlamaConfig,
  tensors: ReadonlyMap<string, SafetensorsLocation>,
  sources: ByteSource[],
  opts: { expertCacheBytes?: number } = {},
): Llama {
  const paging = opts.expertCacheBytes === undefined ? null : new ExpertPaging(config, opts.expertCacheBytes);
  const lazy = new LazyWeights(sources, { keepOpen: paging !== null });
  const params = new Map<string, Tensor>();
  const place = placementOf(where, config.num_hidden_layers);
  let caches = new Map<number, ExpertCache>();
  try {
    for (const name of parameterNames(config)) {
      const shape = parameterShape(config, name);
      // A stacked expert parameter [E, rows, cols] is E matrices in the files (Mixtral's layout).
      const stacked = isStackedExpert(name) && !tensors.has(name);
      const parts = stacked ? Array.from({ length: shape[0] }, (_, e) => hfExpertName(name, e)!) : [name];
      const partShape = stacked ? shape.slice(1) : shape;
      const [rows, cols] = partShape.length === 1 ? [1, partShape[0]] : [partShape.slice(0, -1).reduce((a, b) => a * b, 1), partShape[partShape.length - 1]];
      const reads = parts.map((part) => {
        const at = tensors.get(part);
        if (!at) throw new Error(`model weights lack tensor ${part}`);
        const { entry, source, dataStart } = at;
        if (entry.shape.join(",") !== partShape.join(",")) throw new Error(`model: ${part} has shape [${entry.shape}], config needs [${partShape}]`);
        if (!isReadableDtype(entry.dtype)) throw new Error(`safetensors: tensor ${part} has dtype ${entry.dtype}; only F32, F16 and BF16 can be read`);
        const decode = (bytes: Uint8Array, n: number, into: Float32Array): Float32Array => decodeTensor(bytes, entry.dtype, n * cols, into);
        const rowBytes = cols * BYTES[entry.dtype];
        /** Rows [r0, r0 + n) of the tensor into the target's rows from its row0. */
        return (target: RowTarget, r0 = 0, n = rows) => readRows(source, dataStart + entry.begin + r0 * rowBytes, n, rowBytes, decode, target, lazy.staging);
      });
      if (paging !== null && isStackedExpert(name)) {
        // An expert is its own tensor, or its rows of one stacked tensor.
        const [, out] = shape;
        const read = (e: number, target: RowTarget): void => (stacked ? reads[e](target) : reads[0](target, e * out, out));
        paging.add(name, { rows: out, cols, bytes: out * cols * 4, read });
        continue;
      }
      const t = Tensor.zeros(backendOf(place, partOf(name)), shape, true);
      params.set(name, t);
      lazy.add(name, name, t, (target) => reads.forEach((read, i) => read({ ...target, row0: target.row0 + i * rows })));
    }
    caches = paging?.build(place) ?? new Map();
    const model = new Llama(place, config, params, new Map(), caches);
    model.deferred = lazy;
    return model;
  } catch (e) {
    for (const t of params.values()) t.dispose();
    for (const c of caches.values()) c.dispose();
    throw e;
  }
}
