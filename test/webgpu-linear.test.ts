// The WebGPU backend's linear kernels against the f64 JS reference: dense matmul (every transpose
// and accumulate mode, edge tiles, the matrix-vector paths, training shapes), quantized weights
// (Q8_0, Q4_0, F16: layout conversion, streamed row writes, decode and prefill matmuls, embedding
// rows bit for bit) and the dense embedding with its backward.
import { test } from "node:test";
import assert from "node:assert/strict";
import type { Buf, QBuf, QuantType } from "../src/backend/backend.js";
import { quantRowBytes } from "../src/backend/backend.js";
import { JsBackend } from "../src/backend/js/js-backend.js";
import { GgmlType, quantize } from "../src/format/ggml-quants.js";
import { Rng } from "../src/util/rng.js";
import { webgpuBackend } from "./webgpu.js";

const be = await webgpuBackend();
if (typeof be === "string") {
  test("webgpu linear kernels", { skip: be }, () => {});
} else {
  const gpu = be;
  const ref = new JsBackend("f64");
  const rng = new Rng(7);
  const randn = (n: number, scale = 1): Float32Array => {
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) out[i] = (rng.next() * 2 - 1) * scale;
    return out;
  };

  function pair(data: ArrayLike<number>): [Buf, Buf] {
    const g = gpu.alloc(data.length), r = ref.alloc(data.length);
    gpu.write(g, data);
    ref.write(r, data);
    return [g, r];
  }
  const free = (...bufs: Buf[]): void => bufs.forEach((b) => gpu.free(b));

  /** Largest |a − b| / (1 + |b|) seen, per family, for the diagnostics. */
  const worst: Record<string, number> = {};
  /** |a − b| ≤ tol·(1 + |b|) elementwise. */
  function assertClose(actual: ArrayLike<number>, expected: ArrayLike<number>, label: string, family: string, tol = 1e-4): void {
    assert.equal(actual.length, expected.length, `${label}: length`);
    for (let i = 0; i < expected.length; i++) {
      const a = actual[i], b = expected[i], e = Math.abs(a - b) / (1 + Math.abs(b));
      if (!(e <= tol)) assert.fail(`${label}: element ${i} is ${a}, expected ${b}`);
      worst[family] = Math.max(worst[family] ?? 0, e);
    }
  }
  async function compare(g: Buf, r: Buf, label: string, family: string, tol = 1e-4): Promise<void> {
    assertClose(await gpu.read(g), await ref.read(r), label, family, tol);
  }

  // ---- dense matmul ------------------------------------------------------------------------------

  test("matmul: all transpose combinations, with and without accumulate, edge shapes", async (t) => {
    const shapes: [number, number, number][] = [
      [1, 1, 1], [1, 288, 288], [1, 37, 255], [1, 7, 0], // m = 1 (decode), k odd, k = 0
      [5, 1, 9], [70, 1, 13], // n = 1
      [2, 3, 4], [7, 13, 5], [3, 4, 0],
      [64, 65, 63], [130, 70, 200], [65, 64, 17], // edge tiles in m, n and k
    ];
    for (const [m, n, k] of shapes)
      for (const transA of [false, true])
        for (const transB of [false, true])
          for (const accumulate of [false, true]) {
            const [gc, rc] = pair(randn(m * n)), [ga, ra] = pair(randn(m * k)), [gb, rb] = pair(randn(k * n));
            gpu.matmul(gc, ga, gb, m, n, k, transA, transB, accumulate);
            ref.matmul(rc, ra, rb, m, n, k, transA, transB, accumulate);
            await compare(gc, rc, `matmul ${m}x${n}x${k} tA=${transA} tB=${transB} acc=${accumulate}`, "matmul");
            free(gc, ga, gb);
          }
    t.diagnostic(`max rel error ${worst.matmul?.toExponential(2)}`);
  });

  test("matmul: the training model's shapes", async (t) => {
    const cases: [number, number, number, boolean, boolean][] = [
      [256, 192, 768, false, false], // [256 × 768]·[768 × 192]
      [256, 768, 192, false, true], // x·Wᵀ
      [768, 192, 256, true, false], // dYᵀ·X
    ];
    for (const [m, n, k, tA, tB] of cases) {
      const [gc, rc] = pair(randn(m * n)), [ga, ra] = pair(randn(m * k)), [gb, rb] = pair(randn(k * n));
      gpu.matmul(gc, ga, gb, m, n, k, tA, tB, true);
      ref.matmul(rc, ra, rb, m, n, k, tA, tB, true);
      await compare(gc, rc, `matmul ${m}x${n}x${k} tA=${tA} tB=${tB}`, "matmul-train");
      free(gc, ga, gb);
    }
    t.diagnostic(`max rel error ${worst["matmul-train"]?.toExponential(2)}`);
  });

  // ---- quantized weights -------------------------------------------------------------------------

  const GGML: Record<QuantType, GgmlType> = { q8_0: GgmlType.Q8_0, q4_0: GgmlType.Q4_0, f16: GgmlType.F16 };
  /** ggml bytes of a random [rows, cols] matrix, with block magnitudes spread over two decades. */
  function weights(type: QuantType, rows: number, cols: number): Uint8Array {
    const v = randn(rows * cols);
    for (let b = 0; b < v.length; b += 32) {
      const s = 0.02 + rng.next();
      for (let e = b; e < Math.min(b + 32, v.length); e++) v[e] *= s;
    }
    return quantize(GGML[type], v);
  }

  const QUANT_SHAPES: Record<QuantType, [number, number][]> = {
    // n = 70, 66: two column tiles (and m = 65: two row tiles); f16 k odd, 1, and not a multiple of 8.
    q8_0: [[64, 32], [288, 288], [96, 160], [70, 64]],
    q4_0: [[64, 32], [288, 288], [96, 160], [70, 64]],
    f16: [[64, 32], [288, 288], [96, 160], [5, 33], [9, 1], [66, 34]],
  };

  test("matmulQuantized: decode (m = 1) and tiled (m > 1), ± accumulate, every type", async (t) => {
    for (const type of ["q8_0", "q4_0", "f16"] as const)
      for (const [n, k] of QUANT_SHAPES[type]) {
        const bytes = weights(type, n, k);
        const gw = gpu.allocQuantized(type, n, k, bytes), rw = ref.allocQuantized(type, n, k, bytes);
        for (const m of n === 70 || n === 66 ? [1, 3, 40, 65] : [1, 3, 40])
          for (const accumulate of [false, true]) {
            const [gc, rc] = pair(randn(m * n)), [ga, ra] = pair(randn(m * k));
            gpu.matmulQuantized(gc, ga, gw, m, n, k, accumulate);
            ref.matmulQuantized(rc, ra, rw, m, n, k, accumulate);
            await compare(gc, rc, `matmulQuantized ${type} m=${m} n=${n} k=${k} acc=${accumulate}`, `mq-${type}`);
            free(gc, ga);
          }
        gpu.freeQuantized(gw);
      }
    t.diagnostic(`max rel error q8_0 ${worst["mq-q8_0"]?.toExponential(2)}, q4_0 ${worst["mq-q4_0"]?.toExponential(2)}, f16 ${worst["mq-f16"]?.toExponential(2)}`);
  });

  /** Every row of a quantized table through embeddingQuantized on both backends: equal numbers. */
  async function assertRowsEqual(gw: QBuf, rw: QBuf, ids: Int32Array, label: string): Promise<void> {
    const cols = gw.cols;
    const go = gpu.alloc(ids.length * cols), ro = ref.alloc(ids.length * cols);
    gpu.embeddingQuantized(go, gw, ids);
    ref.embeddingQuantized(ro, rw, ids);
    const a = await gpu.read(go), b = await ref.read(ro);
    for (let i = 0; i < b.length; i++) if (a[i] !== b[i]) assert.fail(`${label}: element ${i} (row ${ids[Math.floor(i / cols)]}) is ${a[i]}, expected ${b[i]}`);
    gpu.free(go);
  }

  test("embeddingQuantized: the dequantized rows bit for bit, repeated ids, range errors", async () => {
    for (const type of ["q8_0", "q4_0", "f16"] as const)
      for (const [rows, cols] of type === "f16" ? [[11, 33], [7, 1], [9, 64], [5, 34]] : [[11, 32], [7, 96], [5, 288]]) {
        const bytes = weights(type, rows, cols);
        const gw = gpu.allocQuantized(type, rows, cols, bytes), rw = ref.allocQuantized(type, rows, cols, bytes);
        const ids = Int32Array.from({ length: rows + 4 }, (_, i) => (i * 5 + 3) % rows);
        ids[rows] = ids[0];
        await assertRowsEqual(gw, rw, ids, `embeddingQuantized ${type} [${rows}, ${cols}]`);
        const out = gpu.alloc(cols);
        assert.throws(() => gpu.embeddingQuantized(out, gw, Int32Array.from([rows])), new RegExp(`token id ${rows} out of range \\[0, ${rows}\\)`));
        assert.throws(() => gpu.embeddingQuantized(out, gw, Int32Array.from([-1])), /token id -1 out of range/);
        gpu.free(out);
        gpu.freeQuantized(gw);
      }
  });

  test("writeQuantized: rows streamed in pieces, in any order, across conversion chunks", async () => {
    for (const type of ["q8_0", "q4_0", "f16"] as const) {
      const [rows, cols] = type === "f16" ? [13, 33] : [13, 96];
      const bytes = weights(type, rows, cols), rb = quantRowBytes(type, cols);
      const gw = gpu.allocQuantized(type, rows, cols), rw = ref.allocQuantized(type, rows, cols, bytes);
      // Pieces [5, 9), [0, 1), [12, 13), [1, 5), [9, 12).
      for (const [lo, hi] of [[5, 9], [0, 1], [12, 13], [1, 5], [9, 12]]) gpu.writeQuantized(gw, lo, bytes.subarray(lo * rb, hi * rb));
      gpu.writeQuantized(gw, 3, new Uint8Array(0));
      await assertRowsEqual(gw, rw, Int32Array.from({ length: rows }, (_, i) => i), `writeQuantized ${type}`);
      for (const m of [1, 4]) {
        const [gc, rc] = pair(new Float32Array(m * rows)), [ga, ra] = pair(randn(m * cols));
        gpu.matmulQuantized(gc, ga, gw, m, rows, cols, false);
        ref.matmulQuantized(rc, ra, rw, m, rows, cols, false);
        await compare(gc, rc, `writeQuantized ${type} then matmul m=${m}`, "mq-written");
        free(gc, ga);
      }
      // Rewriting a row replaces it.
      const other = weights(type, 1, cols);
      gpu.writeQuantized(gw, 7, other);
      ref.writeQuantized(rw, 7, other);
      await assertRowsEqual(gw, rw, Int32Array.from([6, 7, 8]), `rewritten row ${type}`);
      assert.throws(() => gpu.writeQuantized(gw, 12, bytes.subarray(0, 2 * rb)), /cannot write/);
      assert.throws(() => gpu.writeQuantized(gw, 0, bytes.subarray(0, rb + 2)), /cannot write/);
      gpu.freeQuantized(gw);
    }
    // More rows than one conversion chunk (1 MiB of GPU layout) in one write, starting at row 5:
    // chunks of 29127 rows for [·, 64] q4_0, 15420 for [·, 34] and [·, 33] f16 (direct and padded).
    for (const [type, rows, cols, per] of [["q4_0", 30_000, 64, 29_127], ["f16", 16_000, 34, 15_420], ["f16", 16_000, 33, 15_420]] as const) {
      const rb = quantRowBytes(type, cols), bytes = weights(type, rows, cols);
      const gw = gpu.allocQuantized(type, rows, cols), rw = ref.allocQuantized(type, rows, cols, bytes);
      gpu.writeQuantized(gw, 5, bytes.subarray(5 * rb));
      gpu.writeQuantized(gw, 0, bytes.subarray(0, 5 * rb));
      const edge = 5 + per;
      await assertRowsEqual(gw, rw, Int32Array.from([0, 4, 5, 6, edge - 2, edge - 1, edge, edge + 1, rows - 1]), `${type} [${rows}, ${cols}] across chunks`);
      gpu.freeQuantized(gw);
    }
  });

  test("quantized matrices: shape checks, use after free, double free, free while recorded", async () => {
    const bytes = weights("q8_0", 4, 64);
    assert.throws(() => gpu.allocQuantized("q8_0", 4, 48), /multiple of 32/);
    assert.throws(() => gpu.allocQuantized("q8_0", 4, 64, bytes.subarray(1)), /needs 272 bytes/);
    const gw = gpu.allocQuantized("q8_0", 4, 64, bytes), rw = ref.allocQuantized("q8_0", 4, 64, bytes);
    const [gc, rc] = pair(new Float32Array(8)), [ga, ra] = pair(randn(128));
    assert.throws(() => gpu.matmulQuantized(gc, ga, gw, 2, 4, 32, false), /is \[4, 64\], matmul needs \[4, 32\]/);
    assert.throws(() => gpu.matmulQuantized(gc, ga, rw, 2, 4, 64, false), /not a quantized matrix of this backend/);
    // Freed right after a matmul is recorded: the matmul still sees the weights.
    gpu.matmulQuantized(gc, ga, gw, 2, 4, 64, false);
    gpu.freeQuantized(gw);
    ref.matmulQuantized(rc, ra, rw, 2, 4, 64, false);
    await compare(gc, rc, "matmul before free", "mq-written");
    assert.throws(() => gpu.freeQuantized(gw), /double free/);
    assert.throws(() => gpu.matmulQuantized(gc, ga, gw, 2, 4, 64, false), /after free/);
    assert.throws(() => gpu.writeQuantized(gw, 0, bytes.subarray(0, 68)), /after free/);
    assert.throws(() => gpu.embeddingQuantized(ga, gw, Int32Array.from([0])), /after free/);
    // Empty matrices and calls.
    const e = gpu.allocQuantized("q4_0", 0, 32);
    gpu.matmulQuantized(gc, ga, e, 2, 0, 32, false);
    gpu.freeQuantized(e);
    free(gc, ga);
  });

  // ---- dense embedding ---------------------------------------------------------------------------

  test("embedding and its backward: repeated ids, dims 1, 3, 33, 288, range errors", async (t) => {
    const vocab = 11;
    const ids = Int32Array.from([0, 5, 10, 5, 3, 5, 0, 7, 7]);
    for (const dim of [1, 3, 33, 288]) {
      const [gt, rt] = pair(randn(vocab * dim)), [go, ro] = pair(randn(ids.length * dim));
      const [gd, rd] = pair(randn(vocab * dim)), [gg, rg] = pair(randn(ids.length * dim));
      gpu.embedding(go, gt, ids, dim);
      ref.embedding(ro, rt, ids, dim);
      assert.deepEqual(Array.from(await gpu.read(go)), Array.from(await ref.read(ro)), `embedding dim=${dim}`);
      gpu.embeddingBackward(gd, gg, ids, dim);
      ref.embeddingBackward(rd, rg, ids, dim);
      await compare(gd, rd, `embeddingBackward dim=${dim}`, "embedding");
      gpu.embeddingBackward(gd, gg, ids.subarray(2, 5), dim); // accumulates again
      ref.embeddingBackward(rd, rg, ids.subarray(2, 5), dim);
      await compare(gd, rd, `embeddingBackward again dim=${dim}`, "embedding");
      assert.throws(() => gpu.embedding(go, gt, Int32Array.from([1, 11]), dim), /token id 11 out of range \[0, 11\)/);
      assert.throws(() => gpu.embedding(go, gt, Int32Array.from([-1]), dim), /token id -1 out of range/);
      assert.throws(() => gpu.embeddingBackward(gd, gg, Int32Array.from([12]), dim), /token id 12 out of range \[0, 11\)/);
      gpu.embedding(go, gt, new Int32Array(0), dim);
      gpu.embeddingBackward(gd, gg, new Int32Array(0), dim);
      free(gt, go, gd, gg);
    }
    // Many positions on few rows: the per-row sums run in position order (f32, as a CPU loop would).
    const n = 2000, dim = 5;
    const many = Int32Array.from({ length: n }, (_, i) => (i * 7) % 3);
    const [gd, rd] = pair(new Float32Array(3 * dim)), [gg, rg] = pair(randn(n * dim));
    gpu.embeddingBackward(gd, gg, many, dim);
    ref.embeddingBackward(rd, rg, many, dim);
    await compare(gd, rd, "embeddingBackward 2000 positions on 3 rows", "embedding");
    const dOut = await gpu.read(gg), expect = new Float32Array(3 * dim);
    for (let i = 0; i < n; i++) for (let c = 0; c < dim; c++) expect[many[i] * dim + c] = Math.fround(expect[many[i] * dim + c] + dOut[i * dim + c]);
    assert.deepEqual(await gpu.read(gd), expect, "position-order f32 sums");
    free(gd, gg);
    t.diagnostic(`max rel error ${worst.embedding?.toExponential(2)}`);
  });
}
