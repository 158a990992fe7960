// F16 weight matrices: in float, and rounded as llama.cpp does.
//
// W [n, k] as n rows of k IEEE binary16 values (any k; llama-quantize keeps a matrix F16 when its
// rows are not whole blocks). Converted to f32 exactly on the fly. With f32 activations this is
// the dequantized float product up to summation order. llama.cpp instead rounds the activations to
// f16 first (F16's vec_dot_type is F16) and runs ggml_vec_dot_f16; matmulF16Rounded does the same,
// in the order of the AVX-512 or the AVX/AVX2 build, so that decoding reproduces llama.cpp's
// numbers on either. (ARM builds with FP16 vector arithmetic accumulate in f16, which this does
// not reproduce.)

import { add } from "./elementwise";
import { matmul, matmulScratchBytes } from "./gemm";
import { F16_ORDER_AVX, QROWS, halfToFloat } from "./quant-blocks";
import { madd, splat } from "./simd";

// Four f16 (bits in the i32 lanes of h) → f32, exactly: the 15 magnitude bits shifted into an
// f32 are the value times 2^−112 (subnormals included, as f32 subnormals), so one multiply by
// 2^112 rescales exactly; exponent 31 (inf/NaN) is built directly.
// @ts-ignore: decorator
@inline export function halfLanes(h: v128): v128 {
  const mag = v128.and(h, i32x4.splat(0x7fff));
  const sign = i32x4.shl(v128.xor(h, mag), 16);
  const bits = i32x4.shl(mag, 13);
  const finite = f32x4.mul(bits, splat(5.192296858534828e33));
  const special = i32x4.ge_s(mag, i32x4.splat(0x7c00));
  if (!v128.any_true(special)) return v128.or(sign, finite); // weights are finite: no select
  return v128.or(sign, v128.bitselect(v128.or(bits, i32x4.splat(0x7f800000)), finite, special));
}

// f32 lanes rounded to the nearest f16 value (ties to even), as f32: what ggml's FP32_TO_FP16
// (F16C's vcvtps2ph) then FP16_TO_FP32 give. Subnormal f16 are multiples of 2^−24; from 65520 up
// the result is infinity; NaN stays NaN.
// @ts-ignore: decorator
@inline export function roundHalfLanes(x: v128): v128 {
  const a = f32x4.abs(x);
  // Normal range: drop 13 of the 23 mantissa bits, rounding to even (a carry bumps the exponent).
  const lsb = v128.and(i32x4.shr_u(a, 13), i32x4.splat(1));
  const normal = v128.and(i32x4.add(i32x4.add(a, i32x4.splat(0xfff)), lsb), i32x4.splat(0xffffe000));
  const sub = f32x4.mul(f32x4.nearest(f32x4.mul(a, splat(16777216.0))), splat(5.9604644775390625e-8));
  let r = v128.bitselect(sub, normal, f32x4.lt(a, splat(6.103515625e-5)));
  // a·∞: ∞ for a ≥ 65520, NaN for NaN.
  r = v128.bitselect(r, f32x4.mul(a, splat(<f32>Infinity)), f32x4.lt(a, splat(65520.0)));
  return v128.or(r, v128.xor(x, a)); // the sign back
}

/**
 * Σ_e W[e]·x[e] over k f16 weights at w and f32 x, in ggml_vec_dot_f16's order on AVX-512 (no
 * FP16 arithmetic): 64 elements per step into 4 accumulators of 16 lanes (here 4 f32x4 each), those
 * reduced as GGML_F32x16_REDUCE — x0+x2, x1+x3, then their sum, then _mm512_reduce_add_ps's
 * halving tree — and the k mod 64 leftovers added in f64, rounded to f32 at the end. With x
 * already f16 values every product is exact in f32 (11 × 11 significant bits), so mul + add here
 * equals ggml's FMA.
 */
