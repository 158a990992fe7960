// Distillation losses (ops.distillLosses): values and student gradients against PyTorch
// (scripts/make_kd_fixtures.py) on every backend, finite differences on the f64 reference, the
// JSD's reductions at β = 0 / 1, and refusals of bad input.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { createBackend } from "../src/backend/index.js";
import { JsBackend } from "../src/backend/js/js-backend.js";
import { KD_ONLY, type Backend } from "../src/backend/backend.js";
import { Tensor, backward, scope } from "../src/tensor/tensor.js";
import * as op from "../src/tensor/ops.js";
import { Rng } from "../src/util/rng.js";

const fx = JSON.parse(readFileSync("test/fixtures/distill.json", "utf8")); // tests run from the repo root

/** max |a − b| / max(1, max |b|) */
function relErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let worst = 0, scale = 1;
  for (let i = 0; i < b.length; i++) scale = Math.max(scale, Math.abs(b[i]));
  for (let i = 0; i < b.length; i++) worst = Math.max(worst, Math.abs(a[i] - b[i]));
  return worst / scale;
}

function teacherOf(be: Backend, c: any): Tensor | op.SparseTeacher {
  if (c.k === undefined) return Tensor.from(be, [fx.rows, fx.vocab], fx.teacher);
  return { ids: Int32Array.from(c.ids), logProbs: Tensor.from(be, [fx.rows, c.k], c.log_probs), k: c.k };
}

const backends: [string, () => Promise<Backend>, number][] = [
  ["js f64", async () => new JsBackend("f64"), 1e-9],
  ["js f32", async () => new JsBackend("f32"), 1e-4],
  ["wasm", () => createBackend("wasm"), 1e-4],
];

for (const [bname, make, tol] of backends) {
  test(`every KD loss and its gradient match PyTorch on ${bname}`, async () => {
    const be = await make();
    const targets = Int32Array.from(fx.targets);
    for (const c of fx.cases) {
      const student = Tensor.from(be, [fx.rows, fx.vocab], fx.student, true);
      const values = scope(() => {
        const losses = op.distillLosses(student, teacherOf(be, c), targets, { loss: c.loss, alpha: c.alpha, temperature: c.temperature, beta: c.beta });
        const v = losses.toArray();
        backward(op.weightedSum(losses, fx.probe));
        return v;
      });
      const e = relErr(await values, c.losses);
      assert.ok(e < tol, `${c.name}: losses differ by ${e}`);
      const g = relErr((await student.gradArray())!, c.grad);
      assert.ok(g < tol, `${c.name}: gradient differs by ${g}`);
      assert.equal((await student.toArray()).length, fx.rows * fx.vocab);
      student.dispose();
    }
  });
}

const be = new JsBackend("f64");
const rng = new Rng(7);
const randn = (n: number, std: number): number[] => Array.from({ length: n }, () => std * rng.normal());

/** d(Σ wᵣ·Lᵣ)/d(student) against central differences. */
async function gradcheck(name: string, student: Tensor, f: () => Tensor): Promise<void> {
  const w = randn(student.size / student.shape[1], 1);
  student.zeroGrad();
  scope(() => backward(op.weightedSum(f(), w)));
  const analytic = (await student.gradArray())!, values = await student.toArray();
  const objective = (): Promise<number> => scope(() => op.weightedSum(f(), w).item());
  let worst = 0;
  for (let i = 0; i < student.size; i++) {
    const eps = 1e-6;
    be.write(student.data, [values[i] + eps], i);
    const up = await objective();
    be.write(student.data, [values[i] - eps], i);
    const down = await objective();
    be.write(student.data, [values[i]], i);
    worst = Math.max(worst, Math.abs((up - down) / (2 * eps) - analytic[i]) / (1 + Math.abs(analytic[i])));
  }
  assert.ok(worst < 1e-6, `${name}: gradient differs from finite differences by ${worst}`);
}

