// GPT-2's byte-level BPE as llama.cpp runs it (llama-vocab.cpp, llm_tokenizer_bpe_session; unicode.cpp):
// - special tokens split the text first (as in spm.ts: user-defined always, control and unknown
//   only with parseSpecial);
// - a pre-tokenizer, chosen by GGUF's tokenizer.ggml.pre, cuts each fragment into words with a
//   sequence of regexes: each one splits every piece left by the previous one, and the text
//   between matches stays a piece of its own;
// - each word's UTF-8 bytes are written as GPT-2's byte-to-unicode characters ("Ġ" for a space),
//   then merged: repeatedly the adjacent pair with the lowest merge rank, the leftmost on ties;
// - a final symbol that is no token is dropped byte by byte, except ASCII characters that are
//   tokens (llama.cpp's fallback: GPT-2's vocabulary has every byte, so this never happens there).
// Regexes are llama.cpp's strings run by JavaScript's engine (ECMAScript syntax, like the
// std::regex llama.cpp falls back to) with "\s" spelled out as llama.cpp's Unicode White_Space
// list: JavaScript's \s would also match U+FEFF and miss U+0085.

import type { Tokenizer } from "./tokenizer.js";
import { mergePairs } from "./bpe-merge.js";
import { type DetokenizeOptions, type SpecialEncodeOptions, TokenType, specialTokens, splitOnSpecials } from "./special-tokens.js";

// ---- GPT-2's bytes ↔ unicode map ---------------------------------------------------------------

/** Byte b is written as BYTE_CHARS[b]: printable Latin-1 stays itself, the rest go to U+0100 onwards. */
export const BYTE_CHARS: readonly string[] = (() => {
  const out: string[] = new Array(256);
  let n = 0;
  for (let b = 0; b < 256; b++) {
    const printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
    out[b] = String.fromCharCode(printable ? b : 256 + n++);
  }
  return out;
})();

const CHAR_BYTES = new Map<string, number>(BYTE_CHARS.map((c, b) => [c, b]));

/** The byte-level form of a text: its UTF-8 bytes as BYTE_CHARS. */
export function toByteChars(text: string): string {
  let s = "";
  for (const b of ENCODER.encode(text)) s += BYTE_CHARS[b];
  return s;
}

/** The bytes a byte-level string stands for, or null if a character is not one of BYTE_CHARS. */
export function fromByteChars(s: string): Uint8Array | null {
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) {
    const b = CHAR_BYTES.get(s[i]!);
    if (b === undefined) return null;
    out[i] = b;
  }
  return out;
}

// ---- pre-tokenizers ------------------------------------------------------------------------------

const GPT2 = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
// Llama 3's "(?i:'s|…)" written without (?i:), as llama.cpp does.
const LLAMA3 = "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const QWEN2 = "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const GPT2_NO_TAIL = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)";
// Written with escapes from Ὗ (U+1F5F) on: many of those letters have canonical equivalents, and
// an editor that normalizes to NFC would silently change the ranges.
const DEEPSEEK_LLM_LETTERS =
  "\\s?[A-Za-zµÀ-ÖØ-öø-ƺƼ-ƿǄ-ʓʕ-ʯͰ-ͳͶͷͻ-ͽͿΆΈ-ΊΌΎ-ΡΣ-ϵϷ-ҁҊ-ԯԱ-ՖႠ-ჅᎠ-Ᏽᏸ-ᏽᲐ-ᲺᲽ-Ჿᴀ-ᴫᵫ-ᵷᵹ-ᶚḀ-ἕἘ-Ἕἠ-ὅὈ-Ὅὐ-ὗὙὛὝ" +
  "\u1F5F-\u1F7D\u1F80-\u1FB4\u1FB6-\u1FBC\u1FBE\u1FC2-\u1FC4\u1FC6-\u1FCC\u1FD0-\u1FD3\u1FD6-\u1FDB\u1FE0-\u1FEC" +
  "\u1FF2-\u1FF4\u1FF6-\u1FFC\u2102\u2107\u210A-\u2113\u2115\u2119-\u211D\u2124\u2126\u2128\u212A-\u212D" +
  "\u212F-\u2134\u2139\u213C-\u213F\u2145-\u2149\u214E\u2183\u2184" +
  "Ⰰ-ⱻⱾ-ⳤⳫ-ⳮⳲⳳꙀ-ꙭꚀ-ꚛꜢ-ꝯꝱ-ꞇꞋ-ꞎꭰ-ꮿﬀ-ﬆﬓ-ﬗＡ-Ｚａ-ｚ𐐀-𐑏𐒰-𐓓𐓘-𐓻𐲀-𐲲𐳀-𐳲𑢠-𑣟𞤀-𞥃]+";

