// The WebGPU backend: buffers live on the GPU, kernels are WGSL compute shaders grouped by op
// family under kernels/, and nothing comes back to the host until it is read (gpu.ts batches
// the commands). Argument checks mirror the wasm backend's: a bad shape throws here instead of
// reading out of bounds on the device.
import type { Backend, BlockQuantType, Buf, FloatArray, KdParams, QBuf, QuantType } from "../backend.js";
import { Gpu, GpuBuf } from "./gpu.js";
import * as elementwise from "./kernels/elementwise.js";
import * as matmul from "./kernels/matmul.js";
import * as quantized from "./kernels/quantized.js";
import * as embedding from "./kernels/embedding.js";
import * as norm from "./kernels/norm.js";
import * as rope from "./kernels/rope.js";
import * as attention from "./kernels/attention.js";
import * as loss from "./kernels/loss.js";
import * as optimizer from "./kernels/optimizer.js";
import * as fakeQuant from "./kernels/fake-quant.js";
import * as topK from "./kernels/top-k.js";
import * as moe from "./kernels/moe.js";
import { type TopK, topKOf } from "../top-k.js";

const isCount = (x: number): boolean => Number.isInteger(x) && x >= 0;

export class WebGpuBackend implements Backend {
  readonly name = "webgpu";
  readonly dtype = "f32" as const;

  constructor(readonly gpu: Gpu) {}

  /** The adapter's description, for headers (bench, train's first line). */
  get adapterName(): string {
    return this.gpu.adapterName;
  }

  dispose(): void {
    this.gpu.destroy();
  }

  /** A live buffer of this backend holding at least `need` numbers. */
  private b(buf: Buf, need: number, what: string): GpuBuf {
    if (!(buf instanceof GpuBuf)) throw new TypeError(`webgpu backend: ${what} is not a buffer of this backend`);
    if (buf.freed) throw new Error(`webgpu backend: ${what} used after free`);
    if (need > buf.length) throw new RangeError(`webgpu backend: ${what} holds ${buf.length} numbers, the operation needs ${need}`);
    return buf;
  }

  // ---- memory -------------------------------------------------------------------------------

  alloc(length: number): Buf {
    if (!isCount(length)) throw new RangeError(`webgpu backend: bad buffer length ${length}`);
    return new GpuBuf(this.gpu.buffer(4 * length), length);
  }

  free(buf: Buf): void {
    if (buf instanceof GpuBuf && buf.freed) throw new Error("webgpu backend: double free");
    const b = this.b(buf, 0, "buffer");
    b.freed = true;
    this.gpu.release(b.buffer);
  }

  write(buf: Buf, src: ArrayLike<number>, offset = 0): void {
    if (!isCount(offset) || offset + src.length > buf.length) throw new RangeError(`write of ${src.length} at ${offset} overflows buffer of ${buf.length}`);
    const b = this.b(buf, 0, "write target");
    const f = src instanceof Float32Array ? src : Float32Array.from(src);
    this.gpu.writeBytes(b.buffer, 4 * offset, new Uint8Array(f.buffer, f.byteOffset, f.byteLength));
  }

  async read(buf: Buf, offset = 0, length = buf.length - offset): Promise<Float32Array> {
    if (!isCount(offset) || !isCount(length) || offset + length > buf.length) throw new RangeError(`read of ${length} at ${offset} overflows buffer of ${buf.length}`);
    const b = this.b(buf, 0, "read source");
    return new Float32Array(await this.gpu.readBytes(b.buffer, 4 * offset, 4 * length));
  }

  async readInto(buf: Buf, dst: FloatArray, offset = 0): Promise<void> {
    if (!isCount(offset) || offset + dst.length > buf.length) throw new RangeError(`read of ${dst.length} at ${offset} overflows buffer of ${buf.length}`);
    const b = this.b(buf, 0, "read source");
    dst.set(new Float32Array(await this.gpu.readBytes(b.buffer, 4 * offset, 4 * dst.length)));
  }

  async readTopK(buf: Buf, offset: number, n: number, k: number): Promise<TopK> {
    if (!isCount(offset) || !isCount(n) || offset + n > buf.length) throw new RangeError(`top-k of ${n} at ${offset} overflows buffer of ${buf.length}`);
    if (!Number.isInteger(k) || k < 1) throw new RangeError(`top-k: k must be a whole number ≥ 1 (got ${k})`);
    const b = this.b(buf, 0, "top-k source");
    // k rounds per selection: past a few hundred, reading the row back costs less.
    if (k > topK.MAX_ROUNDS) return topKOf(await this.read(buf, offset, n), k);
    return topK.topK(this.gpu, b, offset, n, k);
  }