test("finite differences: dense and sparse teachers, every loss, residual outcome included", async () => {
  const [N, V] = [5, 11];
  const student = Tensor.from(be, [N, V], randn(N * V, 2), true);
  const teacherLogits = randn(N * V, 2.5);
  const teacher = Tensor.from(be, [N, V], teacherLogits);
  const targets = new Int32Array([4, -1, KD_ONLY, 0, 10]);
  const kinds: op.DistillOptions[] = [
    { loss: "forward-kl", alpha: 0.5, temperature: 2 },
    { loss: "reverse-kl", alpha: 0.25, temperature: 0.7 },
    { loss: "jsd", alpha: 0.1, temperature: 1.3, beta: 0.3 },
    { loss: "jsd", alpha: 0.6, temperature: 1, beta: 0.85 },
  ];
  for (const opts of kinds) {
    await gradcheck(`${opts.loss} dense`, student, () => op.distillLosses(student, teacher, targets, opts));
    for (const k of [1, 4, V]) {
      // The teacher's top-k at τ, as the cache stores them.
      const ids = new Int32Array(N * k), lps = new Float64Array(N * k);
      for (let r = 0; r < N; r++) {
        const row = teacherLogits.slice(r * V, r * V + V).map((x) => x / opts.temperature);
        const m = Math.max(...row), lse = m + Math.log(row.reduce((s, x) => s + Math.exp(x - m), 0));
        const order = row.map((x, j) => [x, j]).sort((a, b) => b[0] - a[0]).slice(0, k);
        order.forEach(([x, j], i) => ((ids[r * k + i] = j), (lps[r * k + i] = x - lse)));
      }
      const sparse = { ids, logProbs: Tensor.from(be, [N, k], lps), k };
      await gradcheck(`${opts.loss} top-${k}`, student, () => op.distillLosses(student, sparse, targets, opts));
      if (k === V) {
        // The whole vocabulary as "top-k": exactly the dense loss.
        const a = await scope(() => op.distillLosses(student, sparse, targets, opts).toArray());
        const b = await scope(() => op.distillLosses(student, teacher, targets, opts).toArray());
        assert.ok(relErr(a, b) < 1e-12, `${opts.loss}: top-V differs from dense`);
      }
    }
  }
});

test("JSD reduces to forward KL at β = 0 and to reverse KL at β = 1, and the mixture JSD vanishes as β → 0⁺ (m → q)", async () => {
  const [N, V] = [4, 7];
  const student = Tensor.from(be, [N, V], randn(N * V, 1.5), true);
  const teacher = Tensor.from(be, [N, V], randn(N * V, 1.5));
  const targets = new Int32Array([1, 2, KD_ONLY, 6]);
  const run = async (opts: op.DistillOptions): Promise<Float64Array> => Float64Array.from(await scope(() => op.distillLosses(student, teacher, targets, opts).toArray()));
  const base = { alpha: 0.3, temperature: 1.7 };
  assert.deepEqual(await run({ ...base, loss: "jsd", beta: 0 }), await run({ ...base, loss: "forward-kl" }));
  assert.deepEqual(await run({ ...base, loss: "jsd", beta: 1 }), await run({ ...base, loss: "reverse-kl" }));
  // With α = 1 every loss is the plain cross-entropy (KD-only rows aside).
  const ce = Float64Array.from(await scope(() => op.crossEntropy(student, Int32Array.from(targets, (t) => (t < 0 ? -1 : t))).toArray()));
  for (const loss of op.KD_LOSSES) assert.ok(relErr((await run({ loss, alpha: 1, temperature: 3 })).map((x, i) => (targets[i] === KD_ONLY ? 0 : x)), ce) < 1e-12);
  const small = await run({ ...base, loss: "jsd", beta: 1e-9 }), kdOnlyRow = 2;
  assert.ok(small[kdOnlyRow] >= 0 && small[kdOnlyRow] < 1e-6, `JSD at β → 0⁺ vanishes (${small[kdOnlyRow]})`);
});

