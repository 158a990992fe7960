// Mixture-of-experts kernels: the router's softmax and log-sum-exp (row reductions, one workgroup
// per row as in norm.ts and loss.ts), top-k routing (one thread per row), expert loads, the
// expert projections (ggml's mul_mat_id) with their backward, and the weighted combine. The math
// is JsBackend's (js-backend.ts) in f32.
//
// Expert ids are f32 whole numbers in a GPU buffer, written by moeTopK, and never come back to
// the host. The CPU backends throw on an id that is not a whole number in [0, experts); here a
// shader cannot throw, so it treats such a slot as routed nowhere: matmulExperts(Quantized)
// writes zeros for it, and no backward kernel, moeCounts or moeTopKBackward reads or writes
// anything through it. No kernel ever indexes a weight with it.
//
// Expert projections, with S = rows·k slots:
//  - S ≤ MV_SLOTS (decode: T = 1, k = 2): a matrix-vector product per slot, each reading its
//    expert's rows (the quantized ones through quantized.ts's matvec loop);
//  - otherwise grouped GEMMs: a routing pass (one thread per expert) lists the slots of every
//    expert in slot order, then 64×64 tiles (matmul.ts's gemmTile) of (that expert's slots ×
//    output columns) run over a grid of (column tiles, slot tiles, experts); tiles past an
//    expert's count return at once. The backward runs the same way: dX per expert's slots
//    (into a [S, kin] scratch that a second pass sums per row when k slots share an input row,
//    so no two workgroups add into one number), dW_e as (n × kin) tiles whose K loop runs over
//    the expert's slot list. Everything is race-free and sums in a fixed order.
import { type Gpu, type GpuBuf, Params, WG, groups1d } from "../gpu.js";
import { distinctOutputs, elementwiseShader, unaliasedInputs, scratch, unaliased, workgroupReductions } from "./common.js";
import { TILE, gemmTile } from "./matmul.js";
import { type GpuQBuf, MV_ROWS, QBK, matvecParts, swOf, tiledParts } from "./quantized.js";

const REDUCE = workgroupReductions("f32");



/**
 * `expertOf(v)`: the expert of id v, or p.experts (no expert) when v is not a whole number in
 * [0, p.experts) (NaN included: every comparison with it fails).
 */
const EXPERT_FN = `
fn expertOf(v: f32) -> u32 {
  let e = u32(clamp(v, 0.0, f32(p.experts)));
  if (v >= 0.0 && v < f32(p.experts) && f32(e) == v) { return e; }
  return p.experts;
}`;

// ---- softmax and log-sum-exp ----------------------------------------------------------------

/** One workgroup per row: the row's max and Σ exp(x − max) by tree reductions. */
const rowHead = (x: string): string => `
  let r = wid.x + wid.y * nwg.x;
  if (r >= p.rows) { return; }
  let lid = l.x;
  let o = r * p.cols;
  var m = p.ninf; // −∞, a uniform: WGSL has no infinite constants
  for (var j = lid; j < p.cols; j += ${WG}u) { m = max(m, ${x}[o + j]); }
  m = wgMax(lid, m);
  var z = 0.0;
  for (var j = lid; j < p.cols; j += ${WG}u) { z += exp(${x}[o + j] - m); }
  z = wgSum(lid, z);`;
const ROW_MAIN = `@compute @workgroup_size(${WG})
fn main(@builtin(local_invocation_id) l: vec3u, @builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u) {`;

// out = exp(x − m) / z. In place (out = x) the row is read from out: every thread reads and then
// writes only its own elements, so the in-place kernel needs no second binding.
const softmaxShader = (inPlace: boolean): string => {
  const x = inPlace ? "out" : "x";
  return `
struct P { rows: u32, cols: u32, ninf: f32 } @group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
${inPlace ? "" : "@group(0) @binding(2) var<storage, read> x: array<f32>;"}
${REDUCE}
${ROW_MAIN}${rowHead(x)}
  for (var j = lid; j < p.cols; j += ${WG}u) { out[o + j] = exp(${x}[o + j] - m) / z; }
}`;
};
const SOFTMAX = softmaxShader(false), SOFTMAX_IN_PLACE = softmaxShader(true);

export function softmax(gpu: Gpu, out: GpuBuf, x: GpuBuf, rows: number, cols: number): void {
  if (rows === 0 || cols === 0) return;
  const params = new Params().u32(rows, cols).f32(-Infinity);
  if (out.buffer === x.buffer) gpu.dispatch(SOFTMAX_IN_PLACE, params, [out], groups1d(gpu, rows, 1));
  else gpu.dispatch(SOFTMAX, params, [out, x], groups1d(gpu, rows, 1));
}

