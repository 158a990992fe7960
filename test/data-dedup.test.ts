// `bonsai data dedup`: the hashes against SMHasher's verification values, the normalised text,
// exact dedup through normalisation differences, MinHash against theory (the LSH S-curve and the
// Jaccard estimator on shingle sets of known similarity), near and distinct documents, a pinned
// signature, and the staged CLI over 3 shards giving the one-shot run's removals exactly;
// mismatched files, missing bands and malformed lines.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { ExactIndex, exactHash, hashHex } from "../src/data/dedup/exact.js";
import { dedupOptions } from "../src/data/dedup/format.js";
import { fmix32, murmur3x86_128, murmur3x86_128Words, murmur3x86_32, murmur3x86_32Words } from "../src/data/dedup/hash.js";
import { EMPTY, MINHASH_DEFAULTS, MinHashIndex, bandKey, estimatedJaccard, minhashSignature, shingleHashes, signatureOfShingles } from "../src/data/dedup/minhash.js";
import { normalizeText } from "../src/data/dedup/normalize.js";
import { UnionFind } from "../src/data/dedup/union-find.js";
import { findClusters, findPairs, readRemovals, writeSignatures } from "../src/data/dedup-files-node.js";
import { readRecords } from "../src/data/records.js";
import { CLI, assertOneLineError, bonsai, bonsaiAsync } from "./cli-helpers.js";

const cli = bonsaiAsync;

const tmp = mkdtempSync(join(tmpdir(), "bonsai-dedup-test-"));
after(() => rmSync(tmp, { recursive: true, force: true }));

/** A word of letters for `i` (digits would all normalise to "0"). */
const word = (i: number): string => {
  let w = "";
  do {
    w += String.fromCharCode(97 + (i % 26));
    i = Math.floor(i / 26);
  } while (i > 0);
  return w;
};

/** A small deterministic generator (LCG through fmix32). */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => fmix32((s = (Math.imul(s, 1664525) + 1013904223) >>> 0)) / 2 ** 32;
}

test("MurmurHash3 x86_32 and x86_128 give SMHasher's verification values; the word forms hash the words' bytes", () => {
  // SMHasher's VerificationTest: keys 0..255 of length 0..255, seed 256 − length, digests hashed with seed 0.
  const verify = (hash: (b: Uint8Array, seed: number) => number[], bytes: number): number => {
    const key = new Uint8Array(256), digests = new Uint8Array(256 * bytes), v = new DataView(digests.buffer);
    for (let i = 0; i < 256; i++) {
      key[i] = i;
      hash(key.subarray(0, i), 256 - i).forEach((w, k) => v.setUint32(i * bytes + 4 * k, w, true));
    }
    return hash(digests, 0)[0];
  };
  assert.equal(verify((b, s) => [murmur3x86_32(b, s)], 4), 0xb0f57ee3);
  assert.equal(verify((b, s) => [...murmur3x86_128(b, s)], 16), 0xb3ece62a);
  const words = Uint32Array.of(1, 0xdeadbeef, 7, 99, 12345, 0xffffffff, 3, 0x80000000, 42);
  const bytes = new Uint8Array(4 * words.length);
  words.forEach((w, i) => new DataView(bytes.buffer).setUint32(4 * i, w, true));
  for (let n = 0; n <= words.length; n++) {
    assert.equal(murmur3x86_32Words(words, 0, n, 9), murmur3x86_32(bytes.subarray(0, 4 * n), 9));
    assert.deepEqual(murmur3x86_128Words(words, 0, n, 9), murmur3x86_128(bytes.subarray(0, 4 * n), 9));
  }
});

test("the normalised text: case, spacing, punctuation, numbers, accents and compatibility forms", () => {
  assert.equal(normalizeText("  Hello,\tWORLD!!  It's 3.14 —  1,000 "), "hello world it s 0 0");
  assert.equal(normalizeText("Café ＡＢＣ ﬁne co\u00ADop naïve Ünïcödé"), "cafe abc fine coop naive unicode");
  assert.equal(normalizeText("a€b ©c 😀 d_e [f] \u0663\u0664"), "a b c d e f 0");
  assert.equal(normalizeText("!!! ... ---"), "");
  // Text that is ASCII takes a fast path; a soft hyphen (deleted) sends the same text down the Unicode one.
  const r = rng(5);
  const ascii = Array.from({ length: 2000 }, () => String.fromCharCode(1 + Math.floor(r() * 127))).join("");
  assert.equal(normalizeText(ascii), normalizeText(ascii + "\u00ad"));
  assert.equal(hashHex(exactHash("The cat sat.")), hashHex(exactHash("  the CAT   sat!")));
  assert.notEqual(hashHex(exactHash("The cat sat.")), hashHex(exactHash("The cat sat on.")));
  const index = new ExactIndex();
  for (let i = 0; i < 5000; i++) assert.equal(index.addOrMatch(i, exactHash(`document ${word(i)}`)), null);
  assert.equal(index.addOrMatch(5000, exactHash("DOCUMENT, B!")), 1);
  assert.equal(index.size, 5000);
});

