// The mixture-of-experts kernels of the wasm backend (one thread, and the threaded backend on 2
// threads splitting every kernel) against the f64 JS reference: router softmax and log-sum-exp,
// top-k routing, expert counts, the grouped expert GEMMs (float and quantized), the weighted
// combine, each forward and backward, over decode (T = 1), odd T, k = 1, k = E, inputs per slot
// or shared, an expert with no rows and every row on one expert. The threaded backend must give
// the same bits as one thread; with llama.cpp's numerics (q8Activations) every slot's row must
// equal matmulQuantized of its expert's rows; a bad expert id must throw before anything is written.
import { after, test } from "node:test";
import assert from "node:assert/strict";
import type { Backend, Buf, FloatArray, QuantType } from "../src/backend/backend.js";
import { quantRowBytes } from "../src/backend/backend.js";
import { JsBackend } from "../src/backend/js/js-backend.js";
import { createWasmBackend } from "../src/backend/wasm/wasm-backend.js";
import { createThreadedWasmBackend } from "../src/backend/wasm/threaded-wasm-backend.js";
import { GgmlType, quantize } from "../src/format/ggml-quants.js";
import { Rng } from "../src/util/rng.js";
import { assertBitwise, assertClose, buf, randoms } from "./kernel-helpers.js";

const ref = new JsBackend("f64");
const wasm = await createWasmBackend();
const threaded = await createThreadedWasmBackend({ threads: 2, minWorkPerThread: 0 });
after(() => threaded.dispose());
const backends: [string, Backend][] = [[`wasm (${wasm.flavour})`, wasm], [`wasm (${threaded.flavour}), 2 threads`, threaded]];
// Where the default build is relaxed SIMD, the SIMD128 build too.
if (wasm.flavour !== "simd") backends.push(["wasm (simd)", await createWasmBackend({ kernels: "simd" })]);

const TOL = 1e-4;

/** Run `f` on the JS reference and on `be` with the same host inputs; the listed outputs read back. */
async function both(be: Backend, inputs: ArrayLike<number>[], f: (b: Backend, bufs: Buf[]) => void, outputs: number[]): Promise<[FloatArray[], FloatArray[]]> {
  const results: FloatArray[][] = [];
  for (const b of [be, ref]) {
    const bufs = inputs.map((d) => buf(b, d));
    f(b, bufs);
    results.push(await Promise.all(outputs.map((i) => b.read(bufs[i]))));
    bufs.forEach((x) => b.free(x));
  }
  return [results[0], results[1]];
}

type Pattern = "random" | "skip" | "one";

/** Expert ids [rows·k] as numbers: k distinct experts per row ("random"), never expert 3 ("skip"), or all expert 2 ("one"). */
function routedIds(rng: Rng, rows: number, experts: number, k: number, pattern: Pattern): Float32Array {
  const ids = new Float32Array(rows * k);
  for (let r = 0; r < rows; r++) {
    const pool = Array.from({ length: experts }, (_, e) => e).filter((e) => pattern !== "skip" || e !== 3);
    for (let j = 0; j < k; j++) {
      if (pattern === "one") ids[r * k + j] = 2;
      else ids[r * k + j] = pool.splice(rng.int(pool.length), 1)[0];
    }
  }
  return ids;
}

interface Case {
  rows: number;
  experts: number;
  k: number;
  pattern: Pattern;
}
const cases: Case[] = [
  { rows: 1, experts: 8, k: 2, pattern: "random" }, // decode
  { rows: 37, experts: 8, k: 2, pattern: "random" },
  { rows: 37, experts: 4, k: 4, pattern: "random" }, // every expert
  { rows: 16, experts: 8, k: 1, pattern: "random" },
  { rows: 37, experts: 8, k: 2, pattern: "skip" }, // expert 3 gets no rows
  { rows: 20, experts: 8, k: 1, pattern: "one" }, // every row on one expert (in place, no gather)
  { rows: 9, experts: 8, k: 2, pattern: "one" }, // both slots of a row on one expert
];
const label = (c: Case, xPerSlot: boolean) => `T=${c.rows} E=${c.experts} k=${c.k} ${c.pattern} xPerSlot=${xPerSlot}`;

