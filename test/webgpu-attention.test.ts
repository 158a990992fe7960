// The WebGPU norm, rope and attention kernels against the f64 JS reference, on random f32 inputs:
// RMSNorm (one- and two-pass dw), RoPE forward/backward/in place, causal GQA attention with its
// backward, and attention over a KV cache (split-context and multi-tile paths, long contexts).
import { test } from "node:test";
import assert from "node:assert/strict";
import type { Backend, Buf } from "../src/backend/backend.js";
import { JsBackend } from "../src/backend/js/js-backend.js";
import { Rng } from "../src/util/rng.js";
import { webgpuBackend } from "./webgpu.js";
import { assertClose, bufferPairs } from "./kernel-helpers.js";

const ref = new JsBackend("f64");
const r = new Rng(7);
function randn(n: number, scale = 1): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = (r.next() * 2 - 1) * scale;
  return out;
}

/** Largest |a − b| / (1 + |b|) seen per test, for the report. */
const worst = new Map<string, number>();

/** |a − b| ≤ tol·(1 + |b|) elementwise. */
/** assertClose, remembering the worst error per kernel family (the label's first word). */
function assertCloseNoted(actual: ArrayLike<number>, expected: ArrayLike<number>, label: string, tol = 1e-4): void {
  const key = label.split(" ")[0];
  worst.set(key, Math.max(worst.get(key) ?? 0, assertClose(actual, expected, label, tol)));
}

