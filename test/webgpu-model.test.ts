// Whole models on the WebGPU backend (SwiftShader here): llama2.c's stories260K gives run.c's greedy
// text, llama.cpp's llama-2-tiny-random.gguf gives llama.cpp's log-probabilities, quantized GGUFs
// run with their blocks on the GPU, training follows the wasm backend's losses, and speculative
// decoding keeps the target's output.
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createBackend } from "../src/backend/index.js";
import { loadModel } from "../src/io/model-files-node.js";
import { splitLayers } from "../src/nn/placement.js";
import { Llama } from "../src/nn/llama.js";
import type { LlamaConfig } from "../src/nn/config.js";
import { Trainer, type TrainOptions } from "../src/train/trainer.js";
import { splitTrainVal } from "../src/data/batches.js";
import { generateTokens } from "../src/runtime/generate.js";
import { speculativeTokens } from "../src/runtime/speculative.js";
import { Rng } from "../src/util/rng.js";
import { openWithLlamaCpp } from "./llama-cpp.js";
import { bonsai } from "./cli-helpers.js";
import { collect } from "./async-helpers.js";
import { webgpuBackend } from "./webgpu.js";
import { logSoftmax } from "./log-probs.js";

const DATA = "../shared/data";
const gpu = await webgpuBackend();
const wasm = await createBackend("wasm", { kernels: "simd" });


/** log-softmax at every position of one sequence, one forward pass. */
async function logProbs(model: Llama, tokens: number[]): Promise<Float64Array[]> {
  const V = model.config.vocab_size;
  // forwardAcross: the model may span backends.
  const out = await model.forwardAcross(Int32Array.from(tokens), 1, tokens.length);
  const logits = await out.toArray();
  out.dispose();
  return tokens.map((_, t) => logSoftmax(logits.subarray(t * V, (t + 1) * V)));
}

/** Largest |a − b| over positions and tokens (tokens llama.cpp rounds to −∞ or below e^−20 left out). */
function maxDiff(a: Float64Array[], b: Float64Array[]): number {
  let worst = 0;
  a.forEach((row, t) => row.forEach((x, j) => {
    if (Number.isFinite(b[t][j]) && b[t][j] > -20) worst = Math.max(worst, Math.abs(x - b[t][j]));
  }));
  return worst;
}

