// The KV-cache session: cached generation must be the full-recompute generation, token for token
// and logits within rounding, on both backends and every head layout (MHA, GQA, MQA); rollback
// must leave the cache as if the rolled-back tokens had never been seen.
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import type { Backend, FloatArray } from "../src/backend/backend.js";
import { createBackend } from "../src/backend/index.js";
import { JsBackend } from "../src/backend/js/js-backend.js";
import { WasmBackend } from "../src/backend/wasm/wasm-backend.js";
import { loadModel } from "../src/io/model-files-node.js";
import type { LlamaConfig } from "../src/nn/config.js";
import { Llama } from "../src/nn/llama.js";
import { generateTokens } from "../src/runtime/generate.js";
import { sampleToken } from "../src/runtime/sample.js";
import { Session } from "../src/runtime/session.js";
import { promptIds, stream } from "../src/runtime/stream.js";
import { Tensor, noGrad, scope } from "../src/tensor/tensor.js";
import * as op from "../src/tensor/ops.js";
import { Rng } from "../src/util/rng.js";
import { collect } from "./async-helpers.js";

const config = (heads: number, kvHeads: number): LlamaConfig => ({
  vocab_size: 41, hidden_size: 32, intermediate_size: 64, num_hidden_layers: 2,
  num_attention_heads: heads, num_key_value_heads: kvHeads, max_position_embeddings: 24,
  rms_norm_eps: 1e-5, rope_theta: 10000, tie_word_embeddings: false,
});
const layouts = [["MHA", 4, 4], ["GQA", 4, 2], ["MQA", 4, 1]] as const;

/** Logits of every position of `ids` by the training forward pass (no cache). */
function fullLogits(model: Llama, ids: number[]): Promise<FloatArray> {
  return noGrad(() => scope(() => model.forward(Int32Array.from(ids), 1, ids.length).toArray()));
}

/** The pre-cache generation loop: the whole context window recomputed for every token. */
async function referenceGenerate(model: Llama, prompt: number[], n: number, temperature: number, seed: number): Promise<{ ids: number[]; logits: FloatArray[] }> {
  const window = model.config.max_position_embeddings, rng = new Rng(seed);
  const context = [...prompt], ids: number[] = [], logits: FloatArray[] = [];
  for (let i = 0; i < n; i++) {
    const w = Int32Array.from(context.slice(-window));
    const l = await noGrad(() => scope(() => model.forward(w, 1, w.length, { lastOnly: true }).toArray()));
    logits.push(l);
    const next = sampleToken(l, { temperature }, rng);
    context.push(next);
    ids.push(next);
  }
  return { ids, logits };
}

function assertClose(actual: ArrayLike<number>, expected: ArrayLike<number>, tol: number, what: string): void {
  assert.equal(actual.length, expected.length, `${what}: length`);
  let worst = 0;
  for (let i = 0; i < actual.length; i++) worst = Math.max(worst, Math.abs(actual[i] - expected[i]));
  assert.ok(worst <= tol, `${what}: max |Δ| ${worst} > ${tol}`);
}

const backends: [string, () => Promise<Backend>, number][] = [
  ["js f64", async () => new JsBackend("f64"), 1e-5],
  ["wasm", () => createBackend("wasm"), 1e-4],
];

for (const [bname, make, tol] of backends)
  for (const [lname, heads, kvHeads] of layouts) {
    test(`cached generation equals full recompute (${bname}, ${lname})`, async () => {
      const model = Llama.init(await make(), config(heads, kvHeads), 7);
      const prompt = [1, 5, 9, 2];
      for (const temperature of [0, 1]) {
        // 30 tokens run past the 24-position window, so the sliding refill is covered too.
        const ref = await referenceGenerate(model, prompt, 30, temperature, 11);
        const ours = await collect(generateTokens(model, prompt, { temperature, maxTokens: 30, seed: 11 }));
        assert.deepEqual(ours, ref.ids, `tokens at temperature ${temperature}`);
      }
      // Logits step by step through a session.
      const ref = await referenceGenerate(model, prompt, 12, 0, 0);
      const s = new Session(model);
      let logits = await s.prefill(prompt);
      for (let i = 0; i < 12; i++) {
        assertClose(logits, ref.logits[i], tol, `logits of step ${i}`);
        logits = await s.decode(ref.ids[i]);
      }
      s.dispose();
    });

    test(`prefill with all logits equals forward; rollback equals fresh (${bname}, ${lname})`, async () => {
      const model = Llama.init(await make(), config(heads, kvHeads), 3);
      const ids = [4, 8, 15, 16, 23, 40, 0, 7, 7, 1];
      const full = await fullLogits(model, ids);
      const s = new Session(model);
      assertClose(await s.prefill(ids, { allLogits: true }), full, tol, "prefill all logits");
      assert.equal(s.position, ids.length);

      // Pieces: 6 tokens, then 4 more, give the same rows as one pass.
      s.truncate(0);
      await s.prefill(ids.slice(0, 6));
      assertClose(await s.prefill(ids.slice(6), { allLogits: true }), full.slice(6 * 41), tol, "prefill in two pieces");

      // Roll back to 3, continue differently: as if the rolled-back tokens had never been seen.
      s.truncate(3);
      assert.equal(s.position, 3);
      const other = [30, 31, 32];
      const afterRollback = [...(await s.prefill(other, { allLogits: true })), ...(await s.decode(2))];
      const fresh = (await fullLogits(model, [...ids.slice(0, 3), ...other, 2])).slice(3 * 41);
      assertClose(afterRollback, fresh, tol, "rollback then re-decode");
      s.dispose();
    });
  }

