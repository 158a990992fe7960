// Quantized weights × activations rounded to Q8_0: llama.cpp's integer path.
//
// llama.cpp multiplies Q8_0/Q4_0 weights by activations quantized to Q8_0 per 32-block
// (quantize_row_q8_0: d = amax/127 rounded to f16, q = round(x·127/amax)) with integer dot products,
// one float multiply-add per block: Σ_b d_w·d_x·Σ_e q_w·q_x. Faster than decoding to floats, at
// the price of rounding the activations; the float kernels stay the reference.
//
// The integer dot products: SIMD128 widens both sides to i16 for i32x4.dot_i16x8_s (activations
// widened once per row, weights per block). The relaxed build multiplies Q4_0 blocks as bytes, as
// ggml's maddubs path: two i16x8.relaxed_dot_i8x16_i7x16_s per block, whose pair sums are added
// and widened once (i32x4.extadd_pairwise_i16x8_s); the weights' unsigned nibbles q ∈ [0, 15]
// are the 7-bit operand, so every engine computes the same exact sums, the activations the
// signed one, and the −8 offset comes in as a per-block correction −8·Σx computed once with the
// activations. (The fused i32x4.relaxed_dot_i8x16_i7x16_add_s would save two instructions, but
// Node 20's implementation of it is wrong; see relaxed-probe.ts.) Q8_0 weights keep the i16 path in both builds: both of its operands
// are full bytes, and moving the sign onto the activations (wasm has no sign instruction) costs
// what the byte dot product saves.

import { halfLanes, matmulF16Rounded } from "./f16-weights";
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
 * Rows of x [m,k] → their Q8_0 integers [m,k] at q and f32 block scales [m, k/32] at d. The integers
 * are stored widened to i16 (the SIMD128 dot products take i16 lanes: widening once here saves it
 * per weight row), or with `bytes` as i8 and, per block, the i16x8 correction −8·Σx of the
 * relaxed Q4_0 dot product (lane i: elements 2i, 2i+1, 16+2i and 17+2i) at corr.
 */
