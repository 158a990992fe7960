// Causal GQA attention: training (probs saved) with backward, and over a KV cache.
//
// Training forward and the dq part of backward: one workgroup per query row (b, h, t); threads
// over keys for the scores, workgroup tree reductions for the softmax max and sum, then threads
// over (key part, d) for the weighted sums of rows. The probs row (or the dS row, in a scratch
// buffer) lives in global memory, so sequence length is not bounded by workgroup memory.
// dk, dv: one thread per element (b, position j, KV head, d) summing over the group's query heads
// and the positions i ≥ j in order — deterministic, no atomics.
// Cached (inference): flash-decoding — each workgroup takes a chunk of keys for one (t, h), walks
// it in tiles of WG keys with an online softmax, and leaves (max, sum, Σ e·v); a second kernel
// merges the chunks. Chunks split long contexts across workgroups when there are few queries.
import { type Gpu, GpuBuf, Params, WG, groups1d } from "../gpu.js";
import { elementwiseShader, scratch, unaliased, workgroupReductions } from "./common.js";

/** Lowest score: stands in for −∞ (exp of it minus a real max is 0). */
const NEG = "-3.0e38";

const REDUCE = workgroupReductions("f32");

// The query row of workgroup `row` = (b·heads + h)·seq + t, and where its q, k/v and probs live.
const TRAIN_PARAMS = `struct P { batch: u32, seq: u32, heads: u32, kvHeads: u32, hd: u32, scale: f32 } @group(0) @binding(0) var<uniform> p: P;`;
const TRAIN_ROW = `let row = wid.x + wid.y * nwg.x;
  if (row >= p.batch * p.heads * p.seq) { return; }
  let lid = l.x;
  let t = row % p.seq;
  let h = (row / p.seq) % p.heads;
  let b = row / (p.seq * p.heads);
  let kvStride = p.kvHeads * p.hd;
  let kv0 = b * p.seq * kvStride + (h / (p.heads / p.kvHeads)) * p.hd; // k, v of position s: kv0 + s·kvStride
  let qb = ((b * p.seq + t) * p.heads + h) * p.hd;
  let pb = row * p.seq;
  // Threads as (part, d): span lanes over d, parts of them splitting the keys.
  let span = max(1u, min(p.hd, ${WG}u));
  let parts = ${WG}u / span;
  let part = lid / span;`;

/**
 * WGSL that sets dst[qb + d] (op "=" or "+=") to Σ_{s ≤ t} w[pb + s]·m[kv0 + s·kvStride + d] for
 * every d: threads (part, d) sum strided keys, then part 0 adds the parts in order.
 */
const weightedRows = (dst: string, op: string, w: string, m: string): string => `
  for (var d0 = 0u; d0 < p.hd; d0 += span) {
    let d = d0 + lid % span;
    var acc = 0.0;
    if (part < parts && d < p.hd) {
      for (var s = part; s <= t; s += parts) { acc += ${w}[pb + s] * ${m}[kv0 + s * kvStride + d]; }
    }
    red[lid] = acc;
    workgroupBarrier();
    if (lid < span && d < p.hd) {
      var o = 0.0;
      for (var j = 0u; j < parts; j++) { o += red[lid + j * span]; }
      ${dst}[qb + d] ${op} o;
    }
    workgroupBarrier();
  }`;

// probs[t, s] = softmax_s(scale·q_t·k_s) over s ≤ t (0 above the diagonal); out_t = Σ_s probs[t, s]·v_s.
const ATTENTION = `${TRAIN_PARAMS}
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read_write> probs: array<f32>;
@group(0) @binding(3) var<storage, read> q: array<f32>;
@group(0) @binding(4) var<storage, read> k: array<f32>;
@group(0) @binding(5) var<storage, read> v: array<f32>;
${REDUCE}
@compute @workgroup_size(${WG})
fn main(@builtin(local_invocation_id) l: vec3u, @builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  ${TRAIN_ROW}
  var m = ${NEG};
  for (var s = lid; s <= t; s += ${WG}u) {
    let kb = kv0 + s * kvStride;
    var dot = 0.0;
    for (var d = 0u; d < p.hd; d++) { dot += q[qb + d] * k[kb + d]; }
    let sc = dot * p.scale;
    probs[pb + s] = sc;
    m = max(m, sc);
  }
  m = wgMax(lid, m);
  var z = 0.0;
  for (var s = lid; s <= t; s += ${WG}u) { let e = exp(probs[pb + s] - m); probs[pb + s] = e; z += e; }
  z = wgSum(lid, z);
  // Each thread rescales the entries it wrote; the barrier then shows the row to all threads.
  for (var s = lid; s < p.seq; s += ${WG}u) { probs[pb + s] = select(0.0, probs[pb + s] / z, s <= t); }
  storageBarrier();
  ${weightedRows("out", "=", "probs", "v")}
}`;

