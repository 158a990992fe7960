// Sparse MoE (Mixtral-style) models through GGUF in llama.cpp's layout for arch `llama` with
// experts: llama.expert_count / expert_used_count, a router ffn_gate_inp (F32 always) and the
// experts stacked in ffn_gate_exps / ffn_up_exps / ffn_down_exps. Round trips per tensor type and
// per loader (eager, lazy, quantized), a file written tensor by tensor as another tool would,
// one-line errors for inconsistent files, and llama.cpp (node-llama-cpp) as the referee of
// Bonsai's exports: the same greedy tokens and log-probabilities within its roundings.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { JsBackend } from "../src/backend/js/js-backend.js";
import { createBackend } from "../src/backend/index.js";
import type { Backend, Buf, QBuf, QuantType } from "../src/backend/backend.js";
import { Llama } from "../src/nn/llama.js";
import { RoutingLog } from "../src/nn/moe.js";
import { type LlamaConfig, isRouterWeight, normalizeConfig, parameterNames, parameterShape } from "../src/nn/config.js";
import { modelFiles, modelFromTensors, modelTensors } from "../src/io/checkpoint.js";
import { GgufFile, type GgufQuant, ggufQuants, ggufTensorName, ggufTensorType, llamaConfigFromGguf, llamaTensorsFromGguf, llamaToGguf } from "../src/io/gguf-llama.js";
import { llamaFromGgufWeights, llamaWeightsFromGguf } from "../src/io/gguf-llama-quantized.js";
import { lazyLlamaFromGguf } from "../src/io/gguf-llama-lazy.js";
import { GgufType, type GgufMetadataEntry, type GgufTensorToWrite, ggufMetadataEntries, serializeGguf } from "../src/format/gguf.js";
import { GgmlType, dequantize, quantize } from "../src/format/ggml-quants.js";
import { MemorySource } from "../src/format/byte-source.js";
import type { NamedTensors } from "../src/format/host-tensor.js";
import { f16ToF32, f32ToF16 } from "../src/format/float16.js";
import { loadModel, writeCheckpoint } from "../src/io/model-files-node.js";
import { permuteRopeToPairs } from "../src/io/llama2c.js";
import { qatTensorNames } from "../src/train/qat.js";
import { noGrad, scope } from "../src/tensor/tensor.js";
import { generateTokens } from "../src/runtime/generate.js";
import { trainTokenizer } from "../src/tokenizer/train-bpe.js";
import { tokenizerToGgufMetadata } from "../src/tokenizer/gguf-vocab.js";
import { Rng } from "../src/util/rng.js";
import { type LlamaCppCpu, llamaCppCpu, openWithLlamaCpp } from "./llama-cpp.js";
import { accumulateF16 } from "./llama-cpp-numerics.js";
import { collect } from "./async-helpers.js";
import { decodeLogProbs, logSoftmax, maxLogProbDiff } from "./log-probs.js";
import { argmax } from "../src/runtime/sample.js";

const CLI = fileURLToPath(new URL("../src/cli/main.js", import.meta.url));
const tmp = mkdtempSync(join(tmpdir(), "bonsai-gguf-moe-"));
const be = new JsBackend("f32");

const TEXT =
  "Tom likes a red ball. Anna finds a big kite. Ben sees a nice cake. Lily wants a book. Max has a dog.\n" +
  "The dog runs to the park. The kite flies high. It is a sunny day, and they play together.\n";
const tokenizer = trainTokenizer(TEXT.repeat(4), { type: "spm-bpe", vocabSize: 300 });

/** E = 4 experts, k = 2 per token, 2 layers; widths that are whole Q8_0/Q4_0 blocks (llama.cpp's case). */
const config: LlamaConfig = normalizeConfig({
  vocab_size: tokenizer.vocabSize, hidden_size: 64, intermediate_size: 96, num_hidden_layers: 2, num_attention_heads: 4,
  num_key_value_heads: 2, max_position_embeddings: 128, rms_norm_eps: 1e-5, rope_theta: 10000, tie_word_embeddings: false,
  num_local_experts: 4, num_experts_per_tok: 2,
});
/** Tied, and intermediate 80: down_exps' rows are not whole 32-blocks, so Q8_0/Q4_0 fall back to F16 there. */
const tiedConfig: LlamaConfig = normalizeConfig({ ...config, intermediate_size: 80, tie_word_embeddings: true, num_experts_per_tok: 1 });

/** Random weights big enough for peaked next-token distributions and routers (N(0, 0.02) gives near-uniform ones). */
function randomTensors(c: LlamaConfig, seed: number): NamedTensors {
  const rng = new Rng(seed);
  return new Map(parameterNames(c).map((name) => {
    const shape = parameterShape(c, name);
    const n = shape.reduce((a, b) => a * b, 1);
    const std = isRouterWeight(name) ? 0.3 : 0.12;
    return [name, { shape, data: Float32Array.from({ length: n }, () => (shape.length === 1 ? 1 + 0.1 * rng.normal() : std * rng.normal())) }];
  }));
}

const tensors = randomTensors(config, 7);
const model = modelFromTensors(be, { ...config }, tensors);
const tiedTensors = randomTensors(tiedConfig, 8);
const tiedModel = modelFromTensors(be, { ...tiedConfig }, tiedTensors);

const open = (bytes: Uint8Array): GgufFile => GgufFile.open(new MemorySource(bytes));

async function logitsOf(m: Llama, ids: number[]): Promise<Float32Array> {
  return noGrad(() => scope(() => m.forward(Int32Array.from(ids), 1, ids.length).toArray())).then((x) => Float32Array.from(x));
}

const maxAbsDiff = (a: ArrayLike<number>, b: ArrayLike<number>): number => {
  assert.equal(a.length, b.length);
  let worst = 0;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i] - b[i]));
  return worst;
};

const IDS = [1, 17, 40, 99, 5, 230, 77, 12, 150, 3, 64, 201];

// ---- export -------------------------------------------------------------------------------------

test("export writes llama.cpp's MoE layout: expert_count/expert_used_count, ffn_gate_inp {n_embd, E} F32, stacked experts {in, out, E}", () => {
  for (const quant of ggufQuants) {
    const f = open(llamaToGguf(config, tensors, quant));
    assert.equal(f.metadata("llama.expert_count"), 4);
    assert.equal(f.metadata("llama.expert_used_count"), 2);
    assert.equal(f.header.metadataTypes.get("llama.expert_count"), GgufType.UINT32);
    assert.equal(f.header.metadataTypes.get("llama.expert_used_count"), GgufType.UINT32);
    for (let l = 0; l < 2; l++) {
      assert.deepEqual(f.info(`blk.${l}.ffn_gate_inp.weight`).dims, [64, 4]);
      assert.equal(f.info(`blk.${l}.ffn_gate_inp.weight`).type, GgmlType.F32, `${quant}: the router stays F32`);
      assert.deepEqual(f.info(`blk.${l}.ffn_gate_exps.weight`).dims, [64, 96, 4]);
      assert.deepEqual(f.info(`blk.${l}.ffn_up_exps.weight`).dims, [64, 96, 4]);
      assert.deepEqual(f.info(`blk.${l}.ffn_down_exps.weight`).dims, [96, 64, 4]);
      for (const t of ["ffn_gate", "ffn_up", "ffn_down"]) assert.ok(!f.has(`blk.${l}.${t}.weight`), `no dense ${t}`);
      const want = { f32: GgmlType.F32, f16: GgmlType.F16, q8_0: GgmlType.Q8_0, q4_0: GgmlType.Q4_0 }[quant];
      for (const t of ["ffn_gate_exps", "ffn_up_exps", "ffn_down_exps"]) assert.equal(f.info(`blk.${l}.${t}.weight`).type, want, `${quant} ${t}`);
    }
    // Stacked row-major as is: expert e's matrix is rows [e·out, (e+1)·out) of the file's tensor.
    if (quant === "f32") {
      assert.deepEqual(f.read("blk.1.ffn_down_exps.weight").data, tensors.get("model.layers.1.block_sparse_moe.experts.w2.weight")!.data);
      assert.deepEqual(f.read("blk.0.ffn_gate_inp.weight").data, tensors.get("model.layers.0.block_sparse_moe.gate.weight")!.data);
    }
  }
  // A dense model gets no expert keys.
  const dense = normalizeConfig({ ...config, num_local_experts: 1 });
  const f = open(llamaToGguf(dense, randomTensors(dense, 1), "f32"));
  assert.equal(f.metadata("llama.expert_count"), undefined);
  assert.equal(f.metadata("llama.expert_used_count"), undefined);
});

test("export takes experts stacked or per expert (HF's layout, as modelTensors gives them): the same bytes", async () => {
  const perExpert = await modelTensors(model);
  assert.ok(perExpert.has("model.layers.0.block_sparse_moe.experts.3.w2.weight"));
  for (const quant of ["f32", "q4_0"] as GgufQuant[]) assert.deepEqual(llamaToGguf(config, perExpert, quant), llamaToGguf(config, tensors, quant));
});

for (const quant of ggufQuants) {
  test(`export → import (${quant}): every tensor equals its ggml round trip, bit for bit (tied, down_exps on F16 rows)`, () => {
    for (const [c, ts] of [[config, tensors], [tiedConfig, tiedTensors]] as const) {
      const file = open(llamaToGguf(c, ts, quant));
      const back = llamaTensorsFromGguf(file, llamaConfigFromGguf(file));
      for (const [name, t] of ts) {
        const type = ggufTensorType(quant, t.shape, name);
        assert.equal(file.info(ggufTensorName(name)).type, type, `${name} stored as ${GgmlType[type]}`);
        assert.deepEqual(back.get(name)!.shape, t.shape, name);
        assert.deepEqual(back.get(name)!.data, dequantize(type, quantize(type, t.data), t.data.length), name);
      }
    }
    // The F16 fallback: rows of 80 are not whole blocks.
    const f = open(llamaToGguf(tiedConfig, tiedTensors, quant));
    assert.equal(f.info("blk.0.ffn_down_exps.weight").type, quant === "f32" ? GgmlType.F32 : GgmlType.F16);
  });
}