// dx += y ⊙ (g − Σ g·y), one workgroup per row.
const SOFTMAX_BACKWARD = `
struct P { rows: u32, cols: u32 } @group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> dx: array<f32>;
@group(0) @binding(2) var<storage, read> g: array<f32>;
@group(0) @binding(3) var<storage, read> y: array<f32>;
${REDUCE}
${ROW_MAIN}
  let r = wid.x + wid.y * nwg.x;
  if (r >= p.rows) { return; }
  let lid = l.x;
  let o = r * p.cols;
  var d = 0.0;
  for (var j = lid; j < p.cols; j += ${WG}u) { d += g[o + j] * y[o + j]; }
  d = wgSum(lid, d);
  for (var j = lid; j < p.cols; j += ${WG}u) { dx[o + j] = dx[o + j] + y[o + j] * (g[o + j] - d); }
}`;

export function softmaxBackward(gpu: Gpu, dx: GpuBuf, dOut: GpuBuf, y: GpuBuf, rows: number, cols: number): void {
  if (rows === 0 || cols === 0) return;
  const ins = unaliasedInputs(gpu, [dx], dOut, y);
  gpu.dispatch(SOFTMAX_BACKWARD, new Params().u32(rows, cols), [dx, ...ins.bufs], groups1d(gpu, rows, 1));
  ins.done();
}

// out[r] = m + log z; an empty row gives −∞ (log of an empty sum), as JsBackend does.
const LOG_SUM_EXP = `
struct P { rows: u32, cols: u32, ninf: f32 } @group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;
${REDUCE}
${ROW_MAIN}${rowHead("x")}
  if (lid == 0u) { out[r] = select(m + log(z), m, p.cols == 0u); }
}`;

export function logSumExp(gpu: Gpu, out: GpuBuf, x: GpuBuf, rows: number, cols: number): void {
  if (rows === 0) return;
  const ins = unaliasedInputs(gpu, [out], x);
  gpu.dispatch(LOG_SUM_EXP, new Params().u32(rows, cols).f32(-Infinity), [out, ...ins.bufs], groups1d(gpu, rows, 1));
  ins.done();
}

const LOG_SUM_EXP_BACKWARD = elementwiseShader(
  `struct P { n: u32, cols: u32 } @group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> dx: array<f32>;
@group(0) @binding(2) var<storage, read> g: array<f32>;
@group(0) @binding(3) var<storage, read> x: array<f32>;
@group(0) @binding(4) var<storage, read> lse: array<f32>;`,
  `let r = i / p.cols;
  dx[i] = dx[i] + g[r] * exp(x[i] - lse[r]);`,
);

export function logSumExpBackward(gpu: Gpu, dx: GpuBuf, dOut: GpuBuf, x: GpuBuf, lse: GpuBuf, rows: number, cols: number): void {
  const n = rows * cols;
  if (n === 0) return;
  const ins = unaliasedInputs(gpu, [dx], dOut, x, lse);
  gpu.dispatch(LOG_SUM_EXP_BACKWARD, new Params().u32(n, cols), [dx, ...ins.bufs], groups1d(gpu, n));
  ins.done();
}

// ---- routing ------------------------------------------------------------------------------------

// One thread per row, k rounds of an argmax over the row in backend/top-k.ts's order (larger
// first, equal values by lower index, NaN after every number), each round taking the best element
// after the previous round's pick in that order (top-k.ts's trick: no set of taken ids). The order
// is total, so with k ≤ experts every round finds an expert. Then the chosen values are divided
// by their sum (in rank order, as JsBackend sums them).
const TOP_K = elementwiseShader(
  `struct P { n: u32, experts: u32, k: u32 } @group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> weights: array<f32>;
@group(0) @binding(2) var<storage, read_write> ids: array<f32>;
@group(0) @binding(3) var<storage, read> probs: array<f32>;
fn isNan(v: f32) -> bool { return (bitcast<u32>(v) & 0x7fffffffu) > 0x7f800000u; }
fn before(v: f32, i: u32, w: f32, j: u32) -> bool {
  let nv = isNan(v); let nw = isNan(w);
  if (nv || nw) { return nw && (!nv || i < j); }
  return v > w || (v == w && i < j);
}`,
  `let o = i * p.experts; let b = i * p.k;
  var pv = 0.0; var pi = 0u; var s = 0.0;
  for (var j = 0u; j < p.k; j++) {
    var bv = 0.0; var bi = 0xffffffffu;
    for (var c = 0u; c < p.experts; c++) {
      let v = probs[o + c];
      if ((j == 0u || before(pv, pi, v, c)) && (bi == 0xffffffffu || before(v, c, bv, bi))) { bv = v; bi = c; }
    }
    ids[b + j] = f32(bi);
    weights[b + j] = bv;
    s += bv;
    pv = bv; pi = bi;
  }
  for (var j = 0u; j < p.k; j++) { weights[b + j] = weights[b + j] / s; }`,
);

