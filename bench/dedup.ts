// bench:dedup — `bonsai data dedup` at scale: N synthetic documents (default 1,000,000) generated
// in-process with known labels, through the one-shot --minhash run, the staged pipeline (the
// shards' signatures and filters and the bands' buckets run --jobs at a time, as GNU parallel
// would), and the one-shot --exact run. For each: wall time, documents/s, and the peak RSS of the
// largest process (each CLI process reports its getrusage maxRSS at exit). Against the labels:
// precision and recall of the removals, recall by the near-duplicate's true Jaccard, and whether
// the staged run removed exactly the one-shot run's documents.
// The corpus: documents of 50–150 words drawn from a 20,000-word vocabulary (half the draws from
// its 100 most common words), and ~7% near-duplicates of an earlier original: a third re-cased
// and re-punctuated copies (the same normalised text), a third with 1–2 words replaced, a third
// with 3–4 replaced. A duplicate's label is its original's id, and its true Jaccard the word
// 5-gram sets' (the same normalisation and shingles as MinHash's).
// Run: npm run bench:dedup [-- --docs 200000] [--shards 4] [--jobs 2] [--dir DIR] [--keep]
import { spawn } from "node:child_process";
import { createWriteStream, mkdirSync, readFileSync, rmSync, statSync, type WriteStream } from "node:fs";
import * as os from "node:os";
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { parseArgs } from "node:util";
import { fmix32 } from "../src/data/dedup/hash.js";
import { shingleHashes } from "../src/data/dedup/minhash.js";
import { cpuDescription } from "./machine.js";

const { values } = parseArgs({
  options: {
    docs: { type: "string", default: "1000000" },
    shards: { type: "string", default: "4" },
    jobs: { type: "string", default: String(Math.max(1, os.availableParallelism())) },
    dir: { type: "string" },
    keep: { type: "boolean", default: false },
  },
});
const N = Number(values.docs), SHARDS = Number(values.shards), JOBS = Number(values.jobs);
const CLI = fileURLToPath(new URL("../src/cli/main.js", import.meta.url));
const PROBE = pathToFileURL(fileURLToPath(new URL("./rss-probe.js", import.meta.url))).href;
const dir = values.dir ?? join(os.tmpdir(), "bonsai-dedup-bench");
rmSync(dir, { recursive: true, force: true });
for (const d of ["shards", "sigs", "pairs", "clean"]) mkdirSync(join(dir, d), { recursive: true });

let state = 12345;
const rand = (): number => fmix32((state = (Math.imul(state, 1664525) + 1013904223) >>> 0)) / 2 ** 32;
const pick = (n: number): number => Math.floor(rand() * n);
const letters = (i: number): string => {
  let w = "";
  do {
    w += String.fromCharCode(97 + (i % 26));
    i = Math.floor(i / 26);
  } while (i > 0);
  return w;
};
const vocab = Array.from({ length: 20_000 }, (_, i) => letters(i + 26));
const draw = (): string => vocab[rand() < 0.5 ? pick(100) : pick(vocab.length)];

function jaccard(a: string, b: string): number {
  const x = new Set(shingleHashes(a)), y = new Set(shingleHashes(b));
  let inter = 0;
  for (const h of x) if (y.has(h)) inter++;
  return inter / (x.size + y.size - inter);
}

async function writeAll(stream: WriteStream, text: string): Promise<void> {
  if (!stream.write(text)) await new Promise<void>((r) => stream.once("drain", () => r()));
}

/** Writes the corpus (all.jsonl and its shards); returns the labels: original id per duplicate, and its true Jaccard. */
async function generate(): Promise<{ dupOf: Map<number, number>; trueJ: Map<number, number>; bytes: number }> {
  const all = createWriteStream(join(dir, "all.jsonl"));
  const shards = Array.from({ length: SHARDS }, (_, i) => createWriteStream(join(dir, "shards", `${i}.jsonl`)));
  const perShard = Math.ceil(N / SHARDS);
  const originals: string[] = []; // the texts of a sliding window of originals, to copy from
  const originalIds: number[] = [];
  const dupOf = new Map<number, number>(), trueJ = new Map<number, number>();
  for (let id = 0; id < N; id++) {
    let text: string;
    if (originals.length > 1000 && rand() < 0.07) {
      const k = pick(originals.length);
      const source = originals[k];
      const kind = pick(3);
      const words = source.split(" ");
      if (kind === 0) text = words.map((w, i) => (i % 7 === 0 ? w.toUpperCase() : w) + (i % 11 === 10 ? "," : "")).join("  ") + "!";
      else {
        for (let c = kind === 1 ? 1 + pick(2) : 3 + pick(2); c > 0; c--) words[pick(words.length)] = draw();
        text = words.join(" ");
      }
      dupOf.set(id, originalIds[k]);
      trueJ.set(id, jaccard(source, text));
    } else {
      text = Array.from({ length: 50 + pick(101) }, draw).join(" ");
      if (originals.length < 50_000) {
        originals.push(text);
        originalIds.push(id);
      } else {
        const k = pick(originals.length);
        originals[k] = text;
        originalIds[k] = id;
      }
    }
    const line = JSON.stringify({ id, text }) + "\n";
    await writeAll(all, line);
    await writeAll(shards[Math.floor(id / perShard)], line);
  }
  await Promise.all([all, ...shards].map((s) => new Promise((r) => s.end(r))));
  return { dupOf, trueJ, bytes: statSync(join(dir, "all.jsonl")).size };
}

