// The main thread's side of the worker pool: post a job to each worker's slot, run its own share,
// then wait for the workers. It waits by a short spin and then Atomics.wait (where the thread may
// block — Node's main thread, not a browser's), never by unbounded spinning.
import { SLOT_BYTES, GEN, DONE, OP, FAILED, ARGC, ARGS_BYTE, MAX_ARGS, QUIT, WORKER_KERNELS, type WorkerKernel } from "./thread-worker.js";
import type { WorkerHandle } from "./workers.js";

/** Polls of a worker's `done` before the main thread sleeps. */
const MAIN_SPIN = 200;

/** One part of a split kernel call, for a worker. */
export interface Job {
  kernel: WorkerKernel;
  args: number[];
}

export class ThreadPool {
  private readonly i32: Int32Array;
  private readonly f64: Float64Array;
  private readonly gens: number[];
  private readonly canBlock: boolean;
  private closed = false;

  constructor(
    memory: WebAssembly.Memory,
    /** Byte offset of the control block: one SLOT_BYTES slot per worker. */
    private readonly control: number,
    private readonly workers: WorkerHandle[],
  ) {
    this.i32 = new Int32Array(memory.buffer);
    this.f64 = new Float64Array(memory.buffer);
    this.gens = workers.map(() => 0);
    this.canBlock = mayBlock(this.i32);
  }

  /** Workers besides the main thread. */
  get size(): number {
    return this.workers.length;
  }

  /** Run jobs[i] on worker i (at most size jobs) while `own` runs here; returns when all are done. */
  run(jobs: Job[], own: () => void): void {
    if (this.closed) throw new Error("wasm backend: used after dispose");
    for (let i = 0; i < jobs.length; i++) {
      const w = (this.control + i * SLOT_BYTES) >> 2;
      const { kernel, args } = jobs[i];
      if (args.length > MAX_ARGS) throw new Error(`wasm backend: ${kernel} takes ${args.length} arguments, a job at most ${MAX_ARGS}`);
      this.i32[w + OP] = WORKER_KERNELS.indexOf(kernel);
      this.i32[w + ARGC] = args.length;
      this.f64.set(args, (this.control + i * SLOT_BYTES + ARGS_BYTE) >> 3);
      this.gens[i] = (this.gens[i] + 1) | 0;
      Atomics.store(this.i32, w + GEN, this.gens[i]); // publishes the job written above
      Atomics.notify(this.i32, w + GEN);
    }
    own();
    let failed = false;
    for (let i = 0; i < jobs.length; i++) {
      const w = (this.control + i * SLOT_BYTES) >> 2, gen = this.gens[i];
      let v = Atomics.load(this.i32, w + DONE);
      for (let s = 0; v !== gen && s < MAIN_SPIN; s++) v = Atomics.load(this.i32, w + DONE);
      while (v !== gen) {
        // A browser's main thread may not block: there the wait stays a spin, for the length of
        // one worker's share of a kernel.
        if (this.canBlock) Atomics.wait(this.i32, w + DONE, v);
        v = Atomics.load(this.i32, w + DONE);
      }
      if (this.i32[w + FAILED] !== 0) failed = true;
    }
    if (failed) throw new Error("wasm backend: a kernel failed in a worker thread");
  }

  /** Ask every worker to quit, then terminate them. */
  dispose(): void {
    if (this.closed) return;
    this.closed = true;
    for (let i = 0; i < this.workers.length; i++) {
      const w = (this.control + i * SLOT_BYTES) >> 2;
      this.i32[w + OP] = QUIT;
      Atomics.store(this.i32, w + GEN, (this.gens[i] + 1) | 0);
      Atomics.notify(this.i32, w + GEN);
    }
    for (const worker of this.workers) worker.terminate();
  }
}

/** Whether this thread may call Atomics.wait (a browser's main thread may not). */
function mayBlock(i32: Int32Array): boolean {
  try {
    Atomics.wait(i32, 0, 1, 0); // word 0 lies below the heap; the value differs, so it returns at once
    return true;
  } catch {
    return false;
  }
}
