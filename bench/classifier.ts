// The quality classifier on real text: `bonsai data label` → `train-classifier` → `score`, run
// through the CLI on TinyStories (every whole story of tinystories-2MiB.txt) mixed with
// tinyshakespeare cut into passages of 50–250 words.
//
// What labels the data is NOT a language model: no teacher that can follow a rubric runs on this
// machine (stories260K cannot), so the teacher is a fixed rule, served by a loopback
// OpenAI-compatible server in this script that answers each request with "Educational score: N".
// The label step, its HTTP client and parsing are the real ones. The rule, additive like
// FineWeb-Edu's rubric but about simple modern stories, gives one point for each of:
//   1. modern English: none of thou, thee, thy, thine, hath, doth, dost, 'tis, ere, wherefore, art thou;
//   2. dialogue: a quoted utterance ("…");
//   3. a stated lesson or change: learn/learned/learns, lesson, remember(ed), realize(d), understood, taught, from then on;
//   4. length: at least 120 words;
//   5. simple sentences: at most 15 words a sentence on average.
// Positive = score ≥ 3. Criteria 1–3 are lexical (an n-gram model can see them), 4–5 are not.
//
// Run: npm run build && node dist/bench/classifier.js [--embeddings]   (needs ../shared/data)
// --embeddings adds a row for mean-pooled stories260K hidden states (slow: a forward pass per document).
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Rng } from "../src/util/rng.js";
import { benchHeader } from "./machine.js";

const DATA = "../shared/data";
const STORIES = join(DATA, "corpora/tinystories-2MiB.txt"), SHAKESPEARE = join(DATA, "corpora/tinyshakespeare.txt");
const MODEL = join(DATA, "models/stories260K.bin"), TOKENIZER = join(DATA, "models/tok512.bin");
const OUT = "runs/classifier";
const CLI = fileURLToPath(new URL("../src/cli/main.js", import.meta.url));

const ARCHAIC = /\b(thou|thee|thy|thine|hath|doth|dost|'tis|ere|wherefore|art thou)\b/i;
const DIALOGUE = /"[^"\n]{2,}"/;
const LESSON = /\b(learn|learned|learns|lesson|remember|remembered|realize|realized|understood|taught|from then on)\b/i;

/** The rule's score of a document (see the header). */
export function ruleScore(text: string): number {
  const words = text.split(/\s+/).filter(Boolean).length;
  const sentences = text.split(/[.!?]+/).filter((s) => /\w/.test(s)).length || 1;
  return [!ARCHAIC.test(text), DIALOGUE.test(text), LESSON.test(text), words >= 120, words / sentences <= 15].filter(Boolean).length;
}

function corpus(): { id: string; source: string; text: string }[] {
  const stories = readFileSync(STORIES, "utf8").split("<|endoftext|>").map((s) => s.trim()).filter(Boolean);
  stories.pop(); // the file's last story is cut
  const docs = stories.map((text, i) => ({ id: `story-${i}`, source: "tinystories", text }));
  // Shakespeare: consecutive speeches (blank-line separated) joined until a drawn length of 50–250 words.
  const rng = new Rng(7);
  const blocks = readFileSync(SHAKESPEARE, "utf8").split(/\n\s*\n/).map((b) => b.trim()).filter(Boolean);
  let piece: string[] = [], words = 0, target = 50 + rng.int(201), n = 0;
  for (const b of blocks) {
    piece.push(b);
    words += b.split(/\s+/).length;
    if (words >= target) {
      docs.push({ id: `shakespeare-${n++}`, source: "tinyshakespeare", text: piece.join("\n\n") });
      piece = [];
      words = 0;
      target = 50 + rng.int(201);
    }
  }
  return docs;
}

function cli(...args: string[]): Promise<{ code: number | null; stderr: string; seconds: number }> {
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], { stdio: ["ignore", "ignore", "pipe"] });
    let stderr = "";
    child.stderr.on("data", (d: Buffer) => (stderr += d));
    child.on("error", reject);
    child.on("close", (code) => {
      if (code !== 0) reject(new Error(`bonsai ${args.join(" ")} exited ${code}:\n${stderr}`));
      else resolve({ code, stderr, seconds: (performance.now() - t0) / 1000 });
    });
  });
}

interface Report {
  train: number;
  heldOut: number;
  positiveRate: number;
  labels: Record<string, number>;
  features: string;
  heldOutMetrics: {
    binary: { accuracy: number; precision: number; recall: number; f1: number; majorityAccuracy: number };
    regressionDecision: { accuracy: number; f1: number };
    regression: { mae: number; spearman: number; meanBaselineMae: number };
  };
}

