// Quantized execution: Q8_0 / Q4_0 weights kept as ggml blocks and multiplied by directly. The wasm
// kernels against the blockwise JS reference and against dequantize-then-float-matmul; whole models
// against the same model with the weights dequantized to f32; stories260K's greedy text.
import { after, test } from "node:test";
import { Rng } from "../src/util/rng.js";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { type Backend, type BlockQuantType, type Buf, type FloatArray, type QuantType, quantRowBytes } from "../src/backend/backend.js";
import { createBackend } from "../src/backend/index.js";
import { JsBackend } from "../src/backend/js/js-backend.js";
import { WasmBackend, createWasmBackend } from "../src/backend/wasm/wasm-backend.js";
import { relaxedSimdAvailable } from "../src/backend/wasm/kernel-flavour.js";
import { quantizedValues } from "../src/backend/quantized-blocks.js";
import { GgmlType, dequantize, quantize } from "../src/format/ggml-quants.js";
import { MemorySource } from "../src/format/byte-source.js";
import { GgufFile, llamaConfigFromGguf, llamaTensorsFromGguf, llamaToGguf, type GgufQuant } from "../src/io/gguf-llama.js";
import { type LlamaGgufWeights, llamaFromGgufWeights, llamaWeightsFromGguf } from "../src/io/gguf-llama-quantized.js";
import { lazyLlamaFromGguf } from "../src/io/gguf-llama-lazy.js";
import { modelFromTensors, modelTensors } from "../src/io/checkpoint.js";
import { parseLlama2cCheckpoint } from "../src/io/llama2c.js";
import { loadModel } from "../src/io/model-files-node.js";
import type { LlamaConfig } from "../src/nn/config.js";
import { Llama } from "../src/nn/llama.js";
import { Session } from "../src/runtime/session.js";
import { argmax } from "../src/runtime/sample.js";
import { noGrad, scope } from "../src/tensor/tensor.js";
import { quantizeCommand } from "../src/cli/quantize.js";
import { assertBitwise, buf, relErr } from "./kernel-helpers.js";

const wasm = await createWasmBackend({ kernels: "simd" });
const ref = new JsBackend("f64");
const DATA = "../shared/data";
const STORIES = `${DATA}/models/stories260K.bin`;

const GGML: Record<BlockQuantType, GgmlType> = { q8_0: GgmlType.Q8_0, q4_0: GgmlType.Q4_0 };

function rng(seed: number): () => number {
  const r = new Rng(seed);
  return () => r.next();
}
const rand = rng(7);
const randn = (n: number): Float32Array => Float32Array.from({ length: n }, () => rand() * 2 - 1);

// ---- kernels ------------------------------------------------------------------------------------

const shapes: [m: number, n: number, k: number][] = [[1, 33, 64], [1, 7, 32], [1, 128, 288], [3, 17, 96], [5, 64, 128], [8, 9, 256], [2, 1, 32], [4, 4, 512], [6, 300, 64]];

for (const type of ["q8_0", "q4_0"] as const) {
  test(`${type} matmul: wasm = JS reference = dequantize then float matmul`, async () => {
    for (const [m, n, k] of shapes) {
      const w = randn(n * k), x = randn(m * k), c0 = randn(m * n);
      const bytes = quantize(GGML[type], w);
      // Dequantize, then the float reference matmul (f64 sums) of x·Wᵀ.
      const dense = buf(ref, dequantize(GGML[type], bytes, n * k)), xr = buf(ref, x);
      const want = ref.alloc(m * n);
      ref.matmul(want, xr, dense, m, n, k, false, true, false);
      const wantArr = await ref.read(want);
      for (const be of [ref, wasm] as Backend[]) {
        const q = be.allocQuantized(type, n, k, bytes), xb = buf(be, x), c = be.alloc(m * n);
        be.matmulQuantized(c, xb, q, m, n, k, false);
        const got = await be.read(c);
        const tol = be === ref ? 1e-12 : 2e-6;
        assert.ok(relErr(got, wantArr) < tol, `${be.name} ${type} ${m}x${n}x${k}: rel err ${relErr(got, wantArr)}`);
        // accumulate adds to what C held
        be.write(c, c0);
        be.matmulQuantized(c, xb, q, m, n, k, true);
        const acc = await be.read(c), wantAcc = wantArr.map((v, i) => v + c0[i]);
        assert.ok(relErr(acc, wantAcc) < tol * 4, `${be.name} ${type} ${m}x${n}x${k} accumulate: rel err ${relErr(acc, wantAcc)}`);
        be.freeQuantized(q);
        for (const b of [xb, c]) be.free(b);
      }
    }
  });
}

