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
 */
export function lazyModelFromSafetensors(where: Backend | Placement, config: LlamaConfig, tensors: ReadonlyMap<string, SafetensorsLocation>, sources: ByteSource[]): Llama {
  const lazy = new LazyWeights(sources);
  const params = new Map<string, Tensor>();
  const place = placementOf(where, config.num_hidden_layers);
  try {
    for (const name of parameterNames(config)) {
      const shape = parameterShape(config, name);
      // A stacked expert parameter [E, rows, cols] is E matrices in the files (Mixtral's layout).
      const stacked = isStackedExpert(name) && !tensors.has(name);
      const parts = stacked ? Array.from({ length: shape[0] }, (_, e) => hfExpertName(name, e)!) : [name];
      const partShape = stacked ? shape.slice(1) : shape;
      const [rows, cols] = partShape.length === 1 ? [1, partShape[0]] : [partShape.slice(0, -1).reduce((a, b) => a * b, 1), partShape[partShape.length - 1]];
      const reads = parts.map((part, i) => {
        const at = tensors.get(part);
        if (!at) throw new Error(`model weights lack tensor ${part}`);
        const { entry, source, dataStart } = at;
        if (entry.shape.join(",") !== partShape.join(",")) throw new Error(`model: ${part} has shape [${entry.shape}], config needs [${partShape}]`);
        if (!isReadableDtype(entry.dtype)) throw new Error(`safetensors: tensor ${part} has dtype ${entry.dtype}; only F32, F16 and BF16 can be read`);
        const decode = (bytes: Uint8Array, n: number, into: Float32Array): Float32Array => decodeTensor(bytes, entry.dtype, n * cols, into);
        return (target: RowTarget) => readRows(source, dataStart + entry.begin, rows, cols * BYTES[entry.dtype], decode, { ...target, row0: target.row0 + i * rows }, lazy.staging);
      });
      const t = Tensor.zeros(backendOf(place, partOf(name)), shape, true);
      params.set(name, t);
      lazy.add(name, name, t, (target) => {
        for (const read of reads) read(target);
      });
    }
    const model = new Llama(place, config, params);
    model.deferred = lazy;
    return model;
  } catch (e) {
    for (const t of params.values()) t.dispose();
    throw e;
  }
}
