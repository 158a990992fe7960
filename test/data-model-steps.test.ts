// `bonsai data perplexity` and `bonsai data prune`: documents kept by a reference model's loss.
// The reference is trained on simple sentences; gibberish documents score worst. Each document's
// figure must be the model's own mean loss (computed here with the library), and the kept set the
// exact rank range asked for.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, writeFileSync, existsSync } from "node:fs";
import { spawnSync } from "node:child_process";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createBackend } from "../src/backend/index.js";
import { loadModel } from "../src/io/model-files-node.js";
import { sampleLosses } from "../src/train/curriculum.js";
import { keepRankRange, pruneRange } from "../src/data/rank-select.js";
import { CLI, assertOneLineError, bonsai } from "./cli-helpers.js";

const tmp = mkdtempSync(join(tmpdir(), "bonsai-data-model-"));
const corpus = join(tmp, "corpus.txt"), dir = join(tmp, "model");
writeFileSync(corpus, "the cat sat on the mat. the dog ran far. a cat and a dog sat on a mat.\n".repeat(40));
const trained = bonsai("train", "--data", corpus, "--layers", "1", "--heads", "2", "--dim", "32", "--block-size", "64", "--batch-size", "4", "--iters", "40", "--eval-interval", "40", "--eval-iters", "1", "--threads", "1", "--out", dir);
assert.equal(trained.code, 0, trained.stderr);

// 12 documents, 8 in the reference's language and 4 gibberish of its letters.
const clean = ["the cat sat on the mat.", "the dog ran far.", "a cat and a dog sat on a mat.", "the dog sat on the mat.", "a dog ran far.", "the cat ran far.", "a cat sat.", "the mat. the dog."];
const noise = ["mtd hgs rfo acn", "dgm fft hhr ssc", "sfh omr gdt nca", "hfm dgr tcs nof"];
const docs = [...clean.slice(0, 4), ...noise.slice(0, 2), ...clean.slice(4), ...noise.slice(2)];
const input = join(tmp, "docs.jsonl");
// Then a malformed line, a document too short to score and one the character tokenizer cannot encode.
writeFileSync(input, docs.map((text, i) => JSON.stringify({ id: i, text })).join("\n") + '\n{"text": 1}\n{"id":99,"text":""}\n{"id":98,"text":"quiz"}\n');

/** The library's mean loss of each document (BOS first), as the step computes it. */
async function losses(): Promise<number[]> {
  const { model, tokenizer } = loadModel(dir, await createBackend("wasm", { threads: 1 }));
  const samples = docs.map((t) => ({ ids: Int32Array.from(tokenizer!.encode(t, { addBos: true })), fields: {}, line: 0 }));
  const l = await sampleLosses(model, samples, { seq: model.config.max_position_embeddings, batch: 16 });
  model.dispose();
  return Array.from(l);
}

const read = (p: string): Record<string, unknown>[] => readFileSync(p, "utf8").trim().split("\n").filter(Boolean).map((l) => JSON.parse(l));

test("rank ranges keep exact counts, ties in input order, NaN never", () => {
  assert.deepEqual(Array.from(keepRankRange([3, 1, 2, NaN, 1], 0, 0.5)), [0, 1, 0, 0, 1]);
  assert.deepEqual(Array.from(keepRankRange([3, 1, 2, 5], 0.25, 0.75)), [1, 0, 1, 0]);
  assert.deepEqual(pruneRange("middle", 0.5), [0.25, 0.75]);
  assert.deepEqual(pruneRange("hard", 0.25), [0.75, 1]);
  assert.throws(() => pruneRange("easy", 0), /keep fraction must be in \(0, 1\]/);
});

test("data perplexity keeps the percentiles asked for, writes each document's perplexity, and names the rest in --stats", async () => {
  const want = await losses();
  const out = join(tmp, "ppl.jsonl"), stats = join(tmp, "ppl-stats.jsonl");
  const r = bonsai("data", "perplexity", input, "--model", dir, "--threads", "1", "--max-percentile", "66.7", "--out", out, "--stats", stats, "--quiet");
  assert.equal(r.code, 0, r.stderr);
  const kept = read(out);
  // 12 scored: the 8 lowest perplexities (66.7%) are kept, and they are the clean documents.
  assert.equal(kept.length, 8);
  const order = want.map((l, i) => [l, i]).sort((a, b) => a[0] - b[0] || a[1] - b[1]).map(([, i]) => i);
  assert.deepEqual(kept.map((k) => k.id).sort(), order.slice(0, 8).sort());
  for (const k of kept) assert.ok(Math.abs((k.perplexity as number) / Math.exp(want[k.id as number]) - 1) < 1e-5, JSON.stringify(k));
  for (const n of noise) assert.ok(!kept.some((k) => k.text === n), `gibberish kept: ${n}`);
  const removed = read(stats);
  assert.deepEqual(removed.map((s) => s.rule).sort(), ["perplexity:percentile", "perplexity:percentile", "perplexity:percentile", "perplexity:percentile", "perplexity:too-short", "perplexity:unencodable"]);
  assert.match(String(removed.find((s) => s.rule === "perplexity:unencodable")!.error), /"q"/);
  assert.match(r.stderr, /line 13: no string field "text"; skipped/);
  assert.match(r.stderr, /14 read, 8 kept, 6 removed/);
});

test("data prune keeps the easy, hard or middle fraction by mean loss, from stdin too", async () => {
  const want = await losses();
  const order = want.map((l, i) => [l, i]).sort((a, b) => a[0] - b[0] || a[1] - b[1]).map(([, i]) => i);
  for (const [by, ids] of [["easy", order.slice(0, 6)], ["hard", order.slice(6)], ["middle", order.slice(3, 9)]] as const) {
    const r = spawnSync(process.execPath, [CLI, "data", "prune", "-", "--model", dir, "--threads", "1", "--keep", "0.5", "--by", by, "--quiet"], { input: readFileSync(input), encoding: "utf8" });
    assert.equal(r.status, 0, r.stderr);
    const kept = r.stdout.trim().split("\n").map((l) => JSON.parse(l));
    assert.deepEqual(kept.map((k) => k.id).sort(), [...ids].sort(), by);
    for (const k of kept) assert.ok(Math.abs(k.loss - want[k.id]) < 1e-5);
  }
  const hard = spawnSync(process.execPath, [CLI, "data", "prune", "-", "--model", dir, "--threads", "1", "--keep", "0.34", "--by", "hard", "--quiet"], { input: readFileSync(input), encoding: "utf8" });
  const texts = hard.stdout.trim().split("\n").map((l) => JSON.parse(l).text);
  assert.deepEqual([...texts].sort(), [...noise].sort(), "the hardest third is the gibberish");
  assertOneLineError(bonsai("data", "prune", input, "--model", dir, "--keep", "1.5"), /--keep must be <= 1/);
  assertOneLineError(bonsai("data", "prune", input, "--model", dir, "--keep", "0.5", "--by", "odd"), /--by must be one of easy, hard, middle/);
  const out = join(tmp, "never.jsonl");
  assertOneLineError(bonsai("data", "prune", join(tmp, "missing.jsonl"), "--model", dir, "--keep", "0.5", "--out", out), /file not found/);
  assert.ok(!existsSync(out));
});