test("session: cache size, bounds and argument checks", async () => {
  const wasm = await createBackend("wasm");
  const model = Llama.init(wasm, config(4, 2), 1);
  const s = new Session(model, { maxSeq: 8 });
  // 2 layers × (K and V) × 2 KV heads × headDim 8 × 4 bytes.
  assert.equal(s.cacheBytesPerToken, 2 * 2 * 2 * 8 * 4);
  assert.throws(() => s.prefill([]), /at least one token/);
  assert.throws(() => s.prefill([41]), /outside the vocabulary/);
  await s.prefill([1, 2, 3, 4, 5, 6, 7]);
  await s.decode(8);
  assert.throws(() => s.decode(9), /overflow the cache/);
  assert.throws(() => s.truncate(9), /cannot truncate/);
  assert.throws(() => new Session(model, { maxSeq: 25 }), /maxSeq/);
  s.dispose();
  // The wasm kernel refuses a cache too small for the positions asked for.
  const q = wasm.alloc(32), out = wasm.alloc(32), kc = wasm.alloc(16 * 3), vc = wasm.alloc(16 * 3);
  assert.throws(() => wasm.attentionCached(out, q, kc, vc, 1, 4, 2, 8, 3, 1), /kCache needs 64 numbers/);
  assert.throws(() => wasm.attentionCached(out, q, kc, vc, 1, 4, 3, 8, 0, 1), /cannot share/);
  // The cached op has no backward: it refuses to be part of a graph.
  const trainable = Tensor.zeros(wasm, [1, 32], true);
  const cache = Tensor.zeros(wasm, [4, 16]);
  assert.throws(() => op.attentionCached(trainable, cache, cache, 4, 2, 8, 0), /noGrad/);
});

test("session: no graph, and every step's temporaries are freed", async () => {
  const wasm = (await createBackend("wasm")) as WasmBackend;
  const model = Llama.init(wasm, config(4, 2), 1); // trainable parameters: a graph would be recorded if grad were on
  const s = new Session(model);
  const run = async (): Promise<void> => {
    s.truncate(0);
    await s.prefill([1, 2, 3]);
    for (let t = 0; t < 15; t++) await s.decode(t);
  };
  await run();
  const top = wasm.stats().heapTop;
  await run();
  await run();
  assert.equal(wasm.stats().heapTop, top, "steady state allocates nothing new");
  s.dispose();
});

test("session with reuseLogits: the same logits in one host buffer, sized once (a row; more rows grow it)", async () => {
  for (const be of [await createBackend("wasm"), new JsBackend("f64")] as Backend[]) {
    const model = Llama.init(be, config(4, 2), 3);
    const fresh = new Session(model), reused = new Session(model, { reuseLogits: true });
    const a = await fresh.prefill([1, 2, 3], { allLogits: true }), b = await reused.prefill([1, 2, 3], { allLogits: true });
    assert.deepEqual(b, a, be.name);
    const d1 = await reused.decode(4);
    assert.deepEqual(d1, await fresh.decode(4), be.name);
    const d2 = await reused.decode(5);
    assert.deepEqual(d2, await fresh.decode(5), be.name);
    assert.equal(d1.buffer, d2.buffer, "one buffer serves every call");
    assert.equal(d1.length, model.config.vocab_size);
    for (const x of [fresh, reused, model]) x.dispose();
  }
});

test("an inference pass frees each layer's intermediates as the layer ends: a long prefill holds one layer's activations, not all", async () => {
  const wasm = (await createBackend("wasm")) as WasmBackend;
  const cfg = { ...config(4, 2), num_hidden_layers: 8, max_position_embeddings: 128 };
  const model = Llama.init(wasm, cfg, 4);
  const s = new Session(model);
  await s.prefill([1, 2]); // allocates the kernels' scratch (the packed GEMM's panels)
  s.truncate(0);
  const top = wasm.stats().heapTop;
  await s.prefill(Array.from({ length: 96 }, (_, i) => i % cfg.vocab_size));
  // One layer's activations for 96 rows: normed inputs, q/k/v and their rotations, attention
  // output, residuals, gate/up and SwiGLU, f32 (a generous count of the layer's tensors).
  const layerBytes = 4 * 96 * (8 * cfg.hidden_size + 3 * cfg.intermediate_size);
  const grew = wasm.stats().heapTop - top;
  assert.ok(grew < 3 * layerBytes, `the prefill took ${grew} new bytes; one layer's activations are about ${layerBytes}, all ${cfg.num_hidden_layers} layers' ${cfg.num_hidden_layers * layerBytes}`);
  s.dispose();
  model.dispose();
});

const DATA = "../shared/data/models";
for (const bname of ["wasm", "js"]) {
  test(`stories260K greedy text through the session (${bname})`, async (t) => {
    if (!existsSync(`${DATA}/stories260K.bin`)) return t.skip("../shared/data absent");
    const backend = await createBackend(bname);
    const { model, tokenizer } = loadModel(`${DATA}/stories260K.bin`, backend, `${DATA}/tok512.bin`);
    const expected = readFileSync(`${DATA}/stories260K.expected-greedy.txt`, "utf8").replace(/\n$/, "");
    let text = "";
    for await (const piece of stream(model, tokenizer!, promptIds(tokenizer!, ""), { temperature: 0, maxTokens: 200 })) text += piece.text;
    assert.equal(text, expected);
  });
}
