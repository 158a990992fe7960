// ggml tensor types: their block layouts, dequantization of the simple ones, and quantization
// bit-exact with ggml's reference quantizers (ggml-quants.c, quantize_row_*_ref), the ones that
// llama.cpp's tools use to write model files. The arithmetic is done in float32 as the C code does
// (Math.fround after every operation), so the bytes match, not just the values.
//
// Block layouts (32 elements per block, little-endian, f16 scales):
//   Q4_0 (18 bytes): d, 16 bytes of nibbles — byte j holds element j (low) and j+16 (high);
//                    value (q − 8)·d
//   Q4_1 (20 bytes): d, m, nibbles as Q4_0; value q·d + m
//   Q5_0 (22 bytes): d, u32 qh (bit j = 5th bit of element j), nibbles; value (q − 16)·d
//   Q5_1 (24 bytes): d, m, qh, nibbles; value q·d + m
//   Q8_0 (34 bytes): d, 32 int8; value q·d

import { f16Table, f32ToBf16, f32ToF16 } from "./float16.js";

export enum GgmlType {
  F32 = 0,
  F16 = 1,
  Q4_0 = 2,
  Q4_1 = 3,
  Q5_0 = 6,
  Q5_1 = 7,
  Q8_0 = 8,
  BF16 = 30,
}

/**
 * Name, elements per block and bytes per block of every ggml type id in use (ggml.c's
 * type_traits), so that files with types Bonsai cannot decode can still be sized and validated.
 */
const TRAITS: Record<number, readonly [name: string, blockSize: number, blockBytes: number]> = {
  0: ["F32", 1, 4],
  1: ["F16", 1, 2],
  2: ["Q4_0", 32, 18],
  3: ["Q4_1", 32, 20],
  6: ["Q5_0", 32, 22],
  7: ["Q5_1", 32, 24],
  8: ["Q8_0", 32, 34],
  9: ["Q8_1", 32, 36],
  10: ["Q2_K", 256, 84],
  11: ["Q3_K", 256, 110],
  12: ["Q4_K", 256, 144],
  13: ["Q5_K", 256, 176],
  14: ["Q6_K", 256, 210],
  15: ["Q8_K", 256, 292],
  16: ["IQ2_XXS", 256, 66],
  17: ["IQ2_XS", 256, 74],
  18: ["IQ3_XXS", 256, 98],
  19: ["IQ1_S", 256, 50],
  20: ["IQ4_NL", 32, 18],
  21: ["IQ3_S", 256, 110],
  22: ["IQ2_S", 256, 82],
  23: ["IQ4_XS", 256, 136],
  24: ["I8", 1, 1],
  25: ["I16", 1, 2],
  26: ["I32", 1, 4],
  27: ["I64", 1, 8],
  28: ["F64", 1, 8],
  29: ["IQ1_M", 256, 56],
  30: ["BF16", 1, 2],
  34: ["TQ1_0", 256, 54],
  35: ["TQ2_0", 256, 66],
  39: ["MXFP4", 32, 17],
};

function fail(msg: string): never {
  throw new Error(`gguf: ${msg}`);
}

/** Whether `type` is a ggml type id whose layout is known (not necessarily decodable). */
export function isKnownGgmlType(type: number): boolean {
  return Object.hasOwn(TRAITS, type);
}

function traits(type: number): readonly [string, number, number] {
  if (!isKnownGgmlType(type)) fail(`unknown ggml type ${type}`);
  return TRAITS[type]!;
}

/** "Q8_0" for 8, or "type 99" for an unknown id. */
export function ggmlTypeName(type: number): string {
  return isKnownGgmlType(type) ? TRAITS[type]![0] : `type ${type}`;
}

/** Elements per block (1 for the float and integer types). */
export function ggmlBlockSize(type: number): number {
  return traits(type)[1];
}

