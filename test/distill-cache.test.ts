// The teacher cache (encode/decode, files window by window, refusals) and the distillation
// objectives on a tiny model: the cache holds the teacher's true top-k, a student distilled from
// itself has zero divergence, on-policy batches sample from the student and score only the
// sampled positions, and a full-vocabulary cache reproduces the on-the-fly loss.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, truncateSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { JsBackend } from "../src/backend/js/js-backend.js";
import { Tensor, noGrad, scope } from "../src/tensor/tensor.js";
import { Llama } from "../src/nn/llama.js";
import { Rng } from "../src/util/rng.js";
import { randomBatch } from "../src/data/batches.js";
import { type CachedWindow, type TeacherCacheHeader, cacheWindowCount, decodeHeader, decodeWindow, encodeHeader, encodeWindow, recordBytes, tokensHash, topKLogProbs } from "../src/train/teacher-cache.js";
import { TeacherCacheReader, TeacherCacheWriter } from "../src/train/teacher-cache-node.js";
import { cachedTeacherObjective, onPolicyPrompt, onTheFlyObjective, sampleContinuations, teacherCacheWindows } from "../src/train/distill.js";
import type { LlamaConfig } from "../src/nn/config.js";

const tmp = mkdtempSync(join(tmpdir(), "bonsai-kd-"));
const be = new JsBackend("f64");

const config = (vocab: number, dim = 16): LlamaConfig => ({
  vocab_size: vocab, hidden_size: dim, intermediate_size: 32, num_hidden_layers: 1, num_attention_heads: 2, num_key_value_heads: 2,
  max_position_embeddings: 16, rms_norm_eps: 1e-5, rope_theta: 10000, tie_word_embeddings: false,
});

function header(over: Partial<TeacherCacheHeader> = {}): TeacherCacheHeader {
  return {
    format: "bonsai-teacher-cache", version: 1, temperature: 2, k: 3, vocabSize: 40000, blockSize: 4, windows: 2, idType: "u16", logProbType: "f16",
    data: { tokens: 9, fnv1a: "01234567" }, teacher: "t", tokenizer: { type: "char", chars: "ab" }, ...over,
  };
}

function randomWindow(h: TeacherCacheHeader, rng: Rng): { tokens: Int32Array; ids: Int32Array; logProbs: Float32Array } {
  const n = h.blockSize * h.k;
  return {
    tokens: Int32Array.from({ length: h.blockSize + 1 }, () => rng.int(h.vocabSize)),
    ids: Int32Array.from({ length: n }, () => rng.int(h.vocabSize)),
    logProbs: Float32Array.from({ length: n }, () => -8 * rng.next()),
  };
}

test("cache records round trip: u16/u32 ids, f16/f32 log-probabilities, compact sizes", () => {
  const rng = new Rng(1);
  for (const [idType, vocabSize] of [["u16", 40000], ["u32", 100000]] as const)
    for (const logProbType of ["f16", "f32"] as const) {
      const h = header({ idType, vocabSize, logProbType });
      assert.deepEqual(decodeHeader(encodeHeader(h)), h);
      assert.equal(encodeHeader(h).length % 8, 0);
      const w = randomWindow(h, rng);
      const bytes = encodeWindow(h, w);
      const idB = idType === "u16" ? 2 : 4, lpB = logProbType === "f16" ? 2 : 4;
      assert.equal(bytes.length, 5 * idB + 12 * (idB + lpB));
      const back = decodeWindow(h, bytes);
      assert.deepEqual(back.tokens, w.tokens);
      assert.deepEqual(back.ids, w.ids);
      for (let i = 0; i < w.logProbs.length; i++)
        assert.ok(Math.abs(back.logProbs[i] - w.logProbs[i]) <= (logProbType === "f32" ? 0 : 2 ** -11 * Math.abs(w.logProbs[i]) + 1e-7), `${logProbType} log-prob ${i}`);
    }
  assert.throws(() => encodeWindow(header(), { ...randomWindow(header(), rng), ids: new Int32Array(12).fill(40000) }), /token id 40000 out of range/);
  assert.throws(() => encodeHeader(header({ idType: "u16", vocabSize: 70000 })), /does not fit u16/);
  assert.throws(() => decodeHeader(new Uint8Array(16)), /not a Bonsai teacher cache/);
});

