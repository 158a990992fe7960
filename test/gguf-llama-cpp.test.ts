// GGUF both ways, refereed by llama.cpp: files Bonsai writes are loaded by llama.cpp and agree
// with Bonsai token for token; a file llama.cpp's tools wrote loads in Bonsai with the same logits.
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { createBackend } from "../src/backend/index.js";
import type { Backend } from "../src/backend/backend.js";
import { loadModel } from "../src/io/model-files-node.js";
import { modelTensors } from "../src/io/checkpoint.js";
import { type GgufQuant, llamaToGguf } from "../src/io/gguf-llama.js";
import { tokenizerToGgufMetadata } from "../src/tokenizer/gguf-vocab.js";
import { Llama } from "../src/nn/llama.js";
import { noGrad, scope } from "../src/tensor/tensor.js";
import { generateTokens } from "../src/runtime/generate.js";
import { llamaCppCpu, openWithLlamaCpp, type LlamaCppCpu } from "./llama-cpp.js";
import { accumulateF16 } from "./llama-cpp-numerics.js";
import { collect } from "./async-helpers.js";
import { decodeLogProbs, logProbDiffs, logSoftmax, maxLogProbDiff } from "./log-probs.js";

const DATA = "../shared/data";
const CLI = fileURLToPath(new URL("../src/cli/main.js", import.meta.url));
const tmp = mkdtempSync(join(tmpdir(), "bonsai-gguf-"));

/** log-softmax of Bonsai's logits at every position of one sequence. */
async function bonsaiLogProbs(model: Llama, tokens: number[]): Promise<Float64Array[]> {
  const V = model.config.vocab_size;
  const logits = await noGrad(() => scope(() => model.forward(Int32Array.from(tokens), 1, tokens.length).toArray()));
  const out: Float64Array[] = [];
  for (let t = 0; t < tokens.length; t++) {
    const row = logits.subarray(t * V, (t + 1) * V);
    let max = -Infinity;
    for (const x of row) max = Math.max(max, x);
    let z = 0;
    for (const x of row) z += Math.exp(x - max);
    const lse = max + Math.log(z);
    out.push(Float64Array.from(row, (x) => x - lse));
  }
  return out;
}





// What llama.cpp's roundings allow, on any CPU. llama.cpp rounds each activation row before it
// meets a quantized matrix (to Q8_0 blocks for Q8_0/Q4_0 weights, to f16 for F16 weights); so
// does Bonsai's numerics mode, with the same quantizers. Where the two sum in another order
// (another ggml build: AVX2, AVX-512, NEON, SVE), values within those last bits of a rounding tie
// go one way in one and the other way in the other, and from there on the two are two roundings of
// the same unrounded computation f, each about as far from it as rounding moves the result. Bonsai
// measures that on the same text with a model of the build's rounding (its numerics mode, plus f16
// accumulation where the build does arithmetic in f16: llama-cpp-numerics.ts):
// R = max |log p(model) − log p(f)|. llama.cpp's result then lies within 2R of the model (both
// within R of f), and a result x within |x − model| + 2R of llama.cpp's: x = the model itself on
// the builds Bonsai reproduces, 2R; x = f, Bonsai's float path, 3R.
const FLOAT_NOISE = 1e-4;
function roundingBound(x: Float64Array[], model: Float64Array[], float: Float64Array[]): number {
  return maxLogProbDiff(x, model) + 2 * maxLogProbDiff(model, float) + FLOAT_NOISE;
}

/** A backend for the model of how the loaded llama.cpp build rounds (see roundingBound). */
async function llamaCppRounding(cpu: LlamaCppCpu): Promise<Backend> {
  const backend = await createBackend("wasm", { kernels: "simd", q8Activations: true, f16Order: cpu.f16Order });
  return cpu.f16Arithmetic ? accumulateF16(backend) : backend;
}

/** How the comparisons name the build's arithmetic. */
const describeOrder = (cpu: LlamaCppCpu): string =>
  cpu.f16Order ? `${cpu.f16Order} order` : cpu.f16Arithmetic ? "f16 arithmetic, not reproduced" : "an order Bonsai does not reproduce";

let backend: Backend;
test.before(async () => {
  backend = await createBackend("wasm", { kernels: "simd" });
});

