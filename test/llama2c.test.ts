import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { parameterNames, parameterShape } from "../src/nn/config.js";
import { parseLlama2cCheckpoint, permuteRopeToHalf, permuteRopeToPairs } from "../src/io/llama2c.js";

const DATA = "../shared/data";
const STORIES = `${DATA}/models/stories260K.bin`;

function bytesOf(path: string): Uint8Array {
  const b = readFileSync(path);
  return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
}

/** A checkpoint from a header and float sections (concatenated in order). */
function checkpoint(header: number[], sections: Float32Array[]): Uint8Array {
  const n = sections.reduce((s, a) => s + a.length, 0);
  const out = new Uint8Array(28 + 4 * n);
  const v = new DataView(out.buffer);
  header.forEach((x, i) => v.setInt32(4 * i, x, true));
  let at = 28;
  for (const s of sections)
    for (const x of s) {
      v.setFloat32(at, x, true);
      at += 4;
    }
  return out;
}

/** Section k holds k·1000 + i, so every number says where it came from. */
const section = (k: number, n: number) => Float32Array.from({ length: n }, (_, i) => k * 1000 + i);

/** Rows of a [rows, cols] matrix in a given order. */
function rowsInOrder(m: Float32Array, cols: number, order: number[]): number[] {
  return order.flatMap((r) => Array.from(m.subarray(r * cols, (r + 1) * cols)));
}

test("stories260K.bin parses into HF names and shapes", (t) => {
  if (!existsSync(DATA)) {
    t.skip("../shared/data absent");
    return;
  }
  const bytes = bytesOf(STORIES);
  const { config, tensors } = parseLlama2cCheckpoint(bytes);
  assert.deepEqual(config, {
    vocab_size: 512,
    hidden_size: 64,
    intermediate_size: 172,
    num_hidden_layers: 5,
    num_attention_heads: 8,
    num_key_value_heads: 4,
    max_position_embeddings: 512,
    rms_norm_eps: 1e-5,
    rope_theta: 10000,
    tie_word_embeddings: true,
    bos_token_id: 1,
    eos_token_id: 2,
  });
  assert.deepEqual([...tensors.keys()], parameterNames(config));
  assert.ok(!tensors.has("lm_head.weight"));
  for (const [name, t] of tensors) {
    assert.deepEqual(t.shape, parameterShape(config, name), name);
    assert.equal(t.data.length, t.shape.reduce((a, b) => a * b, 1), name);
  }
  let params = 0;
  for (const t of tensors.values()) params += t.data.length;
  assert.equal(params, (1_056_540 - 28) / 4 - 4096, "everything but the 4096 freq_cis floats");

  // Spot checks against the raw floats: the embedding is first; layer 0's wq follows rms_att.
  const raw = new Float32Array(bytes.slice(28).buffer);
  assert.deepEqual(tensors.get("model.embed_tokens.weight")!.data.subarray(0, 5), raw.subarray(0, 5));
  const wq0 = raw.subarray(512 * 64 + 5 * 64, 512 * 64 + 5 * 64 + 64 * 64);
  const q0 = tensors.get("model.layers.0.self_attn.q_proj.weight")!.data;
  // head size 8: HF row j·4 + i comes from llama2.c row 2i + j.
  assert.deepEqual(Array.from(q0.subarray(0, 64 * 8)), rowsInOrder(wq0, 64, [0, 2, 4, 6, 1, 3, 5, 7]));
  assert.deepEqual(permuteRopeToPairs(q0, 64, 64, 8), wq0);
});

test("RoPE permutations: known orders and mutual inverses", () => {
  const ids = Float32Array.from({ length: 8 }, (_, i) => i);
  assert.deepEqual(Array.from(permuteRopeToHalf(ids, 8, 1, 2)), [0, 2, 1, 3, 4, 6, 5, 7]);
  assert.deepEqual(Array.from(permuteRopeToHalf(ids, 8, 1, 1)), [0, 2, 4, 6, 1, 3, 5, 7]);
  assert.deepEqual(Array.from(permuteRopeToPairs(ids, 8, 1, 1)), [0, 4, 1, 5, 2, 6, 3, 7]);
  const w = Float32Array.from({ length: 24 * 5 }, () => Math.random());
  for (const heads of [1, 2, 3, 6, 12]) {
    assert.deepEqual(permuteRopeToHalf(permuteRopeToPairs(w, 24, 5, heads), 24, 5, heads), w);
    assert.deepEqual(permuteRopeToPairs(permuteRopeToHalf(w, 24, 5, heads), 24, 5, heads), w);
  }
  assert.throws(() => permuteRopeToHalf(w, 24, 5, 5), /do not split into 5 heads of even size/);
  assert.throws(() => permuteRopeToHalf(w, 24, 5, 24), /even size/);
  assert.throws(() => permuteRopeToHalf(w, 24, 4, 2), /24×4 needs 96 values, got 120/);
});

// dim 8, hidden 6, 2 layers, 2 heads of size 4, 1 KV head, vocab 5, seq_len 3.
const [D, H, L, NH, NKV, V, S] = [8, 6, 2, 2, 1, 5, 3];
const KV = 4;
function syntheticSections(withClassifier: boolean): Float32Array[] {
  const s = [
    section(1, V * D), // tok
    section(2, L * D), // rms_att
    section(3, L * D * D), // wq
    section(4, L * KV * D), // wk
    section(5, L * KV * D), // wv
    section(6, L * D * D), // wo
    section(7, L * D), // rms_ffn
    section(8, L * H * D), // w1
    section(9, L * D * H), // w2
    section(10, L * H * D), // w3
    section(11, D), // rms_final
    new Float32Array((S * 4) / 2).fill(-1), // freq_cis_real: skipped
    new Float32Array((S * 4) / 2).fill(-2), // freq_cis_imag: skipped
  ];
  if (withClassifier) s.push(section(12, V * D));
  return s;
}

