// `bonsai data filter`: datatrove's heuristic quality filters (data/filters/), an optional
// language heuristic and a score threshold, over a stream of records:
//   bonsai data filter corpus.jsonl --out kept.jsonl --stats removed.jsonl
//   bonsai data filter stories.txt --documents stories --rules gopher-repetition,c4 --c4-min-sentences 3
//   … | bonsai data filter - --rules none --min-score 3 --score-field quality
// Every threshold is a flag (a number, or "off"); the stats line of a removed document names the
// rule, its figure, the threshold and the flag that sets it. A kept document that C4 rewrote (lines
// dropped) is written rewritten.
import { C4_SWITCHES, type C4DroppedLines, type C4Switch } from "../data/filters/c4.js";
import { FILTER_DEFAULTS, FILTER_RULES, type FilterOptions, type FilterRule, filterText } from "../data/filters/filter.js";
import { LANGUAGES, LANGUAGE_DEFAULTS } from "../data/filters/language.js";
import type { Removal, Threshold } from "../data/filters/outcome.js";
import type { DataRecord } from "../data/records.js";
import { type FlagSpec, Flags, UsageError } from "./args.js";
import { type Verdict, recordIo, recordIoFlags, runRecordStep } from "./data.js";

const GQ = FILTER_DEFAULTS.gopherQuality, GR = FILTER_DEFAULTS.gopherRepetition, C4 = FILTER_DEFAULTS.c4, FW = FILTER_DEFAULTS.fineweb;
const ngramDefault = (list: readonly (readonly [number, Threshold])[], n: number): Threshold => list.find(([m]) => m === n)![1];

/** The threshold flags: help and default (every one also takes "off"). */
const THRESHOLDS: Record<string, { help: string; def: Threshold; integer?: boolean }> = {
  "gopher-min-words": { help: "gopher-quality: fewest words (punctuation-only words not counted)", def: GQ.minWords, integer: true },
  "gopher-max-words": { help: "gopher-quality: most words", def: GQ.maxWords, integer: true },
  "gopher-min-mean-word-length": { help: "gopher-quality: shortest mean word length, in characters", def: GQ.minMeanWordLength },
  "gopher-max-mean-word-length": { help: "gopher-quality: longest mean word length", def: GQ.maxMeanWordLength },
  "gopher-max-symbol-word-ratio": { help: 'gopher-quality: most "#", and most "..."/"…", per word', def: GQ.maxSymbolWordRatio },
  "gopher-max-bullet-lines-ratio": { help: 'gopher-quality: largest share of lines starting with "•" or "-"', def: GQ.maxBulletLinesRatio },
  "gopher-max-ellipsis-lines-ratio": { help: 'gopher-quality: largest share of lines ending in "..." or "…"', def: GQ.maxEllipsisLinesRatio },
  "gopher-min-alpha-words-ratio": { help: "gopher-quality: smallest share of words with a letter (datatrove's max_non_alpha_words_ratio)", def: GQ.minAlphaWordsRatio },
  "gopher-min-stop-words": { help: "gopher-quality: fewest distinct stop words (--gopher-stop-words)", def: GQ.minStopWords, integer: true },
  "repetition-dup-para-frac": { help: "gopher-repetition: largest share of paragraphs repeating an earlier one", def: GR.dupParaFrac },
  "repetition-dup-para-char-frac": { help: "gopher-repetition: largest share of characters in repeated paragraphs", def: GR.dupParaCharFrac },
  "repetition-dup-line-frac": { help: "gopher-repetition: largest share of lines repeating an earlier one", def: GR.dupLineFrac },
  "repetition-dup-line-char-frac": { help: "gopher-repetition: largest share of characters in repeated lines", def: GR.dupLineCharFrac },
  ...Object.fromEntries([2, 3, 4].map((n) => [`repetition-top-${n}-gram`, { help: `gopher-repetition: largest share of characters in the most frequent word ${n}-gram`, def: ngramDefault(GR.topNGrams, n) }])),
  ...Object.fromEntries([5, 6, 7, 8, 9, 10].map((n) => [`repetition-dup-${n}-gram`, { help: `gopher-repetition: largest share of characters in repeated word ${n}-grams`, def: ngramDefault(GR.dupNGrams, n) }])),
  "c4-min-sentences": { help: "c4: fewest sentences in the kept lines", def: C4.minSentences, integer: true },
  "c4-min-words-per-line": { help: "c4: a line with fewer words is dropped", def: C4.minWordsPerLine, integer: true },
  "c4-max-word-length": { help: "c4: a line with a longer word (in characters) is dropped", def: C4.maxWordLength, integer: true },
  "fineweb-line-punct-ratio": { help: "fineweb: smallest share of lines ending in terminal punctuation", def: FW.minLinePunctRatio },
  "fineweb-short-line-ratio": { help: "fineweb: largest share of short lines (--fineweb-short-line-length)", def: FW.maxShortLineRatio },
  "fineweb-char-dup-ratio": { help: "fineweb: largest share of characters in lines repeating an earlier one", def: FW.maxCharDupRatio },
  "fineweb-new-line-ratio": { help: "fineweb: most line breaks per word", def: FW.maxNewLineRatio },
  "language-min-latin-share": { help: "--language: smallest share of Latin-script letters", def: LANGUAGE_DEFAULTS.minLatinShare },
  "language-min-function-words": { help: "--language: smallest share of the language's function words among the words", def: LANGUAGE_DEFAULTS.minFunctionWordShare },
};

