// Continuous batching (runtime/batch.ts): sequences that decode together, join mid-way and
// prefill in chunks get exactly the tokens each gets from generateTokens alone with the same
// seed (with speculative decoding: from speculativeTokens alone); finish reasons,
// log-probabilities, cancellation and a full queue behave as a server needs.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createBackend } from "../src/backend/index.js";
import { Llama } from "../src/nn/llama.js";
import type { LlamaConfig } from "../src/nn/config.js";
import { generateTokens } from "../src/runtime/generate.js";
import { BatchEngine, type BatchRequest, type BatchSpeculative, FEW_ROWS, QueueFullError, chunkLength } from "../src/runtime/batch.js";
import { emptySpeculativeStats, speculativeTokens } from "../src/runtime/speculative.js";

const config: LlamaConfig = {
  vocab_size: 61, hidden_size: 64, intermediate_size: 96, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2,
  max_position_embeddings: 128, rms_norm_eps: 1e-5, rope_theta: 10000, tie_word_embeddings: false,
};
const prompt = (n: number, salt: number): number[] => Array.from({ length: n }, (_, i) => (i * 7 + salt * 13 + 1) % 61);

/** Prompts of 1 to 45 tokens (chunked at 20: 45 = 20 + 25), greedy and sampled, with penalties. */
const requests: BatchRequest[] = [
  { prompt: prompt(1, 0), maxTokens: 24, temperature: 0 },
  { prompt: prompt(5, 1), maxTokens: 12, temperature: 0.9, seed: 7 },
  { prompt: prompt(17, 2), maxTokens: 20, temperature: 0.7, topK: 8, seed: 3 },
  { prompt: prompt(45, 3), maxTokens: 16, temperature: 1, topP: 0.9, seed: 11 },
  { prompt: prompt(30, 4), maxTokens: 18, temperature: 0, repeatPenalty: 1.3, frequencyPenalty: 0.2 },
  { prompt: prompt(9, 5), maxTokens: 10, temperature: 0.8, minP: 0.05, presencePenalty: 0.5, seed: 5 },
];

async function alone(model: Llama, r: BatchRequest): Promise<number[]> {
  const out: number[] = [];
  for await (const t of generateTokens(model, r.prompt, r)) out.push(t);
  return out;
}

async function collect(stream: AsyncIterable<{ token: number }>): Promise<number[]> {
  const out: number[] = [];
  for await (const e of stream) out.push(e.token);
  return out;
}

test("a long prompt is cut into chunks longer than FEW_ROWS, a short tail joining the chunk before", () => {
  const plan = (total: number, chunk: number): number[] => {
    const sizes: number[] = [];
    for (let done = 0; done < total; done += sizes[sizes.length - 1]) sizes.push(chunkLength(total, done, chunk));
    return sizes;
  };
  assert.deepEqual(plan(10, 20), [10]);
  assert.deepEqual(plan(45, 20), [20, 25]);
  assert.deepEqual(plan(60, 20), [20, 20, 20]);
  assert.deepEqual(plan(61, 20), [20, 20, 21]);
  for (const total of [17, 33, 100, 129])
    for (const chunk of [17, 20, 64]) {
      const p = plan(total, chunk);
      assert.equal(p.reduce((a, b) => a + b, 0), total);
      assert.ok(p.every((n) => n > FEW_ROWS), `${total}/${chunk}: ${p}`);
    }
});

for (const threads of [1, 2])
  test(`batched sequences (wasm, ${threads} thread${threads > 1 ? "s" : ""}) get exactly their tokens alone: together, joining mid-way, chunked`, async () => {
    const be = await createBackend("wasm", { threads });
    const model = Llama.init(be, config, 4);
    const want = await Promise.all(requests.map((r) => alone(model, r)));
    for (const parallel of [2, 6]) {
      const engine = new BatchEngine(model, { parallel, prefillChunk: 20 });
      // Half now, half once the first tokens are out: they join running sequences.
      const first = requests.slice(0, 3).map((r) => engine.submit(r));
      const iters = first.map((s) => s[Symbol.asyncIterator]());
      const heads = await Promise.all(iters.map((it) => it.next()));
      const later = requests.slice(3).map((r) => engine.submit(r));
      const rest = async (it: AsyncIterator<{ token: number }>, head: IteratorResult<{ token: number }>): Promise<number[]> => {
        const out = head.done ? [] : [head.value.token];
        for (let r = await it.next(); !r.done; r = await it.next()) out.push(r.value.token);
        return out;
      };
      const got = await Promise.all([...iters.map((it, i) => rest(it, heads[i])), ...later.map(collect)]);
      got.forEach((g, i) => assert.deepEqual(g, want[i], `parallel ${parallel}, request ${i}`));
      for (const s of [...first, ...later]) assert.equal(await s.finished, "length");
      assert.equal(engine.counts.generatedTokens, want.flat().length);
      assert.equal(engine.counts.promptTokens, requests.reduce((n, r) => n + r.prompt.length, 0));
      assert.equal(engine.counts.active + engine.counts.queued, 0);
    }
    model.dispose();
  });

