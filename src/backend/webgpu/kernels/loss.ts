// Fused softmax cross-entropy and the distillation losses, with their backwards. Forward kernels
// run one workgroup per row (threads stride over the vocabulary, tree reductions for the max and
// the sums); backward kernels are element-wise where every element's gradient depends only on
// its row's saved statistics. The math is JsBackend's (js-backend.ts) in f32.
import type { KdParams } from "../../backend.js";
import { type Gpu, GpuBuf, Params, WG, groups1d } from "../gpu.js";
import { distinctOutputs, elementwiseShader, unaliasedInputs, unaliased, workgroupReductions } from "./common.js";

const isCount = (x: number): boolean => Number.isInteger(x) && x >= 0;



const REDUCE = workgroupReductions("vec4f");

// ---- cross-entropy ---------------------------------------------------------------------------

function checkTargets(targets: Int32Array, rows: number, vocab: number): void {
  if (!isCount(rows) || !isCount(vocab) || (rows > 0 && vocab === 0)) throw new RangeError(`cross-entropy: bad shape rows ${rows}, vocab ${vocab}`);
  if (targets.length < rows) throw new RangeError(`cross-entropy: ${targets.length} targets for ${rows} rows`);
  for (let r = 0; r < rows; r++) if (targets[r] >= vocab) throw new Error(`target ${targets[r]} out of range [0, ${vocab})`);
}

// One workgroup per row: m = max_j x_j, lse = m + log Σ_j e^(x_j − m), loss = lse − x_t (0 when t < 0).
const CROSS_ENTROPY = `
struct P { rows: u32, vocab: u32 } @group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> losses: array<f32>;
@group(0) @binding(2) var<storage, read_write> lse: array<f32>;
@group(0) @binding(3) var<storage, read> x: array<f32>;
@group(0) @binding(4) var<storage, read> targets: array<i32>;
${REDUCE}
@compute @workgroup_size(${WG})
fn main(@builtin(local_invocation_id) l: vec3u, @builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let r = wid.x + wid.y * nwg.x;
  if (r >= p.rows) { return; }
  let lid = l.x;
  let o = r * p.vocab;
  var m = x[o];
  for (var j = lid; j < p.vocab; j += ${WG}u) { m = max(m, x[o + j]); }
  m = wgMax(lid, vec4f(m)).x;
  var z = 0.0;
  for (var j = lid; j < p.vocab; j += ${WG}u) { z += exp(x[o + j] - m); }
  let e = m + log(wgSum(lid, vec4f(z, 0.0, 0.0, 0.0)).x);
  if (lid == 0u) {
    lse[r] = e;
    let t = targets[r];
    losses[r] = select(e - x[o + u32(max(t, 0))], 0.0, t < 0);
  }
}`;

export function crossEntropy(gpu: Gpu, losses: GpuBuf, lse: GpuBuf, logits: GpuBuf, targets: Int32Array, rows: number, vocab: number): void {
  checkTargets(targets, rows, vocab);
  if (rows === 0) return;
  distinctOutputs("crossEntropy", [losses, lse]);
  const ins = unaliasedInputs(gpu, [losses, lse], logits);
  gpu.dispatch(CROSS_ENTROPY, new Params().u32(rows, vocab), [losses, lse, ...ins.bufs, gpu.hostWords(targets.subarray(0, rows))], groups1d(gpu, rows, 1));
  ins.done();
}

// dLogits[r, j] += dLosses[r] · (e^(x − lse) − [j = t]), one thread per element; rows with t < 0 untouched.
const CROSS_ENTROPY_BACKWARD = elementwiseShader(
  `struct P { n: u32, vocab: u32 } @group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> d: array<f32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read> lse: array<f32>;
@group(0) @binding(4) var<storage, read> targets: array<i32>;
@group(0) @binding(5) var<storage, read> dLosses: array<f32>;`,
  `let r = i / p.vocab;
  let t = targets[r];
  if (t < 0) { return; }
  let hit = select(0.0, 1.0, i - r * p.vocab == u32(t));
  d[i] = d[i] + dLosses[r] * (exp(x[i] - lse[r]) - hit);`,
);

