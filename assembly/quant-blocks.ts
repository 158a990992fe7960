// Quantized weights (ggml Q8_0 / Q4_0 blocks) multiplied in float.
//
// A quantized matrix W [n, k] is n rows of k/32 blocks, each an f16 scale d followed by 32 int8
// (Q8_0, 34 bytes) or 16 bytes of nibbles (Q4_0, 18 bytes: byte j holds element j in its low
// nibble and j + 16 in its high one, value (q − 8)·d). Blocks are decoded on the fly: int8 lanes
// widened to i32, converted to f32, multiplied with x and scaled by d once per block. Sums are f32.

import { add } from "./elementwise";
import { matmulF16 } from "./f16-weights";
import { matmul, matmulScratchBytes } from "./gemm";
import { hsum, madd, splat } from "./simd";

export const Q8_0: i32 = 0;
export const Q4_0: i32 = 1;
export const F16: i32 = 2; // no blocks: see "f16 weights" below
// ggml_vec_dot_f16's summation orders that llama.cpp's numerics mode reproduces: x86 builds with
// AVX-512 (16 lanes) and with AVX/AVX2 (8 lanes).
export const F16_ORDER_AVX512: i32 = 0;
export const F16_ORDER_AVX: i32 = 1;

// IEEE binary16 bits → f32 (exact).
// @ts-ignore: decorator
@inline export function halfToFloat(h: u32): f32 {
  const sign = (h & 0x8000) << 16;
  const e = (h >> 10) & 0x1f, m = h & 0x3ff;
  if (e == 0) {
    const v = <f32>m * 5.9604644775390625e-8; // zero and subnormals: m·2^−24
    return sign ? -v : v;
  }
  if (e == 31) return reinterpret<f32>(sign | 0x7f800000 | (m << 13));
  return reinterpret<f32>(sign | ((e + 112) << 23) | (m << 13));
}

// The 32 signed integer values of a block as two i8x16 vectors (elements 0–15 and 16–31).
// @ts-ignore: decorator
@inline export function blockLow(w: usize, type: i32): v128 {
  if (type == Q8_0) return v128.load(w, 2);
  return i8x16.sub(v128.and(v128.load(w, 2), i8x16.splat(0x0f)), i8x16.splat(8));
}
// @ts-ignore: decorator
@inline export function blockHigh(w: usize, type: i32): v128 {
  if (type == Q8_0) return v128.load(w, 18);
  return i8x16.sub(i8x16.shr_u(v128.load(w, 2), 4), i8x16.splat(8));
}

// Lanes 4i..4i+3 of 16 int8 as f32.
// @ts-ignore: decorator
@inline export function i8Quarter0(q: v128): v128 { return f32x4.convert_i32x4_s(i32x4.extend_low_i16x8_s(i16x8.extend_low_i8x16_s(q))); }
// @ts-ignore: decorator
@inline export function i8Quarter1(q: v128): v128 { return f32x4.convert_i32x4_s(i32x4.extend_high_i16x8_s(i16x8.extend_low_i8x16_s(q))); }
// @ts-ignore: decorator
@inline export function i8Quarter2(q: v128): v128 { return f32x4.convert_i32x4_s(i32x4.extend_low_i16x8_s(i16x8.extend_high_i8x16_s(q))); }
// @ts-ignore: decorator
@inline export function i8Quarter3(q: v128): v128 { return f32x4.convert_i32x4_s(i32x4.extend_high_i16x8_s(i16x8.extend_high_i8x16_s(q))); }

/** acc + Σ_{e<16} q[e]·x[e] on four lanes. */
// @ts-ignore: decorator
@inline export function dot16(acc: v128, q: v128, x: usize): v128 {
  acc = madd(acc, i8Quarter0(q), v128.load(x));
  acc = madd(acc, i8Quarter1(q), v128.load(x, 16));
  acc = madd(acc, i8Quarter2(q), v128.load(x, 32));
  return madd(acc, i8Quarter3(q), v128.load(x, 48));
}

