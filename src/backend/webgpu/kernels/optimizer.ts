// AdamW, exactly torch.optim.AdamW's update (decoupled decay first), in JsBackend's order of
// operations. The step-dependent scalars are computed once on the host in f64 (as the CPU
// backends do): decay = 1 − lr·wd, stepSize = lr/(1 − β1^t), bc2 = sqrt(1 − β2^t).
import { type Gpu, GpuBuf, Params, groups1d } from "../gpu.js";
import { elementwiseShader, unaliased } from "./common.js";

//   p *= decay;  m = β1·m + (1−β1)·g;  v = β2·v + (1−β2)·g²;  p −= stepSize·m / (sqrt(v)/bc2 + eps)
const ADAMW = elementwiseShader(
  `struct P { n: u32, beta1: f32, beta2: f32, c1: f32, c2: f32, eps: f32, decay: f32, stepSize: f32, bc2: f32 } @group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> param: array<f32>;
@group(0) @binding(2) var<storage, read_write> m: array<f32>;
@group(0) @binding(3) var<storage, read_write> v: array<f32>;
@group(0) @binding(4) var<storage, read> grad: array<f32>;`,
  `let g = grad[i];
  let mm = p.beta1 * m[i] + p.c1 * g;
  let vv = p.beta2 * v[i] + p.c2 * g * g;
  m[i] = mm;
  v[i] = vv;
  param[i] = param[i] * p.decay - (p.stepSize * mm) / (sqrt(vv) / p.bc2 + p.eps);`,
);

export function adamw(gpu: Gpu, param: GpuBuf, grad: GpuBuf, m: GpuBuf, v: GpuBuf, lr: number, beta1: number, beta2: number, eps: number, weightDecay: number, step: number, n: number): void {
  if (param.buffer === m.buffer || param.buffer === v.buffer || m.buffer === v.buffer) throw new Error("webgpu backend: adamw's param, m and v must be distinct buffers");
  if (n === 0) return;
  const bc1 = 1 - Math.pow(beta1, step), bc2 = Math.sqrt(1 - Math.pow(beta2, step));
  const g = unaliased(gpu, grad, param, m, v);
  const params = new Params().u32(n).f32(beta1, beta2, 1 - beta1, 1 - beta2, eps, 1 - lr * weightDecay, lr / bc1, bc2);
  gpu.dispatch(ADAMW, params, [param, m, v, g.buf], groups1d(gpu, n));
  g.done();
}
