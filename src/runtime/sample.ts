// Choosing the next token from logits. llama.cpp's sampler chain and semantics: penalties over the
// recent tokens, then the top-k, top-p and min-p filters (on probabilities at temperature 1),
// then temperature, then a draw — or, at temperature 0, the argmax of the penalized logits.
import type { Rng } from "../util/rng.js";
import type { TopK } from "../backend/top-k.js";

export interface SampleOptions {
  /** 0 = greedy (argmax). */
  temperature: number;
  /** Keep only the k most likely tokens (0 = all). */
  topK?: number;
  /** Keep the smallest set of most likely tokens whose probability mass reaches p (1 = all). */
  topP?: number;
  /** Keep tokens with probability ≥ minP · (largest probability) (0 = all). */
  minP?: number;
  /** Divide positive / multiply negative logits of recently seen tokens (1 = off). */
  repeatPenalty?: number;
  /** How many recent tokens the penalties look at (default 64; 0 = none, −1 = all). */
  repeatLastN?: number;
  /** Subtract count · f from a recent token's logit (0 = off). */
  frequencyPenalty?: number;
  /** Subtract p from the logit of any token among the recent ones (0 = off). */
  presencePenalty?: number;
}

/** ln Σ exp(x) of `row[offset .. offset + n)`, shifted by its maximum (log-probabilities: x − lse). */
export function logSumExpOf(row: ArrayLike<number>, offset = 0, n = row.length - offset): number {
  let max = -Infinity;
  for (let i = offset; i < offset + n; i++) max = Math.max(max, row[i]);
  let sum = 0;
  for (let i = offset; i < offset + n; i++) sum += Math.exp(row[i] - max);
  return max + Math.log(sum);
}

/** Index of the largest value; the first one on ties (as llama2.c's argmax). */
export function argmax(x: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < x.length; i++) if (x[i] > x[best]) best = i;
  return best;
}

export function validateSampleOptions(o: SampleOptions): void {
  const check = (ok: boolean, what: string, v: unknown): void => {
    if (!ok) throw new Error(`${what} (got ${v})`);
  };
  check(o.temperature >= 0 && Number.isFinite(o.temperature), "temperature must be >= 0", o.temperature);
  const k = o.topK ?? 0;
  check(Number.isInteger(k) && k >= 0, "top-k must be a non-negative integer", k);
  const p = o.topP ?? 1;
  check(p > 0 && p <= 1, "top-p must be in (0, 1]", p);
  const m = o.minP ?? 0;
  check(m >= 0 && m <= 1, "min-p must be in [0, 1]", m);
  const r = o.repeatPenalty ?? 1;
  check(r > 0 && Number.isFinite(r), "repeat penalty must be > 0", r);
  const n = o.repeatLastN ?? 64;
  check(Number.isInteger(n) && n >= -1, "repeat-last-n must be an integer >= -1", n);
  check(Number.isFinite(o.frequencyPenalty ?? 0), "frequency penalty must be a finite number", o.frequencyPenalty);
  check(Number.isFinite(o.presencePenalty ?? 0), "presence penalty must be a finite number", o.presencePenalty);
}

/** Whether any penalty reads the history (repeat, frequency or presence). */
export const penalized = (o: SampleOptions): boolean => (o.repeatPenalty ?? 1) !== 1 || (o.frequencyPenalty ?? 0) !== 0 || (o.presencePenalty ?? 0) !== 0;

/**
 * How many of a row's largest logits the sampler needs under `o` (Backend.readTopK brings just
 * those back): 1 for greedy, k for top-k sampling; 0 when it needs the whole row — penalties
 * change logits the top k may not hold, and without top-k the draw spans the vocabulary.
 */
export function logitsNeeded(o: SampleOptions, vocab: number): number {
  if (penalized(o)) return 0;
  if (o.temperature === 0) return 1;
  const k = o.topK ?? 0;
  return k > 0 && k < vocab ? k : 0;
}

/**
 * llama.cpp's penalties, in place, over the last `repeatLastN` tokens of `history`: a seen token's
 * logit is divided by the repeat penalty when positive and multiplied by it when negative (it gets
 * less likely either way), then count·frequency + presence is subtracted.
 */
export function applyPenalties(logits: Float64Array, history: readonly number[], o: SampleOptions): void {
  const r = o.repeatPenalty ?? 1, f = o.frequencyPenalty ?? 0, p = o.presencePenalty ?? 0;
  if (r === 1 && f === 0 && p === 0) return;
  const lastN = o.repeatLastN ?? 64;
  const recent = lastN < 0 ? history : history.slice(Math.max(0, history.length - lastN));
  const counts = new Map<number, number>();
  for (const t of recent) if (t >= 0 && t < logits.length) counts.set(t, (counts.get(t) ?? 0) + 1);
  for (const [t, count] of counts) {
    logits[t] = logits[t] <= 0 ? logits[t] * r : logits[t] / r;
    logits[t] -= count * f + p;
  }
}

/**
 * Candidate token ids after top-k, top-p and min-p (probabilities at temperature 1). Ids stay in
 * index order unless a filter needs them ranked (then most likely first), as the draw depends on it.
 */
