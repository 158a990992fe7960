// Quantization-aware training: fake quantization against ggml's quantize → dequantize (bit for
// bit, on every backend), the straight-through gradients, per-token int8 activations by hand and
// against PyTorch, and a tiny model trained with QAT whose GGUF export holds exactly the weights it
// ran with, so that the exported file's logits are the QAT model's logits.
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import type { Backend, BlockQuantType, FloatArray, QuantType } from "../src/backend/backend.js";
import { JsBackend } from "../src/backend/js/js-backend.js";
import { createWasmBackend } from "../src/backend/wasm/wasm-backend.js";
import { GgmlType, dequantize, quantize } from "../src/format/ggml-quants.js";
import { MemorySource } from "../src/format/byte-source.js";
import { GgufFile, llamaTensorsFromGguf, llamaToGguf } from "../src/io/gguf-llama.js";
import { llamaFromGgufWeights, llamaWeightsFromGguf } from "../src/io/gguf-llama-quantized.js";
import { modelFiles, modelFromFiles, modelFromTensors, modelTensors } from "../src/io/checkpoint.js";
import { parseSafetensors, serializeSafetensors } from "../src/format/safetensors.js";
import { type LlamaConfig, toHfConfigJson } from "../src/nn/config.js";
import { Llama } from "../src/nn/llama.js";
import { Session } from "../src/runtime/session.js";
import { Trainer, type TrainOptions } from "../src/train/trainer.js";
import { splitTrainVal } from "../src/data/batches.js";
import { applyQat, parseQatSetting, qatFile, qatOf, qatTensorNames, readQatFile, QAT_FILE } from "../src/train/qat.js";
import { fakeQuantize, fakeQuantizeActivations, linear, weightedSum } from "../src/tensor/ops.js";
import { fakeQuantizeValues } from "../src/backend/fake-quant.js";
import { Tensor, backward, noGrad, scope } from "../src/tensor/tensor.js";
import { Rng } from "../src/util/rng.js";
import { relErr } from "./kernel-helpers.js";

const wasm = await createWasmBackend({ kernels: "simd" });
const backends: Backend[] = [new JsBackend("f32"), new JsBackend("f64"), wasm];
const GGML: Record<BlockQuantType, GgmlType> = { q8_0: GgmlType.Q8_0, q4_0: GgmlType.Q4_0 };

/** ggml's own round trip: the bytes a GGUF file holds, decoded. */
const viaGgml = (type: BlockQuantType, v: Float32Array): Float32Array => dequantize(GGML[type], quantize(GGML[type], v), v.length);

/** Index of the first element whose bits differ (NaN = NaN, −0 ≠ 0), or −1. */
function firstDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) return 0;
  for (let i = 0; i < a.length; i++) if (!Object.is(a[i], b[i])) return i;
  return -1;
}
function assertBits(got: ArrayLike<number>, want: ArrayLike<number>, what: string): void {
  const i = firstDiff(got, want);
  assert.equal(i, -1, `${what}: element ${i} is ${got[i]}, want ${want[i]}`);
}

/**
 * Blocks meant to break a careless implementation: random values at scales from 1e-9 to 1e6 (f16
 * subnormal scales, scales that overflow f16 to infinity), all-zero blocks, a largest magnitude
 * present with both signs (Q4_0 picks the first), values on exact rounding ties of the block's
 * step, constant blocks, one nonzero value, negative zeros.
 */
function nastyBlocks(rng: Rng, blocks: number): Float32Array {
  const v = new Float32Array(blocks * 32);
  for (let b = 0; b < blocks; b++) {
    const o = b * 32, kind = b % 10;
    const p2 = 2 ** Math.round(rng.next() * 40 - 30); // a power of two: exact scales, exact ties
    const scale = 10 ** (rng.next() * 15 - 9);
    for (let j = 0; j < 32; j++) v[o + j] = scale * rng.normal();
    if (kind === 1) v.fill(0, o, o + 32);
    if (kind === 2) {
      const m = 3 * scale;
      v[o + 5] = -m;
      v[o + 20] = m; // same magnitude, other sign, later
      v[o + 9] = m;
    }
    if (kind === 3) {
      // Q8_0 ties: d = amax/127 = p2 exactly, x/d = k + ½ (roundf: away from zero)
      v[o] = 127 * p2;
      for (let j = 1; j < 32; j++) v[o + j] = (j * 4 - 64 + 0.5) * p2;
    }
    if (kind === 8) {
      // Q4_0 ties: d = max/−8 = p2 exactly, x/d + 8.5 an integer (truncation's edge)
      v[o] = -8 * p2;
      for (let j = 1; j < 32; j++) v[o + j] = ((j % 16) - 8 + 0.5) * p2;
    }
    if (kind === 4) v.fill(scale, o, o + 32);
    if (kind === 5) {
      v.fill(0, o, o + 32);
      v[o + 31] = -scale;
    }
    if (kind === 6) for (let j = 0; j < 32; j += 2) v[o + j] = -0;
    if (kind === 7) v[o + 3] = 1e6 * (rng.next() < 0.5 ? -1 : 1); // 1e6/127 > 65504: the f16 scale is infinite
  }
  return v;
}