function checkHeads(heads: number, kvHeads: number): void {
  if (!(kvHeads > 0) || !Number.isInteger(kvHeads) || heads % kvHeads !== 0) throw new RangeError(`attention: ${heads} heads cannot share ${kvHeads} KV heads`);
}

export function attention(gpu: Gpu, out: GpuBuf, probs: GpuBuf, q: GpuBuf, k: GpuBuf, v: GpuBuf, batch: number, seq: number, heads: number, kvHeads: number, headDim: number, scale: number): void {
  checkHeads(heads, kvHeads);
  if (out.buffer === probs.buffer) throw new Error("webgpu backend: attention's out and probs must be distinct buffers");
  const ins = [q, k, v].map((b) => unaliased(gpu, b, out, probs));
  const rows = batch * heads * seq;
  gpu.dispatch(ATTENTION, new Params().u32(batch, seq, heads, kvHeads, headDim).f32(scale), [out, probs, ...ins.map((b) => b.buf)], groups1d(gpu, rows, 1));
  for (const b of ins) b.done();
}

// Backward, per query row: dP_s = dO_t·v_s; dS_s = P_s·(dP_s − Σ_s' P_s'·dP_s')·scale, kept in
// the scratch `ds` (layout of probs); dq_t += Σ_s dS_s·k_s.
const ATTENTION_DQ = `${TRAIN_PARAMS}
@group(0) @binding(1) var<storage, read_write> dq: array<f32>;
@group(0) @binding(2) var<storage, read_write> ds: array<f32>;
@group(0) @binding(3) var<storage, read> dO: array<f32>;
@group(0) @binding(4) var<storage, read> k: array<f32>;
@group(0) @binding(5) var<storage, read> v: array<f32>;
@group(0) @binding(6) var<storage, read> probs: array<f32>;
${REDUCE}
@compute @workgroup_size(${WG})
fn main(@builtin(local_invocation_id) l: vec3u, @builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  ${TRAIN_ROW}
  var pdp = 0.0;
  for (var s = lid; s <= t; s += ${WG}u) {
    let vb = kv0 + s * kvStride;
    var dot = 0.0;
    for (var d = 0u; d < p.hd; d++) { dot += dO[qb + d] * v[vb + d]; }
    ds[pb + s] = dot;
    pdp += probs[pb + s] * dot;
  }
  pdp = wgSum(lid, pdp);
  for (var s = lid; s <= t; s += ${WG}u) { ds[pb + s] = probs[pb + s] * (ds[pb + s] - pdp) * p.scale; }
  storageBarrier();
  ${weightedRows("dq", "+=", "ds", "k")}
}`;

// Element i = ((b·seq + j)·kvHeads + kh)·hd + d of dk, dv: over the group's query heads h, then
// positions t ≥ j: dk += dS[b, h, t, j]·q[b, t, h, d]; dv += P[b, h, t, j]·dO[b, t, h, d].
const ATTENTION_DKV = elementwiseShader(
  `struct P { n: u32, seq: u32, heads: u32, kvHeads: u32, hd: u32 } @group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> dk: array<f32>;
@group(0) @binding(2) var<storage, read_write> dv: array<f32>;
@group(0) @binding(3) var<storage, read> ds: array<f32>;
@group(0) @binding(4) var<storage, read> probs: array<f32>;
@group(0) @binding(5) var<storage, read> q: array<f32>;
@group(0) @binding(6) var<storage, read> dO: array<f32>;`,
  `let d = i % p.hd;
  let kh = (i / p.hd) % p.kvHeads;
  let j = (i / (p.hd * p.kvHeads)) % p.seq;
  let b = i / (p.hd * p.kvHeads * p.seq);
  let group = p.heads / p.kvHeads;
  var gk = 0.0;
  var gv = 0.0;
  for (var g = 0u; g < group; g++) {
    let h = kh * group + g;
    let p0 = (b * p.heads + h) * p.seq * p.seq + j; // (b, h, t, j) at p0 + t·seq
    for (var t = j; t < p.seq; t++) {
      let pi = p0 + t * p.seq;
      let qi = ((b * p.seq + t) * p.heads + h) * p.hd + d;
      gk += ds[pi] * q[qi];
      gv += probs[pi] * dO[qi];
    }
  }
  dk[i] = dk[i] + gk;
  dv[i] = dv[i] + gv;`,
);

