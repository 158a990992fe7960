// llama2.c's legacy checkpoint (what run.c reads): 7 int32 (dim, hidden_dim, n_layers, n_heads,
// n_kv_heads, vocab_size, seq_len), then f32 arrays in this order, each stacked over layers:
// token_embedding_table, rms_att_weight, wq, wk, wv, wo, rms_ffn_weight, w1, w2, w3,
// rms_final_weight, freq_cis_real, freq_cis_imag (seq_len·head_size/2 each; unused, skipped),
// then wcls only when vocab_size is negative (a negative vocab size means "unshared classifier").
// Matrices are [out, in] row-major as in PyTorch, so they map 1:1 onto HF Llama names, except
// that llama2.c rotates ADJACENT pairs (2i, 2i+1) in RoPE while HF rotates halves (i, i+d/2):
// the rows of q_proj and k_proj are permuted per head, as HF's convert_llama_weights_to_hf.py does.

import { parameterNames, parameterShape, validateConfig, type LlamaConfig } from "../nn/config.js";
import type { NamedTensors } from "../format/host-tensor.js";

const HEADER_BYTES = 7 * 4;
/** llama2.c's newer export formats start with this magic ("ak42" read as a little-endian int32). */
const VERSIONED_MAGIC = 0x616b3432;
const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

function fail(msg: string): never {
  throw new Error(`llama2.c checkpoint: ${msg}`);
}

/** Validate rows × cols with nHeads heads of even size; returns the rows per head. */
function headRows(w: Float32Array, rows: number, cols: number, nHeads: number): number {
  if (w.length !== rows * cols) throw new Error(`rope permutation: ${rows}×${cols} needs ${rows * cols} values, got ${w.length}`);
  const hd = rows / nHeads;
  if (!Number.isInteger(hd) || hd % 2 !== 0)
    throw new Error(`rope permutation: ${rows} rows do not split into ${nHeads} heads of even size`);
  return hd;
}

/**
 * Adjacent-pair layout (llama2.c, Meta, ggml) → half layout (HF). Within each head, output row
 * j·(hd/2) + i is input row 2i + j: HF's `w.view(n, hd/2, 2, cols).transpose(1, 2).reshape(rows, cols)`.
 */
export function permuteRopeToHalf(w: Float32Array, rows: number, cols: number, nHeads: number): Float32Array {
  const hd = headRows(w, rows, cols, nHeads), half = hd / 2;
  const out = new Float32Array(w.length);
  for (let h = 0; h < nHeads; h++)
    for (let i = 0; i < half; i++)
      for (let j = 0; j < 2; j++) {
        const src = (h * hd + 2 * i + j) * cols, dst = (h * hd + j * half + i) * cols;
        out.set(w.subarray(src, src + cols), dst);
      }
  return out;
}

/** The inverse: half layout (HF) → adjacent pairs (what llama.cpp's converter writes into GGUF). */
export function permuteRopeToPairs(w: Float32Array, rows: number, cols: number, nHeads: number): Float32Array {
  const hd = headRows(w, rows, cols, nHeads), half = hd / 2;
  const out = new Float32Array(w.length);
  for (let h = 0; h < nHeads; h++)
    for (let i = 0; i < half; i++)
      for (let j = 0; j < 2; j++) {
        const src = (h * hd + j * half + i) * cols, dst = (h * hd + 2 * i + j) * cols;
        out.set(w.subarray(src, src + cols), dst);
      }
  return out;
}

