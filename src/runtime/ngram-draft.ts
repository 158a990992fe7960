// Prompt-lookup drafting (llama.cpp's ngram lookup, Hugging Face's prompt_lookup_num_tokens):
// no draft model. The last n tokens of the context are searched for earlier in the context, for
// n from nMax down to nMin; the tokens that followed the match are the draft. Text that repeats
// its input (summaries, edits, code, a small model's loops) is proposed for almost nothing.

export interface NgramOptions {
  /** Longest suffix tried first (default 4). */
  nMax?: number;
  /** Shortest suffix still trusted (default 1). */
  nMin?: number;
}

export function validateNgramOptions(o: NgramOptions): { nMax: number; nMin: number } {
  const nMax = o.nMax ?? 4, nMin = o.nMin ?? 1;
  if (!Number.isInteger(nMin) || nMin < 1) throw new Error(`ngram min must be an integer >= 1 (got ${nMin})`);
  if (!Number.isInteger(nMax) || nMax < nMin) throw new Error(`ngram max must be an integer >= ngram min ${nMin} (got ${nMax})`);
  return { nMax, nMin };
}

/**
 * Up to k tokens continuing `context`: what followed the most recent earlier occurrence of its
 * longest suffix of length in [nMin, nMax], extended periodically past the context's end (the most recent: the nearest context is the best
 * guess of what repeats next). Empty when nothing matches.
 */
export function ngramDraft(context: readonly number[], k: number, o: NgramOptions = {}): number[] {
  const { nMax, nMin } = validateNgramOptions(o);
  const len = context.length;
  if (k <= 0) return [];
  for (let n = Math.min(nMax, len - 1); n >= nMin; n--) {
    const tail = len - n; // the suffix is context[tail, len)
    // Occurrences start at i < tail (an earlier one), latest first.
    for (let i = tail - 1; i >= 0; i--) {
      let j = 0;
      while (j < n && context[i + j] === context[tail + j]) j++;
      if (j < n) continue;
      // Past the context's end the continuation is its own proposal: a loop of period tail − i
      // goes on repeating (out[t − len] was proposed for position t).
      const out: number[] = [];
      for (let t = i + n; out.length < k; t++) out.push(t < len ? context[t] : out[t - len]);
      return out;
    }
  }
  return [];
}
