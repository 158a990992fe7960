// Inference speed, Bonsai next to llama.cpp (node-llama-cpp), on the same GGUF files and the same
// token ids: prefill of 256 prompt tokens (one pass, logits of the last position) and greedy
// decode of 256 tokens (one token per pass, argmax on the host), medians of several runs after a
// warm-up run. Bonsai runs the KV-cache Session on the wasm backend in a child process per model
// and thread count, so that its peak RSS is its own; llama.cpp runs in this process. Both run with
// 1 and 2 threads, and each row sets Bonsai against llama.cpp at the same thread count.
// Rows: stories260K (llama2.c's model, exported to GGUF F32); a random-weight model of llama2.c's
// stories15M shape with a 4096-token SentencePiece BPE trained here on the TinyStories sample, at
// F32, Q8_0 and Q4_0; and the same shape with Llama 2's 32000-token vocabulary at Q4_0, where the
// LM head dominates decode, and a sparse MoE of the 4096-vocabulary shape (8 experts of 768 per
// layer, 2 per token) at Q8_0 (one row each: 1 thread, the default variant). Bonsai runs the quantized
// files three ways: with its quantized kernels and Q8_0-rounded activations (llama.cpp's integer
// path, the `bonsai generate` default), with its quantized kernels and float activations, and
// dequantized to f32 on load.
// Bonsai runs fused (loadModel's {fuse: true}, as `bonsai generate`) and, for the --no-fuse
// column, unfused (the graph as trained). Only the first variant of a file runs unfused and on 2
// threads, to keep the run short.
// Run: npm run bench:infer [-- --kernels auto|simd|relaxed] [--model NAME: the rows whose label contains NAME]   (needs ../shared/data; env
// BENCH_RUNS=N changes the run count, ≥ 5)
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import * as os from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { createBackend } from "../src/backend/index.js";
import type { KernelChoice } from "../src/backend/wasm/kernel-flavour.js";
import { JsBackend } from "../src/backend/js/js-backend.js";
import { loadModel, loadTokenizerFile } from "../src/io/model-files-node.js";
import { modelTensors } from "../src/io/checkpoint.js";
import { GgufFile, type GgufQuant, describeTypes, llamaToGguf } from "../src/io/gguf-llama.js";
import { FileSource } from "../src/io/byte-source-node.js";
import { Llama } from "../src/nn/llama.js";
import { normalizeConfig } from "../src/nn/config.js";
import { Session } from "../src/runtime/session.js";
import { argmax } from "../src/runtime/sample.js";
import { tokenizerToGgufMetadata } from "../src/tokenizer/gguf-vocab.js";
import { trainTokenizer } from "../src/tokenizer/train-bpe.js";
import { benchHeader } from "./machine.js";
import { stories15MShape } from "./shapes.js";

const DATA = "../shared/data";
const N = 256; // prompt tokens (BOS included) and decoded tokens
const RUNS = Math.max(5, Number(process.env.BENCH_RUNS ?? 5) | 0);
const THREADS = [1, 2];
const DECODE_CAP_S = 3; // per llama.cpp decode run, see runLlamaCpp
// The issue's goals, at 1 thread: Bonsai ÷ llama.cpp tokens/s.
const GOAL = { prefill: 1.0, decode: 1.2 };

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

interface BonsaiResult {
  prefill: number[]; // tok/s per measured run
  decode: number[];
  baseRss: number; // before the model is loaded (Node + wasm backend)
  peakRss: number;
  loadSeconds: number;
  decoded: number[]; // the greedy tokens of the first decode run
  prefillArgmax: number;
}

// ---- the Bonsai side (child process) ------------------------------------------------------------

type Mode = "f32" | "quantized" | "q8";

