// Llama models in GGUF, as llama.cpp writes and reads them: the `llama.*` metadata keys, the
// `token_embd` / `blk.N.*` tensor names, and Q/K rows in ggml's adjacent-pair RoPE layout
// (Bonsai's HF layout rotates halves; llama.cpp's converter permutes the rows, and so do we).
// Sparse MoE (Mixtral) models are llama.cpp's arch `llama` with `llama.expert_count` E > 0 and
// `llama.expert_used_count` k: per layer a router `ffn_gate_inp` (ggml dims {n_embd, E}, kept F32
// as llama-quantize keeps it) and the experts stacked in one tensor each, `ffn_gate_exps` /
// `ffn_up_exps` {n_embd, n_ff, E} and `ffn_down_exps` {n_ff, n_embd, E} — Bonsai's stacked
// [E, out, in] parameters row-major as they are (no RoPE permutation: only attn_q/attn_k have one).
import type { ByteSource } from "../format/byte-source.js";
import { GgufNeedMoreBytes, GgufType, parseGgufHeader, plainValue, serializeGguf, validateTensorInfos, type GgufHeader, type GgufMetadataEntry, type GgufTensorInfo } from "../format/gguf.js";
import { GgmlType, dequantize, ggmlTypeName, quantize } from "../format/ggml-quants.js";
import type { HostTensor, NamedTensors } from "../format/host-tensor.js";
import { permuteRopeToHalf, permuteRopeToPairs } from "./llama2c.js";
import { type LlamaConfig, headDim, isMoe, isRouterWeight, normalizeConfig, numExperts, parameterNames, parameterShape } from "../nn/config.js";
import { stackExperts } from "./hf-experts.js";
import { chatTemplateGgufEntry } from "./chat-template-files.js";

/** A GGUF file opened by its header; tensor data is read only when asked for. */
export class GgufFile {
  private readonly byName = new Map<string, { info: GgufTensorInfo; bytes: number }>();

  private constructor(
    readonly source: ByteSource,
    readonly header: GgufHeader,
  ) {
    const sizes = validateTensorInfos(header, source.size);
    header.tensors.forEach((info, i) => this.byName.set(info.name, { info, bytes: sizes[i] }));
  }

  /** Read the header, growing the prefix read until it fits. */
  static open(source: ByteSource): GgufFile {
    // 64 KiB holds most headers; larger ones (a 32000-token vocabulary) grow it by doubling.
    let want = Math.min(source.size, 1 << 16);
    for (;;) {
      try {
        return new GgufFile(source, parseGgufHeader(source.read(0, want), source.size));
      } catch (e) {
        if (!(e instanceof GgufNeedMoreBytes) || want >= source.size) throw e;
        want = Math.min(source.size, Math.max(e.needed, 2 * want));
      }
    }
  }

  has(name: string): boolean {
    return this.byName.has(name);
  }

  info(name: string): GgufTensorInfo {
    const t = this.byName.get(name);
    if (!t) throw new Error(`gguf: the file has no tensor ${name}`);
    return t.info;
  }

  /** A tensor as float32 in row-major order, shape slowest-varying first (dims reversed). */
  read(name: string): HostTensor {
    const t = this.info(name);
    if (!(t.type in GgmlType))
      throw new Error(`gguf: tensor ${name} is ${ggmlTypeName(t.type)}, which Bonsai cannot read yet (F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1)`);
    const n = t.dims.reduce((a, b) => a * b, 1);
    const bytes = this.source.read(this.header.dataOffset + t.offset, this.byName.get(name)!.bytes);
    return { shape: [...t.dims].reverse(), data: dequantize(t.type, bytes, n) };
  }

  metadata(key: string): unknown {
    return plainValue(this.header.metadata.get(key));
  }
}

// ---- names --------------------------------------------------------------------------------------

const layerNames: [hf: string, gguf: string][] = [
  ["input_layernorm.weight", "attn_norm.weight"],
  ["self_attn.q_proj.weight", "attn_q.weight"],
  ["self_attn.k_proj.weight", "attn_k.weight"],
  ["self_attn.v_proj.weight", "attn_v.weight"],
  ["self_attn.o_proj.weight", "attn_output.weight"],
  ["post_attention_layernorm.weight", "ffn_norm.weight"],
  ["mlp.gate_proj.weight", "ffn_gate.weight"],
  ["mlp.up_proj.weight", "ffn_up.weight"],
  ["mlp.down_proj.weight", "ffn_down.weight"],
  ["block_sparse_moe.gate.weight", "ffn_gate_inp.weight"],
  ["block_sparse_moe.experts.w1.weight", "ffn_gate_exps.weight"],
  ["block_sparse_moe.experts.w3.weight", "ffn_up_exps.weight"],
  ["block_sparse_moe.experts.w2.weight", "ffn_down_exps.weight"],
];

