// nanoGPT's character-level tokenizer (data/shakespeare_char/prepare.py): the vocabulary is
// sorted(set(text)), i.e. the distinct code points of the training text sorted by code point,
// and a token id is a character's index in it. Characters are code points, not UTF-16 units,
// so an emoji is one token, as in Python.

import type { EncodeOptions, Tokenizer } from "./tokenizer.js";

function describe(ch: string): string {
  return `${JSON.stringify(ch)} (U+${ch.codePointAt(0)!.toString(16).toUpperCase().padStart(4, "0")})`;
}

export class CharTokenizer implements Tokenizer {
  readonly kind = "char";
  readonly bosId = null;
  readonly eosId = null;
  readonly chars: readonly string[];
  private readonly ids: Map<string, number>;

  /** `chars` must be distinct single code points; their order defines the ids. */
  constructor(chars: readonly string[]) {
    this.ids = new Map();
    chars.forEach((ch, i) => {
      if (typeof ch !== "string" || [...ch].length !== 1) throw new Error(`char tokenizer: entry ${i} is not a single character: ${JSON.stringify(ch)}`);
      if (this.ids.has(ch)) throw new Error(`char tokenizer: character ${describe(ch)} appears twice`);
      this.ids.set(ch, i);
    });
    this.chars = [...chars];
  }

  /** The vocabulary of a corpus: its distinct characters sorted by code point. */
  static fromText(text: string): CharTokenizer {
    const set = new Set<string>();
    for (const ch of text) set.add(ch);
    return new CharTokenizer([...set].sort((a, b) => a.codePointAt(0)! - b.codePointAt(0)!));
  }

  static fromJSON(obj: unknown): CharTokenizer {
    const o = obj as { type?: unknown; chars?: unknown };
    if (typeof obj !== "object" || obj === null || o.type !== "char" || !Array.isArray(o.chars))
      throw new Error(`char tokenizer: expected {type: "char", chars: string[]}`);
    return new CharTokenizer(o.chars as string[]);
  }

  get vocabSize(): number {
    return this.chars.length;
  }

  /** There is no BOS, so `addBos` has nothing to add. */
  encode(text: string, _opts?: EncodeOptions): number[] {
    const out: number[] = [];
    for (const ch of text) {
      const id = this.ids.get(ch);
      if (id === undefined) throw new Error(`char tokenizer: character ${describe(ch)} is not in the vocabulary`);
      out.push(id);
    }
    return out;
  }

  decode(ids: number[]): string {
    return ids.map((id) => this.piece(id)).join("");
  }

  decodeToken(_prev: number, id: number): string {
    return this.piece(id);
  }

  toJSON(): { type: "char"; chars: string[] } {
    return { type: "char", chars: [...this.chars] };
  }

  private piece(id: number): string {
    const ch = this.chars[id];
    if (ch === undefined) throw new Error(`char tokenizer: token id ${id} is outside the vocabulary (size ${this.chars.length})`);
    return ch;
  }
}
