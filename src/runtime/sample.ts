// Choosing the next token from logits: greedy (temperature 0), or sampling from
// softmax(logits / temperature), optionally restricted to the top-k tokens.
import type { FloatArray } from "../backend/backend.js";
import type { Rng } from "../util/rng.js";

export interface SampleOptions {
  /** 0 = greedy (argmax). */
  temperature: number;
  /** Keep only the k most likely tokens (0 = all). */
  topK?: number;
}

/** Index of the largest value; the first one on ties (as llama2.c's argmax). */
export function argmax(x: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < x.length; i++) if (x[i] > x[best]) best = i;
  return best;
}

export function validateSampleOptions(o: SampleOptions): void {
  if (!(o.temperature >= 0) || !Number.isFinite(o.temperature)) throw new Error(`temperature must be >= 0 (got ${o.temperature})`);
  const k = o.topK ?? 0;
  if (!Number.isInteger(k) || k < 0) throw new Error(`top-k must be a non-negative integer (got ${k})`);
}

export function sampleToken(logits: FloatArray, o: SampleOptions, rng: Rng): number {
  if (o.temperature === 0) return argmax(logits);
  const n = logits.length;
  let candidates = Array.from({ length: n }, (_, i) => i);
  const k = o.topK ?? 0;
  if (k > 0 && k < n) candidates = candidates.sort((a, b) => logits[b] - logits[a]).slice(0, k);
  let max = -Infinity;
  for (const i of candidates) max = Math.max(max, logits[i]);
  const weights = candidates.map((i) => Math.exp((logits[i] - max) / o.temperature));
  const total = weights.reduce((a, b) => a + b, 0);
  let r = rng.next() * total;
  for (let j = 0; j < candidates.length; j++) {
    r -= weights[j];
    if (r < 0) return candidates[j];
  }
  return candidates[candidates.length - 1];
}
