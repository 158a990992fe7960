// The training experiments of docs/experiments.md, each one command that runs the CLI exactly as a
// user would, on TinyStories (../shared/data/corpora/tinystories-2MiB.txt):
//   npm run exp:distill      E1: a teacher, a student from scratch and distilled students
//   npm run exp:curriculum   E2: curriculum vs uniform sampling at equal steps
//   npm run exp:qat          E3: F32 vs post-training Q4_0 vs Q4_0 quantization-aware fine-tuning
// Shared set-up (runs/exp/): the stories split on <|endoftext|> (the last, cut story dropped), the
// last 10% of stories held out; a 1024-token byte-level BPE trained on the rest; the teacher.
// A finished step is not redone (its output directory is kept), so a second run only prints the
// table; delete runs/exp to start over. Every held-out loss is `bonsai eval --split all` on the
// held-out stories: nats per token.
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const CORPUS = "../shared/data/corpora/tinystories-2MiB.txt";
const DIR = "runs/exp";
const CLI = fileURLToPath(new URL("../src/cli/main.js", import.meta.url));
const TRAIN = join(DIR, "train.txt"), HELDOUT = join(DIR, "heldout.txt"), TOKENIZER = join(DIR, "tok1024.json");

/** Optimizer and data flags shared by every student run: only the objective differs. */
const BATCH = ["--block-size", "128", "--batch-size", "16", "--warmup", "50", "--eval-interval", "200", "--eval-iters", "10", "--log-interval", "50", "--threads", "1"];
const STUDENT = ["--layers", "3", "--dim", "128", "--heads", "4", "--kv-heads", "2", "--tie-embeddings", "--lr", "3e-3", "--min-lr", "3e-4", "--seed", "2"];
const STUDENT_ITERS = "600";
const TEACHER = ["--layers", "4", "--dim", "256", "--heads", "8", "--kv-heads", "4", "--tie-embeddings", "--lr", "2e-3", "--min-lr", "2e-4", "--seed", "1", "--iters", "600"];

function bonsai(args: string[]): string {
  process.stderr.write(`$ bonsai ${args.join(" ")}\n`);
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: "utf8", stdio: ["ignore", "pipe", "inherit"], maxBuffer: 1 << 26 });
  if (r.status !== 0) throw new Error(`bonsai ${args[0]} failed (exit ${r.status})`);
  return r.stdout;
}

/** Run a command that writes `out` unless `out` already holds its finished result. */
function once(out: string, args: string[]): void {
  if (existsSync(join(out, "model.safetensors")) || (out.endsWith(".gguf") && existsSync(out))) {
    process.stderr.write(`(kept ${out})\n`);
    return;
  }
  bonsai(args);
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
  once(join(DIR, "teacher"), ["train", "--data", TRAIN, "--tokenizer", TOKENIZER, ...TEACHER, ...BATCH, "--out", join(DIR, "teacher")]);
}

const table = (rows: [string, string][]): void => {
  const w = Math.max(...rows.map((r) => r[0].length));
  for (const [a, b] of rows) console.log(`| ${a.padEnd(w)} | ${b} |`);
};

function distillation(): void {
  const teacher = join(DIR, "teacher");
  once(join(DIR, "scratch"), ["train", "--data", TRAIN, "--tokenizer", TOKENIZER, ...STUDENT, ...BATCH, "--iters", STUDENT_ITERS, "--out", join(DIR, "scratch")]);
  const kd = (name: string, extra: string[]): string => {
    const out = join(DIR, name);
    once(out, ["distill", "--teacher", teacher, "--data", TRAIN, ...STUDENT, ...BATCH, "--iters", STUDENT_ITERS, ...extra, "--out", out]);
    return out;
  };
  const runs: [string, string][] = [
    ["teacher (3.2M parameters)", teacher],
    ["student from scratch", join(DIR, "scratch")],
    ["student, forward-kl α=0.5 τ=2", kd("kd-forward", ["--kd-loss", "forward-kl", "--alpha", "0.5", "--temperature", "2"])],
    ["student, reverse-kl α=0.5 τ=1", kd("kd-reverse", ["--kd-loss", "reverse-kl", "--alpha", "0.5", "--temperature", "1"])],
    ["student, jsd β=0.5 α=0.5 τ=1", kd("kd-jsd", ["--kd-loss", "jsd", "--beta", "0.5", "--alpha", "0.5", "--temperature", "1"])],
  ];
  console.log("\nE1 distillation — held-out cross-entropy (nats/token)\n");
  table([["run", "held-out loss"], ["---", "---"], ...runs.map(([n, d]): [string, string] => [n, heldOutLoss(d).toFixed(4)])]);
}

const experiments: Record<string, () => void> = { distill: distillation };
const which = process.argv[2] ?? "";
if (!(which in experiments)) {
  console.error(`usage: node dist/bench/experiments.js ${Object.keys(experiments).join("|")}`);
  process.exit(2);
}
setUp();
experiments[which]();
