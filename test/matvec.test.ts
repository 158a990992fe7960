// The decode-time matrix-vector products of the wasm backend (x·Wᵀ with one row of x, float and
// quantized with Q8_0 activations) compute each output from its own row of W alone, with the same
// arithmetic wherever that row lies: any block of rows multiplied on its own gives bitwise the
// same outputs as inside the whole matrix. That is what makes fused matrices (Q, K and V stacked
// into one) and thread splits at any row exact, and it is checked here at every offset, along
// with the values themselves against an f64 reference.
import { test } from "node:test";
import assert from "node:assert/strict";
import type { Backend, Buf, FloatArray } from "../src/backend/backend.js";
import { QUANT_BLOCK_BYTES } from "../src/backend/backend.js";
import { createWasmBackend } from "../src/backend/wasm/wasm-backend.js";
import { GgmlType, quantize } from "../src/format/ggml-quants.js";
import { Rng } from "../src/util/rng.js";
import { assertBitwise, buf, randoms } from "./kernel-helpers.js";

const wasm = await createWasmBackend({ kernels: "simd" });
const wasmQ8 = await createWasmBackend({ kernels: "simd", q8Activations: true });

test("float matvec: every block of rows gives the whole matrix's outputs bitwise, and Σ x·w to f32 rounding", async () => {
  const rng = new Rng(21);
  for (const k of [1, 3, 4, 15, 16, 17, 33, 48, 288])
    for (const n of [1, 5, 13]) {
      const w = randoms(rng, n * k), x = randoms(rng, k);
      const wb = buf(wasm, w), xb = buf(wasm, x), y = wasm.alloc(n);
      wasm.matmul(y, xb, wb, 1, n, k, false, true, false);
      const whole = await wasm.read(y);
      for (let j = 0; j < n; j++) {
        let s = 0, mag = 0;
        for (let p = 0; p < k; p++) {
          s += x[p] * w[j * k + p];
          mag += Math.abs(x[p] * w[j * k + p]);
        }
        assert.ok(Math.abs(whole[j] - s) <= 1e-6 * mag + 1e-30, `${n}x${k} row ${j}: ${whole[j]} vs ${s}`);
      }
      for (let lo = 0; lo < n; lo++)
        for (const hi of [lo + 1, n]) {
          const part = buf(wasm, w.subarray(lo * k, hi * k)), yp = wasm.alloc(hi - lo);
          wasm.matmul(yp, xb, part, 1, hi - lo, k, false, true, false);
          assertBitwise(await wasm.read(yp), whole.subarray(lo, hi), `${n}x${k} rows ${lo}..${hi}`);
          // Accumulating adds the same values to what is there.
          wasm.matmul(yp, xb, part, 1, hi - lo, k, false, true, true);
          assertBitwise(await wasm.read(yp), Float32Array.from(whole.subarray(lo, hi), (v) => Math.fround(v + v)), `${n}x${k} rows ${lo}..${hi} accumulated`);
          wasm.free(part);
          wasm.free(yp);
        }
      for (const b of [wb, xb, y]) wasm.free(b);
    }
});

test("quantized matvec with Q8_0 activations: every block of rows gives the whole matrix's outputs bitwise", async () => {
  const rng = new Rng(22);
  for (const [type, ggml] of [["q8_0", GgmlType.Q8_0], ["q4_0", GgmlType.Q4_0]] as const)
    for (const k of [32, 96, 288])
      for (const n of [1, 6, 11]) {
        const bytes = quantize(ggml, randoms(rng, n * k)), x = randoms(rng, k);
        const rowBytes = (k / 32) * QUANT_BLOCK_BYTES[type];
        const q = wasmQ8.allocQuantized(type, n, k, bytes), xb = buf(wasmQ8, x), y = wasmQ8.alloc(n);
        wasmQ8.matmulQuantized(y, xb, q, 1, n, k, false);
        const whole = await wasmQ8.read(y);
        for (let lo = 0; lo < n; lo++) {
          const hi = n - (lo % 2); // blocks ending at the last row and one before it
          if (hi <= lo) continue;
          const part = wasmQ8.allocQuantized(type, hi - lo, k, bytes.subarray(lo * rowBytes, hi * rowBytes)), yp = wasmQ8.alloc(hi - lo);
          wasmQ8.matmulQuantized(yp, xb, part, 1, hi - lo, k, false);
          assertBitwise(await wasmQ8.read(yp), whole.subarray(lo, hi), `${type} ${n}x${k} rows ${lo}..${hi}`);
          wasmQ8.freeQuantized(part);
          wasmQ8.free(yp);
        }
        wasmQ8.freeQuantized(q);
        for (const b of [xb, y]) wasmQ8.free(b);
      }
});

test("a few rows at once (≤ 16: verification of drafted tokens) give each row's one-row result bitwise", async () => {
  const { createBackend } = await import("../src/backend/index.js");
  const { Llama } = await import("../src/nn/llama.js");
  const { Session } = await import("../src/runtime/session.js");
  const rng = new Rng(5);
  for (const k of [7, 64, 288]) {
    const n = 19, m = 9;
    const w = randoms(rng, n * k), x = randoms(rng, m * k);
    const W = buf(wasm, w), X = buf(wasm, x), Y = wasm.alloc(m * n), y1 = wasm.alloc(n), x1 = wasm.alloc(k);
    wasm.matmul(Y, X, W, m, n, k, false, true, false);
    const all = await wasm.read(Y);
    for (let i = 0; i < m; i++) {
      wasm.write(x1, x.subarray(i * k, (i + 1) * k));
      wasm.matmul(y1, x1, W, 1, n, k, false, true, false);
      assertBitwise(all.subarray(i * n, (i + 1) * n), await wasm.read(y1), `k ${k} row ${i}`);
    }
    for (const b of [W, X, Y, y1, x1]) wasm.free(b);
  }
  // A whole model: prefill of 9 tokens after a prompt == decoding them one by one, 1 and 2 threads.
  for (const threads of [1, 2]) {
    const be = await createBackend("wasm", { threads });
    const config = { vocab_size: 97, hidden_size: 64, intermediate_size: 160, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, max_position_embeddings: 64, rms_norm_eps: 1e-5, rope_theta: 10000, tie_word_embeddings: false };
    const model = Llama.init(be, config, 3);
    const tokens = [1, 5, 9, 33, 2, 71, 40, 12, 8, 90, 3, 17, 60];
    const a = new Session(model), b = new Session(model);
    await a.prefill(tokens.slice(0, 4));
    await b.prefill(tokens.slice(0, 4));
    const rows = await a.prefill(tokens.slice(4), { allLogits: true });
    for (let i = 4; i < tokens.length; i++) assertBitwise(rows.subarray((i - 4) * 97, (i - 3) * 97), await b.decode(tokens[i]), `${threads} threads, position ${i}`);
    model.dispose();
    be.dispose?.();
  }
});
