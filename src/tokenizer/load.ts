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

/** Control characters and line separators escaped, so that a message stays on one line. */
function oneLine(s: string): string {
  return s.replace(/[\u0000-\u001f\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);
}

export function tokenizerFromJSON(obj: unknown): Tokenizer {
  if (isHfTokenizerJson(obj)) return tokenizerFromHfJson(obj);
  const type = typeof obj === "object" && obj !== null ? (obj as { type?: unknown }).type : undefined;
  if (typeof type !== "string") throw new Error(`tokenizer JSON: missing "type" field`);
  const load = LOADERS.get(type);
  if (load === undefined) throw new Error(`tokenizer JSON: unknown type ${oneLine(JSON.stringify(type.slice(0, 80)))} (known: ${[...LOADERS.keys()].join(", ")})`);
  return load(obj);
}

/** A tokenizer from JSON text (a file's contents); a syntax error becomes a one-line Error. */
export function tokenizerFromJsonText(text: string): Tokenizer {
  let obj: unknown;
  try {
    obj = JSON.parse(text);
  } catch (e) {
    // V8 quotes the text around the error, line breaks included.
    throw new Error(`tokenizer JSON: not valid JSON (${oneLine((e as Error).message).slice(0, 200)})`);
  }
  return tokenizerFromJSON(obj);
}
