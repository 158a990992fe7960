// Curriculum learning: documents as samples, sample batches, pacing c(t), weights at chosen steps,
// scorers, the weighted objective (value and gradient) and exact resume of a self-paced run.
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { createBackend } from "../src/backend/index.js";
import { Llama } from "../src/nn/llama.js";
import type { LlamaConfig } from "../src/nn/config.js";
import { backward, noGrad, scope } from "../src/tensor/tensor.js";
import { weightedSum } from "../src/tensor/ops.js";
import { Trainer, type StepEvent, type TrainOptions } from "../src/train/trainer.js";
import {
  Curriculum, competence, curriculumMetrics, curriculumOptions, eligibleCount, lengthScores, fieldScores, parseScorer, positionWeights,
  sampleLosses, sampleWeightedLoss, type CurriculumState, type Pacing,
} from "../src/train/curriculum.js";
import { concatSamples, splitDocuments, splitSamples, tokenizeDocuments, type Sample } from "../src/data/documents.js";
import { sampleBatch, sampleWindowBatches } from "../src/data/batches.js";
import { CharTokenizer } from "../src/tokenizer/char-tokenizer.js";
import { modelFiles, modelFromFiles } from "../src/io/checkpoint.js";
import { parseSafetensors, serializeSafetensors } from "../src/format/safetensors.js";
import { loadModel } from "../src/io/model-files-node.js";
import { Rng } from "../src/util/rng.js";

const close = (a: number, b: number, tol: number, what = ""): void => assert.ok(Math.abs(a - b) <= tol, `${what} ${a} vs ${b}`);
const sample = (ids: number[], fields: Record<string, number> = {}, line = 1): Sample => ({ ids: Int32Array.from(ids), fields, line });

test("documents: stories, lines and JSONL records; errors name the line", () => {
  const stories = splitDocuments("Once there was a cat.\n<|endoftext|>\nA dog ran. <|endoftext|>  \n<|endoftext|>The end", "stories");
  assert.deepEqual(stories.map((d) => [d.text, d.line]), [["Once there was a cat.", 1], ["A dog ran.", 3], ["The end", 4]], "trimmed, empty pieces skipped");
  const lines = splitDocuments("emma\r\nolivia\n\n  \nava\n", "lines");
  assert.deepEqual(lines.map((d) => [d.text, d.line]), [["emma", 1], ["olivia", 2], ["ava", 5]]);
  const jsonl = splitDocuments('{"text":"easy","score":1.5,"tag":"x","n":null}\n\n{"score":-2,"text":"hard","extra":3}\n', "jsonl");
  assert.deepEqual(jsonl, [{ text: "easy", fields: { score: 1.5 }, line: 1 }, { text: "hard", fields: { score: -2, extra: 3 }, line: 3 }]);
  assert.deepEqual(splitDocuments('{"story":"s","d":4}', "jsonl", { textField: "story" }), [{ text: "s", fields: { d: 4 }, line: 1 }]);

  assert.throws(() => splitDocuments('{"text":"a"}\n{"text": "b"\n', "jsonl", { name: "data.jsonl" }), /^Error: data\.jsonl line 2: invalid JSON \([^\n]*\)$/);
  assert.throws(() => splitDocuments('{"text":"a"}\n[1,2]', "jsonl"), /^Error: jsonl line 2: expected a JSON object$/);
  assert.throws(() => splitDocuments('{"text":"a"}\n\n{"body":"b"}', "jsonl"), /^Error: jsonl line 3: no string field "text"$/);
  assert.throws(() => splitDocuments('{"text":7}', "jsonl"), /line 1: no string field "text"/);
  assert.throws(() => splitDocuments(" \n<|endoftext|>\n", "stories"), /no documents/);
  assert.throws(() => splitDocuments("x", "csv" as never), /unknown document format "csv" \(expected stories, lines, jsonl\)/);
});

