// llama2.c's tokenizer.bin: a SentencePiece BPE vocabulary flattened by llama2.c's tokenizer.py.
// Layout: int32 max_token_length; then per token: f32 score, int32 byte length, the piece's bytes
// (little-endian). Ids 0, 1, 2 are <unk>, BOS, EOS; ids 3..258 are the byte tokens <0x00>..<0xFF>.
//
// encode() and decode() reproduce run.c's encode()/decode() (llama2.c master):
// - encode: optional BOS; a dummy-prefix " " token when the text is non-empty; each UTF-8 code
//   point becomes its token, or its bytes as byte tokens (id = byte + 3) when it has none; then
//   repeatedly merge the adjacent pair whose concatenation is a token with the highest score
//   (the leftmost such pair on ties; scores must exceed run.c's -1e10 floor); optional EOS.
//   run.c rescans the whole sequence per merge (quadratic); the merge loop shared with the other
//   BPE tokenizers (spm.ts's mergePairs) keeps candidate pairs in a heap ordered by (score,
//   position), which picks exactly the same pair at every step, and, when the vocabulary allows
//   it, we merge word by word (see splitsAtSpaces). spm.ts is the same algorithm as llama.cpp runs
//   it ("▁" for spaces, byte fallback after merging); gguf-vocab.ts converts this vocabulary to it.
// - decode: a piece that follows BOS loses its leading space; <0xXX> pieces are raw bytes.
// Deliberate differences: run.c stops reading text at a NUL byte, we encode it (<0x00>); run.c
// would push id -1 when the vocabulary has no " " token, we use the byte token for 0x20; decode
// renders BOS and EOS as nothing (run.c never prints them: generation stops at BOS).
// Pieces are byte strings (they need not be valid UTF-8), so lookups use "binary strings":
// one char per byte, which concatenate exactly as the bytes do.

import { mergePairs } from "./bpe-merge.js";
import type { EncodeOptions, Tokenizer } from "./tokenizer.js";

const BOS = 1;
const EOS = 2;
const BYTE_OFFSET = 3;
/** run.c starts its best-score search at -1e10: pairs scoring no more than that never merge. */
const SCORE_FLOOR = -1e10;
const EMPTY = new Uint8Array(0);
const SINGLE_BYTES = Array.from({ length: 256 }, (_, b) => Uint8Array.of(b));
/** Distinct words remembered by encode() before the memo starts over. */
const WORD_CACHE_SIZE = 1 << 16;

export interface Llama2cEncodeOptions extends EncodeOptions {
  addEos?: boolean;
}

/** Serialized form; a piece that is not valid UTF-8 is stored as its byte values. */
export interface Llama2cTokenizerJSON {
  type: "llama2c";
  pieces: (string | number[])[];
  /** Scores as numbers; those JSON cannot hold as strings: "-0" (tok512 has one), "NaN", "Infinity", "-Infinity". */
  scores: (number | string)[];
  maxTokenLength: number;
}

function binary(bytes: Uint8Array): string {
  let s = "";
  for (let i = 0; i < bytes.length; i++) s += String.fromCharCode(bytes[i]!);
  return s;
}

function fail(msg: string): never {
  throw new Error(`llama2.c tokenizer: ${msg}`);
}

export class Llama2cTokenizer implements Tokenizer {
  readonly kind = "llama2c";
  readonly bosId = BOS;
  readonly eosId = EOS;
  readonly pieces: readonly Uint8Array[];
  readonly scores: Float32Array;
  readonly maxTokenLength: number;
  /** Binary-string key of each piece. */
  private readonly keys: string[];
  /** Binary-string key → id; the lowest id wins if a piece repeats. */
  private readonly lookup = new Map<string, number>();
  /** Byte value of <0xXX> pieces, else -1. */
  private readonly byteValue: Int16Array;
  /**
   * True when " " is a piece and no piece has a space after its first byte. Then no merge can
   * join a token to a following token that starts with a space, so the text can be merged word
   * by word (each word led by its space) with the same result as run.c's whole-text loop: merges
   * in different words never interact, and within a word they happen in the same order.
   */
  private readonly splitsAtSpaces: boolean;
  private readonly words = new Map<string, readonly number[]>();

