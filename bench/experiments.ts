// The training experiments of docs/experiments.md, each one command that runs the CLI exactly as a
// user would, on TinyStories (../shared/data/corpora/tinystories-2MiB.txt):
//   npm run exp:distill      E1: a teacher, a student from scratch and distilled students
//   npm run exp:curriculum   E2: curriculum vs uniform sampling at equal steps
//   npm run exp:qat          E3: F32 vs post-training Q4_0 vs Q4_0 quantization-aware fine-tuning
//   npm run exp:spec         E4: a 15M-parameter target for speculative decoding, then bench:spec
//                            with E1's distilled student as its draft, on 1 and 2 threads
//   npm run exp:moe          E5: dense vs mixture of experts at equal active parameters
//   npm run exp:data         E6: raw vs filtered + deduplicated noisy TinyStories at equal tokens
//   npm run exp:synth        E7: students on stories synthesised by E1's teacher vs as many real ones
// Shared set-up (runs/exp/): the stories split on <|endoftext|> (the last, cut story dropped), the
// last 10% of stories held out; a 1024-token byte-level BPE trained on the rest; E1 and E2 share the teacher.
// A finished step is not redone (its output directory is kept), so a second run only prints the
// table; delete runs/exp to start over. Every held-out loss is `bonsai eval --split all` on the
// held-out stories: nats per token.
import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, openSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { benchHeader } from "./machine.js";
import { type NoiseKind, makeNoisyCorpus, noiseKinds } from "./noisy-corpus.js";

const CORPUS = "../shared/data/corpora/tinystories-2MiB.txt";
const DIR = "runs/exp";
const CLI = fileURLToPath(new URL("../src/cli/main.js", import.meta.url));
const TRAIN = join(DIR, "train.txt"), HELDOUT = join(DIR, "heldout.txt"), TOKENIZER = join(DIR, "tok1024.json");

/** Optimizer and data flags shared by every student run: only the objective differs. */
const BATCH = ["--block-size", "128", "--batch-size", "16", "--warmup", "50", "--eval-interval", "200", "--eval-iters", "10", "--log-interval", "50", "--threads", "1"];
const STUDENT = ["--layers", "3", "--dim", "128", "--heads", "4", "--kv-heads", "2", "--tie-embeddings", "--lr", "3e-3", "--min-lr", "3e-4", "--seed", "2"];
const STUDENT_ITERS = "600";
const FINE_TUNE = "200";
/** The student's flags with another seed (E5, E6 and E7 repeat runs over seeds). */
const studentWithSeed = (seed: string): string[] => STUDENT.map((a, i) => (STUDENT[i - 1] === "--seed" ? seed : a));
/** E6 and E7 train each student with these seeds. */
const SEEDS = ["2", "3"];
/** E5 trains longer than E1: at 600 steps the MoE has not yet used its extra capacity (docs/experiments.md). */
const MOE_ITERS = "1500";
/** E7: stories the teacher synthesises (about as many as E1's students train on: 2085 real ones). */
const SYNTH_COUNT = 1500;
const TEACHER = ["--layers", "4", "--dim", "256", "--heads", "8", "--kv-heads", "4", "--tie-embeddings", "--lr", "2e-3", "--min-lr", "2e-4", "--seed", "1", "--iters", "600"];
/** E4's target: 15.0M parameters (60 MB at F32), on both cores (~30 min on 2 cores). */
const SPEC_TARGET = ["--layers", "5", "--dim", "512", "--heads", "8", "--kv-heads", "4", "--tie-embeddings", "--lr", "1.5e-3", "--min-lr", "1.5e-4", "--seed", "11", "--iters", "400", "--warmup", "40",
  "--block-size", "128", "--batch-size", "16", "--eval-interval", "200", "--eval-iters", "10", "--log-interval", "50", "--threads", "2"];

function bonsai(args: string[]): string {
  process.stderr.write(`$ bonsai ${args.join(" ")}\n`);
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: "utf8", stdio: ["ignore", "pipe", "inherit"], maxBuffer: 1 << 26 });
  if (r.status !== 0) throw new Error(`bonsai ${args[0]} failed (exit ${r.status})`);
  return r.stdout;
}

