// Inference speed, Bonsai next to llama.cpp (node-llama-cpp), on the same GGUF files and the same
// token ids: prefill of 256 prompt tokens (one pass, logits of the last position) and greedy
// decode of 256 tokens (one token per pass, argmax on the host), medians of several runs after a
// warm-up run. Bonsai runs the KV-cache Session on the wasm backend in a child process per model
// and thread count, so that its peak RSS is its own; llama.cpp runs in this process. Both run with
// 1 and 2 threads, and each row sets Bonsai against llama.cpp at the same thread count. Rows: stories260K (llama2.c's model, exported to GGUF F32) and a random-weight model of
// llama2.c's stories15M shape with Llama-2's 32000-token vocabulary at F32, Q8_0 and Q4_0 (Bonsai
// runs the quantized files three ways: with its quantized kernels and Q8_0-rounded activations —
// llama.cpp's integer path, `bonsai generate --q8-activations` — with its quantized kernels and
// float activations (the default), and dequantized to f32 on load).
// Bonsai runs fused (loadModel's {fuse: true}, as `bonsai generate`) and, for the --no-fuse
// column, unfused (the graph as trained). Only the first variant of a file runs unfused and on 2
// threads, to keep the run short.
// Run: npm run bench:infer   (needs ../shared/data; env BENCH_RUNS=N changes the run count, ≥ 5)
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import * as os from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { createBackend } from "../src/backend/index.js";
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

const DATA = "../shared/data";
const N = 256; // prompt tokens (BOS included) and decoded tokens
const RUNS = Math.max(5, Number(process.env.BENCH_RUNS ?? 5) | 0);
const THREADS = [1, 2];
const DECODE_CAP_S = 3; // per llama.cpp decode run, see runLlamaCpp

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

async function bonsaiWorker(modelPath: string, tokensPath: string, mode: Mode, fuse: boolean, threads: number): Promise<void> {
  const prompt: number[] = JSON.parse(readFileSync(tokensPath, "utf8"));
  const backend = await createBackend("wasm", { threads, q8Activations: mode === "q8" });
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
  const session = new Session(model);
  sample();
  const bos = prompt[0];
  let prefillArgmax = -1;
  const prefill = (): number => {
    session.truncate(0);
    const t = performance.now();
    const logits = session.prefill(prompt); // lastOnly: logits of the last position
    prefillArgmax = argmax(logits);
    const dt = (performance.now() - t) / 1000;
    sample();
    return prompt.length / dt;
  };
  let decoded: number[] = [];
  const decode = (): number => {
    session.truncate(0);
    const out: number[] = [];
    let tok = bos;
    const t = performance.now();
    for (let i = 0; i < N; i++) {
      tok = argmax(session.decode(tok));
      out.push(tok);
      if ((i & 31) === 31) sample();
    }
    const dt = (performance.now() - t) / 1000;
    sample();
    if (decoded.length === 0) decoded = out;
    return N / dt;
  };
  prefill(); // warm-up: JIT, the allocator's free lists
  decode();
  decoded = [];
  const res: BonsaiResult = { prefill: [], decode: [], baseRss, peakRss: 0, loadSeconds, decoded: [], prefillArgmax: -1 };
  for (let r = 0; r < RUNS; r++) res.prefill.push(prefill());
  for (let r = 0; r < RUNS; r++) res.decode.push(decode());
  res.peakRss = peakRss;
  res.decoded = decoded;
  res.prefillArgmax = prefillArgmax;
  process.stdout.write(JSON.stringify(res) + "\n");
  backend.dispose?.(); // the worker threads
}

function runBonsai(modelPath: string, tokensPath: string, mode: Mode, threads: number, fuse = true): BonsaiResult {
  const args = [fileURLToPath(import.meta.url), "--bonsai-worker", modelPath, tokensPath, mode, fuse ? "fuse" : "no-fuse", String(threads)];
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
}

