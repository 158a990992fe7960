// Kernels of the `wasm` backend, compiled by AssemblyScript to WebAssembly with SIMD.
//
// Memory model: linear memory is imported (env.memory) and owned by the JS side
// (src/backend/wasm/wasm-backend.ts), which hands every kernel raw byte offsets. Nothing here
// allocates (`--runtime stub`, no GC objects); temporary space (packed matmul panels, the dS
// matrix of attention backward) comes in as a `scratch` pointer sized by the caller.
//
// Numbers are f32; every pointer is a byte offset; counts are in elements. Conventions (row-major,
// `...Backward` accumulates into gradients) are those of src/backend/backend.ts.

// ---- small SIMD helpers -----------------------------------------------------------------------

// @ts-ignore: decorator
@inline function splat(x: f32): v128 {
  return f32x4.splat(x);
}

// c + a·b. There is no FMA in baseline wasm SIMD (relaxed_madd needs a flag in Node 20).
// @ts-ignore: decorator
@inline function madd(c: v128, a: v128, b: v128): v128 {
  return f32x4.add(c, f32x4.mul(a, b));
}

// @ts-ignore: decorator
@inline function hsum(v: v128): f32 {
  return f32x4.extract_lane(v, 0) + f32x4.extract_lane(v, 1) + (f32x4.extract_lane(v, 2) + f32x4.extract_lane(v, 3));
}

// @ts-ignore: decorator
@inline function hmax(v: v128): f32 {
  return max(max(f32x4.extract_lane(v, 0), f32x4.extract_lane(v, 1)), max(f32x4.extract_lane(v, 2), f32x4.extract_lane(v, 3)));
}

/**
 * exp(x) on four lanes (Cephes expf: range reduction by ln 2, degree-6 polynomial, ~1 ulp).
 * Inputs below -87.3 give 0 (so exp(-inf) = 0); inputs above 88 saturate at exp(88), which only
 * matters for sigmoid of very negative numbers, where it changes nothing visible.
 */
