// Autoregressive generation over a KV-cache session: the prompt in one forward pass (prefill),
// then one pass per new token (decode).
import type { FloatArray } from "../backend/backend.js";
import type { Llama } from "../nn/llama.js";
import { Rng } from "../util/rng.js";
import type { TopK } from "../backend/top-k.js";
import { type SampleOptions, logitsNeeded, sampleToken, validateSampleOptions } from "./sample.js";
import { Session } from "./session.js";

export interface GenerateOptions extends SampleOptions {
  maxTokens: number;
  seed?: number;
  /** Generation ends (without emitting it) when one of these is produced. */
  stopIds?: number[];
  /** Filled in as generation proceeds (timings of the forward passes). */
  stats?: GenerationStats;
}

export interface GenerationStats {
  prefillTokens: number;
  prefillSeconds: number;
  decodeTokens: number;
  decodeSeconds: number;
}

export function emptyStats(): GenerationStats {
  return { prefillTokens: 0, prefillSeconds: 0, decodeTokens: 0, decodeSeconds: 0 };
}

/** Yields generated token ids one at a time. */
export async function* generateTokens(model: Llama, prompt: number[], o: GenerateOptions): AsyncGenerator<number> {
  validateSampleOptions(o);
  if (!Number.isInteger(o.maxTokens) || o.maxTokens < 0) throw new Error(`max tokens must be a non-negative integer (got ${o.maxTokens})`);
  if (prompt.length === 0) throw new Error("generation needs at least one prompt token");
  const vocab = model.config.vocab_size;
  for (const id of prompt) if (!(Number.isInteger(id) && id >= 0 && id < vocab)) throw new Error(`prompt token ${id} is outside the vocabulary [0, ${vocab})`);
  if (o.maxTokens === 0) return;
  const window = model.config.max_position_embeddings;
  const rng = new Rng(o.seed ?? 0);
  const stop = new Set(o.stopIds ?? []);
  const stats = o.stats ?? emptyStats();
  const context = [...prompt];
  // A cache for the positions this generation can reach, not the model's whole context.
  // Each step's logits are sampled before the next step: one reused host buffer serves them all.
  const session = new Session(model, { maxSeq: Math.min(window, prompt.length + o.maxTokens), reuseLogits: true });
  // Greedy and top-k sampling need only the row's best few logits: a GPU sends back those alone.
  const top = logitsNeeded(o, vocab);
  const forward = (ids: number[]): Promise<FloatArray | TopK> => (top > 0 ? session.prefillTop(ids, top) : session.prefill(ids));
  // The context's last `window` tokens, recomputed from scratch: the start, and whenever the
  // context outgrows the model's positions (the window then slides, as without a cache).
  const refill = async (): Promise<FloatArray | TopK> => {
    session.truncate(0);
    const t0 = performance.now();
    const ids = context.slice(-window);
    const logits = await forward(ids);
    stats.prefillSeconds += (performance.now() - t0) / 1000;
    stats.prefillTokens += ids.length;
    return logits;
  };
  try {
    let logits = await refill();
    for (let i = 0; i < o.maxTokens; i++) {
      const next = sampleToken(logits, o, rng, context);
      if (stop.has(next)) return;
      context.push(next);
      yield next;
      if (i + 1 === o.maxTokens) return;
      if (session.position === window) logits = await refill();
      else {
        const t0 = performance.now();
        logits = await forward([next]);
        stats.decodeSeconds += (performance.now() - t0) / 1000;
        stats.decodeTokens++;
      }
    }
  } finally {
    session.dispose();
  }
}
