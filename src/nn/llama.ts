// The Llama-family decoder: token embedding, pre-norm blocks of grouped-query attention with
// rotary positions and a SwiGLU MLP, a final RMSNorm and the LM head (optionally tied to the
// embedding). The math is Hugging Face's LlamaForCausalLM; parameters carry HF names and layouts.
import type { Backend } from "../backend/backend.js";
import { Tensor, isGradEnabled, noGrad, scope, unscoped } from "../tensor/tensor.js";
import * as op from "../tensor/ops.js";
import type { QuantizedWeight } from "../tensor/quantized-weight.js";
import { type DeferredWeights, type Weight, applyWeight, applyWeights } from "./weight.js";
import { type FuseOptions, type LayerWeights, type ModelWeights, fuseWeights, isMoeFfn, layerWeightList } from "./fusion.js";
import { type ExpertUsage, type RoutingLog, moeFfn } from "./moe.js";
import type { ExpertCache } from "./expert-cache.js";
import { deriveSeed, Rng } from "../util/rng.js";
import { type LlamaConfig, headDim, isMoe, isStackedExpert, parameterNames, parameterShape, validateConfig } from "./config.js";
import { type Placement, backendOf, describePlacement, isSplit, partOf, placementOf, stages } from "./placement.js";

/**
 * How a layer's attention finds its keys and values. q [batch, seq, H·D] and k, v [batch, seq,
 * KVH·D] arrive projected and rotated. Training attends within the batch (op.attention); an
 * inference session (runtime/session.ts) stores k and v in its cache and attends over that, so
 * both run this one statement of the model.
 */
export type Attend = (layer: number, q: Tensor, k: Tensor, v: Tensor) => Tensor;

export interface ForwardOptions {
  /** Seed of this step's dropout masks; dropout is applied only when given and config.dropout > 0. */
  dropoutSeed?: number;
  /** Return logits for the last position of each sequence only ([batch, vocab]). */
  lastOnly?: boolean;
  /** Position of the first token (RoPE angle); default 0. */
  posOffset?: number;
  /**
   * The position of every token instead (a batch of several sequences' rows, runtime/batch.ts):
   * its RoPE angle; the caller's `attend` knows which cache each row belongs to.
   */
  positions?: Int32Array;
  /** Logits of these rows (of batch·seq) only, in this order ([rows, vocab]); lastOnly's general form. */
  logitRows?: Int32Array;
  /** Return the final hidden states (after the final RMSNorm, HF's last_hidden_state) instead of logits. */
  hiddenStates?: boolean;
  /** Attention strategy; default: causal attention within the given tokens. */
  attend?: Attend;
  /** A MoE model's routers record into this (training losses, expert load); ignored by dense models. */
  routing?: RoutingLog;
}

/** cos/sin of pos·θᵢ, θᵢ = theta^(−2i/headDim), as [maxPos, headDim/2] tables. */
export function ropeTables(hd: number, maxPos: number, theta: number): { cos: Float64Array; sin: Float64Array } {
  return ropeTablesAt(hd, Int32Array.from({ length: maxPos }, (_, p) => p), theta);
}

/** The rows of ropeTables for the given positions, row r for positions[r]. */
export function ropeTablesAt(hd: number, positions: Int32Array, theta: number): { cos: Float64Array; sin: Float64Array } {
  const half = hd / 2, n = positions.length;
  const cos = new Float64Array(n * half), sin = new Float64Array(n * half);
  for (let i = 0; i < half; i++) {
    const invFreq = 1 / Math.pow(theta, (2 * i) / hd);
    for (let r = 0; r < n; r++) {
      cos[r * half + i] = Math.cos(positions[r] * invFreq);
      sin[r * half + i] = Math.sin(positions[r] * invFreq);
    }
  }
  return { cos, sin };
}

/**
 * Quantization-aware training's hold on a model (train/qat.ts implements it): the weights every
 * pass uses, fake-quantized as the GGUF export will store them.
 */
export interface FakeQuantization {
  /** Name, float weight → the weight this pass uses. */
  forPass(): FakeQuantizer;
  /** The input of a quantized projection (int8 activations: fake-quantized per token). */
  activation(x: Tensor): Tensor;
  /** Overwrite the latent weights with their fake-quantized values (before fusion). */
  bake(): void;
  /** Forget cached fake-quantized weights. */
  invalidate(): void;
}

