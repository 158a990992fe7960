// The serving cascade's upstream half (see cascade.ts for the decision and the answers' shape):
// `Cascade.forward` sends an escalated request to the upstream OpenAI-compatible server and
// writes its answer, streamed through or whole, to the client.
//
// Requests go by node:http(s) through one keep-alive Agent per server, so escalations reuse
// their connections. (Not fetch: in Node 20 its first call in a process costs ≈ 45 ms, and its
// next few ≈ 7 ms each while undici's code warms, against ≈ 9 ms and ≈ 1 ms for node:http; a
// server that escalates rarely stays in that cold regime — bench:cascade measured it.) A request
// whose reused connection was reset before any answer (the upstream closed it idle) is sent once
// more on a new one.
//
// Timeouts: the upstream gets `timeoutSeconds` (60) to its headers, and as long again between any
// two chunks of its body; past that the request is aborted (a timeout). Failures — unreachable,
// a 5xx, a body that breaks off, a timeout — before any of the upstream's answer went to the
// client are returned to the caller (server-node.ts), which falls back to its local generation
// or sends them: 502 `upstream_unavailable`, 504 `upstream_timeout`. The answer is committed to
// the client (`commit()`, which stops the local generation) at its whole body when not streamed
// and at its first event when streamed; a stream that fails after that ends with an error event
// in OpenAI's shape. An upstream 4xx is passed through with its status and body.
import { Agent as HttpAgent, type IncomingMessage, type ServerResponse, request as httpRequest } from "node:http";
import { Agent as HttpsAgent, request as httpsRequest } from "node:https";
import { ANSWERED_BY_HEADER, CONFIDENCE_FUNCTIONS, type CascadeOptions, type CascadeTag, CascadeGate, FALLBACKS, type Fallback, type FallbackReason } from "./cascade.js";
import { ApiError, errorBody } from "./openai.js";
import type { Metrics } from "./metrics.js";

export class Cascade {
  readonly probeTokens: number;
  readonly timeoutMs: number;
  readonly fallback: Fallback;
  private readonly base: string;
  private readonly agent: HttpAgent;

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
    this.agent = u.protocol === "https:" ? new HttpsAgent({ keepAlive: true }) : new HttpAgent({ keepAlive: true });
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

  /** Close the kept-alive upstream connections. */
  close(): void {
    this.agent.destroy();
  }

  /** POST `body` to `url`; resolves at the response's headers. A reused connection reset before them is retried once. */
  private post(url: URL, body: string, headers: Record<string, string>, signal: AbortSignal): Promise<IncomingMessage> {
    const send = (retry: boolean): Promise<IncomingMessage> =>
      new Promise((resolve, reject) => {
        const request = url.protocol === "https:" ? httpsRequest : httpRequest;
        const q = request(url, { method: "POST", headers: { ...headers, "Content-Length": String(Buffer.byteLength(body)) }, agent: this.agent, signal }, resolve);
        q.on("error", (e) => {
          if (retry && q.reusedSocket && !signal.aborted && (e as NodeJS.ErrnoException).code === "ECONNRESET") resolve(send(false));
          else reject(e);
        });
        q.end(body);
      });
    return send(true);
  }

  /**
   * Answer the request upstream: forward `body`, write the answer to `res`. `commit` is called
   * once, just before the upstream's answer starts going to the client (its first event when
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
    let up: IncomingMessage;
    arm();
    try {
      up = await this.post(new URL(url), JSON.stringify({ ...body, model: this.opts.model }), headers, ctl.signal);
    } catch (e) {
      if (left) return (done(), null); // the client left
      return fail(timedOut ? "no headers" : `the upstream server at ${url} could not be reached`, e);
    }
    ctl.signal.addEventListener("abort", () => up.destroy(new Error(timedOut ? "timed out" : "aborted")), { once: true });
    arm();
    const status = up.statusCode ?? 502;
    const mark = { [ANSWERED_BY_HEADER]: "upstream" };
    /** The body's chunks, the timeout re-armed at each. */
    async function* chunks(): AsyncGenerator<Buffer> {
      for await (const c of up as AsyncIterable<Buffer>) {
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
    if (status < 200 || status >= 300) {
      let t = "";
      try {
        t = await text();
      } catch (e) {
        if (left) return (done(), null);
        if (status >= 500 || timedOut) return fail(timedOut ? `a ${status} whose body stalled` : `the upstream server's ${status} broke off`, e);
      }
      if (status >= 500) return fail(`the upstream server answered ${status}: ${t.slice(0, 300)}`);
      done();
      commit();
      res.writeHead(status, { "Content-Type": up.headers["content-type"] ?? "application/json; charset=utf-8", ...mark });
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
  return (e as NodeJS.ErrnoException).code ?? c?.code ?? c?.message ?? (e as Error).message;
};