export function quantizeRowsQ8(q: usize, d: usize, corr: usize, x: usize, m: i32, k: i32, bytes: bool): void {
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
    const h0 = i16x8.narrow_i32x4_s(r0, r1), h1 = i16x8.narrow_i32x4_s(r2, r3);
    const h2 = i16x8.narrow_i32x4_s(r4, r5), h3 = i16x8.narrow_i32x4_s(r6, r7);
    x += 128;
    d += 4;
    if (ASC_FEATURE_RELAXED_SIMD && bytes) {
      const lo = i8x16.narrow_i16x8_s(h0, h1), hi = i8x16.narrow_i16x8_s(h2, h3);
      v128.store(q, lo);
      v128.store(q, hi, 16);
      const eight = i8x16.splat(8);
      v128.store(corr, i16x8.neg(i16x8.add(i16x8.relaxed_dot_i8x16_i7x16_s(lo, eight), i16x8.relaxed_dot_i8x16_i7x16_s(hi, eight))));
      q += 32;
      corr += 16;
    } else {
      v128.store(q, h0); v128.store(q, h1, 16); v128.store(q, h2, 32); v128.store(q, h3, 48);
      q += 64;
    }
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

/**
 * Σ_b d_w·d_x·Σ_e q_w·q_x over a row of W and a quantized row of x (i16 lanes). The relaxed build
 * takes four blocks at a time, as quantRowDotQ4Bytes; SIMD128 keeps one block per step (its
 * order is the one the llama.cpp comparisons were measured in).
 */
// @ts-ignore: decorator
@inline export function quantRowDotQ8(w: usize, xq: usize, xd: usize, blocks: i32, type: i32, blockBytes: usize): f32 {
  let acc = splat(0), acc1 = acc;
  let b = 0;
  if (ASC_FEATURE_RELAXED_SIMD)
    for (; b + 4 <= blocks; b += 4) {
      let h = i32x4.splat(<i32>load<u16>(w));
      h = i32x4.replace_lane(h, 1, <i32>load<u16>(w + blockBytes));
      h = i32x4.replace_lane(h, 2, <i32>load<u16>(w + 2 * blockBytes));
      h = i32x4.replace_lane(h, 3, <i32>load<u16>(w + 3 * blockBytes));
      const d = f32x4.mul(halfLanes(h), v128.load(xd));
      acc = madd(acc, q8BlockI16(w, xq, type), i32x4.shuffle(d, d, 0, 0, 0, 0));
      acc1 = madd(acc1, q8BlockI16(w + blockBytes, xq + 64, type), i32x4.shuffle(d, d, 1, 1, 1, 1));
      acc = madd(acc, q8BlockI16(w + 2 * blockBytes, xq + 128, type), i32x4.shuffle(d, d, 2, 2, 2, 2));
      acc1 = madd(acc1, q8BlockI16(w + 3 * blockBytes, xq + 192, type), i32x4.shuffle(d, d, 3, 3, 3, 3));
      w += 4 * blockBytes;
      xq += 256;
      xd += 16;
    }
  for (; b < blocks; b++) {
    acc = madd(acc, q8BlockI16(w, xq, type), splat(halfToFloatFast(<u32>load<u16>(w)) * load<f32>(xd)));
    w += blockBytes;
    xq += 64;
    xd += 4;
  }
  return hsum(ASC_FEATURE_RELAXED_SIMD ? f32x4.add(acc, acc1) : acc);
}

/** Σ_e q_w·q_x of one block of W and one of x (i16 lanes), as four f32 partial sums. */
// @ts-ignore: decorator
@inline function q8BlockI16(w: usize, xq: usize, type: i32): v128 {
  return f32x4.convert_i32x4_s(i32x4.add(dotI8(blockLow(w, type), xq), dotI8(blockHigh(w, type), xq + 32)));
}

/**
 * Σ_e x·(q − 8) of one Q4_0 block and one block of x as bytes, as four f32 partial sums: the
 * correction −8·Σx plus Σ x·q by relaxed dot products (relaxed build only).
 */
// @ts-ignore: decorator
@inline function q4BlockBytes(w: usize, xq: usize, corr: usize): v128 {
  const packed = v128.load(w, 2);
  // |pair sums| ≤ 2·127·15 each and |correction| ≤ 4·8·127: the i16 lanes never overflow.
  const lo = i16x8.relaxed_dot_i8x16_i7x16_s(v128.load(xq), v128.and(packed, i8x16.splat(0x0f)));
  const hi = i16x8.relaxed_dot_i8x16_i7x16_s(v128.load(xq, 16), i8x16.shr_u(packed, 4));
  return f32x4.convert_i32x4_s(i32x4.extadd_pairwise_i16x8_s(i16x8.add(i16x8.add(lo, hi), v128.load(corr))));
}

/**
 * Σ_b d_w·d_x·Σ_e q_w·q_x over a row of Q4_0 weights and a row of x quantized to bytes with its
 * corrections (relaxed build). Four blocks at a time: their scales d_w·d_x come from one vector
 * f16 conversion and one multiply, and two accumulators keep two FMA chains in flight.
 */
// @ts-ignore: decorator
@inline function quantRowDotQ4Bytes(w: usize, xq: usize, xd: usize, corr: usize, blocks: i32): f32 {
  let acc0 = splat(0), acc1 = acc0;
  // Only the relaxed build calls this (q8Bytes); the guard keeps SIMD128 from compiling it.
  if (ASC_FEATURE_RELAXED_SIMD) {
    let b = 0;
    for (; b + 4 <= blocks; b += 4) {
      let h = i32x4.splat(<i32>load<u16>(w));
      h = i32x4.replace_lane(h, 1, <i32>load<u16>(w, 18));
      h = i32x4.replace_lane(h, 2, <i32>load<u16>(w, 36));
      h = i32x4.replace_lane(h, 3, <i32>load<u16>(w, 54));
      const d = f32x4.mul(halfLanes(h), v128.load(xd));
      acc0 = madd(acc0, q4BlockBytes(w, xq, corr), i32x4.shuffle(d, d, 0, 0, 0, 0));
      acc1 = madd(acc1, q4BlockBytes(w + 18, xq + 32, corr + 16), i32x4.shuffle(d, d, 1, 1, 1, 1));
      acc0 = madd(acc0, q4BlockBytes(w + 36, xq + 64, corr + 32), i32x4.shuffle(d, d, 2, 2, 2, 2));
      acc1 = madd(acc1, q4BlockBytes(w + 54, xq + 96, corr + 48), i32x4.shuffle(d, d, 3, 3, 3, 3));
      w += 72;
      xq += 128;
      xd += 16;
      corr += 64;
    }
    for (; b < blocks; b++) {
      acc0 = madd(acc0, q4BlockBytes(w, xq, corr), splat(halfToFloatFast(<u32>load<u16>(w)) * load<f32>(xd)));
      w += 18;
      xq += 32;
      xd += 4;
      corr += 16;
    }
  }
  return hsum(f32x4.add(acc0, acc1));
}

// Whether x is stored as bytes with corrections (the relaxed build's Q4_0 path) or as i16.
// @ts-ignore: decorator
@inline function q8Bytes(type: i32): bool {
  return ASC_FEATURE_RELAXED_SIMD && type == Q4_0;
}

/**
 * Bytes of scratch matmulQuantizedQ8 needs: x's integers (i16, or bytes and their corrections)
 * plus its block scales; for F16 weights, x rounded to f16 (held as f32).
 */
export function matmulQuantizedQ8ScratchBytes(m: i32, k: i32, type: i32): usize {
  if (type == F16) return <usize>m * <usize>k << 2;
  const mk = <usize>m * <usize>k, blocks = <usize>m * <usize>(k >> 5);
  if (q8Bytes(type)) return mk + (blocks << 2) + (blocks << 4);
  return (mk << 1) + (blocks << 2);
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
  const bytes = q8Bytes(type);
  const xBytes: usize = bytes ? 1 : 2; // per activation
  const xq = scratch, xd = scratch + <usize>m * <usize>k * xBytes, corr = xd + (<usize>(m * blocks) << 2);
  quantizeRowsQ8(xq, xd, corr, a, m, k, bytes);
  const ldc = <usize>n << 2;
  for (let j = 0; j < n; j++) {
    const wr = w + <usize>j * rowBytes;
    for (let i = 0; i < m; i++) {
      const xqi = xq + <usize>i * <usize>k * xBytes, xdi = xd + (<usize>(i * blocks) << 2);
      const t = bytes
        ? quantRowDotQ4Bytes(wr, xqi, xdi, corr + (<usize>(i * blocks) << 4), blocks)
        : type == Q8_0 ? quantRowDotQ8(wr, xqi, xdi, blocks, Q8_0, 34) : quantRowDotQ8(wr, xqi, xdi, blocks, Q4_0, 18);
      const co = c + <usize>i * ldc + (<usize>j << 2);
      store<f32>(co, accumulate ? load<f32>(co) + t : t);
    }
  }
}
