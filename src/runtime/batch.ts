// Continuous batching (llama-server's slots, vLLM's iteration-level scheduling): up to `parallel`
// sequences generate together, each with its own KV cache (a Session). Every step runs one
// forward pass over the rows of every decoding sequence — the weights are read once for all of
// them — and then one chunk of a waiting prompt, so a long prompt does not stall the others. A new
// request joins at the next step; a finished or cancelled one frees its slot at once.
//
// Exactness: a sequence gets the tokens generateTokens gives it alone with the same seed. Each
// sequence samples with its own generator, and the passes keep every row's arithmetic what it
// is alone: a linear layer over at most FEW_ROWS rows computes each row as a one-row pass does
// (the wasm backend's smallRows, assembly/gemm.ts), and a longer one runs a GEMM whose rows do not
// depend on how many there are — so decode rows go in groups of at most FEW_ROWS, and a prompt
// longer than FEW_ROWS is cut into chunks longer than FEW_ROWS (the last one absorbs a short
// tail). Weights kept quantized round differently in the few-row kernel than in the one-row one
// (equal to float rounding), and so do MoE layers, whose experts see varying numbers of rows.
//
// Speculative decoding (llama-server's --draft with slots): with `speculative`, every decoding
// sequence drafts up to K tokens per step — prompt lookup, or a draft model whose passes run
// batched over the sequences still drafting — and one target pass verifies every sequence's
// drafts together (speculative.ts's verifyDrafts). A sequence then gets exactly the tokens
// speculativeTokens gives it alone with the same seed: the same drafts, rows and draws (the
// target's greedy output at temperature 0). As speculativeTokens does, its target cache is
// prefilled with the prompt but its last token, which the first round feeds.
import type { FloatArray } from "../backend/backend.js";
import type { Llama } from "../nn/llama.js";
import { ngramDraft } from "./ngram-draft.js";
import { type DraftPolicy, type SpeculativeConfig, draftPolicy, keepDrafting, nextDraftLength, penaltyHistory, pointMass, validateSpeculativeConfig, verifyDrafts } from "./speculative.js";
import { Rng } from "../util/rng.js";
import { type SampleOptions, sampleToken, validateSampleOptions } from "./sample.js";
import { Session } from "./session.js";
import { Tensor } from "../tensor/tensor.js";
import { topKOf } from "../backend/top-k.js";
import { drawFrom, finalProbs, logSumExpOf } from "./sample.js";

/** See the header: the row count up to which a pass computes each row as alone. */
export const FEW_ROWS = 16;

export interface BatchRequest extends SampleOptions {
  prompt: number[];
  maxTokens: number;
  seed?: number;
  /** Generation ends (without emitting it) at one of these. */
  stopIds?: number[];
  /** Report each token's log-probability and this many alternatives (0: the token's alone; undefined: none). */
  logprobs?: number;
  /** Also report the entropy of each token's distribution (with logprobs; the server's cascade). */
  entropy?: boolean;
  /** Aborting it cancels the request and frees its slot. */
  signal?: AbortSignal;
}

export interface TokenEvent {
  token: number;
  /** ln p(token) under the model's distribution (temperature 1, no penalties), with logprobs. */
  logprob?: number;
  top?: { token: number; logprob: number }[];
  /** −Σ p ln p (nats) of that distribution, with logprobs and `entropy`. */
  entropy?: number;
}

export type FinishReason = "stop" | "length" | "abort";

/** A request's life in the engine: its tokens as they come, then why it ended. */
export interface BatchStream extends AsyncIterable<TokenEvent> {
  /** Resolves when the request ends (rejects when a pass failed). */
  readonly finished: Promise<FinishReason>;
  /** Prompt tokens, and seconds from submit to the first token (null before it). */
  readonly promptTokens: number;
  readonly firstTokenSeconds: number | null;
}

export interface BatchEngineOptions {
  /** Sequences generating at once (llama-server --parallel; default 4). */
  parallel?: number;
  /** Positions per sequence's cache (prompt + generated; default: the model's context). */
  ctxSize?: number;
  /** Prompt tokens prefilled per step (default 128; more than FEW_ROWS). */
  prefillChunk?: number;
  /** Requests waiting for a slot before submit refuses more (default 64). */
  maxQueue?: number;
  /** Speculative decoding for every sequence: a draft model over the same vocabulary, or prompt lookup. */
  speculative?: BatchSpeculative;
}

