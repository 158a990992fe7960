// The OpenAI API's request and response shapes (https://platform.openai.com/docs/api-reference,
// as llama-server implements them): checking a request body into generation settings, and the
// JSON of completions, chat completions, their streamed chunks and errors. No I/O: server.ts does it.
import type { SampleOptions } from "../runtime/sample.js";

/** A request the client got wrong: HTTP `status` with OpenAI's error body. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly type = "invalid_request_error",
    readonly param: string | null = null,
    readonly code: string | null = null,
  ) {
    super(message);
  }
}

export const errorBody = (e: ApiError): object => ({ error: { message: e.message, type: e.type, param: e.param, code: e.code } });

/** What a completion request asks for, checked. */
export interface GenerationRequest {
  model: string | undefined;
  stream: boolean;
  includeUsage: boolean;
  maxTokens: number | undefined;
  sampling: SampleOptions;
  seed: number | undefined;
  stop: string[];
  /** Top alternatives per token (0: the token's own log-probability only); undefined: none. */
  logprobs: number | undefined;
}

type Body = Record<string, unknown>;

const typeName = (v: unknown): string => (v === null ? "null" : Array.isArray(v) ? "array" : typeof v);

/** The JSON object of a request body; 400 otherwise. */
export function parseBody(text: string): Body {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw new ApiError(400, `the request body is not valid JSON: ${(e as Error).message}`);
  }
  if (typeof v !== "object" || v === null || Array.isArray(v)) throw new ApiError(400, `the request body must be a JSON object (got ${typeName(v)})`);
  return v as Body;
}

/** Field `name` of `b` when present (not null/undefined): a number in [lo, hi] (integer if asked); 400 otherwise. */
function num(b: Body, name: string, lo: number, hi: number, integer = false): number | undefined {
  const v = b[name];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "number" || !Number.isFinite(v) || (integer && !Number.isInteger(v)) || v < lo || v > hi)
    throw new ApiError(400, `'${name}' must be ${integer ? "an integer" : "a number"} in [${lo}, ${hi}] (got ${JSON.stringify(v)})`, "invalid_request_error", name);
  return v;
}

function bool(b: Body, name: string): boolean | undefined {
  const v = b[name];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "boolean") throw new ApiError(400, `'${name}' must be a boolean (got ${typeName(v)})`, "invalid_request_error", name);
  return v;
}

export function str(b: Body, name: string): string | undefined {
  const v = b[name];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "string") throw new ApiError(400, `'${name}' must be a string (got ${typeName(v)})`, "invalid_request_error", name);
  return v;
}

/** The settings both completion endpoints share; `chat` picks chat's logprobs form (a boolean and top_logprobs). */
export function generationRequest(b: Body, chat: boolean): GenerationRequest {
  const n = num(b, "n", 1, 1, true);
  void n; // n > 1 is refused above: one choice per request
  const stopField = b.stop;
  let stop: string[] = [];
  if (typeof stopField === "string") stop = [stopField];
  else if (Array.isArray(stopField) && stopField.length <= 4 && stopField.every((s) => typeof s === "string")) stop = stopField as string[];
  else if (stopField !== undefined && stopField !== null) throw new ApiError(400, "'stop' must be a string or an array of up to 4 strings", "invalid_request_error", "stop");
  const streamOptions = b.stream_options;
  if (streamOptions !== undefined && streamOptions !== null && (typeof streamOptions !== "object" || Array.isArray(streamOptions)))
    throw new ApiError(400, "'stream_options' must be an object", "invalid_request_error", "stream_options");
  let logprobs: number | undefined;
  if (chat) {
    const top = num(b, "top_logprobs", 0, 20, true);
    if (bool(b, "logprobs")) logprobs = top ?? 0;
    else if (top !== undefined) throw new ApiError(400, "'top_logprobs' needs 'logprobs': true", "invalid_request_error", "top_logprobs");
  } else logprobs = num(b, "logprobs", 0, 5, true);
  const temperature = num(b, "temperature", 0, 2) ?? 1;
  return {
    model: str(b, "model"),
    stream: bool(b, "stream") ?? false,
    includeUsage: (streamOptions as Body | undefined)?.include_usage === true,
    maxTokens: num(b, "max_completion_tokens", 0, 1 << 30, true) ?? num(b, "max_tokens", 0, 1 << 30, true),
    sampling: {
      temperature,
      topP: num(b, "top_p", 0, 1) || 1,
      topK: num(b, "top_k", 0, 1 << 20, true) ?? 0,
      minP: num(b, "min_p", 0, 1) ?? 0,
      presencePenalty: num(b, "presence_penalty", -2, 2) ?? 0,
      frequencyPenalty: num(b, "frequency_penalty", -2, 2) ?? 0,
      repeatPenalty: num(b, "repeat_penalty", 0, 10) || 1,
    },
    seed: num(b, "seed", -(2 ** 53), 2 ** 53, true),
    stop,
    logprobs,
  };
}

export type Finish = "stop" | "length";

export interface TokenLogprob {
  token: string;
  logprob: number;
  bytes: number[];
  top_logprobs: { token: string; logprob: number; bytes: number[] }[];
}

const utf8 = new TextEncoder();
/** One token's entry of chat's logprobs.content. */
export function tokenLogprob(text: (id: number) => string, token: number, logprob: number, top: { token: number; logprob: number }[]): TokenLogprob {
  const entry = (id: number, lp: number) => ({ token: text(id), logprob: lp, bytes: Array.from(utf8.encode(text(id))) });
  return { ...entry(token, logprob), top_logprobs: top.map((t) => entry(t.token, t.logprob)) };
}

/** Legacy completions' logprobs object from the per-token entries. */
export function completionLogprobs(entries: TokenLogprob[]): object {
  let offset = 0;
  const textOffset = entries.map((e) => {
    const at = offset;
    offset += e.token.length;
    return at;
  });
  return {
    tokens: entries.map((e) => e.token),
    token_logprobs: entries.map((e) => e.logprob),
    top_logprobs: entries.map((e) => Object.fromEntries(e.top_logprobs.map((t) => [t.token, t.logprob]))),
    text_offset: textOffset,
  };
}

export const usage = (prompt: number, completion: number) => ({ prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion });
