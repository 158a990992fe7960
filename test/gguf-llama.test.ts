// Llama models through GGUF without llama.cpp: exact round trips per tensor type, the RoPE row
// permutation, reading only the tensors the model needs, and clear errors for what Bonsai can't load.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { JsBackend } from "../src/backend/js/js-backend.js";
import { Llama } from "../src/nn/llama.js";
import { modelTensors } from "../src/io/checkpoint.js";
import { GgufFile, type GgufQuant, ggufTensorName, ggufTensorType, llamaConfigFromGguf, llamaTensorsFromGguf, llamaToGguf } from "../src/io/gguf-llama.js";
import { GgufType, ggufMetadataEntries, serializeGguf } from "../src/format/gguf.js";
import { GgmlType, dequantize, quantize } from "../src/format/ggml-quants.js";
import { MemorySource } from "../src/format/byte-source.js";
import { FileSource } from "../src/io/byte-source-node.js";
import { loadModel } from "../src/io/model-files-node.js";
import { permuteRopeToPairs } from "../src/io/llama2c.js";
import type { LlamaConfig } from "../src/nn/config.js";

const be = new JsBackend("f32");
const config: LlamaConfig = {
  vocab_size: 96, hidden_size: 64, intermediate_size: 80, num_hidden_layers: 2, num_attention_heads: 4,
  num_key_value_heads: 2, max_position_embeddings: 32, rms_norm_eps: 1e-5, rope_theta: 10000, tie_word_embeddings: false,
};
const model = Llama.init(be, config, 3);
const tensors = await modelTensors(model);
const tmp = mkdtempSync(join(tmpdir(), "bonsai-gguf-llama-"));

for (const quant of ["f32", "f16", "q8_0", "q4_0"] as GgufQuant[]) {
  test(`export → import (${quant}): every tensor equals its ggml round trip, bit for bit`, () => {
    const file = GgufFile.open(new MemorySource(llamaToGguf(config, tensors, quant)));
    const back = llamaTensorsFromGguf(file, llamaConfigFromGguf(file));
    for (const [name, t] of tensors) {
      const type = ggufTensorType(quant, t.shape);
      assert.equal(file.info(ggufTensorName(name)).type, type, `${name} stored as ${GgmlType[type]}`);
      const expected = dequantize(type, quantize(type, t.data), t.data.length);
      assert.deepEqual(back.get(name)!.data, expected, name);
    }
  });
}

test("Q and K rows are stored in ggml's adjacent-pair RoPE layout (llama.cpp's converter permutation)", () => {
  const file = GgufFile.open(new MemorySource(llamaToGguf(config, tensors, "f32")));
  const q = tensors.get("model.layers.0.self_attn.q_proj.weight")!, k = tensors.get("model.layers.0.self_attn.k_proj.weight")!;
  assert.deepEqual(file.read("blk.0.attn_q.weight").data, permuteRopeToPairs(q.data, 64, 64, 4));
  assert.deepEqual(file.read("blk.0.attn_k.weight").data, permuteRopeToPairs(k.data, 32, 64, 2));
  assert.deepEqual(file.read("blk.0.attn_v.weight").data, tensors.get("model.layers.0.self_attn.v_proj.weight")!.data, "V is not permuted");
  assert.deepEqual(file.read("token_embd.weight").shape, [96, 64]);
});

test("opening reads the header only; loading reads the model's tensors and never an unused one", async () => {
  const base = GgufFile.open(new MemorySource(llamaToGguf(config, tensors, "f32")));
  const extra = new Float32Array(256 * 1024).fill(1); // 1 MiB nobody asks for
  const all = base.header.tensors.map((t) => ({ name: t.name, dims: t.dims, type: GgmlType.F32, data: quantize(GgmlType.F32, base.read(t.name).data) }));
  const path = join(tmp, "extra.gguf");
  writeFileSync(path, serializeGguf(ggufMetadataEntries(base.header), [...all, { name: "unused.weight", dims: [1024, 256], type: GgmlType.F32, data: quantize(GgmlType.F32, extra) }]));
  const source = new FileSource(path);
  const file = GgufFile.open(source);
  assert.ok(source.bytesRead <= Math.max(file.header.dataOffset, 1 << 20), "only a header-sized prefix is read on open");
  const before = source.bytesRead;
  llamaTensorsFromGguf(file, llamaConfigFromGguf(file));
  const modelBytes = [...tensors.values()].reduce((s, t) => s + 4 * t.data.length, 0);
  assert.equal(source.bytesRead - before, modelBytes, "exactly the model's tensors are read");
  assert.ok(source.size - file.header.dataOffset >= modelBytes + extra.byteLength);
  source.close();
  // Through the public loader too.
  const loaded = loadModel(path, be).model;
  assert.deepEqual((await modelTensors(loaded)).get("lm_head.weight")!.data, tensors.get("lm_head.weight")!.data);
});

test("what Bonsai cannot load is refused with a one-line error naming it", () => {
  const good = GgufFile.open(new MemorySource(llamaToGguf(config, tensors, "f32")));
  const meta = ggufMetadataEntries(good.header);
  const tensorsOf = (f: GgufFile) => f.header.tensors.map((t) => ({ name: t.name, dims: t.dims, type: GgmlType.F32, data: quantize(GgmlType.F32, f.read(t.name).data) }));
  const withMeta = (key: string, type: GgufType, value: unknown) =>
    GgufFile.open(new MemorySource(serializeGguf(meta.map((e) => (e.key === key ? { key, type, value: value as never } : e)), tensorsOf(good))));
  assert.throws(() => llamaConfigFromGguf(withMeta("general.architecture", GgufType.STRING, "gpt2")), /architecture "gpt2" is not supported/);
  assert.throws(() => llamaConfigFromGguf(withMeta("llama.attention.head_count_kv", GgufType.UINT32, 3)), /num_key_value_heads 3 does not divide num_attention_heads 4/);
  assert.throws(() => llamaConfigFromGguf(withMeta("llama.rope.dimension_count", GgufType.UINT32, 8)), /partial rotary/);
  // A K-quant tensor (Q6_K = 14) is sized and validated, but not decoded.
  const q6 = tensorsOf(good).map((t) => (t.name === "output.weight" ? { ...t, dims: [256, 96], type: 14 as GgmlType, data: new Uint8Array(210 * 96) } : t));
  const f = GgufFile.open(new MemorySource(serializeGguf(meta, q6.map((t) => (t.name === "token_embd.weight" ? { ...t, dims: [256, 96], data: new Uint8Array(4 * 256 * 96) } : t)))));
  assert.throws(() => f.read("output.weight"), /tensor output\.weight is Q6_K, which Bonsai cannot read yet/);
  assert.throws(() => GgufFile.open(new MemorySource(new Uint8Array([0x47, 0x47, 0x55, 0x46, 3, 0, 0, 0]))), /^Error: gguf: /);
});
