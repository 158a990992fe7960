// The `wasm` backend: f32 kernels written in AssemblyScript (assembly/kernels.ts), compiled to
// WebAssembly with SIMD. Every tensor lives in the module's linear memory; a Buf is just an
// (offset, length) pair into it, so kernels run in place with no copies per op. This file owns
// that memory: a small allocator (free lists per size class over a bump pointer) and the argument
// checks that keep a bad shape from scribbling over a neighbouring tensor.
import { type Backend, type BlockQuantType, type Buf, type FloatArray, type KdParams, type QBuf, type QuantType, KD_STATS, quantRowBytes } from "../backend.js";
import { checkQuantized, checkQuantizedWrite } from "../quantized-blocks.js";
import { fakeQuantizeRowsValues, fakeQuantizeValues } from "../fake-quant.js";
import { type TopK, topKOf } from "../top-k.js";
import { kernelModule, resolveKernels, type KernelChoice, type KernelFlavour } from "./kernel-flavour.js";
import type { WorkerKernel } from "./thread-worker.js";

/** The module's exports. Pointers are byte offsets; booleans are 0/1. */
export interface Kernels {
  heapBase(): number;
  zero(p: number, bytes: number): void;
  fill(p: number, value: number, n: number): void;
  add(out: number, a: number, b: number, n: number): void;
  axpy(acc: number, x: number, alpha: number, n: number): void;
  scale(p: number, s: number, n: number): void;
  sum(p: number, n: number): number;
  sumSquares(p: number, n: number): number;
  matmulScratchBytes(): number;
  matmulSmallRows(): number;
  matmulSmallRowsPart(c: number, a: number, b: number, m: number, n: number, k: number, lo: number, hi: number, accumulate: number): void;
  matmul(c: number, a: number, b: number, m: number, n: number, k: number, transA: number, transB: number, accumulate: number, scratch: number): void;
  matmulTransARows(c: number, a: number, b: number, m: number, n: number, k: number, transB: number, accumulate: number, scratch: number, lo: number, hi: number): void;
  matmulQuantizedScratchBytes(m: number, k: number): number;
  matmulQuantized(c: number, a: number, w: number, m: number, n: number, k: number, type: number, accumulate: number, scratch: number): void;
  matmulQuantizedQ8ScratchBytes(m: number, k: number, type: number): number;
  matmulQuantizedQ8(c: number, a: number, w: number, m: number, n: number, k: number, type: number, accumulate: number, scratch: number, f16Order: number): void;
  embedding(out: number, table: number, ids: number, count: number, dim: number): void;
  embeddingBackward(dTable: number, dOut: number, ids: number, count: number, dim: number): void;
  embeddingQuantized(out: number, w: number, ids: number, count: number, cols: number, type: number): void;
  rmsnorm(out: number, rstd: number, x: number, w: number, rows: number, dim: number, eps: number): void;
  rmsnormBackward(dx: number, dw: number, dOut: number, x: number, w: number, rstd: number, rows: number, dim: number): void;
  rmsnormBackwardRows(dx: number, dOut: number, x: number, w: number, rstd: number, rows: number, dim: number): void;
  rmsnormBackwardWeight(dw: number, dOut: number, x: number, rstd: number, rows: number, dim: number, c0: number, c1: number): void;
  rope(out: number, x: number, cos: number, sin: number, batch: number, seq: number, heads: number, headDim: number, posOffset: number, sign: number, accumulate: number): void;
  attention(out: number, probs: number, q: number, k: number, v: number, batch: number, seq: number, heads: number, kvHeads: number, headDim: number, scale: number): void;
  attentionHeads(out: number, probs: number, q: number, k: number, v: number, batch: number, seq: number, heads: number, kvHeads: number, headDim: number, scale: number, u0: number, u1: number): void;
  attentionCached(out: number, q: number, kCache: number, vCache: number, seq: number, heads: number, kvHeads: number, headDim: number, posOffset: number, scale: number, scratch: number): void;
  attentionCachedHeads(out: number, q: number, kCache: number, vCache: number, seq: number, heads: number, kvHeads: number, headDim: number, posOffset: number, scale: number, scratch: number, h0: number, h1: number): void;
  attentionBackward(dq: number, dk: number, dv: number, dOut: number, q: number, k: number, v: number, probs: number, batch: number, seq: number, heads: number, kvHeads: number, headDim: number, scale: number, scratch: number): void;
  attentionBackwardHeads(dq: number, dk: number, dv: number, dOut: number, q: number, k: number, v: number, probs: number, batch: number, seq: number, heads: number, kvHeads: number, headDim: number, scale: number, scratch: number, u0: number, u1: number): void;
  swiglu(out: number, gate: number, up: number, n: number): void;
  swigluBackward(dGate: number, dUp: number, dOut: number, gate: number, up: number, n: number): void;
  crossEntropy(losses: number, lse: number, logits: number, targets: number, rows: number, vocab: number): void;
  crossEntropyBackward(dLogits: number, logits: number, lse: number, targets: number, dLosses: number, rows: number, vocab: number): void;
  dropout(out: number, mask: number, x: number, n: number, p: number, seed: number): void;
  dropoutBackward(dx: number, dOut: number, mask: number, n: number): void;
  adamw(param: number, grad: number, m: number, v: number, n: number, beta1: number, beta2: number, eps: number, decay: number, stepSize: number, bc2Sqrt: number): void;
  distill(losses: number, stats: number, student: number, teacher: number, targets: number, scratch: number, rows: number, vocab: number, kind: number, alpha: number, tau: number, beta: number): void;
  distillBackward(dStudent: number, student: number, teacher: number, stats: number, targets: number, dLosses: number, rows: number, vocab: number, kind: number, alpha: number, tau: number, beta: number): void;
  distillSparse(losses: number, stats: number, student: number, ids: number, teacherLogProbs: number, targets: number, marks: number, rows: number, vocab: number, k: number, kind: number, alpha: number, tau: number, beta: number): void;
  distillSparseBackward(dStudent: number, student: number, ids: number, teacherLogProbs: number, stats: number, targets: number, dLosses: number, marks: number, rows: number, vocab: number, k: number, kind: number, alpha: number, tau: number, beta: number): void;
  softmax(out: number, x: number, rows: number, cols: number): void;
  softmaxBackward(dx: number, dOut: number, y: number, rows: number, cols: number): void;
  logSumExp(out: number, x: number, rows: number, cols: number): void;
  logSumExpBackward(dx: number, dOut: number, x: number, lse: number, rows: number, cols: number): void;
  moeTopK(weights: number, ids: number, probs: number, rows: number, experts: number, k: number): void;
  moeGatherRows(dst: number, src: number, rowIds: number, count: number, dim: number): void;
  moeScatterRows(dst: number, src: number, rowIds: number, count: number, dim: number, accumulate: number): void;
  moeCombine(out: number, slots: number, weights: number, rows: number, k: number, dim: number, accumulate: number): void;
  moeCombineBackward(dSlots: number, dWeights: number, dOut: number, slots: number, weights: number, rows: number, k: number, dim: number): void;
}

/** Allocation granularity: cache-line aligned, so SIMD loads never straddle lines needlessly. */
const ALIGN = 64;
const PAGE = 65536;
/** wasm32 addresses: 4 GiB of linear memory at most. */
const MAX_BYTES = 65536 * PAGE;

class WasmBuf implements Buf {
  constructor(
    readonly owner: WasmBackend,
    /** Byte offset in linear memory; -1 once freed. */
    public ptr: number,
    readonly length: number,
    /** Size of the block, the key of its free list. */
    readonly bytes: number,
  ) {}
}

class WasmQBuf implements QBuf {
  constructor(
    readonly owner: WasmBackend,
    readonly type: QuantType,
    readonly rows: number,
    readonly cols: number,
    /** Byte offset of the first block; -1 once freed. */
    public ptr: number,
    readonly bytes: number,
  ) {}
}