test("llama.cpp's llama-2-tiny-random.gguf loads in Bonsai with llama.cpp's logits", async (t) => {
  const path = join(DATA, "models/llama-2-tiny-random.gguf");
  if (!existsSync(path)) return t.skip("../shared/data absent");
  const { model, tokenizer } = loadModel(path, backend);
  assert.ok(tokenizer, "the GGUF's vocabulary is loaded");
  const cpp = await openWithLlamaCpp(path);
  try {
    const tokens = tokenizer.encode("Hello world, this is a small test of the tiny random model.", { addBos: true });
    assert.deepEqual(tokens.slice(1), cpp.tokenize("Hello world, this is a small test of the tiny random model."));
    const ours = await bonsaiLogProbs(model, tokens);
    const diff = maxLogProbDiff(ours, await cpp.logProbs(tokens, model.config.vocab_size));
    // llama.cpp multiplies F16 weights with activations rounded to F16; Bonsai's float path does
    // not round (roundingBound with x the float result).
    const rounding = await decodeLogProbs(loadModel(path, await llamaCppRounding(await llamaCppCpu()), undefined, { quantized: true }).model, tokens);
    const tolerance = roundingBound(ours, rounding, ours);
    t.diagnostic(`max |Δ log p| vs llama.cpp over ${tokens.length} positions × ${model.config.vocab_size} tokens: ${diff.toExponential(2)}; rounding bound ${tolerance.toExponential(2)}`);
    assert.ok(diff <= tolerance, `log-probabilities differ by ${diff}, more than the roundings allow (${tolerance})`);
  } finally {
    await cpp.dispose();
  }
});

test("llama.cpp's llama-2-tiny-random.gguf (F16) loaded quantized: f16 weights in memory, decoding in llama.cpp's numerics gives its log-probabilities", async (t) => {
  const path = join(DATA, "models/llama-2-tiny-random.gguf");
  if (!existsSync(path)) return t.skip("../shared/data absent");
  const cpu = await llamaCppCpu();
  const q8 = await createBackend("wasm", { kernels: "simd", q8Activations: true, f16Order: cpu.f16Order });
  const { model, tokenizer } = loadModel(path, q8, undefined, { quantized: true, lazy: true });
  const float = loadModel(path, backend, undefined, { quantized: true, lazy: true }).model;
  assert.ok(tokenizer);
  const cpp = await openWithLlamaCpp(path);
  try {
    const tokens = tokenizer.encode("Hello world, this is a small test of the tiny random model.", { addBos: true });
    const ours = await decodeLogProbs(model, tokens);
    // Every projection, the LM head and the embedding table (looked up in its f16 rows) are f16 matrices.
    const types = new Set([...model.quantized.values()].map((w) => w.type));
    assert.deepEqual([...types], ["f16"]);
    assert.equal(model.quantized.size, 7 * model.config.num_hidden_layers + (model.config.tie_word_embeddings ? 1 : 2));
    assert.ok(!model.params.has("model.embed_tokens.weight"));
    const diff = maxLogProbDiff(ours, await cpp.logProbs(tokens, model.config.vocab_size));
    const floats = await decodeLogProbs(float, tokens);
    const tolerance = roundingBound(ours, cpu.f16Arithmetic ? await decodeLogProbs(loadModel(path, await llamaCppRounding(cpu), undefined, { quantized: true }).model, tokens) : ours, floats);
    t.diagnostic(`llama.cpp's build: ${cpu.systemInfo.trim()}`);
    t.diagnostic(`max |Δ log p| vs llama.cpp, f16 weights and f16-rounded activations (${describeOrder(cpu)}): ${diff.toExponential(2)}; rounding bound ${tolerance.toExponential(2)}`);
    assert.ok(diff <= tolerance, `log-probabilities differ by ${diff}, more than the roundings allow (${tolerance})`);
    // In this build's order only the last bits of other ops differ (measured 6e-6).
    if (cpu.f16Order) assert.ok(diff < FLOAT_NOISE, `log-probabilities differ by ${diff} in the ${cpu.f16Order} build's order`);
    else t.diagnostic("this llama.cpp build sums f16 products in an order Bonsai does not reproduce: the rounding bound only");
  } finally {
    await cpp.dispose();
    model.dispose();
    float.dispose();
  }
});

