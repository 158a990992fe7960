// Heterogeneous placement (--gpu-layers): a model whose layers live on different backends must
// compute what the same model on one backend computes. Two wasm instances are two backends with
// separate memories and the same kernels, so a split over them must give the single instance's
// logits bit for bit: the hidden state handed across, each layer's KV cache on its own backend,
// fused and quantized weights on the backend of their layer. The GPU split (webgpu + wasm) is in
// webgpu-model.test.ts.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Backend, FloatArray } from "../src/backend/backend.js";
import { createBackend } from "../src/backend/index.js";
import { meanLoss } from "../src/cli/eval.js";
import { modelFromTensors, modelTensors } from "../src/io/checkpoint.js";
import { llamaToGguf } from "../src/io/gguf-llama.js";
import type { LazyWeights } from "../src/io/lazy-weights.js";
import { loadModel } from "../src/io/model-files-node.js";
import { toHfConfigJson, type LlamaConfig } from "../src/nn/config.js";
import { Llama } from "../src/nn/llama.js";
import { type Placement, describePlacement, isSplit, placementOf, splitLayers, stages } from "../src/nn/placement.js";
import { generateTokens } from "../src/runtime/generate.js";
import { Session } from "../src/runtime/session.js";
import { collect } from "./async-helpers.js";
import { bonsai } from "./cli-helpers.js";

const config = (tied: boolean): LlamaConfig => ({
  vocab_size: 61, hidden_size: 64, intermediate_size: 96, num_hidden_layers: 3,
  num_attention_heads: 4, num_key_value_heads: 2, max_position_embeddings: 48,
  rms_norm_eps: 1e-5, rope_theta: 10000, tie_word_embeddings: tied,
});

const gpu = await createBackend("wasm", { threads: 1 });
const cpu = await createBackend("wasm", { threads: 1 });
const named = new Map<Backend, string>([[gpu, "A"], [cpu, "B"]]);

/** Prefill of `prompt`, then decode of each of `next`: every logits row, concatenated. */
async function sessionLogits(model: Llama, prompt: number[], next: number[]): Promise<number[]> {
  const s = new Session(model);
  try {
    const out = [...(await s.prefill(prompt, { allLogits: true }))];
    for (const t of next) out.push(...(await s.decode(t)));
    return out;
  } finally {
    s.dispose();
  }
}

test("splitLayers: llama.cpp's -ngl counting, the first layers on the GPU", () => {
  const p = (n: number | "all") => splitLayers(gpu, cpu, 4, n);
  assert.deepEqual(p(0), { layers: [cpu, cpu, cpu, cpu], ends: cpu });
  assert.deepEqual(p(2), { layers: [gpu, gpu, cpu, cpu], ends: cpu });
  // Every layer, but the embedding and head stay on the CPU until N passes the layer count.
  assert.deepEqual(p(4), { layers: [gpu, gpu, gpu, gpu], ends: cpu });
  assert.deepEqual(p(5), { layers: [gpu, gpu, gpu, gpu], ends: gpu });
  assert.deepEqual(p("all"), p(99));
  assert.equal(isSplit(p(0)), false);
  assert.equal(isSplit(p(4)), true);
  assert.deepEqual(stages(p(2)).map((s) => [named.get(s.backend), s.from, s.to]), [["A", 0, 2], ["B", 2, 4]]);
  assert.equal(describePlacement(p(2), (b) => named.get(b)!), "layers 0–1 on A; layers 2–3, embedding and head on B");
  assert.equal(describePlacement(splitLayers(gpu, cpu, 2, 1), (b) => named.get(b)!), "layer 0 on A; layer 1, embedding and head on B");
  assert.throws(() => p(-1), /placement: the number of GPU layers must be a whole number ≥ 0 or "all" \(got -1\)/);
  assert.throws(() => p(1.5), /whole number/);
  assert.throws(() => placementOf(p(2), 3), /placement: 4 layers placed, the model has 3/);
});

