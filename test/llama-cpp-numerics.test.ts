// The model of llama.cpp's f16 arithmetic (test/llama-cpp-numerics.ts) is a test tool that only
// ARM builds with FP16_VA switch on; this checks it on every CPU: the wrapped backend sees every
// f16 matrix however a loader fills it (whole, or streamed in row chunks from unaligned buffers).
import { test } from "node:test";
import assert from "node:assert/strict";
import { createBackend } from "../src/backend/index.js";
import { f16ToF32, f32ToF16 } from "../src/format/float16.js";
import { accumulateF16, dotF16Accumulated } from "./llama-cpp-numerics.js";
import { Rng } from "../src/util/rng.js";

test("accumulateF16: f16 products accumulated in f16 for matrices given whole or written in row chunks", async () => {
  const rows = 6, cols = 72, m = 2; // 72: two steps of 32 and 8 leftovers
  const rng = new Rng(7);
  const halves = Uint16Array.from({ length: rows * cols }, () => f32ToF16(rng.normal()));
  const bytes = new Uint8Array(halves.buffer);
  const x = Float32Array.from({ length: m * cols }, () => rng.normal());
  const backend = accumulateF16(await createBackend("wasm", { kernels: "simd" }));
  const whole = backend.allocQuantized("f16", rows, cols, bytes);
  const streamed = backend.allocQuantized("f16", rows, cols);
  const rowBytes = cols * 2;
  backend.writeQuantized(streamed, 0, bytes.subarray(0, 2 * rowBytes));
  const unaligned = new Uint8Array(4 * rowBytes + 1);
  unaligned.set(bytes.subarray(2 * rowBytes), 1);
  backend.writeQuantized(streamed, 2, unaligned.subarray(1));

  const w = Float32Array.from(halves, f16ToF32);
  const xh = Float32Array.from(x, (v) => f16ToF32(f32ToF16(v)));
  const expected = Array.from({ length: m * rows }, (_, i) =>
    dotF16Accumulated(w.subarray((i % rows) * cols, (i % rows + 1) * cols), xh.subarray(Math.floor(i / rows) * cols, (Math.floor(i / rows) + 1) * cols)));
  const a = backend.alloc(m * cols);
  backend.write(a, x);
  for (const q of [whole, streamed]) {
    const c = backend.alloc(m * rows);
    backend.matmulQuantized(c, a, q, m, rows, cols, false);
    assert.deepEqual(Array.from(await backend.read(c)), expected);
  }
});