  fill(buf: Buf, value: number): void {
    elementwise.fill(this.gpu, this.b(buf, 0, "fill target"), value);
  }

  copy(dst: Buf, dstOffset: number, src: Buf, srcOffset: number, n: number): void {
    if (!isCount(dstOffset) || !isCount(srcOffset) || !isCount(n)) throw new RangeError("webgpu backend: bad copy range");
    const d = this.b(dst, dstOffset + n, "copy destination"), s = this.b(src, srcOffset + n, "copy source");
    this.gpu.copyBytes(d.buffer, 4 * dstOffset, s.buffer, 4 * srcOffset, 4 * n);
  }

  // ---- elementwise and reductions -----------------------------------------------------------

  add(out: Buf, a: Buf, b: Buf): void {
    const n = out.length;
    elementwise.add(this.gpu, this.b(out, n, "out"), this.b(a, n, "a"), this.b(b, n, "b"), n);
  }
  axpy(acc: Buf, x: Buf, alpha: number): void {
    const n = acc.length;
    elementwise.axpy(this.gpu, this.b(acc, n, "acc"), this.b(x, n, "x"), alpha, n);
  }
  scale(buf: Buf, s: number): void {
    elementwise.scale(this.gpu, this.b(buf, 0, "buf"), s);
  }
  async sum(buf: Buf): Promise<number> {
    return elementwise.sum(this.gpu, this.b(buf, 0, "buf"), false);
  }
  async sumSquares(buf: Buf): Promise<number> {
    return elementwise.sum(this.gpu, this.b(buf, 0, "buf"), true);
  }
  scaleColumns(x: Buf, gain: Buf, offset: number, rows: number, cols: number): void {
    if (!isCount(offset) || !isCount(rows) || !isCount(cols)) throw new RangeError("webgpu backend: bad scaleColumns shape");
    elementwise.scaleColumns(this.gpu, this.b(x, offset + rows * cols, "scaleColumns x"), this.b(gain, cols, "gain"), offset, rows, cols);
  }

  // ---- dense linear algebra -----------------------------------------------------------------

  matmul(c: Buf, a: Buf, b: Buf, m: number, n: number, k: number, transA: boolean, transB: boolean, accumulate: boolean): void {
    if (!isCount(m) || !isCount(n) || !isCount(k)) throw new RangeError(`webgpu backend: bad matmul shape ${m}x${n}x${k}`);
    matmul.matmul(this.gpu, this.b(c, m * n, "matmul C"), this.b(a, m * k, "matmul A"), this.b(b, k * n, "matmul B"), m, n, k, transA, transB, accumulate);
  }

  // ---- quantized weights --------------------------------------------------------------------

  allocQuantized(type: QuantType, rows: number, cols: number, bytes?: Uint8Array): QBuf {
    return quantized.allocQuantized(this.gpu, type, rows, cols, bytes);
  }
  writeQuantized(w: QBuf, row: number, bytes: Uint8Array): void {
    quantized.writeQuantized(this.gpu, w, row, bytes);
  }
  freeQuantized(w: QBuf): void {
    quantized.freeQuantized(this.gpu, w);
  }
  matmulQuantized(c: Buf, a: Buf, w: QBuf, m: number, n: number, k: number, accumulate: boolean): void {
    if (!isCount(m) || !isCount(n) || !isCount(k)) throw new RangeError(`webgpu backend: bad matmulQuantized shape ${m}x${n}x${k}`);
    quantized.matmulQuantized(this.gpu, this.b(c, m * n, "matmulQuantized C"), this.b(a, m * k, "matmulQuantized A"), w, m, n, k, accumulate);
  }

  // ---- model kernels ------------------------------------------------------------------------

  embedding(out: Buf, table: Buf, ids: Int32Array, dim: number): void {
    embedding.embedding(this.gpu, this.b(out, ids.length * dim, "embedding out"), this.b(table, 0, "embedding table"), ids, dim);
  }
  embeddingBackward(dTable: Buf, dOut: Buf, ids: Int32Array, dim: number): void {
    embedding.embeddingBackward(this.gpu, this.b(dTable, 0, "embedding dTable"), this.b(dOut, ids.length * dim, "embedding dOut"), ids, dim);
  }
  embeddingQuantized(out: Buf, table: QBuf, ids: Int32Array): void {
    quantized.embeddingQuantized(this.gpu, this.b(out, ids.length * table.cols, "embedding out"), table, ids);
  }

