// F16 weight matrices kept as f16 in backend memory (the "f16" QuantType): the js reference and
// the wasm kernels agree on x·Wᵀ with f32 activations; in llama.cpp's numerics mode (wasm
// q8Activations) decoding rounds the activations to f16 and sums exactly as ggml_vec_dot_f16 does
// in llama.cpp's AVX-512 or AVX2 build (f16Order), checked bit for bit against that arithmetic
// written out below; every block of rows
// gives the whole matrix's outputs bitwise (fused matrices, thread splits); and GGUF F16 matrices
// load as f16 weights, eager and lazy, with the float model's logits.
import { test } from "node:test";
import assert from "node:assert/strict";
import type { Backend, Buf, FloatArray } from "../src/backend/backend.js";
import { JsBackend } from "../src/backend/js/js-backend.js";
import { createWasmBackend, type F16Order } from "../src/backend/wasm/wasm-backend.js";
import { GgmlType, quantize } from "../src/format/ggml-quants.js";
import { f16ToF32, f32ToF16 } from "../src/format/float16.js";
import { GgufFile, llamaTensorsFromGguf, llamaToGguf } from "../src/io/gguf-llama.js";
import { llamaFromGgufWeights, llamaWeightsFromGguf } from "../src/io/gguf-llama-quantized.js";
import { lazyLlamaFromGguf } from "../src/io/gguf-llama-lazy.js";
import { MemorySource } from "../src/format/byte-source.js";
import { modelTensors, modelFromTensors } from "../src/io/checkpoint.js";
import type { LlamaConfig } from "../src/nn/config.js";
import { Llama } from "../src/nn/llama.js";
import { Session } from "../src/runtime/session.js";
import { noGrad, scope } from "../src/tensor/tensor.js";
import { QuantizedWeight } from "../src/tensor/quantized-weight.js";
import { Rng } from "../src/util/rng.js";
import { buf, randoms, relErr } from "./kernel-helpers.js";

const js = new JsBackend("f64");
const wasm = await createWasmBackend({ kernels: "simd" });
const wasmQ8 = await createWasmBackend({ kernels: "simd", q8Activations: true });

/** f16 bits of random weights, with zeros, −0, subnormals and the largest finite value mixed in. */
function f16Weights(rng: Rng, n: number): Uint8Array {
  const bits = new Uint16Array(n);
  const special = [0x0000, 0x8000, 0x0001, 0x83ff, 0x0200, 0x7bff, 0xfbff, 0x0400];
  for (let i = 0; i < n; i++) bits[i] = i % 11 === 5 ? special[i % special.length] : f32ToF16((rng.next() * 2 - 1) * 0.5);
  return new Uint8Array(bits.buffer);
}

const values = (bytes: Uint8Array): Float32Array => Float32Array.from(new Uint16Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 2), f16ToF32);

function assertBitwise(actual: FloatArray, expected: FloatArray, what: string): void {
  assert.equal(actual.length, expected.length, `${what}: length`);
  for (let i = 0; i < actual.length; i++)
    if (!Object.is(Math.fround(actual[i]), Math.fround(expected[i]))) assert.fail(`${what}: element ${i} differs: ${actual[i]} vs ${expected[i]}`);
}

/**
 * ggml_vec_dot_f16 (ggml-cpu/vec.cpp), f32 by f32, as the x86 builds run it. AVX-512
 * (GGML_F16_STEP 64, EPR 16): 4 accumulators of 16 lanes over whole steps of 64, GGML_F32x16_REDUCE
 * (x0+x2, x1+x3, their sum, then _mm512_reduce_add_ps's halving tree). AVX/AVX2 (STEP 32, EPR 8):
 * 4 accumulators of 8 lanes over steps of 32, GGML_F32x8_REDUCE (x0+x2, x1+x3, their sum, the two
 * 128-bit halves added, then two _mm_hadd_ps). The leftovers are added in double.
 */
