// `bonsai data filter` and its rules (data/filters/). Every rule gets a document built to break it
// and one just inside its threshold, with the figure it reports checked against the rule's formula;
// the tokenizer is checked against spaCy's own English tokenizer tests; the CLI against JSONL
// files and pipes; and on real TinyStories, each rule family must remove what a correct
// implementation of datatrove's definitions removes from simple, clean English stories.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { splitDocuments } from "../src/data/documents.js";
import { C4_DEFAULTS, type C4DroppedLines, type C4Options, c4 } from "../src/data/filters/c4.js";
import { FILTER_DEFAULTS, type FilterOptions, filterText } from "../src/data/filters/filter.js";
import { FINEWEB_DEFAULTS, type FineWebOptions, fineweb } from "../src/data/filters/fineweb.js";
import { GOPHER_QUALITY_DEFAULTS, type GopherQualityOptions, gopherQuality } from "../src/data/filters/gopher-quality.js";
import { GOPHER_REPETITION_DEFAULTS, type GopherRepetitionOptions, gopherRepetition } from "../src/data/filters/gopher-repetition.js";
import { LANGUAGE_DEFAULTS, languageCheck } from "../src/data/filters/language.js";
import type { RuleOutcome } from "../src/data/filters/outcome.js";
import { countSentences, splitWords } from "../src/data/filters/words.js";
import { CLI, assertOneLineError, bonsai } from "./cli-helpers.js";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const TINYSTORIES = join(ROOT, "../shared/data/corpora/tinystories-2MiB.txt");
const tmp = mkdtempSync(join(tmpdir(), "bonsai-data-filter-"));

// --- building blocks ---

/** Twelve different sentences of a simple story (about 11 words and 2 punctuation marks each). */
const SENTENCES = [
  "Once upon a time, a little fox lived near a quiet river.",
  "Every morning she walked to the old bridge and watched the fish.",
  "One day a heavy storm broke the bridge into many pieces.",
  "The fox was sad, because her friends lived on the other side.",
  "She asked a wise turtle how she could cross the water.",
  "The turtle smiled and offered to carry her on his strong back.",
  "Together they swam slowly through the cold and muddy current.",
  "When they reached the far bank, her friends cheered loudly.",
  "After that day, the fox visited the turtle with berries and nuts.",
  "They built a new bridge of branches with help from the beavers.",
  "Children from the village came to play on it every summer.",
  "The fox learned that kindness can carry you across any river.",
];
/** A document that every rule keeps: six lines of two sentences. */
const GOOD = [0, 2, 4, 6, 8, 10].map((i) => `${SENTENCES[i]} ${SENTENCES[i + 1]}`).join("\n");

/** The i-th of 8,000 distinct three-consonant words (no stop word, no special case, no affix). */
const CONSONANTS = "bcdfghjklmnpqrstvwxz";
const filler = (i: number): string => CONSONANTS[i % 20] + CONSONANTS[Math.floor(i / 20) % 20] + CONSONANTS[Math.floor(i / 400) % 20];
const fillers = (from: number, n: number): string[] => Array.from({ length: n }, (_, i) => filler(from + i));

const removedBy = (v: RuleOutcome): string | null => (v.keep ? null : v.rule);
function assertRemoved(v: RuleOutcome, rule: string, value?: number, threshold?: number): void {
  assert.equal(v.keep, false, `expected ${rule}, kept`);
  if (v.keep) return;
  assert.equal(v.rule, rule);
  if (value !== undefined) assert.ok(Math.abs(v.value! - value) < 1e-12, `${rule}: value ${v.value}, expected ${value}`);
  if (threshold !== undefined) assert.equal(v.threshold, threshold);
}
function assertKept(v: RuleOutcome, what: string): void {
  assert.equal(v.keep, true, `${what}: removed by ${removedBy(v)} (${JSON.stringify(v)})`);
}

/**
 * The two documents on either side of a threshold: `make(k)` for growing k moves a figure across
 * it. Returns the first k whose document is kept after one that is removed (or the reverse).
 */
function straddle(make: (k: number) => string, kept: (text: string) => boolean, from = 0, to = 20_000): { inside: string; outside: string } {
  let prev = make(from);
  const prevKept = kept(prev);
  for (let k = from + 1; k <= to; k++) {
    const doc = make(k);
    if (kept(doc) !== prevKept) return prevKept ? { inside: prev, outside: doc } : { inside: doc, outside: prev };
    prev = doc;
  }
  throw new Error("the figure never crossed the threshold");
}

// --- words and sentences ---