  rmsnorm(out: Buf, rstd: Buf, x: Buf, w: Buf, rows: number, dim: number, eps: number): void {
    const n = rows * dim;
    norm.rmsnorm(this.gpu, this.b(out, n, "rmsnorm out"), this.b(rstd, rows, "rmsnorm rstd"), this.b(x, n, "rmsnorm x"), this.b(w, dim, "rmsnorm w"), rows, dim, eps);
  }
  rmsnormBackward(dx: Buf, dw: Buf, dOut: Buf, x: Buf, w: Buf, rstd: Buf, rows: number, dim: number): void {
    const n = rows * dim;
    norm.rmsnormBackward(this.gpu, this.b(dx, n, "dx"), this.b(dw, dim, "dw"), this.b(dOut, n, "dOut"), this.b(x, n, "x"), this.b(w, dim, "w"), this.b(rstd, rows, "rstd"), rows, dim);
  }

  rope(out: Buf, x: Buf, cos: Buf, sin: Buf, batch: number, seq: number, heads: number, headDim: number, posOffset: number): void {
    const n = batch * seq * heads * headDim, t = (posOffset + seq) * (headDim / 2);
    rope.rope(this.gpu, this.b(out, n, "rope out"), this.b(x, n, "rope x"), this.b(cos, t, "rope cos"), this.b(sin, t, "rope sin"), batch, seq, heads, headDim, posOffset, false);
  }
  ropeBackward(dx: Buf, dOut: Buf, cos: Buf, sin: Buf, batch: number, seq: number, heads: number, headDim: number, posOffset: number): void {
    const n = batch * seq * heads * headDim, t = (posOffset + seq) * (headDim / 2);
    rope.rope(this.gpu, this.b(dx, n, "rope dx"), this.b(dOut, n, "rope dOut"), this.b(cos, t, "rope cos"), this.b(sin, t, "rope sin"), batch, seq, heads, headDim, posOffset, true);
  }

  attention(out: Buf, probs: Buf, q: Buf, k: Buf, v: Buf, batch: number, seq: number, heads: number, kvHeads: number, headDim: number, scale: number): void {
    const nq = batch * seq * heads * headDim, nkv = batch * seq * kvHeads * headDim;
    attention.attention(this.gpu, this.b(out, nq, "attention out"), this.b(probs, batch * heads * seq * seq, "attention probs"), this.b(q, nq, "q"), this.b(k, nkv, "k"), this.b(v, nkv, "v"), batch, seq, heads, kvHeads, headDim, scale);
  }
  attentionBackward(dq: Buf, dk: Buf, dv: Buf, dOut: Buf, q: Buf, k: Buf, v: Buf, probs: Buf, batch: number, seq: number, heads: number, kvHeads: number, headDim: number, scale: number): void {
    const nq = batch * seq * heads * headDim, nkv = batch * seq * kvHeads * headDim;
    attention.attentionBackward(
      this.gpu,
      this.b(dq, nq, "dq"), this.b(dk, nkv, "dk"), this.b(dv, nkv, "dv"), this.b(dOut, nq, "dOut"),
      this.b(q, nq, "q"), this.b(k, nkv, "k"), this.b(v, nkv, "v"), this.b(probs, batch * heads * seq * seq, "probs"),
      batch, seq, heads, kvHeads, headDim, scale,
    );
  }
  attentionCached(out: Buf, q: Buf, kCache: Buf, vCache: Buf, seq: number, heads: number, kvHeads: number, headDim: number, posOffset: number, scale: number): void {
    const nq = seq * heads * headDim, nkv = (posOffset + seq) * kvHeads * headDim;
    attention.attentionCached(this.gpu, this.b(out, nq, "attention out"), this.b(q, nq, "q"), this.b(kCache, nkv, "kCache"), this.b(vCache, nkv, "vCache"), seq, heads, kvHeads, headDim, posOffset, scale);
  }

