// Flags that `bonsai train` and `bonsai distill` share beyond the model and optimizer: start from
// a model's weights (--init), quantization-aware training (--qat) and curriculum learning
// (--curriculum). Parsing only; train.ts's runTraining applies them.
import { type FlagSpec, Flags, UsageError } from "./args.js";
import { type QatSetting, parseQatSetting } from "../train/qat.js";
import { type CurriculumOptions, curriculumDefaults, curriculumOptions, pacingNames } from "../train/curriculum.js";
import { type DocumentFormat, documentFormats } from "../data/documents.js";

export const initFlags: FlagSpec = {
  init: { type: "string", help: "start from this model's weights and configuration (directory, GGUF, llama2.c .bin) with a fresh optimizer" },
};

export const qatFlags: FlagSpec = {
  qat: { type: "string", help: "quantization-aware training: fake-quantize the weights as the GGUF export --quant q8_0|q4_0 stores them" },
  "qat-activations": { type: "string", help: "with --qat: also quantize each projection's input per token (int8)" },
};

const d = curriculumDefaults;
export const curriculumFlags: FlagSpec = {
  curriculum: { type: "string", help: "train on documents ordered by difficulty: length, teacher-loss, self-paced or field:NAME" },
  pacing: { type: "string", help: `competence c(t) over training: ${pacingNames.join(", ")} (${d.pacing})` },
  "curriculum-mode": { type: "string", help: `hard (only the easiest c(t) fraction is drawn) or soft (all drawn, weighted) (${d.mode})` },
  "competence-start": { type: "string", help: `c0, the starting fraction (${d.c0})` },
  "competence-full": { type: "string", help: `fraction of training where c(t) reaches 1 (${d.fullAt})` },
  "pacing-stages": { type: "string", help: `step pacing: number of stages (${d.stages})` },
  "curriculum-softness": { type: "string", help: `soft mode: weights fall to 1/e at softness·N samples past the frontier (${d.softness})` },
  "rescore-every": { type: "string", help: `self-paced: re-score the samples every N steps (${d.rescoreEvery})` },
  "score-tokens": { type: "string", help: "loss scorers: score the first N tokens of each sample; 0 = all (0)" },
  "curriculum-model": { type: "string", help: "teacher-loss: the reference model (distill: the teacher by default)" },
  documents: { type: "string", help: "how --data splits into samples: stories (<|endoftext|>), lines or jsonl (stories)" },
  "text-field": { type: "string", help: "jsonl: the field holding the text (text)" },
};

export const moeFlags: FlagSpec = {
  experts: { type: "string", help: "sparse mixture of experts: E SwiGLU experts per layer (1 = dense); with --init of a dense model, upcycle it" },
  "experts-per-token": { type: "string", help: "experts each token is routed to, k ≤ E (2)" },
  "aux-loss-coef": { type: "string", help: "weight of the load-balancing loss E·Σ fᵢ·Pᵢ (0.01)" },
  "z-loss-coef": { type: "string", help: "weight of the router z-loss mean(logsumexp²) (0.001)" },
  "router-noise": { type: "string", help: "upcycling: standard deviation of the router's initial weights, seeded (0: zeros)" },
};

/** The MoE part of a fresh model's configuration (E, k, loss weights), or null for a dense model (no --experts, or 1). */
export function moeFromFlags(f: Flags): { experts: number; expertsPerToken: number; auxLossCoef: number; zLossCoef: number } | null {
  const experts = f.int("experts", 1, 1);
  if (experts === 1) {
    for (const k of ["experts-per-token", "aux-loss-coef", "z-loss-coef", "router-noise"]) if (f.has(k)) throw new UsageError(`--${k} needs --experts E with E > 1`);
    return null;
  }
  const expertsPerToken = f.int("experts-per-token", Math.min(2, experts), 1);
  if (expertsPerToken > experts) throw new UsageError(`--experts-per-token ${expertsPerToken} exceeds --experts ${experts}`);
  return { experts, expertsPerToken, auxLossCoef: f.num("aux-loss-coef", 0.01, { min: 0 }), zLossCoef: f.num("z-loss-coef", 0.001, { min: 0 }) };
}

/** Model-shape flags that --init (the model's own configuration) excludes. */
export const SHAPE_FLAGS = ["layers", "heads", "kv-heads", "dim", "intermediate-size", "tie-embeddings", "rope-theta", "dropout"] as const;

export function qatFromFlags(f: Flags): QatSetting | null {
  const weights = f.str("qat"), activations = f.str("qat-activations");
  if (weights === undefined) {
    if (activations !== undefined) throw new UsageError("--qat-activations needs --qat");
    return null;
  }
  try {
    return parseQatSetting(activations === undefined ? { weights } : { weights, activations });
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
}

/** What a curriculum run saves in its training state, so that a resume rebuilds the same samples. */
export interface CurriculumSettings {
  options: CurriculumOptions;
  documents: DocumentFormat;
  textField: string;
  /** teacher-loss reference model; null: the teacher of a distillation. */
  referenceModel: string | null;
}

export function curriculumFromFlags(f: Flags): CurriculumSettings | null {
  const scorer = f.str("curriculum");
  if (scorer === undefined) {
    for (const k of Object.keys(curriculumFlags)) if (f.has(k)) throw new UsageError(`--${k} needs --curriculum`);
    return null;
  }
  const documents = (f.str("documents") ?? "stories") as DocumentFormat;
  if (!documentFormats.includes(documents)) throw new UsageError(`--documents must be one of ${documentFormats.join(", ")} (got "${documents}")`);
  if (f.has("text-field") && documents !== "jsonl") throw new UsageError("--text-field applies to --documents jsonl");
  let options: CurriculumOptions;
  try {
    options = curriculumOptions({
      scorer,
      pacing: (f.str("pacing") ?? d.pacing) as CurriculumOptions["pacing"],
      mode: (f.str("curriculum-mode") ?? d.mode) as CurriculumOptions["mode"],
      c0: f.num("competence-start", d.c0),
      fullAt: f.num("competence-full", d.fullAt),
      stages: f.int("pacing-stages", d.stages, 1),
      softness: f.num("curriculum-softness", d.softness),
      rescoreEvery: f.int("rescore-every", d.rescoreEvery, 1),
      scoreTokens: f.int("score-tokens", d.scoreTokens, 0),
    });
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  const reference = f.str("curriculum-model");
  if (reference !== undefined && scorer !== "teacher-loss") throw new UsageError("--curriculum-model applies to --curriculum teacher-loss");
  return { options, documents, textField: f.str("text-field") ?? "text", referenceModel: reference ?? null };
}
