// The wasm backend against the f64 JS reference: every kernel on random inputs over shapes that hit
// the SIMD main loops, their scalar tails and the matmul edge tiles; plus the allocator. Both builds
// of the kernels, SIMD128 and relaxed SIMD (where the engine has it), meet the same tolerances.
import { describe, test } from "node:test";
import { Rng } from "../src/util/rng.js";
import assert from "node:assert/strict";
import type { Backend, Buf } from "../src/backend/backend.js";
import { dropoutUniform } from "../src/backend/backend.js";
import { JsBackend } from "../src/backend/js/js-backend.js";
import { createWasmBackend, type WasmBackend } from "../src/backend/wasm/wasm-backend.js";
import { relaxedSimdAvailable, type KernelFlavour } from "../src/backend/wasm/kernel-flavour.js";

const ref = new JsBackend("f64");

// Deterministic inputs, rounded to f32 so both backends start from the same numbers.
function rng(seed: number): () => number {
  const r = new Rng(seed);
  return () => r.next();
}
const rand = rng(42);
function randn(n: number, scale = 1): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = (rand() * 2 - 1) * scale;
  return out;
}

function suite(wasm: WasmBackend): void {
  /** The same host numbers in a buffer of each backend. */
  function pair(data: ArrayLike<number>): [Buf, Buf] {
    const w = wasm.alloc(data.length), r = ref.alloc(data.length);
    wasm.write(w, data);
    ref.write(r, data);
    return [w, r];
  }
  function pairs(...data: ArrayLike<number>[]): [Buf[], Buf[]] {
    const ps = data.map(pair);
    return [ps.map((p) => p[0]), ps.map((p) => p[1])];
  }
  function freeAll(bufs: Buf[], be: Backend): void {
    for (const b of bufs) be.free(b);
  }

  /** |a − b| ≤ tol·(1 + |b|) elementwise. */
  function assertClose(actual: ArrayLike<number>, expected: ArrayLike<number>, label: string, tol = 1e-4): void {
    assert.equal(actual.length, expected.length, `${label}: length`);
    for (let i = 0; i < expected.length; i++) {
      const a = actual[i], b = expected[i];
      if (!(Math.abs(a - b) <= tol * (1 + Math.abs(b)))) assert.fail(`${label}: element ${i} is ${a}, expected ${b}`);
    }
  }
  async function compare(w: Buf, r: Buf, label: string, tol = 1e-4): Promise<void> {
    assertClose(await wasm.read(w), await ref.read(r), label, tol);
  }

  // ---- memory ----------------------------------------------------------------------------------

  test("alloc is zero-filled; write, read, fill, copy", async () => {
    const b = wasm.alloc(37);
    assert.equal(b.length, 37);
    assert.deepEqual(Array.from(await wasm.read(b)), new Array(37).fill(0));
    const src = randn(37);
    wasm.write(b, src);
    assert.ok((await wasm.read(b)) instanceof Float32Array);
    assert.deepEqual(await wasm.read(b), src);
    assert.deepEqual(await wasm.read(b, 5, 3), src.slice(5, 8));
    assert.deepEqual(await wasm.read(b, 30), src.slice(30));
    wasm.write(b, [1, 2, 3], 34);
    assert.deepEqual(Array.from(await wasm.read(b, 34)), [1, 2, 3]);
    assert.throws(() => wasm.write(b, [1, 2], 36), /overflows/);
    await assert.rejects(wasm.read(b, 30, 8), /overflows/);
    wasm.fill(b, 2.5);
    assert.deepEqual(Array.from(await wasm.read(b)), new Array(37).fill(2.5));
    const c = wasm.alloc(10);
    wasm.write(c, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    wasm.copy(b, 3, c, 2, 5);
    assert.deepEqual(Array.from(await wasm.read(b, 0, 9)), [2.5, 2.5, 2.5, 2, 3, 4, 5, 6, 2.5]);
    wasm.copy(c, 2, c, 0, 6); // overlapping: memmove semantics
    assert.deepEqual(Array.from(await wasm.read(c)), [0, 1, 0, 1, 2, 3, 4, 5, 8, 9]);
    assert.throws(() => wasm.copy(c, 8, b, 0, 3), /needs 11/);
    wasm.free(b);
    wasm.free(c);
    const empty = wasm.alloc(0);
    assert.equal((await wasm.read(empty)).length, 0);
    wasm.free(empty);
  });

  test("allocator reuses freed blocks of the same size, zeroed", async () => {
    const a = wasm.alloc(1000);
    wasm.fill(a, 7);
    const top = wasm.stats().heapTop;
    wasm.free(a);
    assert.ok(wasm.stats().freeBytes >= 4000);
    const b = wasm.alloc(1000);
    assert.equal(wasm.stats().heapTop, top, "no new memory for a reused block");
    assert.deepEqual(Array.from(await wasm.read(b)), new Array(1000).fill(0));
    // A training step allocates the same sizes again and again: the heap must not creep.
    const sizes = [3, 128, 4096, 768 * 128, 65, 1000];
    let settled = -1;
    for (let step = 0; step < 5; step++) {
      const bufs = sizes.map((n) => wasm.alloc(n));
      if (step === 1) settled = wasm.stats().heapTop;
      if (step > 1) assert.equal(wasm.stats().heapTop, settled);
      for (const x of bufs) wasm.free(x);
    }
    wasm.free(b);
  });

  test("memory grows across many allocations and old buffers keep their contents", async () => {
    const before = wasm.stats().memoryBytes;
    const bufs: Buf[] = [];
    for (let i = 0; i < 120; i++) {
      const buf = wasm.alloc(100_000 + i); // ~48 MB in all, far beyond the initial 2 MB
      wasm.fill(buf, i);
      bufs.push(buf);
    }
    assert.ok(wasm.stats().memoryBytes > before + 40e6);
    for (let i = 0; i < bufs.length; i++) {
      const v = await wasm.read(bufs[i]);
      assert.equal(v[0], i);
      assert.equal(v[v.length - 1], i);
      assert.equal(await wasm.sum(bufs[i]), i * (100_000 + i));
    }
    // Pointers must stay 64-byte aligned for every size.
    const odd = [1, 3, 17, 63, 65].map((n) => wasm.alloc(n));
    for (const o of odd) assert.equal(((o as unknown as { ptr: number }).ptr) % 64, 0);
    freeAll([...bufs, ...odd], wasm);
  });

  test("double free and use after free throw", async () => {
    const a = wasm.alloc(8), b = wasm.alloc(8);
    wasm.free(a);
    assert.throws(() => wasm.free(a), /double free/);
    await assert.rejects(wasm.read(a), /after free/);
    assert.throws(() => wasm.add(b, a, b), /after free/);
    assert.throws(() => wasm.add(a, b, b), /after free/);
    assert.throws(() => wasm.free(ref.alloc(8)), /another backend/);
    assert.throws(() => wasm.add(b, ref.alloc(8), b), /not a buffer of this backend/);
    assert.throws(() => wasm.add(b, wasm.alloc(7), b), /needs 8/);
    wasm.free(b);
  });

  // ---- elementwise and reductions --------------------------------------------------------------

  test("add, axpy, scale, sum, sumSquares", async () => {
    for (const n of [1, 3, 4, 7, 16, 33, 1000]) {
      const [[wa, wb, wo], [ra, rb, ro]] = pairs(randn(n), randn(n), randn(n));
      wasm.add(wo, wa, wb);
      ref.add(ro, ra, rb);
      await compare(wo, ro, `add n=${n}`);
      wasm.axpy(wo, wa, -0.75);
      ref.axpy(ro, ra, -0.75);
      await compare(wo, ro, `axpy n=${n}`);
      wasm.scale(wo, 1.5);
      ref.scale(ro, 1.5);
      await compare(wo, ro, `scale n=${n}`);
      assertClose([await wasm.sum(wo)], [await ref.sum(ro)], `sum n=${n}`);
      assertClose([await wasm.sumSquares(wo)], [await ref.sumSquares(ro)], `sumSquares n=${n}`);
      freeAll([wa, wb, wo], wasm);
    }
    // f64 accumulation: a million ones and one small number still add up exactly.
    const big = wasm.alloc(1_000_001);
    wasm.fill(big, 1);
    wasm.write(big, [0.5], 1_000_000);
    assert.equal(await wasm.sum(big), 1_000_000.5);
    assert.equal(await wasm.sumSquares(big), 1_000_000.25);
    wasm.free(big);
  });

  // ---- matmul ----------------------------------------------------------------------------------

  test("matmul: all transpose combinations, with and without accumulate, edge shapes", async () => {
    const shapes: [number, number, number][] = [
      [1, 1, 1], [1, 7, 5], [1, 64, 33], [1, 37, 256], // m = 1: matrix-vector (decode)
      [5, 1, 9], [70, 1, 13], // n = 1
      [2, 3, 4], [4, 8, 16], [5, 9, 7], [3, 4, 0],
      [13, 17, 300], // k spans two packed blocks
      [33, 65, 128], [130, 20, 3], // m spans two row blocks
      [129, 11, 257], [3, 2050, 5], // n spans two column blocks
      [64, 48, 96],
    ];
    for (const [m, n, k] of shapes)
      for (const transA of [false, true])
        for (const transB of [false, true])
          for (const accumulate of [false, true]) {
            const [[wc, wa, wb], [rc, ra, rb]] = pairs(randn(m * n), randn(m * k), randn(k * n));
            wasm.matmul(wc, wa, wb, m, n, k, transA, transB, accumulate);
            ref.matmul(rc, ra, rb, m, n, k, transA, transB, accumulate);
            await compare(wc, rc, `matmul ${m}x${n}x${k} tA=${transA} tB=${transB} acc=${accumulate}`);
            freeAll([wc, wa, wb], wasm);
          }
  });

  test("matmul: the training model's shapes", async () => {
    const cases: [number, number, number, boolean, boolean][] = [
      [768, 384, 128, false, true], // x·Wᵀ
      [768, 65, 128, false, true], // logits
      [768, 128, 352, false, false], // dY·W
      [128, 352, 768, true, false], // dYᵀ·X
    ];
    for (const [m, n, k, tA, tB] of cases) {
      const [[wc, wa, wb], [rc, ra, rb]] = pairs(randn(m * n), randn(m * k), randn(k * n));
      wasm.matmul(wc, wa, wb, m, n, k, tA, tB, true);
      ref.matmul(rc, ra, rb, m, n, k, tA, tB, true);
      await compare(wc, rc, `matmul ${m}x${n}x${k}`);
      freeAll([wc, wa, wb], wasm);
    }
  });

  // ---- model kernels ---------------------------------------------------------------------------

  test("embedding and its backward, including repeated ids and range errors", async () => {
    for (const dim of [1, 3, 8, 33]) {
      const vocab = 11;
      const ids = Int32Array.from([0, 5, 10, 5, 3, 5, 0]);
      const [[wt, wo, wd, wg], [rt, ro, rd, rg]] = pairs(randn(vocab * dim), randn(ids.length * dim), randn(vocab * dim), randn(ids.length * dim));
      wasm.embedding(wo, wt, ids, dim);
      ref.embedding(ro, rt, ids, dim);
      await compare(wo, ro, `embedding dim=${dim}`);
      wasm.embeddingBackward(wd, wg, ids, dim);
      ref.embeddingBackward(rd, rg, ids, dim);
      await compare(wd, rd, `embeddingBackward dim=${dim}`);
      assert.throws(() => wasm.embedding(wo, wt, Int32Array.from([1, 11]), dim), /token id 11 out of range \[0, 11\)/);
      assert.throws(() => wasm.embedding(wo, wt, Int32Array.from([-1]), dim), /token id -1 out of range/);
      assert.throws(() => wasm.embeddingBackward(wd, wg, Int32Array.from([12]), dim), /out of range/);
      freeAll([wt, wo, wd, wg], wasm);
    }
  });

  test("rmsnorm and its backward", async () => {
    for (const [rows, dim] of [[1, 1], [5, 3], [4, 8], [3, 33], [6, 128]]) {
      const [[wo, ws, wx, ww, wdx, wdw, wg], [ro, rs, rx, rw, rdx, rdw, rg]] = pairs(
        randn(rows * dim), randn(rows), randn(rows * dim, 3), randn(dim), randn(rows * dim), randn(dim), randn(rows * dim),
      );
      wasm.rmsnorm(wo, ws, wx, ww, rows, dim, 1e-5);
      ref.rmsnorm(ro, rs, rx, rw, rows, dim, 1e-5);
      await compare(wo, ro, `rmsnorm out ${rows}x${dim}`);
      await compare(ws, rs, `rmsnorm rstd ${rows}x${dim}`);
      wasm.rmsnormBackward(wdx, wdw, wg, wx, ww, ws, rows, dim);
      ref.rmsnormBackward(rdx, rdw, rg, rx, rw, rs, rows, dim);
      await compare(wdx, rdx, `rmsnorm dx ${rows}x${dim}`);
      await compare(wdw, rdw, `rmsnorm dw ${rows}x${dim}`);
      freeAll([wo, ws, wx, ww, wdx, wdw, wg], wasm);
    }
  });

  test("rope and its backward (also in place)", async () => {
    const batch = 2, seq = 5;
    for (const heads of [1, 3])
      for (const headDim of [2, 6, 8, 16, 34])
        for (const posOffset of [0, 3]) {
          const half = headDim / 2, maxPos = posOffset + seq + 2, n = batch * seq * heads * headDim;
          const cos = new Float32Array(maxPos * half), sin = new Float32Array(maxPos * half);
          for (let p = 0; p < maxPos; p++)
            for (let i = 0; i < half; i++) {
              const angle = p * Math.pow(10000, -i / half);
              cos[p * half + i] = Math.cos(angle);
              sin[p * half + i] = Math.sin(angle);
            }
          const label = `rope heads=${heads} headDim=${headDim} pos=${posOffset}`;
          const [[wo, wx, wc, wsn, wdx, wg], [ro, rx, rc, rsn, rdx, rg]] = pairs(randn(n), randn(n), cos, sin, randn(n), randn(n));
          wasm.rope(wo, wx, wc, wsn, batch, seq, heads, headDim, posOffset);
          ref.rope(ro, rx, rc, rsn, batch, seq, heads, headDim, posOffset);
          await compare(wo, ro, label);
          wasm.ropeBackward(wdx, wg, wc, wsn, batch, seq, heads, headDim, posOffset);
          ref.ropeBackward(rdx, rg, rc, rsn, batch, seq, heads, headDim, posOffset);
          await compare(wdx, rdx, `${label} backward`);
          wasm.rope(wx, wx, wc, wsn, batch, seq, heads, headDim, posOffset);
          await compare(wx, ro, `${label} in place`);
          freeAll([wo, wx, wc, wsn, wdx, wg], wasm);
        }
    const b = wasm.alloc(12);
    assert.throws(() => wasm.rope(b, b, b, b, 1, 1, 4, 3, 0), /even/);
    wasm.free(b);
  });

  test("attention and its backward: MHA, GQA, MQA, odd head sizes", async () => {
    const configs = [
      // batch, seq, heads, kvHeads, headDim
      [1, 1, 1, 1, 4],
      [2, 5, 4, 2, 8], // GQA
      [1, 7, 4, 1, 6], // MQA
      [2, 9, 3, 3, 5], // odd head size
      [1, 17, 6, 2, 33],
      [1, 40, 2, 1, 64],
      [2, 13, 4, 4, 16],
    ];
    for (const [batch, seq, heads, kvHeads, headDim] of configs) {
      const nq = batch * seq * heads * headDim, nkv = batch * seq * kvHeads * headDim, np = batch * heads * seq * seq;
      const scale = 1 / Math.sqrt(headDim);
      const label = `attention b=${batch} T=${seq} h=${heads} kv=${kvHeads} d=${headDim}`;
      const [[wo, wp, wq, wk, wv, wdq, wdk, wdv, wg], [ro, rp, rq, rk, rv, rdq, rdk, rdv, rg]] = pairs(
        randn(nq), randn(np), randn(nq, 2), randn(nkv, 2), randn(nkv), randn(nq), randn(nkv), randn(nkv), randn(nq),
      );
      wasm.attention(wo, wp, wq, wk, wv, batch, seq, heads, kvHeads, headDim, scale);
      ref.attention(ro, rp, rq, rk, rv, batch, seq, heads, kvHeads, headDim, scale);
      await compare(wo, ro, `${label} out`);
      await compare(wp, rp, `${label} probs`);
      wasm.attentionBackward(wdq, wdk, wdv, wg, wq, wk, wv, wp, batch, seq, heads, kvHeads, headDim, scale);
      ref.attentionBackward(rdq, rdk, rdv, rg, rq, rk, rv, rp, batch, seq, heads, kvHeads, headDim, scale);
      await compare(wdq, rdq, `${label} dq`);
      await compare(wdk, rdk, `${label} dk`);
      await compare(wdv, rdv, `${label} dv`);
      freeAll([wo, wp, wq, wk, wv, wdq, wdk, wdv, wg], wasm);
    }
    const b = wasm.alloc(64);
    assert.throws(() => wasm.attention(b, b, b, b, b, 1, 1, 3, 2, 4, 1), /KV heads/);
    wasm.free(b);
  });

  test("attentionCached: MHA, GQA, MQA, odd head sizes, offsets; equals attention over the same rows", async () => {
    const configs = [
      // seq (new queries), heads, kvHeads, headDim, posOffset, cache rows
      [1, 1, 1, 4, 0, 4],
      [1, 4, 2, 8, 9, 16], // one decode step, GQA
      [3, 4, 1, 6, 5, 10], // a prefill chunk after 5 cached positions, MQA
      [7, 3, 3, 5, 0, 7], // odd head size, prefill from the start
      [2, 6, 2, 33, 30, 40],
      [5, 2, 1, 64, 11, 20],
    ];
    for (const [seq, heads, kvHeads, headDim, pos, rows] of configs) {
      const nq = seq * heads * headDim, nc = rows * kvHeads * headDim;
      const scale = 1 / Math.sqrt(headDim);
      const label = `attentionCached T=${seq} h=${heads} kv=${kvHeads} d=${headDim} pos=${pos}`;
      const [[wo, wq, wk, wv], [ro, rq, rk, rv]] = pairs(randn(nq), randn(nq, 2), randn(nc, 2), randn(nc));
      wasm.attentionCached(wo, wq, wk, wv, seq, heads, kvHeads, headDim, pos, scale);
      ref.attentionCached(ro, rq, rk, rv, seq, heads, kvHeads, headDim, pos, scale);
      await compare(wo, ro, label);
      if (pos === 0) {
        // From position 0 the cache rows are exactly the k, v of causal attention over the chunk.
        const full = ref.alloc(nq), probs = ref.alloc(heads * seq * seq);
        ref.attention(full, probs, rq, rk, rv, 1, seq, heads, kvHeads, headDim, scale);
        assertClose(await ref.read(ro), await ref.read(full), `${label} vs attention`, 1e-12);
      }
      freeAll([wo, wq, wk, wv], wasm);
    }
    const b = wasm.alloc(64);
    assert.throws(() => wasm.attentionCached(b, b, b, b, 1, 3, 2, 4, 0, 1), /KV heads/);
    assert.throws(() => wasm.attentionCached(b, b, b, b, 1, 2, 1, 4, 20, 1), /kCache needs/);
    wasm.free(b);
  });

  test("swiglu and its backward, including saturated gates", async () => {
    for (const n of [1, 3, 4, 17, 1000]) {
      const gate = randn(n, 6);
      if (n > 4) gate.set([20, -20, 100, -100], 0);
      const [[wo, wg, wu, wdg, wdu, wd], [ro, rg, ru, rdg, rdu, rd]] = pairs(randn(n), gate, randn(n), randn(n), randn(n), randn(n));
      wasm.swiglu(wo, wg, wu);
      ref.swiglu(ro, rg, ru);
      await compare(wo, ro, `swiglu n=${n}`);
      wasm.swigluBackward(wdg, wdu, wd, wg, wu);
      ref.swigluBackward(rdg, rdu, rd, rg, ru);
      await compare(wdg, rdg, `swiglu dGate n=${n}`);
      await compare(wdu, rdu, `swiglu dUp n=${n}`);
      freeAll([wo, wg, wu, wdg, wdu, wd], wasm);
    }
  });

  test("cross-entropy and its backward, ignored rows, range errors", async () => {
    for (const vocab of [1, 3, 4, 65, 257]) {
      const rows = 6;
      const targets = Int32Array.from({ length: rows }, (_, r) => (r === 2 ? -1 : (r * 7) % vocab));
      const [[wl, we, wx, wd, wg], [rl, re, rx, rd, rg]] = pairs(randn(rows), randn(rows), randn(rows * vocab, 8), randn(rows * vocab), randn(rows));
      wasm.crossEntropy(wl, we, wx, targets, rows, vocab);
      ref.crossEntropy(rl, re, rx, targets, rows, vocab);
      await compare(wl, rl, `crossEntropy losses vocab=${vocab}`);
      await compare(we, re, `crossEntropy lse vocab=${vocab}`);
      assert.equal((await wasm.read(wl))[2], 0, "ignored row has zero loss");
      wasm.crossEntropyBackward(wd, wx, we, targets, wg, rows, vocab);
      ref.crossEntropyBackward(rd, rx, re, targets, rg, rows, vocab);
      await compare(wd, rd, `crossEntropy dLogits vocab=${vocab}`);
      const bad = Int32Array.from(targets);
      bad[4] = vocab;
      assert.throws(() => wasm.crossEntropy(wl, we, wx, bad, rows, vocab), new RegExp(`target ${vocab} out of range`));
      freeAll([wl, we, wx, wd, wg], wasm);
    }
  });

  test("dropout masks match the JS backend bit for bit", async () => {
    const f32 = new JsBackend("f32");
    for (const n of [1, 7, 1001])
      for (const p of [0, 0.1, 0.5, 0.9, 1])
        for (const seed of [0, 12345, 4294967295, -7]) {
          const x = randn(n);
          const wx = wasm.alloc(n), wo = wasm.alloc(n), wm = wasm.alloc(n);
          const fx = f32.alloc(n), fo = f32.alloc(n), fm = f32.alloc(n);
          wasm.write(wx, x);
          f32.write(fx, x);
          wasm.dropout(wo, wm, wx, p, seed);
          f32.dropout(fo, fm, fx, p, seed);
          const label = `dropout n=${n} p=${p} seed=${seed}`;
          assert.deepEqual(await wasm.read(wm), await f32.read(fm), `${label} mask`);
          assert.deepEqual(await wasm.read(wo), await f32.read(fo), `${label} out`);
          const m = await wasm.read(wm);
          for (let i = 0; i < n; i++) assert.equal(m[i] !== 0, dropoutUniform(seed, i) >= p, `${label} element ${i}`);
          const wdx = wasm.alloc(n), fdx = f32.alloc(n), g = randn(n);
          wasm.write(wdx, g);
          f32.write(fdx, g);
          wasm.dropoutBackward(wdx, wx, wm);
          f32.dropoutBackward(fdx, fx, fm);
          // Not bit-exact: JS rounds dx + dOut·mask once, wasm rounds the product and the sum.
          assertClose(await wasm.read(wdx), await f32.read(fdx), `${label} backward`, 1e-6);
          freeAll([wx, wo, wm, wdx], wasm);
        }
    const b = wasm.alloc(4);
    assert.throws(() => wasm.dropout(b, b, b, 0.5, 1.5), /integer/);
    wasm.free(b);
  });

  test("adamw matches the reference over several steps", async () => {
    for (const n of [1, 5, 64, 1003]) {
      const [[wp, wg, wm, wv], [rp, rg, rm, rv]] = pairs(randn(n), randn(n), new Float32Array(n), new Float32Array(n));
      for (let step = 1; step <= 5; step++) {
        const g = randn(n, 0.1);
        wasm.write(wg, g);
        ref.write(rg, g);
        wasm.adamw(wp, wg, wm, wv, 1e-3, 0.9, 0.95, 1e-8, 0.1, step);
        ref.adamw(rp, rg, rm, rv, 1e-3, 0.9, 0.95, 1e-8, 0.1, step);
      }
      await compare(wp, rp, `adamw param n=${n}`);
      await compare(wm, rm, `adamw m n=${n}`);
      await compare(wv, rv, `adamw v n=${n}`);
      freeAll([wp, wg, wm, wv], wasm);
    }
  });
}

const flavours: KernelFlavour[] = (await relaxedSimdAvailable()) ? ["simd", "relaxed"] : ["simd"];
if (flavours.length === 1) test("relaxed-SIMD kernels", (t) => t.skip("this engine has no relaxed SIMD"));
for (const flavour of flavours) {
  const wasm = await createWasmBackend({ kernels: flavour });
  assert.equal(wasm.flavour, flavour);
  describe(`${flavour} kernels`, () => suite(wasm));
}
