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
// The forwarding is cascade-node.ts' Cascade (node:http, one keep-alive Agent per server); this
// module is the part that is not Node's: the confidence functions, the decision, the types.
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
// keeps its local slot (bounded by its max_tokens) while the upstream is answering. (Re-running
// the request locally with the same seed was the other way: exact only for f32 weights, since
// kept-quantized weights agree across batch compositions only to float rounding, and a second
// prefill and probe on every failure.)
//
// Every answer says who answered: the header `x-bonsai-answered-by: local|upstream`, and the
// top-level field `"bonsai": {"answered_by", "confidence", "probe_tokens"}` (plus `"fallback"`)
// of the completion object (streamed: of every chunk).
import type { TokenEvent } from "../runtime/batch.js";

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