test("documents: tokenized samples, held-out last 10%, concatenation", () => {
  const docs = splitDocuments("ab\nb\nabc\nba\n", "lines");
  const tok = CharTokenizer.fromText("abc");
  const { samples, dropped } = tokenizeDocuments(docs, tok);
  assert.equal(dropped, 1, "a one-token sample predicts nothing");
  assert.deepEqual(samples.map((s) => [...s.ids]), [[0, 1], [0, 1, 2], [1, 0]]);
  assert.deepEqual(samples.map((s) => s.line), [1, 3, 4]);
  assert.deepEqual([...concatSamples(samples)], [0, 1, 0, 1, 2, 1, 0]);
  const { train, val } = splitSamples(Array.from({ length: 25 }, (_, i) => i));
  assert.deepEqual(val, [22, 23, 24]);
  assert.equal(train.length, 22);
  assert.throws(() => splitSamples([7]), /1 sample\(s\) are too few to hold out 10% for validation/);
  assert.throws(() => tokenizeDocuments(splitDocuments("a\nb", "lines"), tok), /no sample has 2 or more tokens/);
});

test("sample batches: one sample per row, padded with ignored targets, long samples windowed", () => {
  const samples = [sample([1, 2, 3]), sample([4, 5, 6, 7, 8, 9, 10, 11, 12, 13]), sample([7, 8])];
  const b = sampleBatch(samples, [0, 2, 0], 4, new Rng(1));
  assert.equal(b.seq, 2, "as long as the longest row");
  assert.deepEqual([...b.ids], [1, 2, 7, 0, 1, 2]);
  assert.deepEqual([...b.targets], [2, 3, 8, -1, 2, 3]);
  assert.deepEqual([...b.samples], [0, 2, 0]);
  for (let i = 0; i < 20; i++) {
    const w = sampleBatch(samples, [1], 4, new Rng(i));
    assert.equal(w.seq, 4);
    const start = w.ids[0] - 4;
    assert.ok(start >= 0 && start <= 5, "a window inside the sample");
    assert.deepEqual([...w.ids], [0, 1, 2, 3].map((j) => 4 + start + j));
    assert.deepEqual([...w.targets], [1, 2, 3, 4].map((j) => 4 + start + j));
  }
  // Scoring windows: every target of every sample once.
  const seen = samples.map(() => [] as number[]);
  for (const s of sampleWindowBatches(samples, 2, 4))
    for (let r = 0; r < s.batch; r++)
      for (let j = 0; j < s.seq; j++) if (s.targets[r * s.seq + j] >= 0) seen[s.samples[r]].push(s.targets[r * s.seq + j]);
  assert.deepEqual(seen.map((t) => t.sort((x, y) => x - y)), samples.map((s) => [...s.ids.subarray(1)]));
});

test("pacing: c(t) of each function at chosen steps, by hand", () => {
  const p = (name: Pacing["name"], c0 = 0.1): Pacing => ({ name, c0, fullAt: 0.5, stages: 4 });
  const at = (pace: Pacing, iter: number): number => competence(pace, iter / 200);
  for (const iter of [0, 50, 199]) assert.equal(at(p("none"), iter), 1);
  close(at(p("linear"), 0), 0.1, 1e-15);
  close(at(p("linear"), 50), 0.55, 1e-15); // 0.1 + 0.9·(0.25/0.5)
  assert.equal(at(p("linear"), 100), 1);
  close(at(p("root"), 0), 0.1, 1e-15);
  close(at(p("root"), 25), Math.sqrt(0.2575), 1e-15); // √(0.25·0.99 + 0.01)
  close(at(p("root"), 50), Math.sqrt(0.505), 1e-15); // √(0.5·0.99 + 0.01) ≈ 0.7106
  assert.equal(at(p("root"), 150), 1);
  assert.equal(at(p("step"), 0), 0.1);
  assert.equal(at(p("step"), 24), 0.1); // u = 0.24: stage 0
  close(at(p("step"), 25), 0.325, 1e-15); // u = 0.25: stage 1 of 4
  close(at(p("step"), 60), 0.55, 1e-15);
  close(at(p("step"), 90), 0.775, 1e-15);
  assert.equal(at(p("step"), 100), 1);
  close(at(p("exp", 0.01), 0), 0.01, 1e-15);
  close(at(p("exp", 0.01), 50), 0.1, 1e-15); // 0.01^(1 − 0.5)
  close(at(p("exp", 0.01), 75), Math.pow(0.01, 0.25), 1e-15);
  assert.equal(at(p("exp", 0.01), 100), 1);
  assert.equal(eligibleCount(0.2 + 0.8 * 0.5, 10), 6, "0.6000000000000001·10 is 6 samples, not 7");
  assert.equal(eligibleCount(0.001, 10), 1, "at least one sample");
});

