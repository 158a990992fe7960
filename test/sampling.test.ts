// Sampling: each filter against hand-computed distributions, llama.cpp's penalties on hand-made
// logits, seeded reproducibility, and the text stream (stop strings split across tokens, UTF-8
// characters split across byte tokens).
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { JsBackend } from "../src/backend/js/js-backend.js";
import { loadTokenizer } from "../src/io/model-files-node.js";
import { Llama } from "../src/nn/llama.js";
import { type SampleOptions, applyPenalties, filterCandidates, sampleToken, validateSampleOptions } from "../src/runtime/sample.js";
import { stream } from "../src/runtime/stream.js";
import { TextStream } from "../src/runtime/text-stream.js";
import { CharTokenizer } from "../src/tokenizer/char-tokenizer.js";
import { Rng } from "../src/util/rng.js";

// Probabilities 0.05, 0.5, 0.1, 0.2, 0.15 (shuffled so that order of ids ≠ order of probability).
const probs = [0.05, 0.5, 0.1, 0.2, 0.15];
const logits = Float64Array.from(probs, (p) => Math.log(p) + 3); // a shift changes nothing

const sorted = (ids: number[]): number[] => [...ids].sort((a, b) => a - b);

/** Empirical distribution of `draws` samples. */
function frequencies(o: SampleOptions, draws = 40000, seed = 1): number[] {
  const rng = new Rng(seed), counts = new Array<number>(probs.length).fill(0);
  for (let i = 0; i < draws; i++) counts[sampleToken(logits, o, rng)]++;
  return counts.map((c) => c / draws);
}

function assertDistribution(actual: number[], expected: number[], tol = 0.01): void {
  for (let i = 0; i < expected.length; i++)
    assert.ok(Math.abs(actual[i] - expected[i]) <= tol, `token ${i}: ${actual[i].toFixed(4)} vs ${expected[i].toFixed(4)}`);
}

/** `probs` restricted to `keep` and renormalized. */
const renorm = (keep: number[]): number[] => {
  const z = keep.reduce((s, i) => s + probs[i], 0);
  return probs.map((p, i) => (keep.includes(i) ? p / z : 0));
};

test("top-k keeps the k most likely tokens", () => {
  assert.deepEqual(sorted(filterCandidates(logits, { temperature: 1, topK: 2 })), [1, 3]);
  assertDistribution(frequencies({ temperature: 1, topK: 3 }), renorm([1, 3, 4]));
});

test("top-p keeps the smallest set with mass ≥ p", () => {
  assert.deepEqual(filterCandidates(logits, { temperature: 1, topP: 0.4 }), [1]);
  assert.deepEqual(filterCandidates(logits, { temperature: 1, topP: 0.6 }), [1, 3]);
  assert.deepEqual(filterCandidates(logits, { temperature: 1, topP: 0.75 }), [1, 3, 4]);
  assert.deepEqual(filterCandidates(logits, { temperature: 1, topP: 0.9 }), [1, 3, 4, 2]);
  assert.equal(filterCandidates(logits, { temperature: 1, topP: 1 }).length, 5);
  assertDistribution(frequencies({ temperature: 1, topP: 0.75 }), renorm([1, 3, 4]));
});

test("min-p keeps tokens with p ≥ min_p · p_max", () => {
  assert.deepEqual(sorted(filterCandidates(logits, { temperature: 1, minP: 0.25 })), [1, 3, 4]); // p ≥ 0.125
  assert.deepEqual(sorted(filterCandidates(logits, { temperature: 1, minP: 0.5 })), [1]); // p ≥ 0.25
  assert.deepEqual(sorted(filterCandidates(logits, { temperature: 1, minP: 0.15 })), [1, 2, 3, 4]); // p ≥ 0.075
  assertDistribution(frequencies({ temperature: 1, minP: 0.25 }), renorm([1, 3, 4]));
});

test("temperature reshapes the kept distribution; filters see temperature-1 probabilities", () => {
  // At T = 2 the weights are √p; top-p 0.75 still keeps {0.5, 0.2, 0.15} as at T = 1.
  const w = probs.map((p, i) => ([1, 3, 4].includes(i) ? Math.sqrt(p) : 0));
  const z = w.reduce((a, b) => a + b, 0);
  assertDistribution(frequencies({ temperature: 2, topP: 0.75 }), w.map((x) => x / z));
  assert.equal(sampleToken(logits, { temperature: 0, topP: 0.1 }, new Rng(0)), 1, "greedy is the argmax");
});