test("words are spaCy's English tokens (spaCy's own tokenizer tests)", () => {
  // From spacy/tests/lang/en/test_prefix_suffix_infix.py, test_punct.py and test_exceptions.py, and spaCy's documentation.
  const cases: [string, string[]][] = [
    ["(", ["("]], ["((", ["(", "("]], ["(Hello", ["(", "Hello"]], ["Hello)", ["Hello", ")"]], ["(`Hello", ["(", "`", "Hello"]],
    ["Hello)'", ["Hello", ")", "'"]], ["'The", ["'", "The"]], ["Hello''", ["Hello", "''"]], ["(can)", ["(", "can", ")"]],
    ["can't", ["ca", "n't"]], ["(can't?)", ["(", "ca", "n't", "?", ")"]], ["U.S.", ["U.S."]], ["us.", ["us", "."]],
    ["(U.S.?)", ["(", "U.S.", "?", ")"]], ["best-known", ["best", "-", "known"]], ["0.1-13.5", ["0.1", "-", "13.5"]],
    ["Hello.World", ["Hello", ".", "World"]], ["Hello,world", ["Hello", ",", "world"]], ["best...Known", ["best", "...", "Known"]],
    ["No decent--let alone well-bred--people.", ["No", "decent", "--", "let", "alone", "well", "-", "bred", "--", "people", "."]],
    ["Today is Tuesday.Mr.", ["Today", "is", "Tuesday", ".", "Mr."]], ["_MATH_.", ["_", "MATH", "_", "."]],
    ["i said don't!", ["i", "said", "do", "n't", "!"]], ["`ain't", ["`", "ai", "n't"]], ["Robin's", ["Robin", "'s"]],
    ["Alexis's", ["Alexis", "'s"]], ["schools'", ["schools", "'"]], ["'em", ["'em"]], ["nothin'", ["nothin'"]], ["there'll", ["there", "'ll"]],
    ["Ill", ["Ill"]], ["well", ["well"]], ["`We've", ["`", "We", "'ve"]], ["couldn't)", ["could", "n't", ")"]], ["e.g.", ["e.g."]],
    ["It's mediocre i.e. bad.", ["It", "'s", "mediocre", "i.e.", "bad", "."]], ["12a.m.", ["12", "a.m."]], ["4pm", ["4", "pm"]],
    ["Let's go to N.Y.!", ["Let", "'s", "go", "to", "N.Y.", "!"]],
    ["(And a 6a.m. run through Washington Park).", ["(", "And", "a", "6", "a.m.", "run", "through", "Washington", "Park", ")", "."]],
    ["Apple is looking at buying U.K. startup for $1 billion", ["Apple", "is", "looking", "at", "buying", "U.K.", "startup", "for", "$", "1", "billion"]],
  ];
  for (const [text, tokens] of cases) assert.deepEqual(splitWords(text), tokens, text);
  // The curly apostrophe works as the straight one; a URL stays whole; whitespace is no token.
  assert.deepEqual(splitWords("Lily’s mom didn’t go.\n\n  Visit https://example.com/a?b=c now."), ["Lily", "’s", "mom", "did", "n’t", "go", ".", "Visit", "https://example.com/a?b=c", "now", "."]);
});

test("sentences are counted as spaCy's sentencizer splits them", () => {
  assert.equal(countSentences('"Mom, I found this needle. Can you share it?" Her mom smiled.'), 3);
  assert.equal(countSentences("Mr. Smith went home. He slept... Then he woke!"), 2); // "..." ends none, "Mr." is a word
  assert.equal(countSentences("No end mark here"), 1);
  assert.equal(countSentences("Wow!! Really?! Yes."), 3);
  assert.equal(countSentences(""), 0);
});

test("a plain story passes every rule unchanged", () => {
  assert.deepEqual(filterText(GOOD), { keep: true });
  for (const rule of FILTER_DEFAULTS.rules) assert.deepEqual(filterText(GOOD, { ...FILTER_DEFAULTS, rules: [rule] }), { keep: true }, rule);
});

// --- gopher-quality ---

const gq = (text: string, o: Partial<GopherQualityOptions> = {}): RuleOutcome => gopherQuality(text, { ...GOPHER_QUALITY_DEFAULTS, ...o });
/** n words of mean length 4 with three stop words ("the", "and", "with"), no punctuation. */
const plain = (n: number): string[] => Array.from({ length: n }, (_, i) => ["the", "cat", "and", "dog", "with", "many", "small", "friends"][i % 8]);

test("gopher-quality: word count 50 to 100,000 (punctuation-only words not counted)", () => {
  assertRemoved(gq(plain(49).join(" ")), "gopher-quality:word-count", 49, 50);
  assert.equal((gq(plain(49).join(" ")) as { bound?: string }).bound, "min");
  assertKept(gq(plain(50).join(" ")), "50 words");
  // A punctuation mark is a word for the ratios, not for the count.
  assertRemoved(gq(plain(49).join(" ") + " ."), "gopher-quality:word-count", 49, 50);
  assertKept(gq(plain(100_000).join(" ")), "100,000 words");
  const long = gq(plain(100_001).join(" "));
  assertRemoved(long, "gopher-quality:word-count", 100_001, 100_000);
  assert.equal((long as { bound?: string }).bound, "max");
});

test("gopher-quality: mean word length 3 to 10", () => {
  const threes = Array.from({ length: 60 }, (_, i) => (i % 2 ? "the" : "and"));
  assertKept(gq(threes.join(" ")), "mean 3");
  assertRemoved(gq([...threes.slice(1), "to"].join(" ")), "gopher-quality:mean-word-length", 179 / 60, 3);
  // 10 × "the and" (6 characters) and 70 words of 12: (60 + 840) / 90 = 10.
  const tens = [...Array.from({ length: 10 }, () => "the and").join(" ").split(" "), ...Array.from({ length: 70 }, () => "unbelievably")];
  assertKept(gq(tens.join(" ")), "mean 10");
  assertRemoved(gq([...tens.slice(0, -1), "uncomfortable"].join(" ")), "gopher-quality:mean-word-length", 901 / 90, 10);
});

