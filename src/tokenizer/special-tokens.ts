// Token types and special tokens as llama.cpp handles them, shared by the SentencePiece-style and
// byte-level tokenizers.
import type { EncodeOptions } from "./tokenizer.js";

/** llama.cpp's token types (tokenizer.ggml.token_type; SentencePiece's ModelProto piece types + 1). */
export enum TokenType {
  NORMAL = 1,
  UNKNOWN = 2,
  CONTROL = 3,
  USER_DEFINED = 4,
  UNUSED = 5,
  BYTE = 6,
}

export interface SpecialEncodeOptions extends EncodeOptions {
  addEos?: boolean;
  /** llama.cpp's add_special: add BOS and EOS as the vocabulary's add_bos/add_eos flags say (overrides addBos/addEos). */
  addSpecial?: boolean;
  // parseSpecial (EncodeOptions): control tokens too; user-defined tokens are always recognised.
}

export interface DetokenizeOptions {
  /** Drop a leading BOS and a trailing EOS when the vocabulary adds them (llama.cpp's remove_special). */
  removeSpecial?: boolean;
  /** Render control and unknown tokens as their text (llama.cpp's unparse_special). */
  unparseSpecial?: boolean;
}

/** A piece of text to tokenize, or a special token found in the text. */
export type Fragment = string | number;

/**
 * llama.cpp's tokenizer_st_partition: split `text` at occurrences of the `specials` token texts,
 * taking the tokens in the given order (longest first) and each one's leftmost non-overlapping
 * occurrences in the text that earlier tokens left.
 */
export function splitOnSpecials(text: string, specials: readonly { id: number; text: string }[]): Fragment[] {
  let frags: Fragment[] = text === "" ? [] : [text];
  for (const s of specials) {
    if (s.text === "" || !frags.some((f) => typeof f === "string" && f.includes(s.text))) continue;
    const out: Fragment[] = [];
    for (const f of frags) {
      if (typeof f !== "string") {
        out.push(f);
        continue;
      }
      let at = 0;
      for (let hit = f.indexOf(s.text); hit >= 0; hit = f.indexOf(s.text, at)) {
        if (hit > at) out.push(f.slice(at, hit));
        out.push(s.id);
        at = hit + s.text.length;
      }
      if (at < f.length) out.push(f.slice(at));
    }
    frags = out;
  }
  return frags;
}

/** The special tokens llama.cpp matches in text (control, user-defined, unknown), longest text first. */
export function specialTokens(tokens: readonly string[], types: ArrayLike<number>): { id: number; text: string; type: number }[] {
  const out: { id: number; text: string; type: number }[] = [];
  tokens.forEach((text, id) => {
    const t = types[id]!;
    if (t === TokenType.CONTROL || t === TokenType.USER_DEFINED || t === TokenType.UNKNOWN) out.push({ id, text, type: t });
  });
  // Stable, so equal lengths keep id order (llama.cpp's std::sort leaves their order unspecified).
  return out.sort((a, b) => b.text.length - a.text.length);
}
