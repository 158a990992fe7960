// RMSNorm and its backward. Row-wise sums use one workgroup per row with a tree reduction; dw, a
// sum over rows, is summed in a fixed order (row chunks, then the chunks' partials) so that
// repeated runs give the same bits.
import { type Gpu, GpuBuf, Params, WG, groups1d } from "../gpu.js";
import { elementwiseShader, scratch, unaliased, workgroupReductions } from "./common.js";

const REDUCE = workgroupReductions("f32");

// One workgroup per row r (row index over x and y of the grid): rstd = 1/sqrt(Σx²/dim + eps), out = x·rstd·w.
const RMSNORM = `
struct P { rows: u32, dim: u32, eps: f32 } @group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read_write> rstd: array<f32>;
@group(0) @binding(3) var<storage, read> x: array<f32>;
@group(0) @binding(4) var<storage, read> w: array<f32>;
${REDUCE}
@compute @workgroup_size(${WG})
fn main(@builtin(local_invocation_id) l: vec3u, @builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let r = wid.x + wid.y * nwg.x;
  if (r >= p.rows) { return; }
  let lid = l.x;
  let base = r * p.dim;
  var ss = 0.0;
  for (var j = lid; j < p.dim; j += ${WG}u) { let v = x[base + j]; ss += v * v; }
  let s = 1.0 / sqrt(wgSum(lid, ss) / f32(p.dim) + p.eps);
  if (lid == 0u) { rstd[r] = s; }
  for (var j = lid; j < p.dim; j += ${WG}u) { out[base + j] = x[base + j] * s * w[j]; }
}`;

export function rmsnorm(gpu: Gpu, out: GpuBuf, rstd: GpuBuf, x: GpuBuf, w: GpuBuf, rows: number, dim: number, eps: number): void {
  if (out.buffer === rstd.buffer) throw new Error("webgpu backend: rmsnorm's out and rstd must be distinct buffers");
  const xs = unaliased(gpu, x, out, rstd), ws = unaliased(gpu, w, out, rstd);
  gpu.dispatch(RMSNORM, new Params().u32(rows, dim).f32(eps), [out, rstd, xs.buf, ws.buf], groups1d(gpu, rows, 1));
  xs.done();
  ws.done();
}

// dx, one workgroup per row: with g = dOut, s = rstd, y_j = x_j·s·w_j,
// dx_j += s·g_j·w_j − c·x_j where c = s³·Σ_k(g_k·w_k·x_k)/dim.
const RMSNORM_DX = `
struct P { rows: u32, dim: u32 } @group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> dx: array<f32>;
@group(0) @binding(2) var<storage, read> g: array<f32>;
@group(0) @binding(3) var<storage, read> x: array<f32>;
@group(0) @binding(4) var<storage, read> w: array<f32>;
@group(0) @binding(5) var<storage, read> rstd: array<f32>;
${REDUCE}
@compute @workgroup_size(${WG})
fn main(@builtin(local_invocation_id) l: vec3u, @builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let r = wid.x + wid.y * nwg.x;
  if (r >= p.rows) { return; }
  let lid = l.x;
  let base = r * p.dim;
  var dot = 0.0;
  for (var j = lid; j < p.dim; j += ${WG}u) { dot += g[base + j] * w[j] * x[base + j]; }
  let s = rstd[r];
  let c = s * s * s * wgSum(lid, dot) / f32(p.dim);
  for (var j = lid; j < p.dim; j += ${WG}u) {
    dx[base + j] = dx[base + j] + s * g[base + j] * w[j] - c * x[base + j];
  }
}`;

// dw partials: thread i = (chunk, column j) sums g·x·s over the chunk's rows in order. With one
// chunk it adds straight into dw (acc = 1); otherwise it writes its chunk's row of `part`.
const RMSNORM_DW_PART = elementwiseShader(
  `struct P { n: u32, rows: u32, dim: u32, chunkRows: u32, acc: u32 } @group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> part: array<f32>;
@group(0) @binding(2) var<storage, read> g: array<f32>;
@group(0) @binding(3) var<storage, read> x: array<f32>;
@group(0) @binding(4) var<storage, read> rstd: array<f32>;`,
  `let j = i % p.dim;
  let r0 = (i / p.dim) * p.chunkRows;
  let r1 = min(p.rows, r0 + p.chunkRows);
  var s = 0.0;
  for (var r = r0; r < r1; r++) { s += g[r * p.dim + j] * x[r * p.dim + j] * rstd[r]; }
  part[i] = select(0.0, part[i], p.acc == 1u) + s;`,
);

// dw_j += Σ_c part[c, j], chunks in order.
const RMSNORM_DW_SUM = elementwiseShader(
  `struct P { n: u32, chunks: u32 } @group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> dw: array<f32>;
@group(0) @binding(2) var<storage, read> part: array<f32>;`,
  `var s = 0.0;
  for (var c = 0u; c < p.chunks; c++) { s += part[c * p.n + i]; }
  dw[i] = dw[i] + s;`,
);

export function rmsnormBackward(gpu: Gpu, dx: GpuBuf, dw: GpuBuf, dOut: GpuBuf, x: GpuBuf, w: GpuBuf, rstd: GpuBuf, rows: number, dim: number): void {
  if (dx.buffer === dw.buffer) throw new Error("webgpu backend: rmsnormBackward's dx and dw must be distinct buffers");
  const ins = [dOut, x, w, rstd].map((b) => unaliased(gpu, b, dx, dw));
  const [g, xs, ws, rs] = ins.map((b) => b.buf);
  gpu.dispatch(RMSNORM_DX, new Params().u32(rows, dim), [dx, g, xs, ws, rs], groups1d(gpu, rows, 1));
  // About √rows chunks of √rows rows: both passes then have enough threads and short loops.
  const chunkRows = Math.max(1, Math.ceil(Math.sqrt(rows))), chunks = Math.ceil(rows / chunkRows);
  if (chunks <= 1) {
    gpu.dispatch(RMSNORM_DW_PART, new Params().u32(dim, rows, dim, Math.max(rows, 1), 1), [dw, g, xs, rs], groups1d(gpu, dim));
  } else {
    const part = scratch(gpu, chunks * dim);
    gpu.dispatch(RMSNORM_DW_PART, new Params().u32(chunks * dim, rows, dim, chunkRows, 0), [part, g, xs, rs], groups1d(gpu, chunks * dim));
    gpu.dispatch(RMSNORM_DW_SUM, new Params().u32(dim, chunks), [dw, part], groups1d(gpu, dim));
    gpu.release(part.buffer);
  }
  for (const b of ins) b.done();
}
