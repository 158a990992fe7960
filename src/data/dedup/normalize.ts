// The normalised text deduplication compares: the exact hash is taken of it, and MinHash's word
// n-grams are cut from it. It follows datatrove 0.10.0's simplify_text with its default
// TextNormConfig (src/datatrove/utils/text.py), so that documents differing only in case,
// spacing, punctuation, numbers or accents count as the same:
//   1. Unicode NFKC (compatibility forms fold: fullwidth "Ａ１" → "A1", "ﬁ" → "fi", "²" → "2");
//   2. lower case (String.prototype.toLowerCase: locale-independent);
//   3. every number → "0": a run of decimal digits of any script, with at most one decimal
//      separator inside (datatrove's NUMBERS_PATTERN: "3.14", "1,000" and "٣" are each "0");
//   4. format characters (soft hyphen, zero-width space and joiners, BOM: \p{Cf}) deleted;
//   5. punctuation, symbols and control characters → a space (\p{P}, \p{S}, \p{Cc});
//   6. accents removed: NFD, combining marks (\p{Mn}) dropped, NFC again ("café" → "cafe");
//   7. whitespace runs → one space, none at either end.
// The words are then the text split at its spaces (datatrove splits English with NLTK's word
// tokenizer, which on text already without punctuation is the same split).
//
// Where it deviates from datatrove: step 1 (datatrove has no NFKC, so there "Ａ" and "A" differ);
// step 4 (datatrove leaves format characters inside words); step 5 takes Unicode's punctuation
// and symbol classes, where datatrove lists ASCII punctuation and a set of CJK and fullwidth marks
// (so here "©", "€" and emoji separate words too); and digits of every script count (datatrove's
// \p{Nd} too, but after lower-casing only). Text that is ASCII to begin with skips the Unicode
// steps, which leave it unchanged. NORMALIZE_VERSION names this definition in the binary files
// of the staged pipeline: a file made by another version is refused rather than silently
// compared with the wrong text.

export const NORMALIZE_VERSION = 1;

const NUMBER = /\p{Nd}+(?:[.,،٫⎖⎗⎘]\p{Nd}+)?/gu;
const FORMAT = /\p{Cf}/gu;
const PUNCTUATION = /[\p{P}\p{S}\p{Cc}]/gu;
const COMBINING = /\p{Mn}/gu;
const WHITESPACE = /\s+/gu;
const ASCII_NUMBER = /[0-9]+(?:[.,][0-9]+)?/g;
const ASCII_PUNCTUATION = /[\x00-\x1f\x21-\x2f\x3a-\x40\x5b-\x60\x7b-\x7f]/g;
const ASCII_WHITESPACE = /\s+/g;
const NON_ASCII = /[^\x00-\x7f]/;

/** The normalised form of `text` (see the header). */
export function normalizeText(text: string): string {
  if (!NON_ASCII.test(text)) {
    return text.toLowerCase().replace(ASCII_NUMBER, "0").replace(ASCII_PUNCTUATION, " ").replace(ASCII_WHITESPACE, " ").trim();
  }
  let t = text.normalize("NFKC").toLowerCase();
  t = t.replace(NUMBER, "0").replace(FORMAT, "").replace(PUNCTUATION, " ");
  t = t.normalize("NFD").replace(COMBINING, "").normalize("NFC");
  return t.replace(WHITESPACE, " ").trim();
}

/** The words of normalised text. */
export function normalizedWords(text: string): string[] {
  const t = normalizeText(text);
  return t === "" ? [] : t.split(" ");
}
