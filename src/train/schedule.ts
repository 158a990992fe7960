// Learning-rate schedule: linear warm-up, then cosine decay to a floor (nanoGPT's get_lr).

export interface LrSchedule {
  lr: number;
  minLr: number;
  warmup: number;
  /** Iteration at which the cosine reaches minLr (nanoGPT's lr_decay_iters); constant after. */
  decayIters: number;
}

export function learningRate(s: LrSchedule, iter: number): number {
  if (iter < s.warmup) return (s.lr * (iter + 1)) / (s.warmup + 1);
  if (iter > s.decayIters) return s.minLr;
  const ratio = s.decayIters === s.warmup ? 1 : (iter - s.warmup) / (s.decayIters - s.warmup);
  const coeff = 0.5 * (1 + Math.cos(Math.PI * ratio));
  return s.minLr + coeff * (s.lr - s.minLr);
}