/** A dense FFN matrix's name in a single-expert GGUF (expert_count 1: llama.cpp's MoE path with one expert, which is the dense FFN). */
const singleExpertNames: Record<string, string> = { "ffn_gate.weight": "ffn_gate_exps.weight", "ffn_up.weight": "ffn_up_exps.weight", "ffn_down.weight": "ffn_down_exps.weight" };

/** The GGUF name of an HF parameter name. */
export function ggufTensorName(hf: string): string {
  if (hf === "model.embed_tokens.weight") return "token_embd.weight";
  if (hf === "model.norm.weight") return "output_norm.weight";
  if (hf === "lm_head.weight") return "output.weight";
  const m = /^model\.layers\.(\d+)\.(.+)$/.exec(hf);
  const pair = m && layerNames.find(([h]) => h === m[2]);
  if (!m || !pair) throw new Error(`no GGUF name for ${hf}`);
  return `blk.${m[1]}.${pair[1]}`;
}

/** q_proj and k_proj rows are laid out by RoPE convention (rows / headDim heads each). */
export const isRopeProjection = (hf: string): boolean => hf.endsWith("q_proj.weight") || hf.endsWith("k_proj.weight");

// ---- reading ------------------------------------------------------------------------------------

/** A metadata value for a message: short and on one line whatever the file holds. */
function show(v: unknown): string {
  if (typeof v === "string") return JSON.stringify(v.slice(0, 80)).replace(/[\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16)}`);
  if (Array.isArray(v)) return `an array of ${v.length}`;
  return String(v);
}

function num(f: GgufFile, key: string, fallback?: number): number {
  const v = f.metadata(key);
  if (v === undefined && fallback !== undefined) return fallback;
  if (typeof v !== "number") throw new Error(`gguf: metadata ${key} is ${v === undefined ? "missing" : `not a number (${show(v)})`}`);
  return v;
}

/** The model config of a `llama` GGUF, in HF field names. */
export function llamaConfigFromGguf(f: GgufFile): LlamaConfig {
  const arch = f.metadata("general.architecture");
  if (arch !== "llama") throw new Error(`gguf: architecture ${show(arch)} is not supported (only "llama")`);
  const heads = num(f, "llama.attention.head_count");
  const embd = f.info("token_embd.weight");
  const raw = {
    vocab_size: embd.dims[1],
    hidden_size: num(f, "llama.embedding_length"),
    intermediate_size: num(f, "llama.feed_forward_length"),
    num_hidden_layers: num(f, "llama.block_count"),
    num_attention_heads: heads,
    num_key_value_heads: num(f, "llama.attention.head_count_kv", heads),
    max_position_embeddings: num(f, "llama.context_length"),
    rms_norm_eps: num(f, "llama.attention.layer_norm_rms_epsilon", 1e-5),
    rope_theta: num(f, "llama.rope.freq_base", 10000),
    tie_word_embeddings: !f.has("output.weight"),
  };
  // Each layer has 9 tensors (10 with experts): a layer count the file cannot hold is rejected before anything is sized by it.
  if (raw.num_hidden_layers > f.header.tensors.length / 9)
    throw new Error(`gguf: llama.block_count ${raw.num_hidden_layers} needs more tensors than the file's ${f.header.tensors.length}`);
  const experts = ggufExperts(f);
  let config: LlamaConfig;
  try {
    config = normalizeConfig(experts.count > 1 ? { ...raw, num_local_experts: experts.count, num_experts_per_tok: experts.used } : raw);
  } catch (e) {
    throw new Error(`gguf: ${(e as Error).message}`); // "config: …", caused by the metadata
  }
  const ropeDims = num(f, "llama.rope.dimension_count", headDim(config));
  if (ropeDims !== headDim(config)) throw new Error(`gguf: partial rotary embeddings (${ropeDims} of ${headDim(config)} dimensions) are not supported`);
  for (const key of ["llama.rope.scaling.type"]) {
    const v = f.metadata(key);
    if (v !== undefined && v !== "none" && v !== 0) throw new Error(`gguf: ${key} = ${show(v)} is not supported`);
  }
  const bos = f.metadata("tokenizer.ggml.bos_token_id"), eos = f.metadata("tokenizer.ggml.eos_token_id");
  if (typeof bos === "number") config.bos_token_id = bos;
  if (typeof eos === "number") config.eos_token_id = eos;
  return config;
}