/** The flag that sets the threshold a removal crossed. */
function flagOf(r: Removal): string | undefined {
  const [family, name] = r.rule.split(":");
  const named: Record<string, string> = {
    "gopher-quality:word-count": `gopher-${r.bound}-words`,
    "gopher-quality:mean-word-length": `gopher-${r.bound}-mean-word-length`,
    "gopher-quality:hash-ratio": "gopher-max-symbol-word-ratio",
    "gopher-quality:ellipsis-ratio": "gopher-max-symbol-word-ratio",
    "gopher-quality:bullet-lines": "gopher-max-bullet-lines-ratio",
    "gopher-quality:ellipsis-lines": "gopher-max-ellipsis-lines-ratio",
    "gopher-quality:alpha-words": "gopher-min-alpha-words-ratio",
    "gopher-quality:stop-words": "gopher-min-stop-words",
    "c4:too-few-sentences": "c4-min-sentences",
    "c4:lorem-ipsum": "c4-skip",
    "c4:curly-bracket": "c4-skip",
    "language:script": "language-min-latin-share",
    "language:function-words": "language-min-function-words",
    "min-score:below": "min-score",
  };
  const flag = named[r.rule] ?? (family === "gopher-repetition" ? `repetition-${name}` : family === "fineweb" ? `fineweb-${name}` : undefined);
  return flag && (flag in THRESHOLDS || flag === "c4-skip" || flag === "min-score") ? `--${flag}` : undefined;
}

