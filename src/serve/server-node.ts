// `bonsai serve`'s HTTP server (node:http): the OpenAI API as llama-server speaks it —
// POST /v1/completions, /v1/chat/completions (streamed by server-sent events or not),
// /v1/embeddings, GET /v1/models, /health, /metrics (Prometheus text) — over one model whose
// requests share a continuous-batching engine (runtime/batch.ts), plus the chat page's routes.
// Faults get OpenAI's error body: bad JSON or fields 400, an unknown model 404, a prompt beyond
// the context 400 (context_length_exceeded), a full queue 429 with Retry-After, a missing API key
// 401, a body over the cap 413. A client that disconnects cancels its generation; close() stops
// accepting, lets running requests finish within a grace period, then drops the rest.
import { type IncomingMessage, type Server, type ServerResponse, createServer as createHttpServer } from "node:http";
import type { AddressInfo } from "node:net";
import type { Socket } from "node:net";
import type { Llama } from "../nn/llama.js";
import type { Tokenizer } from "../tokenizer/tokenizer.js";
import { BatchEngine, type BatchRequest, type BatchSpeculative, QueueFullError, type TokenEvent } from "../runtime/batch.js";
import { promptIds } from "../runtime/stream.js";
import { TextStream } from "../runtime/text-stream.js";
import { ChatInputError, ChatTemplateError, DEFAULT_CHAT_TEMPLATE, chatPromptIds, chatStops, checkMessages, renderChat, specialTokenTexts } from "../runtime/chat.js";
import { noGrad, scope } from "../tensor/tensor.js";
import { ApiError, type Finish, type TokenLogprob, completionLogprobs, errorBody, generationRequest, parseBody, str, tokenLogprob, usage } from "./openai.js";
import { Metrics } from "./metrics.js";
import { type AppRouteHandler, setCrossOriginIsolation } from "./app-routes-node.js";
import { ANSWERED_BY_HEADER, type CascadeOptions, type CascadeTag, type FallbackReason } from "./cascade.js";
import { Cascade } from "./cascade-node.js";

export interface ServeOptions {
  tokenizer: Tokenizer;
  /** The id /v1/models lists and requests may name (default "bonsai"). */
  modelName?: string;
  /** The model's chat template (null: DEFAULT_CHAT_TEMPLATE). */
  chatTemplate?: string | null;
  /** Sequences generating at once (4), positions per sequence (the model's context), waiting requests (64). */
  parallel?: number;
  ctxSize?: number;
  maxQueue?: number;
  /** Speculative decoding for every sequence (llama-server --draft): a draft model or prompt lookup. */
  speculative?: BatchSpeculative;
  /** Requests must send `Authorization: Bearer <apiKey>` (all but /health and the page). */
  apiKey?: string;
  /** Largest request body in bytes (1 MiB). */
  maxBodyBytes?: number;
  /** The chat page's routes (serve/app-routes.ts), tried before the API's. */
  app?: AppRouteHandler;
  /** Escalate unconfident answers to an upstream server (serve/cascade.ts). */
  cascade?: CascadeOptions;
}

export interface BonsaiServer {
  readonly engine: BatchEngine;
  readonly metrics: Metrics;
  /** Listen (port 0: any free one); resolves to the base URL. */
  listen(port?: number, host?: string): Promise<string>;
  /** Stop accepting; running requests get `graceMs` to finish, then their connections are dropped. */
  close(graceMs?: number): Promise<void>;
}

const JSON_TYPE = "application/json; charset=utf-8";

