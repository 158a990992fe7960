// A teacher: a model that answers prompts, for the data pipeline's steps that need one (`bonsai
// data synth` writes what it answers; a labelling step reads a score out of its answer). Two
// kinds behind one interface: a Bonsai model in this process (ModelTeacher: any model loadModel
// opens, batched by the serving engine), and any OpenAI-compatible server (EndpointTeacher: vLLM,
// llama-server, Ollama, `bonsai serve`, OpenAI) with per-request timeouts, retries with backoff on
// 429/5xx/network errors that honour Retry-After, and a token-rate limit shared by all of its
// requests. Browser-safe: global fetch and timers only.
import type { Llama } from "../nn/llama.js";
import type { Tokenizer } from "../tokenizer/tokenizer.js";
import { BatchEngine, type TokenEvent } from "../runtime/batch.js";
import { type ChatMessage, DEFAULT_CHAT_TEMPLATE, chatPromptIds, chatStops, checkMessages, renderChat, specialTokenTexts } from "../runtime/chat.js";
import { promptIds } from "../runtime/stream.js";
import { TextStream } from "../runtime/text-stream.js";

/** A prompt: plain text (a chat teacher sends it as one user message), or a conversation. */
export type TeacherPrompt = string | ChatMessage[];

export interface CompleteOptions {
  /** Most tokens to generate. */
  maxTokens: number;
  /** Sampling temperature; 0 = greedy. */
  temperature: number;
  /** Sampling seed: the same seed, prompt and settings give the same answer where the teacher is deterministic. */
  seed?: number;
  /** Nucleus sampling (1 = off). */
  topP?: number;
  /** The answer ends before the first of these (not included). */
  stop?: string[];
  /** Aborting it abandons the request (its promise rejects with the signal's reason). */
  signal?: AbortSignal;
}

export interface TeacherUsage {
  prompt_tokens: number;
  completion_tokens: number;
}

export interface TeacherCompletion {
  text: string;
  /** Tokens as the teacher counts them (an endpoint's `usage`; 0 where a server sends none). */
  usage: TeacherUsage;
  /** Why the answer ended: "stop" (end of turn or a stop string), "length" (maxTokens or the context), or the server's word. */
  finishReason: string;
}

export interface Teacher {
  /** What records say answered: the model's path, or "MODEL@URL" for an endpoint. */
  readonly name: string;
  /**
   * Answer one prompt. Rejects with a TeacherError: `refused` when the request itself is wrong
   * (an endpoint's 4xx other than 408/409/429, a prompt the model cannot take) and retrying is
   * pointless, else after the teacher's own retries; with the signal's reason when aborted.
   */
  complete(prompt: TeacherPrompt, opts: CompleteOptions): Promise<TeacherCompletion>;
}

/** A request that failed. `refused`: the same request will fail again (callers stop); otherwise it failed after retries. */
export class TeacherError extends Error {
  override name = "TeacherError";
  constructor(
    message: string,
    readonly refused: boolean,
    /** The HTTP status of the last answer, when there was one. */
    readonly status?: number,
  ) {
    super(message);
  }
}

const abortReason = (signal: AbortSignal): unknown => signal.reason ?? new DOMException("the request was aborted", "AbortError");

// ---------------------------------------------------------------------------------------------
// In-process: a Bonsai model.

export interface ModelTeacherOptions {
  /** Records' teacher name (default "bonsai"). */
  name?: string;
  /**
   * "auto" (default): prompts go through the model's chat template when it has one, else as raw
   * text to continue. "chat": always a chat (DEFAULT_CHAT_TEMPLATE without one). "completion": raw
   * text (a conversation is refused).
   */
  format?: "auto" | "chat" | "completion";
  /** Sequences generating at once (the engine's slots; default 4): concurrent complete() calls decode together. */
  parallel?: number;
}

/**
 * A model in this process as a teacher: `{ model, tokenizer, chatTemplate }` as loadModel returns
 * them. Concurrent requests share one continuous-batching engine (runtime/batch.ts), each with
 * its own seed, and each gets exactly the tokens it gets alone. Usage counts the prompt's tokens
 * and the generated ones (up to a stop string's end).
 */
export class ModelTeacher implements Teacher {
  readonly name: string;
  readonly format: "chat" | "completion";
  private readonly engine: BatchEngine;
  private readonly template: string;