/** One forward pass, part by part: the lookup, any run of layers, the final norm and head. */
interface Pass {
  embed(ids: Int32Array): Tensor;
  layers(x: Tensor, from: number, to: number): Tensor;
  head(x: Tensor): Tensor;
}

export class Llama {
  // RoPE tables per backend, built for the positions used so far (a config may claim a huge context).
  private readonly ropeTablesOn = new Map<Backend, { cos: Tensor; sin: Tensor }>();
  /** The fused weights once fuse() ran (inference only); null: the parameters as they are. */
  private fusedWeights: ModelWeights | null = null;
  private fusedCount = 0;
  /**
   * Quantization-aware training (train/qat.ts; set it with applyQat): every pass uses the weights
   * fake-quantized as the GGUF export will store them. Null: the weights as they are.
   */
  qat: FakeQuantization | null = null;
  /** A MoE model's expert counters (generate --stats): every pass adds its routing to them. Null: not counted. */
  expertUsage: ExpertUsage | null = null;
  /** Weights still to be read from the model file on first use (a lazily loaded model), or null. */
  deferred: DeferredWeights | null = null;

  /** Where each part lives (nn/placement.ts); one backend for all unless the loader split it. */
  readonly placement: Placement;
  /** The backend of the embedding and the head: where logits come out. */
  readonly backend: Backend;

  constructor(
    where: Backend | Placement,
    readonly config: LlamaConfig,
    /** Every parameter by HF name (see parameterNames), except those in `quantized`. */
    readonly params: Map<string, Tensor>,
    /**
     * Projection matrices held quantized (inference only), by HF name. A model with any is not
     * trainable: its float parameters are only the rest.
     */
    readonly quantized: ReadonlyMap<string, QuantizedWeight> = new Map(),
    /**
     * MoE layers whose experts are paged (nn/expert-cache.ts; inference only), by layer: their
     * stacked expert parameters are in neither map, the cache reads them from the file on demand.
     */
    readonly expertCaches: ReadonlyMap<number, ExpertCache> = new Map(),
  ) {
    validateConfig(config);
    this.placement = placementOf(where, config.num_hidden_layers);
    this.backend = this.placement.ends;
    for (const [l, cache] of expertCaches)
      if (!isMoe(config) || !(l >= 0 && l < config.num_hidden_layers) || cache.experts !== config.num_local_experts) throw new Error(`model: an expert cache for layer ${l} does not fit the config`);
    for (const name of parameterNames(config)) {
      if (expertCaches.has(partOf(name) as number) && isStackedExpert(name)) continue;
      const t = params.get(name) ?? quantized.get(name);
      if (!t) throw new Error(`model: missing parameter ${name}`);
      if (t.backend !== backendOf(this.placement, partOf(name))) throw new Error(`model: parameter ${name} is on ${t.backend.name}, its place is ${backendOf(this.placement, partOf(name)).name}`);
      if (params.has(name) && quantized.has(name)) throw new Error(`model: parameter ${name} is both float and quantized`);
      // Matrices may be quantized (the embedding too: its lookup dequantizes the rows it picks); norms not.
      // Stacked experts [E, out, in] are held quantized as ggml does: one [E·out, in] matrix.
      const shape = parameterShape(config, name);
      if (quantized.has(name) && shape.length < 2) throw new Error(`model: ${name} cannot be quantized`);
      const want = quantized.has(name) && shape.length === 3 ? [shape[0] * shape[1], shape[2]] : shape;
      if (t.shape.join(",") !== want.join(",")) throw new Error(`model: ${name} has shape [${t.shape}], config needs [${want}]`);
    }
    for (const name of quantized.keys()) {
      if (parameterNames(config).includes(name)) continue;
      // A tied model may keep a quantized copy of a float embedding as its LM head (llama.cpp
      // runs the head on the quantized token_embd).
      if (name !== "lm_head.weight" || !config.tie_word_embeddings) throw new Error(`model: unknown quantized weight ${name}`);
      const want = [config.vocab_size, config.hidden_size];
      if (quantized.get(name)!.shape.join(",") !== want.join(",")) throw new Error(`model: quantized LM head has shape [${quantized.get(name)!.shape}], config needs [${want}]`);
    }
  }

