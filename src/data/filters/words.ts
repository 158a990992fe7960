// Words and sentences as datatrove sees English. datatrove's split_into_words and
// split_into_sentences run spaCy's blank "en" pipeline (a rule-based tokenizer and the
// "sentencizer"); this is that tokenizer's algorithm, written from spaCy's rules
// (spacy/lang/punctuation.py, spacy/lang/en/punctuation.py, spacy/lang/en/tokenizer_exceptions.py,
// spacy/tokenizer.pyx; spaCy at f69c32f): split on whitespace; take a whole chunk that is a
// special case (a contraction such as "don't" → "do" "n't", an abbreviation such as "Mr.");
// otherwise peel prefixes (opening punctuation, quotes, currency) and suffixes (closing punctuation,
// "'s", a period after a lower-case letter or two capitals, units after a number) until none is
// left or the rest is a special case; keep a URL whole; split the rest at infixes (hyphens between
// letters, "...", a comma between letters, a period between a lower-case and an upper-case letter).
//
// Where it differs from spaCy: letter classes are Unicode properties (\p{L}, \p{Ll}, \p{Lu}) where
// spaCy lists script ranges, and its "other symbols" list is \p{So}; its second pass, which puts
// back special cases that the affix rules split ("Mr" "." → "Mr."), runs within a chunk, longest
// first from the left; the emoticon and US-state exceptions are a subset; whitespace runs are never
// tokens (datatrove strips them anyway); a URL is recognised only in chunks up to 4,096 characters
// (spaCy's pattern backtracks badly on longer ones). spaCy's own tokenizer tests pass
// (test/data-filter.test.ts has them).

import { pySplit } from "./text.js";

// --- character classes (spacy/lang/char_classes.py) ---
/** `s` as a literal, outside a character class and (escaped) inside one. */
const esc = (s: string): string => s.replace(/[\\^$.*+?()[\]{}|/]/g, "\\$&");
const escClass = (s: string): string => s.replace(/[\\^\]\[-]/g, "\\$&");
const alt = (items: string[]): string => items.join("|");
/** Punctuation that is a prefix and a suffix ("…" and "……" among them). */
const PUNCT = ["…", "……", ",", ":", ";", "!", "?", "¿", "؟", "¡", "(", ")", "[", "]", "{", "}", "<", ">", "_", "#", "*", "&", "。", "？", "！", "，", "、", "；", "：", "～", "·", "।", "،", "۔", "؛", "٪"];
const QUOTES = ["'", '"', "”", "“", "`", "‘", "´", "’", "‚", ",", "„", "»", "«", "「", "」", "『", "』", "（", "）", "〔", "〕", "【", "】", "《", "》", "〈", "〉", "\u2329", "\u232a", "⟦", "⟧"];
const CURRENCY = ["$", "£", "€", "¥", "฿", "US$", "C$", "A$", "₽", "﷼", "₴", "₠", "₡", "₢", "₣", "₤", "₥", "₦", "₧", "₨", "₩", "₪", "₫", "₭", "₮", "₯", "₰", "₱", "₲", "₳", "₵", "₶", "₷", "₸", "₹", "₺", "₻", "₼", "₾", "₿"];
const UNITS = (
  "km km² km³ m m² m³ dm dm² dm³ cm cm² cm³ mm mm² mm³ ha µm nm yd in ft kg g mg µg t lb oz m/s km/h kmh mph hPa Pa mbar mb MB kb KB gb GB tb TB T G M K % " +
  "км км² км³ м м² м³ дм дм² дм³ см см² см³ мм мм² мм³ нм кг г мг м/с км/ч кПа Па мбар Кб КБ кб Мб МБ мб Гб ГБ гб Тб ТБ тб"
).split(" ");
const HYPHENS = ["-", "–", "—", "--", "---", "——", "~"];
const ELLIPSES = "\\.\\.+|…";
const ICONS = "\\p{So}";
const QUOTE_CLASS = escClass(QUOTES.join(""));
// The class of characters after which a final "." is split off. spaCy builds it by pasting its
// punctuation alternation ("…|……|,|…") and "(?:quotes)" into a character class, so "|", "(", "?", ":"
// and ")" are in it too.
const BEFORE_FINAL_PERIOD = `[0-9\\p{Ll}%²\\-+${escClass(PUNCT.join(""))}|(?:)${QUOTE_CLASS}]`;

