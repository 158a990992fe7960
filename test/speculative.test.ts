// Speculative decoding must not change what the target generates: token for token its greedy
// output at temperature 0 (any drafter, any K), and exactly its distribution when sampling — a
// chi-square test against the enumerated distribution, which a wrong residual fails. After a
// rejection both caches must be those of a fresh prefill of the accepted prefix.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { Backend } from "../src/backend/backend.js";
import { createBackend } from "../src/backend/index.js";
import { JsBackend } from "../src/backend/js/js-backend.js";
import { modelFiles } from "../src/io/checkpoint.js";
import { loadModel, writeCheckpoint } from "../src/io/model-files-node.js";
import type { LlamaConfig } from "../src/nn/config.js";
import { Llama } from "../src/nn/llama.js";
import { generateTokens } from "../src/runtime/generate.js";
import { ngramDraft } from "../src/runtime/ngram-draft.js";
import { type SampleOptions, finalProbs } from "../src/runtime/sample.js";
import { type StreamOptions, stream } from "../src/runtime/stream.js";
import { Session } from "../src/runtime/session.js";
import { type DecoderModel, type DecoderSession, type SpeculativeConfig, type SpeculativeRound, type SpeculativeStats, checkDraftVocabulary, emptySpeculativeStats, speculativeTokens } from "../src/runtime/speculative.js";
import { Tensor, noGrad, scope } from "../src/tensor/tensor.js";
import { CharTokenizer } from "../src/tokenizer/char-tokenizer.js";
import { Rng } from "../src/util/rng.js";
import { collect } from "./async-helpers.js";
import { webgpuBackend } from "./webgpu.js";

const cfg = (vocab: number, dim: number, layers: number, window = 64): LlamaConfig => ({
  vocab_size: vocab, hidden_size: dim, intermediate_size: 2 * dim, num_hidden_layers: layers,
  num_attention_heads: 2, num_key_value_heads: 1, max_position_embeddings: window,
  rms_norm_eps: 1e-5, rope_theta: 10000, tie_word_embeddings: false,
});

/**
 * A random Llama whose matrices are `scale` × nanoGPT's init (std 0.02 gives almost uniform
 * next-token distributions; scaled up they are peaked, like a trained model's). `noise` > 0:
 * the same weights as seed's, each perturbed by that relative amount (a draft that mostly agrees).
 */
async function randomLlama(be: Backend, c: LlamaConfig, seed: number, scale: number, noise = 0, noiseSeed = 99): Promise<Llama> {
  const base = Llama.init(be, c, seed);
  const rng = new Rng(noiseSeed);
  const params = new Map<string, Tensor>();
  for (const [name, t] of base.parameters()) {
    const v = Float64Array.from(await t.toArray());
    if (t.shape.length === 2) for (let i = 0; i < v.length; i++) v[i] *= scale * (1 + noise * rng.normal());
    params.set(name, Tensor.from(be, t.shape, v));
  }
  return new Llama(be, c, params);
}