/**
 * The file's experts per layer (llama.expert_count; absent or 0: a dense model) and experts per
 * token (llama.expert_used_count, one number or llama.cpp's per-layer array of one value), checked
 * against each other and against the tensors the header lists.
 */
function ggufExperts(f: GgufFile): { count: number; used: number } {
  const count = num(f, "llama.expert_count", 0);
  if (!Number.isInteger(count) || count < 0) throw new Error(`gguf: llama.expert_count must be a whole number (got ${show(count)})`);
  let used = f.metadata("llama.expert_used_count");
  if (Array.isArray(used) && used.length > 0 && used.every((u: unknown) => u === (used as unknown[])[0])) used = used[0];
  else if (Array.isArray(used)) throw new Error(`gguf: llama.expert_used_count varies across layers (${show(used)}), which Bonsai does not support`);
  const router = "blk.0.ffn_gate_inp.weight";
  if (count === 0) {
    if (used !== undefined && used !== 0) throw new Error(`gguf: llama.expert_used_count is ${show(used)} but the model has no experts (llama.expert_count ${f.metadata("llama.expert_count") === undefined ? "absent" : "0"})`);
    const moe = [router, "blk.0.ffn_gate_exps.weight", "blk.0.ffn_up_exps.weight", "blk.0.ffn_down_exps.weight"].find((n) => f.has(n));
    if (moe) throw new Error(`gguf: the file has expert tensors (${moe}) but no llama.expert_count`);
    return { count: 0, used: 0 };
  }
  if (used === undefined) throw new Error(`gguf: metadata llama.expert_used_count is missing (llama.expert_count is ${count})`);
  if (typeof used !== "number" || !Number.isInteger(used) || used < 1 || used > count)
    throw new Error(`gguf: llama.expert_used_count must be an integer in [1, llama.expert_count = ${count}] (got ${show(used)})`);
  if (!f.has(router)) throw new Error(`gguf: llama.expert_count is ${count} but the file has no router ${router}`);
  return { count, used };
}

/** The GGUF name of HF parameter `name` in this file: a single-expert file keeps the dense FFN as its one expert. */
function ggufNameIn(f: GgufFile, config: LlamaConfig, name: string): string {
  const gguf = ggufTensorName(name);
  if (isMoe(config) || f.metadata("llama.expert_count") !== 1) return gguf;
  const m = /^(blk\.\d+\.)(.+)$/.exec(gguf);
  const single = m && singleExpertNames[m[2]];
  return single ? m[1] + single : gguf;
}

/**
 * The GGUF tensor of HF parameter `name` and its shape in the config, checked before anything is
 * read: a tensor of other dims would be read, then misused. Stacked experts [E, out, in] are one
 * tensor of ggml dims {in, out, E}; a single-expert file's {in, out, 1} is the dense [out, in].
 */
export function llamaTensorInfo(f: GgufFile, config: LlamaConfig, name: string): { gguf: string; shape: number[]; info: GgufTensorInfo } {
  const gguf = ggufNameIn(f, config, name);
  const shape = parameterShape(config, name);
  const info = f.info(gguf);
  const want = gguf === ggufTensorName(name) ? [...shape].reverse() : [...shape].reverse().concat(1);
  if (info.dims.length !== want.length || info.dims.some((d, i) => d !== want[i])) {
    const E = numExperts(config), last = info.dims.length - 1;
    // The expert count the tensor has is not the one the metadata gives: say so, not just the dims.
    if (isMoe(config) && info.dims.length === want.length && info.dims.every((d, i) => i === last || d === want[i]))
      throw new Error(`gguf: tensor ${gguf} holds ${info.dims[last]} experts, llama.expert_count says ${E}`);
    throw new Error(`gguf: tensor ${gguf} has dims [${info.dims.join(", ")}], the config needs [${want.join(", ")}]`);
  }
  return { gguf, shape, info };
}

/** The model's parameters under HF names, in HF layouts (dequantized to float32). Reads only those tensors. */
export function llamaTensorsFromGguf(f: GgufFile, config: LlamaConfig): NamedTensors {
  const out: NamedTensors = new Map();
  const hd = headDim(config);
  for (const name of parameterNames(config)) {
    const { gguf, shape } = llamaTensorInfo(f, config, name);
    const t = f.read(gguf);
    t.shape = shape; // a single expert's {in, out, 1} is [out, in]
    const [rows, cols] = shape;
    if (isRopeProjection(name)) t.data = permuteRopeToHalf(t.data, rows, cols, rows / hd);
    out.set(name, t);
  }
  return out;
}

// ---- writing ------------------------------------------------------------------------------------

export type GgufQuant = "f32" | "f16" | "q8_0" | "q4_0";
export const ggufQuants: readonly GgufQuant[] = ["f32", "f16", "q8_0", "q4_0"];