  swiglu(out: Buf, gate: Buf, up: Buf): void {
    const n = out.length;
    elementwise.swiglu(this.gpu, this.b(out, n, "out"), this.b(gate, n, "gate"), this.b(up, n, "up"), n);
  }
  swigluBackward(dGate: Buf, dUp: Buf, dOut: Buf, gate: Buf, up: Buf): void {
    const n = dOut.length;
    elementwise.swigluBackward(this.gpu, this.b(dGate, n, "dGate"), this.b(dUp, n, "dUp"), this.b(dOut, n, "dOut"), this.b(gate, n, "gate"), this.b(up, n, "up"), n);
  }

  crossEntropy(losses: Buf, lse: Buf, logits: Buf, targets: Int32Array, rows: number, vocab: number): void {
    loss.crossEntropy(this.gpu, this.b(losses, rows, "losses"), this.b(lse, rows, "lse"), this.b(logits, rows * vocab, "logits"), targets, rows, vocab);
  }
  crossEntropyBackward(dLogits: Buf, logits: Buf, lse: Buf, targets: Int32Array, dLosses: Buf, rows: number, vocab: number): void {
    loss.crossEntropyBackward(this.gpu, this.b(dLogits, rows * vocab, "dLogits"), this.b(logits, rows * vocab, "logits"), this.b(lse, rows, "lse"), targets, this.b(dLosses, rows, "dLosses"), rows, vocab);
  }

  dropout(out: Buf, mask: Buf, x: Buf, p: number, seed: number): void {
    const n = x.length;
    elementwise.dropout(this.gpu, this.b(out, n, "out"), this.b(mask, n, "mask"), this.b(x, n, "x"), p, seed, n);
  }
  dropoutBackward(dx: Buf, dOut: Buf, mask: Buf): void {
    const n = dx.length;
    elementwise.dropoutBackward(this.gpu, this.b(dx, n, "dx"), this.b(dOut, n, "dOut"), this.b(mask, n, "mask"), n);
  }

  // ---- quantization-aware training ----------------------------------------------------------

  fakeQuantize(out: Buf, x: Buf, type: BlockQuantType): void {
    const n = x.length;
    fakeQuant.fakeQuantize(this.gpu, this.b(out, n, "out"), this.b(x, n, "x"), type, n);
  }
  fakeQuantizeRows(out: Buf, x: Buf, rows: number, dim: number): void {
    const n = rows * dim;
    fakeQuant.fakeQuantizeRows(this.gpu, this.b(out, n, "out"), this.b(x, n, "x"), rows, dim);
  }

  // ---- knowledge distillation ---------------------------------------------------------------

  distill(losses: Buf, stats: Buf, student: Buf, teacher: Buf, targets: Int32Array, rows: number, vocab: number, kd: KdParams): void {
    const n = rows * vocab;
    loss.distill(this.gpu, this.b(losses, rows, "losses"), this.b(stats, rows * 4, "stats"), this.b(student, n, "student"), this.b(teacher, n, "teacher"), targets, rows, vocab, kd);
  }
  distillBackward(dStudent: Buf, student: Buf, teacher: Buf, stats: Buf, targets: Int32Array, dLosses: Buf, rows: number, vocab: number, kd: KdParams): void {
    const n = rows * vocab;
    loss.distillBackward(this.gpu, this.b(dStudent, n, "dStudent"), this.b(student, n, "student"), this.b(teacher, n, "teacher"), this.b(stats, rows * 4, "stats"), targets, this.b(dLosses, rows, "dLosses"), rows, vocab, kd);
  }
  distillSparse(losses: Buf, stats: Buf, student: Buf, teacherIds: Int32Array, teacherLogProbs: Buf, targets: Int32Array, rows: number, vocab: number, k: number, kd: KdParams): void {
    loss.distillSparse(this.gpu, this.b(losses, rows, "losses"), this.b(stats, rows * 4, "stats"), this.b(student, rows * vocab, "student"), teacherIds, this.b(teacherLogProbs, rows * k, "teacherLogProbs"), targets, rows, vocab, k, kd);
  }
  distillSparseBackward(dStudent: Buf, student: Buf, teacherIds: Int32Array, teacherLogProbs: Buf, stats: Buf, targets: Int32Array, dLosses: Buf, rows: number, vocab: number, k: number, kd: KdParams): void {
    loss.distillSparseBackward(
      this.gpu,
      this.b(dStudent, rows * vocab, "dStudent"), this.b(student, rows * vocab, "student"), teacherIds, this.b(teacherLogProbs, rows * k, "teacherLogProbs"),
      this.b(stats, rows * 4, "stats"), targets, this.b(dLosses, rows, "dLosses"), rows, vocab, k, kd,
    );
  }

