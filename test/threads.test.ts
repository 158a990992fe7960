// The threaded wasm backend: matrix products and cached attention split across worker threads
// must give results bitwise identical to one thread (each output element computed by exactly one
// thread with the same arithmetic), for any thread count and shape; so must a whole model's
// logits and sampled tokens. The pool must shut down cleanly and never keep a process alive.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { KD_ONLY, KD_STATS, type Backend, type Buf, type FloatArray } from "../src/backend/backend.js";
import { createBackend } from "../src/backend/index.js";
import { createWasmBackend, type WasmNumericsOptions } from "../src/backend/wasm/wasm-backend.js";
import { relaxedSimdAvailable, type KernelFlavour } from "../src/backend/wasm/kernel-flavour.js";
import { createThreadedWasmBackend, type ThreadedWasmBackend } from "../src/backend/wasm/threaded-wasm-backend.js";
import { splitBounds } from "../src/backend/wasm/split.js";
import { GgmlType, quantize } from "../src/format/ggml-quants.js";
import type { LlamaConfig } from "../src/nn/config.js";
import { Llama } from "../src/nn/llama.js";
import { generateTokens } from "../src/runtime/generate.js";
import { Session } from "../src/runtime/session.js";
import { Rng } from "../src/util/rng.js";
import { assertBitwise, buf, randoms } from "./kernel-helpers.js";
import { collect } from "./async-helpers.js";

/** Bitwise equality of two float arrays (NaN payloads aside, which these kernels never make). */

/** One thread (the plain module), then 2 and 3 threads splitting every kernel however small. */
async function backends(opts: WasmNumericsOptions = {}): Promise<[number, Backend][]> {
  return [
    [1, await createWasmBackend(opts)],
    [2, await createThreadedWasmBackend({ threads: 2, minWorkPerThread: 0, ...opts })],
    [3, await createThreadedWasmBackend({ threads: 3, minWorkPerThread: 0, ...opts })],
  ];
}

const flavours: KernelFlavour[] = (await relaxedSimdAvailable()) ? ["simd", "relaxed"] : ["simd"];

const dispose = (bs: [number, Backend][]): void => bs.forEach(([, b]) => b.dispose?.());

test("splitBounds: whole units, every part non-empty, remainder last", () => {
  assert.deepEqual(splitBounds(3, 4, 2), [0, 3]);
  assert.deepEqual(splitBounds(9, 4, 3), [0, 4, 9]);
  assert.deepEqual(splitBounds(16, 4, 3), [0, 4, 8, 16]);
  assert.deepEqual(splitBounds(5, 1, 2), [0, 2, 5]);
  assert.deepEqual(splitBounds(100, 4, 1), [0, 100]);
});

const config: LlamaConfig = {
  vocab_size: 301, hidden_size: 48, intermediate_size: 136, num_hidden_layers: 2,
  num_attention_heads: 6, num_key_value_heads: 2, max_position_embeddings: 40,
  rms_norm_eps: 1e-5, rope_theta: 10000, tie_word_embeddings: false,
};


