// Mixture-of-experts kernels: softmax and log-sum-exp over rows (the router's probabilities and
// z-loss), top-k routing, the gather and scatter of routed rows around the expert GEMMs, and the
// weighted combine of the experts' outputs. Every kernel works row by row, so a call split into
// ranges of rows (the threaded backend) gives the same bits as one call.
//
// Expert ids are whole f32 numbers; the rows the gather/scatter kernels take are i32 row indices
// the caller (wasm-backend.ts) checked and wrote into its workspace.

import { add } from "./elementwise";
import { axpyRaw, dot, exps, expv, hmax, hsum, splat, wsum } from "./simd";

// @ts-ignore: decorator
@inline function rowMax(x: usize, cols: i32): f32 {
  let mv = splat(-Infinity);
  let j = 0;
  for (; j + 4 <= cols; j += 4) mv = f32x4.max(mv, v128.load(x + (<usize>j << 2)));
  let mx = hmax(mv);
  for (; j < cols; j++) mx = max(mx, load<f32>(x + (<usize>j << 2)));
  return mx;
}

/** out[r, :] = softmax(x[r, :]); out may alias x (each number is read before its slot is written). */
export function softmax(out: usize, x: usize, rows: i32, cols: i32): void {
  const rowBytes = <usize>cols << 2;
  for (let r = 0; r < rows; r++) {
    const xr = x + <usize>r * rowBytes, or = out + <usize>r * rowBytes;
    const mx = rowMax(xr, cols), mv = splat(mx);
    let sv = splat(0);
    let j = 0;
    for (; j + 4 <= cols; j += 4) {
      const o = <usize>j << 2;
      const e = expv(f32x4.sub(v128.load(xr + o), mv));
      v128.store(or + o, e);
      sv = f32x4.add(sv, e);
    }
    let s = <f64>hsum(sv);
    for (; j < cols; j++) {
      const o = <usize>j << 2;
      const e = exps(load<f32>(xr + o) - mx);
      store<f32>(or + o, e);
      s += <f64>e;
    }
    const inv = <f32>(1.0 / s), iv = splat(inv);
    j = 0;
    for (; j + 4 <= cols; j += 4) {
      const o = <usize>j << 2;
      v128.store(or + o, f32x4.mul(v128.load(or + o), iv));
    }
    for (; j < cols; j++) {
      const o = <usize>j << 2;
      store<f32>(or + o, load<f32>(or + o) * inv);
    }
  }
}

/** dx[r, :] += y[r, :] ⊙ (dOut[r, :] − Σ_c dOut[r, c]·y[r, c]). */
export function softmaxBackward(dx: usize, dOut: usize, y: usize, rows: i32, cols: i32): void {
  const rowBytes = <usize>cols << 2;
  for (let r = 0; r < rows; r++) {
    const off = <usize>r * rowBytes;
    const gr = dx + off, dr = dOut + off, yr = y + off;
    const d = dot(dr, yr, cols), dv = splat(d);
    let j = 0;
    for (; j + 4 <= cols; j += 4) {
      const o = <usize>j << 2;
      v128.store(gr + o, f32x4.add(v128.load(gr + o), f32x4.mul(v128.load(yr + o), f32x4.sub(v128.load(dr + o), dv))));
    }
    for (; j < cols; j++) {
      const o = <usize>j << 2;
      store<f32>(gr + o, load<f32>(gr + o) + load<f32>(yr + o) * (load<f32>(dr + o) - d));
    }
  }
}

/** out[r] = log Σ_c exp(x[r, c]), shifted by the row's max; the sum and the log in f64. */
export function logSumExp(out: usize, x: usize, rows: i32, cols: i32): void {
  const rowBytes = <usize>cols << 2;
  for (let r = 0; r < rows; r++) {
    const xr = x + <usize>r * rowBytes;
    const mx = rowMax(xr, cols), mv = splat(mx);
    let zv = splat(0);
    let j = 0;
    for (; j + 4 <= cols; j += 4) zv = f32x4.add(zv, expv(f32x4.sub(v128.load(xr + (<usize>j << 2)), mv)));
    let z = <f64>hsum(zv);
    for (; j < cols; j++) z += <f64>exps(load<f32>(xr + (<usize>j << 2)) - mx);
    store<f32>(out + (<usize>r << 2), <f32>(<f64>mx + Math.log(z)));
  }
}

/** dx[r, c] += dOut[r] · exp(x[r, c] − lse[r]). */
export function logSumExpBackward(dx: usize, dOut: usize, x: usize, lse: usize, rows: i32, cols: i32): void {
  const rowBytes = <usize>cols << 2;
  for (let r = 0; r < rows; r++) {
    const off = <usize>r * rowBytes;
    const gr = dx + off, xr = x + off;
    const g = load<f32>(dOut + (<usize>r << 2)), e = load<f32>(lse + (<usize>r << 2));
    const gv = splat(g), ev = splat(e);
    let j = 0;
    for (; j + 4 <= cols; j += 4) {
      const o = <usize>j << 2;
      v128.store(gr + o, f32x4.add(v128.load(gr + o), f32x4.mul(gv, expv(f32x4.sub(v128.load(xr + o), ev)))));
    }
    for (; j < cols; j++) {
      const o = <usize>j << 2;
      store<f32>(gr + o, load<f32>(gr + o) + g * exps(load<f32>(xr + o) - e));
    }
  }
}