interface Run {
  seconds: number;
  maxRssMiB: number;
}

/** One CLI process: its wall time and peak RSS (reported by the probe at exit). */
function bonsai(args: string[]): Promise<Run> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const child = spawn(process.execPath, ["--import", PROBE, CLI, ...args], { stdio: ["ignore", "ignore", "pipe"] });
    let stderr = "";
    child.stderr.on("data", (d: Buffer) => (stderr += d));
    child.on("error", reject);
    child.on("close", (code) => {
      if (code !== 0) return reject(new Error(`bonsai ${args.join(" ")} failed (${code}):\n${stderr}`));
      const kb = Number(/bench-maxrss-kb (\d+)/.exec(stderr)?.[1] ?? NaN);
      resolve({ seconds: (performance.now() - t0) / 1000, maxRssMiB: kb / 1024 });
    });
  });
}

/** Run the jobs `JOBS` at a time: the stage's wall time and its largest process's RSS. */
async function parallel(jobs: string[][]): Promise<Run> {
  const t0 = performance.now();
  let next = 0, rss = 0;
  await Promise.all(Array.from({ length: Math.min(JOBS, jobs.length) }, async () => {
    while (next < jobs.length) {
      const r = await bonsai(jobs[next++]);
      rss = Math.max(rss, r.maxRssMiB);
    }
  }));
  return { seconds: (performance.now() - t0) / 1000, maxRssMiB: rss };
}

/** Removed id → kept id, from --stats files and the input lines' ids. */
function removals(statsFiles: string[], idOfLine: (file: number, line: number, shard?: number) => number): Map<number, number> {
  const out = new Map<number, number>();
  statsFiles.forEach((file, k) => {
    for (const l of readFileSync(file, "utf8").split("\n")) {
      if (l === "") continue;
      const s = JSON.parse(l);
      out.set(idOfLine(k, s.line), idOfLine(s.duplicate_of.shard ?? k, s.duplicate_of.line, s.duplicate_of.shard));
    }
  });
  return out;
}

const fmt = (n: number, d = 0): string => n.toLocaleString("en-US", { maximumFractionDigits: d, minimumFractionDigits: d });