export function crossEntropyBackward(gpu: Gpu, dLogits: GpuBuf, logits: GpuBuf, lse: GpuBuf, targets: Int32Array, dLosses: GpuBuf, rows: number, vocab: number): void {
  checkTargets(targets, rows, vocab);
  const n = rows * vocab;
  if (n === 0) return;
  const ins = unaliasedInputs(gpu, [dLogits], logits, lse, dLosses);
  const [x, e, dl] = ins.bufs;
  gpu.dispatch(CROSS_ENTROPY_BACKWARD, new Params().u32(n, vocab), [dLogits, x, e, gpu.hostWords(targets.subarray(0, rows)), dl], groups1d(gpu, n));
  ins.done();
}

// ---- knowledge distillation ------------------------------------------------------------------
//
// Per outcome o with student and teacher log-probabilities lq, lp the divergence adds kdTerm and
// its derivative in lq is kdGrad (JsBackend's functions of the same names, in f32):
//   kind 0 (forward KL): p·(lp − lq), −p;  kind 1 (reverse KL): q·(lq − lp), q·(lq − lp + 1);
//   kind 2 (JSD): β·p·(lp − lm) + (1−β)·q·(lq − lm), (1−β)·q·(lq − lm), lm = log(β·p + (1−β)·q).
// A log-probability of −∞ (no mass) contributes nothing, as in JsBackend.
// Per row the loss is wCe·CE + wKd·D with wCe = α, wKd = (1−α)τ² for a target t ≥ 0 and wCe = 0,
// wKd = τ² for KD_ONLY (−2); t = −1 rows are skipped (loss 0, stats untouched, no gradient).

/** The uniform fields every distillation kernel shares, after its own leading u32s. */
const KD_FIELDS = `kind: u32, inv: f32, alpha: f32, wKd: f32, wKdOnly: f32, beta: f32, omb: f32, logb: f32, log1mb: f32, ninf: u32`;

function kdParams(params: Params, kd: KdParams): Params {
  const tau = kd.temperature, b = kd.beta;
  return params
    .u32(kd.kind)
    .f32(1 / tau, kd.alpha, (1 - kd.alpha) * tau * tau, tau * tau, b, 1 - b, Math.log(b), Math.log(1 - b))
    .u32(0xff800000); // the bits of −∞ (WGSL has no infinite constants)
}

const KD_FUNCTIONS = `
fn noMass(x: f32) -> bool { return x < -3.4028234663852886e38; } // x = −∞ (below the most negative finite f32)
fn logAddExp(a: f32, b: f32) -> f32 {
  let m = max(a, b);
  if (noMass(min(a, b))) { return m; }
  return m + log(1.0 + exp(min(a, b) - m));
}
fn kdTerm(lq: f32, lp: f32) -> f32 {
  if (p.kind == 0u) { if (noMass(lp)) { return 0.0; } return exp(lp) * (lp - lq); }
  if (p.kind == 1u) { if (noMass(lq)) { return 0.0; } return exp(lq) * (lq - lp); }
  let lm = logAddExp(lq + p.log1mb, lp + p.logb);
  var t = 0.0;
  if (!noMass(lp)) { t += p.beta * exp(lp) * (lp - lm); }
  if (!noMass(lq)) { t += p.omb * exp(lq) * (lq - lm); }
  return t;
}
fn kdGrad(lq: f32, lp: f32) -> f32 {
  if (p.kind == 0u) { if (noMass(lp)) { return 0.0; } return -exp(lp); }
  if (noMass(lq)) { return 0.0; }
  if (p.kind == 1u) { return exp(lq) * (lq - lp + 1.0); }
  return p.omb * exp(lq) * (lq - logAddExp(lq + p.log1mb, lp + p.logb));
}
fn wCe(t: i32) -> f32 { return select(0.0, p.alpha, t >= 0); }
fn wKd(t: i32) -> f32 { return select(p.wKdOnly, p.wKd, t >= 0); }`;

/** Targets in [−2, vocab) and, for a sparse teacher, ids in [0, vocab), as JsBackend checks them. */
function checkKd(targets: Int32Array, rows: number, vocab: number, ids?: Int32Array, k = 0): void {
  if (!isCount(rows) || !isCount(vocab) || vocab === 0 || !isCount(k)) throw new RangeError(`distill: bad shape rows ${rows}, vocab ${vocab}, k ${k}`);
  if (targets.length < rows) throw new RangeError(`distill: ${targets.length} targets for ${rows} rows`);
  for (let r = 0; r < rows; r++) if (!(targets[r] >= -2 && targets[r] < vocab)) throw new Error(`target ${targets[r]} out of range [-2, ${vocab})`);
  if (ids === undefined) return;
  if (ids.length < rows * k) throw new RangeError(`distill: ${ids.length} teacher ids for ${rows} rows of ${k}`);
  for (let i = 0; i < rows * k; i++) if (!(ids[i] >= 0 && ids[i] < vocab)) throw new Error(`teacher token id ${ids[i]} out of range [0, ${vocab})`);
}