export function moeTopK(gpu: Gpu, weights: GpuBuf, ids: GpuBuf, probs: GpuBuf, rows: number, experts: number, k: number): void {
  if (rows === 0) return;
  distinctOutputs("moeTopK", [weights, ids]);
  const ins = unaliasedInputs(gpu, [weights, ids], probs);
  gpu.dispatch(TOP_K, new Params().u32(rows, experts, k), [weights, ids, ...ins.bufs], groups1d(gpu, rows));
  ins.done();
}

// One thread per row: s = Σ_j p[ids_j] over valid ids, dot = Σ_j dW_j·w_j, then the row's k
// distinct entries (one thread writes them all: no race even with repeated ids).
const TOP_K_BACKWARD = elementwiseShader(
  `struct P { n: u32, experts: u32, k: u32 } @group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> dProbs: array<f32>;
@group(0) @binding(2) var<storage, read> dW: array<f32>;
@group(0) @binding(3) var<storage, read> probs: array<f32>;
@group(0) @binding(4) var<storage, read> w: array<f32>;
@group(0) @binding(5) var<storage, read> ids: array<f32>;${EXPERT_FN}`,
  `let o = i * p.experts; let b = i * p.k;
  var s = 0.0; var dot = 0.0;
  for (var j = 0u; j < p.k; j++) {
    let e = expertOf(ids[b + j]);
    if (e < p.experts) { s += probs[o + e]; }
    dot += dW[b + j] * w[b + j];
  }
  for (var j = 0u; j < p.k; j++) {
    let e = expertOf(ids[b + j]);
    if (e < p.experts) { dProbs[o + e] = dProbs[o + e] + (dW[b + j] - dot) / s; }
  }`,
);

export function moeTopKBackward(gpu: Gpu, dProbs: GpuBuf, dWeights: GpuBuf, probs: GpuBuf, weights: GpuBuf, ids: GpuBuf, rows: number, experts: number, k: number): void {
  if (rows === 0 || k === 0) return;
  const ins = unaliasedInputs(gpu, [dProbs], dWeights, probs, weights, ids);
  gpu.dispatch(TOP_K_BACKWARD, new Params().u32(rows, experts, k), [dProbs, ...ins.bufs], groups1d(gpu, rows));
  ins.done();
}

// One thread per expert counting its ids (exact in f32 up to 2^24 slots).
const COUNTS = elementwiseShader(
  `struct P { n: u32, count: u32, experts: u32 } @group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> counts: array<f32>;
@group(0) @binding(2) var<storage, read> ids: array<f32>;${EXPERT_FN}`,
  `var c = 0u;
  for (var t = 0u; t < p.count; t++) { if (expertOf(ids[t]) == i) { c++; } }
  counts[i] = counts[i] + f32(c);`,
);

export function moeCounts(gpu: Gpu, counts: GpuBuf, ids: GpuBuf, n: number, experts: number): void {
  if (n === 0 || experts === 0) return;
  const ins = unaliasedInputs(gpu, [counts], ids);
  gpu.dispatch(COUNTS, new Params().u32(experts, n, experts), [counts, ...ins.bufs], groups1d(gpu, experts));
  ins.done();
}

// ---- expert projections ---------------------------------------------------------------------

/** Slots up to which the forward runs one matrix-vector product per slot (decode). */
export const MV_SLOTS = 8;

/**
 * The routing lists (`route`, u32), for B = experts + 1 buckets (the last one: slots with no
 * valid expert): route[b] = first list position of bucket b, route[B + b] = its slot count,
 * route[2B + i] = the slots, by bucket, ascending within one. One thread per bucket, two passes
 * over the ids (count those before it, then list its own).
 */
