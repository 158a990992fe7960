// Prefill and decode speed of the wasm backend on 1 and 2 threads (more with BENCH_THREADS=1,2,4),
// KV-cache session, medians of 5 runs after a warm-up: stories260K and a random-weight model of
// llama2.c's stories15M shape (dim 288, 6 layers, 6 heads, hidden 768, vocab 32000). Also checks
// that every thread count decodes the same greedy tokens (the kernels are bitwise deterministic).
// Run: npm run build && node dist/bench/threads.js   (stories260K needs ../shared/data/models)
import { existsSync } from "node:fs";
import { createBackend, type Backend } from "../src/backend/index.js";
import { loadModel } from "../src/io/model-files-node.js";
import { Llama } from "../src/nn/llama.js";
import { Session } from "../src/runtime/session.js";
import { argmax } from "../src/runtime/sample.js";
import { benchHeader } from "./machine.js";
import { stories15MShape } from "./shapes.js";

const DATA = "../shared/data/models";
const N = 256; // prompt tokens and decoded tokens
const RUNS = 5;
const THREADS = (process.env.BENCH_THREADS ?? "1,2").split(",").map(Number);

const stories15M = stories15MShape({ vocabSize: 32000, maxPositions: 512, tied: false });

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[xs.length >> 1];

async function measure(model: Llama): Promise<{ prefill: number; decode: number; tokens: number[] }> {
  const s = new Session(model);
  const prompt = Array.from({ length: N }, (_, i) => 1 + ((i * 37) % (model.config.vocab_size - 1)));
  const prefill = async (): Promise<number> => {
    s.truncate(0);
    const t = performance.now();
    await s.prefill(prompt);
    return N / ((performance.now() - t) / 1000);
  };
  let tokens: number[] = [];
  const decode = async (): Promise<number> => {
    s.truncate(0);
    const out: number[] = [];
    let tok = 1;
    const t = performance.now();
    for (let i = 0; i < N; i++) out.push((tok = argmax(await s.decode(tok))));
    const rate = N / ((performance.now() - t) / 1000);
    tokens = out;
    return rate;
  };
  await prefill(); // warm-up: JIT, the allocator's free lists
  await decode();
  const p: number[] = [], d: number[] = [];
  for (let r = 0; r < RUNS; r++) p.push(await prefill());
  for (let r = 0; r < RUNS; r++) d.push(await decode());
  s.dispose();
  return { prefill: median(p), decode: median(d), tokens };
}

console.log(await benchHeader());
const models: [string, (b: Backend) => Llama][] = [];
if (existsSync(`${DATA}/stories260K.bin`)) models.push(["stories260K", (b) => loadModel(`${DATA}/stories260K.bin`, b).model]);
else console.log("stories260K absent (../shared/data/models); skipped");
models.push(["stories15M-shaped, random", (b) => Llama.init(b, stories15M, 1)]);

for (const [name, load] of models) {
  let reference: number[] | undefined;
  for (const threads of THREADS) {
    const backend = await createBackend("wasm", { threads });
    const r = await measure(load(backend));
    backend.dispose?.();
    const same = reference === undefined ? "" : reference.join() === r.tokens.join() ? "  (same tokens)" : "  (TOKENS DIFFER)";
    reference ??= r.tokens;
    console.log(`${name}, ${threads} thread${threads > 1 ? "s" : ""}: prefill ${r.prefill.toFixed(0)} tok/s, decode ${r.decode.toFixed(0)} tok/s${same}`);
  }
}
