// Rebuild a tokenizer from the JSON its toJSON() wrote, by its `type`.

import { CharTokenizer } from "./char-tokenizer.js";
import { Llama2cTokenizer } from "./llama2c-tokenizer.js";
import type { Tokenizer } from "./tokenizer.js";

const LOADERS = new Map<string, (obj: unknown) => Tokenizer>([
  ["char", (o) => CharTokenizer.fromJSON(o)],
  ["llama2c", (o) => Llama2cTokenizer.fromJSON(o)],
]);

export function tokenizerFromJSON(obj: unknown): Tokenizer {
  const type = typeof obj === "object" && obj !== null ? (obj as { type?: unknown }).type : undefined;
  if (typeof type !== "string") throw new Error(`tokenizer JSON: missing "type" field`);
  const load = LOADERS.get(type);
  if (load === undefined) throw new Error(`tokenizer JSON: unknown type "${type}" (known: ${[...LOADERS.keys()].join(", ")})`);
  return load(obj);
}