/**
 * llama.cpp's numbers for x·Wᵀ on its integer path: each row of x quantized by ggml's reference
 * quantize_row_q8_0 (the exact bytes, f16 scales), then Σ_b d_w·d_x·Σ_e q_w·q_x in f64.
 */
function llamaCppQ8Matmul(type: BlockQuantType, wBytes: Uint8Array, x: Float32Array, m: number, n: number, k: number): Float64Array {
  const out = new Float64Array(m * n), blocks = k / 32;
  const wv = new Float64Array(32), xv = new Float64Array(32);
  for (let i = 0; i < m; i++) {
    const xq = quantize(GgmlType.Q8_0, x.subarray(i * k, (i + 1) * k));
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let b = 0; b < blocks; b++) {
        const dw = quantizedValues(type, wBytes, j * blocks + b, wv), dx = quantizedValues("q8_0", xq, b, xv);
        let t = 0;
        for (let e = 0; e < 32; e++) t += wv[e] * xv[e];
        s += dw * dx * t;
      }
      out[i * n + j] = s;
    }
  }
  return out;
}

const wasmQ8 = await createWasmBackend({ kernels: "simd", q8Activations: true });

for (const type of ["q8_0", "q4_0"] as const) {
  test(`${type} matvec with Q8_0 activations (wasm, llama.cpp's integer path) = llama.cpp's numerics`, async () => {
    // Decode only (m = 1): prefill takes the float path on this backend too.
    for (const [m, n, k] of shapes) {
      const w = randn(n * k), x = randn(m * k);
      const cpp = m === 1;
      // A block of zeros and a block with one large value: the scale's edge cases.
      if (k >= 64) {
        x.fill(0, 0, 32);
        x[40] = 30;
      }
      const bytes = quantize(GGML[type], w);
      const q = wasmQ8.allocQuantized(type, n, k, bytes), xb = buf(wasmQ8, x), c = wasmQ8.alloc(m * n);
      wasmQ8.matmulQuantized(c, xb, q, m, n, k, false);
      const got = await wasmQ8.read(c), want = llamaCppQ8Matmul(type, bytes, x, m, n, k);
      if (cpp) assert.ok(relErr(got, want) < 2e-6, `${type} ${m}x${n}x${k}: rel err ${relErr(got, want)}`);
      // …and within activation rounding of the float path.
      const exact = ref.alloc(m * n), qr = ref.allocQuantized(type, n, k, bytes), xr = buf(ref, x);
      ref.matmulQuantized(exact, xr, qr, m, n, k, false);
      const exactValues = await ref.read(exact);
      assert.ok(relErr(got, exactValues) < (cpp ? 5e-2 : 2e-6), `${type} ${m}x${n}x${k} vs float: rel err ${relErr(got, exactValues)}`);
      wasmQ8.freeQuantized(q);
      for (const b of [xb, c]) wasmQ8.free(b);
    }
  });
}

test("quantized matrices: shape checks, use after free and double free are errors", () => {
  for (const be of [ref, wasm] as Backend[]) {
    const bytes = quantize(GgmlType.Q8_0, randn(64));
    assert.throws(() => be.allocQuantized("q8_0", 2, 48, bytes), /multiple of 32/);
    assert.throws(() => be.allocQuantized("q8_0", 3, 32, bytes), /needs 102 bytes/);
    const q = be.allocQuantized("q8_0", 2, 32, bytes), x = be.alloc(32), c = be.alloc(2);
    assert.throws(() => be.matmulQuantized(c, x, q, 1, 2, 64, false), /quantized/);
    be.freeQuantized(q);
    assert.throws(() => be.matmulQuantized(c, x, q, 1, 2, 32, false), /after free/);
    assert.throws(() => be.freeQuantized(q), /double free/);
  }
});

