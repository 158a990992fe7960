// The hashes deduplication is built on: MurmurHash3 (Austin Appleby's public-domain reference,
// x86_32 and x86_128, checked against SMHasher's verification values in the tests) over bytes or
// over 32-bit words (hashed as their little-endian bytes, so a Uint32Array of a signature hashes
// the same on every platform), and its 32-bit finaliser as a mixer. Pure integer arithmetic on
// Math.imul: the same bits in Node and in every browser. Browser-safe.

const C1_32 = 0xcc9e2d51, C2_32 = 0x1b873593;
const C1 = 0x239b961b, C2 = 0xab0e9789, C3 = 0x38b34ae5, C4 = 0xa1e38b93;

const rotl = (x: number, r: number): number => (x << r) | (x >>> (32 - r));

/** MurmurHash3's 32-bit finaliser: a bijection on 32 bits with full avalanche. */
export function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

function mix32(h1: number, k1: number): number {
  k1 = Math.imul(k1, C1_32);
  k1 = rotl(k1, 15);
  k1 = Math.imul(k1, C2_32);
  h1 ^= k1;
  h1 = rotl(h1, 13);
  return (Math.imul(h1, 5) + 0xe6546b64) | 0;
}

/** MurmurHash3_x86_32 of `bytes`. */
export function murmur3x86_32(bytes: Uint8Array, seed = 0): number {
  const len = bytes.length, blocks = len >>> 2;
  let h1 = seed | 0;
  for (let i = 0; i < blocks; i++) {
    const j = i << 2;
    h1 = mix32(h1, bytes[j] | (bytes[j + 1] << 8) | (bytes[j + 2] << 16) | (bytes[j + 3] << 24));
  }
  const tail = blocks << 2, rem = len & 3;
  if (rem > 0) {
    let k1 = 0;
    for (let j = rem - 1; j >= 0; j--) k1 = (k1 << 8) | bytes[tail + j];
    k1 = Math.imul(k1, C1_32);
    k1 = rotl(k1, 15);
    k1 = Math.imul(k1, C2_32);
    h1 ^= k1;
  }
  return fmix32(h1 ^ len);
}

/** MurmurHash3_x86_32 of `count` 32-bit words from `start` (their little-endian bytes). */
export function murmur3x86_32Words(words: ArrayLike<number>, start: number, count: number, seed = 0): number {
  let h1 = seed | 0;
  for (let i = 0; i < count; i++) h1 = mix32(h1, words[start + i] | 0);
  return fmix32(h1 ^ (count << 2));
}

/** The 128-bit state of MurmurHash3_x86_128 while its 16-byte blocks are mixed in. */
class State128 {
  h1: number;
  h2: number;
  h3: number;
  h4: number;
  constructor(seed: number) {
    this.h1 = this.h2 = this.h3 = this.h4 = seed | 0;
  }

  block(k1: number, k2: number, k3: number, k4: number): void {
    let { h1, h2, h3, h4 } = this;
    k1 = Math.imul(rotl(Math.imul(k1, C1), 15), C2);
    h1 ^= k1;
    h1 = rotl(h1, 19);
    h1 = (h1 + h2) | 0;
    h1 = (Math.imul(h1, 5) + 0x561ccd1b) | 0;
    k2 = Math.imul(rotl(Math.imul(k2, C2), 16), C3);
    h2 ^= k2;
    h2 = rotl(h2, 17);
    h2 = (h2 + h3) | 0;
    h2 = (Math.imul(h2, 5) + 0x0bcaa747) | 0;
    k3 = Math.imul(rotl(Math.imul(k3, C3), 17), C4);
    h3 ^= k3;
    h3 = rotl(h3, 15);
    h3 = (h3 + h4) | 0;
    h3 = (Math.imul(h3, 5) + 0x96cd1c35) | 0;
    k4 = Math.imul(rotl(Math.imul(k4, C4), 18), C1);
    h4 ^= k4;
    h4 = rotl(h4, 13);
    h4 = (h4 + h1) | 0;
    h4 = (Math.imul(h4, 5) + 0x32ac3b17) | 0;
    this.h1 = h1;
    this.h2 = h2;
    this.h3 = h3;
    this.h4 = h4;
  }