  /**
   * cos/sin tables covering positions [0, end): the first 4096 positions at once (all of them for
   * most small models), then doubling up to the context on demand.
   */
  private ropeUpTo(end: number, be: Backend): { cos: Tensor; sin: Tensor } {
    const have = this.ropeTablesOn.get(be);
    if (have === undefined || have.cos.shape[0] < end) {
      const c = this.config;
      const rows = Math.min(c.max_position_embeddings, Math.max(end, 4096, 2 * (have?.cos.shape[0] ?? 0)));
      const tables = ropeTables(headDim(c), rows, c.rope_theta);
      have?.cos.dispose();
      have?.sin.dispose();
      // Outside any scope: the tables live as long as the model.
      const [cos, sin] = unscoped(() => [Tensor.from(be, [rows, headDim(c) / 2], tables.cos), Tensor.from(be, [rows, headDim(c) / 2], tables.sin)]);
      this.ropeTablesOn.set(be, { cos, sin });
    }
    return this.ropeTablesOn.get(be)!;
  }

  /** nanoGPT's initialisation: N(0, 0.02); residual output projections scaled by 1/sqrt(2·layers); norms 1. */
  static init(backend: Backend, config: LlamaConfig, seed: number): Llama {
    validateConfig(config);
    const params = new Map<string, Tensor>();
    const rng = new Rng(deriveSeed(seed, 0x1417));
    const residualStd = 0.02 / Math.sqrt(2 * config.num_hidden_layers);
    for (const name of parameterNames(config)) {
      const shape = parameterShape(config, name);
      const n = shape.reduce((a, b) => a * b, 1);
      const values = new Float32Array(n);
      if (shape.length === 1) values.fill(1);
      else {
        const std = name.endsWith("o_proj.weight") || name.endsWith("down_proj.weight") || name.endsWith("experts.w2.weight") ? residualStd : 0.02;
        for (let i = 0; i < n; i++) values[i] = std * rng.normal();
      }
      params.set(name, Tensor.from(backend, shape, values, true));
    }
    return new Llama(backend, config, params);
  }

  /** Float parameters in a fixed order (all of them unless some weights are quantized). */
  parameters(): [string, Tensor][] {
    this.deferred?.ensureAll(); // callers train or save them: they must hold the file's values
    return parameterNames(this.config).filter((n) => this.params.has(n)).map((n) => [n, this.params.get(n)!]);
  }

  /** Weights counted whether float or quantized. */
  numParameters(): number {
    if (this.fusedWeights) return this.fusedCount;
    const paged = [...this.expertCaches.values()].reduce((s, c) => s + (Object.values(c.weights).reduce((n, w) => n + w.size, 0) * c.experts) / c.slots, 0);
    return [...this.params.values()].reduce((s, t) => s + t.size, 0) + [...this.quantized.values()].reduce((s, w) => s + w.size, 0) + paged;
  }

  private p(name: string): Tensor {
    return this.params.get(name)!;
  }

  /** A projection's weight, float or quantized; under QAT `fq` gives the float one's fake-quantized form. */
  private w(name: string, fq: FakeQuantizer = noFakeQuant): Weight {
    return this.quantized.get(name) ?? fq(name, this.params.get(name)!);
  }

  /** True once fuse() ran: the model runs inference only (no training, no saving). */
  get fused(): boolean {
    return this.fusedWeights !== null;
  }

  /**
   * Fold the graph for inference (nn/fusion.ts): stacked Q/K/V and gate/up matrices, RMSNorm
   * gains folded into float projections, residual adds fused into the output projections. The
   * replaced parameters are freed; the model can no longer be trained or saved. A lazily loaded
   * model stays lazy: its unread parts are read straight into the fused matrices on first use.
   */
  fuse(opts: FuseOptions = {}): void {
    if (this.fusedWeights) return;
    // Fusion needs the final numbers: the fake-quantized weights become the weights (baking reads them all).
    if (this.qat) this.deferred?.ensureAll();
    this.qat?.bake();
    this.qat = null;
    const count = this.numParameters();
    const names = (l: number) => {
      const pre = `model.layers.${l}.`;
      const experts = pre + "block_sparse_moe.experts.";
      return {
        q: pre + "self_attn.q_proj.weight", k: pre + "self_attn.k_proj.weight", v: pre + "self_attn.v_proj.weight",
        gate: pre + "mlp.gate_proj.weight", up: pre + "mlp.up_proj.weight", expertGate: experts + "w1.weight", expertUp: experts + "w3.weight",
      };
    };
    const { fused, unused } = fuseWeights(this.placement, this.weights(), names, this.config.tie_word_embeddings, { deferred: this.deferred, ...opts });
    for (const w of unused) {
      for (const map of [this.params, this.quantized as Map<string, Weight>]) for (const [n, t] of map) if (t === w) map.delete(n);
      w.dispose();
    }
    this.fusedWeights = fused;
    this.fusedCount = count;
  }