export function attentionBackward(gpu: Gpu, dq: GpuBuf, dk: GpuBuf, dv: GpuBuf, dOut: GpuBuf, q: GpuBuf, k: GpuBuf, v: GpuBuf, probs: GpuBuf, batch: number, seq: number, heads: number, kvHeads: number, headDim: number, scale: number): void {
  checkHeads(heads, kvHeads);
  if (dq.buffer === dk.buffer || dq.buffer === dv.buffer || dk.buffer === dv.buffer) throw new Error("webgpu backend: attentionBackward's dq, dk and dv must be distinct buffers");
  const ins = [dOut, q, k, v, probs].map((b) => unaliased(gpu, b, dq, dk, dv));
  const [g, qs, ks, vs, ps] = ins.map((b) => b.buf);
  const ds = scratch(gpu, batch * heads * seq * seq);
  gpu.dispatch(ATTENTION_DQ, new Params().u32(batch, seq, heads, kvHeads, headDim).f32(scale), [dq, ds, g, ks, vs, ps], groups1d(gpu, batch * heads * seq, 1));
  const n = batch * seq * kvHeads * headDim;
  gpu.dispatch(ATTENTION_DKV, new Params().u32(n, seq, heads, kvHeads, headDim), [dk, dv, ds, ps, qs, g], groups1d(gpu, n));
  gpu.release(ds.buffer);
  for (const b of ins) b.done();
}

// ---- inference over a KV cache --------------------------------------------------------------

/** Workgroups worth having in flight: below this, long contexts are split into key chunks. */
const TARGET_GROUPS = 512;

// Workgroup idx = row·chunks + c, row = t·heads + h: keys [c·chunkLen, min(n, (c+1)·chunkLen))
// with n = posOffset + t + 1, in tiles of WG (one key per thread). Online softmax per tile:
// m' = max(m, tile max), l = l·e^(m − m') + Σ e^(s − m'), acc = acc·e^(m − m') + Σ e^(s − m')·v.
// Each thread owns DPT dims (d = k·span + lane) of one key part; the parts are added at the end.
const cachedShader = (dpt: number): string => `
struct P { seq: u32, heads: u32, kvHeads: u32, hd: u32, posOffset: u32, chunks: u32, chunkLen: u32, scale: f32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> po: array<f32>;
@group(0) @binding(2) var<storage, read_write> ml: array<f32>;
@group(0) @binding(3) var<storage, read> q: array<f32>;
@group(0) @binding(4) var<storage, read> k: array<f32>;
@group(0) @binding(5) var<storage, read> v: array<f32>;
${REDUCE}
var<workgroup> es: array<f32, ${WG}>;
@compute @workgroup_size(${WG})
fn main(@builtin(local_invocation_id) l: vec3u, @builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let idx = wid.x + wid.y * nwg.x;
  if (idx >= p.seq * p.heads * p.chunks) { return; }
  let lid = l.x;
  let c = idx % p.chunks;
  let row = idx / p.chunks;
  let h = row % p.heads;
  let n = p.posOffset + row / p.heads + 1u;
  let start = c * p.chunkLen;
  if (start >= n) { return; } // beyond this query's causal limit: the merge skips it
  let end = min(n, start + p.chunkLen);
  let kvStride = p.kvHeads * p.hd;
  let kv0 = (h / (p.heads / p.kvHeads)) * p.hd;
  let qb = row * p.hd;
  let span = max(1u, min(p.hd, ${WG}u));
  let parts = ${WG}u / span;
  let part = lid / span;
  let lane = lid % span;
  var acc: array<f32, ${dpt}>;
  var m = ${NEG};
  var sum = 0.0;
  for (var t0 = start; t0 < end; t0 += ${WG}u) {
    let s = t0 + lid;
    let valid = s < end;
    var sc = ${NEG};
    if (valid) {
      let kb = kv0 + s * kvStride;
      var dot = 0.0;
      for (var d = 0u; d < p.hd; d++) { dot += q[qb + d] * k[kb + d]; }
      sc = dot * p.scale;
    }
    let mNew = max(m, wgMax(lid, sc));
    let e = select(0.0, exp(sc - mNew), valid);
    es[lid] = e;
    let alpha = exp(m - mNew);
    sum = sum * alpha + wgSum(lid, e); // its barriers also publish es
    let cnt = min(${WG}u, end - t0);
    for (var kk = 0u; kk < ${dpt}u; kk++) {
      let d = kk * span + lane;
      var a = acc[kk] * alpha;
      if (part < parts && d < p.hd) {
        for (var j = part; j < cnt; j += parts) { a += es[j] * v[kv0 + (t0 + j) * kvStride + d]; }
      }
      acc[kk] = a;
    }
    m = mNew;
    workgroupBarrier(); // es is rewritten by the next tile
  }
  for (var kk = 0u; kk < ${dpt}u; kk++) {
    red[lid] = acc[kk];
    workgroupBarrier();
    let d = kk * span + lid;
    if (lid < span && d < p.hd) {
      var o = 0.0;
      for (var j = 0u; j < parts; j++) { o += red[lid + j * span]; }
      po[idx * p.hd + d] = o;
    }
    workgroupBarrier();
  }
  if (lid == 0u) { ml[2u * idx] = m; ml[2u * idx + 1u] = sum; }
}`;
const cachedShaders = new Map<number, string>();