for (const tied of [false, true]) {
  test(`a model split over two backends gives one backend's logits bit for bit (${tied ? "tied" : "untied"}; float, fused, eval, generation)`, async () => {
    const c = config(tied);
    const trained = Llama.init(gpu, c, 7);
    const tensors = await modelTensors(trained);
    trained.dispose();
    const prompt = [1, 5, 9, 14, 2, 33, 60, 0], next = [7, 7, 41, 3];
    for (const n of [1, 2, 3]) {
      const one = modelFromTensors(cpu, toHfConfigJson(c), tensors);
      const split = modelFromTensors(splitLayers(gpu, cpu, c.num_hidden_layers, n), toHfConfigJson(c), tensors);
      assert.equal(split.backend, cpu, "logits come out where the head is");
      const where = [...split.params].filter(([name]) => name.startsWith("model.layers.0.")).map(([, t]) => t.backend);
      assert.ok(where.every((b) => b === gpu), "layer 0 is on the GPU side");
      assert.deepEqual(await sessionLogits(split, prompt, next), await sessionLogits(one, prompt, next), `unfused, ${n} layers split off`);
      const tokens = Int32Array.from({ length: 200 }, (_, i) => (i * 17 + 3) % c.vocab_size);
      assert.equal(await meanLoss(split, tokens, 32, 3), await meanLoss(one, tokens, 32, 3));
      one.fuse();
      split.fuse();
      assert.deepEqual(await sessionLogits(split, prompt, next), await sessionLogits(one, prompt, next), `fused, ${n} layers split off`);
      const greedy = (m: Llama) => collect(generateTokens(m, prompt, { maxTokens: 30, temperature: 0, seed: 1 }));
      assert.deepEqual(await greedy(split), await greedy(one));
      one.dispose();
      split.dispose();
    }
  });
}

test("quantized GGUF weights, read lazily and fused, land on the backend of their layer", async () => {
  const c = config(false);
  const trained = Llama.init(gpu, c, 11);
  const dir = mkdtempSync(join(tmpdir(), "bonsai-placement-"));
  const path = join(dir, "m.gguf");
  writeFileSync(path, llamaToGguf(c, await modelTensors(trained), "q8_0"));
  trained.dispose();
  const opts = { quantized: true, fuse: true, lazy: true };
  const one = loadModel(path, cpu, undefined, opts).model;
  const split = loadModel(path, (layers) => splitLayers(gpu, cpu, layers, 2), undefined, opts).model;
  assert.ok([...split.quantized.values()].some((w) => w.type === "q8_0"));
  assert.ok((split.deferred as LazyWeights).pendingParts > 0, "still lazy after fusion");
  const prompt = [3, 1, 4, 1, 5, 9, 2, 6];
  assert.deepEqual(await sessionLogits(split, prompt, [5, 3]), await sessionLogits(one, prompt, [5, 3]));
  one.dispose();
  split.dispose();
});

test("a split model refuses what needs one backend, with clear errors", async () => {
  const c = config(false);
  const trained = Llama.init(gpu, c, 3);
  const tensors = await modelTensors(trained);
  const place: Placement = splitLayers(gpu, cpu, 3, 1);
  const split = modelFromTensors(place, toHfConfigJson(c), tensors);
  const ids = Int32Array.from([1, 2, 3]);
  // A graph cannot cross backends: training runs on one (forward, loss and so the Trainer).
  assert.throws(() => split.forward(ids, 1, 3), /^Error: forward: the model spans backends \(layer 0 on wasm; layers 1–2, embedding and head on wasm\); run it with forwardAcross \(inference only\)$/);
  assert.throws(() => split.loss(ids, Int32Array.from([2, 3, 4]), 1, 3), /spans backends/);
  // Parameters must sit where the placement says.
  assert.throws(() => new Llama(place, c, trained.params), /^Error: model: parameter model\.embed_tokens\.weight is on wasm, its place is wasm$/);
  // The pass still works after the refusals.
  const logits: FloatArray = await (await split.forwardAcross(ids, 1, 3, { lastOnly: true })).toArray();
  assert.equal(logits.length, c.vocab_size);
  trained.dispose();
  split.dispose();
});

test("CLI: --gpu-layers needs --backend webgpu and a count or all", () => {
  const bad = (args: string[], message: RegExp) => {
    const r = bonsai("generate", "--model", "nonexistent", ...args);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, message);
  };
  bad(["--gpu-layers", "2"], /--gpu-layers applies to --backend webgpu \(got wasm\)/);
  bad(["--backend", "webgpu", "--gpu-layers", "two"], /--gpu-layers must be a whole number ≥ 0 or all \(got "two"\)/);
  bad(["--backend", "webgpu", "--gpu-layers=-1"], /--gpu-layers must be a whole number ≥ 0 or all \(got "-1"\)/);
  const r = bonsai("eval", "--model", "nonexistent", "--gpu-layers", "1", "--backend", "js");
  assert.equal(r.code, 2);
  assert.match(r.stderr, /--gpu-layers applies to --backend webgpu \(got js\)/);
});