// Ten samples whose `d` field is their difficulty: easiest first they are 1, 3, 4, 2, 0, 6, 8, 7, 5, 9.
const scored = [50, 10, 40, 20, 30, 90, 60, 80, 70, 100].map((d, i) => sample([i % 5, 1, 2, 3], { d }, i + 1));
const scoredOptions = { scorer: "field:d", pacing: "linear" as const, c0: 0.2, fullAt: 0.5 };

test("hard curriculum: weights and draws at chosen steps", async () => {
  const be = await createBackend("js");
  const model = Llama.init(be, config, 1);
  const cur = new Curriculum(scored, scoredOptions, { blockSize: 8 });
  const at0 = await cur.beginStep(0, 100, model); // c = 0.2: the 2 easiest
  assert.deepEqual([...cur.weights()], [0, 1, 0, 1, 0, 0, 0, 0, 0, 0]);
  assert.deepEqual(at0, { progress: 0, competence: 0.2, eligible: 0.2, weightMean: 0.2, weightMin: 0, weightP10: 0, weightP50: 0, weightP90: 1, weightMax: 1, rescored: false });
  for (let i = 0; i < 10; i++) {
    const b = cur.batch(new Rng(i), 4, 8);
    assert.ok([...b.samples].every((s) => s === 1 || s === 3), "only eligible samples are drawn");
    assert.deepEqual([...b.rowWeights], [1, 1, 1, 1]);
  }
  const at25 = await cur.beginStep(25, 100, model); // c = 0.6: the 6 easiest
  assert.deepEqual([...cur.weights()], [1, 1, 1, 1, 1, 0, 1, 0, 0, 0]);
  assert.equal(at25.eligible, 0.6);
  close(at25.competence, 0.6, 1e-15);
  const drawn = new Set<number>();
  for (let i = 0; i < 30; i++) for (const s of cur.batch(new Rng(i), 4, 8).samples) drawn.add(s);
  assert.deepEqual([...drawn].sort(), [0, 1, 2, 3, 4, 6]);
  await cur.beginStep(50, 100, model);
  assert.deepEqual([...cur.weights()], Array(10).fill(1));
  assert.deepEqual(curriculumMetrics({ ...at0, tokenLoss: 2 }), { competence: 0.2, eligible: 0.2, w_mean: 0.2, w_min: 0, w_p10: 0, w_p50: 0, w_p90: 1, w_max: 1, token_loss: 2 });
});

test("soft curriculum: w = exp(−(rank + 1 − ⌈cN⌉)/(τN)) past the competence, at chosen steps", async () => {
  const be = await createBackend("js");
  const model = Llama.init(be, config, 1);
  const cur = new Curriculum(scored, { ...scoredOptions, mode: "soft", softness: 0.1 }, { blockSize: 8 });
  const e = Math.exp;
  const s25 = await cur.beginStep(25, 100, model); // c = 0.6, k = 6; τN = 1
  const expected25 = [1, 1, 1, 1, 1, e(-3), 1, e(-2), e(-1), e(-4)]; // ranks 6..9 are samples 8, 7, 5, 9
  cur.weights().forEach((w, i) => close(w, expected25[i], 1e-15, `sample ${i}`));
  close(s25.weightMean, (6 + e(-1) + e(-2) + e(-3) + e(-4)) / 10, 1e-15, "mean");
  assert.equal(s25.weightMin, e(-4));
  close(s25.weightP10, e(-4) + 0.9 * (e(-3) - e(-4)), 1e-15, "p10"); // sorted: e⁻⁴ e⁻³ e⁻² e⁻¹ 1 …, at 0.9
  assert.equal(s25.weightP50, 1);
  assert.equal(s25.weightMax, 1);
  const s0 = await cur.beginStep(0, 100, model); // c = 0.2, k = 2: samples 1, 3 full, then 4, 2, 0, 6, 8, 7, 5, 9
  const expected0 = [e(-3), 1, e(-2), 1, e(-1), e(-7), e(-4), e(-6), e(-5), e(-8)];
  cur.weights().forEach((w, i) => close(w, expected0[i], 1e-15, `sample ${i}`));
  assert.equal(s0.eligible, 0.2);
  // Every sample can be drawn; each row carries its sample's weight.
  const w = cur.weights(), drawn = new Set<number>();
  for (let i = 0; i < 40; i++) {
    const b = cur.batch(new Rng(i), 4, 8);
    b.samples.forEach((s, r) => assert.equal(b.rowWeights[r], w[s]));
    for (const s of b.samples) drawn.add(s);
  }
  assert.equal(drawn.size, 10);
});