test("gopher-quality: at most 0.1 '#' and 0.1 ellipses per word", () => {
  const words = plain(90);
  const withMarks = (mark: string, n: number): string => [...words.slice(0, 45), ...Array(n).fill(mark), ...words.slice(45)].join(" ");
  assertKept(gq(withMarks("#", 10)), "10 # in 100 words");
  assertRemoved(gq(withMarks("#", 11)), "gopher-quality:hash-ratio", 11 / 101, 0.1);
  assertKept(gq(withMarks("... …", 5)), "5 + 5 ellipses in 100 words");
  assertRemoved(gq(withMarks("... …", 5).replace("...", "... ...")), "gopher-quality:ellipsis-ratio", 11 / 101, 0.1);
});

test("gopher-quality: at most 90% bullet lines, 30% lines ending in an ellipsis", () => {
  const lines = Array.from({ length: 10 }, (_, i) => plain(8).join(" ") + ` ${filler(i)}`);
  const bullets = (n: number): string => lines.map((l, i) => (i < n ? (i % 2 ? "• " : "  - ") + l : l)).join("\n");
  assertKept(gq(bullets(9)), "9 of 10 bullet lines");
  assertRemoved(gq(bullets(10)), "gopher-quality:bullet-lines", 1, 0.9);
  const trailing = (n: number): string => lines.map((l, i) => (i < n ? l + (i % 2 ? " …" : "...  ") : l)).join("\n");
  assertKept(gq(trailing(3)), "3 of 10 lines ending in an ellipsis");
  assertRemoved(gq(trailing(4)), "gopher-quality:ellipsis-lines", 0.4, 0.3);
});

test("gopher-quality: at least 80% of words with a letter, punctuation marks counted as words", () => {
  const mix = (letters: number, numbers: number): string => [...plain(letters), ...Array(numbers).fill("1984")].join(" ");
  assertKept(gq(mix(80, 20)), "80 of 100 words with a letter");
  assertRemoved(gq(mix(79, 21)), "gopher-quality:alpha-words", 0.79, 0.8);
  // A comma is a word too: 50 words and 12 commas keep 50/62, 13 commas drop to 50/63.
  const commas = (n: number): string => plain(50).map((w, i) => (i < n ? w + "," : w)).join(" ");
  assertKept(gq(commas(12)), "50 words, 12 commas");
  assertRemoved(gq(commas(13)), "gopher-quality:alpha-words", 50 / 63, 0.8);
});

test("gopher-quality: at least 2 distinct stop words, case-sensitive", () => {
  const words = fillers(0, 60).map((w) => w + "a"); // four letters, no stop word
  assertKept(gq([...words, "the", "and"].join(" ")), "the, and");
  assertRemoved(gq([...words, "the", "the", "the"].join(" ")), "gopher-quality:stop-words", 1, 2);
  assertRemoved(gq([...words, "The", "And"].join(" ")), "gopher-quality:stop-words", 0, 2);
  assertKept(gq([...words, "of", "with"].join(" "), {}), "of, with");
  assertKept(gq([...words, "The", "And"].join(" "), { stopWords: ["The", "And"] }), "own stop words");
});

test("gopher-quality: thresholds move and switch off", () => {
  assertKept(gq(plain(20).join(" "), { minWords: 20 }), "20 words with minWords 20");
  assertKept(gq(plain(20).join(" "), { minWords: null }), "minWords off");
  assertRemoved(gq(plain(60).join(" "), { maxWords: 59 }), "gopher-quality:word-count", 60, 59);
  assertRemoved(gq(GOOD, { minAlphaWordsRatio: 0.9 }), "gopher-quality:alpha-words");
});

// --- gopher-repetition ---

/** Options with only one sub-rule at its default threshold. */
function onlyRep(rule: "dupLineFrac" | "dupParaFrac" | "dupLineCharFrac" | "dupParaCharFrac" | `top${number}` | `dup${number}`): GopherRepetitionOptions {
  const D = GOPHER_REPETITION_DEFAULTS;
  return {
    dupLineFrac: rule === "dupLineFrac" ? D.dupLineFrac : null,
    dupParaFrac: rule === "dupParaFrac" ? D.dupParaFrac : null,
    dupLineCharFrac: rule === "dupLineCharFrac" ? D.dupLineCharFrac : null,
    dupParaCharFrac: rule === "dupParaCharFrac" ? D.dupParaCharFrac : null,
    topNGrams: D.topNGrams.map(([n, t]) => [n, rule === `top${n}` ? t : null] as const),
    dupNGrams: D.dupNGrams.map(([n, t]) => [n, rule === `dup${n}` ? t : null] as const),
  };
}

test("gopher-repetition: duplicate paragraph and line fractions 0.3", () => {
  // Ten paragraphs (or lines): the short "Yes." repeated, the others different sentences.
  const pieces = (dups: number): string[] => [...SENTENCES.slice(0, 9 - dups), ...Array(dups + 1).fill("Yes.")];
  for (const [sep, rule, key] of [["\n\n", "dup-para-frac", "dupParaFrac"], ["\n", "dup-line-frac", "dupLineFrac"]] as const) {
    assertKept(gopherRepetition(pieces(3).join(sep), onlyRep(key)), `3 of 10 repeated (${rule})`);
    assertRemoved(gopherRepetition(pieces(4).join(sep), onlyRep(key)), `gopher-repetition:${rule}`, 0.4, 0.3);
    // And with every rule at its default, this is the rule that removes it.
    assertRemoved(gopherRepetition(pieces(4).join(sep)), `gopher-repetition:${rule}`);
  }
  // Blank lines are no lines: runs of "\n" split lines, so "a\n\n\na" is two lines, one repeated.
  assertRemoved(gopherRepetition("Yes sir.\n\n\nYes sir.", onlyRep("dupLineFrac")), "gopher-repetition:dup-line-frac", 0.5);
});