const be = await webgpuBackend();
if (typeof be === "string") {
  test("webgpu norm, rope, attention", { skip: be }, () => {});
} else {
  const gpu: Backend = be;
  const pairs = (...data: ArrayLike<number>[]): [Buf[], Buf[]] => bufferPairs(gpu, ref, ...data);
  const freeAll = (bufs: Buf[]): void => bufs.forEach((b) => gpu.free(b));
  async function compare(g: Buf, c: Buf, label: string, tol = 1e-4): Promise<void> {
    assertCloseNoted(await gpu.read(g), await ref.read(c), label, tol);
  }

  test("rmsnorm and its backward (one- and two-pass dw; deterministic)", async () => {
    for (const [rows, dim] of [[1, 1], [5, 3], [4, 8], [3, 33], [6, 128], [64, 288]]) {
      const data = [randn(rows * dim), randn(rows), randn(rows * dim, 3), randn(dim), randn(rows * dim), randn(dim), randn(rows * dim)];
      const [[go, gs, gx, gw, gdx, gdw, gg], [ro, rs, rx, rw, rdx, rdw, rg]] = pairs(...data);
      gpu.rmsnorm(go, gs, gx, gw, rows, dim, 1e-5);
      ref.rmsnorm(ro, rs, rx, rw, rows, dim, 1e-5);
      await compare(go, ro, `rmsnorm out ${rows}x${dim}`);
      await compare(gs, rs, `rmsnorm rstd ${rows}x${dim}`);
      gpu.rmsnormBackward(gdx, gdw, gg, gx, gw, gs, rows, dim);
      ref.rmsnormBackward(rdx, rdw, rg, rx, rw, rs, rows, dim);
      await compare(gdx, rdx, `rmsnorm dx ${rows}x${dim}`);
      await compare(gdw, rdw, `rmsnorm dw ${rows}x${dim}`);
      // Same inputs again from the same start: the same bits.
      const dw2 = gpu.alloc(dim), dx2 = gpu.alloc(rows * dim);
      gpu.write(dw2, data[5]);
      gpu.write(dx2, data[4]);
      gpu.rmsnormBackward(dx2, dw2, gg, gx, gw, gs, rows, dim);
      assert.deepEqual(await gpu.read(dw2), await gpu.read(gdw), `rmsnorm dw ${rows}x${dim} deterministic`);
      freeAll([go, gs, gx, gw, gdx, gdw, gg, dw2, dx2]);
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
          const [[go, gx, gc, gsn, gdx, gg], [ro, rx, rc, rsn, rdx, rg]] = pairs(randn(n), randn(n), cos, sin, randn(n), randn(n));
          gpu.rope(go, gx, gc, gsn, batch, seq, heads, headDim, posOffset);
          ref.rope(ro, rx, rc, rsn, batch, seq, heads, headDim, posOffset);
          await compare(go, ro, label);
          gpu.ropeBackward(gdx, gg, gc, gsn, batch, seq, heads, headDim, posOffset);
          ref.ropeBackward(rdx, rg, rc, rsn, batch, seq, heads, headDim, posOffset);
          await compare(gdx, rdx, `${label} backward`);
          gpu.rope(gx, gx, gc, gsn, batch, seq, heads, headDim, posOffset);
          await compare(gx, ro, `${label} in place`);
          // Backward with dx = dOut: dx ← dx + Rᵀ·dx.
          gpu.ropeBackward(gg, gg, gc, gsn, batch, seq, heads, headDim, posOffset);
          ref.ropeBackward(rg, copyOf(rg), rc, rsn, batch, seq, heads, headDim, posOffset);
          await compare(gg, rg, `${label} backward in place`);
          freeAll([go, gx, gc, gsn, gdx, gg]);
        }
    const b = gpu.alloc(12);
    assert.throws(() => gpu.rope(b, b, b, b, 1, 1, 4, 3, 0), /even/);
    gpu.free(b);
  });
  /** A reference buffer with the same numbers (the reference's own aliasing is not under test). */
  function copyOf(b: Buf): Buf {
    const c = ref.alloc(b.length);
    ref.copy(c, 0, b, 0, b.length);
    return c;
  }

  test("attention and its backward: MHA, GQA, MQA, odd and long head sizes, long rows", async () => {
    const configs = [
      // batch, seq, heads, kvHeads, headDim
      [1, 1, 1, 1, 4],
      [1, 1, 4, 2, 1],
      [2, 5, 4, 2, 8], // GQA
      [1, 5, 4, 1, 3], // MQA
      [1, 7, 4, 1, 6],
      [2, 9, 3, 3, 5], // odd head size
      [1, 17, 4, 2, 16],
      [2, 17, 4, 4, 48], // 256 not a multiple of 48: idle lanes
      [1, 17, 6, 2, 33],
      [1, 40, 2, 1, 64],
      [1, 4, 2, 1, 300], // headDim > workgroup: several d passes
      [1, 300, 2, 1, 8], // rows longer than the workgroup
    ];
    for (const [batch, seq, heads, kvHeads, headDim] of configs) {
      const nq = batch * seq * heads * headDim, nkv = batch * seq * kvHeads * headDim, np = batch * heads * seq * seq;
      const scale = 1 / Math.sqrt(headDim);
      const label = `attention b=${batch} T=${seq} h=${heads} kv=${kvHeads} d=${headDim}`;
      const [[go, gp, gq, gk, gv, gdq, gdk, gdv, gg], [ro, rp, rq, rk, rv, rdq, rdk, rdv, rg]] = pairs(
        randn(nq), randn(np), randn(nq, 2), randn(nkv, 2), randn(nkv), randn(nq), randn(nkv), randn(nkv), randn(nq),
      );
      gpu.attention(go, gp, gq, gk, gv, batch, seq, heads, kvHeads, headDim, scale);
      ref.attention(ro, rp, rq, rk, rv, batch, seq, heads, kvHeads, headDim, scale);
      await compare(go, ro, `${label} out`);
      await compare(gp, rp, `${label} probs`);
      gpu.attentionBackward(gdq, gdk, gdv, gg, gq, gk, gv, gp, batch, seq, heads, kvHeads, headDim, scale);
      ref.attentionBackward(rdq, rdk, rdv, rg, rq, rk, rv, rp, batch, seq, heads, kvHeads, headDim, scale);
      await compare(gdq, rdq, `${label} dq`);
      await compare(gdk, rdk, `${label} dk`);
      await compare(gdv, rdv, `${label} dv`);
      freeAll([go, gp, gq, gk, gv, gdq, gdk, gdv, gg]);
    }
    const b = gpu.alloc(64);
    assert.throws(() => gpu.attention(b, b, b, b, b, 1, 1, 3, 2, 4, 1), /KV heads/);
    assert.throws(() => gpu.attentionBackward(b, gpu.alloc(64), gpu.alloc(64), b, b, b, b, b, 1, 1, 3, 2, 4, 1), /KV heads/);
    gpu.free(b);
  });

  test("attentionCached: MHA, GQA, MQA, offsets, long contexts; equals attention over the same rows", async () => {
    const configs = [
      // seq (new queries), heads, kvHeads, headDim, posOffset, cache rows
      [1, 1, 1, 4, 0, 4],
      [1, 4, 2, 1, 0, 1],
      [1, 4, 2, 8, 9, 16], // one decode step, GQA
      [3, 4, 1, 6, 5, 10], // a prefill chunk after 5 cached positions, MQA
      [5, 4, 4, 3, 7, 12],
      [7, 3, 3, 5, 0, 7], // odd head size, prefill from the start
      [17, 4, 2, 16, 0, 17],
      [5, 4, 1, 48, 7, 14],
      [2, 6, 2, 33, 30, 40],
      [5, 2, 1, 64, 11, 20],
      [1, 4, 2, 16, 299, 300], // long context, decode: split over chunks
      [4, 4, 1, 8, 296, 310],
      [1, 4, 2, 16, 1099, 1100],
      [4, 2, 2, 48, 1096, 1100],
      [1, 2, 1, 300, 5, 6], // headDim > workgroup: two dims per thread
      [1, 2, 1, 300, 400, 401],
      [64, 8, 2, 16, 300, 364], // 512 query rows: one chunk of two tiles each (online softmax)
      [300, 2, 1, 8, 0, 300], // long prefill from the start
    ];
    for (const [seq, heads, kvHeads, headDim, pos, rows] of configs) {
      const nq = seq * heads * headDim, nc = rows * kvHeads * headDim;
      const scale = 1 / Math.sqrt(headDim);
      const label = `attentionCached T=${seq} h=${heads} kv=${kvHeads} d=${headDim} pos=${pos}`;
      const [[go, gq, gk, gv], [ro, rq, rk, rv]] = pairs(randn(nq), randn(nq, 2), randn(nc, 2), randn(nc));
      gpu.attentionCached(go, gq, gk, gv, seq, heads, kvHeads, headDim, pos, scale);
      ref.attentionCached(ro, rq, rk, rv, seq, heads, kvHeads, headDim, pos, scale);
      await compare(go, ro, label);
      if (pos === 0 && rows === seq) {
        // From position 0 the cache rows are exactly the k, v of causal attention over the chunk.
        const full = gpu.alloc(nq), probs = gpu.alloc(heads * seq * seq);
        gpu.attention(full, probs, gq, gk, gv, 1, seq, heads, kvHeads, headDim, scale);
        assertCloseNoted(await gpu.read(go), await gpu.read(full), `attentionCached-vs-attention ${label}`, 1e-5);
        freeAll([full, probs]);
      }
      freeAll([go, gq, gk, gv]);
    }
    const b = gpu.alloc(64);
    assert.throws(() => gpu.attentionCached(b, b, b, b, 1, 3, 2, 4, 0, 1), /KV heads/);
    assert.throws(() => gpu.attentionCached(b, b, b, b, 1, 2, 1, 4, 20, 1), /kCache/);
    gpu.free(b);
  });

  test("the device reported no errors", async () => {
    await be.gpu.sync();
    console.log("worst |a − b| / (1 + |b|):", Object.fromEntries([...worst].map(([k, v]) => [k, v.toExponential(2)])));
  });
}