// The row's target, read by one thread and made workgroup-uniform so that a skipped row can
// return before the barriers.
const ROW_TARGET = `
var<workgroup> rowTarget: i32;
fn loadTarget(lid: u32, r: u32) -> i32 {
  if (lid == 0u) { rowTarget = ints[r]; }
  return workgroupUniformLoad(&rowTarget);
}`;

// Dense teacher, one workgroup per row: lse1 = lse(s), lseS = lse(s/τ), lseP = lse(teacher/τ),
// then D = Σ_j kdTerm and G = Σ_j kdGrad over lq_j = s_j/τ − lseS, lp_j = teacher_j/τ − lseP.
// stats[r] = (lse1, lseS, lseP, G).
const DISTILL = `
struct P { rows: u32, vocab: u32, ${KD_FIELDS} } @group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> losses: array<f32>;
@group(0) @binding(2) var<storage, read_write> stats: array<f32>;
@group(0) @binding(3) var<storage, read> s: array<f32>;
@group(0) @binding(4) var<storage, read> te: array<f32>;
@group(0) @binding(5) var<storage, read> ints: array<i32>;
${REDUCE}
${KD_FUNCTIONS}
${ROW_TARGET}
@compute @workgroup_size(${WG})
fn main(@builtin(local_invocation_id) l: vec3u, @builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let r = wid.x + wid.y * nwg.x;
  if (r >= p.rows) { return; }
  let lid = l.x;
  let t = loadTarget(lid, r);
  if (t == -1) {
    if (lid == 0u) { losses[r] = 0.0; }
    return;
  }
  let o = r * p.vocab;
  // max_j(x_j/τ) = max_j(x_j)/τ: rounding is monotonic and 1/τ > 0.
  var ms = s[o];
  var mp = te[o];
  for (var j = lid; j < p.vocab; j += ${WG}u) { ms = max(ms, s[o + j]); mp = max(mp, te[o + j]); }
  let m = wgMax(lid, vec4f(ms, mp, 0.0, 0.0));
  let msS = m.x * p.inv;
  let mpS = m.y * p.inv;
  var z = vec4f(0.0);
  for (var j = lid; j < p.vocab; j += ${WG}u) {
    let x = s[o + j];
    z += vec4f(exp(x - m.x), exp(x * p.inv - msS), exp(te[o + j] * p.inv - mpS), 0.0);
  }
  z = wgSum(lid, z);
  let lse1 = m.x + log(z.x);
  let lseS = msS + log(z.y);
  let lseP = mpS + log(z.z);
  var dg = vec4f(0.0);
  for (var j = lid; j < p.vocab; j += ${WG}u) {
    let lq = s[o + j] * p.inv - lseS;
    let lp = te[o + j] * p.inv - lseP;
    dg += vec4f(kdTerm(lq, lp), kdGrad(lq, lp), 0.0, 0.0);
  }
  dg = wgSum(lid, dg);
  if (lid == 0u) {
    let ce = select(0.0, lse1 - s[o + u32(max(t, 0))], t >= 0);
    losses[r] = wCe(t) * ce + wKd(t) * dg.x;
    stats[4u * r] = lse1;
    stats[4u * r + 1u] = lseS;
    stats[4u * r + 2u] = lseP;
    stats[4u * r + 3u] = dg.y;
  }
}`;

export function distill(gpu: Gpu, losses: GpuBuf, stats: GpuBuf, student: GpuBuf, teacher: GpuBuf, targets: Int32Array, rows: number, vocab: number, kd: KdParams): void {
  checkKd(targets, rows, vocab);
  if (rows === 0) return;
  distinctOutputs("distill", [losses, stats]);
  const ins = unaliasedInputs(gpu, [losses, stats], student, teacher);
  const params = kdParams(new Params().u32(rows, vocab), kd);
  gpu.dispatch(DISTILL, params, [losses, stats, ...ins.bufs, gpu.hostWords(targets.subarray(0, rows))], groups1d(gpu, rows, 1));
  ins.done();
}