/** Bytes of a row of `nElements` elements; `nElements` must be a whole number of blocks. */
export function ggmlRowBytes(type: number, nElements: number): number {
  const [name, blockSize, blockBytes] = traits(type);
  if (!Number.isSafeInteger(nElements) || nElements < 0) fail(`bad element count ${nElements}`);
  if (nElements % blockSize !== 0) fail(`${nElements} elements is not a whole number of ${name} blocks of ${blockSize}`);
  return (nElements / blockSize) * blockBytes;
}

// ---- dequantization ---------------------------------------------------------------------------

const fr = Math.fround;
const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/**
 * Decode `n` elements of `type` from `bytes` (at least ggmlRowBytes(type, n) long) to f32, into
 * `into` when given (a reused buffer of at least n; the result is its first n elements).
 */
export function dequantize(type: GgmlType, bytes: Uint8Array, n: number, into?: Float32Array): Float32Array {
  const size = ggmlRowBytes(type, n);
  if (bytes.length < size) fail(`${n} ${ggmlTypeName(type)} elements need ${size} bytes, got ${bytes.length}`);
  if (into !== undefined && into.length < n) fail(`${n} elements do not fit an output of ${into.length}`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out = into === undefined ? new Float32Array(n) : into.subarray(0, n);
  switch (type) {
    case GgmlType.F32:
      // Copy bytes rather than values so NaN payloads survive (ggml files are little-endian).
      if (LITTLE_ENDIAN) new Uint8Array(out.buffer, out.byteOffset, 4 * n).set(bytes.subarray(0, 4 * n));
      else for (let i = 0; i < n; i++) out[i] = view.getFloat32(4 * i, true);
      break;
    case GgmlType.F16: {
      const t = f16Table();
      for (let i = 0; i < n; i++) out[i] = t[view.getUint16(2 * i, true)]!;
      break;
    }
    case GgmlType.BF16: {
      // Write the bits directly so NaN payloads survive.
      const u = new Uint32Array(out.buffer, out.byteOffset, n);
      for (let i = 0; i < n; i++) u[i] = view.getUint16(2 * i, true) << 16;
      break;
    }
    case GgmlType.Q8_0: {
      const t = f16Table();
      for (let b = 0, p = 0; b < n; b += 32, p += 34) {
        const d = t[view.getUint16(p, true)]!;
        for (let j = 0; j < 32; j++) out[b + j] = fr(view.getInt8(p + 2 + j) * d);
      }
      break;
    }
    case GgmlType.Q4_0:
    case GgmlType.Q4_1:
    case GgmlType.Q5_0:
    case GgmlType.Q5_1:
      dequantizeNibbles(type, view, out, n);
      break;
    default:
      fail(`cannot dequantize ${ggmlTypeName(type)}`);
  }
  return out;
}

/** The four 4/5-bit formats: the same nibble layout, with or without a min and a 5th bit. */
function dequantizeNibbles(type: GgmlType, view: DataView, out: Float32Array, n: number): void {
  const hasMin = type === GgmlType.Q4_1 || type === GgmlType.Q5_1;
  const hasHigh = type === GgmlType.Q5_0 || type === GgmlType.Q5_1;
  // Symmetric formats store q with an offset (8 or 16) instead of a min.
  const offset = hasMin ? 0 : hasHigh ? 16 : 8;
  const blockBytes = ggmlRowBytes(type, 32);
  const t = f16Table();
  for (let b = 0, p = 0; b < n; b += 32, p += blockBytes) {
    const d = t[view.getUint16(p, true)]!;
    const m = hasMin ? t[view.getUint16(p + 2, true)]! : 0;
    let q = p + (hasMin ? 4 : 2);
    const qh = hasHigh ? view.getUint32(q, true) : 0;
    if (hasHigh) q += 4;
    for (let j = 0; j < 16; j++) {
      const byte = view.getUint8(q + j);
      const lo = (byte & 0x0f) | (((qh >>> j) & 1) << 4);
      const hi = (byte >>> 4) | (((qh >>> (j + 16)) & 1) << 4);
      out[b + j] = hasMin ? fr(fr(lo * d) + m) : fr((lo - offset) * d);
      out[b + j + 16] = hasMin ? fr(fr(hi * d) + m) : fr((hi - offset) * d);
    }
  }
}

// ---- quantization -----------------------------------------------------------------------------

/** Types `quantize` can write. */
export const WRITABLE_GGML_TYPES: readonly GgmlType[] = [GgmlType.F32, GgmlType.F16, GgmlType.BF16, GgmlType.Q8_0, GgmlType.Q4_0];

/**
 * Encode f32 values as `type`, byte for byte as ggml's reference quantizers (checked against them
 * compiled from C on millions of values). For Q8_0 and Q4_0 the count must be a multiple of 32.
 * Non-finite values in a Q8_0/Q4_0 block make C's float → int conversion undefined; here they give 0.
 */
export function quantize(type: GgmlType, values: Float32Array): Uint8Array {
  const n = values.length;
  const out = new Uint8Array(ggmlRowBytes(type, n));
  const view = new DataView(out.buffer);
  switch (type) {
    case GgmlType.F32:
      if (LITTLE_ENDIAN) out.set(new Uint8Array(values.buffer, values.byteOffset, values.byteLength));
      else for (let i = 0; i < n; i++) view.setFloat32(4 * i, values[i]!, true);
      break;
    case GgmlType.F16:
      for (let i = 0; i < n; i++) view.setUint16(2 * i, f32ToF16(values[i]!), true);
      break;
    case GgmlType.BF16:
      for (let i = 0; i < n; i++) view.setUint16(2 * i, f32ToBf16(values[i]!), true);
      break;
    case GgmlType.Q8_0:
      for (let b = 0, p = 0; b < n; b += 32, p += 34) quantizeBlockQ8_0(values, b, view, p);
      break;
    case GgmlType.Q4_0:
      for (let b = 0, p = 0; b < n; b += 32, p += 18) quantizeBlockQ4_0(values, b, view, p);
      break;
    default:
      fail(`cannot quantize to ${ggmlTypeName(type)}`);
  }
  return out;
}

/** C's roundf: half away from zero. */
function roundf(x: number): number {
  return x < 0 ? -Math.floor(-x + 0.5) : Math.floor(x + 0.5);
}

/** C's conversion of a float to int8_t (truncation), for values the callers keep in range. */
function toInt8(x: number): number {
  return (Math.trunc(x) << 24) >> 24;
}

// quantize_row_q8_0_ref: d = amax/127, q = roundf(x/d) with x/d computed as x·(1/d).
function quantizeBlockQ8_0(x: Float32Array, b: number, view: DataView, p: number): void {
  let amax = 0;
  // C's MAX(a, b) is `a > b ? a : b`; written the same way so NaN inputs behave the same.
  for (let j = 0; j < 32; j++) {
    const v = Math.abs(x[b + j]!);
    amax = amax > v ? amax : v;
  }
  const d = fr(amax / 127);
  const id = d !== 0 ? fr(1 / d) : 0;
  view.setUint16(p, f32ToF16(d), true);
  for (let j = 0; j < 32; j++) view.setInt8(p + 2 + j, toInt8(roundf(fr(x[b + j]! * id))));
}

// quantize_row_q4_0_ref: max = the value of largest magnitude (the first one on ties), d = max/−8,
// q = min(15, (int8)(x·(1/d) + 8.5)) — truncation, so the max itself maps to q = 0.
function quantizeBlockQ4_0(x: Float32Array, b: number, view: DataView, p: number): void {
  let amax = 0;
  let max = 0;
  for (let j = 0; j < 32; j++) {
    const v = x[b + j]!;
    if (amax < Math.abs(v)) {
      amax = Math.abs(v);
      max = v;
    }
  }
  const d = fr(max / -8);
  const id = d !== 0 ? fr(1 / d) : 0;
  view.setUint16(p, f32ToF16(d), true);
  for (let j = 0; j < 16; j++) {
    const q0 = Math.min(15, toInt8(fr(fr(x[b + j]! * id) + 8.5)));
    const q1 = Math.min(15, toInt8(fr(fr(x[b + 16 + j]! * id) + 8.5)));
    view.setUint8(p + 2 + j, (q0 & 0xff) | ((q1 << 4) & 0xff));
  }
}