const ROUTE = elementwiseShader(
  `struct P { n: u32, slots: u32, experts: u32 } @group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> route: array<u32>;
@group(0) @binding(2) var<storage, read> ids: array<f32>;${EXPERT_FN}`,
  `var start = 0u; var cnt = 0u;
  for (var s = 0u; s < p.slots; s++) {
    let e = expertOf(ids[s]);
    start += select(0u, 1u, e < i);
    cnt += select(0u, 1u, e == i);
  }
  route[i] = start;
  route[p.n + i] = cnt;
  var at = 2u * p.n + start;
  for (var s = 0u; s < p.slots; s++) {
    if (expertOf(ids[s]) == i) { route[at] = s; at++; }
  }`,
);

/** The routing lists of `slots` ids over `experts` (see ROUTE); release the buffer after its last use. */
function route(gpu: Gpu, ids: GpuBuf, slots: number, experts: number): GpuBuf {
  const r = scratch(gpu, 2 * (experts + 1) + slots);
  gpu.dispatch(ROUTE, new Params().u32(experts + 1, slots, experts), [r, ids], groups1d(gpu, experts + 1));
  return r;
}

/** WGSL every expert kernel shares: the uniform P, the slot list and a slot's input row. */
const EXPERT_PARAMS = `struct P { slots: u32, n: u32, k: u32, sw: u32, experts: u32, topk: u32, perSlot: u32, acc: u32, mode: u32, pad0: u32, pad1: u32, pad2: u32, mapA: vec4u, mapB: vec4u }
@group(0) @binding(0) var<uniform> p: P;`;
const EXPERT_HELPERS = `${EXPERT_FN}
fn xRow(s: u32) -> u32 { return select(s / p.topk, s, p.perSlot != 0u); }`;
const LIST_FN = `
fn listAt(start: u32, i: u32) -> u32 { return route[2u * (p.experts + 1u) + start + i]; }`;

/** Kernel parameters in EXPERT_PARAMS's order (k = kin; sw: words per quantized row, 0 for floats). */
const expertParams = (slots: number, n: number, k: number, sw: number, experts: number, topk: number, perSlot: boolean, acc = false): Params =>
  new Params().u32(slots, n, k, sw, experts, topk, +perSlot, +acc);

/**
 * The shared head of the grouped kernels: workgroup (x, y, z) = (column tile, row tile, bucket ex),
 * `cnt` the bucket's slots (workgroup-uniform, so that the tile may return early) and `start`
 * its first list position.
 */
const GROUPED_HEAD = `
  let tx = lid.x; let ty = lid.y; let t = ty * 16u + tx;
  let ex = wid.z;
  if (t == 0u) { wgCnt = route[p.experts + 1u + ex]; }
  let cnt = workgroupUniformLoad(&wgCnt);
  let start = route[ex];
  let row0 = wid.y * ${TILE}u; let col0 = wid.x * ${TILE}u;`;

/** Tile maps (see EXPERTS_GEMM): the stored matrix contiguous in k, or in the row index. */
const K_MAJOR = [4, TILE - 1, 0, 15], ROW_MAJOR = [0, TILE - 1, 6, 15];
/** The modes of EXPERTS_GEMM with their tile maps (A, then B). */
const FORWARD = { mode: 0, maps: [...K_MAJOR, ...K_MAJOR] };
const DX = { mode: 1, maps: [...K_MAJOR, ...ROW_MAJOR] };
const DW = { mode: 2, maps: [...ROW_MAJOR, ...ROW_MAJOR] };

/**
 * The grouped float GEMM, one pipeline for its three modes (p.mode, as matmul.ts's GEMM takes its
 * layouts as uniforms): tile rows i, columns j, inner index q, with g = (bucket e, start, cnt).
 *   0, forward: rows = bucket e's slots s, columns o < n, q < kin: out[s, o] = Σ x[xRow(s), q]·W[e, o, q].
 *      The bucket of invalid ids (e = experts) runs no K loop and stores zeros.
 *   1, dX: rows = bucket e's slots, columns c < kin, q = o < n: Σ dOut[s, o]·W[e, o, c], added into
 *      dx[xRow(s), c] when each slot has its own input row (p.acc), else written to row s of a scratch.
 *   2, dW: rows o < n, columns c < kin, q over bucket e's slots: dW[e, o, c] += Σ dOut[s, o]·x[xRow(s), c].
 * Tile element el of A (B) sits at row (el >> x) & y, k (el >> z) & w of p.mapA (p.mapB), so that
 * consecutive threads read consecutive addresses. srcA is x or dOut, srcB is W or x.
 */