export function f16RowDot(w: usize, x: usize, k: i32): f32 {
  const np = k & ~63;
  // Accumulator j (of 4) takes elements 16j..16j+15 of every 64-element step. Lanes are
  // independent, so each is summed in a pass of its own (4 live f32x4, no spills) and folded
  // into GGML_F32x16_REDUCE's x0 = (x0 + x2) + (x1 + x3) as soon as its partner is done.
  let a0 = splat(0), a1 = a0, a2 = a0, a3 = a0, c0 = a0, c1 = a0, c2 = a0, c3 = a0;
  for (let j = 0; j < 4; j++) {
    let s0 = splat(0), s1 = s0, s2 = s0, s3 = s0;
    let wp = w + (<usize>j << 5), xp = x + (<usize>j << 6);
    for (let i = 0; i < np; i += 64) {
      const h = v128.load(wp), g = v128.load(wp, 16);
      s0 = madd(s0, halfLanes(i32x4.extend_low_i16x8_u(h)), v128.load(xp)); s1 = madd(s1, halfLanes(i32x4.extend_high_i16x8_u(h)), v128.load(xp, 16));
      s2 = madd(s2, halfLanes(i32x4.extend_low_i16x8_u(g)), v128.load(xp, 32)); s3 = madd(s3, halfLanes(i32x4.extend_high_i16x8_u(g)), v128.load(xp, 48));
      wp += 128;
      xp += 256;
    }
    if (j == 0) { a0 = s0; a1 = s1; a2 = s2; a3 = s3; } // x0
    else if (j == 1) { c0 = s0; c1 = s1; c2 = s2; c3 = s3; } // x1
    else if (j == 2) { a0 = f32x4.add(a0, s0); a1 = f32x4.add(a1, s1); a2 = f32x4.add(a2, s2); a3 = f32x4.add(a3, s3); } // x0 + x2
    else { c0 = f32x4.add(c0, s0); c1 = f32x4.add(c1, s1); c2 = f32x4.add(c2, s2); c3 = f32x4.add(c3, s3); } // x1 + x3
  }
  // (x0 + x2) + (x1 + x3), lanes 0–3, 4–7, 8–11, 12–15; then the halving tree of
  // _mm512_reduce_add_ps: 8 lanes (8–15 + 0–7), 4 lanes, then (l0 + l2) + (l1 + l3).
  const t0 = f32x4.add(a0, c0), t1 = f32x4.add(a1, c1), t2 = f32x4.add(a2, c2), t3 = f32x4.add(a3, c3);
  const q = f32x4.add(f32x4.add(t3, t1), f32x4.add(t2, t0));
  let sum = <f64>((f32x4.extract_lane(q, 0) + f32x4.extract_lane(q, 2)) + (f32x4.extract_lane(q, 1) + f32x4.extract_lane(q, 3)));
  for (let i = np; i < k; i++) sum += <f64>(halfToFloat(<u32>load<u16>(w + (<usize>i << 1))) * load<f32>(x + (<usize>i << 2)));
  return <f32>sum;
}

/**
 * f16RowDot in ggml_vec_dot_f16's order on AVX/AVX2 (F16C): 32 elements per step into 4
 * accumulators of 8 lanes, reduced as GGML_F32x8_REDUCE — x0+x2, x1+x3, x0+x1, then the two
 * 128-bit halves added and two _mm_hadd_ps: (l0 + l1) + (l2 + l3) — and the k mod 32 leftovers
 * added in f64.
 */
export function f16RowDotAvx(w: usize, x: usize, k: i32): f32 {
  const np = k & ~31;
  let a0 = splat(0), a1 = a0, b0 = a0, b1 = a0, c0 = a0, c1 = a0, d0 = a0, d1 = a0;
  for (let i = 0; i < np; i += 32) {
    const h = v128.load(w), g = v128.load(w, 16), e = v128.load(w, 32), f = v128.load(w, 48);
    a0 = madd(a0, halfLanes(i32x4.extend_low_i16x8_u(h)), v128.load(x)); a1 = madd(a1, halfLanes(i32x4.extend_high_i16x8_u(h)), v128.load(x, 16));
    b0 = madd(b0, halfLanes(i32x4.extend_low_i16x8_u(g)), v128.load(x, 32)); b1 = madd(b1, halfLanes(i32x4.extend_high_i16x8_u(g)), v128.load(x, 48));
    c0 = madd(c0, halfLanes(i32x4.extend_low_i16x8_u(e)), v128.load(x, 64)); c1 = madd(c1, halfLanes(i32x4.extend_high_i16x8_u(e)), v128.load(x, 80));
    d0 = madd(d0, halfLanes(i32x4.extend_low_i16x8_u(f)), v128.load(x, 96)); d1 = madd(d1, halfLanes(i32x4.extend_high_i16x8_u(f)), v128.load(x, 112));
    w += 64;
    x += 128;
  }
  // x0 = (x0 + x2) + (x1 + x3), lanes 0–3 and 4–7; then low half + high half.
  const t = f32x4.add(f32x4.add(f32x4.add(a0, c0), f32x4.add(b0, d0)), f32x4.add(f32x4.add(a1, c1), f32x4.add(b1, d1)));
  let sum = <f64>((f32x4.extract_lane(t, 0) + f32x4.extract_lane(t, 1)) + (f32x4.extract_lane(t, 2) + f32x4.extract_lane(t, 3)));
  for (let i = np; i < k; i++) sum += <f64>(halfToFloat(<u32>load<u16>(w + (<usize>(i - np) << 1))) * load<f32>(x + (<usize>(i - np) << 2)));
  return <f32>sum;
}

