// Pieces every kernel family shares: the WGSL preamble of a one-dimensional kernel and the
// aliasing rule of WebGPU (a buffer written by a dispatch cannot be bound twice in it).
import { type Gpu, GpuBuf, WG } from "../gpu.js";

/**
 * WGSL of a kernel over n items: `body` runs with `i` the item index (i < p.n), one per thread.
 * `decls` declares the `Params` struct (with a `n: u32` field) and the bindings.
 */
export function elementwiseShader(decls: string, body: string): string {
  return `${decls}
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * nwg.x * ${WG}u;
  if (i >= p.n) { return; }
  ${body}
}`;
}

/**
 * `x`, or a copy of it when it is the same GPU buffer as one of `written` (an in-place op such as
 * `add(out, out, b)`): the copy goes back to the pool once the dispatch is recorded (`done`).
 */
export function unaliased(gpu: Gpu, x: GpuBuf, ...written: GpuBuf[]): { buf: GpuBuf; done(): void } {
  if (!written.some((w) => w.buffer === x.buffer)) return { buf: x, done: () => {} };
  const copy = new GpuBuf(gpu.buffer(4 * x.length), x.length);
  gpu.copyBytes(copy.buffer, 0, x.buffer, 0, 4 * x.length);
  return { buf: copy, done: () => gpu.release(copy.buffer) };
}

/** A written buffer must not be another written argument of the same kernel (WebGPU forbids binding it twice). */
export function distinctOutputs(what: string, written: GpuBuf[]): void {
  for (let i = 0; i < written.length; i++)
    for (let j = i + 1; j < written.length; j++)
      if (written[i].buffer === written[j].buffer) throw new Error(`webgpu backend: ${what}'s outputs must be distinct buffers`);
}

/** Inputs that are the same buffer as an output get a copy (unaliased); `done` releases them. */
export function unaliasedInputs(gpu: Gpu, written: GpuBuf[], ...xs: GpuBuf[]): { bufs: GpuBuf[]; done(): void } {
  const u = xs.map((x) => unaliased(gpu, x, ...written));
  return { bufs: u.map((x) => x.buf), done: () => u.forEach((x) => x.done()) };
}

/** A temporary buffer of `n` numbers, returned to the pool by `done` (after its last use is recorded). */
export function scratch(gpu: Gpu, n: number): GpuBuf {
  return new GpuBuf(gpu.buffer(4 * Math.max(n, 1)), n);
}

/**
 * WGSL tree reductions over the workgroup, `wgSum` and `wgMax` of each thread's `v` (f32 or
 * vec4f), in workgroup memory `red`; every thread gets the result. Call them from uniform
 * control flow only (they hold barriers).
 */
export function workgroupReductions(type: "f32" | "vec4f"): string {
  const fn = (name: string, combine: string): string => `
fn ${name}(lid: u32, v: ${type}) -> ${type} {
  red[lid] = v;
  workgroupBarrier();
  for (var w = ${WG / 2}u; w > 0u; w >>= 1u) {
    if (lid < w) { red[lid] = ${combine}; }
    workgroupBarrier();
  }
  let total = red[0];
  workgroupBarrier(); // everyone has read red[0] before red is reused
  return total;
}`;
  return `var<workgroup> red: array<${type}, ${WG}>;${fn("wgSum", "red[lid] + red[lid + w]")}${fn("wgMax", "max(red[lid], red[lid + w])")}`;
}