/** The command to run so that `out` holds its finished result: none, the command, or a resume. */
function pending(out: string, args: string[]): string[] | null {
  if (out.endsWith(".gguf")) return existsSync(out) ? null : args;
  const statePath = join(out, "training_state.json");
  if (!existsSync(statePath)) return args;
  const state = JSON.parse(readFileSync(statePath, "utf8")) as { iter: number; options: { iters: number } };
  // An interrupted training run is resumed (exactly: see bonsai train --resume).
  return state.iter >= state.options.iters ? null : [args[0], "--out", out, "--resume"];
}

/** Run a command that writes `out` unless `out` holds its finished result. */
function once(out: string, args: string[]): void {
  const cmd = pending(out, args);
  if (cmd) bonsai(cmd);
  else process.stderr.write(`(kept ${out})\n`);
}

/**
 * Several single-threaded training runs side by side, one per core; each one's output goes to
 * OUT.log beside its directory.
 */
async function parallel(runs: [string, string[]][]): Promise<void> {
  await Promise.all(runs.map(([out, args]) => {
    const cmd = pending(out, args);
    if (!cmd) return process.stderr.write(`(kept ${out})\n`);
    process.stderr.write(`$ bonsai ${cmd.join(" ")}   (log: ${out}.log)\n`);
    const log = openSync(`${out}.log`, "w");
    const child = spawn(process.execPath, [CLI, ...cmd], { stdio: ["ignore", log, log] });
    return new Promise<void>((resolve, reject) =>
      child.on("exit", (code) => (code === 0 ? resolve() : reject(new Error(`bonsai ${cmd[0]} → ${out} failed (exit ${code}); see ${out}.log`)))),
    );
  }));
}

const heldOutLoss = (model: string): number => {
  const m = /all_loss ([0-9.]+)/.exec(bonsai(["eval", "--model", model, "--data", HELDOUT, "--split", "all", "--threads", "2"]));
  if (!m) throw new Error(`no loss from bonsai eval ${model}`);
  return Number(m[1]);
};

function setUp(): void {
  if (!existsSync(CORPUS)) {
    console.log(`skipped: ${CORPUS} is absent (see ../shared/data/README.md)`);
    process.exit(0);
  }
  mkdirSync(DIR, { recursive: true });
  if (!existsSync(HELDOUT)) {
    const stories = readFileSync(CORPUS, "utf8").split("<|endoftext|>").map((s) => s.trim());
    const whole = stories.slice(0, -1).filter((s) => s !== ""); // the file ends inside a story
    const cut = whole.length - Math.floor(whole.length / 10);
    writeFileSync(TRAIN, whole.slice(0, cut).join("\n<|endoftext|>\n") + "\n");
    writeFileSync(HELDOUT, whole.slice(cut).join("\n<|endoftext|>\n") + "\n");
    console.log(`stories: ${cut} for training, ${whole.length - cut} held out`);
  }
  if (!existsSync(TOKENIZER)) bonsai(["tokenizer", "train", "--data", TRAIN, "--vocab-size", "1024", "--type", "bytelevel-bpe", "--out", TOKENIZER]);
}

/** E1's teacher (E2 scores stories with it): trained once, kept. */
function teacher(): string {
  const out = join(DIR, "teacher");
  once(out, ["train", "--data", TRAIN, "--tokenizer", TOKENIZER, ...TEACHER, ...BATCH, "--out", out]);
  return out;
}

const table = (rows: [string, string][]): void => {
  const w = Math.max(...rows.map((r) => r[0].length));
  for (const [a, b] of rows) console.log(`| ${a.padEnd(w)} | ${b} |`);
};

/** An E1 student distilled from `teacherDir` with `extra` objective flags, as [its directory, the command]. */
function distilled(teacherDir: string, name: string, extra: string[]): [string, string[]] {
  const out = join(DIR, name);
  return [out, ["distill", "--teacher", teacherDir, "--data", TRAIN, ...STUDENT, ...BATCH, "--iters", STUDENT_ITERS, ...extra, "--out", out]];
}
const FORWARD_KL = ["--kd-loss", "forward-kl", "--alpha", "0.5", "--temperature", "2"];