interface PreTokenizer {
  regexes: string[];
  /** A word that is a token is that token, merges or not (llama.cpp's ignore_merges). */
  ignoreMerges?: boolean;
  /** llama.cpp's detokenize tidies spaces before punctuation (HF's clean_up_tokenization_spaces). */
  cleanSpaces?: boolean;
  /** Whether the vocabulary adds BOS when GGUF does not say. */
  addBos?: boolean;
}

const GPT2_PRE: PreTokenizer = { regexes: [GPT2] };
const LLAMA3_PRE: PreTokenizer = { regexes: [LLAMA3], ignoreMerges: true, addBos: true };
const STARCODER_REGEXES = ["\\p{N}", GPT2_NO_TAIL];
const QWEN2_REGEXES = [QWEN2];
const PORO_REGEXES = [" ?[^(\\s|.,!?…。，、।۔،)]+"];

/** llama.cpp's pre-tokenizers by tokenizer.ggml.pre name (llm_tokenizer_bpe; llama_vocab::impl::load). */
const PRE_TOKENIZERS: Record<string, PreTokenizer> = {
  default: { regexes: ["[\\p{P}\\$\\+<=>\\^~\\|]+", GPT2_NO_TAIL, "\\p{N}+", "[0-9][0-9][0-9]"] },
  "gpt-2": GPT2_PRE,
  mpt: GPT2_PRE,
  olmo: GPT2_PRE,
  "phi-2": GPT2_PRE,
  jais: GPT2_PRE,
  "roberta-bpe": GPT2_PRE,
  // GPT-NeoX's tokenizer.json uses GPT-2's ByteLevel regex (llama.cpp has no "gpt-neox" name).
  "gpt-neox": GPT2_PRE,
  "llama-bpe": LLAMA3_PRE,
  llama3: LLAMA3_PRE,
  "llama-v3": LLAMA3_PRE,
  falcon3: LLAMA3_PRE,
  dbrx: { regexes: [LLAMA3] },
  "smaug-bpe": { regexes: [LLAMA3] },
  falcon: { regexes: ["[\\p{P}\\$\\+<=>\\^~\\|`]+", GPT2_NO_TAIL, "[0-9][0-9][0-9]"] },
  starcoder: { regexes: STARCODER_REGEXES },
  refact: { regexes: STARCODER_REGEXES },
  codeshell: { regexes: STARCODER_REGEXES },
  exaone: { regexes: STARCODER_REGEXES },
  "command-r": { regexes: STARCODER_REGEXES, cleanSpaces: false },
  smollm: { regexes: STARCODER_REGEXES, cleanSpaces: false },
  "deepseek-llm": {
    regexes: ["[\r\n]", DEEPSEEK_LLM_LETTERS, "\\s?[!-/:-~！-／：-～‘-‟　-。]+", "\\s+$", "[一-龥ࠀ-一가-퟿]+", "\\p{N}+"],
    cleanSpaces: false,
  },
  "deepseek-coder": { regexes: ["[\r\n]", "\\s?\\p{L}+", "\\s?\\p{P}+", "[一-龥ࠀ-一가-퟿]+", "\\p{N}"], cleanSpaces: false },
  qwen2: { regexes: QWEN2_REGEXES, cleanSpaces: false },
  "deepseek-r1-qwen": { regexes: QWEN2_REGEXES, cleanSpaces: false },
  stablelm2: { regexes: QWEN2_REGEXES },
  "poro-chat": { regexes: PORO_REGEXES, cleanSpaces: false },
  bloom: { regexes: PORO_REGEXES },
  "gpt3-finnish": { regexes: PORO_REGEXES },
};