/** The kernels' type codes. */
export const QUANT_CODES: Record<QuantType, number> = { q8_0: 0, q4_0: 1, f16: 2 };

/** How the kernels compute, for either wasm backend. */
export interface WasmNumericsOptions {
  /**
   * Which build of the kernels runs: `simd` (SIMD128, the same bits on every machine), `relaxed`
   * (with FMA and int8 dot products; deterministic on one machine, last bits may differ between
   * CPUs), or `auto` (default): relaxed where the engine has it. See kernel-flavour.ts.
   */
  kernels?: KernelChoice;
  /**
   * Multiply quantized weights by a single row (decode) as llama.cpp does: for Q8_0/Q4_0 weights,
   * activations quantized to Q8_0 per 32-block and integer dot products (faster; rounds the
   * activations); for f16 weights, activations rounded to f16 and summed in ggml_vec_dot_f16's
   * order. Default false: weights decoded to f32 on the fly and every product in float — the reference.
   */
  q8Activations?: boolean;
  /**
   * Which x86 build's ggml_vec_dot_f16 order q8Activations reproduces for f16 weights: `avx512`
   * (16 lanes, default) or `avx` (AVX/AVX2, 8 lanes). Both are exact f16 products; only the
   * rounding of the sums differs, which matters where a later rounding (Q8_0, f16) is near a tie.
   */
  f16Order?: F16Order;
}

export type F16Order = "avx512" | "avx";
const F16_ORDER_CODES: Readonly<Record<F16Order, number>> = { avx512: 0, avx: 1 };

export interface WasmBackendOptions extends WasmNumericsOptions {
  /**
   * Linear memory to run in (at least 32 pages, zero-filled, not shared: a shared memory needs
   * the shared build of the kernels, which threaded-wasm-backend.ts uses). Defaults to a fresh,
   * growable memory. The backend owns everything above the module's heap base: other instances
   * over the same memory (the threaded backend's workers) must not allocate.
   */
  memory?: WebAssembly.Memory;
}

/** The arguments of a kernel for units [lo, hi) of a split call, with a scratch block of the part's own. */
export type PartArgs = (lo: number, hi: number, scratch: (bytes: number) => number) => number[];

/** Allocator figures, for tests and memory reports. */
export interface WasmMemoryStats {
  /** Size of linear memory. */
  memoryBytes: number;
  /** End of the bump-allocated region: every block ever handed out lies below it. */
  heapTop: number;
  /** Bytes of freed blocks waiting in the free lists. */
  freeBytes: number;
}

/** What the kernels module imports: its memory and an abort hook. */
export function kernelImports(memory: WebAssembly.Memory): WebAssembly.Imports {
  return {
    env: {
      memory,
      abort(): never {
        throw new Error("wasm backend: kernel aborted");
      },
    },
  };
}

/** Compile (once per flavour) and instantiate the kernels module. Async so that it also works in browsers. */
export async function createWasmBackend(options: WasmBackendOptions = {}): Promise<WasmBackend> {
  const flavour = await resolveKernels(options.kernels);
  const module = await kernelModule(flavour, false);
  const memory = options.memory ?? new WebAssembly.Memory({ initial: 32 });
  const instance = await WebAssembly.instantiate(module, kernelImports(memory));
  return new WasmBackend(instance.exports as unknown as Kernels, memory, options, flavour);
}

/**
 * Block sizes: multiples of ALIGN up to 4 KiB, then four classes per power of two (at most 25%
 * waste). Training asks for the same sizes every step and reuses blocks exactly; generation's
 * sizes grow with the context, and classes let those blocks be reused too instead of piling up.
 */
function sizeClass(bytes: number): number {
  if (bytes <= 4096) return Math.max(ALIGN, Math.ceil(bytes / ALIGN) * ALIGN);
  const step = 2 ** Math.floor(Math.log2(bytes)) / 4;
  return Math.ceil(bytes / step) * step;
}

/** The routed slots of an expert projection grouped by expert (WasmBackend.routeSlots). */
interface MoeRoute {
  /** Slots of expert e: order[start[e] .. start[e + 1]). */
  start: Int32Array;
  order: Int32Array;
  /** Input row of slot order[i]. */
  xRow: Int32Array;
  /** Byte offsets in the workspace: order and xRow as i32, block A (rows × kin), block B (rows × n). */
  orderPtr: number;
  xRowPtr: number;
  a: number;
  b: number;
}

export const isCount = (x: number): boolean => Number.isInteger(x) && x >= 0;

export class WasmBackend implements Backend {
  readonly name = "wasm";
  readonly dtype = "f32" as const;

  protected readonly k: Kernels;
  protected readonly memory: WebAssembly.Memory;
  private readonly heapStart: number;
  private top: number;
  private readonly freeLists = new Map<number, number[]>();
  private freeBytes = 0;
  // Views over linear memory; memory.grow detaches them, so they are re-created lazily.
  private f32v: Float32Array;
  private i32v: Int32Array;
  // One reusable scratch block (packed matmul panels, ids/targets, attention rows).
  private scratchPtr = -1;
  private scratchBytes = 0;
  protected readonly matmulScratch: number;
  /** See WasmNumericsOptions. */
  readonly q8Activations: boolean;
  protected readonly f16OrderCode: number;

  /** Use createWasmBackend(); this takes an already instantiated module. */
  constructor(
    kernels: Kernels,
    memory: WebAssembly.Memory,
    numerics: WasmNumericsOptions = {},
    /** The build `kernels` come from. */
    readonly flavour: KernelFlavour = "simd",
  ) {
    this.q8Activations = numerics.q8Activations ?? false;
    const order = numerics.f16Order ?? "avx512";
    if (!(order in F16_ORDER_CODES)) throw new RangeError(`wasm backend: f16Order must be avx512 or avx, got ${JSON.stringify(order)}`);
    this.f16OrderCode = F16_ORDER_CODES[order];
    this.k = kernels;
    this.memory = memory;
    this.heapStart = Math.ceil(kernels.heapBase() / ALIGN) * ALIGN;
    this.top = this.heapStart;
    this.f32v = new Float32Array(memory.buffer);
    this.i32v = new Int32Array(memory.buffer);
    this.matmulScratch = kernels.matmulScratchBytes();
  }

  // ---- memory -------------------------------------------------------------------------------

  private get f32(): Float32Array {
    if (this.f32v.buffer !== this.memory.buffer) this.refreshViews();
    return this.f32v;
  }
  private get i32(): Int32Array {
    if (this.i32v.buffer !== this.memory.buffer) this.refreshViews();
    return this.i32v;
  }
  private refreshViews(): void {
    this.f32v = new Float32Array(this.memory.buffer);
    this.i32v = new Int32Array(this.memory.buffer);
  }

  /** A zero-filled block of at least `bytes` bytes (rounded up to its size class). */
  protected allocBytes(bytes: number): { ptr: number; bytes: number } {
    bytes = sizeClass(bytes);
    const list = this.freeLists.get(bytes);
    if (list !== undefined && list.length > 0) {
      const ptr = list.pop()!;
      this.freeBytes -= bytes;
      this.zeroBytes(ptr, bytes);
      return { ptr, bytes };
    }
    // Fresh memory above `top` has never been written, and grown pages arrive zeroed.
    const end = this.top + bytes;
    if (end > this.memory.buffer.byteLength) this.grow(end);
    const ptr = this.top;
    this.top = end;
    return { ptr, bytes };
  }

  /** Zero `bytes` bytes at `ptr` (a multiple of 64: blocks come in size classes). */
  protected zeroBytes(ptr: number, bytes: number): void {
    this.k.zero(ptr, bytes);
  }

  protected releaseBytes(ptr: number, bytes: number): void {
    let list = this.freeLists.get(bytes);
    if (list === undefined) this.freeLists.set(bytes, (list = []));
    list.push(ptr);
    this.freeBytes += bytes;
  }