const ownFlags: FlagSpec = {
  rules: {
    type: "string",
    help:
      `comma-separated rule families, applied in this order (default ${FILTER_RULES.join(",")}; none for only --language/--min-score): ` +
      "gopher-quality (word count, mean word length, # and ellipsis ratios, bullet and ellipsis lines, words with a letter, stop words), " +
      "gopher-repetition (repeated lines and paragraphs, top 2-4-gram and repeated 5-10-gram characters), " +
      "c4 (drops lines without terminal punctuation, under 3 words, with javascript or a policy phrase, and citation markers — a kept document is written without them — " +
      "and removes documents under 5 sentences, with lorem ipsum or {), fineweb (lines ending in punctuation, short lines, repeated-line characters, line breaks per word). " +
      'Every threshold below takes a number, or "off"',
  },
  ...Object.fromEntries(Object.entries(THRESHOLDS).map(([name, t]) => [name, { type: "string" as const, help: `${t.help} (default ${t.def})` }])),
  "gopher-stop-words": { type: "string", help: `gopher-quality: the stop words, comma-separated, case-sensitive (default ${GQ.stopWords.join(",")})` },
  "c4-skip": { type: "string", help: `c4: rules to switch off, comma-separated: ${C4_SWITCHES.join(", ")}` },
  "fineweb-short-line-length": { type: "string", help: `fineweb: a line of at most this many characters is short (default ${FW.shortLineLength})` },
  "fineweb-line-punct-exclude-zero": { type: "boolean", help: "fineweb: let documents with no line ending in punctuation through the line-punctuation rule" },
  language: { type: "string", help: `keep documents that look like this language (${LANGUAGES.join(", ")}): a heuristic of function words and Latin letters, not fastText's language ID (default: no check)` },
  "min-score": { type: "string", help: "jsonl: keep records whose --score-field is at least this; records without a number there are removed" },
  "score-field": { type: "string", help: 'jsonl: the field --min-score reads (default "score")' },
};

const flags: FlagSpec = { ...ownFlags, ...recordIoFlags };

const help =
  "heuristic quality filters as datatrove computes them (Gopher quality and repetition, C4, FineWeb; every threshold a flag), a language heuristic, a score threshold";

export const filterStep = { run, flags, help };

/** The options the flags describe. */
export function filterOptions(f: Flags): FilterOptions {
  const t = (name: string): Threshold => {
    const d = THRESHOLDS[name];
    return f.str(name) === "off" ? null : f.num(name, d.def ?? 0, { min: 0, integer: d.integer });
  };
  const list = (name: string): string[] | undefined => f.str(name)?.split(",").map((s) => s.trim()).filter((s) => s !== "");

  const rulesRaw = list("rules") ?? [...FILTER_RULES];
  const rules = rulesRaw.length === 1 && rulesRaw[0] === "none" ? [] : rulesRaw;
  for (const r of rules) if (!(FILTER_RULES as readonly string[]).includes(r)) throw new UsageError(`--rules: unknown rule "${r}" (rules: ${FILTER_RULES.join(", ")}, or none)`);
  if (new Set(rules).size !== rules.length) throw new UsageError(`--rules names a rule twice: ${rulesRaw.join(",")}`);
  const skip = list("c4-skip") ?? [];
  for (const s of skip) if (!(C4_SWITCHES as readonly string[]).includes(s)) throw new UsageError(`--c4-skip: unknown rule "${s}" (${C4_SWITCHES.join(", ")})`);
  const stopWords = list("gopher-stop-words");
  if (stopWords && stopWords.length === 0) throw new UsageError("--gopher-stop-words is empty");

  const language = f.str("language");
  if (language !== undefined && !LANGUAGES.includes(language)) throw new UsageError(`--language must be one of ${LANGUAGES.join(", ")} (got "${language}")`);
  for (const name of ["language-min-latin-share", "language-min-function-words"])
    if (f.has(name) && language === undefined) throw new UsageError(`--${name} applies with --language`);

  return {
    rules: rules as FilterRule[],
    gopherQuality: {
      minWords: t("gopher-min-words"),
      maxWords: t("gopher-max-words"),
      minMeanWordLength: t("gopher-min-mean-word-length"),
      maxMeanWordLength: t("gopher-max-mean-word-length"),
      maxSymbolWordRatio: t("gopher-max-symbol-word-ratio"),
      maxBulletLinesRatio: t("gopher-max-bullet-lines-ratio"),
      maxEllipsisLinesRatio: t("gopher-max-ellipsis-lines-ratio"),
      minAlphaWordsRatio: t("gopher-min-alpha-words-ratio"),
      minStopWords: t("gopher-min-stop-words"),
      stopWords: stopWords ?? GQ.stopWords,
    },
    gopherRepetition: {
      dupParaFrac: t("repetition-dup-para-frac"),
      dupParaCharFrac: t("repetition-dup-para-char-frac"),
      dupLineFrac: t("repetition-dup-line-frac"),
      dupLineCharFrac: t("repetition-dup-line-char-frac"),
      topNGrams: [2, 3, 4].map((n) => [n, t(`repetition-top-${n}-gram`)] as const),
      dupNGrams: [5, 6, 7, 8, 9, 10].map((n) => [n, t(`repetition-dup-${n}-gram`)] as const),
    },
    c4: {
      minSentences: t("c4-min-sentences"),
      minWordsPerLine: t("c4-min-words-per-line"),
      maxWordLength: t("c4-max-word-length"),
      skip: skip as C4Switch[],
    },
    fineweb: {
      minLinePunctRatio: t("fineweb-line-punct-ratio"),
      linePunctExcludeZero: f.bool("fineweb-line-punct-exclude-zero"),
      maxShortLineRatio: t("fineweb-short-line-ratio"),
      shortLineLength: f.int("fineweb-short-line-length", FW.shortLineLength),
      maxCharDupRatio: t("fineweb-char-dup-ratio"),
      maxNewLineRatio: t("fineweb-new-line-ratio"),
    },
    language: language === undefined ? null : { language, minLatinShare: t("language-min-latin-share"), minFunctionWordShare: t("language-min-function-words") },
  };
}

