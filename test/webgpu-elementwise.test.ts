// The WebGPU backend's memory operations and element-wise kernels against the f64 JS reference:
// zero-filled (pooled) allocation, writes and reads at offsets with their range errors, use after
// free, fill, copy (memmove within one buffer), add with every aliasing, axpy, scale, sums,
// scaleColumns, SwiGLU, and dropout masks equal to JsBackend's bit for bit.
import { test } from "node:test";
import assert from "node:assert/strict";
import { dropoutUniform, type Backend, type Buf } from "../src/backend/backend.js";
import { JsBackend } from "../src/backend/js/js-backend.js";
import { Rng } from "../src/util/rng.js";
import { webgpuBackend } from "./webgpu.js";
import { assertClose, bufferPairs, rowsWithTies, sortedTopK } from "./kernel-helpers.js";

const ref = new JsBackend("f64");
const rng = new Rng(99);
const randn = (n: number, scale = 1): Float32Array => Float32Array.from({ length: n }, () => (rng.next() * 2 - 1) * scale);
const bits = (x: ArrayLike<number>): Uint32Array => new Uint32Array(Float32Array.from(x).buffer);

/** |a − b| ≤ tol·(1 + |b|) elementwise. */
const be = await webgpuBackend();
if (typeof be === "string") {
  test("webgpu element-wise kernels and memory", { skip: be }, () => {});
} else {
  const gpu: Backend = be;

  const pairs = (...data: ArrayLike<number>[]): [Buf[], Buf[]] => bufferPairs(gpu, ref, ...data);
  const freeAll = (bufs: Buf[], b: Backend): void => bufs.forEach((x) => b.free(x));
  async function compare(g: Buf, r: Buf, label: string, tol = 1e-4): Promise<void> {
    assertClose(await gpu.read(g), await ref.read(r), label, tol);
  }

  // ---- memory ----------------------------------------------------------------------------------

  test("alloc is zero-filled, also when the pool hands back a freed buffer", async () => {
    for (const n of [1, 37, 1000, 70000]) {
      const a = gpu.alloc(n);
      assert.equal(a.length, n);
      assert.deepEqual(Array.from(await gpu.read(a)), new Array(n).fill(0), `fresh ${n}`);
      gpu.fill(a, 7);
      gpu.free(a);
      const b = gpu.alloc(n); // same size class: the pool's buffer, cleared
      assert.deepEqual(Array.from(await gpu.read(b)), new Array(n).fill(0), `reused ${n}`);
      gpu.fill(b, -3);
      gpu.free(b);
      const c = gpu.alloc(n + 1); // a neighbour in the same class (or the next), also cleared
      assert.deepEqual(Array.from(await gpu.read(c)), new Array(n + 1).fill(0), `reused ${n + 1}`);
      gpu.free(c);
    }
    // Freed without a read in between: the clear is ordered after the earlier writes.
    const a = gpu.alloc(64);
    gpu.write(a, randn(64));
    gpu.free(a);
    const b = gpu.alloc(64);
    gpu.write(b, [5], 10);
    const v = await gpu.read(b);
    assert.equal(v[10], 5);
    assert.equal(v.filter((x) => x !== 0).length, 1);
    gpu.free(b);
    const empty = gpu.alloc(0);
    assert.equal((await gpu.read(empty)).length, 0);
    gpu.free(empty);
    assert.throws(() => gpu.alloc(-1), /bad buffer length/);
    assert.throws(() => gpu.alloc(2.5), /bad buffer length/);
  });

  test("write, read and readInto at offsets; range errors; fill; copy with memmove semantics", async () => {
    const b = gpu.alloc(37);
    const src = randn(37);
    gpu.write(b, src);
    const all = await gpu.read(b);
    assert.ok(all instanceof Float32Array);
    assert.deepEqual(all, src);
    assert.deepEqual(await gpu.read(b, 5, 3), src.slice(5, 8));
    assert.deepEqual(await gpu.read(b, 30), src.slice(30));
    assert.equal((await gpu.read(b, 37)).length, 0);
    gpu.write(b, [1, 2, 3], 34);
    assert.deepEqual(Array.from(await gpu.read(b, 34)), [1, 2, 3]);
    gpu.write(b, new Float64Array([0.1, 0.2]), 1); // rounded to f32
    assert.deepEqual(await gpu.read(b, 1, 2), Float32Array.from([0.1, 0.2]));
    const into = new Float64Array(4);
    await gpu.readInto(b, into, 33);
    assert.deepEqual(Array.from(into), [src[33], 1, 2, 3]);
    const into32 = new Float32Array(3);
    await gpu.readInto(b, into32);
    assert.deepEqual(Array.from(into32), [src[0], Math.fround(0.1), Math.fround(0.2)]);
    assert.throws(() => gpu.write(b, [1, 2], 36), /overflows/);
    assert.throws(() => gpu.write(b, [1], -1), /overflows/);
    await assert.rejects(gpu.read(b, 30, 8), /overflows/);
    await assert.rejects(gpu.read(b, 38), /overflows/);
    await assert.rejects(gpu.read(b, -1, 2), /overflows/);
    await assert.rejects(gpu.readInto(b, new Float32Array(5), 33), /overflows/);
    await assert.rejects(gpu.readInto(b, new Float32Array(38)), /overflows/);
    gpu.fill(b, 2.5);
    assert.deepEqual(Array.from(await gpu.read(b)), new Array(37).fill(2.5));
    const c = gpu.alloc(10);
    gpu.write(c, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    gpu.copy(b, 3, c, 2, 5);
    assert.deepEqual(Array.from(await gpu.read(b, 0, 9)), [2.5, 2.5, 2.5, 2, 3, 4, 5, 6, 2.5]);
    gpu.copy(c, 2, c, 0, 6); // overlapping, forwards: memmove semantics
    assert.deepEqual(Array.from(await gpu.read(c)), [0, 1, 0, 1, 2, 3, 4, 5, 8, 9]);
    gpu.copy(c, 0, c, 3, 7); // overlapping, backwards
    assert.deepEqual(Array.from(await gpu.read(c)), [1, 2, 3, 4, 5, 8, 9, 5, 8, 9]);
    gpu.copy(c, 4, c, 4, 3); // onto itself
    gpu.copy(c, 0, b, 0, 0); // nothing
    assert.deepEqual(Array.from(await gpu.read(c)), [1, 2, 3, 4, 5, 8, 9, 5, 8, 9]);
    assert.throws(() => gpu.copy(c, 8, b, 0, 3), /needs 11/);
    assert.throws(() => gpu.copy(c, 0, b, 35, 3), /needs 38/);
    assert.throws(() => gpu.copy(c, -1, b, 0, 1), /bad copy range/);
    // Copies and kernels stay in program order without reads in between.
    gpu.fill(c, 1);
    gpu.copy(b, 0, c, 0, 10);
    gpu.scale(c, 3);
    gpu.copy(b, 10, c, 0, 10);
    assert.deepEqual(Array.from(await gpu.read(b, 0, 20)), [...new Array(10).fill(1), ...new Array(10).fill(3)]);
    gpu.free(b);
    gpu.free(c);
  });

  test("use after free and double free throw; foreign and short buffers are refused", async () => {
    const a = gpu.alloc(8), b = gpu.alloc(8);
    gpu.free(a);
    assert.throws(() => gpu.free(a), /double free/);
    await assert.rejects(gpu.read(a), /after free/);
    await assert.rejects(gpu.readInto(a, new Float32Array(2)), /after free/);
    assert.throws(() => gpu.write(a, [1]), /after free/);
    assert.throws(() => gpu.fill(a, 1), /after free/);
    assert.throws(() => gpu.copy(b, 0, a, 0, 1), /after free/);
    assert.throws(() => gpu.add(b, a, b), /after free/);
    assert.throws(() => gpu.add(a, b, b), /after free/);
    await assert.rejects(async () => gpu.sum(a), /after free/);
    assert.throws(() => gpu.free(ref.alloc(8)), /not a buffer of this backend/);
    assert.throws(() => gpu.add(b, ref.alloc(8), b), /not a buffer of this backend/);
    const short = gpu.alloc(7);
    assert.throws(() => gpu.add(b, short, b), /needs 8/);
    gpu.free(short);
    gpu.free(b);
  });

  // ---- element-wise and reductions -------------------------------------------------------------

  test("add with every aliasing, axpy (x = acc too), scale", async () => {
    for (const n of [1, 3, 7, 256, 257, 1000]) {
      const [[ga, gb, go], [ra, rb, ro]] = pairs(randn(n), randn(n), randn(n));
      gpu.add(go, ga, gb);
      ref.add(ro, ra, rb);
      await compare(go, ro, `add n=${n}`);
      gpu.add(go, go, gb); // out = a
      ref.add(ro, ro, rb);
      await compare(go, ro, `add out=a n=${n}`);
      gpu.add(go, ga, go); // out = b
      ref.add(ro, ra, ro);
      await compare(go, ro, `add out=b n=${n}`);
      gpu.add(go, go, go); // out = a = b
      ref.add(ro, ro, ro);
      await compare(go, ro, `add out=a=b n=${n}`);
      gpu.add(go, ga, ga); // a = b
      ref.add(ro, ra, ra);
      await compare(go, ro, `add a=b n=${n}`);
      gpu.axpy(go, ga, -0.75);
      ref.axpy(ro, ra, -0.75);
      await compare(go, ro, `axpy n=${n}`);
      gpu.axpy(go, go, 0.5); // acc += 0.5·acc
      ref.axpy(ro, ro, 0.5);
      await compare(go, ro, `axpy x=acc n=${n}`);
      gpu.scale(go, 1.5);
      ref.scale(ro, 1.5);
      await compare(go, ro, `scale n=${n}`);
      gpu.scale(go, 0);
      assert.deepEqual(Array.from(await gpu.read(go)).map(Math.abs), new Array(n).fill(0));
      assert.deepEqual(Array.from(await gpu.read(ga)), Array.from(await ref.read(ra)), `inputs untouched n=${n}`);
      freeAll([ga, gb, go], gpu);
    }
  });

  test("sum and sumSquares", async () => {
    for (const n of [1, 3, 255, 1000, 65537, 100000]) {
      const [[g], [r]] = pairs(randn(n));
      assertClose([await gpu.sum(g)], [await ref.sum(r)], `sum n=${n}`);
      assertClose([await gpu.sumSquares(g)], [await ref.sumSquares(r)], `sumSquares n=${n}`);
      gpu.free(g);
    }
    const empty = gpu.alloc(0);
    assert.equal(await gpu.sum(empty), 0);
    gpu.free(empty);
    // Exactly representable partial sums stay exact: a million ones and a half.
    const big = gpu.alloc(1_000_001);
    gpu.fill(big, 1);
    gpu.write(big, [0.5], 1_000_000);
    assert.equal(await gpu.sum(big), 1_000_000.5);
    assert.equal(await gpu.sumSquares(big), 1_000_000.25);
    gpu.free(big);
  });

  test("scaleColumns at an offset, rows × cols of the buffer only", async () => {
    for (const [offset, rows, cols] of [[0, 1, 1], [5, 3, 7], [3, 4, 300], [0, 2, 1000], [17, 0, 4]] as const) {
      const n = offset + rows * cols + 3; // a tail the kernel must not touch
      const [[gx, gg], [rx, rg]] = pairs(randn(n), randn(cols, 2));
      gpu.scaleColumns(gx, gg, offset, rows, cols);
      ref.scaleColumns(rx, rg, offset, rows, cols);
      assert.deepEqual(bits(await gpu.read(gx)), bits(await ref.read(rx)), `scaleColumns ${offset}+${rows}×${cols}`);
      freeAll([gx, gg], gpu);
    }
    // The gain in the same buffer, ahead of the rows it scales.
    const [[gx], [rx]] = pairs(randn(16));
    gpu.scaleColumns(gx, gx, 4, 3, 4);
    ref.scaleColumns(rx, rx, 4, 3, 4);
    assert.deepEqual(bits(await gpu.read(gx)), bits(await ref.read(rx)), "scaleColumns gain = x");
    gpu.free(gx);
    const b = gpu.alloc(10), g = gpu.alloc(4);
    assert.throws(() => gpu.scaleColumns(b, g, 3, 2, 4), /needs 11/);
    assert.throws(() => gpu.scaleColumns(b, g, 0, 1, 5), /needs 5/);
    freeAll([b, g], gpu);
  });

  test("swiglu and its backward, saturated gates, outputs aliasing inputs", async () => {
    for (const n of [1, 3, 17, 1000]) {
      const gate = randn(n, 6);
      if (n > 4) gate.set([20, -20, 100, -100], 0);
      const [[go, gg, gu, gdg, gdu, gd], [ro, rg, ru, rdg, rdu, rd]] = pairs(randn(n), gate, randn(n), randn(n), randn(n), randn(n));
      gpu.swiglu(go, gg, gu);
      ref.swiglu(ro, rg, ru);
      await compare(go, ro, `swiglu n=${n}`);
      gpu.swigluBackward(gdg, gdu, gd, gg, gu);
      ref.swigluBackward(rdg, rdu, rd, rg, ru);
      await compare(gdg, rdg, `swiglu dGate n=${n}`);
      await compare(gdu, rdu, `swiglu dUp n=${n}`);
      gpu.swigluBackward(gdg, gdu, gg, gg, gg); // dOut = gate = up: one buffer read three times
      ref.swigluBackward(rdg, rdu, rg, rg, rg);
      await compare(gdg, rdg, `swiglu dGate shared inputs n=${n}`);
      await compare(gdu, rdu, `swiglu dUp shared inputs n=${n}`);
      gpu.swiglu(gu, gg, gu); // out = up
      ref.swiglu(ru, rg, ru);
      await compare(gu, ru, `swiglu out=up n=${n}`);
      gpu.swiglu(gg, gg, gu); // out = gate
      ref.swiglu(rg, rg, ru);
      await compare(gg, rg, `swiglu out=gate n=${n}`);
      freeAll([go, gg, gu, gdg, gdu, gd], gpu);
    }
    const b = gpu.alloc(4);
    assert.throws(() => gpu.swigluBackward(b, b, b, b, b), /distinct/);
    gpu.free(b);
  });

  test("dropout masks match the JS backend bit for bit; dropoutBackward", async () => {
    const f32 = new JsBackend("f32");
    for (const n of [1, 7, 1001])
      for (const p of [0, 0.1, 0.5, 0.9, 1])
        for (const seed of [0, 12345, 4294967295, -7]) {
          const x = randn(n);
          const gx = gpu.alloc(n), go = gpu.alloc(n), gm = gpu.alloc(n);
          const fx = f32.alloc(n), fo = f32.alloc(n), fm = f32.alloc(n);
          gpu.write(gx, x);
          f32.write(fx, x);
          gpu.dropout(go, gm, gx, p, seed);
          f32.dropout(fo, fm, fx, p, seed);
          const label = `dropout n=${n} p=${p} seed=${seed}`;
          const m = await gpu.read(gm);
          assert.deepEqual(bits(m), bits(await f32.read(fm)), `${label} mask`);
          assert.deepEqual(bits(await gpu.read(go)), bits(await f32.read(fo)), `${label} out`);
          for (let i = 0; i < n; i++) assert.equal(m[i] !== 0, dropoutUniform(seed, i) >= p, `${label} element ${i}`);
          const gdx = gpu.alloc(n), fdx = f32.alloc(n), g = randn(n);
          gpu.write(gdx, g);
          f32.write(fdx, g);
          gpu.dropoutBackward(gdx, gx, gm);
          f32.dropoutBackward(fdx, fx, fm);
          // Not bit-exact: JS rounds dx + dOut·mask once, the GPU rounds the product and the sum (or fuses them).
          assertClose(await gpu.read(gdx), await f32.read(fdx), `${label} backward`, 1e-6);
          freeAll([gx, go, gm, gdx], gpu);
        }
    // In place (out = x), and the backward with dOut = dx.
    const n = 300, x = randn(n);
    const [[gx, gm], [rx, rm]] = pairs(x, new Float32Array(n));
    gpu.dropout(gx, gm, gx, 0.3, 77);
    ref.dropout(rx, rm, rx, 0.3, 77);
    await compare(gx, rx, "dropout in place");
    await compare(gm, rm, "dropout in place mask");
    gpu.dropoutBackward(gx, gx, gm);
    ref.dropoutBackward(rx, rx, rm);
    await compare(gx, rx, "dropoutBackward dOut = dx");
    freeAll([gx, gm], gpu);
    const b = gpu.alloc(4), c = gpu.alloc(4);
    assert.throws(() => gpu.dropout(b, c, b, 0.5, 1.5), /integer/);
    assert.throws(() => gpu.dropout(b, b, c, 0.5, 1), /distinct/);
    freeAll([b, c], gpu);
  });

  test("readTopK: a stable descending sort's first k (one and two passes, ties, −∞, NaN, k past the GPU's rounds), 8 bytes per pick", async () => {
    const webgpu = be as unknown as { gpu: { traffic: { download: number } } };
    for (const row of rowsWithTies(8)) {
      const buf = gpu.alloc(row.length + 5);
      gpu.write(buf, row, 5);
      for (const k of [1, 4, 40, 300]) {
        const before = webgpu.gpu.traffic.download;
        const got = await gpu.readTopK(buf, 5, row.length, k);
        const want = sortedTopK(row, k);
        assert.deepEqual([...got.ids], want, `n ${row.length}, k ${k}`);
        assert.deepEqual([...got.values], want.map((j) => row[j]), `n ${row.length}, k ${k} values`);
        const bytes = webgpu.gpu.traffic.download - before;
        // Only a row with NaN (no GPU order for it) or k past the GPU's rounds comes back whole.
        if (!row.some(Number.isNaN) && k <= 256) assert.equal(bytes, 8 * Math.min(k, row.length), `bytes read for k ${k}`);
      }
      await assert.rejects(gpu.readTopK(buf, 6, row.length, 1), /overflows/);
      await assert.rejects(gpu.readTopK(buf, 5, row.length, 0), /k must be a whole number/);
      gpu.free(buf);
    }
  });
}
