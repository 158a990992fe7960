import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { bf16ToF32, f16ToF32, f32ToBf16, f32ToF16 } from "../src/format/float16.js";
import { GgmlType, WRITABLE_GGML_TYPES, dequantize, ggmlRowBytes, ggmlTypeName, quantize } from "../src/format/ggml-quants.js";
import {
  GgufType,
  ggufMetadataEntries,
  ggufTensorBytes,
  parseGgufHeader,
  plainValue,
  serializeGguf,
  tensorByteSize,
  validateTensorInfos,
  type GgufMetadataEntry,
} from "../src/format/gguf.js";
import { Rng } from "../src/util/rng.js";

const DATA = "../shared/data";
const hex = (b: Uint8Array): string => Buffer.from(b).toString("hex");

// ---- real files -------------------------------------------------------------------------------

test("reads llama.cpp's llama-2-tiny-random.gguf and rewrites it byte for byte", (t) => {
  const path = `${DATA}/models/llama-2-tiny-random.gguf`;
  if (!existsSync(path)) return t.skip("../shared/data absent");
  const bytes = new Uint8Array(readFileSync(path));
  const h = parseGgufHeader(bytes);
  assert.equal(h.version, 3);
  assert.equal(h.alignment, 32);
  assert.equal(h.metadata.get("general.architecture"), "llama");
  assert.equal(h.metadata.get("llama.embedding_length"), 8);
  assert.equal(h.metadataTypes.get("llama.attention.layer_norm_rms_epsilon"), GgufType.FLOAT32);
  const tokens = plainValue(h.metadata.get("tokenizer.ggml.tokens")) as string[];
  assert.equal(tokens.length, 32000);
  assert.ok(tokens.includes("\ufeff"), "a leading U+FEFF in a token is kept, not taken for a byte-order mark");

  const sizes = validateTensorInfos(h, bytes.length);
  const byName = new Map(h.tensors.map((x, i) => [x.name, { ...x, size: sizes[i]! }]));
  assert.deepEqual(byName.get("token_embd.weight")!.dims, [8, 32000]);
  assert.deepEqual(byName.get("blk.0.ffn_down.weight")!.dims, [32, 8]);
  assert.equal(byName.get("token_embd.weight")!.type, GgmlType.F16);
  assert.equal(byName.get("output_norm.weight")!.type, GgmlType.F32);
  assert.equal(byName.get("token_embd.weight")!.size, 8 * 32000 * 2);
  for (const info of h.tensors) {
    const n = info.dims.reduce((a, b) => a * b, 1);
    const values = dequantize(info.type, ggufTensorBytes(bytes, h, info), n);
    assert.equal(values.length, n);
    for (const i of [0, 1, n >> 1, n - 1]) assert.ok(Number.isFinite(values[i]), `${info.name}[${i}] = ${values[i]}`);
  }

  const tensors = h.tensors.map((x) => ({ name: x.name, dims: x.dims, type: x.type, data: ggufTensorBytes(bytes, h, x) }));
  const again = serializeGguf(ggufMetadataEntries(h), tensors, h.alignment);
  assert.ok(Buffer.from(again).equals(bytes), "serializeGguf lays the file out exactly as llama.cpp did");
});

