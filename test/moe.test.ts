// Sparse mixture of experts through the life cycle: E = 1 is the dense model, upcycling keeps the
// dense function, a degenerate router trains, the trainer logs the router terms, and `bonsai train`
// trains, resumes exactly, upcycles and refuses bad settings. (Kernels: moe-kernels / webgpu-moe;
// the math against PyTorch: torch-reference's mixtral.json; GGUF: gguf-moe.)
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createBackend } from "../src/backend/index.js";
import { Tensor, noGrad, scope } from "../src/tensor/tensor.js";
import { ExpertCache } from "../src/nn/expert-cache.js";
import { Llama } from "../src/nn/llama.js";
import { parameterNames, type LlamaConfig } from "../src/nn/config.js";
import { upcycle } from "../src/nn/upcycle.js";
import { Trainer, type StepEvent } from "../src/train/trainer.js";
import { assertOneLineError, bonsai } from "./cli-helpers.js";
import { relErr } from "./kernel-helpers.js";

const be = await createBackend("wasm");
const dense: LlamaConfig = {
  vocab_size: 19, hidden_size: 32, intermediate_size: 64, num_hidden_layers: 2, num_attention_heads: 4,
  num_key_value_heads: 2, max_position_embeddings: 32, rms_norm_eps: 1e-5, rope_theta: 10000, tie_word_embeddings: false,
};
const moe = (E: number, k: number, extra: Partial<LlamaConfig> = {}): LlamaConfig => ({ ...dense, num_local_experts: E, num_experts_per_tok: k, router_aux_loss_coef: 0.01, router_z_loss_coef: 0.001, ...extra });
const ids = Int32Array.from({ length: 24 }, (_, i) => (i * 7 + 3) % 19);
const logitsOf = (m: Llama, n = 2, s = 12): Promise<Float32Array | Float64Array> => noGrad(() => scope(() => m.forward(ids, n, s).toArray()));

test("num_local_experts = 1 is the dense model: same parameters, bit-equal logits", async () => {
  assert.deepEqual(parameterNames(moe(1, 1)), parameterNames(dense));
  const a = Llama.init(be, dense, 3), b = Llama.init(be, moe(1, 1), 3);
  assert.deepEqual(await logitsOf(b), await logitsOf(a));
  a.dispose();
  b.dispose();
});

test("upcycling copies the dense FFN into every expert: the MoE model computes the dense function", async () => {
  const base = Llama.init(be, dense, 5);
  const want = await logitsOf(base);
  for (const [experts, k, routerNoise] of [[4, 2, 0], [8, 2, 0.02], [4, 1, 0.5]]) {
    const up = await upcycle(base, { experts, expertsPerToken: k, auxLossCoef: 0.01, zLossCoef: 0.001, routerNoise, seed: 1 });
    assert.equal(up.config.num_local_experts, experts);
    const err = relErr(await logitsOf(up), want);
    assert.ok(err < 1e-5, `E=${experts} k=${k} noise ${routerNoise}: logits differ by ${err}`);
    up.dispose();
  }
  await assert.rejects(upcycle(base, { experts: 2, expertsPerToken: 3, auxLossCoef: 0, zLossCoef: 0, routerNoise: 0, seed: 1 }), /num_experts_per_tok must be an integer in \[1, num_local_experts = 2\]/);
  base.dispose();
});