/** A figure for a stats line: 6 significant digits, Infinity as a string (JSON has none). */
const figure = (v: number): number | string => (Number.isFinite(v) ? Number(v.toPrecision(6)) : String(v));

function verdictOf(r: Removal): Verdict {
  const detail: Record<string, unknown> = {};
  if (r.value !== undefined) detail.value = figure(r.value);
  if (r.threshold !== undefined) detail.threshold = figure(r.threshold);
  if (r.bound) detail.bound = r.bound;
  const flag = flagOf(r);
  if (flag) detail.flag = flag;
  return { keep: false, rule: r.rule, detail: { ...detail, ...r.detail } };
}

async function run(argv: string[]): Promise<void> {
  const f = Flags.parse(argv, flags);
  const options = filterOptions(f);
  const io = recordIo(f);
  const minScore = f.has("min-score") ? f.num("min-score", 0) : null;
  const scoreField = f.str("score-field") ?? "score";
  if (f.has("score-field") && minScore === null) throw new UsageError("--score-field applies with --min-score");
  if (minScore !== null && io.format !== "jsonl") throw new UsageError(`--min-score reads a JSONL field; --documents ${io.format} has none`);
  if (options.rules.length === 0 && options.language === null && minScore === null) throw new UsageError("--rules none leaves nothing to do without --language or --min-score");

  const dropped: C4DroppedLines = {};
  const droppedCount = (): number => Object.values(dropped).reduce((a, b) => a + b, 0);
  let shortened = 0;
  const judge = (r: DataRecord): Verdict => {
    if (minScore !== null) {
      const score = r.fields?.[scoreField];
      if (typeof score !== "number" || !Number.isFinite(score)) return { keep: false, rule: "min-score:missing", detail: { field: scoreField } };
      if (score < minScore) return verdictOf({ keep: false, rule: "min-score:below", value: score, threshold: minScore });
    }
    const before = droppedCount();
    const v = filterText(r.text, options, dropped);
    if (!v.keep) return verdictOf(v);
    if (droppedCount() > before) shortened++;
    return v.text === undefined ? { keep: true } : { keep: true, text: v.text };
  };
  await runRecordStep(f, "filter", judge);
  const lines = Object.entries(dropped).sort((a, b) => b[1] - a[1]);
  if (lines.length > 0) {
    const total = lines.reduce((s, [, n]) => s + n, 0);
    process.stderr.write(`bonsai data filter: c4 dropped ${total} line${total === 1 ? "" : "s"} from ${shortened} kept document${shortened === 1 ? "" : "s"} (${lines.map(([why, n]) => `${why} ${n}`).join(", ")})\n`);
  }
}