// ---- embedding lookup and row writes ------------------------------------------------------------

const GGML_ALL: Record<QuantType, GgmlType> = { ...GGML, f16: GgmlType.F16 };
const wasmRelaxed = (await relaxedSimdAvailable()) ? await createWasmBackend({ kernels: "relaxed" }) : null;
const threaded = await createBackend("wasm", { threads: 2, kernels: "simd" });
after(() => threaded.dispose?.());

/** A table of `rows` random rows whose magnitudes span many binades (f16 scales near zero and large ones). */
function spreadTable(rows: number, cols: number): Float32Array {
  const t = randn(rows * cols);
  for (let r = 0; r < rows; r++) {
    const s = 2 ** ((r % 13) * 3 - 24);
    for (let c = 0; c < cols; c++) t[r * cols + c] *= s;
  }
  return t;
}

for (const type of ["q8_0", "q4_0", "f16"] as const) {
  test(`${type} embedding lookup from the quantized table: every backend = dequantize the whole table, then look up (bitwise)`, async () => {
    const backends = [ref, new JsBackend("f32"), wasm, threaded, ...(wasmRelaxed ? [wasmRelaxed] : [])] as Backend[];
    for (const [rows, cols] of type === "f16" ? [[37, 50], [9, 288], [3, 7]] : [[37, 64], [9, 288], [3, 32]]) {
      const bytes = quantize(GGML_ALL[type], spreadTable(rows, cols));
      const dense = dequantize(GGML_ALL[type], bytes, rows * cols);
      const ids = Int32Array.from([0, rows - 1, 1, 1, rows >> 1, 0, rows - 1]);
      const want = new Float32Array(ids.length * cols);
      for (let i = 0; i < ids.length; i++) want.set(dense.subarray(ids[i] * cols, (ids[i] + 1) * cols), i * cols);
      for (const be of backends) {
        const q = be.allocQuantized(type, rows, cols, bytes), out = be.alloc(ids.length * cols);
        be.embeddingQuantized(out, q, ids);
        assertBitwise(await be.read(out), want, `${be.name}${be === wasmRelaxed ? " relaxed" : ""} ${type} [${rows}, ${cols}]`);
        // The same as the float table's lookup (what a model held before).
        const table = buf(be, dense), out2 = be.alloc(ids.length * cols);
        be.embedding(out2, table, ids, cols);
        assertBitwise(await be.read(out), await be.read(out2), `${be.name} ${type}: = embedding of the dequantized table`);
        assert.throws(() => be.embeddingQuantized(out, q, Int32Array.from([rows])), /out of range/);
        assert.throws(() => be.embeddingQuantized(out, q, Int32Array.from([-1])), /out of range/);
        be.freeQuantized(q);
        assert.throws(() => be.embeddingQuantized(out, q, ids), /after free/);
        for (const b of [out, table, out2]) be.free(b);
      }
    }
  });
}

test("quantized matrices filled by rows (writeQuantized) equal those allocated with their bytes; partial or overflowing writes are refused", async () => {
  for (const be of [ref, wasm, threaded] as Backend[])
    for (const type of ["q8_0", "q4_0", "f16"] as const) {
      const rows = 11, cols = 64, rowBytes = quantRowBytes(type, cols);
      const bytes = quantize(GGML_ALL[type], randn(rows * cols));
      const whole = be.allocQuantized(type, rows, cols, bytes), parts = be.allocQuantized(type, rows, cols);
      // Rows in two pieces, out of order.
      be.writeQuantized(parts, 4, bytes.subarray(4 * rowBytes));
      be.writeQuantized(parts, 0, bytes.subarray(0, 4 * rowBytes));
      const ids = Int32Array.from({ length: rows }, (_, i) => i), a = be.alloc(rows * cols), b = be.alloc(rows * cols);
      be.embeddingQuantized(a, whole, ids);
      be.embeddingQuantized(b, parts, ids);
      assertBitwise(await be.read(b), await be.read(a), `${be.name} ${type}`);
      assert.throws(() => be.writeQuantized(parts, 10, bytes.subarray(0, 2 * rowBytes)), /cannot write/);
      assert.throws(() => be.writeQuantized(parts, 0, bytes.subarray(0, rowBytes + 1)), /cannot write/);
      assert.throws(() => be.writeQuantized(parts, -1, bytes.subarray(0, rowBytes)), /cannot write/);
      for (const q of [whole, parts]) be.freeQuantized(q);
      for (const x of [a, b]) be.free(x);
    }
});

