// The k largest logits with their ids (Backend.readTopK), what greedy and top-k sampling read
// back instead of the whole row: the order of a stable descending sort (ties by lower id, −∞
// kept, NaN last) on every CPU backend, and sampling from them picks exactly the token that
// sampling from the whole row picks. The WebGPU kernel's checks are in webgpu-elementwise.test.ts.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createBackend } from "../src/backend/index.js";
import { topKOf } from "../src/backend/top-k.js";
import { type SampleOptions, logitsNeeded, sampleToken } from "../src/runtime/sample.js";
import { Rng } from "../src/util/rng.js";
import { rowsWithTies, sortedTopK } from "./kernel-helpers.js";

test("topKOf is a stable descending sort's first k (ties by index, −∞ kept, NaN last)", () => {
  for (const [i, row] of rowsWithTies(3).entries()) {
    for (const k of [1, 2, 5, 40, row.length, row.length + 3]) {
      const got = topKOf(row, k);
      const want = sortedTopK(row, k);
      assert.deepEqual([...got.ids], want, `row ${i}, k ${k}`);
      assert.deepEqual([...got.values], want.map((j) => Math.fround(row[j])), `row ${i}, k ${k} values`);
    }
  }
  const offset = topKOf([9, 1, 5, 5, 7, 0], 2, 2, 3);
  assert.deepEqual([...offset.ids], [2, 0], "indices are relative to the offset");
  assert.throws(() => topKOf([1], 0), /top-k: k must be a whole number ≥ 1 \(got 0\)/);
});

for (const name of ["js", "wasm"] as const) {
  test(`${name} backend: readTopK of a row at an offset`, async () => {
    const be = await createBackend(name, { threads: 1 });
    for (const row of rowsWithTies(5)) {
      const buf = be.alloc(row.length + 7);
      be.write(buf, row, 7);
      for (const k of [1, 3, 64]) assert.deepEqual([...(await be.readTopK(buf, 7, row.length, k)).ids], sortedTopK(row, k), `k ${k}`);
      await assert.rejects(be.readTopK(buf, 8, row.length, 1), /overflows/);
      be.free(buf);
    }
  });
}

test("sampling from the row's top k picks the token that sampling from the whole row picks", () => {
  const rng = new Rng(4);
  const cases: SampleOptions[] = [
    { temperature: 0 },
    { temperature: 0.8, topK: 40 },
    { temperature: 1.3, topK: 5, topP: 0.9 },
    { temperature: 0.7, topK: 50, minP: 0.05 },
    { temperature: 1, topK: 1 },
    { temperature: 0.5, topK: 20, topP: 0.5, minP: 0.1 },
  ];
  for (const o of cases) {
    const vocab = 300;
    const k = logitsNeeded(o, vocab);
    assert.ok(k > 0, `top k suffices for ${JSON.stringify(o)}`);
    for (let trial = 0; trial < 200; trial++) {
      // Coarse values: many exact ties, which both paths must break alike.
      const row = Float32Array.from({ length: vocab }, () => Math.round(rng.normal() * 8) / 4);
      const a = new Rng(trial), b = new Rng(trial);
      assert.equal(sampleToken(topKOf(row, k), o, a), sampleToken(row, o, b), `${JSON.stringify(o)}, trial ${trial}`);
      assert.equal(a.next(), b.next(), "both drew the same number of randoms");
    }
  }
  // Where the top k does not hold what the sampler needs, it asks for the row.
  assert.equal(logitsNeeded({ temperature: 0.8 }, 300), 0);
  assert.equal(logitsNeeded({ temperature: 0.8, topK: 300 }, 300), 0);
  assert.equal(logitsNeeded({ temperature: 0, repeatPenalty: 1.1 }, 300), 0);
  assert.throws(() => sampleToken(topKOf([1, 2], 1), { temperature: 0, presencePenalty: 1 }, new Rng(1)), /penalties need the whole row/);
});