test("a router that sends every token to one expert trains without stalling; the trainer logs aux, z and the load", async () => {
  // A zero router ties every expert: top-1 by lower index picks expert 0 for every token.
  const model = Llama.init(be, moe(4, 1), 9);
  for (const [name, t] of model.parameters()) if (name.endsWith("block_sparse_moe.gate.weight")) be.fill(t.data, 0);
  const tokens = Int32Array.from({ length: 400 }, (_, i) => (i * i + 3 * i) % 19);
  const opts = { batchSize: 4, blockSize: 12, iters: 30, lr: 3e-3, minLr: 3e-4, warmup: 2, weightDecay: 0.1, beta1: 0.9, beta2: 0.99, gradClip: 1, gradAccum: 2, evalInterval: 1000, evalIters: 1, seed: 4 };
  const trainer = new Trainer(model, opts, { train: tokens, val: tokens });
  const steps: StepEvent[] = [];
  for (let i = 0; i < opts.iters; i++) steps.push(await trainer.step(i));
  const first = steps[0].router!;
  assert.equal(first.load.length, 2);
  for (const L of first.load) assert.deepEqual(L.fractions, [1, 0, 0, 0]);
  // Everything on expert 0 with p₀ = 1/4: aux = E · f₀ · P₀ = 4 · 1 · 1/4 = 1; z = ln(4)².
  assert.ok(Math.abs(first.aux - 1) < 1e-6, `aux ${first.aux}`);
  assert.ok(Math.abs(first.z - Math.log(4) ** 2) < 1e-5, `z ${first.z}`);
  assert.ok(steps.every((s) => Number.isFinite(s.loss) && s.router!.load.every((L) => Math.abs(L.fractions.reduce((a, b) => a + b, 0) - 1) < 1e-9)));
  assert.ok(steps[opts.iters - 1].loss < steps[0].loss, `loss ${steps[0].loss} → ${steps[opts.iters - 1].loss}`);
  // The load-balancing gradient moves tokens off expert 0.
  assert.ok(steps[opts.iters - 1].router!.load.some((L) => L.fractions[0] < 1), "the router learned to route elsewhere");
  model.dispose();
});

