// Prefill, decode and training speed per backend on the same models and inputs: wasm on 1 thread
// and on every core, and WebGPU (its adapter named in the header). Models: stories260K (when
// ../shared/data is there), a random model of llama2.c's stories15M shape (vocab 32000, F32 and
// Q4_0 blocks on the device) and a ~110M-parameter GPT-2-small-shaped Llama (F32; skipped with
// BENCH_SMALL=1). Decode also reports the bytes copied host ↔ device per token (webgpu; greedy
// decoding reads back the argmax alone), and --gpu-layers rows split a model between webgpu (its
// first half of the layers) and wasm (the rest, the embedding and the head).
// On SwiftShader (a CPU Vulkan driver) the GPU figures only show that the path runs.
// Run: npm run build && node dist/bench/webgpu.js   (no GPU: VK_ICD_FILENAMES=/usr/lib/chromium/vk_swiftshader_icd.json first)
import { existsSync, mkdtempSync, writeFileSync } from "node:fs";
import { availableParallelism, tmpdir } from "node:os";
import { join } from "node:path";
import { createBackend, type Backend } from "../src/backend/index.js";
import { JsBackend } from "../src/backend/js/js-backend.js";
import type { WebGpuBackend } from "../src/backend/webgpu/webgpu-backend.js";
import { type ModelPlace, loadModel } from "../src/io/model-files-node.js";
import { describePlacement, splitLayers } from "../src/nn/placement.js";
import { Llama } from "../src/nn/llama.js";
import type { LlamaConfig } from "../src/nn/config.js";
import { Session } from "../src/runtime/session.js";
import { Trainer } from "../src/train/trainer.js";
import { splitTrainVal } from "../src/data/batches.js";
import { modelTensors } from "../src/io/checkpoint.js";
import { llamaToGguf } from "../src/io/gguf-llama.js";
import { Rng } from "../src/util/rng.js";
import { benchHeader } from "./machine.js";
import { stories15MShape } from "./shapes.js";

const DATA = "../shared/data/models";
const PROMPT = Number(process.env.BENCH_PROMPT ?? 128), DECODE = Number(process.env.BENCH_DECODE ?? 32);
const small = process.env.BENCH_SMALL === "1";

interface Named {
  name: string;
  be: Backend;
  /** Where a model goes (default: all on `be`). */
  place?: ModelPlace;
}
const backends: Named[] = [{ name: "wasm 1 thread", be: await createBackend("wasm") }];
if (availableParallelism() > 1) backends.push({ name: `wasm ${availableParallelism()} threads`, be: await createBackend("wasm", { threads: availableParallelism() }) });
let adapter = "none";
try {
  const gpu = (await createBackend("webgpu")) as WebGpuBackend;
  adapter = gpu.adapterName;
  backends.push({ name: "webgpu", be: gpu });
  // --gpu-layers n/2: the first half of the layers on the GPU, the rest with the head on 1 wasm thread.
  const cpu = backends[0].be;
  backends.push({ name: "webgpu + wasm, half the layers each", be: gpu, place: (layers) => splitLayers(gpu, cpu, layers, Math.floor(layers / 2)) });
} catch (e) {
  adapter = `none (${(e as Error).message})`;
}
console.log(`${await benchHeader()}\nwebgpu adapter: ${adapter}\nprompt ${PROMPT} tokens, decode ${DECODE} tokens, best of 3 after a warm-up`);

/** The model's GPU backend, if any part is on one. */
const gpuOf = (model: Llama): Backend => model.placement.layers.find((b) => b.name === "webgpu") ?? model.backend;
const traffic = (be: Backend): number => {
  const t = (be as Partial<WebGpuBackend>).gpu?.traffic;
  return t ? t.upload + t.download : 0;
};

async function inference(model: Llama): Promise<{ prefill: number; decode: number; bytesPerToken: number; tokens: number[] }> {
  const s = new Session(model, { maxSeq: PROMPT + DECODE + 1, reuseLogits: true });
  const prompt = Array.from({ length: PROMPT }, (_, i) => 1 + ((i * 37) % (model.config.vocab_size - 1)));
  let best = { prefill: 0, decode: 0, bytesPerToken: 0, tokens: [] as number[] };
  for (let r = 0; r < 4; r++) {
    s.truncate(0);
    // Greedy, as generate runs it: only the argmax comes back (readTopK).
    let t = performance.now();
    let best1 = await s.prefillTop(prompt, 1);
    const prefill = PROMPT / ((performance.now() - t) / 1000);
    const tokens: number[] = [];
    const before = traffic(gpuOf(model));
    t = performance.now();
    for (let i = 0; i < DECODE; i++) {
      tokens.push(best1.ids[0]);
      best1 = await s.prefillTop([tokens[i]], 1);
    }
    const decode = DECODE / ((performance.now() - t) / 1000);
    if (r > 0) best = { prefill: Math.max(best.prefill, prefill), decode: Math.max(best.decode, decode), bytesPerToken: (traffic(gpuOf(model)) - before) / DECODE, tokens };
  }
  s.dispose();
  return best;
}