test("the config comes back from expert_count and expert_used_count", () => {
  const f = open(llamaToGguf(tiedConfig, tiedTensors, "q8_0"));
  const c = llamaConfigFromGguf(f);
  assert.equal(c.num_local_experts, 4);
  assert.equal(c.num_experts_per_tok, 1);
  assert.equal(c.intermediate_size, 80);
  assert.equal(c.tie_word_embeddings, true);
});

test("QAT and the exporter agree: the router is never quantized, every other matrix is what qatTensorNames fake-quantizes", () => {
  for (const quant of ["q8_0", "q4_0"] as const) {
    const names = new Set(qatTensorNames(config, quant));
    const want = quant === "q8_0" ? GgmlType.Q8_0 : GgmlType.Q4_0;
    for (const name of parameterNames(config)) {
      const type = ggufTensorType(quant, parameterShape(config, name), name);
      if (isRouterWeight(name)) {
        assert.equal(type, GgmlType.F32, name);
        assert.ok(!names.has(name), `${name} is not fake-quantized`);
      } else assert.equal(names.has(name), type === want, name);
    }
    assert.ok(names.has("model.layers.1.block_sparse_moe.experts.w2.weight"));
  }
});

// ---- import: every loader -----------------------------------------------------------------------

test("Bonsai → GGUF → Bonsai: the same logits through the eager, lazy and quantized loaders", async () => {
  const want = await logitsOf(model, IDS);
  const f32 = join(tmp, "moe-f32.gguf");
  writeFileSync(f32, llamaToGguf(config, tensors, "f32"));
  const eager = loadModel(f32, be).model, lazy = loadModel(f32, be, undefined, { lazy: true }).model;
  const f = open(llamaToGguf(config, tensors, "f32"));
  const host = modelFromTensors(be, { ...config }, llamaTensorsFromGguf(f, llamaConfigFromGguf(f)));
  for (const [what, m] of [["eager", eager], ["lazy", lazy], ["host tensors", host]] as const) assert.deepEqual(await logitsOf(m, IDS), want, `${what}: bit-identical logits`);
  // F16 and Q8_0 files, kept quantized (stacked experts one [E·out, in] matrix, the router float):
  // the eager host reader, the lazy loader and the eager loader run alike, and as the float model on
  // the file's dequantized weights.
  for (const quant of ["f16", "q8_0", "q4_0"] as GgufQuant[]) {
    const path = join(tmp, `moe-${quant}.gguf`);
    const bytes = llamaToGguf(config, tensors, quant);
    writeFileSync(path, bytes);
    const q = loadModel(path, be, undefined, { quantized: true }).model;
    const qLazy = loadModel(path, be, undefined, { quantized: true, lazy: true }).model;
    const file = open(bytes);
    const qHost = llamaFromGgufWeights(be, config, llamaWeightsFromGguf(file, config));
    const qLazyDirect = lazyLlamaFromGguf(be, open(bytes), config, { quantized: true });
    const w1 = q.quantized.get("model.layers.0.block_sparse_moe.experts.w1.weight")!;
    assert.deepEqual([w1.type, ...w1.shape], [quant, 4 * 96, 64]);
    assert.ok(q.params.has("model.layers.0.block_sparse_moe.gate.weight") && !q.quantized.has("model.layers.0.block_sparse_moe.gate.weight"), "the router is float");
    const ref = await logitsOf(q, IDS);
    for (const m of [qLazy, qHost, qLazyDirect]) assert.deepEqual(await logitsOf(m, IDS), ref, `${quant}: every quantized loader alike`);
    // Fused for inference (attention stacked, its norm gain folded; each expert's gate and up rows stacked), eager and lazy.
    for (const lazy of [false, true]) {
      const fused = loadModel(path, be, undefined, { quantized: true, fuse: true, lazy }).model;
      assert.ok(fused.fused);
      assert.ok(!fused.quantized.has("model.layers.0.block_sparse_moe.experts.w1.weight") && fused.quantized.has("model.layers.0.block_sparse_moe.experts.w2.weight"), "gate and up fused");
      assert.ok(maxAbsDiff(await logitsOf(fused, IDS), ref) < 1e-4, `${quant}: fused${lazy ? " lazy" : ""}`);
    }
    const float = await logitsOf(loadModel(path, be).model, IDS);
    assert.notDeepEqual(float, want, `${quant} changed the weights`);
    assert.ok(maxAbsDiff(ref, float) < 1e-4, `${quant}: quantized execution = float execution of the dequantized weights (${maxAbsDiff(ref, float)})`);
  }
});

