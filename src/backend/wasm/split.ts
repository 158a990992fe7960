// Deterministic work splitting. A range is cut only at multiples of `unit`, and every part gets
// at least one unit (the remainder goes to the last), so each part runs the kernel's same code
// paths as the whole: the packed GEMM pairs rows (MR = 2) and the matrix-vector kernel takes rows
// four at a time, with different arithmetic for the leftovers. Each output element is then
// computed by exactly one thread with exactly the single-threaded arithmetic: results are bitwise
// identical for any thread count.

/** Boundaries b[0] = 0 < b[1] < … < b[p] = total of at most `parts` parts of whole units. */
export function splitBounds(total: number, unit: number, parts: number): number[] {
  const units = Math.floor(total / unit);
  const p = Math.max(1, Math.min(parts, units));
  const bounds = [0];
  for (let i = 1; i < p; i++) bounds.push(Math.floor((units * i) / p) * unit);
  bounds.push(total);
  return bounds;
}
