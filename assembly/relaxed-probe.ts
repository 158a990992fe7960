// Whether the engine runs the relaxed-SIMD instructions the kernels use as the spec defines them
// (src/backend/wasm/kernel-flavour.ts instantiates this before choosing the relaxed build).
// Validation alone is not enough: Node 20's experimental implementation validates
// i32x4.relaxed_dot_i8x16_i7x16_add_s but returns twice the sum.

/** 1 when every instruction gives its defined result on operands inside its exact range. */
export function relaxedSimdWorks(): i32 {
  // Signed bytes × 7-bit bytes, summed in pairs: lanes of (−100·15 + 3·7) and (127·1 − 128·2).
  const a = i8x16(-100, 3, 127, -128, -100, 3, 127, -128, -100, 3, 127, -128, -100, 3, 127, -128);
  const b = i8x16(15, 7, 1, 2, 15, 7, 1, 2, 15, 7, 1, 2, 15, 7, 1, 2);
  const pairs = i16x8.relaxed_dot_i8x16_i7x16_s(a, b);
  if (i16x8.extract_lane_s(pairs, 0) != -1479 || i16x8.extract_lane_s(pairs, 1) != -129) return 0;
  // Fused or not, 3·5 + 1 is 16 exactly.
  const m = f32x4.relaxed_madd(f32x4.splat(3), f32x4.splat(5), f32x4.splat(1));
  if (f32x4.extract_lane(m, 0) != 16 || f32x4.extract_lane(m, 3) != 16) return 0;
  return 1;
}
