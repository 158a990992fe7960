// Half-precision conversions (IEEE binary16 and bfloat16), bit-exact with ggml's: f32 → f16 and
// f32 → bf16 round to nearest, ties to even, as GGML_FP32_TO_FP16 / GGML_FP32_TO_BF16 do.
// Every f16 and bf16 value is exactly an f32 value, so the widening direction is exact.

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** The bits of `x` rounded to f32. */
export function f32Bits(x: number): number {
  f32[0] = x;
  return u32[0]!;
}

/** The f32 value with these bits. */
export function f32FromBits(bits: number): number {
  u32[0] = bits >>> 0;
  return f32[0]!;
}

/** IEEE binary16 bits → number (exact: every f16 value is an f32 value). */
export function f16ToF32(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exp = (bits >> 10) & 0x1f;
  const frac = bits & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24; // zero and subnormals
  if (exp === 31) return frac ? NaN : sign * Infinity;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}

let table: Float32Array | null = null;

/** All 65536 f16 values as f32, indexed by their bits (built on first use; 256 KiB). */
export function f16Table(): Float32Array {
  if (table === null) {
    table = new Float32Array(65536);
    for (let h = 0; h < 65536; h++) table[h] = f16ToF32(h);
  }
  return table;
}

/**
 * number → IEEE binary16 bits, as ggml's GGML_FP32_TO_FP16: the value is first rounded to f32
 * (ggml's input is a float), then to f16 with ties to even; subnormals are kept, values from
 * 65520 up become infinity, NaN becomes the quiet NaN 0x7e00 with the sign kept (ggml's portable
 * path; the x86 F16C instruction would keep the top payload bits instead).
 */
export function f32ToF16(x: number): number {
  const w = f32Bits(x);
  const sign = (w >>> 16) & 0x8000;
  const exp = (w >>> 23) & 0xff;
  const mant = w & 0x7fffff;
  if (exp === 0xff) return sign | (mant !== 0 ? 0x7e00 : 0x7c00);
  if (exp >= 113) {
    // Normal f16 range (2^-14 and up): keep 10 mantissa bits and round on the 13 dropped ones.
    // A carry out of the mantissa correctly bumps the exponent, up to 0x7c00 = infinity.
    const h = ((exp - 112) << 10) | (mant >>> 13);
    const rest = mant & 0x1fff;
    const up = rest > 0x1000 || (rest === 0x1000 && (h & 1) === 1) ? 1 : 0;
    return sign | Math.min(h + up, 0x7c00);
  }
  // Subnormal f16 (units of 2^-24), or zero. The f32 value is m·2^(exp−150) with the implicit bit.
  if (exp < 102) return sign; // below 2^-25: rounds to zero (f32 subnormals included)
  const m = mant | 0x800000;
  const shift = 126 - exp; // 14..24
  const h = m >>> shift;
  const rest = m & ((1 << shift) - 1);
  const half = 1 << (shift - 1);
  const up = rest > half || (rest === half && (h & 1) === 1) ? 1 : 0;
  return sign | (h + up);
}

/** bfloat16 bits → number: bf16 is the top half of an f32. */
export function bf16ToF32(bits: number): number {
  return f32FromBits((bits & 0xffff) << 16);
}

/** number → bfloat16 bits, as ggml's GGML_FP32_TO_BF16: ties to even; NaN is made quiet. */
export function f32ToBf16(x: number): number {
  const w = f32Bits(x);
  if ((w & 0x7fffffff) > 0x7f800000) return ((w >>> 16) | 64) & 0xffff;
  return ((w + 0x7fff + ((w >>> 16) & 1)) >>> 16) & 0xffff;
}
