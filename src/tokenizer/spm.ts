// SentencePiece-style BPE with byte fallback, as llama.cpp runs it (llama-vocab.cpp,
// llm_tokenizer_spm and llama_vocab::impl::tokenize/detokenize for LLAMA_VOCAB_TYPE_SPM):
// - special tokens first split the text (tokenizer_st_partition): user-defined tokens always,
//   control and unknown tokens only with `parseSpecial`; longest token text first;
// - each remaining text fragment gets a leading " " when it starts the text or follows a special
//   token (add_space_prefix), has its spaces escaped to "▁" (U+2581) and is split into UTF-8
//   characters;
// - merges: repeatedly join the adjacent pair whose concatenation is a token with the highest
//   score, the leftmost pair on ties (mergePairs, shared with the other BPE tokenizers);
// - a final symbol that is not a token becomes byte tokens <0xXX> (byte fallback).
// decode() renders what SentencePiece would (see its comment); detokenize() is llama.cpp's exactly.

import type { Tokenizer } from "./tokenizer.js";
import { mergePairs } from "./bpe-merge.js";
import { type DetokenizeOptions, type SpecialEncodeOptions, TokenType, specialTokens, splitOnSpecials } from "./special-tokens.js";

export { TokenType, type DetokenizeOptions, type SpecialEncodeOptions } from "./special-tokens.js";

export interface SpmVocab {
  tokens: string[];
  scores: ArrayLike<number>;
  types: ArrayLike<number>;
  bosId: number | null;
  eosId: number | null;
  unkId: number | null;
  padId?: number | null;
  addBos: boolean;
  addEos: boolean;
  /** SentencePiece's add_dummy_prefix (GGUF tokenizer.ggml.add_space_prefix); default true. */
  addSpacePrefix?: boolean;
}

export interface SpmTokenizerJSON {
  type: "spm";
  tokens: string[];
  /** Scores as numbers; non-finite ones as strings ("NaN", "Infinity", "-Infinity"). */
  scores: (number | string)[];
  types: number[];
  bosId: number | null;
  eosId: number | null;
  unkId: number | null;
  padId: number | null;
  addBos: boolean;
  addEos: boolean;
  addSpacePrefix: boolean;
}

const SPACE = "▁";
const WORD_CACHE_SIZE = 1 << 16;

function fail(msg: string): never {
  throw new Error(`spm tokenizer: ${msg}`);
}

// ---- the tokenizer --------------------------------------------------------------------------------

export class SpmTokenizer implements Tokenizer {
  readonly kind = "spm";
  readonly tokens: readonly string[];
  readonly scores: Float32Array;
  readonly types: Uint8Array;
  readonly bosId: number | null;
  readonly eosId: number | null;
  readonly unkId: number | null;
  readonly padId: number | null;
  readonly addBos: boolean;
  readonly addEos: boolean;
  readonly addSpacePrefix: boolean;
  /** Token text → id; the last id wins when a text repeats, as in llama.cpp's token_to_id. */
  private readonly lookup = new Map<string, number>();
  /** Byte value → its byte token (<0xXX>, else the one-byte token llama.cpp falls back to), or -1. */
  private readonly byteTokens = new Int32Array(256).fill(-1);
  /** Byte value of each byte token, else -1. */
  private readonly byteValue: Int16Array;
  /** Special tokens matched in text with parseSpecial, and the user-defined ones matched always. */
  private readonly specials: { id: number; text: string; type: number }[];
  private readonly userDefined: { id: number; text: string; type: number }[];
  /**
   * True when every token's "▁"s lead it. Then no merge can join a character to a following "▁",
   * so text can be merged word by word (each word is its leading "▁"s and what follows) with the
   * same result as merging the whole text: merges in different words never interact.
   */
  private readonly splitsAtSpaces: boolean;
  private readonly words = new Map<string, readonly number[]>();