  /** The tail's words (zero-padded, `rem` bytes of 1..15) mixed in as the reference does. */
  tail(k1: number, k2: number, k3: number, k4: number, rem: number): void {
    if (rem > 12) this.h4 ^= Math.imul(rotl(Math.imul(k4, C4), 18), C1);
    if (rem > 8) this.h3 ^= Math.imul(rotl(Math.imul(k3, C3), 17), C4);
    if (rem > 4) this.h2 ^= Math.imul(rotl(Math.imul(k2, C2), 16), C3);
    if (rem > 0) this.h1 ^= Math.imul(rotl(Math.imul(k1, C1), 15), C2);
  }

  finish(len: number, out: Uint32Array): Uint32Array {
    let { h1, h2, h3, h4 } = this;
    h1 ^= len;
    h2 ^= len;
    h3 ^= len;
    h4 ^= len;
    h1 = (h1 + h2 + h3 + h4) | 0;
    h2 = (h2 + h1) | 0;
    h3 = (h3 + h1) | 0;
    h4 = (h4 + h1) | 0;
    h1 = fmix32(h1);
    h2 = fmix32(h2);
    h3 = fmix32(h3);
    h4 = fmix32(h4);
    h1 = (h1 + h2 + h3 + h4) | 0;
    h2 = (h2 + h1) | 0;
    h3 = (h3 + h1) | 0;
    h4 = (h4 + h1) | 0;
    out[0] = h1;
    out[1] = h2;
    out[2] = h3;
    out[3] = h4;
    return out;
  }
}

/** MurmurHash3_x86_128 of `bytes`: four words, the digest's little-endian bytes in order. */
export function murmur3x86_128(bytes: Uint8Array, seed = 0, out = new Uint32Array(4)): Uint32Array {
  const len = bytes.length, blocks = len >>> 4;
  const s = new State128(seed);
  const word = (j: number): number => bytes[j] | (bytes[j + 1] << 8) | (bytes[j + 2] << 16) | (bytes[j + 3] << 24);
  for (let i = 0; i < blocks; i++) {
    const j = i << 4;
    s.block(word(j), word(j + 4), word(j + 8), word(j + 12));
  }
  const tail = blocks << 4, rem = len & 15;
  if (rem > 0) {
    const k = [0, 0, 0, 0];
    for (let j = 0; j < rem; j++) k[j >>> 2] |= bytes[tail + j] << ((j & 3) << 3);
    s.tail(k[0], k[1], k[2], k[3], rem);
  }
  return s.finish(len, out);
}

/** MurmurHash3_x86_128 of `count` 32-bit words from `start` (their little-endian bytes). */
export function murmur3x86_128Words(words: ArrayLike<number>, start: number, count: number, seed = 0, out = new Uint32Array(4)): Uint32Array {
  const s = new State128(seed);
  const blocks = count >>> 2;
  for (let i = 0; i < blocks; i++) {
    const j = start + (i << 2);
    s.block(words[j] | 0, words[j + 1] | 0, words[j + 2] | 0, words[j + 3] | 0);
  }
  const rem = count & 3;
  if (rem > 0) {
    const j = start + (blocks << 2);
    s.tail(words[j] | 0, rem > 1 ? words[j + 1] | 0 : 0, rem > 2 ? words[j + 2] | 0 : 0, 0, rem << 2);
  }
  return s.finish(count << 2, out);
}

const encoder = new TextEncoder();

/** The UTF-8 bytes of `text`. */
export function utf8(text: string): Uint8Array {
  return encoder.encode(text);
}
