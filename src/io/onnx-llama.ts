// A Llama model as an ONNX decoder graph in the interface transformers.js runs for
// `model_type: "llama"` (onnx/model.onnx of an Optimum export): inputs input_ids [batch, seq],
// attention_mask [batch, past+seq], position_ids [batch, seq] (int64) and, per layer,
// past_key_values.{i}.key / .value [batch, kv_heads, past, head_dim] (float32); outputs logits
// [batch, seq, vocab] and present.{i}.key / .value [batch, kv_heads, past+seq, head_dim]. A first
// pass gets past tensors with a past length of 0.
//
// Standard ONNX ops only (opset 17), the math of nn/llama.ts written out:
//   RMSNorm    x / sqrt(mean(x²) + eps) · g   (Pow → ReduceMean → Add → Sqrt → Div → Mul: the
//              pattern onnxruntime fuses into its SimplifiedLayerNormalization kernel)
//   linear     x · Wᵀ as MatMul with Wᵀ stored [in, out]; a tied head as Gemm(transB) on the
//              embedding itself, so the table is stored once
//   RoPE       rotate-half: x·cos + [−x₂, x₁]·sin, cos/sin gathered by position_ids from tables
//              of Bonsai's own values (nn/llama.ts ropeTables), so positions match it exactly
//   attention  GQA without copying the cache: queries grouped [batch, kv_heads, heads/kv_heads,
//              seq, head_dim] against keys [batch, kv_heads, 1, …] by MatMul broadcasting;
//              causal + padding mask from attention_mask as an additive bias (float min, as HF)
//   SwiGLU     silu(x·Wgᵀ) ⊙ (x·Wuᵀ), silu(g) = g·sigmoid(g)
import type { OnnxAttribute, OnnxElemType, OnnxModel, OnnxNode, OnnxTensor, OnnxValueInfo } from "../format/onnx.js";
import type { NamedTensors } from "../format/host-tensor.js";
import { type LlamaConfig, headDim, parameterNames, parameterShape } from "../nn/config.js";
import { ropeTables } from "../nn/llama.js";

/** The opset the graph is written for (every op below exists there with the form used). */
export const ONNX_OPSET = 17;
/** IR version 8 is the one of opset 17 (ONNX 1.12). */
const IR_VERSION = 8;
/** Most negative float32: the additive mask of a position that may not be attended. */
const MASKED = -3.4028234663852886e38;

/** Nodes and initializers of a graph being written, with fresh names for intermediate values. */
class GraphBuilder {
  readonly nodes: OnnxNode[] = [];
  readonly initializers: OnnxTensor[] = [];
  private readonly constants = new Map<string, string>();
  private count = 0;

  /** One node; returns its outputs' names (`outputs` of them), named after `label`. */
  ops(op: string, inputs: string[], outputs: number, label: string, attributes?: OnnxAttribute[]): string[] {
    const id = this.count++;
    const names = Array.from({ length: outputs }, (_, i) => `/${label}/${op}_${id}${outputs > 1 ? `_${i}` : ""}`);
    this.nodes.push({ op, inputs, outputs: names, name: `/${label}/${op}_${id}`, ...(attributes ? { attributes } : {}) });
    return names;
  }
  op(op: string, inputs: string[], label: string, attributes?: OnnxAttribute[]): string {
    return this.ops(op, inputs, 1, label, attributes)[0];
  }
  /** A node writing a given name (a graph output). */
  opInto(output: string, op: string, inputs: string[], attributes?: OnnxAttribute[]): string {
    this.nodes.push({ op, inputs, outputs: [output], name: `/${output}/${op}`, ...(attributes ? { attributes } : {}) });
    return output;
  }
  weight(name: string, dims: number[], data: Float32Array): string {
    this.initializers.push({ name, type: "float32", dims, data });
    return name;
  }
  /** A small constant (shared by value): an int64 vector or scalar, or a float32 scalar. */
  int64s(values: number[], scalar = false): string {
    return this.constant("int64", scalar ? [] : [values.length], BigInt64Array.from(values, BigInt));
  }
  float(value: number): string {
    return this.constant("float32", [], Float32Array.of(value));
  }
  private constant(type: OnnxElemType, dims: number[], data: BigInt64Array | Float32Array): string {
    const key = `${type}[${dims}]:${Array.from(data as ArrayLike<number | bigint>, String).join(",")}`;
    let name = this.constants.get(key);
    if (name === undefined) {
      name = `const_${this.constants.size}`;
      this.initializers.push({ name, type, dims, data });
      this.constants.set(key, name);
    }
    return name;
  }
}

/** Wᵀ of a row-major [rows, cols] matrix, as [cols, rows]. */
function transposed(w: Float32Array, rows: number, cols: number): Float32Array {
  const t = new Float32Array(w.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) t[c * rows + r] = w[r * cols + c];
  return t;
}

export const pastName = (layer: number, kind: "key" | "value") => `past_key_values.${layer}.${kind}`;
export const presentName = (layer: number, kind: "key" | "value") => `present.${layer}.${kind}`;

