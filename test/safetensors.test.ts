import { test } from "node:test";
import assert from "node:assert/strict";
import type { NamedTensors } from "../src/format/host-tensor.js";
import { bf16ToF32, f16ToF32, parseSafetensors, readSafetensorsHeader, serializeSafetensors } from "../src/format/safetensors.js";

const enc = new TextEncoder();

/** A file from a header (object or raw JSON text) and data bytes, as a writer would lay it out. */
function file(header: unknown, data: Uint8Array | number[] = [], headerSize?: number): Uint8Array {
  const h = enc.encode(typeof header === "string" ? header : JSON.stringify(header));
  const out = new Uint8Array(8 + h.length + data.length);
  const v = new DataView(out.buffer);
  const n = headerSize ?? h.length;
  v.setUint32(0, n % 2 ** 32, true);
  v.setUint32(4, Math.floor(n / 2 ** 32), true);
  out.set(h, 8);
  out.set(data, 8 + h.length);
  return out;
}

function u16le(values: number[]): Uint8Array {
  const out = new Uint8Array(2 * values.length);
  values.forEach((x, i) => new DataView(out.buffer).setUint16(2 * i, x, true));
  return out;
}

function f32le(values: number[]): Uint8Array {
  const out = new Uint8Array(4 * values.length);
  values.forEach((x, i) => new DataView(out.buffer).setFloat32(4 * i, x, true));
  return out;
}

test("round trip: shapes, metadata, name order, padding, contiguous data", () => {
  const tensors: NamedTensors = new Map([
    ["z.weight", { shape: [2, 3], data: Float32Array.from([1, 2, 3, 4, 5, -6.5]) }],
    ["a.bias", { shape: [3], data: Float32Array.from([0.1, 0.2, 0.3]) }],
    ["scalar", { shape: [], data: Float32Array.from([42]) }],
    ["empty", { shape: [0, 4], data: new Float32Array(0) }],
    ["0", { shape: [1], data: Float32Array.from([NaN]) }],
  ]);
  const bytes = serializeSafetensors(tensors, { format: "pt", note: "héllo" });
  const n = Number(new DataView(bytes.buffer).getBigUint64(0, true));
  assert.equal((8 + n) % 8, 0, "data starts at a multiple of 8");
  const headerText = new TextDecoder().decode(bytes.subarray(8, 8 + n));
  assert.match(headerText, /^\{"__metadata__":\{"format":"pt","note":"héllo"\},"0":.*\} *$/);

  const { tensors: back, metadata } = parseSafetensors(bytes);
  assert.deepEqual(metadata, { format: "pt", note: "héllo" });
  assert.deepEqual([...back.keys()], ["0", "a.bias", "empty", "scalar", "z.weight"], "sorted by name, which is also data order");
  for (const [name, t] of tensors) {
    assert.deepEqual(back.get(name)!.shape, t.shape, name);
    assert.deepEqual(back.get(name)!.data, t.data, name);
  }
  const header = readSafetensorsHeader(bytes);
  assert.deepEqual(header.entries.map((e) => [e.begin, e.end]), [[0, 4], [4, 16], [16, 16], [16, 20], [20, 44]]);

  // Deterministic: insertion order does not matter.
  const reversed = new Map([...tensors].reverse());
  assert.deepEqual(serializeSafetensors(reversed, { format: "pt", note: "héllo" }), bytes);
});

test("serialize matches the reference writer's bytes for a small file", () => {
  const bytes = serializeSafetensors(new Map([["a", { shape: [2], data: Float32Array.from([1, 2]) }]]));
  const json = '{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}'; // 54 bytes, padded to 56
  assert.deepEqual(bytes, file(json + "  ", f32le([1, 2])));
  const bytes3 = serializeSafetensors(new Map([["abc", { shape: [2], data: Float32Array.from([1, 2]) }]]));
  const json3 = '{"abc":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}'; // 56 bytes: no padding
  assert.deepEqual(bytes3, file(json3, f32le([1, 2])));
});

test("F16 and BF16 decode to f32 exactly", () => {
  const f16 = [0x3c00, 0xc000, 0x7bff, 0x0001, 0x03ff, 0x8000, 0x7c00, 0xfc00, 0x7e00, 0x3555];
  const bf16 = [0x3f80, 0xc000, 0x4049, 0x7f80, 0x0001];
  const data = new Uint8Array([...u16le(f16), ...u16le(bf16)]);
  const bytes = file(
    {
      h: { dtype: "F16", shape: [2, 5], data_offsets: [0, 20] },
      b: { dtype: "BF16", shape: [5], data_offsets: [20, 30] },
    },
    data,
  );
  const { tensors } = parseSafetensors(bytes);
  const h = Array.from(tensors.get("h")!.data);
  assert.deepEqual(h.slice(0, 8), [1, -2, 65504, 2 ** -24, 1023 * 2 ** -24, -0, Infinity, -Infinity]);
  assert.ok(Number.isNaN(h[8]));
  assert.equal(h[9], 0.333251953125);
  assert.deepEqual(tensors.get("h")!.shape, [2, 5]);
  assert.deepEqual(Array.from(tensors.get("b")!.data), [1, -2, 3.140625, Infinity, 2 ** -133]);
  assert.equal(f16ToF32(0x3c00), 1);
  assert.equal(bf16ToF32(0x3f80), 1);
});

