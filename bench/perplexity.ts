// Perplexity of stories260K (llama2.c's 260K-parameter TinyStories model) at F32, Q8_0 and Q4_0 on
// held-out text: the last 10% of tinystories-2MiB.txt, cut to TOKENS tokens and scored in
// consecutive non-overlapping windows of the model's context. Each quantized model runs on its
// quantized weights and, as a check of the kernels, on the same weights dequantized to f32.
// Run: npm run build && node dist/bench/perplexity.js [wasm|js]   (needs ../shared/data)
import { existsSync, readFileSync } from "node:fs";
import { createBackend } from "../src/backend/index.js";
import { createWasmBackend } from "../src/backend/wasm/wasm-backend.js";
import { MemorySource } from "../src/format/byte-source.js";
import { modelFromTensors } from "../src/io/checkpoint.js";
import { GgufFile, llamaTensorsFromGguf, llamaToGguf, type GgufQuant } from "../src/io/gguf-llama.js";
import { llamaFromGgufWeights, llamaWeightsFromGguf } from "../src/io/gguf-llama-quantized.js";
import { parseLlama2cCheckpoint } from "../src/io/llama2c.js";
import { loadTokenizerFile } from "../src/io/model-files-node.js";
import type { Llama } from "../src/nn/llama.js";
import { noGrad, scope } from "../src/tensor/tensor.js";
import { Session } from "../src/runtime/session.js";
import { logSumExpOf } from "../src/runtime/sample.js";
import { benchHeader } from "./machine.js";

const DATA = "../shared/data";
const TOKENS = 8192;

/** exp(mean next-token cross-entropy) over windows of the context length. */
async function perplexity(model: Llama, tokens: Int32Array): Promise<number> {
  const window = model.config.max_position_embeddings;
  let sum = 0, count = 0;
  for (let start = 0; start + 1 < tokens.length; start += window) {
    const seq = Math.min(window, tokens.length - 1 - start);
    const ids = tokens.subarray(start, start + seq), targets = tokens.subarray(start + 1, start + 1 + seq);
    sum += await noGrad(() => scope(() => model.backend.sum(model.losses(ids, targets, 1, seq).data)));
    count += seq;
  }
  return Math.exp(sum / count);
}

/** The same by decoding one token at a time through a session (the path of generation). */
async function decodePerplexity(model: Llama, tokens: Int32Array): Promise<number> {
  const window = model.config.max_position_embeddings;
  let sum = 0, count = 0;
  for (let start = 0; start + 1 < tokens.length; start += window) {
    const s = new Session(model);
    for (let t = start; t < Math.min(start + window, tokens.length - 1); t++) {
      const logits = await s.decode(tokens[t]);
      sum += logSumExpOf(logits) - logits[tokens[t + 1]];
      count++;
    }
    s.dispose();
  }
  return Math.exp(sum / count);
}

console.log(await benchHeader());
if (!existsSync(`${DATA}/models/stories260K.bin`)) {
  console.log("perplexity: ../shared/data absent; skipped");
} else {
  const backend = await createBackend(process.argv[2] ?? "wasm");
  const bin = readFileSync(`${DATA}/models/stories260K.bin`);
  const { config, tensors } = parseLlama2cCheckpoint(new Uint8Array(bin.buffer, bin.byteOffset, bin.byteLength));
  const tokenizer = loadTokenizerFile(`${DATA}/models/tok512.bin`, config.vocab_size);
  const text = readFileSync(`${DATA}/corpora/tinystories-2MiB.txt`, "utf8");
  const heldOut = text.slice(Math.floor(text.length * 0.9));
  // Stories end with <|endoftext|>; each is encoded after a BOS, as llama2.c trained the model.
  // The held-out part starts mid-story, so its first piece is dropped.
  const ids: number[] = [];
  for (const story of heldOut.split("<|endoftext|>").slice(1)) {
    if (ids.length >= TOKENS) break;
    if (story.trim() !== "") ids.push(...tokenizer.encode(story.trim(), { addBos: true }));
  }
  const tokens = Int32Array.from(ids.slice(0, TOKENS));
  console.log(`stories260K perplexity, ${backend.name} backend, ${tokens.length} held-out tokens of tinystories-2MiB.txt (last 10%), windows of ${config.max_position_embeddings}`);
  const f32 = modelFromTensors(backend, { ...config }, tensors);
  console.log(`f32   ${(await perplexity(f32, tokens)).toFixed(4)}`);
  f32.dispose();
  for (const quant of ["q8_0", "q4_0"] as GgufQuant[]) {
    const gguf = llamaToGguf(config, tensors, quant);
    const file = GgufFile.open(new MemorySource(gguf));
    const q = llamaFromGgufWeights(backend, config, llamaWeightsFromGguf(file, config));
    const d = modelFromTensors(backend, { ...config }, llamaTensorsFromGguf(file, config));
    console.log(`${quant}  ${(await perplexity(q, tokens)).toFixed(4)} (quantized kernels; ${(await perplexity(d, tokens)).toFixed(4)} dequantized to f32), file ${(gguf.length / 1024).toFixed(0)} KiB`);
    d.dispose();
    if (backend.name === "wasm") {
      // llama.cpp's integer path (activations rounded to Q8_0) serves decode, so score token by token.
      const q8 = llamaFromGgufWeights(await createWasmBackend({ q8Activations: true }), config, llamaWeightsFromGguf(file, config));
      console.log(`${quant}  ${(await decodePerplexity(q8, tokens)).toFixed(4)} (decoded token by token with Q8_0 activations; ${(await decodePerplexity(q, tokens)).toFixed(4)} with float activations)`);
      q8.dispose();
    }
    q.dispose();
  }
}
