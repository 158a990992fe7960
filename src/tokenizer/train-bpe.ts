// Tokenizer trainers: byte-level BPE (GPT-2; Hugging Face tokenizers' BpeTrainer, minbpe's
// RegexTokenizer) and SentencePiece BPE with byte fallback in Llama's layout. Both split the
// corpus into words, count the distinct ones, and run one merge loop over them (learnMerges).
//
// The merge loop is HF tokenizers' algorithm: pair counts are kept incrementally, a heap orders
// the pairs, and an index from each pair to the words that contain it means a merge only
// revisits those words. A word is re-counted whole (its old pairs subtracted, its new pairs
// added), which is simple and exactly what recounting every pair of the corpus would give.
// Heap entries go stale when a count drops; they are re-checked when they reach the top.
//
// Tie rules (both deterministic, both documented where the trainers are):
// - byte-level: the highest count, then the smallest (left id, right id), where the 256 byte
//   symbols have GPT-2's vocabulary order and merged tokens follow in creation order (HF's rule);
// - SentencePiece: the highest count, then the shorter merged piece (in characters), then the
//   smaller piece in code point order (SentencePiece's bpe_model_trainer rule).
//
// A merge whose result spells an existing token reuses that token's id instead of adding a
// duplicate (as HF does): "abc" from (ab, c) and from (a, bc) is one token with two merges.
//
// Checked outside the test suite against tokenizers 0.23.2 (BpeTrainer, ByteLevel, documents
// given apart) and sentencepiece 0.2.2 (model_type bpe, byte_fallback, identity normalisation,
// remove_extra_whitespaces off): identical merges and pieces, scores included, on the corpora of
// ../shared/data at vocabulary sizes 2000 to 8192.

import { BYTE_CHARS, ByteBpeTokenizer, PRE_TOKENIZER_NAMES, preTokenize, preTokenizerRegExps } from "./byte-bpe.js";
import { SpmTokenizer, TokenType } from "./spm.js";

/** Ids stay below 2^24, so `left * PAIR_SHIFT + right` is an exact double below 2^53. */
const PAIR_SHIFT = 2 ** 24;

/** One learned merge: `left` + `right` → `id` (ids index the symbol table). */
export type Merge = readonly [left: number, right: number, id: number];

/** How a trainer constrains and orders pairs. */
export interface PairRules {
  /** Whether the pair may become a token (pairs that may not are never counted). */
  canMerge(left: number, right: number): boolean;
  /** For two pairs of equal count: whether pair `a` is merged before pair `b` (pair keys). */
  before(a: number, b: number): boolean;
  /** Called when a new symbol id is created by a merge (for per-symbol tables). */
  onNewSymbol?(id: number, left: number, right: number): void;
}

/** Binary max-heap of (count, pair key) entries, ordered by count and then by `before`. */
class PairHeap {
  private readonly counts: number[] = [];
  private readonly keys: number[] = [];

  constructor(private readonly before: (a: number, b: number) => boolean) {}

  get size(): number {
    return this.keys.length;
  }

  private higher(i: number, j: number): boolean {
    const ci = this.counts[i]!, cj = this.counts[j]!;
    return ci > cj || (ci === cj && this.before(this.keys[i]!, this.keys[j]!));
  }

  private swap(i: number, j: number): void {
    const c = this.counts[i]!, k = this.keys[i]!;
    this.counts[i] = this.counts[j]!;
    this.keys[i] = this.keys[j]!;
    this.counts[j] = c;
    this.keys[j] = k;
  }

  push(count: number, key: number): void {
    this.counts.push(count);
    this.keys.push(key);
    for (let i = this.keys.length - 1; i > 0; ) {
      const parent = (i - 1) >> 1;
      if (!this.higher(i, parent)) break;
      this.swap(i, parent);
      i = parent;
    }
  }

