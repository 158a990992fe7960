// The kernel-serving loop a worker thread runs, and the layout of the control block it shares
// with the main thread. Environment-neutral: the Node and browser worker entries
// (thread-worker-node.ts, thread-worker-browser.ts) only receive a WorkerInit and call serve().
//
// Each worker owns one slot of the control block (in the shared wasm memory). The main thread
// writes a job (a kernel's index in WORKER_KERNELS and its numeric arguments), then bumps `gen`
// and notifies; the worker runs the kernel, stores `gen` into `done` and notifies back. Workers
// sleep in Atomics.wait after a short bounded spin, so an idle pool costs no CPU — on a 2-core
// machine a spinning worker would starve the main thread.
import type { Kernels } from "./wasm-backend.js";

/** Bytes per worker slot (cache-line multiples, so slots never share a line). */
export const SLOT_BYTES = 256;
// Int32 word offsets within a slot, and the byte offset of the Float64 arguments.
export const GEN = 0;
export const DONE = 1;
export const OP = 2;
export const FAILED = 3;
export const ARGC = 4;
export const ARGS_BYTE = 64;
/** Arguments a job can carry. */
export const MAX_ARGS = (SLOT_BYTES - ARGS_BYTE) / 8;
/** The op that stops a worker. */
export const QUIT = -1;

/** The kernels a worker runs: a part of a split kernel call, by its index here. */
export const WORKER_KERNELS = [
  "matmul", "matmulTransARows", "matmulSmallRowsPart", "matmulQuantized", "matmulQuantizedQ8",
  "attentionHeads", "attentionBackwardHeads", "attentionCachedHeads",
  "zero", "add", "axpy", "scale", "swiglu", "swigluBackward", "dropoutBackward", "adamw",
  "rmsnorm", "rmsnormBackwardRows", "rmsnormBackwardWeight", "rope", "crossEntropy", "crossEntropyBackward", "distill", "distillBackward",
  "softmax", "softmaxBackward", "logSumExp", "logSumExpBackward", "moeTopK", "moeCombine", "moeCombineBackward",
] as const satisfies readonly (keyof Kernels)[];
export type WorkerKernel = (typeof WORKER_KERNELS)[number];

/** What a worker is started with (structured-cloneable: the module and the shared memory). */
export interface WorkerInit {
  module: WebAssembly.Module;
  memory: WebAssembly.Memory;
  /** Byte offset of this worker's slot. */
  slot: number;
  /** Polls of `gen` before sleeping after a job. */
  spin: number;
}

/** Serve jobs from this worker's slot until a QUIT job. Blocks the calling (worker) thread. */
export function serve(kernels: Kernels, init: WorkerInit): void {
  // The slot lies in the first pages ever allocated, so views made now stay valid after growth.
  const i32 = new Int32Array(init.memory.buffer);
  const f64 = new Float64Array(init.memory.buffer);
  const w = init.slot >> 2, args = (init.slot + ARGS_BYTE) >> 3;
  const table = kernels as unknown as Record<WorkerKernel, (...a: number[]) => void>;
  // The slot starts at generation 0; reading it instead could skip a job posted before we got here.
  let seen = 0;
  for (;;) {
    let gen = Atomics.load(i32, w + GEN);
    for (let s = 0; gen === seen && s < init.spin; s++) gen = Atomics.load(i32, w + GEN);
    while (gen === seen) {
      Atomics.wait(i32, w + GEN, seen);
      gen = Atomics.load(i32, w + GEN);
    }
    seen = gen;
    const op = i32[w + OP];
    if (op === QUIT) return;
    try {
      table[WORKER_KERNELS[op]](...f64.subarray(args, args + i32[w + ARGC]));
      i32[w + FAILED] = 0;
    } catch {
      i32[w + FAILED] = 1; // the main thread reports it; the loop keeps serving
    }
    Atomics.store(i32, w + DONE, gen);
    Atomics.notify(i32, w + DONE);
  }
}
