// The kernel-serving loop a worker thread runs, and the layout of the control block it shares
// with the main thread. Environment-neutral: the Node and browser worker entries
// (thread-worker-node.ts, thread-worker-browser.ts) only receive a WorkerInit and call serve().
//
// Each worker owns one slot of the control block (in the shared wasm memory). The main thread
// writes a job (op code and up to 16 numeric arguments), then bumps `gen` and notifies; the worker
// runs the kernel, stores `gen` into `done` and notifies back. Workers sleep in Atomics.wait after
// a short bounded spin, so an idle pool costs no CPU — on a 2-core machine a spinning worker would
// starve the main thread.
import type { Kernels } from "./wasm-backend.js";

/** Bytes per worker slot (cache-line multiples, so slots never share a line). */
export const SLOT_BYTES = 256;
// Int32 word offsets within a slot, and the byte offset of the Float64 arguments.
export const GEN = 0;
export const DONE = 1;
export const OP = 2;
export const FAILED = 3;
export const ARGS_BYTE = 64;

export const enum Op {
  Quit = -1,
  Matmul = 1,
  MatmulQuantized = 2,
  MatmulQuantizedQ8 = 3,
  AttentionCachedHeads = 4,
  MatmulSmallRowsPart = 5,
}

/** What a worker is started with (structured-cloneable: the module and the shared memory). */
export interface WorkerInit {
  module: WebAssembly.Module;
  memory: WebAssembly.Memory;
  /** Byte offset of this worker's slot. */
  slot: number;
  /** Polls of `gen` before sleeping after a job. */
  spin: number;
}

function run(k: Kernels, op: number, a: Float64Array, i: number): void {
  switch (op) {
    case Op.Matmul:
      return k.matmul(a[i], a[i + 1], a[i + 2], a[i + 3], a[i + 4], a[i + 5], a[i + 6], a[i + 7], a[i + 8], a[i + 9]);
    case Op.MatmulQuantized:
      return k.matmulQuantized(a[i], a[i + 1], a[i + 2], a[i + 3], a[i + 4], a[i + 5], a[i + 6], a[i + 7], a[i + 8]);
    case Op.MatmulQuantizedQ8:
      return k.matmulQuantizedQ8(a[i], a[i + 1], a[i + 2], a[i + 3], a[i + 4], a[i + 5], a[i + 6], a[i + 7], a[i + 8], a[i + 9]);
    case Op.MatmulSmallRowsPart:
      return k.matmulSmallRowsPart(a[i], a[i + 1], a[i + 2], a[i + 3], a[i + 4], a[i + 5], a[i + 6], a[i + 7], a[i + 8]);
    case Op.AttentionCachedHeads:
      return k.attentionCachedHeads(a[i], a[i + 1], a[i + 2], a[i + 3], a[i + 4], a[i + 5], a[i + 6], a[i + 7], a[i + 8], a[i + 9], a[i + 10], a[i + 11], a[i + 12]);
    default:
      throw new Error(`wasm worker: unknown op ${op}`);
  }
}

/** Serve jobs from this worker's slot until a Quit job. Blocks the calling (worker) thread. */
export function serve(kernels: Kernels, init: WorkerInit): void {
  // The slot lies in the first pages ever allocated, so views made now stay valid after growth.
  const i32 = new Int32Array(init.memory.buffer);
  const f64 = new Float64Array(init.memory.buffer);
  const w = init.slot >> 2, args = (init.slot + ARGS_BYTE) >> 3;
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
    if (op === Op.Quit) return;
    try {
      run(kernels, op, f64, args);
      i32[w + FAILED] = 0;
    } catch {
      i32[w + FAILED] = 1; // the main thread reports it; the loop keeps serving
    }
    Atomics.store(i32, w + DONE, gen);
    Atomics.notify(i32, w + DONE);
  }
}
