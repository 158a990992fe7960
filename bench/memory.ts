// Memory of loading and generating: peak RSS of a child process per case (the kernel's high-water
// mark, VmHWM, so no transient peak is missed) after creating the wasm
// backend (the baseline: Node + backend), after opening the model, after the first token, after
// 64 and after 256 greedy tokens, against the file's size and its weight bytes. The memory goal is
// read after 64 tokens, lazy and fused (`bonsai generate`'s default): (peak − baseline) ÷ weight
// bytes ≤ 1.3 for the stories15M shape at F32, Q8_0 and Q4_0. Each GGUF runs eagerly (every
// tensor read at open) and lazily (loadModel {lazy: true}: header at open, each layer's tensors on
// first use, straight into wasm memory), fused (as `bonsai generate` runs) and unfused, with
// Q8_0/Q4_0 matrices kept quantized (generate's default).
// Models: stories260K (../shared/data; skipped with a message when absent) exported to GGUF, and a
// random-weight model of llama2.c's stories15M shape (dim 288, 6 layers, 6 heads, vocab 32000),
// each at F32, Q8_0 and Q4_0.
// Expert paging (--expert-cache-mb): a random-weight MoE of the stories15M shape with 8 experts of
// 768 per layer, 2 per token (43M weights, three quarters of them experts), at F32 and Q8_0, runs
// with every expert resident and with budgets of 4 and 2 of each layer's 8 experts: peak RSS
// against the budget, the cache's hit rate and decode speed. Its tokens are a fixed pseudo-random
// sequence fed one at a time (a random model's greedy text repeats itself, which would flatter the
// cache); a trained router's choices repeat more than a random one's, so these hit rates are a floor.
// Run: npm run bench:memory [-- --model NAME] [--quant F32|Q8_0|Q4_0] [--load lazy|eager] [--fuse fused|unfused]
// (each flag keeps the cases whose label contains NAME, or that quant / load / fuse; --model moe
// runs the paging table alone).
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import * as os from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { createBackend } from "../src/backend/index.js";
import { JsBackend } from "../src/backend/js/js-backend.js";
import { loadModel } from "../src/io/model-files-node.js";
import { modelTensors } from "../src/io/checkpoint.js";
import { GgufFile, type GgufQuant, llamaToGguf } from "../src/io/gguf-llama.js";
import { tensorByteSize } from "../src/format/gguf.js";
import { FileSource } from "../src/io/byte-source-node.js";
import { Llama } from "../src/nn/llama.js";
import { normalizeConfig } from "../src/nn/config.js";
import { Session } from "../src/runtime/session.js";
import { argmax } from "../src/runtime/sample.js";
import { stories15MShape } from "./shapes.js";

const DATA = "../shared/data";
const N = 256; // greedy tokens generated from BOS
const GOAL_TOKENS = 64; // the memory goal is read here
const MiB = 1 << 20;

interface Measured {
  base: number; // peak RSS, bytes, after creating the backend
  open: number; // … after loadModel
  first: number; // … after the first generated token
  goal: number; // … after GOAL_TOKENS tokens
  gen: number; // … after N tokens
  loadSeconds: number; // loadModel
  firstSeconds: number; // loadModel to the first token (a lazy model reads its weights here)
  decodeSeconds: number; // the N − 1 decode steps
  cache: { slots: number; hits: number; misses: number } | null; // paged experts
}

// ---- child: one case ----------------------------------------------------------------------------

/**
 * Peak RSS in bytes: Linux's VmHWM (this process's high-water mark). Not getrusage's maxRSS,
 * which a child inherits from the parent it was forked from (ours builds the model files).
 */
function peak(): number {
  const hwm = existsSync("/proc/self/status") ? /VmHWM:\s+(\d+) kB/.exec(readFileSync("/proc/self/status", "utf8")) : null;
  return hwm ? Number(hwm[1]) * 1024 : process.resourceUsage().maxRSS * 1024;
}

/**
 * One case: load (paging experts within `expertCacheBytes` when given), then N tokens from BOS,
 * each the previous one's argmax, or with `fixedTokens` a fixed pseudo-random sequence.
 */