async function distillation(): Promise<void> {
  const teacherDir = teacher();
  const scratch = join(DIR, "scratch");
  const forward = distilled(teacherDir, "kd-forward", FORWARD_KL);
  const reverse = distilled(teacherDir, "kd-reverse", ["--kd-loss", "reverse-kl", "--alpha", "0.5", "--temperature", "1"]);
  const jsd = distilled(teacherDir, "kd-jsd", ["--kd-loss", "jsd", "--beta", "0.5", "--alpha", "0.5", "--temperature", "1"]);
  await parallel([[scratch, ["train", "--data", TRAIN, "--tokenizer", TOKENIZER, ...STUDENT, ...BATCH, "--iters", STUDENT_ITERS, "--out", scratch]], forward]);
  await parallel([reverse, jsd]);
  const runs: [string, string][] = [
    ["teacher (3.2M parameters)", teacherDir],
    ["student (0.68M) from scratch", scratch],
    ["student, forward-kl α=0.5 τ=2", forward[0]],
    ["student, reverse-kl α=0.5 τ=1", reverse[0]],
    ["student, jsd β=0.5 α=0.5 τ=1", jsd[0]],
  ];
  console.log("\nE1 distillation — held-out cross-entropy (nats/token)\n");
  table([["run", "held-out loss"], ["---", "---"], ...runs.map(([n, d]): [string, string] => [n, heldOutLoss(d).toFixed(4)])]);
}

async function curriculum(): Promise<void> {
  const teacherDir = teacher();
  // Every run draws whole stories as samples (--curriculum); pacing none is uniform sampling.
  const run = (name: string, extra: string[]): [string, string[]] => {
    const out = join(DIR, name);
    return [out, ["train", "--data", TRAIN, "--tokenizer", TOKENIZER, ...STUDENT, ...BATCH, "--iters", STUDENT_ITERS, ...extra, "--out", out]];
  };
  const byTeacher = ["--curriculum", "teacher-loss", "--curriculum-model", teacherDir, "--score-tokens", "128"];
  const runs: [string, [string, string[]]][] = [
    ["uniform over stories (pacing none)", run("cur-uniform", ["--curriculum", "length", "--pacing", "none"])],
    ["length, root pacing, hard", run("cur-length-root", ["--curriculum", "length", "--pacing", "root", "--curriculum-mode", "hard"])],
    ["teacher-loss, root pacing, hard", run("cur-teacher-root", [...byTeacher, "--pacing", "root", "--curriculum-mode", "hard"])],
    ["teacher-loss, linear pacing, soft", run("cur-teacher-soft", [...byTeacher, "--pacing", "linear", "--curriculum-mode", "soft"])],
  ];
  await parallel([runs[0][1], runs[1][1]]);
  await parallel([runs[2][1], runs[3][1]]);
  const rows: [string, string][] = [["random windows of the token stream (E1's scratch student)", join(DIR, "scratch")], ...runs.map(([n, [d]]): [string, string] => [n, d])];
  console.log(`\nE2 curriculum — ${STUDENT_ITERS} steps each, held-out cross-entropy (nats/token)\n`);
  table([["run", "held-out loss"], ["---", "---"], ...rows.filter(([, d]) => existsSync(d)).map(([n, d]): [string, string] => [n, heldOutLoss(d).toFixed(4)])]);
}

async function quantizationAware(): Promise<void> {
  // The E1 scratch student, fine-tuned FINE_TUNE more steps twice: in float, and with Q4_0 QAT.
  const student = join(DIR, "scratch");
  once(student, ["train", "--data", TRAIN, "--tokenizer", TOKENIZER, ...STUDENT, ...BATCH, "--iters", STUDENT_ITERS, "--out", student]);
  const tune = ["--data", TRAIN, ...BATCH, "--iters", FINE_TUNE, "--lr", "5e-4", "--min-lr", "5e-5", "--warmup", "0", "--seed", "3", "--init", student];
  const float = join(DIR, "ft-float"), qat = join(DIR, "ft-qat4"), qat48 = join(DIR, "ft-qat4-a8");
  await parallel([[float, ["train", ...tune, "--out", float]], [qat, ["train", ...tune, "--qat", "q4_0", "--out", qat]]]);
  once(qat48, ["train", ...tune, "--qat", "q4_0", "--qat-activations", "int8", "--out", qat48]);
  const q4 = (dir: string): string => {
    const file = `${dir}.q4_0.gguf`;
    once(file, ["export", "--model", dir, "--format", "gguf", "--quant", "q4_0", "--out", file]);
    return file;
  };
  const f32 = heldOutLoss(student), ptq = heldOutLoss(q4(student));
  const ftF32 = heldOutLoss(float), ftPtq = heldOutLoss(q4(float)), ftQat = heldOutLoss(q4(qat));
  const ftQat48 = heldOutLoss(qat48); // Bonsai runs the checkpoint with int8 activations and Q4_0 weights
  const recovered = (p: number, q: number, f: number): string => `${(((p - q) / (p - f)) * 100).toFixed(1)}%`;
  console.log(`\nE3 quantization-aware training — held-out cross-entropy (nats/token); fine-tuning ${FINE_TUNE} steps\n`);
  table([
    ["model", "held-out loss"], ["---", "---"],
    ["student F32", f32.toFixed(4)],
    ["student, post-training Q4_0", ptq.toFixed(4)],
    [`+${FINE_TUNE} steps float, F32`, ftF32.toFixed(4)],
    [`+${FINE_TUNE} steps float, post-training Q4_0`, ftPtq.toFixed(4)],
    [`+${FINE_TUNE} steps Q4_0 QAT, exported Q4_0`, ftQat.toFixed(4)],
    [`+${FINE_TUNE} steps Q4_0 QAT with int8 activations (W4A8, in Bonsai)`, ftQat48.toFixed(4)],
  ]);
  console.log(`\nrecovered (PTQ − QAT)/(PTQ − F32) at equal training: ${recovered(ftPtq, ftQat, ftF32)}`);
}

