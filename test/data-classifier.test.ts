// The quality classifier (`bonsai data label`, `train-classifier`, `score`): MurmurHash3 against
// its published values, hashed features deterministic, signed (opposite signs cancel in a shared
// bucket), log-scaled and unit-length; a classifier trained on documents of an "educational"
// against a "spam" vocabulary separates held-out ones, while the same documents with shuffled
// labels stay near chance; training is deterministic for a seed; a saved file loads back to
// identical scores and a wrong, damaged, newer or mismatched one is refused. The label step runs
// against a real OpenAI-compatible HTTP server on loopback whose *answers* follow a fixed rule
// ("Educational score: N", N = the distinct educational words in the document): the HTTP client,
// its retries, the score parsing, re-asks of a reply without a score, unlabelled records, order,
// resuming and sampling are the real code. Then label → train-classifier → score through the CLI.
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readFileSync, rmSync, truncateSync, writeFileSync } from "node:fs";
import { type IncomingMessage, type ServerResponse, createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { type HashedFeatureSpec, HashedFeaturizer, defaultHashedFeatureSpec, featureTokens } from "../src/data/classifier/features.js";
import { murmur3x86_32 } from "../src/data/dedup/hash.js";
import { QualityClassifier } from "../src/data/classifier/classifier.js";
import { trainClassifier } from "../src/data/classifier/train.js";
import { FINEWEB_EDU_RUBRIC, parseLabel, renderRubric } from "../src/data/classifier/label.js";
import { binaryMetrics, spearman } from "../src/data/classifier/metrics.js";
import { Rng } from "../src/util/rng.js";
import { assertOneLineError, bonsaiAsync } from "./cli-helpers.js";

const tmp = mkdtempSync(join(tmpdir(), "bonsai-classifier-test-"));
after(() => rmSync(tmp, { recursive: true, force: true }));

const cli = bonsaiAsync;

const readJsonl = (p: string): Record<string, unknown>[] => readFileSync(p, "utf8").split("\n").filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);
const jsonl = (rows: object[]): string => rows.map((r) => JSON.stringify(r) + "\n").join("");

// Synthetic documents: an educational vocabulary against a spam one, in a filler of common words.
const EDU = "photosynthesis energy plants cells molecule equation fraction history science lesson teacher experiment chapter exercise solution theorem geometry atom gravity planet measure volcano climate grammar vocabulary multiply divide triangle continent river ocean fossil mammal insect electricity magnet orbit telescope microscope".split(" ");
const SPAM = "buy cheap click free offer deal discount casino winner prize subscribe limited bonus cash unlock exclusive promo sale hurry coupon jackpot lottery loan credit bargain giveaway shipping order now checkout".split(" ");
const FILLER = "the a of and to in is it that this for with on as you we are was be at by or".split(" ");

/** A document of n words, a share `edu` of them educational and `spam` spam, the rest filler. */
function makeDoc(rng: Rng, edu: number, spam: number, n = 30 + rng.int(30)): string {
  const w: string[] = [];
  for (let i = 0; i < n; i++) {
    const r = rng.next();
    w.push(r < edu ? EDU[rng.int(EDU.length)] : r < edu + spam ? SPAM[rng.int(SPAM.length)] : FILLER[rng.int(FILLER.length)]);
  }
  return w.join(" ") + ".";
}

/** `n` labelled documents: half educational (label 4 or 5), half spam (0 or 1). */
function labelledSet(n: number, seed: number): { text: string; label: number }[] {
  const rng = new Rng(seed);
  return Array.from({ length: n }, (_, i) => {
    const good = i % 2 === 0;
    return { text: good ? makeDoc(rng, 0.3, 0.05) : makeDoc(rng, 0.05, 0.3), label: good ? 4 + rng.int(2) : rng.int(2) };
  });
}

test("MurmurHash3 x86_32 gives its published values", () => {
  const h = (s: string, seed: number): number => {
    const b = new TextEncoder().encode(s);
    return murmur3x86_32(b, seed);
  };
  assert.equal(h("", 0), 0);
  assert.equal(h("", 1), 0x514e28b7);
  assert.equal(h("", 0xffffffff), 0x81f16f39);
  assert.equal(h("hello", 0), 0x248bfa47);
  assert.equal(h("The quick brown fox jumps over the lazy dog", 0), 0x2e4ff723);
  assert.equal(h("abc", 0x9747b28c), 0xc84a62dd);
  assert.equal(h("aaaa", 0x9747b28c), 0x5a97808a);
});