test("union-find keeps the lowest id of each cluster whatever the order pairs come in", () => {
  const uf = new UnionFind();
  for (const [a, b] of [[9, 7], [7, 12], [3, 40], [40, 12], [100, 101]]) uf.union(a, b);
  assert.deepEqual(uf.removals(), [[7, 3], [9, 3], [12, 3], [40, 3], [101, 100]]);
  assert.equal(uf.find(55), 55);
});

/** Two sets of 32-bit shingles with Jaccard exactly `shared / union`, the values fmix32(base + i) (distinct for distinct i). */
function setPair(base: number, union: number, shared: number): [Uint32Array, Uint32Array] {
  const v = (i: number): number => fmix32(base + i); // a bijection: distinct i, distinct values
  const only = (union - shared) / 2;
  const a = Array.from({ length: shared + only }, (_, i) => v(i));
  const b = [...a.slice(0, shared), ...Array.from({ length: only }, (_, i) => v(shared + only + i))];
  return [Uint32Array.from(a), Uint32Array.from(b)];
}

test("the LSH S-curve: the share of pairs sharing a band is 1 − (1 − s^8)^14 at each Jaccard s, and the estimate is unbiased", () => {
  const { bands, rows } = MINHASH_DEFAULTS;
  const trials = 1000;
  for (const shared of [60, 100, 120, 140, 160, 180]) {
    const s = shared / 200;
    let matched = 0, jaccard = 0;
    const index = new MinHashIndex();
    for (let t = 0; t < trials; t++) {
      const [a, b] = setPair(1000 * (trials * shared + t), 200, shared).map((x) => signatureOfShingles(x));
      let share = false;
      for (let band = 0; band < bands && !share; band++) share = a.subarray(band * rows, (band + 1) * rows).every((x, i) => x === b[band * rows + i]);
      if (share) matched++;
      jaccard += estimatedJaccard(a, b);
      // The online index finds exactly the pairs sharing a band (the trials' shingles are disjoint).
      assert.equal(index.addOrMatch(2 * t, a), null);
      assert.equal(index.addOrMatch(2 * t + 1, b), share ? 2 * t : null);
    }
    const p = 1 - (1 - s ** rows) ** bands, got = matched / trials;
    // Five standard deviations of a binomial share (and a floor for p near 0 or 1).
    const tol = 5 * Math.sqrt((p * (1 - p)) / trials) + 0.01;
    assert.ok(Math.abs(got - p) <= tol, `s = ${s}: ${got} of pairs share a band, theory ${p.toFixed(4)} ± ${tol.toFixed(4)}`);
    const mean = jaccard / trials, tolJ = 5 * Math.sqrt((s * (1 - s)) / (bands * rows * trials)) + 0.002;
    assert.ok(Math.abs(mean - s) <= tolJ, `s = ${s}: mean estimated Jaccard ${mean.toFixed(4)} ± ${tolJ.toFixed(4)}`);
  }
});

/** A text of `n` distinct words from word(from), so that its word 5-grams are all distinct. */
const words = (from: number, n: number): string[] => Array.from({ length: n }, (_, i) => word(from + i));
function trueJaccard(a: string, b: string): number {
  const x = new Set(shingleHashes(a)), y = new Set(shingleHashes(b));
  let inter = 0;
  for (const h of x) if (y.has(h)) inter++;
  return inter / (x.size + y.size - inter);
}