test("bonsai export --format gguf and bonsai quantize: a MoE model directory (HF per-expert layout) → GGUF with the model's logits", async () => {
  const dir = join(tmp, "moe-dir");
  writeCheckpoint(dir, await modelFiles(model, tokenizer));
  const out = join(tmp, "moe-cli-f32.gguf"), q = join(tmp, "moe-cli-q8_0.gguf");
  let r = spawnSync(process.execPath, [CLI, "export", "--model", dir, "--format", "gguf", "--quant", "f32", "--out", out], { encoding: "utf8" });
  assert.equal(r.status, 0, r.stderr);
  r = spawnSync(process.execPath, [CLI, "quantize", "--model", out, "--quant", "q8_0", "--out", q], { encoding: "utf8" });
  assert.equal(r.status, 0, r.stderr);
  const back = loadModel(out, be);
  assert.ok(back.tokenizer);
  assert.deepEqual(await logitsOf(back.model, IDS), await logitsOf(model, IDS));
  const file = open(new Uint8Array(readFileSync(q)));
  assert.equal(file.info("blk.0.ffn_gate_inp.weight").type, GgmlType.F32);
  assert.equal(file.info("blk.0.ffn_up_exps.weight").type, GgmlType.Q8_0);
  assert.deepEqual(file.read("blk.0.ffn_up_exps.weight").data, open(llamaToGguf(config, tensors, "q8_0")).read("blk.0.ffn_up_exps.weight").data);
});

/**
 * A llama MoE GGUF written tensor by tensor as llama.cpp's converter does, without llamaToGguf:
 * its keys, llama.cpp's tensor order, Q/K rows permuted for ggml's RoPE, each expert's matrix
 * (HF's per-expert tensors) appended to the stacked tensor in expert order, dims {in, out, E}.
 */
function handWritten(c: LlamaConfig, perExpert: NamedTensors, opts: { usedAsArray?: boolean; expertType?: GgmlType } = {}): Uint8Array {
  const E = c.num_local_experts!, f = c.intermediate_size, d = c.hidden_size, hd = d / c.num_attention_heads;
  const u32 = (key: string, value: number): GgufMetadataEntry => ({ key, type: GgufType.UINT32, value });
  const meta: GgufMetadataEntry[] = [
    { key: "general.architecture", type: GgufType.STRING, value: "llama" },
    { key: "general.name", type: GgufType.STRING, value: "Mixtral Tiny" },
    u32("llama.block_count", c.num_hidden_layers),
    u32("llama.context_length", c.max_position_embeddings),
    u32("llama.embedding_length", d),
    u32("llama.feed_forward_length", f),
    u32("llama.attention.head_count", c.num_attention_heads),
    u32("llama.attention.head_count_kv", c.num_key_value_heads),
    { key: "llama.rope.freq_base", type: GgufType.FLOAT32, value: c.rope_theta },
    { key: "llama.attention.layer_norm_rms_epsilon", type: GgufType.FLOAT32, value: c.rms_norm_eps },
    u32("llama.expert_count", E),
    opts.usedAsArray
      ? { key: "llama.expert_used_count", type: GgufType.ARRAY, value: { elementType: GgufType.UINT32, values: Array(c.num_hidden_layers).fill(c.num_experts_per_tok) } }
      : u32("llama.expert_used_count", c.num_experts_per_tok!),
    u32("general.file_type", 0),
  ];
  const get = (n: string) => perExpert.get(n)!;
  const f32 = (name: string, dims: number[], data: Float32Array, type = GgmlType.F32): GgufTensorToWrite => ({ name, dims, type, data: quantize(type, data) });
  const out: GgufTensorToWrite[] = [f32("token_embd.weight", [d, c.vocab_size], get("model.embed_tokens.weight").data)];
  for (let l = 0; l < c.num_hidden_layers; l++) {
    const p = `model.layers.${l}.`, b = `blk.${l}.`;
    const q = get(p + "self_attn.q_proj.weight"), k = get(p + "self_attn.k_proj.weight");
    const stack = (w: string, rows: number, cols: number): Float32Array => {
      const all = new Float32Array(E * rows * cols);
      for (let e = 0; e < E; e++) all.set(get(`${p}block_sparse_moe.experts.${e}.${w}.weight`).data, e * rows * cols);
      return all;
    };
    out.push(
      f32(b + "attn_norm.weight", [d], get(p + "input_layernorm.weight").data),
      f32(b + "attn_q.weight", [d, q.shape[0]], permuteRopeToPairs(q.data, q.shape[0], d, q.shape[0] / hd)),
      f32(b + "attn_k.weight", [d, k.shape[0]], permuteRopeToPairs(k.data, k.shape[0], d, k.shape[0] / hd)),
      f32(b + "attn_v.weight", [d, k.shape[0]], get(p + "self_attn.v_proj.weight").data),
      f32(b + "attn_output.weight", [d, d], get(p + "self_attn.o_proj.weight").data),
      f32(b + "ffn_gate_inp.weight", [d, E], get(p + "block_sparse_moe.gate.weight").data),
      f32(b + "ffn_down_exps.weight", [f, d, E], stack("w2", d, f), opts.expertType),
      f32(b + "ffn_gate_exps.weight", [d, f, E], stack("w1", f, d), opts.expertType),
      f32(b + "ffn_up_exps.weight", [d, f, E], stack("w3", f, d), opts.expertType),
      f32(b + "ffn_norm.weight", [d], get(p + "post_attention_layernorm.weight").data),
    );
  }
  out.push(f32("output_norm.weight", [d], get("model.norm.weight").data));
  if (!c.tie_word_embeddings) out.push(f32("output.weight", [d, c.vocab_size], get("lm_head.weight").data));
  return serializeGguf(meta, out);
}

