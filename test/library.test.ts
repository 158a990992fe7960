// The README's library example, and the rule that library code runs in a browser.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { createBackend, Llama, Trainer, CharTokenizer, generateTokens, splitTrainVal } from "../src/index.js";
import { collect } from "./async-helpers.js";

test("README library example trains and generates", async () => {
  const text = "to be or not to be, that is the question. ".repeat(100);
  const tokenizer = CharTokenizer.fromText(text);
  const backend = await createBackend("wasm");
  const model = Llama.init(backend, {
    vocab_size: tokenizer.vocabSize, hidden_size: 64, intermediate_size: 192, num_hidden_layers: 2,
    num_attention_heads: 4, num_key_value_heads: 2, max_position_embeddings: 32,
    rms_norm_eps: 1e-5, rope_theta: 10000, tie_word_embeddings: false,
  }, 1337);
  const trainer = new Trainer(model, {
    batchSize: 8, blockSize: 32, iters: 200, lr: 3e-3, minLr: 3e-4, warmup: 20, weightDecay: 0.1,
    beta1: 0.9, beta2: 0.99, gradClip: 1, gradAccum: 1, evalInterval: 100, evalIters: 5, seed: 1,
  }, splitTrainVal(Int32Array.from(tokenizer.encode(text))));
  const vals: number[] = [];
  await trainer.run(0, { onEval: (e) => vals.push(e.val) });
  assert.equal(vals.length, 3);
  assert.ok(vals[2] < 0.5 * vals[0], `validation loss falls: ${vals.join(" → ")}`);

  const ids = await collect(generateTokens(model, tokenizer.encode("to be"), { temperature: 0.8, maxTokens: 40, seed: 7 }));
  assert.equal(ids.length, 40);
  const again = await collect(generateTokens(model, tokenizer.encode("to be"), { temperature: 0.8, maxTokens: 40, seed: 7 }));
  assert.deepEqual(again, ids, "same seed, same tokens");
  // The text is memorised: greedy decoding continues it.
  const greedy = tokenizer.decode(await collect(generateTokens(model, tokenizer.encode("to be or not"), { temperature: 0, maxTokens: 12 })));
  assert.equal(greedy, " to be, that");
  backend.dispose?.(); // its worker threads: quit them rather than leave them to the process's exit
});

test("library code imports no Node built-ins (browser-safe); only *-node, node.ts and cli/ may", () => {
  const root = fileURLToPath(new URL("../src/", import.meta.url));
  const offenders: string[] = [];
  const walk = (dir: string): void => {
    for (const name of readdirSync(dir)) {
      const p = join(dir, name);
      if (statSync(p).isDirectory()) {
        if (name !== "cli") walk(p);
      } else if (name.endsWith(".js") && !name.endsWith("-node.js") && name !== "node.js") {
        const src = readFileSync(p, "utf8");
        if (/from\s+["']node:|require\(["']node:|\bprocess\.|\bBuffer\./.test(src)) offenders.push(p);
      }
    }
  };
  walk(root);
  assert.deepEqual(offenders, []);
});

test("a config claiming a 2^31-token context costs nothing until positions are used", async () => {
  const backend = await createBackend("wasm");
  const model = Llama.init(backend, {
    vocab_size: 10, hidden_size: 16, intermediate_size: 32, num_hidden_layers: 1, num_attention_heads: 2,
    num_key_value_heads: 1, max_position_embeddings: 2 ** 31, rms_norm_eps: 1e-5, rope_theta: 10000, tie_word_embeddings: true,
  }, 1);
  const ids = await collect(generateTokens(model, [1, 2, 3], { temperature: 0, maxTokens: 5 }));
  assert.equal(ids.length, 5);
  model.dispose();
  backend.dispose?.();
});