test("hashed features: deterministic, signed (opposite signs cancel in a bucket), log-scaled, unit length", () => {
  assert.deepEqual(featureTokens("Hello, World!  it's 3.5"), ["hello", ",", "world", "!", "it", "'", "s", "3", ".", "5"]);
  const spec = { ...defaultHashedFeatureSpec(), charNgrams: [3, 5] as [number, number] };
  const a = new HashedFeaturizer(spec), b = new HashedFeaturizer(spec);
  const text = "The cat sat on the mat. The cat sat again!";
  const fa = a.features(text), fb = b.features(text);
  assert.deepEqual(fa, b.features(text));
  assert.deepEqual(a.features(text), fb, "a featurizer's scratch space leaves no trace between documents");
  assert.ok(fa.indices.every((v, i) => i === 0 || v > fa.indices[i - 1]), "indices increase");
  assert.ok(Math.abs(fa.values.reduce((s, v) => s + v * v, 0) - 1) < 1e-6, "unit L2 norm");
  // Another hash seed moves the buckets.
  assert.notDeepEqual(new HashedFeaturizer({ ...spec, hashSeed: 7 }).features(text).indices, fa.indices);

  // Signs: about half of many n-grams hash negative.
  const words = Array.from({ length: 2000 }, (_, i) => `w${i}`);
  const negative = words.filter((w) => a.hash(w).sign < 0).length;
  assert.ok(negative > 900 && negative < 1100, `${negative} of 2000 negative`);

  // 16 buckets, unigrams only: two words in one bucket with opposite signs cancel; with the same sign they add up.
  const small = new HashedFeaturizer({ kind: "hashed-ngrams", bits: 4, hashSeed: 0, wordNgrams: 1, charNgrams: null });
  const byBucket = new Map<number, { w: string; sign: number }[]>();
  for (const w of words.slice(0, 200)) {
    const { bucket, sign } = small.hash(w);
    byBucket.set(bucket, [...(byBucket.get(bucket) ?? []), { w, sign }]);
  }
  const [, group] = [...byBucket.entries()].find(([, g]) => g.some((x) => x.sign > 0) && g.some((x) => x.sign < 0))!;
  const pos = group.find((x) => x.sign > 0)!.w, neg = group.find((x) => x.sign < 0)!.w;
  const other = words.slice(0, 200).find((w) => small.hash(w).bucket !== small.hash(pos).bucket)!;
  const cancelled = small.features(`${pos} ${neg} ${other}`);
  assert.deepEqual(Array.from(cancelled.indices), [small.hash(other).bucket], "the cancelled bucket is gone");
  assert.equal(cancelled.values[0], small.hash(other).sign);
  // Log-scaled counts: three of one word against one of another is ln 4 : ln 2, then normalised.
  const counted = small.features(`${pos} ${pos} ${pos} ${other}`);
  const vPos = counted.values[counted.indices.indexOf(small.hash(pos).bucket)], vOther = counted.values[counted.indices.indexOf(small.hash(other).bucket)];
  assert.ok(Math.abs(vPos / vOther - (small.hash(pos).sign * Math.log(4)) / (small.hash(other).sign * Math.log(2))) < 1e-6);
  assert.deepEqual(small.features("  \n "), { indices: new Int32Array(0), values: new Float32Array(0) });
});

test("metrics: confusion counts, precision/recall/F1, Spearman with ties", () => {
  const m = binaryMetrics([true, true, false, false, true], [true, false, false, true, true]);
  assert.deepEqual([m.tp, m.fp, m.tn, m.fn], [2, 1, 1, 1]);
  assert.equal(m.accuracy, 3 / 5);
  assert.equal(m.precision, 2 / 3);
  assert.equal(m.recall, 2 / 3);
  assert.ok(Math.abs(m.f1 - 2 / 3) < 1e-12);
  assert.equal(m.majorityAccuracy, 3 / 5);
  assert.equal(spearman([1, 2, 3, 4], [10, 20, 30, 40]), 1);
  assert.equal(spearman([1, 2, 3, 4], [4, 3, 2, 1]), -1);
  assert.ok(Math.abs(spearman([1, 2, 2, 3], [1, 3, 2, 4]) - 0.9486832980505138) < 1e-12);
});