async function training(be: Backend, config: LlamaConfig, batch: number, block: number): Promise<number> {
  const rng = new Rng(1);
  const data = splitTrainVal(Int32Array.from({ length: 20 * batch * block }, () => rng.int(config.vocab_size)));
  const model = Llama.init(be, config, 1);
  const trainer = new Trainer(model, { batchSize: batch, blockSize: block, iters: 4, lr: 1e-3, minLr: 1e-4, warmup: 0, weightDecay: 0.1, beta1: 0.9, beta2: 0.95, gradClip: 1, gradAccum: 1, evalInterval: 1000, evalIters: 1, seed: 1 }, data);
  await trainer.step(0); // warm-up
  let best = 0;
  for (let i = 1; i < 4; i++) {
    const e = await trainer.step(i);
    best = Math.max(best, e.tokens / e.seconds);
  }
  model.dispose();
  return best;
}

const fmt = (x: number): string => (x >= 100 ? x.toFixed(0) : x.toFixed(1));

interface Case {
  name: string;
  load(where: ModelPlace): Llama;
  /** Whether the --gpu-layers rows run it (it loads from a file). */
  splits: boolean;
}
const cases: Case[] = [];
if (existsSync(`${DATA}/stories260K.bin`)) cases.push({ name: "stories260K F32", load: (w) => loadModel(`${DATA}/stories260K.bin`, w, undefined, { fuse: true }).model, splits: true });
const shape15M = stories15MShape({ vocabSize: 32000, maxPositions: 512, tied: false });
const dir = mkdtempSync(join(tmpdir(), "bonsai-bench-webgpu-"));
const f32 = join(dir, "stories15M-shape-f32.gguf"), q4 = join(dir, "stories15M-shape-q4_0.gguf");
const tensors15M = await modelTensors(Llama.init(new JsBackend("f32"), shape15M, 15));
writeFileSync(f32, llamaToGguf(shape15M, tensors15M, "f32"));
writeFileSync(q4, llamaToGguf(shape15M, tensors15M, "q4_0"));
cases.push({ name: "15M shape F32", load: (w) => loadModel(f32, w, undefined, { fuse: true }).model, splits: true });
cases.push({ name: "15M shape Q4_0", load: (w) => loadModel(q4, w, undefined, { quantized: true, fuse: true }).model, splits: true });
// GPT-2 small's size (12 layers, dim 768, 12 heads, vocab 32000): 110M parameters.
const shape110M: LlamaConfig = { vocab_size: 32000, hidden_size: 768, intermediate_size: 2048, num_hidden_layers: 12, num_attention_heads: 12, num_key_value_heads: 12, max_position_embeddings: 512, rms_norm_eps: 1e-5, rope_theta: 10000, tie_word_embeddings: true };
if (!small) cases.push({ name: "110M F32", load: (w) => Llama.init(w as Backend, shape110M, 7), splits: false });

console.log("\nmodel | backend | prefill tok/s | decode tok/s | decode ÷ wasm 1 thread | host↔device bytes/token | same greedy tokens");
for (const c of cases) {
  let base: { decode: number; tokens: number[] } | null = null;
  for (const { name, be, place } of backends) {
    if (place && !c.splits) continue;
    const model = c.load(place ?? be);
    model.fuse();
    const r = await inference(model);
    const where = place ? ` (${describePlacement(model.placement)})` : "";
    model.dispose();
    base ??= r;
    const same = r.tokens.every((t, i) => t === base!.tokens[i]) ? "yes" : `no (first differs at ${r.tokens.findIndex((t, i) => t !== base!.tokens[i])})`;
    console.log(`${c.name} | ${name}${where} | ${fmt(r.prefill)} | ${fmt(r.decode)} | ${(r.decode / base.decode).toFixed(2)} | ${be.name === "webgpu" ? fmt(r.bytesPerToken) : "—"} | ${same}`);
  }
}

console.log("\ntraining (AdamW steps, batch × block tokens) | backend | tokens/s | ÷ wasm 1 thread");
const trainCases: [string, LlamaConfig, number, number][] = [
  ["15M shape, vocab 4096, 8×128", stories15MShape({ vocabSize: 4096, maxPositions: 128, tied: true }), 8, 128],
];
for (const [name, config, batch, block] of trainCases) {
  let base = 0;
  for (const b of backends) {
    if (b.place) continue; // training runs on one backend
    const rate = await training(b.be, config, batch, block);
    base ||= rate;
    console.log(`${name} | ${b.name} | ${fmt(rate)} | ${(rate / base).toFixed(2)}`);
  }
}
for (const b of backends) b.be.dispose?.();
