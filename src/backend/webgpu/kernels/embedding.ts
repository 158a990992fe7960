// Token embedding lookup and its backward.
import { type Gpu, type GpuBuf, Params, groups1d } from "../gpu.js";
import { elementwiseShader, unaliased } from "./common.js";

/** Throw unless every id is a row of a table of `rows` rows (an out-of-range row would read or write past it). */
export function checkIds(ids: Int32Array, rows: number): void {
  for (let i = 0; i < ids.length; i++) {
    const id = ids[i];
    if (id < 0 || id >= rows) throw new Error(`webgpu backend: token id ${id} out of range [0, ${rows})`);
  }
}

// out[i] = table[ids[r]·dim + c] for element i = r·dim + c.
const EMBEDDING = elementwiseShader(
  `struct P { n: u32, dim: u32 } @group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> table: array<f32>;
@group(0) @binding(3) var<storage, read> ids: array<i32>;`,
  `let r = i / p.dim; let c = i - r * p.dim;
  out[i] = table[u32(ids[r]) * p.dim + c];`,
);

export function embedding(gpu: Gpu, out: GpuBuf, table: GpuBuf, ids: Int32Array, dim: number): void {
  if (dim === 0 || ids.length === 0) return;
  checkIds(ids, Math.floor(table.length / dim));
  const n = ids.length * dim;
  const t = unaliased(gpu, table, out);
  gpu.dispatch(EMBEDDING, new Params().u32(n, dim), [out, t.buf, gpu.hostWords(ids)], groups1d(gpu, n));
  t.done();
}

// dTable[row_u, c] += Σ dOut[pos, c] over the positions pos of unique id u, in position order: one
// thread per (unique id, column), so no two threads write one number (WGSL has no float atomics)
// and the sum is deterministic. g holds [offsets (U + 1) | unique ids (U) | positions by id].
const EMBEDDING_BACKWARD = elementwiseShader(
  `struct P { n: u32, dim: u32, unique: u32 } @group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> dTable: array<f32>;
@group(0) @binding(2) var<storage, read> dOut: array<f32>;
@group(0) @binding(3) var<storage, read> g: array<i32>;`,
  `let u = i / p.dim; let c = i - u * p.dim;
  let o = u32(g[p.unique + 1u + u]) * p.dim + c;
  let posAt = 2u * p.unique + 1u;
  var s = dTable[o];
  for (var q = u32(g[u]); q < u32(g[u + 1u]); q++) { s += dOut[u32(g[posAt + q]) * p.dim + c]; }
  dTable[o] = s;`,
);

export function embeddingBackward(gpu: Gpu, dTable: GpuBuf, dOut: GpuBuf, ids: Int32Array, dim: number): void {
  if (dim === 0 || ids.length === 0) return;
  checkIds(ids, Math.floor(dTable.length / dim));
  // Group positions by id (ids in order of first appearance, positions ascending within each).
  const slot = new Map<number, number>();
  const count: number[] = [];
  const which = new Int32Array(ids.length);
  for (let i = 0; i < ids.length; i++) {
    let u = slot.get(ids[i]);
    if (u === undefined) {
      u = count.length;
      slot.set(ids[i], u);
      count.push(0);
    }
    count[u]++;
    which[i] = u;
  }
  const U = count.length, N = ids.length;
  const g = new Int32Array(2 * U + 1 + N);
  for (let u = 0; u < U; u++) g[u + 1] = g[u] + count[u];
  for (const [id, u] of slot) g[U + 1 + u] = id;
  const fill = g.slice(0, U); // next free place of each group
  for (let i = 0; i < N; i++) g[2 * U + 1 + fill[which[i]]++] = i;
  const n = U * dim;
  const d = unaliased(gpu, dOut, dTable);
  gpu.dispatch(EMBEDDING_BACKWARD, new Params().u32(n, dim, U), [dTable, d.buf, gpu.hostWords(g)], groups1d(gpu, n));
  d.done();
}