test("greedy: speculative output is the target's own greedy output, for every drafter and K", async () => {
  // f32 on the js backend: a row's logits do not depend on how many rows a pass has, so the
  // verification pass (K + 1 rows) and one-token decoding agree bit for bit.
  const be = new JsBackend("f32");
  const vocab = 40;
  const target = await randomLlama(be, cfg(vocab, 32, 2, 48), 1, 20);
  const drafts: [string, Llama | "ngram"][] = [
    ["smaller model", await randomLlama(be, cfg(vocab, 16, 1, 48), 2, 20)],
    ["perturbed target", await randomLlama(be, cfg(vocab, 32, 2, 48), 1, 20, 0.3)],
    ["the target itself", target],
    ["ngram", "ngram"],
  ];
  const prompts = [[3], [5, 9, 2, 7, 7, 1], [11, 12, 13, 11, 12, 13, 11, 12]];
  const ks: SpeculativeConfig["draftTokens"][] = [1, 2, 4, 8, "auto"];
  let rejections = 0, acceptances = 0;
  // Penalties (history-dependent) on one prompt: each drafted position sees its own history.
  const cases: [number[], SampleOptions][] = [...prompts.map((p): [number[], SampleOptions] => [p, { temperature: 0 }]), [prompts[1], { temperature: 0, repeatPenalty: 1.5, repeatLastN: 8 }]];
  for (const [prompt, o] of cases) {
    // 52 tokens outgrow the 48-position window: the sliding recompute is covered too.
    const want = await collect(generateTokens(target, prompt, { ...o, maxTokens: 52 }));
    for (const [name, draft] of drafts)
      for (const k of ks)
        for (const adaptive of k === "auto" && draft !== "ngram" ? (["confidence", "heuristic"] as const) : ([undefined] as const)) {
          const stats = emptySpeculativeStats();
          const got = await collect(speculativeTokens(target, prompt, { ...o, maxTokens: 52, speculative: { draft, draftTokens: k, adaptive, stats } }));
          assert.deepEqual(got, want, `${name}, K=${k} ${adaptive ?? ""}, prompt [${prompt}], ${JSON.stringify(o)}`);
          rejections += stats.drafted - stats.accepted;
          acceptances += stats.accepted;
        }
  }
  assert.ok(rejections > 100 && acceptances > 100, `both paths exercised (${acceptances} accepted, ${rejections} rejected)`);
});

test("greedy on stories260K (wasm, 1 and 2 threads): self-draft and ngram reproduce the target's text", async (t) => {
  const path = "../shared/data/models/stories260K.bin";
  if (!existsSync(path)) return t.skip("../shared/data absent");
  for (const threads of [1, 2]) {
    const be = await createBackend("wasm", { threads });
    const { model } = loadModel(path, be);
    const want = await collect(generateTokens(model, [1], { temperature: 0, maxTokens: 120 }));
    for (const speculative of [{ draft: model, draftTokens: 4 }, { draft: model, draftTokens: "auto", adaptive: "heuristic" }, { draft: "ngram" }] as SpeculativeConfig[])
      assert.deepEqual(await collect(speculativeTokens(model, [1], { temperature: 0, maxTokens: 120, speculative })), want, `${threads} threads, ${JSON.stringify({ ...speculative, draft: typeof speculative.draft })}`);
  }
});

// --- distribution preservation -------------------------------------------------------------

/** Wilson–Hilferty: the chi-square quantile with `df` degrees of freedom at upper tail z (3.0902 = α 1e-3). */
function chiSquareCritical(df: number, z: number): number {
  const a = 2 / (9 * df);
  return df * Math.pow(1 - a + z * Math.sqrt(a), 3);
}

/** Pearson's statistic over cells, cells with expected count < 5 pooled into one. */
function chiSquare(observed: number[], expected: number[]): { stat: number; df: number } {
  let stat = 0, cells = 0, poolO = 0, poolE = 0;
  for (let i = 0; i < observed.length; i++) {
    if (expected[i] < 5) {
      poolO += observed[i];
      poolE += expected[i];
      continue;
    }
    stat += (observed[i] - expected[i]) ** 2 / expected[i];
    cells++;
  }
  if (poolE > 0) {
    stat += (poolO - poolE) ** 2 / Math.max(poolE, 1e-12);
    cells++;
  }
  return { stat, df: cells - 1 };
}

/**
 * A tiny Llama behind speculative decoding's model interface, its logits memoized by context: each
 * position's logits are a full forward pass over the context up to it, computed once. Tens of
 * thousands of generations then cost almost nothing, and the caching is plainly correct.
 */
