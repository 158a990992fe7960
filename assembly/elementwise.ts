// Elementwise kernels and reductions.

import { axpyRaw, splat } from "./simd";

export function add(out: usize, a: usize, b: usize, n: i32): void {
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    const o = <usize>i << 2;
    v128.store(out + o, f32x4.add(v128.load(a + o), v128.load(b + o)));
  }
  for (; i < n; i++) {
    const o = <usize>i << 2;
    store<f32>(out + o, load<f32>(a + o) + load<f32>(b + o));
  }
}

export function axpy(acc: usize, x: usize, alpha: f32, n: i32): void {
  axpyRaw(acc, x, alpha, n);
}

export function scale(p: usize, s: f32, n: i32): void {
  const sv = splat(s);
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    const o = <usize>i << 2;
    v128.store(p + o, f32x4.mul(v128.load(p + o), sv));
  }
  for (; i < n; i++) {
    const o = <usize>i << 2;
    store<f32>(p + o, load<f32>(p + o) * s);
  }
}

// Reductions accumulate in f64 (two f64x2 accumulators): loss sums and gradient norms over
// millions of numbers would lose digits in f32. Squares are taken in f64 too, exactly.
export function reduce(p: usize, n: i32, squares: bool): f64 {
  let lo = f64x2.splat(0), hi = f64x2.splat(0);
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    const v = v128.load(p + (<usize>i << 2));
    let a = f64x2.promote_low_f32x4(v), b = f64x2.promote_low_f32x4(i32x4.shuffle(v, v, 2, 3, 0, 1));
    if (squares) {
      a = f64x2.mul(a, a);
      b = f64x2.mul(b, b);
    }
    lo = f64x2.add(lo, a);
    hi = f64x2.add(hi, b);
  }
  const t = f64x2.add(lo, hi);
  let s = f64x2.extract_lane(t, 0) + f64x2.extract_lane(t, 1);
  for (; i < n; i++) {
    const x = <f64>load<f32>(p + (<usize>i << 2));
    s += squares ? x * x : x;
  }
  return s;
}

export function sum(p: usize, n: i32): f64 {
  return reduce(p, n, false);
}

export function sumSquares(p: usize, n: i32): f64 {
  return reduce(p, n, true);
}

/** bytes of zeros from p (memory.fill: a typed array's fill is ~10× slower over a shared memory). */
export function zero(p: usize, bytes: usize): void {
  memory.fill(p, 0, bytes);
}

/** p[i] = value for i < n. */
export function fill(p: usize, value: f32, n: i32): void {
  const v = splat(value);
  let i = 0;
  for (; i + 4 <= n; i += 4) v128.store(p + (<usize>i << 2), v);
  for (; i < n; i++) store<f32>(p + (<usize>i << 2), value);
}