test("scorers: length, field:NAME, and bad specs", () => {
  assert.deepEqual([...lengthScores([sample([1, 2, 3]), sample([4, 5])])], [3, 2]);
  assert.deepEqual([...fieldScores(scored, "d")].slice(0, 3), [50, 10, 40]);
  assert.throws(() => fieldScores([sample([1, 2], { d: 1 }, 4), sample([1, 2], {}, 9)], "d"), /field:d: the record on line 9 has no numeric field "d"/);
  assert.deepEqual(parseScorer("field:quality"), { kind: "field", field: "quality" });
  assert.throws(() => parseScorer("perplexity"), /unknown curriculum scorer "perplexity" \(expected length, teacher-loss, self-paced, field:NAME\)/);
  assert.throws(() => parseScorer("field:"), /needs a field name/);
  assert.throws(() => curriculumOptions({ scorer: "length", pacing: "cubic" as never }), /unknown pacing "cubic" \(expected none, linear, root, step, exp\)/);
  assert.throws(() => curriculumOptions({ scorer: "length", c0: 0 }), /c0 \(starting competence\) must be in \(0, 1\]/);
  assert.throws(() => curriculumOptions({ scorer: "length", stages: 1.5 }), /stages must be a positive integer/);
  assert.throws(() => new Curriculum([sample([1, 2])], { scorer: "teacher-loss" }, { blockSize: 4 }), /teacher-loss needs a reference model/);
  // The length curriculum: the shortest first.
  const cur = new Curriculum([sample([1, 2, 3, 4]), sample([1, 2]), sample([1, 2, 3])], { scorer: "length", c0: 0.3 }, { blockSize: 4 });
  assert.deepEqual([...cur.scores!], [4, 2, 3]);
});

const config: LlamaConfig = {
  vocab_size: 12, hidden_size: 16, intermediate_size: 32, num_hidden_layers: 2, num_attention_heads: 4,
  num_key_value_heads: 2, max_position_embeddings: 16, rms_norm_eps: 1e-5, rope_theta: 10000, tie_word_embeddings: false, dropout: 0.1,
};

function randomSamples(n: number, seed: number, maxLen = 40): Sample[] {
  const rng = new Rng(seed);
  return Array.from({ length: n }, (_, i) => sample(Array.from({ length: 2 + rng.int(maxLen - 1) }, () => rng.int(12)), {}, i + 1));
}

/** A sample's loss by hand: windows of ≤ `seq` targets, each without context; Σ losses / number of targets. */
async function windowedLoss(model: Llama, s: Sample, seq: number): Promise<number> {
  let sum = 0;
  for (let start = 0; start < s.ids.length - 1; start += seq) {
    const n = Math.min(seq, s.ids.length - 1 - start);
    sum += (await noGrad(() => scope(() => model.loss(s.ids.slice(start, start + n), s.ids.slice(start + 1, start + n + 1), 1, n).item()))) * n;
  }
  return sum / (s.ids.length - 1);
}