test("MinHash finds documents with a few words changed (Jaccard ≈ 0.8) and keeps distinct ones (≈ 0.3)", () => {
  let near = 0, distinct = 0;
  const pairs = 60;
  for (let p = 0; p < pairs; p++) {
    const base = words(1000 * p, 200);
    const edited = [...base];
    for (const at of [30, 80, 130, 180]) edited[at] = `x${word(p)}q${word(at)}`; // 4 words changed: 20 of 196 shingles
    const close = [base.join(" "), edited.join(" ")];
    const far = [base.join(" "), [...base.slice(0, 90), ...words(1000 * p + 500, 110)].join(" ")];
    const jClose = trueJaccard(close[0], close[1]), jFar = trueJaccard(far[0], far[1]);
    assert.ok(Math.abs(jClose - 0.815) < 0.01 && Math.abs(jFar - 0.28) < 0.02, `${jClose} ${jFar}`);
    const [a, b] = close.map((t) => minhashSignature(t)), [c, d] = far.map((t) => minhashSignature(t));
    // 112 positions: the estimate's standard deviation is about 0.04.
    assert.ok(Math.abs(estimatedJaccard(a, b) - jClose) < 0.2 && Math.abs(estimatedJaccard(c, d) - jFar) < 0.2);
    const index = new MinHashIndex();
    index.addOrMatch(0, a);
    if (index.addOrMatch(1, b) === 0) near++;
    const index2 = new MinHashIndex();
    index2.addOrMatch(0, c);
    if (index2.addOrMatch(1, d) !== null) distinct++;
  }
  // Theory: 0.95 of the near pairs match (binomial sd 0.028 over 60), 0.0005 of the distinct ones.
  assert.ok(near >= 0.75 * pairs, `${near} of ${pairs} near duplicates found`);
  assert.equal(distinct, 0, "distinct documents matched");
  // Fewer words than the n-gram: one shingle of them all; no words at all: no shingles, never a match.
  assert.deepEqual(minhashSignature("The cat sat."), minhashSignature("the CAT, sat"));
  const empty = minhashSignature("!!! ...");
  assert.ok(empty.every((v) => v === EMPTY));
  const index = new MinHashIndex();
  assert.equal(index.addOrMatch(1, empty), null);
  assert.equal(index.addOrMatch(2, minhashSignature("??")), null);
  assert.equal(index.size, 0);
});

test("signatures are deterministic for a seed, differ across seeds, and are pinned", () => {
  const text = "Once upon a time, a little fox found a shiny red ball in the tall green grass near the river.";
  const sig = minhashSignature(text);
  assert.equal(sig.length, 14 * 8);
  assert.deepEqual(minhashSignature(text), sig);
  assert.deepEqual(minhashSignature(text, { seed: 1, ngram: 5, bands: 14, rows: 8 }), sig);
  assert.notDeepEqual(minhashSignature(text, { seed: 2 }), sig);
  assert.equal(minhashSignature(text, { bands: 20, rows: 5 }).length, 100);
  // The first values and a band key as this version computes them: signature files stay comparable across machines.
  assert.deepEqual([...sig.subarray(0, 4)], PINNED_SIGNATURE);
  assert.deepEqual(bandKey(sig, 3, 8), PINNED_BAND_KEY);
  assert.throws(() => minhashSignature(text, { rows: 0 }), /rows must be a whole number ≥ 1/);
  assert.throws(() => estimatedJaccard(sig, sig.subarray(1)), /different lengths/);
});

const PINNED_SIGNATURE = [158197011, 138571740, 46233550, 20215382];
const PINNED_BAND_KEY = [765889922, 3935061651];

/** A corpus with near and exact duplicates, within and across its shards; `id` names each document. */
function corpus(n: number): Array<{ id: number; text: string }> {
  const r = rng(3);
  const vocab = Array.from({ length: 3000 }, (_, i) => word(i));
  const docs: Array<{ id: number; text: string }> = [];
  for (let i = 0; i < n; i++) {
    let text: string;
    if (i > 20 && r() < 0.15) {
      const w = docs[Math.floor(r() * docs.length)].text.split(" ");
      for (let k = Math.floor(r() * 3); k > 0; k--) w[Math.floor(r() * w.length)] = vocab[Math.floor(r() * vocab.length)];
      text = r() < 0.5 ? w.join(" ").toUpperCase() : w.join(",  ");
    } else if (r() < 0.03) text = ["Short one.", "short ONE", "!!!", "..."][Math.floor(r() * 4)];
    else text = Array.from({ length: 30 + Math.floor(r() * 90) }, () => vocab[Math.floor(r() * vocab.length)]).join(" ");
    docs.push({ id: i, text });
  }
  return docs;
}