function ggmlVecDotF16(w: Float32Array, x: Float32Array, order: F16Order): number {
  const lanes = order === "avx512" ? 16 : 8, step = 4 * lanes;
  const k = w.length, np = k - (k % step), fr = Math.fround;
  const acc = new Float32Array(step);
  for (let i = 0; i < np; i += step) for (let l = 0; l < step; l++) acc[l] = acc[l] + w[i + l] * x[i + l];
  const z = Float32Array.from({ length: lanes }, (_, l) => fr(acc[l] + acc[2 * lanes + l]) + fr(acc[lanes + l] + acc[3 * lanes + l]));
  let sum: number;
  if (order === "avx512") {
    const h8 = Float32Array.from({ length: 8 }, (_, l) => z[l + 8] + z[l]);
    const h4 = Float32Array.from({ length: 4 }, (_, l) => h8[l + 4] + h8[l]);
    sum = fr(fr(h4[0] + h4[2]) + fr(h4[1] + h4[3]));
  } else {
    const h4 = Float32Array.from({ length: 4 }, (_, l) => z[l] + z[l + 4]);
    sum = fr(fr(h4[0] + h4[1]) + fr(h4[2] + h4[3]));
  }
  for (let i = np; i < k; i++) sum += fr(w[i] * x[i]);
  return fr(sum);
}

/** llama.cpp's x·Wᵀ for F16 W: each activation rounded to f16 (ggml_cpu_fp32_to_fp16), then ggmlVecDotF16. */
function llamaCppF16(wBytes: Uint8Array, x: Float32Array, m: number, n: number, k: number, order: F16Order): Float32Array {
  const w = values(wBytes), xh = Float32Array.from(x, (v) => f16ToF32(f32ToF16(v)));
  const out = new Float32Array(m * n);
  for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) out[i * n + j] = ggmlVecDotF16(w.subarray(j * k, (j + 1) * k), xh.subarray(i * k, (i + 1) * k), order);
  return out;
}

const shapes: [number, number, number][] = [[1, 5, 1], [1, 9, 7], [1, 4, 63], [1, 6, 64], [1, 3, 65], [1, 7, 172], [1, 5, 200], [1, 3, 300], [2, 5, 172], [7, 20, 96], [17, 130, 65]];

test("f16 matmulQuantized with f32 activations: js reference = wasm (1e-6 relative) = the dequantized float product", async () => {
  const rng = new Rng(31);
  for (const [m, n, k] of shapes) {
    const bytes = f16Weights(rng, n * k), x = randoms(rng, m * k), c0 = randoms(rng, m * n);
    const w = values(bytes);
    for (const accumulate of [false, true]) {
      const out: FloatArray[] = [];
      for (const be of [js, wasm] as Backend[]) {
        const q = be.allocQuantized("f16", n, k, bytes), xb = buf(be, x), c = buf(be, c0);
        be.matmulQuantized(c, xb, q, m, n, k, accumulate);
        out.push(await be.read(c));
        be.freeQuantized(q);
        be.free(xb);
        be.free(c);
      }
      // The float product on the f16 values, in f64.
      const want = new Float64Array(m * n);
      for (let i = 0; i < m; i++)
        for (let j = 0; j < n; j++) {
          let s = accumulate ? c0[i * n + j] : 0;
          for (let e = 0; e < k; e++) s += w[j * k + e] * x[i * k + e];
          want[i * n + j] = s;
        }
      assert.ok(relErr(out[0], want) < 1e-12, `js ${m}x${n}x${k}: rel err ${relErr(out[0], want)}`);
      assert.ok(relErr(out[1], out[0]) < 1e-6, `wasm ${m}x${n}x${k} acc=${accumulate}: rel err ${relErr(out[1], out[0])}`);
    }
  }
});