  /** Removes the top entry; returns its [count, key]. */
  pop(): [number, number] {
    const top: [number, number] = [this.counts[0]!, this.keys[0]!];
    const last = this.keys.length - 1;
    this.swap(0, last);
    this.counts.pop();
    this.keys.pop();
    for (let i = 0; ; ) {
      const l = 2 * i + 1, r = l + 1;
      let best = i;
      if (l < last && this.higher(l, best)) best = l;
      if (r < last && this.higher(r, best)) best = r;
      if (best === i) break;
      this.swap(i, best);
      i = best;
    }
    return top;
  }
}

/** `word` with every non-overlapping (left, right), scanned left to right, replaced by `id`. */
function mergeWord(word: readonly number[], left: number, right: number, id: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < word.length; i++) {
    if (i + 1 < word.length && word[i] === left && word[i + 1] === right) {
      out.push(id);
      i++;
    } else out.push(word[i]!);
  }
  return out;
}

/**
 * Learns merges over distinct `words` (symbol-id sequences) with frequencies `freqs` until
 * `target` new symbols exist or no pair is left. `symbols` holds each id's text and grows with
 * the new ones; `words` is rewritten in place. Returns the merges in training order.
 */
export function learnMerges(words: number[][], freqs: readonly number[], symbols: string[], target: number, rules: PairRules): Merge[] {
  const ids = new Map<string, number>();
  symbols.forEach((s, i) => { if (!ids.has(s)) ids.set(s, i); });
  const counts = new Map<number, number>();
  const where = new Map<number, number[]>(); // pair → words that contain (or once contained) it
  const note = (key: number, w: number): void => {
    let list = where.get(key);
    if (list === undefined) where.set(key, (list = []));
    if (list[list.length - 1] !== w) list.push(w); // words are visited one at a time
  };
  /** Adds `sign × freq` for every mergeable pair of `word` to `into`. */
  const countPairs = (word: readonly number[], amount: number, into: Map<number, number>): void => {
    for (let i = 0; i + 1 < word.length; i++) {
      const a = word[i]!, b = word[i + 1]!;
      if (!rules.canMerge(a, b)) continue;
      const key = a * PAIR_SHIFT + b;
      into.set(key, (into.get(key) ?? 0) + amount);
    }
  };

  for (let w = 0; w < words.length; w++) {
    countPairs(words[w]!, freqs[w]!, counts);
    const word = words[w]!;
    for (let i = 0; i + 1 < word.length; i++)
      if (rules.canMerge(word[i]!, word[i + 1]!)) note(word[i]! * PAIR_SHIFT + word[i + 1]!, w);
  }
  const heap = new PairHeap(rules.before);
  for (const [key, count] of counts) heap.push(count, key);

  const merges: Merge[] = [];
  let created = 0;
  while (created < target) {
    const key = popBest(heap, counts);
    if (key < 0) break;
    const left = Math.floor(key / PAIR_SHIFT), right = key - left * PAIR_SHIFT;
    const text = symbols[left]! + symbols[right]!;
    let id = ids.get(text);
    if (id === undefined) {
      id = symbols.length;
      if (id >= PAIR_SHIFT) throw new Error(`BPE training: more than ${PAIR_SHIFT} symbols`);
      symbols.push(text);
      ids.set(text, id);
      rules.onNewSymbol?.(id, left, right);
      created++;
    }
    merges.push([left, right, id]);

    const deltas = new Map<number, number>();
    for (const w of where.get(key)!) {
      const word = words[w]!;
      let found = false;
      for (let i = 0; i + 1 < word.length && !found; i++) found = word[i] === left && word[i + 1] === right;
      if (!found) continue; // an earlier merge consumed it
      const merged = mergeWord(word, left, right, id);
      words[w] = merged;
      countPairs(word, -freqs[w]!, deltas);
      countPairs(merged, freqs[w]!, deltas);
      for (let i = 0; i + 1 < merged.length; i++) {
        const a = merged[i]!, b = merged[i + 1]!;
        if ((a === id || b === id) && rules.canMerge(a, b)) note(a * PAIR_SHIFT + b, w);
      }
    }
    where.delete(key);
    for (const [k, d] of deltas) {
      if (d === 0) continue;
      const c = (counts.get(k) ?? 0) + d;
      if (c > 0) counts.set(k, c);
      else counts.delete(k);
      // Only increases need an entry now; a decreased count is corrected when it surfaces.
      if (d > 0) heap.push(c, k);
    }
  }
  return merges;
}

