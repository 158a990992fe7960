// MinHash near-duplicate detection with banded locality-sensitive hashing, after datatrove 0.10.0's
// MinhashDedupSignature / MinhashConfig (src/datatrove/pipeline/dedup/minhash.py), with its
// defaults: word 5-grams of the normalised text (normalize.ts), 14 bands × 8 hashes, seed 1.
// Two documents whose shingle sets have Jaccard similarity s agree at each signature position
// with probability s, so they share at least one band (are candidates) with probability
// 1 − (1 − s⁸)¹⁴: 0.92 at s = 0.8, 0.5 at s ≈ 0.69 (datatrove's comment gives the usual
// threshold (1/14)^(1/8) ≈ 0.72, where it is 0.65), 0.0009 at s = 0.3.
//
// A document's shingles are its word n-grams, each hashed to 32 bits: every word's UTF-16 code
// units by FNV-1a and MurmurHash3's finaliser, the n word hashes by MurmurHash3_x86_32. Position
// i of the signature is the least h_i(x) over the shingles x, h_i(x) = fmix32(a_i·x + b_i mod 2³²)
// with a_i odd: an affine bijection then MurmurHash3's finaliser, a different permutation of the
// 32-bit values for each position, its (a_i, b_i) drawn from the seed by a SplitMix-style
// generator. A band's key is MurmurHash3_x86_128 of its 8 values (64 bits of it are used).
//
// Where it deviates from datatrove:
// - 32-bit signature values (datatrove's default precision is 64): JavaScript has no fast 64-bit
//   multiply, and 32 bits cost nothing that matters here: two documents' minima at a position
//   coincide by accident with probability about n/2³² (10⁻⁷ for n = 400 shingles), and a band of
//   8 values is 256 bits. The signature is therefore a Uint32Array.
// - The permutations are fmix32 of an affine map mod 2³² instead of (a·x + b) mod (2⁶¹ − 1) on
//   xxhash64 shingles; datatrove's parameters come from numpy's RandomState, ours from SplitMix.
//   Signatures are not interchangeable with datatrove's; the statistics are the same (the
//   tests check the LSH S-curve and the estimator against theory).
// - A document with fewer words than the n-gram size has one shingle, all its words (datatrove
//   gives it no signature, so short duplicates are never found). A document with no words at
//   all has no shingles: its signature is all 0xffffffff (EMPTY) and it matches nothing.
// Browser-safe; minhashSignature allocates only its result and the shingle hashes.
import { fmix32, murmur3x86_128Words, murmur3x86_32Words } from "./hash.js";
import { normalizeText } from "./normalize.js";

export interface MinHashOptions {
  /** Words per shingle (default 5). */
  ngram?: number;
  /** LSH bands (default 14). */
  bands?: number;
  /** Hashes per band (default 8). */
  rows?: number;
  /** Seed of the hash functions (default 1); every signature compared must use the same. */
  seed?: number;
}

export type MinHashSettings = Required<MinHashOptions>;

export const MINHASH_DEFAULTS: Readonly<MinHashSettings> = { ngram: 5, bands: 14, rows: 8, seed: 1 };

/** The value of every position of a document without shingles. */
export const EMPTY = 0xffffffff;

/** The options with their defaults, checked (whole numbers; at most 4096 hashes; a 32-bit seed). */
export function minhashSettings(o: MinHashOptions = {}): MinHashSettings {
  const s = { ...MINHASH_DEFAULTS, ...Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) } as MinHashSettings;
  for (const k of ["ngram", "bands", "rows"] as const) {
    if (!Number.isInteger(s[k]) || s[k] < 1) throw new Error(`MinHash ${k} must be a whole number ≥ 1 (got ${s[k]})`);
  }
  if (s.ngram > 1000) throw new Error(`MinHash ngram must be ≤ 1000 (got ${s.ngram})`);
  if (s.bands * s.rows > 4096) throw new Error(`MinHash bands × rows must be ≤ 4096 (got ${s.bands} × ${s.rows})`);
  if (!Number.isInteger(s.seed) || s.seed < 0 || s.seed > 0xffffffff) throw new Error(`MinHash seed must be a whole number in [0, 2³²) (got ${s.seed})`);
  return s;
}

