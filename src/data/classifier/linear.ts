// The quality classifier's model: two linear heads over the same sparse features, trained
// together by SGD with per-coordinate Adagrad step sizes (Duchi et al. 2011; Vowpal Wabbit's
// --adaptive) and L2 regularisation applied to the weights an example touches:
//   - binary: logistic regression on label ≥ threshold (DCLM's fastText filter is a binary
//     classifier of this kind; the threshold 3 is FineWeb-Edu's), giving a probability;
//   - regression: least squares on the 0–5 label itself (FineWeb-Edu's classifier is a
//     regression head; its score is clamped to the label range).
// The examples are visited in a fresh seeded order each epoch, so a seed gives the same weights
// on every run. Browser-safe.
import { Rng, deriveSeed } from "../../util/rng.js";
import type { SparseVector } from "./features.js";

export interface LinearHeads {
  /** Feature dimensions (2^bits for hashed n-grams, the hidden size for embeddings). */
  dim: number;
  binary: Float32Array;
  binaryBias: number;
  regression: Float32Array;
  regressionBias: number;
}

export interface LinearTrainOptions {
  /** label ≥ threshold is the binary head's positive class. */
  threshold: number;
  /** Passes over the examples (5). */
  epochs?: number;
  /** The visiting order's seed (0). */
  seed?: number;
  /** Adagrad's base step size (0.5). */
  learningRate?: number;
  /** L2 penalty λ on the weights, per update of a touched weight (1e-6). */
  l2?: number;
  /** The regression head's score is clamped to this range (the labels', [0, 5]). */
  labelRange?: [number, number];
}

export interface LabelledVector {
  x: SparseVector;
  label: number;
}

export const defaultLinearTrainOptions = { epochs: 5, seed: 0, learningRate: 0.5, l2: 1e-6 } as const;

const EPS = 1e-8;

function sigmoid(z: number): number {
  return z >= 0 ? 1 / (1 + Math.exp(-z)) : Math.exp(z) / (1 + Math.exp(z));
}

function dot(w: Float32Array | Float64Array, x: SparseVector): number {
  let s = 0;
  for (let k = 0; k < x.indices.length; k++) s += w[x.indices[k]] * x.values[k];
  return s;
}

/** Train both heads on `examples` (see the header). Empty input is refused. */
export function trainLinear(examples: readonly LabelledVector[], dim: number, o: LinearTrainOptions): LinearHeads {
  if (examples.length === 0) throw new Error("no labelled examples to train on");
  const epochs = o.epochs ?? defaultLinearTrainOptions.epochs;
  const lr = o.learningRate ?? defaultLinearTrainOptions.learningRate;
  const l2 = o.l2 ?? defaultLinearTrainOptions.l2;
  const seed = o.seed ?? defaultLinearTrainOptions.seed;
  if (!Number.isInteger(epochs) || epochs < 1) throw new Error(`epochs must be a whole number ≥ 1 (got ${epochs})`);
  if (!(lr > 0)) throw new Error(`the learning rate must be > 0 (got ${lr})`);
  if (!(l2 >= 0)) throw new Error(`the L2 penalty must be ≥ 0 (got ${l2})`);
  for (const e of examples) for (const i of e.x.indices) if (i < 0 || i >= dim) throw new Error(`feature index ${i} outside the ${dim} dimensions`);

  const wb = new Float64Array(dim), gb = new Float64Array(dim);
  const wr = new Float64Array(dim), gr = new Float64Array(dim);
  // Biases start at the data's prior (the positive rate's log-odds, the mean label), so the
  // weights learn what moves a document away from the average.
  const positives = examples.filter((e) => e.label >= o.threshold).length;
  const rate = Math.min(1 - 1e-3, Math.max(1e-3, positives / examples.length));
  let bb = Math.log(rate / (1 - rate)), br = examples.reduce((s, e) => s + e.label, 0) / examples.length;
  let gbb = 0, gbr = 0;

  const order = Int32Array.from(examples, (_, i) => i);
  for (let epoch = 0; epoch < epochs; epoch++) {
    const rng = new Rng(deriveSeed(seed, epoch));
    for (let i = order.length - 1; i > 0; i--) {
      const j = rng.int(i + 1);
      [order[i], order[j]] = [order[j], order[i]];
    }
    for (const n of order) {
      const { x, label } = examples[n];
      const target = label >= o.threshold ? 1 : 0;
      const eb = sigmoid(dot(wb, x) + bb) - target; // d(log loss)/dz
      const er = dot(wr, x) + br - label; // d(½ squared error)/dz
      for (let k = 0; k < x.indices.length; k++) {
        const i = x.indices[k], v = x.values[k];
        let g = eb * v + l2 * wb[i];
        gb[i] += g * g;
        wb[i] -= (lr * g) / (Math.sqrt(gb[i]) + EPS);
        g = er * v + l2 * wr[i];
        gr[i] += g * g;
        wr[i] -= (lr * g) / (Math.sqrt(gr[i]) + EPS);
      }
      gbb += eb * eb;
      bb -= (lr * eb) / (Math.sqrt(gbb) + EPS);
      gbr += er * er;
      br -= (lr * er) / (Math.sqrt(gbr) + EPS);
    }
  }
  return { dim, binary: Float32Array.from(wb), binaryBias: Math.fround(bb), regression: Float32Array.from(wr), regressionBias: Math.fround(br) };
}

/** The heads' outputs for one vector: the binary head's probability and the regression head's score (clamped to `labelRange`). */
export function predictLinear(h: LinearHeads, x: SparseVector, labelRange: [number, number]): { probability: number; score: number } {
  const score = dot(h.regression, x) + h.regressionBias;
  return { probability: sigmoid(dot(h.binary, x) + h.binaryBias), score: Math.min(labelRange[1], Math.max(labelRange[0], score)) };
}