export const PRE_TOKENIZER_NAMES: readonly string[] = Object.keys(PRE_TOKENIZERS);

/** The regexes (llama.cpp's spelling) of a pre-tokenizer name, or undefined for an unknown name. */
export function preTokenizerRegexes(name: string): readonly string[] | undefined {
  return PRE_TOKENIZERS[name]?.regexes;
}

/** The pre-tokenizer's regexes compiled for preTokenize, or undefined for an unknown name. */
export function preTokenizerRegExps(name: string): RegExp[] | undefined {
  return PRE_TOKENIZERS[name]?.regexes.map(toJsRegex);
}

/** Whether llama.cpp's ignore_merges applies to the pre-tokenizer name. */
export function preTokenizerIgnoresMerges(name: string): boolean {
  return !!PRE_TOKENIZERS[name]?.ignoreMerges;
}

// Original (?i:) spellings of regexes llama.cpp rewrote, as tokenizer.json files hold them.
const ORIGINAL_SPELLINGS = new Map<string, string>([
  ["(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+", LLAMA3],
  ["(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+", QWEN2],
]);

/**
 * A pre-tokenizer name whose regex sequence is `regexes`, preferring one with the given
 * ignore_merges (names sharing regexes differ only in llama.cpp's flags), or undefined.
 */
export function preTokenizerName(regexes: readonly string[], ignoreMerges = false): string | undefined {
  const want = regexes.map((r) => ORIGINAL_SPELLINGS.get(r) ?? r);
  const matches = PRE_TOKENIZER_NAMES.filter((name) => {
    const have = PRE_TOKENIZERS[name]!.regexes;
    return have.length === want.length && have.every((r, i) => r === want[i]);
  });
  return matches.find((name) => !!PRE_TOKENIZERS[name]!.ignoreMerges === ignoreMerges) ?? matches[0];
}

/** llama.cpp's \s: Unicode White_Space (unicode-data.cpp's unicode_ranges_whitespace). */
const WHITESPACE = "\\t-\\r \\x85\\xA0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000";

/** A llama.cpp regex string as a JavaScript RegExp ("\s"/"\S" spelled out, see the file comment). */
function toJsRegex(src: string): RegExp {
  let out = "";
  let inClass = false;
  for (let i = 0; i < src.length; i++) {
    const c = src[i]!;
    if (c === "\\") {
      const d = src[++i]!;
      if (d === "s") out += inClass ? WHITESPACE : `[${WHITESPACE}]`;
      else if (d === "S" && !inClass) out += `[^${WHITESPACE}]`;
      else out += c + d;
      continue;
    }
    if (c === "[") inClass = true;
    else if (c === "]") inClass = false;
    out += c;
  }
  return new RegExp(out, "gu");
}

/** Split `text` into words with the regex sequence (unicode_regex_split's offsets, as strings). */
export function preTokenize(text: string, regexes: readonly RegExp[]): string[] {
  let pieces = [text];
  for (const re of regexes) {
    const out: string[] = [];
    for (const p of pieces) {
      let at = 0;
      for (const m of p.matchAll(re)) {
        if (m[0] === "") continue;
        if (m.index! > at) out.push(p.slice(at, m.index));
        out.push(m[0]);
        at = m.index! + m[0].length;
      }
      if (at < p.length) out.push(p.slice(at));
    }
    pieces = out;
  }
  return pieces;
}

// ---- the tokenizer --------------------------------------------------------------------------------

export interface ByteBpeVocab {
  /** Token texts: byte-level form for normal tokens, plain text for special and user-defined ones. */
  tokens: string[];
  types: ArrayLike<number>;
  /** Merges in rank order, "left right" (GGUF, old tokenizer.json) or [left, right]. */
  merges: readonly (string | readonly [string, string])[];
  /** GGUF's tokenizer.ggml.pre name. */
  pre: string;
  bosId: number | null;
  eosId: number | null;
  unkId?: number | null;
  padId?: number | null;
  /** Default: the pre-tokenizer's (true for llama-bpe), else false. */
  addBos?: boolean;
  addEos?: boolean;
}