function speculative(): void {
  const target = join(DIR, "spec-target");
  once(target, ["train", "--data", TRAIN, "--tokenizer", TOKENIZER, ...SPEC_TARGET, "--out", target]);
  const draft = join(DIR, "kd-forward");
  // E1's teacher is needed only to make (or finish) the draft.
  if (pending(draft, []) !== null) once(...distilled(teacher(), "kd-forward", FORWARD_KL));
  console.log(`\nE4 target: held-out loss ${heldOutLoss(target).toFixed(4)} (E1's draft: ${heldOutLoss(draft).toFixed(4)})`);
  const bench = fileURLToPath(new URL("./spec.js", import.meta.url));
  for (const threads of ["1", "2"]) {
    const args = [bench, "--target", target, "--draft", draft, "--threads", threads];
    process.stderr.write(`$ node ${args.join(" ")}\n`);
    const r = spawnSync(process.execPath, args, { stdio: "inherit" });
    if (r.status !== 0) throw new Error(`bench:spec failed (exit ${r.status})`);
  }
}

/** Parameters of a checkpoint: all of them, and those one token uses (k of E experts per layer). */
function parameterCounts(dir: string): { total: number; active: number } {
  const c = JSON.parse(readFileSync(join(dir, "config.json"), "utf8")) as Record<string, number | boolean>;
  const d = c.hidden_size as number, f = c.intermediate_size as number, L = c.num_hidden_layers as number, V = c.vocab_size as number;
  const kv = ((c.num_key_value_heads as number) * d) / (c.num_attention_heads as number);
  const E = (c.num_local_experts as number | undefined) ?? 1, k = E > 1 ? (c.num_experts_per_tok as number) : 1;
  const attention = 2 * d * d + 2 * d * kv, norms = 2 * d, expert = 3 * d * f, router = E > 1 ? E * d : 0;
  const ends = V * d * (c.tie_word_embeddings ? 1 : 2) + d;
  return { total: ends + L * (attention + norms + router + E * expert), active: ends + L * (attention + norms + router + k * expert) };
}