  constructor(v: SpmVocab) {
    const n = v.tokens.length;
    if (v.scores.length !== n || v.types.length !== n) fail(`${n} tokens but ${v.scores.length} scores and ${v.types.length} types`);
    for (const [name, id] of [["bos", v.bosId], ["eos", v.eosId], ["unk", v.unkId], ["pad", v.padId ?? null]] as const)
      if (id !== null && (!Number.isInteger(id) || id < 0 || id >= n)) fail(`${name} id ${id} is outside the vocabulary (size ${n})`);
    this.tokens = [...v.tokens];
    this.scores = Float32Array.from(v.scores);
    this.types = Uint8Array.from(v.types);
    this.bosId = v.bosId;
    this.eosId = v.eosId;
    this.unkId = v.unkId;
    this.padId = v.padId ?? null;
    this.addBos = v.addBos;
    this.addEos = v.addEos;
    this.addSpacePrefix = v.addSpacePrefix ?? true;
    this.byteValue = new Int16Array(n).fill(-1);
    this.tokens.forEach((t, id) => {
      this.lookup.set(t, id);
      const m = this.types[id] === TokenType.BYTE ? /^<0x([0-9A-Fa-f]{2})>$/.exec(t) : null;
      if (m) this.byteValue[id] = parseInt(m[1]!, 16);
    });
    for (let b = 0; b < 256; b++) {
      const hex = b.toString(16).toUpperCase().padStart(2, "0");
      this.byteTokens[b] = this.lookup.get(`<0x${hex}>`) ?? this.lookup.get(String.fromCharCode(b)) ?? -1;
    }
    this.specials = specialTokens(this.tokens, this.types);
    this.userDefined = this.specials.filter((s) => s.type === TokenType.USER_DEFINED);
    this.splitsAtSpaces = this.tokens.every((t) => !/[^▁]▁/.test(t));
  }

  get vocabSize(): number {
    return this.tokens.length;
  }

  encode(text: string, opts: SpecialEncodeOptions = {}): number[] {
    const addBos = opts.addSpecial ? this.addBos : !!opts.addBos;
    const addEos = opts.addSpecial ? this.addEos : !!opts.addEos;
    const out: number[] = [];
    if (addBos && this.bosId !== null) out.push(this.bosId);
    let prevSpecial = true;
    for (const f of splitOnSpecials(text, opts.parseSpecial ? this.specials : this.userDefined)) {
      if (typeof f === "number") {
        out.push(f);
        prevSpecial = true;
        continue;
      }
      const escaped = ((this.addSpacePrefix && prevSpecial ? " " : "") + f).replaceAll(" ", SPACE);
      this.encodeEscaped(escaped, out);
      prevSpecial = false;
    }
    if (addEos && this.eosId !== null) out.push(this.eosId);
    return out;
  }

  private encodeEscaped(s: string, out: number[]): void {
    if (!this.splitsAtSpaces) {
      for (const id of this.encodeWord(s)) out.push(id);
      return;
    }
    for (let start = 0; start < s.length; ) {
      let end = start;
      while (end < s.length && s[end] === SPACE) end++;
      const next = s.indexOf(SPACE, end);
      end = next < 0 ? s.length : next;
      const word = s.slice(start, end);
      let ids = this.words.get(word);
      if (ids === undefined) {
        ids = this.encodeWord(word);
        if (this.words.size >= WORD_CACHE_SIZE) this.words.clear();
        this.words.set(word, ids);
      }
      for (const id of ids) out.push(id);
      start = end;
    }
  }

  /** llm_tokenizer_spm_session::tokenize: characters, merges, then resegment with byte fallback. */
  private encodeWord(s: string): number[] {
    const priority = (l: string, r: string) => {
      const id = this.lookup.get(l + r);
      return id === undefined ? undefined : this.scores[id];
    };
    const out: number[] = [];
    for (const key of mergePairs([...s], priority).keys) {
      const id = this.lookup.get(key);
      if (id !== undefined) out.push(id);
      else for (const b of ENCODER.encode(key)) out.push(this.byteToken(b));
    }
    return out;
  }

  private byteToken(b: number): number {
    const id = this.byteTokens[b]!;
    if (id >= 0) return id;
    if (this.unkId !== null) return this.unkId;
    fail(`no byte token for 0x${b.toString(16)} and no unknown token`);
  }

  /** Bytes of token `id` as llama.cpp's token_to_piece renders it (lstrip: leading spaces to drop). */
  private pieceBytes(id: number, special: boolean, lstrip: number): Uint8Array {
    const text = this.tokens[id];
    if (text === undefined) fail(`token id ${id} is outside the vocabulary (size ${this.tokens.length})`);
    const t = this.types[id]!;
    let s: string;
    if (t === TokenType.CONTROL || t === TokenType.UNKNOWN) {
      if (!special) return EMPTY;
      s = text;
    } else if (t === TokenType.USER_DEFINED) s = text;
    else if (t === TokenType.NORMAL) s = text.replaceAll(SPACE, " ");
    else if (t === TokenType.BYTE) {
      const b = this.byteValue[id]!;
      // llama.cpp's lstrip applies to byte tokens too: a leading <0x20> goes.
      return b < 0 || (b === 0x20 && lstrip > 0) ? EMPTY : SINGLE_BYTES[b]!;
    }
    else return EMPTY; // unused and unknown types render as nothing
    for (let i = 0; i < lstrip && s.startsWith(" "); i++) s = s.slice(1);
    return ENCODER.encode(s);
  }

