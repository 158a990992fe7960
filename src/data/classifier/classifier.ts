// The quality classifier (`bonsai data train-classifier` writes one, `bonsai data score` reads
// it): the features' spec (features.ts or embeddings.ts), two linear heads (linear.ts), the label
// threshold and range, and what training reported. Its file is small and self-describing:
//
//   bytes 0–7   "BONSAIQC"
//   8–11        format version (uint32, little-endian; this code writes and reads 1)
//   12–15       H: the JSON header's length in bytes, a multiple of 4
//   16 …        the JSON header (UTF-8, padded with spaces): features, threshold, labelRange,
//               biases, the number N of stored weights, training details
//   then        N uint32 feature indices (increasing), N float32 binary-head weights,
//               N float32 regression-head weights (all little-endian); weights absent are 0
//
// Only dimensions with a non-zero weight are stored, so a hashed-n-gram classifier trained on a
// few thousand documents takes a few hundred KiB whatever its bucket count. A file that is not
// one, is cut short, comes from a newer version, or whose features differ from those a caller
// expects is refused with a ClassifierFileError saying which. Browser-safe.
import { type HashedFeatureSpec, type SparseVector, HashedFeaturizer, checkHashedFeatureSpec } from "./features.js";
import type { EmbeddingFeatureSpec } from "./embeddings.js";
import { type LinearHeads, predictLinear } from "./linear.js";

export type FeatureSpec = HashedFeatureSpec | EmbeddingFeatureSpec;

export const CLASSIFIER_MAGIC = "BONSAIQC";
export const CLASSIFIER_VERSION = 1;

/** A file that is not a classifier this code can use, and why. */
export class ClassifierFileError extends Error {
  override name = "ClassifierFileError";
}

export interface ClassifierPrediction {
  /** The binary head's probability that the teacher's label is ≥ threshold. */
  probability: number;
  /** The regression head's estimate of the label, clamped to the label range. */
  score: number;
}

interface Header {
  format: "bonsai-quality-classifier";
  features: FeatureSpec;
  threshold: number;
  labelRange: [number, number];
  binaryBias: number;
  regressionBias: number;
  weights: number;
  training: Record<string, unknown>;
}

/** "hashed word 1–2-grams + char 3–5-grams, 2^18 buckets, seed 0" or "embeddings of MODEL (288 dims, ≤ 512 tokens)". */
export function describeFeatures(s: FeatureSpec): string {
  if (s.kind === "embeddings") return `mean-pooled embeddings of ${s.model.name} (${s.dim} dims, first ${s.maxTokens} tokens)`;
  const words = s.wordNgrams === 1 ? "word unigrams" : `word 1–${s.wordNgrams}-grams`;
  const chars = s.charNgrams ? ` + char ${s.charNgrams[0]}–${s.charNgrams[1]}-grams` : "";
  return `hashed ${words}${chars}, 2^${s.bits} buckets, hash seed ${s.hashSeed}`;
}

/** How `have` differs from `want` (each differing setting, both values), or null when they match. */
export function featureSpecMismatch(have: FeatureSpec, want: FeatureSpec): string | null {
  if (have.kind !== want.kind) return `features are ${have.kind}, not ${want.kind}`;
  const a = have as unknown as Record<string, unknown>, b = want as unknown as Record<string, unknown>;
  const keys = [...new Set([...Object.keys(a), ...Object.keys(b)])].filter((k) => k !== "kind" && JSON.stringify(a[k]) !== JSON.stringify(b[k]));
  if (keys.length === 0) return null;
  return keys.map((k) => `${k} ${JSON.stringify(a[k])} (expected ${JSON.stringify(b[k])})`).join(", ");
}

export class QualityClassifier {
  constructor(
    readonly features: FeatureSpec,
    readonly heads: LinearHeads,
    /** label ≥ threshold is the binary head's positive class. */
    readonly threshold: number,
    readonly labelRange: [number, number],
    /** What training recorded (examples, epochs, seed, held-out figures …). */
    readonly training: Record<string, unknown> = {},
  ) {
    if (heads.binary.length !== heads.dim || heads.regression.length !== heads.dim) throw new Error(`heads of ${heads.binary.length} and ${heads.regression.length} weights for ${heads.dim} dimensions`);
    const dim = features.kind === "embeddings" ? features.dim : 2 ** features.bits;
    if (dim !== heads.dim) throw new Error(`the features have ${dim} dimensions but the heads ${heads.dim}`);
  }

  /** Both heads' outputs for a feature vector made by `features`. */
  predict(x: SparseVector): ClassifierPrediction {
    return predictLinear(this.heads, x, this.labelRange);
  }

  /** A function scoring texts directly, for hashed n-gram features (embeddings need their model: EmbeddingFeaturizer). */
  textScorer(): (text: string) => ClassifierPrediction {
    if (this.features.kind !== "hashed-ngrams") throw new Error(`this classifier reads ${describeFeatures(this.features)}: score it through an EmbeddingFeaturizer of that model`);
    const f = new HashedFeaturizer(this.features);
    return (text) => this.predict(f.features(text));
  }

