// The whole model (loss, logits, every parameter gradient) and AdamW + gradient clipping against
// PyTorch reference outputs from scripts/make_fixtures.py (float64), on every backend.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { createBackend } from "../src/backend/index.js";
import { JsBackend } from "../src/backend/js/js-backend.js";
import type { Backend } from "../src/backend/backend.js";
import { Tensor, backward, scope } from "../src/tensor/tensor.js";
import { Llama } from "../src/nn/llama.js";
import { normalizeConfig } from "../src/nn/config.js";
import { AdamW } from "../src/train/adamw.js";
import { RoutingLog } from "../src/nn/moe.js";
import * as op from "../src/tensor/ops.js";
import { modelFromTensors } from "../src/io/checkpoint.js";
import { splitExperts } from "../src/io/hf-experts.js";
import type { NamedTensors } from "../src/format/host-tensor.js";

const fixture = (name: string): any =>
  JSON.parse(readFileSync(`test/fixtures/${name}`, "utf8")); // tests run from the repo root

/** max |a − b| / (1 + max |b|): relative to the reference's scale. */
function relErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let worst = 0, scale = 0;
  for (let i = 0; i < b.length; i++) scale = Math.max(scale, Math.abs(b[i]));
  for (let i = 0; i < b.length; i++) worst = Math.max(worst, Math.abs(a[i] - b[i]));
  return worst / Math.max(scale, 1e-12);
}

const backends: [string, () => Promise<Backend>][] = [
  ["js f64", async () => new JsBackend("f64")],
  ["js f32", async () => new JsBackend("f32")],
  ["wasm", () => createBackend("wasm")],
];

for (const file of ["llama_gqa.json", "llama_mqa.json", "llama_mha.json"]) {
  for (const [bname, make] of backends) {
    test(`${file} matches PyTorch on ${bname}`, async () => {
      const fx = fixture(file);
      const be = await make();
      const config = normalizeConfig(fx.config);
      const params = new Map<string, Tensor>();
      for (const [name, p] of Object.entries<any>(fx.params)) params.set(name, Tensor.from(be, p.shape, p.data, true));
      const model = new Llama(be, config, params);
      const ids = Int32Array.from(fx.ids), targets = Int32Array.from(fx.targets);
      const tol = be.dtype === "f64" ? 1e-9 : 1e-4;
      const [logitValues, lossValue] = await scope(() => {
        const logits = model.forward(ids, fx.batch, fx.seq);
        const logitValues = logits.toArray();
        const loss = model.loss(ids, targets, fx.batch, fx.seq);
        const lossValue = loss.item();
        backward(loss);
        return Promise.all([logitValues, lossValue]);
      });
      assert.ok(relErr(logitValues, fx.logits) < tol, "logits");
      assert.ok(Math.abs(lossValue - fx.loss) / Math.abs(fx.loss) < tol, `loss ${lossValue} vs ${fx.loss}`);
      for (const [name, g] of Object.entries<any>(fx.grads)) {
        const mine = await params.get(name)!.gradArray();
        assert.ok(mine, `no gradient for ${name}`);
        const err = relErr(mine, g.data);
        assert.ok(err < tol, `${name} gradient relative error ${err}`);
      }
      model.dispose();
    });
  }
}

test("AdamW and gradient clipping match torch.optim.AdamW", async () => {
  const fx = fixture("adamw.json");
  for (const [bname, make] of backends) {
    const be = await make();
    const params: [string, Tensor][] = fx.params.map((p: any) => [p.name, Tensor.from(be, p.shape, p.initial, true)]);
    // Two groups as in the fixture: decay follows the parameter's rank (matrices decay, vectors don't).
    for (const p of fx.params) assert.equal(p.weight_decay > 0, p.shape.length >= 2);
    const wd = fx.params.find((p: any) => p.weight_decay > 0).weight_decay;
    const opt = new AdamW(params, { beta1: fx.hyper.betas[0], beta2: fx.hyper.betas[1], eps: fx.hyper.eps, weightDecay: wd });
    for (const s of fx.steps) {
      for (const [name, t] of params) be.write(t.ensureGrad(), s.grads[name]);
      const norm = await opt.clipGradNorm(fx.hyper.max_norm);
      assert.ok(Math.abs(norm - s.total_norm) / s.total_norm < 1e-6, `${bname}: grad norm ${norm} vs ${s.total_norm}`);
      opt.update(s.lr);
      const tol = be.dtype === "f64" ? 1e-10 : 1e-5;
      for (const [name, t] of params) assert.ok(relErr(await t.toArray(), s.params_after[name]) < tol, `${bname}: ${name} after step ${s.step}`);
    }
  }
});

// Mixtral: HF's per-expert tensors stacked on load (io/hf-experts.ts), logits, the three losses
// and every gradient of CE + aux·coef + z·coef against scripts/make_moe_fixtures.py.
for (const [bname, make] of backends) {
  test(`mixtral.json (MoE: 4 experts, top-2, aux and z losses) matches PyTorch on ${bname}`, async () => {
    const fx = fixture("mixtral.json");
    const be = await make();
    const files: NamedTensors = new Map(Object.entries<any>(fx.params).map(([n, p]) => [n, { shape: p.shape, data: Float32Array.from(p.data) }]));
    const model = modelFromTensors(be, fx.config, files);
    const config = model.config;
    assert.equal(config.num_local_experts, 4);
    const ids = Int32Array.from(fx.ids), targets = Int32Array.from(fx.targets);
    const tol = be.dtype === "f64" ? 1e-9 : 1e-4;
    const got = await scope(() => {
      const logits = model.forward(ids, fx.batch, fx.seq).toArray();
      const routing = new RoutingLog(4);
      const ce = model.loss(ids, targets, fx.batch, fx.seq, { routing });
      const router = routing.loss(config);
      const loss = op.add(ce, router.loss);
      backward(loss);
      return Promise.all([logits, ce.item(), router.aux.item(), router.z.item(), loss.item()]);
    });
    const [logits, ce, aux, z, loss] = got;
    assert.ok(relErr(logits, fx.logits) < tol, "logits");
    for (const [what, mine, want] of [["ce", ce, fx.ce], ["aux", aux, fx.aux], ["z", z, fx.z], ["loss", loss, fx.loss]] as const)
      assert.ok(Math.abs(mine - want) / Math.abs(want) < tol, `${what} ${mine} vs ${want}`);
    const grads: NamedTensors = new Map();
    for (const [name, t] of model.parameters()) grads.set(name, { shape: [...t.shape], data: Float32Array.from((await t.gradArray())!) });
    const hfGrads = splitExperts(config, grads);
    for (const [name, g] of Object.entries<any>(fx.grads)) {
      const mine = hfGrads.get(name);
      assert.ok(mine, `no gradient for ${name}`);
      const err = relErr(mine.data, g.data);
      assert.ok(err < Math.max(tol, 1e-6), `${name} gradient relative error ${err}`);
    }
    model.dispose();
  });
}
