// What the rest of Bonsai needs from a tokenizer: text ↔ ids, the special ids, streaming
// decode, and a JSON form so a tokenizer can be saved next to a model and loaded back
// (see load.ts). Implementations: char-level (nanoGPT), llama2.c's tokenizer.bin; more later.

export interface EncodeOptions {
  /** Prepend the BOS id. Ignored by tokenizers without one (bosId === null). */
  addBos?: boolean;
  /**
   * Read special tokens written in the text (e.g. "<|endoftext|>", "<s>") as those tokens, as
   * llama.cpp's parse_special. Tokenizers without such tokens ignore it.
   */
  parseSpecial?: boolean;
}

export interface Tokenizer {
  /** The `type` written by toJSON, e.g. "char" or "llama2c". */
  readonly kind: string;
  readonly vocabSize: number;
  readonly bosId: number | null;
  readonly eosId: number | null;
  encode(text: string, opts?: EncodeOptions): number[];
  decode(ids: number[]): string;
  /** Text of token `id` when it follows `prev` (streaming). */
  decodeToken?(prev: number, id: number): string;
  /** A plain JSON object with a `type` field; `tokenizerFromJSON` turns it back into a tokenizer. */
  toJSON(): object;
}
