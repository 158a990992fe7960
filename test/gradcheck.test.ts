// Every op's backward against central finite differences, on the float64 reference backend.
import { test } from "node:test";
import assert from "node:assert/strict";
import { JsBackend } from "../src/backend/js/js-backend.js";
import { Tensor, backward, scope } from "../src/tensor/tensor.js";
import * as op from "../src/tensor/ops.js";
import * as moe from "../src/tensor/moe-ops.js";
import { Llama, ropeTables } from "../src/nn/llama.js";
import { RoutingLog } from "../src/nn/moe.js";
import { Rng } from "../src/util/rng.js";
import type { LlamaConfig } from "../src/nn/config.js";

const be = new JsBackend("f64");
const rng = new Rng(42);

function randn(n: number, std = 1): number[] {
  return Array.from({ length: n }, () => std * rng.normal());
}

function param(shape: number[], std = 1): Tensor {
  return Tensor.from(be, shape, randn(shape.reduce((a, b) => a * b, 1), std), true);
}

/**
 * Check d(Σ rᵢ·f(inputs)ᵢ)/d(input) for every input against central differences, where r is a
 * fixed random projection making the output a scalar.
 */
async function gradcheck(name: string, inputs: Tensor[], f: () => Tensor, eps = 1e-6, tol = 1e-6): Promise<void> {
  const probe = scope(() => f().size);
  const r = randn(probe);
  const objective = (): Promise<number> => scope(() => op.weightedSum(f(), r).item());
  for (const t of inputs) t.zeroGrad();
  scope(() => backward(op.weightedSum(f(), r)));
  for (const [k, t] of inputs.entries()) {
    const analytic = (await t.gradArray()) ?? new Float64Array(t.size);
    const values = await t.toArray();
    let worst = 0;
    for (let i = 0; i < t.size; i++) {
      const orig = values[i];
      be.write(t.data, [orig + eps], i);
      const up = await objective();
      be.write(t.data, [orig - eps], i);
      const down = await objective();
      be.write(t.data, [orig], i);
      const numeric = (up - down) / (2 * eps);
      const err = Math.abs(numeric - analytic[i]) / (1 + Math.abs(numeric));
      worst = Math.max(worst, err);
    }
    assert.ok(worst < tol, `${name}: input ${k} gradient differs from finite differences by ${worst}`);
  }
}

test("linear", async () => {
  const x = param([2, 3, 5]), w = param([4, 5]);
  await gradcheck("linear", [x, w], () => op.linear(x, w));
});

test("embedding", async () => {
  const table = param([7, 3]);
  const ids = new Int32Array([1, 0, 6, 1, 3]);
  await gradcheck("embedding", [table], () => op.embedding(table, ids, [5]));
});

test("rmsnorm", async () => {
  const x = param([4, 6]), w = param([6]);
  await gradcheck("rmsnorm", [x, w], () => op.rmsnorm(x, w, 1e-5));
});

test("rope (rotate half)", async () => {
  const [B, T, H, D] = [2, 3, 2, 4];
  const tables = ropeTables(D, 8, 10000);
  const cos = Tensor.from(be, [8, D / 2], tables.cos), sin = Tensor.from(be, [8, D / 2], tables.sin);
  const x = param([B, T, H * D]);
  await gradcheck("rope", [x], () => op.rope(x, cos, sin, B, T, H, D, 0));
  await gradcheck("rope offset", [x], () => op.rope(x, cos, sin, B, T, H, D, 4));
  // position 0 is the identity; rotation preserves each pair's norm
  const y = await scope(() => op.rope(x, cos, sin, B, T, H, D, 0).toArray());
  const xv = await x.toArray();
  for (let i = 0; i < H * D; i++) assert.ok(Math.abs(y[i] - xv[i]) < 1e-12);
});

for (const [H, KVH] of [[4, 4], [4, 2], [4, 1]]) {
  test(`attention heads ${H} kv ${KVH}`, async () => {
    const [B, T, D] = [2, 4, 3];
    const q = param([B, T, H * D]), k = param([B, T, KVH * D]), v = param([B, T, KVH * D]);
    await gradcheck("attention", [q, k, v], () => op.attention(q, k, v, { batch: B, seq: T, heads: H, kvHeads: KVH, headDim: D }));
  });
}