async function worker(path: string, lazy: boolean, fuse: boolean, expertCacheBytes?: number, fixedTokens = false): Promise<void> {
  const backend = await createBackend("wasm");
  const m: Measured = { base: peak(), open: 0, first: 0, goal: 0, gen: 0, loadSeconds: 0, firstSeconds: 0, decodeSeconds: 0, cache: null };
  const t0 = performance.now();
  const { model } = loadModel(path, backend, undefined, { quantized: true, fuse, lazy, expertCacheBytes });
  m.loadSeconds = (performance.now() - t0) / 1000;
  m.open = peak();
  const session = new Session(model, { maxSeq: N + 1, reuseLogits: true }); // as generateTokens runs it
  let seed = 12345;
  const next = (logits: Parameters<typeof argmax>[0]): number => (fixedTokens ? (seed = (seed * 1103515245 + 12345) % 2 ** 31) % model.config.vocab_size : argmax(logits));
  let tok = next(await session.prefill([model.config.bos_token_id ?? 1]));
  m.firstSeconds = (performance.now() - t0) / 1000;
  m.first = peak();
  const t1 = performance.now();
  for (let i = 1; i < N; i++) {
    tok = next(await session.decode(tok));
    if (i + 1 === GOAL_TOKENS) m.goal = peak(); // i + 1 tokens generated: the prefill's and i decodes'
  }
  m.decodeSeconds = (performance.now() - t1) / 1000;
  m.gen = peak();
  const caches = [...model.expertCaches.values()];
  if (caches.length > 0) m.cache = { slots: caches[0].slots, hits: caches.reduce((s, c) => s + c.counts.hits, 0), misses: caches.reduce((s, c) => s + c.counts.misses, 0) };
  process.stdout.write(JSON.stringify(m) + "\n");
}

function runCase(path: string, lazy: boolean, fuse: boolean, expertCacheBytes?: number, fixedTokens = false): Measured {
  const args = [fileURLToPath(import.meta.url), "--worker", path, lazy ? "lazy" : "eager", fuse ? "fuse" : "no-fuse", String(expertCacheBytes ?? "all"), fixedTokens ? "fixed" : "argmax"];
  const r = spawnSync(process.execPath, args, { encoding: "utf8", stdio: ["ignore", "pipe", "inherit"] });
  if (r.status !== 0) throw new Error(`memory worker for ${path} failed (status ${r.status})`);
  return JSON.parse(r.stdout.trim().split("\n").pop()!) as Measured;
}

// ---- parent -------------------------------------------------------------------------------------

interface ModelFile {
  label: string;
  quant: string;
  path: string;
}

async function buildModels(dir: string): Promise<ModelFile[]> {
  const js = new JsBackend("f32");
  const files: ModelFile[] = [];
  const write = async (label: string, name: string, model: Llama): Promise<void> => {
    const tensors = await modelTensors(model);
    for (const quant of ["f32", "q8_0", "q4_0"] as GgufQuant[]) {
      const path = join(dir, `${name}-${quant}.gguf`);
      writeFileSync(path, llamaToGguf(model.config, tensors, quant, { name }));
      files.push({ label, quant: quant.toUpperCase(), path });
    }
  };
  const stories = `${DATA}/models/stories260K.bin`;
  if (existsSync(stories)) await write("stories260K", "stories260K", loadModel(stories, js).model);
  else console.log(`bench:memory: ${stories} is absent; stories260K skipped`);
  const config = normalizeConfig(stories15MShape({ vocabSize: 32000, maxPositions: 512, tied: true }));
  await write("stories15M-shape (random)", "stories15M-shape", Llama.init(js, config, 15));
  return files;
}

/** Bytes of the file's tensors (all of them are the model's weights here). */
function weightBytes(path: string): number {
  const src = new FileSource(path);
  try {
    return GgufFile.open(src).header.tensors.reduce((s, t) => s + tensorByteSize(t), 0);
  } finally {
    src.close();
  }
}

/** The MoE of the paging table, at F32 and Q8_0 (see the header). */
async function buildMoeModels(dir: string): Promise<ModelFile[]> {
  const config = { ...normalizeConfig(stories15MShape({ vocabSize: 32000, maxPositions: 512, tied: true })), num_local_experts: 8, num_experts_per_tok: 2 };
  const label = "stories15M-shape MoE 8×768 top-2 (random)";
  const tensors = await modelTensors(Llama.init(new JsBackend("f32"), config, 15));
  return (["f32", "q8_0"] as GgufQuant[]).map((quant) => {
    const path = join(dir, `moe-${quant}.gguf`);
    writeFileSync(path, llamaToGguf(config, tensors, quant, { name: "moe" }));
    return { label, quant: quant.toUpperCase(), path };
  });
}