// ---- models -------------------------------------------------------------------------------------

const config: LlamaConfig = {
  vocab_size: 100, hidden_size: 64, intermediate_size: 96, num_hidden_layers: 2,
  num_attention_heads: 4, num_key_value_heads: 2, max_position_embeddings: 32,
  rms_norm_eps: 1e-5, rope_theta: 10000, tie_word_embeddings: false,
};

/** The same GGUF loaded twice on `be`: projections kept quantized, and everything dequantized to f32. */
function bothModels(be: Backend, cfg: LlamaConfig, gguf: Uint8Array): { quantized: Llama; float: Llama } {
  const f = GgufFile.open(new MemorySource(gguf));
  return {
    quantized: llamaFromGgufWeights(be, cfg, llamaWeightsFromGguf(f, cfg)),
    float: modelFromTensors(be, { ...cfg }, llamaTensorsFromGguf(f, cfg)),
  };
}

const logitsOf = (model: Llama, ids: number[]): Promise<FloatArray> =>
  noGrad(() => scope(() => model.forward(Int32Array.from(ids), 1, ids.length).toArray()));

for (const quant of ["q8_0", "q4_0"] as GgufQuant[]) {
  for (const tied of [false, true]) {
    test(`${quant} model${tied ? " (tied embeddings)" : ""}: logits = the dequantized float model's, prefill and decode, both backends`, async () => {
      const cfg = { ...config, tie_word_embeddings: tied };
      const gguf = llamaToGguf(cfg, await modelTensors(Llama.init(new JsBackend("f32"), cfg, 3)), quant);
      const ids = [5, 17, 3, 99, 42, 0, 64];
      for (const be of [wasm, ref] as Backend[]) {
        const { quantized, float } = bothModels(be, cfg, gguf);
        // 7 projections per layer, the embedding (for a tied model also the LM head) and an untied LM head.
        assert.equal(quantized.quantized.size, 7 * cfg.num_hidden_layers + (tied ? 1 : 2));
        assert.ok(relErr(await logitsOf(quantized, ids), await logitsOf(float, ids)) < 1e-4, `${be.name} prefill`);
        const sq = new Session(quantized), sf = new Session(float);
        await sq.prefill(ids.slice(0, 3));
        await sf.prefill(ids.slice(0, 3));
        for (const id of ids.slice(3)) assert.ok(relErr(await sq.decode(id), await sf.decode(id)) < 1e-4, `${be.name} decode`);
        // Recording a graph through quantized weights is refused (no backward pass).
        assert.throws(() => scope(() => quantized.forward(Int32Array.from(ids), 1, ids.length)), /noGrad/);
        for (const x of [sq, sf, quantized, float]) x.dispose();
      }
    });
  }
}

/**
 * The model as Bonsai loaded a quantized GGUF before its embedding stayed quantized: the table
 * dequantized to f32 for the lookup, and for a tied model the LM head on a quantized copy.
 */
function withFloatEmbedding(be: Backend, cfg: LlamaConfig, w: LlamaGgufWeights): Llama {
  const table = w.quantized.get("model.embed_tokens.weight")!;
  const tensors = new Map(w.tensors), quantized = new Map(w.quantized);
  tensors.set("model.embed_tokens.weight", { shape: [...table.shape], data: dequantize(GGML_ALL[table.type], table.bytes, table.shape[0] * table.shape[1]) });
  quantized.delete("model.embed_tokens.weight");
  if (cfg.tie_word_embeddings) quantized.set("lm_head.weight", table);
  return llamaFromGgufWeights(be, cfg, { tensors, quantized });
}

/** Logits of a 7-token prefill (every position), then of 2 decode steps. */
async function sessionLogits(model: Llama): Promise<FloatArray[]> {
  const s = new Session(model);
  try {
    return [await s.prefill([5, 17, 3, 99, 42, 0, 64], { allLogits: true }), await s.decode(7), await s.decode(1999)];
  } finally {
    s.dispose();
  }
}