export type BatchSpeculative = Pick<SpeculativeConfig, "draftTokens" | "adaptive" | "maxDraftTokens" | "pMin" | "nMax" | "nMin"> & { draft: Llama | "ngram" };

/** submit() when the queue is full (a server answers 429). */
export class QueueFullError extends Error {}

export interface EngineCounts {
  active: number;
  queued: number;
  promptTokens: number;
  generatedTokens: number;
  /** Seconds spent in forward passes (and drafting). */
  busySeconds: number;
  /** Speculative decoding: tokens drafted, and drafts the target accepted. */
  draftedTokens: number;
  acceptedDrafts: number;
}

/** A sequence in a slot: its cache, context, sampler and where its prompt is. */
interface Slot {
  req: BatchRequest;
  out: Channel;
  session: Session;
  rng: Rng;
  context: number[];
  /** Prompt tokens already in the cache. */
  prefilled: number;
  generated: number;
  /** The token to feed next (decoding), or null while the prompt is prefilled. */
  next: number | null;
  stop: Set<number>;
  started: number;
  /** Speculative decoding: the draft model's cache (null: prompt lookup) and the current K; null without. */
  spec: { draft: Session | null; k: number } | null;
}

/** A sequence's part of one speculative round. */
interface Round {
  slot: Slot;
  /** Most drafts this round may propose. */
  limit: number;
  drafts: number[];
  qs: Float64Array[];
  /** Drafts fed back into the draft model's cache. */
  fed: number;
}

export class BatchEngine {
  readonly parallel: number;
  readonly ctxSize: number;
  readonly prefillChunk: number;
  readonly maxQueue: number;
  private readonly slots: Slot[] = [];
  private readonly queue: { req: BatchRequest; out: Channel }[] = [];
  private running = false;
  private readonly totals = { promptTokens: 0, generatedTokens: 0, busySeconds: 0, draftedTokens: 0, acceptedDrafts: 0 };
  private readonly spec: (BatchSpeculative & { policy: DraftPolicy }) | null;

  constructor(
    readonly model: Llama,
    opts: BatchEngineOptions = {},
  ) {
    const c = model.config;
    const int = (v: number | undefined, fallback: number, lo: number, hi: number, what: string): number => {
      const x = v ?? fallback;
      if (!(Number.isInteger(x) && x >= lo && x <= hi)) throw new Error(`${what} must be an integer in [${lo}, ${hi}] (got ${x})`);
      return x;
    };
    this.parallel = int(opts.parallel, 4, 1, 256, "parallel");
    this.ctxSize = int(opts.ctxSize, c.max_position_embeddings, 1, c.max_position_embeddings, "context size");
    this.prefillChunk = int(opts.prefillChunk, 128, FEW_ROWS + 1, 1 << 20, "prefill chunk");
    this.maxQueue = int(opts.maxQueue, 64, 0, 1 << 20, "queue size");
    const sc = opts.speculative;
    if (sc === undefined) this.spec = null;
    else {
      validateSpeculativeConfig(sc, model);
      this.spec = { ...sc, policy: draftPolicy(sc) };
    }
  }

  get counts(): EngineCounts {
    return { active: this.slots.length, queued: this.queue.length, ...this.totals };
  }

  /** Queue a request; its tokens stream from the result. Throws on bad options, QueueFullError when full. */
  submit(req: BatchRequest): BatchStream {
    validateSampleOptions(req);
    const vocab = this.model.config.vocab_size;
    if (!Number.isInteger(req.maxTokens) || req.maxTokens < 0) throw new Error(`max tokens must be a non-negative integer (got ${req.maxTokens})`);
    if (req.prompt.length === 0) throw new Error("generation needs at least one prompt token");
    for (const id of req.prompt) if (!(Number.isInteger(id) && id >= 0 && id < vocab)) throw new Error(`prompt token ${id} is outside the vocabulary [0, ${vocab})`);
    if (req.prompt.length > this.ctxSize) throw new Error(`the prompt has ${req.prompt.length} tokens; the context holds ${this.ctxSize}`);
    if (req.logprobs !== undefined && !(Number.isInteger(req.logprobs) && req.logprobs >= 0 && req.logprobs <= 20)) throw new Error(`logprobs must be an integer in [0, 20] (got ${req.logprobs})`);
    if (this.slots.length + this.queue.length >= this.parallel + this.maxQueue) throw new QueueFullError(`the server is busy: ${this.slots.length} requests running and ${this.queue.length} waiting`);
    const out = new Channel(req.prompt.length);
    if (req.maxTokens === 0 || req.signal?.aborted) out.end(req.signal?.aborted ? "abort" : "length");
    else {
      this.queue.push({ req, out });
      this.kick();
    }
    return out;
  }