async function bonsaiWorker(modelPath: string, tokensPath: string, mode: Mode, fuse: boolean, threads: number, kernels: KernelChoice): Promise<void> {
  const prompt: number[] = JSON.parse(readFileSync(tokensPath, "utf8"));
  const backend = await createBackend("wasm", { threads, kernels, q8Activations: mode === "q8" });
  const quantized = mode !== "f32";
  let peakRss = process.memoryUsage().rss;
  const sample = (): void => {
    peakRss = Math.max(peakRss, process.memoryUsage().rss);
  };
  const baseRss = peakRss;
  const t0 = performance.now();
  // quantized: Q8_0/Q4_0 matrices stay quantized and run through the backend's quantized kernels.
  const { model } = loadModel(modelPath, backend, undefined, { quantized, fuse });
  const loadSeconds = (performance.now() - t0) / 1000;
  sample();
  const session = new Session(model, { reuseLogits: true }); // as generate: one logits buffer
  sample();
  const bos = prompt[0];
  let prefillArgmax = -1;
  const prefill = async (): Promise<number> => {
    session.truncate(0);
    const t = performance.now();
    const logits = await session.prefill(prompt); // lastOnly: logits of the last position
    prefillArgmax = argmax(logits);
    const dt = (performance.now() - t) / 1000;
    sample();
    return prompt.length / dt;
  };
  let decoded: number[] = [];
  const decode = async (): Promise<number> => {
    session.truncate(0);
    const out: number[] = [];
    let tok = bos;
    const t = performance.now();
    for (let i = 0; i < N; i++) {
      tok = argmax(await session.decode(tok));
      out.push(tok);
      if ((i & 31) === 31) sample();
    }
    const dt = (performance.now() - t) / 1000;
    sample();
    if (decoded.length === 0) decoded = out;
    return N / dt;
  };
  await prefill(); // warm-up: JIT, the allocator's free lists
  await decode();
  decoded = [];
  const res: BonsaiResult = { prefill: [], decode: [], baseRss, peakRss: 0, loadSeconds, decoded: [], prefillArgmax: -1 };
  for (let r = 0; r < RUNS; r++) res.prefill.push(await prefill());
  for (let r = 0; r < RUNS; r++) res.decode.push(await decode());
  res.peakRss = peakRss;
  res.decoded = decoded;
  res.prefillArgmax = prefillArgmax;
  process.stdout.write(JSON.stringify(res) + "\n");
  backend.dispose?.(); // the worker threads
}

function runBonsai(modelPath: string, tokensPath: string, mode: Mode, threads: number, kernels: KernelChoice, fuse = true): BonsaiResult {
  const args = [fileURLToPath(import.meta.url), "--bonsai-worker", modelPath, tokensPath, mode, fuse ? "fuse" : "no-fuse", String(threads), kernels];
  const r = spawnSync(process.execPath, args, {
    encoding: "utf8",
    stdio: ["ignore", "pipe", "inherit"],
    maxBuffer: 1 << 24,
  });
  if (r.status !== 0) throw new Error(`bonsai worker for ${modelPath} (${threads} thread(s)) failed (status ${r.status})`);
  const line = r.stdout.trim().split("\n").pop()!;
  return JSON.parse(line) as BonsaiResult;
}

// ---- the llama.cpp side (this process) ----------------------------------------------------------

interface LlamaCppResult {
  prefill: number[];
  decode: number[];
  decoded: number[];
  /** The fewest tokens a capped decode run reached, or null when every run decoded N. */
  capped?: number | null;
}

type NodeLlamaCpp = typeof import("node-llama-cpp");
type LlamaInstance = Awaited<ReturnType<NodeLlamaCpp["getLlama"]>>;
type LlamaModelInstance = Awaited<ReturnType<LlamaInstance["loadModel"]>>;