/**
 * The decoder graph of a model given by its config and HF-named float32 weights ([out, in]
 * projections, rotate-half RoPE rows: what io/checkpoint.ts's modelTensors returns).
 */
export function llamaToOnnx(c: LlamaConfig, weights: NamedTensors): OnnxModel {
  for (const name of parameterNames(c)) {
    const t = weights.get(name);
    if (!t) throw new Error(`onnx export: the weights lack ${name}`);
    if (t.shape.join(",") !== parameterShape(c, name).join(",")) throw new Error(`onnx export: ${name} has shape [${t.shape}], the config needs [${parameterShape(c, name)}]`);
  }
  const g = new GraphBuilder();
  const D = c.hidden_size, H = c.num_attention_heads, KVH = c.num_key_value_heads, hd = headDim(c), group = H / KVH;
  const F = c.intermediate_size, V = c.vocab_size;
  const w = (name: string) => weights.get(name)!.data;
  /** x · Wᵀ for the HF matrix `name` ([out, in]), stored transposed. */
  const linear = (x: string, name: string, label: string): string => {
    const [out, inp] = parameterShape(c, name);
    return g.op("MatMul", [x, g.weight(`${name}.T`, [inp, out], transposed(w(name), out, inp))], label);
  };
  const rmsnorm = (x: string, gain: string, label: string): string => {
    const meanSquare = g.op("ReduceMean", [g.op("Pow", [x, g.float(2)], label)], label, [{ name: "axes", ints: [-1] }, { name: "keepdims", int: 1 }]);
    const rms = g.op("Sqrt", [g.op("Add", [meanSquare, g.float(c.rms_norm_eps)], label)], label);
    return g.op("Mul", [g.op("Div", [x, rms], label), g.weight(gain, [D], w(gain))], label);
  };

  // Shared by every layer: RoPE's cos/sin at each token's position, and the attention bias.
  const tables = ropeTables(hd, c.max_position_embeddings, c.rope_theta);
  const half = hd / 2;
  // Each table row repeated for both halves of a head: [maxPos, hd], indexed by position.
  const fullRow = (t: Float64Array) => {
    const out = new Float32Array(c.max_position_embeddings * hd);
    for (let p = 0; p < c.max_position_embeddings; p++)
      for (let i = 0; i < half; i++) out[p * hd + i] = out[p * hd + half + i] = t[p * half + i];
    return out;
  };
  const ropeAt = (table: string, label: string) => g.op("Unsqueeze", [g.op("Gather", [table, "position_ids"], label), g.int64s([2])], label); // [B, S, 1, hd]
  const cos = ropeAt(g.weight("rope.cos", [c.max_position_embeddings, hd], fullRow(tables.cos)), "rope");
  const sin = ropeAt(g.weight("rope.sin", [c.max_position_embeddings, hd], fullRow(tables.sin)), "rope");
  /** x [B, S, heads, hd] rotated: x·cos + rotate_half(x)·sin, rotate_half([x₁, x₂]) = [−x₂, x₁]. */
  const rope = (x: string, label: string): string => {
    const [x1, x2] = g.ops("Split", [x], 2, label, [{ name: "axis", int: -1 }]);
    const rotated = g.op("Concat", [g.op("Neg", [x2], label), x1], label, [{ name: "axis", int: -1 }]);
    return g.op("Add", [g.op("Mul", [x, cos], label), g.op("Mul", [rotated, sin], label)], label);
  };

  // Query i (absolute position past+i) sees key j when j ≤ past+i and attention_mask[b, j] = 1.
  const scalar = (shape: string) => g.op("Squeeze", [shape, g.int64s([0])], "mask");
  const seqLen = scalar(g.op("Shape", ["input_ids"], "mask", [{ name: "start", int: 1 }, { name: "end", int: 2 }]));
  const totalLen = scalar(g.op("Shape", ["attention_mask"], "mask", [{ name: "start", int: 1 }, { name: "end", int: 2 }]));
  const one = g.int64s([1], true);
  const queryPos = g.op("Range", [g.op("Sub", [totalLen, seqLen], "mask"), totalLen, one], "mask"); // [S]
  const keyPos = g.op("Range", [g.int64s([0], true), totalLen, one], "mask"); // [T]
  const causal = g.op("LessOrEqual", [g.op("Unsqueeze", [keyPos, g.int64s([0])], "mask"), g.op("Unsqueeze", [queryPos, g.int64s([1])], "mask")], "mask"); // [S, T]
  const padding = g.op("Unsqueeze", [g.op("Cast", ["attention_mask"], "mask", [{ name: "to", int: 9 }]), g.int64s([1, 2, 3])], "mask"); // [B, 1, 1, 1, T]
  const bias = g.op("Where", [g.op("And", [causal, padding], "mask"), g.float(0), g.float(MASKED)], "mask"); // [B, 1, 1, S, T]

  let x = g.op("Gather", [g.weight("model.embed_tokens.weight", [V, D], w("model.embed_tokens.weight")), "input_ids"], "embed"); // [B, S, D]
  for (let l = 0; l < c.num_hidden_layers; l++) {
    const pre = `model.layers.${l}.`, label = `layer${l}`;
    const h = rmsnorm(x, pre + "input_layernorm.weight", label);
    const heads = (t: string, n: number) => g.op("Reshape", [t, g.int64s([0, 0, n, hd])], label); // [B, S, n, hd]
    const q = rope(heads(linear(h, pre + "self_attn.q_proj.weight", label), H), label);
    const k = rope(heads(linear(h, pre + "self_attn.k_proj.weight", label), KVH), label);
    const v = heads(linear(h, pre + "self_attn.v_proj.weight", label), KVH);
    // The cache: past rows then the new ones, [B, KVH, T, hd].
    const cache = (t: string, kind: "key" | "value") =>
      g.opInto(presentName(l, kind), "Concat", [pastName(l, kind), g.op("Transpose", [t], label, [{ name: "perm", ints: [0, 2, 1, 3] }])], [{ name: "axis", int: 2 }]);
    const keys = cache(k, "key"), values = cache(v, "value");
    // Queries by KV group: [B, S, H, hd] → [B, S, KVH, group, hd] → [B, KVH, group, S, hd].
    const qg = g.op("Transpose", [g.op("Reshape", [q, g.int64s([0, 0, KVH, group, hd])], label)], label, [{ name: "perm", ints: [0, 2, 3, 1, 4] }]);
    const kT = g.op("Unsqueeze", [g.op("Transpose", [keys], label, [{ name: "perm", ints: [0, 1, 3, 2] }]), g.int64s([2])], label); // [B, KVH, 1, hd, T]
    const scores = g.op("Add", [g.op("Mul", [g.op("MatMul", [qg, kT], label), g.float(1 / Math.sqrt(hd))], label), bias], label); // [B, KVH, group, S, T]
    const probs = g.op("Softmax", [scores], label, [{ name: "axis", int: -1 }]);
    const attended = g.op("MatMul", [probs, g.op("Unsqueeze", [values, g.int64s([2])], label)], label); // [B, KVH, group, S, hd]
    // Back to [B, S, H·hd]: heads in order h = kv·group + r, as HF's repeat_kv lays them out.
    const merged = g.op("Transpose", [g.op("Reshape", [attended, g.int64s([0, H, -1, hd])], label)], label, [{ name: "perm", ints: [0, 2, 1, 3] }]);
    x = g.op("Add", [x, linear(g.op("Reshape", [merged, g.int64s([0, 0, H * hd])], label), pre + "self_attn.o_proj.weight", label)], label);
    const h2 = rmsnorm(x, pre + "post_attention_layernorm.weight", label);
    const gate = linear(h2, pre + "mlp.gate_proj.weight", label), up = linear(h2, pre + "mlp.up_proj.weight", label);
    const swiglu = g.op("Mul", [g.op("Mul", [gate, g.op("Sigmoid", [gate], label)], label), up], label);
    x = g.op("Add", [x, linear(swiglu, pre + "mlp.down_proj.weight", label)], label);
  }
  const last = rmsnorm(x, "model.norm.weight", "head");
  if (c.tie_word_embeddings) {
    // Gemm is 2-D: [B·S, D] · Eᵀ, then back to [B, S, V].
    const rows = g.op("Gemm", [g.op("Reshape", [last, g.int64s([-1, D])], "head"), "model.embed_tokens.weight"], "head", [{ name: "transB", int: 1 }]);
    g.opInto("logits", "Reshape", [rows, g.op("Concat", [g.op("Shape", ["input_ids"], "head"), g.int64s([V])], "head", [{ name: "axis", int: 0 }])]);
  } else {
    g.opInto("logits", "MatMul", [last, g.weight("lm_head.weight.T", [D, V], transposed(w("lm_head.weight"), V, D))]);
  }

  const kvShape = (len: string) => ["batch_size", KVH, len, hd];
  const inputs: OnnxValueInfo[] = [
    { name: "input_ids", type: "int64", shape: ["batch_size", "sequence_length"] },
    { name: "attention_mask", type: "int64", shape: ["batch_size", "total_sequence_length"] },
    { name: "position_ids", type: "int64", shape: ["batch_size", "sequence_length"] },
  ];
  const outputs: OnnxValueInfo[] = [{ name: "logits", type: "float32", shape: ["batch_size", "sequence_length", V] }];
  for (let l = 0; l < c.num_hidden_layers; l++)
    for (const kind of ["key", "value"] as const) {
      inputs.push({ name: pastName(l, kind), type: "float32", shape: kvShape("past_sequence_length") });
      outputs.push({ name: presentName(l, kind), type: "float32", shape: kvShape("total_sequence_length") });
    }
  return {
    irVersion: IR_VERSION,
    opsets: [{ domain: "", version: ONNX_OPSET }],
    producerName: "bonsai",
    graph: { name: "llama", nodes: g.nodes, initializers: g.initializers, inputs, outputs },
  };
}