// @ts-ignore: decorator
@inline function expv(x: v128): v128 {
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
@inline function exps(x: f32): f32 {
  return f32x4.extract_lane(expv(splat(x)), 0);
}

/** Σ a[i]·b[i] for i < n. */
function dot(a: usize, b: usize, n: i32): f32 {
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
function axpyRaw(dst: usize, src: usize, alpha: f32, n: i32): void {
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
function wsum(dst: usize, w: usize, wstride: usize, src: usize, count: i32, stride: usize, n: i32, accumulate: bool): void {
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

// ---- memory --------------------------------------------------------------------------------------

/** First byte not used by the module's static data: the JS allocator starts above it. */
export function heapBase(): usize {
  return __heap_base;
}

// ---- elementwise and reductions ----------------------------------------------------------------

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
function reduce(p: usize, n: i32, squares: bool): f64 {
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

// ---- matmul ----------------------------------------------------------------------------------
//
// GotoBLAS structure: op(A) and op(B) are copied ("packed") into panels so that one NN
// micro-kernel serves all four transpose combinations, and the packing absorbs the transposes
// (O(n²) work against O(n³)). The micro-kernel is 2×16: 8 accumulators + 4 B vectors + 2 A
// broadcasts + 1 temporary = 15 xmm registers, all V8 hands out (xmm15 is its scratch), so
// nothing spills. With no FMA in baseline wasm SIMD each step is 8 mul + 8 add; measured on
// Zen 5 it runs at ~53 GFLOP/s, about the 2 mul + 2 add per cycle the core can issue, while
// 4×8 (same register count, but V8 emits an extra lea per broadcast) reached ~44 and 4×16,
// 4×12, 6×8 (which spill) 25–30.

const MR = 2; // rows of a micro-tile
const NR = 16; // columns of a micro-tile
const KC = 256; // depth of a packed block: a 16-column B panel (16 KB) stays in L1
const MC = 128; // rows of a packed A block (128 KB, in L2)
const NC = 2048; // columns of a packed B block (2 MB), bounds the scratch size

/** Bytes of scratch `matmul` needs (independent of the shape). */
export function matmulScratchBytes(): usize {
  return <usize>(MC * KC + KC * NC + MR * NR) << 2;
}

/** C[2×16] (+)= (A panel, kc×2) · (B panel, kc×16); ldc in bytes. */
function kernel2x16(kc: i32, a: usize, b: usize, c: usize, ldc: usize, load: bool): void {
  let c00 = splat(0), c01 = c00, c02 = c00, c03 = c00, c10 = c00, c11 = c00, c12 = c00, c13 = c00;
  for (let p = 0; p < kc; p++) {
    const b0 = v128.load(b), b1 = v128.load(b, 16), b2 = v128.load(b, 32), b3 = v128.load(b, 48);
    let x = v128.load32_splat(a);
    c00 = madd(c00, x, b0); c01 = madd(c01, x, b1); c02 = madd(c02, x, b2); c03 = madd(c03, x, b3);
    x = v128.load32_splat(a, 4);
    c10 = madd(c10, x, b0); c11 = madd(c11, x, b1); c12 = madd(c12, x, b2); c13 = madd(c13, x, b3);
    a += MR << 2;
    b += NR << 2;
  }
  const d = c + ldc;
  if (load) {
    c00 = f32x4.add(c00, v128.load(c)); c01 = f32x4.add(c01, v128.load(c, 16));
    c02 = f32x4.add(c02, v128.load(c, 32)); c03 = f32x4.add(c03, v128.load(c, 48));
    c10 = f32x4.add(c10, v128.load(d)); c11 = f32x4.add(c11, v128.load(d, 16));
    c12 = f32x4.add(c12, v128.load(d, 32)); c13 = f32x4.add(c13, v128.load(d, 48));
  }
  v128.store(c, c00); v128.store(c, c01, 16); v128.store(c, c02, 32); v128.store(c, c03, 48);
  v128.store(d, c10); v128.store(d, c11, 16); v128.store(d, c12, 32); v128.store(d, c13, 48);
}

/** The first 4 columns of kernel2x16, for a last panel of ≤ 4 columns (e.g. a vocabulary of 65). */
function kernel2x4(kc: i32, a: usize, b: usize, c: usize, ldc: usize): void {
  let c0 = splat(0), c1 = c0;
  for (let p = 0; p < kc; p++) {
    const b0 = v128.load(b);
    c0 = madd(c0, v128.load32_splat(a), b0);
    c1 = madd(c1, v128.load32_splat(a, 4), b0);
    a += MR << 2;
    b += NR << 2;
  }
  v128.store(c, c0);
  v128.store(c + ldc, c1);
}

/**
 * Pack a panel whose W columns are contiguous in the source:
 * dst[p·W + j] = src[p·ld + j] for j < w, 0 for w ≤ j < W (ld in bytes).
 */
function packN(dst: usize, src: usize, ld: usize, w: i32, kc: i32, W: i32): void {
  if (w == W && W == NR) {
    for (let p = 0; p < kc; p++) {
      v128.store(dst, v128.load(src)); v128.store(dst, v128.load(src, 16), 16);
      v128.store(dst, v128.load(src, 32), 32); v128.store(dst, v128.load(src, 48), 48);
      dst += NR << 2; src += ld;
    }
    return;
  }
  if (w == W && W == MR) {
    for (let p = 0; p < kc; p++) {
      store<u64>(dst, load<u64>(src)); // the two floats at once
      dst += MR << 2; src += ld;
    }
    return;
  }
  for (let p = 0; p < kc; p++) {
    for (let j = 0; j < W; j++) store<f32>(dst + (<usize>j << 2), j < w ? load<f32>(src + (<usize>j << 2)) : 0);
    dst += <usize>W << 2; src += ld;
  }
}

/**
 * Pack a panel whose W columns are rows of the source (a transpose):
 * dst[p·W + j] = src[j·ld + p] for j < w, 0 for w ≤ j < W (ld in bytes).
 */
function packT(dst: usize, src: usize, ld: usize, w: i32, kc: i32, W: i32): void {
  const rowBytes = <usize>W << 2;
  if (W == MR && w == MR) {
    // Interleave two source rows, four depths at a time.
    const r0 = src, r1 = src + ld;
    let p = 0;
    for (; p + 4 <= kc; p += 4) {
      const o = <usize>p << 2;
      const v0 = v128.load(r0 + o), v1 = v128.load(r1 + o);
      const q = dst + <usize>p * rowBytes;
      v128.store(q, i32x4.shuffle(v0, v1, 0, 4, 1, 5));
      v128.store(q, i32x4.shuffle(v0, v1, 2, 6, 3, 7), 16);
    }
    for (; p < kc; p++) {
      const o = <usize>p << 2, q = dst + <usize>p * rowBytes;
      store<f32>(q, load<f32>(r0 + o));
      store<f32>(q, load<f32>(r1 + o), 4);
    }
    return;
  }
  for (let j0 = 0; j0 < W; j0 += 4) {
    const d0 = dst + (<usize>j0 << 2);
    if (W >= 4 && j0 + 4 <= w) {
      // Four source rows at once, transposed 4×4 in registers.
      const r0 = src + <usize>j0 * ld, r1 = r0 + ld, r2 = r1 + ld, r3 = r2 + ld;
      let p = 0;
      for (; p + 4 <= kc; p += 4) {
        const o = <usize>p << 2;
        const v0 = v128.load(r0 + o), v1 = v128.load(r1 + o), v2 = v128.load(r2 + o), v3 = v128.load(r3 + o);
        const t0 = i32x4.shuffle(v0, v1, 0, 4, 1, 5), t1 = i32x4.shuffle(v0, v1, 2, 6, 3, 7);
        const t2 = i32x4.shuffle(v2, v3, 0, 4, 1, 5), t3 = i32x4.shuffle(v2, v3, 2, 6, 3, 7);
        const q = d0 + <usize>p * rowBytes;
        v128.store(q, i32x4.shuffle(t0, t2, 0, 1, 4, 5));
        v128.store(q + rowBytes, i32x4.shuffle(t0, t2, 2, 3, 6, 7));
        v128.store(q + 2 * rowBytes, i32x4.shuffle(t1, t3, 0, 1, 4, 5));
        v128.store(q + 3 * rowBytes, i32x4.shuffle(t1, t3, 2, 3, 6, 7));
      }
      for (; p < kc; p++) {
        const o = <usize>p << 2, q = d0 + <usize>p * rowBytes;
        store<f32>(q, load<f32>(r0 + o)); store<f32>(q, load<f32>(r1 + o), 4);
        store<f32>(q, load<f32>(r2 + o), 8); store<f32>(q, load<f32>(r3 + o), 12);
      }
    } else {
      const jn = min(4, W - j0);
      for (let p = 0; p < kc; p++) {
        const q = d0 + <usize>p * rowBytes;
        for (let j = 0; j < jn; j++) {
          const jj = j0 + j;
          store<f32>(q + (<usize>j << 2), jj < w ? load<f32>(src + <usize>jj * ld + (<usize>p << 2)) : 0);
        }
      }
    }
  }
}

/** Σ a[i]·b[i] for i < n, 16 at a time into four accumulators (the row dot product of gemv). */
// @ts-ignore: decorator
@inline function dotRow(a: usize, b: usize, n: i32): f32 {
  let s0 = splat(0), s1 = s0, s2 = s0, s3 = s0;
  let i = 0;
  for (; i + 16 <= n; i += 16) {
    const o = <usize>i << 2;
    s0 = madd(s0, v128.load(a + o), v128.load(b + o)); s1 = madd(s1, v128.load(a + o, 16), v128.load(b + o, 16));
    s2 = madd(s2, v128.load(a + o, 32), v128.load(b + o, 32)); s3 = madd(s3, v128.load(a + o, 48), v128.load(b + o, 48));
  }
  for (; i + 4 <= n; i += 4) {
    const o = <usize>i << 2;
    s0 = madd(s0, v128.load(a + o), v128.load(b + o));
  }
  let s = hsum(f32x4.add(f32x4.add(s0, s1), f32x4.add(s2, s3)));
  for (; i < n; i++) s += load<f32>(a + (<usize>i << 2)) * load<f32>(b + (<usize>i << 2));
  return s;
}

/**
 * Matrix-vector product, the decode-time case (m = 1, or n = 1), where packing would double the
 * memory traffic. y[j] (+)= Σ_p x[p]·M(p, j) for j < len, with M(p, j) = mat[j·ld + p] when
 * `rows` (each output is a dot product of a contiguous row) and mat[p·ld + j] otherwise.
 */
function gemv(y: usize, x: usize, mat: usize, len: i32, k: i32, ld: i32, rows: bool, accumulate: bool): void {
  const ldb = <usize>ld << 2;
  if (rows) {
    // One row at a time, start to end: a single sequential stream through the matrix, which the
    // hardware prefetcher follows best. x is re-read per row, but from L1. Measured on the
    // 15M-shape decode weights (cold, 58 MB per token): 2.2× the bandwidth of four rows sharing
    // each load of x (four interleaved streams). Every row has the same arithmetic, wherever it
    // lies in the matrix, so thread splits and fused matrices give bitwise identical results.
    let r = mat, yo = y;
    for (let j = 0; j < len; j++) {
      const t = dotRow(x, r, k);
      store<f32>(yo, accumulate ? load<f32>(yo) + t : t);
      r += ldb;
      yo += 4;
    }
    return;
  }
  // Column form: y += x[p]·(row p of mat), 32 outputs held in registers per sweep over p.
  let j = 0;
  for (; j + 32 <= len; j += 32) {
    const yo = y + (<usize>j << 2);
    let a0 = splat(0), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
    if (accumulate) {
      a0 = v128.load(yo); a1 = v128.load(yo, 16); a2 = v128.load(yo, 32); a3 = v128.load(yo, 48);
      a4 = v128.load(yo, 64); a5 = v128.load(yo, 80); a6 = v128.load(yo, 96); a7 = v128.load(yo, 112);
    }
    let r = mat + (<usize>j << 2);
    for (let p = 0; p < k; p++) {
      const xs = v128.load32_splat(x + (<usize>p << 2));
      a0 = madd(a0, xs, v128.load(r)); a1 = madd(a1, xs, v128.load(r, 16));
      a2 = madd(a2, xs, v128.load(r, 32)); a3 = madd(a3, xs, v128.load(r, 48));
      a4 = madd(a4, xs, v128.load(r, 64)); a5 = madd(a5, xs, v128.load(r, 80));
      a6 = madd(a6, xs, v128.load(r, 96)); a7 = madd(a7, xs, v128.load(r, 112));
      r += ldb;
    }
    v128.store(yo, a0); v128.store(yo, a1, 16); v128.store(yo, a2, 32); v128.store(yo, a3, 48);
    v128.store(yo, a4, 64); v128.store(yo, a5, 80); v128.store(yo, a6, 96); v128.store(yo, a7, 112);
  }
  // Remaining columns: the same weighted-row sum, 16/4/1 at a time.
  if (j < len) wsum(y + (<usize>j << 2), x, 4, mat + (<usize>j << 2), k, ldb, len - j, accumulate);
}

/** Up to this many rows, a linear layer runs as row-by-row dot products (smallRows). */
const SMALL_M = 16;
export function matmulSmallRows(): i32 {
  return SMALL_M;
}

/**
 * A linear layer over a few rows (speculative verification, short prompts): C[i,j] (+)= A[i,:]·B[j,:],
 * each weight row read from memory once and dotted with every row of A while it is in cache.
 * Each output is exactly gemv's dotRow, so a row's result is bitwise the one it gets when decoded
 * alone: verifying K drafted tokens in one pass reproduces one-token decoding exactly. Packing
 * for the blocked kernel below would cost more than the product at these sizes.
 */
function smallRows(c: usize, a: usize, b: usize, m: i32, n: i32, k: i32, ldc: usize, accumulate: bool): void {
  const lda = <usize>k << 2;
  let r = b;
  for (let j = 0; j < n; j++) {
    let x = a, yo = c + (<usize>j << 2);
    for (let i = 0; i < m; i++) {
      const t = dotRow(x, r, k);
      store<f32>(yo, accumulate ? load<f32>(yo) + t : t);
      x += lda;
      yo += ldc;
    }
    r += lda;
  }
}

/**
 * smallRows over weight rows [lo, hi) of B [n, k], into columns [lo, hi) of C [m, n]: threads split
 * a few-row product by weight rows, as decode's, so each streams its own share of the weights.
 */
export function matmulSmallRowsPart(c: usize, a: usize, b: usize, m: i32, n: i32, k: i32, lo: i32, hi: i32, accumulate: i32): void {
  smallRows(c + (<usize>lo << 2), a, b + <usize>lo * (<usize>k << 2), m, hi - lo, k, <usize>n << 2, accumulate != 0);
}

/**
 * C[m,n] = (accumulate ? C : 0) + op(A)[m,k] · op(B)[k,n]; A is [m,k] or [k,m] (transA),
 * B is [k,n] or [n,k] (transB). `scratch` holds matmulScratchBytes() bytes.
 */
export function matmul(c: usize, a: usize, b: usize, m: i32, n: i32, k: i32, transA: i32, transB: i32, accumulate: i32, scratch: usize): void {
  if (m <= 0 || n <= 0) return;
  if (k <= 0) {
    if (!accumulate) memory.fill(c, 0, <usize>m * <usize>n << 2);
    return;
  }
  // op(A) with m = 1 is the same vector whether or not it is transposed; likewise op(B) with n = 1.
  if (m == 1) {
    gemv(c, a, b, n, k, transB ? k : n, transB != 0, accumulate != 0);
    return;
  }
  if (n == 1) {
    gemv(c, b, a, m, k, transA ? m : k, transA == 0, accumulate != 0);
    return;
  }
  if (m <= SMALL_M && !transA && transB) {
    smallRows(c, a, b, m, n, k, <usize>n << 2, accumulate != 0);
    return;
  }
  const ap = scratch;
  const bp = ap + (<usize>(MC * KC) << 2);
  const tmp = bp + (<usize>(KC * NC) << 2);
  const ldc = <usize>n << 2;
  for (let jc = 0; jc < n; jc += NC) {
    const nc = min(NC, n - jc);
    for (let pc = 0; pc < k; pc += KC) {
      const kc = min(KC, k - pc);
      const addC = accumulate != 0 || pc > 0; // C holds earlier partial sums
      const panelB = <usize>kc * (NR << 2); // bytes of one packed B panel
      const panelA = <usize>kc * (MR << 2);
      for (let jr = 0; jr < nc; jr += NR) {
        const dst = bp + <usize>(jr / NR) * panelB;
        const w = min(NR, nc - jr);
        const j = jc + jr;
        if (transB) packT(dst, b + ((<usize>j * <usize>k + <usize>pc) << 2), <usize>k << 2, w, kc, NR);
        else packN(dst, b + ((<usize>pc * <usize>n + <usize>j) << 2), <usize>n << 2, w, kc, NR);
      }
      for (let ic = 0; ic < m; ic += MC) {
        const mc = min(MC, m - ic);
        for (let ir = 0; ir < mc; ir += MR) {
          const dst = ap + <usize>(ir / MR) * panelA;
          const h = min(MR, mc - ir);
          const i = ic + ir;
          if (transA) packN(dst, a + ((<usize>pc * <usize>m + <usize>i) << 2), <usize>m << 2, h, kc, MR);
          else packT(dst, a + ((<usize>i * <usize>k + <usize>pc) << 2), <usize>k << 2, h, kc, MR);
        }
        for (let jr = 0; jr < nc; jr += NR) {
          const w = min(NR, nc - jr);
          const bpan = bp + <usize>(jr / NR) * panelB;
          for (let ir = 0; ir < mc; ir += MR) {
            const h = min(MR, mc - ir);
            const apan = ap + <usize>(ir / MR) * panelA;
            const cp = c + ((<usize>(ic + ir) * <usize>n + <usize>(jc + jr)) << 2);
            if (h == MR && w == NR) {
              kernel2x16(kc, apan, bpan, cp, ldc, addC);
            } else {
              // Edge tile: compute the full tile into scratch (the packed panels are zero-padded),
              // then keep the valid part.
              if (w <= 4) kernel2x4(kc, apan, bpan, tmp, NR << 2);
              else kernel2x16(kc, apan, bpan, tmp, NR << 2, false);
              for (let r = 0; r < h; r++) {
                for (let cc = 0; cc < w; cc++) {
                  const q = cp + <usize>r * ldc + (<usize>cc << 2);
                  const v = load<f32>(tmp + (<usize>(r * NR + cc) << 2));
                  store<f32>(q, addC ? load<f32>(q) + v : v);
                }
              }
            }
          }
        }
      }
    }
  }
}

// ---- model kernels ---------------------------------------------------------------------------

/** out[i,:] = table[ids[i],:]; ids (i32) were range-checked by the caller. */
export function embedding(out: usize, table: usize, ids: usize, count: i32, dim: i32): void {
  const rowBytes = <usize>dim << 2;
  for (let i = 0; i < count; i++) {
    const id = <usize>load<i32>(ids + (<usize>i << 2));
    memory.copy(out + <usize>i * rowBytes, table + id * rowBytes, rowBytes);
  }
}

export function embeddingBackward(dTable: usize, dOut: usize, ids: usize, count: i32, dim: i32): void {
  const rowBytes = <usize>dim << 2;
  for (let i = 0; i < count; i++) {
    const id = <usize>load<i32>(ids + (<usize>i << 2));
    axpyRaw(dTable + id * rowBytes, dOut + <usize>i * rowBytes, 1, dim);
  }
}

export function rmsnorm(out: usize, rstd: usize, x: usize, w: usize, rows: i32, dim: i32, eps: f64): void {
  const rowBytes = <usize>dim << 2;
  for (let r = 0; r < rows; r++) {
    const xr = x + <usize>r * rowBytes, or = out + <usize>r * rowBytes;
    const s = <f32>(1.0 / Math.sqrt(<f64>dot(xr, xr, dim) / <f64>dim + eps));
    store<f32>(rstd + (<usize>r << 2), s);
    const sv = splat(s);
    let j = 0;
    for (; j + 4 <= dim; j += 4) {
      const o = <usize>j << 2;
      v128.store(or + o, f32x4.mul(f32x4.mul(v128.load(xr + o), sv), v128.load(w + o)));
    }
    for (; j < dim; j++) {
      const o = <usize>j << 2;
      store<f32>(or + o, load<f32>(xr + o) * s * load<f32>(w + o));
    }
  }
}

// y_j = x_j·s·w_j  ⇒  dx_j += s·g_j·w_j − (s³/dim)·x_j·Σ_k g_k·w_k·x_k,  dw_j += g_j·x_j·s.
export function rmsnormBackward(dx: usize, dw: usize, dOut: usize, x: usize, w: usize, rstd: usize, rows: i32, dim: i32): void {
  const rowBytes = <usize>dim << 2;
  for (let r = 0; r < rows; r++) {
    const xr = x + <usize>r * rowBytes, gr = dOut + <usize>r * rowBytes, dxr = dx + <usize>r * rowBytes;
    const s = load<f32>(rstd + (<usize>r << 2));
    let acc = splat(0);
    let j = 0;
    for (; j + 4 <= dim; j += 4) {
      const o = <usize>j << 2;
      acc = madd(acc, f32x4.mul(v128.load(gr + o), v128.load(w + o)), v128.load(xr + o));
    }
    let d = hsum(acc);
    for (; j < dim; j++) {
      const o = <usize>j << 2;
      d += load<f32>(gr + o) * load<f32>(w + o) * load<f32>(xr + o);
    }
    const cc = (s * s * s * d) / <f32>dim;
    const sv = splat(s), cv = splat(cc);
    j = 0;
    for (; j + 4 <= dim; j += 4) {
      const o = <usize>j << 2;
      const g = v128.load(gr + o), xv = v128.load(xr + o);
      const t = f32x4.sub(f32x4.mul(f32x4.mul(sv, g), v128.load(w + o)), f32x4.mul(cv, xv));
      v128.store(dxr + o, f32x4.add(v128.load(dxr + o), t));
      v128.store(dw + o, madd(v128.load(dw + o), f32x4.mul(g, xv), sv));
    }
    for (; j < dim; j++) {
      const o = <usize>j << 2;
      const g = load<f32>(gr + o), xv = load<f32>(xr + o);
      store<f32>(dxr + o, load<f32>(dxr + o) + (s * g * load<f32>(w + o) - cc * xv));
      store<f32>(dw + o, load<f32>(dw + o) + g * xv * s);
    }
  }
}

/**
 * Rotate-half RoPE. sign = 1 rotates by +pos·θ (forward), sign = -1 by the opposite angle
 * (backward, accumulated into `out`). out may alias x: each chunk is read before it is written.
 */
export function rope(out: usize, x: usize, cos: usize, sin: usize, batch: i32, seq: i32, heads: i32, headDim: i32, posOffset: i32, sign: f32, accumulate: i32): void {
  const half = headDim >> 1;
  const halfBytes = <usize>half << 2;
  const sg = splat(sign);
  for (let b = 0; b < batch; b++) {
    for (let t = 0; t < seq; t++) {
      const pos = posOffset + t;
      const cr = cos + <usize>pos * halfBytes, sr = sin + <usize>pos * halfBytes;
      for (let h = 0; h < heads; h++) {
        const base = <usize>(((b * seq + t) * heads + h)) * <usize>headDim << 2;
        const x1p = x + base, x2p = x1p + halfBytes, o1p = out + base, o2p = o1p + halfBytes;
        let i = 0;
        for (; i + 4 <= half; i += 4) {
          const o = <usize>i << 2;
          const c = v128.load(cr + o), s = f32x4.mul(sg, v128.load(sr + o));
          const x1 = v128.load(x1p + o), x2 = v128.load(x2p + o);
          let y1 = f32x4.sub(f32x4.mul(x1, c), f32x4.mul(x2, s));
          let y2 = f32x4.add(f32x4.mul(x2, c), f32x4.mul(x1, s));
          if (accumulate) {
            y1 = f32x4.add(v128.load(o1p + o), y1);
            y2 = f32x4.add(v128.load(o2p + o), y2);
          }
          v128.store(o1p + o, y1);
          v128.store(o2p + o, y2);
        }
        for (; i < half; i++) {
          const o = <usize>i << 2;
          const c = load<f32>(cr + o), s = sign * load<f32>(sr + o);
          const x1 = load<f32>(x1p + o), x2 = load<f32>(x2p + o);
          let y1 = x1 * c - x2 * s, y2 = x2 * c + x1 * s;
          if (accumulate) {
            y1 += load<f32>(o1p + o);
            y2 += load<f32>(o2p + o);
          }
          store<f32>(o1p + o, y1);
          store<f32>(o2p + o, y2);
        }
      }
    }
  }
}

/** p[s] = exp(p[s] − mx) for s < n; returns Σ p[s]. */
function expShift(p: usize, n: i32, mx: f32): f32 {
  const mv = splat(mx);
  let acc = splat(0);
  let s = 0;
  for (; s + 4 <= n; s += 4) {
    const o = <usize>s << 2;
    const e = expv(f32x4.sub(v128.load(p + o), mv));
    v128.store(p + o, e);
    acc = f32x4.add(acc, e);
  }
  let z = hsum(acc);
  for (; s < n; s++) {
    const o = <usize>s << 2;
    const e = exps(load<f32>(p + o) - mx);
    store<f32>(p + o, e);
    z += e;
  }
  return z;
}

/** p[0..n) ← softmax(scale · p[0..n)), in place: the attention weights of one query row. */
function softmaxScaled(p: usize, n: i32, scale: f32): void {
  const sv = splat(scale);
  let mv = splat(-Infinity);
  let s = 0;
  for (; s + 4 <= n; s += 4) {
    const o = <usize>s << 2;
    const x = f32x4.mul(v128.load(p + o), sv);
    v128.store(p + o, x);
    mv = f32x4.max(mv, x);
  }
  let mx = hmax(mv);
  for (; s < n; s++) {
    const o = <usize>s << 2;
    const x = load<f32>(p + o) * scale;
    store<f32>(p + o, x);
    mx = max(mx, x);
  }
  const z = expShift(p, n, mx);
  const zv = splat(z);
  s = 0;
  for (; s + 4 <= n; s += 4) v128.store(p + (<usize>s << 2), f32x4.div(v128.load(p + (<usize>s << 2)), zv));
  for (; s < n; s++) store<f32>(p + (<usize>s << 2), load<f32>(p + (<usize>s << 2)) / z);
}

/** Causal GQA attention; see Backend.attention. heads % kvHeads == 0 was checked by the caller. */
export function attention(out: usize, probs: usize, q: usize, k: usize, v: usize, batch: i32, seq: i32, heads: i32, kvHeads: i32, headDim: i32, scale: f32): void {
  const group = heads / kvHeads;
  const kvStride = <usize>(kvHeads * headDim) << 2; // bytes between consecutive positions of one KV head
  const seqBytes = <usize>seq << 2;
  for (let b = 0; b < batch; b++) {
    for (let h = 0; h < heads; h++) {
      const kh = h / group;
      const kvo = <usize>((b * seq) * kvHeads + kh) * <usize>headDim << 2;
      for (let t = 0; t < seq; t++) {
        const qo = <usize>((b * seq + t) * heads + h) * <usize>headDim << 2;
        const pr = probs + <usize>((b * heads + h) * seq + t) * seqBytes;
        const n = t + 1;
        // Scores q·k_s for s ≤ t (four keys per pass share the loads of q), then scale and max.
        gemv(pr, q + qo, k + kvo, n, headDim, kvHeads * headDim, true, false);
        softmaxScaled(pr, n, scale);
        if (n < seq) memory.fill(pr + (<usize>n << 2), 0, <usize>(seq - n) << 2);
        wsum(out + qo, pr, 4, v + kvo, n, kvStride, headDim, false);
      }
    }
  }
}

/**
 * Attention of `seq` new queries over a KV cache; see Backend.attentionCached. `scratch` holds
 * posOffset + seq floats: the scores of one (query, head) row, turned into softmax weights in place.
 */
export function attentionCached(out: usize, q: usize, kCache: usize, vCache: usize, seq: i32, heads: i32, kvHeads: i32, headDim: i32, posOffset: i32, scale: f32, scratch: usize): void {
  attentionCachedHeads(out, q, kCache, vCache, seq, heads, kvHeads, headDim, posOffset, scale, scratch, 0, heads);
}

/** attentionCached for heads h0..h1 only: threads split attention by heads (each its own scratch). */
export function attentionCachedHeads(out: usize, q: usize, kCache: usize, vCache: usize, seq: i32, heads: i32, kvHeads: i32, headDim: i32, posOffset: i32, scale: f32, scratch: usize, h0: i32, h1: i32): void {
  const group = heads / kvHeads;
  const kvDim = kvHeads * headDim;
  const kvStride = <usize>kvDim << 2; // bytes between consecutive positions of one KV head
  for (let t = 0; t < seq; t++) {
    const n = posOffset + t + 1;
    for (let h = h0; h < h1; h++) {
      const kvo = <usize>((h / group) * headDim) << 2;
      const qo = <usize>((t * heads + h) * headDim) << 2;
      gemv(scratch, q + qo, kCache + kvo, n, headDim, kvDim, true, false);
      softmaxScaled(scratch, n, scale);
      wsum(out + qo, scratch, 4, vCache + kvo, n, kvStride, headDim, false);
    }
  }
}

/**
 * dP = dO·Vᵀ; dS = P ⊙ (dP − rowsum(P ⊙ dP)); dQ += scale·dS·K; dK += scale·dSᵀ·Q; dV += Pᵀ·dO.
 * `scratch` holds seq·seq floats: dS of one (batch, head), so that dK and dV can then be summed
 * column by column in registers instead of being read and written once per (t, s) pair.
 */
export function attentionBackward(dq: usize, dk: usize, dv: usize, dOut: usize, q: usize, k: usize, v: usize, probs: usize, batch: i32, seq: i32, heads: i32, kvHeads: i32, headDim: i32, scale: f32, scratch: usize): void {
  const group = heads / kvHeads;
  const kvStride = <usize>(kvHeads * headDim) << 2;
  const qStride = <usize>(heads * headDim) << 2;
  const seqBytes = <usize>seq << 2;
  const sv = splat(scale);
  for (let b = 0; b < batch; b++) {
    for (let h = 0; h < heads; h++) {
      const kh = h / group;
      const kvo = <usize>((b * seq) * kvHeads + kh) * <usize>headDim << 2;
      const qo0 = <usize>((b * seq) * heads + h) * <usize>headDim << 2; // row t = 0 of this head
      const pb = probs + <usize>((b * heads + h) * seq) * seqBytes;
      for (let t = 0; t < seq; t++) {
        const qo = qo0 + <usize>t * qStride;
        const pr = pb + <usize>t * seqBytes, dsr = scratch + <usize>t * seqBytes;
        const n = t + 1;
        gemv(dsr, dOut + qo, v + kvo, n, headDim, kvHeads * headDim, true, false); // dP row
        const pdp = splat(dot(pr, dsr, n));
        let s = 0;
        for (; s + 4 <= n; s += 4) {
          const o = <usize>s << 2;
          v128.store(dsr + o, f32x4.mul(f32x4.mul(v128.load(pr + o), f32x4.sub(v128.load(dsr + o), pdp)), sv));
        }
        const pdps = f32x4.extract_lane(pdp, 0);
        for (; s < n; s++) {
          const o = <usize>s << 2;
          store<f32>(dsr + o, load<f32>(pr + o) * (load<f32>(dsr + o) - pdps) * scale);
        }
        wsum(dq + qo, dsr, 4, k + kvo, n, kvStride, headDim, true);
      }
      // Column s of P and dS is nonzero for t ≥ s.
      for (let s = 0; s < seq; s++) {
        const diag = <usize>s * seqBytes + (<usize>s << 2), rows = seq - s;
        const ko = kvo + <usize>s * kvStride, qo = qo0 + <usize>s * qStride;
        wsum(dv + ko, pb + diag, seqBytes, dOut + qo, rows, qStride, headDim, true);
        wsum(dk + ko, scratch + diag, seqBytes, q + qo, rows, qStride, headDim, true);
      }
    }
  }
}

// sigmoid(g) = 1 / (1 + exp(−g))
// @ts-ignore: decorator
@inline function sigmoidv(g: v128): v128 {
  return f32x4.div(splat(1), f32x4.add(splat(1), expv(f32x4.neg(g))));
}

export function swiglu(out: usize, gate: usize, up: usize, n: i32): void {
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    const o = <usize>i << 2;
    const g = v128.load(gate + o);
    v128.store(out + o, f32x4.mul(f32x4.mul(g, sigmoidv(g)), v128.load(up + o)));
  }
  for (; i < n; i++) {
    const o = <usize>i << 2;
    const g = load<f32>(gate + o);
    store<f32>(out + o, g * f32x4.extract_lane(sigmoidv(splat(g)), 0) * load<f32>(up + o));
  }
}

export function swigluBackward(dGate: usize, dUp: usize, dOut: usize, gate: usize, up: usize, n: i32): void {
  const one = splat(1);
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    const o = <usize>i << 2;
    const g = v128.load(gate + o), u = v128.load(up + o), d = v128.load(dOut + o);
    const sig = sigmoidv(g);
    v128.store(dUp + o, madd(v128.load(dUp + o), f32x4.mul(d, g), sig));
    const dsilu = f32x4.mul(sig, madd(one, g, f32x4.sub(one, sig)));
    v128.store(dGate + o, madd(v128.load(dGate + o), f32x4.mul(d, u), dsilu));
  }
  for (; i < n; i++) {
    const o = <usize>i << 2;
    const g = load<f32>(gate + o), u = load<f32>(up + o), d = load<f32>(dOut + o);
    const sig = f32x4.extract_lane(sigmoidv(splat(g)), 0);
    store<f32>(dUp + o, load<f32>(dUp + o) + d * g * sig);
    store<f32>(dGate + o, load<f32>(dGate + o) + d * u * (sig * (1 + g * (1 - sig))));
  }
}

/** Softmax cross-entropy per row; targets (i32) were checked < vocab by the caller. */
export function crossEntropy(losses: usize, lse: usize, logits: usize, targets: usize, rows: i32, vocab: i32): void {
  const rowBytes = <usize>vocab << 2;
  for (let r = 0; r < rows; r++) {
    const xr = logits + <usize>r * rowBytes;
    let mv = splat(-Infinity);
    let j = 0;
    for (; j + 4 <= vocab; j += 4) mv = f32x4.max(mv, v128.load(xr + (<usize>j << 2)));
    let mx = hmax(mv);
    for (; j < vocab; j++) mx = max(mx, load<f32>(xr + (<usize>j << 2)));
    const mvv = splat(mx);
    let zv = splat(0);
    j = 0;
    for (; j + 4 <= vocab; j += 4) zv = f32x4.add(zv, expv(f32x4.sub(v128.load(xr + (<usize>j << 2)), mvv)));
    let z = <f64>hsum(zv);
    for (; j < vocab; j++) z += <f64>exps(load<f32>(xr + (<usize>j << 2)) - mx);
    const e = <f64>mx + Math.log(z);
    store<f32>(lse + (<usize>r << 2), <f32>e);
    const t = load<i32>(targets + (<usize>r << 2));
    store<f32>(losses + (<usize>r << 2), t < 0 ? 0 : <f32>(e - <f64>load<f32>(xr + (<usize>t << 2))));
  }
}

export function crossEntropyBackward(dLogits: usize, logits: usize, lse: usize, targets: usize, dLosses: usize, rows: i32, vocab: i32): void {
  const rowBytes = <usize>vocab << 2;
  for (let r = 0; r < rows; r++) {
    const t = load<i32>(targets + (<usize>r << 2));
    if (t < 0) continue;
    const g = load<f32>(dLosses + (<usize>r << 2));
    const e = load<f32>(lse + (<usize>r << 2));
    const xr = logits + <usize>r * rowBytes, dr = dLogits + <usize>r * rowBytes;
    const gv = splat(g), ev = splat(e);
    let j = 0;
    for (; j + 4 <= vocab; j += 4) {
      const o = <usize>j << 2;
      v128.store(dr + o, madd(v128.load(dr + o), gv, expv(f32x4.sub(v128.load(xr + o), ev))));
    }
    for (; j < vocab; j++) {
      const o = <usize>j << 2;
      store<f32>(dr + o, load<f32>(dr + o) + g * exps(load<f32>(xr + o) - e));
    }
    const to = dr + (<usize>t << 2);
    store<f32>(to, load<f32>(to) - g);
  }
}

/**
 * Inverted dropout with the counter hash of backend.ts `dropoutUniform`. The test
 * (h >>> 8) / 2^24 ≥ p is done exactly in integers: (h >>> 8) ≥ ceil(p·2^24).
 */
export function dropout(out: usize, mask: usize, x: usize, n: i32, p: f64, seed: i32): void {
  const keep = <f32>(1.0 / (1.0 - p));
  const c = Math.ceil(p * 16777216.0);
  let thr: i32 = 16777216; // p ≥ 1 or NaN: (h >>> 8) < 2^24 never passes, nothing is kept
  if (c <= 0) thr = 0; // p ≤ 0 keeps everything
  else if (c < 16777216.0) thr = <i32>c;
  const thrv = i32x4.splat(thr), keepv = splat(keep), zero = splat(0);
  const seedv = i32x4.splat(seed);
  let idx = i32x4(0, 1, 2, 3);
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    let h = i32x4.add(i32x4.mul(idx, i32x4.splat(<i32>0x9e3779b9)), seedv);
    h = v128.xor(h, i32x4.shr_u(h, 16));
    h = i32x4.mul(h, i32x4.splat(<i32>0x85ebca6b));
    h = v128.xor(h, i32x4.shr_u(h, 13));
    h = i32x4.mul(h, i32x4.splat(<i32>0xc2b2ae35));
    h = v128.xor(h, i32x4.shr_u(h, 16));
    const mk = v128.bitselect(keepv, zero, i32x4.ge_s(i32x4.shr_u(h, 8), thrv));
    const o = <usize>i << 2;
    v128.store(mask + o, mk);
    v128.store(out + o, f32x4.mul(v128.load(x + o), mk));
    idx = i32x4.add(idx, i32x4.splat(4));
  }
  for (; i < n; i++) {
    let h: u32 = <u32>i * 0x9e3779b9 + <u32>seed;
    h ^= h >>> 16;
    h *= 0x85ebca6b;
    h ^= h >>> 13;
    h *= 0xc2b2ae35;
    h ^= h >>> 16;
    const mk: f32 = <i32>(h >>> 8) >= thr ? keep : 0;
    const o = <usize>i << 2;
    store<f32>(mask + o, mk);
    store<f32>(out + o, load<f32>(x + o) * mk);
  }
}

export function dropoutBackward(dx: usize, dOut: usize, mask: usize, n: i32): void {
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    const o = <usize>i << 2;
    v128.store(dx + o, madd(v128.load(dx + o), v128.load(dOut + o), v128.load(mask + o)));
  }
  for (; i < n; i++) {
    const o = <usize>i << 2;
    store<f32>(dx + o, load<f32>(dx + o) + load<f32>(dOut + o) * load<f32>(mask + o));
  }
}

// ---- optimizer -------------------------------------------------------------------------------

/**
 * One AdamW step (PyTorch's formula, decay first). The step-dependent scalars are computed once
 * in f64 by the caller: decay = 1 − lr·wd, stepSize = lr / (1 − β1^t), bc2Sqrt = sqrt(1 − β2^t).
 */
export function adamw(param: usize, grad: usize, m: usize, v: usize, n: i32, beta1: f32, beta2: f32, eps: f32, decay: f32, stepSize: f32, bc2Sqrt: f32): void {
  const b1 = splat(beta1), b2 = splat(beta2), c1 = splat(1 - beta1), c2 = splat(1 - beta2);
  const ev = splat(eps), dv = splat(decay), sv = splat(stepSize), bv = splat(bc2Sqrt);
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    const o = <usize>i << 2;
    const g = v128.load(grad + o);
    const mm = madd(f32x4.mul(b1, v128.load(m + o)), c1, g);
    const vv = madd(f32x4.mul(b2, v128.load(v + o)), c2, f32x4.mul(g, g));
    v128.store(m + o, mm);
    v128.store(v + o, vv);
    const denom = f32x4.add(f32x4.div(f32x4.sqrt(vv), bv), ev);
    const p = f32x4.mul(v128.load(param + o), dv);
    v128.store(param + o, f32x4.sub(p, f32x4.mul(sv, f32x4.div(mm, denom))));
  }
  for (; i < n; i++) {
    const o = <usize>i << 2;
    const g = load<f32>(grad + o);
    const mm = beta1 * load<f32>(m + o) + (1 - beta1) * g;
    const vv = beta2 * load<f32>(v + o) + (1 - beta2) * g * g;
    store<f32>(m + o, mm);
    store<f32>(v + o, vv);
    const denom = Mathf.sqrt(vv) / bc2Sqrt + eps;
    store<f32>(param + o, load<f32>(param + o) * decay - stepSize * (mm / denom));
  }
}

