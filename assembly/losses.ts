// Losses: softmax cross-entropy and the knowledge-distillation divergences, forward and backward.

import { exps, expv, hmax, hsum, madd, splat } from "./simd";

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
@inline export function kdLogAddExp(a: f64, b: f64): f64 {
  const m = max(a, b);
  return m == -Infinity ? m : m + Math.log(Math.exp(a - m) + Math.exp(b - m));
}

/** One outcome's share of D, for log-probabilities lq (student) and lp (teacher). */
export function kdTerm(kind: i32, lq: f64, lp: f64, beta: f64): f64 {
  if (kind == 0) return lp == -Infinity ? 0 : Math.exp(lp) * (lp - lq);
  if (kind == 1) return lq == -Infinity ? 0 : Math.exp(lq) * (lq - lp);
  const lm = kdLogAddExp(lq + Math.log(1 - beta), lp + Math.log(beta));
  return (lp == -Infinity ? 0 : beta * Math.exp(lp) * (lp - lm)) + (lq == -Infinity ? 0 : (1 - beta) * Math.exp(lq) * (lq - lm));
}

/** ∂D/∂log q of that outcome: −p (forward), q·(lq − lp + 1) (reverse), (1−β)·q·(lq − lm) (JSD). */
export function kdGrad(kind: i32, lq: f64, lp: f64, beta: f64): f64 {
  if (kind == 0) return lp == -Infinity ? 0 : -Math.exp(lp);
  if (lq == -Infinity) return 0;
  if (kind == 1) return Math.exp(lq) * (lq - lp + 1);
  const lm = kdLogAddExp(lq + Math.log(1 - beta), lp + Math.log(beta));
  return (1 - beta) * Math.exp(lq) * (lq - lm);
}

/** log(1 + u) for u in [0, 1], 4 lanes: 2·atanh(s) with s = u/(2+u) ≤ 1/3, series to s¹¹ (error < 1e-7). */
// @ts-ignore: decorator
@inline export function kdLog1pv(u: v128): v128 {
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
@inline export function kdLogAddExpv(a: v128, b: v128): v128 {
  return f32x4.add(f32x4.max(a, b), kdLog1pv(expv(f32x4.neg(f32x4.abs(f32x4.sub(a, b))))));
}

/** logsumexp of a row scaled by `scale`. */
export function kdLse(x: usize, n: i32, scale: f64): f64 {
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
@inline export function kdWeightCe(t: i32, alpha: f64): f64 {
  return t >= 0 ? alpha : 0;
}
// @ts-ignore: decorator
@inline export function kdWeightKd(t: i32, alpha: f64, tau: f64): f64 {
  return (t >= 0 ? 1 - alpha : 1) * tau * tau;
}

/**
 * Σ_j D_j and Σ_j ∂D/∂log q_j over a dense row (student s, teacher p, both scaled by inv and
 * shifted by their lse); the pair goes to out[0], out[1] (f64).
 */
export function kdDenseSums(out: usize, s: usize, p: usize, vocab: i32, inv: f64, lseS: f64, lseP: f64, kind: i32, beta: f64): void {
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
export function kdMark(marks: usize, ids: usize, k: i32, v: u8): void {
  for (let o = 0; o < k; o++) store<u8>(marks + <usize>load<i32>(ids + (<usize>o << 2)), v);
}

/** All-ones lanes for the 4 tokens from j whose mark byte is 0 (outside the top-k). */
// @ts-ignore: decorator
@inline export function kdUnmarked(marks: usize, j: i32): v128 {
  const b = i32x4.extend_low_i16x8_u(i16x8.extend_low_i8x16_u(v128.load32_zero(marks + <usize>j)));
  return i32x4.eq(b, i32x4.splat(0));
}

/** log of the teacher's residual mass 1 − Σ top-k (floored at 1e-30), or −∞ when k = vocab. */
export function kdResidualTeacher(lps: usize, k: i32, vocab: i32): f64 {
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
