// Small SIMD helpers shared by the kernels: f32x4 multiply-add (a fused FMA in the relaxed-SIMD
// build), horizontal sums, exp, dot products and weighted row sums.

// @ts-ignore: decorator
@inline export function splat(x: f32): v128 {
  return f32x4.splat(x);
}

// c + a·b: one fused multiply-add in the relaxed build (where the CPU has FMA; the engine may
// fall back to multiply-then-add), a multiply then an add in SIMD128, which has no FMA.
// @ts-ignore: decorator
@inline export function madd(c: v128, a: v128, b: v128): v128 {
  if (ASC_FEATURE_RELAXED_SIMD) return f32x4.relaxed_madd(a, b, c);
  return f32x4.add(c, f32x4.mul(a, b));
}

// @ts-ignore: decorator
@inline export function hsum(v: v128): f32 {
  return f32x4.extract_lane(v, 0) + f32x4.extract_lane(v, 1) + (f32x4.extract_lane(v, 2) + f32x4.extract_lane(v, 3));
}

// @ts-ignore: decorator
@inline export function hmax(v: v128): f32 {
  return max(max(f32x4.extract_lane(v, 0), f32x4.extract_lane(v, 1)), max(f32x4.extract_lane(v, 2), f32x4.extract_lane(v, 3)));
}

/**
 * exp(x) on four lanes (Cephes expf: range reduction by ln 2, degree-6 polynomial, ~1 ulp).
 * Inputs below -87.3 give 0 (so exp(-inf) = 0); inputs above 88 saturate at exp(88), which only
 * matters for sigmoid of very negative numbers, where it changes nothing visible.
 */
// @ts-ignore: decorator
@inline export function expv(x: v128): v128 {
  const under = f32x4.lt(x, splat(-87.3));
  // pmin/pmax map to a single minps/maxps and keep NaN when it is the first operand.
  x = f32x4.pmax(f32x4.pmin(x, splat(88.0)), splat(-87.3));
  // n = round(x·log2 e): adding 1.5·2^23 leaves n in the low mantissa bits (cheaper in V8 than
  // floor + trunc_sat, which carries NaN/overflow fix-ups).
  const t = madd(splat(12582912.0), x, splat(1.44269504088896341));
  const fx = f32x4.sub(t, splat(12582912.0));
  x = f32x4.sub(x, f32x4.mul(fx, splat(0.693359375)));
  x = f32x4.sub(x, f32x4.mul(fx, splat(-2.12194440e-4)));
  const z = f32x4.mul(x, x);
  let y = madd(splat(1.3981999507e-3), splat(1.9875691500e-4), x);
  y = madd(splat(8.3334519073e-3), y, x);
  y = madd(splat(4.1665795894e-2), y, x);
  y = madd(splat(1.6666665459e-1), y, x);
  y = madd(splat(5.0000001201e-1), y, x);
  y = f32x4.add(madd(x, y, z), splat(1.0));
  // 2^n built directly in the exponent field: n + 127 ∈ [1, 254] after the clamp above, and the
  // shift drops the magic number's high bits.
  const pow2 = i32x4.shl(i32x4.add(t, i32x4.splat(127)), 23);
  return v128.andnot(f32x4.mul(y, pow2), under);
}

// @ts-ignore: decorator
@inline export function exps(x: f32): f32 {
  return f32x4.extract_lane(expv(splat(x)), 0);
}

/** Σ a[i]·b[i] for i < n. */
export function dot(a: usize, b: usize, n: i32): f32 {
  let s0 = splat(0), s1 = splat(0);
  let i = 0;
  for (; i + 8 <= n; i += 8) {
    const o = <usize>i << 2;
    s0 = madd(s0, v128.load(a + o), v128.load(b + o));
    s1 = madd(s1, v128.load(a + o, 16), v128.load(b + o, 16));
  }
  for (; i + 4 <= n; i += 4) {
    const o = <usize>i << 2;
    s0 = madd(s0, v128.load(a + o), v128.load(b + o));
  }
  let s = hsum(f32x4.add(s0, s1));
  for (; i < n; i++) s += load<f32>(a + (<usize>i << 2)) * load<f32>(b + (<usize>i << 2));
  return s;
}

/** dst[i] += alpha·src[i] for i < n. */
export function axpyRaw(dst: usize, src: usize, alpha: f32, n: i32): void {
  const av = splat(alpha);
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    const o = <usize>i << 2;
    v128.store(dst + o, madd(v128.load(dst + o), av, v128.load(src + o)));
  }
  for (; i < n; i++) {
    const o = <usize>i << 2;
    store<f32>(dst + o, load<f32>(dst + o) + alpha * load<f32>(src + o));
  }
}

/**
 * Weighted sum of strided rows: dst[d] (+)= Σ_{s<count} w[s·wstride]·src[s·stride + d] for d < n
 * (strides in bytes). Columns are processed 16 at a time so the partial sums stay in registers.
 */
export function wsum(dst: usize, w: usize, wstride: usize, src: usize, count: i32, stride: usize, n: i32, accumulate: bool): void {
  let d = 0;
  for (; d + 16 <= n; d += 16) {
    const o = <usize>d << 2;
    let a0 = splat(0), a1 = a0, a2 = a0, a3 = a0;
    if (accumulate) {
      a0 = v128.load(dst + o); a1 = v128.load(dst + o, 16); a2 = v128.load(dst + o, 32); a3 = v128.load(dst + o, 48);
    }
    let p = src + o, wp = w;
    for (let s = 0; s < count; s++) {
      const ws = v128.load32_splat(wp);
      a0 = madd(a0, ws, v128.load(p)); a1 = madd(a1, ws, v128.load(p, 16));
      a2 = madd(a2, ws, v128.load(p, 32)); a3 = madd(a3, ws, v128.load(p, 48));
      p += stride;
      wp += wstride;
    }
    v128.store(dst + o, a0); v128.store(dst + o, a1, 16); v128.store(dst + o, a2, 32); v128.store(dst + o, a3, 48);
  }
  for (; d + 4 <= n; d += 4) {
    const o = <usize>d << 2;
    let a0 = accumulate ? v128.load(dst + o) : splat(0);
    let p = src + o, wp = w;
    for (let s = 0; s < count; s++) {
      a0 = madd(a0, v128.load32_splat(wp), v128.load(p));
      p += stride;
      wp += wstride;
    }
    v128.store(dst + o, a0);
  }
  for (; d < n; d++) {
    const o = <usize>d << 2;
    let a: f32 = accumulate ? load<f32>(dst + o) : 0;
    let p = src + o, wp = w;
    for (let s = 0; s < count; s++) {
      a += load<f32>(wp) * load<f32>(p);
      p += stride;
      wp += wstride;
    }
    store<f32>(dst + o, a);
  }
}