const EXPERTS_GEMM = (() => {
  const BK = 16;
  const tile = gemmTile(BK, "pp & 7u", "pp & 7u");
  const stores: string[] = [];
  for (let r = 0; r < 4; r++) for (let c = 0; c < 4; c++) stores.push(`store(row0 + 4u * ty + ${r}u, col0 + 4u * tx + ${c}u, acc${r}.${"xyzw"[c]}, g);`);
  return `${EXPERT_PARAMS}
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> srcA: array<f32>;
@group(0) @binding(3) var<storage, read> srcB: array<f32>;
@group(0) @binding(4) var<storage, read> route: array<u32>;
var<workgroup> wgCnt: u32;
${tile.decls}${EXPERT_HELPERS}${LIST_FN}
fn loadA(i: u32, q: u32, g: vec3u) -> f32 {
  if (p.mode == 0u) { if (i >= g.z || q >= p.k) { return 0.0; } return srcA[xRow(listAt(g.y, i)) * p.k + q]; }
  if (p.mode == 1u) { if (i >= g.z || q >= p.n) { return 0.0; } return srcA[listAt(g.y, i) * p.n + q]; }
  if (i >= p.n || q >= g.z) { return 0.0; }
  return srcA[listAt(g.y, q) * p.n + i];
}
fn loadB(j: u32, q: u32, g: vec3u) -> f32 {
  if (p.mode == 0u) { if (j >= p.n || q >= p.k) { return 0.0; } return srcB[(g.x * p.n + j) * p.k + q]; }
  if (p.mode == 1u) { if (j >= p.k || q >= p.n) { return 0.0; } return srcB[(g.x * p.n + q) * p.k + j]; }
  if (j >= p.k || q >= g.z) { return 0.0; }
  return srcB[xRow(listAt(g.y, q)) * p.k + j];
}
fn store(i: u32, j: u32, v: f32, g: vec3u) {
  if (p.mode == 0u) { if (i < g.z && j < p.n) { out[listAt(g.y, i) * p.n + j] = v; } return; }
  if (p.mode == 1u) {
    if (i < g.z && j < p.k) {
      let s = listAt(g.y, i);
      let at = select(s, xRow(s), p.acc != 0u) * p.k + j;
      out[at] = select(0.0, out[at], p.acc != 0u) + v;
    }
    return;
  }
  if (i < p.n && j < p.k) { let at = (g.x * p.n + i) * p.k + j; out[at] = out[at] + v; }
}
@compute @workgroup_size(16, 16)
fn main(@builtin(local_invocation_id) lid: vec3u, @builtin(workgroup_id) wid: vec3u) {${GROUPED_HEAD}
  let rowsEnd = select(cnt, select(0u, p.n, cnt > 0u), p.mode == 2u);
  if (row0 >= rowsEnd) { return; }
  let g = vec3u(ex, start, cnt);
  var acc0 = vec4f(0.0); var acc1 = vec4f(0.0); var acc2 = vec4f(0.0); var acc3 = vec4f(0.0);
  var kEnd = select(0u, p.k, ex < p.experts);
  if (p.mode == 1u) { kEnd = p.n; }
  if (p.mode == 2u) { kEnd = cnt; }
  for (var k0 = 0u; k0 < kEnd; k0 += ${BK}u) {
    for (var r = 0u; r < ${(TILE * BK) / 256}u; r++) {
      let el = t + 256u * r;
      { let ii = (el >> p.mapA.x) & p.mapA.y; let kk = (el >> p.mapA.z) & p.mapA.w; As[sa(kk, ii)][ii % 4u] = loadA(row0 + ii, k0 + kk, g); }
      { let jj = (el >> p.mapB.x) & p.mapB.y; let kb = (el >> p.mapB.z) & p.mapB.w; Bs[sb(kb, jj)][jj % 4u] = loadB(col0 + jj, k0 + kb, g); }
    }
    workgroupBarrier();
    ${tile.compute}
    workgroupBarrier();
  }
  ${stores.join("\n  ")}
}`;
})();

/** EXPERTS_GEMM's parameters for `mode`. */
function gemmParams(mode: { mode: number; maps: number[] }, slots: number, n: number, kin: number, experts: number, k: number, xPerSlot: boolean, acc = false): Params {
  return expertParams(slots, n, kin, 0, experts, k, xPerSlot, acc).u32(mode.mode, 0, 0, 0, ...mode.maps);
}