async function runLlamaCpp(model: LlamaModelInstance, prompt: number[], threads: number): Promise<LlamaCppResult> {
  // KV cache: the default type (F16); flash attention off (F16 KV + flash attention drift from f32 at near-ties).
  const ctx = await model.createContext({ contextSize: 512, batchSize: 512, threads, flashAttention: false });
  try {
    const seq = ctx.getSequence();
    const ids = prompt as unknown as Parameters<typeof seq.evaluateWithoutGeneratingNewTokens>[0];
    const prefill = async (): Promise<number> => {
      await seq.clearHistory();
      const t = performance.now();
      await seq.evaluateWithoutGeneratingNewTokens(ids);
      return prompt.length / ((performance.now() - t) / 1000);
    };
    let decoded: number[] = [];
    let capped = Infinity;
    const decode = async (): Promise<number> => {
      await seq.clearHistory();
      const out: number[] = [];
      const t = performance.now();
      // evaluate(BOS) runs BOS, samples, runs the sampled token, …: N passes for N tokens, as Bonsai's loop.
      // A run stops early after DECODE_CAP_S (llama.cpp's 2-thread decode can collapse to ~15 tok/s here).
      for await (const tok of seq.evaluate(ids.slice(0, 1), { temperature: 0, yieldEogToken: true })) {
        out.push(tok as number);
        if (out.length >= N || performance.now() - t > DECODE_CAP_S * 1000) break;
      }
      const dt = (performance.now() - t) / 1000;
      if (out.length < N) capped = Math.min(capped, out.length);
      if (decoded.length === 0) decoded = out;
      return out.length / dt;
    };
    await prefill(); // warm-up
    await decode();
    decoded = [];
    const res: LlamaCppResult = { prefill: [], decode: [], decoded: [], capped: null };
    capped = Infinity;
    for (let r = 0; r < RUNS; r++) res.prefill.push(await prefill());
    for (let r = 0; r < RUNS; r++) res.decode.push(await decode());
    res.decoded = decoded;
    res.capped = Number.isFinite(capped) ? capped : null;
    return res;
  } finally {
    await ctx.dispose();
  }
}

// ---- model files and prompt ---------------------------------------------------------------------

interface ModelFile {
  label: string;
  quant: string;
  path: string;
  /** One row: the first variant at 1 thread (and its --no-fuse column). */
  oneRow?: boolean;
}

const LABEL_4096 = "15M shape, 4096-token vocabulary";
const LABEL_32000 = "15M shape, 32000-token vocabulary (Llama 2)";
const LABEL_MOE = "15M shape, MoE 8×768 top-2, 4096-token vocabulary";

/** The corpus, split: the first 90% trains the 4096-token tokenizer, the prompt comes from the rest. */
function corpus(): { train: string; heldOut: string } {
  const text = readFileSync(`${DATA}/corpora/tinystories-2MiB.txt`, "utf8");
  const cut = Math.floor(text.length * 0.9);
  return { train: text.slice(0, cut), heldOut: text.slice(cut) };
}

/** llama2.c's stories15M shape (tied embeddings, as llama2.c's checkpoints) with a vocabulary of `vocabSize`. */
const stories15M = (vocabSize: number) => normalizeConfig(stories15MShape({ vocabSize, maxPositions: 256, tied: true }));

