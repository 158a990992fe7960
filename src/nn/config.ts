// The model configuration: a plain record with Hugging Face `LlamaConfig` field names, so that
// config.json written by Bonsai is read by transformers as is.

export interface LlamaConfig {
  vocab_size: number;
  hidden_size: number;
  intermediate_size: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  num_key_value_heads: number;
  max_position_embeddings: number;
  rms_norm_eps: number;
  rope_theta: number;
  tie_word_embeddings: boolean;
  /** Training dropout on the embedding output and on both residual branches (Bonsai's; HF ignores it). */
  dropout?: number;
  /** Sparse mixture of experts (HF MixtralConfig's names): experts per layer E; absent or 1 is a dense FFN. */
  num_local_experts?: number;
  /** Experts each token is routed to, k ≤ E. */
  num_experts_per_tok?: number;
  /** Weight of the load-balancing loss in the training objective (HF Mixtral's; its default 0.001). */
  router_aux_loss_coef?: number;
  /** Weight of the router z-loss (ST-MoE's; Bonsai's, default 0). */
  router_z_loss_coef?: number;
  bos_token_id?: number;
  eos_token_id?: number;
}

/** llama2.c's rule for the SwiGLU width: 2/3 of 4·dim, rounded up to a multiple. */
export function defaultIntermediateSize(hiddenSize: number, multipleOf = 32): number {
  const h = Math.floor((2 * 4 * hiddenSize) / 3);
  return multipleOf * Math.ceil(h / multipleOf);
}

/** Experts per layer: 1 for a dense model. */
export function numExperts(c: LlamaConfig): number {
  return c.num_local_experts ?? 1;
}

/** Whether the layers' FFNs are sparse mixtures of experts. */
export function isMoe(c: LlamaConfig): boolean {
  return numExperts(c) > 1;
}

export function headDim(c: LlamaConfig): number {
  return c.hidden_size / c.num_attention_heads;
}

/** Throws a one-line error naming the first impossible field. */
export function validateConfig(c: LlamaConfig): void {
  const positiveInts: (keyof LlamaConfig)[] = [
    "vocab_size",
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "max_position_embeddings",
  ];
  for (const k of positiveInts) {
    const v = c[k];
    if (typeof v !== "number" || !Number.isInteger(v) || v <= 0) throw new Error(`config: ${k} must be a positive integer (got ${String(v)})`);
  }
  if (c.hidden_size % c.num_attention_heads !== 0)
    throw new Error(`config: hidden_size ${c.hidden_size} is not divisible by num_attention_heads ${c.num_attention_heads}`);
  if (c.num_attention_heads % c.num_key_value_heads !== 0)
    throw new Error(`config: num_key_value_heads ${c.num_key_value_heads} does not divide num_attention_heads ${c.num_attention_heads}`);
  if (headDim(c) % 2 !== 0) throw new Error(`config: head dimension ${headDim(c)} must be even for rotary embeddings`);
  if (!(c.rms_norm_eps > 0)) throw new Error(`config: rms_norm_eps must be > 0 (got ${c.rms_norm_eps})`);
  if (!(c.rope_theta > 0)) throw new Error(`config: rope_theta must be > 0 (got ${c.rope_theta})`);
  const p = c.dropout ?? 0;
  if (!(p >= 0 && p < 1)) throw new Error(`config: dropout must be in [0, 1) (got ${p})`);
  const E = numExperts(c);
  if (!Number.isInteger(E) || E < 1) throw new Error(`config: num_local_experts must be a positive integer (got ${String(E)})`);
  if (E > 1) {
    const k = c.num_experts_per_tok;
    if (typeof k !== "number" || !Number.isInteger(k) || k < 1 || k > E) throw new Error(`config: num_experts_per_tok must be an integer in [1, num_local_experts = ${E}] (got ${String(k)})`);
    for (const key of ["router_aux_loss_coef", "router_z_loss_coef"] as const) {
      const v = c[key] ?? 0;
      if (!(v >= 0 && Number.isFinite(v))) throw new Error(`config: ${key} must be a number >= 0 (got ${String(c[key])})`);
    }
  }
}

/** Fill HF defaults for fields a config.json may omit, then validate. */
export function normalizeConfig(raw: Partial<LlamaConfig> & Record<string, unknown>): LlamaConfig {
  const c: LlamaConfig = {
    vocab_size: raw.vocab_size as number,
    hidden_size: raw.hidden_size as number,
    intermediate_size: raw.intermediate_size as number,
    num_hidden_layers: raw.num_hidden_layers as number,
    num_attention_heads: raw.num_attention_heads as number,
    num_key_value_heads: (raw.num_key_value_heads ?? raw.num_attention_heads) as number,
    max_position_embeddings: (raw.max_position_embeddings ?? 2048) as number,
    rms_norm_eps: (raw.rms_norm_eps ?? 1e-6) as number,
    rope_theta: (raw.rope_theta ?? 10000) as number,
    tie_word_embeddings: (raw.tie_word_embeddings ?? false) as boolean,
    dropout: (raw.dropout ?? 0) as number,
  };
  // HF Mixtral's defaults for the fields its config.json may omit.
  const experts = raw.num_local_experts ?? (raw.model_type === "mixtral" ? 8 : undefined);
  if (experts !== undefined && experts !== 1) {
    c.num_local_experts = experts as number;
    c.num_experts_per_tok = (raw.num_experts_per_tok ?? 2) as number;
    c.router_aux_loss_coef = (raw.router_aux_loss_coef ?? 0.001) as number;
    c.router_z_loss_coef = (raw.router_z_loss_coef ?? 0) as number;
  }
  if (typeof raw.bos_token_id === "number") c.bos_token_id = raw.bos_token_id;
  if (typeof raw.eos_token_id === "number") c.eos_token_id = raw.eos_token_id;
  validateConfig(c);
  return c;
}

