// The wasm backend on several threads. The kernels module, compiled for a shared memory, is
// instantiated once here and once in each worker over the same memory; the allocator stays on
// this (main) thread and workers only run kernels on pointers they are given. Matrix products
// are split by output rows (m > 1) or, for decode (m = 1), by output columns — rows of W in x·Wᵀ —
// and cached attention by heads, at boundaries that keep results bitwise identical to one thread
// (split.ts). Everything else runs on the main thread, as in WasmBackend.
import { quantRowBytes, type Buf, type QBuf } from "../backend.js";
import { WasmBackend, kernelImports, isCount, QUANT_CODES, type Kernels, type WasmNumericsOptions } from "./wasm-backend.js";
import { kernelModule, resolveKernels, type KernelFlavour } from "./kernel-flavour.js";
import { ThreadPool, type Job } from "./thread-pool.js";
import { SLOT_BYTES, Op } from "./thread-worker.js";
import { splitBounds } from "./split.js";
import { defaultSpawner, type SpawnWorker } from "./workers.js";

/** Multiply-adds per thread below which a kernel stays on one thread (~10 µs of work; a wake costs 5–30 µs). */
const MIN_WORK_PER_THREAD = 1 << 18;
/** Polls a worker makes for the next job before it sleeps: covers the gap between layer ops. */
const WORKER_SPIN = 20000;
/** wasm32's limit, in 64 KiB pages. A shared memory cannot grow past its declared maximum. */
const MAX_PAGES = 65536;

export interface ThreadedWasmBackendOptions extends WasmNumericsOptions {
  /** Threads in all, the main thread included (≥ 2). */
  threads: number;
  /** How to start a worker; defaults to worker_threads in Node, Web Workers elsewhere. */
  spawn?: SpawnWorker;
  /** Multiply-adds a kernel needs per thread to be split (tests pass 0 to split everything). */
  minWorkPerThread?: number;
  /** Polls a worker makes for its next job before it sleeps (tuning). */
  workerSpin?: number;
}

export async function createThreadedWasmBackend(options: ThreadedWasmBackendOptions): Promise<ThreadedWasmBackend> {
  const threads = options.threads;
  if (!Number.isInteger(threads) || threads < 2) throw new RangeError(`threaded wasm backend needs at least 2 threads, got ${threads}`);
  const flavour = await resolveKernels(options.kernels);
  const module = await kernelModule(flavour, true);
  const memory = new WebAssembly.Memory({ initial: 32, maximum: MAX_PAGES, shared: true });
  const instance = await WebAssembly.instantiate(module, kernelImports(memory));
  const backend = new ThreadedWasmBackend(instance.exports as unknown as Kernels, memory, options, flavour, threads, options.minWorkPerThread ?? MIN_WORK_PER_THREAD);
  await backend.start(module, options.spawn ?? (await defaultSpawner()), options.workerSpin ?? WORKER_SPIN);
  return backend;
}

export class ThreadedWasmBackend extends WasmBackend {
  private pool: ThreadPool | undefined;
  private readonly control: number;
  // Per-worker scratch blocks (packed panels, attention rows), grown like the main scratch.
  private readonly scratchPtrs: number[] = [];
  private readonly scratchSizes: number[] = [];

  constructor(
    kernels: Kernels,
    memory: WebAssembly.Memory,
    numerics: WasmNumericsOptions,
    flavour: KernelFlavour,
    readonly threads: number,
    private readonly minWork = MIN_WORK_PER_THREAD,
  ) {
    super(kernels, memory, numerics, flavour);
    // First allocation: the control block lies in the lowest pages, so the workers' views of it
    // (made before any growth) stay valid.
    this.control = this.allocBytes((threads - 1) * SLOT_BYTES).ptr;
  }

  /** Start the workers (createThreadedWasmBackend calls this once). */
  async start(module: WebAssembly.Module, spawn: SpawnWorker, spin = WORKER_SPIN): Promise<void> {
    const handles = await Promise.all(
      Array.from({ length: this.threads - 1 }, (_, i) => spawn({ module, memory: this.memory, slot: this.control + i * SLOT_BYTES, spin })),
    );
    this.pool = new ThreadPool(this.memory, this.control, handles);
  }

  /** Stop the workers; the backend keeps working, on the main thread alone. */
  dispose(): void {
    this.pool?.dispose();
    this.pool = undefined;
  }

