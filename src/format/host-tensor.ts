// A tensor on the host (plain JS memory), as file readers produce and writers consume it.
// Row-major, always f32: readers convert narrower dtypes on the way in.
import type { QuantType } from "../backend/backend.js";

export interface HostTensor {
  shape: number[];
  data: Float32Array;
}

/** Tensors by name, in a meaningful order (readers keep the file's or the model's order). */
export type NamedTensors = Map<string, HostTensor>;

/** A matrix [rows, cols] of ggml Q8_0 / Q4_0 blocks (cols/32 a row) or F16 values on the host, row-major. */
export interface QuantizedHostTensor {
  type: QuantType;
  shape: [number, number];
  bytes: Uint8Array;
}