function buildModels(dir: string): ModelFile[] {
  const js = new JsBackend("f32");
  const files: ModelFile[] = [];
  // (a) stories260K, as `bonsai export --model stories260K.bin --tokenizer tok512.bin --format gguf --quant f32`
  {
    const { model, tokenizer } = loadModel(`${DATA}/models/stories260K.bin`, js, `${DATA}/models/tok512.bin`);
    const path = join(dir, "stories260K-f32.gguf");
    writeFileSync(path, llamaToGguf(model.config, modelTensors(model), "f32", { name: "stories260K", tokenizer: tokenizerToGgufMetadata(tokenizer!) }));
    files.push({ label: "stories260K", quant: "F32", path });
  }
  // (b) llama2.c's stories15M shape (tied embeddings, as llama2.c's checkpoints), random weights, Llama-2 vocabulary
  {
    const config = normalizeConfig({
      vocab_size: 32000,
      hidden_size: 288,
      intermediate_size: 768,
      num_hidden_layers: 6,
      num_attention_heads: 6,
      num_key_value_heads: 6,
      max_position_embeddings: 256,
      rms_norm_eps: 1e-5,
      rope_theta: 10000,
      tie_word_embeddings: true,
    });
    const tok = loadTokenizerFile(`${DATA}/tokenizers/ggml-vocab-llama-spm.gguf`);
    const meta = tokenizerToGgufMetadata(tok);
    const tensors = modelTensors(Llama.init(js, config, 15));
    for (const quant of ["f32", "q8_0", "q4_0"] as GgufQuant[]) {
      const path = join(dir, `stories15M-shape-${quant}.gguf`);
      writeFileSync(path, llamaToGguf(config, tensors, quant, { name: "stories15M-shape-random", tokenizer: meta }));
      files.push({ label: "stories15M-shape (random)", quant: quant.toUpperCase(), path });
    }
  }
  return files;
}

