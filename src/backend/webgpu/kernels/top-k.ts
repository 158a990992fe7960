// The k largest numbers of a row, with their indices, on the GPU (Backend.readTopK): a sampler's
// greedy or top-k choice reads back 8·k bytes instead of the row. Order as backend/top-k.ts:
// larger first, equal values by lower index. Each workgroup selects by k rounds of a workgroup
// argmax, each round taking the best element that comes after the previous round's pick in that
// order (so no set of taken indices is kept). Long rows go in two passes: the top k of each
// chunk, then the top k of those candidates (every overall winner wins its chunk).
import { type Gpu, GpuBuf, Params, WG } from "../gpu.js";
import { scratch } from "./common.js";
import { type TopK, topKOf } from "../../top-k.js";

/** Elements per workgroup of the first pass (fewer workgroups: one pass). */
const CHUNK = 4096;
/** The largest k selected on the GPU (Backend.readTopK reads the row back for more). */
export const MAX_ROUNDS = 256;
/** No index: the sentinel of a round that found nothing (only NaNs left). */
const NONE = 0xffffffff;

/**
 * `pairs`: the input is (value bits, index) pairs from a first pass; else a row whose indices are
 * positions. Workgroup g selects among elements [g·chunk, (g+1)·chunk) and writes its k pairs at
 * out[2·k·g …].
 */
const topKShader = (pairs: boolean): string => `
struct P { offset: u32, n: u32, k: u32, chunk: u32, lowest: f32 } @group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> out: array<u32>;
@group(0) @binding(2) var<storage, read> x: array<${pairs ? "u32" : "f32"}>;
var<workgroup> bestV: array<f32, ${WG}>;
var<workgroup> bestI: array<u32, ${WG}>;
fn before(v: f32, i: u32, w: f32, j: u32) -> bool { return v > w || (v == w && i < j); }
@compute @workgroup_size(${WG})
fn main(@builtin(local_invocation_id) lid: vec3u, @builtin(workgroup_id) wid: vec3u) {
  let start = wid.x * p.chunk;
  let end = min(p.n, start + p.chunk);
  var prevV = 0.0;
  var prevI = ${NONE}u;
  for (var r = 0u; r < p.k; r++) {
    var bv = p.lowest; // −∞ (a uniform: WGSL has no infinite constants)
    var bi = ${NONE}u;
    for (var e = start + lid.x; e < end; e += ${WG}u) {
      ${pairs ? "let v = bitcast<f32>(x[2u * e]); let i = x[2u * e + 1u];" : "let v = x[p.offset + e]; let i = e;"}
      if ((r == 0u || before(prevV, prevI, v, i)) && before(v, i, bv, bi)) { bv = v; bi = i; }
    }
    bestV[lid.x] = bv;
    bestI[lid.x] = bi;
    workgroupBarrier();
    for (var w = ${WG / 2}u; w > 0u; w >>= 1u) {
      if (lid.x < w && before(bestV[lid.x + w], bestI[lid.x + w], bestV[lid.x], bestI[lid.x])) {
        bestV[lid.x] = bestV[lid.x + w];
        bestI[lid.x] = bestI[lid.x + w];
      }
      workgroupBarrier();
    }
    prevV = bestV[0];
    prevI = bestI[0];
    workgroupBarrier(); // everyone has read the winner before the next round overwrites it
    if (lid.x == 0u) {
      out[2u * (wid.x * p.k + r)] = bitcast<u32>(prevV);
      out[2u * (wid.x * p.k + r) + 1u] = prevI;
    }
  }
}`;
const FROM_ROW = topKShader(false), FROM_PAIRS = topKShader(true);

/** The min(k, n) best of x[offset .. offset + n), best first. */
export async function topK(gpu: Gpu, x: GpuBuf, offset: number, n: number, k: number): Promise<TopK> {
  const m = Math.min(k, n);
  if (m === 0) return { ids: new Int32Array(0), values: new Float32Array(0) };
  const groups = Math.ceil(n / CHUNK);
  const chunk = Math.ceil(n / groups);
  const first = scratch(gpu, 2 * m * groups);
  gpu.dispatch(FROM_ROW, new Params().u32(offset, n, m, chunk).f32(-Infinity), [first, x], [groups]);
  let result = first;
  if (groups > 1) {
    result = scratch(gpu, 2 * m);
    gpu.dispatch(FROM_PAIRS, new Params().u32(0, m * groups, m, m * groups).f32(-Infinity), [result, first], [1]);
  }
  const bytes = gpu.readBytes(result.buffer, 0, 8 * m);
  gpu.release(first.buffer);
  if (result !== first) gpu.release(result.buffer);
  const words = new Uint32Array(await bytes);
  const ids = new Int32Array(m), values = new Float32Array(m);
  const bits = new Float32Array(words.buffer);
  for (let j = 0; j < m; j++) {
    if (words[2 * j + 1] === NONE) {
      // NaNs left no winner in some round: the row's order needs the host's NaN rule.
      const row = new Float32Array(await gpu.readBytes(x.buffer, 4 * offset, 4 * n));
      return topKOf(row, k);
    }
    values[j] = bits[2 * j];
    ids[j] = words[2 * j + 1];
  }
  return { ids, values };
}