const PREFIX = new RegExp(
  "^(?:" + alt(["§", "%", "=", "—", "–", "\\+(?![0-9])", ...PUNCT.map(esc), ELLIPSES, ...QUOTES.map(esc), ...CURRENCY.map(esc), ICONS]) + ")",
  "u",
);
const SUFFIX = new RegExp(
  "(?:" +
    alt([
      ...PUNCT.map(esc), ELLIPSES, ...QUOTES.map(esc), ICONS, "'s", "'S", "’s", "’S", "—", "–",
      "(?<=[0-9])\\+",
      "(?<=°[FfCcKk])\\.",
      `(?<=[0-9])(?:${alt(CURRENCY.map(esc))})`,
      `(?<=[0-9])(?:${alt(UNITS.map(esc))})`,
      `(?<=${BEFORE_FINAL_PERIOD})\\.`,
      "(?<=\\p{Lu}\\p{Lu})\\.",
    ]) +
    ")$",
  "u",
);
const INFIX = new RegExp(
  alt([
    ELLIPSES, ICONS,
    "(?<=[0-9])[+\\-*^](?=[0-9-])",
    `(?<=[\\p{Ll}${QUOTE_CLASS}])\\.(?=[\\p{Lu}${QUOTE_CLASS}])`,
    "(?<=\\p{L}),(?=\\p{L})",
    `(?<=[\\p{L}0-9])(?:${alt(HYPHENS.map(esc))})(?=\\p{L})`,
    "(?<=[\\p{L}0-9])[:<>=/](?=\\p{L})",
  ]),
  "gu",
);
// spaCy's URL_MATCH (spacy/lang/tokenizer_exceptions.py) without its IP-address branch.
const HOST = "[A-Za-z0-9\\u00a1-\\uffff]";
const URL = new RegExp(
  `^(?:[\\p{L}\\p{N}_+\\-.]{2,}://)?(?:\\S+(?::\\S*)?@)?(?:(?:${HOST}[A-Za-z0-9\\u00a1-\\uffff_-]{0,62})?${HOST}\\.)+\\p{Ll}{2,63}(?::\\d{2,5})?(?:[/?#]\\S*)?$`,
  "u",
);
const URL_NO_AT = new RegExp(URL.source.replace("(?:\\S+(?::\\S*)?@)?", ""), "u");
const isUrl = (s: string): boolean => s.length <= 4096 && /\.\p{Ll}/u.test(s) && (s.includes("@") ? URL : URL_NO_AT).test(s);

// --- special cases (spacy/lang/en/tokenizer_exceptions.py and the base ones) ---
const SPECIAL = new Map<string, string[]>();
const title = (w: string): string => w.charAt(0).toUpperCase() + w.slice(1);
function special(pieces: string[]): void {
  SPECIAL.set(pieces.join(""), pieces);
}
for (const orth of ["i", "I"]) {
  special([orth, "'m"]), special([orth, "m"]), special([orth, "'m", "a"]), special([orth, "m", "a"]);
}
const pronouns: [string, string[]][] = [
  ["i", ["'ll", "ll", "'d", "d", "'ve", "ve"]],
  ["you", ["'ll", "ll", "'d", "d", "'ve", "ve", "'re", "re"]],
  ["he", ["'ll", "ll", "'d", "d", "'s", "s"]],
  ["she", ["'ll", "ll", "'d", "d", "'s", "s"]],
  ["it", ["'ll", "ll", "'d", "d", "'s", "s"]],
  ["we", ["'ll", "ll", "'d", "d", "'ve", "ve", "'re", "re"]],
  ["they", ["'ll", "ll", "'d", "d", "'ve", "ve", "'re", "re"]],
];
for (const [word, tails] of pronouns) {
  for (const orth of [word, title(word)]) {
    for (const t of tails) special([orth, t]);
    special([orth, "'ll", "'ve"]), special([orth, "ll", "ve"]), special([orth, "'d", "'ve"]), special([orth, "d", "ve"]);
  }
}
for (const word of ["who", "what", "when", "where", "why", "how", "there", "that", "this", "these", "those"]) {
  const singular = word === "that" || word === "this", plural = word === "these" || word === "those";
  for (const orth of [word, title(word)]) {
    if (!plural) special([orth, "'s"]), special([orth, "s"]);
    special([orth, "'ll"]), special([orth, "ll"]), special([orth, "'ll", "'ve"]), special([orth, "ll", "ve"]);
    if (!singular) special([orth, "'re"]), special([orth, "re"]), special([orth, "'ve"]), special([orth, "ve"]);
    special([orth, "'d"]), special([orth, "d"]), special([orth, "'d", "'ve"]), special([orth, "d", "ve"]);
  }
}
for (const verb of ["ca", "could", "do", "does", "did", "had", "may", "might", "must", "need", "ought", "sha", "should", "wo", "would"]) {
  for (const orth of [verb, title(verb)]) special([orth, "n't"]), special([orth, "nt"]), special([orth, "n't", "'ve"]), special([orth, "nt", "ve"]);
}
for (const verb of ["could", "might", "must", "should", "would"]) for (const orth of [verb, title(verb)]) special([orth, "'ve"]), special([orth, "ve"]);
for (const verb of ["ai", "are", "is", "was", "were", "have", "has", "dare"]) for (const orth of [verb, title(verb)]) special([orth, "n't"]), special([orth, "nt"]);
for (const w of ["doin", "goin", "nothin", "nuthin", "ol", "somethin", "lovin", "havin"]) for (const orth of [w, title(w)]) special([orth]), special([orth + "'"]);
for (const w of ["em", "ll", "nuff"]) special([w]), special(["'" + w]);
for (let h = 1; h <= 12; h++) for (const p of ["a.m.", "am", "p.m.", "pm"]) special([String(h), p]);
for (const [a, b] of [["y'", "all"], ["y", "all"], ["not", "'ve"], ["not", "ve"], ["Not", "'ve"], ["Not", "ve"], ["can", "not"], ["Can", "not"],
  ["gon", "na"], ["Gon", "na"], ["got", "ta"], ["Got", "ta"], ["let", "'s"], ["Let", "'s"], ["c'm", "on"], ["C'm", "on"]]) special([a, b]);