test("a classifier learns educational from spam vocabulary on held-out documents; shuffled labels stay near chance", async () => {
  const docs = labelledSet(400, 1);
  const spec = defaultHashedFeatureSpec(), f = new HashedFeaturizer(spec);
  const { classifier, report } = await trainClassifier(docs, { features: spec, featurize: (t) => f.features(t), seed: 3 });
  const m = report.heldOutMetrics!;
  assert.equal(report.heldOut, 80);
  assert.equal(report.train, 320);
  assert.ok(m.binary.accuracy >= 0.95, JSON.stringify(m.binary));
  assert.ok(m.binary.f1 >= 0.95, JSON.stringify(m.binary));
  assert.ok(m.regressionDecision.accuracy >= 0.95, JSON.stringify(m.regressionDecision));
  assert.ok(m.regression.spearman > 0.6 && m.regression.mae < m.regression.meanBaselineMae / 2, JSON.stringify(m.regression));

  // The same texts with labels shuffled among them: nothing to learn.
  const rng = new Rng(9), labels = docs.map((d) => d.label);
  for (let i = labels.length - 1; i > 0; i--) {
    const j = rng.int(i + 1);
    [labels[i], labels[j]] = [labels[j], labels[i]];
  }
  const shuffled = await trainClassifier(docs.map((d, i) => ({ text: d.text, label: labels[i] })), { features: spec, featurize: (t) => f.features(t), seed: 3 });
  const s = shuffled.report.heldOutMetrics!;
  assert.ok(Math.abs(s.binary.accuracy - 0.5) < 0.15, JSON.stringify(s.binary));
  assert.ok(Math.abs(s.regression.spearman) < 0.25, JSON.stringify(s.regression));

  // Deterministic: the same seed gives the same file, another seed another one.
  const again = await trainClassifier(docs, { features: spec, featurize: (t) => f.features(t), seed: 3 });
  assert.deepEqual(again.classifier.toBytes(), classifier.toBytes());
  const other = await trainClassifier(docs, { features: spec, featurize: (t) => f.features(t), seed: 4 });
  assert.notDeepEqual(other.classifier.toBytes(), classifier.toBytes());
});

test("a saved classifier loads back to identical scores; wrong, damaged, newer and mismatched files are refused", async () => {
  const spec = { ...defaultHashedFeatureSpec(), bits: 16, charNgrams: [3, 4] as [number, number] }, f = new HashedFeaturizer(spec);
  const { classifier } = await trainClassifier(labelledSet(200, 2), { features: spec, featurize: (t) => f.features(t), epochs: 2 });
  const bytes = classifier.toBytes();
  const loaded = QualityClassifier.fromBytes(bytes);
  assert.deepEqual(loaded.features, spec);
  assert.equal(loaded.threshold, 3);
  const fresh = labelledSet(50, 99).map((d) => d.text);
  const before = classifier.textScorer(), afterLoad = loaded.textScorer();
  for (const t of fresh) assert.deepEqual(afterLoad(t), before(t));
  assert.deepEqual(loaded.toBytes(), bytes, "a loaded classifier saves to the same bytes");
  assert.ok(bytes.length < 200 * 1024, `${bytes.length} bytes`);

  const refuse = (b: Uint8Array, re: RegExp, expect?: HashedFeatureSpec): void => assert.throws(() => QualityClassifier.fromBytes(b, { name: "clf.bin", expect }), (e: Error) => e.name === "ClassifierFileError" && re.test(e.message));
  refuse(new TextEncoder().encode('{"text": "not a classifier"}\n'), /^clf\.bin: not a Bonsai quality classifier/);
  const newer = bytes.slice();
  new DataView(newer.buffer).setUint32(8, 2, true);
  refuse(newer, /format version 2; this Bonsai reads version 1 \(written by a newer Bonsai\)/);
  refuse(bytes.subarray(0, bytes.length - 5), /cut short or damaged: \d+ weights need \d+ bytes, the file has \d+/);
  refuse(bytes.subarray(0, 40), /cut short or damaged: its header says/);
  refuse(bytes, /its features do not match: bits 16 \(expected 18\), charNgrams \[3,4\] \(expected null\)/, defaultHashedFeatureSpec());
  assert.doesNotThrow(() => QualityClassifier.fromBytes(bytes, { expect: spec }));
});