export function parseLlama2cCheckpoint(bytes: Uint8Array): { config: LlamaConfig; tensors: NamedTensors } {
  if (bytes.length < HEADER_BYTES) fail(`file is ${bytes.length} bytes, shorter than the 28-byte header`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (view.getUint32(0, true) === VERSIONED_MAGIC)
    fail(`file has the "ak42" magic of llama2.c's versioned export (version ${view.getInt32(4, true)}); only the legacy format is supported`);
  const [dim, hidden, nLayers, nHeads, nKv, vocabSigned, seqLen] = Array.from({ length: 7 }, (_, i) => view.getInt32(4 * i, true)) as [
    number, number, number, number, number, number, number,
  ];
  const header = `dim=${dim} hidden_dim=${hidden} n_layers=${nLayers} n_heads=${nHeads} n_kv_heads=${nKv} vocab_size=${vocabSigned} seq_len=${seqLen}`;
  if (![dim, hidden, nLayers, nHeads, nKv, seqLen].every((v) => v > 0) || vocabSigned === 0)
    fail(`header has a non-positive size (${header})`);
  if (dim % nHeads !== 0) fail(`n_heads does not divide dim (${header})`);
  if (nHeads % nKv !== 0) fail(`n_kv_heads does not divide n_heads (${header})`);
  const headSize = dim / nHeads;
  if (headSize % 2 !== 0) fail(`head size ${headSize} is odd; RoPE needs it even (${header})`);

  const shared = vocabSigned > 0;
  const vocab = Math.abs(vocabSigned);
  const kvDim = nKv * headSize;
  // Sizes in floats, in file order; the `null` entries are skipped.
  const sections: [string | null, number][] = [
    ["tok", vocab * dim],
    ["rms_att", nLayers * dim],
    ["wq", nLayers * dim * dim],
    ["wk", nLayers * kvDim * dim],
    ["wv", nLayers * kvDim * dim],
    ["wo", nLayers * dim * dim],
    ["rms_ffn", nLayers * dim],
    ["w1", nLayers * hidden * dim],
    ["w2", nLayers * dim * hidden],
    ["w3", nLayers * hidden * dim],
    ["rms_final", dim],
    [null, (seqLen * headSize) / 2],
    [null, (seqLen * headSize) / 2],
  ];
  if (!shared) sections.push(["wcls", vocab * dim]);
  const floats = sections.reduce((s, [, n]) => s + n, 0);
  const expected = HEADER_BYTES + 4 * floats;
  if (bytes.length !== expected) {
    const other = shared ? expected + 4 * vocab * dim : expected - 4 * vocab * dim;
    const hint = bytes.length === other ? ` (that size fits a ${shared ? "separate" : "shared"} classifier: is the sign of vocab_size wrong?)` : "";
    fail(`file is ${bytes.length} bytes but its header (${header}) implies ${expected}${hint}`);
  }

  // One aligned copy of all floats (the input may sit at any byte offset), then views into it.
  const all = new Float32Array(floats);
  if (LITTLE_ENDIAN) new Uint8Array(all.buffer).set(bytes.subarray(HEADER_BYTES));
  else for (let i = 0; i < floats; i++) all[i] = view.getFloat32(HEADER_BYTES + 4 * i, true);
  const arrays = new Map<string, Float32Array>();
  let at = 0;
  for (const [name, n] of sections) {
    if (name !== null) arrays.set(name, all.subarray(at, at + n));
    at += n;
  }
  const a = (name: string) => arrays.get(name)!;

  const config: LlamaConfig = {
    vocab_size: vocab,
    hidden_size: dim,
    intermediate_size: hidden,
    num_hidden_layers: nLayers,
    num_attention_heads: nHeads,
    num_key_value_heads: nKv,
    max_position_embeddings: seqLen,
    rms_norm_eps: 1e-5, // run.c's rmsnorm constant
    rope_theta: 10000, // run.c's RoPE base
    tie_word_embeddings: shared,
    bos_token_id: 1, // run.c's fixed BOS/EOS ids
    eos_token_id: 2,
  };
  validateConfig(config);

  // Slice layer l out of a stacked array (each layer's block is `per` floats).
  const layer = (name: string, l: number, per: number) => a(name).slice(l * per, (l + 1) * per);
  const tensors: NamedTensors = new Map();
  const put = (name: string, data: Float32Array) => tensors.set(name, { shape: parameterShape(config, name), data });
  for (const name of parameterNames(config)) {
    const m = /^model\.layers\.(\d+)\.(.+)$/.exec(name);
    if (m === null) {
      if (name === "model.embed_tokens.weight") put(name, a("tok").slice());
      else if (name === "model.norm.weight") put(name, a("rms_final").slice());
      else if (name === "lm_head.weight") put(name, a("wcls").slice());
      else throw new Error(`llama2.c checkpoint: no source for ${name}`);
      continue;
    }
    const l = Number(m[1]);
    switch (m[2]) {
      case "input_layernorm.weight": put(name, layer("rms_att", l, dim)); break;
      case "post_attention_layernorm.weight": put(name, layer("rms_ffn", l, dim)); break;
      case "self_attn.q_proj.weight": put(name, permuteRopeToHalf(layer("wq", l, dim * dim), dim, dim, nHeads)); break;
      case "self_attn.k_proj.weight": put(name, permuteRopeToHalf(layer("wk", l, kvDim * dim), kvDim, dim, nKv)); break;
      case "self_attn.v_proj.weight": put(name, layer("wv", l, kvDim * dim)); break;
      case "self_attn.o_proj.weight": put(name, layer("wo", l, dim * dim)); break;
      case "mlp.gate_proj.weight": put(name, layer("w1", l, hidden * dim)); break;
      case "mlp.down_proj.weight": put(name, layer("w2", l, dim * hidden)); break;
      case "mlp.up_proj.weight": put(name, layer("w3", l, hidden * dim)); break;
      default: throw new Error(`llama2.c checkpoint: no source for ${name}`);
    }
  }
  return { config, tensors };
}