// A vocabulary large against the layers, so that an f32 table would stand out in backend memory.
const bigVocab: LlamaConfig = { ...config, vocab_size: 2048 };
const ggufDir = mkdtempSync(join(tmpdir(), "bonsai-qembed-"));
after(() => rmSync(ggufDir, { recursive: true, force: true }));

for (const quant of ["q8_0", "q4_0"] as GgufQuant[])
  for (const tied of [false, true])
    test(`${quant}${tied ? " tied" : ""} GGUF: the embedding is looked up in its blocks (no f32 table); logits bitwise as with the dequantized table, eager = lazy, fused and unfused, js and wasm`, async () => {
      const gguf = llamaToGguf({ ...bigVocab, tie_word_embeddings: tied }, await modelTensors(Llama.init(new JsBackend("f32"), { ...bigVocab, tie_word_embeddings: tied }, 9)), quant);
      const path = join(ggufDir, `${quant}-${tied}.gguf`);
      writeFileSync(path, gguf);
      const cfg = llamaConfigFromGguf(GgufFile.open(new MemorySource(gguf))); // as loadModel reads it (eps as f32)
      const f32Table = cfg.vocab_size * cfg.hidden_size;
      for (const be of [await createWasmBackend({ kernels: "simd" }), new JsBackend("f32"), new JsBackend("f64")] as Backend[]) {
        const host = llamaWeightsFromGguf(GgufFile.open(new MemorySource(gguf)), cfg);
        const before = withFloatEmbedding(be, cfg, host);
        const beforeFused = withFloatEmbedding(be, cfg, host);
        beforeFused.fuse({ quantizedBytes: (n) => (n === "lm_head.weight" && tied ? host.quantized.get("model.embed_tokens.weight") : host.quantized.get(n))?.bytes });
        const want = await sessionLogits(before), wantFused = await sessionLogits(beforeFused);
        // What `bonsai generate` loads, with its session, takes less wasm memory than an f32 table would.
        const wasmTop = be instanceof WasmBackend ? be.stats().heapTop : 0;
        const generateDefault = loadModel(path, be, undefined, { quantized: true, fuse: true, lazy: true }).model;
        const first = await sessionLogits(generateDefault);
        if (be instanceof WasmBackend) assert.ok(be.stats().heapTop - wasmTop < 4 * f32Table, `wasm memory grew by ${be.stats().heapTop - wasmTop} bytes`);
        for (let i = 0; i < first.length; i++) assertBitwise(first[i], wantFused[i], `${be.name} ${be.dtype} generate's default load, ${i}`);
        const models = {
          eager: llamaFromGgufWeights(be, cfg, host),
          lazy: lazyLlamaFromGguf(be, GgufFile.open(new MemorySource(gguf)), cfg, { quantized: true }),
          "loadModel eager": loadModel(path, be, undefined, { quantized: true }).model,
          "loadModel eager fused": loadModel(path, be, undefined, { quantized: true, fuse: true }).model,
          "loadModel lazy fused": generateDefault,
        };
        for (const [what, model] of Object.entries(models)) {
          const label: string = `${be.name} ${be.dtype} ${what}`;
          const got = await sessionLogits(model);
          for (let i = 0; i < got.length; i++) assertBitwise(got[i], model.fused ? wantFused[i] : want[i], `${label} ${i === 0 ? "prefill" : `decode ${i}`}`);
          // Held once, as blocks: no float tensor of the table's size, and a tied head is the same weight.
          assert.ok(model.quantized.get("model.embed_tokens.weight") !== undefined, label);
          assert.ok(![...model.params.values()].some((t) => t.size === f32Table), `${label}: an f32 tensor of the embedding's size`);
          assert.equal(model.quantized.has("lm_head.weight"), !tied, label);
          // A quantized embedding has no gradient: recording a graph through it is refused, by name.
          assert.throws(() => scope(() => model.forward(Int32Array.from([1, 2]), 1, 2)), /quantized embedding has no gradient.*noGrad/);
        }
        for (const m of [before, beforeFused, ...Object.values(models)]) m.dispose();
      }
    });

