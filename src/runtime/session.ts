// An inference session: one sequence's KV cache over a loaded model. Keys and values of every
// position seen so far stay in preallocated buffers, so each new token costs one forward pass of
// that token alone instead of the whole context. The cache can be rolled back to any earlier
// position (a rejected draft in speculative decoding, an edited prompt).
import type { FloatArray } from "../backend/backend.js";
import type { TopK } from "../backend/top-k.js";
import { type Attend, Llama } from "../nn/llama.js";
import { headDim } from "../nn/config.js";
import { Tensor } from "../tensor/tensor.js";
import * as op from "../tensor/ops.js";

export interface SessionOptions {
  /** Cache capacity in positions; default and maximum: the model's max_position_embeddings. */
  maxSeq?: number;
  /**
   * prefill and decode return a view of one host buffer the session owns, sized once (a row of
   * logits; more rows grow it), which the next call overwrites: no garbage array per token. For
   * callers that consume the logits before the next call (generateTokens). Default false: a
   * fresh array per call.
   */
  reuseLogits?: boolean;
}

export interface PrefillOptions {
  /** Return logits for every new position ([T·vocab], row-major), not only the last ([vocab]). */
  allLogits?: boolean;
}

export class Session {
  readonly maxSeq: number;
  /** Cache memory per position: K and V of every layer. */
  readonly cacheBytesPerToken: number;
  /** Per layer: [maxSeq, kvHeads·headDim], a row per position (GQA: only the KV heads are stored). */
  private readonly keys: Tensor[] = [];
  private readonly values: Tensor[] = [];
  private pos = 0;
  /** The reused logits buffer (reuseLogits), or null. */
  private out: FloatArray | null = null;

  constructor(
    readonly model: Llama,
    opts: SessionOptions = {},
  ) {
    const c = model.config;
    this.maxSeq = opts.maxSeq ?? c.max_position_embeddings;
    if (!Number.isInteger(this.maxSeq) || this.maxSeq < 1 || this.maxSeq > c.max_position_embeddings)
      throw new Error(`session: maxSeq must be in [1, ${c.max_position_embeddings}] (got ${this.maxSeq})`);
    const kvDim = c.num_key_value_heads * headDim(c);
    // The session owns these (dispose); create it outside scope() so that no scope frees them.
    // Each layer's cache sits on that layer's backend (a model may span several).
    this.cacheBytesPerToken = 0;
    for (const be of model.placement.layers) {
      this.keys.push(Tensor.zeros(be, [this.maxSeq, kvDim]));
      this.values.push(Tensor.zeros(be, [this.maxSeq, kvDim]));
      this.cacheBytesPerToken += 2 * kvDim * (be.dtype === "f64" ? 8 : 4);
    }
    if (opts.reuseLogits) this.out = this.hostArray(c.vocab_size);
  }

  private hostArray(n: number): FloatArray {
    return this.model.backend.dtype === "f64" ? new Float64Array(n) : new Float32Array(n);
  }

  /** The logits on the host: a fresh array, or the view of the reused buffer. */
  private async hostLogits(logits: Tensor): Promise<FloatArray> {
    if (this.out === null) return logits.toArray();
    if (this.out.length < logits.size) this.out = this.hostArray(logits.size);
    const view = this.out.subarray(0, logits.size);
    await this.model.backend.readInto(logits.data, view);
    return view;
  }

  /** Number of positions in the cache: the next token goes at this position. */
  get position(): number {
    return this.pos;
  }

  /**
   * Run `tokens` through the model in one forward pass, appending them to the cache. The pass is
   * issued before this returns; the promise brings its logits back to the host.
   */
  prefill(tokens: ArrayLike<number>, opts: PrefillOptions = {}): Promise<FloatArray> {
    return this.pass(tokens, opts.allLogits ?? false, (logits) => this.hostLogits(logits));
  }

  /** One new token: its logits [vocab]. */
  decode(token: number): Promise<FloatArray> {
    return this.prefill([token]);
  }

  /**
   * prefill, bringing back only the k largest logits of the last position with their token ids
   * (Backend.readTopK: what greedy and top-k sampling need, 8·k bytes from a GPU).
   */
  prefillTop(tokens: ArrayLike<number>, k: number): Promise<TopK> {
    return this.pass(tokens, false, (logits) => logits.backend.readTopK(logits.data, 0, logits.size, k));
  }

  /** Run the pass and `read` its logits; the logits tensor is freed once read. */
  private pass<T>(tokens: ArrayLike<number>, allLogits: boolean, read: (logits: Tensor) => Promise<T>): Promise<T> {
    const c = this.model.config;
    const n = tokens.length;
    if (n === 0) throw new Error("session: prefill needs at least one token");
    if (this.pos + n > this.maxSeq) throw new Error(`session: ${n} tokens at position ${this.pos} overflow the cache of ${this.maxSeq}`);
    const ids = Int32Array.from(tokens);
    for (const id of ids) if (!(id >= 0 && id < c.vocab_size)) throw new Error(`session: token ${id} is outside the vocabulary [0, ${c.vocab_size})`);
    const pos = this.pos;
    const attend: Attend = (l, q, k, v) => this.attendAt(l, pos, q, k, v);
    // On one backend the whole pass is issued here, before this returns; a model that spans
    // backends issues each stretch as the hidden state arrives.
    const pass = this.model.forwardAcross(ids, 1, n, { posOffset: pos, attend, lastOnly: !allLogits });
    // Only a pass that was issued advances the position; rows written by a failed one are never read.
    this.pos += n;
    return pass.then(
      (logits) => read(logits).finally(() => logits.dispose()),
      (e) => {
        if (this.pos === pos + n) this.pos = pos; // a later stretch failed: nothing after pos counts
        throw e;
      },
    );
  }

  /**
   * One layer's attention for new positions pos, pos + 1, …: their keys and values k, v [n,
   * KVH·D] go into the cache, and q [n, H·D] attends over every position up to its own. A batched
   * pass over several sessions (runtime/batch.ts) calls it per session, then advance().
   */
  attendAt(layer: number, pos: number, q: Tensor, k: Tensor, v: Tensor): Tensor {
    const c = this.model.config;
    const kvDim = this.keys[layer].shape[1], n = k.size / kvDim;
    if (pos + n > this.maxSeq) throw new Error(`session: ${n} tokens at position ${pos} overflow the cache of ${this.maxSeq}`);
    k.backend.copy(this.keys[layer].data, pos * kvDim, k.data, 0, n * kvDim);
    v.backend.copy(this.values[layer].data, pos * kvDim, v.data, 0, n * kvDim);
    return op.attentionCached(q, this.keys[layer], this.values[layer], c.num_attention_heads, c.num_key_value_heads, headDim(c), pos);
  }

  /** Count `n` positions a batched pass wrote through attendAt. */
  advance(n: number): void {
    if (!Number.isInteger(n) || n < 0 || this.pos + n > this.maxSeq) throw new Error(`session: cannot advance ${n} positions from ${this.pos} (cache of ${this.maxSeq})`);
    this.pos += n;
  }

  /** Roll the cache back to `pos` positions (0 ≤ pos ≤ position); later rows are overwritten as needed. */
  truncate(pos: number): void {
    if (!Number.isInteger(pos) || pos < 0 || pos > this.pos) throw new Error(`session: cannot truncate to ${pos} (position ${this.pos})`);
    this.pos = pos;
  }

  dispose(): void {
    for (const t of [...this.keys, ...this.values]) t.dispose();
    this.keys.length = 0;
    this.values.length = 0;
  }
}
