// Decode speed of quantized execution: a stories15M-shaped random model (dim 288, 6 layers, 6
// heads, vocab 32000, tied embeddings, context 256) at F32, Q8_0 and Q4_0 on one backend, one
// thread. The quantized models come from the same weights through llamaToGguf, as a file would.
// Run: npm run build && node dist/bench/quantized.js [wasm|js]
import type { Backend } from "../src/backend/backend.js";
import { createBackend } from "../src/backend/index.js";
import { createWasmBackend } from "../src/backend/wasm/wasm-backend.js";
import { JsBackend } from "../src/backend/js/js-backend.js";
import { MemorySource } from "../src/format/byte-source.js";
import { modelFromTensors, modelTensors } from "../src/io/checkpoint.js";
import { GgufFile, llamaToGguf, type GgufQuant } from "../src/io/gguf-llama.js";
import { llamaFromGgufWeights, llamaWeightsFromGguf } from "../src/io/gguf-llama-quantized.js";
import type { LlamaConfig } from "../src/nn/config.js";
import { Llama } from "../src/nn/llama.js";
import { Session } from "../src/runtime/session.js";
import { argmax } from "../src/runtime/sample.js";
import { benchHeader } from "./machine.js";

const config: LlamaConfig = {
  vocab_size: 32000, hidden_size: 288, intermediate_size: 768, num_hidden_layers: 6,
  num_attention_heads: 6, num_key_value_heads: 6, max_position_embeddings: 256,
  rms_norm_eps: 1e-5, rope_theta: 10000, tie_word_embeddings: true,
};
const TOKENS = 128;
const PROMPT = 64;

/** Decode tokens/s over TOKENS greedy tokens after a PROMPT-token prefill, and prefill tokens/s. */
async function measure(model: Llama): Promise<{ decode: number; prefill: number }> {
  const s = new Session(model);
  const prompt = Array.from({ length: PROMPT }, (_, i) => (i * 7919) % config.vocab_size);
  let t0 = performance.now();
  let next = argmax(await s.prefill(prompt));
  const prefill = PROMPT / ((performance.now() - t0) / 1000);
  t0 = performance.now();
  for (let i = 0; i < TOKENS; i++) next = argmax(await s.decode(next));
  const decode = TOKENS / ((performance.now() - t0) / 1000);
  s.dispose();
  return { decode, prefill };
}

console.log(await benchHeader());
const backend = await createBackend(process.argv[2] ?? "wasm");
const tensors = await modelTensors(Llama.init(new JsBackend("f32"), config, 1));
console.log(`stories15M-shaped random model, ${backend.name} backend, one thread: ${PROMPT}-token prefill, ${TOKENS} greedy tokens`);
// On wasm, also llama.cpp's integer path (activations quantized to Q8_0).
const runs: [GgufQuant, Backend, string][] = [["f32", backend, ""], ["q8_0", backend, ""], ["q4_0", backend, ""]];
if (backend.name === "wasm") {
  const q8 = await createWasmBackend({ q8Activations: true });
  runs.push(["q8_0", q8, " × Q8_0 activations"], ["q4_0", q8, " × Q8_0 activations"]);
}
for (const [quant, backend, how] of runs) {
  let model: Llama;
  let bytes = 0;
  if (quant === "f32") {
    model = modelFromTensors(backend, { ...config }, tensors);
    bytes = model.numParameters() * 4;
  } else {
    const gguf = llamaToGguf(config, tensors, quant);
    bytes = gguf.length;
    const f = GgufFile.open(new MemorySource(gguf));
    model = llamaFromGgufWeights(backend, config, llamaWeightsFromGguf(f, config));
  }
  await measure(model); // warm-up (JIT, allocator free lists)
  const runs = [await measure(model), await measure(model), await measure(model)];
  const best = (k: "decode" | "prefill"): string => Math.max(...runs.map((r) => r[k])).toFixed(0);
  console.log(`${(quant + how).padEnd(25)} weights ${(bytes / 2 ** 20).toFixed(1)} MiB: decode ${best("decode")} tok/s, prefill ${best("prefill")} tok/s`);
  model.dispose();
}