// dStudent[r, j] += wkd·(kdGrad(lq_j, lp_j) − q_j·G) + wce·(softmax(s)_j − [j = t]) with
// wce = dLosses[r]·wCe, wkd = dLosses[r]·wKd/τ (the 1/τ of ∂lq/∂s); one thread per element.
const DISTILL_BACKWARD = elementwiseShader(
  `struct P { n: u32, vocab: u32, ${KD_FIELDS} } @group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> d: array<f32>;
@group(0) @binding(2) var<storage, read> s: array<f32>;
@group(0) @binding(3) var<storage, read> te: array<f32>;
@group(0) @binding(4) var<storage, read> stats: array<f32>;
@group(0) @binding(5) var<storage, read> ints: array<i32>;
@group(0) @binding(6) var<storage, read> dLosses: array<f32>;
${KD_FUNCTIONS}`,
  `let r = i / p.vocab;
  let t = ints[r];
  if (t == -1) { return; }
  let lse1 = stats[4u * r];
  let lseS = stats[4u * r + 1u];
  let lseP = stats[4u * r + 2u];
  let g = stats[4u * r + 3u];
  let dl = dLosses[r];
  let x = s[i];
  let lq = x * p.inv - lseS;
  let lp = te[i] * p.inv - lseP;
  let dz = kdGrad(lq, lp) - exp(lq) * g;
  let hit = select(0.0, 1.0, i - r * p.vocab == u32(max(t, 0)) && t >= 0);
  d[i] = d[i] + dl * wKd(t) * p.inv * dz + dl * wCe(t) * (exp(x - lse1) - hit);`,
);

export function distillBackward(gpu: Gpu, dStudent: GpuBuf, student: GpuBuf, teacher: GpuBuf, stats: GpuBuf, targets: Int32Array, dLosses: GpuBuf, rows: number, vocab: number, kd: KdParams): void {
  checkKd(targets, rows, vocab);
  const n = rows * vocab;
  if (n === 0) return;
  const ins = unaliasedInputs(gpu, [dStudent], student, teacher, stats, dLosses);
  const [s, t, st, dl] = ins.bufs;
  const params = kdParams(new Params().u32(n, vocab), kd);
  gpu.dispatch(DISTILL_BACKWARD, params, [dStudent, s, t, st, gpu.hostWords(targets.subarray(0, rows)), dl], groups1d(gpu, n));
  ins.done();
}

// ---- sparse teacher --------------------------------------------------------------------------
//
// The teacher's top-k ids of a row are marked in a workgroup bitmap, a chunk of the vocabulary at
// a time (any vocabulary size fits), so that the student's residual mass is summed directly over
// the unmarked tokens, as JsBackend does (no cancellation against the top-k's mass).

/** Words of the workgroup bitmap: 1024 × 32 tokens per chunk, one chunk for vocabularies up to 32768. */
const MARK_WORDS = 1024;
let sparseChunk = 32 * MARK_WORDS;

/** For tests: the tokens per bitmap chunk (a multiple of 32, at most 32768), so that small vocabularies take several chunks. Returns the previous value. */
export function setSparseChunkForTests(tokens: number): number {
  if (!(Number.isInteger(tokens) && tokens > 0 && tokens % 32 === 0 && tokens <= 32 * MARK_WORDS)) throw new RangeError(`bad sparse chunk ${tokens}`);
  const old = sparseChunk;
  sparseChunk = tokens;
  return old;
}

// ints: the rows' targets, then their top-k ids [rows, k].
const MARKS = `
var<workgroup> marks: array<atomic<u32>, ${MARK_WORDS}>;
// Mark the row's top-k ids in [c0, c0 + chunk); ends with a barrier.
fn markChunk(lid: u32, r: u32, c0: u32) {
  let words = (min(p.vocab - c0, p.chunk) + 31u) / 32u;
  for (var w = lid; w < words; w += ${WG}u) { atomicStore(&marks[w], 0u); }
  workgroupBarrier();
  for (var i = lid; i < p.k; i += ${WG}u) {
    let id = u32(ints[p.rows + r * p.k + i]);
    if (id >= c0 && id - c0 < p.chunk) { atomicOr(&marks[(id - c0) >> 5u], 1u << ((id - c0) & 31u)); }
  }
  workgroupBarrier();
}
fn marked(j: u32) -> bool { return ((atomicLoad(&marks[j >> 5u]) >> (j & 31u)) & 1u) != 0u; }`;