/** Every expert resident, then budgets of half and a quarter of the experts: lazy and fused, as `bonsai generate --expert-cache-mb` runs. */
function pagingTable(files: ModelFile[]): void {
  console.log(
    `\nExpert paging (--expert-cache-mb) — ${N} tokens of a fixed pseudo-random sequence, one per step; lazy, fused. ` +
      `Δ = peak − baseline after the ${N} tokens; Δ − rest = Δ less the non-expert weights (the resident experts, KV cache and buffers).\n`,
  );
  console.log("| model | quant | weights MiB | experts MiB | expert budget MiB | slots per layer | Δ peak MiB | Δ − rest MiB | hit rate | decode tok/s |");
  console.log("|---|---|---|---|---|---|---|---|---|---|");
  for (const f of files) {
    const src = new FileSource(f.path);
    const tensors = GgufFile.open(src).header.tensors;
    src.close();
    const w = tensors.reduce((s, t) => s + tensorByteSize(t), 0), experts = tensors.filter((t) => t.name.includes("_exps")).reduce((s, t) => s + tensorByteSize(t), 0);
    for (const budget of [undefined, experts / 2, experts / 4]) {
      const m = runCase(f.path, true, true, budget, true);
      const mib = (x: number): string => (x / MiB).toFixed(1);
      const c = m.cache;
      console.log(
        `| ${f.label} | ${f.quant} | ${mib(w)} | ${mib(experts)} | ${budget === undefined ? "all" : mib(budget)} | ${c ? c.slots : 8} of 8 | ${mib(m.gen - m.base)} | ${mib(m.gen - m.base - (w - experts))} | ` +
          `${c ? ((100 * c.hits) / (c.hits + c.misses)).toFixed(1) + "%" : "-"} | ${((N - 1) / m.decodeSeconds).toFixed(1)} |`,
      );
    }
  }
}

async function main(): Promise<void> {
  const { values: only } = parseArgs({ options: { model: { type: "string" }, quant: { type: "string" }, load: { type: "string" }, fuse: { type: "string" } } });
  only.quant = only.quant?.toUpperCase();
  const dir = mkdtempSync(join(os.tmpdir(), "bonsai-memory-"));
  const goal: string[] = [];
  try {
    const files = (await buildModels(dir)).filter((f) => (only.model === undefined || f.label.includes(only.model)) && (only.quant === undefined || f.quant === only.quant));
    console.log(
      `bench:memory — peak RSS (VmHWM) of a child process per case: wasm backend, 1 thread, Q8_0/Q4_0 kept quantized; ` +
        `${N} greedy tokens from BOS (KV cache of ${N + 1} positions). Δ = peak − baseline (Node + backend); ÷ W = Δ ÷ weight bytes.\n`,
    );
    console.log(`| model | quant | file MiB | weights MiB | load | fuse | baseline MiB | Δ open MiB | Δ first token MiB | Δ ${GOAL_TOKENS} tokens MiB | Δ ${N} tokens MiB | ÷ W open | ÷ W first | ÷ W ${GOAL_TOKENS} | ÷ W ${N} | load s | to first token s |`);
    console.log("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for (const f of files) {
      const size = statSync(f.path).size, w = weightBytes(f.path);
      for (const fuse of [true, false])
        for (const lazy of [false, true]) {
          if ((only.load !== undefined && only.load !== (lazy ? "lazy" : "eager")) || (only.fuse !== undefined && only.fuse !== (fuse ? "fused" : "unfused"))) continue;
          const m = runCase(f.path, lazy, fuse);
          const d = (x: number): number => x - m.base;
          const mib = (x: number): string => (x / MiB).toFixed(1);
          const ratio = (x: number): string => (d(x) / w).toFixed(2);
          console.log(
            `| ${f.label} | ${f.quant} | ${mib(size)} | ${mib(w)} | ${lazy ? "lazy" : "eager"} | ${fuse ? "fused" : "unfused"} | ${mib(m.base)} | ${mib(d(m.open))} | ${mib(d(m.first))} | ${mib(d(m.goal))} | ${mib(d(m.gen))} | ${ratio(m.open)} | ${ratio(m.first)} | ${ratio(m.goal)} | ${ratio(m.gen)} | ${m.loadSeconds.toFixed(3)} | ${m.firstSeconds.toFixed(3)} |`,
          );
          if (lazy && fuse && f.label.startsWith("stories15M")) goal.push(`${f.quant} ${ratio(m.goal)}`);
        }
    }
    if (goal.length > 0) console.log(`\ngoal (stories15M shape, lazy and fused, after ${GOAL_TOKENS} tokens; (peak − baseline) ÷ weight bytes ≤ 1.3): ${goal.join(" / ")}`);
    const moe = (await buildMoeModels(dir)).filter((f) => (only.model === undefined || f.label.includes(only.model)) && (only.quant === undefined || f.quant === only.quant));
    if (moe.length > 0) pagingTable(moe);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[2] === "--worker")
  await worker(process.argv[3], process.argv[4] === "lazy", process.argv[5] === "fuse", process.argv[6] === "all" ? undefined : Number(process.argv[6]), process.argv[7] === "fixed");
else await main();