const tmp = mkdtempSync(join(tmpdir(), "bonsai-moe-"));
const corpus = join(tmp, "corpus.txt");
writeFileSync(corpus, "the cat sat on the mat. the dog ran far. a cat and a dog sat on a mat.\n".repeat(40));
const tiny = ["--data", corpus, "--layers", "2", "--heads", "2", "--dim", "32", "--block-size", "16", "--batch-size", "4", "--eval-iters", "2", "--eval-interval", "3", "--decay-iters", "6", "--warmup", "1", "--threads", "1"];
const lines = (dir: string): Record<string, unknown>[] => readFileSync(join(dir, "metrics.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l));

test("bonsai train --experts: Mixtral checkpoint, router metrics, exact resume, upcycling and bad settings", () => {
  const full = join(tmp, "full"), cut = join(tmp, "cut");
  const flags = [...tiny, "--experts", "4", "--experts-per-token", "2", "--aux-loss-coef", "0.02", "--z-loss-coef", "0.001"];
  let r = bonsai("train", ...flags, "--iters", "6", "--out", full);
  assert.equal(r.code, 0, r.stderr);
  const config = JSON.parse(readFileSync(join(full, "config.json"), "utf8"));
  assert.deepEqual(config.architectures, ["MixtralForCausalLM"]);
  assert.equal(config.num_local_experts, 4);
  assert.equal(config.router_aux_loss_coef, 0.02);
  const steps = lines(full).filter((m) => "loss" in m);
  assert.equal(steps.length, 6);
  for (const m of steps) {
    assert.equal(typeof m.router_aux_loss, "number");
    assert.equal(typeof m.router_z_loss, "number");
    const load = m.expert_load as { layer: number; fractions: number[]; min: number; max: number }[];
    assert.deepEqual(load.map((L) => L.layer), [0, 1]);
    for (const L of load) assert.ok(L.fractions.length === 4 && L.min <= L.max && Math.abs(L.fractions.reduce((a, b) => a + b, 0) - 1) < 1e-3);
  }
  // 3 steps, then --resume to 6: the same weights as the uninterrupted run.
  r = bonsai("train", ...flags, "--iters", "3", "--out", cut);
  assert.equal(r.code, 0, r.stderr);
  r = bonsai("train", "--out", cut, "--resume", "--iters", "6");
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(readFileSync(join(cut, "model.safetensors")), readFileSync(join(full, "model.safetensors")), "resumed == uninterrupted");
  // generate --stats reports each layer's expert usage over every routed token.
  r = bonsai("generate", "--model", full, "--prompt", "the cat", "--max-tokens", "8", "--temperature", "0", "--stats", "--threads", "1");
  assert.equal(r.code, 0, r.stderr);
  const usage = JSON.parse(r.stderr.trim().split("\n").at(-1)!).expert_usage as { layer: number; slots: number; fractions: number[] }[];
  assert.deepEqual(usage.map((L) => L.layer), [0, 1]);
  for (const L of usage) {
    assert.equal(L.slots % 2, 0, "k = 2 slots per token");
    assert.ok(L.slots >= 2 * 8 && Math.abs(L.fractions.reduce((a, b) => a + b, 0) - 1) < 1e-3);
  }
  // --expert-cache-mb: 2 of the 4 experts resident per layer, the same greedy text and loss as all resident.
  const expertMiB = (2.5 * config.num_hidden_layers * 3 * config.hidden_size * config.intermediate_size * 4) / 2 ** 20;
  const greedy = ["generate", "--model", full, "--prompt", "the cat", "--max-tokens", "8", "--temperature", "0", "--threads", "1"];
  const [all, paged] = [bonsai(...greedy), bonsai(...greedy, "--expert-cache-mb", expertMiB.toFixed(4), "--stats")];
  assert.equal(paged.code, 0, paged.stderr);
  assert.equal(paged.stdout, all.stdout);
  const cache = JSON.parse(paged.stderr.trim().split("\n").at(-1)!).expert_cache as { slots: number; experts: number; hits: number; misses: number; hit_rate: number };
  assert.equal(cache.slots, 2);
  assert.equal(cache.experts, 4);
  assert.ok(cache.misses >= 4 && cache.hit_rate === Number((cache.hits / (cache.hits + cache.misses)).toFixed(4)), JSON.stringify(cache));
  const evalOf = (...extra: string[]): string => {
    const e = bonsai("eval", "--model", full, "--data", corpus, "--threads", "1", ...extra);
    assert.equal(e.code, 0, e.stderr);
    return e.stdout;
  };
  assert.equal(evalOf("--expert-cache-mb", expertMiB.toFixed(4)), evalOf());
  assertOneLineError(bonsai(...greedy, "--expert-cache-mb", "0"), /--expert-cache-mb/);
  assertOneLineError(bonsai(...greedy, "--expert-cache-mb", "0.001"), /a token needs 2: give at least/);
  // Upcycling a dense checkpoint: the first evaluation equals the dense model's last one.
  const denseDir = join(tmp, "dense"), upDir = join(tmp, "up");
  r = bonsai("train", ...tiny, "--iters", "3", "--out", denseDir);
  assert.equal(r.code, 0, r.stderr);
  // A learning rate of 1e-12 leaves the upcycled weights as they started (to float rounding).
  r = bonsai("train", "--data", corpus, "--init", denseDir, "--experts", "4", "--router-noise", "0.01", "--iters", "1", "--lr", "1e-12", "--min-lr", "0", "--warmup", "0", "--eval-iters", "1", "--batch-size", "4", "--block-size", "16", "--threads", "1", "--out", upDir);
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(JSON.parse(readFileSync(join(upDir, "config.json"), "utf8")).architectures, ["MixtralForCausalLM"]);
  const evalLoss = (dir: string): number => {
    const e = bonsai("eval", "--model", dir, "--data", corpus, "--threads", "1");
    assert.equal(e.code, 0, e.stderr);
    return Number(/loss ([\d.]+)/.exec(e.stdout + e.stderr)![1]);
  };
  const [lossDense, lossUp] = [evalLoss(denseDir), evalLoss(upDir)];
  assert.ok(Math.abs(lossUp - lossDense) < 1.5e-4, `upcycled ${lossUp} vs dense ${lossDense}`);
  // Bad settings: one line each.
  assertOneLineError(bonsai("train", ...tiny, "--experts", "2", "--experts-per-token", "3", "--out", join(tmp, "bad1")), /--experts-per-token 3 exceeds --experts 2/);
  assertOneLineError(bonsai("train", ...tiny, "--experts", "4", "--experts-per-token", "0", "--out", join(tmp, "bad2")), /experts-per-token/);
  assertOneLineError(bonsai("train", ...tiny, "--experts-per-token", "2", "--out", join(tmp, "bad3")), /--experts-per-token needs --experts/);
  assertOneLineError(bonsai("train", "--data", corpus, "--init", full, "--experts", "8", "--out", join(tmp, "bad4")), /already has 4 experts/);
});


test("bonsai distill --experts: a MoE student of a dense teacher with QAT and a curriculum; its Q8_0 GGUF holds the weights it trained with", () => {
  const teacher = join(tmp, "teacher"), student = join(tmp, "student"), gguf = join(tmp, "student-q8_0.gguf"), tok = join(tmp, "bpe.json");
  // A GGUF needs a tokenizer with a GGUF form: byte-level BPE (the student takes the teacher's).
  let r = bonsai("tokenizer", "train", "--data", corpus, "--vocab-size", "280", "--type", "bytelevel-bpe", "--out", tok);
  assert.equal(r.code, 0, r.stderr);
  r = bonsai("train", ...tiny, "--tokenizer", tok, "--iters", "3", "--out", teacher);
  assert.equal(r.code, 0, r.stderr);
  r = bonsai("distill", "--teacher", teacher, ...tiny, "--iters", "4", "--experts", "4", "--experts-per-token", "2", "--qat", "q8_0",
    "--curriculum", "length", "--documents", "lines", "--pacing", "linear", "--out", student);
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(JSON.parse(readFileSync(join(student, "config.json"), "utf8")).architectures, ["MixtralForCausalLM"]);
  const steps = lines(student).filter((m) => "loss" in m);
  assert.equal(steps.length, 4);
  assert.ok(steps.every((m) => typeof m.router_aux_loss === "number" && typeof m.router_z_loss === "number" && Array.isArray(m.expert_load)));
  r = bonsai("export", "--model", student, "--format", "gguf", "--quant", "q8_0", "--out", gguf);
  assert.equal(r.code, 0, r.stderr);
  // The checkpoint runs with its experts fake-quantized (qat.json); the GGUF holds those values as Q8_0 blocks.
  const evalOf = (model: string): string => {
    const e = bonsai("eval", "--model", model, "--data", corpus, "--threads", "1");
    assert.equal(e.code, 0, e.stderr);
    return e.stdout;
  };
  assert.equal(evalOf(gguf), evalOf(student));
});

test("fusion stacks each expert's gate and up rows into one expert GEMM: the same logits", async () => {
  const model = Llama.init(be, moe(4, 2), 9);
  const want = await logitsOf(model);
  model.fuse();
  assert.ok(!model.params.has("model.layers.0.block_sparse_moe.experts.w1.weight") && model.params.has("model.layers.0.block_sparse_moe.experts.w2.weight"), "gate and up fused");
  assert.ok(relErr(await logitsOf(model), want) < 1e-6);
  model.dispose();
});

test("paged experts (an LRU of slots filled on demand) give the resident model's logits, prefill and decode", async () => {
  const config = moe(8, 2);
  const full = Llama.init(be, config, 21);
  const host = new Map<string, Float32Array>();
  for (const [name, t] of full.parameters()) host.set(name, Float32Array.from(await t.toArray()));
  for (const slots of [2, 3, 8]) {
    const caches = new Map<number, ExpertCache>();
    const params = new Map<string, Tensor>();
    for (const [name, t] of full.parameters()) if (!/experts\.w[123]/.test(name)) params.set(name, t);
    for (let l = 0; l < config.num_hidden_layers; l++) {
      const pre = `model.layers.${l}.block_sparse_moe.experts.`;
      const [f, d] = [config.intermediate_size, config.hidden_size];
      const weights = { gate: Tensor.zeros(be, [slots, f, d]), up: Tensor.zeros(be, [slots, f, d]), down: Tensor.zeros(be, [slots, d, f]) };
      const names = { gate: pre + "w1.weight", up: pre + "w3.weight", down: pre + "w2.weight" } as const;
      caches.set(l, new ExpertCache(8, slots, weights, (e, s) => {
        for (const kind of ["gate", "up", "down"] as const) be.write(weights[kind].data, host.get(names[kind])!.subarray(e * f * d, (e + 1) * f * d), s * f * d);
      }));
    }
    const paged = new Llama(be, config, params, new Map(), caches);
    const err = relErr(await logitsOf(paged, 1, 24), await logitsOf(full, 1, 24));
    assert.ok(err < 1e-5, `slots ${slots}: prefill logits differ by ${err}`);
    const counts = caches.get(0)!.counts;
    assert.ok(counts.misses >= Math.min(8, slots) && (slots === 8 ? counts.misses <= 8 : true), `slots ${slots}: ${counts.misses} misses`);
    // Decode token by token through a session: each step needs k = 2 resident experts per layer.
    const { Session } = await import("../src/runtime/session.js");
    const [a, b] = [new Session(paged), new Session(full)];
    for (const id of ids.subarray(0, 6)) assert.ok(relErr(await a.decode(id), await b.decode(id)) < 1e-5, `slots ${slots}: decode`);
    a.dispose?.();
    b.dispose?.();
    if (slots === 8) assert.ok(caches.get(1)!.counts.misses <= 8, "with every expert resident nothing is read twice");
    for (const c of caches.values()) c.dispose();
  }
  full.dispose();
});