async function main(): Promise<void> {
  console.log(`machine: ${cpuDescription()}; Node ${process.version}`);
  const g0 = performance.now();
  const { dupOf, trueJ, bytes } = await generate();
  console.log(`corpus: ${fmt(N)} documents (${fmt(dupOf.size)} near-duplicates, ${((100 * dupOf.size) / N).toFixed(1)}%), ${fmt(bytes / 2 ** 20)} MiB of JSONL in ${SHARDS} shards; generated in ${((performance.now() - g0) / 1000).toFixed(0)} s; ${JOBS} parallel jobs`);

  const oneShot = await bonsai(["data", "dedup", "--minhash", join(dir, "all.jsonl"), "--out", join(dir, "one.jsonl"), "--stats", join(dir, "one.stats"), "--quiet"]);
  const exact = await bonsai(["data", "dedup", "--exact", join(dir, "all.jsonl"), "--out", join(dir, "exact.jsonl"), "--stats", join(dir, "exact.stats"), "--quiet"]);
  const shards = Array.from({ length: SHARDS }, (_, i) => i);
  const sigFiles = shards.map((i) => join(dir, "sigs", `${i}.bin`));
  const sig = await parallel(shards.map((i) => ["data", "dedup", "signatures", join(dir, "shards", `${i}.jsonl`), "--shard-id", String(i), "--out", sigFiles[i], "--quiet"]));
  const bands = Array.from({ length: 14 }, (_, b) => b);
  const buckets = await parallel(bands.map((b) => ["data", "dedup", "buckets", ...sigFiles, "--band", String(b), "--out", join(dir, "pairs", `${b}.bin`), "--quiet"]));
  const clusters = await bonsai(["data", "dedup", "clusters", ...sigFiles, ...bands.map((b) => join(dir, "pairs", `${b}.bin`)), "--out", join(dir, "remove.bin"), "--quiet"]);
  const filter = await parallel(shards.map((i) => ["data", "dedup", "filter", join(dir, "shards", `${i}.jsonl`), "--shard-id", String(i), "--remove", join(dir, "remove.bin"), "--out", join(dir, "clean", `${i}.jsonl`), "--stats", join(dir, "clean", `${i}.stats`), "--quiet"]));
  const stagedSeconds = sig.seconds + buckets.seconds + clusters.seconds + filter.seconds;
  const sizes = (files: string[]): number => files.reduce((s, f) => s + statSync(f).size, 0) / 2 ** 20;

  // Labels: line L of all.jsonl is id L − 1; shard i's line L is id i·perShard + L − 1.
  const perShard = Math.ceil(N / SHARDS);
  const one = removals([join(dir, "one.stats")], (_f, line) => line - 1);
  const staged = removals(shards.map((i) => join(dir, "clean", `${i}.stats`)), (f, line) => f * perShard + line - 1);
  const same = one.size === staged.size && [...one].every(([id, kept]) => staged.get(id) === kept);
  const exactRemoved = removals([join(dir, "exact.stats")], (_f, line) => line - 1);

  const score = (removed: Map<number, number>, positives: Set<number>): { precision: number; recall: number } => {
    let tp = 0;
    for (const id of removed.keys()) if (positives.has(id)) tp++;
    return { precision: removed.size ? tp / removed.size : 1, recall: positives.size ? tp / positives.size : 1 };
  };
  const all = new Set(dupOf.keys());
  const m = score(one, all);
  const exactPositives = new Set([...dupOf.keys()].filter((id) => trueJ.get(id) === 1));
  const e = score(exactRemoved, exactPositives);

  console.log("\n| run | wall | documents/s | peak RSS (largest process) |\n|---|---:|---:|---:|");
  const row = (name: string, r: Run): void => console.log(`| ${name} | ${r.seconds.toFixed(1)} s | ${fmt(N / r.seconds)} | ${fmt(r.maxRssMiB)} MiB |`);
  row("one-shot --minhash", oneShot);
  row("one-shot --exact", exact);
  row(`staged: signatures (${SHARDS} shards)`, sig);
  row("staged: buckets (14 bands)", buckets);
  row("staged: clusters", clusters);
  row(`staged: filter (${SHARDS} shards)`, filter);
  console.log(`| staged, all stages | ${stagedSeconds.toFixed(1)} s | ${fmt(N / stagedSeconds)} | ${fmt(Math.max(sig.maxRssMiB, buckets.maxRssMiB, clusters.maxRssMiB, filter.maxRssMiB))} MiB |`);
  console.log(`\nsignature files ${fmt(sizes(sigFiles))} MiB, pairs ${fmt(sizes(bands.map((b) => join(dir, "pairs", `${b}.bin`))))} MiB, removal list ${fmt(sizes([join(dir, "remove.bin")]), 1)} MiB`);
  console.log(`minhash: ${fmt(one.size)} removed; precision ${m.precision.toFixed(4)}, recall ${m.recall.toFixed(4)} against the ${fmt(all.size)} labelled near-duplicates; staged removals ${same ? "identical to" : "DIFFERENT from"} the one-shot run's (${fmt(staged.size)})`);
  const bucketsOfJ: Array<[string, (j: number) => boolean, number]> = [["J = 1", (j) => j === 1, 1], ["0.9 ≤ J < 1", (j) => j >= 0.9 && j < 1, 0.9], ["0.8 ≤ J < 0.9", (j) => j >= 0.8 && j < 0.9, 0.8], ["0.7 ≤ J < 0.8", (j) => j >= 0.7 && j < 0.8, 0.7], ["J < 0.7", (j) => j < 0.7, 0]];
  for (const [name, inBucket, s] of bucketsOfJ) {
    const ids = [...trueJ].filter(([, j]) => inBucket(j)).map(([id]) => id);
    if (ids.length === 0) continue;
    const found = ids.filter((id) => one.has(id)).length;
    console.log(`  recall at ${name}: ${(found / ids.length).toFixed(4)} of ${fmt(ids.length)}${s > 0 ? ` (S-curve at the bucket's floor: ${(1 - (1 - s ** 8) ** 14).toFixed(3)})` : ""}`);
  }
  console.log(`exact: ${fmt(exactRemoved.size)} removed; precision ${e.precision.toFixed(4)}, recall ${e.recall.toFixed(4)} against the ${fmt(exactPositives.size)} duplicates whose normalised text is the original's`);
  if (!values.keep) rmSync(dir, { recursive: true, force: true });
  else console.log(`files kept in ${dir}`);
}

await main();
