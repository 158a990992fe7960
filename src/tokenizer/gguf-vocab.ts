// Tokenizers ↔ GGUF's tokenizer.ggml.* metadata, with llama.cpp's defaults (llama_vocab::impl::load):
// model "llama" is a SentencePiece BPE vocabulary (SpmTokenizer), model "gpt2" a byte-level BPE
// (ByteBpeTokenizer). llama2.c's tokenizer.bin becomes a "llama" vocabulary: its pieces with " "
// written back as "▁", <unk>/BOS/EOS as unknown/control tokens, <0xXX> as byte tokens.

import { GgufType, plainValue, type GgufValue } from "../format/gguf.js";
import { ByteBpeTokenizer } from "./byte-bpe.js";
import { Llama2cTokenizer } from "./llama2c-tokenizer.js";
import { SpmTokenizer, TokenType } from "./spm.js";
import type { Tokenizer } from "./tokenizer.js";

export interface GgufTokenizerEntry {
  key: string;
  type: GgufType;
  value: GgufValue;
}

function fail(msg: string): never {
  throw new Error(`gguf tokenizer: ${msg}`);
}

/** A metadata value for a message, on one line (JSON.stringify throws on 64-bit values and keeps U+2028). */
function show(v: unknown): string {
  if (typeof v === "string") return JSON.stringify(v.slice(0, 80)).replace(/[\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16)}`);
  if (Array.isArray(v)) return `an array of ${v.length}`;
  return String(v);
}

/** Read the tokenizer a GGUF file's metadata describes. */
export function tokenizerFromGgufMetadata(metadata: Map<string, GgufValue>): Tokenizer {
  const get = (k: string) => plainValue(metadata.get(`tokenizer.ggml.${k}`));
  const model = get("model");
  const tokens = get("tokens");
  if (!Array.isArray(tokens) || !tokens.every((t) => typeof t === "string")) fail("tokenizer.ggml.tokens is missing or not an array of strings");
  const n = tokens.length;
  const numbers = (k: string, fill: number): number[] => {
    const v = get(k);
    if (v === undefined) return new Array<number>(n).fill(fill);
    if (!Array.isArray(v) || v.length !== n || !v.every((x) => typeof x === "number")) fail(`tokenizer.ggml.${k} is not ${n} numbers`);
    return v as number[];
  };
  const id = (k: string, dflt: number | null): number | null => {
    const v = get(k);
    if (v === undefined) return dflt !== null && dflt < n ? dflt : null;
    if (typeof v !== "number" || !Number.isInteger(v)) fail(`tokenizer.ggml.${k} is not an integer`);
    // llama.cpp ignores ids outside the vocabulary (with a warning) and keeps its default.
    return v >= 0 && v < n ? v : dflt !== null && dflt < n ? dflt : null;
  };
  const flag = (k: string): boolean | undefined => {
    const v = get(k);
    return typeof v === "boolean" ? v : undefined;
  };
  const types = numbers("token_type", TokenType.NORMAL);
  if (model === "llama") {
    return new SpmTokenizer({
      tokens,
      scores: numbers("scores", 0),
      types,
      bosId: id("bos_token_id", 1),
      eosId: id("eos_token_id", 2),
      unkId: id("unknown_token_id", 0),
      padId: id("padding_token_id", null),
      addBos: flag("add_bos_token") ?? true,
      addEos: flag("add_eos_token") ?? false,
      addSpacePrefix: flag("add_space_prefix") ?? true,
    });
  }
  if (model === "gpt2") {
    const merges = get("merges");
    if (!Array.isArray(merges) || !merges.every((m) => typeof m === "string")) fail("tokenizer.ggml.merges is missing or not an array of strings");
    const pre = get("pre");
    return new ByteBpeTokenizer({
      tokens,
      types,
      merges,
      pre: typeof pre === "string" && pre !== "" ? pre : "default",
      bosId: id("bos_token_id", null),
      eosId: id("eos_token_id", null),
      unkId: id("unknown_token_id", null),
      padId: id("padding_token_id", null),
      addBos: flag("add_bos_token"),
      addEos: flag("add_eos_token"),
    });
  }
  fail(`tokenizer.ggml.model ${show(model)} is not supported (Bonsai reads "llama" and "gpt2")`);
}

/** A llama2.c tokenizer as the SentencePiece vocabulary it was flattened from (see the file comment). */
export function spmFromLlama2c(t: Llama2cTokenizer): SpmTokenizer {
  const utf8 = new TextDecoder("utf-8", { fatal: true });
  const tokens: string[] = [];
  const types: number[] = [];
  t.pieces.forEach((p, i) => {
    let text: string;
    try {
      text = utf8.decode(p);
    } catch {
      fail(`llama2.c piece ${i} is not UTF-8, so it cannot be a GGUF token`);
    }
    if (i === 0) [text, types[i]] = ["<unk>", TokenType.UNKNOWN];
    else if (i === t.bosId) [text, types[i]] = ["<s>", TokenType.CONTROL];
    else if (i === t.eosId) [text, types[i]] = ["</s>", TokenType.CONTROL];
    else if (/^<0x[0-9A-Fa-f]{2}>$/.test(text)) types[i] = TokenType.BYTE;
    else {
      types[i] = TokenType.NORMAL;
      text = text.replaceAll(" ", "▁");
    }
    tokens.push(text);
  });
  return new SpmTokenizer({ tokens, scores: t.scores, types, bosId: t.bosId, eosId: t.eosId, unkId: 0, addBos: true, addEos: false });
}

/** The tokenizer.ggml.* entries llama.cpp needs to load `t`. */
export function tokenizerToGgufMetadata(t: Tokenizer): GgufTokenizerEntry[] {
  if (t instanceof Llama2cTokenizer) return tokenizerToGgufMetadata(spmFromLlama2c(t));
  const str = (key: string, value: string): GgufTokenizerEntry => ({ key: `tokenizer.ggml.${key}`, type: GgufType.STRING, value });
  const u32 = (key: string, value: number | null): GgufTokenizerEntry[] => (value === null ? [] : [{ key: `tokenizer.ggml.${key}`, type: GgufType.UINT32, value }]);
  const bool = (key: string, value: boolean): GgufTokenizerEntry => ({ key: `tokenizer.ggml.${key}`, type: GgufType.BOOL, value });
  const arr = (key: string, elementType: GgufType, values: GgufValue[]): GgufTokenizerEntry => ({
    key: `tokenizer.ggml.${key}`,
    type: GgufType.ARRAY,
    value: { elementType, values },
  });
  if (t instanceof SpmTokenizer) {
    return [
      str("model", "llama"),
      str("pre", "default"),
      arr("tokens", GgufType.STRING, [...t.tokens]),
      arr("scores", GgufType.FLOAT32, Array.from(t.scores)),
      arr("token_type", GgufType.INT32, Array.from(t.types)),
      ...u32("bos_token_id", t.bosId),
      ...u32("eos_token_id", t.eosId),
      ...u32("unknown_token_id", t.unkId),
      ...u32("padding_token_id", t.padId),
      bool("add_bos_token", t.addBos),
      bool("add_eos_token", t.addEos),
      bool("add_space_prefix", t.addSpacePrefix),
    ];
  }
  if (t instanceof ByteBpeTokenizer) {
    return [
      str("model", "gpt2"),
      str("pre", t.pre),
      arr("tokens", GgufType.STRING, [...t.tokens]),
      arr("token_type", GgufType.INT32, Array.from(t.types)),
      arr("merges", GgufType.STRING, t.merges.map(([l, r]) => `${l} ${r}`)),
      ...u32("bos_token_id", t.bosId),
      ...u32("eos_token_id", t.eosId),
      ...u32("unknown_token_id", t.unkId),
      ...u32("padding_token_id", t.padId),
      bool("add_bos_token", t.addBos),
      bool("add_eos_token", t.addEos),
    ];
  }
  fail(`a "${t.kind}" tokenizer has no GGUF form (Bonsai writes spm, byte-bpe and llama2c tokenizers)`);
}