for (const [name, be] of backends) {
  test(`${name}: softmax and softmaxBackward match the f64 reference (out aliasing x too)`, async () => {
    const rng = new Rng(1);
    for (const [rows, cols] of [[1, 8], [37, 8], [5, 4], [3, 131], [2, 1], [7, 64]]) {
      const x = randoms(rng, rows * cols, 6), y = new Float32Array(rows * cols), dOut = randoms(rng, rows * cols), dx0 = randoms(rng, rows * cols);
      const [a, e] = await both(be, [x, y], (b, [X, Y]) => b.softmax(Y, X, rows, cols), [1]);
      assertClose(a[0], e[0], `softmax ${rows}x${cols}`, TOL);
      const [a2] = await both(be, [x], (b, [X]) => b.softmax(X, X, rows, cols), [0]);
      assertClose(a2[0], e[0], `softmax in place ${rows}x${cols}`, TOL);
      // Backward from the same y on both sides.
      const [g, ge] = await both(be, [dx0, dOut, e[0]], (b, [DX, D, Y]) => b.softmaxBackward(DX, D, Y, rows, cols), [0]);
      assertClose(g[0], ge[0], `softmaxBackward ${rows}x${cols}`, TOL);
    }
  });

  test(`${name}: logSumExp and logSumExpBackward match the f64 reference`, async () => {
    const rng = new Rng(2);
    for (const [rows, cols] of [[1, 8], [37, 8], [5, 4], [3, 131], [2, 1]]) {
      const x = randoms(rng, rows * cols, 8), dOut = randoms(rng, rows), dx0 = randoms(rng, rows * cols);
      const [a, e] = await both(be, [x, new Float32Array(rows)], (b, [X, O]) => b.logSumExp(O, X, rows, cols), [1]);
      assertClose(a[0], e[0], `logSumExp ${rows}x${cols}`, TOL);
      const [g, ge] = await both(be, [dx0, dOut, x, e[0]], (b, [DX, D, X, L]) => b.logSumExpBackward(DX, D, X, L, rows, cols), [0]);
      assertClose(g[0], ge[0], `logSumExpBackward ${rows}x${cols}`, TOL);
    }
  });

  test(`${name}: moeTopK: the reference's ids (ties by lower index) and renormalised weights; moeTopKBackward`, async () => {
    const rng = new Rng(3);
    for (const c of cases.filter((c) => c.pattern === "random"))
      for (const ties of [false, true]) {
        const { rows, experts, k } = c;
        // Probabilities as softmax would give them, or coarse values with many exact ties.
        const logits = ties ? Float32Array.from({ length: rows * experts }, () => rng.int(3)) : randoms(rng, rows * experts, 3);
        const probs = new Float32Array(rows * experts);
        for (let r = 0; r < rows; r++) {
          const row = logits.subarray(r * experts, (r + 1) * experts), z = row.reduce((s, v) => s + Math.exp(v), 0);
          for (let e = 0; e < experts; e++) probs[r * experts + e] = Math.exp(row[e]) / z;
        }
        const [a, e] = await both(be, [new Float32Array(rows * k), new Float32Array(rows * k), probs], (b, [W, I, P]) => b.moeTopK(W, I, P, rows, experts, k), [0, 1]);
        assertBitwise(a[1], e[1], `moeTopK ids ${label(c, false)} ties=${ties}`);
        assertClose(a[0], e[0], `moeTopK weights ${label(c, false)} ties=${ties}`, TOL);
        const dW = randoms(rng, rows * k), dP0 = randoms(rng, rows * experts);
        const [g, ge] = await both(be, [dP0, dW, probs, e[0], e[1]], (b, [DP, DW, P, W, I]) => b.moeTopKBackward(DP, DW, P, W, I, rows, experts, k), [0]);
        assertClose(g[0], ge[0], `moeTopKBackward ${label(c, false)} ties=${ties}`, TOL);
      }
    // NaN after every number, as topKOf orders it.
    const special = Float32Array.from([0.25, NaN, 0.25, 0.5, NaN, 0.0]);
    const [a, e] = await both(be, [new Float32Array(6), new Float32Array(6), special], (b, [W, I, P]) => b.moeTopK(W, I, P, 1, 6, 6), [1]);
    assert.deepEqual(Array.from(a[0]), [3, 0, 2, 5, 1, 4]);
    assertBitwise(a[0], e[0], "moeTopK with NaN");
    for (const k of [0, 5, 1.5]) assert.throws(() => be.moeTopK(be.alloc(8), be.alloc(8), be.alloc(16), 4, 4, k), RangeError, `k=${k}`);
    assert.throws(() => be.moeTopK(be.alloc(8), be.alloc(7), be.alloc(16), 4, 4, 2), RangeError, "ids too short");
  });

  test(`${name}: moeCounts adds each expert's load`, async () => {
    const rng = new Rng(4);
    for (const c of cases) {
      const ids = routedIds(rng, c.rows, c.experts, c.k, c.pattern), counts0 = Float32Array.from({ length: c.experts }, () => rng.int(5));
      const [a, e] = await both(be, [counts0, ids], (b, [C, I]) => b.moeCounts(C, I, ids.length, c.experts), [0]);
      assertBitwise(a[0], e[0], `moeCounts ${label(c, false)}`);
    }
  });

  test(`${name}: matmulExperts and matmulExpertsBackward match the f64 reference`, async () => {
    const rng = new Rng(5);
    for (const c of cases)
      for (const xPerSlot of [false, true])
        for (const [n, kin] of [[24, 40], [33, 64], [5, 3]]) {
          const { rows, experts, k } = c, slots = rows * k, xRows = xPerSlot ? slots : rows;
          const what = `${label(c, xPerSlot)} n=${n} kin=${kin}`;
          const ids = routedIds(rng, rows, experts, k, c.pattern);
          const x = randoms(rng, xRows * kin), w = randoms(rng, experts * n * kin), out0 = randoms(rng, slots * n);
          const [a, e] = await both(be, [out0, x, w, ids], (b, [O, X, W, I]) => b.matmulExperts(O, X, W, I, rows, k, experts, n, kin, xPerSlot), [0]);
          assertClose(a[0], e[0], `matmulExperts ${what}`, TOL);
          const dOut = randoms(rng, slots * n), dx0 = randoms(rng, xRows * kin), dw0 = randoms(rng, experts * n * kin);
          const [g, ge] = await both(be, [dx0, dw0, dOut, x, w, ids], (b, [DX, DW, D, X, W, I]) => b.matmulExpertsBackward(DX, DW, D, X, W, I, rows, k, experts, n, kin, xPerSlot), [0, 1]);
          assertClose(g[0], ge[0], `matmulExpertsBackward dx ${what}`, TOL);
          assertClose(g[1], ge[1], `matmulExpertsBackward dw ${what}`, TOL);
          // One side frozen: the other gets the same gradient.
          const [gx] = await both(be, [dx0, dOut, x, w, ids], (b, [DX, D, X, W, I]) => b.matmulExpertsBackward(DX, null, D, X, W, I, rows, k, experts, n, kin, xPerSlot), [0]);
          assertBitwise(gx[0], g[0], `matmulExpertsBackward dx alone ${what}`);
          const [gw] = await both(be, [dw0, dOut, x, w, ids], (b, [DW, D, X, W, I]) => b.matmulExpertsBackward(null, DW, D, X, W, I, rows, k, experts, n, kin, xPerSlot), [0]);
          assertBitwise(gw[0], g[1], `matmulExpertsBackward dw alone ${what}`);
          // An expert that got no rows keeps its gradient untouched.
          if (c.pattern === "skip") assertBitwise(g[1].subarray(3 * n * kin, 4 * n * kin), dw0.subarray(3 * n * kin, 4 * n * kin), `unrouted expert's dw ${what}`);
        }
  });

  test(`${name}: moeCombine (accumulate or not) and moeCombineBackward match the f64 reference`, async () => {
    const rng = new Rng(6);
    for (const c of cases)
      for (const dim of [1, 7, 48, 131]) {
        const { rows, k } = c, what = `${label(c, false)} dim=${dim}`;
        const slots = randoms(rng, rows * k * dim), weights = randoms(rng, rows * k), out0 = randoms(rng, rows * dim);
        for (const accumulate of [false, true]) {
          const [a, e] = await both(be, [out0, slots, weights], (b, [O, S, W]) => b.moeCombine(O, S, W, rows, k, dim, accumulate), [0]);
          assertClose(a[0], e[0], `moeCombine accumulate=${accumulate} ${what}`, TOL);
        }
        const dOut = randoms(rng, rows * dim), dS0 = randoms(rng, rows * k * dim), dW0 = randoms(rng, rows * k);
        const [g, ge] = await both(be, [dS0, dW0, dOut, slots, weights], (b, [DS, DW, D, S, W]) => b.moeCombineBackward(DS, DW, D, S, W, rows, k, dim), [0, 1]);
        assertClose(g[0], ge[0], `moeCombineBackward dSlots ${what}`, TOL);
        assertClose(g[1], ge[1], `moeCombineBackward dWeights ${what}`, TOL);
      }
  });

  test(`${name}: matmulExpertsQuantized (Q8_0, Q4_0, F16 experts) matches the f64 reference`, async () => {
    const rng = new Rng(7);
    for (const type of QUANT_TYPES)
      for (const c of cases)
        for (const xPerSlot of [false, true]) {
          const { rows, experts, k } = c, slots = rows * k, n = 24, kin = 64, xRows = xPerSlot ? slots : rows;
          const what = `${type} ${label(c, xPerSlot)}`;
          const ids = routedIds(rng, rows, experts, k, c.pattern), x = randoms(rng, xRows * kin);
          const bytes = quantize(GGML[type], randoms(rng, experts * n * kin));
          const results: FloatArray[] = [];
          for (const b of [be, ref]) {
            const W = b.allocQuantized(type, experts * n, kin, bytes), O = buf(b, randoms(rng, slots * n));
            b.matmulExpertsQuantized(O, buf(b, x), W, buf(b, ids), rows, k, experts, n, kin, xPerSlot);
            results.push(await b.read(O));
            b.freeQuantized(W);
          }
          assertClose(results[0], results[1], `matmulExpertsQuantized ${what}`, TOL);
        }
  });

  test(`${name}: a bad expert id (out of range, negative, fractional, NaN) or shape throws RangeError before writing`, async () => {
    const experts = 8, rows = 3, k = 2, n = 8, kin = 32;
    for (const bad of [9, 8, -1, 1.5, NaN, Infinity]) {
      const ids = buf(be, [0, 1, 2, 3, 4, bad]);
      const out = be.alloc(rows * k * n), x = buf(be, new Float32Array(rows * kin).fill(1)), w = buf(be, new Float32Array(experts * n * kin).fill(1));
      const dx = be.alloc(rows * kin), dw = be.alloc(experts * n * kin), dOut = buf(be, new Float32Array(rows * k * n).fill(1));
      const qw = be.allocQuantized("q8_0", experts * n, kin, quantize(GgmlType.Q8_0, new Float32Array(experts * n * kin).fill(1)));
      assert.throws(() => be.matmulExperts(out, x, w, ids, rows, k, experts, n, kin, false), RangeError, `matmulExperts id ${bad}`);
      assert.throws(() => be.matmulExpertsBackward(dx, dw, dOut, x, w, ids, rows, k, experts, n, kin, false), RangeError, `matmulExpertsBackward id ${bad}`);
      assert.throws(() => be.matmulExpertsQuantized(out, x, qw, ids, rows, k, experts, n, kin, false), RangeError, `matmulExpertsQuantized id ${bad}`);
      const counts = be.alloc(experts);
      assert.throws(() => be.moeCounts(counts, ids, rows * k, experts), RangeError, `moeCounts id ${bad}`);
      const dP = be.alloc(rows * experts);
      assert.throws(() => be.moeTopKBackward(dP, dOut, buf(be, new Float32Array(rows * experts).fill(0.125)), dOut, ids, rows, experts, k), RangeError, `moeTopKBackward id ${bad}`);
      for (const [b, what] of [[out, "out"], [dx, "dx"], [dw, "dw"], [counts, "counts"], [dP, "dProbs"]] as const)
        assert.ok((await be.read(b)).every((v) => v === 0), `id ${bad}: ${what} written`);
      be.freeQuantized(qw);
    }
    // Buffers too short for the shape.
    const ids = buf(be, [0, 1, 2, 3, 4, 5]);
    assert.throws(() => be.matmulExperts(be.alloc(rows * k * n - 1), be.alloc(rows * kin), be.alloc(experts * n * kin), ids, rows, k, experts, n, kin, false), RangeError);
    assert.throws(() => be.matmulExperts(be.alloc(rows * k * n), be.alloc(rows * kin), be.alloc(experts * n * kin), ids, rows, k, experts, n, kin, true), RangeError);
    assert.throws(() => be.matmulExperts(be.alloc(rows * k * n), be.alloc(rows * kin), be.alloc(experts * n * kin - 1), ids, rows, k, experts, n, kin, false), RangeError);
    assert.throws(() => be.matmulExperts(be.alloc(rows * k * n), be.alloc(rows * kin), be.alloc(experts * n * kin), ids, rows + 1, k, experts, n, kin, false), RangeError);
    const qw = be.allocQuantized("q8_0", experts * n, kin);
    assert.throws(() => be.matmulExpertsQuantized(be.alloc(rows * k * n), be.alloc(rows * kin), qw, ids, rows, k, experts - 1, n, kin, false), RangeError);
    assert.throws(() => be.moeCombine(be.alloc(rows * n), be.alloc(rows * k * n - 1), be.alloc(rows * k), rows, k, n, false), RangeError);
    assert.throws(() => be.softmax(be.alloc(10), be.alloc(9), 2, 5), RangeError);
  });
}