/** Mean training tokens/s of a run (its last step's running figure in metrics.jsonl). */
function trainTokensPerSecond(dir: string): number {
  const steps = readFileSync(join(dir, "metrics.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l) as { tokens_per_s?: number }).filter((m) => m.tokens_per_s !== undefined);
  return steps[steps.length - 1].tokens_per_s!;
}

/** Greedy decode tok/s of a model on one thread (bonsai generate --stats), the median of three runs. */
function decodeTokensPerSecond(dir: string): number {
  const rates: number[] = [];
  for (let i = 0; i < 3; i++) {
    process.stderr.write(`$ bonsai generate --model ${dir} --stats …\n`);
    const r = spawnSync(process.execPath, [CLI, "generate", "--model", dir, "--prompt", "Once upon a time", "--max-tokens", "200", "--temperature", "0", "--stats", "--threads", "1"], { encoding: "utf8" });
    if (r.status !== 0) throw new Error(`bonsai generate failed: ${r.stderr}`);
    rates.push((JSON.parse(r.stderr.trim().split("\n").at(-1)!) as { decode_tokens_per_s: number }).decode_tokens_per_s);
  }
  return rates.sort((a, b) => a - b)[1];
}

/**
 * E5: sparse MoE against dense models of its active and of its total parameters, and an upcycled
 * MoE, at equal steps and tokens (E1's student shape and batches), for two seeds.
 */
async function mixtureOfExperts(): Promise<void> {
  // E1's student FFN is 352 wide: 8 experts of 176 with 2 per token use the same active FFN parameters;
  // a dense FFN of 8·176 = 1408 has the MoE's total.
  const run = (name: string, seed: string, extra: string[], iters = MOE_ITERS): [string, string[]] => {
    const out = join(DIR, `${name}-s${seed}`);
    return [out, ["train", "--data", TRAIN, "--tokenizer", TOKENIZER, ...studentWithSeed(seed), ...BATCH, "--iters", iters, ...extra, "--out", out]];
  };
  const MOE = ["--experts", "8", "--experts-per-token", "2", "--intermediate-size", "176"];
  const rows: [string, string][] = [];
  for (const seed of ["2", "3", "4"]) {
    const dense = run("moe-dense", seed, []), sparse = run("moe-e8k2", seed, MOE), big = run("moe-dense-total", seed, ["--intermediate-size", "1408"]);
    // A third seed for the comparison the goal is about: dense against MoE at equal active parameters.
    if (seed === "4") {
      await parallel([dense, sparse]);
      rows.push([`dense, FFN 352 (seed ${seed})`, dense[0]], [`MoE 8×176, top-2 (seed ${seed})`, sparse[0]]);
      continue;
    }
    // Upcycling: a dense model trained half the steps, then upcycled (each expert its FFN, 8 of them, 2 per token) for the other half.
    const half = run("moe-dense-half", seed, [], String(Number(MOE_ITERS) / 2));
    const upOut = join(DIR, `moe-upcycled-s${seed}`);
    const up: [string, string[]] = [upOut, ["train", "--data", TRAIN, "--init", half[0], "--experts", "8", "--experts-per-token", "2", "--router-noise", "0.02", ...BATCH, "--iters", String(Number(MOE_ITERS) / 2), "--lr", "3e-3", "--min-lr", "3e-4", "--seed", seed, "--out", upOut]];
    await parallel([dense, sparse]);
    await parallel([big, half]);
    await parallel([up]);
    rows.push([`dense, FFN 352 (seed ${seed})`, dense[0]], [`MoE 8×176, top-2 (seed ${seed})`, sparse[0]], [`dense, FFN 1408 = MoE total (seed ${seed})`, big[0]], [`upcycled: dense ${Number(MOE_ITERS) / 2} steps + MoE 8×352 top-2 ${Number(MOE_ITERS) / 2} steps (seed ${seed})`, upOut]);
  }
  console.log(`\nE5 mixture of experts — ${MOE_ITERS} steps each, held-out cross-entropy (nats/token); training and decode on one thread\n`);
  const fmt = (n: number): string => `${(n / 1e6).toFixed(2)}M`;
  table([
    ["model", "held-out loss | parameters total / active | train tok/s | decode tok/s"], ["---", "---: | ---: | ---: | ---:"],
    ...rows.map(([name, dir]): [string, string] => {
      const p = parameterCounts(dir);
      return [name, `${heldOutLoss(dir).toFixed(4)} | ${fmt(p.total)} / ${fmt(p.active)} | ${trainTokensPerSecond(dir)} | ${decodeTokensPerSecond(dir)}`];
    }),
  ]);
}

/** JSONL records' ids, in order. */
/** A JSONL file's records. */
const readJsonl = <T>(file: string): T[] => readFileSync(file, "utf8").split("\n").filter((l) => l.trim() !== "").map((l) => JSON.parse(l) as T);
const idsOf = (file: string): number[] => readJsonl<{ id: number }>(file).map((r) => r.id);
/** TRAIN's stories. */
const trainStories = (): string[] => readFileSync(TRAIN, "utf8").split("<|endoftext|>").map((x) => x.trim()).filter((x) => x !== "");

/** JSONL records as a training text: stories separated by <|endoftext|>, as TRAIN is. */
function storiesText(jsonl: string, out: string): void {
  const texts = readJsonl<{ text: string }>(jsonl).map((r) => r.text);
  writeFileSync(out, texts.join("\n<|endoftext|>\n") + "\n");
}

/**
 * E6: TinyStories' training stories with labelled noise mixed in (bench/noisy-corpus.ts) go
 * through `data filter` (every rule family, defaults; then again without Gopher's alpha-words
 * rule), `data dedup --exact` and `data dedup --minhash`. What each stage removed is scored
 * against the labels; then the E1 student shape is trained at equal steps (so equal tokens) on
 * the raw noisy corpus, on each cleaned one, and on the clean stories alone, and evaluated on the
 * clean held-out stories.
 */
async function dataPipeline(): Promise<void> {
  const dir = join(DIR, "e6");
  mkdirSync(dir, { recursive: true });
  const noisy = join(dir, "noisy.jsonl");
  const stories = trainStories();
  const docs = makeNoisyCorpus(stories, 1);
  if (!existsSync(noisy)) writeFileSync(noisy, docs.map((d, id) => JSON.stringify({ id, noise: d.noise, text: d.text })).join("\n") + "\n");
  const kindOf = new Map(docs.map((d, id) => [id, d.noise] as [number, NoiseKind]));
  const total = new Map<NoiseKind, number>(noiseKinds.map((k) => [k, 0]));
  for (const k of kindOf.values()) total.set(k, total.get(k)! + 1);
  const counts = (ids: number[]): string => noiseKinds.map((k) => String(ids.filter((id) => kindOf.get(id) === k).length)).join(" | ");
  const precision = (ids: number[]): string => (ids.length ? ((100 * ids.filter((id) => kindOf.get(id) !== "clean").length) / ids.length).toFixed(1) + "%" : "-");
  console.log(`\nE6 data pipeline — ${docs.length} documents: ${noiseKinds.map((k) => `${total.get(k)} ${k}`).join(", ")}`);
  // How near the near-duplicates are: the Jaccard similarity of their word 5-gram sets to the closest clean story before them.
  const shingles = (t: string): Set<string> => {
    const w = t.toLowerCase().split(/\s+/).filter(Boolean);
    return new Set(w.slice(0, Math.max(0, w.length - 4)).map((_, i) => w.slice(i, i + 5).join(" ")));
  };
  const jaccard = (a: Set<string>, b: Set<string>): number => [...a].filter((x) => b.has(x)).length / new Set([...a, ...b]).size;
  const near = docs.map((d, i) => [d, i] as const).filter(([d]) => d.noise === "near-duplicate").slice(0, 100);
  const sims = near.map(([d, i]) => {
    const sd = shingles(d.text);
    return Math.max(...docs.slice(0, i).filter((o) => o.noise === "clean").map((o) => jaccard(sd, shingles(o.text))));
  });
  sims.sort((a, b) => a - b);
  console.log(`near-duplicates' 5-gram Jaccard to their original (first 100): median ${sims[50].toFixed(2)}, 10th percentile ${sims[10].toFixed(2)}; 14 bands × 8 rows match a pair of Jaccard s with probability 1 − (1 − s^8)^14 (0.5: 5%, 0.7: 56%, 0.8: 92%)`);

  /** filter → dedup --exact → dedup --minhash into dir/NAME-*.jsonl; prints what each rule removed; returns the cleaned records. */
  const pipeline = (name: string, filterFlags: string[]): { id: number; text: string }[] => {
    const stages: [string, string[]][] = [
      [`filter ${filterFlags.join(" ") || "(defaults)"}`, ["data", "filter", ...filterFlags]],
      ["dedup --exact", ["data", "dedup", "--exact"]],
      ["dedup --minhash", ["data", "dedup", "--minhash"]],
    ];
    let input = noisy;
    console.log(`\n${name}:\n\n| stage / rule | removed | ${noiseKinds.join(" | ")} | noise among removed |`);
    console.log(`|---|---:|${noiseKinds.map(() => "---:").join("|")}|---:|`);
    const all: number[] = [];
    stages.forEach(([stage, args], k) => {
      const out = join(dir, `${name}-${k}.jsonl`), stats = join(dir, `${name}-${k}-stats.jsonl`);
      if (!existsSync(out)) bonsai([...args, input, "--out", out, "--stats", stats, "--quiet"]);
      // Stats name each removed document by its line in the stage's input.
      const lineToId = new Map<number, number>();
      readFileSync(input, "utf8").split("\n").forEach((l, i) => l.trim() !== "" && lineToId.set(i + 1, (JSON.parse(l) as { id: number }).id));
      const rules = new Map<string, number[]>();
      for (const st of readJsonl<{ line: number; rule: string }>(stats)) {
        rules.set(st.rule, [...(rules.get(st.rule) ?? []), lineToId.get(st.line)!]);
      }
      const kept = new Set(idsOf(out)), removed = idsOf(input).filter((id) => !kept.has(id));
      all.push(...removed);
      console.log(`| **${stage}** | ${removed.length} | ${counts(removed)} | ${precision(removed)} |`);
      if (rules.size > 1) for (const [rule, ids] of [...rules].sort((a, b) => b[1].length - a[1].length)) console.log(`| &nbsp; ${rule} | ${ids.length} | ${counts(ids)} | ${precision(ids)} |`);
      input = out;
    });
    console.log(`| **all stages** | ${all.length} | ${counts(all)} | ${precision(all)} |`);
    console.log(`| recall (share of each kind removed) | | ${noiseKinds.map((k) => `${((100 * all.filter((id) => kindOf.get(id) === k).length) / total.get(k)!).toFixed(1)}%`).join(" | ")} | |`);
    const records = readJsonl<{ id: number; text: string }>(input);
    // Boilerplate documents kept: C4's line rules may have cut their chrome off.
    const boiler = records.filter((r) => kindOf.get(r.id) === "boilerplate");
    const cut = boiler.filter((r) => stories.some((st) => st.trim() === r.text.trim())).length;
    console.log(`\nboilerplate documents kept: ${boiler.length}, ${cut} of them with every chrome line cut by C4's line rules`);
    storiesText(input, join(dir, `${name}.txt`));
    return records;
  };
  const cleaned = pipeline("cleaned", []);
  const lenient = pipeline("cleaned-no-alpha", ["--gopher-min-alpha-words-ratio", "off"]);

  // Training at equal steps and tokens on each corpus.
  const raw = join(dir, "raw.txt");
  storiesText(noisy, raw);
  const corpora: [string, string, number][] = [
    ["raw: stories + noise", raw, docs.length],
    ["filtered (defaults) + deduplicated", join(dir, "cleaned.txt"), cleaned.length],
    ["filtered without alpha-words + deduplicated", join(dir, "cleaned-no-alpha.txt"), lenient.length],
    ["the training stories without noise (an oracle)", TRAIN, stories.length],
  ];
  const names = ["raw", "cleaned", "cleaned-no-alpha", "stories"];
  // Each corpus with every seed (the first seed's directories keep their plain names).
  const runs = SEEDS.map((seed) => corpora.map(([, data], i): [string, string[]] => {
    const out = join(dir, `student-${names[i]}${seed === SEEDS[0] ? "" : `-s${seed}`}`);
    return [out, ["train", "--data", data, "--tokenizer", TOKENIZER, ...studentWithSeed(seed), ...BATCH, "--iters", STUDENT_ITERS, "--out", out]];
  }));
  for (const r of runs) {
    await parallel(r.slice(0, 2));
    await parallel(r.slice(2));
  }
  console.log(`\nE6 training — E1's student shape, ${STUDENT_ITERS} steps of ${BATCH[3]}×${BATCH[1]} tokens each (equal tokens), held-out loss on clean TinyStories\n`);
  table([
    ["training corpus", `documents | ${SEEDS.map((x) => `seed ${x}`).join(" | ")}`], ["---", `---: | ${SEEDS.map(() => "---:").join(" | ")}`],
    ...corpora.map(([name, , n], i): [string, string] => [name, `${n} | ${runs.map((r) => heldOutLoss(r[i][0]).toFixed(4)).join(" | ")}`]),
  ]);
}

/** The stderr of a command, run to completion (for the summaries the data steps print there). */
function bonsaiStderr(args: string[]): string {
  process.stderr.write(`$ bonsai ${args.join(" ")}\n`);
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: "utf8", stdio: ["ignore", "inherit", "pipe"], maxBuffer: 1 << 26 });
  process.stderr.write(r.stderr);
  if (r.status !== 0) throw new Error(`bonsai ${args.slice(0, 2).join(" ")} failed (exit ${r.status})`);
  return r.stderr;
}