test("gopher-repetition: characters in duplicate paragraphs and lines at most 0.2", () => {
  const repeated = SENTENCES[0];
  for (const [sep, rule, key] of [["\n\n", "dup-para-char-frac", "dupParaCharFrac"], ["\n", "dup-line-char-frac", "dupLineCharFrac"]] as const) {
    const make = (k: number): string => [repeated, SENTENCES[1], repeated, fillers(0, k).join(" ")].join(sep);
    const { inside, outside } = straddle(make, (t) => gopherRepetition(t, onlyRep(key)).keep);
    assertKept(gopherRepetition(inside, onlyRep(key)), rule);
    assert.ok(repeated.length / inside.length <= 0.2);
    assertRemoved(gopherRepetition(outside, onlyRep(key)), `gopher-repetition:${rule}`, repeated.length / outside.length, 0.2);
  }
});

test("gopher-repetition: the most frequent 2-, 3-, 4-gram's characters at most 0.20, 0.18, 0.16", () => {
  const phrase = ["bright", "morning", "sunshine", "today"];
  for (const [n, threshold] of [[2, 0.2], [3, 0.18], [4, 0.16]] as const) {
    const p = phrase.slice(0, n).join(" ");
    // The phrase six times among distinct words, then k more distinct words.
    const make = (k: number): string => [...Array.from({ length: 6 }, (_, i) => `${p} ${fillers(i * 3, 3).join(" ")}`), ...fillers(100, k)].join(" ");
    const { inside, outside } = straddle(make, (t) => gopherRepetition(t, onlyRep(`top${n}`)).keep);
    assertKept(gopherRepetition(inside, onlyRep(`top${n}`)), `top ${n}-gram`);
    assertRemoved(gopherRepetition(outside, onlyRep(`top${n}`)), `gopher-repetition:top-${n}-gram`, (p.length * 6) / outside.length, threshold);
  }
  // A tie goes to the n-gram seen first: "aaa bb" and "cc dd" both occur twice, and the figure is
  // the first one's 6 characters × 2, not the second's 5 × 2.
  assertRemoved(gopherRepetition("aaa bb aaa bb cc dd cc dd", onlyRep("top2")), "gopher-repetition:top-2-gram", (6 * 2) / 25);
});

test("gopher-repetition: characters in repeated 5- to 10-grams at most 0.15 … 0.10", () => {
  const run = ["apple", "river", "stone", "cloud", "grass", "light", "water", "flame", "sound", "earth"];
  for (const [n, threshold] of GOPHER_REPETITION_DEFAULTS.dupNGrams) {
    const s = run.slice(0, n).join(" ");
    const make = (k: number): string => [fillers(0, 5).join(" "), s, fillers(5, 5).join(" "), s, ...fillers(10, k)].join(" ");
    const { inside, outside } = straddle(make, (t) => gopherRepetition(t, onlyRep(`dup${n}`)).keep);
    assertKept(gopherRepetition(inside, onlyRep(`dup${n}`)), `${n}-grams`);
    // The second run's words, without spaces (datatrove joins the words of these n-grams with "").
    assertRemoved(gopherRepetition(outside, onlyRep(`dup${n}`)), `gopher-repetition:dup-${n}-gram`, (5 * n) / outside.length, threshold!);
  }
  // Overlapping repeats count once: a word repeated 20 times has 15 repeated 5-grams after the first,
  // but the scan jumps past each, so 3 × 5 words count.
  const v = gopherRepetition(Array(20).fill("abc").join(" "), onlyRep("dup5"));
  assertRemoved(v, "gopher-repetition:dup-5-gram", (3 * 5 * 3) / 79);
});

// --- c4 ---

const c4With = (text: string, o: Partial<C4Options> = {}, dropped: C4DroppedLines = {}): RuleOutcome => c4(text, { ...C4_DEFAULTS, ...o }, dropped);
const FIVE = SENTENCES.slice(0, 5);

test("c4: at least 5 sentences in the kept lines", () => {
  assertKept(c4With(FIVE.join("\n")), "5 sentences on 5 lines");
  assertKept(c4With(FIVE.join(" ")), "5 sentences on 1 line");
  assertRemoved(c4With(FIVE.slice(0, 4).join("\n")), "c4:too-few-sentences", 4, 5);
  // Sentences on dropped lines do not count.
  assertRemoved(c4With([...FIVE.slice(0, 4), "Read more about it in our privacy policy."].join("\n")), "c4:too-few-sentences", 4, 5);
  assertKept(c4With(FIVE.slice(0, 3).join("\n"), { minSentences: 3 }), "3 sentences with minSentences 3");
});