function memoized(model: Llama): DecoderModel {
  const memo = new Map<string, Float64Array>();
  const logitsAfter = async (ctx: number[]): Promise<Float64Array> => {
    const key = ctx.join(",");
    let l = memo.get(key);
    if (!l) {
      l = Float64Array.from(await noGrad(() => scope(() => model.forward(Int32Array.from(ctx), 1, ctx.length, { lastOnly: true }).toArray())));
      memo.set(key, l);
    }
    return l;
  };
  return {
    vocabSize: model.config.vocab_size,
    window: model.config.max_position_embeddings,
    session(maxSeq: number): DecoderSession {
      const ctx: number[] = [];
      return {
        get position() {
          return ctx.length;
        },
        maxSeq,
        async prefill(tokens, opts = {}) {
          if (ctx.length + tokens.length > maxSeq) throw new Error("memoized session: overflow");
          const rows: Float64Array[] = [];
          for (const t of Array.from(tokens)) {
            ctx.push(t);
            rows.push(await logitsAfter(ctx));
          }
          if (!opts.allLogits) return rows[rows.length - 1];
          const out = new Float64Array(rows.length * model.config.vocab_size);
          rows.forEach((r, i) => out.set(r, i * r.length));
          return out;
        },
        decode(token) {
          return this.prefill([token]);
        },
        truncate(pos) {
          if (pos > ctx.length) throw new Error("memoized session: truncate past the end");
          ctx.length = pos;
        },
        dispose() {},
      };
    },
  };
}

/** The χ² test on `be`; `crossChecked` seeds also compare the memoized models' generation with the Llamas' own sessions. */
async function distributionTest(be: Backend, crossChecked: number): Promise<void> {
  const V = 8;
  const targetLlama = await randomLlama(be, cfg(V, 16, 1), 5, 25);
  const draftLlama = await randomLlama(be, cfg(V, 8, 1), 6, 25);
  const target = memoized(targetLlama), draft = memoized(draftLlama);
  // Every sampler stage in play; top-k 5 of 8 gives p and q different supports.
  const o: SampleOptions = { temperature: 0.8, topK: 5, repeatPenalty: 1.3 };
  const logitsOf = async (ids: number[]): Promise<Float64Array> =>
    Float64Array.from(await noGrad(() => scope(() => targetLlama.forward(Int32Array.from(ids), 1, ids.length, { lastOnly: true }).toArray())));
  /** The exact joint distribution of the first two generated tokens, enumerated with full forward passes. */
  const exactJoint = async (prompt: number[]): Promise<number[]> => {
    const p1 = finalProbs(await logitsOf(prompt), o, prompt);
    const joint: number[] = [];
    for (let a = 0; a < V; a++) {
      const p2 = p1[a] > 0 ? finalProbs(await logitsOf([...prompt, a]), o, [...prompt, a]) : new Float64Array(V);
      for (let b = 0; b < V; b++) joint.push(p1[a] * p2[b]);
    }
    return joint;
  };
  // The memoized models run the very generation the CLI's Llamas run: same seeds, same tokens.
  for (let seed = 0; seed < crossChecked; seed++) {
    const go = (t: Llama | DecoderModel, d: Llama | DecoderModel): Promise<number[]> => collect(speculativeTokens(t, [1, 4], { ...o, maxTokens: 3, seed, speculative: { draft: d, draftTokens: 2 } }));
    assert.deepEqual(await go(target, draft), await go(targetLlama, draftLlama), `seed ${seed}`);
  }
  // 20k samples: the wrong residual's χ² is in the hundreds to thousands against a critical value
  // near 100, so the test separates them by a wide margin; seeds 0..N−1 make it deterministic.
  const N = 20000;
  const critical = (df: number): number => chiSquareCritical(df, 3.0902);
  const run = async (prompt: number[], spec: SpeculativeConfig): Promise<{ stat: number; df: number; stats: SpeculativeStats }> => {
    const counts = new Array<number>(V * V).fill(0);
    const stats = emptySpeculativeStats();
    for (let s = 0; s < N; s++) {
      // Three tokens with K = 2: the first round drafts two, so rejections at both positions occur.
      const ids = await collect(speculativeTokens(target, prompt, { ...o, maxTokens: 3, seed: s, speculative: { ...spec, stats } }));
      counts[ids[0] * V + ids[1]]++;
    }
    return { ...chiSquare(counts, (await exactJoint(prompt)).map((x) => x * N)), stats };
  };
  const cases: [string, number[], DecoderModel | "ngram"][] = [["draft model", [1, 4], draft], ["ngram", [4, 1, 4], "ngram"]];
  for (const [name, prompt, drafter] of cases) {
    const right = await run(prompt, { draft: drafter, draftTokens: 2 });
    const { accepted, drafted } = right.stats;
    assert.ok(accepted > 0.05 * drafted && accepted < 0.95 * drafted, `${name}: acceptance mixes (${accepted}/${drafted})`);
    assert.ok(right.stat < critical(right.df), `${name}, exact residual: χ² ${right.stat.toFixed(1)} ≥ ${critical(right.df).toFixed(1)} (df ${right.df})`);
    const wrong = await run(prompt, { draft: drafter, draftTokens: 2, wrongResidual: true });
    assert.ok(wrong.stat > critical(wrong.df), `${name}: residual p instead of norm(max(0, p − q)) must fail: χ² ${wrong.stat.toFixed(1)} (df ${wrong.df})`);
    console.log(`# ${be.name}, ${name}: acceptance ${(accepted / drafted).toFixed(3)}, χ² ${right.stat.toFixed(1)} (exact residual), ${wrong.stat.toFixed(1)} (wrong), critical ${critical(right.df).toFixed(1)} at df ${right.df}`);
  }
  targetLlama.dispose();
  draftLlama.dispose();
}