async function buildModels(dir: string, trainText: string): Promise<ModelFile[]> {
  const js = new JsBackend("f32");
  const files: ModelFile[] = [];
  // (a) stories260K, as `bonsai export --model stories260K.bin --tokenizer tok512.bin --format gguf --quant f32`
  {
    const { model, tokenizer } = loadModel(`${DATA}/models/stories260K.bin`, js, `${DATA}/models/tok512.bin`);
    const path = join(dir, "stories260K-f32.gguf");
    writeFileSync(path, llamaToGguf(model.config, await modelTensors(model), "f32", { name: "stories260K", tokenizer: tokenizerToGgufMetadata(tokenizer!) }));
    files.push({ label: "stories260K", quant: "F32", path });
  }
  // (b) The 15M shape, random weights, with a 4096-token SentencePiece BPE (Llama 2's layout, byte
  // fallback) trained on the corpus: the transformer layers do 84% of a decoded token's
  // multiply-adds, the 4096×288 LM head the rest. The GGUF carries the vocabulary, so llama.cpp
  // tokenizes with it too.
  const tok = trainTokenizer(trainText, { type: "spm-bpe", vocabSize: 4096 });
  const meta = tokenizerToGgufMetadata(tok);
  {
    const config = stories15M(tok.vocabSize);
    const tensors = await modelTensors(Llama.init(js, config, 15));
    for (const quant of ["f32", "q8_0", "q4_0"] as GgufQuant[]) {
      const path = join(dir, `stories15M-shape-4096-${quant}.gguf`);
      writeFileSync(path, llamaToGguf(config, tensors, quant, { name: "stories15M-shape-4096-random", tokenizer: meta }));
      files.push({ label: LABEL_4096, quant: quant.toUpperCase(), path });
    }
  }
  // (d) A sparse MoE of that shape: every FFN 8 experts of 768, 2 per token (llama.cpp's MoE
  // layout), at Q8_0: 37M weights, 15M active per token.
  {
    const config = { ...stories15M(tok.vocabSize), num_local_experts: 8, num_experts_per_tok: 2 };
    const path = join(dir, "stories15M-shape-moe-4096-q8_0.gguf");
    writeFileSync(path, llamaToGguf(config, await modelTensors(Llama.init(js, config, 15)), "q8_0", { name: "stories15M-shape-moe-4096-random", tokenizer: meta }));
    files.push({ label: LABEL_MOE, quant: "Q8_0", path, oneRow: true });
  }
  // (c) The same shape with Llama 2's vocabulary, at Q4_0: the 32000×288 LM head is 61% of a
  // decoded token's multiply-adds (its Q4_0 × Q8_0 dot products decide the row).
  {
    const tok = loadTokenizerFile(`${DATA}/tokenizers/ggml-vocab-llama-spm.gguf`);
    const config = stories15M(32000);
    const path = join(dir, "stories15M-shape-32000-q4_0.gguf");
    writeFileSync(path, llamaToGguf(config, await modelTensors(Llama.init(js, config, 15)), "q4_0",
 { name: "stories15M-shape-32000-random", tokenizer: tokenizerToGgufMetadata(tok) }));
    files.push({ label: LABEL_32000, quant: "Q4_0", path, oneRow: true });
  }
  return files;
}

/** Text from the held-out part of the corpus, starting at a story boundary. */
function heldOutText(heldOut: string): string {
  const stories = heldOut.split("<|endoftext|>").slice(1).map((s) => s.trim());
  return stories.join("\n").slice(0, 8000);
}

function types(path: string): string {
  const src = new FileSource(path);
  try {
    return describeTypes(GgufFile.open(src));
  } finally {
    src.close();
  }
}

