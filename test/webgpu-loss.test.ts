// The WebGPU loss, optimizer and fake-quantization kernels against the f64 JS reference (and the
// host fake-quant functions, bit for bit): cross-entropy, every distillation loss dense and
// sparse (every kind, α, τ, ignored and KD-only rows, k = 1, 4, vocab, several bitmap chunks),
// AdamW over several steps, Q8_0/Q4_0 block round trips and per-row int8, in place included.
import { test } from "node:test";
import assert from "node:assert/strict";
import { KD_ONLY, KD_STATS, type Backend, type Buf, type KdParams } from "../src/backend/backend.js";
import { JsBackend } from "../src/backend/js/js-backend.js";
import { fakeQuantizeRowsValues, fakeQuantizeValues } from "../src/backend/fake-quant.js";
import { setSparseChunkForTests } from "../src/backend/webgpu/kernels/loss.js";
import { topKLogProbs } from "../src/train/teacher-cache.js";
import { Rng } from "../src/util/rng.js";
import { webgpuBackend } from "./webgpu.js";
import { assertClose, bufferPairs } from "./kernel-helpers.js";

const ref = new JsBackend("f64");
const rng = new Rng(2024);
/** Uniform in (−scale, scale), rounded to f32 so both backends start from the same numbers. */
const randn = (n: number, scale = 1): Float32Array => Float32Array.from({ length: n }, () => (rng.next() * 2 - 1) * scale);
const gauss = (n: number, scale = 1): Float32Array => Float32Array.from({ length: n }, () => rng.normal() * scale);

/** |a − b| ≤ tol·(1 + |b|) elementwise (equal values, infinities included, pass); returns the worst |a − b|/(1 + |b|). */
const bits = (x: Float32Array): Uint32Array => new Uint32Array(x.buffer, x.byteOffset, x.length);

