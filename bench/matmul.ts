// Matmul throughput of the wasm backend (one thread), both builds of its kernels (SIMD128 and
// relaxed SIMD, where the engine has it), next to PyTorch's on the same shapes measured in the same
// run (bench/torch_matmul.py under /usr/bin/python3, torch.set_num_threads(1)).
// Run: npm run bench:matmul
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { createWasmBackend } from "../src/backend/wasm/wasm-backend.js";
import { relaxedSimdAvailable, type KernelFlavour } from "../src/backend/wasm/kernel-flavour.js";
import { benchHeader } from "./machine.js";

interface Shape {
  label: string;
  m: number;
  n: number;
  k: number;
  transA: boolean;
  transB: boolean;
}

const sq = (s: number): Shape => ({ label: `${s}³`, m: s, n: s, k: s, transA: false, transB: false });
const shapes: Shape[] = [
  sq(512),
  sq(128),
  sq(1024),
  // The baby training model (rows = batch·seq = 768, dim 128, MLP 352, vocab 65).
  { label: "qkv x·Wᵀ", m: 768, n: 384, k: 128, transA: false, transB: true },
  { label: "up x·Wᵀ", m: 768, n: 352, k: 128, transA: false, transB: true },
  { label: "down x·Wᵀ", m: 768, n: 128, k: 352, transA: false, transB: true },
  { label: "logits x·Wᵀ", m: 768, n: 65, k: 128, transA: false, transB: true },
  { label: "dW dYᵀ·X", m: 128, n: 352, k: 768, transA: true, transB: false },
  { label: "dX dY·W", m: 768, n: 128, k: 352, transA: false, transB: false },
  // Decode: one token through a projection (matrix-vector).
  { label: "decode x·Wᵀ", m: 1, n: 384, k: 128, transA: false, transB: true },
  { label: "decode x·Wᵀ", m: 1, n: 4096, k: 1024, transA: false, transB: true },
];

const SAMPLES = 9;
const MIN_BATCH_MS = 20;

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[s.length >> 1];
}

async function benchWasm(kernels: KernelFlavour): Promise<number[]> {
  const be = await createWasmBackend({ kernels });
  const out: number[] = [];
  for (const s of shapes) {
    const a = be.alloc(s.m * s.k), b = be.alloc(s.k * s.n), c = be.alloc(s.m * s.n);
    const fill = (n: number) => Float32Array.from({ length: n }, () => Math.random() * 2 - 1);
    be.write(a, fill(s.m * s.k));
    be.write(b, fill(s.k * s.n));
    const run = () => be.matmul(c, a, b, s.m, s.n, s.k, s.transA, s.transB, false);
    // Warm up (lets V8 tier the kernels up to optimized code) and size a batch.
    let reps = 1;
    for (;;) {
      const t0 = performance.now();
      for (let i = 0; i < reps; i++) run();
      if (performance.now() - t0 >= MIN_BATCH_MS) break;
      reps *= 2;
    }
    const times: number[] = [];
    for (let i = 0; i < SAMPLES; i++) {
      const t0 = performance.now();
      for (let r = 0; r < reps; r++) run();
      times.push((performance.now() - t0) / 1000 / reps);
    }
    out.push((2 * s.m * s.n * s.k) / median(times) / 1e9);
    be.free(a);
    be.free(b);
    be.free(c);
  }
  return out;
}

function benchTorch(): { version: string; gflops: number[] } | string {
  const python = "/usr/bin/python3";
  const probe = spawnSync(python, ["-c", "import torch"], { encoding: "utf8" });
  if (probe.error !== undefined || probe.status !== 0)
    return `PyTorch not available to ${python} (${probe.error?.message ?? probe.stderr.trim().split("\n").pop()}); showing wasm only.`;
  const script = fileURLToPath(new URL("../../bench/torch_matmul.py", import.meta.url));
  const res = spawnSync(python, [script], {
    input: JSON.stringify(shapes.map(({ m, n, k, transA, transB }) => ({ m, n, k, transA, transB }))),
    encoding: "utf8",
    maxBuffer: 1 << 20,
  });
  if (res.status !== 0) return `bench/torch_matmul.py failed: ${res.stderr.trim()}`;
  const parsed = JSON.parse(res.stdout) as { torch: string; results: { gflops: number }[] };
  return { version: parsed.torch, gflops: parsed.results.map((r) => r.gflops) };
}

const flavours: KernelFlavour[] = (await relaxedSimdAvailable()) ? ["simd", "relaxed"] : ["simd"];
const wasm = new Map<KernelFlavour, number[]>();
for (const f of flavours) wasm.set(f, await benchWasm(f));
const torch = benchTorch();

const pad = (s: string, n: number) => s.padEnd(n);
const num = (x: number) => x.toFixed(1).padStart(9);
const op = (s: Shape) => (s.transA ? "T" : "N") + (s.transB ? "T" : "N");
console.log(await benchHeader());
console.log(`matmul GFLOP/s, one thread, median of ${SAMPLES} batches of >= ${MIN_BATCH_MS} ms`);
if (typeof torch === "string") console.log(`note: ${torch}`);
else console.log(`torch ${torch.version}, torch.set_num_threads(1)`);
let head = `${pad("shape", 14)}${pad("M x N x K", 20)}op ${flavours.map((f) => f.padStart(9)).join("")}`;
if (typeof torch !== "string") head += `${"torch".padStart(9)}${flavours.map((f) => `${f}/torch`.padStart(14)).join("")}`;
console.log(head);
shapes.forEach((s, i) => {
  let line = `${pad(s.label, 14)}${pad(`${s.m} x ${s.n} x ${s.k}`, 20)}${op(s)} ${flavours.map((f) => num(wasm.get(f)![i])).join("")}`;
  if (typeof torch !== "string") line += `${num(torch.gflops[i])}${flavours.map((f) => (wasm.get(f)![i] / torch.gflops[i]).toFixed(2).padStart(14)).join("")}`;
  console.log(line);
});