// out[t, h, d] = Σ_c e^(m_c − M)·po_c[d] / Σ_c e^(m_c − M)·l_c over the chunks query t reaches.
const CACHED_MERGE = elementwiseShader(
  `struct P { n: u32, hd: u32, heads: u32, posOffset: u32, chunks: u32, chunkLen: u32 } @group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> po: array<f32>;
@group(0) @binding(3) var<storage, read> ml: array<f32>;`,
  `let d = i % p.hd;
  let row = i / p.hd;
  let used = (p.posOffset + row / p.heads + p.chunkLen) / p.chunkLen; // ceil(n / chunkLen)
  let c0 = row * p.chunks;
  var mx = ${NEG};
  for (var c = 0u; c < used; c++) { mx = max(mx, ml[2u * (c0 + c)]); }
  var num = 0.0;
  var den = 0.0;
  for (var c = 0u; c < used; c++) {
    let f = exp(ml[2u * (c0 + c)] - mx);
    num += f * po[(c0 + c) * p.hd + d];
    den += f * ml[2u * (c0 + c) + 1u];
  }
  out[i] = num / den;`,
);

export function attentionCached(gpu: Gpu, out: GpuBuf, q: GpuBuf, kCache: GpuBuf, vCache: GpuBuf, seq: number, heads: number, kvHeads: number, headDim: number, posOffset: number, scale: number): void {
  checkHeads(heads, kvHeads);
  if (![seq, posOffset, headDim].every((x) => Number.isInteger(x) && x >= 0)) throw new RangeError(`attentionCached: bad shape seq ${seq}, posOffset ${posOffset}, headDim ${headDim}`);
  const rows = seq * heads;
  if (rows === 0 || headDim === 0) return;
  // Split the context into chunks (whole tiles) only as far as needed to fill the GPU.
  const ctx = posOffset + seq, tiles = Math.ceil(ctx / WG);
  const want = Math.min(tiles, Math.max(1, Math.ceil(TARGET_GROUPS / rows)));
  const chunkLen = Math.ceil(tiles / want) * WG, chunks = Math.ceil(ctx / chunkLen);
  const dpt = Math.ceil(headDim / Math.min(headDim, WG));
  let code = cachedShaders.get(dpt);
  if (code === undefined) cachedShaders.set(dpt, (code = cachedShader(dpt)));
  const ins = [q, kCache, vCache].map((b) => unaliased(gpu, b, out));
  const [qs, ks, vs] = ins.map((b) => b.buf);
  const po = scratch(gpu, rows * chunks * headDim), ml = scratch(gpu, 2 * rows * chunks);
  gpu.dispatch(code, new Params().u32(seq, heads, kvHeads, headDim, posOffset, chunks, chunkLen).f32(scale), [po, ml, qs, ks, vs], groups1d(gpu, rows * chunks, 1));
  gpu.dispatch(CACHED_MERGE, new Params().u32(rows * headDim, headDim, heads, posOffset, chunks, chunkLen), [out, po, ml], groups1d(gpu, rows * headDim));
  gpu.release(po.buffer);
  gpu.release(ml.buffer);
  for (const b of ins) b.done();
}
