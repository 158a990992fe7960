// Keeping documents by the rank of a score (a reference model's loss or perplexity): the
// selection behind `data perplexity` (CCNet's percentile buckets) and `data prune` (keep the
// easiest, hardest or middle fraction). Ranks, not thresholds, so the kept count is exact and ties
// do not matter: documents are ordered by score, ties in input order.

/** Which documents' ascending rank r falls in [from·n, to·n) (0 ≤ from ≤ to ≤ 1); NaN scores never do. */
export function keepRankRange(scores: ArrayLike<number>, from: number, to: number): Uint8Array {
  if (!(from >= 0 && from <= to && to <= 1)) throw new Error(`rank range must satisfy 0 <= from <= to <= 1 (got ${from}, ${to})`);
  const ids: number[] = [];
  for (let i = 0; i < scores.length; i++) if (!Number.isNaN(scores[i])) ids.push(i);
  ids.sort((a, b) => scores[a] - scores[b] || a - b);
  const n = ids.length, lo = Math.round(from * n), hi = Math.round(to * n);
  const keep = new Uint8Array(scores.length);
  for (let r = lo; r < hi; r++) keep[ids[r]] = 1;
  return keep;
}

export type PruneSide = "easy" | "hard" | "middle";
export const pruneSides: readonly PruneSide[] = ["easy", "hard", "middle"];

/** The rank range that keeps `fraction` of the documents: the lowest scores, the highest, or those around the median. */
export function pruneRange(side: PruneSide, fraction: number): [number, number] {
  if (!(fraction > 0 && fraction <= 1)) throw new Error(`keep fraction must be in (0, 1] (got ${fraction})`);
  if (side === "easy") return [0, fraction];
  if (side === "hard") return [1 - fraction, 1];
  if (side === "middle") return [(1 - fraction) / 2, (1 + fraction) / 2];
  throw new Error(`prune side must be one of ${pruneSides.join(", ")} (got "${String(side)}")`);
}