test("fakeQuantizeValues equals ggml's quantize → dequantize bit for bit (Q8_0, Q4_0)", () => {
  const rng = new Rng(11);
  const v = nastyBlocks(rng, 4096);
  for (const type of ["q8_0", "q4_0"] as const) assertBits(fakeQuantizeValues(type, v), viaGgml(type, v), type);
  // Plain Gaussian weights, where most of a real model's blocks are.
  const w = Float32Array.from({ length: 1 << 18 }, () => 0.02 * rng.normal());
  for (const type of ["q8_0", "q4_0"] as const) assertBits(fakeQuantizeValues(type, w), viaGgml(type, w), `${type} gaussian`);
  assert.throws(() => fakeQuantizeValues("q4_0", new Float32Array(33)), /33 values are not whole blocks of 32/);
  assert.throws(() => fakeQuantizeValues("q5_0" as QuantType, new Float32Array(32)), /unknown type q5_0/);
});

test("the fakeQuantize op equals ggml's round trip on every backend; f64 values are rounded to f32 first", async () => {
  const rng = new Rng(12);
  const rows = 24, cols = 96;
  const f32 = nastyBlocks(rng, (rows * cols) / 32);
  // For the f64 backend: values off the f32 grid, which the export would round to f32 first.
  const f64 = Float64Array.from(f32, (x) => x * (1 + 1e-12));
  for (const be of backends) {
    const input = be.dtype === "f64" ? f64 : f32;
    for (const type of ["q8_0", "q4_0"] as const) {
      const got = await noGrad(() => scope(() => fakeQuantize(Tensor.from(be, [rows, cols], input), type).toArray()));
      assertBits(got, viaGgml(type, Float32Array.from(input)), `${be.name}/${be.dtype} ${type}`);
    }
  }
  assert.throws(() => fakeQuantize(Tensor.zeros(wasm, [2, 48]), "q8_0"), /rows of 48 are not whole blocks of 32/);
});

test("straight-through gradients: equal to the float path's gradients at the fake-quantized weights", async () => {
  const be = new JsBackend("f64");
  const rng = new Rng(13);
  const [rows, out, inF] = [5, 8, 64];
  const xv = Float64Array.from({ length: rows * inF }, () => rng.normal());
  const wv = Float64Array.from({ length: out * inF }, () => 0.1 * rng.normal());
  const c = Float64Array.from({ length: rows * out }, () => rng.normal());
  for (const type of ["q8_0", "q4_0"] as const) {
    for (const actQuant of [false, true]) {
      // QAT path: loss = Σ c ⊙ (fq(x) · fq(W)ᵀ), gradients to the latent W and x.
      const x = Tensor.from(be, [rows, inF], xv, true), w = Tensor.from(be, [out, inF], wv, true);
      backward(weightedSum(linear(actQuant ? fakeQuantizeActivations(x) : x, fakeQuantize(w, type)), c));
      // Float path evaluated at the fake-quantized values, as leaves.
      const xq = Tensor.from(be, [rows, inF], actQuant ? await noGrad(() => fakeQuantizeActivations(x).toArray()) : xv, true);
      const wq = Tensor.from(be, [out, inF], viaGgml(type, Float32Array.from(wv)), true);
      backward(weightedSum(linear(xq, wq), c));
      assert.deepEqual(await w.gradArray(), await wq.gradArray(), `${type}${actQuant ? " +int8" : ""}: dW`);
      assert.deepEqual(await x.gradArray(), await xq.gradArray(), `${type}${actQuant ? " +int8" : ""}: dx`);
      assert.ok((await w.gradArray())!.some((g) => g !== 0));
    }
  }
});

test("per-token int8 activations: by hand (ties to even, zero rows) and on every backend", async () => {
  const rows = [
    [127, 63.5, -0.5, 1.5, 2.5, 0, -127, 0.49], // s = 1: 63.5 → 64, −0.5 → −0, 1.5 → 2, 2.5 → 2
    [0, 0, 0, 0, 0, 0, 0, 0], // s = 0: stays zero
    [254, 1, 3, -5, -254, 0.99, 127, -1], // s = 2: 0.5 → 0, 1.5 → 2, −2.5 → −2
  ];
  const want = [
    [127, 64, -0, 2, 2, 0, -127, 0],
    [0, 0, 0, 0, 0, 0, 0, 0],
    [254, 0, 4, -4, -254, 0, 128, -0],
  ];
  for (const be of backends) {
    const got = await noGrad(() => scope(() => fakeQuantizeActivations(Tensor.from(be, [3, 8], rows.flat())).toArray()));
    assertBits(got, want.flat(), `${be.name}/${be.dtype}`);
  }
});