test("attention is causal", async () => {
  const [B, T, H, D] = [1, 4, 2, 3];
  const q = param([B, T, H * D]), k = param([B, T, H * D]), v = param([B, T, H * D]);
  const s = { batch: B, seq: T, heads: H, kvHeads: H, headDim: D };
  const before = await scope(() => op.attention(q, k, v, s).toArray());
  be.write(v.data, randn(H * D), (T - 1) * H * D); // change only the last position's values
  const after = await scope(() => op.attention(q, k, v, s).toArray());
  for (let i = 0; i < (T - 1) * H * D; i++) assert.equal(after[i], before[i]);
});

test("swiglu", async () => {
  const g = param([3, 5]), u = param([3, 5]);
  await gradcheck("swiglu", [g, u], () => op.swiglu(g, u));
});

test("add", async () => {
  const a = param([3, 4]), b = param([3, 4]);
  await gradcheck("add", [a, b], () => op.add(a, b));
});

test("dropout", async () => {
  const x = param([50]);
  await gradcheck("dropout", [x], () => op.dropout(x, 0.3, 1234));
  const y = await scope(() => op.dropout(x, 0.3, 1234).toArray());
  const xv = await x.toArray();
  let dropped = 0;
  for (let i = 0; i < 50; i++) {
    if (y[i] === 0) dropped++;
    else assert.ok(Math.abs(y[i] - xv[i] / 0.7) < 1e-12);
  }
  assert.ok(dropped > 5 && dropped < 30, `dropped ${dropped} of 50 at p = 0.3`);
});

test("cross-entropy with ignored rows", async () => {
  const logits = param([4, 6]);
  const targets = new Int32Array([2, -1, 5, 0]);
  await gradcheck("crossEntropy", [logits], () => op.crossEntropy(logits, targets));
  await gradcheck("meanLoss", [logits], () => op.meanLoss(op.crossEntropy(logits, targets), targets));
  const l = await scope(() => op.crossEntropy(logits, targets).toArray());
  assert.equal(l[1], 0);
});

test("softmax and logsumexp", async () => {
  const x = param([3, 5]);
  await gradcheck("softmax", [x], () => op.softmax(x));
  await gradcheck("logSumExp", [x], () => op.logSumExp(x));
});

test("top-k routing: renormalised weights of the chosen experts", async () => {
  const logits = param([6, 5]);
  for (const k of [1, 2, 5]) await gradcheck(`topKRouting k=${k}`, [logits], () => moe.topKRouting(op.softmax(logits), k).weights);
  const { weights, ids } = moe.topKRouting(op.softmax(logits), 2);
  const [w, id, p] = await Promise.all([weights.toArray(), ids.toArray(), op.softmax(logits).toArray()]);
  for (let t = 0; t < 6; t++) {
    const row = Array.from(p.subarray(t * 5, t * 5 + 5));
    const order = row.map((v, i) => [v, i]).sort((a, b) => b[0] - a[0] || a[1] - b[1]).map(([, i]) => i);
    assert.deepEqual([id[2 * t], id[2 * t + 1]], order.slice(0, 2));
    const s = row[order[0]] + row[order[1]];
    assert.ok(Math.abs(w[2 * t] - row[order[0]] / s) < 1e-12 && Math.abs(w[2 * t] + w[2 * t + 1] - 1) < 1e-12);
  }
});

test("expert projections, shared and per-slot inputs, and the weighted combine", async () => {
  const T = 4, E = 3, k = 2, d = 5, f = 6;
  const logits = param([T, E]), x = param([T, d]), w1 = param([E, f, d], 0.5), w2 = param([E, d, f], 0.5);
  const route = () => moe.topKRouting(op.softmax(logits), k);
  await gradcheck("experts (shared input)", [x, w1], () => moe.experts(x, w1, route(), E));
  const slots = param([T * k, f]);
  await gradcheck("experts (input per slot)", [slots, w2], () => moe.experts(slots, w2, route(), E));
  const outs = param([T * k, d]);
  await gradcheck("combineExperts", [outs, logits], () => moe.combineExperts(outs, route()));
  await gradcheck("a whole MoE FFN", [x, logits, w1, w2], () => {
    const r = route();
    return moe.combineExperts(moe.experts(op.swiglu(moe.experts(x, w1, r, E), moe.experts(x, w1, r, E)), w2, r, E), r);
  });
});