  constructor(pieces: readonly Uint8Array[], scores: ArrayLike<number>, maxTokenLength: number) {
    if (pieces.length !== scores.length) fail(`${pieces.length} pieces but ${scores.length} scores`);
    if (pieces.length <= EOS) fail(`vocabulary of ${pieces.length} tokens has no room for <unk>, BOS and EOS`);
    this.pieces = pieces.map((p) => p.slice());
    this.scores = Float32Array.from(scores);
    this.maxTokenLength = maxTokenLength;
    this.keys = this.pieces.map(binary);
    this.byteValue = new Int16Array(pieces.length).fill(-1);
    this.keys.forEach((k, id) => {
      if (!this.lookup.has(k)) this.lookup.set(k, id);
      // run.c parses byte tokens with sscanf("<0x%02hhX>"), so hex digits of either case.
      const m = /^<0x([0-9a-fA-F]{2})>$/.exec(k);
      if (m) this.byteValue[id] = parseInt(m[1]!, 16);
    });
    this.splitsAtSpaces = this.lookup.has(" ") && this.pieces.every((p) => p.indexOf(0x20, 1) < 0);
  }

  get vocabSize(): number {
    return this.pieces.length;
  }

  encode(text: string, opts: Llama2cEncodeOptions = {}): number[] {
    const out: number[] = [];
    if (opts.addBos) out.push(BOS);
    if (text !== "") {
      // The dummy prefix is the " " token (or its byte token), exactly what a leading " " gives.
      const s = " " + text;
      if (this.splitsAtSpaces) {
        for (let start = 0; start < s.length; ) {
          let end = s.indexOf(" ", start + 1);
          if (end < 0) end = s.length;
          for (const id of this.encodeWord(s.slice(start, end))) out.push(id);
          start = end;
        }
      } else {
        // run.c merges BOS along with the text (BOS never merges with tokenizer.py's vocabularies).
        const merged = this.merge([...out, ...this.initialIds(s)]);
        out.length = 0;
        for (const id of merged) out.push(id);
      }
    }
    if (opts.addEos) out.push(EOS);
    return out;
  }

  /** One space-led word, memoized: corpora repeat words a lot. */
  private encodeWord(word: string): readonly number[] {
    let ids = this.words.get(word);
    if (ids === undefined) {
      ids = this.merge(this.initialIds(word));
      if (this.words.size >= WORD_CACHE_SIZE) this.words.clear();
      this.words.set(word, ids);
    }
    return ids;
  }

  /** Code-point tokens with byte fallback, split the way run.c does: at every non-continuation byte. */
  private initialIds(text: string): number[] {
    const bytes = new TextEncoder().encode(text);
    const ids: number[] = [];
    for (let i = 0; i < bytes.length; ) {
      let j = i + 1;
      while (j < bytes.length && (bytes[j]! & 0xc0) === 0x80 && j - i < 4) j++;
      const cp = bytes.subarray(i, j);
      const id = this.lookup.get(binary(cp));
      if (id !== undefined) ids.push(id);
      else for (const b of cp) ids.push(this.byteToken(b));
      i = j;
    }
    return ids;
  }

  decode(ids: number[]): string {
    const parts: Uint8Array[] = new Array(ids.length);
    let n = 0;
    for (let i = 0; i < ids.length; i++) {
      parts[i] = this.tokenBytes(i > 0 ? ids[i - 1]! : -1, ids[i]!);
      n += parts[i]!.length;
    }
    const all = new Uint8Array(n);
    n = 0;
    for (const p of parts) {
      all.set(p, n);
      n += p.length;
    }
    // Byte tokens of one character arrive separately; decoding them together joins them.
    return new TextDecoder().decode(all);
  }

  /**
   * Text of one token. A byte token holding part of a multi-byte character decodes to U+FFFD
   * on its own: streaming callers should feed decodeTokenBytes to a TextDecoder with {stream: true}.
   */
  decodeToken(prev: number, id: number): string {
    return new TextDecoder().decode(this.tokenBytes(prev, id));
  }

  /** run.c's decode(prev, id), as bytes. */
  decodeTokenBytes(prev: number, id: number): Uint8Array {
    return this.tokenBytes(prev, id).slice();
  }

  /** The same, as a view into the tokenizer's own storage or a shared constant: do not modify. */
  private tokenBytes(prev: number, id: number): Uint8Array {
    const piece = this.pieces[id];
    if (piece === undefined) fail(`token id ${id} is outside the vocabulary (size ${this.pieces.length})`);
    if (id === BOS || id === EOS) return EMPTY;
    const b = this.byteValue[id]!;
    if (b >= 0) return SINGLE_BYTES[b]!;
    // SentencePiece drops the dummy-prefix space of the first piece after BOS.
    return prev === BOS && piece[0] === 0x20 ? piece.subarray(1) : piece;
  }