// ---- quantized weights (ggml Q8_0 / Q4_0 blocks) ------------------------------------------------
//
// A quantized matrix W [n, k] is n rows of k/32 blocks, each an f16 scale d followed by 32 int8
// (Q8_0, 34 bytes) or 16 bytes of nibbles (Q4_0, 18 bytes: byte j holds element j in its low
// nibble and j + 16 in its high one, value (q − 8)·d). Blocks are decoded on the fly: int8 lanes
// widened to i32, converted to f32, multiplied with x and scaled by d once per block. Sums are f32.

const Q8_0: i32 = 0;
const Q4_0: i32 = 1;
const F16: i32 = 2; // no blocks: see "f16 weights" below
// ggml_vec_dot_f16's summation orders that llama.cpp's numerics mode reproduces: x86 builds with
// AVX-512 (16 lanes) and with AVX/AVX2 (8 lanes).
const F16_ORDER_AVX512: i32 = 0;
const F16_ORDER_AVX: i32 = 1;

// IEEE binary16 bits → f32 (exact).
// @ts-ignore: decorator
@inline function halfToFloat(h: u32): f32 {
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
@inline function blockLow(w: usize, type: i32): v128 {
  if (type == Q8_0) return v128.load(w, 2);
  return i8x16.sub(v128.and(v128.load(w, 2), i8x16.splat(0x0f)), i8x16.splat(8));
}
// @ts-ignore: decorator
@inline function blockHigh(w: usize, type: i32): v128 {
  if (type == Q8_0) return v128.load(w, 18);
  return i8x16.sub(i8x16.shr_u(v128.load(w, 2), 4), i8x16.splat(8));
}

// Lanes 4i..4i+3 of 16 int8 as f32.
// @ts-ignore: decorator
@inline function i8Quarter0(q: v128): v128 { return f32x4.convert_i32x4_s(i32x4.extend_low_i16x8_s(i16x8.extend_low_i8x16_s(q))); }
// @ts-ignore: decorator
@inline function i8Quarter1(q: v128): v128 { return f32x4.convert_i32x4_s(i32x4.extend_high_i16x8_s(i16x8.extend_low_i8x16_s(q))); }
// @ts-ignore: decorator
@inline function i8Quarter2(q: v128): v128 { return f32x4.convert_i32x4_s(i32x4.extend_low_i16x8_s(i16x8.extend_high_i8x16_s(q))); }
// @ts-ignore: decorator
@inline function i8Quarter3(q: v128): v128 { return f32x4.convert_i32x4_s(i32x4.extend_high_i16x8_s(i16x8.extend_high_i8x16_s(q))); }

/** acc + Σ_{e<16} q[e]·x[e] on four lanes. */
// @ts-ignore: decorator
@inline function dot16(acc: v128, q: v128, x: usize): v128 {
  acc = madd(acc, i8Quarter0(q), v128.load(x));
  acc = madd(acc, i8Quarter1(q), v128.load(x, 16));
  acc = madd(acc, i8Quarter2(q), v128.load(x, 32));
  return madd(acc, i8Quarter3(q), v128.load(x, 48));
}

/** Σ_e W[row][e]·x[e] over `blocks` blocks starting at `w`. */
// @ts-ignore: decorator
@inline function quantRowDot(w: usize, x: usize, blocks: i32, type: i32, blockBytes: usize): f32 {
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
function dequantizeRow(dst: usize, w: usize, blocks: i32, type: i32, blockBytes: usize): void {
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
const QROWS = 128;

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

// ---- quantized weights × Q8_0 activations (llama.cpp's integer path) ---------------------------
//
// llama.cpp multiplies Q8_0/Q4_0 weights by activations quantized to Q8_0 per 32-block
// (quantize_row_q8_0: d = amax/127 rounded to f16, q = round(x·127/amax)) with integer dot products,
// one float multiply-add per block: Σ_b d_w·d_x·Σ_e q_w·q_x. Faster than decoding to floats, at
// the price of rounding the activations; the float kernel above stays the reference.

// x ≥ 0 rounded to the nearest f16 value (ties to even), as f32: llama.cpp stores d as f16.
// @ts-ignore: decorator
@inline function roundToHalf(x: f32): f32 {
  if (x < 6.103515625e-5) return f32.nearest(x * 16777216.0) / 16777216.0; // subnormal f16 steps: 2^−24
  const b = reinterpret<u32>(x);
  return reinterpret<f32>((b + 0xfff + ((b >> 13) & 1)) & 0xffffe000);
}

/**
 * Rows of x [m,k] → their Q8_0 integers [m,k] at q, stored widened to i16 (the dot products take
 * i16 lanes: widening once here saves it per weight row), and f32 block scales [m, k/32] at d.
 */
function quantizeRowsQ8(q: usize, d: usize, x: usize, m: i32, k: i32): void {
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
@inline function dotI8(q: v128, x: usize): v128 {
  return i32x4.add(
    i32x4.dot_i16x8_s(i16x8.extend_low_i8x16_s(q), v128.load(x)),
    i32x4.dot_i16x8_s(i16x8.extend_high_i8x16_s(q), v128.load(x, 16)),
  );
}

// IEEE binary16 bits → f32 without branches for finite values: the 15 magnitude bits shifted into
// an f32 with exponent bias 127 − 112 are the half's value times 2^−112 (subnormals included, as
// f32 subnormals), so one multiply by 2^112 rescales exactly. Inf/NaN take the exact helper.
// @ts-ignore: decorator
@inline function halfToFloatFast(h: u32): f32 {
  if ((h & 0x7c00) == 0x7c00) return halfToFloat(h);
  return reinterpret<f32>(((h & 0x8000) << 16) | reinterpret<u32>(reinterpret<f32>((h & 0x7fff) << 13) * 5.192296858534828e33));
}

/** Σ_b d_w·d_x·Σ_e q_w·q_x over a row of W and a quantized row of x (i16 lanes). */
// @ts-ignore: decorator
@inline function quantRowDotQ8(w: usize, xq: usize, xd: usize, blocks: i32, type: i32, blockBytes: usize): f32 {
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

// ---- f16 weights (ggml F16) ------------------------------------------------------------------
//
// W [n, k] as n rows of k IEEE binary16 values (any k; llama-quantize keeps a matrix F16 when its
// rows are not whole blocks). Converted to f32 exactly on the fly. With f32 activations this is
// the dequantized float product up to summation order. llama.cpp instead rounds the activations to
// f16 first (F16's vec_dot_type is F16) and runs ggml_vec_dot_f16; matmulF16Rounded does the same,
// in the order of the AVX-512 or the AVX/AVX2 build, so that decoding reproduces llama.cpp's
// numbers on either. (ARM builds with FP16 vector arithmetic accumulate in f16, which this does
// not reproduce.)

// Four f16 (bits in the i32 lanes of h) → f32, exactly: the 15 magnitude bits shifted into an
// f32 are the value times 2^−112 (subnormals included, as f32 subnormals), so one multiply by
// 2^112 rescales exactly; exponent 31 (inf/NaN) is built directly.
// @ts-ignore: decorator
@inline function halfLanes(h: v128): v128 {
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
@inline function roundHalfLanes(x: v128): v128 {
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
function f16RowDot(w: usize, x: usize, k: i32): f32 {
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
function f16RowDotAvx(w: usize, x: usize, k: i32): f32 {
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
function dequantizeRowF16(dst: usize, w: usize, k: i32): void {
  let i = 0;
  for (; i + 8 <= k; i += 8) {
    const h = v128.load(w + (<usize>i << 1));
    v128.store(dst + (<usize>i << 2), halfLanes(i32x4.extend_low_i16x8_u(h)));
    v128.store(dst + (<usize>i << 2), halfLanes(i32x4.extend_high_i16x8_u(h)), 16);
  }
  for (; i < k; i++) store<f32>(dst + (<usize>i << 2), halfToFloat(<u32>load<u16>(w + (<usize>i << 1))));
}

/** matmulQuantized for F16 weights, f32 activations: as the block formats, one row (or panel) at a time. */
function matmulF16(c: usize, a: usize, w: usize, m: i32, n: i32, k: i32, accumulate: i32, scratch: usize): void {
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
function matmulF16Rounded(c: usize, a: usize, w: usize, m: i32, n: i32, k: i32, accumulate: i32, scratch: usize, order: i32): void {
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

// ---- knowledge distillation (student logits against a teacher; see ops.ts distillLosses) ------
//
// Per row: L = wCe·CE(y, softmax(s)) + wKd·D(teacher, student at temperature τ), with the
// divergence D chosen by `kind` (0 forward KL(p‖q), 1 reverse KL(q‖p), 2 generalized JSD with
// mixture m = β·p + (1−β)·q). The loops over the vocabulary run 4 lanes of f32 (expv, and a
// log1p series for the JSD mixture); row sums, the few top-k outcomes of a sparse teacher and its
// residual outcome are handled in f64.
// Targets: ≥ 0 a ground-truth token, −1 ignore the row, −2 no ground truth (the KD term alone).
// stats per row (4 numbers, saved for backward): lse(s), lse(s/τ), the teacher's lse(t/τ) (dense)
// or the student's log residual mass (sparse), and G = Σ_o ∂D/∂log q_o.

// @ts-ignore: decorator
@inline function kdLogAddExp(a: f64, b: f64): f64 {
  const m = max(a, b);
  return m == -Infinity ? m : m + Math.log(Math.exp(a - m) + Math.exp(b - m));
}

/** One outcome's share of D, for log-probabilities lq (student) and lp (teacher). */
function kdTerm(kind: i32, lq: f64, lp: f64, beta: f64): f64 {
  if (kind == 0) return lp == -Infinity ? 0 : Math.exp(lp) * (lp - lq);
  if (kind == 1) return lq == -Infinity ? 0 : Math.exp(lq) * (lq - lp);
  const lm = kdLogAddExp(lq + Math.log(1 - beta), lp + Math.log(beta));
  return (lp == -Infinity ? 0 : beta * Math.exp(lp) * (lp - lm)) + (lq == -Infinity ? 0 : (1 - beta) * Math.exp(lq) * (lq - lm));
}

/** ∂D/∂log q of that outcome: −p (forward), q·(lq − lp + 1) (reverse), (1−β)·q·(lq − lm) (JSD). */
function kdGrad(kind: i32, lq: f64, lp: f64, beta: f64): f64 {
  if (kind == 0) return lp == -Infinity ? 0 : -Math.exp(lp);
  if (lq == -Infinity) return 0;
  if (kind == 1) return Math.exp(lq) * (lq - lp + 1);
  const lm = kdLogAddExp(lq + Math.log(1 - beta), lp + Math.log(beta));
  return (1 - beta) * Math.exp(lq) * (lq - lm);
}

/** log(1 + u) for u in [0, 1], 4 lanes: 2·atanh(s) with s = u/(2+u) ≤ 1/3, series to s¹¹ (error < 1e-7). */
// @ts-ignore: decorator
@inline function kdLog1pv(u: v128): v128 {
  const s = f32x4.div(u, f32x4.add(splat(2), u)), s2 = f32x4.mul(s, s);
  let p = splat(<f32>(1.0 / 11));
  p = madd(splat(<f32>(1.0 / 9)), p, s2);
  p = madd(splat(<f32>(1.0 / 7)), p, s2);
  p = madd(splat(<f32>(1.0 / 5)), p, s2);
  p = madd(splat(<f32>(1.0 / 3)), p, s2);
  p = madd(splat(1), p, s2);
  return f32x4.mul(f32x4.add(s, s), p);
}

/** log m = log(e^a + e^b) for finite a, b, 4 lanes. */
// @ts-ignore: decorator
@inline function kdLogAddExpv(a: v128, b: v128): v128 {
  return f32x4.add(f32x4.max(a, b), kdLog1pv(expv(f32x4.neg(f32x4.abs(f32x4.sub(a, b))))));
}

/** logsumexp of a row scaled by `scale`. */
function kdLse(x: usize, n: i32, scale: f64): f64 {
  const sv = splat(<f32>scale);
  let mv = splat(-Infinity);
  let j = 0;
  for (; j + 4 <= n; j += 4) mv = f32x4.max(mv, f32x4.mul(v128.load(x + (<usize>j << 2)), sv));
  let mx = <f64>hmax(mv);
  for (; j < n; j++) mx = max(mx, <f64>(load<f32>(x + (<usize>j << 2)) * <f32>scale));
  const mvv = splat(<f32>mx);
  let zv = splat(0);
  j = 0;
  for (; j + 4 <= n; j += 4) zv = f32x4.add(zv, expv(f32x4.sub(f32x4.mul(v128.load(x + (<usize>j << 2)), sv), mvv)));
  let z = <f64>hsum(zv);
  for (; j < n; j++) z += Math.exp(<f64>(load<f32>(x + (<usize>j << 2)) * <f32>scale) - mx);
  return mx + Math.log(z);
}

// @ts-ignore: decorator
@inline function kdWeightCe(t: i32, alpha: f64): f64 {
  return t >= 0 ? alpha : 0;
}
// @ts-ignore: decorator
@inline function kdWeightKd(t: i32, alpha: f64, tau: f64): f64 {
  return (t >= 0 ? 1 - alpha : 1) * tau * tau;
}

/**
 * Σ_j D_j and Σ_j ∂D/∂log q_j over a dense row (student s, teacher p, both scaled by inv and
 * shifted by their lse); the pair goes to out[0], out[1] (f64).
 */
function kdDenseSums(out: usize, s: usize, p: usize, vocab: i32, inv: f64, lseS: f64, lseP: f64, kind: i32, beta: f64): void {
  const iv = splat(<f32>inv), sv = splat(<f32>lseS), pv = splat(<f32>lseP);
  const bv = splat(<f32>beta), cbv = splat(<f32>(1 - beta)), lbv = splat(<f32>Math.log(beta)), lcbv = splat(<f32>Math.log(1 - beta));
  let dv = splat(0), gv = splat(0);
  let j = 0;
  for (; j + 4 <= vocab; j += 4) {
    const o = <usize>j << 2;
    const lq = f32x4.sub(f32x4.mul(v128.load(s + o), iv), sv), lp = f32x4.sub(f32x4.mul(v128.load(p + o), iv), pv);
    if (kind == 0) {
      const pr = expv(lp);
      dv = madd(dv, pr, f32x4.sub(lp, lq));
      gv = f32x4.sub(gv, pr);
    } else if (kind == 1) {
      const q = expv(lq), diff = f32x4.sub(lq, lp);
      dv = madd(dv, q, diff);
      gv = madd(gv, q, f32x4.add(diff, splat(1)));
    } else {
      const q = expv(lq), pr = expv(lp);
      const lm = kdLogAddExpv(f32x4.add(lq, lcbv), f32x4.add(lp, lbv));
      const gs = f32x4.mul(f32x4.mul(cbv, q), f32x4.sub(lq, lm));
      dv = f32x4.add(dv, madd(gs, f32x4.mul(bv, pr), f32x4.sub(lp, lm)));
      gv = f32x4.add(gv, gs);
    }
  }
  let d = <f64>hsum(dv), g = <f64>hsum(gv);
  for (; j < vocab; j++) {
    const o = <usize>j << 2;
    const lq = <f64>load<f32>(s + o) * inv - lseS, lp = <f64>load<f32>(p + o) * inv - lseP;
    d += kdTerm(kind, lq, lp, beta);
    g += kdGrad(kind, lq, lp, beta);
  }
  store<f64>(out, d);
  store<f64>(out, g, 8);
}

/** Dense teacher: teacher logits [rows, vocab]. `scratch`: 16 bytes. */
export function distill(losses: usize, stats: usize, student: usize, teacher: usize, targets: usize, scratch: usize, rows: i32, vocab: i32, kind: i32, alpha: f64, tau: f64, beta: f64): void {
  const rowBytes = <usize>vocab << 2, inv = 1 / tau;
  for (let r = 0; r < rows; r++) {
    const t = load<i32>(targets + (<usize>r << 2));
    const st = stats + (<usize>r << 4);
    if (t == -1) {
      store<f32>(losses + (<usize>r << 2), 0);
      continue;
    }
    const s = student + <usize>r * rowBytes, p = teacher + <usize>r * rowBytes;
    const lse1 = kdLse(s, vocab, 1), lseS = kdLse(s, vocab, inv), lseP = kdLse(p, vocab, inv);
    kdDenseSums(scratch, s, p, vocab, inv, lseS, lseP, kind, beta);
    const d = load<f64>(scratch), g = load<f64>(scratch, 8);
    const ce = t >= 0 ? lse1 - <f64>load<f32>(s + (<usize>t << 2)) : 0;
    store<f32>(losses + (<usize>r << 2), <f32>(kdWeightCe(t, alpha) * ce + kdWeightKd(t, alpha, tau) * d));
    store<f32>(st, <f32>lse1);
    store<f32>(st, <f32>lseS, 4);
    store<f32>(st, <f32>lseP, 8);
    store<f32>(st, <f32>g, 12);
  }
}

export function distillBackward(dStudent: usize, student: usize, teacher: usize, stats: usize, targets: usize, dLosses: usize, rows: i32, vocab: i32, kind: i32, alpha: f64, tau: f64, beta: f64): void {
  const rowBytes = <usize>vocab << 2, inv = 1 / tau;
  const iv = splat(<f32>inv), cbv = splat(<f32>(1 - beta)), lbv = splat(<f32>Math.log(beta)), lcbv = splat(<f32>Math.log(1 - beta));
  for (let r = 0; r < rows; r++) {
    const t = load<i32>(targets + (<usize>r << 2));
    if (t == -1) continue;
    const st = stats + (<usize>r << 4);
    const lse1 = <f64>load<f32>(st), lseS = <f64>load<f32>(st, 4), lseP = <f64>load<f32>(st, 8), G = <f64>load<f32>(st, 12);
    const dl = <f64>load<f32>(dLosses + (<usize>r << 2));
    const wce = dl * kdWeightCe(t, alpha), wkd = dl * kdWeightKd(t, alpha, tau) * inv;
    const s = student + <usize>r * rowBytes, p = teacher + <usize>r * rowBytes, ds = dStudent + <usize>r * rowBytes;
    const sv = splat(<f32>lseS), pv = splat(<f32>lseP), ev = splat(<f32>lse1), Gv = splat(<f32>G), wcev = splat(<f32>wce), wkdv = splat(<f32>wkd);
    let j = 0;
    for (; j + 4 <= vocab; j += 4) {
      const o = <usize>j << 2;
      const x = v128.load(s + o);
      const lq = f32x4.sub(f32x4.mul(x, iv), sv), lp = f32x4.sub(f32x4.mul(v128.load(p + o), iv), pv);
      const q = expv(lq);
      let g: v128;
      if (kind == 0) g = f32x4.neg(expv(lp));
      else if (kind == 1) g = f32x4.mul(q, f32x4.add(f32x4.sub(lq, lp), splat(1)));
      else g = f32x4.mul(f32x4.mul(cbv, q), f32x4.sub(lq, kdLogAddExpv(f32x4.add(lq, lcbv), f32x4.add(lp, lbv))));
      const dz = f32x4.sub(g, f32x4.mul(q, Gv));
      const acc = madd(madd(v128.load(ds + o), wkdv, dz), wcev, expv(f32x4.sub(x, ev)));
      v128.store(ds + o, acc);
    }
    for (; j < vocab; j++) {
      const o = <usize>j << 2;
      const x = <f64>load<f32>(s + o);
      const lq = x * inv - lseS, lp = <f64>load<f32>(p + o) * inv - lseP;
      const dz = kdGrad(kind, lq, lp, beta) - Math.exp(lq) * G;
      store<f32>(ds + o, <f32>(<f64>load<f32>(ds + o) + wkd * dz + wce * Math.exp(x - lse1)));
    }
    if (t >= 0) {
      const to = ds + (<usize>t << 2);
      store<f32>(to, <f32>(<f64>load<f32>(to) - wce));
    }
  }
}

/** Mark (1) or clear (0) a row's top-k ids in a byte map of the vocabulary. */
function kdMark(marks: usize, ids: usize, k: i32, v: u8): void {
  for (let o = 0; o < k; o++) store<u8>(marks + <usize>load<i32>(ids + (<usize>o << 2)), v);
}

/** All-ones lanes for the 4 tokens from j whose mark byte is 0 (outside the top-k). */
// @ts-ignore: decorator
@inline function kdUnmarked(marks: usize, j: i32): v128 {
  const b = i32x4.extend_low_i16x8_u(i16x8.extend_low_i8x16_u(v128.load32_zero(marks + <usize>j)));
  return i32x4.eq(b, i32x4.splat(0));
}

/** log of the teacher's residual mass 1 − Σ top-k (floored at 1e-30), or −∞ when k = vocab. */
function kdResidualTeacher(lps: usize, k: i32, vocab: i32): f64 {
  if (k >= vocab) return -Infinity;
  let sp = 0.0;
  for (let o = 0; o < k; o++) sp += Math.exp(<f64>load<f32>(lps + (<usize>o << 2)));
  return Math.log(max(1 - sp, 1e-30));
}

/**
 * Sparse teacher: its top-k ids [rows, k] (i32, distinct, < vocab; checked by the caller) and
 * log-probabilities at τ [rows, k]; the residual mass is one more outcome (a (k+1)-outcome
 * divergence). `marks`: vocab bytes of scratch.
 */
export function distillSparse(losses: usize, stats: usize, student: usize, ids: usize, teacherLogProbs: usize, targets: usize, marks: usize, rows: i32, vocab: i32, k: i32, kind: i32, alpha: f64, tau: f64, beta: f64): void {
  const rowBytes = <usize>vocab << 2, inv = 1 / tau;
  const iv = splat(<f32>inv);
  memory.fill(marks, 0, <usize>vocab);
  for (let r = 0; r < rows; r++) {
    const t = load<i32>(targets + (<usize>r << 2));
    const st = stats + (<usize>r << 4);
    if (t == -1) {
      store<f32>(losses + (<usize>r << 2), 0);
      continue;
    }
    const s = student + <usize>r * rowBytes, ri = ids + (<usize>(r * k) << 2), lps = teacherLogProbs + (<usize>(r * k) << 2);
    const lse1 = kdLse(s, vocab, 1), lseS = kdLse(s, vocab, inv);
    // The student's mass off the top-k, summed directly (no cancellation against the top-k's).
    kdMark(marks, ri, k, 1);
    const sv = splat(<f32>lseS);
    let zv = splat(0);
    let j = 0;
    for (; j + 4 <= vocab; j += 4) zv = f32x4.add(zv, v128.and(expv(f32x4.sub(f32x4.mul(v128.load(s + (<usize>j << 2)), iv), sv)), kdUnmarked(marks, j)));
    let zr = <f64>hsum(zv);
    for (; j < vocab; j++) if (load<u8>(marks + <usize>j) == 0) zr += Math.exp(<f64>load<f32>(s + (<usize>j << 2)) * inv - lseS);
    kdMark(marks, ri, k, 0);
    const lqR = Math.log(zr), lpR = kdResidualTeacher(lps, k, vocab);
    let d = 0.0, g = 0.0;
    for (let o = 0; o < k; o++) {
      const id = load<i32>(ri + (<usize>o << 2));
      const lq = <f64>load<f32>(s + (<usize>id << 2)) * inv - lseS, lp = <f64>load<f32>(lps + (<usize>o << 2));
      d += kdTerm(kind, lq, lp, beta);
      g += kdGrad(kind, lq, lp, beta);
    }
    if (k < vocab) {
      d += kdTerm(kind, lqR, lpR, beta);
      g += kdGrad(kind, lqR, lpR, beta);
    }
    const ce = t >= 0 ? lse1 - <f64>load<f32>(s + (<usize>t << 2)) : 0;
    store<f32>(losses + (<usize>r << 2), <f32>(kdWeightCe(t, alpha) * ce + kdWeightKd(t, alpha, tau) * d));
    store<f32>(st, <f32>lse1);
    store<f32>(st, <f32>lseS, 4);
    store<f32>(st, <f32>lqR, 8);
    store<f32>(st, <f32>g, 12);
  }
}

export function distillSparseBackward(dStudent: usize, student: usize, ids: usize, teacherLogProbs: usize, stats: usize, targets: usize, dLosses: usize, marks: usize, rows: i32, vocab: i32, k: i32, kind: i32, alpha: f64, tau: f64, beta: f64): void {
  const rowBytes = <usize>vocab << 2, inv = 1 / tau;
  const iv = splat(<f32>inv);
  memory.fill(marks, 0, <usize>vocab);
  for (let r = 0; r < rows; r++) {
    const t = load<i32>(targets + (<usize>r << 2));
    if (t == -1) continue;
    const st = stats + (<usize>r << 4);
    const lse1 = <f64>load<f32>(st), lseS = <f64>load<f32>(st, 4), lqR = <f64>load<f32>(st, 8), G = <f64>load<f32>(st, 12);
    const dl = <f64>load<f32>(dLosses + (<usize>r << 2));
    const wce = dl * kdWeightCe(t, alpha), wkd = dl * kdWeightKd(t, alpha, tau) * inv;
    const s = student + <usize>r * rowBytes, ds = dStudent + <usize>r * rowBytes;
    const ri = ids + (<usize>(r * k) << 2), lps = teacherLogProbs + (<usize>(r * k) << 2);
    // Tokens outside the top-k share the residual outcome: ∂log q_R/∂z_j = q_j/q_R − q_j.
    const hasR = k < vocab && lqR > -Infinity;
    const gR = hasR ? kdGrad(kind, lqR, kdResidualTeacher(lps, k, vocab), beta) : 0;
    const lqRs = hasR ? lqR : 0;
    kdMark(marks, ri, k, 1);
    const sv = splat(<f32>lseS), ev = splat(<f32>lse1), Gv = splat(<f32>G), gRv = splat(<f32>gR), rv = splat(<f32>lqRs);
    const wcev = splat(<f32>wce), wkdv = splat(<f32>wkd);
    let j = 0;
    for (; j + 4 <= vocab; j += 4) {
      const o = <usize>j << 2;
      const x = v128.load(s + o);
      const lq = f32x4.sub(f32x4.mul(x, iv), sv);
      const share = v128.and(expv(f32x4.sub(lq, rv)), kdUnmarked(marks, j)); // q_j / q_R off the top-k
      const dz = f32x4.sub(f32x4.mul(gRv, share), f32x4.mul(expv(lq), Gv));
      v128.store(ds + o, madd(madd(v128.load(ds + o), wkdv, dz), wcev, expv(f32x4.sub(x, ev))));
    }
    for (; j < vocab; j++) {
      const o = <usize>j << 2;
      const x = <f64>load<f32>(s + o);
      const lq = x * inv - lseS;
      let dz = -Math.exp(lq) * G;
      if (load<u8>(marks + <usize>j) == 0 && hasR) dz += gR * Math.exp(lq - lqR);
      store<f32>(ds + o, <f32>(<f64>load<f32>(ds + o) + wkd * dz + wce * Math.exp(x - lse1)));
    }
    kdMark(marks, ri, k, 0);
    if (t >= 0) {
      const to = ds + (<usize>t << 2);
      store<f32>(to, <f32>(<f64>load<f32>(to) - wce));
    }
    for (let o = 0; o < k; o++) {
      const id = load<i32>(ri + (<usize>o << 2));
      const lq = <f64>load<f32>(s + (<usize>id << 2)) * inv - lseS, lp = <f64>load<f32>(lps + (<usize>o << 2));
      const pd = ds + (<usize>id << 2);
      store<f32>(pd, <f32>(<f64>load<f32>(pd) + wkd * kdGrad(kind, lq, lp, beta)));
    }
  }
}