export interface ByteBpeTokenizerJSON {
  type: "byte-bpe";
  tokens: string[];
  types: number[];
  merges: [string, string][];
  pre: string;
  bosId: number | null;
  eosId: number | null;
  unkId: number | null;
  padId: number | null;
  addBos: boolean;
  addEos: boolean;
}

const WORD_CACHE_SIZE = 1 << 16;
const ENCODER = new TextEncoder();
const EMPTY = new Uint8Array(0);

function fail(msg: string): never {
  throw new Error(`byte-level BPE tokenizer: ${msg}`);
}

/** A string from a file, quoted on one line for a message (JSON.stringify leaves U+2028/9 as they are). */
function quote(s: string): string {
  return JSON.stringify(s.length > 80 ? `${s.slice(0, 80)}…` : s).replace(/\u2028/g, "\\u2028").replace(/\u2029/g, "\\u2029");
}

/** "left right" → [left, right], split at the first space after the first character as llama.cpp does. */
export function splitMerge(m: string | readonly [string, string]): [string, string] {
  if (typeof m !== "string") return [m[0], m[1]];
  const at = m.indexOf(" ", 1);
  if (at < 0) fail(`merge ${quote(m)} has no space`);
  return [m.slice(0, at), m.slice(at + 1)];
}

export class ByteBpeTokenizer implements Tokenizer {
  readonly kind = "byte-bpe";
  readonly tokens: readonly string[];
  readonly types: Uint8Array;
  readonly merges: readonly [string, string][];
  readonly pre: string;
  readonly bosId: number | null;
  readonly eosId: number | null;
  readonly unkId: number | null;
  readonly padId: number | null;
  readonly addBos: boolean;
  readonly addEos: boolean;
  private readonly preTokenizer: PreTokenizer;
  private readonly regexes: RegExp[];
  /** Token text → id; the last id wins when a text repeats, as in llama.cpp. */
  private readonly lookup = new Map<string, number>();
  /** left → right → rank; the first of repeated merges wins. */
  private readonly ranks = new Map<string, Map<string, number>>();
  /** Special tokens matched in text with parseSpecial, and the user-defined ones matched always. */
  private readonly specials: { id: number; text: string; type: number }[];
  private readonly userDefined: { id: number; text: string; type: number }[];
  private readonly words = new Map<string, readonly number[]>();

  constructor(v: ByteBpeVocab) {
    const n = v.tokens.length;
    if (v.types.length !== n) fail(`${n} tokens but ${v.types.length} types`);
    const pre = PRE_TOKENIZERS[v.pre];
    if (pre === undefined) fail(`unknown pre-tokenizer ${quote(String(v.pre))} (known: ${PRE_TOKENIZER_NAMES.join(", ")})`);
    for (const [name, id] of [["bos", v.bosId], ["eos", v.eosId], ["unk", v.unkId ?? null], ["pad", v.padId ?? null]] as const)
      if (id !== null && (!Number.isInteger(id) || id < 0 || id >= n)) fail(`${name} id ${id} is outside the vocabulary (size ${n})`);
    this.tokens = [...v.tokens];
    this.types = Uint8Array.from(v.types);
    this.merges = v.merges.map(splitMerge);
    this.pre = v.pre;
    this.preTokenizer = pre;
    this.regexes = pre.regexes.map(toJsRegex);
    this.bosId = v.bosId;
    this.eosId = v.eosId;
    this.unkId = v.unkId ?? null;
    this.padId = v.padId ?? null;
    this.addBos = v.addBos ?? pre.addBos ?? false;
    this.addEos = v.addEos ?? false;
    this.tokens.forEach((t, id) => this.lookup.set(t, id));
    this.merges.forEach(([l, r], rank) => {
      let m = this.ranks.get(l);
      if (m === undefined) this.ranks.set(l, (m = new Map()));
      if (!m.has(r)) m.set(r, rank);
    });
    this.specials = specialTokens(this.tokens, this.types);
    this.userDefined = this.specials.filter((s) => s.type === TokenType.USER_DEFINED);
  }