// ---- main ---------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { kernels: { type: "string", default: "auto" }, model: { type: "string" } } });
  const kernels = values.kernels as KernelChoice;
  console.log(await benchHeader(kernels)); // also rejects an unknown --kernels
  const header =
    "| model | quant | Bonsai ran | threads | Bonsai prefill tok/s | llama.cpp prefill tok/s | ratio | Bonsai decode tok/s | llama.cpp decode tok/s | ratio | Bonsai --no-fuse prefill / decode tok/s |\n" +
    "|---|---|---|---|---|---|---|---|---|---|---|";
  if (!existsSync(`${DATA}/models/stories260K.bin`) || !existsSync(`${DATA}/tokenizers/ggml-vocab-llama-spm.gguf`) || !existsSync(`${DATA}/corpora/tinystories-2MiB.txt`)) {
    console.log(`bench:infer: ${DATA} (models, tokenizers, corpora) is absent; every row skipped`);
    console.log(header);
    for (const [m, q] of [["stories260K", "F32"], [LABEL_4096, "F32"], [LABEL_4096, "Q8_0"], [LABEL_4096, "Q4_0"], [LABEL_32000, "Q4_0"], [LABEL_MOE, "Q8_0"]])
      console.log(`| ${m} | ${q} | — | — | skipped (no ${DATA}) | | | | | | |`);
    return;
  }
  const started = performance.now();
  const load0 = os.loadavg()[0];
  const dir = mkdtempSync(join(os.tmpdir(), "bonsai-infer-"));
  try {
    const { train, heldOut } = corpus();
    const models = await buildModels(dir, train);
    const text = heldOutText(heldOut);
    const { getLlama, LlamaLogLevel } = await import("node-llama-cpp");
    const llama = await getLlama({ gpu: false, build: "never", skipDownload: true, logLevel: LlamaLogLevel.error });
    console.log(
      `bench:infer — ${N} prompt tokens (BOS + held-out tinystories text), ${N} greedy decode tokens from BOS; median of ${RUNS} runs after a warm-up run.\n` +
        `Models: stories260K; random weights in llama2.c's stories15M shape (dim 288, 6 layers, 6 heads, hidden 768, tied embeddings) with a 4096-token SentencePiece BPE trained on the first 90% of tinystories-2MiB.txt, or with Llama 2's 32000-token vocabulary, and its sparse MoE (8 experts of 768 per layer, top-2); the prompt comes from the last 10%.\n` +
        `Bonsai: KV-cache Session, wasm backend (1 or 2 threads, as the row; kernels as above), fused (loadModel {fuse: true}; the last column runs it unfused, --no-fuse); Q8_0/Q4_0 files run with loadModel's {quantized: true} kernels, with activations rounded to Q8_0 (q8Activations, llama.cpp's integer path, generate's default) and in float, and dequantized to f32 on load. ` +
        `llama.cpp: node-llama-cpp 3.21.1 CPU, KV cache F16 (default), flash attention off, batch 512, context 512.\n`,
    );
    const rows: string[] = [];
    const notes: string[] = [];
    // The goals are for 1 thread; 2-thread ratios are printed unmarked.
    const ratio = (r: number, goal: number, threads: number): string => (threads === 1 ? `${r.toFixed(2)} ${r >= goal ? "✓" : "✗"}` : r.toFixed(2));
    for (const m of models.filter((f) => values.model === undefined || f.label.includes(values.model))) {
      const tok = loadTokenizerFile(m.path);
      const ids = tok.encode(text, { addBos: true });
      if (ids.length < N) throw new Error(`${m.label}: the held-out text gives only ${ids.length} tokens`);
      const prompt = ids.slice(0, N);
      const tokensPath = join(dir, "prompt.json");
      writeFileSync(tokensPath, JSON.stringify(prompt));

      // Quantized files run three ways on Bonsai's side: quantized kernels with Q8_0 or float activations, and dequantized to f32 on load.
      const variants: { mode: Mode; ran: string }[] =
        m.quant === "F32"
          ? [{ mode: "f32", ran: "F32" }]
          : [
              { mode: "q8", ran: `${m.quant} kernels × Q8_0 activations (default)` },
              { mode: "quantized", ran: `${m.quant} kernels × f32 activations` },
              { mode: "f32", ran: `F32 (dequantized ${m.quant})` },
            ];
      // Per thread count. To keep the run short, the first variant (the fastest) alone runs on 2
      // threads and unfused (--no-fuse, 1 thread).
      const threadCounts = m.oneRow ? [1] : THREADS;
      const bonsai = threadCounts.map((threads) =>
        variants
          .filter((_, i) => i === 0 || (threads === 1 && !m.oneRow))
          .map((v, i) => ({
            ...v,
            r: runBonsai(m.path, tokensPath, v.mode, threads, kernels),
            unfused: threads === 1 && i === 0 ? runBonsai(m.path, tokensPath, v.mode, 1, kernels, false) : undefined,
          })),
      );
      const lm = await llama.loadModel({ modelPath: m.path });
      try {
        // The whole held-out text, so that the prompt (BOS and the first N − 1 ids) is covered.
        const theirs = lm.tokenize(text);
        const ours = tok.encode(text);
        let agreeIds = 0;
        while (agreeIds < Math.min(theirs.length, ours.length) && theirs[agreeIds] === ours[agreeIds]) agreeIds++;
        const same = agreeIds === theirs.length && agreeIds === ours.length;
        const size = statSync(m.path).size;
        notes.push(
          `- ${m.label} ${m.quant} (${(size / 2 ** 20).toFixed(2)} MiB; ${types(m.path)}): tokenizer ids ` +
            (same
              ? `equal llama.cpp's on the held-out text (${text.length} characters, ${ours.length} tokens).`
              : `DIFFER from llama.cpp's on the held-out text from token ${agreeIds} of ${ours.length} (llama.cpp: ${theirs.length}); the prompt's ${N - 1} text tokens ${agreeIds >= N - 1 ? "agree" : "DIFFER"}.`),
        );
        for (const [ti, threads] of threadCounts.entries())
          for (const { ran, r: b } of bonsai[ti])
            notes.push(
              `  - Bonsai ${ran}, ${threads} thread(s): load ${b.loadSeconds.toFixed(2)} s; peak RSS ${(b.peakRss / 2 ** 20).toFixed(1)} MiB = ${(b.peakRss / size).toFixed(1)}× the file ` +
                `(RSS before loading ${(b.baseRss / 2 ** 20).toFixed(1)} MiB; the increase is ${((b.peakRss - b.baseRss) / size).toFixed(2)}× the file).`,
            );
        for (const [ti, threads] of threadCounts.entries()) {
          const l = await runLlamaCpp(lm, prompt, threads);
          const lp = median(l.prefill), ld = median(l.decode);
          for (const { ran, r: b, unfused: u } of bonsai[ti]) {
            const bp = median(b.prefill), bd = median(b.decode);
            rows.push(
              `| ${m.label} | ${m.quant} | ${ran} | ${threads} | ${bp.toFixed(0)} | ${lp.toFixed(0)} | ${ratio(bp / lp, GOAL.prefill, threads)} | ${bd.toFixed(0)} | ${ld.toFixed(0)}${l.capped !== null ? "†" : ""} | ` +
                `${l.capped !== null ? "—" : ratio(bd / ld, GOAL.decode, threads)} | ${u ? `${median(u.prefill).toFixed(0)} / ${median(u.decode).toFixed(0)}` : "—"} |`,
            );
            if (u?.decoded.some((t, i) => t !== b.decoded[i])) notes.push(`  - Bonsai ${ran}: fused and --no-fuse greedy tokens DIFFER.`);
            // Threads split work at boundaries that keep results bitwise identical (split.ts).
            if (ti > 0 && bonsai[0].find((v) => v.ran === ran)!.r.decoded.some((t, i) => t !== b.decoded[i]))
              notes.push(`  - Bonsai ${ran}: ${threads}-thread greedy tokens DIFFER from 1 thread's.`);
            let agree = 0;
            while (agree < Math.min(b.decoded.length, l.decoded.length) && b.decoded[agree] === l.decoded[agree]) agree++;
            notes.push(
              `  - llama.cpp ${threads} thread(s) vs Bonsai ${ran}: greedy tokens agree for the first ${agree} of ${l.decoded.length}` +
                (l.capped !== null ? `; † llama.cpp decode runs capped at ${DECODE_CAP_S} s (the slowest reached ${l.capped} of ${N} tokens)` : "") +
                ".",
            );
          }
          process.stderr.write(`bench:infer: ${m.label} ${m.quant} threads ${threads} done (${((performance.now() - started) / 1000).toFixed(0)} s)\n`);
        }
      } finally {
        await lm.dispose();
      }
    }
    const load1 = os.loadavg()[0];
    console.log(header);
    for (const r of rows) console.log(r);
    console.log(
      `\nGoals at 1 thread: decode ≥ ${GOAL.decode.toFixed(1)}× llama.cpp, prefill ≥ ${GOAL.prefill.toFixed(1)}× (✓ met, ✗ missed); 2-thread ratios unmarked. ` +
        `Each row: Bonsai and llama.cpp at the same thread count (--no-fuse: 1 thread, first variant only). ` +
        `† a llama.cpp decode run was capped at ${DECODE_CAP_S} s: its 2-thread decode collapses where the cores are busy (its workers spin), and the ratio says nothing.\n`,
    );
    for (const n of notes) console.log(n);
    console.log(
      `\ntotal ${((performance.now() - started) / 1000).toFixed(0)} s; ${os.cpus().length} CPUs; 1-minute load average ${load0.toFixed(2)} at the start, ${load1.toFixed(2)} at the end ` +
        `(above ~0.5, other processes shared the cores and the numbers are noisy).`,
    );
    await llama.dispose();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[2] === "--bonsai-worker")
  await bonsaiWorker(process.argv[3], process.argv[4], process.argv[5] as Mode, process.argv[6] !== "no-fuse", Number(process.argv[7]), process.argv[8] as KernelChoice);
else await main();