/** The best pair with a live count, or -1. Stale entries are dropped or re-queued. */
function popBest(heap: PairHeap, counts: Map<number, number>): number {
  while (heap.size > 0) {
    const [count, key] = heap.pop();
    const current = counts.get(key) ?? 0;
    if (current === count) return key;
    // Counts only drop between increases, and every increase pushed a fresh entry: an entry
    // below the current count is superseded, one above it is re-queued at the current count.
    if (current > 0 && current < count) heap.push(current, key);
  }
  return -1;
}

// ---------------------------------------------------------------------------------------------
// Byte-level BPE (GPT-2)

export interface ByteLevelBpeOptions {
  /** Pre-tokenizer name (one of byte-bpe.ts's PRE_TOKENIZER_NAMES, llama.cpp's names). Default "gpt-2". */
  pre?: string;
  /** Tokens never merged and never trained on; they end the vocabulary. Default ["<|endoftext|>"]. */
  specialTokens?: string[];
}

/** What a byte-level BPE tokenizer is built from. */
export interface ByteLevelBpeModel {
  /** Token id → GPT-2 byte-unicode string: the 256 bytes, merged tokens, then the specials. */
  vocab: string[];
  /** Merges in rank order. */
  merges: [string, string][];
  pre: string;
  /** The special tokens, also the last `specials.length` entries of `vocab`. */
  specials: string[];
}