/**
 * Whether v, at a higher index than w, ranks before it: top-k's order is larger first, equal
 * values by lower index, NaN after every number (backend/top-k.ts).
 */
// @ts-ignore: decorator
@inline function ranksBefore(v: f32, w: f32): bool {
  return v == v && (w != w || v > w);
}

/**
 * Top-k routing of probs [rows, experts] (1 ≤ k ≤ experts, checked by the caller): ids[r·k + j]
 * the expert of rank j, weights[r·k + j] its probability over the sum of the k chosen (in f64).
 * An insertion into the row's sorted ids (kept, as whole numbers, in `ids` itself) per expert.
 */
export function moeTopK(weights: usize, ids: usize, probs: usize, rows: i32, experts: i32, k: i32): void {
  for (let r = 0; r < rows; r++) {
    const pr = probs + ((<usize>r * <usize>experts) << 2);
    const ir = ids + ((<usize>r * <usize>k) << 2), wr = weights + ((<usize>r * <usize>k) << 2);
    let size = 0;
    for (let i = 0; i < experts; i++) {
      const v = load<f32>(pr + (<usize>i << 2));
      // Full: i enters only if it ranks before the last kept, which it then replaces.
      if (size == k && !ranksBefore(v, load<f32>(pr + (<usize>(<i32>load<f32>(ir + (<usize>(k - 1) << 2))) << 2)))) continue;
      let at = size < k ? size : k - 1;
      while (at > 0) {
        const prev = load<f32>(ir + (<usize>(at - 1) << 2));
        if (!ranksBefore(v, load<f32>(pr + (<usize>(<i32>prev) << 2)))) break;
        store<f32>(ir + (<usize>at << 2), prev);
        at--;
      }
      store<f32>(ir + (<usize>at << 2), <f32>i);
      if (size < k) size++;
    }
    let s: f64 = 0;
    for (let j = 0; j < k; j++) s += <f64>load<f32>(pr + (<usize>(<i32>load<f32>(ir + (<usize>j << 2))) << 2));
    for (let j = 0; j < k; j++) {
      const p = <f64>load<f32>(pr + (<usize>(<i32>load<f32>(ir + (<usize>j << 2))) << 2));
      store<f32>(wr + (<usize>j << 2), <f32>(p / s));
    }
  }
}

/** dst[i, :] = src[rowIds[i], :] for i < count (rowIds: i32, checked by the caller). */
export function moeGatherRows(dst: usize, src: usize, rowIds: usize, count: i32, dim: i32): void {
  const rowBytes = <usize>dim << 2;
  for (let i = 0; i < count; i++) {
    const row = <usize>load<i32>(rowIds + (<usize>i << 2));
    memory.copy(dst + <usize>i * rowBytes, src + row * rowBytes, rowBytes);
  }
}

/** dst[rowIds[i], :] = src[i, :] (or += when accumulate, in order of i, so repeated rows add up). */
export function moeScatterRows(dst: usize, src: usize, rowIds: usize, count: i32, dim: i32, accumulate: i32): void {
  const rowBytes = <usize>dim << 2;
  for (let i = 0; i < count; i++) {
    const d = dst + <usize>load<i32>(rowIds + (<usize>i << 2)) * rowBytes, s = src + <usize>i * rowBytes;
    if (accumulate) add(d, d, s, dim);
    else memory.copy(d, s, rowBytes);
  }
}

/** out[r, :] = (accumulate ? out[r, :] : 0) + Σ_j weights[r·k + j] · slots[r·k + j, :]. */
export function moeCombine(out: usize, slots: usize, weights: usize, rows: i32, k: i32, dim: i32, accumulate: i32): void {
  const rowBytes = <usize>dim << 2;
  for (let r = 0; r < rows; r++) {
    const first = <usize>r * <usize>k;
    wsum(out + <usize>r * rowBytes, weights + (first << 2), 4, slots + first * rowBytes, k, rowBytes, dim, accumulate != 0);
  }
}

/** dSlots[r·k + j, :] += weights[r·k + j] · dOut[r, :]; dWeights[r·k + j] += dOut[r, :] · slots[r·k + j, :]. */
export function moeCombineBackward(dSlots: usize, dWeights: usize, dOut: usize, slots: usize, weights: usize, rows: i32, k: i32, dim: i32): void {
  const rowBytes = <usize>dim << 2;
  for (let r = 0; r < rows; r++) {
    const dr = dOut + <usize>r * rowBytes;
    for (let j = 0; j < k; j++) {
      const s = <usize>r * <usize>k + <usize>j;
      axpyRaw(dSlots + s * rowBytes, dr, load<f32>(weights + (s << 2)), dim);
      const wp = dWeights + (s << 2);
      store<f32>(wp, load<f32>(wp) + dot(dr, slots + s * rowBytes, dim));
    }
  }
}
