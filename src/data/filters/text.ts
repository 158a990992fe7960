// The string semantics the filters are defined in. datatrove's filters are Python: len() counts
// code points, str.strip()/split()/splitlines() have their own whitespace and line-break sets, and
// its punctuation sets (datatrove/utils/text.py: PUNCTUATION, TERMINAL_PUNCTUATION) decide what a
// "symbol word" and a "terminal punctuation mark" are. The same definitions here, so a figure
// computed in TypeScript is the figure datatrove computes on the same words.

/** Python's str.isspace() characters (JavaScript's \s lacks \x1c-\x1f and \x85, and adds \ufeff). */
const SPACE = "\\t\\n\\v\\f\\r\\x1c-\\x20\\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000";
const LEADING_SPACE = new RegExp(`^[${SPACE}]+`, "u");
const TRAILING_SPACE = new RegExp(`[${SPACE}]+$`, "u");
const SPACE_RUN = new RegExp(`[${SPACE}]+`, "u");
/** Python's str.splitlines() boundaries. */
const LINE_BREAK = /\r\n|[\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029]/u;

/** Python's len(): code points, not UTF-16 units. */
export function pyLen(s: string): number {
  let n = s.length;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0xd800 && c < 0xdc00) n--; // a high surrogate: this and the next unit are one code point
  }
  return n;
}

/** Python's str.strip(), lstrip(), rstrip() (no arguments). */
export const pyStrip = (s: string): string => s.replace(LEADING_SPACE, "").replace(TRAILING_SPACE, "");
export const pyLstrip = (s: string): string => s.replace(LEADING_SPACE, "");
export const pyRstrip = (s: string): string => s.replace(TRAILING_SPACE, "");

/** Python's str.split() with no separator: runs of whitespace split, no empty pieces. */
export function pySplit(s: string): string[] {
  const t = pyStrip(s);
  return t === "" ? [] : t.split(SPACE_RUN);
}

/** Python's str.splitlines(): every line break, no line for a final break, [] for "". */
export function pySplitLines(s: string): string[] {
  if (s === "") return [];
  const lines = s.split(LINE_BREAK);
  if (lines[lines.length - 1] === "") lines.pop();
  return lines;
}

/** Non-overlapping occurrences of `needle`, as Python's str.count. */
export function countOf(s: string, needle: string): number {
  let n = 0;
  for (let i = s.indexOf(needle); i >= 0; i = s.indexOf(needle, i + needle.length)) n++;
  return n;
}

// datatrove's PUNCTUATION: every ASCII punctuation character, some typographic ones, CJK
// brackets and stops, full-width forms (the full-width digit one, "１", among them), and the C0/C1
// control characters other than tab and newline.
const PUNCTUATION_CHARS =
  "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~" + // ASCII
  "´«»–—’“”„…∶━►" + // typographic
  "、。〈〉《》「」【】" + // CJK
  "！％（），．１：；？～"; // full-width
const CONTROL = (c: number): boolean => (c >= 0 && c <= 8) || c === 11 || c === 12 || (c >= 13 && c <= 31) || (c >= 127 && c <= 159);
const PUNCTUATION = new Set([...PUNCTUATION_CHARS]);

/**
 * datatrove's TERMINAL_PUNCTUATION is Unicode's Sentence_Terminal set (as of its Unicode version)
 * plus three Khmer signs; the engine's Unicode version may add a few rare characters.
 */
const TERMINAL = /^(?:\p{Sentence_Terminal}|[\u17d6\u17d9\u17da])$/u;

/** A character of datatrove's TERMINAL_PUNCTUATION: the stop characters of FineWeb's line rule. */
export const isTerminalPunctuation = (ch: string): boolean => TERMINAL.test(ch);

/** A character of datatrove's PUNCTUATION_SET (PUNCTUATION ∪ TERMINAL_PUNCTUATION). */
export function isPunctuationChar(ch: string): boolean {
  return PUNCTUATION.has(ch) || CONTROL(ch.codePointAt(0)!) || TERMINAL.test(ch);
}

/** A word with a character outside the punctuation set: what Gopher counts as a word. */
export function isNonSymbolWord(w: string): boolean {
  for (const ch of w) if (!isPunctuationChar(ch)) return true;
  return false;
}

/** The last code point of `s` ("" for ""). */
export function lastChar(s: string): string {
  if (s === "") return "";
  const c = s.charCodeAt(s.length - 1);
  return c >= 0xdc00 && c < 0xe000 && s.length > 1 ? s.slice(-2) : s.slice(-1);
}