test("cache file: written window by window, read by seeking, truncation refused", () => {
  const h = header({ windows: 3 });
  const rng = new Rng(2);
  const windows = [0, 1, 2].map(() => randomWindow(h, rng));
  const path = join(tmp, "c.kdc");
  const w = new TeacherCacheWriter(path, h);
  for (const x of windows) w.append(x);
  assert.throws(() => w.append(windows[0]), /more than the 3 windows/);
  w.close();
  const r = TeacherCacheReader.open(path);
  assert.deepEqual(r.header, h);
  for (const i of [2, 0, 1]) assert.deepEqual(r.window(i).ids, windows[i].ids);
  assert.throws(() => r.window(3), /window 3 of 3/);
  r.close();
  assert.equal(readFileSync(path).length, encodeHeader(h).length + 3 * recordBytes(h));
  truncateSync(path, readFileSync(path).length - 1);
  assert.throws(() => TeacherCacheReader.open(path), /implies .* \(truncated\?\)/);
  const bad = join(tmp, "bad.kdc");
  writeFileSync(bad, "not a cache at all");
  assert.throws(() => TeacherCacheReader.open(bad), /not a Bonsai teacher cache/);
  // An incomplete writer leaves nothing behind.
  const partial = new TeacherCacheWriter(join(tmp, "p.kdc"), h);
  partial.append(windows[0]);
  assert.throws(() => partial.close(), /1 of 3 windows written/);
  assert.throws(() => TeacherCacheReader.open(join(tmp, "p.kdc")), /not found/);
});

test("topKLogProbs and tokensHash", () => {
  const logits = [1, 3, 2, 3, -1, 0];
  const { ids, logProbs } = topKLogProbs(logits, 2, 3, 2, 2);
  assert.deepEqual([...ids], [1, 2, 0, 2]); // ties go to the lower id
  const lse = (a: number[]): number => Math.log(a.reduce((s, x) => s + Math.exp(x), 0));
  assert.ok(Math.abs(logProbs[0] - (1.5 - lse([0.5, 1.5, 1]))) < 1e-6);
  assert.ok(Math.abs(logProbs[3] - (0 - lse([1.5, -0.5, 0]))) < 1e-6);
  assert.equal(tokensHash([1, 2, 3]), tokensHash(Int32Array.from([1, 2, 3])));
  assert.notEqual(tokensHash([1, 2, 3]), tokensHash([1, 2, 4]));
  assert.equal(cacheWindowCount(9, 4), 2);
  assert.equal(cacheWindowCount(8, 4), 1);
});

const V = 9;
const tokens = Int32Array.from({ length: 60 }, (_, i) => (i * 7 + (i >> 2)) % V);
const teacher = Llama.init(be, config(V, 16), 5);
const student = Llama.init(be, config(V, 8), 6);

