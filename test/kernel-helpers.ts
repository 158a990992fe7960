// Helpers of the kernel tests: random inputs, buffers holding them, bitwise comparison and relative error.
import assert from "node:assert/strict";
import type { Backend, Buf, FloatArray } from "../src/backend/backend.js";
import { Rng } from "../src/util/rng.js";

/** n numbers uniform in [−scale, scale). */
export function randoms(rng: Rng, n: number, scale = 1): Float32Array {
  return Float32Array.from({ length: n }, () => (rng.next() * 2 - 1) * scale);
}

/** A backend buffer holding `data`. */
export function buf(be: Backend, data: ArrayLike<number>): Buf {
  const b = be.alloc(data.length);
  be.write(b, data);
  return b;
}

/** The same float32 bit patterns, element by element. */
export function assertBitwise(actual: FloatArray, expected: FloatArray, what: string): void {
  assert.equal(actual.length, expected.length, `${what}: length`);
  const a = new Uint32Array(Float32Array.from(actual).buffer), e = new Uint32Array(Float32Array.from(expected).buffer);
  for (let i = 0; i < a.length; i++) if (a[i] !== e[i]) assert.fail(`${what}: element ${i} differs: ${actual[i]} vs ${expected[i]}`);
}

/** max |a − b| / max |b| */
export function relErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let d = 0, m = 0;
  for (let i = 0; i < b.length; i++) {
    d = Math.max(d, Math.abs(a[i] - b[i]));
    m = Math.max(m, Math.abs(b[i]));
  }
  return d / m;
}

/**
 * |a − b| ≤ tol·(1 + |b|) element by element (equal values, infinities included, pass); returns
 * the largest |a − b| / (1 + |b|), for diagnostics.
 */
export function assertClose(actual: ArrayLike<number>, expected: ArrayLike<number>, label: string, tol = 1e-4): number {
  assert.equal(actual.length, expected.length, `${label}: length`);
  let worst = 0;
  for (let i = 0; i < expected.length; i++) {
    const a = actual[i], b = expected[i];
    if (a === b) continue;
    const e = Math.abs(a - b) / (1 + Math.abs(b));
    if (!(e <= tol)) assert.fail(`${label}: element ${i} is ${a}, expected ${b}`);
    worst = Math.max(worst, e);
  }
  return worst;
}

/** The same host numbers in a buffer of each of two backends: [a's buffers, b's buffers]. */
export function bufferPairs(a: Backend, b: Backend, ...data: ArrayLike<number>[]): [Buf[], Buf[]] {
  return [data.map((d) => buf(a, d)), data.map((d) => buf(b, d))];
}

/**
 * Rows for top-k checks: random values with many exact ties, a row of −∞ and NaN among numbers,
 * all equal, and a long row (several of the GPU kernel's chunks); `seed` varies the values.
 */
export function rowsWithTies(seed: number): Float32Array[] {
  const rng = new Rng(seed);
  const coarse = (n: number) => Float32Array.from({ length: n }, () => Math.round(rng.normal() * 6) / 2);
  const special = Float32Array.from([3, -Infinity, NaN, 3, 7, -Infinity, NaN, 0, 7, -2]);
  return [coarse(1), coarse(37), special, new Float32Array(50).fill(1.5), coarse(10_000)];
}

/** The first k indices of a stable descending sort of `row` (NaN after every number). */
export function sortedTopK(row: ArrayLike<number>, k: number): number[] {
  const key = (i: number) => (Number.isNaN(row[i]) ? -Infinity : row[i]);
  const nan = (i: number) => (Number.isNaN(row[i]) ? 1 : 0);
  return Array.from({ length: row.length }, (_, i) => i)
    .sort((a, b) => key(b) - key(a) || nan(a) - nan(b) || a - b)
    .slice(0, k);
}
