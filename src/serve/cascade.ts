// The serving cascade (`bonsai serve --escalate-to URL`): the local model answers first; after its
// first `probeTokens` tokens (or its whole answer, when shorter) a confidence function of their
// distributions decides whether that answer stands, or the request goes to an upstream
// OpenAI-compatible server whose answer is returned instead. server-node.ts holds the local output back
// until the decision, so a client only ever sees one model's answer.
//
// Confidence (higher = surer; a request escalates when confidence < threshold):
//   mean-logprob  mean ln p(token) of the probed tokens (≤ 0)
//   min-prob      min p(token) of the probed tokens (in [0, 1])
//   entropy       −(mean entropy of the probed tokens' distributions), in nats (≤ 0): so
//                 `--threshold -2` escalates when the mean entropy exceeds 2 nats
// The distributions are the model's own (temperature 1, no penalties), whatever the request's
// sampling settings. An empty answer (the model stopped at once) has confidence −∞: it escalates
// at any threshold above −∞. Threshold −∞: always local; +∞: always upstream.
//
// Upstream: the client's request body is forwarded as it came, with `model` replaced by the
// upstream model's name and `Authorization: Bearer <key>` when a key is given; a streamed request
// is streamed through. Its answer gets the `bonsai` field (below) in the body or in every chunk.
// Connections to the upstream are kept alive between requests (fetch's pool, one per server).
//
// Upstream failures: a connection that fails, a 5xx answer, a body that breaks off, or a timeout —
// no headers within `timeoutSeconds` (60), or a body that stalls longer than that between two
// chunks (the request is then aborted). An upstream 4xx is passed through with its status and body.
// With `fallback: "local"` (the default) a failure before any of the upstream's answer went to the
// client is answered by the local model instead, with `"fallback": "upstream_unavailable"` or
// `"upstream_timeout"` in the `bonsai` field; with `"error"` it is a 502 (`upstream_unavailable`)
// or 504 (`upstream_timeout`) in OpenAI's error shape. A streamed answer that fails after its
// first chunk went out cannot fall back: the stream ends with an error event in OpenAI's shape.
//
// The fallback's design: the local generation is not stopped at the decision but keeps running
// (its tokens wait in the engine's channel) until the upstream's answer is committed to the
// client — its first chunk when streamed, its whole body when not; only then is it aborted. A
// fallback so resumes the very generation the decision looked at: the answer is exactly the one
// the local model gave, for any weights, with no second prefill. The price: an escalated request
// keeps its local slot (bounded by its max_tokens) while the upstream is answering.
//
// Every answer says who answered: the header `x-bonsai-answered-by: local|upstream`, and the
// top-level field `"bonsai": {"answered_by", "confidence", "probe_tokens"}` (plus `"fallback"`)
// of the completion object (streamed: of every chunk).
import type { ServerResponse } from "node:http";
import type { TokenEvent } from "../runtime/batch.js";
import { ApiError, errorBody } from "./openai.js";
import type { Metrics } from "./metrics.js";

export const CONFIDENCE_FUNCTIONS = ["mean-logprob", "min-prob", "entropy"] as const;
export type ConfidenceFunction = (typeof CONFIDENCE_FUNCTIONS)[number];
/** What an upstream failure becomes: the local model's answer, or an error. */
export const FALLBACKS = ["local", "error"] as const;
export type Fallback = (typeof FALLBACKS)[number];
/** Why a request that escalated was answered locally (the error code it would have had). */
export type FallbackReason = "upstream_unavailable" | "upstream_timeout";

/** What confidence sees of one generated token. */
export interface Probe {
  logprob: number;
  /** Entropy of the token's distribution in nats (needed by "entropy"). */
  entropy?: number;
}

/** The confidence of an answer from its probed tokens (see the header); −∞ for none. */
export function confidence(fn: ConfidenceFunction, probes: readonly Probe[]): number {
  if (probes.length === 0) return -Infinity;
  switch (fn) {
    case "mean-logprob":
      return probes.reduce((s, p) => s + p.logprob, 0) / probes.length;
    case "min-prob":
      return Math.min(...probes.map((p) => Math.exp(p.logprob)));
    case "entropy":
      return -probes.reduce((s, p) => {
        if (p.entropy === undefined) throw new Error("the entropy confidence needs each token's entropy");
        return s + p.entropy;
      }, 0) / probes.length;
  }
}

/** Whether an answer of this confidence goes upstream. */
export const escalates = (conf: number, threshold: number): boolean => conf < threshold;

export interface CascadeOptions {
  /** The upstream's base URL, as the openai client takes it (`http://host:8080/v1`); without a path, `/v1` is added. */
  url: string;
  /** The model name sent upstream. */
  model: string;
  /** Sent as `Authorization: Bearer <apiKey>`. */
  apiKey?: string;
  confidence: ConfidenceFunction;
  threshold: number;
  /** Tokens the decision looks at (16). */
  probeTokens?: number;
  /** Seconds the upstream may take to its headers, or stall between two chunks of its body (60). */
  timeoutSeconds?: number;
  /** An upstream failure: answered locally ("local", the default) or an error ("error"). */
  fallback?: Fallback;
}

