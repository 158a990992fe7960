// FineWeb's own quality rules (Penedo et al. 2024, "The FineWeb Datasets", section 3.3) as
// datatrove's FineWebQualityFilter computes them (huggingface/datatrove v0.10.0, commit a649de7,
// src/datatrove/pipeline/filters/fineweb_quality_filter.py). Lines are the text split at "\n",
// blank ones left out (not stripped otherwise). In order:
//
//   empty             no non-blank line                                                  → remove
//   line-punct-ratio  lines whose last character is terminal punctuation (text.ts) / #lines < 0.12 → remove
//                     (with lineExcludeZero, a ratio of exactly 0 is let through)
//   short-line-ratio  lines of ≤ 30 code points / #lines                                 > 0.67 → remove
//   char-dup-ratio    characters of lines equal to an earlier line / characters of the text
//                     without its "\n"s                                                  > 0.01 → remove
//   new-line-ratio    count("\n") / #words (datatrove's English words, words.ts)         > 0.3  → remove
//
// datatrove names the last one "list_ratio". Deviations: null switches a rule off; a text with
// newlines and no words has a new-line ratio of Infinity (datatrove would divide by zero; a non-blank
// line always has a word, so this is unreachable).
import { KEEP, type RuleOutcome, type Threshold, ratio, removal, removalAt } from "./outcome.js";
import { findDuplicates } from "./gopher-repetition.js";
import { countOf, isTerminalPunctuation, lastChar, pyLen, pyStrip } from "./text.js";
import { splitWords } from "./words.js";

export interface FineWebOptions {
  minLinePunctRatio: Threshold;
  linePunctExcludeZero: boolean;
  maxShortLineRatio: Threshold;
  shortLineLength: number;
  maxCharDupRatio: Threshold;
  maxNewLineRatio: Threshold;
}

export const FINEWEB_DEFAULTS: FineWebOptions = {
  minLinePunctRatio: 0.12,
  linePunctExcludeZero: false,
  maxShortLineRatio: 0.67,
  shortLineLength: 30,
  maxCharDupRatio: 0.01,
  maxNewLineRatio: 0.3,
};

export function fineweb(text: string, o: FineWebOptions = FINEWEB_DEFAULTS): RuleOutcome {
  const R = (name: string, value: number, threshold: number): RuleOutcome => removal(`fineweb:${name}`, value, threshold);
  const lines = text.split("\n").filter((l) => pyStrip(l) !== "");
  if (lines.length === 0) return removalAt("fineweb:empty", {});

  if (o.minLinePunctRatio !== null) {
    const punct = lines.filter((l) => isTerminalPunctuation(lastChar(l))).length / lines.length;
    if (punct < o.minLinePunctRatio && !(punct === 0 && o.linePunctExcludeZero)) return R("line-punct-ratio", punct, o.minLinePunctRatio);
  }
  if (o.maxShortLineRatio !== null) {
    const short = lines.filter((l) => pyLen(l) <= o.shortLineLength).length / lines.length;
    if (short > o.maxShortLineRatio) return R("short-line-ratio", short, o.maxShortLineRatio);
  }
  if (o.maxCharDupRatio !== null) {
    const dup = ratio(findDuplicates(lines).chars, pyLen(text) - countOf(text, "\n"));
    if (dup > o.maxCharDupRatio) return R("char-dup-ratio", dup, o.maxCharDupRatio);
  }
  if (o.maxNewLineRatio !== null) {
    const newLines = ratio(countOf(text, "\n"), splitWords(text).length);
    if (newLines > o.maxNewLineRatio) return R("new-line-ratio", newLines, o.maxNewLineRatio);
  }
  return KEEP;
}
