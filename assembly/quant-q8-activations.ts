// Quantized weights × activations rounded to Q8_0: llama.cpp's integer path.
//
// llama.cpp multiplies Q8_0/Q4_0 weights by activations quantized to Q8_0 per 32-block
// (quantize_row_q8_0: d = amax/127 rounded to f16, q = round(x·127/amax)) with integer dot products,
// one float multiply-add per block: Σ_b d_w·d_x·Σ_e q_w·q_x. Faster than decoding to floats, at
// the price of rounding the activations; the float kernel above stays the reference.

import { matmulF16Rounded } from "./f16-weights";
import { F16, Q4_0, Q8_0, blockHigh, blockLow, halfToFloat } from "./quant-blocks";
import { hmax, hsum, madd, splat } from "./simd";

// x ≥ 0 rounded to the nearest f16 value (ties to even), as f32: llama.cpp stores d as f16.
// @ts-ignore: decorator
@inline export function roundToHalf(x: f32): f32 {
  if (x < 6.103515625e-5) return f32.nearest(x * 16777216.0) / 16777216.0; // subnormal f16 steps: 2^−24
  const b = reinterpret<u32>(x);
  return reinterpret<f32>((b + 0xfff + ((b >> 13) & 1)) & 0xffffe000);
}

/**
 * Rows of x [m,k] → their Q8_0 integers [m,k] at q, stored widened to i16 (the dot products take
 * i16 lanes: widening once here saves it per weight row), and f32 block scales [m, k/32] at d.
 */
export function quantizeRowsQ8(q: usize, d: usize, x: usize, m: i32, k: i32): void {
  const blocks = m * (k >> 5);
  for (let b = 0; b < blocks; b++) {
    const v0 = v128.load(x), v1 = v128.load(x, 16), v2 = v128.load(x, 32), v3 = v128.load(x, 48);
    const v4 = v128.load(x, 64), v5 = v128.load(x, 80), v6 = v128.load(x, 96), v7 = v128.load(x, 112);
    const a = f32x4.max(f32x4.max(f32x4.max(f32x4.abs(v0), f32x4.abs(v1)), f32x4.max(f32x4.abs(v2), f32x4.abs(v3))),
      f32x4.max(f32x4.max(f32x4.abs(v4), f32x4.abs(v5)), f32x4.max(f32x4.abs(v6), f32x4.abs(v7))));
    const amax = hmax(a);
    const scale: f32 = amax / 127;
    store<f32>(d, roundToHalf(scale));
    // As llama.cpp's x86 SIMD quantize_row_q8_0 (the build node-llama-cpp runs): x·(127/amax)
    // rounded half to even (ggml's scalar reference uses x·(1/d) and roundf).
    const id = splat(amax != 0 ? <f32>127 / amax : 0);
    const r0 = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v0, id)));
    const r1 = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v1, id)));
    const r2 = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v2, id)));
    const r3 = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v3, id)));
    const r4 = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v4, id)));
    const r5 = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v5, id)));
    const r6 = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v6, id)));
    const r7 = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v7, id)));
    v128.store(q, i16x8.narrow_i32x4_s(r0, r1)); v128.store(q, i16x8.narrow_i32x4_s(r2, r3), 16);
    v128.store(q, i16x8.narrow_i32x4_s(r4, r5), 32); v128.store(q, i16x8.narrow_i32x4_s(r6, r7), 48);
    x += 128;
    q += 64;
    d += 4;
  }
}

/** Σ over 16 lane pairs of int8 weights q and i16 activations at x, as four i32 partial sums. */
// @ts-ignore: decorator
@inline export function dotI8(q: v128, x: usize): v128 {
  return i32x4.add(
    i32x4.dot_i16x8_s(i16x8.extend_low_i8x16_s(q), v128.load(x)),
    i32x4.dot_i16x8_s(i16x8.extend_high_i8x16_s(q), v128.load(x, 16)),
  );
}

// IEEE binary16 bits → f32 without branches for finite values: the 15 magnitude bits shifted into
// an f32 with exponent bias 127 − 112 are the half's value times 2^−112 (subnormals included, as
// f32 subnormals), so one multiply by 2^112 rescales exactly. Inf/NaN take the exact helper.
// @ts-ignore: decorator
@inline export function halfToFloatFast(h: u32): f32 {
  if ((h & 0x7c00) == 0x7c00) return halfToFloat(h);
  return reinterpret<f32>(((h & 0x8000) << 16) | reinterpret<u32>(reinterpret<f32>((h & 0x7fff) << 13) * 5.192296858534828e33));
}

/** Σ_b d_w·d_x·Σ_e q_w·q_x over a row of W and a quantized row of x (i16 lanes). */
// @ts-ignore: decorator
@inline export function quantRowDotQ8(w: usize, xq: usize, xd: usize, blocks: i32, type: i32, blockBytes: usize): f32 {
  let acc = splat(0);
  for (let b = 0; b < blocks; b++) {
    const s = i32x4.add(dotI8(blockLow(w, type), xq), dotI8(blockHigh(w, type), xq + 32));
    acc = madd(acc, f32x4.convert_i32x4_s(s), splat(halfToFloatFast(<u32>load<u16>(w)) * load<f32>(xd)));
    w += blockBytes;
    xq += 64;
    xd += 4;
  }
  return hsum(acc);
}

/**
 * Bytes of scratch matmulQuantizedQ8 needs: x's integers (as i16) plus its block scales; for F16
 * weights, x rounded to f16 (held as f32).
 */
export function matmulQuantizedQ8ScratchBytes(m: i32, k: i32, type: i32): usize {
  if (type == F16) return <usize>m * <usize>k << 2;
  return (<usize>m * <usize>k << 1) + (<usize>m * <usize>(k >> 5) << 2);
}

/**
 * matmulQuantized's contract with llama.cpp's numerics: activations quantized to Q8_0 and integer
 * dot products for Q8_0/Q4_0 weights; rounded to f16 for F16 weights and summed in the order of
 * the ggml build `f16Order` names (F16_ORDER_AVX512 or F16_ORDER_AVX; see matmulF16Rounded).
 */
export function matmulQuantizedQ8(c: usize, a: usize, w: usize, m: i32, n: i32, k: i32, type: i32, accumulate: i32, scratch: usize, f16Order: i32): void {
  if (type == F16) {
    matmulF16Rounded(c, a, w, m, n, k, accumulate, scratch, f16Order);
    return;
  }
  const blocks = k >> 5;
  const blockBytes: usize = type == Q8_0 ? 34 : 18;
  const rowBytes = <usize>blocks * blockBytes;
  const xq = scratch, xd = scratch + (<usize>m * <usize>k << 1);
  quantizeRowsQ8(xq, xd, a, m, k);
  const ldc = <usize>n << 2;
  for (let j = 0; j < n; j++) {
    const wr = w + <usize>j * rowBytes;
    for (let i = 0; i < m; i++) {
      const xqi = xq + (<usize>i * <usize>k << 1), xdi = xd + (<usize>(i * blocks) << 2);
      const t = type == Q8_0 ? quantRowDotQ8(wr, xqi, xdi, blocks, Q8_0, 34) : quantRowDotQ8(wr, xqi, xdi, blocks, Q4_0, 18);
      const co = c + <usize>i * ldc + (<usize>j << 2);
      store<f32>(co, accumulate ? load<f32>(co) + t : t);
    }
  }
}