  /** The weights the layer loop applies: the fused ones, or the parameters by name. */
  private weights(fq: FakeQuantizer = noFakeQuant): ModelWeights {
    if (this.fusedWeights) return this.fusedWeights;
    const c = this.config;
    const layers = [];
    for (let l = 0; l < c.num_hidden_layers; l++) {
      const pre = `model.layers.${l}.`;
      const moe = pre + "block_sparse_moe.";
      layers.push({
        inputNorm: this.p(pre + "input_layernorm.weight"),
        qkv: [this.w(pre + "self_attn.q_proj.weight", fq), this.w(pre + "self_attn.k_proj.weight", fq), this.w(pre + "self_attn.v_proj.weight", fq)],
        o: this.w(pre + "self_attn.o_proj.weight", fq),
        postNorm: this.p(pre + "post_attention_layernorm.weight"),
        ffn: this.expertCaches.has(l)
          ? { router: this.w(moe + "gate.weight"), cache: this.expertCaches.get(l)! }
          : isMoe(c)
          ? // The router stays float under QAT: llama.cpp keeps ffn_gate_inp in F32 when it quantizes.
            { router: this.w(moe + "gate.weight"), gate: this.w(moe + "experts.w1.weight", fq), up: this.w(moe + "experts.w3.weight", fq), down: this.w(moe + "experts.w2.weight", fq) }
          : { gateUp: [this.w(pre + "mlp.gate_proj.weight", fq), this.w(pre + "mlp.up_proj.weight", fq)], down: this.w(pre + "mlp.down_proj.weight", fq) },
      });
    }
    const head = this.quantized.get("lm_head.weight") ?? this.w(c.tie_word_embeddings ? "model.embed_tokens.weight" : "lm_head.weight", fq);
    return { layers, norm: this.p("model.norm.weight"), head, accumulateResidual: false };
  }

  /**
   * Logits [batch·seq, vocab] (or [batch, vocab] with lastOnly) for token ids laid out [batch, seq].
   * A model placed across backends runs through forwardAcross instead.
   */
  forward(ids: Int32Array, batch: number, seq: number, opts: ForwardOptions = {}): Tensor {
    if (isSplit(this.placement)) throw new Error(`forward: the model spans backends (${describePlacement(this.placement)}); run it with forwardAcross (inference only)`);
    const pass = this.pass(ids, batch, seq, opts);
    return pass.head(pass.layers(pass.embed(ids), 0, this.config.num_hidden_layers));
  }

  /**
   * forward() for a model on any placement, without a graph (inference): each run of layers on
   * one backend is issued as a whole, and the hidden state is read back and handed to the next
   * backend at each boundary. The logits (on `backend`) belong to the caller, outside any scope.
   * On one backend the pass is issued before this returns, as forward's is.
   */
  async forwardAcross(ids: Int32Array, batch: number, seq: number, opts: ForwardOptions = {}): Promise<Tensor> {
    // Outside the caller's scope (it ends at the first await) and without a graph.
    const run = <T>(fn: () => T): T => unscoped(() => noGrad(() => scope(fn)));
    if (!isSplit(this.placement)) return run(() => this.forward(ids, batch, seq, opts));
    const pass = run(() => this.pass(ids, batch, seq, opts));
    let x = run(() => pass.embed(ids));
    // Each stretch replaces x; a fused model's residual adds may hand back x itself.
    const step = (fn: (x: Tensor) => Tensor): void => {
      const y = run(() => fn(x));
      if (y !== x) x.dispose();
      x = y;
    };
    try {
      for (const s of [...stages(this.placement), { backend: this.backend, from: -1, to: -1 }]) {
        if (x.backend !== s.backend) {
          const host = await x.toArray();
          step(() => Tensor.from(s.backend, x.shape, host));
        }
        step((x) => (s.from < 0 ? pass.head(x) : pass.layers(x, s.from, s.to)));
      }
      return x;
    } catch (e) {
      x.dispose();
      throw e;
    }
  }

