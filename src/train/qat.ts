// Quantization-aware training. The model keeps float "latent" weights, which AdamW updates; every
// forward pass (training, evaluation and inference alike) uses them fake-quantized exactly as
// `llamaToGguf` will quantize them, so the trained network is the network the GGUF file holds:
// dequantizing the exported blocks gives bit-for-bit the weights the model ran with. Gradients
// pass the rounding straight through (ops.fakeQuantize). Optionally the inputs of every
// quantized projection are fake-quantized to int8 per token (the 8-bit-activation / 4-bit-weight
// scheme; ops.fakeQuantizeActivations).
//
// Which tensors: those the exporter quantizes, decided by its own rule (gguf-llama.ts
// ggufTensorType): every matrix, embedding and LM head included; norm gains stay float.
import type { BlockQuantType } from "../backend/backend.js";
import { GgmlType } from "../format/ggml-quants.js";
import { ggufTensorType } from "../io/gguf-llama.js";
import type { CheckpointFile } from "../io/checkpoint.js";
import { type LlamaConfig, parameterNames, parameterShape } from "../nn/config.js";
import type { FakeQuantization, Llama } from "../nn/llama.js";
import * as op from "../tensor/ops.js";
import { Tensor, isGradEnabled, noGrad, unscoped } from "../tensor/tensor.js";

export type QatWeights = BlockQuantType; // "q8_0" | "q4_0": the GGUF --quant the model will be exported with
export type QatActivations = "int8";

export interface QatSetting {
  weights: QatWeights;
  /** Fake-quantize the inputs of the quantized projections too (per-token int8). */
  activations?: QatActivations;
}

export const qatWeightTypes: readonly QatWeights[] = ["q8_0", "q4_0"];
export const qatActivationTypes: readonly QatActivations[] = ["int8"];

/** The file beside a checkpoint that records its QAT setting (absent: no QAT). */
export const QAT_FILE = "qat.json";

/** A QAT setting from JSON (a checkpoint's qat.json) or flags, validated: one-line errors. */
export function parseQatSetting(raw: unknown): QatSetting {
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) throw new Error("qat: the setting must be an object like {\"weights\": \"q4_0\"}");
  const { weights, activations, ...rest } = raw as Record<string, unknown>;
  const extra = Object.keys(rest);
  if (extra.length > 0) throw new Error(`qat: unknown field ${extra[0]} (fields: weights, activations)`);
  if (!qatWeightTypes.includes(weights as QatWeights)) throw new Error(`qat: weights must be ${qatWeightTypes.join(" or ")} (got ${JSON.stringify(weights) ?? "nothing"})`);
  if (activations !== undefined && !qatActivationTypes.includes(activations as QatActivations))
    throw new Error(`qat: activations must be ${qatActivationTypes.join(" or ")} or absent (got ${JSON.stringify(activations)})`);
  return activations === undefined ? { weights: weights as QatWeights } : { weights: weights as QatWeights, activations: activations as QatActivations };
}

/**
 * The parameters fake-quantized under `weights`: those the GGUF export with --quant `weights`
 * stores as blocks. A matrix whose rows are not whole blocks (the export would fall back to F16)
 * is refused: QAT for a type it would not be stored in is meaningless.
 */
export function qatTensorNames(config: LlamaConfig, weights: QatWeights): string[] {
  const want = weights === "q8_0" ? GgmlType.Q8_0 : GgmlType.Q4_0;
  const names: string[] = [];
  for (const name of parameterNames(config)) {
    const shape = parameterShape(config, name);
    // The export's own rule: norms and MoE routers stay F32.
    const type = ggufTensorType(weights, shape, name);
    if (type === want) names.push(name);
    else if (type !== GgmlType.F32) throw new Error(`qat: ${name} has rows of ${shape[shape.length - 1]} numbers, not whole ${weights} blocks of 32 (the GGUF export would store it as F16)`);
  }
  return names;
}

/**
 * A model's QAT state: which weights are fake-quantized and a cache of their fake-quantized values
 * for passes that record no graph (evaluation, generation: a KV-cached session runs one forward per
 * token). The cache is dropped whenever a pass records a graph (an optimizer step will follow and
 * change the weights); after writing parameters any other way, call invalidate().
 */