// Each build of the kernels is deterministic and splits bitwise, relaxed SIMD included (its
// choice between FMA and multiply-then-add is made once per machine, not per call).
for (const kernels of flavours) {
  test(`${kernels}: matmul: 1, 2 and 3 threads give bitwise identical results`, async () => {
    const bs = await backends({ kernels }), rng = new Rng(5);
    const shapes: [number, number, number][] = [];
    for (const n of [1, 3, 4, 5, 17, 64, 100, 513]) for (const k of [1, 7, 64, 300]) shapes.push([1, n, k]);
    for (const m of [2, 3, 5, 8, 9, 17, 130, 257]) for (const n of [1, 2, 16, 33, 300]) for (const k of [5, 64, 257]) shapes.push([m, n, k]);
    for (const [m, n, k] of shapes)
      for (const [transA, transB] of [[false, true], [false, false], [true, false]] as const)
        for (const accumulate of [false, true]) {
          const a = randoms(rng, m * k), b = randoms(rng, k * n), c0 = randoms(rng, m * n);
          const results = await Promise.all(bs.map(([, be]) => {
            const c = buf(be, c0);
            be.matmul(c, buf(be, a), buf(be, b), m, n, k, transA, transB, accumulate);
            return be.read(c);
          }));
          for (let i = 1; i < bs.length; i++) assertBitwise(results[i], results[0], `${bs[i][0]} threads, ${m}x${n}x${k} tA=${transA} tB=${transB} acc=${accumulate}`);
        }
    dispose(bs);
  });

  for (const numerics of [{}, { q8Activations: true }, { q8Activations: true, f16Order: "avx" }] as WasmNumericsOptions[])
    test(`${kernels}: matmulQuantized${numerics.q8Activations ? ` (llama.cpp's numerics, ${numerics.f16Order ?? "avx512"} f16 order)` : ""}: 1, 2 and 3 threads give bitwise identical results`, async () => {
      const bs = await backends({ ...numerics, kernels }), rng = new Rng(9);
      // f16 has no blocks: rows of any length (llama-quantize's fallback for 172 columns, say).
      for (const [type, ggml, ks] of [["q8_0", GgmlType.Q8_0, [32, 96, 256]], ["q4_0", GgmlType.Q4_0, [32, 96, 256]], ["f16", GgmlType.F16, [7, 172, 256]]] as const)
        for (const m of [1, 2, 5, 9, 130])
          for (const n of [1, 4, 7, 33, 129, 300])
            for (const k of ks) {
              const bytes = quantize(ggml, randoms(rng, n * k)), a = randoms(rng, m * k), c0 = randoms(rng, m * n);
              for (const accumulate of [false, true]) {
                const results = await Promise.all(bs.map(([, be]) => {
                  const w = be.allocQuantized(type, n, k, bytes), c = buf(be, c0);
                  be.matmulQuantized(c, buf(be, a), w, m, n, k, accumulate);
                  return be.read(c);
                }));
                for (let i = 1; i < bs.length; i++) assertBitwise(results[i], results[0], `${bs[i][0]} threads, ${type} ${m}x${n}x${k} acc=${accumulate}`);
              }
            }
      dispose(bs);
    });

  test(`${kernels}: attentionCached: 1, 2 and 3 threads give bitwise identical results`, async () => {
    const bs = await backends({ kernels }), rng = new Rng(13);
    for (const [heads, kvHeads] of [[1, 1], [4, 4], [4, 2], [6, 3], [5, 1]])
      for (const headDim of [6, 8, 16])
        for (const seq of [1, 3, 7])
          for (const posOffset of [0, 5, 40]) {
            const q = randoms(rng, seq * heads * headDim), kv = (posOffset + seq) * kvHeads * headDim;
            const kc = randoms(rng, kv), vc = randoms(rng, kv);
            const results = await Promise.all(bs.map(([, be]) => {
              const out = be.alloc(seq * heads * headDim);
              be.attentionCached(out, buf(be, q), buf(be, kc), buf(be, vc), seq, heads, kvHeads, headDim, posOffset, 1 / Math.sqrt(headDim));
              return be.read(out);
            }));
            for (let i = 1; i < bs.length; i++) assertBitwise(results[i], results[0], `${bs[i][0]} threads, ${heads}/${kvHeads} heads, hd ${headDim}, seq ${seq}, pos ${posOffset}`);
          }
    dispose(bs);
  });


  test(`${kernels}: training kernels (attention, SwiGLU, RMSNorm, RoPE, cross-entropy, distillation, AdamW, elementwise): 1, 2 and 3 threads give bitwise identical results`, async () => {
    const bs = await backends({ kernels }), rng = new Rng(17);
    /** Run `f` on every backend with fresh copies of `inputs`; compare every buffer afterwards. */
    const same = async (what: string, inputs: Float32Array[], f: (be: Backend, b: Buf[]) => void): Promise<void> => {
      const results = await Promise.all(bs.map(([, be]) => {
        const bufs = inputs.map((x) => buf(be, x));
        f(be, bufs);
        return Promise.all(bufs.map((b) => be.read(b)));
      }));
      for (let i = 1; i < bs.length; i++) results[i].forEach((r, j) => assertBitwise(r, results[0][j], `${bs[i][0]} threads, ${what}, buffer ${j}`));
    };
    for (const [batch, seq, heads, kvHeads, headDim] of [[2, 9, 4, 2, 8], [3, 16, 6, 3, 16], [1, 33, 4, 1, 12], [2, 5, 2, 2, 6]]) {
      const nq = batch * seq * heads * headDim, nkv = batch * seq * kvHeads * headDim, np = batch * heads * seq * seq, sc = 1 / Math.sqrt(headDim);
      const q = randoms(rng, nq), k = randoms(rng, nkv), v = randoms(rng, nkv), dOut = randoms(rng, nq);
      await same(`attention ${batch}x${seq}, ${heads}/${kvHeads} heads, hd ${headDim}`, [new Float32Array(nq), new Float32Array(np), q, k, v], (be, [o, p, qb, kb, vb]) =>
        be.attention(o, p, qb, kb, vb, batch, seq, heads, kvHeads, headDim, sc));
      await same(`attentionBackward ${batch}x${seq}, ${heads}/${kvHeads} heads, hd ${headDim}`, [randoms(rng, nq), randoms(rng, nkv), randoms(rng, nkv), dOut, q, k, v, new Float32Array(np)], (be, [dq, dk, dv, d, qb, kb, vb, p]) => {
        be.attention(be.alloc(nq), p, qb, kb, vb, batch, seq, heads, kvHeads, headDim, sc);
        be.attentionBackward(dq, dk, dv, d, qb, kb, vb, p, batch, seq, heads, kvHeads, headDim, sc);
      });
      const table = Float32Array.from({ length: (seq + 3) * headDim / 2 }, (_, i) => Math.cos(i * 0.37));
      await same(`rope and its backward ${batch}x${seq}x${heads}x${headDim}`, [new Float32Array(nq), q, table, table.map((x) => x * 0.5), randoms(rng, nq)], (be, [o, x, c, s, dx]) => {
        be.rope(o, x, c, s, batch, seq, heads, headDim, 3);
        be.ropeBackward(dx, x, c, s, batch, seq, heads, headDim, 3);
      });
    }
    for (const n of [7, 64, 1001, 40000]) {
      await same(`swiglu and its backward, ${n}`, [new Float32Array(n), randoms(rng, n, 4), randoms(rng, n), randoms(rng, n), randoms(rng, n), randoms(rng, n)], (be, [o, g, u, dg, du, d]) => {
        be.swiglu(o, g, u);
        be.swigluBackward(dg, du, d, g, u);
      });
      await same(`add, axpy, dropoutBackward, ${n}`, [randoms(rng, n), randoms(rng, n), randoms(rng, n), randoms(rng, n)], (be, [a, b, c, d]) => {
        be.add(c, a, b);
        be.axpy(a, b, 0.37);
        be.dropoutBackward(d, a, b);
      });
      await same(`adamw, ${n}`, [randoms(rng, n), randoms(rng, n), randoms(rng, n), Float32Array.from(randoms(rng, n), Math.abs)], (be, [p, g, m, v]) => {
        for (let step = 1; step <= 3; step++) be.adamw(p, g, m, v, 1e-3, 0.9, 0.99, 1e-8, 0.1, step);
      });
    }
    for (const [rows, dim] of [[3, 7], [130, 64], [768, 128], [40, 290]])
      await same(`rmsnorm and its backward ${rows}x${dim}`, [new Float32Array(rows * dim), new Float32Array(rows), randoms(rng, rows * dim), randoms(rng, dim), randoms(rng, rows * dim), randoms(rng, dim), randoms(rng, rows * dim)], (be, [o, r, x, w, dx, dw, d]) => {
        be.rmsnorm(o, r, x, w, rows, dim, 1e-5);
        be.rmsnormBackward(dx, dw, d, x, w, r, rows, dim);
      });
    for (const [rows, vocab] of [[5, 65], [130, 301], [64, 4096]]) {
      const targets = Int32Array.from({ length: rows }, (_, i) => (i % 7 === 3 ? -1 : (i * 31) % vocab));
      const kdTargets = Int32Array.from(targets, (t, i) => (i % 5 === 1 ? KD_ONLY : t));
      const logits = randoms(rng, rows * vocab, 3), teacher = randoms(rng, rows * vocab, 3), dLosses = randoms(rng, rows);
      await same(`crossEntropy and its backward ${rows}x${vocab}`, [new Float32Array(rows), new Float32Array(rows), logits, randoms(rng, rows * vocab), dLosses], (be, [l, e, x, dx, dl]) => {
        be.crossEntropy(l, e, x, targets, rows, vocab);
        be.crossEntropyBackward(dx, x, e, targets, dl, rows, vocab);
      });
      for (const kind of [0, 1, 2] as const) {
        const kd = { kind, alpha: 0.5, temperature: 2, beta: 0.3 };
        await same(`distill (kind ${kind}) and its backward ${rows}x${vocab}`, [new Float32Array(rows), new Float32Array(rows * KD_STATS), logits, teacher, randoms(rng, rows * vocab), dLosses], (be, [l, st, s, t, ds, dl]) => {
          be.distill(l, st, s, t, kdTargets, rows, vocab, kd);
          be.distillBackward(ds, s, t, st, kdTargets, dl, rows, vocab, kd);
        });
      }
    }
    dispose(bs);
  });

  test(`${kernels}: a whole model: logits, greedy and seeded samples identical on 1, 2 and 3 threads`, async () => {
    const bs = await backends({ kernels });
    // The default threshold too, so that the tuned path (some kernels split, some not) is covered.
    bs.push([2, await createThreadedWasmBackend({ threads: 2, kernels })]);
    const runs: { logits: FloatArray[]; greedy: number[]; seeded: number[] }[] = [];
    for (const [, be] of bs) {
      const model = Llama.init(be, config, 21);
      const s = new Session(model);
      const logits = [await s.prefill([1, 7, 30, 200, 5, 9, 11], { allLogits: true })];
      for (const id of [3, 100, 250, 17]) logits.push(await s.decode(id));
      s.dispose();
      const greedy = await collect(generateTokens(model, [1, 2, 3], { temperature: 0, maxTokens: 25 }));
      const seeded = await collect(generateTokens(model, [1, 2, 3], { temperature: 1, maxTokens: 25, seed: 42 }));
      runs.push({ logits, greedy, seeded });
    }
    for (let i = 1; i < runs.length; i++) {
      runs[i].logits.forEach((l, j) => assertBitwise(l, runs[0].logits[j], `${bs[i][0]} threads, logits of step ${j}`));
      assert.deepEqual(runs[i].greedy, runs[0].greedy, `${bs[i][0]} threads, greedy tokens`);
      assert.deepEqual(runs[i].seeded, runs[0].seeded, `${bs[i][0]} threads, seeded tokens`);
    }
    dispose(bs);
  });
}