test("bad input: one-line errors", () => {
  const s = Tensor.from(be, [2, 3], [1, 2, 3, 4, 5, 6], true), t = Tensor.from(be, [2, 3], [0, 0, 1, 1, 0, 0]);
  const o: op.DistillOptions = { loss: "forward-kl", alpha: 0.5, temperature: 1 };
  assert.throws(() => op.distillLosses(s, t, new Int32Array([0, 3]), o), /target 3 out of range/);
  assert.throws(() => op.distillLosses(s, t, new Int32Array([0, -3]), o), /target -3 out of range/);
  assert.throws(() => op.distillLosses(s, t, new Int32Array([0]), o), /1 targets for 2 rows/);
  assert.throws(() => op.distillLosses(s, t, new Int32Array([0, 1]), { ...o, temperature: 0 }), /temperature must be > 0/);
  assert.throws(() => op.distillLosses(s, t, new Int32Array([0, 1]), { ...o, alpha: 1.5 }), /alpha must be in \[0, 1\]/);
  assert.throws(() => op.distillLosses(s, t, new Int32Array([0, 1]), { ...o, loss: "kl" as op.KdLoss }), /unknown loss "kl"/);
  const lp = Tensor.from(be, [2, 2], [-1, -2, -1, -2]);
  assert.throws(() => op.distillLosses(s, { ids: new Int32Array([0, 1, 2, 2]), logProbs: lp, k: 2 }, new Int32Array([0, 1]), o), /id 2 repeats in row 1/);
  assert.throws(() => op.distillLosses(s, { ids: new Int32Array([0, 1, 2, 5]), logProbs: lp, k: 2 }, new Int32Array([0, 1]), o), /id 5 out of range/);
});

test("wasm agrees with the f64 reference at a realistic vocabulary (SIMD lanes, tails, top-k masks)", async () => {
  const wasm = await createBackend("wasm", { threads: 1 });
  const [N, V, k] = [6, 3001, 40];
  const r = new Rng(11);
  const s = Array.from({ length: N * V }, () => 3 * r.normal()), t = Array.from({ length: N * V }, () => 3 * r.normal());
  const targets = new Int32Array([5, -1, KD_ONLY, 3000, 17, 0]);
  const ids = new Int32Array(N * k), lps = new Float32Array(N * k);
  for (let i = 0; i < N; i++) {
    const picked = new Set<number>();
    while (picked.size < k) picked.add(r.int(V));
    [...picked].forEach((id, j) => ((ids[i * k + j] = id), (lps[i * k + j] = -4 - 3 * r.next())));
  }
  const w = randn(N, 1);
  const run = async (b: Backend, opts: op.DistillOptions, sparse: boolean): Promise<{ losses: number[]; grad: number[] }> => {
    const x = Tensor.from(b, [N, V], s, true);
    const teacher = sparse ? { ids, logProbs: Tensor.from(b, [N, k], lps), k } : Tensor.from(b, [N, V], t);
    const losses = [...(await scope(() => {
      const l = op.distillLosses(x, teacher, targets, opts);
      backward(op.weightedSum(l, w));
      return l.toArray();
    }))];
    const grad = [...(await x.gradArray())!];
    x.dispose();
    return { losses, grad };
  };
  for (const opts of [
    { loss: "forward-kl", alpha: 0.5, temperature: 2 },
    { loss: "reverse-kl", alpha: 0.2, temperature: 1 },
    { loss: "jsd", alpha: 0.3, temperature: 1.5, beta: 0.4 },
  ] as op.DistillOptions[])
    for (const sparse of [false, true]) {
      const want = await run(be, opts, sparse), got = await run(wasm, opts, sparse);
      assert.ok(relErr(got.losses, want.losses) < 1e-4, `${opts.loss}${sparse ? " top-k" : ""}: losses differ by ${relErr(got.losses, want.losses)}`);
      assert.ok(relErr(got.grad, want.grad) < 1e-4, `${opts.loss}${sparse ? " top-k" : ""}: gradients differ by ${relErr(got.grad, want.grad)}`);
    }
});