export function filterCandidates(logits: ArrayLike<number>, o: SampleOptions): number[] {
  const n = logits.length;
  const ids = Array.from({ length: n }, (_, i) => i);
  const k = o.topK ?? 0;
  return filterByMass(k > 0 && k < n ? ids.sort((a, b) => logits[b] - logits[a]).slice(0, k) : ids, (i) => logits[i], o);
}

/** The top-p and min-p filters over candidates `ids` (`logit`: a candidate's logit). */
function filterByMass(ids: number[], logit: (i: number) => number, o: SampleOptions): number[] {
  const topP = o.topP ?? 1, minP = o.minP ?? 0;
  if (topP < 1) {
    ids = ids.sort((a, b) => logit(b) - logit(a));
    const probs = softmaxOf(ids.map(logit));
    // The smallest prefix whose mass reaches p (at least one token).
    let mass = 0, keep = ids.length;
    for (let j = 0; j < ids.length; j++) {
      mass += probs[j];
      if (mass >= topP) {
        keep = j + 1;
        break;
      }
    }
    ids = ids.slice(0, keep);
  }
  if (minP > 0) {
    // p_i ≥ minP·p_max ⇔ logit_i ≥ max + ln(minP); the best token always survives.
    let max = -Infinity;
    for (const i of ids) max = Math.max(max, logit(i));
    const threshold = max + Math.log(minP);
    ids = ids.filter((i) => logit(i) >= threshold);
  }
  return ids;
}

/** softmax of `logits`. */
function softmaxOf(logits: number[]): number[] {
  let max = -Infinity;
  for (const x of logits) max = Math.max(max, x);
  const w = logits.map((x) => Math.exp(x - max));
  const z = w.reduce((a, b) => a + b, 0);
  return w.map((x) => x / z);
}

/**
 * The sampler's final distribution over `candidates` (in their draw order): penalties, filters and
 * temperature applied. At temperature 0 it is a point mass on the argmax of the penalized logits.
 * Speculative decoding needs this for both models, so it is the one definition sampleToken draws from.
 */
export function candidateProbs(logits: ArrayLike<number>, o: SampleOptions, history: readonly number[] = []): { ids: number[]; probs: number[] } {
  const { ids, weights } = candidateWeights(logits, o, history);
  const total = weights.reduce((a, b) => a + b, 0);
  return { ids, probs: weights.map((w) => w / total) };
}

/**
 * candidateProbs before normalization: exp((logit − max) / temperature) per candidate. `logits`:
 * the row, or its best logitsNeeded(o) (ranked, as the row's own top-k sort ranks them).
 */
function candidateWeights(logits: ArrayLike<number> | TopK, o: SampleOptions, history: readonly number[]): { ids: number[]; weights: number[] } {
  if ("ids" in logits) {
    if (penalized(o)) throw new Error("sampling: penalties need the whole row of logits, not its top k");
    if (o.temperature === 0) return { ids: [logits.ids[0]], weights: [1] };
    // Positions in the ranked list stand for the tokens: the filters see them in the same order.
    const kept = filterByMass(Array.from(logits.ids, (_, j) => j), (j) => logits.values[j], o);
    const max = logits.values[kept[0]] ?? 0;
    return { ids: kept.map((j) => logits.ids[j]), weights: kept.map((j) => Math.exp((logits.values[j] - max) / o.temperature)) };
  }
  if (o.temperature === 0 && !penalized(o)) return { ids: [argmax(logits)], weights: [1] }; // no copy needed
  const x = Float64Array.from(logits);
  applyPenalties(x, history, o);
  if (o.temperature === 0) return { ids: [argmax(x)], weights: [1] };
  const ids = filterCandidates(x, o);
  let max = -Infinity;
  for (const i of ids) max = Math.max(max, x[i]);
  return { ids, weights: ids.map((i) => Math.exp((x[i] - max) / o.temperature)) };
}

/** The same distribution as a dense vector over the whole vocabulary (zeros off the candidates). */
export function finalProbs(logits: ArrayLike<number>, o: SampleOptions, history: readonly number[] = []): Float64Array {
  const { ids, probs } = candidateProbs(logits, o, history);
  const p = new Float64Array(logits.length);
  for (let j = 0; j < ids.length; j++) p[ids[j]] = probs[j];
  return p;
}

/** Draw an index of `weights` (non-negative, any positive total) with probability weight / total. */
export function drawFrom(weights: ArrayLike<number>, rng: Rng): number {
  let total = 0, last = 0;
  for (let i = 0; i < weights.length; i++) {
    total += weights[i];
    if (weights[i] > 0) last = i;
  }
  let r = rng.next() * total;
  for (let i = 0; i < weights.length; i++) {
    r -= weights[i];
    if (r < 0 && weights[i] > 0) return i;
  }
  return last; // rounding left r ≥ 0 after the last term
}

/**
 * The next token. `history` (prompt and generated ids so far) feeds the penalties. `logits`: the
 * row, or the row's best logitsNeeded(o) (Backend.readTopK).
 */
export function sampleToken(logits: ArrayLike<number> | TopK, o: SampleOptions, rng: Rng, history: readonly number[] = []): number {
  const { ids, weights } = candidateWeights(logits, o, history);
  if (o.temperature === 0) return ids[0]; // greedy: no draw, the generator stays where it was
  return ids[drawFrom(weights, rng)];
}
