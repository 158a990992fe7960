// Lazy expert paging (the seed's memory-mapped weights on a device smaller than the model): a MoE
// layer keeps `slots` of its E experts resident, the most recently used, and reads the others from
// the model file when the router picks them. The resident matrices hold the slots' experts stacked
// as the full ones would hold all of them ([slots·out, in] quantized, or [slots, out, in] float),
// so the expert kernels run on them unchanged with slot numbers for expert ids.
import type { Weight } from "./weight.js";

/** Expert usage of a cache: requests served from memory and from the file. */
export interface CacheCounts {
  hits: number;
  misses: number;
}

export class ExpertCache {
  /** slotOf[e]: the slot holding expert e, or −1. */
  private readonly slotOf: Int32Array;
  /** expertIn[s]: the expert in slot s, or −1; lastUse[s]: when it was last asked for. */
  private readonly expertIn: Int32Array;
  private readonly lastUse: Float64Array;
  private clock = 0;
  readonly counts: CacheCounts = { hits: 0, misses: 0 };

  constructor(
    readonly experts: number,
    readonly slots: number,
    /** The slots' matrices: gate and up, down. */
    readonly weights: { gate: Weight; up: Weight; down: Weight },
    /** Read expert `e`'s three matrices from the file into slot `slot`. */
    private readonly load: (expert: number, slot: number) => void,
  ) {
    if (!(Number.isInteger(slots) && slots >= 1 && slots <= experts)) throw new Error(`expert cache: ${slots} slots for ${experts} experts`);
    this.slotOf = new Int32Array(experts).fill(-1);
    this.expertIn = new Int32Array(slots).fill(-1);
    this.lastUse = new Float64Array(slots);
  }

  /**
   * Make `experts` (distinct, at most `slots` of them) resident and return each one's slot. The
   * least recently used others make room; none of `experts` is evicted to load another of them.
   */
  acquire(experts: readonly number[]): Map<number, number> {
    if (experts.length > this.slots) throw new Error(`expert cache: ${experts.length} experts at once, ${this.slots} slots`);
    const now = ++this.clock;
    const out = new Map<number, number>();
    for (const e of experts) {
      const s = this.slotOf[e];
      if (s >= 0) {
        this.counts.hits++;
        this.lastUse[s] = now;
        out.set(e, s);
      }
    }
    for (const e of experts) {
      if (out.has(e)) continue;
      // The least recently used slot not taken by this request (empty slots first: lastUse 0).
      let victim = -1;
      for (let s = 0; s < this.slots; s++) if (this.lastUse[s] < now && (victim < 0 || this.lastUse[s] < this.lastUse[victim])) victim = s;
      const old = this.expertIn[victim];
      if (old >= 0) this.slotOf[old] = -1;
      this.expertIn[victim] = -1;
      this.load(e, victim); // a failed read leaves the slot empty
      this.expertIn[victim] = e;
      this.slotOf[e] = victim;
      this.lastUse[victim] = now;
      this.counts.misses++;
      out.set(e, victim);
    }
    return out;
  }

  dispose(): void {
    for (const w of Object.values(this.weights)) w.dispose();
  }
}