  get vocabSize(): number {
    return this.tokens.length;
  }

  encode(text: string, opts: SpecialEncodeOptions = {}): number[] {
    const addBos = opts.addSpecial ? this.addBos : !!opts.addBos;
    const addEos = opts.addSpecial ? this.addEos : !!opts.addEos;
    const out: number[] = [];
    if (addBos && this.bosId !== null) out.push(this.bosId);
    for (const f of splitOnSpecials(text, opts.parseSpecial ? this.specials : this.userDefined)) {
      if (typeof f === "number") out.push(f);
      else for (const word of preTokenize(f, this.regexes)) for (const id of this.encodeWord(word)) out.push(id);
    }
    if (addEos && this.eosId !== null) out.push(this.eosId);
    return out;
  }

  /** One pre-tokenized word, memoized: corpora repeat words a lot. */
  private encodeWord(word: string): readonly number[] {
    let ids = this.words.get(word);
    if (ids !== undefined) return ids;
    const s = toByteChars(word);
    const whole = this.preTokenizer.ignoreMerges ? this.lookup.get(s) : undefined;
    if (whole !== undefined) ids = [whole];
    else {
      const priority = (l: string, r: string) => {
        const rank = this.ranks.get(l)?.get(r);
        return rank === undefined ? undefined : -rank;
      };
      const out: number[] = [];
      for (const key of mergePairs([...s], priority).keys) {
        const id = this.lookup.get(key);
        if (id !== undefined) out.push(id);
        else
          for (const ch of key) {
            const single = ch.charCodeAt(0) < 0x80 ? this.lookup.get(ch) : undefined;
            if (single !== undefined) out.push(single);
          }
      }
      ids = out;
    }
    if (this.words.size >= WORD_CACHE_SIZE) this.words.clear();
    this.words.set(word, ids);
    return ids;
  }

  /** Bytes of one token: normal tokens from their byte-level characters, special ones as text when asked. */
  private pieceBytes(id: number, special: boolean): Uint8Array {
    const text = this.tokens[id];
    if (text === undefined) fail(`token id ${id} is outside the vocabulary (size ${this.tokens.length})`);
    const t = this.types[id]!;
    if (t === TokenType.CONTROL || t === TokenType.UNKNOWN) return special ? ENCODER.encode(text) : EMPTY;
    if (t === TokenType.USER_DEFINED) return ENCODER.encode(text);
    if (t !== TokenType.NORMAL) return EMPTY;
    // A character outside the byte map: the token's own UTF-8, as HF's ByteLevel decoder does
    // (llama.cpp writes "[UNK_BYTE_…]" there).
    return fromByteChars(text) ?? ENCODER.encode(text);
  }

  /** The text of the ids: special tokens render as nothing. decode(encode(s)) === s. */
  decode(ids: number[]): string {
    return new TextDecoder().decode(concat(ids.map((id) => this.pieceBytes(id, false))));
  }

  decodeToken(_prev: number, id: number): string {
    return new TextDecoder().decode(this.pieceBytes(id, false));
  }

  /** One token's bytes (part of a character, possibly): stream these through one TextDecoder. */
  decodeTokenBytes(_prev: number, id: number): Uint8Array {
    return this.pieceBytes(id, false).slice();
  }

  /** llama.cpp's llama_detokenize, including its clean_spaces passes where the pre-tokenizer has them. */
  detokenize(ids: number[], opts: DetokenizeOptions = {}): string {
    let from = 0, to = ids.length;
    if (opts.removeSpecial && this.addBos && to > 0 && ids[0] === this.bosId) from++;
    if (opts.removeSpecial && this.addEos && to > from && ids[to - 1] === this.eosId) to--;
    let bytes = concat(ids.slice(from, to).map((id) => this.pieceBytes(id, !!opts.unparseSpecial)));
    if (this.preTokenizer.cleanSpaces ?? true) bytes = cleanSpaces(bytes);
    return new TextDecoder().decode(bytes);
  }