test("c4: line rules drop lines, and the kept text is written without them", () => {
  const cases: [string, keyof C4DroppedLines][] = [
    ["Click here to read more", "no-terminal-punct"],
    ["And then they all went home...", "no-terminal-punct"],
    ["The end.", "too-few-words"],
    ["Please enable JavaScript to see this page.", "javascript"],
    ["By using this site you agree to our Terms of Use.", "policy"],
    ["We use cookies to improve your experience.", "policy"],
    ["Read our cookie policy.", "policy"],
    [`A ${"x".repeat(1001)} word.`, "too-long-word"],
  ];
  for (const [line, why] of cases) {
    const dropped: C4DroppedLines = {};
    const v = c4With([FIVE[0], line, ...FIVE.slice(1)].join("\n"), {}, dropped);
    assert.deepEqual(v, { keep: true, text: FIVE.join("\n") }, line);
    assert.deepEqual(dropped, { [why]: 1 }, line);
  }
  // Just inside: three words, a closing quote or apostrophe, a 1,000-character word.
  const kept = ["Then it rained.", 'She said "yes."', "It was the dogs'", `A ${"x".repeat(1000)} word.`];
  for (const line of kept) assert.deepEqual(c4With([line, ...FIVE].join("\n")), { keep: true }, line);
  // Lines are stripped; the word limits move.
  assert.deepEqual(c4With(["  " + FIVE[0] + "  ", ...FIVE.slice(1), "Two words."].join("\n"), { minWordsPerLine: 2 }), { keep: true, text: [...FIVE, "Two words."].join("\n") });
  assert.deepEqual(c4With([...FIVE, "A gigantic cat."].join("\n"), { maxWordLength: 7 }), { keep: true, text: FIVE.join("\n") });
});

test("c4: citation markers are removed; lorem ipsum and { remove the document", () => {
  assert.deepEqual(c4With([FIVE[0] + "[1]", FIVE[1] + "[citation needed]", FIVE[2] + "[edit]", FIVE[3] + "[]", FIVE[4]].join("\n")), { keep: true, text: FIVE.join("\n") });
  const lorem = c4With([...FIVE, "Lorem ipsum dolor sit amet."].join("\n"));
  assertRemoved(lorem, "c4:lorem-ipsum");
  assert.deepEqual((lorem as { detail?: unknown }).detail, { docLine: 6 });
  assertRemoved(c4With([FIVE[0], "Use the {braces} with care.", ...FIVE.slice(1)].join("\n")), "c4:curly-bracket");
  // As in datatrove, these document rules see only lines that survived the line rules before them.
  assertKept(c4With([...FIVE, "function f() { return 1 }"].join("\n")), "a { on a line without terminal punctuation");
  // Each rule can be switched off.
  assert.deepEqual(c4With([...FIVE, "Please enable JavaScript here."].join("\n"), { skip: ["javascript"] }), { keep: true });
  assertKept(c4With([...FIVE, "Lorem ipsum dolor sit amet."].join("\n"), { skip: ["lorem-ipsum"] }), "lorem-ipsum off");
  assertKept(c4With([...FIVE, "Use the {braces} with care."].join("\n"), { skip: ["curly-bracket"] }), "curly-bracket off");
  assert.deepEqual(c4With([...FIVE, "Click here now"].join("\n"), { skip: ["terminal-punct"] }), { keep: true });
  const cited = ["Once upon a time[1], a little fox lived near a quiet river.", ...FIVE.slice(1)].join("\n");
  assert.deepEqual(c4With(cited, { skip: ["citations"] }), { keep: true });
  assert.deepEqual(c4With(cited), { keep: true, text: FIVE.join("\n") });
  assertRemoved(c4With("Click here\nNo punctuation", { minSentences: null }), "c4:empty");
});

// --- fineweb ---

const fw = (text: string, o: Partial<FineWebOptions> = {}): RuleOutcome => fineweb(text, { ...FINEWEB_DEFAULTS, ...o });
/** A distinct line of 5 words and about 35 characters, without final punctuation. */
const lineN = (i: number): string => `${filler(i)} stories about the ${filler(i + 500)} river`;

test("fineweb: at least 12% of lines end in terminal punctuation", () => {
  const doc = (punct: number): string => Array.from({ length: 25 }, (_, i) => lineN(i) + (i < punct ? (i % 2 ? "!" : ".") : "")).join("\n");
  assertKept(fw(doc(3)), "3 of 25 lines");
  assertRemoved(fw(doc(2)), "fineweb:line-punct-ratio", 0.08, 0.12);
  assertRemoved(fw(doc(0)), "fineweb:line-punct-ratio", 0, 0.12);
  assertKept(fw(doc(0), { linePunctExcludeZero: true }), "no punctuation at all, excluded");
  // A closing quote is not terminal punctuation; "。" and "？" are.
  assertRemoved(fw('"Hi there, how are you," said the old man."\nHe smiled at everyone he met."'), "fineweb:line-punct-ratio", 0);
  assertKept(fw("這是一個很長很長的句子，它講述了一隻住在安靜小河邊的小狐狸每天早上的故事。\n這是另一個很長很長的句子，它講述了一隻住在安靜小河邊的小烏龜每天晚上的故事？"), "CJK stops");
});