/** The pieces of `text` between occurrences of any of `separators` (the longest first). */
function splitAtSeparators(text: string, separators: readonly string[]): string[] {
  if (separators.length === 0) return [text];
  const escaped = [...separators].sort((a, b) => b.length - a.length).map((s) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"));
  return text.split(new RegExp(escaped.join("|"), "u"));
}

/** Distinct words of `chunks` under `pattern` with their counts, in first-seen order. */
/** Words are cut exactly as ByteBpeTokenizer cuts them when encoding. */
function countWords(chunks: readonly string[], re: RegExp[]): Map<string, number> {
  const counts = new Map<string, number>();
  for (const chunk of chunks) for (const w of preTokenize(chunk, re)) counts.set(w, (counts.get(w) ?? 0) + 1);
  return counts;
}

/**
 * Trains GPT-2-style byte-level BPE to `vocabSize` tokens (256 bytes + merges + specials).
 * The text is cut at special tokens, each piece split by the pre-tokenizer pattern, and merges
 * are learned within words only. Ties go to the pair with the smallest (left id, right id),
 * byte ids in GPT-2's order ("!" = 0 … "~", "¡" …, then the unprintable bytes), merged tokens
 * after them in creation order — Hugging Face tokenizers' BpeTrainer rule.
 * Stops early when no pair is left (then the vocabulary is smaller).
 */
export function trainByteLevelBpe(text: string, vocabSize: number, opts: ByteLevelBpeOptions = {}): ByteLevelBpeModel {
  const pre = opts.pre ?? "gpt-2";
  const specials = opts.specialTokens ?? ["<|endoftext|>"];
  const pattern = preTokenizerRegExps(pre);
  if (pattern === undefined) throw new Error(`unknown pre-tokenizer "${pre}" (known: ${PRE_TOKENIZER_NAMES.join(", ")})`);
  const target = vocabSize - 256 - specials.length;
  if (!Number.isInteger(vocabSize) || target < 0) throw new Error(`vocab size must be an integer >= ${256 + specials.length} (256 bytes + ${specials.length} special tokens), got ${vocabSize}`);

  // Ids 0..255 are the bytes in GPT-2's vocabulary order, which is code point order of their chars.
  const symbols = [...BYTE_CHARS].sort();
  const idOfByte = BYTE_CHARS.map((c) => symbols.indexOf(c));

  const encoder = new TextEncoder();
  const words: number[][] = [];
  const freqs: number[] = [];
  for (const [word, count] of countWords(splitAtSeparators(text, specials), pattern)) {
    words.push(Array.from(encoder.encode(word), (b) => idOfByte[b]!));
    freqs.push(count);
  }
  const merges = learnMerges(words, freqs, symbols, target, {
    canMerge: () => true,
    before: (a, b) => a < b, // a pair key orders exactly as (left, right)
  });
  for (const s of specials) if (symbols.includes(s)) throw new Error(`special token ${JSON.stringify(s)} is also a learned token`);
  return {
    vocab: [...symbols, ...specials],
    merges: merges.map(([l, r]) => [symbols[l]!, symbols[r]!]),
    pre,
    specials: [...specials],
  };
}

// ---------------------------------------------------------------------------------------------
// SentencePiece BPE with byte fallback (Llama's layout)

/** SentencePiece's whitespace symbol. */
export const SPM_SPACE = "\u2581";

export interface SpmBpeOptions {
  /** Fraction of the corpus's characters the initial pieces must cover; rarer ones are left to byte fallback. Default 0.9995 (SentencePiece's default). */
  characterCoverage?: number;
  /** Longest piece, in characters. Default 16. */
  maxPieceLength?: number;
  /** Pieces never mix Unicode scripts (Latin, Common punctuation and digits, Han/kana, …). Default true. */
  splitByScript?: boolean;
  /** Digits are pieces of their own (Llama's setting). Default false (SentencePiece's default). */
  splitDigits?: boolean;
  /** Document separators removed from the text before training (each acts as a line break). Default ["<|endoftext|>"]. */
  separators?: string[];
}

/** What a SentencePiece BPE tokenizer is built from, in llama.cpp's layout. */
export interface SpmBpeModel {
  /** 0 <unk>, 1 <s>, 2 </s>, 3..258 <0x00>..<0xFF>, then the merged pieces, then single characters. */
  pieces: string[];
  /** 0 for the meta and byte pieces; −k for the k-th learned piece (merges in training order, then characters by frequency). */
  scores: number[];
  /** TokenType of each piece (llama.cpp's numbering). */
  types: number[];
}

/** Scripts told apart when pieces may not mix scripts; everything else shares one class. */
const SCRIPTS = [
  "Latin", "Greek", "Cyrillic", "Armenian", "Hebrew", "Arabic", "Syriac", "Thaana", "Devanagari", "Bengali",
  "Gurmukhi", "Gujarati", "Oriya", "Tamil", "Telugu", "Kannada", "Malayalam", "Sinhala", "Thai", "Lao",
  "Tibetan", "Myanmar", "Georgian", "Hangul", "Ethiopic", "Cherokee", "Khmer", "Mongolian", "Bopomofo",
  "Han", "Common", "Inherited",
].map((name) => new RegExp(`^\\p{Script=${name}}$`, "u"));
const HAN = SCRIPTS.findIndex((re) => re.source.includes("=Han}"));

/** SentencePiece's script class of a character: kana and the prolonged sound mark count as Han. */
function scriptOf(ch: string): number {
  if (/^[\p{Script=Hiragana}\p{Script=Katakana}\u30fc]$/u.test(ch)) return HAN;
  const i = SCRIPTS.findIndex((re) => re.test(ch));
  return i < 0 ? SCRIPTS.length : i;
}

/** Code point order (UTF-8 byte order), which differs from `<` on UTF-16 for astral characters. */
function codePointLess(a: string, b: string): boolean {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.codePointAt(i)!, y = b.codePointAt(i)!;
    if (x !== y) return x < y;
    if (x > 0xffff) i++;
  }
  return a.length < b.length;
}

/**
 * Words of each line normalised as SentencePiece does with Llama's settings (identity rule, no
 * whitespace removal): a leading ▁, spaces → ▁; a "\r" stays, as in SentencePiece's getline.
 * Unlike SentencePiece, long lines (over max_sentence_length bytes) are kept, not skipped.
 */
