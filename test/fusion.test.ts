// Graph folding (nn/fusion.ts): a fused model computes the unfused model's logits — prefill and
// decode through the Session — within rounding, for every head layout (MHA, GQA, MQA), tied and
// untied heads, float and Q8_0 weights, on both backends; stories260K's greedy tokens are the
// same; a fused model refuses training and saving.
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import type { Backend, FloatArray } from "../src/backend/backend.js";
import { createBackend } from "../src/backend/index.js";
import { JsBackend } from "../src/backend/js/js-backend.js";
import { modelTensors, modelFromTensors } from "../src/io/checkpoint.js";
import { GgmlType, quantize } from "../src/format/ggml-quants.js";
import { llamaFromGgufWeights } from "../src/io/gguf-llama-quantized.js";
import type { NamedTensors, QuantizedHostTensor } from "../src/format/host-tensor.js";
import { loadModel } from "../src/io/model-files-node.js";
import type { LlamaConfig } from "../src/nn/config.js";
import { Llama } from "../src/nn/llama.js";
import { generateTokens } from "../src/runtime/generate.js";
import { Session } from "../src/runtime/session.js";
import { Trainer } from "../src/train/trainer.js";
import { Rng } from "../src/util/rng.js";
import { collect } from "./async-helpers.js";

const config = (heads: number, kvHeads: number, tied: boolean): LlamaConfig => ({
  vocab_size: 45, hidden_size: 64, intermediate_size: 96, num_hidden_layers: 2,
  num_attention_heads: heads, num_key_value_heads: kvHeads, max_position_embeddings: 24,
  rms_norm_eps: 1e-5, rope_theta: 10000, tie_word_embeddings: tied,
});
const layouts = [["MHA", 4, 4], ["GQA", 4, 2], ["MQA", 4, 1]] as const;

/** Host weights of a random model whose norm gains are not 1 (so that folding them matters). */
async function hostWeights(cfg: LlamaConfig, seed: number): Promise<NamedTensors> {
  const tensors = await modelTensors(Llama.init(new JsBackend("f32"), cfg, seed));
  const rng = new Rng(seed + 1);
  for (const [, t] of tensors) if (t.shape.length === 1) for (let i = 0; i < t.data.length; i++) t.data[i] = 1 + 0.5 * rng.normal();
  // Larger weights than the init's 0.02, so that the logits are not all near zero.
  for (const [, t] of tensors) if (t.shape.length === 2) for (let i = 0; i < t.data.length; i++) t.data[i] *= 10;
  return tensors;
}

/** The model on `be`: all float, or every projection (not the embedding) as Q8_0 blocks. */
function build(be: Backend, cfg: LlamaConfig, host: NamedTensors, q8: boolean): { model: Llama; bytes: Map<string, QuantizedHostTensor> } {
  if (!q8) return { model: modelFromTensors(be, { ...cfg }, host), bytes: new Map() };
  const tensors: NamedTensors = new Map(), quantized = new Map<string, QuantizedHostTensor>();
  for (const [name, t] of host)
    if (t.shape.length === 2 && name !== "model.embed_tokens.weight")
      quantized.set(name, { type: "q8_0", shape: [t.shape[0], t.shape[1]], bytes: quantize(GgmlType.Q8_0, t.data) });
    else tensors.set(name, t);
  return { model: llamaFromGgufWeights(be, cfg, { tensors, quantized }), bytes: quantized };
}

/** Logits of a 9-token prefill (every position) and of 4 decode steps after it. */
async function sessionLogits(model: Llama): Promise<FloatArray[]> {
  const s = new Session(model);
  try {
    const out = [await s.prefill([3, 1, 4, 1, 5, 9, 2, 6, 5], { allLogits: true })];
    for (const t of [3, 5, 8, 9]) out.push(await s.decode(t));
    return out;
  } finally {
    s.dispose();
  }
}