// dx[r, c] += Σ_j scratch[r·k + j, c]: the k slots of a shared input row, in slot order.
const SUM_SLOTS = elementwiseShader(
  `struct P { n: u32, kin: u32, k: u32 } @group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> dx: array<f32>;
@group(0) @binding(2) var<storage, read> part: array<f32>;`,
  `let r = i / p.kin; let c = i - r * p.kin;
  var s = 0.0;
  for (var j = 0u; j < p.k; j++) { s += part[(r * p.k + j) * p.kin + c]; }
  dx[i] = dx[i] + s;`,
);

// Decode: one slot (workgroup y) × 8 outputs per workgroup, 32 lanes per output striding over kin.
const mvShaders = new Map<string, string>();
function mvExpertsShader(vec4: boolean): string {
  const key = `${vec4}`;
  let code = mvShaders.get(key);
  if (code !== undefined) return code;
  const T = vec4 ? "vec4f" : "f32";
  code = `${EXPERT_PARAMS}
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> x: array<${T}>;
@group(0) @binding(3) var<storage, read> w: array<${T}>;
@group(0) @binding(4) var<storage, read> ids: array<f32>;${EXPERT_HELPERS}
var<workgroup> part: array<f32, 256>;
@compute @workgroup_size(256)
fn main(@builtin(local_invocation_id) lid: vec3u, @builtin(workgroup_id) wid: vec3u) {
  let lane = lid.x % 32u;
  let o = wid.x * 8u + lid.x / 32u;
  let slot = wid.y;
  let ex = expertOf(ids[slot]);
  var s = 0.0;
  if (o < p.n && ex < p.experts) {
    let kw = ${vec4 ? "p.k / 4u" : "p.k"};
    let xb = xRow(slot) * kw; let wb = (ex * p.n + o) * kw;
    for (var q = lane; q < kw; q += 32u) { s += ${vec4 ? "dot(w[wb + q], x[xb + q])" : "w[wb + q] * x[xb + q]"}; }
  }
  part[lid.x] = s;
  workgroupBarrier();
  for (var h = 16u; h > 0u; h >>= 1u) {
    if (lane < h) { part[lid.x] += part[lid.x + h]; }
    workgroupBarrier();
  }
  if (lane == 0u && o < p.n) { out[slot * p.n + o] = part[lid.x]; }
}`;
  mvShaders.set(key, code);
  return code;
}

export function matmulExperts(gpu: Gpu, out: GpuBuf, x: GpuBuf, w: GpuBuf, ids: GpuBuf, rows: number, k: number, experts: number, n: number, kin: number, xPerSlot: boolean): void {
  const slots = rows * k;
  if (slots === 0 || n === 0) return;
  const ins = unaliasedInputs(gpu, [out], x, w, ids);
  const [xs, ws, is] = ins.bufs;
  if (slots <= MV_SLOTS) {
    const params = expertParams(slots, n, kin, 0, experts, k, xPerSlot);
    gpu.dispatch(mvExpertsShader(kin % 4 === 0), params, [out, xs, ws, is], [Math.ceil(n / 8), slots]);
  } else {
    const r = route(gpu, is, slots, experts);
    const params = gemmParams(FORWARD, slots, n, kin, experts, k, xPerSlot);
    gpu.dispatch(EXPERTS_GEMM, params, [out, xs, ws, r], [Math.ceil(n / TILE), Math.ceil(slots / TILE), experts + 1]);
    gpu.release(r.buffer);
  }
  ins.done();
}

export function matmulExpertsBackward(
  gpu: Gpu, dx: GpuBuf | null, dw: GpuBuf | null, dOut: GpuBuf, x: GpuBuf, w: GpuBuf, ids: GpuBuf,
  rows: number, k: number, experts: number, n: number, kin: number, xPerSlot: boolean,
): void {
  const slots = rows * k;
  if (slots === 0 || n === 0 || kin === 0 || experts === 0 || (dx === null && dw === null)) return;
  const written = [dx, dw].filter((b): b is GpuBuf => b !== null);
  distinctOutputs("matmulExpertsBackward", written);
  const ins = unaliasedInputs(gpu, written, dOut, x, w, ids);
  const [g, xs, ws, is] = ins.bufs;
  const r = route(gpu, is, slots, experts);
  if (dx !== null) {
    // Each slot its own input row (or one slot a row): straight into dx; else per slot, then summed.
    const direct = xPerSlot || k === 1;
    const dst = direct ? dx : scratch(gpu, slots * kin);
    const params = gemmParams(DX, slots, n, kin, experts, k, xPerSlot, direct);
    gpu.dispatch(EXPERTS_GEMM, params, [dst, g, ws, r], [Math.ceil(kin / TILE), Math.ceil(slots / TILE), experts]);
    if (!direct) {
      gpu.dispatch(SUM_SLOTS, new Params().u32(rows * kin, kin, k), [dx, dst], groups1d(gpu, rows * kin));
      gpu.release(dst.buffer);
    }
  }
  if (dw !== null) {
    const params = gemmParams(DW, slots, n, kin, experts, k, xPerSlot);
    gpu.dispatch(EXPERTS_GEMM, params, [dw, g, xs, r], [Math.ceil(kin / TILE), Math.ceil(n / TILE), experts]);
  }
  gpu.release(r.buffer);
  ins.done();
}