test("F32 input at an unaligned byte offset", () => {
  const inner = file({ x: { dtype: "F32", shape: [3], data_offsets: [0, 12] } }, f32le([1.5, -2, 3]));
  const big = new Uint8Array(inner.length + 1);
  big.set(inner, 1);
  assert.deepEqual(Array.from(parseSafetensors(big.subarray(1)).tensors.get("x")!.data), [1.5, -2, 3]);
});

test("malformed files give one-line errors", () => {
  const ok = (name: string, dtype: string, shape: number[], offsets: number[]) => ({ [name]: { dtype, shape, data_offsets: offsets } });
  const cases: [string, Uint8Array, RegExp][] = [
    ["short file", new Uint8Array(5), /file is 5 bytes, shorter than the 8-byte header size/],
    ["huge header", file("{}", [], 100_000_001), /header size 100000001 exceeds the 100000000-byte limit/],
    ["header past end", file("{}", [], 50), /header size 50 runs past the end of the file \(10 bytes\)/],
    ["header beyond 2^32", file("{}", [], 2 ** 33), /exceeds/],
    ["not UTF-8", file("{}").map((b, i) => (i === 8 ? 0xff : b)), /header is not valid UTF-8/],
    ["not JSON", file("{nope"), /header is not valid JSON/],
    ["array", file("[]"), /header is not a JSON object/],
    ["null", file("null"), /header is not a JSON object/],
    ["bad metadata", file({ __metadata__: { a: 1 } }), /"__metadata__" value of "a" is not a string/],
    ["entry not object", file({ x: 3 }), /tensor "x": entry is not an object/],
    ["unknown dtype", file(ok("x", "F7", [1], [0, 4]), new Uint8Array(4)), /tensor "x": unknown dtype "F7"/],
    ["bad shape", file(ok("x", "F32", [-1], [0, 4]), new Uint8Array(4)), /tensor "x": shape must be an array of non-negative integers/],
    ["bad offsets", file(ok("x", "F32", [1], [4, 0]), new Uint8Array(4)), /tensor "x": data_offsets must be \[begin, end\]/],
    ["out of bounds", file(ok("x", "F32", [2], [0, 8]), new Uint8Array(4)), /tensor "x": data_offsets \[0, 8\] run past the data buffer \(4 bytes\)/],
    ["size mismatch", file(ok("x", "F32", [2], [0, 4]), new Uint8Array(4)), /tensor "x": data_offsets span 4 bytes but shape \[2\] of F32 needs 8/],
    [
      "unaligned",
      file({ ...ok("h", "F16", [1], [0, 2]), ...ok("x", "F32", [1], [2, 6]) }, new Uint8Array(6)),
      /tensor "x": data offset 2 is not aligned to its 4-byte F32 elements/,
    ],
    [
      "overlap",
      file({ ...ok("a", "F32", [2], [0, 8]), ...ok("b", "F32", [1], [4, 8]) }, new Uint8Array(8)),
      /tensors "a" and "b" overlap in the data buffer/,
    ],
    [
      "hole",
      file({ ...ok("a", "F32", [1], [0, 4]), ...ok("b", "F32", [1], [8, 12]) }, new Uint8Array(12)),
      /bytes 4\.\.8 of the data buffer belong to no tensor/,
    ],
    ["trailing bytes", file(ok("a", "F32", [1], [0, 4]), new Uint8Array(6)), /bytes 4\.\.6 of the data buffer belong to no tensor/],
    ["unsupported dtype", file(ok("a", "I64", [1], [0, 8]), new Uint8Array(8)), /tensor "a" has dtype I64; only F32, F16 and BF16 can be read/],
  ];
  for (const [what, bytes, re] of cases) {
    assert.throws(() => parseSafetensors(bytes), (e: Error) => {
      assert.match(e.message, /^safetensors: /, what);
      assert.match(e.message, re, what);
      assert.ok(!e.message.includes("\n"), `${what}: one line`);
      return true;
    });
  }
  // The header alone is fine for a dtype we cannot convert.
  assert.equal(readSafetensorsHeader(file(ok("a", "I64", [1], [0, 8]), new Uint8Array(8))).entries[0]!.dtype, "I64");
});

test("serialize rejects inconsistent tensors", () => {
  assert.throws(() => serializeSafetensors(new Map([["x", { shape: [2, 2], data: new Float32Array(3) }]])), /tensor "x": shape \[2, 2\] needs 4 values, data has 3/);
  assert.throws(() => serializeSafetensors(new Map([["__metadata__", { shape: [1], data: new Float32Array(1) }]])), /cannot be a tensor name/);
});
