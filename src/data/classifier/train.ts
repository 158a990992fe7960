// Training a quality classifier on a teacher's labels (`bonsai data train-classifier`): a seeded
// split holds a fraction of the documents out, both heads train on the rest, and the held-out
// documents measure how well the classifier reproduces the teacher — the binary decision's
// accuracy, precision, recall and F1 against label ≥ threshold, the regression's MAE and
// Spearman ρ (and the regression thresholded, which is how FineWeb-Edu reports its classifier's
// F1). The classifier returned is the one measured (trained without the held-out documents).
// Browser-safe.
import { Rng, deriveSeed } from "../../util/rng.js";
import type { SparseVector } from "./features.js";
import { type FeatureSpec, QualityClassifier, describeFeatures } from "./classifier.js";
import { type LabelledVector, defaultLinearTrainOptions, trainLinear } from "./linear.js";
import { type BinaryMetrics, binaryMetrics, meanAbsoluteError, spearman } from "./metrics.js";

export interface TrainClassifierOptions {
  features: FeatureSpec;
  /** Makes a document's vector under `features` (a HashedFeaturizer's or EmbeddingFeaturizer's features). */
  featurize: (text: string) => SparseVector | Promise<SparseVector>;
  /** label ≥ threshold is positive (3, FineWeb-Edu's). */
  threshold?: number;
  /** The labels' range; the regression's score is clamped to it ([0, 5]). */
  labelRange?: [number, number];
  /** Fraction of the documents held out for the report (0.2); 0 trains on all and reports nothing. */
  holdout?: number;
  epochs?: number;
  seed?: number;
  learningRate?: number;
  l2?: number;
  /** Called after each document's features are made (for progress). */
  onFeatures?: (done: number, total: number) => void;
}

export interface HeldOutReport {
  /** The binary head's decision (probability ≥ 0.5) against label ≥ threshold. */
  binary: BinaryMetrics;
  /** The regression head's decision (score ≥ threshold) against label ≥ threshold. */
  regressionDecision: BinaryMetrics;
  regression: {
    mae: number;
    spearman: number;
    /** The MAE of always answering the training labels' mean: what the regression must beat. */
    meanBaselineMae: number;
  };
}

export interface ClassifierReport {
  features: string;
  threshold: number;
  labelRange: [number, number];
  /** Documents trained on and held out. */
  train: number;
  heldOut: number;
  /** Documents per label (all labelled documents). */
  labels: Record<string, number>;
  /** Share of labelled documents with label ≥ threshold. */
  positiveRate: number;
  epochs: number;
  seed: number;
  learningRate: number;
  l2: number;
  /** Held-out figures; null with holdout 0. */
  heldOutMetrics: HeldOutReport | null;
}

/** Train and measure a classifier on labelled documents (see the header). */
export async function trainClassifier(docs: readonly { text: string; label: number }[], o: TrainClassifierOptions): Promise<{ classifier: QualityClassifier; report: ClassifierReport }> {
  const threshold = o.threshold ?? 3, labelRange = o.labelRange ?? [0, 5], holdout = o.holdout ?? 0.2;
  const epochs = o.epochs ?? defaultLinearTrainOptions.epochs, seed = o.seed ?? defaultLinearTrainOptions.seed;
  const learningRate = o.learningRate ?? defaultLinearTrainOptions.learningRate, l2 = o.l2 ?? defaultLinearTrainOptions.l2;
  if (!(holdout >= 0 && holdout < 1)) throw new Error(`the held-out fraction must be in [0, 1) (got ${holdout})`);
  for (const d of docs) if (!Number.isFinite(d.label)) throw new Error(`a label is not a number: ${d.label}`);
  const heldOut = Math.round(holdout * docs.length);
  if (docs.length - heldOut < 1) throw new Error(`${docs.length} labelled document${docs.length === 1 ? "" : "s"}: too few to train on`);
  if (holdout > 0 && heldOut < 1) throw new Error(`${docs.length} labelled documents: too few to hold ${holdout} of them out`);

  // The split: a seeded shuffle of the documents, its first `heldOut` held out.
  const order = Array.from(docs.keys());
  const rng = new Rng(deriveSeed(seed, 0x5b117));
  for (let i = order.length - 1; i > 0; i--) {
    const j = rng.int(i + 1);
    [order[i], order[j]] = [order[j], order[i]];
  }
  const vectors: LabelledVector[] = [];
  for (let i = 0; i < docs.length; i++) {
    vectors.push({ x: await o.featurize(docs[i].text), label: docs[i].label });
    o.onFeatures?.(i + 1, docs.length);
  }
  const test = order.slice(0, heldOut).map((i) => vectors[i]), train = order.slice(heldOut).map((i) => vectors[i]);
  const dim = o.features.kind === "embeddings" ? o.features.dim : 2 ** o.features.bits;
  const heads = trainLinear(train, dim, { threshold, epochs, seed, learningRate, l2, labelRange });

  const labels: Record<string, number> = {};
  for (const d of docs) labels[String(d.label)] = (labels[String(d.label)] ?? 0) + 1;
  const report: ClassifierReport = {
    features: describeFeatures(o.features), threshold, labelRange, train: train.length, heldOut: test.length, labels,
    positiveRate: docs.filter((d) => d.label >= threshold).length / docs.length, epochs, seed, learningRate, l2, heldOutMetrics: null,
  };
  const classifier = new QualityClassifier(o.features, heads, threshold, labelRange, {});
  if (test.length > 0) {
    const preds = test.map((e) => classifier.predict(e.x));
    const actual = test.map((e) => e.label >= threshold);
    const trainMean = train.reduce((s, e) => s + e.label, 0) / train.length;
    const y = test.map((e) => e.label), scores = preds.map((p) => p.score);
    report.heldOutMetrics = {
      binary: binaryMetrics(actual, preds.map((p) => p.probability >= 0.5)),
      regressionDecision: binaryMetrics(actual, scores.map((s) => s >= threshold)),
      regression: { mae: meanAbsoluteError(y, scores), spearman: spearman(y, scores), meanBaselineMae: meanAbsoluteError(y, y.map(() => trainMean)) },
    };
  }
  return { classifier: new QualityClassifier(o.features, heads, threshold, labelRange, { ...report }), report };
}