test("teacher cache windows hold the teacher's top-k at τ, and a full-vocabulary cache gives the on-the-fly loss", async () => {
  const B = 8, tau = 1.5;
  const windows: CachedWindow[] = [];
  for await (const w of teacherCacheWindows(teacher, tokens, { blockSize: B, k: V, temperature: tau, batch: 3 })) windows.push(w);
  assert.equal(windows.length, cacheWindowCount(tokens.length, B));
  const w = windows[2];
  assert.deepEqual(w.tokens, tokens.slice(2 * B, 3 * B + 1));
  const logits = await noGrad(() => scope(() => teacher.forward(w.tokens.subarray(0, B), 1, B).toArray()));
  const want = topKLogProbs(logits, B, V, V, tau);
  assert.deepEqual(w.ids, want.ids);
  assert.deepEqual(w.logProbs, want.logProbs);
  // Training batches from the cache vs the same windows with the teacher run live.
  const h = header({ temperature: tau, k: V, vocabSize: V, blockSize: B, windows: windows.length });
  const opts = { loss: "jsd" as const, alpha: 0.3, temperature: tau, beta: 0.4 };
  const cached = cachedTeacherObjective({ header: h, window: (i) => windows[i] }, student, { ...opts, seed: 3, batchSize: 2, blockSize: B });
  const live = onTheFlyObjective(teacher, student, opts);
  const ctx = { iter: 4, micro: 0, pass: { dropoutSeed: 0 } };
  const dummy = randomBatch(tokens, 2, B, new Rng(0));
  const [a, b] = await scope(() => {
    const out = cached.rowLosses(student, dummy, ctx) as { losses: Tensor; targets: Int32Array };
    // Recover which windows were drawn from the targets and run the teacher on them.
    const ids = new Int32Array(2 * B);
    for (let i = 0; i < 2; i++) {
      const wi = windows.findIndex((x) => x.tokens.subarray(1).every((t, j) => t === out.targets[i * B + j]));
      ids.set(windows[wi].tokens.subarray(0, B), i * B);
    }
    const liveLosses = live.rowLosses(student, { ids, targets: out.targets, batch: 2, seq: B }, ctx) as Tensor;
    return Promise.all([out.losses.toArray(), liveLosses.toArray()]);
  });
  for (let i = 0; i < a.length; i++) assert.ok(Math.abs(a[i] - b[i]) < 1e-5 * (1 + Math.abs(b[i])), `position ${i}: cached ${a[i]} vs live ${b[i]}`);
  assert.throws(() => cachedTeacherObjective({ header: h, window: (i) => windows[i] }, student, { ...opts, temperature: 1, seed: 0, batchSize: 2, blockSize: B }), /temperature 1.5, the run asks for 1/);
  assert.throws(() => cachedTeacherObjective({ header: h, window: (i) => windows[i] }, student, { ...opts, seed: 0, batchSize: 2, blockSize: 4 }), /windows of 8 tokens, the run's block size is 4/);
  assert.throws(() => cachedTeacherObjective({ header: { ...h, vocabSize: 10 }, window: (i) => windows[i] }, student, { ...opts, seed: 0, batchSize: 2, blockSize: B }), /vocabulary mismatch: the student has 9 tokens, the teacher cache 10/);
});

test("objectives: self-distillation has zero divergence; α = 1 is the language-modelling loss; on-policy samples from the student", async () => {
  const B = 8, b = randomBatch(tokens, 3, B, new Rng(9));
  const ctx = { iter: 0, micro: 0, pass: { dropoutSeed: 0 } };
  const [selfLosses, ceLosses, lmLosses] = await scope(() => {
    const self = onTheFlyObjective(student, student, { loss: "reverse-kl", alpha: 0, temperature: 2 }).rowLosses(student, b, ctx) as Tensor;
    const ce = onTheFlyObjective(teacher, student, { loss: "forward-kl", alpha: 1, temperature: 2 }).rowLosses(student, b, ctx) as Tensor;
    return Promise.all([self.toArray(), ce.toArray(), student.losses(b.ids, b.targets, b.batch, b.seq).toArray()]);
  });
  for (const x of selfLosses) assert.ok(Math.abs(x) < 1e-12);
  assert.deepEqual(ceLosses, lmLosses);
  // λ = 1: every micro-batch on-policy. Prompts are kept, continuations sampled deterministically.
  const onp = onTheFlyObjective(teacher, student, { loss: "forward-kl", alpha: 0.5, temperature: 1, onPolicy: 1, seed: 4 });
  const run = async (): Promise<{ losses: number[]; targets: Int32Array }> => {
    const prepared = await onp.prepare!(student, b, ctx);
    const { losses, targets } = scope(() => {
      const out = onp.rowLosses(student, prepared, ctx) as { losses: Tensor; targets: Int32Array };
      return { losses: out.losses.toArray(), targets: out.targets };
    });
    return { losses: [...(await losses)], targets };
  };
  const first = await run(), again = await run();
  assert.deepEqual(first, again);
  const P = onPolicyPrompt(B);
  for (let r = 0; r < 3; r++)
    for (let i = 0; i < B; i++) {
      assert.equal(first.targets[r * B + i] >= 0, i >= P - 1, `position ${i} counted iff it predicts a sampled token`);
      assert.equal(first.losses[r * B + i] === 0, i < P - 1);
    }
  const sampled = await sampleContinuations(student, b, new Rng(1));
  assert.deepEqual(await sampleContinuations(student, b, new Rng(1)), sampled);
  let differs = 0;
  for (let r = 0; r < 3; r++)
    for (let i = 0; i < B; i++) {
      if (i < P) assert.equal(sampled[r * B + i], b.ids[r * B + i], "the prompt is kept");
      else differs += sampled[r * B + i] !== b.ids[r * B + i] ? 1 : 0;
      assert.ok(sampled[r * B + i] >= 0 && sampled[r * B + i] < V);
    }
  assert.ok(differs > 0, "continuations come from the student, not the data");
  // The loss there is τ²·KL alone (no cross-entropy): a divergence, never negative.
  assert.ok(first.losses.every((x) => x >= 0));
  const lambdaHalf = onTheFlyObjective(teacher, student, { loss: "forward-kl", alpha: 0.5, temperature: 1, onPolicy: 0.5, seed: 4 });
  let onPolicyCount = 0;
  for (let iter = 0; iter < 40; iter++) {
    const prepared = await lambdaHalf.prepare!(student, b, { iter, micro: 0 });
    scope(() => void (lambdaHalf.rowLosses(student, prepared, { iter, micro: 0, pass: { dropoutSeed: 0 } }) instanceof Tensor || onPolicyCount++));
  }
  assert.ok(onPolicyCount > 10 && onPolicyCount < 30, `about half the batches on-policy (${onPolicyCount} of 40)`);
});
