// Log-probabilities for the tests that compare Bonsai with llama.cpp (or one backend with another):
// log-softmax of a row, those of a token-by-token decode, and the largest difference between two runs.
import type { Llama } from "../src/nn/llama.js";
import { Session } from "../src/runtime/session.js";

export function logSoftmax(logits: ArrayLike<number>): Float64Array {
  let max = -Infinity;
  for (let j = 0; j < logits.length; j++) max = Math.max(max, logits[j]);
  let z = 0;
  for (let j = 0; j < logits.length; j++) z += Math.exp(logits[j] - max);
  const lse = max + Math.log(z);
  return Float64Array.from(logits, (x) => x - lse);
}

/** Largest |Δ log p| at each position, over the tokens where llama.cpp (b) reports a probability. */
export function logProbDiffs(a: Float64Array[], b: Float64Array[]): number[] {
  return a.map((row, t) => {
    let worst = 0;
    for (let j = 0; j < row.length; j++) if (Number.isFinite(b[t][j]) && b[t][j] > -20) worst = Math.max(worst, Math.abs(row[j] - b[t][j]));
    return worst;
  });
}

/** Largest |Δ log p| over positions and tokens where llama.cpp (b) reports a probability. */
export function maxLogProbDiff(a: Float64Array[], b: Float64Array[]): number {
  return Math.max(0, ...logProbDiffs(a, b));
}

/** Log-probabilities of decoding `tokens` one at a time, as generation runs. */
export async function decodeLogProbs(model: Llama, tokens: number[]): Promise<Float64Array[]> {
  const session = new Session(model);
  try {
    const out: Float64Array[] = [];
    for (const id of tokens) out.push(logSoftmax(await session.decode(id)));
    return out;
  } finally {
    session.dispose();
  }
}