test("reads the vocabulary-only GGUFs; rewriting differs only by the final alignment padding", (t) => {
  const files: [string, number, string][] = [
    ["ggml-vocab-llama-spm.gguf", 32000, "llama"],
    ["ggml-vocab-gpt-2.gguf", 50257, "gpt2"],
  ];
  for (const [name, vocab, model] of files) {
    const path = `${DATA}/tokenizers/${name}`;
    if (!existsSync(path)) return t.skip("../shared/data absent");
    const bytes = new Uint8Array(readFileSync(path));
    const h = parseGgufHeader(bytes);
    assert.equal(h.tensors.length, 0);
    assert.equal(h.metadata.get("tokenizer.ggml.model"), model, name);
    assert.equal((plainValue(h.metadata.get("tokenizer.ggml.tokens")) as string[]).length, vocab, name);
    assert.deepEqual(validateTensorInfos(h, bytes.length), []);
    // gguf-py leaves a tensor-less file unpadded; llama.cpp's writer (and ours) pads the header.
    const again = serializeGguf(ggufMetadataEntries(h), [], h.alignment);
    assert.equal(again.length, Math.ceil(bytes.length / 32) * 32, name);
    assert.ok(Buffer.from(again.subarray(0, bytes.length)).equals(bytes), name);
    assert.ok(again.subarray(bytes.length).every((b) => b === 0), name);
  }
});

// ---- writing and reading back -----------------------------------------------------------------

test("metadata of every value type round-trips, in order and with its type", () => {
  const meta: GgufMetadataEntry[] = [
    { key: "u8", type: GgufType.UINT8, value: 255 },
    { key: "i8", type: GgufType.INT8, value: -128 },
    { key: "u16", type: GgufType.UINT16, value: 65535 },
    { key: "i16", type: GgufType.INT16, value: -32768 },
    { key: "u32", type: GgufType.UINT32, value: 4294967295 },
    { key: "i32", type: GgufType.INT32, value: -2147483648 },
    { key: "f32", type: GgufType.FLOAT32, value: 0.1 },
    { key: "bool.t", type: GgufType.BOOL, value: true },
    { key: "bool.f", type: GgufType.BOOL, value: false },
    { key: "str.empty", type: GgufType.STRING, value: "" },
    { key: "str.unicode ключ 🌲", type: GgufType.STRING, value: "héllo\n🌲\u0000\ufeffend" },
    { key: "u64.small", type: GgufType.UINT64, value: 12345 },
    { key: "u64.big", type: GgufType.UINT64, value: 2n ** 64n - 1n },
    { key: "u64.2^53+1", type: GgufType.UINT64, value: 2n ** 53n + 1n },
    { key: "i64.min", type: GgufType.INT64, value: -(2n ** 63n) },
    { key: "i64.neg", type: GgufType.INT64, value: -5 },
    { key: "f64", type: GgufType.FLOAT64, value: Math.PI },
    { key: "arr.strings", type: GgufType.ARRAY, elementType: GgufType.STRING, value: ["a", "", "ü"] },
    { key: "arr.empty", type: GgufType.ARRAY, value: { elementType: GgufType.INT32, values: [] } },
    { key: "arr.f32", type: GgufType.ARRAY, value: { elementType: GgufType.FLOAT32, values: [1.5, -0, Infinity] } },
    { key: "arr.u64", type: GgufType.ARRAY, elementType: GgufType.UINT64, value: [0, 2n ** 60n] },
    {
      key: "arr.nested",
      type: GgufType.ARRAY,
      value: {
        elementType: GgufType.ARRAY,
        values: [
          { elementType: GgufType.UINT8, values: [1, 2] },
          { elementType: GgufType.ARRAY, values: [{ elementType: GgufType.BOOL, values: [true] }] },
          { elementType: GgufType.STRING, values: [] },
        ],
      },
    },
  ];
  const bytes = serializeGguf(meta, []);
  assert.equal(bytes.length % 32, 0);
  const h = parseGgufHeader(bytes);
  assert.deepEqual([...h.metadata.keys()], meta.map((e) => e.key));
  for (const e of meta) assert.equal(h.metadataTypes.get(e.key), e.type, e.key);
  const got = (k: string): unknown => plainValue(h.metadata.get(k));
  assert.equal(got("u8"), 255);
  assert.equal(got("i8"), -128);
  assert.equal(got("u16"), 65535);
  assert.equal(got("i16"), -32768);
  assert.equal(got("u32"), 4294967295);
  assert.equal(got("i32"), -2147483648);
  assert.equal(got("f32"), Math.fround(0.1));
  assert.equal(got("bool.t"), true);
  assert.equal(got("bool.f"), false);
  assert.equal(got("str.empty"), "");
  assert.equal(got("str.unicode ключ 🌲"), "héllo\n🌲\u0000\ufeffend");
  assert.equal(got("u64.small"), 12345);
  assert.equal(got("u64.big"), 2n ** 64n - 1n);
  assert.equal(got("u64.2^53+1"), 2n ** 53n + 1n);
  assert.equal(got("i64.min"), -(2n ** 63n));
  assert.equal(got("i64.neg"), -5);
  assert.equal(got("f64"), Math.PI);
  assert.deepEqual(got("arr.strings"), ["a", "", "ü"]);
  assert.deepEqual(h.metadata.get("arr.empty"), { elementType: GgufType.INT32, values: [] });
  assert.deepEqual(got("arr.f32"), [1.5, -0, Infinity]);
  assert.deepEqual(got("arr.u64"), [0, 2n ** 60n]);
  assert.deepEqual(h.metadata.get("arr.nested"), meta.find((e) => e.key === "arr.nested")!.value);
  // Parsed entries write the same bytes again.
  assert.deepEqual(serializeGguf(ggufMetadataEntries(h), []), bytes);
});

