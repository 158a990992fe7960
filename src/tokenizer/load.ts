// Rebuild a tokenizer from the JSON its toJSON() wrote, by its `type`; a Hugging Face
// tokenizer.json (no `type`, a `model` object) is read by hf-tokenizer-json.ts.

import { ByteBpeTokenizer } from "./byte-bpe.js";
import { CharTokenizer } from "./char-tokenizer.js";
import { isHfTokenizerJson, tokenizerFromHfJson } from "./hf-tokenizer-json.js";
import { Llama2cTokenizer } from "./llama2c-tokenizer.js";
import { SpmTokenizer } from "./spm.js";
import type { Tokenizer } from "./tokenizer.js";

const LOADERS = new Map<string, (obj: unknown) => Tokenizer>([
  ["char", (o) => CharTokenizer.fromJSON(o)],
  ["llama2c", (o) => Llama2cTokenizer.fromJSON(o)],
  ["spm", (o) => SpmTokenizer.fromJSON(o)],
  ["byte-bpe", (o) => ByteBpeTokenizer.fromJSON(o)],
]);

export function tokenizerFromJSON(obj: unknown): Tokenizer {
  if (isHfTokenizerJson(obj)) return tokenizerFromHfJson(obj);
  const type = typeof obj === "object" && obj !== null ? (obj as { type?: unknown }).type : undefined;
  if (typeof type !== "string") throw new Error(`tokenizer JSON: missing "type" field`);
  const load = LOADERS.get(type);
  if (load === undefined) throw new Error(`tokenizer JSON: unknown type "${type}" (known: ${[...LOADERS.keys()].join(", ")})`);
  return load(obj);
}
