// A model of how llama.cpp's ARM builds with f16 vector arithmetic (FP16_VA) round F16 matrix
// products, for the bounds the llama.cpp comparisons assert. They accumulate the products in f16
// (ggml_vec_dot_f16's NEON path: 4 accumulators of 8 f16 lanes over steps of 32, f16 fused
// multiply-adds, the accumulators added in f16, then widened and summed in f32; leftovers in
// double). Their exact order differs between decode and batches (llamafile's tinyBLAS), so this
// stands for the size of that rounding, not for its bits.
import type { Backend, Buf, QBuf, QuantType } from "../src/backend/backend.js";
import { WasmBackend } from "../src/backend/wasm/wasm-backend.js";
import { f16ToF32, f32ToF16 } from "../src/format/float16.js";

const toHalf = (x: number): number => f16ToF32(f32ToF16(x));

/** Σ w·x with w, x f16 values, accumulated as ggml_vec_dot_f16 on NEON with FP16 arithmetic. */
export function dotF16Accumulated(w: Float32Array, x: Float32Array): number {
  const k = w.length, np = k - (k % 32);
  const acc = new Float64Array(32); // f16 values
  for (let i = 0; i < np; i += 32) for (let l = 0; l < 32; l++) acc[l] = toHalf(acc[l] + w[i + l] * x[i + l]);
  // GGML_F16x8_REDUCE: x0 += x2, x1 += x3, then x0 += x1, in f16; the 8 lanes widened and summed.
  const lane = (j: number, l: number): number => acc[8 * j + l];
  const r = Array.from({ length: 8 }, (_, l) => toHalf(toHalf(lane(0, l) + lane(2, l)) + toHalf(lane(1, l) + lane(3, l))));
  const fr = Math.fround;
  const t = [0, 1, 2, 3].map((l) => fr(r[l] + r[l + 4]));
  let sum = fr(fr(t[0] + t[1]) + fr(t[2] + t[3]));
  for (let i = np; i < k; i++) sum += w[i] * x[i];
  return fr(sum);
}

/**
 * Numbers [offset, offset + length) of a wasm backend's buffer, copied out synchronously: a kernel
 * must return with its output written, and Backend.read is asynchronous. The wasm backend's memory
 * is on the host, so this test tool reads it directly (through the backend's own buffer checks).
 */
function readNow(backend: Backend, buf: Buf, offset: number, length: number): Float32Array {
  if (!(backend instanceof WasmBackend)) throw new Error(`accumulateF16: wraps a wasm backend, not ${backend.name}`);
  const internals = backend as unknown as { memory: WebAssembly.Memory; p(buf: Buf, need: number, what: string): number };
  const ptr = internals.p(buf, offset + length, "accumulateF16 operand");
  return new Float32Array(internals.memory.buffer, ptr + 4 * offset, length).slice();
}

/**
 * `backend` (a wasm backend) with its F16 matrix products computed as dotF16Accumulated on
 * activations rounded to f16 (other types untouched). Wrap it before a model is loaded into it:
 * the f16 weights are kept on the host as they are allocated and written.
 */
export function accumulateF16(backend: Backend): Backend {
  const weights = new Map<QBuf, Float32Array>();
  const alloc = backend.allocQuantized.bind(backend), write = backend.writeQuantized.bind(backend), matmul = backend.matmulQuantized.bind(backend);
  // f16 weights as floats, kept beside the backend's copy; loaders allocate and then stream rows in.
  const writeValues = (w: QBuf, row: number, bytes: Uint8Array): void => {
    const values = weights.get(w);
    if (values !== undefined) values.set(Float32Array.from(new Uint16Array(bytes.slice().buffer), f16ToF32), row * w.cols); // slice: aligned
  };
  backend.allocQuantized = (type: QuantType, rows: number, cols: number, bytes?: Uint8Array): QBuf => {
    const w = alloc(type, rows, cols, bytes);
    if (type === "f16") {
      weights.set(w, new Float32Array(rows * cols));
      if (bytes) writeValues(w, 0, bytes.subarray(0, rows * cols * 2));
    }
    return w;
  };
  backend.writeQuantized = (w: QBuf, row: number, bytes: Uint8Array): void => {
    write(w, row, bytes);
    writeValues(w, row, bytes);
  };
  backend.matmulQuantized = (c: Buf, a: Buf, w: QBuf, m: number, n: number, k: number, accumulate: boolean): void => {
    const values = weights.get(w);
    if (values === undefined) return matmul(c, a, w, m, n, k, accumulate);
    const x = Float32Array.from(readNow(backend, a, 0, m * k), toHalf);
    const out = accumulate ? readNow(backend, c, 0, m * n) : new Float32Array(m * n);
    for (let i = 0; i < m; i++)
      for (let j = 0; j < n; j++) out[i * n + j] += dotF16Accumulated(values.subarray(j * k, (j + 1) * k), x.subarray(i * k, (i + 1) * k));
    backend.write(c, out);
  };
  return backend;
}
