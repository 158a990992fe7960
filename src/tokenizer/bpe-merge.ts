// Byte-pair merging: the loop at the heart of every BPE tokenizer here.

/**
 * The BPE merge loop shared by SentencePiece-style, byte-level and llama2.c tokenizers: `keys`
 * are the initial symbols (strings that concatenate as the text does); `priority(l, r)` is the
 * priority of merging adjacent symbols l and r (a token score, or minus a merge rank), or
 * undefined when they do not merge. Repeatedly merges the adjacent pair of highest priority,
 * the leftmost on ties. Candidate pairs wait in a heap and are dropped when either side has
 * changed since, which picks exactly the pair a full rescan would (run.c's quadratic loop;
 * llama.cpp's priority queues). Returns the final symbols and, for each, the index of the
 * initial symbol it starts with (a symbol that is still `keys[start]` was never merged).
 */
export function mergePairs(keys: readonly string[], priority: (left: string, right: string) => number | undefined): { keys: string[]; starts: number[] } {
  const n = keys.length;
  const key = keys.slice();
  const next = new Int32Array(n), prev = new Int32Array(n), version = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    next[i] = i + 1 < n ? i + 1 : -1;
    prev[i] = i - 1;
  }
  const heap = new PairHeap();
  const consider = (l: number, r: number) => {
    if (l < 0 || r < 0) return;
    const score = priority(key[l]!, key[r]!);
    if (score !== undefined) heap.push({ score, left: l, right: r, lv: version[l]!, rv: version[r]! });
  };
  for (let i = 0; i + 1 < n; i++) consider(i, i + 1);
  for (let p = heap.pop(); p !== undefined; p = heap.pop()) {
    if (version[p.left] !== p.lv || version[p.right] !== p.rv || next[p.left] !== p.right) continue;
    key[p.left] = key[p.left]! + key[p.right]!;
    version[p.left]!++;
    version[p.right]!++;
    const after = next[p.right]!;
    next[p.left] = after;
    if (after >= 0) prev[after] = p.left;
    consider(prev[p.left]!, p.left);
    consider(p.left, after);
  }
  const out = { keys: [] as string[], starts: [] as number[] };
  for (let i = n > 0 ? 0 : -1; i >= 0; i = next[i]!) {
    out.keys.push(key[i]!);
    out.starts.push(i);
  }
  return out;
}

interface Pair {
  score: number;
  /** Original position of the left symbol: position order is left-to-right order. */
  left: number;
  right: number;
  lv: number;
  rv: number;
}

/** Binary max-heap on (score, then smaller left position). */
class PairHeap {
  private readonly a: Pair[] = [];

  private static before(x: Pair, y: Pair): boolean {
    return x.score > y.score || (x.score === y.score && x.left < y.left);
  }

  push(p: Pair): void {
    const a = this.a;
    let i = a.push(p) - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!PairHeap.before(a[i]!, a[parent]!)) break;
      [a[i], a[parent]] = [a[parent]!, a[i]!];
      i = parent;
    }
  }

  pop(): Pair | undefined {
    const a = this.a;
    if (a.length === 0) return undefined;
    const top = a[0]!;
    const last = a.pop()!;
    if (a.length > 0) {
      a[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1, r = l + 1;
        let m = i;
        if (l < a.length && PairHeap.before(a[l]!, a[m]!)) m = l;
        if (r < a.length && PairHeap.before(a[r]!, a[m]!)) m = r;
        if (m === i) break;
        [a[i], a[m]] = [a[m]!, a[i]!];
        i = m;
      }
    }
    return top;
  }
}