test("tensors of every writable type round-trip; offsets and padding follow the alignment", () => {
  const rng = new Rng(7);
  const values = Float32Array.from({ length: 64 * 3 }, () => rng.normal());
  for (const alignment of [32, 64, 1]) {
    const tensors = WRITABLE_GGML_TYPES.map((type, i) => ({
      name: `t${i}.${ggmlTypeName(type)}`,
      dims: [64, 3],
      type,
      data: quantize(type, values),
    }));
    tensors.push({ name: "odd", dims: [3], type: GgmlType.F16, data: quantize(GgmlType.F16, Float32Array.from([1, 2, 3])) });
    const bytes = serializeGguf([{ key: "general.architecture", type: GgufType.STRING, value: "llama" }], tensors, alignment);
    const h = parseGgufHeader(bytes);
    assert.equal(h.alignment, alignment);
    assert.equal(h.metadata.has("general.alignment"), alignment !== 32, "written only when not the default");
    assert.equal(h.metadataTypes.get("general.alignment") ?? GgufType.UINT32, GgufType.UINT32);
    assert.equal(h.dataOffset % alignment, 0);
    validateTensorInfos(h, bytes.length);
    let expected = 0;
    for (const [i, info] of h.tensors.entries()) {
      const t = tensors[i]!;
      assert.equal(info.name, t.name);
      assert.deepEqual(info.dims, t.dims);
      assert.equal(info.type, t.type);
      assert.equal(info.offset, expected, `${t.name} starts at the padded end of the one before`);
      expected += Math.ceil(t.data.length / alignment) * alignment;
      const data = ggufTensorBytes(bytes, h, info);
      assert.deepEqual(data, t.data, t.name);
      const n = t.dims.reduce((a, b) => a * b, 1);
      assert.deepEqual(dequantize(info.type, data, n), dequantize(t.type, t.data, n));
    }
    assert.equal(bytes.length, h.dataOffset + expected, "the last tensor is padded too");
  }
});