test("sampling: the first two tokens are distributed as the target's (chi-square, α = 1e-3); a wrong residual is caught", () => distributionTest(new JsBackend("f64"), 200));

const gpu = await webgpuBackend();
test("sampling on webgpu: the same χ² test with the target's and draft's logits from the GPU", { skip: typeof gpu === "string" ? gpu : false }, () => distributionTest(gpu as Backend, 20));

test("rollback: after every round both caches are those of a fresh prefill of the accepted prefix", async () => {
  const be = new JsBackend("f32");
  const target = await randomLlama(be, cfg(40, 32, 2), 1, 20);
  const draft = await randomLlama(be, cfg(40, 16, 1), 2, 20);
  let rounds = 0, rejected = 0;
  // onRound is synchronous: each pass is issued inside it (the caches' state at that round), and
  // its logits, which the promises bring back, are compared once generation ends.
  const checks: Promise<void>[] = [];
  const check = (p: Promise<void>): void => {
    p.catch(() => {}); // reported by the Promise.all below, not as an unhandled rejection
    checks.push(p);
  };
  const lastLogits = (m: Llama, ids: number[]): Promise<Float32Array> => {
    const s = new Session(m);
    const l = s.prefill(ids);
    s.dispose();
    return l.then((x) => Float32Array.from(x));
  };
  const onRound = (r: SpeculativeRound): void => {
    rounds++;
    const round = rounds;
    if (r.accepted < r.drafted.length) rejected++;
    const ctx = [...r.context];
    // The target holds all but the last token: feeding it must give a fresh prefill's logits, bit for bit.
    assert.equal(r.target.position, ctx.length - 1);
    const at = r.target.position;
    const got = r.target.decode(ctx[ctx.length - 1]);
    r.target.truncate(at);
    const want = lastLogits(target, ctx);
    check(Promise.all([got, want]).then(([g, w]) => assert.deepEqual(Float32Array.from(g), w, `target cache after round ${round}`)));
    // The draft holds a prefix of the context (never a rejected draft).
    const d = r.draft!;
    const dp = d.position;
    assert.ok(dp < ctx.length && dp >= ctx.length - 2, `draft position ${dp}, context ${ctx.length}`);
    const gotD = d.prefill(ctx.slice(dp));
    d.truncate(dp);
    const wantD = lastLogits(draft, ctx);
    check(Promise.all([gotD, wantD]).then(([g, w]) => assert.deepEqual(Float32Array.from(g), w, `draft cache after round ${round}`)));
  };
  for (const k of [3, "auto"] as const) {
    const want = await collect(generateTokens(target, [2, 3, 5], { temperature: 0.9, maxTokens: 30, seed: 7 }));
    const got = await collect(speculativeTokens(target, [2, 3, 5], { temperature: 0.9, maxTokens: 30, seed: 7, speculative: { draft, draftTokens: k, onRound } }));
    assert.equal(got.length, want.length);
  }
  await Promise.all(checks);
  assert.ok(rejected >= 3 && rounds > rejected, `rounds with and without rejections (${rejected} of ${rounds})`);
});

