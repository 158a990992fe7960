// Rotary position embedding (HF rotate-half) and its backward. One thread per pair (i, i + half)
// of a head: it reads both elements before writing both, so rotating in place is safe.
import { type Gpu, GpuBuf, Params, groups1d } from "../gpu.js";
import { elementwiseShader, unaliased } from "./common.js";

const PARAMS = `struct P { n: u32, half: u32, heads: u32, seq: u32, posOffset: u32 } @group(0) @binding(0) var<uniform> p: P;`;
const TABLES = (from: number): string => `@group(0) @binding(${from}) var<storage, read> cosT: array<f32>;
@group(0) @binding(${from + 1}) var<storage, read> sinT: array<f32>;`;
// Pair i = (row, k): row = (b·seq + t)·heads + h, k < half; angle of position posOffset + t.
const PAIR = `let k = i % p.half;
  let row = i / p.half;
  let pos = p.posOffset + (row / p.heads) % p.seq;
  let c = cosT[pos * p.half + k];
  let s = sinT[pos * p.half + k];
  let a = row * 2u * p.half + k;
  let b = a + p.half;`;

// out = R·x: (x1, x2) → (x1·c − x2·s, x2·c + x1·s).
const ROPE = elementwiseShader(
  `${PARAMS}
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;
${TABLES(3)}`,
  `${PAIR}
  let x1 = x[a]; let x2 = x[b];
  out[a] = x1 * c - x2 * s;
  out[b] = x2 * c + x1 * s;`,
);
// The same with out = x (one read_write binding).
const ROPE_IN_PLACE = elementwiseShader(
  `${PARAMS}
@group(0) @binding(1) var<storage, read_write> x: array<f32>;
${TABLES(2)}`,
  `${PAIR}
  let x1 = x[a]; let x2 = x[b];
  x[a] = x1 * c - x2 * s;
  x[b] = x2 * c + x1 * s;`,
);
// dx += Rᵀ·dOut: rotation by −angle, (g1, g2) → (g1·c + g2·s, g2·c − g1·s).
const ROPE_BACKWARD = elementwiseShader(
  `${PARAMS}
@group(0) @binding(1) var<storage, read_write> dx: array<f32>;
@group(0) @binding(2) var<storage, read> g: array<f32>;
${TABLES(3)}`,
  `${PAIR}
  let g1 = g[a]; let g2 = g[b];
  dx[a] = dx[a] + g1 * c + g2 * s;
  dx[b] = dx[b] + g2 * c - g1 * s;`,
);

/** backward = false: out = R(pos)·x (out may alias x); true: out += R(pos)ᵀ·x. */
export function rope(gpu: Gpu, out: GpuBuf, x: GpuBuf, cos: GpuBuf, sin: GpuBuf, batch: number, seq: number, heads: number, headDim: number, posOffset: number, backward: boolean): void {
  if (headDim % 2 !== 0) throw new RangeError(`rope needs an even head dimension, got ${headDim}`);
  if (!Number.isInteger(posOffset) || posOffset < 0) throw new RangeError(`rope: bad position offset ${posOffset}`);
  const half = headDim / 2, n = batch * seq * heads * half;
  if (n === 0) return;
  const params = new Params().u32(n, half, heads, seq, posOffset), groups = groups1d(gpu, n);
  const c = unaliased(gpu, cos, out), s = unaliased(gpu, sin, out);
  if (!backward && out.buffer === x.buffer) {
    gpu.dispatch(ROPE_IN_PLACE, params, [out, c.buf, s.buf], groups);
  } else {
    // dx += Rᵀ·dx (backward in place) reads a copy of dOut: the accumulation needs the old values.
    const src = unaliased(gpu, x, out);
    gpu.dispatch(backward ? ROPE_BACKWARD : ROPE, params, [out, src.buf, c.buf, s.buf], groups);
    src.done();
  }
  c.done();
  s.done();
}