  private kick(): void {
    if (this.running) return;
    this.running = true;
    // Off the caller's stack: submit returns first; the loop yields to the event loop each step.
    setTimeout(() => void this.loop(), 0);
  }

  private async loop(): Promise<void> {
    try {
      while (this.slots.length > 0 || this.queue.length > 0) {
        this.admit();
        await this.step();
        await yieldToEventLoop(); // let requests arrive and responses flush
      }
    } catch (e) {
      // A fault outside a pass (a pass's own failure ends only its requests): nothing can go on.
      for (const s of [...this.slots]) this.finish(s, "stop", e);
      for (const q of this.queue.splice(0)) q.out.fail(e);
    } finally {
      this.running = false;
    }
  }

  /** Move queued requests into free slots. */
  private admit(): void {
    while (this.slots.length < this.parallel && this.queue.length > 0) {
      const { req, out } = this.queue.shift()!;
      if (req.signal?.aborted) {
        out.end("abort");
        continue;
      }
      const cap = req.prompt.length + req.maxTokens;
      const session = new Session(this.model, { maxSeq: Math.min(this.ctxSize, cap) });
      const sp = this.spec;
      const spec = sp && {
        draft: sp.draft === "ngram" ? null : new Session(sp.draft, { maxSeq: Math.min(sp.draft.config.max_position_embeddings, cap) }),
        k: sp.policy.firstK,
      };
      const slot: Slot = {
        req, out, session, rng: new Rng(req.seed ?? 0), context: [...req.prompt], prefilled: 0, generated: 0, next: null,
        stop: new Set(req.stopIds ?? []), started: out.submitted, spec,
      };
      this.slots.push(slot);
      if (spec && req.prompt.length === 1) this.startRounds(slot);
    }
  }

  private finish(slot: Slot, reason: FinishReason, error?: unknown): void {
    const i = this.slots.indexOf(slot);
    if (i >= 0) this.slots.splice(i, 1);
    slot.session.dispose();
    slot.spec?.draft?.dispose();
    if (error !== undefined) slot.out.fail(error);
    else slot.out.end(reason);
  }

  /** One step: the decoding rows in groups, then one chunk of the first waiting prompt. */
  private async step(): Promise<void> {
    for (const s of [...this.slots]) if (s.req.signal?.aborted) this.finish(s, "abort");
    const decoding = this.slots.filter((s) => s.next !== null);
    if (this.spec) await this.speculativeRound(decoding);
    else {
      for (let g = 0; g < decoding.length; g += FEW_ROWS) {
        const group = decoding.slice(g, g + FEW_ROWS);
        await this.run(group.map((s) => ({ slot: s, ids: [s.next!], last: true })));
      }
    }
    const filling = this.slots.find((s) => s.next === null);
    if (filling) {
      // Speculative rounds feed the prompt's last token themselves.
      const total = filling.req.prompt.length - (filling.spec ? 1 : 0);
      const n = chunkLength(total, filling.prefilled, this.prefillChunk);
      const ids = filling.req.prompt.slice(filling.prefilled, filling.prefilled + n);
      await this.run([{ slot: filling, ids, last: !filling.spec && filling.prefilled + n === total }]);
      if (filling.spec && filling.prefilled === total && this.slots.includes(filling)) {
        // The draft model's cache takes the same prefix in one pass, as speculativeTokens's does.
        const d = filling.spec.draft;
        const t0 = performance.now();
        try {
          if (d && filling.req.prompt.length <= d.maxSeq) await d.prefill(filling.req.prompt.slice(0, -1));
        } catch (e) {
          this.finish(filling, "stop", e);
          return;
        }
        this.totals.busySeconds += (performance.now() - t0) / 1000;
        this.startRounds(filling);
      }
    }
  }

