// Autoregressive generation. This version recomputes the forward pass over the context window
// for each new token (no KV cache yet), keeping only the last position's logits.
import type { Llama } from "../nn/llama.js";
import { noGrad, scope } from "../tensor/tensor.js";
import { Rng } from "../util/rng.js";
import { type SampleOptions, sampleToken, validateSampleOptions } from "./sample.js";

export interface GenerateOptions extends SampleOptions {
  maxTokens: number;
  seed?: number;
  /** Generation ends (without emitting it) when one of these is produced. */
  stopIds?: number[];
}

/** Yields generated token ids one at a time. */
export function* generateTokens(model: Llama, prompt: number[], o: GenerateOptions): Generator<number> {
  validateSampleOptions(o);
  if (!Number.isInteger(o.maxTokens) || o.maxTokens < 0) throw new Error(`max tokens must be a non-negative integer (got ${o.maxTokens})`);
  if (prompt.length === 0) throw new Error("generation needs at least one prompt token");
  const vocab = model.config.vocab_size;
  for (const id of prompt) if (!(Number.isInteger(id) && id >= 0 && id < vocab)) throw new Error(`prompt token ${id} is outside the vocabulary [0, ${vocab})`);
  const window = model.config.max_position_embeddings;
  const rng = new Rng(o.seed ?? 0);
  const stop = new Set(o.stopIds ?? []);
  const context = [...prompt];
  for (let i = 0; i < o.maxTokens; i++) {
    const ids = Int32Array.from(context.slice(-window));
    const logits = noGrad(() => scope(() => model.forward(ids, 1, ids.length, { lastOnly: true }).toArray()));
    const next = sampleToken(logits, o, rng);
    if (stop.has(next)) return;
    context.push(next);
    yield next;
  }
}