/** The config.json Bonsai writes: HF LlamaForCausalLM's (MixtralForCausalLM's with experts), with Bonsai's extra fields alongside. */
export function toHfConfigJson(c: LlamaConfig): Record<string, unknown> {
  if (isMoe(c))
    return {
      architectures: ["MixtralForCausalLM"],
      model_type: "mixtral",
      torch_dtype: "float32",
      hidden_act: "silu",
      attention_dropout: 0.0,
      initializer_range: 0.02,
      sliding_window: null,
      output_router_logits: false,
      router_jitter_noise: 0.0,
      use_cache: true,
      router_z_loss_coef: 0,
      ...c,
      router_aux_loss_coef: c.router_aux_loss_coef ?? 0.001,
      dropout: c.dropout ?? 0,
    };
  return {
    architectures: ["LlamaForCausalLM"],
    model_type: "llama",
    torch_dtype: "float32",
    hidden_act: "silu",
    attention_bias: false,
    mlp_bias: false,
    attention_dropout: 0.0,
    initializer_range: 0.02,
    pretraining_tp: 1,
    use_cache: true,
    rope_scaling: null,
    ...c,
    dropout: c.dropout ?? 0,
  };
}

/** HF parameter names of a Llama model, in a fixed order. */
export function parameterNames(c: LlamaConfig): string[] {
  const names = ["model.embed_tokens.weight"];
  for (let l = 0; l < c.num_hidden_layers; l++) {
    const p = `model.layers.${l}.`;
    names.push(
      p + "input_layernorm.weight",
      p + "self_attn.q_proj.weight",
      p + "self_attn.k_proj.weight",
      p + "self_attn.v_proj.weight",
      p + "self_attn.o_proj.weight",
      p + "post_attention_layernorm.weight",
      ...(isMoe(c) ? moeNames(p) : [p + "mlp.gate_proj.weight", p + "mlp.up_proj.weight", p + "mlp.down_proj.weight"]),
    );
  }
  names.push("model.norm.weight");
  if (!c.tie_word_embeddings) names.push("lm_head.weight");
  return names;
}

/**
 * A MoE layer's parameters: the router (HF's block_sparse_moe.gate) and its experts' SwiGLU
 * matrices stacked [E, out, in] — w1 (gate), w3 (up), w2 (down) — under one name each; HF's
 * files hold them per expert (`experts.M.w1.weight`, see hfExpertTensors).
 */
function moeNames(layerPrefix: string): string[] {
  const p = layerPrefix + "block_sparse_moe.";
  return [p + "gate.weight", p + "experts.w1.weight", p + "experts.w3.weight", p + "experts.w2.weight"];
}

/** A MoE router: it stays float when the model is quantized (llama.cpp keeps ffn_gate_inp F32). */
export const isRouterWeight = (name: string): boolean => name.endsWith("block_sparse_moe.gate.weight");

/** A MoE layer's stacked expert matrix (w1, w3 or w2 of all its experts). */
export const isStackedExpert = (name: string): boolean => /\.block_sparse_moe\.experts\.w[123]\.weight$/.test(name);

/** Shape of each parameter in HF layout ([out, in] for projections, [E, out, in] for stacked experts). */
export function parameterShape(c: LlamaConfig, name: string): number[] {
  const d = c.hidden_size, kv = c.num_key_value_heads * headDim(c), f = c.intermediate_size, E = numExperts(c);
  if (name.endsWith("block_sparse_moe.gate.weight")) return [E, d];
  if (name.endsWith("experts.w1.weight") || name.endsWith("experts.w3.weight")) return [E, f, d];
  if (name.endsWith("experts.w2.weight")) return [E, d, f];
  if (name === "model.embed_tokens.weight" || name === "lm_head.weight") return [c.vocab_size, d];
  if (name.endsWith("layernorm.weight") || name === "model.norm.weight") return [d];
  if (name.endsWith("q_proj.weight") || name.endsWith("o_proj.weight")) return [d, d];
  if (name.endsWith("k_proj.weight") || name.endsWith("v_proj.weight")) return [kv, d];
  if (name.endsWith("gate_proj.weight") || name.endsWith("up_proj.weight")) return [f, d];
  if (name.endsWith("down_proj.weight")) return [d, f];
  throw new Error(`unknown parameter ${name}`);
}
