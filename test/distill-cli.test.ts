// `bonsai distill` and `bonsai distill-cache` end to end: a tiny teacher trained here with the
// library, students distilled from it (on the fly, on-policy, from a quantized GGUF, from a
// cache), exact resume, and one-line refusals (vocabulary, temperature, data, flag clashes).
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { assertOneLineError, bonsai } from "./cli-helpers.js";
import { createBackend } from "../src/backend/index.js";
import { Llama } from "../src/nn/llama.js";
import { Trainer } from "../src/train/trainer.js";
import { splitTrainVal } from "../src/data/batches.js";
import { trainTokenizer } from "../src/tokenizer/train-bpe.js";
import { CharTokenizer } from "../src/tokenizer/char-tokenizer.js";
import type { Tokenizer } from "../src/tokenizer/tokenizer.js";
import { modelFiles } from "../src/io/checkpoint.js";
import { writeCheckpoint } from "../src/io/model-files-node.js";
import { TeacherCacheReader } from "../src/train/teacher-cache-node.js";

const tmp = mkdtempSync(join(tmpdir(), "bonsai-distill-"));



const text = "the quick brown fox jumps over the lazy dog. a lazy dog sleeps; the fox runs. ".repeat(40);
const corpus = join(tmp, "corpus.txt");
writeFileSync(corpus, text);

/** A teacher trained for a few steps with the library and saved as a checkpoint directory. */
async function trainTeacher(dir: string, tokenizer: Tokenizer): Promise<void> {
  const be = await createBackend("wasm", { threads: 1 });
  const model = Llama.init(be, {
    vocab_size: tokenizer.vocabSize, hidden_size: 32, intermediate_size: 64, num_hidden_layers: 1, num_attention_heads: 2, num_key_value_heads: 1,
    max_position_embeddings: 16, rms_norm_eps: 1e-5, rope_theta: 10000, tie_word_embeddings: false,
  }, 1);
  const opts = { batchSize: 8, blockSize: 16, iters: 40, lr: 3e-3, minLr: 3e-4, warmup: 5, weightDecay: 0.1, beta1: 0.9, beta2: 0.99, gradClip: 1, gradAccum: 1, evalInterval: 1000, evalIters: 1, seed: 1 };
  const trainer = new Trainer(model, opts, splitTrainVal(Int32Array.from(tokenizer.encode(text))));
  for (let i = 0; i < opts.iters; i++) await trainer.step(i);
  writeCheckpoint(dir, await modelFiles(model, tokenizer));
  model.dispose();
}

const teacher = join(tmp, "teacher");
const student = ["--layers", "1", "--heads", "2", "--dim", "16", "--block-size", "16", "--batch-size", "4", "--eval-iters", "2", "--eval-interval", "4", "--threads", "1"];

