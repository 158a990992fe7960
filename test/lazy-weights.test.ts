// Lazy weights: opening a GGUF reads its header only, each layer's tensors are read the first time
// the forward pass reaches the layer (once), unused tensors are never read, the logits equal an
// eagerly loaded model's bit for bit, and a file that loses its bytes fails with the tensor's name.
import { test } from "node:test";
import assert from "node:assert/strict";
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, truncateSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { JsBackend } from "../src/backend/js/js-backend.js";
import { createBackend } from "../src/backend/index.js";
import type { Backend } from "../src/backend/backend.js";
import { Llama } from "../src/nn/llama.js";
import { llamaConfigFromJson, modelFiles, modelTensors } from "../src/io/checkpoint.js";
import { openSafetensors, serializeSafetensors } from "../src/format/safetensors.js";
import { lazyModelFromSafetensors, type SafetensorsLocation } from "../src/io/safetensors-lazy.js";
import { GgufFile, type GgufQuant, llamaConfigFromGguf, llamaToGguf } from "../src/io/gguf-llama.js";
import { ggufMetadataEntries, serializeGguf, tensorByteSize } from "../src/format/gguf.js";
import { GgmlType, quantize } from "../src/format/ggml-quants.js";
import { MemorySource } from "../src/format/byte-source.js";
import { FileSource } from "../src/io/byte-source-node.js";
import { lazyLlamaFromGguf } from "../src/io/gguf-llama-lazy.js";
import type { LazyWeights } from "../src/io/lazy-weights.js";
import { loadModel } from "../src/io/model-files-node.js";
import { generateTokens } from "../src/runtime/generate.js";
import { collect } from "./async-helpers.js";
import type { LlamaConfig } from "../src/nn/config.js";
import * as op from "../src/tensor/ops.js";
import { type Tensor, noGrad } from "../src/tensor/tensor.js";

const js = new JsBackend("f32");
const base: LlamaConfig = {
  vocab_size: 96, hidden_size: 64, intermediate_size: 96, num_hidden_layers: 3, num_attention_heads: 4,
  num_key_value_heads: 2, max_position_embeddings: 64, rms_norm_eps: 1e-5, rope_theta: 10000, tie_word_embeddings: false,
};
const tmp = mkdtempSync(join(tmpdir(), "bonsai-lazy-"));
const EXTRA = 4 << 20; // an unused 4 MiB tensor

/** A GGUF of a random model at `quant`, with an extra unused F32 tensor of EXTRA bytes at the end. */
async function writeModel(quant: GgufQuant, tied: boolean): Promise<string> {
  const config = { ...base, tie_word_embeddings: tied };
  const file = GgufFile.open(new MemorySource(llamaToGguf(config, await modelTensors(Llama.init(js, config, 7)), quant)));
  const tensors = file.header.tensors.map((t) => ({ name: t.name, dims: t.dims, type: t.type, data: file.source.read(file.header.dataOffset + t.offset, tensorByteSize(t)) }));
  const extra = { name: "unused.weight", dims: [1024, EXTRA / 4096], type: GgmlType.F32, data: quantize(GgmlType.F32, new Float32Array(EXTRA / 4).fill(0.5)) };
  const path = join(tmp, `${quant}${tied ? "-tied" : ""}.gguf`);
  writeFileSync(path, serializeGguf(ggufMetadataEntries(file.header), [...tensors, extra]));
  return path;
}

/** A FileSource that records every range read (read() goes through readInto). */
class RecordingSource extends FileSource {
  reads: [number, number][] = [];
  override readInto(offset: number, dst: Uint8Array): void {
    this.reads.push([offset, dst.length]);
    super.readInto(offset, dst);
  }
}

/** Bytes read inside each tensor's range, by tensor name. */
function bytesPerTensor(file: GgufFile, reads: [number, number][]): Map<string, number> {
  const out = new Map<string, number>();
  for (const t of file.header.tensors) {
    const lo = file.header.dataOffset + t.offset, hi = lo + tensorByteSize(t);
    let n = 0;
    for (const [o, l] of reads) n += Math.max(0, Math.min(hi, o + l) - Math.max(lo, o));
    out.set(t.name, n);
  }
  return out;
}

async function logits(model: Llama, ids: number[]): Promise<Float32Array> {
  const y = noGrad(() => model.forward(Int32Array.from(ids), 1, ids.length));
  const v = Float32Array.from(await model.backend.read(y.data));
  y.dispose();
  return v;
}

