// GET /metrics: the server's counters in Prometheus' text exposition format (version 0.0.4) —
// requests by route and status, prompt and generated tokens, running and queued sequences,
// generation speed and time to first token; with the cascade (serve/cascade.ts), answers by who
// gave them, upstream latency, upstream failures, local fallbacks by reason, streams that broke
// off, and the completion tokens answered locally.
import type { BatchEngine } from "../runtime/batch.js";

export class Metrics {
  private readonly requests = new Map<string, number>();
  private readonly tokens = { prompt: 0, generated: 0 };
  private readonly firstToken = { sum: 0, count: 0 };
  private readonly completed = new Map<string, number>();
  /** Set by the cascade: its metrics are listed. */
  cascadeEnabled = false;
  private readonly cascade = { local: 0, upstream: 0, upstreamSeconds: 0, failed: 0, tokensSaved: 0, brokeOff: 0 };
  private readonly fallbacks = new Map<string, number>([["upstream_unavailable", 0], ["upstream_timeout", 0]]);

  constructor(private readonly engine: BatchEngine) {}

  request(route: string, status: number): void {
    const key = `route="${route.replace(/["\\\n]/g, "_")}",status="${status}"`;
    this.requests.set(key, (this.requests.get(key) ?? 0) + 1);
  }

  finished(endpoint: string, promptTokens: number, generatedTokens: number, firstTokenSeconds: number | null): void {
    this.tokens.prompt += promptTokens;
    this.tokens.generated += generatedTokens;
    this.completed.set(endpoint, (this.completed.get(endpoint) ?? 0) + 1);
    if (firstTokenSeconds !== null) {
      this.firstToken.sum += firstTokenSeconds;
      this.firstToken.count++;
    }
  }

  /** A cascade answer: locally with its completion tokens, or upstream in `seconds`. */
  cascaded(by: "local" | "upstream", completionTokens: number, seconds = 0): void {
    this.cascade[by]++;
    if (by === "local") this.cascade.tokensSaved += completionTokens;
    else this.cascade.upstreamSeconds += seconds;
  }

  upstreamFailed(): void {
    this.cascade.failed++;
  }

  /** An escalated request the local model answered after the upstream failed. */
  cascadeFellBack(reason: string): void {
    this.fallbacks.set(reason, (this.fallbacks.get(reason) ?? 0) + 1);
  }

  /** A streamed upstream answer that failed after it had begun (ended with an error event). */
  cascadeStreamBrokeOff(): void {
    this.cascade.brokeOff++;
  }

  text(): string {
    const c = this.engine.counts;
    const lines: string[] = [];
    const metric = (name: string, type: string, help: string, samples: [string, number][]): void => {
      lines.push(`# HELP bonsai_${name} ${help}`, `# TYPE bonsai_${name} ${type}`);
      for (const [labels, v] of samples) lines.push(`bonsai_${name}${labels ? `{${labels}}` : ""} ${v}`);
    };
    metric("requests_total", "counter", "HTTP requests by route and status.", [...this.requests]);
    metric("completions_total", "counter", "Requests answered in full, by endpoint.", [...this.completed].map(([e, n]) => [`endpoint="${e}"`, n]));
    metric("prompt_tokens_total", "counter", "Prompt tokens of answered requests.", [["", this.tokens.prompt]]);
    metric("generated_tokens_total", "counter", "Tokens generated for answered requests.", [["", this.tokens.generated]]);
    metric("requests_running", "gauge", "Sequences generating now.", [["", c.active]]);
    metric("requests_queued", "gauge", "Requests waiting for a slot.", [["", c.queued]]);
    metric("tokens_per_second", "gauge", "Tokens generated per second of forward passes, since start.", [["", c.busySeconds > 0 ? c.generatedTokens / c.busySeconds : 0]]);
    metric("draft_tokens_total", "counter", "Speculative decoding (--draft): tokens drafted.", [["", c.draftedTokens]]);
    metric("draft_accepted_total", "counter", "Speculative decoding (--draft): drafted tokens the model accepted.", [["", c.acceptedDrafts]]);
    lines.push(
      "# HELP bonsai_time_to_first_token_seconds From submission to the first token.",
      "# TYPE bonsai_time_to_first_token_seconds summary",
      `bonsai_time_to_first_token_seconds_sum ${this.firstToken.sum}`,
      `bonsai_time_to_first_token_seconds_count ${this.firstToken.count}`,
    );
    if (this.cascadeEnabled) {
      const k = this.cascade;
      metric("cascade_answered_total", "counter", "Cascade answers by who gave them.", [['by="local"', k.local], ['by="upstream"', k.upstream]]);
      lines.push(
        "# HELP bonsai_cascade_upstream_seconds Escalated requests: from the upstream call to its answer's end.",
        "# TYPE bonsai_cascade_upstream_seconds summary",
        `bonsai_cascade_upstream_seconds_sum ${k.upstreamSeconds}`,
        `bonsai_cascade_upstream_seconds_count ${k.upstream}`,
      );
      metric("cascade_upstream_failures_total", "counter", "Escalations the upstream failed: unreachable, 5xx, broken off or timed out.", [["", k.failed]]);
      metric("cascade_fallbacks_total", "counter", "Failed escalations answered by the local model, by reason.", [...this.fallbacks].map(([r, n]) => [`reason="${r}"`, n]));
      metric("cascade_upstream_stream_errors_total", "counter", "Streamed upstream answers that failed after they had begun (ended with an error event).", [["", k.brokeOff]]);
      metric("cascade_tokens_saved_total", "counter", "Completion tokens answered locally instead of upstream.", [["", k.tokensSaved]]);
    }
    return lines.join("\n") + "\n";
  }
}
