// Exact deduplication: a document is a copy of an earlier one when their normalised texts
// (normalize.ts) are the same, as datatrove's ExactDedup compares a hash of each document's
// content. The hash is MurmurHash3_x86_128 (seed 0) of the normalised text's UTF-8 bytes: 128
// bits, so that two different texts share one with probability about n²/2¹²⁹ (10⁻²¹ for a billion
// documents), where datatrove's default 64 bits would give 3% there. The first occurrence is kept.
// Browser-safe.
import { murmur3x86_128, utf8 } from "./hash.js";
import { normalizeText } from "./normalize.js";

/** The 128-bit hash of `text`'s normalised form, as four 32-bit words. */
export function exactHash(text: string): Uint32Array {
  return murmur3x86_128(utf8(normalizeText(text)));
}

/** A hash as 32 hexadecimal digits (its little-endian bytes in order, as MurmurHash3's digest is printed). */
export function hashHex(h: ArrayLike<number>): string {
  let s = "";
  for (let i = 0; i < h.length; i++) {
    const w = h[i] >>> 0;
    for (let b = 0; b < 4; b++) s += ((w >>> (8 * b)) & 0xff).toString(16).padStart(2, "0");
  }
  return s;
}

/**
 * The documents seen so far by their exact hash: an open-addressing table of 128-bit hashes and
 * ids (25 bytes a slot, at most half of them used: about 50 bytes a distinct document), so a
 * stream's memory grows with its distinct documents, never with their text.
 */
export class ExactIndex {
  private hashes = new Uint32Array(4 * 1024);
  private ids = new Float64Array(1024);
  private used = new Uint8Array(1024);
  private count = 0;

  /** How many distinct hashes it holds. */
  get size(): number {
    return this.count;
  }

  /** The id of an earlier document with this hash, else null: then this document's id is added. */
  addOrMatch(id: number, hash: ArrayLike<number>): number | null {
    if (hash.length !== 4) throw new Error(`an exact hash has 4 words, got ${hash.length}`);
    if (2 * (this.count + 1) > this.used.length) this.grow();
    const slot = this.find(hash);
    if (this.used[slot]) return this.ids[slot];
    this.put(slot, id, hash);
    return null;
  }

  private find(hash: ArrayLike<number>): number {
    const mask = this.used.length - 1;
    const h0 = hash[0] >>> 0, h1 = hash[1] >>> 0, h2 = hash[2] >>> 0, h3 = hash[3] >>> 0;
    for (let slot = h0 & mask; ; slot = (slot + 1) & mask) {
      if (!this.used[slot]) return slot;
      const j = slot << 2, t = this.hashes;
      if (t[j] === h0 && t[j + 1] === h1 && t[j + 2] === h2 && t[j + 3] === h3) return slot;
    }
  }

  private put(slot: number, id: number, hash: ArrayLike<number>): void {
    this.used[slot] = 1;
    this.ids[slot] = id;
    for (let k = 0; k < 4; k++) this.hashes[(slot << 2) + k] = hash[k];
    this.count++;
  }

  private grow(): void {
    const { hashes, ids, used } = this;
    this.hashes = new Uint32Array(hashes.length * 2);
    this.ids = new Float64Array(ids.length * 2);
    this.used = new Uint8Array(used.length * 2);
    this.count = 0;
    for (let s = 0; s < used.length; s++) {
      if (!used[s]) continue;
      const h = hashes.subarray(s << 2, (s << 2) + 4);
      this.put(this.find(h), ids[s], h);
    }
  }
}
