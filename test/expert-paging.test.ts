// Expert paging from the model file (loadModel's expertCacheBytes, `--expert-cache-mb`): a MoE
// model opened with a budget smaller than its experts keeps only that many resident, reads the
// others from the GGUF or safetensors file when routed to, and computes the resident model's
// logits; budgets that cannot run, dense models and a file cut short get one-line errors.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, statSync, truncateSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createBackend } from "../src/backend/index.js";
import { noGrad, scope } from "../src/tensor/tensor.js";
import { Llama } from "../src/nn/llama.js";
import type { LlamaConfig } from "../src/nn/config.js";
import { modelFiles, modelTensors } from "../src/io/checkpoint.js";
import { llamaToGguf } from "../src/io/gguf-llama.js";
import { loadModel, writeCheckpoint } from "../src/io/model-files-node.js";
import { Session } from "../src/runtime/session.js";
import { relErr } from "./kernel-helpers.js";

const be = await createBackend("wasm");
const config: LlamaConfig = {
  vocab_size: 19, hidden_size: 32, intermediate_size: 64, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2,
  max_position_embeddings: 32, rms_norm_eps: 1e-5, rope_theta: 10000, tie_word_embeddings: false, num_local_experts: 8, num_experts_per_tok: 2,
};
const ids = Int32Array.from({ length: 24 }, (_, i) => (i * 7 + 3) % 19);
/** Bytes of one expert in every layer (gate, up and down) at f32, and as Q8_0 blocks (34 bytes per 32 weights). */
const EXPERT_F32 = config.num_hidden_layers * 3 * config.hidden_size * config.intermediate_size * 4;
const EXPERT_Q8_0 = (EXPERT_F32 / 4 / 32) * 34;

const tmp = mkdtempSync(join(tmpdir(), "bonsai-paging-"));
const source = Llama.init(be, config, 5);
const tensors = await modelTensors(source);
const files: Record<string, string> = { dir: join(tmp, "hf") };
writeCheckpoint(files.dir, await modelFiles(source, null));
for (const quant of ["f32", "q8_0"] as const) writeFileSync((files[quant] = join(tmp, `moe-${quant}.gguf`)), llamaToGguf(config, tensors, quant));

/** Prefill logits of 24 tokens, then 6 decode steps' logits. */
async function run(m: Llama): Promise<Float32Array[]> {
  const out = [Float32Array.from(await noGrad(() => scope(() => m.forward(ids, 1, 24).toArray())))];
  const s = new Session(m);
  for (const id of ids.subarray(0, 6)) out.push(Float32Array.from(await s.decode(id)));
  s.dispose?.();
  return out;
}

for (const [what, path, opts] of [
  ["GGUF F32", "f32", { quantized: false }],
  ["GGUF Q8_0 kept quantized, fused", "q8_0", { quantized: true, fuse: true }],
  ["safetensors directory (Mixtral layout)", "dir", {}],
] as const)
  test(`paged experts from a ${what} give the resident model's logits`, async () => {
    const resident = loadModel(files[path], be, undefined, opts).model;
    const want = await run(resident);
    for (const slots of [2, 5]) {
      const expertBytes = path === "q8_0" ? EXPERT_Q8_0 : EXPERT_F32;
      const paged = loadModel(files[path], be, undefined, { ...opts, expertCacheBytes: (slots + 0.5) * expertBytes }).model;
      const caches = [...paged.expertCaches.values()];
      assert.equal(caches.length, 2);
      assert.ok(caches.every((c) => c.slots === slots && c.experts === 8), `slots ${caches.map((c) => c.slots)}`);
      assert.equal(paged.numParameters(), resident.numParameters());
      const got = await run(paged);
      got.forEach((g, i) => assert.ok(relErr(g, want[i]) < 1e-5, `${slots} slots, ${i === 0 ? "prefill" : `decode ${i}`}: ${relErr(g, want[i])}`));
      const [hits, misses] = [caches.reduce((s, c) => s + c.counts.hits, 0), caches.reduce((s, c) => s + c.counts.misses, 0)];
      assert.ok(misses >= 2 * caches[0].slots && hits > 0, `hits ${hits}, misses ${misses}`);
      paged.dispose();
    }
    resident.dispose();
  });

test("expert paging refuses a budget below k experts, and a dense model; a file cut short fails at the read", async () => {
  assert.throws(() => loadModel(files.f32, be, undefined, { expertCacheBytes: EXPERT_F32 }), /holds 1 of each layer's 8 experts, a token needs 2: give at least 0\.09 MiB/);
  const dense = join(tmp, "dense.gguf");
  const { num_local_experts: _e, num_experts_per_tok: _k, ...denseConfig } = config;
  writeFileSync(dense, llamaToGguf(denseConfig, await modelTensors(Llama.init(be, denseConfig, 1)), "f32"));
  assert.throws(() => loadModel(dense, be, undefined, { expertCacheBytes: 1e6 }), /expert cache: the model has no experts to page/);
  const cut = join(tmp, "cut.gguf");
  writeFileSync(cut, llamaToGguf(config, tensors, "f32"));
  const m = loadModel(cut, be, undefined, { expertCacheBytes: 2 * EXPERT_F32 }).model; // the rest is read now
  truncateSync(cut, statSync(cut).size - 4096); // the end of the file: experts not yet read
  await assert.rejects(async () => run(m), (e: Error) => /^cannot read expert \d of layer \d from the model file: /.test(e.message) && !e.message.includes("\n"));
  m.dispose();
});