const jsonl = (docs: Array<{ id: number; text: string }>): string => docs.map((d) => JSON.stringify(d)).join("\n") + "\n";
const statsOf = (file: string): Array<Record<string, any>> => readFileSync(file, "utf8").trim().split("\n").filter(Boolean).map((l) => JSON.parse(l));
const idsOf = (file: string): number[] => readFileSync(file, "utf8").trim().split("\n").filter(Boolean).map((l) => JSON.parse(l).id);

test("exact dedup (CLI): case, spacing and punctuation differences are removed, the first kept; malformed lines skipped", async () => {
  const dir = join(tmp, "exact");
  mkdirSync(dir);
  const input = [
    { id: "a", text: "The cat sat on the mat." }, { id: "b", text: "A different story about a dog." }, "not json",
    { id: "c", text: "the  cat sat\non the mat" }, { id: "d", text: "THE CAT SAT ON THE MAT!!!" }, { id: "e", text: "The cat sat on a mat." },
    { id: "f", text: "a different story, about a DOG" },
  ].map((x) => (typeof x === "string" ? x : JSON.stringify(x))).join("\n") + "\n";
  writeFileSync(join(dir, "in.jsonl"), input);
  const r = bonsai("data", "dedup", "--exact", join(dir, "in.jsonl"), "--out", join(dir, "out.jsonl"), "--stats", join(dir, "stats.jsonl"));
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(idsOf(join(dir, "out.jsonl")), ["a", "b", "e"]);
  assert.match(r.stderr, /in\.jsonl line 3: invalid JSON.*skipped/);
  assert.match(r.stderr, /6 read, 3 kept, 3 removed \(dedup:exact 3\), 1 malformed line skipped/);
  assert.deepEqual(statsOf(join(dir, "stats.jsonl")), [
    { line: 4, rule: "dedup:exact", index: 2, duplicate_of: { index: 0, line: 1 } },
    { line: 5, rule: "dedup:exact", index: 3, duplicate_of: { index: 0, line: 1 } },
    { line: 7, rule: "dedup:exact", index: 5, duplicate_of: { index: 1, line: 2 } },
  ]);
  // Through stdin, as a pipeline step.
  const piped = spawnSync(process.execPath, [CLI, "data", "dedup", "--exact", "--quiet"], { input, encoding: "utf8" });
  assert.equal(piped.status, 0, piped.stderr);
  assert.deepEqual(piped.stdout.trim().split("\n").map((l) => JSON.parse(l).id), ["a", "b", "e"]);
  const errors = await Promise.all([
    cli("data", "dedup", join(dir, "in.jsonl")),
    cli("data", "dedup", "--exact", "--minhash", join(dir, "in.jsonl")),
    cli("data", "dedup", "--exact", "--ngram", "3", join(dir, "in.jsonl")),
  ]);
  assertOneLineError(errors[0], /choose --exact or --minhash/);
  assertOneLineError(errors[1], /--exact and --minhash are two dedups/);
  assertOneLineError(errors[2], /--ngram applies to --minhash/);
});