// ---- stories260K ----------------------------------------------------------------------------------

async function greedy(model: Llama, n: number): Promise<number[]> {
  const s = new Session(model);
  const out: number[] = [];
  let next = argmax(await s.prefill([1]));
  for (let i = 0; i < n; i++) {
    out.push(next);
    next = argmax(await s.decode(next));
  }
  s.dispose();
  return out;
}

test("stories260K Q8_0: 200 greedy tokens equal the dequantized float model's", async (t) => {
  if (!existsSync(STORIES)) {
    t.skip("../shared/data absent");
    return;
  }
  const b = readFileSync(STORIES);
  const { config: cfg, tensors } = parseLlama2cCheckpoint(new Uint8Array(b.buffer, b.byteOffset, b.byteLength));
  const { quantized, float } = bothModels(wasm, cfg, llamaToGguf(cfg, tensors, "q8_0"));
  // intermediate_size 172 is not whole 32-blocks: down_proj falls back to F16 (kept as f16), the
  // rest are Q8_0, and the tied LM head runs on the Q8_0 embedding.
  assert.equal(quantized.quantized.size, 7 * cfg.num_hidden_layers + 1);
  for (const [name, w] of quantized.quantized) assert.equal(w.type, name.endsWith("down_proj.weight") ? "f16" : "q8_0", name);
  assert.deepEqual(await greedy(quantized, 200), await greedy(float, 200));
  quantized.dispose();
  float.dispose();
});

test("bonsai quantize writes a Q4_0 GGUF that loadModel runs quantized", async (t) => {
  if (!existsSync(STORIES)) {
    t.skip("../shared/data absent");
    return;
  }
  const dir = mkdtempSync(join(tmpdir(), "bonsai-quant-"));
  try {
    const out = join(dir, "s.gguf");
    const write = process.stderr.write;
    process.stderr.write = () => true; // the command's one-line summary
    try {
      await quantizeCommand(["--model", STORIES, "--quant", "q4_0", "--out", out]);
    } finally {
      process.stderr.write = write;
    }
    const q = loadModel(out, wasm, undefined, { quantized: true }).model;
    const f = loadModel(out, wasm).model;
    assert.equal(q.quantized.size, 7 * q.config.num_hidden_layers + 1); // down_proj: F16, kept as f16
    assert.equal(f.quantized.size, 0);
    assert.ok(relErr(await logitsOf(q, [1, 20, 30]), await logitsOf(f, [1, 20, 30])) < 1e-4);
    await assert.rejects(quantizeCommand(["--model", STORIES, "--quant", "q5_0", "--out", out]), /--quant must be one of q8_0, q4_0/);
    q.dispose();
    f.dispose();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("bonsai generate runs a Q8_0 GGUF quantized with Q8_0 activations by default; --f32-activations text = --dequantize's", (t) => {
  if (!existsSync(STORIES)) {
    t.skip("../shared/data absent");
    return;
  }
  const cli = fileURLToPath(new URL("../src/cli/main.js", import.meta.url));
  const bonsai = (...args: string[]) => spawnSync(process.execPath, [cli, ...args], { encoding: "utf8", timeout: 120_000 });
  const dir = mkdtempSync(join(tmpdir(), "bonsai-quant-"));
  try {
    const gguf = join(dir, "s.gguf");
    const e = bonsai("export", "--model", STORIES, "--tokenizer", `${DATA}/models/tok512.bin`, "--format", "gguf", "--quant", "q8_0", "--out", gguf);
    assert.equal(e.status, 0, e.stderr);
    const run = (...extra: string[]) => bonsai("generate", "--model", gguf, "--temperature", "0", "--max-tokens", "100", ...extra);
    const q = run("--f32-activations"), d = run("--dequantize"), q8 = run();
    for (const r of [q, d, q8]) assert.equal(r.status, 0, r.stderr);
    assert.ok(q.stdout.length > 100);
    assert.equal(q.stdout, d.stdout);
    // llama.cpp's integer path rounds activations: the text is close, not necessarily identical.
    assert.equal(q8.stdout.slice(0, 20), q.stdout.slice(0, 20));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