  private grow(end: number): void {
    if (end > MAX_BYTES) throw new RangeError(`wasm backend: out of memory (${end} bytes needed, wasm32 allows 4 GiB)`);
    const have = this.memory.buffer.byteLength / PAGE;
    const need = Math.ceil(end / PAGE) - have;
    // Grow by at least a quarter of the current size so that a model allocating tensor after
    // tensor does not pay for (and detach views on) a grow per allocation.
    const want = Math.min(Math.max(need, Math.ceil(have / 4)), MAX_BYTES / PAGE - have);
    try {
      this.memory.grow(want);
    } catch {
      try {
        this.memory.grow(need);
      } catch {
        throw new RangeError(`wasm backend: out of memory (could not grow linear memory to ${end} bytes)`);
      }
    }
    this.refreshViews();
  }

  /** Scratch space for the duration of one kernel call. */
  protected scratch(bytes: number): number {
    if (bytes > this.scratchBytes) {
      if (this.scratchPtr >= 0) this.releaseBytes(this.scratchPtr, this.scratchBytes);
      const block = this.allocBytes(Math.max(bytes, 2 * this.scratchBytes));
      this.scratchPtr = block.ptr;
      this.scratchBytes = block.bytes;
    }
    return this.scratchPtr;
  }

  /**
   * Run `kernel` over `count` units (elements, rows, (batch, head) pairs) whose results do not
   * depend on how the units are grouped: `args(lo, hi, scratch)` gives its arguments for units
   * [lo, hi), with `scratch(bytes)` a scratch block of that part's own. Here the whole runs at
   * once; the threaded backend splits it into parts at multiples of `unit`, for about `work`
   * multiply-adds in all (ThreadedWasmBackend.parallel).
   */
  protected parallel(kernel: WorkerKernel, count: number, unit: number, work: number, args: PartArgs): void {
    void unit;
    void work;
    (this.k as unknown as Record<WorkerKernel, (...a: number[]) => void>)[kernel](...args(0, count, (bytes) => this.partScratch(0, bytes)));
  }

  // Scratch blocks of the parts of a split kernel call (packed panels, attention rows), one per
  // thread, grown like the main scratch and apart from it (which holds a call's ids and targets).
  private readonly partScratchPtrs: number[] = [];
  private readonly partScratchSizes: number[] = [];

  /** Scratch of part `i` (0 = the main thread's) of a kernel call. */
  protected partScratch(i: number, bytes: number): number {
    if (bytes > (this.partScratchSizes[i] ?? 0)) {
      if (this.partScratchPtrs[i] !== undefined) this.releaseBytes(this.partScratchPtrs[i], this.partScratchSizes[i]);
      const block = this.allocBytes(bytes);
      this.partScratchPtrs[i] = block.ptr;
      this.partScratchSizes[i] = block.bytes;
    }
    return this.partScratchPtrs[i];
  }

  /** Copy small integer arguments (token ids, targets) into scratch. */
  private ints(values: Int32Array): number {
    const ptr = this.scratch(values.length * 4);
    this.i32.set(values, ptr >>> 2);
    return ptr;
  }

  /** Byte offset of a live buffer of this backend holding at least `need` numbers. */
  protected p(buf: Buf, need: number, what: string): number {
    const b = buf as WasmBuf;
    if (!(b instanceof WasmBuf) || b.owner !== this) throw new Error(`wasm backend: ${what} is not a buffer of this backend`);
    if (b.ptr < 0) throw new Error(`wasm backend: ${what} used after free`);
    if (need > b.length) throw new RangeError(`wasm backend: ${what} needs ${need} numbers, has ${b.length}`);
    return b.ptr;
  }

  alloc(length: number): Buf {
    if (!isCount(length)) throw new RangeError(`wasm backend: cannot allocate ${length} numbers`);
    const { ptr, bytes } = this.allocBytes(length * 4);
    return new WasmBuf(this, ptr, length, bytes);
  }

  free(buf: Buf): void {
    const b = buf as WasmBuf;
    if (!(b instanceof WasmBuf) || b.owner !== this) throw new Error("wasm backend: freeing a buffer of another backend");
    if (b.ptr < 0) throw new Error("wasm backend: double free");
    this.releaseBytes(b.ptr, b.bytes);
    b.ptr = -1;
  }

  /** Allocator figures (see WasmMemoryStats). */
  stats(): WasmMemoryStats {
    return { memoryBytes: this.memory.buffer.byteLength, heapTop: this.top, freeBytes: this.freeBytes };
  }

  write(buf: Buf, src: ArrayLike<number>, offset = 0): void {
    if (!isCount(offset) || offset + src.length > buf.length)
      throw new RangeError(`write of ${src.length} at ${offset} overflows buffer of ${buf.length}`);
    const ptr = this.p(buf, 0, "write target");
    this.f32.set(src, (ptr >>> 2) + offset);
  }

  async read(buf: Buf, offset = 0, length = buf.length - offset): Promise<Float32Array> {
    return this.readSync(buf, offset, length);
  }

  readSync(buf: Buf, offset = 0, length = buf.length - offset): Float32Array {
    if (!isCount(offset) || !isCount(length) || offset + length > buf.length)
      throw new RangeError(`read of ${length} at ${offset} overflows buffer of ${buf.length}`);
    const start = (this.p(buf, 0, "read source") >>> 2) + offset;
    return this.f32.slice(start, start + length);
  }

  async readInto(buf: Buf, dst: FloatArray, offset = 0): Promise<void> {
    if (!isCount(offset) || offset + dst.length > buf.length) throw new RangeError(`read of ${dst.length} at ${offset} overflows buffer of ${buf.length}`);
    const start = (this.p(buf, 0, "read source") >>> 2) + offset;
    dst.set(this.f32.subarray(start, start + dst.length));
  }

  async readTopK(buf: Buf, offset: number, n: number, k: number): Promise<TopK> {
    if (!isCount(offset) || !isCount(n) || offset + n > buf.length) throw new RangeError(`top-k of ${n} at ${offset} overflows buffer of ${buf.length}`);
    // Straight from WebAssembly memory: the row is not copied.
    return topKOf(this.f32, k, (this.p(buf, 0, "top-k source") >>> 2) + offset, n);
  }

  fill(buf: Buf, value: number): void {
    this.k.fill(this.p(buf, 0, "fill target"), value, buf.length);
  }

  copy(dst: Buf, dstOffset: number, src: Buf, srcOffset: number, n: number): void {
    if (!isCount(dstOffset) || !isCount(srcOffset) || !isCount(n)) throw new RangeError("wasm backend: bad copy range");
    const d = (this.p(dst, dstOffset + n, "copy destination") >>> 2) + dstOffset;
    const s = (this.p(src, srcOffset + n, "copy source") >>> 2) + srcOffset;
    this.f32.copyWithin(d, s, s + n); // memmove semantics, so overlapping ranges are fine
  }

  // ---- elementwise and reductions -------------------------------------------------------------