test("synthetic checkpoint with an unshared classifier", () => {
  const sec = syntheticSections(true);
  const { config, tensors } = parseLlama2cCheckpoint(checkpoint([D, H, L, NH, NKV, -V, S], sec));
  assert.equal(config.vocab_size, V);
  assert.equal(config.tie_word_embeddings, false);
  assert.equal(config.num_key_value_heads, 1);
  assert.equal(config.max_position_embeddings, S);
  assert.deepEqual([...tensors.keys()], parameterNames(config));
  const get = (n: string) => tensors.get(n)!.data;
  const layer = (k: number, l: number, per: number) => sec[k - 1]!.subarray(l * per, (l + 1) * per);

  assert.deepEqual(get("model.embed_tokens.weight"), sec[0]);
  assert.deepEqual(get("lm_head.weight"), sec[13]);
  assert.deepEqual(tensors.get("lm_head.weight")!.shape, [V, D]);
  assert.deepEqual(get("model.norm.weight"), sec[10]);
  for (let l = 0; l < L; l++) {
    const p = `model.layers.${l}.`;
    assert.deepEqual(get(p + "input_layernorm.weight"), layer(2, l, D));
    assert.deepEqual(get(p + "post_attention_layernorm.weight"), layer(7, l, D));
    // Two heads of size 4: rows [0, 2, 1, 3] within each head.
    assert.deepEqual(Array.from(get(p + "self_attn.q_proj.weight")), rowsInOrder(layer(3, l, D * D), D, [0, 2, 1, 3, 4, 6, 5, 7]));
    assert.deepEqual(Array.from(get(p + "self_attn.k_proj.weight")), rowsInOrder(layer(4, l, KV * D), D, [0, 2, 1, 3]));
    assert.deepEqual(get(p + "self_attn.v_proj.weight"), layer(5, l, KV * D));
    assert.deepEqual(get(p + "self_attn.o_proj.weight"), layer(6, l, D * D));
    assert.deepEqual(get(p + "mlp.gate_proj.weight"), layer(8, l, H * D));
    assert.deepEqual(get(p + "mlp.down_proj.weight"), layer(9, l, D * H));
    assert.deepEqual(get(p + "mlp.up_proj.weight"), layer(10, l, H * D));
    assert.deepEqual(tensors.get(p + "mlp.down_proj.weight")!.shape, [D, H]);
    assert.deepEqual(tensors.get(p + "self_attn.k_proj.weight")!.shape, [KV, D]);
  }
  for (const t of tensors.values()) assert.ok(t.data.every((x) => x >= 0), "no freq_cis numbers leak in");
});

test("synthetic checkpoint with a shared classifier", () => {
  const { config, tensors } = parseLlama2cCheckpoint(checkpoint([D, H, L, NH, NKV, V, S], syntheticSections(false)));
  assert.equal(config.tie_word_embeddings, true);
  assert.ok(!tensors.has("lm_head.weight"));
});

test("bad checkpoints give clear errors", () => {
  const good = checkpoint([D, H, L, NH, NKV, V, S], syntheticSections(false));
  assert.throws(() => parseLlama2cCheckpoint(good.subarray(0, 20)), /llama2\.c checkpoint: file is 20 bytes, shorter than the 28-byte header/);
  assert.throws(() => parseLlama2cCheckpoint(good.subarray(0, good.length - 4)), /file is \d+ bytes but its header \(dim=8 .*\) implies \d+$/);
  const withCls = checkpoint([D, H, L, NH, NKV, V, S], syntheticSections(true));
  assert.throws(() => parseLlama2cCheckpoint(withCls), /is the sign of vocab_size wrong\?/);
  assert.throws(() => parseLlama2cCheckpoint(checkpoint([D, H, L, 3, 1, V, S], [])), /n_heads does not divide dim/);
  assert.throws(() => parseLlama2cCheckpoint(checkpoint([D, H, L, 2, 3, V, S], [])), /n_kv_heads does not divide n_heads/);
  assert.throws(() => parseLlama2cCheckpoint(checkpoint([D, H, 0, NH, NKV, V, S], [])), /non-positive size/);
  assert.throws(() => parseLlama2cCheckpoint(checkpoint([D, H, L, NH, NKV, 0, S], [])), /non-positive size/);
  assert.throws(() => parseLlama2cCheckpoint(checkpoint([6, H, L, 2, 1, V, S], [])), /head size 3 is odd/);
  assert.throws(() => parseLlama2cCheckpoint(checkpoint([0x616b3432, 2, 0, 0, 0, 0, 0], [])), /"ak42" magic .* \(version 2\)/);
});

test("a truncated stories260K.bin is reported with its header", (t) => {
  if (!existsSync(DATA)) {
    t.skip("../shared/data absent");
    return;
  }
  const stories = bytesOf(STORIES);
  assert.throws(
    () => parseLlama2cCheckpoint(stories.subarray(0, stories.length - 1000)),
    /^Error: llama2\.c checkpoint: file is 1055540 bytes but its header \(dim=64 hidden_dim=172 n_layers=5 n_heads=8 n_kv_heads=4 vocab_size=512 seq_len=512\) implies 1056540$/,
  );
});