  /** A speculative sequence's prompt is in the caches but its last token, which the first round feeds. */
  private startRounds(slot: Slot): void {
    slot.next = slot.req.prompt[slot.req.prompt.length - 1];
    this.totals.promptTokens++;
  }

  /**
   * One speculative round for every decoding sequence: drafts, one target pass verifying them all
   * (in groups, see passes), then each sequence's accepted drafts and new token, and its caches
   * rolled back to what it accepted. The steps are speculativeTokens's, sequence by sequence.
   */
  private async speculativeRound(slots: Slot[]): Promise<void> {
    if (slots.length === 0) return;
    const sp = this.spec!, vocab = this.model.config.vocab_size;
    const t0 = performance.now();
    const rounds: Round[] = slots.map((slot) => {
      const { session, spec, context, req } = slot;
      // Drafts beyond what can be emitted, or beyond the caches, are never proposed.
      let limit = Math.min(spec!.k, req.maxTokens - slot.generated - 1, session.maxSeq - context.length);
      if (spec!.draft) limit = Math.min(limit, spec!.draft.maxSeq - context.length + 1);
      return { slot, limit, drafts: [], qs: [], fed: 0 };
    });
    let rows: FloatArray[][];
    try {
      // 1. Drafts: prompt lookup, or the draft model — its pending tokens, then one token per pass,
      // the sequences still drafting side by side.
      let feeding: { round: Round; ids: number[] }[] = [];
      for (const r of rounds) {
        if (r.limit <= 0) continue;
        const d = r.slot.spec!.draft;
        if (d) feeding.push({ round: r, ids: r.slot.context.slice(d.position) });
        else for (const x of ngramDraft(r.slot.context, r.limit, sp)) {
          r.drafts.push(x);
          r.qs.push(pointMass(vocab, x));
        }
      }
      while (feeding.length > 0) {
        const rows = await passes(sp.draft as Llama, feeding.map((f) => ({ session: f.round.slot.spec!.draft!, ids: f.ids, logits: 1 })));
        const next: typeof feeding = [];
        feeding.forEach(({ round: r }, j) => {
          const logits = rows[j][0], s = r.slot;
          if (!keepDrafting(sp.policy, logits)) return;
          const q = finalProbs(logits, s.req, penaltyHistory(s.req, s.context, r.drafts));
          const x = drawFrom(q, s.rng);
          r.drafts.push(x);
          r.qs.push(q);
          if (r.drafts.length < r.limit) {
            r.fed++;
            next.push({ round: r, ids: [x] });
          }
        });
        feeding = next;
      }
      // 2. One target pass over each sequence's pending token and its drafts, every row's logits.
      rows = await passes(this.model, rounds.map((r) => ({
        session: r.slot.session, ids: r.slot.context.slice(r.slot.session.position).concat(r.drafts), logits: r.drafts.length + 1,
      })));
    } catch (e) {
      for (const r of rounds) this.finish(r.slot, "stop", e);
      return;
    }
    this.totals.busySeconds += (performance.now() - t0) / 1000;
    rounds.forEach((r, j) => this.endRound(r, rows[j]));
  }

  /** 3 and 4 of a round: accept, emit, roll the caches back, adapt K. `rows[i]`: the target's logits at drafts[i]'s position. */
  private endRound(r: Round, rows: FloatArray[]): void {
    const s = r.slot, spec = s.spec!, sp = this.spec!;
    if (s.req.signal?.aborted) return this.finish(s, "abort");
    const { accepted, next } = verifyDrafts((i) => rows[i], r.drafts, r.qs, s.req, (prefix) => penaltyHistory(s.req, s.context, prefix), s.rng);
    this.totals.draftedTokens += r.drafts.length;
    this.totals.acceptedDrafts += accepted;
    const oldLength = s.context.length;
    s.session.truncate(oldLength + accepted);
    // The draft cache holds the old context and the drafts fed back; it keeps what was accepted of them.
    if (spec.draft && r.limit > 0) spec.draft.truncate(oldLength + Math.min(accepted, r.fed));
    spec.k = nextDraftLength(sp.policy, spec.k, accepted, r.drafts.length);
    const out = r.drafts.slice(0, accepted);
    out.push(next);
    for (let i = 0; i < out.length; i++) {
      const token = out[i];
      if (s.stop.has(token)) return this.finish(s, "stop");
      s.context.push(token);
      s.generated++;
      this.totals.generatedTokens++;
      s.out.push(withLogprobs(token, rows[i], s.req.logprobs, s.req.entropy === true));
      if (s.generated === s.req.maxTokens || s.context.length >= this.ctxSize) return this.finish(s, "length");
    }
    s.next = next;
  }

