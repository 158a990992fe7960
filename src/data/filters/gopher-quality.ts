// Gopher's quality rules (Rae et al. 2021, "Scaling Language Models", appendix A.1.1) as
// datatrove's GopherQualityFilter computes them (huggingface/datatrove v0.10.0, commit a649de7,
// src/datatrove/pipeline/filters/gopher_quality_filter.py). Words are datatrove's English words
// (words.ts: spaCy's tokens, punctuation marks included); a "symbol word" is one made only of
// datatrove's punctuation characters. In order, the first rule broken removes the document:
//
//   word-count        W = #non-symbol words;           remove if W < 50 or W > 100,000
//   mean-word-length  mean code points per non-symbol word; remove if < 3 or > 10
//   hash-ratio        count("#") / #words;             remove if > 0.1
//   ellipsis-ratio    (count("...") + count("…")) / #words; remove if > 0.1
//   bullet-lines      lines whose lstrip starts with "•" or "-", / #lines; remove if > 0.9
//   ellipsis-lines    lines whose rstrip ends with "..." or "…", / #lines; remove if > 0.3
//   alpha-words       words with a letter (str.isalpha: \p{L}) / #words; remove if < 0.8
//   stop-words        distinct words of {the, be, to, of, and, that, have, with}; remove if < 2
//
// #words counts every word, symbol words too (so "," and "." lower the alpha share); the stop
// words are matched case-sensitively ("The" is not "the"), as datatrove does. datatrove calls the
// alpha threshold max_non_alpha_words_ratio but uses it as the minimum share of words with a letter
// (its own TODO says so); here it is minAlphaWordsRatio. Deviations: a threshold of null switches
// its rule off (datatrove: None or any falsy value, so there a 0 also switches it off; here 0 is a
// threshold like any other); a document with no words has ratios of 0, where datatrove would divide
// by zero (only reachable there with the word-count rule off).
import { KEEP, type Removal, type RuleOutcome, type Threshold, ratio, removal } from "./outcome.js";
import { countOf, isNonSymbolWord, pyLen, pyLstrip, pyRstrip, pySplitLines } from "./text.js";
import { splitWords } from "./words.js";

/** datatrove's STOP_WORDS for Gopher's rule. */
export const GOPHER_STOP_WORDS: readonly string[] = ["the", "be", "to", "of", "and", "that", "have", "with"];

export interface GopherQualityOptions {
  minWords: Threshold;
  maxWords: Threshold;
  minMeanWordLength: Threshold;
  maxMeanWordLength: Threshold;
  maxSymbolWordRatio: Threshold;
  maxBulletLinesRatio: Threshold;
  maxEllipsisLinesRatio: Threshold;
  minAlphaWordsRatio: Threshold;
  minStopWords: Threshold;
  stopWords: readonly string[];
}

export const GOPHER_QUALITY_DEFAULTS: GopherQualityOptions = {
  minWords: 50,
  maxWords: 100_000,
  minMeanWordLength: 3,
  maxMeanWordLength: 10,
  maxSymbolWordRatio: 0.1,
  maxBulletLinesRatio: 0.9,
  maxEllipsisLinesRatio: 0.3,
  minAlphaWordsRatio: 0.8,
  minStopWords: 2,
  stopWords: GOPHER_STOP_WORDS,
};

const HAS_LETTER = /\p{L}/u;

export function gopherQuality(text: string, o: GopherQualityOptions = GOPHER_QUALITY_DEFAULTS): RuleOutcome {
  const R = (name: string, value: number, threshold: number, bound?: "min" | "max"): Removal =>
    removal(`gopher-quality:${name}`, value, threshold, bound ? { bound } : {});
  const words = splitWords(text);
  const nWords = words.length;
  const real = words.filter(isNonSymbolWord);

  if (o.minWords !== null && real.length < o.minWords) return R("word-count", real.length, o.minWords, "min");
  if (o.maxWords !== null && real.length > o.maxWords) return R("word-count", real.length, o.maxWords, "max");

  if (real.length > 0) {
    const mean = real.reduce((s, w) => s + pyLen(w), 0) / real.length;
    if (o.minMeanWordLength !== null && mean < o.minMeanWordLength) return R("mean-word-length", mean, o.minMeanWordLength, "min");
    if (o.maxMeanWordLength !== null && mean > o.maxMeanWordLength) return R("mean-word-length", mean, o.maxMeanWordLength, "max");
  }

  if (o.maxSymbolWordRatio !== null) {
    const hashes = ratio(countOf(text, "#"), nWords);
    if (hashes > o.maxSymbolWordRatio) return R("hash-ratio", hashes, o.maxSymbolWordRatio);
    const ellipses = ratio(countOf(text, "...") + countOf(text, "…"), nWords);
    if (ellipses > o.maxSymbolWordRatio) return R("ellipsis-ratio", ellipses, o.maxSymbolWordRatio);
  }

  const lines = pySplitLines(text);
  if (o.maxBulletLinesRatio !== null) {
    const bullets = ratio(lines.filter((l) => /^[•-]/u.test(pyLstrip(l))).length, lines.length);
    if (bullets > o.maxBulletLinesRatio) return R("bullet-lines", bullets, o.maxBulletLinesRatio);
  }
  if (o.maxEllipsisLinesRatio !== null) {
    const trailing = ratio(lines.filter((l) => /(?:\.\.\.|…)$/u.test(pyRstrip(l))).length, lines.length);
    if (trailing > o.maxEllipsisLinesRatio) return R("ellipsis-lines", trailing, o.maxEllipsisLinesRatio);
  }

  if (o.minAlphaWordsRatio !== null) {
    const alpha = ratio(words.filter((w) => HAS_LETTER.test(w)).length, nWords);
    if (alpha < o.minAlphaWordsRatio) return R("alpha-words", alpha, o.minAlphaWordsRatio);
  }

  if (o.minStopWords !== null) {
    const present = new Set(words);
    const found = [...new Set(o.stopWords)].filter((w) => present.has(w)).length;
    if (found < o.minStopWords) return R("stop-words", found, o.minStopWords);
  }
  return KEEP;
}