test("finish reasons, log-probabilities, cancellation, context and queue limits", async () => {
  const be = await createBackend("wasm");
  const model = Llama.init(be, config, 4);
  const engine = new BatchEngine(model, { parallel: 1, maxQueue: 1, ctxSize: 40 });
  // A stop id ends the request without emitting it.
  const greedy = await alone(model, requests[0]);
  const stopped = engine.submit({ ...requests[0], stopIds: [greedy[3]] });
  assert.deepEqual(await collect(stopped), greedy.slice(0, greedy.indexOf(greedy[3])));
  assert.equal(await stopped.finished, "stop");
  // The context ends a sequence with "length": 35 prompt tokens + 5 generated fill 40 positions.
  const full = engine.submit({ prompt: prompt(35, 9), maxTokens: 50, temperature: 0 });
  assert.equal((await collect(full)).length, 5);
  assert.equal(await full.finished, "length");
  assert.throws(() => engine.submit({ prompt: prompt(41, 1), maxTokens: 1, temperature: 0 }), /the prompt has 41 tokens; the context holds 40/);
  // Log-probabilities: the token's and the 3 best, a distribution's (they sum to at most 1).
  const lp = engine.submit({ ...requests[0], maxTokens: 4, logprobs: 3 });
  for await (const e of lp) {
    assert.ok(e.logprob! <= 0 && e.top!.length === 3);
    assert.equal(e.top![0].token, e.token, "greedy takes the most likely token");
    assert.ok(e.top![0].logprob >= e.top![1].logprob && e.top!.reduce((s, t) => s + Math.exp(t.logprob), 0) <= 1 + 1e-9);
  }
  // One running, one waiting: a third is refused; cancelling the running one frees its slot.
  const ctl = new AbortController();
  const running = engine.submit({ ...requests[1], maxTokens: 30, signal: ctl.signal });
  const waiting = engine.submit({ ...requests[2] });
  assert.throws(() => engine.submit(requests[1]), QueueFullError);
  const it = running[Symbol.asyncIterator]();
  await it.next();
  ctl.abort();
  while (!(await it.next()).done);
  assert.equal(await running.finished, "abort");
  assert.deepEqual(await collect(waiting), await alone(model, requests[2]));
  assert.throws(() => new BatchEngine(model, { prefillChunk: FEW_ROWS }), /prefill chunk must be an integer/);
  model.dispose();
});

test("speculative batched sequences get exactly speculativeTokens's tokens alone: a draft model (fixed K, confidence, heuristic), prompt lookup", async () => {
  const be = await createBackend("wasm", { threads: 1 });
  const model = Llama.init(be, config, 4);
  // A draft that agrees often (the target itself: every draft accepted at temperature 0, the bonus
  // path) and one that rarely does (another initialisation: rejections and residual draws).
  const twin = Llama.init(be, config, 4), stranger = Llama.init(be, { ...config, hidden_size: 32, intermediate_size: 48 }, 9);
  const cases: [string, BatchSpeculative][] = [
    ["twin, K=3", { draft: twin, draftTokens: 3 }],
    ["stranger, auto (confidence)", { draft: stranger, draftTokens: "auto", pMin: 0.02, maxDraftTokens: 5 }],
    ["stranger, auto (heuristic)", { draft: stranger, draftTokens: "auto", adaptive: "heuristic", maxDraftTokens: 6 }],
    ["prompt lookup", { draft: "ngram", draftTokens: 4 }],
  ];
  for (const [name, sc] of cases) {
    const stats = emptySpeculativeStats();
    const want = await Promise.all(requests.map(async (r) => {
      const out: number[] = [];
      for await (const t of speculativeTokens(model, r.prompt, { ...r, speculative: { ...sc, stats } })) out.push(t);
      return out;
    }));
    const engine = new BatchEngine(model, { parallel: 4, prefillChunk: 20, speculative: sc });
    const first = engine.submit(requests[0]);
    const it = first[Symbol.asyncIterator]();
    const head = await it.next(); // the rest join a running sequence
    const rest = requests.slice(1).map((r) => collect(engine.submit(r)));
    const out0: number[] = head.done ? [] : [head.value.token];
    for (let r = await it.next(); !r.done; r = await it.next()) out0.push(r.value.token);
    const got = [out0, ...(await Promise.all(rest))];
    got.forEach((g, i) => assert.deepEqual(g, want[i], `${name}, request ${i}`));
    const c = engine.counts;
    assert.equal(c.generatedTokens, want.flat().length, name);
    assert.equal(c.draftedTokens, stats.drafted, name);
    assert.equal(c.acceptedDrafts, stats.accepted, name);
    assert.ok(c.draftedTokens > 0, name);
    // The twin's q is p: every draft is accepted. The others meet both outcomes.
    if (sc.draft === twin) assert.equal(c.acceptedDrafts, c.draftedTokens, name);
    else assert.ok(c.acceptedDrafts > 0 && c.acceptedDrafts < c.draftedTokens, `${name}: ${c.acceptedDrafts}/${c.draftedTokens}`);
  }
  // At temperature 0 the output is the target's greedy output.
  const greedy = requests.filter((r) => r.temperature === 0);
  const engine = new BatchEngine(model, { speculative: { draft: stranger, draftTokens: 2 } });
  for (const r of greedy) assert.deepEqual(await collect(engine.submit(r)), await alone(model, r));
  assert.throws(() => new BatchEngine(model, { speculative: { draft: Llama.init(be, { ...config, vocab_size: 60 }, 1) } }), /vocabulary has 60 tokens/);
  for (const m of [model, twin, stranger]) m.dispose();
});
