// Dense GEMM: C = (accumulate ? C : 0) + op(A)·op(B), tiled in workgroup memory, plus two
// matrix-vector kernels for m = 1 or n = 1 (decode: y = x·Wᵀ with one row of x).
import { type Gpu, type GpuBuf, Params, groups1d } from "../gpu.js";
import { unaliased } from "./common.js";

// Tiled GEMM: a workgroup of 16×16 threads computes a 64×64 tile of C, thread (tx, ty) the 4×4
// outputs at rows 4ty…4ty+3 and columns 4tx…4tx+3. K advances BK at a time through tiles of op(A)
// and op(B) held k-major in workgroup memory as vec4s of 4 rows (or columns): per k the thread
// reads one vec4 of each and does 16 FMAs. Element (p, x) of a tile lives in vec4 slot
// p·16 + ((x/4) ^ f(p)), component x % 4: the xor spreads the tile writes over the memory banks and
// leaves the reads conflict-free (16 threads read 16 distinct slots, or one slot broadcast).
export const TILE = 64;
const BK = 16;

/**
 * WGSL shared by the tiled GEMMs (dense and quantized): the slot functions `sa`/`sb` of the two
 * tiles As and Bs (bk × 16 vec4 each) with xor masks `fa`/`fb` (WGSL expressions of pp), the inner
 * product over one K tile and the store of the 4×4 results (C[o] = (p.acc ? C[o] : 0) + sum). The
 * kernel declares `p` with fields m, n, acc and the binding `c`, and defines tx, ty, row0, col0.
 */
export function gemmTile(bk: number, fa: string, fb: string): { decls: string; compute: string; store: string } {
  const decls = `var<workgroup> As: array<vec4f, ${bk * 16}>;
var<workgroup> Bs: array<vec4f, ${bk * 16}>;
fn sa(pp: u32, x: u32) -> u32 { return pp * 16u + ((x / 4u) ^ (${fa})); }
fn sb(pp: u32, x: u32) -> u32 { return pp * 16u + ((x / 4u) ^ (${fb})); }`;
  const compute = `for (var pp = 0u; pp < ${bk}u; pp++) {
      let av = As[sa(pp, 4u * ty)];
      let bv = Bs[sb(pp, 4u * tx)];
      acc0 = fma(vec4f(av.x), bv, acc0); acc1 = fma(vec4f(av.y), bv, acc1);
      acc2 = fma(vec4f(av.z), bv, acc2); acc3 = fma(vec4f(av.w), bv, acc3);
    }`;
  const rows: string[] = [];
  for (let r = 0; r < 4; r++) {
    const cols: string[] = [];
    for (let c = 0; c < 4; c++) cols.push(`if (col0 + 4u * tx + ${c}u < p.n) { c[o + ${c}u] = select(0.0, c[o + ${c}u], p.acc != 0u) + acc${r}.${"xyzw"[c]}; }`);
    rows.push(`{ let gi = row0 + 4u * ty + ${r}u;
    if (gi < p.m) { let o = gi * p.n + col0 + 4u * tx;
      ${cols.join("\n      ")} } }`);
  }
  return { decls, compute, store: rows.join("\n  ") };
}

// One pipeline for every transpose and accumulate mode: the layouts are uniforms. Element e of a
// tile load maps to (row of the tile, k within it) by shifts and masks chosen so that consecutive
// threads read consecutive addresses of the stored matrix (A [m,k] is contiguous in k, the storage
// of a transposed A in m); the address is row·rowStride + k·kStride.
let gemm: string | null = null;
function gemmShader(): string {
  const tile = gemmTile(BK, "pp & 7u", "pp & 7u");
  return (gemm ??= `
struct P { m: u32, n: u32, k: u32, acc: u32, mapA: vec4u, mapB: vec4u, strideA: vec2u, strideB: vec2u }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> c: array<f32>;
@group(0) @binding(2) var<storage, read> a: array<f32>;
@group(0) @binding(3) var<storage, read> b: array<f32>;
${tile.decls}
@compute @workgroup_size(16, 16)
fn main(@builtin(local_invocation_id) lid: vec3u, @builtin(workgroup_id) wid: vec3u) {
  let tx = lid.x; let ty = lid.y; let t = ty * 16u + tx;
  let row0 = wid.y * ${TILE}u; let col0 = wid.x * ${TILE}u;
  var acc0 = vec4f(0.0); var acc1 = vec4f(0.0); var acc2 = vec4f(0.0); var acc3 = vec4f(0.0);
  for (var k0 = 0u; k0 < p.k; k0 += ${BK}u) {
    for (var r = 0u; r < ${(TILE * BK) / 256}u; r++) {
      let e = t + 256u * r;
      {
        let ii = (e >> p.mapA.x) & p.mapA.y; let kk = (e >> p.mapA.z) & p.mapA.w;
        let gi = row0 + ii; let gk = k0 + kk;
        var v = 0.0;
        if (gi < p.m && gk < p.k) { v = a[gi * p.strideA.x + gk * p.strideA.y]; }
        As[sa(kk, ii)][ii % 4u] = v;
      }
      {
        let jj = (e >> p.mapB.x) & p.mapB.y; let kb = (e >> p.mapB.z) & p.mapB.w;
        let gj = col0 + jj; let gk = k0 + kb;
        var v = 0.0;
        if (gj < p.n && gk < p.k) { v = b[gj * p.strideB.x + gk * p.strideB.y]; }
        Bs[sb(kb, jj)][jj % 4u] = v;
      }
    }
    workgroupBarrier();
    ${tile.compute}
    workgroupBarrier();
  }
  ${tile.store}
}`);
}