test("writer rejects what llama.cpp could not read, with one-line errors", () => {
  const f16 = (n: number): Uint8Array => new Uint8Array(2 * n);
  const bad: [() => unknown, RegExp][] = [
    [() => serializeGguf([{ key: "k", type: GgufType.UINT8, value: 256 }], []), /^gguf: metadata "k": 256 is not a valid UINT8 value$/],
    [() => serializeGguf([{ key: "k", type: GgufType.INT32, value: 1.5 }], []), /not a valid INT32/],
    [() => serializeGguf([{ key: "k", type: GgufType.UINT64, value: -1n }], []), /not a valid UINT64/],
    [() => serializeGguf([{ key: "k", type: GgufType.UINT64, value: 2 ** 60 }], []), /not a valid UINT64/],
    [() => serializeGguf([{ key: "k", type: GgufType.STRING, value: 3 }], []), /not a valid STRING/],
    [() => serializeGguf([{ key: "k", type: GgufType.ARRAY, value: [1] }], []), /not a valid ARRAY/],
    [() => serializeGguf([{ key: "k", type: GgufType.ARRAY, elementType: GgufType.UINT8, value: [1, -1] }], []), /metadata "k"\[1\]: -1 is not a valid UINT8/],
    [() => serializeGguf([{ key: "k", type: GgufType.BOOL, value: true }, { key: "k", type: GgufType.BOOL, value: true }], []), /"k" appears twice/],
    [() => serializeGguf([{ key: "general.alignment", type: GgufType.UINT32, value: 64 }], []), /must be a UINT32 equal to the alignment 32/],
    [() => serializeGguf([], [], 48), /alignment 48 is not a power of two/],
    [() => serializeGguf([], [{ name: "w", dims: [4], type: GgmlType.F16, data: f16(3) }]), /^gguf: tensor "w": dims \[4\] of F16 need 8 bytes, data has 6$/],
    [() => serializeGguf([], [{ name: "w", dims: [16], type: GgmlType.Q8_0, data: new Uint8Array(17) }]), /16 elements is not a whole number of Q8_0 blocks of 32/],
    [() => serializeGguf([], [{ name: "x".repeat(64), dims: [1], type: GgmlType.F16, data: f16(1) }]), /name is longer than 63 bytes/],
    [() => serializeGguf([], [{ name: "w", dims: [1, 1, 1, 1, 1], type: GgmlType.F16, data: f16(1) }]), /5 dimensions/],
    [() => serializeGguf([], [{ name: "w", dims: [1], type: 99 as GgmlType, data: f16(1) }]), /unknown ggml type 99/],
    [() => serializeGguf([], [1, 2].map(() => ({ name: "w", dims: [1], type: GgmlType.F16, data: f16(1) }))), /tensor "w" appears twice/],
  ];
  for (const [f, re] of bad) assert.throws(f, (e: Error) => re.test(e.message) && !e.message.includes("\n"));
});

/** A file whose one tensor info is patched after writing (offset, type, first dim). */
function patched(edit: { offset?: number; type?: number; dim0?: number; dim1?: number }, fileExtra = 0): { bytes: Uint8Array; size: number } {
  const dims = [32, 2];
  const bytes = serializeGguf([], [
    { name: "a", dims, type: GgmlType.F32, data: new Uint8Array(4 * dims.reduce((x, y) => x * y, 1)) },
    { name: "b", dims: [32], type: GgmlType.F32, data: new Uint8Array(128) },
  ]);
  // Header: 24 bytes; tensor "a": 8+1 name, 4 n_dims, 8·n dims, 4 type, 8 offset.
  const v = new DataView(bytes.buffer);
  const at = 24 + 9 + 4;
  if (edit.dim0 !== undefined) v.setBigUint64(at, BigInt(edit.dim0), true);
  if (edit.dim1 !== undefined) v.setBigUint64(at + 8, BigInt(edit.dim1), true);
  const typeAt = at + 8 * dims.length;
  if (edit.type !== undefined) v.setUint32(typeAt, edit.type, true);
  if (edit.offset !== undefined) v.setBigUint64(typeAt + 4, BigInt(edit.offset), true);
  return { bytes, size: bytes.length + fileExtra };
}