test("stories260K: .bin → GGUF with its tokenizer → the expected greedy text, in Bonsai and in llama.cpp", async (t) => {
  const bin = join(DATA, "models/stories260K.bin");
  if (!existsSync(bin)) return t.skip("../shared/data absent");
  const expected = readFileSync(join(DATA, "models/stories260K.expected-greedy.txt"), "utf8").replace(/\n$/, "");
  const gguf = join(tmp, "stories260K.gguf");
  const r = spawnSync(process.execPath, [CLI, "export", "--model", bin, "--tokenizer", join(DATA, "models/tok512.bin"), "--format", "gguf", "--quant", "f32", "--out", gguf], { encoding: "utf8" });
  assert.equal(r.status, 0, r.stderr);
  const g = spawnSync(process.execPath, [CLI, "generate", "--model", gguf, "--temperature", "0", "--max-tokens", "200"], { encoding: "utf8" });
  assert.equal(g.status, 0, g.stderr);
  assert.equal(g.stdout.replace(/\n$/, ""), expected);

  const cpp = await openWithLlamaCpp(gguf, 512);
  try {
    // run.c: from BOS, 200 positions, stopping if BOS is sampled.
    const ids = await cpp.greedy([1], 200);
    const end = ids.indexOf(1);
    assert.equal(cpp.detokenize(end < 0 ? ids : ids.slice(0, end)).replace(/^ /, ""), expected);
  } finally {
    await cpp.dispose();
  }
});

test("stories260K Q8_0 export (F16 down_proj): decoding in llama.cpp's numerics gives llama.cpp's log-probabilities", async (t) => {
  const bin = join(DATA, "models/stories260K.bin");
  if (!existsSync(bin)) return t.skip("../shared/data absent");
  const gguf = join(tmp, "stories260K-q8_0-logp.gguf");
  const r = spawnSync(process.execPath, [CLI, "export", "--model", bin, "--tokenizer", join(DATA, "models/tok512.bin"), "--format", "gguf", "--quant", "q8_0", "--out", gguf], { encoding: "utf8" });
  assert.equal(r.status, 0, r.stderr);
  const cpu = await llamaCppCpu();
  const q8 = await createBackend("wasm", { kernels: "simd", q8Activations: true, f16Order: cpu.f16Order });
  const { model } = loadModel(gguf, q8, undefined, { quantized: true, fuse: true });
  const float = loadModel(gguf, backend, undefined, { quantized: true, fuse: true }).model;
  assert.ok([...model.quantized.values()].some((w) => w.type === "f16"), "down_proj stays f16");
  const cpp = await openWithLlamaCpp(gguf, 512);
  try {
    // 200 positions of llama.cpp's own greedy text, one token at a time as generation runs.
    const seq = [1, ...(await cpp.greedy([1], 199))];
    const theirs = await cpp.logProbs(seq, model.config.vocab_size);
    const ours = await decodeLogProbs(model, seq);
    const diffs = logProbDiffs(ours, theirs);
    const floats = await decodeLogProbs(float, seq);
    const tolerance = roundingBound(ours, cpu.f16Arithmetic ? await decodeLogProbs(loadModel(gguf, await llamaCppRounding(cpu), undefined, { quantized: true, fuse: true }).model, seq) : ours, floats);
    const worst = Math.max(...diffs), apart = diffs.findIndex((d) => d >= FLOAT_NOISE);
    t.diagnostic(`llama.cpp's build: ${cpu.systemInfo.trim()}`);
    t.diagnostic(`max |Δ log p| vs llama.cpp over ${seq.length} decoded positions (${describeOrder(cpu)}): ${worst.toExponential(2)}, apart from position ${apart}; rounding bound ${tolerance.toExponential(2)}`);
    assert.ok(worst <= tolerance, `log-probabilities differ by ${worst}, more than the roundings allow (${tolerance})`);
    if (cpu.f16Order) {
      // In this build's f16 order every activation that meets a Q8_0 or f16 rounding equals
      // llama.cpp's but for the last bits of the ops Bonsai does not reproduce bit for bit (the
      // Q8_0 dot products' FMA and lane order, exp, RMSNorm), until one of those bits meets a
      // near-tie: at position 63 of this text on the AVX2 and on the AVX-512 build (in the other
      // build's f16 order at 14; with the f16 matrices multiplied in f32 at once).
      const exact = Math.max(...diffs.slice(0, 60));
      assert.ok(exact < FLOAT_NOISE, `log-probabilities differ by ${exact} within the first 60 positions in the ${cpu.f16Order} build's order`);
    } else t.diagnostic("this llama.cpp build sums f16 products in an order Bonsai does not reproduce: the rounding bound only");
  } finally {
    await cpp.dispose();
    model.dispose();
    float.dispose();
  }
});

