// The wasm backend on several threads. The kernels module, compiled for a shared memory, is
// instantiated once here and once in each worker over the same memory; the allocator stays on
// this (main) thread and workers only run kernels on pointers they are given. Matrix products
// are split by output rows (m > 1) or, for decode (m = 1), by output columns — rows of W in x·Wᵀ —
// and cached attention by heads, at boundaries that keep results bitwise identical to one thread
// (split.ts). Everything else runs on the main thread, as in WasmBackend.
import { quantRowBytes, type Buf, type QBuf } from "../backend.js";
import { WasmBackend, kernelImports, isCount, QUANT_CODES, type Kernels, type PartArgs, type WasmNumericsOptions } from "./wasm-backend.js";
import { kernelModule, resolveKernels, type KernelFlavour } from "./kernel-flavour.js";
import { ThreadPool, type Job } from "./thread-pool.js";
import { SLOT_BYTES, type WorkerKernel } from "./thread-worker.js";
import { splitBounds } from "./split.js";
import { defaultSpawner, type SpawnWorker } from "./workers.js";

/** Multiply-adds per thread below which a kernel stays on one thread (~10 µs of work; a wake costs 5–30 µs). */
const MIN_WORK_PER_THREAD = 1 << 18;
/** Bytes per thread below which zeroing a reused block stays on the main thread. */
const ZERO_BYTES_PER_THREAD = 1 << 19;
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

  /** Parts worth splitting `work` multiply-adds into. */
  private parts(work: number): number {
    if (this.pool === undefined) return 1;
    return this.minWork <= 0 ? this.threads : Math.max(1, Math.min(this.threads, Math.floor(work / this.minWork)));
  }

  /**
   * Run `kernel` on the parts of `bounds`: part 0 here, part i ≥ 1 on worker i − 1, each with the
   * arguments `args` gives for its range and a scratch block of its own.
   */
  private split(kernel: WorkerKernel, bounds: number[], args: PartArgs): void {
    const jobs: Job[] = [];
    for (let i = 1; i + 1 < bounds.length; i++) jobs.push({ kernel, args: args(bounds[i], bounds[i + 1], (bytes) => this.partScratch(i, bytes)) });
    const own = args(bounds[0], bounds[1], (bytes) => this.partScratch(0, bytes));
    this.pool!.run(jobs, () => (this.k as unknown as Record<WorkerKernel, (...a: number[]) => void>)[kernel](...own));
  }

  protected override zeroBytes(ptr: number, bytes: number): void {
    // A reused block is zeroed on the main thread's clock; big ones by every thread at once.
    const parts = this.pool === undefined ? 1 : Math.min(this.threads, Math.floor(bytes / ZERO_BYTES_PER_THREAD));
    if (parts < 2) return super.zeroBytes(ptr, bytes);
    this.split("zero", splitBounds(bytes / 64, 1, parts), (lo, hi) => [ptr + 64 * lo, 64 * (hi - lo)]);
  }

  protected override parallel(kernel: WorkerKernel, count: number, unit: number, work: number, args: PartArgs): void {
    const parts = Math.min(this.parts(work), Math.floor(count / unit));
    if (parts < 2) return super.parallel(kernel, count, unit, work, args);
    this.split(kernel, splitBounds(count, unit, parts), args);
  }

  override matmul(c: Buf, a: Buf, b: Buf, m: number, n: number, k: number, transA: boolean, transB: boolean, accumulate: boolean): void {
    // Rows of C are contiguous for op(A) = A; decode's columns of C are rows of B for op(B) = Bᵀ;
    // training's weight gradients Aᵀ·B are split by rows of C, which are columns of A
    // (matmulTransARows). A linear layer over few rows takes the kernel's row-by-row path
    // (smallRows), more rows the blocked GEMM. Few rows are split like decode, by rows of W: each
    // thread streams its share of the weights once (speculative verification costs about one
    // decode's memory traffic). x·W with m = 1 stays on one thread.
    const small = this.k.matmulSmallRows();
    const fewRows = m > 1 && m <= small && n > 1 && !transA && transB;
    const byRows = m > 1 && n > 1 && !transA && !fewRows, byCols = m === 1 && n > 1 && transB;
    const transARows = m > 1 && n > 1 && transA;
    let parts = byRows || byCols || fewRows || transARows ? this.parts(m * n * k) : 1;
    // Every part must take the path the whole would, so a GEMM's parts keep more than `small`
    // rows (parts are whole 4-row units, each at least floor(units / parts) of them).
    if (byRows && transB) parts = Math.min(parts, Math.floor(Math.floor(m / 4) / (Math.floor(small / 4) + 1)));
    if (transARows) parts = Math.min(parts, Math.floor(m / 4));
    if (parts < 2 || k <= 0 || !isCount(m) || !isCount(n) || !isCount(k)) return super.matmul(c, a, b, m, n, k, transA, transB, accumulate);
    const cp = this.p(c, m * n, "matmul C"), ap = this.p(a, m * k, "matmul A"), bp = this.p(b, k * n, "matmul B");
    const tA = transA ? 1 : 0, tB = transB ? 1 : 0, acc = accumulate ? 1 : 0, panels = this.matmulScratch;
    if (fewRows) this.split("matmulSmallRowsPart", splitBounds(n, 4, parts), (lo, hi) => [cp, ap, bp, m, n, k, lo, hi, acc]);
    else if (transARows) this.split("matmulTransARows", splitBounds(m, 4, parts), (lo, hi, scratch) => [cp, ap, bp, m, n, k, tB, acc, scratch(panels), lo, hi]);
    else if (byRows) this.split("matmul", splitBounds(m, 4, parts), (lo, hi, scratch) => [cp + lo * n * 4, ap + lo * k * 4, bp, hi - lo, n, k, tA, tB, acc, scratch(panels)]);
    else this.split("matmul", splitBounds(n, 4, parts), (lo, hi) => [cp + lo * 4, ap, bp + lo * k * 4, 1, hi - lo, k, tA, tB, acc, 0]);
  }

  override matmulQuantized(c: Buf, a: Buf, w: QBuf, m: number, n: number, k: number, accumulate: boolean): void {
    const q = this.qp(w);
    const parts = isCount(m) && q.rows === n && q.cols === k ? this.parts(m * n * k) : 1;
    if (parts < 2) return super.matmulQuantized(c, a, w, m, n, k, accumulate);
    const cp = this.p(c, m * n, "matmulQuantized C"), ap = this.p(a, m * k, "matmulQuantized A");
    const type = QUANT_CODES[q.type], acc = accumulate ? 1 : 0;
    const rowBytes = quantRowBytes(q.type, k);
    if (m === 1) {
      // Decode: each thread takes a range of W's rows (whole rows of blocks or f16 values) and
      // rounds its own copy of the activations in llama.cpp's mode.
      const bounds = splitBounds(n, 4, parts);
      const part = (lo: number, hi: number): number[] => [cp + lo * 4, ap, q.ptr + lo * rowBytes, 1, hi - lo, k, type, acc];
      if (!this.q8Activations) this.split("matmulQuantized", bounds, (lo, hi) => [...part(lo, hi), 0]);
      else {
        const bytes = this.k.matmulQuantizedQ8ScratchBytes(1, k, type);
        this.split("matmulQuantizedQ8", bounds, (lo, hi, scratch) => [...part(lo, hi), scratch(bytes), this.f16OrderCode]);
      }
      return;
    }
    // Prefill: each thread takes a range of rows of A and C, and decodes its own weight panels.
    // The panels' GEMM runs row by row up to `small` rows (matmul's smallRows), so every part must
    // stay on the whole's side of that line, as in matmul above (parts of ≤ `small` rows of a
    // larger whole — two halves of an MoE expert's 17–39 rows, say — would change bits).
    const small = this.k.matmulSmallRows();
    const rowParts = m > small ? Math.min(parts, Math.floor(Math.floor(m / 4) / (Math.floor(small / 4) + 1))) : parts;
    if (rowParts < 2) return super.matmulQuantized(c, a, w, m, n, k, accumulate);
    this.split("matmulQuantized", splitBounds(m, 4, rowParts), (lo, hi, scratch) =>
      [cp + lo * n * 4, ap + lo * k * 4, q.ptr, hi - lo, n, k, type, acc, scratch(this.k.matmulQuantizedScratchBytes(hi - lo, k))]);
  }

  override attentionCached(out: Buf, q: Buf, kCache: Buf, vCache: Buf, seq: number, heads: number, kvHeads: number, headDim: number, posOffset: number, scale: number): void {
    const valid = kvHeads > 0 && heads % kvHeads === 0 && isCount(seq) && isCount(posOffset) && isCount(headDim);
    const parts = valid ? this.parts(seq * heads * (posOffset + seq) * headDim * 2) : 1;
    if (parts < 2 || heads < 2) return super.attentionCached(out, q, kCache, vCache, seq, heads, kvHeads, headDim, posOffset, scale);
    const nq = seq * heads * headDim, nkv = (posOffset + seq) * kvHeads * headDim;
    const op = this.p(out, nq, "out"), qp = this.p(q, nq, "q"), kp = this.p(kCache, nkv, "kCache"), vp = this.p(vCache, nkv, "vCache");
    this.split("attentionCachedHeads", splitBounds(heads, 1, parts), (lo, hi, scratch) =>
      [op, qp, kp, vp, seq, heads, kvHeads, headDim, posOffset, scale, scratch((posOffset + seq) * 4), lo, hi]);
  }
}
