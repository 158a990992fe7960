// Clusters of duplicates: a disjoint-set forest over document ids (non-negative whole numbers),
// as datatrove's MinhashDedupCluster joins every candidate pair. Each cluster's root is its
// lowest id, the document kept (the first in input order when ids follow it), so the result does
// not depend on the order pairs arrive in. Only ids that were joined are held (a Map, about 50
// bytes an id), so memory grows with the duplicates, not the corpus. Finds halve their path.
// Browser-safe.

export class UnionFind {
  private readonly parent = new Map<number, number>();

  /** Ids in some pair so far. */
  get size(): number {
    return this.parent.size;
  }

  /** The lowest id of `x`'s cluster (`x` itself when it was never joined). */
  find(x: number): number {
    const parent = this.parent;
    let p = parent.get(x);
    if (p === undefined) return x;
    while (p !== x) {
      const gp: number = parent.get(p)!;
      parent.set(x, gp);
      x = p;
      p = gp;
    }
    return x;
  }

  /** Join the clusters of `a` and `b`; the lower root becomes the root of both. */
  union(a: number, b: number): void {
    if (!this.parent.has(a)) this.parent.set(a, a);
    if (!this.parent.has(b)) this.parent.set(b, b);
    const ra = this.find(a), rb = this.find(b);
    if (ra === rb) return;
    if (ra < rb) this.parent.set(rb, ra);
    else this.parent.set(ra, rb);
  }

  /** Every joined id that is not its cluster's root, with its root, by ascending id. */
  removals(): Array<[id: number, root: number]> {
    const ids = [...this.parent.keys()].sort((x, y) => x - y);
    const out: Array<[number, number]> = [];
    for (const id of ids) {
      const root = this.find(id);
      if (root !== id) out.push([id, root]);
    }
    return out;
  }
}