const be = await webgpuBackend();
if (typeof be === "string") {
  test("webgpu loss, optimizer and fake-quant kernels", { skip: be }, () => {});
} else {
  const gpu: Backend = be;
  const worst: Record<string, number> = {};
  const note = (what: string, e: number): void => void (worst[what] = Math.max(worst[what] ?? 0, e));

  const pairs = (...data: ArrayLike<number>[]): [Buf[], Buf[]] => bufferPairs(gpu, ref, ...data);
  const freeAll = (bufs: Buf[], b: Backend): void => bufs.forEach((x) => b.free(x));
  async function compare(g: Buf, r: Buf, label: string, tol = 1e-4): Promise<void> {
    note(label.split(" ")[0], assertClose(await gpu.read(g), await ref.read(r), label, tol));
  }

  test("cross-entropy and its backward: ignored rows, vocab 1 to 1000, range errors", async () => {
    for (const vocab of [1, 3, 65, 257, 1000]) {
      const rows = 6;
      const targets = Int32Array.from({ length: rows }, (_, r) => (r === 2 ? -1 : r === 4 ? -100 : (r * 7 + 3) % vocab));
      const [[gl, ge, gx, gd, gg], [rl, re, rx, rd, rg]] = pairs(randn(rows), randn(rows), randn(rows * vocab, 8), randn(rows * vocab), randn(rows));
      gpu.crossEntropy(gl, ge, gx, targets, rows, vocab);
      ref.crossEntropy(rl, re, rx, targets, rows, vocab);
      await compare(gl, rl, `crossEntropy losses vocab=${vocab}`);
      await compare(ge, re, `crossEntropy lse vocab=${vocab}`);
      const l = await gpu.read(gl);
      assert.equal(l[2], 0, "ignored row has zero loss");
      assert.equal(l[4], 0, "ignored row has zero loss");
      gpu.crossEntropyBackward(gd, gx, ge, targets, gg, rows, vocab);
      ref.crossEntropyBackward(rd, rx, re, targets, rg, rows, vocab);
      await compare(gd, rd, `crossEntropyBackward vocab=${vocab}`);
      const bad = Int32Array.from(targets);
      bad[3] = vocab;
      assert.throws(() => gpu.crossEntropy(gl, ge, gx, bad, rows, vocab), new RegExp(`target ${vocab} out of range`));
      assert.throws(() => gpu.crossEntropyBackward(gd, gx, ge, bad, gg, rows, vocab), new RegExp(`target ${vocab} out of range`));
      assert.throws(() => gpu.crossEntropy(gl, ge, gx, targets.subarray(0, 5), rows, vocab), /5 targets for 6 rows/);
      freeAll([gl, ge, gx, gd, gg], gpu);
    }
    // Large logits (no overflow: the max is subtracted) and a longer row than a workgroup's threads × 100.
    const rows = 3, vocab = 32003;
    const x = randn(rows * vocab, 4);
    x[5] = 80;
    x[vocab + 7] = -90;
    const targets = new Int32Array([5, 0, vocab - 1]);
    const [[gl, ge, gx, gd, gg], [rl, re, rx, rd, rg]] = pairs(new Float32Array(rows), new Float32Array(rows), x, new Float32Array(rows * vocab), randn(rows));
    gpu.crossEntropy(gl, ge, gx, targets, rows, vocab);
    ref.crossEntropy(rl, re, rx, targets, rows, vocab);
    await compare(gl, rl, `crossEntropy losses vocab=${vocab}`);
    await compare(ge, re, `crossEntropy lse vocab=${vocab}`);
    gpu.crossEntropyBackward(gd, gx, ge, targets, gg, rows, vocab);
    ref.crossEntropyBackward(rd, rx, re, targets, rg, rows, vocab);
    await compare(gd, rd, `crossEntropyBackward vocab=${vocab}`);
    freeAll([gl, ge, gx, gd, gg], gpu);
  });

  const kds: KdParams[] = [];
  for (const kind of [0, 1, 2] as const) for (const alpha of [0, 0.3, 1]) for (const temperature of [1, 2.5]) kds.push({ kind, alpha, temperature, beta: 0.5 });
  const kdLabel = (kd: KdParams): string => `kind ${kd.kind} α=${kd.alpha} τ=${kd.temperature}`;
  /** Valid, ignored, KD-only rows; the last valid one the last token. */
  const kdTargets = (vocab: number): Int32Array => new Int32Array([0, -1, KD_ONLY, vocab - 1, (vocab * 5) >> 3, KD_ONLY]);

  test("distill (dense teacher) and its backward: every kind, α, τ; ignored and KD-only rows", async () => {
    for (const vocab of [1, 3, 65, 257]) {
      const targets = kdTargets(vocab), rows = targets.length;
      const s = randn(rows * vocab, 4), t = randn(rows * vocab, 4);
      for (const kd of kds) {
        const label = `vocab=${vocab} ${kdLabel(kd)}`;
        const stats0 = randn(rows * KD_STATS); // ignored rows keep theirs
        const [[gl, gs, gx, gt, gd, gg], [rl, rs, rx, rt, rd, rg]] = pairs(randn(rows), stats0, s, t, randn(rows * vocab), randn(rows));
        gpu.distill(gl, gs, gx, gt, targets, rows, vocab, kd);
        ref.distill(rl, rs, rx, rt, targets, rows, vocab, kd);
        await compare(gl, rl, `distill losses ${label}`);
        await compare(gs, rs, `distill stats ${label}`);
        assert.equal((await gpu.read(gl))[1], 0, "ignored row has zero loss");
        gpu.distillBackward(gd, gx, gt, gs, targets, gg, rows, vocab, kd);
        ref.distillBackward(rd, rx, rt, rs, targets, rg, rows, vocab, kd);
        await compare(gd, rd, `distillBackward ${label}`);
        freeAll([gl, gs, gx, gt, gd, gg], gpu);
      }
    }
    const b = gpu.alloc(64);
    assert.throws(() => gpu.distill(b, b, b, b, new Int32Array([3, 0]), 2, 3, kds[0]), /target 3 out of range \[-2, 3\)/);
    assert.throws(() => gpu.distill(b, b, b, b, new Int32Array([-3, 0]), 2, 3, kds[0]), /target -3 out of range/);
    assert.throws(() => gpu.distillBackward(b, b, b, b, new Int32Array([0, 9]), b, 2, 3, kds[0]), /target 9 out of range/);
    const c = gpu.alloc(64);
    assert.throws(() => gpu.distill(b, b, c, c, new Int32Array([0, 0]), 2, 3, kds[0]), /outputs must be distinct/);
    assert.throws(() => gpu.distill(b, c, c, c, new Int32Array([0, 0]), 2, 40, kds[0]), /needs 80/);
    gpu.free(b);
    gpu.free(c);
  });

  test("distillSparse and its backward: k = 1, 4, vocab; residual outcome; several bitmap chunks", async () => {
    // The whole grid of kinds, α and τ where it matters most (with and without a residual), a
    // covering few elsewhere (SwiftShader is slow).
    const few = [0, 5, 7, 10, 15].map((i) => kds[i]);
    const cases: { vocab: number; k: number; chunk?: number; kdSet?: KdParams[] }[] = [
      { vocab: 1, k: 1, kdSet: few },
      { vocab: 3, k: 1, kdSet: few },
      { vocab: 3, k: 3 },
      { vocab: 65, k: 1, kdSet: few },
      { vocab: 65, k: 4 },
      { vocab: 65, k: 65, kdSet: few },
      { vocab: 257, k: 4, kdSet: few },
      { vocab: 257, k: 257, kdSet: few },
      { vocab: 257, k: 4, chunk: 64, kdSet: few }, // 5 chunks, the last partial
      { vocab: 257, k: 40, chunk: 32, kdSet: few },
      { vocab: 65, k: 0, kdSet: few }, // no top-k: the residual is everything
    ];
    for (const { vocab, k, chunk, kdSet = kds } of cases) {
      const targets = kdTargets(vocab), rows = targets.length;
      const s = randn(rows * vocab, 4), teacherLogits = randn(rows * vocab, 4);
      const old = chunk === undefined ? undefined : setSparseChunkForTests(chunk);
      try {
        for (const kd of kdSet) {
          const label = `vocab=${vocab} k=${k}${chunk ? ` chunk=${chunk}` : ""} ${kdLabel(kd)}`;
          const top = topKLogProbs(teacherLogits, rows, vocab, k, kd.temperature);
          // Shuffle each row's top-k so that the ids are not in order of probability.
          for (let r = 0; r < rows && k > 1; r++) {
            const i = r * k, j = r * k + ((r * 3 + 1) % k);
            [top.ids[i], top.ids[j]] = [top.ids[j], top.ids[i]];
            [top.logProbs[i], top.logProbs[j]] = [top.logProbs[j], top.logProbs[i]];
          }
          const stats0 = randn(rows * KD_STATS);
          const [[gl, gs, gx, glp, gd, gg], [rl, rs, rx, rlp, rd, rg]] = pairs(randn(rows), stats0, s, top.logProbs, randn(rows * vocab), randn(rows));
          gpu.distillSparse(gl, gs, gx, top.ids, glp, targets, rows, vocab, k, kd);
          ref.distillSparse(rl, rs, rx, top.ids, rlp, targets, rows, vocab, k, kd);
          await compare(gl, rl, `distillSparse losses ${label}`);
          await compare(gs, rs, `distillSparse stats ${label}`);
          if (k >= vocab) assert.equal((await gpu.read(gs))[2], -Infinity, "no residual: lqR = −∞");
          gpu.distillSparseBackward(gd, gx, top.ids, glp, gs, targets, gg, rows, vocab, k, kd);
          ref.distillSparseBackward(rd, rx, top.ids, rlp, rs, targets, rg, rows, vocab, k, kd);
          await compare(gd, rd, `distillSparseBackward ${label}`);
          freeAll([gl, gs, gx, glp, gd, gg], gpu);
        }
      } finally {
        if (old !== undefined) setSparseChunkForTests(old);
      }
    }
    const b = gpu.alloc(64);
    assert.throws(() => gpu.distillSparse(b, b, b, new Int32Array([0, 3]), b, new Int32Array([0, 0]), 2, 3, 1, kds[0]), /teacher token id 3 out of range \[0, 3\)/);
    assert.throws(() => gpu.distillSparse(b, b, b, new Int32Array([0]), b, new Int32Array([0, 0]), 2, 3, 1, kds[0]), /1 teacher ids for 2 rows/);
    assert.throws(() => gpu.distillSparseBackward(b, b, new Int32Array([0, 1]), b, b, new Int32Array([0, 5]), b, 2, 3, 1, kds[0]), /target 5 out of range/);
    gpu.free(b);
  });

  test("distillation at a realistic vocabulary (one bitmap chunk spans it; many tokens per thread)", async () => {
    const rows = 3, vocab = 32003, k = 40;
    const targets = new Int32Array([5, KD_ONLY, vocab - 1]);
    const s = randn(rows * vocab, 6), t = randn(rows * vocab, 6);
    for (const kd of [kds[1], kds[9], kds[17]]) {
      const label = `vocab=${vocab} ${kdLabel(kd)}`;
      const top = topKLogProbs(t, rows, vocab, k, kd.temperature);
      const [[gl, gs, gx, gt, glp, gd, gg], [rl, rs, rx, rt, rlp, rd, rg]] = pairs(new Float32Array(rows), new Float32Array(rows * 4), s, t, top.logProbs, new Float32Array(rows * vocab), randn(rows));
      gpu.distill(gl, gs, gx, gt, targets, rows, vocab, kd);
      ref.distill(rl, rs, rx, rt, targets, rows, vocab, kd);
      await compare(gl, rl, `distill losses ${label}`);
      gpu.distillBackward(gd, gx, gt, gs, targets, gg, rows, vocab, kd);
      ref.distillBackward(rd, rx, rt, rs, targets, rg, rows, vocab, kd);
      await compare(gd, rd, `distillBackward ${label}`);
      gpu.distillSparse(gl, gs, gx, top.ids, glp, targets, rows, vocab, k, kd);
      ref.distillSparse(rl, rs, rx, top.ids, rlp, targets, rows, vocab, k, kd);
      await compare(gl, rl, `distillSparse losses ${label}`);
      await compare(gs, rs, `distillSparse stats ${label}`);
      gpu.distillSparseBackward(gd, gx, top.ids, glp, gs, targets, gg, rows, vocab, k, kd);
      ref.distillSparseBackward(rd, rx, top.ids, rlp, rs, targets, rg, rows, vocab, k, kd);
      await compare(gd, rd, `distillSparseBackward ${label}`);
      freeAll([gl, gs, gx, gt, glp, gd, gg], gpu);
    }
  });

  test("adamw matches the reference over several steps, with and without weight decay", async () => {
    for (const n of [1, 5, 64, 1003])
      for (const wd of [0, 0.1]) {
        const [[gp, gg, gm, gv], [rp, rg, rm, rv]] = pairs(randn(n), randn(n), new Float32Array(n), new Float32Array(n));
        for (let step = 1; step <= 6; step++) {
          const g = randn(n, step === 3 ? 1e-6 : 0.1); // one step of tiny gradients: eps matters
          gpu.write(gg, g);
          ref.write(rg, g);
          gpu.adamw(gp, gg, gm, gv, 1e-3, 0.9, 0.95, 1e-8, wd, step);
          ref.adamw(rp, rg, rm, rv, 1e-3, 0.9, 0.95, 1e-8, wd, step);
        }
        await compare(gp, rp, `adamw param n=${n} wd=${wd}`, 1e-5);
        await compare(gm, rm, `adamw m n=${n} wd=${wd}`, 1e-5);
        await compare(gv, rv, `adamw v n=${n} wd=${wd}`, 1e-5);
        freeAll([gp, gg, gm, gv], gpu);
      }
  });

  /** Blocks of 32 with the awkward cases: zeros (±0), exact ties of the rounding, magnitude ties of Q4_0, tiny and huge scales. */
  function awkwardBlocks(): Float32Array {
    const blocks: number[][] = [];
    blocks.push(new Array(32).fill(0));
    blocks.push(new Array(32).fill(-0));
    // amax 127: d = 1, so x·id = x and x.5 is a tie of roundf (away from zero) and of Q4_0's trunc(x + 8.5).
    blocks.push(Array.from({ length: 32 }, (_, j) => (j === 0 ? 127 : (j % 2 ? -1 : 1) * (j / 2 + 0.5))));
    blocks.push(Array.from({ length: 32 }, (_, j) => (j === 5 ? -8 : j === 9 ? 8 : (j - 16) / 2)));
    blocks.push(Array.from({ length: 32 }, (_, j) => (j === 3 ? 6 : j === 4 ? -6 : 0.1 * j)));
    blocks.push(Array.from({ length: 32 }, (_, j) => (j === 3 ? -6 : j === 4 ? 6 : 0.1 * j)));
    for (const scale of [1e-9, 3e-7, 1e-5, 6.1e-5 * 127, 1e3, 5e5]) blocks.push(Array.from(gauss(32, scale)));
    blocks.push([1e-38, -3e-39, ...Array.from(gauss(30, 1e-3))]); // subnormal f32 inputs in an ordinary block
    // Q4_0 scales d = max/−8 exactly halfway between two f16 values (ties to even: down, up, and a subnormal f16).
    for (const d of [1 + 2 ** -11, 1 + 3 * 2 ** -11, 1.5 * 2 ** -24]) blocks.push([0.25 * d, -8 * d, ...Array.from(randn(30, 7 * d))]);
    return Float32Array.from(blocks.flat());
  }

  test("fakeQuantize Q8_0 and Q4_0 equal the host reference bit for bit (in place too)", async () => {
    const report: string[] = [];
    for (const type of ["q8_0", "q4_0"] as const) {
      const inputs: [string, Float32Array][] = [
        ["32", gauss(32)],
        ["awkward", awkwardBlocks()],
        ["1e5 gaussian", gauss(100000)],
        ["mixed scales", Float32Array.from({ length: 32 * 2000 }, (_, i) => rng.normal() * 10 ** (-8 + 11 * (((i >> 5) * 0.618034) % 1)))],
      ];
      for (const [name, x] of inputs) {
        const want = fakeQuantizeValues(type, x);
        const gx = gpu.alloc(x.length), go = gpu.alloc(x.length);
        gpu.write(gx, x);
        gpu.fakeQuantize(go, gx, type);
        const got = (await gpu.read(go)) as Float32Array;
        let differ = 0, maxDiff = 0;
        const gb = bits(got), wb = bits(want);
        for (let i = 0; i < x.length; i++)
          if (gb[i] !== wb[i]) {
            differ++;
            maxDiff = Math.max(maxDiff, Math.abs(got[i] - want[i]));
          }
        report.push(`${type} ${name}: ${differ} of ${x.length} differ (max ${maxDiff})`);
        assert.equal(differ, 0, `fakeQuantize ${type} ${name}: ${differ} elements differ, the largest by ${maxDiff}`);
        gpu.fakeQuantize(gx, gx, type); // in place
        assert.deepEqual(bits((await gpu.read(gx)) as Float32Array), wb, `fakeQuantize ${type} ${name} in place`);
        gpu.free(gx);
        gpu.free(go);
      }
    }
    const b = gpu.alloc(40);
    assert.throws(() => gpu.fakeQuantize(b, b, "q8_0"), /40 values are not whole blocks of 32/);
    assert.throws(() => gpu.fakeQuantize(b, b, "f16" as "q8_0"), /unknown type/);
    gpu.free(b);
    console.log(`# fakeQuantize against fakeQuantizeValues: ${report.join("; ")}`);
  });

  test("fakeQuantizeRows equals the host reference bit for bit: ties to even, zero rows, signed zeros, in place", async () => {
    const shapes: [number, number, (n: number) => Float32Array][] = [
      [1, 1, (n) => gauss(n)],
      [3, 7, (n) => gauss(n)],
      [5, 300, (n) => gauss(n, 3)],
      [2, 1000, (n) => gauss(n, 1e-3)],
      [4, 33, (n) => Float32Array.from({ length: n }, (_, i) => (i < 33 ? 0 : i % 33 === 0 ? 127 : (i % 2 ? -1 : 1) * ((i % 17) + 0.5)))], // a zero row; x/s = k + ½
      [3, 64, (n) => Float32Array.from({ length: n }, (_, i) => (i % 64 === 0 ? 127 : ((i % 5) - 2) * 0.3))], // ±0.3 → ±0
      [2, 50, (n) => Float32Array.from({ length: n }, () => rng.normal() * 1e-36)], // subnormal-adjacent scale
    ];
    for (const [rows, dim, make] of shapes) {
      const x = make(rows * dim);
      const want = fakeQuantizeRowsValues(x, rows, dim);
      const gx = gpu.alloc(x.length), go = gpu.alloc(x.length);
      gpu.write(gx, x);
      gpu.fakeQuantizeRows(go, gx, rows, dim);
      const label = `fakeQuantizeRows ${rows}×${dim}`;
      const got = (await gpu.read(go)) as Float32Array;
      const gb = bits(got), wb = bits(want);
      for (let i = 0; i < x.length; i++) if (gb[i] !== wb[i]) assert.fail(`${label}: element ${i} (x = ${x[i]}) is ${got[i]}, expected ${want[i]}`);
      gpu.fakeQuantizeRows(gx, gx, rows, dim);
      assert.deepEqual(bits((await gpu.read(gx)) as Float32Array), wb, `${label} in place`);
      gpu.free(gx);
      gpu.free(go);
    }
  });

  test("worst relative errors against the f64 reference", () => {
    console.log(`# worst |gpu − js|/(1 + |js|): ${Object.entries(worst).map(([k, v]) => `${k} ${v.toExponential(2)}`).join(", ")}`);
  });
}
