// Dense matrix products: the packed, register-tiled GEMM, matrix-vector products for decode and
// the few-row path for verification passes.
//
// GotoBLAS structure: op(A) and op(B) are copied ("packed") into panels so that one NN
// micro-kernel serves all four transpose combinations, and the packing absorbs the transposes
// (O(n²) work against O(n³)). The micro-kernel is 2×16: 8 accumulators + 4 B vectors + 2 A
// broadcasts + 1 temporary = 15 xmm registers, all V8 hands out (xmm15 is its scratch), so
// nothing spills. With no FMA in baseline wasm SIMD each step is 8 mul + 8 add; measured on
// Zen 5 it runs at ~53 GFLOP/s, about the 2 mul + 2 add per cycle the core can issue, while
// 4×8 (same register count, but V8 emits an extra lea per broadcast) reached ~44 and 4×16,
// 4×12, 6×8 (which spill) 25–30.

import { hsum, madd, splat, wsum } from "./simd";

export const MR = 2; // rows of a micro-tile
export const NR = 16; // columns of a micro-tile
export const KC = 256; // depth of a packed block: a 16-column B panel (16 KB) stays in L1
export const MC = 128; // rows of a packed A block (128 KB, in L2)
export const NC = 2048; // columns of a packed B block (2 MB), bounds the scratch size

/** Bytes of scratch `matmul` needs (independent of the shape). */
export function matmulScratchBytes(): usize {
  return <usize>(MC * KC + KC * NC + MR * NR) << 2;
}

/** C[2×16] (+)= (A panel, kc×2) · (B panel, kc×16); ldc in bytes. */
export function kernel2x16(kc: i32, a: usize, b: usize, c: usize, ldc: usize, load: bool): void {
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
export function kernel2x4(kc: i32, a: usize, b: usize, c: usize, ldc: usize): void {
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
export function packN(dst: usize, src: usize, ld: usize, w: i32, kc: i32, W: i32): void {
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
export function packT(dst: usize, src: usize, ld: usize, w: i32, kc: i32, W: i32): void {
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
@inline export function dotRow(a: usize, b: usize, n: i32): f32 {
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
export function gemv(y: usize, x: usize, mat: usize, len: i32, k: i32, ld: i32, rows: bool, accumulate: bool): void {
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
export const SMALL_M = 16;
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
export function smallRows(c: usize, a: usize, b: usize, m: i32, n: i32, k: i32, ldc: usize, accumulate: bool): void {
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
  blocked(c, a, b, m, n, k, transA != 0, transB != 0, accumulate != 0, scratch, transA ? m : k, transB ? k : n, n);
}

/**
 * Rows [lo, hi) of C[m,n] (+)= Aᵀ·op(B), A stored [k, m]: threads split weight gradients
 * (dW = dYᵀ·X) by rows of C. Each part runs the blocked GEMM on its columns of A, whose arithmetic
 * per element does not depend on where the element lies, so parts equal the whole bitwise; the
 * caller keeps parts of more than one row (m = 1 would take gemv) and n > 1.
 */
export function matmulTransARows(c: usize, a: usize, b: usize, m: i32, n: i32, k: i32, transB: i32, accumulate: i32, scratch: usize, lo: i32, hi: i32): void {
  if (hi <= lo) return;
  if (k <= 0) {
    if (!accumulate) memory.fill(c + (<usize>lo * <usize>n << 2), 0, <usize>(hi - lo) * <usize>n << 2);
    return;
  }
  blocked(c + (<usize>lo * <usize>n << 2), a + (<usize>lo << 2), b, hi - lo, n, k, true, transB != 0, accumulate != 0, scratch, m, transB ? k : n, n);
}

/**
 * The packed GEMM: C[m,n] (+)= op(A)·op(B) with leading dimensions (in elements) lda, ldb, ldc of
 * the stored A, B and C.
 */
function blocked(c: usize, a: usize, b: usize, m: i32, n: i32, k: i32, transA: bool, transB: bool, accumulate: bool, scratch: usize, lda: i32, ldb: i32, ldc: i32): void {
  const ldcBytes = <usize>ldc << 2;
  const ap = scratch;
  const bp = ap + (<usize>(MC * KC) << 2);
  const tmp = bp + (<usize>(KC * NC) << 2);
  for (let jc = 0; jc < n; jc += NC) {
    const nc = min(NC, n - jc);
    for (let pc = 0; pc < k; pc += KC) {
      const kc = min(KC, k - pc);
      const addC = accumulate || pc > 0; // C holds earlier partial sums
      const panelB = <usize>kc * (NR << 2); // bytes of one packed B panel
      const panelA = <usize>kc * (MR << 2);
      for (let jr = 0; jr < nc; jr += NR) {
        const dst = bp + <usize>(jr / NR) * panelB;
        const w = min(NR, nc - jr);
        const j = jc + jr;
        if (transB) packT(dst, b + ((<usize>j * <usize>ldb + <usize>pc) << 2), <usize>ldb << 2, w, kc, NR);
        else packN(dst, b + ((<usize>pc * <usize>ldb + <usize>j) << 2), <usize>ldb << 2, w, kc, NR);
      }
      for (let ic = 0; ic < m; ic += MC) {
        const mc = min(MC, m - ic);
        for (let ir = 0; ir < mc; ir += MR) {
          const dst = ap + <usize>(ir / MR) * panelA;
          const h = min(MR, mc - ir);
          const i = ic + ir;
          if (transA) packN(dst, a + ((<usize>pc * <usize>lda + <usize>i) << 2), <usize>lda << 2, h, kc, MR);
          else packT(dst, a + ((<usize>i * <usize>lda + <usize>pc) << 2), <usize>lda << 2, h, kc, MR);
        }
        for (let jr = 0; jr < nc; jr += NR) {
          const w = min(NR, nc - jr);
          const bpan = bp + <usize>(jr / NR) * panelB;
          for (let ir = 0; ir < mc; ir += MR) {
            const h = min(MR, mc - ir);
            const apan = ap + <usize>(ir / MR) * panelA;
            const cp = c + ((<usize>(ic + ir) * <usize>ldc + <usize>(jc + jr)) << 2);
            if (h == MR && w == NR) {
              kernel2x16(kc, apan, bpan, cp, ldcBytes, addC);
            } else {
              // Edge tile: compute the full tile into scratch (the packed panels are zero-padded),
              // then keep the valid part.
              if (w <= 4) kernel2x4(kc, apan, bpan, tmp, NR << 2);
              else kernel2x16(kc, apan, bpan, tmp, NR << 2, false);
              for (let r = 0; r < h; r++) {
                for (let cc = 0; cc < w; cc++) {
                  const q = cp + <usize>r * ldcBytes + (<usize>cc << 2);
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