/** A small model trained here by the CLI, with a trained SentencePiece-BPE vocabulary llama.cpp can load. */
async function trainedModel(): Promise<{ dir: string }> {
  const corpus = join(tmp, "corpus.txt");
  const lines: string[] = [];
  const names = ["Tom", "Anna", "Ben", "Lily", "Max"], things = ["ball", "kite", "cake", "book", "dog"], verbs = ["likes", "finds", "sees", "wants", "has"];
  for (let i = 0; i < 400; i++) lines.push(`${names[i % 5]} ${verbs[(i * 3) % 5]} a ${things[(i * 7) % 5]}. It is ${["red", "big", "nice"][i % 3]}.`);
  writeFileSync(corpus, lines.join("\n") + "\n");
  const tok = join(tmp, "tok.json");
  let r = spawnSync(process.execPath, [CLI, "tokenizer", "train", "--data", corpus, "--vocab-size", "300", "--type", "spm-bpe", "--out", tok], { encoding: "utf8" });
  assert.equal(r.status, 0, r.stderr);
  const dir = join(tmp, "trained");
  r = spawnSync(process.execPath, [CLI, "train", "--data", corpus, "--tokenizer", tok, "--layers", "2", "--heads", "4", "--kv-heads", "2", "--dim", "64",
    "--block-size", "64", "--batch-size", "8", "--iters", "300", "--lr", "3e-3", "--min-lr", "3e-4", "--warmup", "30", "--eval-interval", "300", "--eval-iters", "2", "--out", dir], { encoding: "utf8" });
  assert.equal(r.status, 0, r.stderr);
  return { dir };
}

test("a Bonsai-trained model exported to GGUF runs in llama.cpp with the same greedy tokens and log-probabilities within its roundings (f32, f16, q8_0, q4_0)", async (t) => {
  const { dir } = await trainedModel();
  const { model, tokenizer } = loadModel(dir, backend);
  assert.ok(tokenizer);
  const cpu = await llamaCppCpu();
  const numerics = await llamaCppRounding(cpu);
  const prompts = ["Tom likes", "Anna", "Lily finds a", "It is"].map((p) => tokenizer.encode(p, { addBos: true }));
  for (const quant of ["f32", "f16", "q8_0", "q4_0"] as GgufQuant[]) {
    const path = join(tmp, `trained-${quant}.gguf`);
    writeFileSync(path, llamaToGguf(model.config, await modelTensors(model), quant, { tokenizer: tokenizerToGgufMetadata(tokenizer) }));
    // Bonsai on the same file: its weights after quantization round trip, in float32; and kept
    // quantized, in the model of llama.cpp's rounding, for the bound of what the roundings may move.
    const mine = loadModel(path, backend).model;
    const rounded = loadModel(path, numerics, undefined, { quantized: true }).model;
    const cpp = await openWithLlamaCpp(path);
    try {
      let worst = 0, tolerance = 0;
      const runs: { prompt: number[]; ours: number[]; theirs: number[]; logProbs: Float64Array[] }[] = [];
      for (const p of prompts) {
        const ours = await collect(generateTokens(mine, p, { temperature: 0, maxTokens: 64 }));
        const theirs = await cpp.greedy(p, 64);
        const seq = [...p, ...ours].slice(0, 64);
        const logProbs = await bonsaiLogProbs(mine, seq);
        worst = Math.max(worst, maxLogProbDiff(logProbs, await cpp.logProbs(seq, mine.config.vocab_size)));
        tolerance = Math.max(tolerance, roundingBound(logProbs, await decodeLogProbs(rounded, seq), logProbs));
        runs.push({ prompt: p, ours, theirs, logProbs });
      }
      t.diagnostic(`${quant}: max |Δ log p| Bonsai (dequantized weights, f32) vs llama.cpp: ${worst.toExponential(2)}; rounding bound ${tolerance.toExponential(2)}`);
      assert.ok(worst <= tolerance, `${quant}: log-probabilities differ by ${worst}, more than the roundings allow (${tolerance})`);
      // Greedy texts agree token for token, up to a near-tie: where the first two tokens' log-
      // probabilities are closer than the two sides may move them apart (2 × the bound).
      for (const { prompt, ours, theirs, logProbs } of runs) {
        const i = ours.findIndex((id, j) => theirs[j] !== id);
        if (i < 0 || i >= theirs.length) continue;
        const at = prompt.length - 1 + i;
        const [first, second] = [...logProbs[at]].sort((a, b) => b - a);
        assert.ok(first - second < 2 * tolerance, `${quant} greedy tokens from ${JSON.stringify(tokenizer.decode(prompt))} part at token ${i}, where Bonsai's top two are ${(first - second).toFixed(4)} apart`);
        t.diagnostic(`${quant}: greedy tokens from ${JSON.stringify(tokenizer.decode(prompt))} part at a near-tie (token ${i}, gap ${(first - second).toExponential(2)})`);
      }
    } finally {
      await cpp.dispose();
      mine.dispose();
      rounded.dispose();
    }
  }
});