export type AnsweredBy = "local" | "upstream";

/** The `bonsai` field of an answer. */
export interface CascadeTag {
  answered_by: AnsweredBy;
  /** null when not finite (an empty local answer). */
  confidence: number | null;
  probe_tokens: number;
  /** Set when the request escalated, the upstream failed, and the local model answered. */
  fallback?: FallbackReason;
}

export const ANSWERED_BY_HEADER = "x-bonsai-answered-by";

/** One request's decision: fed the local tokens, decides once enough are in (or the answer ended). */
export class CascadeGate {
  readonly probes: Probe[] = [];
  decision: CascadeTag | null = null;

  constructor(
    private readonly fn: ConfidenceFunction,
    private readonly threshold: number,
    readonly probeTokens: number,
  ) {}

  observe(e: TokenEvent): void {
    if (this.probes.length < this.probeTokens && e.logprob !== undefined) this.probes.push({ logprob: e.logprob, entropy: e.entropy });
  }

  /** Enough tokens to decide. */
  get full(): boolean {
    return this.probes.length >= this.probeTokens;
  }

  decide(): CascadeTag {
    const conf = confidence(this.fn, this.probes);
    this.decision = { answered_by: escalates(conf, this.threshold) ? "upstream" : "local", confidence: Number.isFinite(conf) ? conf : null, probe_tokens: this.probes.length };
    return this.decision;
  }
}

export class Cascade {
  readonly probeTokens: number;
  readonly timeoutMs: number;
  readonly fallback: Fallback;
  private readonly base: string;

  constructor(
    readonly opts: CascadeOptions,
    private readonly metrics: Metrics,
  ) {
    this.probeTokens = opts.probeTokens ?? 16;
    if (!(Number.isInteger(this.probeTokens) && this.probeTokens >= 1)) throw new Error(`probe tokens must be a positive integer (got ${this.probeTokens})`);
    if (!CONFIDENCE_FUNCTIONS.includes(opts.confidence)) throw new Error(`confidence must be one of ${CONFIDENCE_FUNCTIONS.join(", ")} (got ${opts.confidence})`);
    if (Number.isNaN(opts.threshold)) throw new Error("the threshold is not a number");
    const timeout = opts.timeoutSeconds ?? 60;
    if (!(timeout > 0)) throw new Error(`the upstream timeout must be a positive number of seconds (got ${timeout})`);
    this.timeoutMs = Math.min(timeout * 1000, 2 ** 31 - 1); // setTimeout's largest delay
    this.fallback = opts.fallback ?? "local";
    if (!FALLBACKS.includes(this.fallback)) throw new Error(`fallback must be one of ${FALLBACKS.join(", ")} (got ${this.fallback})`);
    let u: URL;
    try {
      u = new URL(opts.url);
    } catch {
      throw new Error(`the upstream URL is not a URL: ${opts.url}`);
    }
    if (u.protocol !== "http:" && u.protocol !== "https:") throw new Error(`the upstream URL must be http or https: ${opts.url}`);
    const b = opts.url.replace(/\/+$/, "");
    this.base = u.pathname === "/" || u.pathname === "" ? `${b}/v1` : b;
    metrics.cascadeEnabled = true;
  }

  /** What the engine must report for the decision. */
  get needsEntropy(): boolean {
    return this.opts.confidence === "entropy";
  }

  gate(): CascadeGate {
    return new CascadeGate(this.opts.confidence, this.opts.threshold, this.probeTokens);
  }

  /** A local answer of `completionTokens` tokens was returned (`fallback`: after an upstream failure). */
  answeredLocally(completionTokens: number, fallback?: FallbackReason): void {
    this.metrics.cascaded("local", completionTokens);
    if (fallback !== undefined) this.metrics.cascadeFellBack(fallback);
  }