  /** The file's bytes (see the header). */
  toBytes(): Uint8Array {
    const { binary, regression, dim } = this.heads;
    const kept: number[] = [];
    for (let i = 0; i < dim; i++) if (binary[i] !== 0 || regression[i] !== 0) kept.push(i);
    const header: Header = {
      format: "bonsai-quality-classifier", features: this.features, threshold: this.threshold, labelRange: this.labelRange,
      binaryBias: this.heads.binaryBias, regressionBias: this.heads.regressionBias, weights: kept.length, training: this.training,
    };
    let json = new TextEncoder().encode(JSON.stringify(header));
    const padded = Math.ceil(json.length / 4) * 4;
    if (padded !== json.length) {
      const p = new Uint8Array(padded).fill(0x20);
      p.set(json);
      json = p;
    }
    const n = kept.length, base = 16 + padded;
    const out = new Uint8Array(base + 12 * n);
    const view = new DataView(out.buffer);
    for (let i = 0; i < 8; i++) out[i] = CLASSIFIER_MAGIC.charCodeAt(i);
    view.setUint32(8, CLASSIFIER_VERSION, true);
    view.setUint32(12, padded, true);
    out.set(json, 16);
    for (let k = 0; k < n; k++) {
      const i = kept[k];
      view.setUint32(base + 4 * k, i, true);
      view.setFloat32(base + 4 * (n + k), binary[i], true);
      view.setFloat32(base + 4 * (2 * n + k), regression[i], true);
    }
    return out;
  }

  /**
   * A classifier from its file's bytes. `expect`: the features the caller will make; a file
   * whose features differ is refused, naming each difference. `name` heads the errors.
   */
  static fromBytes(bytes: Uint8Array, o: { name?: string; expect?: FeatureSpec } = {}): QualityClassifier {
    const name = o.name ?? "the classifier file";
    const fail = (why: string): never => {
      throw new ClassifierFileError(`${name}: ${why}`);
    };
    if (bytes.length < 16 || String.fromCharCode(...bytes.subarray(0, 8)) !== CLASSIFIER_MAGIC)
      fail(`not a Bonsai quality classifier (it does not start with "${CLASSIFIER_MAGIC}"; train one with bonsai data train-classifier)`);
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const version = view.getUint32(8, true);
    if (version !== CLASSIFIER_VERSION) fail(`format version ${version}; this Bonsai reads version ${CLASSIFIER_VERSION}${version > CLASSIFIER_VERSION ? " (written by a newer Bonsai)" : ""}`);
    const h = view.getUint32(12, true);
    if (h % 4 !== 0 || 16 + h > bytes.length) fail(`cut short or damaged: its header says ${h} bytes, the file has ${bytes.length - 16} after the preamble`);
    let header: Header;
    try {
      header = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes.subarray(16, 16 + h))) as Header;
    } catch (e) {
      return fail(`its header is not JSON (${(e as Error).message.split("\n")[0]})`);
    }
    if (header?.format !== "bonsai-quality-classifier") fail(`its header is not a quality classifier's`);
    const spec = header.features;
    let dim = 0;
    if (spec?.kind === "hashed-ngrams") {
      try {
        checkHashedFeatureSpec(spec);
      } catch (e) {
        fail((e as Error).message);
      }
      dim = 2 ** spec.bits;
    } else if (spec?.kind === "embeddings") {
      if (!Number.isInteger(spec.dim) || spec.dim < 1 || typeof spec.model?.name !== "string") fail("its embedding features are not described (dim, model)");
      dim = spec.dim;
    } else fail(`features of an unknown kind ${JSON.stringify((spec as { kind?: unknown })?.kind)}`);
    if (o.expect) {
      const why = featureSpecMismatch(spec, o.expect);
      if (why !== null) fail(`its features do not match: ${why}`);
    }
    const n = header.weights;
    if (!Number.isInteger(n) || n < 0 || n > dim) fail(`its header says ${String(n)} weights for ${dim} dimensions`);
    const base = 16 + h;
    if (bytes.length !== base + 12 * n) fail(`cut short or damaged: ${n} weights need ${base + 12 * n} bytes, the file has ${bytes.length}`);
    const num = (x: unknown, what: string): number => (typeof x === "number" && Number.isFinite(x) ? x : fail(`its ${what} is not a number`));
    const threshold = num(header.threshold, "threshold");
    const range = header.labelRange;
    if (!Array.isArray(range) || range.length !== 2 || !(num(range[0], "label range") <= num(range[1], "label range"))) fail("its label range is not [min, max]");
    const binary = new Float32Array(dim), regression = new Float32Array(dim);
    let last = -1;
    for (let k = 0; k < n; k++) {
      const i = view.getUint32(base + 4 * k, true);
      if (i <= last || i >= dim) fail(`damaged: weight index ${i} at position ${k} is out of order or range`);
      last = i;
      binary[i] = view.getFloat32(base + 4 * (n + k), true);
      regression[i] = view.getFloat32(base + 4 * (2 * n + k), true);
    }
    const heads: LinearHeads = { dim, binary, regression, binaryBias: num(header.binaryBias, "binary bias"), regressionBias: num(header.regressionBias, "regression bias") };
    return new QualityClassifier(spec, heads, threshold, [range[0], range[1]], header.training ?? {});
  }
}
