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

// Batches of samples (documents, see documents.ts) for curriculum learning: every row holds one
// sample, so every row's loss is that sample's. Rows are padded at the end with id 0 and target −1
// (ignored): under causal attention the padding changes nothing before it.

/** A batch whose row r holds a window of sample `samples[r]`. */
export interface SampleBatch extends Batch {
  samples: Int32Array;
}

/**
 * One row per picked sample: a sample of n ≤ seq + 1 tokens is taken whole (n − 1 targets); a
 * longer one contributes a random window of seq + 1 tokens (offset drawn from `rng`, uniform).
 * The batch is as long as its longest row, so batches of short samples cost less.
 */
export function sampleBatch(samples: readonly { ids: Int32Array }[], picks: ArrayLike<number>, seq: number, rng: Rng): SampleBatch {
  const rows: [Int32Array, number][] = [];
  let len = 1;
  for (let r = 0; r < picks.length; r++) {
    const s = samples[picks[r]].ids;
    if (s.length < 2) throw new Error(`sample ${picks[r]} has ${s.length} token(s); a sample needs 2 or more`);
    const n = Math.min(s.length - 1, seq);
    const start = s.length > seq + 1 ? rng.int(s.length - seq) : 0;
    rows.push([s.subarray(start, start + n + 1), n]);
    len = Math.max(len, n);
  }
  return padRows(rows, len, Int32Array.from(picks));
}

/**
 * Every target of every sample exactly once, for scoring samples by loss: each sample is cut into
 * consecutive windows of at most `seq` targets (each window starts without context, as in
 * sequentialBatches), windows are grouped `batch` at a time, longest first so a group's rows have
 * similar lengths. `samples[r]` says which sample row r belongs to.
 */
export function* sampleWindowBatches(samples: readonly { ids: Int32Array }[], batch: number, seq: number): Generator<SampleBatch> {
  const windows: { sample: number; start: number; n: number }[] = [];
  samples.forEach((s, i) => {
    for (let start = 0; start < s.ids.length - 1; start += seq) windows.push({ sample: i, start, n: Math.min(seq, s.ids.length - 1 - start) });
  });
  windows.sort((a, b) => b.n - a.n); // stable: ties stay in sample order
  for (let i = 0; i < windows.length; i += batch) {
    const group = windows.slice(i, i + batch);
    const rows = group.map(({ sample, start, n }): [Int32Array, number] => [samples[sample].ids.subarray(start, start + n + 1), n]);
    yield padRows(rows, group[0].n, Int32Array.from(group, (w) => w.sample));
  }
}

/** Rows of (tokens, target count) into [rows, len] ids and targets, padded with 0 / −1. */
function padRows(rows: [Int32Array, number][], len: number, samples: Int32Array): SampleBatch {
  const ids = new Int32Array(rows.length * len), targets = new Int32Array(rows.length * len).fill(-1);
  rows.forEach(([tokens, n], r) => {
    ids.set(tokens.subarray(0, n), r * len);
    targets.set(tokens.subarray(1, n + 1), r * len);
  });
  return { ids, targets, batch: rows.length, seq: len, samples };
}