const SHINGLE_SEED = 0x5eed5;
let wordBuffer = new Uint32Array(1024);

/**
 * The 32-bit hashes of `text`'s word n-grams (see the header; one for a text of fewer words, none
 * for a text without words), in order, repeats included.
 */
export function shingleHashes(text: string, ngram: number = MINHASH_DEFAULTS.ngram): Uint32Array {
  const t = normalizeText(text);
  let n = 0;
  if (t.length > 0) {
    let h = 0x811c9dc5;
    for (let i = 0; i <= t.length; i++) {
      const c = i < t.length ? t.charCodeAt(i) : 32;
      if (c === 32) {
        if (n === wordBuffer.length) {
          const grown = new Uint32Array(2 * n);
          grown.set(wordBuffer);
          wordBuffer = grown;
        }
        wordBuffer[n++] = fmix32(h);
        h = 0x811c9dc5;
      } else h = Math.imul(h ^ c, 0x01000193);
    }
  }
  if (n === 0) return new Uint32Array(0);
  if (n < ngram) return Uint32Array.of(murmur3x86_32Words(wordBuffer, 0, n, SHINGLE_SEED));
  const out = new Uint32Array(n - ngram + 1);
  for (let i = 0; i < out.length; i++) out[i] = murmur3x86_32Words(wordBuffer, i, ngram, SHINGLE_SEED);
  return out;
}

const permutations = new Map<string, { a: Uint32Array; b: Uint32Array }>();

/** (a_i, b_i) of the `count` hash functions of `seed`: a SplitMix-style sequence through fmix32. */
function permutationsOf(seed: number, count: number): { a: Uint32Array; b: Uint32Array } {
  const key = `${seed}:${count}`;
  let p = permutations.get(key);
  if (!p) {
    let state = seed >>> 0;
    const next = (): number => fmix32((state = (state + 0x9e3779b9) | 0) ^ 0x2545f491);
    p = { a: new Uint32Array(count), b: new Uint32Array(count) };
    for (let i = 0; i < count; i++) {
      p.a[i] = next() | 1;
      p.b[i] = next();
    }
    permutations.set(key, p);
  }
  return p;
}

/** The signature (bands × rows values) of a set of 32-bit shingle hashes; all EMPTY for none. */
export function signatureOfShingles(shingles: ArrayLike<number>, o: MinHashOptions = {}): Uint32Array {
  return signatureWith(shingles, minhashSettings(o));
}

function signatureWith(shingles: ArrayLike<number>, s: MinHashSettings): Uint32Array {
  const k = s.bands * s.rows;
  const { a, b } = permutationsOf(s.seed, k);
  const sig = new Uint32Array(k).fill(EMPTY);
  const n = shingles.length;
  if (n === 0) return sig;
  // Four hash functions per pass over the shingles (independent chains for the CPU to overlap);
  // the minimum is kept with the sign bit flipped, so that int32 comparison orders as unsigned.
  let i = 0;
  for (; i + 4 <= k; i += 4) {
    const a0 = a[i], a1 = a[i + 1], a2 = a[i + 2], a3 = a[i + 3];
    const b0 = b[i], b1 = b[i + 1], b2 = b[i + 2], b3 = b[i + 3];
    let m0 = 0x7fffffff, m1 = 0x7fffffff, m2 = 0x7fffffff, m3 = 0x7fffffff;
    for (let j = 0; j < n; j++) {
      const x = shingles[j];
      const v0 = permute(x, a0, b0), v1 = permute(x, a1, b1), v2 = permute(x, a2, b2), v3 = permute(x, a3, b3);
      if (v0 < m0) m0 = v0;
      if (v1 < m1) m1 = v1;
      if (v2 < m2) m2 = v2;
      if (v3 < m3) m3 = v3;
    }
    sig[i] = m0 ^ 0x80000000;
    sig[i + 1] = m1 ^ 0x80000000;
    sig[i + 2] = m2 ^ 0x80000000;
    sig[i + 3] = m3 ^ 0x80000000;
  }
  for (; i < k; i++) {
    const ai = a[i], bi = b[i];
    let m = 0x7fffffff;
    for (let j = 0; j < n; j++) {
      const v = permute(shingles[j], ai, bi);
      if (v < m) m = v;
    }
    sig[i] = m ^ 0x80000000;
  }
  return sig;
}