const paths = { f32: await writeModel("f32", false), q8_0: await writeModel("q8_0", false), q4_0tied: await writeModel("q4_0", true) };

test("a GGUF with a large unused tensor is opened and generates text without reading it (header only at open)", async () => {
  for (const [kind, path] of Object.entries(paths)) {
    const source = new FileSource(path);
    const file = GgufFile.open(source);
    const model = lazyLlamaFromGguf(js, file, llamaConfigFromGguf(file), { quantized: true });
    // Opening reads one 64 KiB prefix (it holds this header) and nothing else.
    const opened = source.bytesRead;
    assert.ok(file.header.dataOffset < 1 << 16 && opened === 1 << 16, `${kind}: open reads ${opened} bytes`);
    const tokens = await collect(generateTokens(model, [1, 5, 9], { maxTokens: 16, temperature: 0 }));
    assert.equal(tokens.length, 16);
    // Then exactly the model's tensors: the file less the header, the unused tensor and padding.
    const used = file.header.tensors.filter((t) => t.name !== "unused.weight").reduce((s, t) => s + tensorByteSize(t), 0);
    assert.equal(source.bytesRead - opened, used, kind);
    assert.ok(source.bytesRead - opened <= source.size - file.header.dataOffset - EXTRA, `${kind}: read ${source.bytesRead} of ${source.size} bytes with ${EXTRA} unused`);
    // The same tokens as the model loaded eagerly.
    const eager = loadModel(path, js, undefined, { quantized: true }).model;
    assert.deepEqual(await collect(generateTokens(eager, [1, 5, 9], { maxTokens: 16, temperature: 0 })), tokens, kind);
    model.dispose();
    eager.dispose();
  }
});

test("the first forward reads each used tensor exactly once, layer by layer; the second reads nothing", () => {
  const source = new RecordingSource(paths.f32);
  const file = GgufFile.open(source);
  const config = llamaConfigFromGguf(file);
  const model = lazyLlamaFromGguf(js, file, config);
  source.reads = [];
  const ids = Int32Array.from([3, 1, 4, 1, 5]);
  const shape = { batch: 1, seq: ids.length, heads: 4, kvHeads: 2, headDim: 16 };
  // When layer l attends, its attention weights are in and the next layer's are not yet read.
  const attend = (l: number, q: Tensor, k: Tensor, v: Tensor): Tensor => {
    const seen = bytesPerTensor(file, source.reads);
    assert.equal(seen.get(`blk.${l}.attn_q.weight`), tensorByteSize(file.info(`blk.${l}.attn_q.weight`)), `layer ${l} read`);
    if (l + 1 < config.num_hidden_layers) assert.equal(seen.get(`blk.${l + 1}.attn_q.weight`), 0, `layer ${l + 1} not read yet`);
    assert.equal(seen.get("output.weight"), 0, "the head is read last");
    return op.attention(q, k, v, shape);
  };
  model.forward(ids, 1, ids.length, { attend }).dispose();
  const seen = bytesPerTensor(file, source.reads);
  for (const t of file.header.tensors)
    assert.equal(seen.get(t.name), t.name === "unused.weight" ? 0 : tensorByteSize(t), `${t.name} read once, whole`);
  const total = source.reads.reduce((s, [, l]) => s + l, 0);
  assert.equal(total, [...seen.values()].reduce((a, b) => a + b, 0), "no byte outside the tensors (and none twice)");
  assert.equal((model.deferred as LazyWeights).pendingParts, 0);
  const after = source.bytesRead;
  model.forward(ids, 1, ids.length).dispose();
  assert.equal(source.bytesRead, after, "the second forward reads nothing");
  model.dispose();
});

test("lazy logits equal eager logits bit for bit (f32, q8_0, tied q4_0; float and quantized; fused; js and wasm)", async () => {
  const backends: Backend[] = [js, await createBackend("wasm")];
  const ids = [2, 7, 1, 8, 2, 8];
  for (const be of backends)
    for (const [kind, path] of Object.entries(paths))
      for (const quantized of [false, true])
        for (const fuse of [false, true]) {
          const eager = loadModel(path, be, undefined, { quantized, fuse }).model;
          const lazy = loadModel(path, be, undefined, { quantized, fuse, lazy: true }).model;
          assert.deepEqual(await logits(lazy, ids), await logits(eager, ids), `${be.name} ${kind} quantized=${quantized} fuse=${fuse}`);
          if (!fuse && !quantized) assert.deepEqual(await modelTensors(lazy), await modelTensors(eager), "parameters() reads every weight first");
          eager.dispose();
          lazy.dispose();
        }
});

