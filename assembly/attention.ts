// Causal grouped-query attention: training forward and backward, and inference over a KV cache.

import { gemv } from "./gemm";
import { dot, exps, expv, hmax, hsum, splat, wsum } from "./simd";

/** p[s] = exp(p[s] − mx) for s < n; returns Σ p[s]. */
export function expShift(p: usize, n: i32, mx: f32): f32 {
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
export function softmaxScaled(p: usize, n: i32, scale: f32): void {
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
  attentionHeads(out, probs, q, k, v, batch, seq, heads, kvHeads, headDim, scale, 0, batch * heads);
}

/**
 * attention for the (batch, head) pairs u = b·heads + h in [u0, u1) only: threads split training
 * attention by pairs, each computed exactly as in the whole.
 */
export function attentionHeads(out: usize, probs: usize, q: usize, k: usize, v: usize, batch: i32, seq: i32, heads: i32, kvHeads: i32, headDim: i32, scale: f32, u0: i32, u1: i32): void {
  const group = heads / kvHeads;
  const kvStride = <usize>(kvHeads * headDim) << 2; // bytes between consecutive positions of one KV head
  const seqBytes = <usize>seq << 2;
  for (let u = u0; u < u1; u++) {
    const b = u / heads, h = u % heads;
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
  attentionBackwardHeads(dq, dk, dv, dOut, q, k, v, probs, batch, seq, heads, kvHeads, headDim, scale, scratch, 0, batch * heads);
}

/**
 * attentionBackward for the (batch, head) pairs u = b·heads + h in [u0, u1) only. The query heads
 * of one KV head add into the same dK and dV rows, in head order: threads split at multiples of
 * heads / kvHeads, so that each KV group is summed by one thread in the order of the whole.
 */
export function attentionBackwardHeads(dq: usize, dk: usize, dv: usize, dOut: usize, q: usize, k: usize, v: usize, probs: usize, batch: i32, seq: i32, heads: i32, kvHeads: i32, headDim: i32, scale: f32, scratch: usize, u0: i32, u1: i32): void {
  const group = heads / kvHeads;
  const kvStride = <usize>(kvHeads * headDim) << 2;
  const qStride = <usize>(heads * headDim) << 2;
  const seqBytes = <usize>seq << 2;
  const sv = splat(scale);
  for (let u = u0; u < u1; u++) {
    const b = u / heads, h = u % heads;
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
