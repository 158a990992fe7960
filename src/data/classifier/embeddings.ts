// Embedding features for the quality classifier (`--features embeddings --model PATH`): a
// document's mean-pooled final hidden states under a Bonsai model (after the final RMSNorm),
// scaled to unit L2 norm — what `bonsai serve`'s /v1/embeddings answers — as a dense vector of
// the model's hidden size. The classifier's file records which model made them (its shape and
// name), and scoring with another model is refused. Browser-safe.
import type { Llama } from "../../nn/llama.js";
import type { Tokenizer } from "../../tokenizer/tokenizer.js";
import { promptIds } from "../../runtime/stream.js";
import { noGrad, scope } from "../../tensor/tensor.js";
import type { SparseVector } from "./features.js";

export interface EmbeddingFeatureSpec {
  kind: "embeddings";
  /** The model's hidden size: the vector's length. */
  dim: number;
  /** Only a document's first maxTokens tokens are read (at most the model's context). */
  maxTokens: number;
  /** The model that made the features: its name (as given) and shape, checked on loading. */
  model: { name: string; hidden_size: number; num_hidden_layers: number; vocab_size: number; max_position_embeddings: number };
}

/** The shape of `model` as an EmbeddingFeatureSpec records it. */
export function embeddingModelShape(model: Llama, name: string): EmbeddingFeatureSpec["model"] {
  const c = model.config;
  return { name, hidden_size: c.hidden_size, num_hidden_layers: c.num_hidden_layers, vocab_size: c.vocab_size, max_position_embeddings: c.max_position_embeddings };
}

/** Why `model` cannot make the features `spec` describes, or null when it can (its name may differ: a moved file). */
export function embeddingModelMismatch(spec: EmbeddingFeatureSpec, model: Llama): string | null {
  const have = embeddingModelShape(model, spec.model.name);
  const diffs = (["hidden_size", "num_hidden_layers", "vocab_size", "max_position_embeddings"] as const).filter((k) => have[k] !== spec.model[k]);
  if (diffs.length === 0) return null;
  return `the classifier was trained on embeddings of ${spec.model.name} (${diffs.map((k) => `${k} ${spec.model[k]}`).join(", ")}); this model has ${diffs.map((k) => `${k} ${have[k]}`).join(", ")}`;
}

/** Turns documents into mean-pooled hidden states of `model` (see the header). */
export class EmbeddingFeaturizer {
  readonly dim: number;

  constructor(
    private readonly model: Llama,
    private readonly tokenizer: Tokenizer,
    readonly spec: EmbeddingFeatureSpec,
  ) {
    const why = embeddingModelMismatch(spec, model);
    if (why !== null) throw new Error(why);
    if (!Number.isInteger(spec.maxTokens) || spec.maxTokens < 1 || spec.maxTokens > model.config.max_position_embeddings)
      throw new Error(`embedding features read 1 … ${model.config.max_position_embeddings} tokens (the model's context), not ${spec.maxTokens}`);
    this.dim = spec.dim;
  }

  /** The spec for `model` reading at most `maxTokens` tokens (default: its whole context). */
  static specFor(model: Llama, name: string, maxTokens = model.config.max_position_embeddings): EmbeddingFeatureSpec {
    return { kind: "embeddings", dim: model.config.hidden_size, maxTokens, model: embeddingModelShape(model, name) };
  }

  /** The document's unit-length mean hidden state (BOS first where the tokenizer has one, as /v1/embeddings reads a text). */
  async features(text: string): Promise<SparseVector> {
    const ids = promptIds(this.tokenizer, text).slice(0, this.spec.maxTokens);
    const h = await this.model.forwardAcross(Int32Array.from(ids), 1, ids.length, { hiddenStates: true });
    const host = await noGrad(() => scope(() => h.toArray())).finally(() => h.dispose());
    const dim = this.dim, v = new Float64Array(dim);
    for (let t = 0; t < ids.length; t++) for (let i = 0; i < dim; i++) v[i] += host[t * dim + i] / ids.length;
    let norm = 0;
    for (let i = 0; i < dim; i++) norm += v[i] * v[i];
    norm = Math.sqrt(norm) || 1;
    return { indices: Int32Array.from({ length: dim }, (_, i) => i), values: Float32Array.from(v, (x) => x / norm) };
  }
}