const QUANT_TYPES: QuantType[] = ["q8_0", "q4_0", "f16"];
const GGML: Record<QuantType, GgmlType> = { q8_0: GgmlType.Q8_0, q4_0: GgmlType.Q4_0, f16: GgmlType.F16 };

test("the threaded backend gives the bits of one thread for every MoE kernel", async () => {
  const rng = new Rng(8);
  for (const c of cases)
    for (const xPerSlot of [false, true]) {
      const { rows, experts, k } = c, slots = rows * k, n = 40, kin = 64, xRows = xPerSlot ? slots : rows;
      const ids = routedIds(rng, rows, experts, k, c.pattern);
      const data = [randoms(rng, rows * experts, 4), randoms(rng, xRows * kin), randoms(rng, experts * n * kin), randoms(rng, slots * n), randoms(rng, rows * k)];
      const bytes = quantize(GgmlType.Q4_0, data[2]);
      const results: FloatArray[][] = [];
      for (const be of [wasm, threaded]) {
        const [logits, x, w, dOut, dWeights] = data.map((d) => buf(be, d)), I = buf(be, ids);
        const probs = be.alloc(rows * experts), lse = be.alloc(rows), tw = be.alloc(slots), ti = be.alloc(slots);
        be.softmax(probs, logits, rows, experts);
        be.logSumExp(lse, logits, rows, experts);
        be.moeTopK(tw, ti, probs, rows, experts, k);
        const dLogits = be.alloc(rows * experts), dProbs = be.alloc(rows * experts);
        be.moeTopKBackward(dProbs, dWeights, probs, tw, ti, rows, experts, k);
        be.softmaxBackward(dLogits, dProbs, probs, rows, experts);
        be.logSumExpBackward(dLogits, lse, logits, lse, rows, experts);
        const out = be.alloc(slots * n), outQ = be.alloc(slots * n), dx = be.alloc(xRows * kin), dw = be.alloc(experts * n * kin);
        be.matmulExperts(out, x, w, I, rows, k, experts, n, kin, xPerSlot);
        const qw = be.allocQuantized("q4_0", experts * n, kin, bytes);
        be.matmulExpertsQuantized(outQ, x, qw, I, rows, k, experts, n, kin, xPerSlot);
        be.matmulExpertsBackward(dx, dw, dOut, x, w, I, rows, k, experts, n, kin, xPerSlot);
        const mixed = be.alloc(rows * n), dSlots = be.alloc(slots * n), dTw = be.alloc(slots);
        be.moeCombine(mixed, out, tw, rows, k, n, false);
        be.moeCombineBackward(dSlots, dTw, buf(be, data[3].subarray(0, rows * n)), out, tw, rows, k, n);
        results.push(await Promise.all([probs, lse, tw, ti, dLogits, out, outQ, dx, dw, mixed, dSlots, dTw].map((b) => be.read(b))));
        be.freeQuantized(qw);
      }
      results[1].forEach((r, i) => assertBitwise(r, results[0][i], `${label(c, xPerSlot)}: output ${i}`));
    }
});