  /** Checks the arguments of a pass and sets up what its parts share (weights, RoPE, dropout). */
  private pass(ids: Int32Array, batch: number, seq: number, opts: ForwardOptions): Pass {
    const c = this.config;
    if (ids.length !== batch * seq) throw new Error(`forward: ${ids.length} ids for batch ${batch} × seq ${seq}`);
    const pos = opts.posOffset ?? 0;
    if (!Number.isInteger(pos) || pos < 0) throw new Error(`forward: bad position offset ${pos}`);
    if (pos + seq > c.max_position_embeddings) throw new Error(`forward: positions up to ${pos + seq} exceed max_position_embeddings ${c.max_position_embeddings}`);
    const hd = headDim(c), H = c.num_attention_heads, KVH = c.num_key_value_heads;
    // Per-token positions: each token's own row of the RoPE tables, made on the host (as ropeTables would hold it).
    const at = opts.positions;
    if (at !== undefined) {
      if (at.length !== ids.length || opts.attend === undefined || opts.posOffset !== undefined) throw new Error("forward: positions need one per token, an attend and no posOffset");
      for (const p of at) if (!(p >= 0 && p < c.max_position_embeddings)) throw new Error(`forward: position ${p} outside [0, ${c.max_position_embeddings})`);
    }
    const rowTables = at === undefined ? null : ropeTablesAt(hd, at, c.rope_theta);
    const ropeOf = (be: Backend): { cos: Tensor; sin: Tensor; rows: number; offset: number } =>
      rowTables === null
        ? { ...this.ropeUpTo(pos + seq, be), rows: seq, offset: pos }
        : { cos: Tensor.from(be, [ids.length, hd / 2], rowTables.cos), sin: Tensor.from(be, [ids.length, hd / 2], rowTables.sin), rows: ids.length, offset: 0 };
    if (opts.logitRows) for (const r of opts.logitRows) if (!(Number.isInteger(r) && r >= 0 && r < ids.length)) throw new Error(`forward: logit row ${r} outside [0, ${ids.length})`);
    const shape = { batch, seq, heads: H, kvHeads: KVH, headDim: hd };
    const attend: Attend = opts.attend ?? ((_l, q, k, v) => op.attention(q, k, v, shape));
    const p = opts.dropoutSeed !== undefined ? (c.dropout ?? 0) : 0;
    let site = 0;
    const drop = (t: Tensor): Tensor => (p > 0 ? op.dropout(t, p, deriveSeed(opts.dropoutSeed!, site++)) : t);

    if (this.qat) this.deferred?.ensureAll(); // fake quantization below reads every weight up front
    const fq = this.qat?.forPass() ?? noFakeQuant;
    const W = this.weights(fq);
    // Under QAT with int8 activations, the input of every (fake-)quantized projection is quantized per token.
    const act = (t: Tensor): Tensor => (this.qat ? this.qat.activation(t) : t);
    if (W.accumulateResidual && p > 0) throw new Error("forward: the model is fused for inference; dropout needs the unfused model");
    // x + drop(a Wᵀ); a fused model adds into x in place (no dropout: inference only).
    const residual = (x: Tensor, a: Tensor, w: Weight): Tensor => (W.accumulateResidual ? op.linearAccumulate(x, act(a), w) : op.add(x, drop(applyWeight(act(a), w))));
    const block = (l: number, x: Tensor): Tensor => {
      const L = W.layers[l];
      // With per-token positions the tokens are one sequence of rows for RoPE, each with its own table row.
      const rope = ropeOf(x.backend);
      const [rb, rs] = rowTables === null ? [batch, seq] : [1, rope.rows];
      const h = op.rmsnorm(x, L.inputNorm, c.rms_norm_eps);
      const [qh, kh, v] = applyWeights(act(h), L.qkv, [H * hd, KVH * hd, KVH * hd]);
      const q = op.rope(qh, rope.cos, rope.sin, rb, rs, H, hd, rope.offset);
      const k = op.rope(kh, rope.cos, rope.sin, rb, rs, KVH, hd, rope.offset);
      x = residual(x, attend(l, q, k, v), L.o);
      const h2 = op.rmsnorm(x, L.postNorm, c.rms_norm_eps);
      return ffn(l, L, x, h2);
    };
    const ffn = (l: number, L: LayerWeights, x: Tensor, h: Tensor): Tensor => {
      if (isMoeFfn(L.ffn)) {
        const moeOpts = { log: opts.routing, usage: this.expertUsage, act };
        return W.accumulateResidual ? moeFfn(h, L.ffn, c, l, { ...moeOpts, into: x }) : op.add(x, drop(moeFfn(h, L.ffn, c, l, moeOpts)));
      }
      const [gate, up] = applyWeights(act(h), L.ffn.gateUp, [c.intermediate_size, c.intermediate_size]);
      return residual(x, op.swiglu(gate, up), L.ffn.down);
    };
    return {
      embed: (ids) => {
        this.deferred?.ensure("embed");
        const table = this.quantized.get("model.embed_tokens.weight");
        return drop(table ? op.embeddingQuantized(table, ids, [batch, seq]) : op.embedding(fq("model.embed_tokens.weight", this.p("model.embed_tokens.weight")), ids, [batch, seq]));
      },
      layers: (x, from, to) => {
        for (let l = from; l < to; l++) {
          this.deferred?.ensure(l);
          // Without a graph nothing refers back to a layer's intermediates: freed as the layer ends,
          // a pass holds one layer's activations instead of every layer's (a long prompt's prefill),
          // and the next layer reuses the same blocks.
          x = isGradEnabled() ? block(l, x) : scope(() => block(l, x));
        }
        return x;
      },
      head: (x) => {
        // The last position of each sequence, or the rows asked for.
        const rows = opts.logitRows ?? (opts.lastOnly ? Int32Array.from({ length: batch }, (_, b) => b * seq + seq - 1) : null);
        if (rows) x = selectRows(x, rows);
        this.deferred?.ensure("head");
        // A fused untied head holds the final norm's gain; the hidden states need it as trained.
        if (opts.hiddenStates) return op.rmsnorm(x, this.params.get("model.norm.weight") ?? W.norm, c.rms_norm_eps);
        return applyWeight(act(op.rmsnorm(x, W.norm, c.rms_norm_eps)), W.head);
      },
    };
  }

