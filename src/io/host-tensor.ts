// A tensor on the host (plain JS memory), as file readers produce and writers consume it.
// Row-major, always f32: readers convert narrower dtypes on the way in.

export interface HostTensor {
  shape: number[];
  data: Float32Array;
}

/** Tensors by name, in a meaningful order (readers keep the file's or the model's order). */
export type NamedTensors = Map<string, HostTensor>;

/** A matrix [rows, cols] of ggml Q8_0 / Q4_0 blocks on the host, row-major (cols/32 blocks a row). */
export interface QuantizedHostTensor {
  type: "q8_0" | "q4_0";
  shape: [number, number];
  bytes: Uint8Array;
}