test("a bad header fails at open; bytes lost after open fail at first use with the tensor's name, every time", () => {
  // Truncated before opening: the tensor table points past the end, so open refuses.
  const cut = join(tmp, "cut.gguf");
  copyFileSync(paths.f32, cut);
  const file = GgufFile.open(new FileSource(cut));
  const q0 = file.header.dataOffset + file.info("blk.0.attn_q.weight").offset;
  file.source.close();
  truncateSync(cut, q0 + 10);
  assert.throws(() => loadModel(cut, js, undefined, { lazy: true }), (e: Error) => /^gguf: /.test(e.message) && !e.message.includes("\n"));
  truncateSync(cut, 20);
  assert.throws(() => loadModel(cut, js, undefined, { lazy: true }), (e: Error) => /^gguf: /.test(e.message) && !e.message.includes("\n"));

  // Truncated while open: the first forward that needs the missing bytes names the tensor.
  const shrinking = join(tmp, "shrinking.gguf");
  copyFileSync(paths.f32, shrinking);
  const model = loadModel(shrinking, js, undefined, { lazy: true }).model;
  truncateSync(shrinking, q0 + 10);
  const ids = Int32Array.from([1, 2]);
  const message = /^cannot read tensor blk\.0\.attn_q\.weight from the model file: .+/;
  assert.throws(() => model.forward(ids, 1, 2), (e: Error) => message.test(e.message) && !e.message.includes("\n"));
  // Not half-loaded silently: every later use fails the same way.
  assert.throws(() => model.forward(ids, 1, 2), (e: Error) => message.test(e.message));
  assert.throws(() => model.parameters(), (e: Error) => message.test(e.message));
  model.dispose();
});

test("an HF directory's safetensors are read by range on first use; the unused tensor never", async () => {
  const dir = join(tmp, "hf");
  mkdirSync(dir);
  const eager = Llama.init(js, base, 11);
  const tensors = await modelTensors(eager);
  tensors.set("unused.weight", { shape: [EXTRA / 4], data: new Float32Array(EXTRA / 4).fill(0.25) });
  for (const f of await modelFiles(eager, null))
 writeFileSync(join(dir, f.name), f.name === "model.safetensors" ? serializeSafetensors(tensors) : f.bytes);
  const source = new FileSource(join(dir, "model.safetensors"));
  const header = openSafetensors(source);
  assert.equal(source.bytesRead, header.dataStart, "open reads the size field and the header only");
  const where = new Map<string, SafetensorsLocation>(header.entries.map((entry) => [entry.name, { source, dataStart: header.dataStart, entry }]));
  const config = llamaConfigFromJson({ ...base });
  const lazy = lazyModelFromSafetensors(js, config, where, [source]);
  assert.equal(source.bytesRead, header.dataStart, "building the model reads nothing");
  const ids = [4, 2, 4, 2];
  assert.deepEqual(await logits(lazy, ids), await logits(eager, ids));
  assert.equal(source.bytesRead, source.size - EXTRA, "then the model's tensors, once each; not the unused one");
  // Through the public loader, with and without lazy: the same logits.
  const viaLoader = loadModel(dir, js, undefined, { lazy: true }).model;
  assert.deepEqual(await logits(viaLoader, ids), await logits(loadModel(dir, js).model, ids));
  for (const m of [lazy, viaLoader, eager]) m.dispose();
});

test("llama.cpp's llama-2-tiny-random.gguf (F16): lazy logits equal eager logits bit for bit", async (t) => {
  const path = "../shared/data/models/llama-2-tiny-random.gguf";
  if (!existsSync(path)) return t.skip(`${path} is absent`);
  const ids = [1, 450, 4996, 17354];
  const eager = loadModel(path, js).model, lazy = loadModel(path, js, undefined, { lazy: true }).model;
  assert.deepEqual(await logits(lazy, ids), await logits(eager, ids));
  eager.dispose();
  lazy.dispose();
});