if (typeof gpu === "string") {
  test("webgpu models", { skip: gpu }, () => {});
} else {
  test(`webgpu adapter: ${gpu.adapterName}`, () => {
    assert.equal(gpu.name, "webgpu");
  });

  test("stories260K on --backend webgpu: the greedy text of llama2.c's run.c", (t) => {
    const bin = join(DATA, "models/stories260K.bin");
    if (!existsSync(bin)) return t.skip("../shared/data absent");
    const expected = readFileSync(join(DATA, "models/stories260K.expected-greedy.txt"), "utf8").replace(/\n$/, "");
    // The CLI end to end: lazy load, fused weights (gains folded on the GPU), KV-cached decode.
    const r = bonsai("generate", "--model", bin, "--tokenizer", join(DATA, "models/tok512.bin"), "--backend", "webgpu", "--temperature", "0", "--max-tokens", "200", "--stats");
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.replace(/\n$/, ""), expected);
    assert.match(r.stderr, /"backend":"webgpu"/);
  });

  test("generate --backend webgpu --gpu-layers 3: stories260K's first 3 layers on the GPU, the rest and the head on wasm, run.c's text", (t) => {
    const bin = join(DATA, "models/stories260K.bin");
    if (!existsSync(bin)) return t.skip("../shared/data absent");
    const expected = readFileSync(join(DATA, "models/stories260K.expected-greedy.txt"), "utf8");
    const r = bonsai("generate", "--model", bin, "--tokenizer", join(DATA, "models/tok512.bin"), "--backend", "webgpu", "--gpu-layers", "3", "--threads", "1", "--temperature", "0", "--max-tokens", "80", "--stats");
    assert.equal(r.code, 0, r.stderr);
    const text = r.stdout.replace(/\n$/, "");
    assert.ok(text.length > 200 && expected.startsWith(text), `not a prefix of the expected text: ${JSON.stringify(text)}`);
    assert.match(r.stderr, /"placement":"layers 0–2 on webgpu \([^)]*\); layers 3–4, embedding and head on wasm, [a-z0-9]+ kernels, 1 thread"/);
  });

  test("generate --backend webgpu --draft-backend wasm: a CPU draft for a GPU target keeps the target's greedy text", (t) => {
    const bin = join(DATA, "models/stories260K.bin");
    if (!existsSync(bin)) return t.skip("../shared/data absent");
    const expected = readFileSync(join(DATA, "models/stories260K.expected-greedy.txt"), "utf8");
    const tok = join(DATA, "models/tok512.bin");
    // The model drafts for itself (every draft accepted): the target verifies 4 tokens per pass.
    const r = bonsai("generate", "--model", bin, "--tokenizer", tok, "--backend", "webgpu", "--draft", bin, "--draft-backend", "wasm", "--draft-tokens", "3", "--threads", "1", "--temperature", "0", "--max-tokens", "40");
    assert.equal(r.code, 0, r.stderr);
    const text = r.stdout.replace(/\n$/, "");
    assert.ok(text.length > 100 && expected.startsWith(text), `not a prefix of the expected text: ${JSON.stringify(text)}`);
    // Drafts from the same weights on another device: accepted but at near-ties of the two numerics.
    const perPass = Number(/([\d.]+) tokens per target pass/.exec(r.stderr)?.[1]);
    assert.ok(perPass >= 3, `${perPass} tokens per target pass (${r.stderr.trim()})`);
    const bad = bonsai("generate", "--model", bin, "--tokenizer", tok, "--draft", "ngram", "--draft-backend", "wasm");
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /--draft-backend does not apply to --draft ngram/);
  });

  test("llama.cpp's llama-2-tiny-random.gguf on webgpu: llama.cpp's log-probabilities, float and with F16 weights on the GPU", async (t) => {
    const path = join(DATA, "models/llama-2-tiny-random.gguf");
    if (!existsSync(path)) return t.skip("../shared/data absent");
    const { model, tokenizer } = loadModel(path, gpu);
    const f16 = loadModel(path, gpu, undefined, { quantized: true, fuse: true }).model;
    const reference = loadModel(path, wasm).model;
    // --gpu-layers 1: the first layer on the GPU, the rest, the embedding and the head on wasm.
    const split = loadModel(path, (n) => splitLayers(gpu, wasm, n, 1), undefined, { quantized: true, fuse: true, lazy: true }).model;
    const cpp = await openWithLlamaCpp(path);
    try {
      const tokens = tokenizer!.encode("Hello world, this is a small test of the tiny random model.", { addBos: true });
      const theirs = await cpp.logProbs(tokens, model.config.vocab_size);
      const ours = await logProbs(model, tokens), onWasm = await logProbs(reference, tokens), quantized = await logProbs(f16, tokens);
      const d = maxDiff(ours, theirs), dq = maxDiff(quantized, theirs), dw = maxDiff(ours, onWasm), ds = maxDiff(await logProbs(split, tokens), theirs);
      t.diagnostic(`max |Δ log p| vs llama.cpp: float ${d.toExponential(2)}, f16 weights ${dq.toExponential(2)}, split over webgpu and wasm ${ds.toExponential(2)}; vs wasm ${dw.toExponential(2)}`);
      assert.ok(ds < 1e-4, `split: log-probabilities differ from llama.cpp's by ${ds}`);
      assert.ok(d < 1e-4, `float: log-probabilities differ from llama.cpp's by ${d}`);
      assert.ok(dq < 1e-4, `f16 weights: log-probabilities differ from llama.cpp's by ${dq}`);
      assert.ok(dw < 1e-5, `webgpu and wasm differ by ${dw}`);
      assert.deepEqual([...new Set([...f16.quantized.values()].map((w) => w.type))], ["f16"]);
    } finally {
      await cpp.dispose();
      for (const m of [model, f16, reference, split]) m.dispose();
    }
  });

  test("stories260K exported to Q8_0 and Q4_0 GGUF: the blocks run on the GPU with the wasm backend's float logits", async (t) => {
    const bin = join(DATA, "models/stories260K.bin");
    if (!existsSync(bin)) return t.skip("../shared/data absent");
    const dir = mkdtempSync(join(tmpdir(), "bonsai-webgpu-"));
    for (const quant of ["q8_0", "q4_0"]) {
      const out = join(dir, `stories260K-${quant}.gguf`);
      const r = bonsai("export", "--model", bin, "--tokenizer", join(DATA, "models/tok512.bin"), "--format", "gguf", "--quant", quant, "--out", out);
      assert.equal(r.code, 0, r.stderr);
      const onGpu = loadModel(out, gpu, undefined, { quantized: true, fuse: true, lazy: true }).model;
      const onWasm = loadModel(out, wasm, undefined, { quantized: true, fuse: true, lazy: true }).model;
      assert.ok([...onGpu.quantized.values()].some((w) => w.type === quant), `${quant} blocks are held quantized`);
      const tokens = [1, 403, 407, 261, 378, 429, 270, 124, 13, 275];
      const d = maxDiff(await logProbs(onGpu, tokens), await logProbs(onWasm, tokens));
      t.diagnostic(`${quant}: max |Δ log p| webgpu vs wasm (float activations) ${d.toExponential(2)}`);
      assert.ok(d < 1e-4, `${quant}: webgpu and wasm differ by ${d}`);
      onGpu.dispose();
      onWasm.dispose();
    }
  });

  test("50 training steps on webgpu follow wasm's losses within 1e-4 (GQA, untied, dropout, grad accumulation and clipping)", async () => {
    const config: LlamaConfig = {
      vocab_size: 48, hidden_size: 32, intermediate_size: 64, num_hidden_layers: 2, num_attention_heads: 4,
      num_key_value_heads: 2, max_position_embeddings: 32, rms_norm_eps: 1e-5, rope_theta: 10000, tie_word_embeddings: false, dropout: 0.1,
    };
    const options: TrainOptions = {
      batchSize: 2, blockSize: 16, iters: 50, lr: 3e-3, minLr: 3e-4, warmup: 5, weightDecay: 0.1,
      beta1: 0.9, beta2: 0.99, gradClip: 1, gradAccum: 2, evalInterval: 25, evalIters: 2, seed: 4,
    };
    const rng = new Rng(8);
    const data = splitTrainVal(Int32Array.from({ length: 4000 }, (_, i) => (i % 7 === 0 ? rng.int(48) : (i * 5) % 48)));
    const run = async (be: typeof wasm): Promise<{ losses: number[]; norms: number[]; val: number[] }> => {
      const out = { losses: [] as number[], norms: [] as number[], val: [] as number[] };
      const model = Llama.init(be, config, 11);
      await new Trainer(model, options, data).run(0, { onStep: (e) => (out.losses.push(e.loss), out.norms.push(e.gradNorm)), onEval: (e) => out.val.push(e.val) });
      model.dispose();
      return out;
    };
    const a = await run(gpu), b = await run(wasm);
    assert.equal(a.losses.length, 50);
    const rel = (x: number[], y: number[]): number => Math.max(...x.map((v, i) => Math.abs(v - y[i]) / Math.abs(y[i])));
    assert.ok(b.losses[49] < b.losses[0] - 0.3, "the run learns");
    assert.ok(rel(a.losses, b.losses) < 1e-4, `losses differ by ${rel(a.losses, b.losses)} relative`);
    assert.ok(rel(a.val, b.val) < 1e-4, `validation losses differ by ${rel(a.val, b.val)} relative`);
    assert.ok(rel(a.norms, b.norms) < 1e-3, `gradient norms differ by ${rel(a.norms, b.norms)} relative`);
  });

  test("generation on webgpu: greedy and top-k tokens as on wasm, 8 bytes read back per greedy token; speculative decoding: the target's greedy output, with a draft model and with prompt lookup", async () => {
    const cfg = (dim: number, layers: number): LlamaConfig => ({
      vocab_size: 64, hidden_size: dim, intermediate_size: 2 * dim, num_hidden_layers: layers, num_attention_heads: 4,
      num_key_value_heads: 2, max_position_embeddings: 96, rms_norm_eps: 1e-5, rope_theta: 10000, tie_word_embeddings: true,
    });
    const target = Llama.init(gpu, cfg(32, 2), 3), draft = Llama.init(gpu, cfg(16, 1), 4);
    const prompt = [1, 5, 9, 5, 9, 5];
    const read = gpu.gpu.traffic.download;
    const want = await collect(generateTokens(target, prompt, { temperature: 0, maxTokens: 40 }));
    // Greedy decoding reads back the argmax alone (readTopK): 8 bytes per pass, not the row.
    assert.equal(gpu.gpu.traffic.download - read, 8 * 40, "bytes read back for 40 greedy tokens");
    const onWasm = Llama.init(wasm, cfg(32, 2), 3);
    assert.deepEqual(await collect(generateTokens(onWasm, prompt, { temperature: 0, maxTokens: 40 })), want, "the same greedy tokens as wasm");
    const sampled = { temperature: 0.9, topK: 8, topP: 0.9, maxTokens: 40, seed: 5 };
    assert.deepEqual(await collect(generateTokens(target, prompt, sampled)), await collect(generateTokens(onWasm, prompt, sampled)), "top-k sampling as on wasm");
    onWasm.dispose();
    for (const d of [draft, "ngram" as const]) {
      const got = await collect(speculativeTokens(target, prompt, { temperature: 0, maxTokens: 40, speculative: { draft: d, draftTokens: 3 } }));
      assert.deepEqual(got, want, `draft ${d === "ngram" ? "ngram" : "model"}`);
    }
    target.dispose();
    draft.dispose();
  });

  test("bad input on webgpu: clear errors, the backend keeps working", async () => {
    const b = gpu.alloc(4);
    await assert.rejects(gpu.read(b, 2, 3), /read of 3 at 2 overflows buffer of 4/);
    assert.throws(() => gpu.alloc(gpu.gpu.maxBinding / 4 + 1), /exceeds this adapter's largest storage binding/);
    gpu.free(b);
    assert.throws(() => gpu.free(b), /double free/);
    const c = gpu.alloc(2);
    gpu.fill(c, 7);
    assert.deepEqual([...(await gpu.read(c))], [7, 7]);
    gpu.free(c);
  });
}