test("the expert GEMMs run one matmul per expert that got rows, through the threaded backend's own matmul", async () => {
  const rng = new Rng(9);
  const rows = 37, experts = 8, k = 2, n = 16, kin = 32;
  const ids = routedIds(rng, rows, experts, k, "skip"), used = new Set(ids).size;
  let calls = 0;
  const own = threaded.matmul;
  threaded.matmul = function (this: typeof threaded, ...args: Parameters<typeof own>) {
    calls++;
    return own.apply(this, args);
  };
  try {
    const I = buf(threaded, ids), x = buf(threaded, randoms(rng, rows * kin)), w = buf(threaded, randoms(rng, experts * n * kin));
    threaded.matmulExperts(threaded.alloc(rows * k * n), x, w, I, rows, k, experts, n, kin, false);
    assert.equal(calls, used, "forward: one GEMM per routed expert");
    calls = 0;
    threaded.matmulExpertsBackward(threaded.alloc(rows * kin), threaded.alloc(experts * n * kin), buf(threaded, randoms(rng, rows * k * n)), x, w, I, rows, k, experts, n, kin, false);
    assert.equal(calls, 2 * used, "backward: dW and dX, one GEMM each per routed expert");
  } finally {
    Reflect.deleteProperty(threaded, "matmul");
  }
  assert.equal(threaded.matmul, own);
});