test("rubric and reply parsing", () => {
  const prompt = renderRubric(FINEWEB_EDU_RUBRIC, "The sun is a star.");
  assert.ok(prompt.includes("The excerpt:\nThe sun is a star.\n") && !prompt.includes("{text}"));
  assert.ok(renderRubric("{text}|{text}", "abcdef", 3) === "abc|abc");
  assert.equal(parseLabel("Some reasoning.\nEducational score: 4"), 4);
  assert.equal(parseLabel("**Educational score:** 3"), 3);
  assert.equal(parseLabel("Educational score: 2 ... on reflection, Educational score: 5"), 5, "the last one counts");
  assert.equal(parseLabel("educational SCORE: 1.5"), 1.5);
  assert.equal(parseLabel("Educational score: 7"), null, "outside 0–5");
  assert.equal(parseLabel('Educational score: <total points>'), null);
  assert.equal(parseLabel("I'd give it a 4."), null);
  assert.equal(parseLabel("Rating: 8/10", /rating:\s*(\d+)/i, [0, 10]), 8);
});

// ---------------------------------------------------------------------------------------------
// The teacher's answers: a node:http server speaking OpenAI's chat completions on loopback.

/** The rule the test teacher scores by: distinct educational words in the document, at most 5. */
const ruleScore = (text: string): number => Math.min(5, new Set(text.toLowerCase().match(/[a-z]+/g)?.filter((w) => EDU.includes(w))).size);

interface Seen {
  doc: string;
  temperature: number;
  model: string;
}
const seen: Seen[] = [];
let url = "";
let server: ReturnType<typeof createServer>;