test("validateTensorInfos: one-line errors for tensors that do not fit the file", () => {
  const check = (p: { bytes: Uint8Array; size: number }, re: RegExp | null): void => {
    const h = parseGgufHeader(p.bytes, p.size);
    if (re === null) validateTensorInfos(h, p.size);
    else assert.throws(() => validateTensorInfos(h, p.size), (e: Error) => re.test(e.message) && !e.message.includes("\n"));
  };
  check(patched({}), null);
  check(patched({ type: 99 }), /^gguf: tensor "a": unknown ggml type 99$/);
  check(patched({ type: GgmlType.Q8_0, dim0: 33 }), /^gguf: tensor "a": first dimension 33 is not a multiple of the Q8_0 block size 32$/);
  check(patched({ type: 12 }), /first dimension 32 is not a multiple of the Q4_K block size 256/);
  check(patched({ offset: 480 }), /^gguf: tensor "a": data at bytes \d+\.\.\d+ runs past the end of the file \(\d+ bytes\)$/);
  check(patched({ offset: 384 }), /^gguf: tensor "a": data at bytes/);
  check(patched({ offset: 384 }, 256), null);
  check(patched({ dim0: 64 }, 256), /^gguf: tensors "a" and "b" overlap$/);
  check(patched({ dim0: 2 ** 40, dim1: 2 ** 40 }), /^gguf: tensor "a": dims \[1099511627776, 1099511627776\] have too many elements$/);
  assert.equal(tensorByteSize({ dims: [64, 3], type: GgmlType.Q4_0 }), 2 * 18 * 3);
  assert.equal(tensorByteSize({ dims: [256, 2], type: 12 }), 2 * 144);
});

// ---- quantization -----------------------------------------------------------------------------

// An independent transliteration of ggml's C (ggml-impl.h, ggml-quants.c) with straightforward
// loops. Float arithmetic is rounded to float32 by storing into a Float32Array; f32 → f16 uses the
// bit trick of ggml's portable path (from Maratyszcza/FP16), unlike the library's direct rounding.
const F = new Float32Array(4);
const U = new Uint32Array(F.buffer);
function f32(x: number): number {
  F[0] = x;
  return F[0]!;
}
function bitsOf(x: number): number {
  F[1] = x;
  return U[1]!;
}
function fromBits(b: number): number {
  U[2] = b >>> 0;
  return F[2]!;
}
function refFp32ToFp16(f: number): number {
  let base = f32(f32(Math.abs(f) * 2 ** 112) * 2 ** -110);
  const w = bitsOf(f);
  const shl1w = (w * 2) % 2 ** 32;
  const sign = w & 0x80000000;
  let bias = (shl1w & 0xff000000) >>> 0;
  if (bias < 0x71000000) bias = 0x71000000;
  base = f32(fromBits((bias >>> 1) + 0x07800000) + base);
  const bits = bitsOf(base);
  const nonsign = ((bits >>> 13) & 0x7c00) + (bits & 0x0fff);
  return ((sign >>> 16) | (shl1w > 0xff000000 ? 0x7e00 : nonsign)) & 0xffff;
}
function refQ8_0(x: Float32Array): Uint8Array {
  const y = new Uint8Array((x.length / 32) * 34);
  for (let i = 0; i < x.length / 32; i++) {
    let amax = 0;
    for (let j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(x[i * 32 + j]!));
    const d = f32(amax / 127);
    const id = d !== 0 ? f32(1 / d) : 0;
    const h = refFp32ToFp16(d);
    y[i * 34] = h & 0xff;
    y[i * 34 + 1] = h >> 8;
    for (let j = 0; j < 32; j++) {
      const x0 = f32(x[i * 32 + j]! * id);
      const r = Math.sign(x0) * Math.floor(Math.abs(x0) + 0.5); // roundf
      y[i * 34 + 2 + j] = r & 0xff;
    }
  }
  return y;
}
function refQ4_0(x: Float32Array): Uint8Array {
  const y = new Uint8Array((x.length / 32) * 18);
  for (let i = 0; i < x.length / 32; i++) {
    let amax = 0;
    let max = 0;
    for (let j = 0; j < 32; j++) {
      const v = x[i * 32 + j]!;
      if (amax < Math.abs(v)) {
        amax = Math.abs(v);
        max = v;
      }
    }
    const d = f32(max / -8);
    const id = d !== 0 ? f32(1 / d) : 0;
    const h = refFp32ToFp16(d);
    y[i * 18] = h & 0xff;
    y[i * 18 + 1] = h >> 8;
    for (let j = 0; j < 16; j++) {
      const x0 = f32(x[i * 32 + j]! * id);
      const x1 = f32(x[i * 32 + 16 + j]! * id);
      const xi0 = Math.min(15, Math.trunc(f32(x0 + 8.5)));
      const xi1 = Math.min(15, Math.trunc(f32(x1 + 8.5)));
      y[i * 18 + 2 + j] = xi0 | (xi1 << 4);
    }
  }
  return y;
}