async function main(): Promise<void> {
  if (![STORIES, SHAKESPEARE].every(existsSync)) throw new Error(`needs ${STORIES} and ${SHAKESPEARE}`);
  const withEmbeddings = process.argv.includes("--embeddings");
  mkdirSync(OUT, { recursive: true });
  const docs = corpus();
  const input = join(OUT, "corpus.jsonl"), labels = join(OUT, "labels.jsonl");
  writeFileSync(input, docs.map((d) => JSON.stringify(d) + "\n").join(""));

  // The rule as an OpenAI-compatible chat server on loopback.
  const server = createServer((req, res) => {
    let body = "";
    req.on("data", (d: Buffer) => (body += d));
    req.on("end", () => {
      const prompt = (JSON.parse(body) as { messages: { content: string }[] }).messages[0].content;
      const doc = /The excerpt:\n([\s\S]*)\n\nAfter the excerpt/.exec(prompt)?.[1] ?? "";
      const content = `Scored by the bench's fixed rule.\nEducational score: ${ruleScore(doc)}`;
      res.writeHead(200, { "Content-Type": "application/json" });
      res.end(JSON.stringify({ object: "chat.completion", choices: [{ index: 0, message: { role: "assistant", content }, finish_reason: "stop" }], usage: { prompt_tokens: 0, completion_tokens: 0 } }));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`;
  try {
    rmIfExists(labels);
    const l = await cli("data", "label", input, "--endpoint", url, "--model", "rule", "--concurrency", "16", "--out", labels, "--quiet");
    process.stderr.write(l.stderr);
  } finally {
    server.close();
  }

  const runs: { name: string; args: string[] }[] = [
    { name: "word 1–2-grams, 2^18 buckets", args: [] },
    { name: "word 1–2-grams + char 3–5-grams, 2^20 buckets", args: ["--char-ngrams", "3-5", "--bits", "20"] },
  ];
  if (withEmbeddings) runs.push({ name: "stories260K mean-pooled embeddings (64 dims)", args: ["--features", "embeddings", "--model", MODEL, "--tokenizer", TOKENIZER, "--threads", "1", "--epochs", "20"] });
  const rows: string[] = [];
  for (const [i, r] of runs.entries()) {
    const clf = join(OUT, `clf-${i}.bin`), report = join(OUT, `report-${i}.json`);
    const t = await cli("data", "train-classifier", labels, "--out", clf, "--report", report, "--seed", "0", "--quiet", ...r.args);
    process.stderr.write(t.stderr);
    const scoreArgs = r.args.includes("--model") ? ["--model", MODEL, "--tokenizer", TOKENIZER, "--threads", "1"] : [];
    const s = await cli("data", "score", input, "--classifier", clf, "--out", join(OUT, `scored-${i}.jsonl`), ...scoreArgs);
    const rate = /\((\d+) docs\/s\)/.exec(s.stderr)?.[1] ?? "?";
    const rep = JSON.parse(readFileSync(report, "utf8")) as Report;
    const m = rep.heldOutMetrics;
    const p = (x: number): string => (100 * x).toFixed(1);
    if (i === 0) {
      rows.push(`${docs.length} documents (${docs.filter((d) => d.source === "tinystories").length} TinyStories, ${docs.filter((d) => d.source !== "tinystories").length} tinyshakespeare passages); labels ${Object.entries(rep.labels).map(([k, v]) => `${k}: ${v}`).join(", ")}; ${p(rep.positiveRate)}% ≥ 3; ${rep.train} trained on, ${rep.heldOut} held out (seed 0)`, "");
      rows.push("| features | accuracy (majority) | precision | recall | F1 | regression MAE (mean baseline) | Spearman | regression ≥ 3: accuracy, F1 | file | score docs/s |");
      rows.push("|---|---|---|---|---|---|---|---|---|---|");
    }
    const size = readFileSync(clf).length;
    rows.push(
      `| ${r.name} | ${p(m.binary.accuracy)}% (${p(m.binary.majorityAccuracy)}%) | ${p(m.binary.precision)}% | ${p(m.binary.recall)}% | ${m.binary.f1.toFixed(3)} | ` +
        `${m.regression.mae.toFixed(3)} (${m.regression.meanBaselineMae.toFixed(3)}) | ${m.regression.spearman.toFixed(3)} | ${p(m.regressionDecision.accuracy)}%, ${m.regressionDecision.f1.toFixed(3)} | ${(size / 1024).toFixed(0)} KiB | ${rate} |`,
    );
  }
  const table = [await benchHeader(), "", ...rows].join("\n");
  writeFileSync(join(OUT, "table.md"), table + "\n");
  process.stdout.write(table + "\n");
}

function rmIfExists(p: string): void {
  if (existsSync(p)) writeFileSync(p, "");
}

main().catch((e: unknown) => {
  process.stderr.write(`${(e as Error).stack ?? String(e)}\n`);
  process.exit(1);
});