/**
 * E7: E1's teacher (a base model) continues SYNTH_COUNT story openings (data synth's story-opening
 * template) in process, and the first 200 again through `bonsai serve`; students of E1's shape
 * are trained at equal steps on the synthetic stories, on as many real ones, and distilled from
 * the teacher on the synthetic ones; all evaluated on the real held-out stories.
 */
async function synthetic(): Promise<void> {
  const teacherDir = teacher();
  const dir = join(DIR, "e7");
  mkdirSync(dir, { recursive: true });
  const common = ["--template", "story-opening", "--max-tokens", "200", "--temperature", "0.8", "--seed", "7", "--concurrency", "8", "--quiet"];
  const synth = join(dir, "synth.jsonl");
  const inProcess = bonsaiStderr(["data", "synth", "--teacher", teacherDir, "--count", String(SYNTH_COUNT), "--threads", "2", ...common, "--out", synth]);
  // The same records through the server: a child `bonsai serve` on loopback.
  const served = join(dir, "synth-served.jsonl");
  const server = spawn(process.execPath, [CLI, "serve", "--model", teacherDir, "--port", "0", "--parallel", "8", "--threads", "2", "--model-name", "teacher"], { stdio: ["ignore", "ignore", "pipe"] });
  const url = await new Promise<string>((resolve, reject) => {
    let err = "";
    server.stderr!.on("data", (d: Buffer) => {
      err += d;
      const m = /listening on (http:\/\/\S+)/.exec(err);
      if (m) resolve(m[1]);
    });
    server.on("exit", (code) => reject(new Error(`bonsai serve exited ${code}: ${err}`)));
  });
  let throughServer: string;
  try {
    throughServer = bonsaiStderr(["data", "synth", "--endpoint", `${url}/v1`, "--model", "teacher", "--api", "completions", "--count", "200", ...common, "--out", served]);
  } finally {
    server.kill("SIGTERM");
  }
  const texts = (f: string): Map<number, string> => new Map(readJsonl<{ id: number; text: string }>(f).map((r) => [r.id, r.text]));
  const mine = texts(synth), theirs = texts(served);
  const same = [...theirs].filter(([id, t]) => mine.get(id) === t).length;
  const synthText = join(dir, "synth.txt"), realText = join(dir, "real.txt");
  storiesText(synth, synthText);
  const stories = trainStories();
  writeFileSync(realText, stories.slice(0, mine.size).join("\n<|endoftext|>\n") + "\n");
  const student = (name: string, seed: string, cmd: string, data: string, extra: string[]): [string, string[]] => {
    const out = join(dir, `${name}${seed === SEEDS[0] ? "" : `-s${seed}`}`);
    return [out, [cmd, ...(cmd === "distill" ? ["--teacher", teacherDir] : ["--tokenizer", TOKENIZER]), "--data", data, ...studentWithSeed(seed), ...BATCH, "--iters", STUDENT_ITERS, ...extra, "--out", out]];
  };
  const runs = SEEDS.map((seed) => [
    student("student-real", seed, "train", realText, []),
    student("student-synth", seed, "train", synthText, []),
    student("student-synth-kd", seed, "distill", synthText, FORWARD_KL),
  ]);
  for (const [real, synthetic, distilled] of runs) {
    await parallel([synthetic, real]);
    await parallel([distilled]);
  }
  const line = (s: string): string => s.split("\n").filter((l) => l.startsWith("bonsai data synth")).pop() ?? "";
  console.log(`\nE7 synthetic data — ${mine.size} stories continued by E1's teacher from story openings (temperature 0.8, at most 200 tokens)`);
  console.log(`in process: ${line(inProcess)}`);
  console.log(`through bonsai serve: ${line(throughServer)}; ${same} of ${theirs.size} records identical to the in-process ones\n`);
  const losses = (k: number): string => runs.map((r) => heldOutLoss(r[k][0]).toFixed(4)).join(" | ");
  table([
    ["student (E1's shape, 600 steps): held-out loss on real stories", SEEDS.map((x) => `seed ${x}`).join(" | ")], ["---", SEEDS.map(() => "---:").join(" | ")],
    [`${mine.size} real stories`, losses(0)],
    [`${mine.size} synthetic stories`, losses(1)],
    [`${mine.size} synthetic stories, distilled (forward KL α=0.5 τ=2)`, losses(2)],
    ["for reference: the teacher", heldOutLoss(teacherDir).toFixed(4)],
  ]);
}

const experiments: Record<string, () => void | Promise<void>> = { distill: distillation, curriculum, qat: quantizationAware, spec: speculative, moe: mixtureOfExperts, data: dataPipeline, synth: synthetic };
const which = process.argv[2] ?? "";
if (!(which in experiments)) {
  console.error(`usage: node dist/bench/experiments.js ${Object.keys(experiments).join("|")}`);
  process.exit(2);
}
// Every model runs in the CLI with its default kernels (auto), which this header resolves too.
console.log(await benchHeader());
setUp();
await experiments[which]();