/** Random blocks of several kinds: plain, all zero, one huge value, negative max, exact ties, tiny, wide. */
function randomBlocks(rng: Rng, nBlocks: number): Float32Array {
  const x = new Float32Array(nBlocks * 32);
  for (let b = 0; b < nBlocks; b++) {
    const scale = 10 ** (rng.next() * 10 - 6);
    const kind = b % 7;
    for (let j = 0; j < 32; j++) {
      const r = rng.normal() * scale;
      x[b * 32 + j] =
        kind === 0 ? r
        : kind === 1 ? 0
        : kind === 2 ? (j === 11 ? 1e4 * scale : r)
        : kind === 3 ? (j === 20 ? -40 * scale : r)
        : kind === 4 ? (rng.int(33) - 16) * scale / 8
        : kind === 5 ? r * 1e-7
        : r * 2 ** (rng.int(40) - 20);
    }
  }
  return x;
}

test("Q8_0 and Q4_0 quantization match ggml's reference byte for byte", () => {
  const x = randomBlocks(new Rng(42), 3000);
  assert.equal(hex(quantize(GgmlType.Q8_0, x)), hex(refQ8_0(x)));
  assert.equal(hex(quantize(GgmlType.Q4_0, x)), hex(refQ4_0(x)));
  // The dequantized values are within half a step of the input, plus the f16 rounding of the
  // step times 127 (for blocks whose scale is a normal f16).
  const q = dequantize(GgmlType.Q8_0, quantize(GgmlType.Q8_0, x), x.length);
  for (let b = 0; b < 3000; b += 7) {
    const amax = Math.max(...x.subarray(b * 32, b * 32 + 32).map(Math.abs));
    if (amax / 127 < 2 ** -14) continue;
    for (let j = 0; j < 32; j++) assert.ok(Math.abs(q[b * 32 + j]! - x[b * 32 + j]!) <= (amax / 127) * 0.57);
  }
});