  add(out: Buf, a: Buf, b: Buf): void {
    const n = out.length;
    const [op, ap, bp] = [this.p(out, n, "out"), this.p(a, n, "a"), this.p(b, n, "b")];
    this.parallel("add", n, 4, n, (lo, hi) => [op + 4 * lo, ap + 4 * lo, bp + 4 * lo, hi - lo]);
  }
  axpy(acc: Buf, x: Buf, alpha: number): void {
    const n = acc.length;
    const [cp, xp] = [this.p(acc, n, "acc"), this.p(x, n, "x")];
    this.parallel("axpy", n, 4, n, (lo, hi) => [cp + 4 * lo, xp + 4 * lo, alpha, hi - lo]);
  }
  scale(buf: Buf, s: number): void {
    this.k.scale(this.p(buf, 0, "buf"), s, buf.length);
  }
  async sum(buf: Buf): Promise<number> {
    return this.k.sum(this.p(buf, 0, "buf"), buf.length);
  }
  async sumSquares(buf: Buf): Promise<number> {
    return this.k.sumSquares(this.p(buf, 0, "buf"), buf.length);
  }
  // Load-time and QAT operations, on the host over the backend's memory (a view, no copy).
  scaleColumns(x: Buf, gain: Buf, offset: number, rows: number, cols: number): void {
    if (!isCount(offset) || !isCount(rows) || !isCount(cols) || gain.length < cols) throw new RangeError("wasm backend: bad scaleColumns shape");
    const X = (this.p(x, offset + rows * cols, "scaleColumns x") >>> 2) + offset, g = this.p(gain, cols, "gain") >>> 2;
    const f = this.f32;
    for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) f[X + r * cols + c] *= f[g + c];
  }
  fakeQuantize(out: Buf, x: Buf, type: BlockQuantType): void {
    const n = x.length, src = this.p(x, n, "x") >>> 2, dst = this.p(out, n, "out") >>> 2;
    fakeQuantizeValues(type, this.f32.subarray(src, src + n), this.f32.subarray(dst, dst + n));
  }
  fakeQuantizeRows(out: Buf, x: Buf, rows: number, dim: number): void {
    const n = rows * dim, src = this.p(x, n, "x") >>> 2, dst = this.p(out, n, "out") >>> 2;
    fakeQuantizeRowsValues(this.f32.subarray(src, src + n), rows, dim, this.f32.subarray(dst, dst + n));
  }

  // ---- dense linear algebra -------------------------------------------------------------------

  matmul(c: Buf, a: Buf, b: Buf, m: number, n: number, k: number, transA: boolean, transB: boolean, accumulate: boolean): void {
    if (!isCount(m) || !isCount(n) || !isCount(k)) throw new RangeError(`wasm backend: bad matmul shape ${m}x${n}x${k}`);
    const cp = this.p(c, m * n, "matmul C"), ap = this.p(a, m * k, "matmul A"), bp = this.p(b, k * n, "matmul B");
    // m = 1 and n = 1 are matrix-vector products that need no packing space.
    const scratch = m > 1 && n > 1 && k > 0 ? this.scratch(this.matmulScratch) : 0;
    this.k.matmul(cp, ap, bp, m, n, k, transA ? 1 : 0, transB ? 1 : 0, accumulate ? 1 : 0, scratch);
  }

  // ---- quantized weights ----------------------------------------------------------------------

  allocQuantized(type: QuantType, rows: number, cols: number, bytes?: Uint8Array): QBuf {
    const size = rows * quantRowBytes(type, cols);
    checkQuantized(type, rows, cols, bytes?.length ?? size);
    const block = this.allocBytes(size);
    if (bytes !== undefined) new Uint8Array(this.memory.buffer, block.ptr, size).set(bytes.subarray(0, size));
    return new WasmQBuf(this, type, rows, cols, block.ptr, block.bytes);
  }

  writeQuantized(w: QBuf, row: number, bytes: Uint8Array): void {
    const q = this.qp(w);
    checkQuantizedWrite(q, row, bytes.length);
    new Uint8Array(this.memory.buffer, q.ptr + row * quantRowBytes(q.type, q.cols), bytes.length).set(bytes);
  }

  protected qp(w: QBuf): WasmQBuf {
    const q = w as WasmQBuf;
    if (!(q instanceof WasmQBuf) || q.owner !== this) throw new Error("wasm backend: not a quantized matrix of this backend");
    if (q.ptr < 0) throw new Error("wasm backend: quantized matrix used after free");
    return q;
  }

  freeQuantized(w: QBuf): void {
    const q = w as WasmQBuf;
    if (q instanceof WasmQBuf && q.owner === this && q.ptr < 0) throw new Error("wasm backend: double free of a quantized matrix");
    this.releaseBytes(this.qp(w).ptr, q.bytes);
    q.ptr = -1;
  }

  matmulQuantized(c: Buf, a: Buf, w: QBuf, m: number, n: number, k: number, accumulate: boolean): void {
    const q = this.qp(w);
    if (!isCount(m) || q.rows !== n || q.cols !== k) throw new RangeError(`wasm backend: quantized matmul of ${m} rows by [${q.rows}, ${q.cols}] called as ${m}x${n}x${k}`);
    const cp = this.p(c, m * n, "matmulQuantized C"), ap = this.p(a, m * k, "matmulQuantized A");
    // Prefill (m > 1) always takes the float path: it decodes each weight once for all rows and
    // runs the packed GEMM, faster than per-row integer dot products.
    if (this.q8Activations && m === 1) {
      const scratch = this.scratch(this.k.matmulQuantizedQ8ScratchBytes(m, k, QUANT_CODES[q.type]));
      this.k.matmulQuantizedQ8(cp, ap, q.ptr, m, n, k, QUANT_CODES[q.type], accumulate ? 1 : 0, scratch, this.f16OrderCode);
      return;
    }
    const scratch = m > 1 ? this.scratch(this.k.matmulQuantizedScratchBytes(m, k)) : 0;
    this.k.matmulQuantized(cp, ap, q.ptr, m, n, k, QUANT_CODES[q.type], accumulate ? 1 : 0, scratch);
  }

  // ---- model kernels --------------------------------------------------------------------------

  private checkIds(ids: Int32Array, rows: number): void {
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i];
      if (id < 0 || id >= rows) throw new Error(`token id ${id} out of range [0, ${rows})`);
    }
  }

  embedding(out: Buf, table: Buf, ids: Int32Array, dim: number): void {
    const rows = table.length / dim;
    this.checkIds(ids, rows);
    const op = this.p(out, ids.length * dim, "embedding out"), tp = this.p(table, 0, "embedding table");
    this.k.embedding(op, tp, this.ints(ids), ids.length, dim);
  }
  embeddingQuantized(out: Buf, table: QBuf, ids: Int32Array): void {
    const q = this.qp(table);
    this.checkIds(ids, q.rows);
    const op = this.p(out, ids.length * q.cols, "embedding out");
    this.k.embeddingQuantized(op, q.ptr, this.ints(ids), ids.length, q.cols, QUANT_CODES[q.type]);
  }
  embeddingBackward(dTable: Buf, dOut: Buf, ids: Int32Array, dim: number): void {
    // An out-of-range row would land in another tensor: check before writing.
    this.checkIds(ids, dTable.length / dim);
    const tp = this.p(dTable, 0, "dTable"), dp = this.p(dOut, ids.length * dim, "dOut");
    this.k.embeddingBackward(tp, dp, this.ints(ids), ids.length, dim);
  }

  rmsnorm(out: Buf, rstd: Buf, x: Buf, w: Buf, rows: number, dim: number, eps: number): void {
    const n = rows * dim;
    const [op, rp, xp, wp] = [this.p(out, n, "out"), this.p(rstd, rows, "rstd"), this.p(x, n, "x"), this.p(w, dim, "w")];
    this.parallel("rmsnorm", rows, 1, 2 * n, (lo, hi) => [op + 4 * lo * dim, rp + 4 * lo, xp + 4 * lo * dim, wp, hi - lo, dim, eps]);
  }
  rmsnormBackward(dx: Buf, dw: Buf, dOut: Buf, x: Buf, w: Buf, rstd: Buf, rows: number, dim: number): void {
    const n = rows * dim;
    const [dxp, dwp, gp, xp, wp, rp] = [this.p(dx, n, "dx"), this.p(dw, dim, "dw"), this.p(dOut, n, "dOut"), this.p(x, n, "x"), this.p(w, dim, "w"), this.p(rstd, rows, "rstd")];
    // dx by rows; dw, a sum over rows, by columns (each summed in row order, as one thread does).
    this.parallel("rmsnormBackwardRows", rows, 1, 3 * n, (lo, hi) => [dxp + 4 * lo * dim, gp + 4 * lo * dim, xp + 4 * lo * dim, wp, rp + 4 * lo, hi - lo, dim]);
    this.parallel("rmsnormBackwardWeight", dim, 4, n, (lo, hi) => [dwp, gp, xp, rp, rows, dim, lo, hi]);
  }

  private ropeArgs(out: Buf, x: Buf, cos: Buf, sin: Buf, batch: number, seq: number, heads: number, headDim: number, posOffset: number): number[] {
    if (headDim % 2 !== 0) throw new RangeError(`rope needs an even head dimension, got ${headDim}`);
    if (!isCount(posOffset)) throw new RangeError(`rope: bad position offset ${posOffset}`);
    const n = batch * seq * heads * headDim, table = (posOffset + seq) * (headDim / 2);
    return [this.p(out, n, "out"), this.p(x, n, "x"), this.p(cos, table, "cos table"), this.p(sin, table, "sin table")];
  }
  rope(out: Buf, x: Buf, cos: Buf, sin: Buf, batch: number, seq: number, heads: number, headDim: number, posOffset: number): void {
    this.ropeParts(this.ropeArgs(out, x, cos, sin, batch, seq, heads, headDim, posOffset), batch, seq, heads, headDim, posOffset, 1, 0);
  }
  ropeBackward(dx: Buf, dOut: Buf, cos: Buf, sin: Buf, batch: number, seq: number, heads: number, headDim: number, posOffset: number): void {
    this.ropeParts(this.ropeArgs(dx, dOut, cos, sin, batch, seq, heads, headDim, posOffset), batch, seq, heads, headDim, posOffset, -1, 1);
  }
  /** RoPE by sequences of the batch (positions restart in each). */
  private ropeParts([op, xp, cp, sp]: number[], batch: number, seq: number, heads: number, headDim: number, posOffset: number, sign: number, accumulate: number): void {
    const row = seq * heads * headDim * 4;
    this.parallel("rope", batch, 1, 2 * batch * row, (lo, hi) => [op + lo * row, xp + lo * row, cp, sp, hi - lo, seq, heads, headDim, posOffset, sign, accumulate]);
  }

  private checkHeads(heads: number, kvHeads: number): void {
    if (!(kvHeads > 0) || heads % kvHeads !== 0) throw new RangeError(`attention: ${heads} heads cannot share ${kvHeads} KV heads`);
  }
  attention(out: Buf, probs: Buf, q: Buf, k: Buf, v: Buf, batch: number, seq: number, heads: number, kvHeads: number, headDim: number, scale: number): void {
    this.checkHeads(heads, kvHeads);
    const nq = batch * seq * heads * headDim, nkv = batch * seq * kvHeads * headDim;
    const ptrs = [this.p(out, nq, "out"), this.p(probs, batch * heads * seq * seq, "probs"), this.p(q, nq, "q"), this.p(k, nkv, "k"), this.p(v, nkv, "v")];
    // By (batch, head) pairs, each independent of the others.
    this.parallel("attentionHeads", batch * heads, 1, batch * heads * seq * seq * headDim, (lo, hi) => [...ptrs, batch, seq, heads, kvHeads, headDim, scale, lo, hi]);
  }
  attentionCached(out: Buf, q: Buf, kCache: Buf, vCache: Buf, seq: number, heads: number, kvHeads: number, headDim: number, posOffset: number, scale: number): void {
    this.checkHeads(heads, kvHeads);
    if (!isCount(seq) || !isCount(posOffset) || !isCount(headDim)) throw new RangeError(`attentionCached: bad shape seq ${seq}, posOffset ${posOffset}, headDim ${headDim}`);
    const nq = seq * heads * headDim, nkv = (posOffset + seq) * kvHeads * headDim;
    const op = this.p(out, nq, "out"), qp = this.p(q, nq, "q"), kp = this.p(kCache, nkv, "kCache"), vp = this.p(vCache, nkv, "vCache");
    this.k.attentionCached(op, qp, kp, vp, seq, heads, kvHeads, headDim, posOffset, scale, this.scratch((posOffset + seq) * 4));
  }
  attentionBackward(dq: Buf, dk: Buf, dv: Buf, dOut: Buf, q: Buf, k: Buf, v: Buf, probs: Buf, batch: number, seq: number, heads: number, kvHeads: number, headDim: number, scale: number): void {
    this.checkHeads(heads, kvHeads);
    const nq = batch * seq * heads * headDim, nkv = batch * seq * kvHeads * headDim;
    const ptrs = [
      this.p(dq, nq, "dq"), this.p(dk, nkv, "dk"), this.p(dv, nkv, "dv"), this.p(dOut, nq, "dOut"),
      this.p(q, nq, "q"), this.p(k, nkv, "k"), this.p(v, nkv, "v"), this.p(probs, batch * heads * seq * seq, "probs"),
    ];
    // By whole KV groups: the query heads of a group add into the same dK, dV rows, in head order.
    this.parallel("attentionBackwardHeads", batch * heads, heads / kvHeads, 2 * batch * heads * seq * seq * headDim,
      (lo, hi, scratch) => [...ptrs, batch, seq, heads, kvHeads, headDim, scale, scratch(seq * seq * 4), lo, hi]);
  }

  swiglu(out: Buf, gate: Buf, up: Buf): void {
    const n = out.length;
    const [op, gp, up_] = [this.p(out, n, "out"), this.p(gate, n, "gate"), this.p(up, n, "up")];
    this.parallel("swiglu", n, 4, 16 * n, (lo, hi) => [op + 4 * lo, gp + 4 * lo, up_ + 4 * lo, hi - lo]);
  }
  swigluBackward(dGate: Buf, dUp: Buf, dOut: Buf, gate: Buf, up: Buf): void {
    const n = dOut.length;
    const ptrs = [this.p(dGate, n, "dGate"), this.p(dUp, n, "dUp"), this.p(dOut, n, "dOut"), this.p(gate, n, "gate"), this.p(up, n, "up")];
    this.parallel("swigluBackward", n, 4, 16 * n, (lo, hi) => [...ptrs.map((p) => p + 4 * lo), hi - lo]);
  }

  private checkTargets(targets: Int32Array, rows: number, vocab: number): void {
    if (targets.length < rows) throw new RangeError(`cross-entropy: ${targets.length} targets for ${rows} rows`);
    for (let r = 0; r < rows; r++) {
      const t = targets[r];
      if (t >= vocab) throw new Error(`target ${t} out of range [0, ${vocab})`);
    }
  }
  crossEntropy(losses: Buf, lse: Buf, logits: Buf, targets: Int32Array, rows: number, vocab: number): void {
    this.checkTargets(targets, rows, vocab);
    const lp = this.p(losses, rows, "losses"), ep = this.p(lse, rows, "lse"), xp = this.p(logits, rows * vocab, "logits");
    const tp = this.ints(targets.subarray(0, rows));
    this.parallel("crossEntropy", rows, 1, 8 * rows * vocab, (lo, hi) => [lp + 4 * lo, ep + 4 * lo, xp + 4 * lo * vocab, tp + 4 * lo, hi - lo, vocab]);
  }
  crossEntropyBackward(dLogits: Buf, logits: Buf, lse: Buf, targets: Int32Array, dLosses: Buf, rows: number, vocab: number): void {
    this.checkTargets(targets, rows, vocab);
    const n = rows * vocab;
    const dp = this.p(dLogits, n, "dLogits"), xp = this.p(logits, n, "logits"), ep = this.p(lse, rows, "lse"), gp = this.p(dLosses, rows, "dLosses");
    const tp = this.ints(targets.subarray(0, rows));
    this.parallel("crossEntropyBackward", rows, 1, 8 * n, (lo, hi) => [dp + 4 * lo * vocab, xp + 4 * lo * vocab, ep + 4 * lo, tp + 4 * lo, gp + 4 * lo, hi - lo, vocab]);
  }

  dropout(out: Buf, mask: Buf, x: Buf, p: number, seed: number): void {
    // The kernel takes the seed modulo 2^32 (wasm's i32 conversion), which is what dropoutUniform
    // amounts to for integer seeds; fractional ones would hash differently, so they are refused.
    if (!Number.isInteger(seed)) throw new RangeError(`dropout seed must be an integer, got ${seed}`);
    const n = out.length;
    this.k.dropout(this.p(out, n, "out"), this.p(mask, n, "mask"), this.p(x, n, "x"), n, p, seed);
  }
  dropoutBackward(dx: Buf, dOut: Buf, mask: Buf): void {
    const n = dx.length;
    const ptrs = [this.p(dx, n, "dx"), this.p(dOut, n, "dOut"), this.p(mask, n, "mask")];
    this.parallel("dropoutBackward", n, 4, n, (lo, hi) => [...ptrs.map((p) => p + 4 * lo), hi - lo]);
  }

  // ---- distillation ---------------------------------------------------------------------------

  /** Targets (and a sparse teacher's ids) checked and packed into scratch, then `vocab` bytes of marks. */
  private kdInts(targets: Int32Array, rows: number, vocab: number, ids?: Int32Array, k = 0): { tp: number; ip: number; mp: number } {
    if (!isCount(rows) || !isCount(vocab) || vocab === 0 || !isCount(k)) throw new RangeError(`distill: bad shape rows ${rows}, vocab ${vocab}, k ${k}`);
    if (targets.length < rows) throw new RangeError(`distill: ${targets.length} targets for ${rows} rows`);
    for (let r = 0; r < rows; r++) if (!(targets[r] >= -2 && targets[r] < vocab)) throw new Error(`target ${targets[r]} out of range [-2, ${vocab})`);
    const nIds = ids ? rows * k : 0;
    if (ids) {
      if (ids.length < nIds) throw new RangeError(`distill: ${ids.length} teacher ids for ${rows} rows of ${k}`);
      for (let i = 0; i < nIds; i++) if (!(ids[i] >= 0 && ids[i] < vocab)) throw new Error(`teacher token id ${ids[i]} out of range [0, ${vocab})`);
    }
    // targets, ids, then max(vocab, 16) bytes of marks (kept 8-aligned for the f64 sums of distill).
    const tp = this.scratch((rows + nIds) * 4 + Math.max(vocab, 16) + 8);
    this.i32.set(targets.subarray(0, rows), tp >>> 2);
    if (ids) this.i32.set(ids.subarray(0, nIds), (tp >>> 2) + rows);
    return { tp, ip: tp + rows * 4, mp: tp + Math.ceil(((rows + nIds) * 4) / 8) * 8 };
  }
  distill(losses: Buf, stats: Buf, student: Buf, teacher: Buf, targets: Int32Array, rows: number, vocab: number, kd: KdParams): void {
    const { tp } = this.kdInts(targets, rows, vocab);
    const n = rows * vocab;
    const [lp, sp, xp, pp] = [this.p(losses, rows, "losses"), this.p(stats, rows * KD_STATS, "stats"), this.p(student, n, "student"), this.p(teacher, n, "teacher")];
    // Rows are independent; each part has 16 bytes of scratch for a row's sums.
    this.parallel("distill", rows, 1, 16 * n, (lo, hi, scratch) =>
      [lp + 4 * lo, sp + 4 * KD_STATS * lo, xp + 4 * lo * vocab, pp + 4 * lo * vocab, tp + 4 * lo, scratch(16), hi - lo, vocab, kd.kind, kd.alpha, kd.temperature, kd.beta]);
  }
  distillBackward(dStudent: Buf, student: Buf, teacher: Buf, stats: Buf, targets: Int32Array, dLosses: Buf, rows: number, vocab: number, kd: KdParams): void {
    const { tp } = this.kdInts(targets, rows, vocab);
    const n = rows * vocab;
    const [dp, xp, pp, sp, gp] = [this.p(dStudent, n, "dStudent"), this.p(student, n, "student"), this.p(teacher, n, "teacher"), this.p(stats, rows * KD_STATS, "stats"), this.p(dLosses, rows, "dLosses")];
    this.parallel("distillBackward", rows, 1, 16 * n, (lo, hi) =>
      [dp + 4 * lo * vocab, xp + 4 * lo * vocab, pp + 4 * lo * vocab, sp + 4 * KD_STATS * lo, tp + 4 * lo, gp + 4 * lo, hi - lo, vocab, kd.kind, kd.alpha, kd.temperature, kd.beta]);
  }
  distillSparse(losses: Buf, stats: Buf, student: Buf, teacherIds: Int32Array, teacherLogProbs: Buf, targets: Int32Array, rows: number, vocab: number, k: number, kd: KdParams): void {
    const { tp, ip, mp } = this.kdInts(targets, rows, vocab, teacherIds, k);
    this.k.distillSparse(
      this.p(losses, rows, "losses"), this.p(stats, rows * KD_STATS, "stats"), this.p(student, rows * vocab, "student"), ip,
      this.p(teacherLogProbs, rows * k, "teacherLogProbs"), tp, mp, rows, vocab, k, kd.kind, kd.alpha, kd.temperature, kd.beta,
    );
  }
  distillSparseBackward(dStudent: Buf, student: Buf, teacherIds: Int32Array, teacherLogProbs: Buf, stats: Buf, targets: Int32Array, dLosses: Buf, rows: number, vocab: number, k: number, kd: KdParams): void {
    const { tp, ip, mp } = this.kdInts(targets, rows, vocab, teacherIds, k);
    const n = rows * vocab;
    this.k.distillSparseBackward(
      this.p(dStudent, n, "dStudent"), this.p(student, n, "student"), ip, this.p(teacherLogProbs, rows * k, "teacherLogProbs"),
      this.p(stats, rows * KD_STATS, "stats"), tp, this.p(dLosses, rows, "dLosses"), mp, rows, vocab, k, kd.kind, kd.alpha, kd.temperature, kd.beta,
    );
  }

  // ---- mixture of experts ---------------------------------------------------------------------
  // Router math (softmax, log-sum-exp, top-k) and the combine run as row kernels (assembly/moe.ts),
  // split by rows on the threaded backend. The expert projections read the ids here, on the host
  // (this memory is ours to read synchronously), group the routed slots by expert, gather each
  // expert's rows into a workspace block and run one GEMM per expert through this.matmul /
  // this.matmulQuantized — the threaded backend's overrides where they exist — then scatter the
  // results back. An expert's rows that already lie consecutively in memory (decode's single row,
  // k = 1 with every row on one expert) are used in place, with no copy.

  private checkRows(rows: number, cols: number, what: string): number {
    if (!isCount(rows) || !isCount(cols)) throw new RangeError(`wasm backend: bad ${what} shape ${rows}x${cols}`);
    return rows * cols;
  }
  softmax(out: Buf, x: Buf, rows: number, cols: number): void {
    const n = this.checkRows(rows, cols, "softmax");
    const op = this.p(out, n, "softmax out"), xp = this.p(x, n, "softmax x");
    this.parallel("softmax", rows, 1, 8 * n, (lo, hi) => [op + 4 * lo * cols, xp + 4 * lo * cols, hi - lo, cols]);
  }
  softmaxBackward(dx: Buf, dOut: Buf, y: Buf, rows: number, cols: number): void {
    const n = this.checkRows(rows, cols, "softmaxBackward");
    const ptrs = [this.p(dx, n, "softmaxBackward dx"), this.p(dOut, n, "softmaxBackward dOut"), this.p(y, n, "softmaxBackward y")];
    this.parallel("softmaxBackward", rows, 1, 3 * n, (lo, hi) => [...ptrs.map((p) => p + 4 * lo * cols), hi - lo, cols]);
  }
  logSumExp(out: Buf, x: Buf, rows: number, cols: number): void {
    const n = this.checkRows(rows, cols, "logSumExp");
    const op = this.p(out, rows, "logSumExp out"), xp = this.p(x, n, "logSumExp x");
    this.parallel("logSumExp", rows, 1, 8 * n, (lo, hi) => [op + 4 * lo, xp + 4 * lo * cols, hi - lo, cols]);
  }
  logSumExpBackward(dx: Buf, dOut: Buf, x: Buf, lse: Buf, rows: number, cols: number): void {
    const n = this.checkRows(rows, cols, "logSumExpBackward");
    const gp = this.p(dx, n, "logSumExpBackward dx"), dp = this.p(dOut, rows, "logSumExpBackward dOut");
    const xp = this.p(x, n, "logSumExpBackward x"), ep = this.p(lse, rows, "logSumExpBackward lse");
    this.parallel("logSumExpBackward", rows, 1, 8 * n, (lo, hi) => [gp + 4 * lo * cols, dp + 4 * lo, xp + 4 * lo * cols, ep + 4 * lo, hi - lo, cols]);
  }

  private checkRouting(rows: number, experts: number, k: number, what: string): void {
    if (!isCount(rows) || !isCount(experts) || !isCount(k) || k < 1 || k > experts) throw new RangeError(`wasm backend: ${what}: top-${k} routing over ${experts} experts (${rows} rows)`);
  }
  /** Float32 index of `n` expert ids in `ids`, each checked to be a whole number in [0, experts). */
  private expertIds(ids: Buf, n: number, experts: number, what: string): number {
    const ip = this.p(ids, n, `${what} ids`) >>> 2, f = this.f32;
    for (let i = 0; i < n; i++) {
      const v = f[ip + i];
      if (!(Number.isInteger(v) && v >= 0 && v < experts)) throw new RangeError(`wasm backend: ${what}: expert id ${v} (slot ${i}) out of range [0, ${experts})`);
    }
    return ip;
  }
  moeTopK(weights: Buf, ids: Buf, probs: Buf, rows: number, experts: number, k: number): void {
    this.checkRouting(rows, experts, k, "moeTopK");
    const wp = this.p(weights, rows * k, "moeTopK weights"), ip = this.p(ids, rows * k, "moeTopK ids"), pp = this.p(probs, rows * experts, "moeTopK probs");
    this.parallel("moeTopK", rows, 1, rows * experts * k, (lo, hi) => [wp + 4 * lo * k, ip + 4 * lo * k, pp + 4 * lo * experts, hi - lo, experts, k]);
  }
  moeTopKBackward(dProbs: Buf, dWeights: Buf, probs: Buf, weights: Buf, ids: Buf, rows: number, experts: number, k: number): void {
    // rows·k numbers: on the host, in f64, after every id is checked (nothing is written before).
    this.checkRouting(rows, experts, k, "moeTopKBackward");
    const n = rows * k;
    const I = this.expertIds(ids, n, experts, "moeTopKBackward");
    const dP = this.p(dProbs, rows * experts, "moeTopKBackward dProbs") >>> 2, P = this.p(probs, rows * experts, "moeTopKBackward probs") >>> 2;
    const dW = this.p(dWeights, n, "moeTopKBackward dWeights") >>> 2, W = this.p(weights, n, "moeTopKBackward weights") >>> 2;
    const f = this.f32;
    for (let r = 0; r < rows; r++) {
      let s = 0, dot = 0;
      for (let j = 0; j < k; j++) {
        s += f[P + r * experts + f[I + r * k + j]];
        dot += f[dW + r * k + j] * f[W + r * k + j];
      }
      for (let j = 0; j < k; j++) f[dP + r * experts + f[I + r * k + j]] += (f[dW + r * k + j] - dot) / s;
    }
  }
  moeCounts(counts: Buf, ids: Buf, n: number, experts: number): void {
    if (!isCount(n) || !isCount(experts)) throw new RangeError(`wasm backend: moeCounts of ${n} ids over ${experts} experts`);
    const I = this.expertIds(ids, n, experts, "moeCounts"), C = this.p(counts, experts, "moeCounts counts") >>> 2;
    const f = this.f32, tally = new Float64Array(experts);
    for (let i = 0; i < n; i++) tally[f[I + i]]++;
    for (let e = 0; e < experts; e++) f[C + e] += tally[e];
  }

  /** A view of `length` numbers at byte `ptr` of this memory (never freed: it owns nothing). */
  private view(ptr: number, length: number): Buf {
    return new WasmBuf(this, ptr, length, 0);
  }

  // The expert GEMMs' workspace: the slots' order and input rows (i32), then two row blocks.
  private moeWorkPtr = -1;
  private moeWorkBytes = 0;
  private moeWork(bytes: number): number {
    if (bytes > this.moeWorkBytes) {
      if (this.moeWorkPtr >= 0) this.releaseBytes(this.moeWorkPtr, this.moeWorkBytes);
      const block = this.allocBytes(Math.max(bytes, 2 * this.moeWorkBytes));
      this.moeWorkPtr = block.ptr;
      this.moeWorkBytes = block.bytes;
    }
    return this.moeWorkPtr;
  }

  /** Shapes of an expert projection checked: the number of routed slots, rows·k. */
  private checkExperts(rows: number, k: number, experts: number, n: number, kin: number, what: string): number {
    if (![rows, k, experts, n, kin].every(isCount)) throw new RangeError(`wasm backend: bad ${what} shape: ${rows} rows, k ${k}, ${experts} experts of [${n}, ${kin}]`);
    return rows * k;
  }

  /**
   * The routed slots grouped by expert (ids checked first: a bad one throws before anything is
   * written). Slots of expert e: order[start[e] .. start[e + 1]), in slot order; xRow[i] is the
   * input row of slot order[i]. Both also go to the workspace as i32 for the gather/scatter
   * kernels, followed by blocks A (rows × kin) and B (rows × n) for the largest expert's rows.
   */
  private routeSlots(ids: Buf, rows: number, k: number, experts: number, n: number, kin: number, xPerSlot: boolean, what: string): MoeRoute {
    const slots = rows * k;
    const ip = this.expertIds(ids, slots, experts, what), f = this.f32;
    const start = new Int32Array(experts + 1);
    for (let s = 0; s < slots; s++) start[f[ip + s] + 1]++;
    let maxRows = 0;
    for (let e = 0; e < experts; e++) {
      maxRows = Math.max(maxRows, start[e + 1]);
      start[e + 1] += start[e];
    }
    const order = new Int32Array(slots), xRow = new Int32Array(slots), next = start.slice(0, experts);
    for (let s = 0; s < slots; s++) order[next[f[ip + s]]++] = s;
    for (let i = 0; i < slots; i++) xRow[i] = xPerSlot ? order[i] : Math.floor(order[i] / k);
    const intBytes = Math.ceil((8 * slots) / ALIGN) * ALIGN, aBytes = Math.ceil((4 * maxRows * kin) / ALIGN) * ALIGN;
    const ws = this.moeWork(intBytes + aBytes + 4 * maxRows * n);
    const i32 = this.i32;
    i32.set(order, ws >>> 2);
    i32.set(xRow, (ws >>> 2) + slots);
    return { start, order, xRow, orderPtr: ws, xRowPtr: ws + 4 * slots, a: ws + intBytes, b: ws + intBytes + aBytes };
  }

  /** Whether list[at .. at + m) counts up by one (rows that lie consecutively in memory). */
  private static consecutive(list: Int32Array, at: number, m: number): boolean {
    for (let i = 1; i < m; i++) if (list[at + i] !== list[at] + i) return false;
    return true;
  }

  /**
   * Expert e's rows of a [·, dim] matrix at byte `base`, by the row list (order or xRow) whose
   * workspace copy is at `listPtr`: in place when consecutive, else gathered into `into`.
   */
  private expertRows(base: number, dim: number, list: Int32Array, listPtr: number, at: number, m: number, into: number): Buf {
    if (WasmBackend.consecutive(list, at, m)) return this.view(base + 4 * list[at] * dim, m * dim);
    this.k.moeGatherRows(into, base, listPtr + 4 * at, m, dim);
    return this.view(into, m * dim);
  }

  /** The forward of both expert projections: `gemm(outRows, xRows, e, m)` per expert with rows. */
  private expertsForward(out: Buf, x: Buf, ids: Buf, rows: number, k: number, experts: number, n: number, kin: number, xPerSlot: boolean, what: string, gemm: (o: Buf, xs: Buf, e: number, m: number) => void): void {
    const slots = this.checkExperts(rows, k, experts, n, kin, what);
    const op = this.p(out, slots * n, `${what} out`), xp = this.p(x, (xPerSlot ? slots : rows) * kin, `${what} x`);
    const rt = this.routeSlots(ids, rows, k, experts, n, kin, xPerSlot, what);
    for (let e = 0; e < experts; e++) {
      const at = rt.start[e], m = rt.start[e + 1] - at;
      if (m === 0) continue;
      const xs = this.expertRows(xp, kin, rt.xRow, rt.xRowPtr, at, m, rt.a);
      const direct = WasmBackend.consecutive(rt.order, at, m);
      gemm(direct ? this.view(op + 4 * rt.order[at] * n, m * n) : this.view(rt.b, m * n), xs, e, m);
      if (!direct) this.k.moeScatterRows(op, rt.b, rt.orderPtr + 4 * at, m, n, 0);
    }
  }

  matmulExperts(out: Buf, x: Buf, w: Buf, ids: Buf, rows: number, k: number, experts: number, n: number, kin: number, xPerSlot: boolean): void {
    const wp = this.p(w, experts * n * kin, "matmulExperts w");
    this.expertsForward(out, x, ids, rows, k, experts, n, kin, xPerSlot, "matmulExperts", (o, xs, e, m) =>
      this.matmul(o, xs, this.view(wp + 4 * e * n * kin, n * kin), m, n, kin, false, true, false));
  }

  matmulExpertsQuantized(out: Buf, x: Buf, w: QBuf, ids: Buf, rows: number, k: number, experts: number, n: number, kin: number, xPerSlot: boolean): void {
    const q = this.qp(w);
    if (!isCount(experts) || !isCount(n) || q.rows !== experts * n || q.cols !== kin)
      throw new RangeError(`wasm backend: quantized experts are [${q.rows}, ${q.cols}], the call needs [${experts}·${n}, ${kin}]`);
    const rowBytes = quantRowBytes(q.type, kin);
    // Expert e: rows [e·n, (e + 1)·n) of W as a matrix of their own, through matmulQuantized
    // (its q8Activations mode and, on the threaded backend, its split).
    this.expertsForward(out, x, ids, rows, k, experts, n, kin, xPerSlot, "matmulExpertsQuantized", (o, xs, e, m) =>
      this.matmulQuantized(o, xs, new WasmQBuf(this, q.type, n, kin, q.ptr + e * n * rowBytes, 0), m, n, kin, false));
  }

  matmulExpertsBackward(dx: Buf | null, dw: Buf | null, dOut: Buf, x: Buf, w: Buf, ids: Buf, rows: number, k: number, experts: number, n: number, kin: number, xPerSlot: boolean): void {
    const what = "matmulExpertsBackward";
    const slots = this.checkExperts(rows, k, experts, n, kin, what), xRows = xPerSlot ? slots : rows;
    const gp = this.p(dOut, slots * n, `${what} dOut`), xp = this.p(x, xRows * kin, `${what} x`), wp = this.p(w, experts * n * kin, `${what} w`);
    const dxp = dx ? this.p(dx, xRows * kin, `${what} dx`) : -1, dwp = dw ? this.p(dw, experts * n * kin, `${what} dw`) : -1;
    const rt = this.routeSlots(ids, rows, k, experts, n, kin, xPerSlot, what);
    if (!dx && !dw) return;
    for (let e = 0; e < experts; e++) {
      const at = rt.start[e], m = rt.start[e + 1] - at;
      if (m === 0) continue;
      const g = this.expertRows(gp, n, rt.order, rt.orderPtr, at, m, rt.b);
      // dW_e += dOutᵀ·X over the expert's rows (block A holds X until dx needs it).
      if (dw) this.matmul(this.view(dwp + 4 * e * n * kin, n * kin), g, this.expertRows(xp, kin, rt.xRow, rt.xRowPtr, at, m, rt.a), n, kin, m, true, false, true);
      if (!dx) continue;
      // dX = dOut·W_e, added straight into dx's rows when they are consecutive, else through block A.
      const W = this.view(wp + 4 * e * n * kin, n * kin);
      if (WasmBackend.consecutive(rt.xRow, at, m)) this.matmul(this.view(dxp + 4 * rt.xRow[at] * kin, m * kin), g, W, m, kin, n, false, false, true);
      else {
        this.matmul(this.view(rt.a, m * kin), g, W, m, kin, n, false, false, false);
        this.k.moeScatterRows(dxp, rt.a, rt.xRowPtr + 4 * at, m, kin, 1);
      }
    }
  }

  moeCombine(out: Buf, slots: Buf, weights: Buf, rows: number, k: number, dim: number, accumulate: boolean): void {
    if (![rows, k, dim].every(isCount)) throw new RangeError(`wasm backend: bad moeCombine shape: ${rows} rows, k ${k}, dim ${dim}`);
    const op = this.p(out, rows * dim, "moeCombine out"), sp = this.p(slots, rows * k * dim, "moeCombine slots"), wp = this.p(weights, rows * k, "moeCombine weights");
    this.parallel("moeCombine", rows, 1, rows * k * dim, (lo, hi) => [op + 4 * lo * dim, sp + 4 * lo * k * dim, wp + 4 * lo * k, hi - lo, k, dim, accumulate ? 1 : 0]);
  }
  moeCombineBackward(dSlots: Buf, dWeights: Buf, dOut: Buf, slots: Buf, weights: Buf, rows: number, k: number, dim: number): void {
    if (![rows, k, dim].every(isCount)) throw new RangeError(`wasm backend: bad moeCombineBackward shape: ${rows} rows, k ${k}, dim ${dim}`);
    const ns = rows * k * dim;
    const dsp = this.p(dSlots, ns, "moeCombineBackward dSlots"), dwp = this.p(dWeights, rows * k, "moeCombineBackward dWeights");
    const gp = this.p(dOut, rows * dim, "moeCombineBackward dOut"), sp = this.p(slots, ns, "moeCombineBackward slots"), wp = this.p(weights, rows * k, "moeCombineBackward weights");
    this.parallel("moeCombineBackward", rows, 1, 2 * ns, (lo, hi) =>
      [dsp + 4 * lo * k * dim, dwp + 4 * lo * k, gp + 4 * lo * dim, sp + 4 * lo * k * dim, wp + 4 * lo * k, hi - lo, k, dim]);
  }

  // ---- optimizer ------------------------------------------------------------------------------

  adamw(param: Buf, grad: Buf, m: Buf, v: Buf, lr: number, beta1: number, beta2: number, eps: number, weightDecay: number, step: number): void {
    const n = param.length;
    const stepSize = lr / (1 - Math.pow(beta1, step)), bc2Sqrt = Math.sqrt(1 - Math.pow(beta2, step));
    const ptrs = [this.p(param, n, "param"), this.p(grad, n, "grad"), this.p(m, n, "m"), this.p(v, n, "v")];
    this.parallel("adamw", n, 4, 8 * n, (lo, hi) => [...ptrs.map((p) => p + 4 * lo), hi - lo, beta1, beta2, eps, 1 - lr * weightDecay, stepSize, bc2Sqrt]);
  }
}