test("createBackend threads option; dispose stops the pool; a process with an undisposed pool exits", async () => {
  const b = await createBackend("wasm", { threads: 2 });
  assert.equal((b as ThreadedWasmBackend).threads, 2);
  b.dispose!();
  // After dispose the backend still works, on the main thread alone.
  const x = b.alloc(64 * 64), y = b.alloc(64 * 64);
  b.write(x, new Float32Array(64 * 64).fill(0.5));
  b.matmul(y, x, x, 64, 64, 64, false, true, false);
  assert.equal((await b.read(y, 0, 1))[0], 16);
  await assert.rejects(createBackend("wasm", { threads: 0 }), /positive integer/);
  // Workers sleeping in Atomics.wait must not keep Node alive: a child that never disposes exits.
  const index = new URL("../src/backend/index.js", import.meta.url).href;
  const script = `const { createBackend } = await import(${JSON.stringify(index)});
    const b = await createBackend("wasm", { threads: 3 });
    const x = b.alloc(256 * 256); b.matmul(b.alloc(256 * 256), x, x, 256, 256, 256, false, true, false);
    console.log("done");`;
  const dir = mkdtempSync(join(tmpdir(), "bonsai-threads-"));
  writeFileSync(join(dir, "undisposed.mjs"), script);
  const child = spawnSync(process.execPath, [join(dir, "undisposed.mjs")], { timeout: 20000, encoding: "utf8" });
  rmSync(dir, { recursive: true, force: true });
  assert.equal(child.status, 0, child.stderr);
  assert.match(child.stdout, /done/);
});