test("Q8_0 and Q4_0 golden bytes, as printed by ggml's C reference compiled with gcc", () => {
  // Produced by a C transliteration of quantize_row_q{8,4}_0_ref and GGML_FP32_TO_FP16 (gcc -O2,
  // portable and F16C paths agree), for these five blocks.
  const blocks = [
    Array.from({ length: 32 }, (_, j) => (((j * 7) % 32) - 16) / 8), // exact ties; max −2 comes first
    Array.from({ length: 32 }, (_, j) => (j === 5 ? 1000 : Math.sin(j) * 0.01)), // one huge value
    Array.from({ length: 32 }, (_, j) => (j === 9 ? -3.75 : Math.cos(j * 1.3) * 3)), // negative max
    Array.from({ length: 32 }, (_, j) => (j - 15.5) * 1e-7), // Q8_0's scale underflows f16 to 0
    Array.from({ length: 32 }, (_, j) => (j % 2 ? -1 : 1) * 70000), // beyond f16's range
  ];
  const x = new Float32Array(blocks.flat());
  const q8 = [
    "082481b9f0285f99d0084077b1e8205791c800386fa9e0184f89c0f83067a1d81047",
    "e04700000000007f0000000000000000000000000000000000000000000000000000",
    "8f27661ba9b6306305a0c7815cf09bda5151da9bf05c42c7a0066330b6a91b661ba9",
    "00008189919aa2aab2bac3cbd3dbe3ecf4fc040c141d252d353d464e565e666f777f",
    "4e607f817f817f817f817f817f817f817f817f817f817f817f817f817f817f817f81",
  ];
  const q4 = [
    "003480c4f73b6ea2d5194c8fb3f72a6e91d5",
    "d0d788888888888088888888888888888888",
    "80376e2a73e3cb4e2882e4b03e37a2e6ad3d",
    "0300809191a2a2b3b3c4c4d5d5e6e6f7f7f8",
    "46f000ff00ff00ff00ff00ff00ff00ff00ff",
  ];
  assert.equal(hex(quantize(GgmlType.Q8_0, x)), q8.join(""));
  assert.equal(hex(quantize(GgmlType.Q4_0, x)), q4.join(""));
  // Block 0 has d = 0.25 (max −2 over −8): values land within one step, the max exactly.
  const back = dequantize(GgmlType.Q4_0, quantize(GgmlType.Q4_0, x), 32);
  for (let j = 0; j < 32; j++) assert.ok(Math.abs(back[j]! - x[j]!) <= 0.125, `${x[j]} → ${back[j]}`);
  assert.equal(back[x.indexOf(-2)], -2);
});

test("dequantization of hand-built Q4_1, Q5_0 and Q5_1 blocks", () => {
  const h = (v: number): number[] => {
    const b = f32ToF16(v);
    return [b & 0xff, b >> 8];
  };
  const u32le = (v: number): number[] => [v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, v >>> 24];
  // Nibbles: element j = j % 16 in the low nibble, element j + 16 = 15 − j in the high nibble.
  const nibbles = Array.from({ length: 16 }, (_, j) => j | ((15 - j) << 4));
  const q = Array.from({ length: 32 }, (_, i) => (i < 16 ? i : 31 - i));
  // 5th bits: elements 0, 3 and 16, 31.
  const qh = (1 << 0) | (1 << 3) | (1 << 16) | (1 << 31);
  const high = (i: number): number => ([0, 3, 16, 31].includes(i) ? 16 : 0);

  const q41 = new Uint8Array([...h(0.5), ...h(-2), ...nibbles]);
  assert.deepEqual(Array.from(dequantize(GgmlType.Q4_1, q41, 32)), q.map((v) => v * 0.5 - 2));
  const q50 = new Uint8Array([...h(0.25), ...u32le(qh), ...nibbles]);
  assert.deepEqual(Array.from(dequantize(GgmlType.Q5_0, q50, 32)), q.map((v, i) => (v + high(i) - 16) * 0.25));
  const q51 = new Uint8Array([...h(0.125), ...h(1), ...u32le(qh), ...nibbles]);
  assert.deepEqual(Array.from(dequantize(GgmlType.Q5_1, q51, 32)), q.map((v, i) => (v + high(i)) * 0.125 + 1));
  // Two blocks, the second at its stride.
  const two = new Uint8Array([...q51, ...q51]);
  assert.deepEqual(dequantize(GgmlType.Q5_1, two, 64).subarray(32), dequantize(GgmlType.Q5_1, q51, 32));
  assert.equal(ggmlRowBytes(GgmlType.Q4_1, 64), 40);
  assert.equal(ggmlRowBytes(GgmlType.Q5_0, 64), 44);
  assert.equal(ggmlRowBytes(GgmlType.Q5_1, 64), 48);
  assert.equal(ggmlRowBytes(GgmlType.Q8_0, 64), 68);
  assert.equal(ggmlRowBytes(GgmlType.Q4_0, 64), 36);
  assert.throws(() => dequantize(GgmlType.Q5_1, q51, 64), { message: /^gguf: 64 Q5_1 elements need 48 bytes, got 24$/ });
  assert.throws(() => ggmlRowBytes(GgmlType.Q4_0, 33), { message: /^gguf: 33 elements is not a whole number of Q4_0 blocks of 32$/ });
});

