// Hugging Face model directories both ways: what Bonsai exports is what transformers'
// LlamaForCausalLM expects, and importing it back gives the same tensors, bit for bit.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { JsBackend } from "../src/backend/js/js-backend.js";
import { loadModel } from "../src/io/model-files-node.js";
import { modelTensors } from "../src/io/checkpoint.js";
import { parseSafetensors, serializeSafetensors } from "../src/format/safetensors.js";
import { parameterNames } from "../src/nn/config.js";
import type { NamedTensors } from "../src/format/host-tensor.js";
import { Llama } from "../src/nn/llama.js";

const DATA = "../shared/data";
const CLI = fileURLToPath(new URL("../src/cli/main.js", import.meta.url));
const tmp = mkdtempSync(join(tmpdir(), "bonsai-hf-"));
const be = new JsBackend("f32");

function assertSameTensors(a: NamedTensors, b: NamedTensors): void {
  assert.deepEqual([...a.keys()].sort(), [...b.keys()].sort());
  for (const [name, t] of a) {
    const u = b.get(name)!;
    assert.deepEqual(u.shape, t.shape, name);
    assert.ok(Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength).equals(Buffer.from(u.data.buffer, u.data.byteOffset, u.data.byteLength)), `${name} differs`);
  }
}

for (const [label, file, tok] of [
  ["llama.cpp's llama-2-tiny-random.gguf", "models/llama-2-tiny-random.gguf", undefined],
  ["llama2.c's stories260K.bin", "models/stories260K.bin", "models/tok512.bin"],
] as const) {
  test(`${label} → HF directory → back: identical tensors, transformers' names and config`, async (t) => {
    const src = join(DATA, file);
    if (!existsSync(src)) return t.skip("../shared/data absent");
    const dir = join(tmp, file.replace(/\W/g, "_"));
    const args = ["export", "--model", src, "--format", "hf", "--out", dir, ...(tok ? ["--tokenizer", join(DATA, tok)] : [])];
    const r = spawnSync(process.execPath, [CLI, ...args], { encoding: "utf8" });
    assert.equal(r.status, 0, r.stderr);

    const original = loadModel(src, be, tok && join(DATA, tok));
    const back = loadModel(dir, be);
    assertSameTensors(await modelTensors(back.model), await modelTensors(original.model));
    assert.deepEqual(back.model.config, { ...original.model.config, bos_token_id: back.model.config.bos_token_id, eos_token_id: back.model.config.eos_token_id });

    const config = JSON.parse(readFileSync(join(dir, "config.json"), "utf8"));
    assert.deepEqual(config.architectures, ["LlamaForCausalLM"]);
    assert.equal(config.model_type, "llama");
    for (const k of ["vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
      "max_position_embeddings", "rms_norm_eps", "rope_theta", "tie_word_embeddings", "hidden_act", "torch_dtype"])
      assert.ok(k in config, `config.json has ${k}`);
    const st = parseSafetensors(new Uint8Array(readFileSync(join(dir, "model.safetensors"))));
    assert.equal(st.metadata.format, "pt", "transformers requires format=pt");
    assert.deepEqual([...st.tensors.keys()].sort(), parameterNames(original.model.config).sort());

    // The HF tokenizer.json written beside it encodes like the original tokenizer.
    assert.ok(existsSync(join(dir, "tokenizer.json")) && existsSync(join(dir, "tokenizer_config.json")));
    const hfTok = loadModel(dir, be, join(dir, "tokenizer.json")).tokenizer!;
    for (const text of ["Once upon a time, there was a little dog.", "Hello world"]) assert.deepEqual(hfTok.encode(text, { addBos: true }), original.tokenizer!.encode(text, { addBos: true }));
  });
}

test("a sharded HF directory (model.safetensors.index.json) loads like a single file", async () => {
  const model = Llama.init(be, {
    vocab_size: 50, hidden_size: 32, intermediate_size: 64, num_hidden_layers: 3, num_attention_heads: 4,
    num_key_value_heads: 2, max_position_embeddings: 64, rms_norm_eps: 1e-5, rope_theta: 10000, tie_word_embeddings: false,
  }, 5);
  const tensors = await modelTensors(model);
  const dir = join(tmp, "sharded");
  mkdirSync(dir);
  writeFileSync(join(dir, "config.json"), JSON.stringify({ ...model.config, architectures: ["LlamaForCausalLM"], model_type: "llama" }));
  const names = [...tensors.keys()];
  const shards = [names.slice(0, 20), names.slice(20)];
  const weightMap: Record<string, string> = {};
  shards.forEach((part, i) => {
    const file = `model-0000${i + 1}-of-00002.safetensors`;
    writeFileSync(join(dir, file), serializeSafetensors(new Map(part.map((n) => [n, tensors.get(n)!])), { format: "pt" }));
    for (const n of part) weightMap[n] = file;
  });
  writeFileSync(join(dir, "model.safetensors.index.json"), JSON.stringify({ metadata: {}, weight_map: weightMap }));
  assertSameTensors(await modelTensors(loadModel(dir, be).model), tensors);
});
