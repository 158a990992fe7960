// Element-wise kernels and reductions: fill, add, axpy, scale, sums, column scaling, SwiGLU and
// dropout (with the counter-based hash of backend.ts, bit for bit).
import { type Gpu, GpuBuf, Params, WG, groups1d } from "../gpu.js";
import { elementwiseShader, scratch, unaliased } from "./common.js";

const FILL = elementwiseShader(
  `struct P { n: u32, value: f32 } @group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;`,
  `out[i] = p.value;`,
);

export function fill(gpu: Gpu, buf: GpuBuf, value: number): void {
  gpu.dispatch(FILL, new Params().u32(buf.length).f32(value), [buf], groups1d(gpu, buf.length));
}

const ADD = elementwiseShader(
  `struct P { n: u32 } @group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> a: array<f32>;
@group(0) @binding(3) var<storage, read> b: array<f32>;`,
  `out[i] = a[i] + b[i];`,
);
// out += b, for add(out, out, b) and add(out, b, out).
const ADD_INTO = elementwiseShader(
  `struct P { n: u32 } @group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;`,
  `out[i] = out[i] + b[i];`,
);
// out = a + a.
const DOUBLE = elementwiseShader(
  `struct P { n: u32 } @group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;`,
  `out[i] = out[i] + out[i];`,
);

export function add(gpu: Gpu, out: GpuBuf, a: GpuBuf, b: GpuBuf, n: number): void {
  const params = new Params().u32(n), g = groups1d(gpu, n);
  const oa = out.buffer === a.buffer, ob = out.buffer === b.buffer;
  if (oa && ob) gpu.dispatch(DOUBLE, params, [out], g);
  else if (oa) gpu.dispatch(ADD_INTO, params, [out, b], g);
  else if (ob) gpu.dispatch(ADD_INTO, params, [out, a], g);
  else gpu.dispatch(ADD, params, [out, a, b], g);
}

const AXPY = elementwiseShader(
  `struct P { n: u32, alpha: f32 } @group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> acc: array<f32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;`,
  `acc[i] = acc[i] + p.alpha * x[i];`,
);

export function axpy(gpu: Gpu, acc: GpuBuf, x: GpuBuf, alpha: number, n: number): void {
  const src = unaliased(gpu, x, acc);
  gpu.dispatch(AXPY, new Params().u32(n).f32(alpha), [acc, src.buf], groups1d(gpu, n));
  src.done();
}

const SCALE = elementwiseShader(
  `struct P { n: u32, s: f32 } @group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;`,
  `x[i] = x[i] * p.s;`,
);

export function scale(gpu: Gpu, buf: GpuBuf, s: number): void {
  gpu.dispatch(SCALE, new Params().u32(buf.length).f32(s), [buf], groups1d(gpu, buf.length));
}

// Σ x (or Σ x²) in two passes: up to 256 workgroups of strided partial sums, then one that adds them.
const SUM_GROUPS = 256;
const sumShader = (squares: boolean): string => `
struct P { n: u32 } @group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;
var<workgroup> part: array<f32, ${WG}>;
@compute @workgroup_size(${WG})
fn main(@builtin(local_invocation_id) lid: vec3u, @builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  var s = 0.0;
  let stride = nwg.x * ${WG}u;
  for (var i = wid.x * ${WG}u + lid.x; i < p.n; i += stride) { let v = x[i]; s += ${squares ? "v * v" : "v"}; }
  part[lid.x] = s;
  workgroupBarrier();
  for (var w = ${WG / 2}u; w > 0u; w >>= 1u) {
    if (lid.x < w) { part[lid.x] += part[lid.x + w]; }
    workgroupBarrier();
  }
  if (lid.x == 0u) { out[wid.x] = part[0]; }
}`;
const SUM = sumShader(false), SUM_SQUARES = sumShader(true);

export async function sum(gpu: Gpu, x: GpuBuf, squares: boolean): Promise<number> {
  const n = x.length;
  const groups = Math.max(1, Math.min(SUM_GROUPS, Math.ceil(n / WG)));
  const partial = scratch(gpu, groups), total = scratch(gpu, 1);
  gpu.dispatch(squares ? SUM_SQUARES : SUM, new Params().u32(n), [partial, x], [groups]);
  gpu.dispatch(SUM, new Params().u32(groups), [total, partial], [1]);
  const result = gpu.readBytes(total.buffer, 0, 4);
  gpu.release(partial.buffer);
  gpu.release(total.buffer);
  return new Float32Array(await result)[0];
}

const SCALE_COLUMNS = elementwiseShader(
  `struct P { n: u32, offset: u32, cols: u32 } @group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;
@group(0) @binding(2) var<storage, read> gain: array<f32>;`,
  `x[p.offset + i] = x[p.offset + i] * gain[i % p.cols];`,
);