// scripts/make_qat_fixture.py: PyTorch's float32 (x / s).round().clamp(-127, 127) * s, s = absmax/127.
const FIXTURE = "test/fixtures/qat_activations.json";
test("per-token int8 activations match PyTorch", { skip: !existsSync(FIXTURE) && `${FIXTURE} missing` }, async () => {
  const fx = JSON.parse(readFileSync(FIXTURE, "utf8")) as { shape: [number, number]; x: number[]; y: number[] };
  for (const be of backends) {
    const got = await noGrad(() => scope(() => fakeQuantizeActivations(Tensor.from(be, fx.shape, fx.x)).toArray()));
    assertBits(got, fx.y, `${be.name}/${be.dtype} vs torch`); // −0 included
  }
});

// ---- a model trained with QAT and exported ---------------------------------------------------------

const config = (tied: boolean): LlamaConfig => ({
  vocab_size: 48, hidden_size: 64, intermediate_size: 96, num_hidden_layers: 2, num_attention_heads: 4,
  num_key_value_heads: 2, max_position_embeddings: 32, rms_norm_eps: 1e-5, rope_theta: 10000, tie_word_embeddings: tied,
});
const options: TrainOptions = {
  batchSize: 4, blockSize: 16, iters: 6, lr: 1e-2, minLr: 1e-3, warmup: 1, weightDecay: 0.1,
  beta1: 0.9, beta2: 0.99, gradClip: 1, gradAccum: 1, evalInterval: 3, evalIters: 1, seed: 4,
};
const dataRng = new Rng(8);
const data = splitTrainVal(Int32Array.from({ length: 2000 }, (_, i) => (i % 7 === 0 ? dataRng.int(48) : (i * 5) % 48)));
const ids = Int32Array.from({ length: 2 * 12 }, (_, i) => (i * 11 + 3) % 48);

const logits = (m: Llama): Promise<FloatArray> => noGrad(() => scope(() => m.forward(ids, 2, 12).toArray()));

for (const [quant, tied] of [["q4_0", true], ["q8_0", false]] as const) {
  test(`QAT ${quant} (${tied ? "tied" : "untied"} head): trained model → GGUF ${quant} holds exactly its weights; the file's logits are its logits`, async () => {
    const be = wasm;
    const cfg = config(tied);
    const model = Llama.init(be, cfg, 3);
    applyQat(model, { weights: quant });
    const floatBefore = await logits(model); // fake-quantized already
    await new Trainer(model, options, data).run(0);

    const names = qatTensorNames(cfg, quant);
    // Every matrix is quantized, the embedding and head included; the norm gains are not.
    assert.deepEqual(names, [...(await modelTensors(model)).keys()].filter((n) => !n.endsWith("norm.weight")));
    const latent = await modelTensors(model); // what a checkpoint holds: the latent float weights
    const file = GgufFile.open(new MemorySource(llamaToGguf(cfg, latent, quant)));
    const exported = llamaTensorsFromGguf(file, cfg);
    for (const [name, t] of latent) {
      const want = names.includes(name) ? viaGgml(quant, t.data) : t.data;
      assertBits(exported.get(name)!.data, want, name);
      if (names.includes(name)) {
        assert.ok(firstDiff(want, t.data) !== -1, `${name}: the latent weights are not already on the grid`);
        // The model itself ran with exactly these numbers.
        const p = model.params.get(name)!;
        assertBits(await noGrad(() => scope(() => fakeQuantize(p, quant).toArray())), want, `${name} in the model`);
      }
    }

    // Eval logits: the GGUF loaded dequantized gives the same numbers (same kernels, same weights).
    const qatLogits = await logits(model);
    assert.ok(firstDiff(qatLogits, floatBefore) !== -1, "training changed the model");
    const dequantized = modelFromTensors(be, toHfConfigJson(cfg), exported);
    assertBits(await logits(dequantized), qatLogits, "dequantized GGUF vs QAT eval");
    // Loaded quantized, the projections run on the blocks: the same weights, sums in another order.
    const quantized = llamaFromGgufWeights(be, cfg, llamaWeightsFromGguf(file, cfg));
    const quantizedErr = relErr(await logits(quantized), qatLogits);
    assert.ok(quantizedErr < 1e-5, `quantized GGUF vs QAT eval: rel err ${quantizedErr}`);
    // The training forward (graph recorded) sees the same network as evaluation.
    const tgt = Int32Array.from(ids, (i) => (i + 1) % 48);
    const trainLoss = await scope(() => model.loss(ids, tgt, 2, 12).item());
    assert.equal(trainLoss, await noGrad(() => scope(() => dequantized.loss(ids, tgt, 2, 12).item())));
    // Inference through a KV-cached session: the same as the dequantized file's session.
    const s1 = new Session(model), s2 = new Session(dequantized);
    assertBits(await s1.prefill([1, 2, 3, 4]), await s2.prefill([1, 2, 3, 4]), "session prefill");
    assertBits(await s1.decode(5), await s2.decode(5), "session decode");
    // Fusing bakes the fake-quantized weights in (norm gains folded: float rounding only).
    model.fuse();
    assert.equal(model.qat, null);
    const fusedErr = relErr(await logits(model), qatLogits);
    assert.ok(fusedErr < 1e-5, `fused QAT model: rel err ${fusedErr}`);
    for (const m of [model, dequantized, quantized]) m.dispose();
    s1.dispose();
    s2.dispose();
  });
}