special(["how", "'d", "'y"]), special(["How", "'d", "'y"]);
for (let c = 0x61; c <= 0x7a; c++) special([String.fromCharCode(c) + "."]);
for (const orth of [
  "'", "''", "C++", "ä.", "ö.", "ü.", "'S", "'s", "\u2018S", "\u2018s", "and/or", "w/o", "'re", "'d", "'Cause", "'cause", "'cos", "'Cos", "'coz", "'Coz",
  "'cuz", "'Cuz", "'bout", "ma'am", "Ma'am", "o'clock", "O'clock",
  // abbreviations
  "a.m.", "p.m.", "Adm.", "Bros.", "co.", "Co.", "Corp.", "D.C.", "Dr.", "e.g.", "E.g.", "E.G.", "Gen.", "Gov.", "i.e.", "I.e.", "I.E.", "Inc.", "Jr.",
  "Ltd.", "Md.", "Messrs.", "Mo.", "Mont.", "Mr.", "Mrs.", "Ms.", "Ph.D.", "Prof.", "Rep.", "Rev.", "Sen.", "St.", "vs.", "v.s.", "Mt.",
  "Jan.", "Feb.", "Mar.", "Apr.", "Jun.", "Jul.", "Aug.", "Sep.", "Sept.", "Oct.", "Nov.", "Dec.",
  "Calif.", "Fla.", "Mass.", "Mich.", "N.Y.", "N.J.", "N.C.", "Pa.", "Va.", "Wash.",
  // emoticons (a few of spaCy's)
  ":)", ":-)", ":(", ":-(", ";)", ";-)", ":D", ":-D", ":P", ":-P", ":p", ":/", ":|", "<3", "^_^", "-_-", "o_O", "O_o", "xD", "XD",
]) special([orth]);
// spaCy drops these from the generated ones: they are words ("ill", "well", "shed"…).
for (const w of ["Ill", "ill", "Its", "its", "Hell", "hell", "Shell", "shell", "Shed", "shed", "were", "Were", "Well", "well", "Whore", "whore"]) SPECIAL.delete(w);
// And every case with "'" also with "’".
for (const [k, v] of [...SPECIAL]) if (k.includes("'")) SPECIAL.set(k.replaceAll("'", "’"), v.map((p) => p.replaceAll("'", "’")));

function prefixLength(s: string): number {
  return PREFIX.exec(s)?.[0].length ?? 0;
}
function suffixLength(s: string): number {
  return SUFFIX.exec(s)?.[0].length ?? 0;
}

/**
 * The tokens of one whitespace-free chunk, appended to `out`; `specials` false tokenizes by the
 * affix rules alone (how spaCy finds the token runs a special case may have been split into).
 */