test("f16 matvec in llama.cpp's numerics (wasm q8Activations): bitwise ggml_vec_dot_f16 on f16-rounded activations, in the AVX-512 and the AVX2 build's order", async () => {
  const rng = new Rng(32);
  const wasmQ8Avx = await createWasmBackend({ kernels: "simd", q8Activations: true, f16Order: "avx" });
  for (const [m, n, k] of shapes.filter(([m]) => m === 1)) {
    const bytes = f16Weights(rng, n * k), x = randoms(rng, k, 3);
    // Values that round in every way: ties (to even, up and down), f16 subnormals, f32 subnormals.
    const edge = [1 + 2 ** -11, 1 + 3 * 2 ** -11, -(2 + 2 ** -10), 3e-6, -(2 ** -25), 2 ** -25 + 2 ** -40, 1e-40, 65504, -0];
    for (let i = 0; i < Math.min(k, edge.length); i++) x[(i * 7) % k] = edge[i];
    for (const [order, be] of [["avx", wasmQ8Avx]] as const) {
      const q = be.allocQuantized("f16", n, k, bytes), xb = buf(be, x), c = be.alloc(n);
      be.matmulQuantized(c, xb, q, 1, n, k, false);
      assertBitwise(await be.read(c), llamaCppF16(bytes, x, 1, n, k, order), `1x${n}x${k}, ${order} order`);
      be.free(xb);
      be.free(c);
      be.freeQuantized(q);
    }
    const q = wasmQ8.allocQuantized("f16", n, k, bytes), xb = buf(wasmQ8, x), c = wasmQ8.alloc(n);
    wasmQ8.matmulQuantized(c, xb, q, 1, n, k, false);
    const got = await wasmQ8.read(c);
    assertBitwise(got, llamaCppF16(bytes, x, 1, n, k, "avx512"), `1x${n}x${k}, avx512 order (the default)`);
    // Rounding the activations moves the result by about their relative rounding, 2^−11.
    const exact = wasm.alloc(n), qf = wasm.allocQuantized("f16", n, k, bytes), xf = buf(wasm, x);
    wasm.matmulQuantized(exact, xf, qf, 1, n, k, false);
    const exactValues = await wasm.read(exact);
    assert.ok(relErr(got, exactValues) < 2e-3, `1x${n}x${k} vs f32 activations: ${relErr(got, exactValues)}`);
    for (const b of [xb, c, exact, xf]) (b === xb || b === c ? wasmQ8 : wasm).free(b);
    wasmQ8.freeQuantized(q);
    wasm.freeQuantized(qf);
  }
  // From 65520 up an activation rounds to infinity, as F16C's conversion does.
  const one = new Uint8Array(new Uint16Array([0x3c00]).buffer);
  const q = wasmQ8.allocQuantized("f16", 1, 1, one), c = wasmQ8.alloc(1);
  for (const [x, want] of [[65519, 65504], [65520, Infinity], [-70000, -Infinity], [2 ** -24 * 1.5, 2 ** -23]]) {
    const xb = buf(wasmQ8, [x]);
    wasmQ8.matmulQuantized(c, xb, q, 1, 1, 1, false);
    assert.equal((await wasmQ8.read(c))[0], want, `activation ${x}`);
    wasmQ8.free(xb);
  }
});

test("f16 matvec, both modes: every block of rows gives the whole matrix's outputs bitwise", async () => {
  const rng = new Rng(33);
  for (const be of [wasm, wasmQ8])
    for (const k of [7, 64, 172]) {
      const n = 9, bytes = f16Weights(rng, n * k), x = randoms(rng, k);
      const q = be.allocQuantized("f16", n, k, bytes), xb = buf(be, x), y = be.alloc(n);
      be.matmulQuantized(y, xb, q, 1, n, k, false);
      const whole = await be.read(y);
      for (let lo = 0; lo < n; lo++)
        for (const hi of [lo + 1, n]) {
          // A row starts at any even byte offset: 2k bytes a row.
          const part = be.allocQuantized("f16", hi - lo, k, bytes.subarray(lo * k * 2, hi * k * 2)), yp = be.alloc(hi - lo);
          be.matmulQuantized(yp, xb, part, 1, hi - lo, k, false);
          assertBitwise(await be.read(yp), whole.subarray(lo, hi), `k=${k} rows ${lo}..${hi}`);
          be.freeQuantized(part);
          be.free(yp);
        }
      be.freeQuantized(q);
      be.free(xb);
      be.free(y);
    }
});