  // ---- mixture of experts -------------------------------------------------------------------
  // Expert ids stay in GPU buffers (f32 whole numbers); nothing here reads them back. A slot
  // whose id is not a whole number in [0, experts) is routed nowhere on the GPU (the CPU backends
  // throw): zeros forward, no gradient, not counted (kernels/moe.ts).

  softmax(out: Buf, x: Buf, rows: number, cols: number): void {
    if (!isCount(rows) || !isCount(cols)) throw new RangeError(`webgpu backend: bad softmax shape ${rows}x${cols}`);
    const n = rows * cols;
    moe.softmax(this.gpu, this.b(out, n, "softmax out"), this.b(x, n, "softmax x"), rows, cols);
  }
  softmaxBackward(dx: Buf, dOut: Buf, y: Buf, rows: number, cols: number): void {
    if (!isCount(rows) || !isCount(cols)) throw new RangeError(`webgpu backend: bad softmax shape ${rows}x${cols}`);
    const n = rows * cols;
    moe.softmaxBackward(this.gpu, this.b(dx, n, "softmax dx"), this.b(dOut, n, "softmax dOut"), this.b(y, n, "softmax y"), rows, cols);
  }
  logSumExp(out: Buf, x: Buf, rows: number, cols: number): void {
    if (!isCount(rows) || !isCount(cols)) throw new RangeError(`webgpu backend: bad logSumExp shape ${rows}x${cols}`);
    moe.logSumExp(this.gpu, this.b(out, rows, "logSumExp out"), this.b(x, rows * cols, "logSumExp x"), rows, cols);
  }
  logSumExpBackward(dx: Buf, dOut: Buf, x: Buf, lse: Buf, rows: number, cols: number): void {
    if (!isCount(rows) || !isCount(cols)) throw new RangeError(`webgpu backend: bad logSumExp shape ${rows}x${cols}`);
    const n = rows * cols;
    moe.logSumExpBackward(this.gpu, this.b(dx, n, "logSumExp dx"), this.b(dOut, rows, "logSumExp dOut"), this.b(x, n, "logSumExp x"), this.b(lse, rows, "logSumExp lse"), rows, cols);
  }
  /** Checks of a top-k routing shape: k in [1, experts]. */
  private routingShape(rows: number, experts: number, k: number): void {
    if (!isCount(rows) || !isCount(experts) || !isCount(k)) throw new RangeError(`webgpu backend: bad routing shape rows ${rows}, experts ${experts}, k ${k}`);
    if (!(k >= 1 && k <= experts)) throw new RangeError(`webgpu backend: top-${k} routing over ${experts} experts`);
  }
  moeTopK(weights: Buf, ids: Buf, probs: Buf, rows: number, experts: number, k: number): void {
    this.routingShape(rows, experts, k);
    moe.moeTopK(this.gpu, this.b(weights, rows * k, "moeTopK weights"), this.b(ids, rows * k, "moeTopK ids"), this.b(probs, rows * experts, "moeTopK probs"), rows, experts, k);
  }
  moeTopKBackward(dProbs: Buf, dWeights: Buf, probs: Buf, weights: Buf, ids: Buf, rows: number, experts: number, k: number): void {
    this.routingShape(rows, experts, k);
    const n = rows * k;
    moe.moeTopKBackward(
      this.gpu,
      this.b(dProbs, rows * experts, "moeTopK dProbs"), this.b(dWeights, n, "moeTopK dWeights"), this.b(probs, rows * experts, "moeTopK probs"),
      this.b(weights, n, "moeTopK weights"), this.b(ids, n, "moeTopK ids"), rows, experts, k,
    );
  }
  moeCounts(counts: Buf, ids: Buf, n: number, experts: number): void {
    if (!isCount(n) || !isCount(experts)) throw new RangeError(`webgpu backend: bad moeCounts shape n ${n}, experts ${experts}`);
    moe.moeCounts(this.gpu, this.b(counts, experts, "moeCounts counts"), this.b(ids, n, "moeCounts ids"), n, experts);
  }
  /** Checks of an expert projection's shape; the rows of x. */
  private expertsShape(rows: number, k: number, experts: number, n: number, kin: number, xPerSlot: boolean): number {
    if (![rows, k, experts, n, kin].every(isCount)) throw new RangeError(`webgpu backend: bad expert shape rows ${rows}, k ${k}, experts ${experts}, n ${n}, kin ${kin}`);
    if (rows * k > 0 && experts === 0) throw new RangeError("webgpu backend: routed slots with no experts");
    return xPerSlot ? rows * k : rows;
  }
  matmulExperts(out: Buf, x: Buf, w: Buf, ids: Buf, rows: number, k: number, experts: number, n: number, kin: number, xPerSlot: boolean): void {
    const xRows = this.expertsShape(rows, k, experts, n, kin, xPerSlot), s = rows * k;
    moe.matmulExperts(
      this.gpu,
      this.b(out, s * n, "matmulExperts out"), this.b(x, xRows * kin, "matmulExperts x"), this.b(w, experts * n * kin, "matmulExperts w"), this.b(ids, s, "matmulExperts ids"),
      rows, k, experts, n, kin, xPerSlot,
    );
  }
  matmulExpertsBackward(dx: Buf | null, dw: Buf | null, dOut: Buf, x: Buf, w: Buf, ids: Buf, rows: number, k: number, experts: number, n: number, kin: number, xPerSlot: boolean): void {
    const xRows = this.expertsShape(rows, k, experts, n, kin, xPerSlot), s = rows * k;
    moe.matmulExpertsBackward(
      this.gpu,
      dx === null ? null : this.b(dx, xRows * kin, "matmulExperts dx"), dw === null ? null : this.b(dw, experts * n * kin, "matmulExperts dw"),
      this.b(dOut, s * n, "matmulExperts dOut"), this.b(x, xRows * kin, "matmulExperts x"), this.b(w, experts * n * kin, "matmulExperts w"), this.b(ids, s, "matmulExperts ids"),
      rows, k, experts, n, kin, xPerSlot,
    );
  }
  matmulExpertsQuantized(out: Buf, x: Buf, w: QBuf, ids: Buf, rows: number, k: number, experts: number, n: number, kin: number, xPerSlot: boolean): void {
    const xRows = this.expertsShape(rows, k, experts, n, kin, xPerSlot), s = rows * k;
    const q = quantized.live(this.gpu, w);
    if (q.rows !== experts * n || q.cols !== kin) throw new RangeError(`webgpu backend: quantized experts are [${q.rows}, ${q.cols}], the call needs [${experts}·${n}, ${kin}]`);
    moe.matmulExpertsQuantized(
      this.gpu,
      this.b(out, s * n, "matmulExpertsQuantized out"), this.b(x, xRows * kin, "matmulExpertsQuantized x"), q, this.b(ids, s, "matmulExpertsQuantized ids"),
      rows, k, experts, n, kin, xPerSlot,
    );
  }
  moeCombine(out: Buf, slots: Buf, weights: Buf, rows: number, k: number, dim: number, accumulate: boolean): void {
    if (!isCount(rows) || !isCount(k) || !isCount(dim)) throw new RangeError(`webgpu backend: bad moeCombine shape rows ${rows}, k ${k}, dim ${dim}`);
    moe.moeCombine(this.gpu, this.b(out, rows * dim, "moeCombine out"), this.b(slots, rows * k * dim, "moeCombine slots"), this.b(weights, rows * k, "moeCombine weights"), rows, k, dim, accumulate);
  }
  moeCombineBackward(dSlots: Buf, dWeights: Buf, dOut: Buf, slots: Buf, weights: Buf, rows: number, k: number, dim: number): void {
    if (!isCount(rows) || !isCount(k) || !isCount(dim)) throw new RangeError(`webgpu backend: bad moeCombine shape rows ${rows}, k ${k}, dim ${dim}`);
    const s = rows * k;
    moe.moeCombineBackward(
      this.gpu,
      this.b(dSlots, s * dim, "moeCombine dSlots"), this.b(dWeights, s, "moeCombine dWeights"), this.b(dOut, rows * dim, "moeCombine dOut"),
      this.b(slots, s * dim, "moeCombine slots"), this.b(weights, s, "moeCombine weights"), rows, k, dim,
    );
  }

  // ---- optimizer ----------------------------------------------------------------------------

  adamw(param: Buf, grad: Buf, m: Buf, v: Buf, lr: number, beta1: number, beta2: number, eps: number, weightDecay: number, step: number): void {
    const n = param.length;
    optimizer.adamw(this.gpu, this.b(param, n, "param"), this.b(grad, n, "grad"), this.b(m, n, "m"), this.b(v, n, "v"), lr, beta1, beta2, eps, weightDecay, step, n);
  }
}