  /** One forward pass over the rows of `items`; then each item whose last row was in it samples. */
  private async run(items: { slot: Slot; ids: number[]; last: boolean }[]): Promise<void> {
    const t0 = performance.now();
    let rows: FloatArray[];
    try {
      rows = await batchedPass(this.model, items.map((it) => ({ session: it.slot.session, ids: it.ids, logits: it.last ? 1 : 0 })));
    } catch (e) {
      for (const it of items) this.finish(it.slot, "stop", e);
      return;
    }
    this.totals.busySeconds += (performance.now() - t0) / 1000;
    let r = 0;
    for (const it of items) {
      const s = it.slot;
      if (s.next === null) {
        s.prefilled += it.ids.length;
        this.totals.promptTokens += it.ids.length;
      }
      if (!it.last) continue;
      const logits = rows[r++];
      if (s.req.signal?.aborted) {
        this.finish(s, "abort");
        continue;
      }
      const token = sampleToken(logits, s.req, s.rng, s.context);
      if (s.stop.has(token)) {
        this.finish(s, "stop");
        continue;
      }
      s.context.push(token);
      s.generated++;
      this.totals.generatedTokens++;
      s.out.push(withLogprobs(token, logits, s.req.logprobs, s.req.entropy === true));
      // The context holds the prompt and every generated token (llama-server's n_ctx per slot).
      if (s.generated === s.req.maxTokens || s.context.length >= this.ctxSize) this.finish(s, "length");
      else s.next = token;
    }
  }
}

/**
 * How many prompt tokens the next chunk takes from `done` of `total`: `chunk` at a time, a prompt
 * of at most FEW_ROWS in one pass, and no chunk of a longer prompt at or under FEW_ROWS (a short
 * tail joins the chunk before it), so every row takes the kernel it takes in a one-pass prefill.
 */
export function chunkLength(total: number, done: number, chunk: number): number {
  const left = total - done;
  if (left <= chunk) return left;
  return left - chunk <= FEW_ROWS ? left : chunk;
}

/** A session's new tokens in a batched pass, and how many of its last rows' logits to return. */
export interface PassPart {
  session: Session;
  ids: number[];
  logits: number;
}

/**
 * One forward pass over several sessions' new tokens: their rows side by side, each with its own
 * positions and attending over its own cache. Returns the logits of every part's last `logits`
 * rows, in order.
 */
export async function batchedPass(model: Llama, parts: PassPart[]): Promise<FloatArray[]> {
  const ids = Int32Array.from(parts.flatMap((p) => p.ids));
  const positions = Int32Array.from(parts.flatMap((p) => p.ids.map((_, j) => p.session.position + j)));
  const starts: number[] = [];
  let n = 0;
  for (const p of parts) {
    starts.push(n);
    n += p.ids.length;
  }
  const logitRows = Int32Array.from(parts.flatMap((p, i) => Array.from({ length: p.logits }, (_, j) => starts[i] + p.ids.length - p.logits + j)));
  const attend = (l: number, q: Tensor, k: Tensor, v: Tensor): Tensor => {
    if (parts.length === 1) return parts[0].session.attendAt(l, parts[0].session.position, q, k, v);
    const be = q.backend, qDim = q.size / n, kvDim = k.size / n;
    const out = Tensor.zeros(be, q.shape);
    parts.forEach((p, i) => {
      const m = p.ids.length, r0 = starts[i];
      const rows = (t: Tensor, dim: number): Tensor => {
        const part = Tensor.zeros(be, [m, dim]);
        be.copy(part.data, 0, t.data, r0 * dim, m * dim);
        return part;
      };
      const y = p.session.attendAt(l, p.session.position, rows(q, qDim), rows(k, kvDim), rows(v, kvDim));
      be.copy(out.data, r0 * qDim, y.data, 0, m * qDim);
    });
    return out;
  };
  const pass = model.forwardAcross(ids, 1, n, { positions, attend, logitRows });
  for (const p of parts) p.session.advance(p.ids.length);
  const logits = await pass;
  try {
    const host = await logits.toArray();
    const vocab = model.config.vocab_size;
    return Array.from({ length: logitRows.length }, (_, i) => host.subarray(i * vocab, (i + 1) * vocab));
  } finally {
    logits.dispose();
  }
}