  /**
   * Answer the request upstream: forward `body`, write the answer to `res`. `commit` is called
   * once, just before the upstream's answer starts going to the client (its first chunk when
   * streamed, its whole body when not): the local generation is no longer needed then. A failure
   * before that is returned, for the caller to fall back or to send; one after it ends the stream
   * with an error event. null: the request is over (answered, ended so, or the client left).
   */
  async forward(res: ServerResponse, chat: boolean, body: Record<string, unknown>, stream: boolean, tag: CascadeTag, commit: () => void): Promise<ApiError | null> {
    const t0 = performance.now();
    const ctl = new AbortController();
    let timedOut = false, left = false;
    const onClose = (): void => {
      left = true;
      ctl.abort();
    };
    res.once("close", onClose);
    let timer: ReturnType<typeof setTimeout> | undefined;
    /** (Re)start the timeout: to the headers, then between chunks. */
    const arm = (): void => {
      clearTimeout(timer);
      timer = setTimeout(() => {
        timedOut = true;
        ctl.abort();
      }, this.timeoutMs);
    };
    const done = (): void => {
      clearTimeout(timer);
      res.off("close", onClose);
    };
    const url = `${this.base}/${chat ? "chat/completions" : "completions"}`;
    const fail = (what: string, e?: unknown): ApiError => {
      done();
      this.metrics.upstreamFailed();
      return timedOut
        ? new ApiError(504, `the upstream server at ${url} did not answer within ${this.timeoutMs / 1000} s (${what})`, "server_error", null, "upstream_timeout")
        : new ApiError(502, `${what}${e === undefined ? "" : `: ${causeOf(e)}`}`, "server_error", null, "upstream_unavailable");
    };
    const headers: Record<string, string> = { "Content-Type": "application/json" };
    if (this.opts.apiKey !== undefined) headers.Authorization = `Bearer ${this.opts.apiKey}`;
    let up: Response;
    arm();
    try {
      up = await fetch(url, { method: "POST", headers, body: JSON.stringify({ ...body, model: this.opts.model }), signal: ctl.signal });
    } catch (e) {
      if (left) return (done(), null); // the client left
      return fail(timedOut ? "no headers" : `the upstream server at ${url} could not be reached`, e);
    }
    arm();
    const mark = { [ANSWERED_BY_HEADER]: "upstream" };
    /** The body's chunks, the timeout re-armed at each. */
    async function* chunks(): AsyncGenerator<Uint8Array> {
      for await (const c of up.body as unknown as AsyncIterable<Uint8Array>) {
        arm();
        yield c;
      }
    }
    const text = async (): Promise<string> => {
      const decoder = new TextDecoder();
      let t = "";
      for await (const c of chunks()) t += decoder.decode(c, { stream: true });
      return t + decoder.decode();
    };
    if (!up.ok) {
      let t = "";
      try {
        t = await text();
      } catch (e) {
        if (left) return (done(), null);
        if (up.status >= 500 || timedOut) return fail(timedOut ? `a ${up.status} whose body stalled` : `the upstream server's ${up.status} broke off`, e);
      }
      if (up.status >= 500) return fail(`the upstream server answered ${up.status}: ${t.slice(0, 300)}`);
      done();
      commit();
      res.writeHead(up.status, { "Content-Type": up.headers.get("content-type") ?? "application/json; charset=utf-8", ...mark });
      res.end(t);
      this.metrics.cascaded("upstream", 0, (performance.now() - t0) / 1000);
      return null;
    }
    const tagged = (json: string): string => {
      let v: unknown;
      try {
        v = JSON.parse(json);
      } catch {
        return json;
      }
      return typeof v === "object" && v !== null && !Array.isArray(v) ? JSON.stringify({ ...v, bonsai: tag }) : json;
    };
    if (!stream) {
      let t: string;
      try {
        t = await text();
      } catch (e) {
        if (left) return (done(), null);
        return fail(timedOut ? "its answer stalled" : "the upstream server's answer broke off", e);
      }
      done();
      commit();
      res.writeHead(200, { "Content-Type": "application/json; charset=utf-8", ...mark });
      res.end(tagged(t));
      this.metrics.cascaded("upstream", 0, (performance.now() - t0) / 1000);
      return null;
    }
    const decoder = new TextDecoder();
    let buf = "", started = false;
    const start = (): void => {
      if (started) return;
      started = true;
      commit();
      res.writeHead(200, { "Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache", Connection: "keep-alive", ...mark });
    };
    const event = (ev: string): void => {
      start();
      const lines = ev.split(/\r?\n/).map((l) => (l.startsWith("data:") && l.slice(5).trim() !== "[DONE]" ? `data: ${tagged(l.slice(5).trim())}` : l));
      res.write(`${lines.join("\n")}\n\n`);
    };
    try {
      for await (const chunk of chunks()) {
        buf += decoder.decode(chunk, { stream: true });
        for (let m = /\r?\n\r?\n/.exec(buf); m !== null; m = /\r?\n\r?\n/.exec(buf)) {
          event(buf.slice(0, m.index));
          buf = buf.slice(m.index + m[0].length);
        }
      }
      buf += decoder.decode();
      if (buf.trim() !== "") event(buf);
    } catch (e) {
      if (left) return (done(), null);
      if (!started) return fail(timedOut ? "its stream stalled before its first event" : "the upstream stream broke off before its first event", e);
      done();
      this.metrics.upstreamFailed();
      this.metrics.cascadeStreamBrokeOff();
      const err = timedOut
        ? new ApiError(504, `the upstream stream stalled for ${this.timeoutMs / 1000} s`, "server_error", null, "upstream_timeout")
        : new ApiError(502, `the upstream stream broke off: ${causeOf(e)}`, "server_error", null, "upstream_unavailable");
      res.write(`data: ${JSON.stringify(errorBody(err))}\n\n`);
      res.end();
      return null;
    }
    done();
    start(); // an empty stream
    res.end();
    this.metrics.cascaded("upstream", 0, (performance.now() - t0) / 1000);
    return null;
  }
}

const causeOf = (e: unknown): string => {
  const c = (e as { cause?: { code?: string; message?: string } }).cause;
  return c?.code ?? c?.message ?? (e as Error).message;
};