test("the staged CLI over 3 shards removes exactly what the one-shot run removes, and refuses mismatched files", async () => {
  const dir = join(tmp, "staged");
  for (const d of ["sigs", "pairs", "clean", "bands"]) mkdirSync(join(dir, d), { recursive: true });
  const docs = corpus(1500);
  const cut = [0, 480, 1010, 1500];
  const shards = [0, 1, 2].map((i) => docs.slice(cut[i], cut[i + 1]));
  // A malformed line in shard 1 (and the whole file): skipped by every pass alike.
  writeFileSync(join(dir, "all.jsonl"), jsonl(docs.slice(0, 700)) + "{oops\n" + jsonl(docs.slice(700)));
  shards.forEach((s, i) => writeFileSync(join(dir, `${i}.jsonl`), i === 1 ? jsonl(s.slice(0, 220)) + "{oops\n" + jsonl(s.slice(220)) : jsonl(s)));

  const one = bonsai("data", "dedup", "--minhash", join(dir, "all.jsonl"), "--out", join(dir, "one.jsonl"), "--stats", join(dir, "one.stats"));
  assert.equal(one.code, 0, one.stderr);
  assert.match(one.stderr, /line 701: invalid JSON/);
  const lineToId = (d: Array<{ id: number }>, extra: number) => (line: number) => d[line - 1 - (line > extra ? 1 : 0)].id;
  const oneId = lineToId(docs, 700);
  const oneRemoved = statsOf(join(dir, "one.stats")).map((s) => [oneId(s.line), oneId(s.duplicate_of.line), s.jaccard, s.rule]);
  assert.ok(oneRemoved.length > 150 && oneRemoved.length < 300, `${oneRemoved.length} removed`);
  for (const [, , j, rule] of oneRemoved) assert.ok(rule === "dedup:minhash" && j > 0.3 && j <= 1, `${rule} ${j}`);

  for (const r of await Promise.all([0, 1, 2].map((i) => cli("data", "dedup", "signatures", join(dir, `${i}.jsonl`), "--shard-id", String(i), "--out", join(dir, "sigs", `${i}.bin`))))) {
    assert.equal(r.code, 0, r.stderr);
  }
  const sigs = [0, 1, 2].map((i) => join(dir, "sigs", `${i}.bin`));
  let r = bonsai("data", "dedup", "buckets", ...sigs, "--out", join(dir, "pairs", "all.bin"));
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /3 shards, 1500 documents, every band: \d+ pairs/);
  r = bonsai("data", "dedup", "clusters", ...sigs, join(dir, "pairs", "all.bin"), "--out", join(dir, "remove.bin"));
  assert.equal(r.code, 0, r.stderr);
  const staged: unknown[][] = [];
  const kept: number[] = [];
  const filtered = await Promise.all([0, 1, 2].map((i) =>
    cli("data", "dedup", "filter", join(dir, `${i}.jsonl`), "--shard-id", String(i), "--remove", join(dir, "remove.bin"), "--out", join(dir, "clean", `${i}.jsonl`), "--stats", join(dir, "clean", `${i}.stats`))));
  for (const i of [0, 1, 2]) {
    assert.equal(filtered[i].code, 0, filtered[i].stderr);
    const id = lineToId(shards[i], i === 1 ? 220 : Infinity);
    for (const s of statsOf(join(dir, "clean", `${i}.stats`))) {
      const keptId = lineToId(shards[s.duplicate_of.shard], s.duplicate_of.shard === 1 ? 220 : Infinity)(s.duplicate_of.line);
      assert.equal(shards[s.duplicate_of.shard][s.duplicate_of.index].id, keptId);
      staged.push([id(s.line), keptId, s.jaccard, s.rule]);
    }
    kept.push(...idsOf(join(dir, "clean", `${i}.jsonl`)));
  }
  assert.deepEqual(staged, oneRemoved);
  assert.deepEqual(kept, idsOf(join(dir, "one.jsonl")));

  // Band by band (as parallel jobs would) gives the same removal list, byte for byte.
  const bandFiles = Array.from({ length: 14 }, (_, b) => join(dir, "bands", `${b}.bin`));
  bandFiles.forEach((file, b) => findPairs(sigs, b, file));
  findClusters([...bandFiles, ...sigs], join(dir, "remove-bands.bin"));
  assert.deepEqual(readFileSync(join(dir, "remove-bands.bin")), readFileSync(join(dir, "remove.bin")));
  assert.throws(() => findClusters([...sigs, ...bandFiles.slice(0, 12)], join(dir, "x.bin")), /^Error: no pairs for bands 12, 13 of 14: run buckets --band/);
  assert.throws(() => findClusters([...sigs, join(dir, "pairs", "all.bin"), bandFiles[3]], join(dir, "x.bin")), /band 3 is in both .*all\.bin and .*3\.bin/);
  assert.throws(() => findPairs([sigs[0], sigs[0]], null, join(dir, "x.bin")), /are both shard 0/);
  assert.throws(() => findClusters([sigs[0], sigs[1], join(dir, "pairs", "all.bin")], join(dir, "x.bin")), /was made from other signature files \(3 shards\) than the 2 given/);
  assert.throws(() => readRemovals(sigs[0], 0), /is a dedup signature file; filter's --remove reads the removal list/);
  writeFileSync(join(dir, "junk.bin"), "hello");
  assert.throws(() => findPairs([join(dir, "junk.bin")], null, join(dir, "x.bin")), /junk\.bin is not a dedup signature, pairs or removal file/);

  // Through the CLI, a refusal is one line: a shard signed with another seed (naming both option
  // sets), a file cut short, a shard not in the removal list, a shard with other documents.
  const seed2 = join(dir, "sigs", "2-seed2.bin");
  const lines2 = readFileSync(join(dir, "2.jsonl"), "utf8").split("\n").filter((l) => l !== "");
  await writeSignatures(readRecords((async function* () { yield* lines2; })(), { format: "jsonl" }), dedupOptions("minhash", { ...MINHASH_DEFAULTS, seed: 2 }), 2, seed2);
  const cutShort = join(dir, "cut.bin");
  writeFileSync(cutShort, readFileSync(sigs[0]).subarray(0, 1000));
  const refusals = await Promise.all([
    cli("data", "dedup", "buckets", sigs[0], sigs[1], seed2, "--out", join(dir, "x.bin")),
    cli("data", "dedup", "buckets", cutShort, "--out", join(dir, "x.bin")),
    cli("data", "dedup", "filter", join(dir, "0.jsonl"), "--shard-id", "5", "--remove", join(dir, "remove.bin")),
    cli("data", "dedup", "filter", join(dir, "2.jsonl"), "--shard-id", "0", "--remove", join(dir, "remove.bin"), "--out", join(dir, "x.jsonl")),
  ]);
  assertOneLineError(refusals[0], /2-seed2\.bin was made with --minhash --ngram 5 --bands 14 --rows 8 --seed 2, --documents jsonl but .*0\.bin with --minhash --ngram 5 --bands 14 --rows 8 --seed 1, --documents jsonl/);
  assertOneLineError(refusals[1], /cut\.bin is 1000 bytes but its header says \d+: the file is cut short or corrupt/);
  assertOneLineError(refusals[2], /shard 5 is not among the shards of .*remove\.bin \(0, 1, 2\)/);
  assertOneLineError(refusals[3], /2\.jsonl \(shard 0\) has more documents than the 480 it had when signed/);

  // The staged form runs exact dedup too, and agrees with the one-shot --exact run.
  const exactOne = bonsai("data", "dedup", "--exact", join(dir, "all.jsonl"), "--stats", join(dir, "exact.stats"), "--quiet");
  assert.equal(exactOne.code, 0, exactOne.stderr);
  const exactRemoved = statsOf(join(dir, "exact.stats")).map((s) => [oneId(s.line), oneId(s.duplicate_of.line)]);
  const options = dedupOptions("exact");
  const exactSigs = [0, 1, 2].map((i) => join(dir, "sigs", `exact-${i}.bin`));
  for (const i of [0, 1, 2]) {
    const lines = readFileSync(join(dir, `${i}.jsonl`), "utf8").split("\n").filter((l) => l !== "");
    await writeSignatures(readRecords((async function* () { yield* lines; })(), { format: "jsonl" }), options, i, exactSigs[i]);
  }
  findPairs(exactSigs, null, join(dir, "pairs", "exact.bin"));
  findClusters([...exactSigs, join(dir, "pairs", "exact.bin")], join(dir, "remove-exact.bin"));
  const stagedExact: number[][] = [];
  for (const i of [0, 1, 2]) {
    for (const [index, rm] of readRemovals(join(dir, "remove-exact.bin"), i).removals) {
      assert.ok(Number.isNaN(rm.jaccard));
      stagedExact.push([shards[i][index].id, shards[rm.keptShard][rm.keptIndex].id]);
    }
  }
  assert.deepEqual(stagedExact, exactRemoved);
  assert.ok(exactRemoved.length > 10 && exactRemoved.length < oneRemoved.length, `${exactRemoved.length} exact of ${oneRemoved.length}`);
});

test("one-shot --minhash reads stdin (kept in a temporary file for its second pass)", () => {
  const docs = corpus(300);
  const file = join(tmp, "stdin.jsonl");
  writeFileSync(file, jsonl(docs));
  const fromFile = bonsai("data", "dedup", "--minhash", file, "--quiet");
  const piped = spawnSync(process.execPath, [CLI, "data", "dedup", "--minhash", "-", "--quiet", "--documents", "jsonl"], { input: jsonl(docs), encoding: "utf8" });
  assert.equal(piped.status, 0, piped.stderr);
  assert.equal(piped.stdout, fromFile.stdout);
  assert.ok(piped.stdout.split("\n").length < docs.length);
});