test("f16 and bf16 conversions: rounding ties, subnormals, overflow, infinities, NaN", () => {
  const cases: [number, number][] = [
    [0, 0x0000], [-0, 0x8000], [1, 0x3c00], [-2, 0xc000], [65504, 0x7bff],
    [65519.99, 0x7bff], [65520, 0x7c00], [1e9, 0x7c00], [-1e9, 0xfc00], [Infinity, 0x7c00], [-Infinity, 0xfc00],
    [2 ** -14, 0x0400], [2 ** -24, 0x0001], [2 ** -25, 0x0000], [2 ** -25 * 1.0000001, 0x0001], [3 * 2 ** -25, 0x0002],
    [-(2 ** -24), 0x8001], [1023 * 2 ** -24, 0x03ff], [1023.5 * 2 ** -24, 0x0400], [1e-30, 0x0000],
    [1 + 2 ** -11, 0x3c00], [1 + 3 * 2 ** -11, 0x3c02], [1 + 2 ** -11 + 2 ** -20, 0x3c01], [0.1, 0x2e66],
    [2 ** -149, 0x0000],
  ];
  for (const [x, bits] of cases) {
    assert.equal(f32ToF16(x), bits, `f32ToF16(${x})`);
    assert.equal(f32ToF16(x), refFp32ToFp16(x), `ggml's bit trick agrees on ${x}`);
  }
  assert.equal(f32ToF16(NaN), 0x7e00);
  assert.ok(Number.isNaN(f16ToF32(0x7e00)));
  for (let b = 0; b < 0x10000; b++) {
    if ((b & 0x7c00) === 0x7c00 && (b & 0x3ff) !== 0) continue; // NaNs
    assert.equal(f32ToF16(f16ToF32(b)), b, `f16 ${b.toString(16)} round-trips`);
  }
  // 10,000 random f32 bit patterns against ggml's bit trick.
  const rng = new Rng(3);
  for (let i = 0; i < 10000; i++) {
    const x = fromBits(rng.nextU32());
    if (!Number.isNaN(x)) assert.equal(f32ToF16(x), refFp32ToFp16(x), `${x}`);
  }
  // bf16: ties to even, overflow to infinity, NaN made quiet.
  const bfCases: [number, number][] = [
    [1, 0x3f80], [fromBits(0x3f808000), 0x3f80], [fromBits(0x3f818000), 0x3f82], [fromBits(0x3f808001), 0x3f81],
    [fromBits(0x7f7fffff), 0x7f80], [-Infinity, 0xff80], [fromBits(0x00000001), 0x0000], [fromBits(0x00008000), 0x0000],
    [fromBits(0x00018000), 0x0002],
  ];
  for (const [x, bits] of bfCases) assert.equal(f32ToBf16(x), bits, `f32ToBf16(${x})`);
  assert.equal(f32ToBf16(NaN) & 0x7fc0, 0x7fc0);
  assert.equal(bf16ToF32(0x3f80), 1);
  // F16 and BF16 tensors: quantize then dequantize is the same rounding.
  const v = Float32Array.from([0.1, -3.3, 65520, 2 ** -25, 7e-8]);
  assert.deepEqual(Array.from(dequantize(GgmlType.F16, quantize(GgmlType.F16, v), 5)), Array.from(v, (x) => f16ToF32(f32ToF16(x))));
  assert.deepEqual(Array.from(dequantize(GgmlType.BF16, quantize(GgmlType.BF16, v), 5)), Array.from(v, (x) => bf16ToF32(f32ToBf16(x))));
});