  constructor(
    private readonly loaded: { model: Llama; tokenizer: Tokenizer; chatTemplate: string | null },
    opts: ModelTeacherOptions = {},
  ) {
    this.name = opts.name ?? "bonsai";
    const format = opts.format ?? "auto";
    this.format = format === "auto" ? (loaded.chatTemplate !== null ? "chat" : "completion") : format;
    this.template = loaded.chatTemplate ?? DEFAULT_CHAT_TEMPLATE;
    this.engine = new BatchEngine(loaded.model, { parallel: opts.parallel ?? 4, maxQueue: 1 << 20 });
  }

  async complete(prompt: TeacherPrompt, opts: CompleteOptions): Promise<TeacherCompletion> {
    const { tokenizer } = this.loaded;
    if (opts.signal?.aborted) throw abortReason(opts.signal);
    let ids: number[];
    const stop = [...(opts.stop ?? [])];
    let stopIds = [tokenizer.eosId, tokenizer.bosId].filter((x): x is number => x !== null);
    try {
      if (this.format === "chat") {
        const messages = checkMessages(typeof prompt === "string" ? [{ role: "user", content: prompt }] : prompt);
        ids = chatPromptIds(tokenizer, renderChat(this.template, messages, specialTokenTexts(tokenizer)));
        const turn = chatStops(tokenizer, this.template);
        stopIds = turn.stopIds;
        stop.push(...turn.stop);
      } else {
        if (typeof prompt !== "string") throw new Error("this teacher continues raw text (its model has no chat template): give it a string, not messages");
        ids = promptIds(tokenizer, prompt);
      }
    } catch (e) {
      throw new TeacherError(`${this.name}: the prompt cannot be given to the model: ${(e as Error).message}`, true);
    }
    if (ids.length >= this.engine.ctxSize)
      throw new TeacherError(`${this.name}: the prompt is ${ids.length} tokens; the model's context holds ${this.engine.ctxSize} (prompt and answer)`, true);
    const abort = new AbortController();
    const onAbort = (): void => abort.abort();
    opts.signal?.addEventListener("abort", onAbort, { once: true });
    try {
      let stream;
      try {
        stream = this.engine.submit({ prompt: ids, maxTokens: opts.maxTokens, temperature: opts.temperature, topP: opts.topP, seed: opts.seed ?? 0, stopIds, signal: abort.signal });
      } catch (e) {
        throw new TeacherError(`${this.name}: ${(e as Error).message}`, true);
      }
      const text = new TextStream(tokenizer, ids, stop);
      let out = "", generated = 0, stopped = false;
      for await (const e of stream as AsyncIterable<TokenEvent>) {
        generated++;
        const piece = text.push(e.token);
        out += piece.text;
        if (piece.stopped) {
          stopped = true;
          abort.abort(); // ends the sequence in the engine
          break;
        }
      }
      const reason = await stream.finished;
      if (opts.signal?.aborted) throw abortReason(opts.signal);
      if (!stopped) out += text.flush();
      return { text: out, usage: { prompt_tokens: ids.length, completion_tokens: generated }, finishReason: stopped ? "stop" : reason === "length" ? "length" : "stop" };
    } finally {
      opts.signal?.removeEventListener("abort", onAbort);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// A token-rate limit.

/**
 * A token bucket: at most `tokensPerMinute` tokens a minute, in bursts of at most `burst` (default:
 * a minute's worth), shared by every request that acquires from it. A request reserves what it
 * may use before it is sent (its estimate) and settles with what it used when the answer comes,
 * so an answer shorter than its reservation gives the difference back. Waiters are served first
 * come, first served; a request larger than the burst waits for a full bucket.
 */
export class TokenRateLimiter {
  readonly burst: number;
  private available: number;
  private last = now();
  private readonly waiters: { need: number; resolve: () => void; reject: (e: unknown) => void; signal?: AbortSignal; onAbort?: () => void }[] = [];
  private timer: ReturnType<typeof setTimeout> | null = null;

  constructor(
    readonly tokensPerMinute: number,
    opts: { burst?: number } = {},
  ) {
    if (!(tokensPerMinute > 0) || !Number.isFinite(tokensPerMinute)) throw new Error(`tokens per minute must be a positive number (got ${tokensPerMinute})`);
    this.burst = opts.burst ?? tokensPerMinute;
    if (!(this.burst > 0)) throw new Error(`the burst must be a positive number (got ${this.burst})`);
    this.available = this.burst;
  }

  /** Tokens that may be spent now (negative after answers that used more than they reserved). */
  get tokens(): number {
    this.refill();
    return this.available;
  }

  /** Wait until `n` tokens (at most the burst) may be spent, and take them. */
  acquire(n: number, signal?: AbortSignal): Promise<void> {
    if (signal?.aborted) return Promise.reject(abortReason(signal));
    const need = Math.min(Math.max(0, n), this.burst);
    return new Promise<void>((resolve, reject) => {
      const w: (typeof this.waiters)[number] = { need, resolve, reject, signal };
      if (signal) {
        w.onAbort = () => {
          const i = this.waiters.indexOf(w);
          if (i >= 0) this.waiters.splice(i, 1);
          reject(abortReason(signal));
          this.pump();
        };
        signal.addEventListener("abort", w.onAbort, { once: true });
      }
      this.waiters.push(w);
      this.pump();
    });
  }

  /** A request that reserved `reserved` tokens used `used`: the difference goes back (or is owed). */
  settle(reserved: number, used: number): void {
    this.refill();
    this.available = Math.min(this.burst, this.available + reserved - used);
    this.pump();
  }

  private refill(): void {
    const t = now();
    this.available = Math.min(this.burst, this.available + ((t - this.last) * this.tokensPerMinute) / 60_000);
    this.last = t;
  }

  private pump(): void {
    this.refill();
    while (this.waiters.length > 0 && this.available >= this.waiters[0].need) {
      const w = this.waiters.shift()!;
      this.available -= w.need;
      if (w.onAbort) w.signal!.removeEventListener("abort", w.onAbort);
      w.resolve();
    }
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    if (this.waiters.length > 0) {
      const ms = ((this.waiters[0].need - this.available) * 60_000) / this.tokensPerMinute;
      this.timer = setTimeout(() => {
        this.timer = null;
        this.pump();
      }, Math.max(1, Math.ceil(ms)));
    }
  }
}

function now(): number {
  return globalThis.performance?.now() ?? Date.now();
}

// ---------------------------------------------------------------------------------------------
// An OpenAI-compatible endpoint.

export interface EndpointTeacherOptions {
  /**
   * The server: a base URL as the openai client takes it (`http://host:8080/v1`; `/v1` is added to
   * one without a path), or the full URL of `/v1/chat/completions` or `/v1/completions`.
   */
  url: string;
  /** The `model` field of every request. */
  model: string;
  /** "chat" (default: `/chat/completions`, a string prompt sent as one user message) or "completions" (`/completions`, string prompts only). Implied by a full URL. */
  api?: "chat" | "completions";
  /** Sent as `Authorization: Bearer <apiKey>`. */
  apiKey?: string;
  /** Per attempt: the whole request, answer body included, must finish in this time (default 120 s). */
  timeoutMs?: number;
  /** Attempts after the first on 408, 409, 429, 5xx, network errors and timeouts (default 5). */
  retries?: number;
  /** Backoff: attempt k waits a random time in [d/2, d], d = min(maxRetryDelayMs, retryDelayMs · 2^k) (defaults 500 ms, 30 s), or what Retry-After / retry-after-ms says. */
  retryDelayMs?: number;
  maxRetryDelayMs?: number;
  /** Tokens per minute for all of this teacher's requests together (prompt estimate + maxTokens reserved per attempt; settled by `usage`). */
  tokensPerMinute?: number;
  /** Share a limiter with other teachers instead (overrides tokensPerMinute). */
  limiter?: TokenRateLimiter;
  /** More request headers (e.g. an organisation). */
  headers?: Record<string, string>;
  /** Retries and their reasons, for logs. */
  onRetry?: (info: { attempt: number; delayMs: number; reason: string }) => void;
}

/** The URL that answers `api`, from a base URL or a full one (which then says the api). */
export function endpointUrl(url: string, api?: "chat" | "completions"): { url: string; api: "chat" | "completions" } {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new Error(`the endpoint is not a URL: ${url}`);
  }
  if (u.protocol !== "http:" && u.protocol !== "https:") throw new Error(`the endpoint must be http or https: ${url}`);
  const path = u.pathname.replace(/\/+$/, "");
  const full = path.endsWith("/chat/completions") ? "chat" : path.endsWith("/completions") ? "completions" : null;
  if (full) {
    if (api !== undefined && api !== full) throw new Error(`the endpoint ${url} is the ${full} API, not ${api}`);
    return { url: `${u.origin}${path}${u.search}`, api: full };
  }
  const base = `${u.origin}${path === "" ? "/v1" : path}`;
  const chosen = api ?? "chat";
  return { url: `${base}/${chosen === "chat" ? "chat/completions" : "completions"}${u.search}`, api: chosen };
}

/** Milliseconds a Retry-After (seconds or an HTTP date) or retry-after-ms header asks for, or null. */
export function retryAfterMs(headers: Headers): number | null {
  const ms = headers.get("retry-after-ms");
  if (ms !== null && ms.trim() !== "" && Number.isFinite(Number(ms)) && Number(ms) >= 0) return Number(ms);
  const ra = headers.get("retry-after");
  if (ra === null || ra.trim() === "") return null;
  if (/^\s*\d+(\.\d+)?\s*$/.test(ra)) return Number(ra) * 1000;
  const date = Date.parse(ra);
  return Number.isNaN(date) ? null : Math.max(0, date - Date.now());
}

const RETRYABLE = (status: number): boolean => status === 408 || status === 409 || status === 429 || status >= 500;

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(abortReason(signal));
    const onAbort = (): void => {
      clearTimeout(t);
      reject(abortReason(signal!));
    };
    const t = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/** An error body's message (OpenAI's {"error": {"message"}}, or its text), one line, cut short. */
function errorMessage(text: string): string {
  let m = text;
  try {
    const v = JSON.parse(text) as { error?: { message?: unknown } | string; message?: unknown };
    if (typeof v.error === "string") m = v.error;
    else if (typeof v.error?.message === "string") m = v.error.message;
    else if (typeof v.message === "string") m = v.message;
  } catch {
    // not JSON: the text as it is
  }
  m = m.replace(/\s+/g, " ").trim();
  return m.length > 300 ? m.slice(0, 300) + "…" : m;
}

const seconds = (ms: number): string => `${Number((ms / 1000).toFixed(3))} s`;

/**
 * An OpenAI-compatible server as a teacher. Each complete() is one non-streamed request; an
 * attempt that times out (the whole answer within timeoutMs), cannot connect, or gets 408, 409,
 * 429 or 5xx is retried after a backoff with jitter (or the server's Retry-After), up to `retries`
 * times; other 4xx answers are refusals (TeacherError with `refused`), not retried.
 */
export class EndpointTeacher implements Teacher {
  readonly name: string;
  readonly url: string;
  readonly api: "chat" | "completions";
  readonly limiter: TokenRateLimiter | null;
  private readonly timeoutMs: number;
  private readonly retries: number;
  private readonly retryDelayMs: number;
  private readonly maxRetryDelayMs: number;

  constructor(private readonly opts: EndpointTeacherOptions) {
    const e = endpointUrl(opts.url, opts.api);
    this.url = e.url;
    this.api = e.api;
    this.name = `${opts.model}@${e.url.replace(/\/(chat\/)?completions(\?.*)?$/, "")}`;
    this.timeoutMs = opts.timeoutMs ?? 120_000;
    this.retries = opts.retries ?? 5;
    this.retryDelayMs = opts.retryDelayMs ?? 500;
    this.maxRetryDelayMs = opts.maxRetryDelayMs ?? 30_000;
    for (const [k, v] of [["timeout", this.timeoutMs], ["retry delay", this.retryDelayMs], ["largest retry delay", this.maxRetryDelayMs]] as const)
      if (!(v > 0) || !Number.isFinite(v)) throw new Error(`the ${k} must be a positive number of milliseconds (got ${v})`);
    if (!Number.isInteger(this.retries) || this.retries < 0) throw new Error(`retries must be a whole number ≥ 0 (got ${this.retries})`);
    this.limiter = opts.limiter ?? (opts.tokensPerMinute !== undefined ? new TokenRateLimiter(opts.tokensPerMinute) : null);
  }

  async complete(prompt: TeacherPrompt, o: CompleteOptions): Promise<TeacherCompletion> {
    const body: Record<string, unknown> = { model: this.opts.model, max_tokens: o.maxTokens, temperature: o.temperature, stream: false };
    if (this.api === "chat") body.messages = typeof prompt === "string" ? [{ role: "user", content: prompt }] : prompt;
    else {
      if (typeof prompt !== "string") throw new TeacherError(`${this.name}: the completions API takes a prompt string, not messages`, true);
      body.prompt = prompt;
    }
    if (o.seed !== undefined) body.seed = o.seed;
    if (o.topP !== undefined) body.top_p = o.topP;
    if (o.stop !== undefined && o.stop.length > 0) body.stop = o.stop;
    const json = JSON.stringify(body);
    const promptChars = typeof prompt === "string" ? prompt.length : prompt.reduce((n, m) => n + m.content.length + 8, 0);
    const estimate = Math.ceil(promptChars / 4) + o.maxTokens;
    const headers: Record<string, string> = { "Content-Type": "application/json", Accept: "application/json", ...this.opts.headers };
    if (this.opts.apiKey !== undefined) headers.Authorization = `Bearer ${this.opts.apiKey}`;
    let last = "";
    let lastStatus: number | undefined;
    for (let attempt = 0; ; attempt++) {
      if (o.signal?.aborted) throw abortReason(o.signal);
      await this.limiter?.acquire(estimate, o.signal);
      const r = await this.attempt(json, headers, o.signal);
      if (r.ok) {
        this.limiter?.settle(estimate, r.value.usage.prompt_tokens + r.value.usage.completion_tokens || estimate);
        return r.value;
      }
      this.limiter?.settle(estimate, 0);
      last = r.reason;
      lastStatus = r.status;
      if (!r.retryable) throw new TeacherError(`${this.name}: the server refused the request: ${r.reason}`, true, r.status);
      if (attempt >= this.retries) break;
      const backoff = Math.min(this.maxRetryDelayMs, this.retryDelayMs * 2 ** attempt);
      const delayMs = r.retryAfterMs ?? backoff * (0.5 + 0.5 * Math.random());
      this.opts.onRetry?.({ attempt: attempt + 1, delayMs, reason: r.reason });
      await sleep(delayMs, o.signal);
    }
    const tries = this.retries + 1;
    throw new TeacherError(`${this.name}: ${last} (${tries} attempt${tries === 1 ? "" : "s"})`, false, lastStatus);
  }

  /** One request: the answer, or why it failed and whether to try again. */
  private async attempt(
    body: string,
    headers: Record<string, string>,
    signal: AbortSignal | undefined,
  ): Promise<{ ok: true; value: TeacherCompletion } | { ok: false; retryable: boolean; reason: string; status?: number; retryAfterMs?: number }> {
    const ctl = new AbortController();
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      ctl.abort();
    }, this.timeoutMs);
    const onAbort = (): void => ctl.abort();
    signal?.addEventListener("abort", onAbort, { once: true });
    try {
      let res: Response;
      let text: string;
      try {
        res = await fetch(this.url, { method: "POST", headers, body, signal: ctl.signal });
        text = await res.text();
      } catch (e) {
        if (signal?.aborted) throw abortReason(signal);
        if (timedOut) return { ok: false, retryable: true, reason: `no answer within ${seconds(this.timeoutMs)} (the request timed out): POST ${this.url}` };
        const cause = (e as { cause?: { code?: string; message?: string } }).cause;
        return { ok: false, retryable: true, reason: `POST ${this.url} failed: ${cause?.code ?? cause?.message ?? (e as Error).message}` };
      }
      if (!res.ok) {
        const reason = `POST ${this.url}: ${res.status}${res.statusText ? ` ${res.statusText}` : ""}${text ? `: ${errorMessage(text)}` : ""}`;
        return { ok: false, retryable: RETRYABLE(res.status), reason, status: res.status, retryAfterMs: retryAfterMs(res.headers) ?? undefined };
      }
      const parsed = this.parse(text);
      if (typeof parsed === "string") return { ok: false, retryable: true, reason: `POST ${this.url}: ${parsed}`, status: res.status };
      return { ok: true, value: parsed };
    } finally {
      clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
    }
  }

  /** A 200 answer's completion, or what is wrong with it. */
  private parse(text: string): TeacherCompletion | string {
    let v: unknown;
    try {
      v = JSON.parse(text);
    } catch {
      return `the answer is not JSON: ${errorMessage(text)}`;
    }
    const choice = (v as { choices?: unknown[] })?.choices?.[0] as { message?: { content?: unknown }; text?: unknown; finish_reason?: unknown } | undefined;
    const content = this.api === "chat" ? choice?.message?.content : choice?.text;
    if (typeof content !== "string") return `the answer has no ${this.api === "chat" ? "choices[0].message.content" : "choices[0].text"}`;
    const u = (v as { usage?: { prompt_tokens?: unknown; completion_tokens?: unknown } }).usage;
    const count = (x: unknown): number => (typeof x === "number" && Number.isFinite(x) && x >= 0 ? x : 0);
    return {
      text: content,
      usage: { prompt_tokens: count(u?.prompt_tokens), completion_tokens: count(u?.completion_tokens) },
      finishReason: typeof choice?.finish_reason === "string" ? choice.finish_reason : "stop",
    };
  }
}