test("teacher-loss: each sample's mean per-token loss under the reference model (windows of the block size)", async () => {
  const be = await createBackend("wasm");
  const teacher = Llama.init(be, config, 5);
  const samples = [...randomSamples(9, 2, 14), sample(Array.from({ length: 30 }, (_, i) => (i * 7) % 12))];
  const cur = await Curriculum.create(samples, { scorer: "teacher-loss", scoreBatch: 3 }, { blockSize: 12, teacher });
  const byHand: number[] = [];
  for (const s of samples) byHand.push(await windowedLoss(teacher, s, 12));
  cur.scores!.forEach((v, i) => close(v, byHand[i], 2e-6, `sample ${i}`));
  // scoreTokens: only the first N targets of each sample.
  const first5 = await Curriculum.create(samples, { scorer: "teacher-loss", scoreTokens: 5 }, { blockSize: 12, teacher });
  const first5Scores = first5.scores!;
  for (let i = 0; i < first5Scores.length; i++)
    close(first5Scores[i], await windowedLoss(teacher, { ...samples[i], ids: samples[i].ids.subarray(0, 6) }, 12), 2e-6, `sample ${i}, 5 targets`);
  await assert.rejects(sampleLosses(teacher, [sample([1, 12])], { seq: 4 }), /token id 12, outside the scoring model's vocabulary of 12/);
});

test("the weighted objective: value and gradient are Σ w_i·L_i / Σ w_i of per-sample losses (js f64)", async () => {
  const be = await createBackend("js", { precision: "f64" });
  const model = Llama.init(be, { ...config, dropout: 0 }, 3);
  const samples = [sample([1, 4, 2, 9, 3, 3, 7]), sample([5, 6]), sample([2, 2, 8, 1])];
  const w = [0.5, 2, 0.25], W = 2.75;
  const b = sampleBatch(samples, [0, 1, 2], 8, new Rng(1));
  assert.equal(b.seq, 6);
  const params = model.parameters();
  const batched = await scope(() => {
    const loss = sampleWeightedLoss(model.losses(b.ids, b.targets, b.batch, b.seq), b, w);
    backward(loss);
    return loss.item();
  });
  const g1: Float64Array[] = [];
  for (const [, p] of params) g1.push(Float64Array.from((await p.gradArray())!));
  for (const [, p] of params) p.zeroGrad();
  let byHand = 0;
  for (const [i, s] of samples.entries()) {
    const L_i = scope(() => {
      const n = s.ids.length - 1;
      const L = model.loss(s.ids.subarray(0, n), s.ids.subarray(1), 1, n);
      const value = L.item();
      backward(weightedSum(L, [w[i] / W]));
      return value;
    });
    byHand += (w[i] / W) * (await L_i);
  }
  close(batched, byHand, 1e-12, "value");
  for (const [k, [name, p]] of params.entries()) {
    const g2 = (await p.gradArray())!;
    for (let j = 0; j < g2.length; j++) close(g1[k][j], g2[j], 1e-12, name);
  }
  // Position weights: w_r / (n_r·Σw) on real targets, 0 on padding; equal weights and lengths give the plain mean.
  const pw = positionWeights(b.targets, 3, 6, w);
  assert.deepEqual([...pw.subarray(6, 12)], [2 / 2.75, 0, 0, 0, 0, 0]);
  close(pw.subarray(12, 18).reduce((a, x) => a + x, 0), 0.25 / 2.75, 1e-15);
  assert.deepEqual([...positionWeights(Int32Array.from([1, 2, 3, 4]), 2, 2, [3, 3])], [0.25, 0.25, 0.25, 0.25]);
});

const options: TrainOptions = {
  batchSize: 4, blockSize: 16, iters: 20, lr: 3e-3, minLr: 3e-4, warmup: 3, weightDecay: 0.1,
  beta1: 0.9, beta2: 0.99, gradClip: 1, gradAccum: 2, evalInterval: 7, evalIters: 1, seed: 4,
};

test("self-paced: re-scored from the student every K steps; a resumed run continues exactly from saved state", async () => {
  const be = await createBackend("wasm");
  const samples = randomSamples(40, 7);
  const { train, val } = splitSamples(samples);
  const data = { train: concatSamples(train), val: concatSamples(val) };
  const curOptions = { scorer: "self-paced", pacing: "root" as const, mode: "soft" as const, rescoreEvery: 4, c0: 0.25, fullAt: 0.8 };
  const run = async (trainer: Trainer, start: number, stopAt = Infinity): Promise<StepEvent[]> => {
    const out: StepEvent[] = [];
    await trainer.run(start, { onStep: (e) => out.push(e), shouldStop: () => start + out.length >= stopAt });
    return out;
  };
  const strip = (e: StepEvent): unknown => ({ ...e, seconds: 0 });

  // Scores are the student's losses at iterations 0, 4, 8, …
  const probe = Llama.init(be, config, 9);
  const cur = new Curriculum(train, curOptions, { blockSize: 16 });
  assert.equal(cur.scores, null);
  assert.equal((await cur.beginStep(0, 20, probe)).rescored, true);
  assert.deepEqual(cur.scores, await sampleLosses(probe, train, { seq: 16 }));
  assert.equal((await cur.beginStep(1, 20, probe)).rescored, false);
  const fresh = new Curriculum(train, curOptions, { blockSize: 16 });
  await assert.rejects(fresh.beginStep(6, 20, probe), /resuming at iteration 6 needs the scores computed at iteration 4 \(load the saved curriculum state\)/);

  const full = await run(new Trainer(Llama.init(be, config, 9), options, data, undefined, new Curriculum(train, curOptions, { blockSize: 16 })), 0);
  assert.equal(full.length, 20);
  assert.deepEqual(full.map((e) => e.curriculum!.rescored), full.map((e) => e.iter % 4 === 0));
  assert.ok(full.every((e) => e.tokens > 0 && e.tokens <= 2 * 4 * 16 && Number.isFinite(e.curriculum!.tokenLoss)));
  assert.ok(full[0].curriculum!.eligible === 0.25 && full[19].curriculum!.eligible === 1, "competence grows from c0 to 1");
  assert.ok(full[0].curriculum!.weightMin < 1 && full[19].curriculum!.weightMin === 1);

  // Through checkpoint files: stop at 8 (a re-scoring step: the resumed run re-scores, no state
  // needed), stop again at 11 (scores from iteration 8: they come from the saved state), finish.
  const resume = async (from: Trainer, cur: Curriculum | null): Promise<[Trainer, Curriculum]> => {
    const files = new Map((await modelFiles(from.model, null)).map((f) => [f.name, f.bytes]));
    const model = modelFromFiles(be, new TextDecoder().decode(files.get("config.json")!), files.get("model.safetensors")!);
    const next = new Curriculum(train, curOptions, { blockSize: 16 });
    if (cur) next.loadState(JSON.parse(JSON.stringify(cur.state())) as CurriculumState);
    const trainer = new Trainer(model, options, data, undefined, next);
    trainer.optimizer.loadState(from.optimizer.step, parseSafetensors(serializeSafetensors(await from.optimizer.state())).tensors);
    return [trainer, next];
  };
  const curA = new Curriculum(train, curOptions, { blockSize: 16 });
  const first = new Trainer(Llama.init(be, config, 9), options, data, undefined, curA);
  const head = await run(first, 0, 8);
  assert.equal(curA.state()!.scoredAt, 4);
  const [second, curB] = await resume(first, null);
  const mid = await run(second, 8, 11);
  const saved = curB.state()!;
  assert.equal(saved.scoredAt, 8);
  const [third] = await resume(second, curB);
  const tail = await run(third, 11);
  assert.deepEqual([head.length, mid.length, tail.length], [8, 3, 9]);
  assert.deepEqual([...head, ...mid, ...tail].map(strip), full.map(strip));
  assert.throws(() => curB.loadState({ ...saved, scorer: "length" }), /saved with scorer length, not self-paced/);
});

const DATA = "../shared/data";
const haveStories = existsSync(`${DATA}/corpora/tinystories-2MiB.txt`) && existsSync(`${DATA}/models/stories260K.bin`) && existsSync(`${DATA}/models/tok512.bin`);

test("TinyStories with stories260K as teacher: stories split, teacher-loss scores are per-story losses", { skip: haveStories ? false : `${DATA} (TinyStories, stories260K) absent` }, async () => {
  const text = readFileSync(`${DATA}/corpora/tinystories-2MiB.txt`, "utf8");
  const stories = splitDocuments(text, "stories");
  assert.ok(stories.length > 2000, `${stories.length} stories`);
  assert.ok(stories.every((d) => !d.text.includes("<|endoftext|>") && d.text === d.text.trim()));
  const be = await createBackend("wasm");
  const { model, tokenizer } = loadModel(`${DATA}/models/stories260K.bin`, be, `${DATA}/models/tok512.bin`, { fuse: false });
  const { samples } = tokenizeDocuments(stories.slice(0, 8), tokenizer!, { addBos: true });
  const cur = await Curriculum.create(samples, { scorer: "teacher-loss" }, { blockSize: 64, teacher: model });
  const scores = cur.scores!;
  // A trained model: well below the uniform log(512) = 6.24 on its own training distribution.
  assert.ok(scores.every((s) => s > 0.3 && s < 3), `scores ${[...scores].map((s) => s.toFixed(3)).join(" ")}`);
  for (const [i, s] of samples.slice(0, 2).entries()) close(scores[i], await windowedLoss(model, s, 64), 1e-5, `story ${i}`);
});
