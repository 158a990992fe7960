// Streaming generation: the async iterator a UI or a server consumes, yielding text pieces as
// tokens are produced (whole characters only, stop strings withheld; see text-stream.ts).
import type { Llama } from "../nn/llama.js";
import type { Tokenizer } from "../tokenizer/tokenizer.js";
import { type GenerateOptions, generateTokens } from "./generate.js";
import { type SpeculativeConfig, speculativeTokens } from "./speculative.js";
import { TextStream } from "./text-stream.js";

export interface StreamOptions extends GenerateOptions {
  /** Generation stops when the text contains one of these; the stop string is not emitted. */
  stop?: string[];
  /** Speculative decoding with this drafter (same output distribution, fewer target passes). */
  speculative?: SpeculativeConfig;
}

export interface StreamPiece {
  /** The generated token; null for the final flush of held-back text. */
  token: number | null;
  /** New text, possibly empty while characters are held back. */
  text: string;
}

/** The prompt's ids: BOS first when the tokenizer has one; an empty prompt without BOS starts from a newline. */
export function promptIds(tokenizer: Tokenizer, prompt: string): number[] {
  if (tokenizer.bosId !== null) return tokenizer.encode(prompt, { addBos: true });
  if (prompt === "") {
    try {
      return tokenizer.encode("\n");
    } catch {
      return [0];
    }
  }
  return tokenizer.encode(prompt);
}

/**
 * Generate from `prompt` (ids) and yield text pieces. Stops at maxTokens, at a stop id (default:
 * the tokenizer's EOS and BOS, llama2.c's document separator) or at a stop string.
 */
export async function* stream(model: Llama, tokenizer: Tokenizer, prompt: number[], o: StreamOptions): AsyncGenerator<StreamPiece> {
  const stopIds = o.stopIds ?? [tokenizer.eosId, tokenizer.bosId].filter((x): x is number => x !== null);
  const text = new TextStream(tokenizer, prompt, o.stop);
  const spec = o.speculative;
  const tokens = spec ? speculativeTokens(model, prompt, { ...o, stopIds, speculative: spec }) : generateTokens(model, prompt, { ...o, stopIds });
  for await (const token of tokens) {
    const piece = text.push(token);
    yield { token, text: piece.text };
    if (piece.stopped) return;
  }
  const rest = text.flush();
  if (rest !== "") yield { token: null, text: rest };
}
