// The teacher cache of offline distillation: for consecutive windows of a tokenized text, the
// teacher's top-k next-token ids and log-probabilities at the distillation temperature, so that a
// student trains without running the teacher. This module encodes and decodes the bytes (it runs in
// a browser too); teacher-cache-node.ts writes and reads files window by window.
//
// Layout (little-endian):
//   "BKDC"  u32 version (1)  u32 n = JSON header bytes  header (UTF-8 JSON, space-padded so records start at a multiple of 8)
//   then `windows` records of fixed size, window w covering tokens [w·B, w·B + B] of the data:
//     B + 1 token ids              (idType: u16 when the vocabulary fits, else u32)
//     B·k teacher ids, by position (idType), most likely first
//     B·k log-probabilities at τ   (logProbType: f16 — clamped to ±65504 — or f32)
// A record is read with one seek, so training samples whole windows at random without loading
// the file. The header names τ, k, the vocabulary (size and the tokenizer itself), the block size
// and an FNV-1a hash of the data's tokens: a run with other settings is refused.
import { f16ToF32, f32ToF16 } from "../format/float16.js";

export const TEACHER_CACHE_MAGIC = "BKDC";
const VERSION = 1;

export interface TeacherCacheHeader {
  format: "bonsai-teacher-cache";
  version: 1;
  /** Distillation temperature τ the log-probabilities were taken at. */
  temperature: number;
  k: number;
  vocabSize: number;
  blockSize: number;
  windows: number;
  idType: "u16" | "u32";
  logProbType: "f16" | "f32";
  /** The tokenized data the windows were cut from: token count and FNV-1a of the ids. */
  data: { tokens: number; fnv1a: string };
  /** What the teacher was (a path), for messages. */
  teacher: string;
  /** The teacher's tokenizer (Tokenizer.toJSON()), so the cache is enough to train a student. */
  tokenizer: object;
}

export interface CachedWindow {
  /** B + 1 tokens: inputs are [0, B), next-token targets [1, B]. */
  tokens: Int32Array;
  /** [B, k] teacher ids, most likely first. */
  ids: Int32Array;
  /** [B, k] log-probabilities at τ. */
  logProbs: Float32Array;
}

/** FNV-1a over the token ids (each as a u32): the data's fingerprint. */
export function tokensHash(tokens: ArrayLike<number>): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < tokens.length; i++) {
    const t = tokens[i] >>> 0;
    for (let s = 0; s < 32; s += 8) h = Math.imul(h ^ ((t >>> s) & 0xff), 0x01000193);
  }
  return (h >>> 0).toString(16).padStart(8, "0");
}

/** Number of whole windows of `blockSize` inputs (+1 target) in `tokens`, consecutive and disjoint. */
export function cacheWindowCount(tokens: number, blockSize: number): number {
  return Math.max(0, Math.floor((tokens - 1) / blockSize));
}

export function recordBytes(h: Pick<TeacherCacheHeader, "blockSize" | "k" | "idType" | "logProbType">): number {
  const idB = h.idType === "u16" ? 2 : 4, lpB = h.logProbType === "f16" ? 2 : 4;
  return (h.blockSize + 1) * idB + h.blockSize * h.k * (idB + lpB);
}

function checkHeader(h: TeacherCacheHeader): void {
  const pos = (x: number): boolean => Number.isInteger(x) && x > 0;
  if (h.format !== "bonsai-teacher-cache" || h.version !== VERSION) throw new Error(`teacher cache: unsupported format ${String(h.format)} version ${String(h.version)}`);
  if (!pos(h.vocabSize) || !pos(h.blockSize) || !pos(h.k) || h.k > h.vocabSize || !(Number.isInteger(h.windows) && h.windows >= 0))
    throw new Error(`teacher cache: bad shape (vocab ${h.vocabSize}, block ${h.blockSize}, k ${h.k}, windows ${h.windows})`);
  if (!(h.temperature > 0)) throw new Error(`teacher cache: bad temperature ${h.temperature}`);
  if (h.idType !== "u16" && h.idType !== "u32") throw new Error(`teacher cache: bad id type ${String(h.idType)}`);
  if (h.idType === "u16" && h.vocabSize > 65536) throw new Error(`teacher cache: a vocabulary of ${h.vocabSize} does not fit u16 ids`);
  if (h.logProbType !== "f16" && h.logProbType !== "f32") throw new Error(`teacher cache: bad log-probability type ${String(h.logProbType)}`);
}

/** The file's first bytes up to the records: magic, version, header length, JSON header. */
export function encodeHeader(h: TeacherCacheHeader): Uint8Array {
  checkHeader(h);
  const json = new TextEncoder().encode(JSON.stringify(h));
  const padded = Math.ceil((12 + json.length) / 8) * 8 - 12;
  const out = new Uint8Array(12 + padded).fill(0x20);
  out.set(new TextEncoder().encode(TEACHER_CACHE_MAGIC), 0);
  const dv = new DataView(out.buffer);
  dv.setUint32(4, VERSION, true);
  dv.setUint32(8, padded, true);
  out.set(json, 12);
  return out;
}

