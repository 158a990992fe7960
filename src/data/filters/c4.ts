// C4's cleaning rules (Raffel et al. 2020, section 2.2; TFDS c4_utils.clean_page) as datatrove's
// C4QualityFilter applies them (huggingface/datatrove v0.10.0, commit a649de7,
// src/datatrove/pipeline/filters/c4_filters.py). Most of them drop lines, so a kept document
// comes back rewritten. Each line (str.splitlines, stripped) goes through, in order:
//
//   too-long-word        a whitespace-separated word longer than 1,000 code points → drop the line
//   citations            "[1]", "[]", "[edit]", "[citation needed]" are removed from the line
//   no-terminal-punct    a line not ending in . ? ! " ' (or ending in "...") → drop the line
//   too-few-words        fewer than 3 whitespace-separated words (counted before the citations
//                        were removed) → drop the line
//   lorem-ipsum          "lorem ipsum" (any case) → remove the document
//   javascript           "javascript" (any case) → drop the line
//   curly-bracket        "{" → remove the document
//   policy               "terms of use", "privacy policy", "cookie policy", "uses cookies",
//                        "use of cookies", "use cookies" (any case) → drop the line
//
// then the kept lines' sentences (spaCy's sentencizer, words.ts) are counted: fewer than 5 removes
// the document (too-few-sentences); else the text becomes the kept lines joined by "\n", stripped.
// Like datatrove, the lorem-ipsum and curly-bracket checks see only lines that survived the line
// rules before them. Deviations: a kept document with no line left is removed as c4:empty
// (datatrove keeps an empty text, reachable only with the sentence rule off); thresholds of null
// and `skip` switch rules off (datatrove: -1 and booleans). C4's bad-words list (datatrove's
// C4BadWordsFilter) is not part of this rule.
import { type RuleOutcome, type Threshold, removal, removalAt } from "./outcome.js";
import { pyLen, pySplit, pySplitLines, pyStrip } from "./text.js";
import { countSentences } from "./words.js";

/** The line and document rules that can be switched off. */
export const C4_SWITCHES = ["citations", "terminal-punct", "lorem-ipsum", "javascript", "curly-bracket", "policy"] as const;
export type C4Switch = (typeof C4_SWITCHES)[number];

export interface C4Options {
  minSentences: Threshold;
  minWordsPerLine: Threshold;
  maxWordLength: Threshold;
  skip: readonly C4Switch[];
}

export const C4_DEFAULTS: C4Options = { minSentences: 5, minWordsPerLine: 3, maxWordLength: 1000, skip: [] };

export const C4_POLICY_PHRASES: readonly string[] = ["terms of use", "privacy policy", "cookie policy", "uses cookies", "use of cookies", "use cookies"];
const CITATION = /\[\p{Nd}*\]|\[edit\]|\[citation needed\]/gu;
const TERMINAL = /[.?!"']$/u;

/** Lines dropped from a document, by the rule that dropped them. */
export type C4DroppedLines = Partial<Record<"too-long-word" | "no-terminal-punct" | "too-few-words" | "javascript" | "policy", number>>;

export function c4(text: string, o: C4Options = C4_DEFAULTS, dropped: C4DroppedLines = {}): RuleOutcome {
  const on = (s: C4Switch): boolean => !o.skip.includes(s);
  const drop = (why: keyof C4DroppedLines): void => void (dropped[why] = (dropped[why] ?? 0) + 1);
  const kept: string[] = [];
  let sentences = 0;
  const lines = pySplitLines(text);
  for (let i = 0; i < lines.length; i++) {
    let line = pyStrip(lines[i]);
    const words = pySplit(line);
    if (o.maxWordLength !== null && words.some((w) => pyLen(w) > o.maxWordLength!)) {
      drop("too-long-word");
      continue;
    }
    if (on("citations")) line = line.replace(CITATION, "");
    if (on("terminal-punct") && (!TERMINAL.test(line) || line.endsWith("..."))) {
      drop("no-terminal-punct");
      continue;
    }
    if (o.minWordsPerLine !== null && words.length < o.minWordsPerLine) {
      drop("too-few-words");
      continue;
    }
    const lower = line.toLowerCase();
    if (on("lorem-ipsum") && lower.includes("lorem ipsum")) return removalAt("c4:lorem-ipsum", { docLine: i + 1 });
    if (on("javascript") && lower.includes("javascript")) {
      drop("javascript");
      continue;
    }
    if (on("curly-bracket") && line.includes("{")) return removalAt("c4:curly-bracket", { docLine: i + 1 });
    if (on("policy") && C4_POLICY_PHRASES.some((p) => lower.includes(p))) {
      drop("policy");
      continue;
    }
    sentences += countSentences(line);
    kept.push(line);
  }
  if (o.minSentences !== null && sentences < o.minSentences) return removal("c4:too-few-sentences", sentences, o.minSentences, { detail: { droppedLines: dropped } });
  const out = pyStrip(kept.join("\n"));
  if (out === "") return removalAt("c4:empty", { droppedLines: dropped });
  return out === text ? { keep: true } : { keep: true, text: out };
}
