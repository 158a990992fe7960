// How well the classifier agrees with the teacher's labels on held-out documents: the binary
// decision's accuracy, precision, recall and F1 (positive: label ≥ threshold), and the
// regression's mean absolute error and Spearman rank correlation. Browser-safe.

export interface BinaryMetrics {
  /** Documents compared. */
  n: number;
  accuracy: number;
  precision: number;
  recall: number;
  f1: number;
  /** True/false positives and negatives. */
  tp: number;
  fp: number;
  tn: number;
  fn: number;
  /** The accuracy of always answering the held-out set's majority class: what accuracy must beat. */
  majorityAccuracy: number;
}

/** The binary decision `predicted[i]` against the truth `actual[i]`. Precision is 0 when nothing is predicted positive (and recall when nothing is positive). */
export function binaryMetrics(actual: readonly boolean[], predicted: readonly boolean[]): BinaryMetrics {
  if (actual.length !== predicted.length) throw new Error(`${actual.length} labels but ${predicted.length} predictions`);
  let tp = 0, fp = 0, tn = 0, fn = 0;
  for (let i = 0; i < actual.length; i++) {
    if (predicted[i]) actual[i] ? tp++ : fp++;
    else actual[i] ? fn++ : tn++;
  }
  const n = actual.length;
  const precision = tp + fp > 0 ? tp / (tp + fp) : 0, recall = tp + fn > 0 ? tp / (tp + fn) : 0;
  return {
    n, tp, fp, tn, fn, precision, recall,
    accuracy: n > 0 ? (tp + tn) / n : 0,
    f1: precision + recall > 0 ? (2 * precision * recall) / (precision + recall) : 0,
    majorityAccuracy: n > 0 ? Math.max(tp + fn, tn + fp) / n : 0,
  };
}

/** Mean |a − b|. */
export function meanAbsoluteError(a: readonly number[], b: readonly number[]): number {
  if (a.length !== b.length) throw new Error(`${a.length} values against ${b.length}`);
  let s = 0;
  for (let i = 0; i < a.length; i++) s += Math.abs(a[i] - b[i]);
  return a.length > 0 ? s / a.length : 0;
}

/** 1-based ranks, ties sharing their mean rank. */
export function ranks(v: readonly number[]): Float64Array {
  const order = Array.from(v.keys()).sort((i, j) => v[i] - v[j]);
  const r = new Float64Array(v.length);
  for (let s = 0; s < order.length; ) {
    let e = s;
    while (e + 1 < order.length && v[order[e + 1]] === v[order[s]]) e++;
    const mean = (s + e) / 2 + 1;
    for (let k = s; k <= e; k++) r[order[k]] = mean;
    s = e + 1;
  }
  return r;
}

/** Spearman's ρ: Pearson's correlation of the ranks (ties averaged); NaN when either side is constant. */
export function spearman(a: readonly number[], b: readonly number[]): number {
  if (a.length !== b.length) throw new Error(`${a.length} values against ${b.length}`);
  const ra = ranks(a), rb = ranks(b), n = a.length;
  if (n < 2) return NaN;
  const ma = ra.reduce((s, x) => s + x, 0) / n, mb = rb.reduce((s, x) => s + x, 0) / n;
  let sab = 0, saa = 0, sbb = 0;
  for (let i = 0; i < n; i++) {
    sab += (ra[i] - ma) * (rb[i] - mb);
    saa += (ra[i] - ma) ** 2;
    sbb += (rb[i] - mb) ** 2;
  }
  return saa > 0 && sbb > 0 ? sab / Math.sqrt(saa * sbb) : NaN;
}