function spmWords(text: string, separators: readonly string[]): Map<string, number> {
  const counts = new Map<string, number>();
  for (const chunk of splitAtSeparators(text, separators))
    for (let line of chunk.split("\n")) {
      // SentencePiece replaces meta pieces in the input by spaces so they are not learned.
      line = line.replace(/<unk>|<s>|<\/s>/g, " ");
      if (line === "") continue;
      // Words start at each ▁: "▁▁foo" is "▁" and "▁foo".
      for (const m of (SPM_SPACE + line.replaceAll(" ", SPM_SPACE)).matchAll(/\u2581[^\u2581]*/g))
        counts.set(m[0], (counts.get(m[0]) ?? 0) + 1);
    }
  return counts;
}

/**
 * Trains SentencePiece-style BPE to `vocabSize` pieces in Llama's layout (3 meta pieces, 256
 * byte pieces, learned pieces, the characters). Each line gets a leading ▁ and its spaces become
 * ▁; words start at each ▁ and merges stay within words. Characters covering
 * `characterCoverage` of the text are the initial pieces; rarer ones block merges and are
 * encoded by byte fallback. A merged piece is at most `maxPieceLength` characters, has ▁ only
 * first, and (by default) one script. Ties go to the shorter piece, then the smaller in code
 * point order. Merged piece k scores −k, so an encoder merging the highest score first (llama.cpp)
 * replays training order; the characters come last with lower scores.
 */
export function trainSpmBpe(text: string, vocabSize: number, opts: SpmBpeOptions = {}): SpmBpeModel {
  const coverage = opts.characterCoverage ?? 0.9995;
  const maxLength = opts.maxPieceLength ?? 16;
  const splitByScript = opts.splitByScript ?? true;
  const splitDigits = opts.splitDigits ?? false;
  const wordCounts = spmWords(text, opts.separators ?? ["<|endoftext|>"]);

  // Characters by frequency (ties: code point order), kept until the coverage is reached.
  const charCounts = new Map<string, number>();
  let total = 0;
  for (const [word, count] of wordCounts)
    for (const ch of word) {
      charCounts.set(ch, (charCounts.get(ch) ?? 0) + count);
      total += count;
    }
  const ranked = [...charCounts].sort((a, b) => b[1] - a[1] || (codePointLess(a[0], b[0]) ? -1 : a[0] === b[0] ? 0 : 1));
  const chars: string[] = [];
  let covered = 0;
  for (const [ch, count] of ranked) {
    if (covered / total >= coverage) break;
    chars.push(ch);
    covered += count;
  }
  const metaCount = 3 + 256;
  const target = vocabSize - metaCount - chars.length;
  if (!Number.isInteger(vocabSize) || target < 0)
    throw new Error(`vocab size must be an integer >= ${metaCount + chars.length} (3 meta pieces, 256 bytes, ${chars.length} characters), got ${vocabSize}`);

  // Symbols: the kept characters, then one "unknown" symbol that never merges, then merged pieces.
  const symbols = [...chars, ""];
  const unknown = chars.length;
  const idOfChar = new Map(chars.map((c, i) => [c, i]));
  const length: number[] = chars.map(() => 1);
  length.push(0);
  const hasSpace: boolean[] = chars.map((c) => c === SPM_SPACE);
  hasSpace.push(false);
  const hasDigit: boolean[] = chars.map((c) => c >= "0" && c <= "9"); // SentencePiece's is_number
  hasDigit.push(false);
  /** Script class of a piece, or -1 for a piece that is only ▁ (it joins any script). */
  const script: number[] = chars.map((c) => (c === SPM_SPACE ? -1 : scriptOf(c)));
  script.push(-1);

  const words: number[][] = [];
  const freqs: number[] = [];
  for (const [word, count] of wordCounts) {
    words.push(Array.from(word, (ch) => idOfChar.get(ch) ?? unknown));
    freqs.push(count);
  }
  learnMerges(words, freqs, symbols, target, {
    canMerge(a, b) {
      if (a === unknown || b === unknown) return false;
      if (length[a]! + length[b]! > maxLength) return false;
      if (hasSpace[b]) return false; // ▁ only as a prefix
      if (splitDigits && (hasDigit[a] || hasDigit[b])) return false;
      return !splitByScript || script[a] === -1 || script[b] === -1 || script[a] === script[b];
    },
    before(x, y) {
      const xl = Math.floor(x / PAIR_SHIFT), xr = x - xl * PAIR_SHIFT;
      const yl = Math.floor(y / PAIR_SHIFT), yr = y - yl * PAIR_SHIFT;
      const lx = length[xl]! + length[xr]!, ly = length[yl]! + length[yr]!;
      if (lx !== ly) return lx < ly;
      return codePointLess(symbols[xl]! + symbols[xr]!, symbols[yl]! + symbols[yr]!);
    },
    onNewSymbol(id, a, b) {
      length[id] = length[a]! + length[b]!;
      hasSpace[id] = hasSpace[a]!;
      hasDigit[id] = hasDigit[a]! || hasDigit[b]!;
      script[id] = script[a] === -1 ? script[b]! : script[a]!;
    },
  });

  const learned = [...symbols.slice(unknown + 1), ...chars];
  const pieces = ["<unk>", "<s>", "</s>"];
  const types: number[] = [TokenType.UNKNOWN, TokenType.CONTROL, TokenType.CONTROL];
  for (let b = 0; b < 256; b++) {
    pieces.push(`<0x${b.toString(16).toUpperCase().padStart(2, "0")}>`);
    types.push(TokenType.BYTE);
  }
  const scores: number[] = pieces.map(() => 0);
  learned.forEach((p, k) => {
    pieces.push(p);
    scores.push(0 - k); // not -0 for the first
    types.push(TokenType.NORMAL);
  });
  return { pieces, scores, types };
}