test("train and distill: the first 20 steps' losses with --threads 2 equal those with --threads 1, bit for bit", () => {
  const dir = mkdtempSync(join(tmpdir(), "bonsai-train-threads-"));
  const corpus = join(dir, "corpus.txt");
  writeFileSync(corpus, "It was the best of times, it was the worst of times, it was the age of wisdom, it was the age of foolishness. ".repeat(60));
  const main = fileURLToPath(new URL("../src/cli/main.js", import.meta.url));
  // Big enough that every kernel of a step splits at the default threshold (the rows of a batch,
  // 8 × 32, times dim 64 and up).
  const shape = ["--layers", "2", "--heads", "4", "--kv-heads", "2", "--dim", "64", "--block-size", "32", "--batch-size", "8", "--iters", "20", "--eval-interval", "20", "--eval-iters", "1", "--log-interval", "20"];
  const run = (command: string, out: string, threads: number, extra: string[] = []): { loss: number; grad_norm: number }[] => {
    const r = spawnSync(process.execPath, [main, command, "--data", corpus, ...shape, ...extra, "--threads", String(threads), "--out", join(dir, out)], { encoding: "utf8", timeout: 120_000 });
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stderr, new RegExp(`backend wasm, (simd|relaxed) kernels, ${threads} thread`), "the first line names the kernels and threads");
    return readFileSync(join(dir, out, "metrics.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l)).filter((m) => "loss" in m).map(({ loss, grad_norm }) => ({ loss, grad_norm }));
  };
  const one = run("train", "t1", 1), two = run("train", "t2", 2);
  assert.equal(one.length, 20);
  assert.deepEqual(two, one);
  const teacher = ["--teacher", join(dir, "t1"), "--kd-loss", "forward-kl", "--temperature", "2"];
  assert.deepEqual(run("distill", "d2", 2, teacher), run("distill", "d1", 1, teacher));
  rmSync(dir, { recursive: true, force: true });
});

const STORIES = "../shared/data/models/stories260K.bin";
test("bonsai generate --threads 1 and 2 print the same text (stories260K, seeded sampling)", { skip: !existsSync(STORIES) && "../shared/data absent" }, () => {
  const main = fileURLToPath(new URL("../src/cli/main.js", import.meta.url));
  const run = (threads: number): string => {
    const args = [main, "generate", "--model", STORIES, "--tokenizer", "../shared/data/models/tok512.bin", "--temperature", "1", "--seed", "5", "--max-tokens", "80", "--threads", String(threads)];
    const r = spawnSync(process.execPath, args, { encoding: "utf8", timeout: 30000 });
    assert.equal(r.status, 0, r.stderr);
    return r.stdout;
  };
  const one = run(1);
  assert.ok(one.length > 20);
  assert.equal(run(2), one);
});