export function scaleColumns(gpu: Gpu, x: GpuBuf, gain: GpuBuf, offset: number, rows: number, cols: number): void {
  const n = rows * cols;
  const g = unaliased(gpu, gain, x);
  gpu.dispatch(SCALE_COLUMNS, new Params().u32(n, offset, cols), [x, g.buf], groups1d(gpu, n));
  g.done();
}

// silu(g)·u with silu(g) = g·σ(g); σ written as 1/(1 + e^−g), as the reference backends do.
const SWIGLU = elementwiseShader(
  `struct P { n: u32 } @group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> gate: array<f32>;
@group(0) @binding(3) var<storage, read> up: array<f32>;`,
  `let g = gate[i]; out[i] = (g / (1.0 + exp(-g))) * up[i];`,
);

export function swiglu(gpu: Gpu, out: GpuBuf, gate: GpuBuf, up: GpuBuf, n: number): void {
  const g = unaliased(gpu, gate, out), u = unaliased(gpu, up, out);
  gpu.dispatch(SWIGLU, new Params().u32(n), [out, g.buf, u.buf], groups1d(gpu, n));
  g.done();
  u.done();
}

const SWIGLU_BACKWARD = elementwiseShader(
  `struct P { n: u32 } @group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> dGate: array<f32>;
@group(0) @binding(2) var<storage, read_write> dUp: array<f32>;
@group(0) @binding(3) var<storage, read> dOut: array<f32>;
@group(0) @binding(4) var<storage, read> gate: array<f32>;
@group(0) @binding(5) var<storage, read> up: array<f32>;`,
  `let g = gate[i]; let d = dOut[i]; let sig = 1.0 / (1.0 + exp(-g));
  dUp[i] = dUp[i] + d * g * sig;
  dGate[i] = dGate[i] + d * up[i] * sig * (1.0 + g * (1.0 - sig));`,
);

export function swigluBackward(gpu: Gpu, dGate: GpuBuf, dUp: GpuBuf, dOut: GpuBuf, gate: GpuBuf, up: GpuBuf, n: number): void {
  if (dGate.buffer === dUp.buffer) throw new Error("webgpu backend: swigluBackward's dGate and dUp must be distinct buffers");
  const ins = [dOut, gate, up].map((b) => unaliased(gpu, b, dGate, dUp));
  gpu.dispatch(SWIGLU_BACKWARD, new Params().u32(n), [dGate, dUp, ...ins.map((x) => x.buf)], groups1d(gpu, n));
  for (const x of ins) x.done();
}

// The mask of backend.ts's dropoutUniform: keep where (hash >> 8) / 2^24 >= p, compared as
// integers ((hash >> 8) >= ceil(p·2^24), exact) so that every backend draws the same mask.
const DROPOUT = elementwiseShader(
  `struct P { n: u32, seed: u32, threshold: u32, keep: f32 } @group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read_write> mask: array<f32>;
@group(0) @binding(3) var<storage, read> x: array<f32>;`,
  `var h = i * 0x9e3779b9u + p.seed;
  h ^= h >> 16u; h *= 0x85ebca6bu; h ^= h >> 13u; h *= 0xc2b2ae35u; h ^= h >> 16u;
  let m = select(0.0, p.keep, (h >> 8u) >= p.threshold);
  mask[i] = m;
  out[i] = x[i] * m;`,
);

export function dropout(gpu: Gpu, out: GpuBuf, mask: GpuBuf, x: GpuBuf, p: number, seed: number, n: number): void {
  // The hash takes the seed modulo 2^32; dropoutUniform's arithmetic differs for fractional seeds
  // (as the wasm backend, refuse them), and two outputs cannot share a buffer.
  if (!Number.isInteger(seed)) throw new RangeError(`dropout seed must be an integer, got ${seed}`);
  if (out.buffer === mask.buffer) throw new Error("webgpu backend: dropout's out and mask must be distinct buffers");
  // p ≥ 1 drops everything (threshold above every hash); 1/(1 − p) is then never used.
  const threshold = p >= 1 ? 0xffffffff : Math.max(0, Math.ceil(p * 16777216));
  const src = unaliased(gpu, x, out, mask);
  gpu.dispatch(DROPOUT, new Params().u32(n, seed >>> 0, threshold).f32(1 / (1 - p)), [out, mask, src.buf], groups1d(gpu, n));
  src.done();
}

const DROPOUT_BACKWARD = elementwiseShader(
  `struct P { n: u32 } @group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> dx: array<f32>;
@group(0) @binding(2) var<storage, read> dOut: array<f32>;
@group(0) @binding(3) var<storage, read> mask: array<f32>;`,
  `dx[i] = dx[i] + dOut[i] * mask[i];`,
);

export function dropoutBackward(gpu: Gpu, dx: GpuBuf, dOut: GpuBuf, mask: GpuBuf, n: number): void {
  const d = unaliased(gpu, dOut, dx), m = unaliased(gpu, mask, dx);
  gpu.dispatch(DROPOUT_BACKWARD, new Params().u32(n), [dx, d.buf, m.buf], groups1d(gpu, n));
  d.done();
  m.done();
}
