// The optimizer step.

import { madd, splat } from "./simd";

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