test("load-balancing and z losses", async () => {
  const E = 4, a = param([5, E]), b = param([3, E]);
  const counts = () => {
    const c = moe.expertCounts(moe.topKRouting(op.softmax(a), 2).ids, E);
    be.moeCounts(c.data, moe.topKRouting(op.softmax(b), 2).ids.data, 3 * 2, E);
    return c;
  };
  await gradcheck("loadBalancingLoss", [a, b], () => moe.loadBalancingLoss([op.softmax(a), op.softmax(b)], counts()));
  await gradcheck("z-loss", [a, b], () => moe.scaledSumOfSquares([op.logSumExp(a), op.logSumExp(b)], 1 / 8));
  // The definition: E · Σᵢ fᵢ·Pᵢ over both layers' rows together.
  const [pa, pb, c, aux] = await Promise.all([op.softmax(a).toArray(), op.softmax(b).toArray(), counts().toArray(), moe.loadBalancingLoss([op.softmax(a), op.softmax(b)], counts()).item()]);
  let want = 0;
  for (let i = 0; i < E; i++) {
    let P = 0;
    for (let t = 0; t < 5; t++) P += pa[t * E + i];
    for (let t = 0; t < 3; t++) P += pb[t * E + i];
    want += (c[i] / 8) * (P / 8);
  }
  assert.ok(Math.abs(aux - E * want) < 1e-12, `aux ${aux} vs ${E * want}`);
  assert.equal(Array.from(c).reduce((s, v) => s + v, 0), 16);
});

test("whole GQA model, tied and untied", async () => {
  for (const tie of [false, true]) {
    const config: LlamaConfig = {
      vocab_size: 11, hidden_size: 8, intermediate_size: 12, num_hidden_layers: 2, num_attention_heads: 4,
      num_key_value_heads: 2, max_position_embeddings: 8, rms_norm_eps: 1e-5, rope_theta: 10000, tie_word_embeddings: tie,
    };
    const model = Llama.init(be, config, 7);
    for (const [, t] of model.parameters()) be.write(t.data, randn(t.size, 0.3));
    const ids = new Int32Array([1, 4, 2, 9, 3, 3, 0, 10]);
    const targets = new Int32Array([4, 2, 9, 3, 3, 0, 10, 5]);
    const ps = model.parameters().map(([, t]) => t);
    await gradcheck(`model tie=${tie}`, ps, () => op.crossEntropy(model.forward(ids, 2, 4), targets), 1e-6, 1e-5);
  }
});

test("whole MoE model with its router losses (E=4, k=2)", async () => {
  const config: LlamaConfig = {
    vocab_size: 11, hidden_size: 8, intermediate_size: 6, num_hidden_layers: 2, num_attention_heads: 4,
    num_key_value_heads: 2, max_position_embeddings: 8, rms_norm_eps: 1e-5, rope_theta: 10000, tie_word_embeddings: false,
    num_local_experts: 4, num_experts_per_tok: 2, router_aux_loss_coef: 0.3, router_z_loss_coef: 0.2,
  };
  const model = Llama.init(be, config, 7);
  for (const [, t] of model.parameters()) be.write(t.data, randn(t.size, 0.3));
  const ids = new Int32Array([1, 4, 2, 9, 3, 3, 0, 10]);
  const targets = new Int32Array([4, 2, 9, 3, 3, 0, 10, 5]);
  const ps = model.parameters().map(([, t]) => t);
  await gradcheck("MoE model", ps, () => {
    const routing = new RoutingLog(4);
    const loss = model.loss(ids, targets, 2, 4, { routing });
    return op.add(loss, routing.loss(config).loss);
  }, 1e-6, 1e-5);
});
