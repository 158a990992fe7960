// `bonsai generate`: sample text from a model. Generated text only goes to stdout, streamed
// as it is produced; statistics go to stderr.
import { type FlagSpec, Flags, UsageError } from "./args.js";
import { createBackend } from "../backend/index.js";
import { loadModel } from "../io/model-files-node.js";
import { generateTokens } from "../runtime/generate.js";
import type { Tokenizer } from "../tokenizer/tokenizer.js";
import type { Llama } from "../nn/llama.js";

export const generateFlags: FlagSpec = {
  model: { type: "string", help: "model directory or llama2.c .bin" },
  tokenizer: { type: "string", help: "tokenizer file (tokenizer.bin, .json) overriding the model's" },
  prompt: { type: "string", help: "text to continue (default: start of a document)" },
  temperature: { type: "string", help: "sampling temperature; 0 = greedy (0.8)" },
  "top-k": { type: "string", help: "sample among the k most likely tokens; 0 = all (0)" },
  "max-tokens": { type: "string", help: "tokens to generate (256)" },
  seed: { type: "string", help: "sampling seed (1337)" },
  backend: { type: "string", help: "wasm (default) or js" },
};

export interface SampleRequest {
  prompt: string;
  temperature: number;
  topK: number;
  maxTokens: number;
  seed: number;
}

/** The prompt's ids: BOS first when the tokenizer has one; an empty prompt without BOS starts from a newline. */
export function promptIds(tokenizer: Tokenizer, prompt: string): number[] {
  if (tokenizer.bosId !== null) return tokenizer.encode(prompt, { addBos: true });
  if (prompt === "") {
    try {
      return tokenizer.encode("\n");
    } catch {
      return [0];
    }
  }
  return tokenizer.encode(prompt);
}

/**
 * Stream a completion to `write`; returns the number of generated tokens. Text is the suffix of
 * decode(prompt + generated) not yet written, held back while it ends in an incomplete UTF-8
 * character (byte tokens) — so any tokenizer's decoding rules apply unchanged.
 */
export function streamCompletion(model: Llama, tokenizer: Tokenizer, r: SampleRequest, write: (s: string) => void): number {
  const ids = promptIds(tokenizer, r.prompt);
  const stopIds = [tokenizer.eosId, tokenizer.bosId].filter((x): x is number => x !== null);
  const all = [...ids];
  let written = tokenizer.decode(ids).length;
  let n = 0;
  for (const id of generateTokens(model, ids, { temperature: r.temperature, topK: r.topK, maxTokens: r.maxTokens, seed: r.seed, stopIds })) {
    n++;
    all.push(id);
    const text = tokenizer.decode(all);
    if (!text.endsWith("\uFFFD") && text.length > written) {
      write(text.slice(written));
      written = text.length;
    }
  }
  const text = tokenizer.decode(all);
  if (text.length > written) write(text.slice(written));
  return n;
}

export async function generateCommand(argv: string[]): Promise<void> {
  const f = Flags.parse(argv, generateFlags);
  const t0 = performance.now();
  const backend = await createBackend(f.str("backend") ?? "wasm");
  const { model, tokenizer } = loadModel(f.required("model"), backend, f.str("tokenizer"));
  if (!tokenizer) throw new UsageError("the model has no tokenizer; pass --tokenizer");
  const loadSeconds = (performance.now() - t0) / 1000;
  const r: SampleRequest = {
    prompt: f.str("prompt") ?? "",
    temperature: f.num("temperature", 0.8, { min: 0 }),
    topK: f.int("top-k", 0, 0),
    maxTokens: f.int("max-tokens", 256, 0),
    seed: f.int("seed", 1337, 0),
  };
  const t1 = performance.now();
  const n = streamCompletion(model, tokenizer, r, (s) => process.stdout.write(s));
  process.stdout.write("\n");
  const s = (performance.now() - t1) / 1000;
  process.stderr.write(`bonsai generate: ${n} tokens in ${s.toFixed(2)} s (${(n / s).toFixed(1)} tok/s), load ${loadSeconds.toFixed(2)} s, backend ${backend.name}\n`);
}
