// nanoGPT's CPU "baby" configuration trained by Bonsai (its default threads and kernels) and by a
// PyTorch implementation of the same Llama model and hyper-parameters (bench/torch_train_baby.py)
// at 1 and at 2 threads, one after the other in this process tree, on the same data. The figure:
// wall time until an evaluation's validation loss reaches nanoGPT's final 1.886 (evaluations
// included, from the start of the training loop), Bonsai ÷ the faster PyTorch.
// Run: npm run bench:train [-- --iters N --target X --data FILE --threads N --kernels K]
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { availableParallelism, tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import type { KernelChoice } from "../src/backend/wasm/kernel-flavour.js";
import { benchHeader } from "./machine.js";

const { values } = parseArgs({
  options: {
    iters: { type: "string", default: "2000" },
    target: { type: "string", default: "1.886" },
    data: { type: "string", default: "../shared/data/corpora/tinyshakespeare.txt" },
    threads: { type: "string", default: String(availableParallelism()) },
    kernels: { type: "string", default: "auto" },
  },
});
const iters = values.iters!, data = values.data!, target = Number(values.target);
if (!existsSync(data)) {
  console.error(`bench:train: ${data} not found (the shared data folder holds tinyshakespeare.txt)`);
  process.exit(1);
}
const cli = fileURLToPath(new URL("../src/cli/main.js", import.meta.url));
const torchScript = fileURLToPath(new URL("../../bench/torch_train_baby.py", import.meta.url));
const out = mkdtempSync(join(tmpdir(), "bonsai-bench-train-"));

const trainArgs = [
  "train", "--data", data, "--tokenizer", "char", "--layers", "4", "--heads", "4", "--kv-heads", "4", "--dim", "128",
  "--block-size", "64", "--batch-size", "12", "--iters", iters, "--lr", "1e-3", "--min-lr", "1e-4", "--warmup", "100",
  "--weight-decay", "0.1", "--beta2", "0.99", "--grad-clip", "1.0", "--dropout", "0", "--eval-interval", "250",
  "--eval-iters", "20", "--seed", "1337", "--out", join(out, "model"), "--threads", values.threads!, "--kernels", values.kernels!,
];

interface Run {
  name: string;
  /** Seconds from the start of the training loop to the first evaluation at or under the target. */
  toTarget: number | null;
  atIter: number | null;
  msPerStep: number;
  finalVal: number;
  fullVal: number;
}

function run(cmd: string, args: string[]): { stdout: string; stderr: string } {
  const r = spawnSync(cmd, args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"], maxBuffer: 64 << 20 });
  if (r.status !== 0) throw new Error(`${cmd} ${args.slice(0, 2).join(" ")} failed:\n${r.stderr}`);
  return { stdout: r.stdout, stderr: r.stderr };
}

function reached(evals: { iter: number; val: number; elapsed: number }[]): { toTarget: number | null; atIter: number | null } {
  const hit = evals.find((e) => e.val <= target);
  return { toTarget: hit?.elapsed ?? null, atIter: hit?.iter ?? null };
}

console.log(await benchHeader(values.kernels as KernelChoice));
console.log(`baby config, ${iters} iterations, ${data}; target val loss ${target}`);
console.log(`training with Bonsai (--threads ${values.threads} --kernels ${values.kernels}) ...`);
run(process.execPath, [cli, ...trainArgs]);
const metrics = readFileSync(join(out, "model", "metrics.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l));
const stepMs = metrics.filter((m) => m.ms !== undefined).map((m) => m.ms as number);
const bonsaiEvals = metrics.filter((m) => m.val_loss !== undefined).map((m) => ({ iter: m.iter as number, val: m.val_loss as number, elapsed: m.elapsed_s as number }));
const runs: Run[] = [{
  name: `Bonsai, ${values.threads} thr`,
  ...reached(bonsaiEvals),
  msPerStep: stepMs.reduce((a, b) => a + b, 0) / stepMs.length,
  finalVal: bonsaiEvals[bonsaiEvals.length - 1].val,
  fullVal: Number(run(process.execPath, [cli, "eval", "--model", join(out, "model"), "--data", data, "--split", "val"]).stdout.trim().split(" ").pop()),
}];

const probe = spawnSync("/usr/bin/python3", ["-c", "import torch"]);
if (probe.status === 0)
  for (const threads of [1, 2]) {
    console.log(`training with PyTorch (${threads} thread${threads > 1 ? "s" : ""}) ...`);
    const t = JSON.parse(run("/usr/bin/python3", [torchScript, "--data", data, "--iters", iters, "--threads", String(threads)]).stdout.trim().split("\n").pop()!);
    const evals = (t.evals as { iter: number; val: number; elapsed_s: number }[]).map((e) => ({ iter: e.iter, val: e.val, elapsed: e.elapsed_s }));
    runs.push({ name: `PyTorch, ${threads} thr`, ...reached(evals), msPerStep: t.ms_per_iter, finalVal: t.final_val_loss, fullVal: t.full_val_loss });
  }
else console.log("PyTorch not found under /usr/bin/python3 (apt-get install python3-torch libopenblas0-pthread): Bonsai only");

const f = (x: number | null, d: number, w: number): string => (x === null ? "—" : x.toFixed(d)).padStart(w);
console.log(`\n${"".padEnd(18)}${"s to target*".padStart(14)}${"at step".padStart(9)}${"ms/step**".padStart(11)}${"val (20)".padStart(10)}${"val (full)".padStart(11)}`);
for (const r of runs) console.log(`${r.name.padEnd(18)}${f(r.toTarget, 1, 14)}${f(r.atIter, 0, 9)}${f(r.msPerStep, 1, 11)}${f(r.finalVal, 4, 10)}${f(r.fullVal, 4, 11)}`);
const torchBest = runs.slice(1).filter((r) => r.toTarget !== null).sort((a, b) => a.toTarget! - b.toTarget!)[0];
if (torchBest && runs[0].toTarget !== null)
  console.log(`\nBonsai ÷ ${torchBest.name}: ${(runs[0].toTarget / torchBest.toTarget!).toFixed(2)}× the wall time to val ≤ ${target}, ${(runs[0].msPerStep / torchBest.msPerStep).toFixed(2)}× the time per step`);
console.log("*  from the start of the training loop to the first evaluation (every 250 steps, 20 batches per split) at or under the target");
console.log("** mean time of a training step (forward, backward, clip, AdamW), evaluations excluded");
rmSync(out, { recursive: true, force: true });
