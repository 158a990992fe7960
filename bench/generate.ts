// Decode speed of stories260K (llama2.c's 260K-parameter model) on one backend: the KV-cache
// session next to the full recompute of the context per token that generation used before it.
// Run: npm run bench:generate [-- wasm|js]   (needs ../shared/data/models)
import { existsSync } from "node:fs";
import { createBackend } from "../src/backend/index.js";
import { loadModel } from "../src/io/model-files-node.js";
import type { Llama } from "../src/nn/llama.js";
import { Session } from "../src/runtime/session.js";
import { argmax } from "../src/runtime/sample.js";
import { noGrad, scope } from "../src/tensor/tensor.js";
import { benchHeader } from "./machine.js";

const DATA = "../shared/data/models";
const TOKENS = 256;

/** Greedy decoding of TOKENS tokens after BOS; returns decode tokens/s. */
async function cached(model: Llama): Promise<number> {
  const s = new Session(model);
  let next = argmax(await s.prefill([1]));
  const t0 = performance.now();
  for (let i = 0; i < TOKENS; i++) next = argmax(await s.decode(next));
  const seconds = (performance.now() - t0) / 1000;
  s.dispose();
  return TOKENS / seconds;
}

async function recompute(model: Llama): Promise<number> {
  const context = [1];
  const t0 = performance.now();
  for (let i = 0; i < TOKENS; i++) {
    const ids = Int32Array.from(context);
    context.push(argmax(await noGrad(() => scope(() => model.forward(ids, 1, ids.length, { lastOnly: true }).toArray()))));
  }
  return TOKENS / ((performance.now() - t0) / 1000);
}

console.log(await benchHeader());
if (!existsSync(`${DATA}/stories260K.bin`)) {
  console.log("bench:generate: ../shared/data/models/stories260K.bin absent; skipped");
} else {
  const backend = await createBackend(process.argv[2] ?? "wasm");
  const { model } = loadModel(`${DATA}/stories260K.bin`, backend);
  const session = new Session(model);
  console.log(`stories260K, ${backend.name} backend, ${TOKENS} greedy tokens; KV cache ${session.cacheBytesPerToken} bytes/token`);
  session.dispose();
  await cached(model); // warm-up (JIT, allocator free lists)
  const best = async (f: () => Promise<number>): Promise<number> => Math.max(await f(), await f(), await f());
  console.log(`KV-cache session: ${(await best(() => cached(model))).toFixed(0)} tokens/s`);
  console.log(`full recompute:   ${(await best(() => recompute(model))).toFixed(0)} tokens/s`);
}