/** Shifts and masks of a tile load (see gemmShader): k-contiguous storage, or row-contiguous. */
const K_MAJOR = [4, TILE - 1, 0, BK - 1], ROW_MAJOR = [0, TILE - 1, 6, BK - 1];

// y[r] = Σ_q M[r·k + q]·v[q] for r < rows (M row-major [rows, k]): 256/lanes rows per workgroup,
// `lanes` threads per row striding over k (vec4 loads when k % 4 == 0), then a tree reduction.
const mvRowsShaders = new Map<string, string>();

/** Lanes per row: the row's length in loads, up to 32 (short rows leave no lane idle). */
const mvLanes = (loads: number): number => Math.min(32, 2 ** Math.ceil(Math.log2(Math.max(1, loads))));
function mvRowsShader(vec4: boolean, lanes: number): string {
  const key = `${vec4} ${lanes}`;
  let code = mvRowsShaders.get(key);
  if (code !== undefined) return code;
  const T = vec4 ? "vec4f" : "f32";
  const dot = vec4 ? "dot(mat[base + q], v[q])" : "mat[base + q] * v[q]";
  code = `
struct P { rows: u32, k: u32, acc: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
@group(0) @binding(2) var<storage, read> mat: array<${T}>;
@group(0) @binding(3) var<storage, read> v: array<${T}>;
var<workgroup> part: array<f32, 256>;
@compute @workgroup_size(256)
fn main(@builtin(local_invocation_id) lid: vec3u, @builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let lane = lid.x % ${lanes}u;
  let row = (wid.x + wid.y * nwg.x) * ${256 / lanes}u + lid.x / ${lanes}u;
  let kw = ${vec4 ? "p.k / 4u" : "p.k"};
  var s = 0.0;
  if (row < p.rows) {
    let base = row * kw;
    for (var q = lane; q < kw; q += ${lanes}u) { s += ${dot}; }
  }
  part[lid.x] = s;
  workgroupBarrier();
  for (var w = ${lanes >> 1}u; w > 0u; w >>= 1u) {
    if (lane < w) { part[lid.x] += part[lid.x + w]; }
    workgroupBarrier();
  }
  if (lane == 0u && row < p.rows) { y[row] = select(0.0, y[row], p.acc != 0u) + part[lid.x]; }
}`;
  mvRowsShaders.set(key, code);
  return code;
}

// y[j] = Σ_q M[q·cols + j]·v[q] for j < cols (M row-major [k, cols]): a workgroup of 64 columns ×
// 4 slices of k (consecutive threads read consecutive columns), the 4 partial sums then added.
let mvCols: string | null = null;
function mvColsShader(): string {
  return (mvCols ??= `
struct P { cols: u32, k: u32, acc: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
@group(0) @binding(2) var<storage, read> mat: array<f32>;
@group(0) @binding(3) var<storage, read> v: array<f32>;
var<workgroup> part: array<f32, 256>;
@compute @workgroup_size(64, 4)
fn main(@builtin(local_invocation_id) lid: vec3u, @builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let j = (wid.x + wid.y * nwg.x) * 64u + lid.x;
  var s = 0.0;
  if (j < p.cols) {
    for (var q = lid.y; q < p.k; q += 4u) { s = fma(mat[q * p.cols + j], v[q], s); }
  }
  part[lid.y * 64u + lid.x] = s;
  workgroupBarrier();
  if (lid.y == 0u && j < p.cols) {
    let t = (part[lid.x] + part[64u + lid.x]) + (part[128u + lid.x] + part[192u + lid.x]);
    y[j] = select(0.0, y[j], p.acc != 0u) + t;
  }
}`);
}

export function matmul(gpu: Gpu, c: GpuBuf, a: GpuBuf, b: GpuBuf, m: number, n: number, k: number, transA: boolean, transB: boolean, accumulate: boolean): void {
  if (m === 0 || n === 0) return;
  // C never aliases A or B by contract; a copy keeps WebGPU's binding rule if a caller breaks it.
  const ua = unaliased(gpu, a, c), ub = unaliased(gpu, b, c);
  try {
    if (m === 1 || n === 1) {
      // A one-row op(A) is a contiguous vector whether transposed or not; likewise a one-column op(B).
      // m = 1: yᵀ = aᵀ·op(B), op(B)ᵀ = B [n,k] (transB: rows) or op(B) = B [k,n] (columns).
      // n = 1: y = op(A)·b, op(A) = A [m,k] (rows) or op(A)ᵀ = A [k,m] (transA: columns).
      const [mat, vec, len, rowsOfMat] = m === 1 ? [ub.buf, ua.buf, n, transB] : [ua.buf, ub.buf, m, !transA];
      if (rowsOfMat) {
        const vec4 = k % 4 === 0;
        const lanes = mvLanes(vec4 ? k / 4 : k);
        gpu.dispatch(mvRowsShader(vec4, lanes), new Params().u32(len, k, +accumulate), [c, mat, vec], groups1d(gpu, len, 256 / lanes));
      } else {
        gpu.dispatch(mvColsShader(), new Params().u32(len, k, +accumulate), [c, mat, vec], groups1d(gpu, len, 64));
      }
      return;
    }
    // A [m,k]: element (i, p) at i·k + p; transA, A [k,m]: at p·m + i. B likewise with (j, p).
    const params = new Params()
      .u32(m, n, k, +accumulate)
      .u32(...(transA ? ROW_MAJOR : K_MAJOR), ...(transB ? K_MAJOR : ROW_MAJOR))
      .u32(...(transA ? [1, m] : [k, 1]), ...(transB ? [k, 1] : [1, n]));
    gpu.dispatch(gemmShader(), params, [c, ua.buf, ub.buf], [Math.ceil(n / TILE), Math.ceil(m / TILE)]);
  } finally {
    ua.done();
    ub.done();
  }
}