/** dst[0..k) = a row of k f16 values as f32. */
export function dequantizeRowF16(dst: usize, w: usize, k: i32): void {
  let i = 0;
  for (; i + 8 <= k; i += 8) {
    const h = v128.load(w + (<usize>i << 1));
    v128.store(dst + (<usize>i << 2), halfLanes(i32x4.extend_low_i16x8_u(h)));
    v128.store(dst + (<usize>i << 2), halfLanes(i32x4.extend_high_i16x8_u(h)), 16);
  }
  for (; i < k; i++) store<f32>(dst + (<usize>i << 2), halfToFloat(<u32>load<u16>(w + (<usize>i << 1))));
}

/** matmulQuantized for F16 weights, f32 activations: as the block formats, one row (or panel) at a time. */
export function matmulF16(c: usize, a: usize, w: usize, m: i32, n: i32, k: i32, accumulate: i32, scratch: usize): void {
  const rowBytes = <usize>k << 1, ldc = <usize>n << 2;
  if (m == 1) {
    for (let j = 0; j < n; j++) {
      const t = f16RowDot(w + <usize>j * rowBytes, a, k);
      const co = c + (<usize>j << 2);
      store<f32>(co, accumulate ? load<f32>(co) + t : t);
    }
    return;
  }
  const panel = scratch + matmulScratchBytes();
  const tmp = panel + (<usize>QROWS * <usize>k << 2);
  for (let j0 = 0; j0 < n; j0 += QROWS) {
    const rows = min(QROWS, n - j0);
    for (let r = 0; r < rows; r++) dequantizeRowF16(panel + (<usize>r * <usize>k << 2), w + <usize>(j0 + r) * rowBytes, k);
    matmul(tmp, a, panel, m, rows, k, 0, 1, 0, scratch);
    for (let i = 0; i < m; i++) {
      const src = tmp + (<usize>(i * rows) << 2), dst = c + <usize>i * ldc + (<usize>j0 << 2);
      if (accumulate) add(dst, dst, src, rows);
      else memory.copy(dst, src, <usize>rows << 2);
    }
  }
}

/**
 * matmulQuantized for F16 weights as llama.cpp computes it: x [m,k] rounded to f16 into scratch
 * (m·k f32), then each output one f16RowDot. Every row of W has the same arithmetic wherever it
 * lies, so thread splits give bitwise identical results.
 */
export function matmulF16Rounded(c: usize, a: usize, w: usize, m: i32, n: i32, k: i32, accumulate: i32, scratch: usize, order: i32): void {
  const total = m * k;
  let i = 0;
  for (; i + 4 <= total; i += 4) v128.store(scratch + (<usize>i << 2), roundHalfLanes(v128.load(a + (<usize>i << 2))));
  for (; i < total; i++) store<f32>(scratch + (<usize>i << 2), f32x4.extract_lane(roundHalfLanes(f32x4.splat(load<f32>(a + (<usize>i << 2)))), 0));
  const rowBytes = <usize>k << 1, ldc = <usize>n << 2, lda = <usize>k << 2;
  for (let j = 0; j < n; j++) {
    const wr = w + <usize>j * rowBytes;
    for (let r = 0; r < m; r++) {
      const xr = scratch + <usize>r * lda;
      const t = order == F16_ORDER_AVX ? f16RowDotAvx(wr, xr, k) : f16RowDot(wr, xr, k);
      const co = c + <usize>r * ldc + (<usize>j << 2);
      store<f32>(co, accumulate ? load<f32>(co) + t : t);
    }
  }
}