test("llama.cpp's numerics (q8Activations): each slot's row equals matmulQuantized of its expert's rows, bit for bit", async () => {
  const rng = new Rng(10);
  const q8 = await createWasmBackend({ q8Activations: true });
  const q8t = await createThreadedWasmBackend({ threads: 2, minWorkPerThread: 0, q8Activations: true });
  try {
    for (const be of [q8, q8t])
      for (const type of QUANT_TYPES)
        for (const c of cases)
          for (const xPerSlot of [false, true]) {
            const { rows, experts, k } = c, slots = rows * k, n = 36, kin = 96, xRows = xPerSlot ? slots : rows;
            const what = `${be === q8 ? "1 thread" : "2 threads"} ${type} ${label(c, xPerSlot)}`;
            const ids = routedIds(rng, rows, experts, k, c.pattern), x = randoms(rng, xRows * kin);
            const bytes = quantize(GGML[type], randoms(rng, experts * n * kin)), rowBytes = quantRowBytes(type, kin);
            const W = be.allocQuantized(type, experts * n, kin, bytes), O = be.alloc(slots * n);
            be.matmulExpertsQuantized(O, buf(be, x), W, buf(be, ids), rows, k, experts, n, kin, xPerSlot);
            const got = await be.read(O);
            for (let e = 0; e < experts; e++) {
              const mine = Array.from({ length: slots }, (_, s) => s).filter((s) => ids[s] === e);
              if (mine.length === 0) continue;
              const xe = new Float32Array(mine.length * kin);
              mine.forEach((s, i) => xe.set(x.subarray((xPerSlot ? s : Math.floor(s / k)) * kin, ((xPerSlot ? s : Math.floor(s / k)) + 1) * kin), i * kin));
              const We = be.allocQuantized(type, n, kin, bytes.subarray(e * n * rowBytes, (e + 1) * n * rowBytes)), Oe = be.alloc(mine.length * n);
              be.matmulQuantized(Oe, buf(be, xe), We, mine.length, n, kin, false);
              const want = await be.read(Oe);
              mine.forEach((s, i) => assertBitwise(got.subarray(s * n, (s + 1) * n), want.subarray(i * n, (i + 1) * n), `${what}: slot ${s} (expert ${e})`));
              be.freeQuantized(We);
            }
            be.freeQuantized(W);
          }
    // Decode (one row, k = 2): each slot is exactly the single-row, integer-dot-product path.
    const kin = 64, n = 20, experts = 8, bytes = quantize(GgmlType.Q8_0, randoms(rng, experts * n * kin)), x = randoms(rng, kin);
    const W = q8.allocQuantized("q8_0", experts * n, kin, bytes), O = q8.alloc(2 * n);
    q8.matmulExpertsQuantized(O, buf(q8, x), W, buf(q8, [5, 1]), 1, 2, experts, n, kin, false);
    const got = await q8.read(O);
    for (const [j, e] of [[0, 5], [1, 1]]) {
      const expert = bytes.subarray(e * n * quantRowBytes("q8_0", kin), (e + 1) * n * quantRowBytes("q8_0", kin));
      const Oe = q8.alloc(n), plain = wasm.alloc(n);
      q8.matmulQuantized(Oe, buf(q8, x), q8.allocQuantized("q8_0", n, kin, expert), 1, n, kin, false);
      assertBitwise(got.subarray(j * n, (j + 1) * n), await q8.read(Oe), `decode slot ${j}`);
      // And that is the integer path, not the float one (rounded activations change some bits).
      wasm.matmulQuantized(plain, buf(wasm, x), wasm.allocQuantized("q8_0", n, kin, expert), 1, n, kin, false);
      const float = await wasm.read(plain);
      assert.ok(float.some((v, i) => v !== got[j * n + i]), `decode slot ${j}: q8 activations were not used`);
    }
  } finally {
    q8t.dispose();
  }
});

test("threaded matmulQuantized over 17–39 rows (an expert's share of a prefill) gives the bits of one thread", async () => {
  // The float path's GEMM goes row by row up to matmulSmallRows() rows; a split of 17–39 rows in
  // two used to put one part on each side of that line.
  const rng = new Rng(11), n = 40;
  for (const [type, k] of [["q8_0", 64], ["q4_0", 96], ["f16", 72]] as const)
    for (const m of [16, 17, 20, 33, 37, 39, 40, 64]) {
      const bytes = quantize(GGML[type], randoms(rng, n * k)), a = randoms(rng, m * k);
      const [one, two] = await Promise.all([wasm, threaded].map((be) => {
        const c = be.alloc(m * n);
        be.matmulQuantized(c, buf(be, a), be.allocQuantized(type, n, k, bytes), m, n, k, false);
        return be.read(c);
      }));
      assertBitwise(two, one, `${type} ${m}x${n}x${k}`);
    }
});