// ---- quantized experts ----------------------------------------------------------------------

// Decode: quantized.ts's matvec loop over the slot's expert's weight row e·n + o.
const qmvShaders = new Map<string, string>();
function qmvExpertsShader(q: GpuQBuf, k: number): { code: string; vec4: boolean } {
  const parts = matvecParts(q.type, k);
  const key = `${q.type}${+parts.vec4}`;
  let code = qmvShaders.get(key);
  if (code === undefined) {
    code = `${EXPERT_PARAMS}
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
${parts.decls}
@group(0) @binding(${q.scales === null ? 4 : 5}) var<storage, read> ids: array<f32>;${EXPERT_HELPERS}
var<workgroup> part: array<f32, 256>;
@compute @workgroup_size(256)
fn main(@builtin(local_invocation_id) lid: vec3u, @builtin(workgroup_id) wid: vec3u) {
  let lane = lid.x % 32u;
  let o = wid.x * ${MV_ROWS}u + lid.x / 32u;
  let slot = wid.y;
  let ex = expertOf(ids[slot]);
  var s = 0.0;
  if (o < p.n && ex < p.experts) {
    let row = ex * p.n + o;
    let a0 = xRow(slot) * ${parts.vec4 ? "(p.k / 4u)" : "p.k"};
    ${parts.loop}
  }
  part[lid.x] = s;
  workgroupBarrier();
  for (var h = 16u; h > 0u; h >>= 1u) {
    if (lane < h) { part[lid.x] += part[lid.x + h]; }
    workgroupBarrier();
  }
  if (lane == 0u && o < p.n) { out[slot * p.n + o] = part[lid.x]; }
}`;
    qmvShaders.set(key, code);
  }
  return { code, vec4: parts.vec4 };
}

// Prefill: quantized.ts's tiled loads with tile rows = bucket e's slots and weight rows e·n + gj;
// the bucket of invalid ids stores zeros.
const qGroupedShaders = new Map<string, string>();
function qGroupedShader(q: GpuQBuf): string {
  let code = qGroupedShaders.get(q.type);
  if (code !== undefined) return code;
  const { decls, loadA, loadW, tile } = tiledParts(q.type, { aOk: "gi < cnt", aRow: "xRow(listAt(start, gi))", wRow: "ex * p.n + gj" });
  const stores: string[] = [];
  for (let r = 0; r < 4; r++) {
    const cols: string[] = [];
    for (let c = 0; c < 4; c++) cols.push(`if (col0 + 4u * tx + ${c}u < p.n) { out[o + ${c}u] = acc${r}.${"xyzw"[c]}; }`);
    stores.push(`{ let gi = row0 + 4u * ty + ${r}u;
    if (gi < cnt) { let o = listAt(start, gi) * p.n + col0 + 4u * tx;
      ${cols.join("\n      ")} } }`);
  }
  code = `${EXPERT_PARAMS}
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
${decls}
@group(0) @binding(${q.scales === null ? 4 : 5}) var<storage, read> route: array<u32>;
var<workgroup> wgCnt: u32;
${tile.decls}${EXPERT_HELPERS}${LIST_FN}
@compute @workgroup_size(16, 16)
fn main(@builtin(local_invocation_id) lid: vec3u, @builtin(workgroup_id) wid: vec3u) {${GROUPED_HEAD}
  if (row0 >= cnt) { return; }
  var acc0 = vec4f(0.0); var acc1 = vec4f(0.0); var acc2 = vec4f(0.0); var acc3 = vec4f(0.0);
  if (ex < p.experts) {
    for (var k0 = 0u; k0 < p.k; k0 += ${QBK}u) {
      ${loadA}
      ${loadW}
      workgroupBarrier();
      ${tile.compute}
      workgroupBarrier();
    }
  }
  ${stores.join("\n  ")}
}`;
  qGroupedShaders.set(q.type, code);
  return code;
}