test("a MoE GGUF written by another tool (llama.cpp's converter's layout, tensor by tensor) loads with the model's logits", async () => {
  const perExpert = await modelTensors(model);
  const want = await logitsOf(model, IDS);
  for (const usedAsArray of [false, true]) {
    const path = join(tmp, `hand-${usedAsArray}.gguf`);
    writeFileSync(path, handWritten(config, perExpert, { usedAsArray }));
    const c = llamaConfigFromGguf(GgufFile.open(new MemorySource(handWritten(config, perExpert, { usedAsArray }))));
    assert.equal(c.num_local_experts, 4);
    assert.equal(c.num_experts_per_tok, 2);
    for (const lazy of [false, true]) assert.deepEqual(await logitsOf(loadModel(path, be, undefined, { lazy }).model, IDS), want, `expert_used_count as ${usedAsArray ? "a per-layer array" : "a number"}, ${lazy ? "lazy" : "eager"}`);
  }
  // Q8_0 experts kept quantized, the other tensors F32: the float model of the same values.
  const path = join(tmp, "hand-q8.gguf");
  writeFileSync(path, handWritten(config, perExpert, { expertType: GgmlType.Q8_0 }));
  const q = loadModel(path, be, undefined, { quantized: true }).model;
  assert.deepEqual([...q.quantized.keys()].sort(), parameterNames(config).filter((n) => /experts\.w\d/.test(n)).sort());
  assert.ok(maxAbsDiff(await logitsOf(q, IDS), await logitsOf(loadModel(path, be).model, IDS)) < 1e-4);
  // A tied model, one expert per token.
  const tiedPath = join(tmp, "hand-tied.gguf");
  writeFileSync(tiedPath, handWritten(tiedConfig, await modelTensors(tiedModel)));
  assert.deepEqual(await logitsOf(loadModel(tiedPath, be).model, IDS), await logitsOf(tiedModel, IDS));
});

test("a single-expert GGUF (expert_count 1: llama.cpp's MoE path with one expert, always weight 1) loads as the dense model", async () => {
  const dense = normalizeConfig({ ...config, num_local_experts: 1 });
  const denseTensors = randomTensors(dense, 4);
  // The same weights as a one-expert MoE file: the dense FFN matrices stacked with E = 1, a router [1, d].
  const asMoe: NamedTensors = new Map();
  for (const [name, t] of denseTensors) {
    const m = /^(model\.layers\.\d+\.)mlp\.(gate|up|down)_proj\.weight$/.exec(name);
    if (!m) asMoe.set(name, t);
    else asMoe.set(`${m[1]}block_sparse_moe.experts.0.${{ gate: "w1", up: "w3", down: "w2" }[m[2] as "gate" | "up" | "down"]}.weight`, t);
  }
  for (let l = 0; l < 2; l++) asMoe.set(`model.layers.${l}.block_sparse_moe.gate.weight`, { shape: [1, 64], data: new Float32Array(64).fill(0.5) });
  const path = join(tmp, "single-expert.gguf");
  writeFileSync(path, handWritten({ ...dense, num_local_experts: 1, num_experts_per_tok: 1 }, asMoe));
  const want = await logitsOf(modelFromTensors(be, { ...dense }, denseTensors), IDS);
  for (const opts of [{}, { lazy: true }, { quantized: true }]) {
    const m = loadModel(path, be, undefined, opts).model;
    assert.equal(m.config.num_local_experts, undefined);
    assert.deepEqual(await logitsOf(m, IDS), want, JSON.stringify(opts));
  }
});

