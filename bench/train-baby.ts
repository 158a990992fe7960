// nanoGPT's CPU "baby" configuration trained by Bonsai and by a PyTorch implementation of the same
// Llama model and hyper-parameters (bench/torch_train_baby.py), one after the other in this
// process tree, on the same data. Prints wall times, their ratio and the validation losses.
// Run: npm run bench:train [-- --iters N --data FILE --backend wasm|js]
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

const { values } = parseArgs({
  options: { iters: { type: "string", default: "2000" }, data: { type: "string", default: "../shared/data/corpora/tinyshakespeare.txt" }, backend: { type: "string", default: "wasm" } },
});
const iters = values.iters!, data = values.data!;
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
  "--eval-iters", "20", "--seed", "1337", "--out", join(out, "model"), "--backend", values.backend!,
];

function timed(cmd: string, args: string[]): { seconds: number; stdout: string; stderr: string } {
  const t0 = performance.now();
  const r = spawnSync(cmd, args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"], maxBuffer: 64 << 20 });
  const seconds = (performance.now() - t0) / 1000;
  if (r.status !== 0) throw new Error(`${cmd} ${args.slice(0, 2).join(" ")} failed:\n${r.stderr}`);
  return { seconds, stdout: r.stdout, stderr: r.stderr };
}

console.log(`baby config, ${iters} iterations, ${data}`);
console.log("training with Bonsai ...");
const bonsai = timed(process.execPath, [cli, ...trainArgs]);
const lastEval = [...bonsai.stderr.matchAll(/step (\d+): train loss ([\d.]+), val loss ([\d.]+)/g)].pop()!;
const stepMs = readFileSync(join(out, "model", "metrics.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l)).filter((m) => m.ms !== undefined).map((m) => m.ms as number);
const bonsaiMsPerIter = stepMs.reduce((a, b) => a + b, 0) / stepMs.length;
const fullVal = Number(timed(process.execPath, [cli, "eval", "--model", join(out, "model"), "--data", data, "--split", "val"]).stdout.trim().split(" ").pop());

let torch: { wall_s: number; ms_per_iter: number; final_val_loss: number; full_val_loss: number } | null = null;
const probe = spawnSync("/usr/bin/python3", ["-c", "import torch"]);
if (probe.status === 0) {
  console.log("training with PyTorch (1 thread) ...");
  torch = JSON.parse(timed("/usr/bin/python3", [torchScript, "--data", data, "--iters", iters, "--threads", "1"]).stdout.trim().split("\n").pop()!);
} else console.log("PyTorch not found under /usr/bin/python3 (apt-get install python3-torch libopenblas0-openmp): Bonsai only");

const row = (name: string, wall: number, ms: number, val: number, full: number): string =>
  `${name.padEnd(14)} ${wall.toFixed(1).padStart(8)} ${ms.toFixed(1).padStart(12)} ${val.toFixed(4).padStart(10)} ${full.toFixed(4).padStart(10)}`;
console.log(`\n${"".padEnd(14)} ${"wall s*".padStart(8)} ${"ms/step**".padStart(12)} ${"val (20)".padStart(10)} ${"val (full)".padStart(10)}`);
console.log(row(`Bonsai ${values.backend}`, bonsai.seconds, bonsaiMsPerIter, Number(lastEval[3]), fullVal));
if (torch) {
  console.log(row("PyTorch", torch.wall_s, torch.ms_per_iter, torch.final_val_loss, torch.full_val_loss));
  console.log(`\nBonsai ÷ PyTorch: ${(bonsaiMsPerIter / torch.ms_per_iter).toFixed(2)}× time per training step, ${(bonsai.seconds / torch.wall_s).toFixed(2)}× wall time`);
}
console.log("*  whole process: start-up, data, evaluations (PyTorch's includes its full-val pass)");
console.log("** mean time of a training step (forward, backward, clip, AdamW)");
rmSync(out, { recursive: true, force: true });