/** Length of the header block given the file's first 12 bytes; throws if they are not a cache's. */
export function headerLength(first12: Uint8Array): number {
  if (first12.length < 12 || new TextDecoder().decode(first12.subarray(0, 4)) !== TEACHER_CACHE_MAGIC) throw new Error("not a Bonsai teacher cache (bad magic)");
  const dv = new DataView(first12.buffer, first12.byteOffset, 12);
  if (dv.getUint32(4, true) !== VERSION) throw new Error(`teacher cache: unsupported version ${dv.getUint32(4, true)}`);
  return 12 + dv.getUint32(8, true);
}

export function decodeHeader(bytes: Uint8Array): TeacherCacheHeader {
  const n = headerLength(bytes);
  if (bytes.length < n) throw new Error("teacher cache: truncated header");
  let h: TeacherCacheHeader;
  try {
    h = JSON.parse(new TextDecoder().decode(bytes.subarray(12, n))) as TeacherCacheHeader;
  } catch {
    throw new Error("teacher cache: the header is not valid JSON");
  }
  checkHeader(h);
  return h;
}

export function encodeWindow(h: TeacherCacheHeader, w: CachedWindow): Uint8Array {
  const B = h.blockSize, k = h.k;
  if (w.tokens.length !== B + 1 || w.ids.length !== B * k || w.logProbs.length !== B * k) throw new Error(`teacher cache: a window needs ${B + 1} tokens and ${B}×${k} ids and log-probabilities`);
  const out = new Uint8Array(recordBytes(h));
  const dv = new DataView(out.buffer);
  let o = 0;
  const putId = (x: number): void => {
    if (!(Number.isInteger(x) && x >= 0 && x < h.vocabSize)) throw new Error(`teacher cache: token id ${x} out of range [0, ${h.vocabSize})`);
    if (h.idType === "u16") dv.setUint16(o, x, true), (o += 2);
    else dv.setUint32(o, x, true), (o += 4);
  };
  for (const t of w.tokens) putId(t);
  for (const t of w.ids) putId(t);
  for (const lp of w.logProbs) {
    if (h.logProbType === "f16") dv.setUint16(o, f32ToF16(Math.max(lp, -65504)), true), (o += 2);
    else dv.setFloat32(o, lp, true), (o += 4);
  }
  return out;
}

export function decodeWindow(h: TeacherCacheHeader, bytes: Uint8Array): CachedWindow {
  const B = h.blockSize, k = h.k;
  if (bytes.length !== recordBytes(h)) throw new Error(`teacher cache: a record has ${recordBytes(h)} bytes, got ${bytes.length}`);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
  let o = 0;
  const getIds = (n: number): Int32Array => {
    const a = new Int32Array(n);
    for (let i = 0; i < n; i++) {
      a[i] = h.idType === "u16" ? dv.getUint16(o, true) : dv.getUint32(o, true);
      o += h.idType === "u16" ? 2 : 4;
      if (a[i] >= h.vocabSize) throw new Error(`teacher cache: token id ${a[i]} out of range [0, ${h.vocabSize}) (corrupt file?)`);
    }
    return a;
  };
  const tokens = getIds(B + 1), ids = getIds(B * k);
  const logProbs = new Float32Array(B * k);
  for (let i = 0; i < B * k; i++) {
    logProbs[i] = h.logProbType === "f16" ? f16ToF32(dv.getUint16(o, true)) : dv.getFloat32(o, true);
    o += h.logProbType === "f16" ? 2 : 4;
  }
  return { tokens, ids, logProbs };
}

/**
 * The top-k of each row of logits [rows, vocab] at temperature τ: ids (most likely first, ties to
 * the lower id) and log-probabilities log softmax(x/τ), computed in float64.
 */
export function topKLogProbs(logits: ArrayLike<number>, rows: number, vocab: number, k: number, temperature: number): { ids: Int32Array; logProbs: Float32Array } {
  const ids = new Int32Array(rows * k), logProbs = new Float32Array(rows * k);
  const order = new Int32Array(vocab);
  for (let r = 0; r < rows; r++) {
    const o = r * vocab;
    let mx = -Infinity;
    for (let j = 0; j < vocab; j++) mx = Math.max(mx, logits[o + j] / temperature);
    let z = 0;
    for (let j = 0; j < vocab; j++) z += Math.exp(logits[o + j] / temperature - mx);
    const lse = mx + Math.log(z);
    for (let j = 0; j < vocab; j++) order[j] = j;
    // A full sort is O(V log V) per position: small next to the teacher's LM head (V·dim).
    order.sort((a, b) => logits[o + b] - logits[o + a] || a - b);
    for (let i = 0; i < k; i++) {
      ids[r * k + i] = order[i];
      logProbs[r * k + i] = logits[o + order[i]] / temperature - lse;
    }
  }
  return { ids, logProbs };
}
