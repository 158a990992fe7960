// Layer kernels and their backward passes: embedding, RMSNorm, RoPE, SwiGLU, dropout.

import { axpyRaw, dot, expv, hsum, madd, splat } from "./simd";

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
  rmsnormBackwardRows(dx, dOut, x, w, rstd, rows, dim);
  rmsnormBackwardWeight(dw, dOut, x, rstd, rows, dim, 0, dim);
}

/** dx of rmsnormBackward (rows are independent: threads split them). */
export function rmsnormBackwardRows(dx: usize, dOut: usize, x: usize, w: usize, rstd: usize, rows: i32, dim: i32): void {
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
      const t = f32x4.sub(f32x4.mul(f32x4.mul(sv, v128.load(gr + o)), v128.load(w + o)), f32x4.mul(cv, v128.load(xr + o)));
      v128.store(dxr + o, f32x4.add(v128.load(dxr + o), t));
    }
    for (; j < dim; j++) {
      const o = <usize>j << 2;
      store<f32>(dxr + o, load<f32>(dxr + o) + (s * load<f32>(gr + o) * load<f32>(w + o) - cc * load<f32>(xr + o)));
    }
  }
}

/**
 * dw of rmsnormBackward for columns [c0, c1), summed over the rows in row order: threads split
 * the columns (at multiples of 4, the last part taking the scalar tail), so each sum is the whole's.
 */
export function rmsnormBackwardWeight(dw: usize, dOut: usize, x: usize, rstd: usize, rows: i32, dim: i32, c0: i32, c1: i32): void {
  const rowBytes = <usize>dim << 2, lanes = dim & ~3;
  for (let r = 0; r < rows; r++) {
    const xr = x + <usize>r * rowBytes, gr = dOut + <usize>r * rowBytes;
    const s = load<f32>(rstd + (<usize>r << 2));
    const sv = splat(s);
    let j = c0;
    for (; j + 4 <= min(c1, lanes); j += 4) {
      const o = <usize>j << 2;
      v128.store(dw + o, madd(v128.load(dw + o), f32x4.mul(v128.load(gr + o), v128.load(xr + o)), sv));
    }
    for (; j < c1; j++) {
      const o = <usize>j << 2;
      store<f32>(dw + o, load<f32>(dw + o) + load<f32>(gr + o) * load<f32>(xr + o) * s);
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



// sigmoid(g) = 1 / (1 + exp(−g))
// @ts-ignore: decorator
@inline export function sigmoidv(g: v128): v128 {
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