// ---------------------------------------------------------------------------------------------
// Trained tokenizers

export type TrainTokenizerOptions =
  | ({ type: "bytelevel-bpe"; vocabSize: number } & ByteLevelBpeOptions)
  | ({ type: "spm-bpe"; vocabSize: number } & SpmBpeOptions);

/** A byte-level BPE tokenizer from trained data: specials are control tokens, the first is BOS and EOS (GPT-2's convention). */
export function byteLevelBpeTokenizer(m: ByteLevelBpeModel): ByteBpeTokenizer {
  const first = m.specials.length > 0 ? m.vocab.length - m.specials.length : null;
  return new ByteBpeTokenizer({
    tokens: m.vocab,
    types: m.vocab.map((_, id) => (first !== null && id >= first ? TokenType.CONTROL : TokenType.NORMAL)),
    merges: m.merges,
    pre: m.pre,
    bosId: first,
    eosId: first,
    addBos: false,
  });
}

/** A SentencePiece tokenizer from trained data, with Llama's settings: BOS added, dummy prefix. */
export function spmBpeTokenizer(m: SpmBpeModel): SpmTokenizer {
  return new SpmTokenizer({ tokens: m.pieces, scores: m.scores, types: m.types, unkId: 0, bosId: 1, eosId: 2, addBos: true, addEos: false, addSpacePrefix: true });
}

/** Trains a tokenizer of the given type on `text`. */
export function trainTokenizer(text: string, opts: TrainTokenizerOptions): ByteBpeTokenizer | SpmTokenizer {
  if (opts.type === "bytelevel-bpe") return byteLevelBpeTokenizer(trainByteLevelBpe(text, opts.vocabSize, opts));
  if (opts.type === "spm-bpe") return spmBpeTokenizer(trainSpmBpe(text, opts.vocabSize, opts));
  throw new Error(`unknown tokenizer type "${(opts as { type: unknown }).type}" (known: bytelevel-bpe, spm-bpe)`);
}