  toJSON(): Llama2cTokenizerJSON {
    const utf8 = new TextDecoder("utf-8", { fatal: true });
    const pieces = this.pieces.map((p) => {
      try {
        return utf8.decode(p);
      } catch {
        return Array.from(p);
      }
    });
    const scores = Array.from(this.scores, (s) => (Object.is(s, -0) ? "-0" : Number.isFinite(s) ? s : String(s)));
    return { type: "llama2c", pieces, scores, maxTokenLength: this.maxTokenLength };
  }

  static fromJSON(obj: unknown): Llama2cTokenizer {
    const o = obj as Partial<Llama2cTokenizerJSON> | null;
    if (typeof o !== "object" || o === null || o.type !== "llama2c" || !Array.isArray(o.pieces) || !Array.isArray(o.scores))
      fail(`expected {type: "llama2c", pieces, scores, maxTokenLength}`);
    const encoder = new TextEncoder();
    const pieces = o.pieces.map((p, i) => {
      if (typeof p === "string") return encoder.encode(p);
      if (Array.isArray(p) && p.every((b) => Number.isInteger(b) && b >= 0 && b <= 255)) return Uint8Array.from(p);
      fail(`piece ${i} is neither a string nor an array of bytes`);
    });
    const scores = o.scores.map((s, i) => {
      const v = typeof s === "string" ? Number(s) : s;
      if (typeof v !== "number" || (typeof s === "string" && !["-0", "NaN", "Infinity", "-Infinity"].includes(s)))
        fail(`score ${i} is not a number`);
      return v;
    });
    const mtl = o.maxTokenLength;
    if (typeof mtl !== "number" || !Number.isInteger(mtl) || mtl < 0) fail(`maxTokenLength must be a non-negative integer`);
    return new Llama2cTokenizer(pieces, scores, mtl);
  }

  private byteToken(b: number): number {
    const id = b + BYTE_OFFSET;
    if (id >= this.pieces.length) fail(`byte fallback token for 0x${b.toString(16)} (id ${id}) is outside the vocabulary`);
    return id;
  }

  /** Greedy BPE: always merge the best-scoring pair, leftmost first (see the file comment). */
  private merge(ids: number[]): number[] {
    const keys = ids.map((id) => this.keys[id]!);
    const priority = (l: string, r: string) => {
      const id = this.lookup.get(l + r);
      const score = id === undefined ? undefined : this.scores[id]!;
      return score !== undefined && score > SCORE_FLOOR ? score : undefined;
    };
    const merged = mergePairs(keys, priority);
    // An unmerged symbol keeps its own id (a byte token stays that byte's token).
    return merged.keys.map((k, i) => {
      const start = merged.starts[i]!;
      return k === keys[start] ? ids[start]! : this.lookup.get(k)!;
    });
  }
}

/**
 * Read tokenizer.bin. With `vocabSize`, read exactly that many entries (run.c's behaviour; bytes
 * after them are ignored); without, read entries until the end of the file.
 */
export function parseLlama2cTokenizer(bytes: Uint8Array, vocabSize?: number): Llama2cTokenizer {
  if (bytes.length < 4) fail(`file is ${bytes.length} bytes, shorter than the 4-byte header`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const maxTokenLength = view.getInt32(0, true);
  if (maxTokenLength < 0) fail(`max_token_length is negative (${maxTokenLength})`);
  const pieces: Uint8Array[] = [];
  const scores: number[] = [];
  let at = 4;
  while (vocabSize === undefined ? at < bytes.length : pieces.length < vocabSize) {
    const i = pieces.length;
    if (at + 8 > bytes.length)
      fail(`file ends inside the header of token ${i}${vocabSize === undefined ? "" : ` of ${vocabSize}`} (${bytes.length} bytes)`);
    const score = view.getFloat32(at, true);
    const len = view.getInt32(at + 4, true);
    at += 8;
    if (len < 0 || at + len > bytes.length) fail(`token ${i} claims ${len} bytes but the file has ${bytes.length - at} left`);
    pieces.push(bytes.slice(at, at + len));
    scores.push(score);
    at += len;
  }
  return new Llama2cTokenizer(pieces, scores, maxTokenLength);
}

/** Write tokenizer.bin; parse → serialize reproduces the file byte for byte. */
export function serializeLlama2cTokenizer(t: Llama2cTokenizer): Uint8Array {
  let n = 4;
  for (const p of t.pieces) n += 8 + p.length;
  const out = new Uint8Array(n);
  const view = new DataView(out.buffer);
  view.setInt32(0, t.maxTokenLength, true);
  let at = 4;
  t.pieces.forEach((p, i) => {
    view.setFloat32(at, t.scores[i]!, true);
    view.setInt32(at + 4, p.length, true);
    out.set(p, at + 8);
    at += 8 + p.length;
  });
  return out;
}
