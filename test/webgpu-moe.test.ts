// The WebGPU backend's mixture-of-experts kernels against the f64 JS reference: softmax and
// log-sum-exp with their backwards (in place too), top-k routing (ties by lower index) and its
// backward, expert counts, the expert projections on both paths (one matrix-vector product per
// slot for decode, grouped GEMM tiles past MV_SLOTS slots) with shared or per-slot inputs, an
// expert with no rows and every row to one expert, their backward (dx, dW, either one frozen),
// quantized experts (Q8_0, Q4_0, F16), ids outside [0, experts) (zeros, no gradient, never
// another expert's weights), the weighted combine with its backward, the argument checks, and the
// gradients of a whole MoE FFN through the tensor ops.
import { test } from "node:test";
import assert from "node:assert/strict";
import type { Backend, Buf, QuantType } from "../src/backend/backend.js";
import { JsBackend } from "../src/backend/js/js-backend.js";
import { MV_SLOTS } from "../src/backend/webgpu/kernels/moe.js";
import { GgmlType, quantize } from "../src/format/ggml-quants.js";
import { Tensor, backward, noGrad, scope } from "../src/tensor/tensor.js";
import * as op from "../src/tensor/ops.js";
import * as moe from "../src/tensor/moe-ops.js";
import { QuantizedWeight } from "../src/tensor/quantized-weight.js";
import { Rng } from "../src/util/rng.js";
import { webgpuBackend } from "./webgpu.js";
import { assertClose, buf, randoms } from "./kernel-helpers.js";

