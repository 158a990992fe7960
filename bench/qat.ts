// The cost of quantization-aware training per step: a ~3M-parameter Llama trained a few steps on
// random tokens with and without QAT (q4_0 weights; q4_0 weights + int8 activations), on one
// backend, interleaved so that machine load hits all variants alike. Also the fake quantization
// alone. Run: node dist/bench/qat.js [--backend wasm|js] [--kernels auto|simd|relaxed] [--steps N]
import { parseArgs } from "node:util";
import { createBackend } from "../src/backend/index.js";
import type { KernelChoice } from "../src/backend/wasm/kernel-flavour.js";
import { Llama } from "../src/nn/llama.js";
import { Trainer, type TrainOptions } from "../src/train/trainer.js";
import { applyQat, type QatSetting } from "../src/train/qat.js";
import { fakeQuantize } from "../src/tensor/ops.js";
import { noGrad, scope } from "../src/tensor/tensor.js";
import type { LlamaConfig } from "../src/nn/config.js";
import { Rng } from "../src/util/rng.js";
import { benchHeader } from "./machine.js";

const { values } = parseArgs({ options: { backend: { type: "string", default: "wasm" }, kernels: { type: "string", default: "auto" }, steps: { type: "string", default: "6" } } });
const kernels = values.kernels as KernelChoice;
console.log(await benchHeader(kernels));
const be = await createBackend(values.backend!, { kernels });
const steps = Number(values.steps);

const config: LlamaConfig = {
  vocab_size: 4096, hidden_size: 256, intermediate_size: 704, num_hidden_layers: 4, num_attention_heads: 8,
  num_key_value_heads: 4, max_position_embeddings: 128, rms_norm_eps: 1e-5, rope_theta: 10000, tie_word_embeddings: true,
};
const opts: TrainOptions = {
  batchSize: 8, blockSize: 128, iters: 1000, lr: 1e-3, minLr: 1e-4, warmup: 10, weightDecay: 0.1,
  beta1: 0.9, beta2: 0.99, gradClip: 1, gradAccum: 1, evalInterval: 1000, evalIters: 1, seed: 1,
};
const rng = new Rng(5);
const tokens = Int32Array.from({ length: 100_000 }, () => rng.int(config.vocab_size));
const data = { train: tokens.subarray(0, 90_000), val: tokens.subarray(90_000) };

const variants: [string, QatSetting | null][] = [["float", null], ["qat q4_0", { weights: "q4_0" }], ["qat q4_0 + int8 act", { weights: "q4_0", activations: "int8" }]];
const trainers = variants.map(([, s]) => {
  const m = Llama.init(be, config, 1);
  applyQat(m, s);
  return new Trainer(m, opts, data);
});
console.log(`${be.name}: ${(trainers[0].model.numParameters() / 1e6).toFixed(2)}M parameters, batch ${opts.batchSize}×${opts.blockSize}`);
// Wall time and CPU time (the backend is single-threaded: CPU time is the work, less sensitive to a busy machine).
const cpu = (): number => { const u = process.cpuUsage(); return (u.user + u.system) / 1000; };
const wall = variants.map(() => [] as number[]), cpuMs = variants.map(() => [] as number[]);
for (let i = 0; i <= steps; i++)
  for (const [v, t] of trainers.entries()) {
    const c0 = cpu();
    const s = await t.step(i);
    if (i > 0) { wall[v].push(s.seconds * 1000); cpuMs[v].push(cpu() - c0); } // step 0 warms up
  }
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[xs.length >> 1];
variants.forEach(([name], v) => console.log(`${name.padEnd(22)} ${median(wall[v]).toFixed(0)} ms/step wall, ${median(cpuMs[v]).toFixed(0)} ms CPU (medians of ${steps})`));

// Fake quantization of every weight alone (what a QAT step adds in the forward pass).
const model = trainers[0].model;
for (const type of ["q4_0", "q8_0"] as const) {
  const t0 = performance.now(), c0 = cpu();
  for (let r = 0; r < 5; r++) noGrad(() => scope(() => { for (const [, p] of model.parameters()) if (p.shape.length === 2) fakeQuantize(p, type); }));
  console.log(`fake-quantizing all matrices as ${type}: ${((performance.now() - t0) / 5).toFixed(1)} ms wall, ${((cpu() - c0) / 5).toFixed(1)} ms CPU`);
}