/** Σ_e W[row][e]·x[e] over `blocks` blocks starting at `w`. */
// @ts-ignore: decorator
@inline export function quantRowDot(w: usize, x: usize, blocks: i32, type: i32, blockBytes: usize): f32 {
  let acc = splat(0);
  for (let b = 0; b < blocks; b++) {
    // Two independent chains per block, then one scale by d.
    const lo = dot16(splat(0), blockLow(w, type), x);
    const hi = dot16(splat(0), blockHigh(w, type), x + 64);
    acc = madd(acc, splat(halfToFloat(<u32>load<u16>(w))), f32x4.add(lo, hi));
    w += blockBytes;
    x += 128;
  }
  return hsum(acc);
}

/** dst[0..32·blocks) = the dequantized row. */
export function dequantizeRow(dst: usize, w: usize, blocks: i32, type: i32, blockBytes: usize): void {
  for (let b = 0; b < blocks; b++) {
    const d = splat(halfToFloat(<u32>load<u16>(w)));
    const lo = blockLow(w, type), hi = blockHigh(w, type);
    v128.store(dst, f32x4.mul(i8Quarter0(lo), d)); v128.store(dst, f32x4.mul(i8Quarter1(lo), d), 16);
    v128.store(dst, f32x4.mul(i8Quarter2(lo), d), 32); v128.store(dst, f32x4.mul(i8Quarter3(lo), d), 48);
    v128.store(dst, f32x4.mul(i8Quarter0(hi), d), 64); v128.store(dst, f32x4.mul(i8Quarter1(hi), d), 80);
    v128.store(dst, f32x4.mul(i8Quarter2(hi), d), 96); v128.store(dst, f32x4.mul(i8Quarter3(hi), d), 112);
    w += blockBytes;
    dst += 128;
  }
}

/** Rows of W dequantized at a time for prefill: a panel for the float GEMM. */
export const QROWS = 128;

/** Bytes of scratch matmulQuantized needs: the float GEMM's, a dequantized panel, its output. */
export function matmulQuantizedScratchBytes(m: i32, k: i32): usize {
  return matmulScratchBytes() + (<usize>QROWS * <usize>k << 2) + (<usize>m * QROWS << 2);
}

/**
 * C[m,n] = (accumulate ? C : 0) + A[m,k]·Wᵀ with W [n,k] quantized (type 0 = Q8_0, 1 = Q4_0;
 * k a multiple of 32). Decode (m = 1) fuses decoding into the dot products; prefill (m > 1)
 * decodes QROWS rows of W at a time into scratch and runs the packed float GEMM on them, so the
 * decoding is paid once per weight, not once per token.
 */
export function matmulQuantized(c: usize, a: usize, w: usize, m: i32, n: i32, k: i32, type: i32, accumulate: i32, scratch: usize): void {
  if (type == F16) {
    matmulF16(c, a, w, m, n, k, accumulate, scratch);
    return;
  }
  const blocks = k >> 5;
  const blockBytes: usize = type == Q8_0 ? 34 : 18;
  const rowBytes = <usize>blocks * blockBytes;
  if (m == 1) {
    for (let j = 0; j < n; j++) {
      const wr = w + <usize>j * rowBytes;
      // Specialised per type so the block decoding has no branch in the loop.
      const t = type == Q8_0 ? quantRowDot(wr, a, blocks, Q8_0, 34) : quantRowDot(wr, a, blocks, Q4_0, 18);
      const co = c + (<usize>j << 2);
      store<f32>(co, accumulate ? load<f32>(co) + t : t);
    }
    return;
  }
  const panel = scratch + matmulScratchBytes();
  const tmp = panel + (<usize>QROWS * <usize>k << 2);
  const ldc = <usize>n << 2;
  for (let j0 = 0; j0 < n; j0 += QROWS) {
    const rows = min(QROWS, n - j0);
    for (let r = 0; r < rows; r++) dequantizeRow(panel + (<usize>r * <usize>k << 2), w + <usize>(j0 + r) * rowBytes, blocks, type, blockBytes);
    matmul(tmp, a, panel, m, rows, k, 0, 1, 0, scratch);
    // The panel's columns j0..j0+rows of C.
    for (let i = 0; i < m; i++) {
      const src = tmp + (<usize>(i * rows) << 2), dst = c + <usize>i * ldc + (<usize>j0 << 2);
      if (accumulate) add(dst, dst, src, rows);
      else memory.copy(dst, src, <usize>rows << 2);
    }
  }
}
