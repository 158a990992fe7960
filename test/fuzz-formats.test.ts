import { test } from "node:test";
import assert from "node:assert/strict";
import { fuzzFormats, fuzzSeeds } from "../bench/fuzz-formats.js";

// A few thousand seeded mutations of valid GGUF and safetensors files (the engine and a longer
// run are in bench/fuzz-formats.ts): every read either succeeds or throws a one-line Error that
// starts with "gguf:" / "safetensors:", and no case takes long.
test("mutated GGUF and safetensors files give one-line format errors, never crashes", (t) => {
  const { seeds, real } = fuzzSeeds();
  if (!real) t.diagnostic("../shared/data absent: fuzzing the sample files only, not llama-2-tiny-random.gguf's header");
  const start = performance.now();
  const r = fuzzFormats(seeds, 4000, 20261129);
  const ms = performance.now() - start;
  t.diagnostic(`${r.cases} mutations over ${seeds.length} seed files: ${r.accepted} read, ${r.rejected} rejected; ${ms.toFixed(0)} ms, slowest case ${r.maxCaseMs.toFixed(1)} ms`);
  assert.deepEqual(r.failures, []);
  assert.ok(r.accepted > 0 && r.rejected > 0, "the mutations exercise both outcomes");
  assert.ok(r.maxCaseMs < 1000, "no case hangs");
});