test("vocabulary: draft and target must share it (clear error otherwise)", async () => {
  const be = new JsBackend("f32");
  const target = await randomLlama(be, cfg(40, 16, 1), 1, 1);
  const other = await randomLlama(be, cfg(41, 16, 1), 2, 1);
  await assert.rejects(collect(speculativeTokens(target, [1], { temperature: 0, maxTokens: 4, speculative: { draft: other } })), /draft model's vocabulary has 41 tokens, the target's 40/);
  const a = CharTokenizer.fromText("abcdef"), b = CharTokenizer.fromText("abcdeg");
  assert.throws(() => checkDraftVocabulary(target, target, a, b), /vocabularies differ at token 5 \("g" vs "f"\)/);
  checkDraftVocabulary(target, target, a, CharTokenizer.fromText("fedcba"));
  await assert.rejects(collect(speculativeTokens(target, [1], { temperature: 0, maxTokens: 4, speculative: { draft: target, draftTokens: 0 } })), /draft tokens must be an integer >= 1 or "auto"/);
  await assert.rejects(collect(speculativeTokens(target, [1], { temperature: 0, maxTokens: 4, speculative: { draft: "ngram", nMin: 3, nMax: 2 } })), /ngram max must be an integer >= ngram min 3/);
});

test("ngram drafter: the continuation of the latest longest match, repeating past the end", () => {
  assert.deepEqual(ngramDraft([1, 2, 3, 9, 1, 2, 3, 7, 5, 1, 2, 3], 3), [7, 5, 1], "3-gram [1,2,3]: the latest match continues 7 5 1");
  assert.deepEqual(ngramDraft([4, 1, 2, 9, 9, 2], 2, { nMax: 3 }), [9, 9], "only the 1-gram [2] matches");
  assert.deepEqual(ngramDraft([5, 6, 5, 6], 5), [5, 6, 5, 6, 5], "a loop of period 2 goes on");
  assert.deepEqual(ngramDraft([1, 2, 3], 4), [], "no match");
  assert.deepEqual(ngramDraft([1, 2, 3, 2], 4, { nMin: 2 }), [], "1-grams not trusted");
});

test("streaming: the same text pieces with a drafter, stop strings and stop ids included", async () => {
  const be = new JsBackend("f32");
  const tok = CharTokenizer.fromText("abcdefgh ij.");
  const target = await randomLlama(be, cfg(tok.vocabSize, 32, 2), 3, 20);
  const draft = await randomLlama(be, cfg(tok.vocabSize, 32, 2), 3, 20, 0.3);
  const pieces = async (o: StreamOptions): Promise<string> => {
    let text = "";
    for await (const p of stream(target, tok, tok.encode("abc"), o)) text += p.text;
    return text;
  };
  const plain = await pieces({ temperature: 0, maxTokens: 40 });
  assert.ok(plain.length >= 10, plain);
  const stop = plain.slice(6, 8); // a stop string that completes mid-text
  for (const speculative of [{ draft }, { draft: "ngram" }, { draft, draftTokens: 8 }] as SpeculativeConfig[]) {
    assert.equal(await pieces({ temperature: 0, maxTokens: 40, speculative }), plain);
    const stopped = await pieces({ temperature: 0, maxTokens: 40, stop: [stop], speculative });
    assert.ok(stopped.length <= 6, `stopped before ${JSON.stringify(stop)}: ${JSON.stringify(stopped)}`);
    assert.equal(stopped, await pieces({ temperature: 0, maxTokens: 40, stop: [stop] }));
    const stopId = tok.encode(plain[5])[0];
    const cut = await pieces({ temperature: 0, maxTokens: 40, stopIds: [stopId], speculative });
    assert.equal(cut, plain.slice(0, plain.indexOf(plain[5])));
  }
});

