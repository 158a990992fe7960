// Gopher's repetition rules (Rae et al. 2021, table A1) as datatrove's GopherRepetitionFilter
// computes them (huggingface/datatrove v0.10.0, commit a649de7,
// src/datatrove/pipeline/filters/gopher_repetition_filter.py). L = the text's length in code
// points. In order, the first rule broken removes the document:
//
//   dup-para-frac       paragraphs (strip, split at 2+ "\n") equal to an earlier one / #paragraphs > 0.30
//   dup-para-char-frac  characters of those repeated paragraphs / L                      > 0.20
//   dup-line-frac       lines (split at runs of "\n") equal to an earlier one / #lines   > 0.30
//   dup-line-char-frac  characters of those repeated lines / L                           > 0.20
//   top-n-gram          n = 2, 3, 4: the most frequent word n-gram (words joined by " "),
//                       its length × its count / L                                       > 0.20, 0.18, 0.16
//   dup-n-gram          n = 5…10: scanning the words left to right, an n-gram seen before adds
//                       its characters and the scan jumps past it (so overlaps count once) / L
//                                                                                         > 0.15, 0.14, 0.13, 0.12, 0.11, 0.10
//
// Words are datatrove's English words (words.ts), punctuation marks among them. As in datatrove,
// the top n-gram counts even when it occurs once (the paper counts only repeated ones; it matters
// only for very short texts), ties go to the n-gram seen first, and the duplicate n-grams of the
// 5–10 rules are compared with their words joined without a separator, so "ab c" and "a bc" are
// the same n-gram. Deviation: a threshold of null switches its rule off (datatrove: None).
import { KEEP, type RuleOutcome, type Threshold, ratio, removal } from "./outcome.js";
import { pyLen, pyStrip } from "./text.js";
import { splitWords } from "./words.js";

export interface GopherRepetitionOptions {
  dupLineFrac: Threshold;
  dupParaFrac: Threshold;
  dupLineCharFrac: Threshold;
  dupParaCharFrac: Threshold;
  /** [n, max fraction of characters in the most frequent n-gram]. */
  topNGrams: readonly (readonly [number, Threshold])[];
  /** [n, max fraction of characters in repeated n-grams]. */
  dupNGrams: readonly (readonly [number, Threshold])[];
}

export const GOPHER_REPETITION_DEFAULTS: GopherRepetitionOptions = {
  dupLineFrac: 0.3,
  dupParaFrac: 0.3,
  dupLineCharFrac: 0.2,
  dupParaCharFrac: 0.2,
  topNGrams: [[2, 0.2], [3, 0.18], [4, 0.16]],
  dupNGrams: [[5, 0.15], [6, 0.14], [7, 0.13], [8, 0.12], [9, 0.11], [10, 0.1]],
};

/** How many pieces equal an earlier piece, and their characters. */
export function findDuplicates(pieces: readonly string[]): { count: number; chars: number } {
  const seen = new Set<string>();
  let count = 0, chars = 0;
  for (const p of pieces) {
    if (seen.has(p)) {
      count++;
      chars += pyLen(p);
    } else seen.add(p);
  }
  return { count, chars };
}

/**
 * The words joined by `sep`, with where each word starts, so an n-gram's joined text is one slice:
 * words i…i+n−1 are joined.slice(starts[i], starts[i + n] − sep.length).
 */
function joined(words: readonly string[], sep: string): { text: string; starts: number[] } {
  const starts = [0];
  for (const w of words) starts.push(starts[starts.length - 1] + w.length + sep.length);
  return { text: words.join(sep) + sep, starts };
}

/**
 * The most frequent n-gram's characters (its words joined by " ") times its count; on a tie the
 * n-gram seen first (a Map iterates in insertion order, as Counter.most_common(1) picks); 0 with
 * fewer than n words.
 */
export function topNGramChars(words: readonly string[], n: number): number {
  const { text, starts } = joined(words, " ");
  const counts = new Map<string, number>();
  for (let i = 0; i + n <= words.length; i++) {
    const key = text.slice(starts[i], starts[i + n] - 1);
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  let top = "", best = 0;
  for (const [key, c] of counts) if (c > best) (top = key), (best = c);
  return pyLen(top) * best;
}

/**
 * Characters in repeated n-grams: left to right, an n-gram (words joined with no separator) seen
 * before adds its characters and the scan jumps n words; an unseen one is remembered and the scan
 * moves one word.
 */
export function duplicateNGramChars(words: readonly string[], n: number): number {
  const { text, starts } = joined(words, "");
  const seen = new Set<string>();
  let chars = 0;
  for (let i = 0; i + n <= words.length; ) {
    const key = text.slice(starts[i], starts[i + n]);
    if (seen.has(key)) {
      chars += pyLen(key);
      i += n;
    } else {
      seen.add(key);
      i++;
    }
  }
  return chars;
}

export function gopherRepetition(text: string, o: GopherRepetitionOptions = GOPHER_REPETITION_DEFAULTS): RuleOutcome {
  const R = (name: string, value: number, threshold: number): RuleOutcome => removal(`gopher-repetition:${name}`, value, threshold);
  const length = pyLen(text);

  const paragraphs = pyStrip(text).split(/\n{2,}/u);
  const paras = findDuplicates(paragraphs);
  if (o.dupParaFrac !== null && paras.count / paragraphs.length > o.dupParaFrac) return R("dup-para-frac", paras.count / paragraphs.length, o.dupParaFrac);
  if (o.dupParaCharFrac !== null && ratio(paras.chars, length) > o.dupParaCharFrac) return R("dup-para-char-frac", ratio(paras.chars, length), o.dupParaCharFrac);

  const lines = text.split(/\n+/u);
  const dupLines = findDuplicates(lines);
  if (o.dupLineFrac !== null && dupLines.count / lines.length > o.dupLineFrac) return R("dup-line-frac", dupLines.count / lines.length, o.dupLineFrac);
  if (o.dupLineCharFrac !== null && ratio(dupLines.chars, length) > o.dupLineCharFrac) return R("dup-line-char-frac", ratio(dupLines.chars, length), o.dupLineCharFrac);

  const words = splitWords(text);
  for (const [n, max] of o.topNGrams) {
    if (max === null || words.length < n) continue;
    const share = ratio(topNGramChars(words, n), length);
    if (share > max) return R(`top-${n}-gram`, share, max);
  }
  for (const [n, max] of o.dupNGrams) {
    if (max === null) continue;
    const share = ratio(duplicateNGramChars(words, n), length);
    if (share > max) return R(`dup-${n}-gram`, share, max);
  }
  return KEEP;
}
