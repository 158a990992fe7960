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
// Upstream failures: a connection that fails or a 5xx answer is a 502 in OpenAI's error shape
// (code `upstream_unavailable`), not a fallback to the local answer (whose generation was stopped
// at the decision); an upstream 4xx is passed through with its status and body.
//
// Every answer says who answered: the header `x-bonsai-answered-by: local|upstream`, and the
// top-level field `"bonsai": {"answered_by", "confidence", "probe_tokens"}` of the completion
// object (streamed: of every chunk).
import type { ServerResponse } from "node:http";
import type { TokenEvent } from "../runtime/batch.js";
import { ApiError, errorBody } from "./openai.js";
import type { Metrics } from "./metrics.js";

export const CONFIDENCE_FUNCTIONS = ["mean-logprob", "min-prob", "entropy"] as const;
export type ConfidenceFunction = (typeof CONFIDENCE_FUNCTIONS)[number];

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
}

export type AnsweredBy = "local" | "upstream";

/** The `bonsai` field of an answer. */
export interface CascadeTag {
  answered_by: AnsweredBy;
  /** null when not finite (an empty local answer). */
  confidence: number | null;
  probe_tokens: number;
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
  private readonly base: string;

  constructor(
    readonly opts: CascadeOptions,
    private readonly metrics: Metrics,
  ) {
    this.probeTokens = opts.probeTokens ?? 16;
    if (!(Number.isInteger(this.probeTokens) && this.probeTokens >= 1)) throw new Error(`probe tokens must be a positive integer (got ${this.probeTokens})`);
    if (!CONFIDENCE_FUNCTIONS.includes(opts.confidence)) throw new Error(`confidence must be one of ${CONFIDENCE_FUNCTIONS.join(", ")} (got ${opts.confidence})`);
    if (Number.isNaN(opts.threshold)) throw new Error("the threshold is not a number");
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

  /** A local answer of `completionTokens` tokens was returned. */
  answeredLocally(completionTokens: number): void {
    this.metrics.cascaded("local", completionTokens);
  }

  /** Answer the request upstream: forward `body`, write the answer (or the error) to `res`. */
  async forward(res: ServerResponse, chat: boolean, body: Record<string, unknown>, stream: boolean, tag: CascadeTag): Promise<void> {
    const t0 = performance.now();
    const gone = new AbortController();
    res.on("close", () => gone.abort());
    const headers: Record<string, string> = { "Content-Type": "application/json" };
    if (this.opts.apiKey !== undefined) headers.Authorization = `Bearer ${this.opts.apiKey}`;
    const url = `${this.base}/${chat ? "chat/completions" : "completions"}`;
    let up: Response;
    try {
      up = await fetch(url, { method: "POST", headers, body: JSON.stringify({ ...body, model: this.opts.model }), signal: gone.signal });
    } catch (e) {
      if (gone.signal.aborted) return; // the client left
      throw this.failed(`the upstream server at ${url} could not be reached: ${causeOf(e)}`);
    }
    const mark = { [ANSWERED_BY_HEADER]: "upstream" };
    if (!up.ok) {
      const text = await up.text().catch(() => "");
      if (up.status >= 500) throw this.failed(`the upstream server answered ${up.status}: ${text.slice(0, 300)}`);
      res.writeHead(up.status, { "Content-Type": up.headers.get("content-type") ?? "application/json; charset=utf-8", ...mark });
      res.end(text);
      this.metrics.cascaded("upstream", 0, (performance.now() - t0) / 1000);
      return;
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
      let text: string;
      try {
        text = await up.text();
      } catch (e) {
        if (gone.signal.aborted) return;
        throw this.failed(`the upstream server's answer broke off: ${causeOf(e)}`);
      }
      res.writeHead(200, { "Content-Type": "application/json; charset=utf-8", ...mark });
      res.end(tagged(text));
      this.metrics.cascaded("upstream", 0, (performance.now() - t0) / 1000);
      return;
    }
    res.writeHead(200, { "Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache", Connection: "keep-alive", ...mark });
    const decoder = new TextDecoder();
    let buf = "";
    const event = (ev: string): void => {
      const lines = ev.split(/\r?\n/).map((l) => (l.startsWith("data:") && l.slice(5).trim() !== "[DONE]" ? `data: ${tagged(l.slice(5).trim())}` : l));
      res.write(`${lines.join("\n")}\n\n`);
    };
    try {
      for await (const chunk of up.body as unknown as AsyncIterable<Uint8Array>) {
        buf += decoder.decode(chunk, { stream: true });
        for (let m = /\r?\n\r?\n/.exec(buf); m !== null; m = /\r?\n\r?\n/.exec(buf)) {
          event(buf.slice(0, m.index));
          buf = buf.slice(m.index + m[0].length);
        }
      }
      if (buf.trim() !== "") event(buf);
    } catch (e) {
      if (gone.signal.aborted) return;
      this.metrics.upstreamFailed();
      res.write(`data: ${JSON.stringify(errorBody(new ApiError(502, `the upstream stream broke off: ${causeOf(e)}`, "server_error", null, "upstream_unavailable")))}\n\n`);
      res.end();
      return;
    }
    res.end();
    this.metrics.cascaded("upstream", 0, (performance.now() - t0) / 1000);
  }

  private failed(message: string): ApiError {
    this.metrics.upstreamFailed();
    return new ApiError(502, message, "server_error", null, "upstream_unavailable");
  }
}

const causeOf = (e: unknown): string => {
  const c = (e as { cause?: { code?: string; message?: string } }).cause;
  return c?.code ?? c?.message ?? (e as Error).message;
};