// --- CLI -------------------------------------------------------------------------------------

const CLI = fileURLToPath(new URL("../src/cli/main.js", import.meta.url));

function bonsai(...args: string[]): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: "utf8", timeout: 120_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

test("CLI: generate --draft MODEL and --draft ngram print the target's greedy text and speculative stats", async () => {
  const tmp = mkdtempSync(join(tmpdir(), "bonsai-spec-"));
  const be = new JsBackend("f32");
  const tok = CharTokenizer.fromText("abcdefghij klmnop.");
  const V = tok.vocabSize;
  const save = async (name: string, m: Llama, t: CharTokenizer): Promise<string> => {
    const dir = join(tmp, name);
    writeCheckpoint(dir, await modelFiles(m, t));
    return dir;
  };
  const target = await save("target", await randomLlama(be, cfg(V, 32, 2), 1, 20), tok);
  const draft = await save("draft", await randomLlama(be, cfg(V, 16, 1), 2, 20), tok);
  const base = ["generate", "--model", target, "--prompt", "abc ab", "--temperature", "0", "--max-tokens", "40", "--backend", "js"];
  const plain = bonsai(...base);
  assert.equal(plain.code, 0, plain.stderr);
  assert.ok(plain.stdout.length > 10, plain.stdout);
  for (const extra of [["--draft", draft], ["--draft", draft, "--draft-tokens", "3"], ["--draft", "ngram", "--ngram-max", "3"]]) {
    const r = bonsai(...base, ...extra, "--stats");
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, plain.stdout, extra.join(" "));
    const s = JSON.parse(r.stderr.trim().split("\n").at(-1)!).speculative;
    assert.ok(s.target_passes > 0 && s.target_passes <= 40 && s.drafted >= s.accepted, JSON.stringify(s));
    assert.ok(s.acceptance_rate === null || (s.acceptance_rate >= 0 && s.acceptance_rate <= 1), JSON.stringify(s));
    assert.ok(s.tokens_per_target_pass >= 1 && s.target_seconds > 0 && s.draft_seconds >= 0, JSON.stringify(s));
  }
  // Errors: one line, non-zero exit.
  const otherTok = CharTokenizer.fromText("abcdefghij klmnop!");
  const wrong = await save("wrong", await randomLlama(be, cfg(V, 16, 1), 2, 20), otherTok);
  for (const [args, pattern] of [
    [["--draft", wrong], /vocabularies differ at token \d+ \("!" vs "\."\)/],
    [["--draft-tokens", "4"], /--draft-tokens needs --draft/],
    [["--draft", draft, "--draft-tokens", "x"], /--draft-tokens must be an integer >= 1 or auto/],
    [["--draft", "ngram", "--draft-p-min", "0.5"], /--draft-p-min does not apply to --draft ngram/],
  ] as [string[], RegExp][]) {
    const r = bonsai(...base, ...args);
    assert.notEqual(r.code, 0);
    const lines = r.stderr.trim().split("\n");
    assert.equal(lines.length, 1, r.stderr);
    assert.match(lines[0], /^bonsai: error: /);
    assert.match(lines[0], pattern);
  }
});
