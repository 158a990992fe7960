// Training pieces: the LR schedule, batching, determinism and exact resume through checkpoint
// files (in process; the CLI test covers Ctrl-C and --resume end to end).
import { test } from "node:test";
import assert from "node:assert/strict";
import { createBackend } from "../src/backend/index.js";
import { Llama } from "../src/nn/llama.js";
import { Trainer, type TrainOptions } from "../src/train/trainer.js";
import { learningRate } from "../src/train/schedule.js";
import { randomBatch, sequentialBatches, splitTrainVal } from "../src/data/batches.js";
import { modelFiles, modelFromFiles } from "../src/io/checkpoint.js";
import { parseSafetensors, serializeSafetensors } from "../src/format/safetensors.js";
import { Rng } from "../src/util/rng.js";
import type { LlamaConfig } from "../src/nn/config.js";

test("learning rate: nanoGPT's warm-up and cosine", () => {
  const s = { lr: 1e-3, minLr: 1e-4, warmup: 100, decayIters: 2000 };
  assert.equal(learningRate(s, 0), 1e-3 / 101);
  assert.equal(learningRate(s, 99), 1e-3 * 100 / 101);
  assert.ok(Math.abs(learningRate(s, 100) - 1e-3) < 1e-15);
  assert.ok(Math.abs(learningRate(s, 1050) - 5.5e-4) < 1e-12, "half-way is the mean of lr and minLr");
  assert.ok(Math.abs(learningRate(s, 2000) - 1e-4) < 1e-15);
  assert.equal(learningRate(s, 5000), 1e-4);
});

test("batches: shifted targets, full coverage of a split", () => {
  const tokens = Int32Array.from({ length: 103 }, (_, i) => i);
  const b = randomBatch(tokens, 4, 10, new Rng(1));
  for (let i = 0; i < 40; i++) assert.equal(b.targets[i], b.ids[i] + 1);
  const seen: number[] = [];
  for (const w of sequentialBatches(tokens, 3, 10)) {
    assert.equal(w.ids.length, w.batch * w.seq);
    for (let i = 0; i < w.ids.length; i++) assert.equal(w.targets[i], w.ids[i] + 1);
    seen.push(...w.targets);
  }
  assert.deepEqual(seen, Array.from({ length: 102 }, (_, i) => i + 1), "every token but the first is a target once");
  const { train, val } = splitTrainVal(Int32Array.from({ length: 1000 }, (_, i) => i));
  assert.equal(train.length, 900);
  assert.equal(val[0], 900);
});

const config: LlamaConfig = {
  vocab_size: 20, hidden_size: 16, intermediate_size: 32, num_hidden_layers: 2, num_attention_heads: 4,
  num_key_value_heads: 2, max_position_embeddings: 16, rms_norm_eps: 1e-5, rope_theta: 10000, tie_word_embeddings: false, dropout: 0.1,
};
const options: TrainOptions = {
  batchSize: 4, blockSize: 16, iters: 30, lr: 3e-3, minLr: 3e-4, warmup: 5, weightDecay: 0.1,
  beta1: 0.9, beta2: 0.99, gradClip: 1, gradAccum: 2, evalInterval: 10, evalIters: 2, seed: 9,
};
const rng = new Rng(3);
const data = splitTrainVal(Int32Array.from({ length: 3000 }, () => rng.int(20)));

async function losses(from: Trainer, start: number, stopAt = Infinity): Promise<number[]> {
  const out: number[] = [];
  await from.run(start, { onStep: (e) => out.push(e.loss), shouldStop: () => start + out.length >= stopAt });
  return out;
}

test("same seed, same losses; resuming from checkpoint files continues exactly (dropout and grad accumulation on)", async () => {
  const be = await createBackend("wasm");
  const full = await losses(new Trainer(Llama.init(be, config, 9), options, data), 0);
  const again = await losses(new Trainer(Llama.init(be, config, 9), options, data), 0);
  assert.deepEqual(again, full);

  // Stop after 13 steps, save through the checkpoint serialisation, load into a fresh model.
  const model = Llama.init(be, config, 9);
  const first = new Trainer(model, options, data);
  const head = await losses(first, 0, 13);
  assert.equal(head.length, 13);
  const files = new Map((await modelFiles(model, null)).map((f) => [f.name, f.bytes]));
  const optimizerBytes = serializeSafetensors(await first.optimizer.state());
  const restored = modelFromFiles(be, new TextDecoder().decode(files.get("config.json")!), files.get("model.safetensors")!);
  const second = new Trainer(restored, options, data);
  second.optimizer.loadState(first.optimizer.step, parseSafetensors(optimizerBytes).tensors);
  const tail = await losses(second, 13);
  assert.deepEqual([...head, ...tail], full);
});

test("bad training options are refused with the option's name", async () => {
  const be = await createBackend("js");
  const model = Llama.init(be, config, 1);
  assert.throws(() => new Trainer(model, { ...options, blockSize: 64 }, data), /block size 64 exceeds the model's max_position_embeddings 16/);
  assert.throws(() => new Trainer(model, { ...options, beta2: 1 }, data), /beta2 must be in \[0, 1\)/);
  assert.throws(() => new Trainer(model, { ...options, batchSize: 0 }, data), /batchSize must be a positive integer/);
  assert.throws(() => new Trainer(model, options, { train: data.train, val: data.val.subarray(0, 5) }), /the val split has 5 tokens/);
});