function tokenizeChunk(chunk: string, out: string[], specials = true): void {
  const isSpecial = (s: string): boolean => specials && SPECIAL.has(s);
  const whole = specials ? SPECIAL.get(chunk) : undefined;
  if (whole) {
    out.push(...whole);
    return;
  }
  const first = out.length;
  const prefixes: string[] = [], suffixes: string[] = [];
  let s = chunk, lastLength = -1;
  while (s !== "" && s.length !== lastLength) {
    if (isSpecial(s)) break;
    lastLength = s.length;
    const pre = prefixLength(s);
    if (pre > 0 && isSpecial(s.slice(pre))) {
      prefixes.push(s.slice(0, pre));
      s = s.slice(pre);
      break;
    }
    const suf = suffixLength(s.slice(pre));
    if (suf > 0 && s.length > suf && isSpecial(s.slice(0, s.length - suf))) {
      suffixes.push(s.slice(s.length - suf));
      s = s.slice(0, s.length - suf);
      break;
    }
    if (pre > 0 && suf > 0) {
      prefixes.push(s.slice(0, pre));
      suffixes.push(s.slice(s.length - suf));
      s = s.slice(pre, s.length - suf);
    } else if (pre > 0) {
      prefixes.push(s.slice(0, pre));
      s = s.slice(pre);
    } else if (suf > 0) {
      suffixes.push(s.slice(s.length - suf));
      s = s.slice(0, s.length - suf);
    }
  }
  out.push(...prefixes);
  if (s !== "") {
    const sp = specials ? SPECIAL.get(s) : undefined;
    if (sp) out.push(...sp);
    else if (isUrl(s)) out.push(s);
    else splitInfixes(s, out);
  }
  for (let i = suffixes.length - 1; i >= 0; i--) out.push(suffixes[i]);
  if (specials && out.length - first > 1) mergeSpecialRuns(out, first);
}

// spaCy's second pass: a run of tokens that the affix rules made of a special case ("Mr" "."
// after an infix split, "'" "'") becomes the special case's tokens. Keyed by the run's tokens.
const RUNS = new Map<string, string[]>();
let longestRun = 0;
for (const [key, pieces] of SPECIAL) {
  const run: string[] = [];
  tokenizeChunk(key, run, false);
  if (run.length > 1 && run.join("\0") !== pieces.join("\0")) {
    RUNS.set(run.join("\0"), pieces);
    longestRun = Math.max(longestRun, run.length);
  }
}

/** Replace special-case runs in out[from…], longest first, left to right. */
function mergeSpecialRuns(out: string[], from: number): void {
  const tokens = out.splice(from);
  for (let i = 0; i < tokens.length; ) {
    let merged = false;
    for (let n = Math.min(longestRun, tokens.length - i); n >= 2 && !merged; n--) {
      const pieces = RUNS.get(tokens.slice(i, i + n).join("\0"));
      if (pieces) {
        out.push(...pieces);
        i += n;
        merged = true;
      }
    }
    if (!merged) out.push(tokens[i++]);
  }
}

/** `s` split at its infixes; an infix at the very start is not split off. */
function splitInfixes(s: string, out: string[]): void {
  let start = 0;
  for (const m of s.matchAll(INFIX)) {
    const a = m.index!, b = a + m[0].length;
    if (a === 0) continue;
    if (a !== start) out.push(s.slice(start, a));
    if (b !== a) out.push(s.slice(a, b));
    start = b;
  }
  if (start < s.length) out.push(s.slice(start));
}

let cachedText: string | null = null;
let cachedWords: string[] = [];

/**
 * datatrove's split_into_words for English: spaCy's tokens, whitespace dropped. Punctuation marks
 * are words of their own ("Hi," → "Hi" ","), so ratios over "words" count them. The last text's
 * words are kept, since several rules ask for the same document's.
 */
export function splitWords(text: string): string[] {
  if (text !== cachedText) {
    cachedWords = tokenize(text);
    cachedText = text;
  }
  return cachedWords;
}

// A chunk of ASCII letters has no affix, infix or URL in it: only a special case could split it.
const PLAIN = /^[A-Za-z]+$/;

function tokenize(text: string): string[] {
  const out: string[] = [];
  for (const chunk of pySplit(text)) {
    if (PLAIN.test(chunk) && !SPECIAL.has(chunk)) out.push(chunk);
    else tokenizeChunk(chunk, out);
  }
  return out;
}

const ALL_PUNCT = /^\p{P}+$/u;
const SENTENCE_END = /^\p{Sentence_Terminal}$/u;

/**
 * The sentences of `text` as spaCy's sentencizer counts them: a token that is one sentence-final
 * character (".", "!", "?", "。" …) ends a sentence, which closes at the next token that is not
 * punctuation (so a closing quote stays with it); "..." and "…" end none.
 */
export function countSentences(text: string): number {
  const tokens = tokenize(text);
  if (tokens.length === 0) return 0;
  let n = 1, seenEnd = false;
  for (const t of tokens) {
    const end = SENTENCE_END.test(t);
    if (seenEnd && !end && !ALL_PUNCT.test(t)) {
      n++;
      seenEnd = false;
    } else if (end) seenEnd = true;
  }
  return n;
}
