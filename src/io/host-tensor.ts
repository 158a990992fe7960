// A tensor on the host (plain JS memory), as file readers produce and writers consume it.
// Row-major, always f32: readers convert narrower dtypes on the way in.

export interface HostTensor {
  shape: number[];
  data: Float32Array;
}

/** Tensors by name, in a meaningful order (readers keep the file's or the model's order). */
export type NamedTensors = Map<string, HostTensor>;