export class Qat implements FakeQuantization {
  readonly names: ReadonlySet<string>;
  private readonly cache = new Map<string, Tensor>();

  constructor(
    readonly model: Llama,
    readonly setting: QatSetting,
  ) {
    this.setting = parseQatSetting(setting);
    this.names = new Set(qatTensorNames(model.config, setting.weights));
  }

  /**
   * A fake-quantizer for one forward pass: name, float weight → the weight the pass uses. In a pass
   * that records a graph, each weight becomes one graph node (a tied embedding shared by lookup and
   * head is fake-quantized once); otherwise the cached values serve.
   */
  forPass(): (name: string, w: Tensor) => Tensor {
    const pass = new Map<string, Tensor>();
    return (name, w) => {
      if (!this.names.has(name)) return w;
      if (isGradEnabled() && w.requiresGrad) {
        this.invalidate();
        let y = pass.get(name);
        if (!y) pass.set(name, (y = op.fakeQuantize(w, this.setting.weights)));
        return y;
      }
      let y = this.cache.get(name);
      if (!y) this.cache.set(name, (y = unscoped(() => noGrad(() => op.fakeQuantize(w, this.setting.weights)))));
      return y;
    };
  }

  /** The input of a quantized projection: fake-quantized per token with int8 activations on. */
  activation(x: Tensor): Tensor {
    return this.setting.activations === "int8" ? op.fakeQuantizeActivations(x) : x;
  }

  /** Forget cached fake-quantized weights (the latent weights changed). */
  invalidate(): void {
    for (const t of this.cache.values()) t.dispose();
    this.cache.clear();
  }

  /**
   * Overwrite the latent weights with their fake-quantized values (for Llama.fuse: folding norm
   * gains into the projections needs the final numbers). Activation fake quantization cannot be
   * kept through that folding — it would quantize the un-gained inputs — so it is refused.
   */
  bake(): void {
    if (this.setting.activations) throw new Error("qat: a model with int8 activation fake quantization cannot be fused (folded norm gains would change what is quantized); run it unfused");
    const fq = this.forPass();
    for (const [name, t] of this.model.parameters()) {
      if (!this.names.has(name)) continue;
      const y = noGrad(() => fq(name, t));
      t.backend.copy(t.data, 0, y.data, 0, t.size);
    }
    this.invalidate();
  }

  toJSON(): QatSetting {
    return { ...this.setting };
  }
}

/**
 * Turn QAT on (or off with null) for `model`: the CLI's --qat q8_0|q4_0 [--qat-activations int8].
 * Validates the setting and the tensors (one-line errors). Training needs nothing else: the trainer
 * optimises the latent weights as usual.
 */
export function applyQat(model: Llama, setting: QatSetting | null): void {
  if (setting !== null) {
    if (model.fused) throw new Error("qat: the model is fused for inference; load it without fusing");
    if (model.quantized.size > 0) throw new Error("qat: the model holds quantized weights; load it dequantized");
    if (model.expertCaches.size > 0) throw new Error("qat: the model pages its experts from the file; load it without an expert cache");
  }
  const next = setting === null ? null : new Qat(model, setting);
  model.qat?.invalidate();
  model.qat = next;
}

/** The model's QAT state, or null for a model without QAT. */
export function qatOf(model: Llama): Qat | null {
  return model.qat instanceof Qat ? model.qat : null;
}

/** The QAT record of a checkpoint (qat.json), or null for a model without QAT. */
export function qatFile(model: Llama): CheckpointFile | null {
  const qat = qatOf(model);
  if (!qat) return null;
  return { name: QAT_FILE, bytes: new TextEncoder().encode(JSON.stringify(qat.toJSON(), null, 2) + "\n") };
}

/** The setting in a qat.json's text. */
export function readQatFile(text: string): QatSetting {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new Error(`${QAT_FILE} is not valid JSON: ${(e as Error).message.replace(/\s+/g, " ")}`);
  }
  return parseQatSetting(raw);
}