test("inconsistent MoE GGUFs are refused with a one-line error naming the problem", async () => {
  const good = open(llamaToGguf(config, tensors, "f32"));
  const meta = ggufMetadataEntries(good.header);
  const parts = good.header.tensors.map((t) => ({ name: t.name, dims: t.dims, type: GgmlType.F32, data: quantize(GgmlType.F32, good.read(t.name).data) }));
  const file = (m: GgufMetadataEntry[], ts: GgufTensorToWrite[] = parts) => open(serializeGguf(m, ts));
  const withMeta = (key: string, value: number | undefined) =>
    file(value === undefined ? meta.filter((e) => e.key !== key) : meta.map((e) => (e.key === key ? { key, type: GgufType.UINT32, value } : e)));
  const refused = (f: () => unknown, re: RegExp) =>
    assert.throws(f, (e: Error) => {
      assert.match(e.message, re);
      assert.ok(!e.message.includes("\n"), `one line: ${e.message}`);
      assert.match(e.message, /^gguf: /);
      return true;
    });
  const load = (f: GgufFile) => llamaTensorsFromGguf(f, llamaConfigFromGguf(f));
  refused(() => llamaConfigFromGguf(withMeta("llama.expert_used_count", 5)), /llama\.expert_used_count must be an integer in \[1, llama\.expert_count = 4\] \(got 5\)/);
  refused(() => llamaConfigFromGguf(withMeta("llama.expert_used_count", 0)), /llama\.expert_used_count must be an integer in \[1, llama\.expert_count = 4\] \(got 0\)/);
  refused(() => llamaConfigFromGguf(withMeta("llama.expert_used_count", undefined)), /llama\.expert_used_count is missing/);
  // expert_count disagrees with the tensors (4 experts each): every loader says so before reading.
  const eight = withMeta("llama.expert_count", 8);
  refused(() => load(eight), /tensor blk\.0\.ffn_gate_inp\.weight holds 4 experts, llama\.expert_count says 8/);
  const eightPath = join(tmp, "eight.gguf");
  writeFileSync(eightPath, serializeGguf(meta.map((e) => (e.key === "llama.expert_count" ? { ...e, value: 8 } : e)), parts));
  for (const opts of [{}, { lazy: true }, { quantized: true }]) refused(() => loadModel(eightPath, be, undefined, opts), /holds 4 experts, llama\.expert_count says 8/);
  refused(() => llamaWeightsFromGguf(eight, llamaConfigFromGguf(eight)), /holds 4 experts, llama\.expert_count says 8/);
  // Experts but a dense header, and the reverse.
  refused(() => llamaConfigFromGguf(withMeta("llama.expert_count", 0)), /llama\.expert_used_count is 2 but the model has no experts/);
  refused(() => llamaConfigFromGguf(file(meta.filter((e) => !e.key.startsWith("llama.expert_")))), /the file has expert tensors \(blk\.0\.ffn_gate_inp\.weight\) but no llama\.expert_count/);
  // No router.
  refused(() => llamaConfigFromGguf(file(meta, parts.filter((t) => t.name !== "blk.0.ffn_gate_inp.weight"))), /llama\.expert_count is 4 but the file has no router blk\.0\.ffn_gate_inp\.weight/);
  refused(() => load(file(meta, parts.filter((t) => t.name !== "blk.1.ffn_gate_inp.weight"))), /the file has no tensor blk\.1\.ffn_gate_inp\.weight/);
  // An expert tensor of the wrong shape (its width, not its expert count).
  const wrong = parts.map((t) => (t.name === "blk.1.ffn_up_exps.weight" ? { ...t, dims: [64, 48, 8] } : t));
  refused(() => load(file(meta, wrong)), /tensor blk\.1\.ffn_up_exps\.weight has dims \[64, 48, 8\], the config needs \[64, 96, 4\]/);
  const flat = parts.map((t) => (t.name === "blk.0.ffn_down_exps.weight" ? { ...t, dims: [96, 256] } : t));
  refused(() => load(file(meta, flat)), /tensor blk\.0\.ffn_down_exps\.weight has dims \[96, 256\], the config needs \[96, 64, 4\]/);
  // A router for another number of experts.
  const router = parts.map((t) => (t.name === "blk.1.ffn_gate_inp.weight" ? { ...t, dims: [64, 8], data: new Uint8Array(4 * 64 * 8) } : t));
  refused(() => load(file(meta, router)), /tensor blk\.1\.ffn_gate_inp\.weight holds 8 experts, llama\.expert_count says 4/);
  // Per-layer expert_used_count that varies.
  const varying = meta.map((e) => (e.key === "llama.expert_used_count" ? { key: e.key, type: GgufType.ARRAY, value: { elementType: GgufType.UINT32, values: [2, 1] } } : e));
  refused(() => llamaConfigFromGguf(file(varying)), /llama\.expert_used_count varies across layers/);
});

// ---- llama.cpp as the referee -------------------------------------------------------------------


/** log-softmax of Bonsai's logits at every position of one sequence (one batched pass). */
async function bonsaiLogProbs(m: Llama, tokens: number[]): Promise<Float64Array[]> {
  const V = m.config.vocab_size, logits = await logitsOf(m, tokens);
  return tokens.map((_, t) => logSoftmax(logits.subarray(t * V, (t + 1) * V)));
}