/**
 * batchedPass over parts in groups that keep each row's arithmetic what it is alone (see the
 * header): parts of at most FEW_ROWS rows packed into passes of at most FEW_ROWS rows, longer
 * parts together in one pass. Returns each part's logits rows.
 */
async function passes(model: Llama, parts: PassPart[]): Promise<FloatArray[][]> {
  const out: FloatArray[][] = new Array(parts.length);
  const groups: number[][] = [];
  const long: number[] = [];
  let group: number[] = [], rows = 0;
  parts.forEach((p, i) => {
    if (p.ids.length > FEW_ROWS) return void long.push(i);
    if (rows + p.ids.length > FEW_ROWS) {
      groups.push(group);
      group = [];
      rows = 0;
    }
    group.push(i);
    rows += p.ids.length;
  });
  if (group.length > 0) groups.push(group);
  if (long.length > 0) groups.push(long);
  for (const g of groups) {
    const flat = await batchedPass(model, g.map((i) => parts[i]));
    let r = 0;
    for (const i of g) {
      out[i] = flat.slice(r, r + parts[i].logits);
      r += parts[i].logits;
    }
  }
  return out;
}

/** The token with its log-probability and the `top` most likely alternatives (log-softmax of the row), and the row's entropy if asked. */
function withLogprobs(token: number, logits: FloatArray, top: number | undefined, entropy = false): TokenEvent {
  if (top === undefined) return { token };
  const lse = logSumExpOf(logits);
  const best = top > 0 ? Array.from(topKOf(logits, top).ids) : [];
  const event: TokenEvent = { token, logprob: logits[token] - lse, top: best.map((t) => ({ token: t, logprob: logits[t] - lse })) };
  if (entropy) {
    // H = lse − Σ p·logit, with p = exp(logit − lse).
    let mean = 0;
    for (let i = 0; i < logits.length; i++) if (logits[i] > -Infinity) mean += Math.exp(logits[i] - lse) * logits[i];
    event.entropy = Math.max(0, lse - mean);
  }
  return event;
}

/** Let pending I/O run: setImmediate in Node (no timer clamp), a zero timeout in a browser. */
const yieldToEventLoop = (): Promise<void> =>
  new Promise((r) => (typeof (globalThis as { setImmediate?: unknown }).setImmediate === "function" ? setImmediate(r) : setTimeout(r, 0)));

/** A request's events: pushed by the engine, pulled by one consumer. */
class Channel implements BatchStream {
  readonly submitted = performance.now();
  firstTokenSeconds: number | null = null;
  readonly finished: Promise<FinishReason>;
  private readonly events: TokenEvent[] = [];
  private done: FinishReason | null = null;
  private error: unknown = undefined;
  private wake: (() => void) | null = null;
  private settle!: { resolve: (r: FinishReason) => void; reject: (e: unknown) => void };

  constructor(readonly promptTokens: number) {
    this.finished = new Promise((resolve, reject) => (this.settle = { resolve, reject }));
    this.finished.catch(() => {}); // a consumer of the tokens sees the error there
  }

  push(e: TokenEvent): void {
    this.firstTokenSeconds ??= (performance.now() - this.submitted) / 1000;
    this.events.push(e);
    this.wake?.();
  }
  end(reason: FinishReason): void {
    this.done = reason;
    this.settle.resolve(reason);
    this.wake?.();
  }
  fail(e: unknown): void {
    this.done = "stop";
    this.error = e;
    this.settle.reject(e);
    this.wake?.();
  }

  async *[Symbol.asyncIterator](): AsyncIterator<TokenEvent> {
    for (;;) {
      if (this.events.length > 0) {
        yield this.events.shift()!;
        continue;
      }
      if (this.error !== undefined) throw this.error;
      if (this.done !== null) return;
      await new Promise<void>((r) => (this.wake = r));
      this.wake = null;
    }
  }
}