/** Text from the held-out end of the corpus (its last 10%), starting at a story boundary. */
function heldOutText(): string {
  const text = readFileSync(`${DATA}/corpora/tinystories-2MiB.txt`, "utf8");
  const tail = text.slice(Math.floor(text.length * 0.9));
  const stories = tail.split("<|endoftext|>").slice(1).map((s) => s.trim());
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
  const header =
    "| model | quant | Bonsai ran | threads | Bonsai prefill tok/s | llama.cpp prefill tok/s | ratio | Bonsai decode tok/s | llama.cpp decode tok/s | ratio | Bonsai --no-fuse prefill / decode tok/s |\n" +
    "|---|---|---|---|---|---|---|---|---|---|---|";
  if (!existsSync(`${DATA}/models/stories260K.bin`) || !existsSync(`${DATA}/tokenizers/ggml-vocab-llama-spm.gguf`) || !existsSync(`${DATA}/corpora/tinystories-2MiB.txt`)) {
    console.log(`bench:infer: ${DATA} (models, tokenizers, corpora) is absent; every row skipped`);
    console.log(header);
    for (const [m, q] of [["stories260K", "F32"], ["stories15M-shape", "F32"], ["stories15M-shape", "Q8_0"], ["stories15M-shape", "Q4_0"]])
      console.log(`| ${m} | ${q} | — | — | skipped (no ${DATA}) | | | | | | |`);
    return;
  }
  const started = performance.now();
  const load0 = os.loadavg()[0];
  const dir = mkdtempSync(join(os.tmpdir(), "bonsai-infer-"));
  try {
    const models = buildModels(dir);
    const text = heldOutText();
    const { getLlama, LlamaLogLevel } = await import("node-llama-cpp");
    const llama = await getLlama({ gpu: false, build: "never", skipDownload: true, logLevel: LlamaLogLevel.error });
    console.log(
      `bench:infer — ${N} prompt tokens (BOS + held-out tinystories text), ${N} greedy decode tokens from BOS; median of ${RUNS} runs after a warm-up run.\n` +
        `Bonsai: KV-cache Session, wasm backend (1 or 2 threads, as the row), fused (loadModel {fuse: true}; the last column runs it unfused, --no-fuse); Q8_0/Q4_0 files run with loadModel's {quantized: true} kernels, with activations rounded to Q8_0 (q8Activations, llama.cpp's integer path) and in float, and dequantized to f32 on load. ` +
        `llama.cpp: node-llama-cpp 3.21.1 CPU, KV cache F16 (default), flash attention off, batch 512, context 512.\n`,
    );
    const rows: string[] = [];
    const notes: string[] = [];
    const mark = (r: number, target: number): string => `${r.toFixed(2)} ${r >= target ? "✓" : "✗"}`;
    for (const m of models) {
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
              { mode: "q8", ran: `${m.quant} kernels × Q8_0 activations` },
              { mode: "quantized", ran: `${m.quant} kernels × f32 activations` },
              { mode: "f32", ran: `F32 (dequantized ${m.quant})` },
            ];
      // Per thread count. To keep the run short, the first variant (the fastest) alone runs on 2
      // threads and unfused (--no-fuse, 1 thread).
      const bonsai = THREADS.map((threads) =>
        variants
          .filter((_, i) => threads === 1 || i === 0)
          .map((v, i) => ({ ...v, r: runBonsai(m.path, tokensPath, v.mode, threads), unfused: threads === 1 && i === 0 ? runBonsai(m.path, tokensPath, v.mode, 1, false) : undefined })),
      );
      const lm = await llama.loadModel({ modelPath: m.path });
      try {
        const theirs = lm.tokenize(text.slice(0, 2000));
        const ours = tok.encode(text.slice(0, 2000));
        const same = theirs.length === ours.length && theirs.every((t, i) => t === ours[i]);
        const size = statSync(m.path).size;
        notes.push(
          `- ${m.label} ${m.quant} (${(size / 2 ** 20).toFixed(2)} MiB; ${types(m.path)}): tokenizer ids ${same ? "equal" : "DIFFER from"} llama.cpp's on the first 2000 characters.`,
        );
        for (const [ti, threads] of THREADS.entries())
          for (const { ran, r: b } of bonsai[ti])
            notes.push(
              `  - Bonsai ${ran}, ${threads} thread(s): load ${b.loadSeconds.toFixed(2)} s; peak RSS ${(b.peakRss / 2 ** 20).toFixed(1)} MiB = ${(b.peakRss / size).toFixed(1)}× the file ` +
                `(RSS before loading ${(b.baseRss / 2 ** 20).toFixed(1)} MiB; the increase is ${((b.peakRss - b.baseRss) / size).toFixed(2)}× the file).`,
            );
        for (const [ti, threads] of THREADS.entries()) {
          const l = await runLlamaCpp(lm, prompt, threads);
          const lp = median(l.prefill), ld = median(l.decode);
          for (const { ran, r: b, unfused: u } of bonsai[ti]) {
            const bp = median(b.prefill), bd = median(b.decode);
            rows.push(
              `| ${m.label} | ${m.quant} | ${ran} | ${threads} | ${bp.toFixed(0)} | ${lp.toFixed(0)} | ${mark(bp / lp, 0.5)} | ${bd.toFixed(0)} | ${ld.toFixed(0)}${l.capped !== null ? "†" : ""} | ${mark(bd / ld, 1.0)} | ${u ? `${median(u.prefill).toFixed(0)} / ${median(u.decode).toFixed(0)}` : "—"} |`,
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
    console.log(`\nTargets: decode ≥ 1.0× llama.cpp, prefill ≥ 0.5× llama.cpp (✓ met, ✗ missed). Each row: Bonsai and llama.cpp at the same thread count (--no-fuse: 1 thread, first variant only).\n`);
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

if (process.argv[2] === "--bonsai-worker") await bonsaiWorker(process.argv[3], process.argv[4], process.argv[5] as Mode, process.argv[6] !== "no-fuse", Number(process.argv[7] ?? 1));
else await main();
