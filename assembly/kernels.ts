// Kernels of the `wasm` backend, compiled by AssemblyScript to WebAssembly with SIMD. This file is
// the module's interface: it re-exports the kernels, which live one op family to a file.
//
// Memory model: linear memory is imported (env.memory) and owned by the JS side
// (src/backend/wasm/wasm-backend.ts), which hands every kernel raw byte offsets. Nothing here
// allocates (`--runtime stub`, no GC objects); temporary space (packed matmul panels, the dS
// matrix of attention backward) comes in as a `scratch` pointer sized by the caller.
//
// Numbers are f32; every pointer is a byte offset; counts are in elements. Conventions (row-major,
// `...Backward` accumulates into gradients) are those of src/backend/backend.ts.

// ---- memory --------------------------------------------------------------------------------------

/** First byte not used by the module's static data: the JS allocator starts above it. */
export function heapBase(): usize {
  return __heap_base;
}

export { add, axpy, scale, sum, sumSquares, zero, fill } from "./elementwise";
export { matmulScratchBytes, matmulSmallRows, matmulSmallRowsPart, matmul, matmulTransARows } from "./gemm";
export { embedding, embeddingBackward, rmsnorm, rmsnormBackward, rmsnormBackwardRows, rmsnormBackwardWeight, rope, swiglu, swigluBackward, dropout, dropoutBackward } from "./layers";
export { attention, attentionHeads, attentionCached, attentionCachedHeads, attentionBackward, attentionBackwardHeads } from "./attention";
export { crossEntropy, crossEntropyBackward, distill, distillBackward, distillSparse, distillSparseBackward } from "./losses";
export { adamw } from "./optimizer";
export { matmulQuantizedScratchBytes, matmulQuantized } from "./quant-blocks";
export { matmulQuantizedQ8ScratchBytes, matmulQuantizedQ8 } from "./quant-q8-activations";
export { embeddingQuantized } from "./quant-embedding";
export { softmax, softmaxBackward, logSumExp, logSumExpBackward, moeTopK, moeGatherRows, moeScatterRows, moeCombine, moeCombineBackward } from "./moe";
