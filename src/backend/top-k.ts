// The k largest numbers of a row with their indices: what a sampler keeps for greedy (k = 1) and
// top-k decoding, so that a backend sends 8·k bytes back instead of the whole row of logits. The
// order is a stable descending sort's (larger first, equal values by lower index), the order the
// sampler's own sort gives, so both paths pick the same tokens (NaN, which that sort leaves
// unordered, goes last).

export interface TopK {
  /** Indices into the row, best first. */
  ids: Int32Array;
  values: Float32Array;
}

/** Whether (v, i) comes before (w, j): larger value first, equal values by lower index, NaN last. */
function before(v: number, i: number, w: number, j: number): boolean {
  if (v !== v || w !== w) return w !== w && (v === v || i < j); // NaN: after every number
  return v > w || (v === w && i < j);
}

/** The min(k, n) best of `row[offset .. offset + n)` in O(n log k): a heap of the best so far, rooted at the worst of them. */
export function topKOf(row: ArrayLike<number>, k: number, offset = 0, n = row.length - offset): TopK {
  if (!Number.isInteger(k) || k < 1) throw new RangeError(`top-k: k must be a whole number ≥ 1 (got ${k})`);
  const m = Math.min(k, n);
  const heap = new Int32Array(m);
  let size = 0;
  // Whether element a ranks below element b.
  const worse = (a: number, b: number): boolean => before(row[offset + b], b, row[offset + a], a);
  const swap = (a: number, b: number): void => {
    const t = heap[a];
    heap[a] = heap[b];
    heap[b] = t;
  };
  for (let i = 0; i < n; i++) {
    if (size < m) {
      let at = size++;
      heap[at] = i;
      for (let up = (at - 1) >> 1; at > 0 && worse(heap[at], heap[up]); at = up, up = (at - 1) >> 1) swap(at, up);
    } else if (worse(heap[0], i)) {
      heap[0] = i;
      for (let at = 0; ; ) {
        const l = 2 * at + 1, r = l + 1;
        let w = at;
        if (l < size && worse(heap[l], heap[w])) w = l;
        if (r < size && worse(heap[r], heap[w])) w = r;
        if (w === at) break;
        swap(at, w);
        at = w;
      }
    }
  }
  const ids = Int32Array.from(heap).sort((a, b) => (before(row[offset + a], a, row[offset + b], b) ? -1 : 1));
  return { ids, values: Float32Array.from(ids, (i) => row[offset + i]) };
}