export function matmulExpertsQuantized(gpu: Gpu, out: GpuBuf, x: GpuBuf, q: GpuQBuf, ids: GpuBuf, rows: number, k: number, experts: number, n: number, kin: number, xPerSlot: boolean): void {
  const slots = rows * k;
  if (slots === 0 || n === 0) return;
  const ins = unaliasedInputs(gpu, [out], x, ids);
  const [xs, is] = ins.bufs;
  const weights = q.scales === null ? [q.quants] : [q.quants, q.scales];
  const params = expertParams(slots, n, kin, swOf(q), experts, k, xPerSlot);
  if (slots <= MV_SLOTS) {
    const { code } = qmvExpertsShader(q, kin);
    gpu.dispatch(code, params, [out, xs, ...weights, is], [Math.ceil(n / MV_ROWS), slots]);
  } else {
    const r = route(gpu, is, slots, experts);
    gpu.dispatch(qGroupedShader(q), params, [out, xs, ...weights, r], [Math.ceil(n / TILE), Math.ceil(slots / TILE), experts + 1]);
    gpu.release(r.buffer);
  }
  ins.done();
}

// ---- combine ------------------------------------------------------------------------------------

// out[r, c] = (acc ? out : 0) + Σ_j w[r·k + j]·slots[r·k + j, c], one thread per output.
const COMBINE = elementwiseShader(
  `struct P { n: u32, dim: u32, k: u32, acc: u32 } @group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> slots: array<f32>;
@group(0) @binding(3) var<storage, read> w: array<f32>;`,
  `let r = i / p.dim; let c = i - r * p.dim;
  var s = 0.0;
  for (var j = 0u; j < p.k; j++) { let t = r * p.k + j; s += w[t] * slots[t * p.dim + c]; }
  out[i] = select(0.0, out[i], p.acc != 0u) + s;`,
);

export function moeCombine(gpu: Gpu, out: GpuBuf, slots: GpuBuf, weights: GpuBuf, rows: number, k: number, dim: number, accumulate: boolean): void {
  const n = rows * dim;
  if (n === 0) return;
  const ins = unaliasedInputs(gpu, [out], slots, weights);
  gpu.dispatch(COMBINE, new Params().u32(n, dim, k, +accumulate), [out, ...ins.bufs], groups1d(gpu, n));
  ins.done();
}

// One workgroup per slot t of row r: dSlots[t, :] += w_t·dOut[r, :] and dWeights[t] += dOut[r, :]·slots[t, :].
const COMBINE_BACKWARD = `
struct P { slots: u32, dim: u32, k: u32 } @group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> dSlots: array<f32>;
@group(0) @binding(2) var<storage, read_write> dWeights: array<f32>;
@group(0) @binding(3) var<storage, read> g: array<f32>;
@group(0) @binding(4) var<storage, read> slots: array<f32>;
@group(0) @binding(5) var<storage, read> w: array<f32>;
${REDUCE}
${ROW_MAIN}
  let t = wid.x + wid.y * nwg.x;
  if (t >= p.slots) { return; }
  let lid = l.x;
  let go = (t / p.k) * p.dim; let so = t * p.dim;
  let wt = w[t];
  var d = 0.0;
  for (var c = lid; c < p.dim; c += ${WG}u) {
    let gv = g[go + c];
    dSlots[so + c] = dSlots[so + c] + wt * gv;
    d += gv * slots[so + c];
  }
  d = wgSum(lid, d);
  if (lid == 0u) { dWeights[t] = dWeights[t] + d; }
}`;

export function moeCombineBackward(gpu: Gpu, dSlots: GpuBuf, dWeights: GpuBuf, dOut: GpuBuf, slots: GpuBuf, weights: GpuBuf, rows: number, k: number, dim: number): void {
  const n = rows * k;
  if (n === 0) return;
  distinctOutputs("moeCombineBackward", [dSlots, dWeights]);
  const ins = unaliasedInputs(gpu, [dSlots, dWeights], dOut, slots, weights);
  gpu.dispatch(COMBINE_BACKWARD, new Params().u32(n, dim, k), [dSlots, dWeights, ...ins.bufs], groups1d(gpu, n, 1));
  ins.done();
}