test("fineweb: at most 67% short lines (≤ 30 characters)", () => {
  const short = (i: number): string => `The ${filler(i)} sat on a mat.`; // 21 characters
  const long = (i: number): string => lineN(i) + ".";
  assertKept(fw([short(0), short(1), long(2)].join("\n")), "2 of 3 short");
  assertRemoved(fw([short(0), short(1), short(2), long(3)].join("\n")), "fineweb:short-line-ratio", 0.75, 0.67);
  const exactly30 = "A line of exactly thirty char.";
  assert.equal(exactly30.length, 30);
  assertRemoved(fw([exactly30, short(1), short(2), long(3)].join("\n")), "fineweb:short-line-ratio", 0.75);
  assertKept(fw([exactly30.replace(".", "!!"), short(1), short(2), long(3)].join("\n")), "31 characters is not short");
  assertKept(fw([short(0), short(1), short(2), long(3)].join("\n"), { shortLineLength: 19 }), "short means ≤ 19");
});

test("fineweb: at most 1% of characters in repeated lines", () => {
  const repeated = "The fox ran home to sleep."; // 26 characters
  const make = (k: number): string => [repeated, ...Array.from({ length: k }, (_, i) => lineN(i) + "."), repeated].join("\n");
  const { inside, outside } = straddle(make, (t) => fw(t).keep, 1);
  assertKept(fw(inside), "repeated line within 1%");
  const chars = (t: string): number => t.replace(/\n/g, "").length;
  assert.ok(repeated.length / chars(inside) <= 0.01);
  assertRemoved(fw(outside), "fineweb:char-dup-ratio", repeated.length / chars(outside), 0.01);
});

test("fineweb: at most 0.3 line breaks per word", () => {
  // Long lines of two words and a period: 3 words a line.
  const line = (i: number): string => `Extraordinary${filler(i)} circumstances${filler(i + 100)}.`;
  const doc = (n: number): string => Array.from({ length: n }, (_, i) => line(i)).join("\n");
  assertKept(fw(doc(10)), "9 breaks, 30 words");
  assertRemoved(fw(doc(11)), "fineweb:new-line-ratio", 10 / 33, 0.3);
  assertRemoved(fw(" \n\n "), "fineweb:empty");
});

// --- language ---

test("language: a function-word heuristic tells English from other Latin-script languages", () => {
  const en = (t: string): RuleOutcome => languageCheck(t, { language: "en", ...LANGUAGE_DEFAULTS });
  assertKept(en(GOOD), "English");
  const de = "Es war einmal ein kleiner Fuchs, der an einem ruhigen Fluss lebte. Jeden Morgen ging er zu der alten Brücke und sah den Fischen zu.";
  const fr = "Il était une fois un petit renard qui vivait près d'une rivière tranquille. Chaque matin, il allait au vieux pont et regardait les poissons.";
  const es = "Había una vez un pequeño zorro que vivía cerca de un río tranquilo. Cada mañana caminaba hasta el viejo puente y miraba los peces.";
  for (const [text, lang] of [[de, "de"], [fr, "fr"], [es, "es"]]) {
    const v = en(text);
    assertRemoved(v, "language:other");
    assert.equal((v as { detail?: { likely?: string } }).detail?.likely, lang);
    assertKept(languageCheck(text, { language: lang, ...LANGUAGE_DEFAULTS }), lang);
  }
  assertRemoved(en("Жила-была маленькая лиса, которая жила у тихой реки."), "language:script", 0, 0.5);
  assertRemoved(en("1234 5678 90"), "language:no-letters");
  assertRemoved(en("apple banana cherry grape lemon mango melon peach plum"), "language:function-words", 0, 0.15);
  assertKept(languageCheck("apple banana cherry grape lemon mango melon peach plum", { language: "en", minLatinShare: 0.5, minFunctionWordShare: null }), "share off");
});

// --- the CLI ---

const docsFile = join(tmp, "docs.jsonl");
const records = [
  { id: "good", text: GOOD, score: 4 },
  { id: "lorem", text: GOOD + "\nLorem ipsum dolor sit amet, consectetur adipiscing elit." },
  { id: "tiny", text: "Once upon a time. The end. Bye now. Good night. Sleep well." },
  "not json",
  { id: "policy", text: GOOD + "\nThis website uses cookies to remember you." },
  // Five sentences of 31 words: only Gopher's 50-word minimum removes it.
  { id: "short", text: "The fox was sad and alone. She sat by the river to think. A turtle came with a smile. He carried her across the water. They became the best of friends." },
];
writeFileSync(docsFile, records.map((r) => (typeof r === "string" ? r : JSON.stringify(r))).join("\n") + "\n");
const readJsonl = (text: string): Record<string, unknown>[] => text.trim().split("\n").filter(Boolean).map((l) => JSON.parse(l));

test("bonsai data filter: kept records, --stats naming each removed one's rule and line, a malformed line skipped", () => {
  const out = join(tmp, "kept.jsonl"), stats = join(tmp, "removed.jsonl");
  const r = bonsai("data", "filter", docsFile, "--out", out, "--stats", stats, "--quiet");
  assert.equal(r.code, 0, r.stderr);
  const kept = readJsonl(readFileSync(out, "utf8"));
  assert.deepEqual(kept.map((k) => k.id), ["good", "policy"]);
  assert.deepEqual(kept[0], records[0]); // every field as it came
  assert.equal(kept[1].text, GOOD); // C4 dropped the cookie line
  const removed = readJsonl(readFileSync(stats, "utf8"));
  assert.deepEqual(removed.map((s) => [s.line, s.rule]), [[2, "c4:lorem-ipsum"], [3, "gopher-quality:word-count"], [6, "gopher-quality:word-count"]]);
  assert.deepEqual(removed[1], { line: 3, rule: "gopher-quality:word-count", value: 12, threshold: 50, bound: "min", flag: "--gopher-min-words" });
  assert.deepEqual(removed[0], { line: 2, rule: "c4:lorem-ipsum", flag: "--c4-skip", docLine: 7 });
  assert.match(r.stderr, /docs\.jsonl line 4: invalid JSON.*; skipped/);
  assert.match(r.stderr, /bonsai data filter: 5 read, 2 kept, 3 removed \(gopher-quality:word-count 2, c4:lorem-ipsum 1\), 1 malformed line skipped/);
  assert.match(r.stderr, /c4 dropped 1 line from 1 kept document \(policy 1\)/);
});