before(async () => {
  const asked = new Map<string, number>();
  server = createServer((req: IncomingMessage, res: ServerResponse) => {
    let body = "";
    req.on("data", (d: Buffer) => (body += d));
    req.on("end", () => {
      const send = (status: number, value: object, headers: Record<string, string> = {}): void => {
        res.writeHead(status, { "Content-Type": "application/json", ...headers });
        res.end(JSON.stringify(value));
      };
      if (req.method !== "POST" || req.url !== "/v1/chat/completions") return send(404, { error: { message: `no route ${req.url}` } });
      const r = JSON.parse(body) as { model: string; temperature: number; messages: { content: string }[] };
      if (r.model === "wrong-model") return send(404, { error: { message: "The model `wrong-model` does not exist" } });
      const prompt = r.messages[0].content;
      const doc = /The excerpt:\n([\s\S]*)\n\nAfter the excerpt/.exec(prompt)?.[1] ?? "";
      seen.push({ doc, temperature: r.temperature, model: r.model });
      const n = (asked.get(doc) ?? 0) + 1;
      asked.set(doc, n);
      // BUSY: the first request is a 503 (the client retries it, as told by Retry-After).
      if (doc.includes("BUSY") && n === 1) return send(503, { error: { message: "overloaded" } }, { "Retry-After": "0" });
      let content = `The extract mentions ${ruleScore(doc)} school subjects.\nEducational score: ${ruleScore(doc)}`;
      // NOSCORE never says a score; FLAKY says one from its second answer on.
      if (doc.includes("NOSCORE") || (doc.includes("FLAKY") && n === 1)) content = "This extract is hard to judge.";
      send(200, { id: "x", object: "chat.completion", model: r.model, choices: [{ index: 0, message: { role: "assistant", content }, finish_reason: "stop" }], usage: { prompt_tokens: Math.ceil(prompt.length / 4), completion_tokens: 12 } });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`;
});
after(() => server.close());

test("data label: scores parsed from a real HTTP teacher, a reply without one re-asked then recorded unlabelled, order and fields kept, resumed, sampled", async () => {
  const docs = [
    { id: "a", src: "web", text: "photosynthesis makes energy in plants and cells" },
    { id: "b", src: "web", text: "buy cheap casino bonus now" },
    { id: "c", src: "web", text: "NOSCORE the river and the ocean" },
    { id: "d", src: "web", text: "FLAKY atom and molecule and gravity" },
    { id: "e", src: "web", text: "BUSY the planet orbit" },
    { id: "f", src: "web", text: "a lesson with an exercise, a chapter, a theorem, geometry and a triangle" },
  ];
  const input = join(tmp, "label-in.jsonl"), out = join(tmp, "labels.jsonl");
  writeFileSync(input, jsonl(docs) + "{not json\n");
  seen.length = 0;
  const r = await cli("data", "label", input, "--endpoint", url, "--model", "test-teacher", "--retries", "2", "--concurrency", "3", "--out", out, "--quiet");
  assert.equal(r.code, 0, r.stderr);
  const got = readJsonl(out);
  assert.deepEqual(got.map((g) => g.id), ["a", "b", "c", "d", "e", "f"], "input order");
  for (const [i, g] of got.entries()) {
    assert.equal(g.src, "web");
    assert.equal(g.text, docs[i].text);
  }
  assert.deepEqual(got.map((g) => g.label), [4, 0, null, 3, 2, 5]);
  assert.equal(got[2].label_reply, "This extract is hard to judge.");
  assert.match(got[0].label_reply as string, /\nEducational score: 4$/);
  // NOSCORE asked 1 + 2 times, FLAKY twice (the re-ask at the retry temperature), BUSY twice (a 503, then the answer).
  const count = (k: string): Seen[] => seen.filter((s) => s.doc.includes(k));
  assert.deepEqual(count("NOSCORE").map((s) => s.temperature), [0, 0.7, 0.7]);
  assert.deepEqual(count("FLAKY").map((s) => s.temperature), [0, 0.7]);
  assert.equal(count("BUSY").length, 2);
  assert.equal(seen.length, 3 + 2 + 2 + 3);
  assert.ok(seen.every((s) => s.model === "test-teacher"));
  assert.match(r.stderr, /line 7: invalid JSON/);
  assert.match(r.stderr, /bonsai data label: 5 labelled \(0: 1, 2: 1, 3: 1, 4: 1, 5: 1\), 1 without a score after 2 re-asks, 0 refused, 0 failed, 1 labelled only after a re-ask, 1 malformed line skipped/);

  // Resume: the last record cut by a "kill", and three more documents in the input.
  const size = readFileSync(out).length;
  truncateSync(out, size - 10);
  const more = [{ id: "g", text: "a volcano and a fossil" }, { id: "h", text: "free prize jackpot" }, { id: "i", text: "a magnet and electricity" }];
  writeFileSync(input, jsonl([...docs, ...more]));
  seen.length = 0;
  const r2 = await cli("data", "label", input, "--endpoint", url, "--model", "test-teacher", "--out", out, "--quiet");
  assert.equal(r2.code, 0, r2.stderr);
  assert.match(r2.stderr, /truncated a cut final line/);
  assert.deepEqual(seen.map((s) => s.doc).sort(), [docs[5].text, ...more.map((m) => m.text)].sort(), "only the cut and the new documents asked");
  const resumed = readJsonl(out);
  assert.deepEqual(resumed.map((g) => g.id), ["a", "b", "c", "d", "e", "f", "g", "h", "i"]);
  assert.match(r2.stderr, /5 already in/);

  // Documents without ids resume by their text; a sample is seeded and in input order.
  const plain = join(tmp, "plain.txt");
  writeFileSync(plain, Array.from({ length: 20 }, (_, i) => `document ${i} about science and history`).join("\n") + "\n");
  const s1 = await cli("data", "label", plain, "--documents", "lines", "--sample", "5", "--seed", "4", "--endpoint", url, "--model", "m", "--out", "-", "--quiet");
  const s2 = await cli("data", "label", plain, "--documents", "lines", "--sample", "5", "--seed", "4", "--endpoint", url, "--model", "m", "--out", "-", "--quiet");
  const s3 = await cli("data", "label", plain, "--documents", "lines", "--sample", "5", "--seed", "5", "--endpoint", url, "--model", "m", "--out", "-", "--quiet");
  assert.equal(s1.code, 0, s1.stderr);
  const nums = (o: string): number[] => o.trim().split("\n").map((l) => Number(/document (\d+)/.exec((JSON.parse(l) as { text: string }).text)![1]));
  assert.equal(nums(s1.stdout).length, 5);
  assert.deepEqual(nums(s1.stdout), [...nums(s1.stdout)].sort((a, b) => a - b));
  assert.deepEqual(nums(s2.stdout), nums(s1.stdout));
  assert.notDeepEqual(nums(s3.stdout), nums(s1.stdout));
  assert.ok((JSON.parse(s1.stdout.split("\n")[0]) as { label: number }).label === 2);
});

test("data label: refusals and usage errors are one line", async () => {
  const input = join(tmp, "refused-in.jsonl");
  writeFileSync(input, jsonl(Array.from({ length: 5 }, (_, i) => ({ text: `science ${i}` }))));
  const r = await cli("data", "label", input, "--endpoint", url, "--model", "wrong-model", "--out", join(tmp, "refused.jsonl"), "--quiet", "--concurrency", "1");
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /bonsai: error: the teacher refused the first 3 requests; the last: .*404.*wrong-model/);
  assertOneLineError(await cli("data", "label", input, "--out", "x.jsonl"), /give the teacher: --teacher PATH .* or --endpoint URL --model NAME/);
  const noPlaceholder = join(tmp, "rubric.txt");
  writeFileSync(noPlaceholder, "Rate this document from 0 to 5.");
  assertOneLineError(await cli("data", "label", input, "--endpoint", url, "--model", "m", "--rubric", noPlaceholder, "--out", "x.jsonl"), /a rubric must hold \{text\}/);
  const notLabels = join(tmp, "not-labels.jsonl");
  writeFileSync(notLabels, '{"text": "x"}\n');
  assertOneLineError(await cli("data", "label", input, "--endpoint", url, "--model", "m", "--out", notLabels), /line 1 is not a labelled record/);
});

test("label → train-classifier → score through the CLI", async () => {
  const rng = new Rng(5);
  // 600 documents of 40 words from spam-heavy to educational-heavy: the rule gives labels 0–5.
  const docs = Array.from({ length: 600 }, (_, i) => {
    const edu = (i % 7) * 0.025;
    return { id: i, text: makeDoc(rng, edu, 0.3 - edu, 40) };
  });
  const input = join(tmp, "corpus.jsonl"), labels = join(tmp, "chain-labels.jsonl"), clf = join(tmp, "edu.clf"), report = join(tmp, "report.json");
  writeFileSync(input, jsonl(docs));
  const l = await cli("data", "label", input, "--endpoint", url, "--model", "rule", "--concurrency", "8", "--out", labels, "--quiet");
  assert.equal(l.code, 0, l.stderr);
  const labelled = readJsonl(labels);
  assert.equal(labelled.length, 600);
  assert.ok(labelled.every((r) => r.label === ruleScore(r.text as string)));

  const t = await cli("data", "train-classifier", labels, "--out", clf, "--report", report, "--seed", "1", "--quiet");
  assert.equal(t.code, 0, t.stderr);
  assert.match(t.stderr, /480 documents trained on, 120 held out/);
  assert.match(t.stderr, /held out, binary head \(p ≥ 0\.5\) vs label ≥ 3: accuracy \d+\.\d%/);
  const rep = JSON.parse(readFileSync(report, "utf8")) as { heldOutMetrics: { binary: { accuracy: number; f1: number }; regression: { spearman: number; mae: number } }; heldOut: number };
  assert.equal(rep.heldOut, 120);
  assert.ok(rep.heldOutMetrics.binary.accuracy >= 0.8 && rep.heldOutMetrics.binary.f1 >= 0.8, JSON.stringify(rep.heldOutMetrics));
  assert.ok(rep.heldOutMetrics.regression.spearman >= 0.8, JSON.stringify(rep.heldOutMetrics));
  const t2 = await cli("data", "train-classifier", labels, "--out", join(tmp, "edu2.clf"), "--seed", "1", "--quiet");
  assert.equal(t2.code, 0, t2.stderr);
  assert.deepEqual(readFileSync(join(tmp, "edu2.clf")), readFileSync(clf), "the same seed writes the same file");

  // Score fresh documents: the score is the loaded file's regression, to 4 digits; educational ones score higher.
  const fresh = Array.from({ length: 100 }, (_, i) => ({ id: i, kind: i % 2 ? "edu" : "spam", text: i % 2 ? makeDoc(rng, 0.2, 0.05, 40) : makeDoc(rng, 0, 0.3, 40) }));
  const freshFile = join(tmp, "fresh.jsonl"), scored = join(tmp, "scored.jsonl");
  writeFileSync(freshFile, jsonl(fresh));
  const s = await cli("data", "score", freshFile, "--classifier", clf, "--out", scored, "--quiet");
  assert.equal(s.code, 0, s.stderr);
  assert.match(s.stderr, /bonsai data score: 100 read, 100 kept, 0 removed/);
  const out = readJsonl(scored);
  const scorer = QualityClassifier.fromBytes(readFileSync(clf)).textScorer();
  for (const [i, o] of out.entries()) {
    assert.equal(o.id, i);
    assert.equal(o.kind, fresh[i].kind);
    assert.equal(o.score, Number(scorer(fresh[i].text).score.toPrecision(4)));
  }
  const mean = (k: string): number => out.filter((o) => o.kind === k).reduce((a, o) => a + (o.score as number), 0) / 50;
  assert.ok(mean("edu") > 3.5 && mean("spam") < 1.5, `edu ${mean("edu")}, spam ${mean("spam")}`);
  const p = await cli("data", "score", freshFile, "--classifier", clf, "--head", "binary", "--field", "edu_p", "--quiet");
  const probs = p.stdout.trim().split("\n").map((line) => JSON.parse(line) as { kind: string; edu_p: number });
  assert.ok(probs.every((o) => o.edu_p >= 0 && o.edu_p <= 1 && (o.kind === "edu") === o.edu_p >= 0.5));

  assertOneLineError(await cli("data", "score", freshFile, "--classifier", labels), /not a Bonsai quality classifier/);
  assertOneLineError(await cli("data", "score", freshFile, "--classifier", join(tmp, "missing.clf")), /--classifier .*missing\.clf: no such file/);
  assertOneLineError(await cli("data", "score", freshFile, "--classifier", clf, "--model", "m.bin"), /reads hashed n-grams, not a model's embeddings/);
  assertOneLineError(await cli("data", "train-classifier", labels, "--out", clf, "--features", "embeddings"), /--features embeddings needs --model PATH/);
});

const shared = join(process.cwd(), "..", "shared", "data", "models");
const stories = join(shared, "stories260K.bin"), tok = join(shared, "tok512.bin"), other = join(shared, "llama-2-tiny-random.gguf");
const haveModels = existsSync(stories) && existsSync(tok) && existsSync(other);

test("embedding features: mean-pooled hidden states of a Bonsai model; another model is refused", { skip: haveModels ? false : `needs ${stories}, ${tok} and ${other} (../shared/data/models)` }, async () => {
  const rng = new Rng(11);
  const docs = Array.from({ length: 60 }, (_, i) => ({ id: i, text: i % 2 ? makeDoc(rng, 0.4, 0, 20) : makeDoc(rng, 0, 0.4, 20), label: i % 2 ? 4 : 1 }));
  const labels = join(tmp, "emb-labels.jsonl"), clf = join(tmp, "emb.clf");
  writeFileSync(labels, jsonl(docs));
  const t = await cli("data", "train-classifier", labels, "--features", "embeddings", "--model", stories, "--tokenizer", tok, "--threads", "1", "--out", clf, "--quiet");
  assert.equal(t.code, 0, t.stderr);
  assert.match(t.stderr, /mean-pooled embeddings of .*stories260K\.bin \(64 dims, first 512 tokens\)/);
  const loaded = QualityClassifier.fromBytes(readFileSync(clf));
  assert.equal(loaded.features.kind, "embeddings");
  const s = await cli("data", "score", labels, "--classifier", clf, "--model", stories, "--tokenizer", tok, "--threads", "1", "--quiet");
  assert.equal(s.code, 0, s.stderr);
  assert.equal(s.stdout.trim().split("\n").length, 60);
  assertOneLineError(await cli("data", "score", labels, "--classifier", clf), /reads mean-pooled embeddings of .*: give that model with --model/);
  assertOneLineError(await cli("data", "score", labels, "--classifier", clf, "--model", other, "--threads", "1", "--quiet"), /trained on embeddings of .*stories260K\.bin \(hidden_size 64, .*\); this model has hidden_size \d+/);
});