const backends: [string, () => Promise<Backend>, (worst: number, scale: number) => boolean, string][] = [
  ["js f64", async () => new JsBackend("f64"), (w) => w <= 1e-5, "1e-5"],
  ["wasm", () => createBackend("wasm"), (w, s) => w <= 1e-4 * s, "1e-4 relative"],
];

for (const [bname, make, ok, tolText] of backends)
  for (const [layout, heads, kvHeads] of layouts)
    for (const tied of [false, true])
      for (const q8 of [false, true]) {
        const what = `${bname} ${layout} ${tied ? "tied" : "untied"} ${q8 ? "Q8_0" : "float"}`;
        test(`fused = unfused logits (prefill and decode, ${tolText}): ${what}`, async () => {
          const be = await make();
          const cfg = config(heads, kvHeads, tied);
          const host = await hostWeights(cfg, 7 + heads + kvHeads);
          const plain = build(be, cfg, host, q8).model;
          const { model: fused, bytes } = build(be, cfg, host, q8);
          fused.fuse({ quantizedBytes: (n) => bytes.get(n)?.bytes });
          assert.ok(fused.fused && !plain.fused);
          assert.equal(fused.numParameters(), plain.numParameters());
          // The stacked matrices replaced the separate ones.
          const names = [...fused.parameters().map(([n]) => n), ...fused.quantized.keys()];
          assert.ok(!names.some((n) => /(q|k|v|gate|up)_proj/.test(n)), `unfused projections left: ${names}`);
          const want = await sessionLogits(plain), got = await sessionLogits(fused);
          for (let i = 0; i < want.length; i++) {
            let worst = 0, scale = 0;
            for (let j = 0; j < want[i].length; j++) {
              worst = Math.max(worst, Math.abs(got[i][j] - want[i][j]));
              scale = Math.max(scale, Math.abs(want[i][j]));
            }
            assert.ok(scale > 0.1, "logits of a useful size");
            assert.ok(ok(worst, scale), `${what}, ${i === 0 ? "prefill" : `decode ${i}`}: max |Δ| ${worst} (max |logit| ${scale})`);
          }
          plain.dispose();
          fused.dispose();
        });
      }

test("a fused model refuses training and saving, and fusing twice is a no-op", async () => {
  const be = await createBackend("js");
  const cfg = config(4, 2, false);
  const model = Llama.init(be, cfg, 1);
  model.fuse();
  model.fuse();
  const data = { train: new Int32Array(100), val: new Int32Array(100) };
  const opts = { batchSize: 2, blockSize: 8, iters: 1, lr: 1e-3, minLr: 1e-4, warmup: 0, weightDecay: 0, beta1: 0.9, beta2: 0.99, gradClip: 1, gradAccum: 1, evalInterval: 1, evalIters: 1, seed: 1 };
  assert.throws(() => new Trainer(model, opts, data), /fused for inference.*without fusing/);
  await assert.rejects(modelTensors(model), /fused for inference/);
  model.dispose();
});

const DATA = "../shared/data/models";
const haveStories = existsSync(`${DATA}/stories260K.bin`) && existsSync(`${DATA}/tok512.bin`);

test("stories260K: fused and --no-fuse greedy tokens are identical (wasm, js f32)", { skip: haveStories ? false : `${DATA}/stories260K.bin or tok512.bin absent` }, async () => {
  for (const be of [await createBackend("wasm"), new JsBackend("f32")]) {
    const tokens = async (fuse: boolean): Promise<number[]> => {
      const { model } = loadModel(`${DATA}/stories260K.bin`, be, `${DATA}/tok512.bin`, { fuse });
      assert.equal(model.fused, fuse);
      const ids = await collect(generateTokens(model, [1], { maxTokens: 200, temperature: 0 }));
      model.dispose();
      return ids;
    };
    const plain = await tokens(false);
    assert.equal(plain.length, 200);
    assert.deepEqual(await tokens(true), plain, be.name);
  }
});