  /** Scratch of worker i (0-based) for one kernel call. */
  private workerScratch(i: number, bytes: number): number {
    if (bytes > (this.scratchSizes[i] ?? 0)) {
      if (this.scratchPtrs[i] !== undefined) this.releaseBytes(this.scratchPtrs[i], this.scratchSizes[i]);
      const block = this.allocBytes(bytes);
      this.scratchPtrs[i] = block.ptr;
      this.scratchSizes[i] = block.bytes;
    }
    return this.scratchPtrs[i];
  }

  /** Parts worth splitting `work` multiply-adds into. */
  private parts(work: number): number {
    if (this.pool === undefined) return 1;
    return this.minWork <= 0 ? this.threads : Math.max(1, Math.min(this.threads, Math.floor(work / this.minWork)));
  }

  /**
   * Run part 0 of `bounds` here, by `own(lo, hi)`, and part i ≥ 1 on worker i − 1, as the job
   * `job(lo, hi, i − 1)` describes (with that worker's scratch).
   */
  private split(bounds: number[], job: (lo: number, hi: number, worker: number) => Job, own: (lo: number, hi: number) => void): void {
    const jobs: Job[] = [];
    for (let i = 1; i + 1 < bounds.length; i++) jobs.push(job(bounds[i], bounds[i + 1], i - 1));
    this.pool!.run(jobs, () => own(bounds[0], bounds[1]));
  }

  override matmul(c: Buf, a: Buf, b: Buf, m: number, n: number, k: number, transA: boolean, transB: boolean, accumulate: boolean): void {
    // Rows of C are contiguous for op(A) = A; decode's columns of C are rows of B for op(B) = Bᵀ.
    // Other forms (training's Aᵀ·B for weight gradients, x·W with m = 1) stay on one thread.
    // A linear layer over few rows takes the kernel's row-by-row path (smallRows), more rows the
    // blocked GEMM. Few rows are split like decode, by rows of W: each thread streams its share of
    // the weights once (speculative verification costs about one decode's memory traffic).
    const small = this.k.matmulSmallRows();
    const fewRows = m > 1 && m <= small && n > 1 && !transA && transB;
    const byRows = m > 1 && n > 1 && !transA && !fewRows, byCols = m === 1 && n > 1 && transB;
    let parts = byRows || byCols || fewRows ? this.parts(m * n * k) : 1;
    // Every part must take the path the whole would, so a GEMM's parts keep more than `small`
    // rows (parts are whole 4-row units, each at least floor(units / parts) of them).
    if (byRows && transB) parts = Math.min(parts, Math.floor(Math.floor(m / 4) / (Math.floor(small / 4) + 1)));
    if (parts < 2 || k <= 0 || !isCount(m) || !isCount(n) || !isCount(k)) return super.matmul(c, a, b, m, n, k, transA, transB, accumulate);
    const cp = this.p(c, m * n, "matmul C"), ap = this.p(a, m * k, "matmul A"), bp = this.p(b, k * n, "matmul B");
    const flags = [transA ? 1 : 0, transB ? 1 : 0, accumulate ? 1 : 0];
    if (fewRows) {
      const args = (lo: number, hi: number): number[] => [cp, ap, bp, m, n, k, lo, hi, accumulate ? 1 : 0];
      this.split(
        splitBounds(n, 4, parts),
        (lo, hi) => ({ op: Op.MatmulSmallRowsPart, args: args(lo, hi) }),
        (lo, hi) => this.k.matmulSmallRowsPart(...(args(lo, hi) as SmallRowsArgs)),
      );
    } else if (byRows) {
      const args = (lo: number, hi: number, scratch: number): number[] => [cp + lo * n * 4, ap + lo * k * 4, bp, hi - lo, n, k, ...flags, scratch];
      this.split(
        splitBounds(m, 4, parts),
        (lo, hi, w) => ({ op: Op.Matmul, args: args(lo, hi, this.workerScratch(w, this.matmulScratch)) }),
        (lo, hi) => this.k.matmul(...(args(lo, hi, this.scratch(this.matmulScratch)) as MatmulArgs)),
      );
    } else {
      const args = (lo: number, hi: number): number[] => [cp + lo * 4, ap, bp + lo * k * 4, 1, hi - lo, k, ...flags, 0];
      this.split(
        splitBounds(n, 4, parts),
        (lo, hi) => ({ op: Op.Matmul, args: args(lo, hi) }),
        (lo, hi) => this.k.matmul(...(args(lo, hi) as MatmulArgs)),
      );
    }
  }