// The dense tests' bound (gguf-llama-cpp.test.ts): llama.cpp rounds each activation row before it
// meets a quantized matrix (to Q8_0 blocks for Q8_0/Q4_0 weights, to f16 for F16 weights; the F32
// router's input not at all); Bonsai's model of that rounding (the wasm backend's llama.cpp
// numerics mode, its MoE kernels included) puts R = max |log p(model) − log p(float)|, and
// llama.cpp's result lies within 3R (+ float noise) of Bonsai's float path.
const FLOAT_NOISE = 1e-4;
const roundingBound = (float: Float64Array[], rounded: Float64Array[]): number => 3 * maxLogProbDiff(rounded, float) + FLOAT_NOISE;

/** The dense tests' model of the loaded llama.cpp build's rounding (llamaCppRounding there). */
async function wasmRounding(cpu: LlamaCppCpu): Promise<Backend> {
  const backend = await createBackend("wasm", { kernels: "simd", q8Activations: true, f16Order: cpu.f16Order });
  return cpu.f16Arithmetic ? accumulateF16(backend) : backend;
}

/**
 * The same rounding on the js backend, exact otherwise (float64 sums): every quantized matrix
 * product (the experts' mul_mat_id included: the js kernel runs each slot through
 * matmulQuantized), prefill rows too, takes its activation rows rounded first as ggml's CPU
 * backend rounds them — to Q8_0 blocks for Q8_0/Q4_0 weights, to f16 for f16 weights.
 */
function jsRounding(): Backend {
  const b = new JsBackend("f32");
  const matmul = b.matmulQuantized.bind(b);
  const values = (buf: Buf): Float32Array => (buf as unknown as { arr: Float32Array }).arr;
  b.matmulQuantized = (c: Buf, a: Buf, w: QBuf, m: number, n: number, k: number, accumulate: boolean): void => {
    const type = (w as unknown as { type: QuantType }).type;
    const x = values(a).subarray(0, m * k);
    const rounded = type === "f16" ? Float32Array.from(x, (v) => f16ToF32(f32ToF16(v))) : dequantize(GgmlType.Q8_0, quantize(GgmlType.Q8_0, x), x.length);
    const tmp = b.alloc(m * k);
    b.write(tmp, rounded);
    matmul(c, tmp, w, m, n, k, accumulate);
    b.free(tmp);
  };
  return b;
}

/**
 * The smallest gap, over the layers and positions of `seq`, between a router's k-th and (k+1)-th
 * probability in Bonsai's float pass: how close the text comes to a routing near-tie, where a
 * rounding may pick another expert.
 */
async function routerMargin(m: Llama, seq: number[]): Promise<number> {
  const log = new RoutingLog(m.config.num_local_experts!);
  // With the graph on: inference passes free each layer's tensors, the routing log's included, as they go.
  const probs = await scope(() => {
    m.forward(Int32Array.from(seq), 1, seq.length, { routing: log });
    return Promise.all(log.layers.map((L) => L.probs.toArray()));
  });
  const k = m.config.num_experts_per_tok!, E = m.config.num_local_experts!;
  let margin = Infinity;
  for (const p of probs)
    for (let r = 0; r < p.length / E; r++) {
      const row = Array.from(p.subarray(r * E, (r + 1) * E)).sort((a, b) => b - a);
      margin = Math.min(margin, row[k - 1] - row[k]);
    }
  return margin;
}