const quantTypes: Record<GgufQuant, { type: GgmlType; fileType: number }> = {
  f32: { type: GgmlType.F32, fileType: 0 }, // LLAMA_FTYPE_ALL_F32
  f16: { type: GgmlType.F16, fileType: 1 }, // LLAMA_FTYPE_MOSTLY_F16
  q4_0: { type: GgmlType.Q4_0, fileType: 2 }, // LLAMA_FTYPE_MOSTLY_Q4_0
  q8_0: { type: GgmlType.Q8_0, fileType: 7 }, // LLAMA_FTYPE_MOSTLY_Q8_0
};

/**
 * The ggml type a tensor gets: norms (1-D) and MoE routers (`name` tells, isRouterWeight) stay F32
 * as in llama.cpp (llama-quantize never quantizes ffn_gate_inp); matrices, stacked experts [E,
 * out, in] included, take the requested type, except quantized types on rows that are not a whole
 * number of 32-blocks, which fall back to F16 (llama.cpp's quantizer falls back to a wider type too).
 */
export function ggufTensorType(quant: GgufQuant, shape: readonly number[], name?: string): GgmlType {
  if (shape.length < 2 || (name !== undefined && isRouterWeight(name))) return GgmlType.F32;
  const t = quantTypes[quant].type;
  if ((t === GgmlType.Q8_0 || t === GgmlType.Q4_0) && shape[shape.length - 1] % 32 !== 0) return GgmlType.F16;
  return t;
}

/**
 * A complete GGUF file of a Llama model: metadata, tokenizer metadata and chat template (if any) and tensors. A MoE
 * model's experts may come stacked (Bonsai's parameters) or per expert (HF's layout, as
 * modelTensors gives them).
 */
export function llamaToGguf(config: LlamaConfig, tensors: NamedTensors, quant: GgufQuant, opts: { name?: string; tokenizer?: GgufMetadataEntry[]; chatTemplate?: string | null } = {}): Uint8Array {
  tensors = stackExperts(config, tensors);
  const u32 = (key: string, value: number): GgufMetadataEntry => ({ key, type: GgufType.UINT32, value });
  const f32 = (key: string, value: number): GgufMetadataEntry => ({ key, type: GgufType.FLOAT32, value });
  const meta: GgufMetadataEntry[] = [
    { key: "general.architecture", type: GgufType.STRING, value: "llama" },
    { key: "general.name", type: GgufType.STRING, value: opts.name ?? "bonsai" },
    u32("llama.context_length", config.max_position_embeddings),
    u32("llama.embedding_length", config.hidden_size),
    u32("llama.block_count", config.num_hidden_layers),
    u32("llama.feed_forward_length", config.intermediate_size),
    ...(isMoe(config) ? [u32("llama.expert_count", numExperts(config)), u32("llama.expert_used_count", config.num_experts_per_tok!)] : []),
    u32("llama.rope.dimension_count", headDim(config)),
    u32("llama.attention.head_count", config.num_attention_heads),
    u32("llama.attention.head_count_kv", config.num_key_value_heads),
    f32("llama.attention.layer_norm_rms_epsilon", config.rms_norm_eps),
    f32("llama.rope.freq_base", config.rope_theta),
    u32("llama.vocab_size", config.vocab_size),
    u32("general.file_type", quantTypes[quant].fileType),
  ];
  if (quant === "q8_0" || quant === "q4_0") meta.push(u32("general.quantization_version", 2));
  meta.push(...(opts.tokenizer ?? []));
  if (opts.chatTemplate != null) meta.push(chatTemplateGgufEntry(opts.chatTemplate));

  const hd = headDim(config);
  const out = parameterNames(config).map((name) => {
    const t = tensors.get(name);
    if (!t) throw new Error(`model lacks tensor ${name}`);
    const [rows, cols] = t.shape;
    let data = t.data;
    if (isRopeProjection(name)) data = permuteRopeToPairs(data, rows, cols, rows / hd);
    const type = ggufTensorType(quant, t.shape, name);
    return { name: ggufTensorName(name), dims: [...t.shape].reverse(), type, data: quantize(type, data) };
  });
  return serializeGguf(meta, out);
}

/** For messages: "Q8_0 ×7, F32 ×3". */
export function describeTypes(f: GgufFile): string {
  const counts = new Map<string, number>();
  for (const t of f.header.tensors) counts.set(ggmlTypeName(t.type), (counts.get(ggmlTypeName(t.type)) ?? 0) + 1);
  return [...counts].map(([k, v]) => `${k} ×${v}`).join(", ");
}