test("distill: from a teacher directory, on-policy, exact resume, quantized GGUF teacher, vocabulary mismatch", async () => {
  await trainTeacher(teacher, trainTokenizer(text, { type: "bytelevel-bpe", vocabSize: 300 }));
  const args = ["distill", "--teacher", teacher, "--data", corpus, ...student, "--kd-loss", "jsd", "--beta", "0.3", "--on-policy", "0.5", "--temperature", "2"];
  const a = bonsai(...args, "--out", join(tmp, "a"), "--iters", "8");
  assert.equal(a.code, 0, a.stderr);
  assert.match(a.stderr, /bonsai distill: .* parameters/);
  for (const f of ["config.json", "model.safetensors", "bonsai-tokenizer.json", "optimizer.safetensors", "training_state.json", "metrics.jsonl"]) assert.ok(existsSync(join(tmp, "a", f)), f);
  // The student carries the teacher's tokenizer and vocabulary, and its own (smaller) size.
  assert.equal(readFileSync(join(tmp, "a", "bonsai-tokenizer.json"), "utf8"), readFileSync(join(teacher, "bonsai-tokenizer.json"), "utf8"));
  const cfg = JSON.parse(readFileSync(join(tmp, "a", "config.json"), "utf8"));
  assert.equal(cfg.vocab_size, JSON.parse(readFileSync(join(teacher, "config.json"), "utf8")).vocab_size);
  assert.equal(cfg.hidden_size, 16);
  const state = JSON.parse(readFileSync(join(tmp, "a", "training_state.json"), "utf8"));
  assert.deepEqual({ ...state.objective, teacher: undefined }, { loss: "jsd", alpha: 0.5, temperature: 2, beta: 0.3, onPolicy: 0.5, teacher: undefined, teacherCache: null });
  const steps = readFileSync(join(tmp, "a", "metrics.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l)).filter((m) => "loss" in m);
  assert.equal(steps.length, 8);
  assert.ok(steps.every((m) => Number.isFinite(m.loss) && m.loss >= 0));

  // Stop at 4, resume to 8: the same student as the uninterrupted run.
  assert.equal(bonsai(...args, "--out", join(tmp, "b"), "--iters", "4").code, 0);
  assertOneLineError(bonsai("distill", "--out", join(tmp, "b"), "--resume", "--alpha", "0.2"), /--alpha cannot be changed/);
  const resumed = bonsai("distill", "--out", join(tmp, "b"), "--resume", "--iters", "8");
  assert.equal(resumed.code, 0, resumed.stderr);
  assert.match(resumed.stderr, /resuming at iteration 4/);
  assert.deepEqual(readFileSync(join(tmp, "b", "model.safetensors")), readFileSync(join(tmp, "a", "model.safetensors")));
  assertOneLineError(bonsai("train", "--out", join(tmp, "b"), "--resume", "--iters", "9"), /holds a distill run; continue it with bonsai distill/);

  // A quantized GGUF teacher (Q8_0 blocks kept quantized on the backend).
  const gguf = join(tmp, "teacher.q8_0.gguf");
  const q = bonsai("quantize", "--model", teacher, "--quant", "q8_0", "--out", gguf);
  assert.equal(q.code, 0, q.stderr);
  const g = bonsai("distill", "--teacher", gguf, "--data", corpus, ...student, "--out", join(tmp, "g"), "--iters", "3", "--kd-loss", "reverse-kl");
  assert.equal(g.code, 0, g.stderr);

  // Another teacher with another vocabulary cannot continue this student.
  const other = join(tmp, "teacher-char");
  await trainTeacher(other, CharTokenizer.fromText(text));
  assertOneLineError(bonsai("distill", "--teacher", other, "--out", join(tmp, "b"), "--resume", "--iters", "9"), /vocabulary mismatch: the student has \d+ tokens, the teacher \d+/);
  assertOneLineError(bonsai("distill", "--teacher", teacher, "--teacher-cache", "x", "--data", corpus, "--out", join(tmp, "c")), /either --teacher or --teacher-cache/);
});

test("distill-cache, then distill --teacher-cache", async () => {
  if (!existsSync(teacher)) await trainTeacher(teacher, trainTokenizer(text, { type: "bytelevel-bpe", vocabSize: 300 }));
  const cache = join(tmp, "teacher.kdc");
  const c = bonsai("distill-cache", "--teacher", teacher, "--data", corpus, "--top-k", "8", "--block-size", "16", "--temperature", "2", "--out", cache, "--threads", "1");
  assert.equal(c.code, 0, c.stderr);
  const reader = TeacherCacheReader.open(cache);
  const h = reader.header;
  assert.deepEqual([h.k, h.blockSize, h.temperature, h.idType, h.logProbType], [8, 16, 2, "u16", "f16"]);
  // Compact: per position 8 × (2-byte id + 2-byte log-prob), plus the window's tokens.
  const headerBytes = statSync(cache).size - h.windows * (17 * 2 + 16 * 8 * 4);
  assert.ok(headerBytes > 12 && headerBytes < 65536 && headerBytes % 8 === 0, `header of ${headerBytes} bytes`);
  const w = reader.window(h.windows - 1);
  for (let i = 0; i < w.logProbs.length; i += 8) {
    for (let j = 1; j < 8; j++) assert.ok(w.logProbs[i + j] <= w.logProbs[i + j - 1], "most likely first");
    assert.ok(w.logProbs.slice(i, i + 8).reduce((s, x) => s + Math.exp(x), 0) <= 1.001);
  }
  reader.close();

  const s = bonsai("distill", "--teacher-cache", cache, "--data", corpus, ...student.filter((x, i, a) => x !== "--block-size" && a[i - 1] !== "--block-size"), "--out", join(tmp, "s"), "--iters", "6");
  assert.equal(s.code, 0, s.stderr);
  const state = JSON.parse(readFileSync(join(tmp, "s", "training_state.json"), "utf8"));
  assert.equal(state.options.blockSize, 16, "the block size is the cache's");
  assert.equal(state.objective.temperature, 2, "τ is the cache's");
  assert.equal(readFileSync(join(tmp, "s", "bonsai-tokenizer.json"), "utf8"), readFileSync(join(teacher, "bonsai-tokenizer.json"), "utf8"));
  const r = bonsai("distill", "--out", join(tmp, "s"), "--resume", "--iters", "8");
  assert.equal(r.code, 0, r.stderr);

  assertOneLineError(bonsai("distill", "--teacher-cache", cache, "--data", corpus, ...student, "--out", join(tmp, "t1"), "--temperature", "1"), /temperature 2, the run asks for 1/);
  assertOneLineError(bonsai("distill", "--teacher-cache", cache, "--data", corpus, ...student, "--out", join(tmp, "t2"), "--on-policy", "0.5"), /--on-policy needs the teacher itself/);
  const otherData = join(tmp, "other.txt");
  writeFileSync(otherData, text.toUpperCase());
  assertOneLineError(bonsai("distill", "--teacher-cache", cache, "--data", otherData, ...student, "--out", join(tmp, "t3")), /was made from other data/);
  assertOneLineError(bonsai("distill", "--out", join(tmp, "s"), "--resume", "--teacher", teacher), /distils from a teacher cache; pass --teacher-cache, not --teacher/);
});