test("QAT resumes exactly from checkpoint files (latent weights + qat.json + optimizer state); int8 activations train", async () => {
  const be = wasm;
  const cfg = config(true);
  const setting = { weights: "q4_0", activations: "int8" } as const;
  const lossesOf = async (t: Trainer, start: number, stopAt = Infinity): Promise<number[]> => {
    const out: number[] = [];
    await t.run(start, { onStep: (e) => out.push(e.loss), shouldStop: () => start + out.length >= stopAt });
    return out;
  };
  const fullModel = Llama.init(be, cfg, 5);
  applyQat(fullModel, setting);
  const full = await lossesOf(new Trainer(fullModel, options, data), 0);
  assert.ok(full.every(Number.isFinite) && full[full.length - 1] < full[0], `losses ${full}`);

  const model = Llama.init(be, cfg, 5);
  applyQat(model, setting);
  const first = new Trainer(model, options, data);
  const head = await lossesOf(first, 0, 4);
  const files = new Map([...(await modelFiles(model, null)), qatFile(model)!].map((f) => [f.name, f.bytes]));
  const restored = modelFromFiles(be, new TextDecoder().decode(files.get("config.json")!), files.get("model.safetensors")!);
  applyQat(restored, readQatFile(new TextDecoder().decode(files.get(QAT_FILE)!)));
  assert.deepEqual(qatOf(restored)!.setting, setting);
  const second = new Trainer(restored, options, data);
  second.optimizer.loadState(first.optimizer.step, parseSafetensors(serializeSafetensors(await first.optimizer.state())).tensors);
  const tail = await lossesOf(second, 4);
  assert.deepEqual([...head, ...tail], full);
  // int8 activations change the network (the weights-only model differs), and cannot be fused.
  const weightsOnly = modelFromFiles(be, new TextDecoder().decode(files.get("config.json")!), files.get("model.safetensors")!);
  applyQat(weightsOnly, { weights: "q4_0" });
  assert.ok(firstDiff(await logits(weightsOnly), await logits(restored)) !== -1);
  assert.throws(() => restored.fuse(), /int8 activation fake quantization cannot be fused/);
  for (const m of [fullModel, model, restored, weightsOnly]) m.dispose();
  assert.equal(qatFile(Llama.init(be, cfg, 1)), null);
});

test("QAT settings and tensors are validated with one-line errors", () => {
  const be = new JsBackend("f32");
  assert.deepEqual(parseQatSetting({ weights: "q8_0" }), { weights: "q8_0" });
  assert.throws(() => parseQatSetting({ weights: "q5_0" }), /^Error: qat: weights must be q8_0 or q4_0 \(got "q5_0"\)$/);
  assert.throws(() => parseQatSetting({ weights: "q4_0", activations: "int4" }), /qat: activations must be int8 or absent \(got "int4"\)/);
  assert.throws(() => parseQatSetting({ weights: "q4_0", bits: 4 }), /qat: unknown field bits/);
  assert.throws(() => parseQatSetting("q4_0"), /qat: the setting must be an object/);
  assert.throws(() => readQatFile("{"), /qat.json is not valid JSON/);
  // Rows of 48 are not Q4_0 blocks; the exporter would fall back to F16 for that tensor.
  const odd = Llama.init(be, { ...config(false), intermediate_size: 48 }, 1);
  assert.throws(() => applyQat(odd, { weights: "q4_0" }), /^Error: qat: model\.layers\.0\.mlp\.down_proj\.weight has rows of 48 numbers, not whole q4_0 blocks of 32 \(the GGUF export would store it as F16\)$/);
  assert.equal(odd.qat, null);
  const model = Llama.init(be, config(false), 1);
  applyQat(model, { weights: "q8_0" });
  assert.equal(qatOf(model)!.names.size, 2 + 7 * 2);
  applyQat(model, null);
  assert.equal(model.qat, null);
});
