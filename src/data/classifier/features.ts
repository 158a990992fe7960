// Hashed n-gram features of a document for the quality classifier (`bonsai data train-classifier`).
// What each part follows:
//   - tokens: the text lower-cased, split into runs of letters/digits and single punctuation marks
//     (DCLM's fastText filter lower-cases and splits punctuation off before fastText reads words);
//   - n-grams: word unigrams and bigrams (DCLM's fastText quality filter uses wordNgrams 2), and
//     optionally character n-grams of each word between "<" and ">" (fastText's minn/maxn);
//   - hashing: each n-gram's UTF-8 bytes through MurmurHash3 (x86, 32-bit, seeded) into 2^bits
//     buckets, as Vowpal Wabbit hashes features; the bucket's sign comes from the hash's top bit
//     (signed feature hashing, Weinberger et al. 2009), so collisions cancel in expectation
//     instead of adding up;
//   - values: each bucket's signed count c becomes sign(c)·ln(1 + |c|) (sublinear term
//     frequency), and the vector is scaled to unit L2 norm, so long and short documents compare.
// Browser-safe: no Node modules.

/** How the features are made; saved in a classifier's file and checked when it is loaded. */
import { murmur3x86_32 } from "../dedup/hash.js";

export interface HashedFeatureSpec {
  kind: "hashed-ngrams";
  /** log2 of the buckets (18 … 20 is usual: 262,144 … 1,048,576). */
  bits: number;
  /** MurmurHash3's seed. */
  hashSeed: number;
  /** Word n-grams 1 … wordNgrams (2: unigrams and bigrams). */
  wordNgrams: number;
  /** Character n-grams of each word (with "<" and ">" around it), [min, max] lengths; null for none. */
  charNgrams: [number, number] | null;
}

export const defaultHashedFeatureSpec = (): HashedFeatureSpec => ({ kind: "hashed-ngrams", bits: 18, hashSeed: 0, wordNgrams: 2, charNgrams: null });

/** A sparse vector: strictly increasing indices and their values. */
export interface SparseVector {
  indices: Int32Array;
  values: Float32Array;
}

/** Check a spec's numbers (from flags or a file); throws naming the bad one. */
export function checkHashedFeatureSpec(s: HashedFeatureSpec): void {
  if (!Number.isInteger(s.bits) || s.bits < 4 || s.bits > 24) throw new Error(`feature bits must be a whole number in 4 … 24 (got ${s.bits})`);
  if (!Number.isInteger(s.hashSeed) || s.hashSeed < 0 || s.hashSeed > 0xffffffff) throw new Error(`the hash seed must be a whole number in 0 … 2^32 − 1 (got ${s.hashSeed})`);
  if (!Number.isInteger(s.wordNgrams) || s.wordNgrams < 1 || s.wordNgrams > 5) throw new Error(`word n-grams must be 1 … 5 (got ${s.wordNgrams})`);
  if (s.charNgrams !== null) {
    const [lo, hi] = s.charNgrams;
    if (!Number.isInteger(lo) || !Number.isInteger(hi) || lo < 1 || hi < lo || hi > 10) throw new Error(`character n-grams must be lengths 1 ≤ min ≤ max ≤ 10 (got ${lo}-${hi})`);
  }
}

const TOKEN = /[\p{L}\p{M}\p{N}]+|[^\s\p{L}\p{M}\p{N}]/gu;

/** The tokens features are made of: lower-cased runs of letters and digits, and single punctuation marks. */
export function featureTokens(text: string): string[] {
  return text.toLowerCase().match(TOKEN) ?? [];
}

/**
 * Turns documents into hashed feature vectors (see the header). One instance reuses its scratch
 * space (a dense array of 2^bits counts), so it is not for concurrent use across threads, and
 * vectors are the same for the same spec on every machine.
 */
export class HashedFeaturizer {
  readonly dim: number;
  private readonly counts: Float64Array;
  private readonly touched: Int32Array;
  private readonly seen: Uint8Array;
  private readonly encoder = new TextEncoder();
  private buf = new Uint8Array(256);

  constructor(readonly spec: HashedFeatureSpec) {
    checkHashedFeatureSpec(spec);
    this.dim = 2 ** spec.bits;
    this.counts = new Float64Array(this.dim);
    this.touched = new Int32Array(this.dim);
    this.seen = new Uint8Array(this.dim);
  }

  /** The bucket and sign (+1 or −1) of one n-gram string. */
  hash(ngram: string): { bucket: number; sign: number } {
    const h = this.hashString(ngram);
    return { bucket: h & (this.dim - 1), sign: h >>> 31 ? -1 : 1 };
  }

  private hashString(s: string): number {
    // UTF-8 is at most 3 bytes per UTF-16 code unit.
    if (this.buf.length < s.length * 3) this.buf = new Uint8Array(s.length * 3 + 16);
    const { written } = this.encoder.encodeInto(s, this.buf);
    return murmur3x86_32(this.buf.subarray(0, written), this.spec.hashSeed);
  }

  /** The document's feature vector: signed, log-scaled bucket counts at unit L2 norm (empty for a text without tokens). */
  features(text: string): SparseVector {
    const tokens = featureTokens(text);
    const { wordNgrams, charNgrams } = this.spec;
    const mask = this.dim - 1, counts = this.counts, touched = this.touched, seen = this.seen;
    let nTouched = 0;
    const add = (s: string): void => {
      const h = this.hashString(s);
      const b = h & mask;
      if (!seen[b]) {
        seen[b] = 1;
        touched[nTouched++] = b;
      }
      counts[b] += h >>> 31 ? -1 : 1;
    };
    // Distinct strings for distinct kinds: a bigram has a space, a word none; character n-grams start with \u0001.
    for (let i = 0; i < tokens.length; i++) {
      add(tokens[i]);
      let gram = tokens[i];
      for (let n = 2; n <= wordNgrams && i + n - 1 < tokens.length; n++) {
        gram += " " + tokens[i + n - 1];
        add(gram);
      }
      if (charNgrams !== null) {
        const w = `<${tokens[i]}>`;
        const chars = Array.from(w);
        for (let len = charNgrams[0]; len <= charNgrams[1]; len++)
          for (let s = 0; s + len <= chars.length; s++) add("\u0001" + chars.slice(s, s + len).join(""));
      }
    }
    const idx = touched.subarray(0, nTouched).slice().sort();
    const indices: number[] = [], values: number[] = [];
    let norm = 0;
    for (const b of idx) {
      const c = counts[b];
      counts[b] = 0;
      seen[b] = 0;
      // Signed counts that cancelled out leave no feature.
      if (c === 0) continue;
      const v = Math.sign(c) * Math.log1p(Math.abs(c));
      indices.push(b);
      values.push(v);
      norm += v * v;
    }
    norm = Math.sqrt(norm) || 1;
    const out = { indices: Int32Array.from(indices), values: new Float32Array(values.length) };
    for (let i = 0; i < values.length; i++) out.values[i] = values[i] / norm;
    return out;
  }
}