test("llama.cpp runs Bonsai's MoE GGUF (F32, F16, Q8_0, Q4_0) with Bonsai's greedy tokens and log-probabilities within its roundings", async (t) => {
  const f32Path = join(tmp, "cpp-f32.gguf");
  writeFileSync(f32Path, llamaToGguf(config, tensors, "f32", { tokenizer: tokenizerToGgufMetadata(tokenizer) }));
  let cpu: LlamaCppCpu;
  try {
    cpu = await llamaCppCpu();
    await (await openWithLlamaCpp(f32Path)).dispose();
  } catch (e) {
    const why = (e as Error).message.split("\n")[0];
    t.diagnostic(`SKIPPED: node-llama-cpp cannot load here (${why})`);
    return t.skip(`node-llama-cpp cannot load: ${why}`);
  }
  // A build whose arithmetic Bonsai reproduces (the dense tests' condition: x86 with AVX or AVX-512).
  const reproduced = cpu.f16Order !== undefined;
  const prompts = ["Tom likes", "Anna", "The dog runs", "It is a"].map((p) => tokenizer.encode(p, { addBos: true }));
  const [wasmNumerics, jsNumerics] = [await wasmRounding(cpu), jsRounding()];
  for (const quant of ggufQuants) {
    const path = join(tmp, `cpp-${quant}.gguf`);
    writeFileSync(path, llamaToGguf(config, tensors, quant, { tokenizer: tokenizerToGgufMetadata(tokenizer) }));
    // Bonsai on the same file: its weights after the quantization round trip, in float; and kept
    // quantized in the two models of llama.cpp's rounding.
    const mine = loadModel(path, be).model;
    const [wasmModel, jsModel] = [wasmNumerics, jsNumerics].map((b) => loadModel(path, b, undefined, { quantized: true }).model);
    assert.equal(jsModel.quantized.size, quant === "f32" ? 0 : 3 * 2 + 4 * 2 + 2, `${quant}: experts, attention, embedding and head kept quantized`);
    const cpp = await openWithLlamaCpp(path);
    try {
      let worst = 0, tolerance = 0, wasmWorst = 0, jsWorst = 0, margin = Infinity, wasmGreedy = 0, jsGreedy = 0;
      for (const p of prompts) {
        const theirs = await cpp.greedy(p, 24);
        const ours = await collect(generateTokens(mine, p, { temperature: 0, maxTokens: 24 }));
        // Along llama.cpp's own greedy text: its log-probabilities, Bonsai's float pass and the two models'.
        const seq = [...p, ...theirs];
        const cppLogProbs = await cpp.logProbs(seq, config.vocab_size);
        const floats = await bonsaiLogProbs(mine, seq);
        const wasmLogProbs = await decodeLogProbs(wasmModel, seq);
        const jsLogProbs = await bonsaiLogProbs(jsModel, seq);
        worst = Math.max(worst, maxLogProbDiff(floats, cppLogProbs));
        wasmWorst = Math.max(wasmWorst, maxLogProbDiff(wasmLogProbs, cppLogProbs));
        jsWorst = Math.max(jsWorst, maxLogProbDiff(jsLogProbs, cppLogProbs));
        tolerance = Math.max(tolerance, roundingBound(floats, wasmLogProbs));
        margin = Math.min(margin, await routerMargin(mine, seq));
        // Each model's greedy choice at every step of llama.cpp's text is llama.cpp's token.
        const greedyAlong = (lp: Float64Array[]) => theirs.every((id, j) => argmax(lp[p.length - 1 + j]) === id);
        if (greedyAlong(wasmLogProbs)) wasmGreedy++;
        if (greedyAlong(jsLogProbs)) jsGreedy++;
        // Bonsai's float greedy text is llama.cpp's, up to a near-tie: where the first two tokens'
        // log-probabilities are closer than the two sides may move them apart (2 × the bound).
        const i = ours.findIndex((id, j) => theirs[j] !== id);
        if (i < 0) continue;
        const [first, second] = [...floats[p.length - 1 + i]].sort((a, b) => b - a);
        assert.ok(first - second < 2 * tolerance, `${quant} greedy tokens from ${JSON.stringify(tokenizer.decode(p))} part at token ${i}, where Bonsai's top two are ${(first - second).toFixed(4)} apart`);
        t.diagnostic(`${quant}: Bonsai's float greedy tokens from ${JSON.stringify(tokenizer.decode(p))} part from llama.cpp's at a near-tie (token ${i}, gap ${(first - second).toExponential(2)})`);
      }
      t.diagnostic(
        `${quant}: max |Δ log p| vs llama.cpp over ${prompts.length} × 24 positions: Bonsai float (dequantized weights) ${worst.toExponential(2)}; ` +
          `wasm numerics ${wasmWorst.toExponential(2)}; js with llama.cpp's activation rounding ${jsWorst.toExponential(2)}; rounding bound ${tolerance.toExponential(2)}; ` +
          `smallest router gap ${margin.toExponential(2)}; greedy = llama.cpp's along its text for ${wasmGreedy} (wasm) and ${jsGreedy} (js) of ${prompts.length} prompts`,
      );
      assert.ok(worst <= tolerance, `${quant}: log-probabilities differ by ${worst}, more than the roundings allow (${tolerance})`);
      assert.ok(wasmWorst <= tolerance && jsWorst <= tolerance, `${quant}: a rounding model is further from llama.cpp (${wasmWorst}, ${jsWorst}) than the bound (${tolerance})`);
      // F32: nothing is rounded — the same softmax gating, top-k and renormalised weights, to float noise.
      if (quant === "f32") assert.ok(worst < FLOAT_NOISE, `f32: ${worst}`);
      // Q8_0 and Q4_0 files (every matrix in blocks, none on f16 rows): the block dot products are
      // exact integer sums, so on a build Bonsai reproduces both models are llama.cpp but for the
      // last bits of f32 sums along this text (measured 1.6e-6 and 1.3e-6 on the AVX2 build, the
      // same experts chosen at every position although the float pass's routers come within
      // 4e-5 of a tie), and so are their greedy choices. (F16: an activation within f32 noise of an
      // f16 rounding tie goes either way, moving later positions by up to ~3e-3: the bound only.)
      if ((quant === "q8_0" || quant === "q4_0") && reproduced) {
        assert.ok(wasmWorst < FLOAT_NOISE && jsWorst < FLOAT_NOISE, `${quant}: Bonsai in llama.cpp's rounding is ${wasmWorst} (wasm), ${jsWorst} (js) from llama.cpp`);
        assert.deepEqual([wasmGreedy, jsGreedy], [prompts.length, prompts.length], `${quant}: greedy tokens in llama.cpp's rounding`);
      }
    } finally {
      await cpp.dispose();
      for (const m of [mine, wasmModel, jsModel]) m.dispose();
    }
  }
});