test("penalties follow llama.cpp: repeat divides positive / multiplies negative, then count·f + p", () => {
  const x = Float64Array.from([2, -1, 0.5, 3]);
  applyPenalties(x, [0, 1, 1], { temperature: 1, repeatPenalty: 2, frequencyPenalty: 0.5, presencePenalty: 0.25 });
  // token 0: 2/2 − 1·0.5 − 0.25; token 1: −1·2 − 2·0.5 − 0.25; 2 and 3 unseen.
  assert.deepEqual([...x], [0.25, -3.25, 0.5, 3]);

  const y = Float64Array.from([2, -1, 0.5, 3]);
  applyPenalties(y, [0, 1, 1], { temperature: 1, repeatPenalty: 2, repeatLastN: 2 });
  assert.deepEqual([...y], [2, -2, 0.5, 3], "only the last 2 tokens count");

  const z = Float64Array.from([2, -1, 0.5, 3]);
  applyPenalties(z, [0, 3], { temperature: 1, repeatPenalty: 2, repeatLastN: 0 });
  assert.deepEqual([...z], [2, -1, 0.5, 3], "repeat-last-n 0 disables");

  // Greedy decoding sees the penalized logits: a repeated best token loses to the runner-up.
  assert.equal(sampleToken([2, -1, 0.5, 3], { temperature: 0, repeatPenalty: 2 }, new Rng(0), [3]), 0);
  assert.throws(() => validateSampleOptions({ temperature: 1, topP: 0 }), /top-p/);
  assert.throws(() => validateSampleOptions({ temperature: 1, minP: 1.5 }), /min-p/);
  assert.throws(() => validateSampleOptions({ temperature: 1, repeatPenalty: 0 }), /repeat penalty/);
});

async function collect(gen: AsyncGenerator<{ token: number | null; text: string }>): Promise<string> {
  let s = "";
  for await (const p of gen) s += p.text;
  return s;
}

test("same seed, same text; another seed, other text", async () => {
  const tok = CharTokenizer.fromText("abcdefghij klmnop.");
  const model = Llama.init(new JsBackend("f64"), {
    vocab_size: tok.vocabSize, hidden_size: 16, intermediate_size: 32, num_hidden_layers: 1,
    num_attention_heads: 2, num_key_value_heads: 1, max_position_embeddings: 64,
    rms_norm_eps: 1e-5, rope_theta: 10000, tie_word_embeddings: false,
  }, 5);
  const o = { temperature: 1.5, topP: 0.95, minP: 0.01, repeatPenalty: 1.1, maxTokens: 40 };
  const a = await collect(stream(model, tok, tok.encode("ab"), { ...o, seed: 1 }));
  assert.equal(a.length, 40);
  assert.equal(await collect(stream(model, tok, tok.encode("ab"), { ...o, seed: 1 })), a);
  assert.notEqual(await collect(stream(model, tok, tok.encode("ab"), { ...o, seed: 2 })), a);
  // A stop string ends generation there, whatever the sampler would have done next.
  const cut = a.slice(10, 13);
  const stopped = await collect(stream(model, tok, tok.encode("ab"), { ...o, seed: 1, stop: [cut] }));
  assert.equal(stopped, a.slice(0, a.indexOf(cut)));
});

test("text stream: stop strings split across tokens are withheld and end the stream", () => {
  const tok = CharTokenizer.fromText("abcdefgh<|end|> ");
  const ts = new TextStream(tok, tok.encode("a"), ["<|end|>", "xyz"]);
  const pieces = [..."bc<|en"].map((c) => ts.push(tok.encode(c)[0]));
  assert.deepEqual(pieces.map((p) => p.text), ["b", "c", "", "", "", ""], "a possible stop string is held back");
  assert.deepEqual(ts.push(tok.encode("d")[0]), { text: "", stopped: false });
  assert.deepEqual(ts.push(tok.encode("|")[0]), { text: "", stopped: false });
  assert.deepEqual(ts.push(tok.encode(">")[0]), { text: "", stopped: true });
  assert.equal(ts.flush(), "");

  // A held-back prefix that turns out not to be a stop string is released.
  const ts2 = new TextStream(tok, [], ["<|end|>"]);
  assert.equal(ts2.push(tok.encode("<")[0]).text, "");
  assert.equal(ts2.push(tok.encode("|")[0]).text, "");
  assert.equal(ts2.push(tok.encode("a")[0]).text, "<|a");
  assert.equal(ts2.push(tok.encode("<")[0]).text, "");
  assert.equal(ts2.flush(), "<", "held-back text comes out at the end");

  // Text before the stop string in the same token is emitted.
  const ts3 = new TextStream(tok, [], ["fg"]);
  assert.deepEqual(ts3.push(tok.encode("e")[0]), { text: "e", stopped: false });
  assert.deepEqual(ts3.push(tok.encode("f")[0]), { text: "", stopped: false });
  assert.deepEqual(ts3.push(tok.encode("g")[0]), { text: "", stopped: true });
});

test("text stream: UTF-8 characters split across byte tokens come out whole", (t) => {
  const path = "../shared/data/models/tok512.bin";
  if (!existsSync(path)) return t.skip("../shared/data absent");
  const tok = loadTokenizer(path);
  const text = "Zoë said: 日本 ok";
  const ids = tok.encode(text);
  const byteTokens = ids.filter((id) => id >= 3 && id < 259).length;
  assert.ok(byteTokens >= 8, `non-ASCII goes through byte tokens (${byteTokens})`);
  const prompt = [tok.bosId!];
  const ts = new TextStream(tok, prompt);
  const pieces = ids.map((id) => ts.push(id).text);
  pieces.push(ts.flush());
  for (const p of pieces) assert.ok(!p.includes("\uFFFD"), `no broken character in ${JSON.stringify(p)}`);
  assert.equal(pieces.join(""), tok.decode([...prompt, ...ids]));
  assert.ok(pieces.includes("日") || pieces.some((p) => p.endsWith("日")), "a 3-byte character appears once all its bytes are in");
});