  /** llama.cpp's llama_detokenize, byte for byte (then decoded as UTF-8). */
  detokenize(ids: number[], opts: DetokenizeOptions = {}): string {
    let removeSpace = this.addSpacePrefix;
    let from = 0, to = ids.length;
    if (opts.removeSpecial && this.addBos && to > 0 && ids[0] === this.bosId) {
      removeSpace = false; // sic: llama.cpp keeps the space after a removed BOS
      from++;
    }
    if (opts.removeSpecial && this.addEos && to > from && ids[to - 1] === this.eosId) to--;
    const parts: Uint8Array[] = [];
    for (let i = from; i < to; i++) {
      parts.push(this.pieceBytes(ids[i]!, !!opts.unparseSpecial, removeSpace ? 1 : 0));
      removeSpace = false;
    }
    return utf8(parts);
  }

  /**
   * Text of the ids as SentencePiece (and HF's Llama decoder) gives it: special tokens render as
   * nothing and the dummy-prefix space of the first piece goes, so decode(encode(s)) === s with
   * or without BOS. (llama.cpp's detokenize keeps that space when the ids start with BOS.)
   */
  decode(ids: number[]): string {
    const parts: Uint8Array[] = [];
    let first = this.addSpacePrefix;
    for (const id of ids) {
      const p = this.pieceBytes(id, false, first ? 1 : 0);
      if (p.length > 0 || !this.isControl(id)) first = false;
      parts.push(p);
    }
    return utf8(parts);
  }

  /** Text of one token after `prev`; a piece right after BOS (or at the start, prev < 0) loses its leading space. */
  decodeToken(prev: number, id: number): string {
    return new TextDecoder().decode(this.decodeTokenBytes(prev, id));
  }

  /** The same as bytes: a byte token may hold part of a character; stream these through one TextDecoder. */
  decodeTokenBytes(prev: number, id: number): Uint8Array {
    const atStart = prev < 0 || prev === this.bosId;
    return this.pieceBytes(id, false, atStart && this.addSpacePrefix ? 1 : 0).slice();
  }

  private isControl(id: number): boolean {
    const t = this.types[id];
    return t === TokenType.CONTROL || t === TokenType.UNKNOWN || t === TokenType.UNUSED;
  }

  toJSON(): SpmTokenizerJSON {
    return {
      type: "spm",
      tokens: [...this.tokens],
      scores: Array.from(this.scores, (s) => (Number.isFinite(s) ? s : String(s))),
      types: Array.from(this.types),
      bosId: this.bosId,
      eosId: this.eosId,
      unkId: this.unkId,
      padId: this.padId,
      addBos: this.addBos,
      addEos: this.addEos,
      addSpacePrefix: this.addSpacePrefix,
    };
  }

  static fromJSON(obj: unknown): SpmTokenizer {
    const o = obj as Partial<SpmTokenizerJSON> | null;
    if (typeof o !== "object" || o === null || o.type !== "spm" || !Array.isArray(o.tokens) || !Array.isArray(o.scores) || !Array.isArray(o.types))
      fail(`expected {type: "spm", tokens, scores, types, …}`);
    if (!o.tokens.every((t) => typeof t === "string")) fail("tokens must be strings");
    if (!o.types.every((t) => typeof t === "number")) fail("types must be numbers");
    const scores = o.scores.map((s, i) => {
      const v = typeof s === "string" && ["NaN", "Infinity", "-Infinity"].includes(s) ? Number(s) : s;
      if (typeof v !== "number") fail(`score ${i} is not a number`);
      return v;
    });
    const id = (v: unknown) => (typeof v === "number" ? v : null);
    return new SpmTokenizer({
      tokens: o.tokens,
      scores,
      types: o.types,
      bosId: id(o.bosId),
      eosId: id(o.eosId),
      unkId: id(o.unkId),
      padId: id(o.padId),
      addBos: !!o.addBos,
      addEos: !!o.addEos,
      addSpacePrefix: o.addSpacePrefix ?? true,
    });
  }
}

const ENCODER = new TextEncoder();
const EMPTY = new Uint8Array(0);
const SINGLE_BYTES = Array.from({ length: 256 }, (_, b) => Uint8Array.of(b));

/** Concatenate and decode as UTF-8: byte tokens of one character join up first. */
function utf8(parts: Uint8Array[]): string {
  let n = 0;
  for (const p of parts) n += p.length;
  const all = new Uint8Array(n);
  n = 0;
  for (const p of parts) {
    all.set(p, n);
    n += p.length;
  }
  return new TextDecoder().decode(all);
}