/** h(x) = fmix32(a·x + b mod 2³²), as an int32 with its sign bit flipped (see signatureWith). */
function permute(x: number, a: number, b: number): number {
  let v = (Math.imul(x, a) + b) | 0;
  v ^= v >>> 16;
  v = Math.imul(v, 0x85ebca6b);
  v ^= v >>> 13;
  v = Math.imul(v, 0xc2b2ae35);
  v ^= v >>> 16;
  return v ^ 0x80000000;
}

/** The MinHash signature of `text`: bands × rows 32-bit values (see the header). */
export function minhashSignature(text: string, o: MinHashOptions = {}): Uint32Array {
  return minhashSigner(o)(text);
}

/** minhashSignature with the options checked once, for a stream of documents. */
export function minhashSigner(o: MinHashOptions = {}): (text: string) => Uint32Array {
  const s = minhashSettings(o);
  return (text) => signatureWith(shingleHashes(text, s.ngram), s);
}

/** Whether a signature is that of a document without shingles (every value EMPTY). */
export function isEmptySignature(sig: ArrayLike<number>): boolean {
  for (let i = 0; i < sig.length; i++) if (sig[i] !== EMPTY) return false;
  return true;
}

/** The share of positions where two signatures agree: the estimate of their documents' Jaccard similarity. */
export function estimatedJaccard(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`signatures of different lengths (${a.length} and ${b.length}) cannot be compared`);
  if (a.length === 0) return 1;
  let equal = 0;
  for (let i = 0; i < a.length; i++) if (a[i] === b[i]) equal++;
  return equal / a.length;
}

const keyWords = new Uint32Array(4);

/** Band `band`'s 64-bit key (low and high words): MurmurHash3_x86_128 of its `rows` values. */
export function bandKey(sig: ArrayLike<number>, band: number, rows: number): [lo: number, hi: number] {
  murmur3x86_128Words(sig, band * rows, rows, 0, keyWords);
  return [keyWords[0], keyWords[1]];
}

/**
 * Online LSH: each band's key → the first document added with it. For deduplicating a stream as it
 * is produced (each document against every earlier one); the staged CLI pipeline instead sorts
 * the keys of a whole corpus. A key is 52 bits of the band's hash, so two different bands share
 * one by accident with probability 2⁻⁵² per pair of documents and band. Memory: about 14 map
 * entries a document.
 */
export class MinHashIndex {
  private readonly s: MinHashSettings;
  private readonly tables: Map<number, number>[];
  private added = 0;

  constructor(o: MinHashOptions = {}) {
    this.s = minhashSettings(o);
    this.tables = Array.from({ length: this.s.bands }, () => new Map<number, number>());
  }

  /** Documents added. */
  get size(): number {
    return this.added;
  }

  /**
   * The id of an earlier document sharing a band with this one (the lowest such id), else null;
   * the document is added, so later ones match it (a band already held keeps its earlier id). A
   * document without shingles matches nothing and is not added.
   */
  addOrMatch(id: number, signature: ArrayLike<number>): number | null {
    const { bands, rows } = this.s;
    if (signature.length !== bands * rows) throw new Error(`a signature of ${bands} × ${rows} options has ${bands * rows} values, got ${signature.length}`);
    if (isEmptySignature(signature)) return null;
    let match: number | null = null;
    for (let band = 0; band < bands; band++) {
      const [lo, hi] = bandKey(signature, band, rows);
      const key = (hi & 0xfffff) * 0x100000000 + lo;
      const table = this.tables[band];
      const earlier = table.get(key);
      if (earlier === undefined) table.set(key, id);
      else if (match === null || earlier < match) match = earlier;
    }
    this.added++;
    return match;
  }
}