export function createServer(model: Llama, opts: ServeOptions): BonsaiServer {
  const tokenizer = opts.tokenizer;
  const name = opts.modelName ?? "bonsai";
  const template = opts.chatTemplate ?? DEFAULT_CHAT_TEMPLATE;
  const maxBody = opts.maxBodyBytes ?? 1 << 20;
  const engine = new BatchEngine(model, { parallel: opts.parallel, ctxSize: opts.ctxSize, maxQueue: opts.maxQueue, speculative: opts.speculative });
  const metrics = new Metrics(engine);
  const cascade = opts.cascade ? new Cascade(opts.cascade, metrics) : null;
  const created = Math.floor(Date.now() / 1000);
  const sockets = new Set<Socket>();
  const running = new Set<Promise<void>>();
  let draining = false;

  const send = (res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void => {
    if (res.headersSent) return;
    res.writeHead(status, { "Content-Type": JSON_TYPE, ...headers });
    res.end(JSON.stringify(body));
  };

  async function readBody(req: IncomingMessage): Promise<string> {
    const declared = Number(req.headers["content-length"] ?? 0);
    if (declared > maxBody) throw new ApiError(413, `the request body is larger than ${maxBody} bytes`);
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const c of req as AsyncIterable<Buffer>) {
      size += c.length;
      if (size > maxBody) throw new ApiError(413, `the request body is larger than ${maxBody} bytes`);
      chunks.push(c);
    }
    return Buffer.concat(chunks).toString("utf8");
  }

  /** Token ids of a request's text; text the tokenizer cannot encode is the request's fault. */
  function encode(fn: () => number[]): number[] {
    try {
      return fn();
    } catch (e) {
      throw new ApiError(400, (e as Error).message);
    }
  }

  function checkModel(requested: string | undefined): void {
    if (requested !== undefined && requested !== name) throw new ApiError(404, `the model '${requested}' does not exist; this server runs '${name}'`, "invalid_request_error", "model", "model_not_found");
  }

  /** Generate for one request, writing SSE chunks or one JSON body. */
  async function complete(req: IncomingMessage, res: ServerResponse, body: Record<string, unknown>, chat: boolean): Promise<void> {
    const g = generationRequest(body, chat);
    checkModel(g.model);
    let ids: number[];
    let stopIds: number[] | undefined;
    const stop = [...g.stop];
    if (chat) {
      const messages = checkMessages(body.messages);
      const rendered = renderChat(template, messages, specialTokenTexts(tokenizer));
      ids = encode(() => chatPromptIds(tokenizer, rendered));
      const turn = chatStops(tokenizer, template);
      stopIds = turn.stopIds;
      stop.push(...turn.stop);
    } else {
      const p = body.prompt;
      const prompt = Array.isArray(p) && p.length === 1 && typeof p[0] === "string" ? p[0] : p;
      if (typeof prompt !== "string") throw new ApiError(400, "'prompt' must be a string (or an array of one string)", "invalid_request_error", "prompt");
      ids = encode(() => promptIds(tokenizer, prompt));
    }
    if (ids.length > engine.ctxSize)
      throw new ApiError(400, `the prompt is ${ids.length} tokens, more than the context of ${engine.ctxSize}`, "invalid_request_error", "messages", "context_length_exceeded");
    const abort = new AbortController();
    res.on("close", () => abort.abort()); // a client gone mid-generation frees its slot
    const breq: BatchRequest = {
      ...g.sampling, prompt: ids, maxTokens: g.maxTokens ?? engine.ctxSize - ids.length, seed: g.seed ?? Math.floor(Math.random() * 2 ** 31),
      stopIds: stopIds ?? [tokenizer.eosId, tokenizer.bosId].filter((x): x is number => x !== null), logprobs: g.logprobs, signal: abort.signal,
      ...(cascade && { logprobs: g.logprobs ?? 0, entropy: cascade.needsEntropy }),
    };
    let stream;
    try {
      stream = engine.submit(breq);
    } catch (e) {
      if (e instanceof QueueFullError) throw new ApiError(429, e.message, "server_busy", null, "queue_full");
      throw new ApiError(400, (e as Error).message);
    }
    const id = `${chat ? "chatcmpl" : "cmpl"}-${Math.random().toString(36).slice(2, 14)}`;
    const head = { id, object: chat ? "chat.completion.chunk" : "text_completion", created: Math.floor(Date.now() / 1000), model: name };
    const text = new TextStream(tokenizer, ids, stop);
    const pieceOf = (t: number): string => tokenizer.decode([t]);
    const entries: TokenLogprob[] = [];
    let all = "", finish: Finish = "stop", generated = 0, stoppedByText = false;
    // The cascade holds the output back (`held`) until it decides who answers; then every chunk carries `tag`.
    const gate = cascade?.gate();
    let held: object[] | null = gate ? [] : null, tag: CascadeTag | undefined;
    const sse = (data: object): void => void (held ? held.push(data) : res.write(`data: ${JSON.stringify(tag ? { ...data, bonsai: tag } : data)}\n\n`));
    const sseHead = (): void => void res.writeHead(200, { "Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache", Connection: "keep-alive", ...(tag && { [ANSWERED_BY_HEADER]: "local" }) });
    /**
     * The cascade's decision; true when the upstream answered (the local generation, kept running
     * until then, stopped). An upstream failure falls back to the local generation, or throws.
     */
    const decide = async (): Promise<boolean> => {
      tag = gate!.decide();
      if (tag.answered_by === "upstream") {
        const failed = await cascade!.forward(res, chat, body, g.stream, tag, () => abort.abort());
        if (failed === null) return true;
        if (cascade!.fallback === "error") {
          abort.abort();
          throw failed;
        }
        tag = { ...tag, answered_by: "local", fallback: failed.code as FallbackReason };
      }
      if (g.stream) sseHead();
      const out = held!;
      held = null;
      for (const c of out) sse(c);
      return false;
    };
    const chunk = (piece: string, lp: TokenLogprob[], reason: Finish | null): object =>
      chat
        ? { ...head, choices: [{ index: 0, delta: reason === null ? { content: piece } : {}, logprobs: g.logprobs === undefined || reason !== null ? null : { content: lp }, finish_reason: reason }] }
        : { ...head, choices: [{ index: 0, text: piece, logprobs: g.logprobs === undefined || reason !== null ? null : completionLogprobs(lp), finish_reason: reason }] };
    if (g.stream) {
      if (!gate) sseHead();
      if (chat) sse({ ...head, choices: [{ index: 0, delta: { role: "assistant", content: "" }, logprobs: null, finish_reason: null }] });
    }
    let pending: TokenLogprob[] = [];
    try {
      for await (const e of stream as AsyncIterable<TokenEvent>) {
        generated++;
        gate?.observe(e);
        if (e.logprob !== undefined) pending.push(tokenLogprob(pieceOf, e.token, e.logprob, e.top ?? []));
        const piece = text.push(e.token);
        all += piece.text;
        if (g.stream && (piece.text !== "" || piece.stopped)) {
          if (piece.text !== "") sse(chunk(piece.text, pending, null));
          entries.push(...pending);
          pending = [];
        }
        if (piece.stopped) {
          stoppedByText = true;
          abort.abort();
          break;
        }
        if (gate?.full && !gate.decision && (await decide())) return;
      }
      const reason = await stream.finished;
      if (!stoppedByText) {
        if (reason === "abort") return; // the client left
        finish = reason;
        const rest = text.flush();
        all += rest;
        if (g.stream && rest !== "") sse(chunk(rest, pending, null));
      }
      entries.push(...pending);
    } catch (e) {
      if (!g.stream || held) throw e; // nothing sent yet: an error body
      sse(errorBody(new ApiError(500, (e as Error).message, "server_error")));
      res.end();
      return;
    }
    if (gate && !gate.decision && (await decide())) return; // an answer shorter than the probe
    if (cascade) cascade.answeredLocally(generated, tag?.fallback);
    metrics.finished(chat ? "chat" : "completions", ids.length, generated, stream.firstTokenSeconds);
    const u = usage(ids.length, generated);
    if (g.stream) {
      sse(chunk("", [], finish));
      if (g.includeUsage) sse({ ...head, choices: [], usage: u });
      res.end("data: [DONE]\n\n");
      return;
    }
    const logprobs = g.logprobs === undefined ? null : chat ? { content: entries } : completionLogprobs(entries);
    const choice = chat ? { index: 0, message: { role: "assistant", content: all }, logprobs, finish_reason: finish } : { index: 0, text: all, logprobs, finish_reason: finish };
    send(res, 200, { ...head, object: chat ? "chat.completion" : "text_completion", choices: [choice], usage: u, ...(tag && { bonsai: tag }) }, tag ? { [ANSWERED_BY_HEADER]: "local" } : {});
  }

  /** Mean-pooled final hidden states of each input, L2-normalised. */
  async function embeddings(res: ServerResponse, body: Record<string, unknown>): Promise<void> {
    checkModel(str(body, "model"));
    const input = body.input;
    const inputs = typeof input === "string" ? [input] : Array.isArray(input) && input.length > 0 && input.every((s) => typeof s === "string") ? (input as string[]) : null;
    if (inputs === null) throw new ApiError(400, "'input' must be a string or a non-empty array of strings", "invalid_request_error", "input");
    const enc = str(body, "encoding_format") ?? "float";
    if (enc !== "float" && enc !== "base64") throw new ApiError(400, "'encoding_format' must be 'float' or 'base64'", "invalid_request_error", "encoding_format");
    const data = [];
    let tokens = 0;
    for (const [index, text] of inputs.entries()) {
      const ids = encode(() => promptIds(tokenizer, text));
      if (ids.length > model.config.max_position_embeddings) throw new ApiError(400, `input ${index} is ${ids.length} tokens, more than the context of ${model.config.max_position_embeddings}`, "invalid_request_error", "input", "context_length_exceeded");
      tokens += ids.length;
      const h = await model.forwardAcross(Int32Array.from(ids), 1, ids.length, { hiddenStates: true });
      const host = await noGrad(() => scope(() => h.toArray())).finally(() => h.dispose());
      const dim = model.config.hidden_size, v = new Float64Array(dim);
      for (let t = 0; t < ids.length; t++) for (let i = 0; i < dim; i++) v[i] += host[t * dim + i] / ids.length;
      const norm = Math.hypot(...v) || 1;
      const unit = Float32Array.from(v, (x) => x / norm);
      // base64: the float32 values' little-endian bytes (what the openai client asks for by default).
      data.push({ object: "embedding", index, embedding: enc === "base64" ? Buffer.from(unit.buffer).toString("base64") : Array.from(unit) });
    }
    metrics.finished("embeddings", tokens, 0, null);
    send(res, 200, { object: "list", data, model: name, usage: { prompt_tokens: tokens, total_tokens: tokens } });
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    setCrossOriginIsolation(res);
    const path = new URL(req.url ?? "/", "http://localhost").pathname;
    const route = `${req.method} ${path}`;
    let status = 200;
    try {
      if (route === "GET /health") return send(res, draining ? 503 : 200, { status: draining ? "shutting down" : "ok" });
      if (opts.app && !path.startsWith("/v1/") && path !== "/metrics" && (await opts.app(req, res))) return;
      if (opts.apiKey !== undefined && req.headers.authorization !== `Bearer ${opts.apiKey}`)
        throw new ApiError(401, "invalid or missing API key (send Authorization: Bearer <key>)", "authentication_error", null, "invalid_api_key");
      if (draining) throw new ApiError(503, "the server is shutting down", "server_error");
      switch (route) {
        case "GET /metrics":
          res.writeHead(200, { "Content-Type": "text/plain; version=0.0.4; charset=utf-8" });
          return void res.end(metrics.text());
        case "GET /v1/models":
          return send(res, 200, { object: "list", data: [{ id: name, object: "model", created, owned_by: "bonsai" }] });
        case "POST /v1/completions":
        case "POST /v1/chat/completions":
        case "POST /v1/embeddings": {
          const body = parseBody(await readBody(req));
          if (route === "POST /v1/embeddings") return await embeddings(res, body);
          return await complete(req, res, body, route === "POST /v1/chat/completions");
        }
      }
      const known = ["/health", "/metrics", "/v1/models", "/v1/completions", "/v1/chat/completions", "/v1/embeddings"].includes(path);
      throw new ApiError(known ? 405 : 404, known ? `${req.method} is not allowed on ${path}` : `no route ${req.method} ${path}`, "invalid_request_error");
    } catch (e) {
      const err =
        e instanceof ApiError ? e
        : e instanceof ChatInputError ? new ApiError(400, e.message, "invalid_request_error", "messages")
        : e instanceof ChatTemplateError ? new ApiError(500, `the model's chat template failed: ${e.message}`, "server_error")
        : new ApiError(500, (e as Error).message, "server_error");
      status = err.status;
      if (res.headersSent) res.end();
      else send(res, err.status, errorBody(err), err.status === 429 ? { "Retry-After": "1" } : {});
    } finally {
      metrics.request(route, status);
    }
  }

  const http: Server = createHttpServer((req, res) => {
    const p = handle(req, res).catch(() => void res.destroy());
    running.add(p);
    void p.finally(() => running.delete(p));
  });
  http.on("connection", (s) => {
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
  });

  return {
    engine,
    metrics,
    listen(port = 8080, host = "127.0.0.1") {
      return new Promise((resolve, reject) => {
        http.once("error", reject);
        http.listen(port, host, () => {
          const a = http.address() as AddressInfo;
          resolve(`http://${a.family === "IPv6" ? `[${a.address}]` : a.address}:${a.port}`);
        });
      });
    },
    async close(graceMs = 10_000) {
      draining = true;
      const closed = new Promise<void>((r) => http.close(() => r()));
      http.closeIdleConnections();
      const timer = new Promise<void>((r) => setTimeout(r, graceMs).unref());
      await Promise.race([Promise.allSettled([...running]), timer]);
      for (const s of sockets) s.destroy();
      cascade?.close();
      await closed;
    },
  };
}