// Per row: lse1, lseS as above; zR = Σ_{j ∉ top-k} q_j, lqR = log zR; over the top-k
// D = Σ kdTerm, G = Σ kdGrad with lp from the teacher; the residual outcome (k < vocab) adds its
// terms with lpR = log max(1 − Σ_i p_i, 1e-30). stats[r] = (lse1, lseS, lqR, G).
const DISTILL_SPARSE = `
struct P { rows: u32, vocab: u32, k: u32, chunk: u32, ${KD_FIELDS} } @group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> losses: array<f32>;
@group(0) @binding(2) var<storage, read_write> stats: array<f32>;
@group(0) @binding(3) var<storage, read> s: array<f32>;
@group(0) @binding(4) var<storage, read> lps: array<f32>;
@group(0) @binding(5) var<storage, read> ints: array<i32>;
${REDUCE}
${KD_FUNCTIONS}
${ROW_TARGET}
${MARKS}
@compute @workgroup_size(${WG})
fn main(@builtin(local_invocation_id) l: vec3u, @builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let r = wid.x + wid.y * nwg.x;
  if (r >= p.rows) { return; }
  let lid = l.x;
  let t = loadTarget(lid, r);
  if (t == -1) {
    if (lid == 0u) { losses[r] = 0.0; }
    return;
  }
  let o = r * p.vocab;
  var ms = s[o];
  for (var j = lid; j < p.vocab; j += ${WG}u) { ms = max(ms, s[o + j]); }
  let m = wgMax(lid, vec4f(ms)).x;
  let msS = m * p.inv;
  var z = vec4f(0.0);
  for (var j = lid; j < p.vocab; j += ${WG}u) { let x = s[o + j]; z += vec4f(exp(x - m), exp(x * p.inv - msS), 0.0, 0.0); }
  z = wgSum(lid, z);
  let lse1 = m + log(z.x);
  let lseS = msS + log(z.y);
  // acc = (zR, Σ p_i, D, G) of this thread's share.
  var acc = vec4f(0.0);
  if (p.k < p.vocab) {
    for (var c0 = 0u; c0 < p.vocab; c0 += p.chunk) {
      markChunk(lid, r, c0);
      let end = min(p.vocab - c0, p.chunk);
      for (var j = lid; j < end; j += ${WG}u) {
        if (!marked(j)) { acc.x += exp(s[o + c0 + j] * p.inv - lseS); }
      }
      workgroupBarrier(); // all reads of the marks done before the next chunk clears them
    }
  }
  for (var i = lid; i < p.k; i += ${WG}u) {
    let lq = s[o + u32(ints[p.rows + r * p.k + i])] * p.inv - lseS;
    let lp = lps[r * p.k + i];
    acc += vec4f(0.0, exp(lp), kdTerm(lq, lp), kdGrad(lq, lp));
  }
  acc = wgSum(lid, acc);
  if (lid == 0u) {
    let ninf = bitcast<f32>(p.ninf);
    let lqR = select(ninf, log(acc.x), acc.x > 0.0);
    var d = acc.z;
    var g = acc.w;
    if (p.k < p.vocab) {
      let lpR = log(max(1.0 - acc.y, 1e-30));
      d += kdTerm(lqR, lpR);
      g += kdGrad(lqR, lpR);
    }
    let ce = select(0.0, lse1 - s[o + u32(max(t, 0))], t >= 0);
    losses[r] = wCe(t) * ce + wKd(t) * d;
    stats[4u * r] = lse1;
    stats[4u * r + 1u] = lseS;
    stats[4u * r + 2u] = lqR;
    stats[4u * r + 3u] = g;
  }
}`;

function sparseInts(targets: Int32Array, ids: Int32Array, rows: number, k: number): Int32Array {
  const ints = new Int32Array(rows + rows * k);
  ints.set(targets.subarray(0, rows));
  ints.set(ids.subarray(0, rows * k), rows);
  return ints;
}

export function distillSparse(gpu: Gpu, losses: GpuBuf, stats: GpuBuf, student: GpuBuf, teacherIds: Int32Array, teacherLogProbs: GpuBuf, targets: Int32Array, rows: number, vocab: number, k: number, kd: KdParams): void {
  checkKd(targets, rows, vocab, teacherIds, k);
  if (rows === 0) return;
  distinctOutputs("distillSparse", [losses, stats]);
  const ins = unaliasedInputs(gpu, [losses, stats], student, teacherLogProbs);
  const params = kdParams(new Params().u32(rows, vocab, k, sparseChunk), kd);
  gpu.dispatch(DISTILL_SPARSE, params, [losses, stats, ...ins.bufs, gpu.hostWords(sparseInts(targets, teacherIds, rows, k))], groups1d(gpu, rows, 1));
  ins.done();
}