test("bonsai data filter: a threshold flag changes the outcome; off switches a rule off", () => {
  const run = (...flags: string[]): string[] => {
    const r = bonsai("data", "filter", docsFile, "--quiet", ...flags);
    assert.equal(r.code, 0, r.stderr);
    return readJsonl(r.stdout).map((k) => k.id as string);
  };
  assert.deepEqual(run(), ["good", "policy"]);
  assert.deepEqual(run("--gopher-min-words", "31"), ["good", "policy", "short"]);
  assert.deepEqual(run("--gopher-min-words", "32"), ["good", "policy"]);
  // Off, "tiny" (12 words) still goes: 12 of its 17 words have a letter.
  assert.deepEqual(run("--gopher-min-words", "off"), ["good", "policy", "short"]);
  assert.deepEqual(run("--gopher-min-words", "31", "--c4-min-sentences", "6"), ["good", "policy"]);
  assert.deepEqual(run("--c4-skip", "lorem-ipsum"), ["good", "lorem", "policy"]);
  assert.deepEqual(run("--rules", "fineweb"), ["good", "lorem", "tiny", "policy", "short"]);
  assert.deepEqual(run("--rules", "gopher-quality", "--gopher-min-stop-words", "7"), []);
});

test("bonsai data filter chains through stdin; stories keep their format; C4's rewrite is what the next step reads", () => {
  const stories = join(tmp, "stories.txt");
  writeFileSync(stories, [GOOD + "\nSubscribe to our newsletter", GOOD.replace(/\n/g, " ") + "\nRead our privacy policy today."].join("\n<|endoftext|>\n") + "\n");
  const first = spawnSync(process.execPath, [CLI, "data", "filter", stories, "--documents", "stories", "--rules", "c4", "--quiet"], { encoding: "utf8" });
  assert.equal(first.status, 0, first.stderr);
  assert.equal(first.stdout, `${GOOD}\n<|endoftext|>\n${GOOD.replace(/\n/g, " ")}\n<|endoftext|>\n`);
  const stats = join(tmp, "chain-stats.jsonl");
  const second = spawnSync(process.execPath, [CLI, "data", "filter", "-", "--documents", "stories", "--rules", "fineweb", "--stats", stats, "--quiet"], { input: first.stdout, encoding: "utf8" });
  assert.equal(second.status, 0, second.stderr);
  // FineWeb keeps both: six long punctuated lines, and one.
  assert.equal(second.stdout, first.stdout);
  assert.match(second.stderr, /bonsai data filter: 2 read, 2 kept, 0 removed/);
  // Through stdin again, a line rule that removes: the six lines are short when 200 characters are.
  const third = spawnSync(process.execPath, [CLI, "data", "filter", "-", "--documents", "stories", "--rules", "fineweb", "--fineweb-short-line-length", "200", "--stats", stats, "--quiet"], { input: first.stdout, encoding: "utf8" });
  assert.equal(third.status, 0, third.stderr);
  assert.equal(third.stdout, `${GOOD.replace(/\n/g, " ")}\n<|endoftext|>\n`);
  assert.deepEqual(readJsonl(readFileSync(stats, "utf8")), [{ line: 1, rule: "fineweb:short-line-ratio", value: 1, threshold: 0.67, flag: "--fineweb-short-line-ratio" }]);
});

test("bonsai data filter --min-score keeps records whose score is high enough; --language", () => {
  const file = join(tmp, "scored.jsonl"), stats = join(tmp, "scored-stats.jsonl");
  const rows = [{ text: GOOD, score: 3 }, { text: GOOD, score: 2.5 }, { text: GOOD }, { text: GOOD, score: "high" }, { text: GOOD, quality: 5 }];
  writeFileSync(file, rows.map((r) => JSON.stringify(r)).join("\n") + "\n");
  const r = bonsai("data", "filter", file, "--rules", "none", "--min-score", "3", "--stats", stats, "--quiet");
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(readJsonl(r.stdout), [rows[0]]);
  assert.deepEqual(readJsonl(readFileSync(stats, "utf8")).map((s) => s.rule), ["min-score:below", "min-score:missing", "min-score:missing", "min-score:missing"]);
  const q = bonsai("data", "filter", file, "--rules", "none", "--min-score", "4", "--score-field", "quality", "--quiet");
  assert.deepEqual(readJsonl(q.stdout), [rows[4]]);
  assertOneLineError(bonsai("data", "filter", file, "--documents", "lines", "--min-score", "1"), /--min-score reads a JSONL field/);

  const mixed = join(tmp, "languages.jsonl");
  writeFileSync(mixed, [GOOD, "Il était une fois un petit renard qui vivait près d'une rivière tranquille, et chaque matin il allait au pont."].map((text) => JSON.stringify({ text })).join("\n") + "\n");
  const l = bonsai("data", "filter", mixed, "--rules", "none", "--language", "en", "--stats", stats, "--quiet");
  assert.equal(l.code, 0, l.stderr);
  assert.deepEqual(readJsonl(l.stdout).map((k) => k.text), [GOOD]);
  const [fr] = readJsonl(readFileSync(stats, "utf8"));
  assert.equal(fr.rule, "language:other");
  assert.equal(fr.likely, "fr");
});

