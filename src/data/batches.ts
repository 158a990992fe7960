// Language-modelling batches from a token stream: random windows (training, nanoGPT's get_batch)
// and consecutive non-overlapping windows (evaluation over a whole split).
import { Rng } from "../util/rng.js";

export interface Batch {
  ids: Int32Array;
  targets: Int32Array;
  batch: number;
  seq: number;
}

/** `batch` windows of `seq` tokens at random offsets; targets are the inputs shifted by one. */
export function randomBatch(tokens: Int32Array, batch: number, seq: number, rng: Rng): Batch {
  if (tokens.length < seq + 1) throw new Error(`the data has ${tokens.length} tokens, fewer than block size + 1 = ${seq + 1}`);
  const ids = new Int32Array(batch * seq), targets = new Int32Array(batch * seq);
  for (let b = 0; b < batch; b++) {
    const start = rng.int(tokens.length - seq);
    ids.set(tokens.subarray(start, start + seq), b * seq);
    targets.set(tokens.subarray(start + 1, start + seq + 1), b * seq);
  }
  return { ids, targets, batch, seq };
}

/**
 * Consecutive non-overlapping windows covering every token of `tokens` once as a target
 * (the last window may be shorter), grouped `batch` windows at a time.
 */
export function* sequentialBatches(tokens: Int32Array, batch: number, seq: number): Generator<Batch> {
  const predicted = tokens.length - 1; // every token but the first is a target exactly once
  const windows: [number, number][] = [];
  for (let start = 0; start < predicted; start += seq) windows.push([start, Math.min(seq, predicted - start)]);
  for (let i = 0; i < windows.length; i += batch) {
    const group = windows.slice(i, i + batch);
    const len = group[0][1];
    // Windows of unequal length (only the last is short) are run alone.
    const same = group.filter(([, l]) => l === len);
    const n = same.length;
    const ids = new Int32Array(n * len), targets = new Int32Array(n * len);
    same.forEach(([start], b) => {
      ids.set(tokens.subarray(start, start + len), b * len);
      targets.set(tokens.subarray(start + 1, start + len + 1), b * len);
    });
    yield { ids, targets, batch: n, seq: len };
    if (n < group.length) {
      const [start, l] = group[n];
      yield { ids: tokens.slice(start, start + l), targets: tokens.slice(start + 1, start + l + 1), batch: 1, seq: l };
    }
  }
}

/** nanoGPT's split: first 90% train, last 10% validation. */
export function splitTrainVal(tokens: Int32Array, trainFraction = 0.9): { train: Int32Array; val: Int32Array } {
  const n = Math.floor(tokens.length * trainFraction);
  return { train: tokens.subarray(0, n), val: tokens.subarray(n) };
}