// Per row, with gR = kdGrad(lqR, lpR) of the residual outcome (when k < vocab and lqR > −∞):
//   dStudent[r, j] += wkd·(−q_j·G + [j ∉ top-k]·gR·q_j/q_R) + wce·(softmax(s)_j − [j = t]),
// then for each top-k id: dStudent[r, id] += wkd·kdGrad(lq_id, lp_i).
const DISTILL_SPARSE_BACKWARD = `
struct P { rows: u32, vocab: u32, k: u32, chunk: u32, ${KD_FIELDS} } @group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> d: array<f32>;
@group(0) @binding(2) var<storage, read> s: array<f32>;
@group(0) @binding(3) var<storage, read> lps: array<f32>;
@group(0) @binding(4) var<storage, read> stats: array<f32>;
@group(0) @binding(5) var<storage, read> dLosses: array<f32>;
@group(0) @binding(6) var<storage, read> ints: array<i32>;
${REDUCE}
${KD_FUNCTIONS}
${ROW_TARGET}
${MARKS}
@compute @workgroup_size(${WG})
fn main(@builtin(local_invocation_id) l: vec3u, @builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let r = wid.x + wid.y * nwg.x;
  if (r >= p.rows) { return; }
  let lid = l.x;
  let t = loadTarget(lid, r);
  if (t == -1) { return; }
  let o = r * p.vocab;
  let lse1 = stats[4u * r];
  let lseS = stats[4u * r + 1u];
  let lqR = stats[4u * r + 2u];
  let g = stats[4u * r + 3u];
  let wce = dLosses[r] * wCe(t);
  let wkd = dLosses[r] * wKd(t) * p.inv;
  var sp = 0.0;
  for (var i = lid; i < p.k; i += ${WG}u) { sp += exp(lps[r * p.k + i]); }
  sp = wgSum(lid, vec4f(sp, 0.0, 0.0, 0.0)).x;
  let hasR = p.k < p.vocab && !noMass(lqR);
  var gR = 0.0;
  if (hasR) { gR = kdGrad(lqR, log(max(1.0 - sp, 1e-30))); }
  let tj = u32(max(t, 0));
  for (var c0 = 0u; c0 < p.vocab; c0 += p.chunk) {
    markChunk(lid, r, c0);
    let end = min(p.vocab - c0, p.chunk);
    for (var j = lid; j < end; j += ${WG}u) {
      let x = s[o + c0 + j];
      let lq = x * p.inv - lseS;
      var dz = -exp(lq) * g;
      if (hasR && !marked(j)) { dz += gR * exp(lq - lqR); }
      let hit = select(0.0, 1.0, t >= 0 && c0 + j == tj);
      d[o + c0 + j] = d[o + c0 + j] + wkd * dz + wce * (exp(x - lse1) - hit);
    }
    workgroupBarrier();
  }
  storageBarrier(); // the row's writes above are visible to every thread of the workgroup
  for (var i = lid; i < p.k; i += ${WG}u) {
    let id = o + u32(ints[p.rows + r * p.k + i]);
    d[id] = d[id] + wkd * kdGrad(s[id] * p.inv - lseS, lps[r * p.k + i]);
  }
}`;

export function distillSparseBackward(gpu: Gpu, dStudent: GpuBuf, student: GpuBuf, teacherIds: Int32Array, teacherLogProbs: GpuBuf, stats: GpuBuf, targets: Int32Array, dLosses: GpuBuf, rows: number, vocab: number, k: number, kd: KdParams): void {
  checkKd(targets, rows, vocab, teacherIds, k);
  if (rows === 0) return;
  const ins = unaliasedInputs(gpu, [dStudent], student, teacherLogProbs, stats, dLosses);
  const [s, lp, st, dl] = ins.bufs;
  const params = kdParams(new Params().u32(rows, vocab, k, sparseChunk), kd);
  gpu.dispatch(DISTILL_SPARSE_BACKWARD, params, [dStudent, s, lp, st, dl, gpu.hostWords(sparseInts(targets, teacherIds, rows, k))], groups1d(gpu, rows, 1));
  ins.done();
}