test("bonsai data filter: bad flags and --strict are one-line errors; --help lists every threshold", () => {
  assertOneLineError(bonsai("data", "filter", docsFile, "--rules", "gopher,c4"), /--rules: unknown rule "gopher"/);
  assertOneLineError(bonsai("data", "filter", docsFile, "--gopher-min-words", "many"), /--gopher-min-words must be a number \(got "many"\)/);
  assertOneLineError(bonsai("data", "filter", docsFile, "--fineweb-new-line-ratio=-1"), /--fineweb-new-line-ratio must be >= 0/);
  assertOneLineError(bonsai("data", "filter", docsFile, "--c4-skip", "bananas"), /--c4-skip: unknown rule "bananas"/);
  assertOneLineError(bonsai("data", "filter", docsFile, "--language", "xx"), /--language must be one of en, de/);
  assertOneLineError(bonsai("data", "filter", docsFile, "--rules", "none"), /nothing to do/);
  assertOneLineError(bonsai("data", "filter", docsFile, "--strict", "--quiet"), /docs\.jsonl line 4: invalid JSON/);
  const help = bonsai("data", "filter", "--help");
  assert.equal(help.code, 0);
  for (const flag of ["--gopher-min-words", "--gopher-min-alpha-words-ratio", "--repetition-top-3-gram", "--repetition-dup-10-gram", "--c4-min-sentences", "--fineweb-line-punct-ratio", "--fineweb-new-line-ratio", "--language", "--min-score", "--stats"])
    assert.ok(help.stdout.includes(flag), flag);
  assert.match(help.stdout, /not fastText's/);
});

// --- real text ---

test("on real TinyStories, each rule family removes what its definitions imply for clean, simple stories", (t) => {
  if (!existsSync(TINYSTORIES)) return t.skip("../shared/data absent (tinystories-2MiB.txt)");
  const stories = splitDocuments(readFileSync(TINYSTORIES, "utf8"), "stories").slice(0, -1).map((d) => d.text); // the last is cut
  const options: FilterOptions = { ...FILTER_DEFAULTS, language: { language: "en", ...LANGUAGE_DEFAULTS } };
  const families = ["gopher-quality", "gopher-repetition", "c4", "fineweb", "language"] as const;
  const removed: Record<string, number> = {};
  const byRule: Record<string, number> = {};
  // Story by story, so the families share the story's words (words.ts keeps the last text's).
  for (const s of stories) {
    for (const family of families) {
      const o: FilterOptions = family === "language" ? { ...options, rules: [] } : { ...options, rules: [family], language: null };
      const v = filterText(s, o);
      if (!v.keep) (removed[family] = (removed[family] ?? 0) + 1), (byRule[v.rule] = (byRule[v.rule] ?? 0) + 1);
    }
  }
  const fraction = Object.fromEntries(families.map((f) => [f, (removed[f] ?? 0) / stories.length])) as Record<(typeof families)[number], number>;
  const pct = (x: number): string => `${(100 * x).toFixed(2)}%`;
  t.diagnostic(`${stories.length} stories; removed: ${Object.entries(fraction).map(([k, v]) => `${k} ${pct(v)}`).join(", ")}`);
  t.diagnostic(`by rule: ${Object.entries(byRule).sort((a, b) => b[1] - a[1]).map(([k, v]) => `${k} ${pct(v / stories.length)}`).join(", ")}`);
  // Stories of 100–300 words in plain prose, one per paragraph: repetition, C4's line rules and the
  // language check must pass almost all of them.
  assert.ok(fraction["gopher-repetition"] < 0.05, pct(fraction["gopher-repetition"]));
  assert.ok(fraction.c4 < 0.05, pct(fraction.c4));
  assert.ok(fraction.language < 0.01, pct(fraction.language));
  // FineWeb's line-punctuation rule counts a line ending in a closing quote as unpunctuated, so
  // stories whose every paragraph ends in dialogue go; few do.
  assert.ok(fraction.fineweb < 0.05, pct(fraction.fineweb));
  // Gopher: words, lengths, symbols and stop words pass nearly everything; the alphabetic-word rule
  // counts punctuation marks as words (spaCy tokens), so dialogue-heavy stories fall under 80% —
  // some must, and most must not.
  const gopherOther = Object.entries(byRule).filter(([k]) => k.startsWith("gopher-quality:") && k !== "gopher-quality:alpha-words").reduce((s, [, n]) => s + n, 0);
  assert.ok(gopherOther / stories.length < 0.01, `gopher-quality other than alpha-words: ${pct(gopherOther / stories.length)}`);
  const alpha = (byRule["gopher-quality:alpha-words"] ?? 0) / stories.length;
  assert.ok(alpha > 0.01 && alpha < 0.3, `gopher-quality:alpha-words ${pct(alpha)}`);
});