  /** Per-position cross-entropy losses [batch·seq] of next-token targets (−1 = ignore). */
  losses(ids: Int32Array, targets: Int32Array, batch: number, seq: number, opts: ForwardOptions = {}): Tensor {
    return op.crossEntropy(this.forward(ids, batch, seq, opts), targets);
  }

  /** Mean cross-entropy loss: the training objective. */
  loss(ids: Int32Array, targets: Int32Array, batch: number, seq: number, opts: ForwardOptions = {}): Tensor {
    return op.meanLoss(this.losses(ids, targets, batch, seq, opts), targets);
  }

  dispose(): void {
    this.deferred?.close();
    const W = this.fusedWeights;
    if (W) for (const w of [W.norm, W.head, ...W.layers.flatMap(layerWeightList)]) w.dispose();
    for (const t of this.params.values()) t.dispose(); // not parameters(): that would read deferred weights
    for (const w of this.quantized.values()) w.dispose();
    this.qat?.invalidate();
    this.expertUsage?.dispose();
    for (const cache of this.expertCaches.values()) cache.dispose();
    for (const { cos, sin } of this.ropeTablesOn.values()) {
      cos.dispose();
      sin.dispose();
    }
    this.ropeTablesOn.clear();
  }
}

/** Name, float weight → the weight a forward pass uses (QAT: fake-quantized). */
export type FakeQuantizer = (name: string, w: Tensor) => Tensor;
const noFakeQuant: FakeQuantizer = (_name, w) => w;

/** The hidden state of the last position of each sequence (inference only: no gradient). */
/** Rows `rows` of x [N, dim] → [rows.length, dim] (inference). */
function selectRows(x: Tensor, rows: Int32Array): Tensor {
  const dim = x.shape[x.shape.length - 1];
  return noGrad(() => {
    const y = Tensor.zeros(x.backend, [rows.length, dim]);
    rows.forEach((r, i) => x.backend.copy(y.data, i * dim, x.data, r * dim, dim));
    return y;
  });
}