  override matmulQuantized(c: Buf, a: Buf, w: QBuf, m: number, n: number, k: number, accumulate: boolean): void {
    const q = this.qp(w);
    const parts = isCount(m) && q.rows === n && q.cols === k ? this.parts(m * n * k) : 1;
    if (parts < 2) return super.matmulQuantized(c, a, w, m, n, k, accumulate);
    const cp = this.p(c, m * n, "matmulQuantized C"), ap = this.p(a, m * k, "matmulQuantized A");
    const type = QUANT_CODES[q.type], acc = accumulate ? 1 : 0;
    const rowBytes = quantRowBytes(q.type, k);
    if (m === 1) {
      // Decode: each worker takes a range of W's rows (whole rows of blocks or f16 values) and
      // rounds its own copy of the activations in llama.cpp's mode.
      const q8 = this.q8Activations;
      const bytes = q8 ? this.k.matmulQuantizedQ8ScratchBytes(1, k, type) : 0;
      const args = (lo: number, hi: number, scratch: number): number[] => [cp + lo * 4, ap, q.ptr + lo * rowBytes, 1, hi - lo, k, type, acc, scratch];
      this.split(
        splitBounds(n, 4, parts),
        (lo, hi, i) => (q8 ? { op: Op.MatmulQuantizedQ8, args: [...args(lo, hi, this.workerScratch(i, bytes)), this.f16OrderCode] } : { op: Op.MatmulQuantized, args: args(lo, hi, 0) }),
        (lo, hi) => {
          if (q8) this.k.matmulQuantizedQ8(...(args(lo, hi, this.scratch(bytes)) as QuantArgs), this.f16OrderCode);
          else this.k.matmulQuantized(...(args(lo, hi, 0) as QuantArgs));
        },
      );
      return;
    }
    // Prefill: each worker takes a range of rows of A and C, and decodes its own weight panels.
    const bounds = splitBounds(m, 4, parts);
    const args = (lo: number, hi: number, scratch: number): number[] => [cp + lo * n * 4, ap + lo * k * 4, q.ptr, hi - lo, n, k, type, acc, scratch];
    this.split(
      bounds,
      (lo, hi, i) => ({ op: Op.MatmulQuantized, args: args(lo, hi, this.workerScratch(i, this.k.matmulQuantizedScratchBytes(hi - lo, k))) }),
      (lo, hi) => this.k.matmulQuantized(...(args(lo, hi, this.scratch(this.k.matmulQuantizedScratchBytes(hi - lo, k))) as QuantArgs)),
    );
  }

  override attentionCached(out: Buf, q: Buf, kCache: Buf, vCache: Buf, seq: number, heads: number, kvHeads: number, headDim: number, posOffset: number, scale: number): void {
    const valid = kvHeads > 0 && heads % kvHeads === 0 && isCount(seq) && isCount(posOffset) && isCount(headDim);
    const parts = valid ? this.parts(seq * heads * (posOffset + seq) * headDim * 2) : 1;
    if (parts < 2 || heads < 2) return super.attentionCached(out, q, kCache, vCache, seq, heads, kvHeads, headDim, posOffset, scale);
    const nq = seq * heads * headDim, nkv = (posOffset + seq) * kvHeads * headDim;
    const op = this.p(out, nq, "out"), qp = this.p(q, nq, "q"), kp = this.p(kCache, nkv, "kCache"), vp = this.p(vCache, nkv, "vCache");
    const bytes = (posOffset + seq) * 4;
    const args = (lo: number, hi: number, scratch: number): number[] => [op, qp, kp, vp, seq, heads, kvHeads, headDim, posOffset, scale, scratch, lo, hi];
    this.split(
      splitBounds(heads, 1, parts),
      (lo, hi, i) => ({ op: Op.AttentionCachedHeads, args: args(lo, hi, this.workerScratch(i, bytes)) }),
      (lo, hi) => this.k.attentionCachedHeads(...(args(lo, hi, this.scratch(bytes)) as AttentionArgs)),
    );
  }
}

type MatmulArgs = Parameters<Kernels["matmul"]>;
type SmallRowsArgs = Parameters<Kernels["matmulSmallRowsPart"]>;
type QuantArgs = Parameters<Kernels["matmulQuantized"]>;
type AttentionArgs = Parameters<Kernels["attentionCachedHeads"]>;