  toJSON(): ByteBpeTokenizerJSON {
    return {
      type: "byte-bpe",
      tokens: [...this.tokens],
      types: Array.from(this.types),
      merges: this.merges.map(([l, r]) => [l, r]),
      pre: this.pre,
      bosId: this.bosId,
      eosId: this.eosId,
      unkId: this.unkId,
      padId: this.padId,
      addBos: this.addBos,
      addEos: this.addEos,
    };
  }

  static fromJSON(obj: unknown): ByteBpeTokenizer {
    const o = obj as Partial<ByteBpeTokenizerJSON> | null;
    if (typeof o !== "object" || o === null || o.type !== "byte-bpe" || !Array.isArray(o.tokens) || !Array.isArray(o.types) || !Array.isArray(o.merges) || typeof o.pre !== "string")
      fail(`expected {type: "byte-bpe", tokens, types, merges, pre, …}`);
    if (!o.tokens.every((t) => typeof t === "string")) fail("tokens must be strings");
    if (!o.types.every((t) => typeof t === "number")) fail("types must be numbers");
    if (!o.merges.every((m) => typeof m === "string" || (Array.isArray(m) && m.length === 2 && m.every((x) => typeof x === "string"))))
      fail(`merges must be "left right" strings or [left, right] pairs`);
    const id = (v: unknown) => (typeof v === "number" ? v : null);
    return new ByteBpeTokenizer({
      tokens: o.tokens,
      types: o.types,
      merges: o.merges,
      pre: o.pre,
      bosId: id(o.bosId),
      eosId: id(o.eosId),
      unkId: id(o.unkId),
      padId: id(o.padId),
      addBos: !!o.addBos,
      addEos: !!o.addEos,
    });
  }
}

function concat(parts: Uint8Array[]): Uint8Array {
  let n = 0;
  for (const p of parts) n += p.length;
  const all = new Uint8Array(n);
  n = 0;
  for (const p of parts) {
    all.set(p, n);
    n += p.length;
  }
  return all;
}

const SP = 0x20, QUOTE = 0x27;
const ch = (c: string) => c.charCodeAt(0);

/**
 * llama.cpp's clean_spaces passes in detokenize (HF's clean_up_tokenization_spaces): drop the
 * space before ? ! . , ; turn " ' " into "'"; drop the space before 's 'm 're 've.
 */
function cleanSpaces(t: Uint8Array): Uint8Array {
  const text = t.slice();
  let total = text.length;
  // Pass 1: " ?", " !", " .", " ,".
  let n = total;
  total = total ? 1 : 0;
  for (let i = 1; i < n; i++) {
    const x = text[i]!;
    if (text[i - 1] === SP && (x === ch("?") || x === ch("!") || x === ch(".") || x === ch(","))) total--;
    text[total++] = x;
  }
  // Pass 2: " ' " → "'".
  n = total;
  total = total ? 1 : 0;
  for (let i = 1; i < n; i++) {
    const x = text[i]!;
    if (x === QUOTE && i + 1 < n && text[i - 1] === SP && text[i + 1] === SP) {
      total--;
      text[++i] = 0;
    }
    text[total++] = x;
  }
  // Pass 3: " 's", " 'm", " 're", " 've" lose the space.
  n = total;
  total = total ? 1 : 0;
  for (let i = 1; i < n; i++) {
    const x = text[i]!;
    if (text[i - 1] === SP && x === QUOTE && i + 1 < n) {
      const x1 = text[i + 1]!;
      if (x1 === ch("s") || x1 === ch("m")) total--;
      else if (i + 2 < n && ((x1 === ch("r") && text[i + 2] === ch("e")) || (x1 === ch("v") && text[i + 2] === ch("e")))) total--;
    }
    text[total++] = x;
  }
  return text.subarray(0, total);
}