test("f16 matrices: any column count; byte counts and bad shapes are checked", () => {
  for (const be of [js, wasm] as Backend[]) {
    const bytes = new Uint8Array(2 * 3 * 5);
    assert.throws(() => be.allocQuantized("f16", 3, 6, bytes), /\[3, 6\] f16 needs 36 bytes, got 30/);
    assert.throws(() => be.allocQuantized("f16", 3, 1.5, bytes), /bad shape/);
    assert.throws(() => be.allocQuantized("q8_0", 1, 5, bytes), /multiple of 32/);
    const q = be.allocQuantized("f16", 3, 5, bytes), x = be.alloc(5), c = be.alloc(3);
    assert.throws(() => be.matmulQuantized(c, x, q, 1, 3, 6, false), /quantized/);
    be.freeQuantized(q);
    assert.throws(() => be.freeQuantized(q), /double free/);
  }
});

// ---- loading ------------------------------------------------------------------------------------

const config: LlamaConfig = {
  vocab_size: 100, hidden_size: 64, intermediate_size: 86, num_hidden_layers: 2,
  num_attention_heads: 4, num_key_value_heads: 2, max_position_embeddings: 32,
  rms_norm_eps: 1e-5, rope_theta: 10000, tie_word_embeddings: false,
};

const logitsOf = (model: Llama, ids: number[]): Promise<FloatArray> => noGrad(() => scope(() => model.forward(Int32Array.from(ids), 1, ids.length).toArray()));

for (const [quant, tied] of [["f16", false], ["f16", true], ["q8_0", true]] as const)
  test(`${quant} GGUF${tied ? " (tied)" : ""} loaded quantized keeps F16 matrices as f16 weights (eager, lazy, fused): the float model's logits`, async () => {
    // intermediate_size 86 is not whole blocks: a q8_0 export stores down_proj as F16, as llama-quantize does.
    const cfg = { ...config, tie_word_embeddings: tied };
    const gguf = llamaToGguf(cfg, await modelTensors(Llama.init(new JsBackend("f32"), cfg, 5)), quant);
    const ids = [1, 17, 3, 99, 42, 0, 64];
    for (const be of [wasm, js] as Backend[]) {
      const f = GgufFile.open(new MemorySource(gguf));
      const weights = llamaWeightsFromGguf(f, cfg);
      const eager = llamaFromGgufWeights(be, cfg, weights);
      const float = modelFromTensors(be, { ...cfg }, llamaTensorsFromGguf(f, cfg));
      const lazy = lazyLlamaFromGguf(be, GgufFile.open(new MemorySource(gguf)), cfg, { quantized: true });
      const fused = llamaFromGgufWeights(be, cfg, weights);
      fused.fuse({ quantizedBytes: (name) => weights.quantized.get(name)?.bytes });
      const want = await logitsOf(float, ids);
      for (const [what, model] of [["eager", eager], ["lazy", lazy], ["fused", fused]] as const) {
        const types = [...model.quantized.entries()].map(([name, w]) => [name, w.type]);
        // The embedding is looked up in its blocks: no float copy of it.
        assert.ok(!model.params.has("model.embed_tokens.weight"), what);
        if (what !== "fused") {
          // 7 projections per layer, the embedding (a tied model's LM head too) and an untied LM head.
          assert.equal(model.quantized.size, 7 * cfg.num_hidden_layers + (tied ? 1 : 2), `${what}: ${JSON.stringify(types)}`);
          for (const [name, type] of types) assert.equal(type, quant === "f16" || name.endsWith("down_proj.weight") ? "f16" : "q8_0", `${what} ${name}`);
        }
        const e = relErr(await logitsOf(model, ids), want);
        assert.ok(e < 1e-4, `${be.name} ${what}: ${e}`);
      }
      // Fusion stacked Q/K/V and gate/up (f16 rows like blocks): left by name are o, down, the
      // embedding and an untied head.
      assert.equal(fused.quantized.size, 2 * cfg.num_hidden_layers + (tied ? 1 : 2));
      for (const w of fused.quantized.values()) assert.ok(w instanceof QuantizedWeight);
      // Decoding through the session: the same numbers as prefill.
      const s = new Session(eager), sf = new Session(float);
      for (const id of ids) assert.ok(relErr(await s.decode(id), await sf.decode(id)) < 1e-4, `${be.name} decode`);
      for (const x of [s, sf, eager, float, lazy, fused]) x.dispose();
    }
  });