const be = await webgpuBackend();
if (typeof be === "string") {
  test("webgpu mixture-of-experts kernels", { skip: be }, () => {});
} else {
  const gpu: Backend = be;
  const ref = new JsBackend("f64");
  const rng = new Rng(2024);
  const randn = (n: number, scale = 1): Float32Array => randoms(rng, n, scale);

  const pair = (data: ArrayLike<number>): [Buf, Buf] => [buf(gpu, data), buf(ref, data)];
  const free = (...bufs: (Buf | null)[]): void => bufs.forEach((b) => b !== null && gpu.free(b));
  async function compare(g: Buf, r: Buf, label: string, tol = 1e-4): Promise<void> {
    assertClose(await gpu.read(g), await ref.read(r), label, tol);
  }

  /** Routed ids [rows, k]: k distinct experts a row, drawn from `allowed`. */
  function routedIds(rows: number, k: number, allowed: readonly number[]): Float32Array {
    const ids = new Float32Array(rows * k);
    for (let r = 0; r < rows; r++) {
      const pool = [...allowed];
      for (let j = 0; j < k; j++) ids[r * k + j] = pool.splice(Math.floor(rng.next() * pool.length), 1)[0];
    }
    return ids;
  }

  // ---- softmax and log-sum-exp -------------------------------------------------------------------

  test("softmax, logSumExp and their backwards; softmax in place", async () => {
    for (const [rows, cols] of [[1, 4], [5, 8], [3, 70], [2, 1]]) {
      const n = rows * cols, data = randn(n, 4);
      const [gx, rx] = pair(data), [gy, ry] = pair(new Float32Array(n));
      gpu.softmax(gy, gx, rows, cols);
      ref.softmax(ry, rx, rows, cols);
      await compare(gy, ry, `softmax ${rows}x${cols}`);
      const [gd, rd] = pair(randn(n)), [gdx, rdx] = pair(randn(n));
      gpu.softmaxBackward(gdx, gd, gy, rows, cols);
      ref.softmaxBackward(rdx, rd, ry, rows, cols);
      await compare(gdx, rdx, `softmaxBackward ${rows}x${cols}`);
      gpu.softmax(gx, gx, rows, cols); // out = x
      await compare(gx, ry, `softmax in place ${rows}x${cols}`);
      const [gl, rl] = pair(new Float32Array(rows)), [gz, rz] = pair(data);
      gpu.logSumExp(gl, gz, rows, cols);
      ref.logSumExp(rl, rz, rows, cols);
      await compare(gl, rl, `logSumExp ${rows}x${cols}`);
      const [gg, rg] = pair(randn(rows)), [gdz, rdz] = pair(randn(n));
      gpu.logSumExpBackward(gdz, gg, gz, gl, rows, cols);
      ref.logSumExpBackward(rdz, rg, rz, rl, rows, cols);
      await compare(gdz, rdz, `logSumExpBackward ${rows}x${cols}`);
      free(gx, gy, gd, gdx, gl, gz, gg, gdz);
    }
  });

  // ---- routing -----------------------------------------------------------------------------------

  test("moeTopK: ids in (value desc, index asc) order with ties, renormalised weights; backward; counts", async () => {
    const tied = [0.25, 0.25, 0.25, 0.25, 0.1, 0.4, 0.1, 0.4, 0.3, 0.3, 0.2, 0.2, 0, 0, 0, 1];
    for (const [rows, E, k] of [[1, 4, 2], [5, 4, 2], [5, 3, 3], [5, 4, 1], [4, 4, 2], [4, 4, 3], [6, 16, 4]]) {
      const probs = E === 4 && rows === 4 ? Float32Array.from(tied) : (() => {
        const p = randn(rows * E).map(Math.abs);
        p[E - 1] = p[0]; // a tie in row 0
        return p;
      })();
      const [gp, rp] = pair(probs);
      const [gw, rw] = pair(new Float32Array(rows * k)), [gi, ri] = pair(new Float32Array(rows * k));
      gpu.moeTopK(gw, gi, gp, rows, E, k);
      ref.moeTopK(rw, ri, rp, rows, E, k);
      assert.deepEqual(Array.from(await gpu.read(gi)), Array.from(await ref.read(ri)), `moeTopK ids rows ${rows} E ${E} k ${k}`);
      await compare(gw, rw, `moeTopK weights rows ${rows} E ${E} k ${k}`);
      const [gdw, rdw] = pair(randn(rows * k)), [gdp, rdp] = pair(randn(rows * E));
      gpu.moeTopKBackward(gdp, gdw, gp, gw, gi, rows, E, k);
      ref.moeTopKBackward(rdp, rdw, rp, rw, ri, rows, E, k);
      await compare(gdp, rdp, `moeTopKBackward rows ${rows} E ${E} k ${k}`);
      const [gc, rc] = pair([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16].slice(0, E));
      gpu.moeCounts(gc, gi, rows * k, E);
      ref.moeCounts(rc, ri, rows * k, E);
      await compare(gc, rc, `moeCounts rows ${rows} E ${E} k ${k}`, 0);
      free(gp, gw, gi, gdw, gdp, gc);
    }
    const w = gpu.alloc(8), ids = gpu.alloc(8), p = gpu.alloc(8);
    assert.throws(() => gpu.moeTopK(w, ids, p, 2, 4, 5), RangeError);
    assert.throws(() => gpu.moeTopK(w, ids, p, 2, 4, 0), RangeError);
    assert.throws(() => gpu.moeTopK(w, ids, p, 3, 4, 2), RangeError); // probs holds 8 < 12
    free(w, ids, p);
  });

  // ---- expert projections ------------------------------------------------------------------------

  interface Case { rows: number; E: number; k: number; n: number; kin: number; allowed?: number[] }
  const CASES: Case[] = [
    { rows: 1, E: 4, k: 2, n: 6, kin: 8 }, // decode: matrix-vector products, vec4 loads
    { rows: 1, E: 3, k: 3, n: 5, kin: 7 }, // decode, scalar loads
    { rows: 1, E: 4, k: 1, n: 6, kin: 8 },
    { rows: 5, E: 4, k: 2, n: 6, kin: 8, allowed: [0, 1, 3] }, // grouped tiles; expert 2 gets no rows
    { rows: 5, E: 3, k: 3, n: 5, kin: 7 },
    { rows: 5, E: 4, k: 1, n: 70, kin: 20 }, // two column tiles
    { rows: 70, E: 4, k: 1, n: 6, kin: 9, allowed: [2] }, // every row to one expert: two slot tiles
    { rows: 40, E: 4, k: 2, n: 5, kin: 17, allowed: [1, 2] },
  ];

  test("matmulExperts and its backward: both paths, shared and per-slot inputs, empty and full experts", async () => {
    assert.ok(CASES.some((c) => c.rows * c.k <= MV_SLOTS) && CASES.some((c) => c.rows * c.k > MV_SLOTS));
    for (const { rows, E, k, n, kin, allowed } of CASES)
      for (const xPerSlot of k > 1 ? [false, true] : [false]) {
        const label = `rows ${rows} E ${E} k ${k} n ${n} kin ${kin} xPerSlot ${xPerSlot}`;
        const S = rows * k, xRows = xPerSlot ? S : rows;
        const [gids, rids] = pair(routedIds(rows, k, allowed ?? Array.from({ length: E }, (_, e) => e)));
        const [gx, rx] = pair(randn(xRows * kin)), [gw, rw] = pair(randn(E * n * kin));
        const [go, ro] = pair(randn(S * n)); // overwritten
        gpu.matmulExperts(go, gx, gw, gids, rows, k, E, n, kin, xPerSlot);
        ref.matmulExperts(ro, rx, rw, rids, rows, k, E, n, kin, xPerSlot);
        await compare(go, ro, `matmulExperts ${label}`);
        const [gd, rd] = pair(randn(S * n));
        const [gdx, rdx] = pair(randn(xRows * kin)), [gdw, rdw] = pair(randn(E * n * kin));
        gpu.matmulExpertsBackward(gdx, gdw, gd, gx, gw, gids, rows, k, E, n, kin, xPerSlot);
        ref.matmulExpertsBackward(rdx, rdw, rd, rx, rw, rids, rows, k, E, n, kin, xPerSlot);
        await compare(gdx, rdx, `matmulExpertsBackward dx ${label}`);
        await compare(gdw, rdw, `matmulExpertsBackward dw ${label}`);
        // A frozen side: the other gradient alone.
        gpu.matmulExpertsBackward(null, gdw, gd, gx, gw, gids, rows, k, E, n, kin, xPerSlot);
        ref.matmulExpertsBackward(null, rdw, rd, rx, rw, rids, rows, k, E, n, kin, xPerSlot);
        gpu.matmulExpertsBackward(gdx, null, gd, gx, gw, gids, rows, k, E, n, kin, xPerSlot);
        ref.matmulExpertsBackward(rdx, null, rd, rx, rw, rids, rows, k, E, n, kin, xPerSlot);
        await compare(gdx, rdx, `matmulExpertsBackward dx only ${label}`);
        await compare(gdw, rdw, `matmulExpertsBackward dw only ${label}`);
        free(gids, gx, gw, go, gd, gdx, gdw);
      }
  });

  test("matmulExperts: ids outside [0, experts) give zeros and no gradient, on both paths", async () => {
    const E = 4, n = 6, kin = 8, k = 2;
    for (const rows of [1, 5]) {
      const S = rows * k;
      const ids = routedIds(rows, k, [0, 1, 2, 3]);
      const bad = [-1, 4, 1.5, NaN, 1e9];
      for (let s = 0; s < S; s += 2) ids[s] = bad[(s / 2) % bad.length];
      const valid = (s: number): boolean => Number.isInteger(ids[s]) && ids[s] >= 0 && ids[s] < E;
      // The reference: the bad slots pointed at expert 0 with their rows of dOut zero, outputs zeroed.
      const refIds = ids.map((v, s) => (valid(s) ? v : 0));
      const x = randn(rows * kin), w = randn(E * n * kin), d = randn(S * n);
      const dRef = d.map((v, i) => (valid(Math.floor(i / n)) ? v : 0));
      const [gx, rx] = pair(x), [gw, rw] = pair(w), gids = buf(gpu, ids), rids = buf(ref, refIds);
      const [go, ro] = pair(randn(S * n));
      gpu.matmulExperts(go, gx, gw, gids, rows, k, E, n, kin, false);
      ref.matmulExperts(ro, rx, rw, rids, rows, k, E, n, kin, false);
      const expected = Float64Array.from(await ref.read(ro), (v, i) => (valid(Math.floor(i / n)) ? v : 0));
      assertClose(await gpu.read(go), expected, `bad ids forward rows ${rows}`);
      const gd = buf(gpu, d), rd = buf(ref, dRef);
      const [gdx, rdx] = pair(new Float32Array(rows * kin)), [gdw, rdw] = pair(new Float32Array(E * n * kin));
      gpu.matmulExpertsBackward(gdx, gdw, gd, gx, gw, gids, rows, k, E, n, kin, false);
      ref.matmulExpertsBackward(rdx, rdw, rd, rx, rw, rids, rows, k, E, n, kin, false);
      await compare(gdx, rdx, `bad ids dx rows ${rows}`);
      await compare(gdw, rdw, `bad ids dw rows ${rows}`);
      const gc = gpu.alloc(E), rc = ref.alloc(E);
      gpu.moeCounts(gc, gids, S, E);
      ref.moeCounts(rc, buf(ref, ids.filter((_, s) => valid(s))), ids.filter((_, s) => valid(s)).length, E);
      await compare(gc, rc, `bad ids counts rows ${rows}`, 0);
      free(gx, gw, gids, go, gd, gdx, gdw, gc);
    }
  });

  test("matmulExpertsQuantized: Q8_0, Q4_0 and F16 experts, decode and grouped tiles", async () => {
    const GGML: Record<QuantType, GgmlType> = { q8_0: GgmlType.Q8_0, q4_0: GgmlType.Q4_0, f16: GgmlType.F16 };
    const shapes: Record<QuantType, [number, number][]> = { q8_0: [[5, 64]], q4_0: [[5, 64]], f16: [[5, 64], [6, 33], [4, 40]] };
    for (const type of ["q8_0", "q4_0", "f16"] as const)
      for (const [n, kin] of shapes[type]) {
        const E = 3;
        const bytes = quantize(GGML[type], randn(E * n * kin));
        const gq = gpu.allocQuantized(type, E * n, kin, bytes), rq = ref.allocQuantized(type, E * n, kin, bytes);
        for (const [rows, k] of [[1, 2], [1, 1], [5, 2], [70, 1]])
          for (const xPerSlot of k > 1 ? [false, true] : [false]) {
            const S = rows * k, xRows = xPerSlot ? S : rows;
            const [gids, rids] = pair(routedIds(rows, k, rows === 70 ? [1] : [0, 1, 2]));
            const [gx, rx] = pair(randn(xRows * kin)), [go, ro] = pair(randn(S * n));
            gpu.matmulExpertsQuantized(go, gx, gq, gids, rows, k, E, n, kin, xPerSlot);
            ref.matmulExpertsQuantized(ro, rx, rq, rids, rows, k, E, n, kin, xPerSlot);
            await compare(go, ro, `matmulExpertsQuantized ${type} n ${n} kin ${kin} rows ${rows} k ${k} xPerSlot ${xPerSlot}`);
            free(gids, gx, go);
          }
        const out = gpu.alloc(2 * n), x = gpu.alloc(kin), ids = gpu.alloc(2);
        assert.throws(() => gpu.matmulExpertsQuantized(out, x, gq, ids, 1, 2, E + 1, n, kin, false), /quantized experts are/);
        gpu.freeQuantized(gq);
        free(out, x, ids);
      }
  });

  // ---- combine -----------------------------------------------------------------------------------

  test("moeCombine (± accumulate) and moeCombineBackward", async () => {
    for (const [rows, k, dim] of [[1, 2, 8], [5, 3, 7], [4, 1, 100]])
      for (const accumulate of [false, true]) {
        const [gs, rs] = pair(randn(rows * k * dim)), [gw, rw] = pair(randn(rows * k)), [go, ro] = pair(randn(rows * dim));
        gpu.moeCombine(go, gs, gw, rows, k, dim, accumulate);
        ref.moeCombine(ro, rs, rw, rows, k, dim, accumulate);
        await compare(go, ro, `moeCombine rows ${rows} k ${k} dim ${dim} acc ${accumulate}`);
        const [gd, rd] = pair(randn(rows * dim)), [gds, rds] = pair(randn(rows * k * dim)), [gdw, rdw] = pair(randn(rows * k));
        gpu.moeCombineBackward(gds, gdw, gd, gs, gw, rows, k, dim);
        ref.moeCombineBackward(rds, rdw, rd, rs, rw, rows, k, dim);
        await compare(gds, rds, `moeCombineBackward dSlots rows ${rows} k ${k} dim ${dim}`);
        await compare(gdw, rdw, `moeCombineBackward dWeights rows ${rows} k ${k} dim ${dim}`);
        free(gs, gw, go, gd, gds, gdw);
      }
  });

  test("argument checks: short buffers and bad shapes throw RangeError", () => {
    const a = gpu.alloc(8), b = gpu.alloc(8), c = gpu.alloc(8), ids = gpu.alloc(2);
    assert.throws(() => gpu.softmax(a, b, 3, 3), RangeError);
    assert.throws(() => gpu.softmax(a, b, -1, 3), RangeError);
    assert.throws(() => gpu.logSumExp(a, b, 2, 5), RangeError);
    gpu.free(c);
    const w = gpu.alloc(2 * 2 * 2);
    assert.throws(() => gpu.matmulExperts(a, b, w, ids, 1, 2, 3, 2, 2, false), /w holds 8 numbers, the operation needs 12/);
    assert.throws(() => gpu.matmulExperts(a, b, w, ids, 2, 2, 2, 2, 2, false), /ids holds 2 numbers/);
    assert.throws(() => gpu.matmulExperts(a, b, w, ids, 1, 2, 0, 2, 2, false), RangeError);
    assert.throws(() => gpu.matmulExpertsBackward(a, null, b, b, w, ids, 1, 2, 2, 2, 5, true), /needs 10/);
    assert.throws(() => gpu.moeCombine(a, b, ids, 1, 3, 2, false), RangeError);
    assert.throws(() => gpu.moeCombineBackward(a, a, b, b, ids, 1, 2, 2), /distinct/);
    free(a, b, w, ids);
  });

  // ---- a whole MoE FFN through the ops -------------------------------------------------------------

  test("a whole MoE FFN (router softmax, top-2, gate/up experts, SwiGLU, down experts, combine): every gradient equals JsBackend's", async () => {
    const T = 5, E = 4, k = 2, d = 8, f = 12;
    const data = { x: randn(T * d), wr: randn(E * d, 0.8), w1: randn(E * f * d, 0.5), w3: randn(E * f * d, 0.5), w2: randn(E * d * f, 0.5), r: randn(T * d) };
    async function run(b: Backend): Promise<Record<string, ArrayLike<number>>> {
      const x = Tensor.from(b, [T, d], data.x, true), wr = Tensor.from(b, [E, d], data.wr, true);
      const w1 = Tensor.from(b, [E, f, d], data.w1, true), w3 = Tensor.from(b, [E, f, d], data.w3, true), w2 = Tensor.from(b, [E, d, f], data.w2, true);
      const ids = scope(() => {
        const route = moe.topKRouting(op.softmax(op.linear(x, wr)), k);
        const h = op.swiglu(moe.experts(x, w1, route, E), moe.experts(x, w3, route, E));
        const y = moe.combineExperts(moe.experts(h, w2, route, E), route);
        backward(op.weightedSum(y, data.r));
        return route.ids;
      });
      const out: Record<string, ArrayLike<number>> = { ids: await ids.toArray() };
      for (const [name, t] of Object.entries({ x, wr, w1, w3, w2 })) out[name] = (await t.gradArray())!;
      for (const t of [x, wr, w1, w3, w2, ids]) t.dispose();
      return out;
    }
    const [g, r] = [await run(gpu), await run(ref)];
    assert.deepEqual(Array.from(g.ids), Array.from(r.ids), "routing");
    for (const name of ["x", "wr", "w1", "w3", "w2"]) assertClose(g[name], r[name], `gradient of ${name}`, 1e-4);
    // The first projection at inference with quantized experts (Q8_0, rows padded to a block) through the ops, T = 1 and T = 5.
    const bytes = quantize(GgmlType.Q8_0, padTo32(data.w1, E * f, d));
    for (const rows of [1, T]) {
      const outs: ArrayLike<number>[] = [];
      for (const b of [gpu, ref]) {
        const wq = new QuantizedWeight(b, "q8_0", [E * f, 32], bytes);
        const x = Tensor.from(b, [rows, 32], padTo32(data.x, T, d).subarray(0, rows * 32));
        const wr = Tensor.from(b, [E, 32], padTo32(data.wr, E, d));
        const y = noGrad(() =>
          scope(() => {
            const route = moe.topKRouting(op.softmax(op.linear(x, wr)), k);
            return op.swiglu(moe.experts(x, wq, route, E), moe.experts(x, wq, route, E));
          }),
        );
        outs.push(await y.toArray());
        for (const t of [y, x, wr, wq]) t.dispose();
      }
      assertClose(outs[0], outs[1], `quantized experts through the ops, T = ${rows}`, 1e-4);
    }
  });

  /** Rows of `cols` values zero-padded to 32 columns (a Q8_0 block). */
  function padTo32(v: Float32Array, rows: number, cols: number): Float32Array {
    const out = new Float32Array(rows * 32);
    for (let r = 0; r < rows; r++) out.set(v.subarray(r * cols, (r + 1) * cols), r * 32);
    return out;
  }
}
