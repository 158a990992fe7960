// The binary files of the staged dedup pipeline (`bonsai data dedup signatures | buckets |
// clusters | filter`), so that each stage runs per shard, on any machine, and the next reads what
// it wrote. Every file starts with the same 64-byte header, little-endian u32 words after the magic:
//
//   0  magic (8 ASCII bytes)  "BNSDDSIG" signatures, "BNSDDPRS" pairs, "BNSDDRMV" removals
//   8  format version (1)
//  12  mode: 1 exact, 2 minhash
//  16  ngram (0 for exact)      20  bands (exact: 1)    24  rows (exact: 4: the 128-bit hash)
//  28  seed (0 for exact)       32  normalisation version (normalize.ts' NORMALIZE_VERSION)
//  36  documents: 0 stories, 1 lines, 2 jsonl           40  MurmurHash3_x86_32 of the text field
//  44..63  the file's own fields:
//     signatures: 44 shard id, 48 documents N, 52 band entries M (documents with shingles)
//     pairs:      44 band (0xffffffff: all), 48 shards, 52 shard-set checksum, 56 pairs (u64)
//     removals:   44 shards, 48 shard-set checksum, 56 removed documents (u64)
//
// Words 12..43 are the options: files made with different ones are refused, with both sets named.
// The body of each:
//   signatures: N documents × (u32 input line, bands·rows u32 signature; an exact file's
//     signature is the document's 128-bit exact hash), then for each band M × (u32 key low,
//     u32 key high, u32 document index) sorted by (key, index); documents without shingles
//     have no band entries.
//   pairs: 16-byte records (shard A, index A, shard B, index B), A before B in input order: two
//     documents whose band values are equal.
//   removals: the shard table, shards × (u32 shard id, u32 documents), then 24-byte records
//     (shard, index, kept shard, kept index, kept line, f32 estimated Jaccard; NaN for exact)
//     sorted by (shard, index).
// The shard-set checksum (MurmurHash3_x86_32 of the sorted (shard id, documents) words) ties a
// pairs or removals file to the signature files it came from. Browser-safe: encoding only.
import { type DocumentFormat, documentFormats } from "../documents.js";
import { murmur3x86_32, murmur3x86_32Words, utf8 } from "./hash.js";
import { MINHASH_DEFAULTS, type MinHashSettings } from "./minhash.js";
import { NORMALIZE_VERSION } from "./normalize.js";

export const HEADER_BYTES = 64;
export const FORMAT_VERSION = 1;
export const ALL_BANDS = 0xffffffff;
export const BAND_ENTRY_BYTES = 12;
export const PAIR_BYTES = 16;
export const REMOVAL_BYTES = 24;

export type DedupKind = "signatures" | "pairs" | "removals";
const MAGIC: Record<DedupKind, string> = { signatures: "BNSDDSIG", pairs: "BNSDDPRS", removals: "BNSDDRMV" };
const KIND_NAME: Record<DedupKind, string> = { signatures: "a dedup signature file", pairs: "a dedup pairs file", removals: "a dedup removal list" };

export type DedupMode = "exact" | "minhash";

/** What a file's documents were compared by: everything that must agree between files. */
export interface DedupOptions {
  mode: DedupMode;
  ngram: number;
  bands: number;
  rows: number;
  seed: number;
  normalize: number;
  documents: DocumentFormat;
  textFieldHash: number;
}

/** The options of a run: exact (one "band", the 4-word hash) or MinHash with its settings. */
export function dedupOptions(mode: DedupMode, minhash: MinHashSettings = MINHASH_DEFAULTS, documents: DocumentFormat = "jsonl", textField = "text"): DedupOptions {
  const m = mode === "exact" ? { ngram: 0, bands: 1, rows: 4, seed: 0 } : { ngram: minhash.ngram, bands: minhash.bands, rows: minhash.rows, seed: minhash.seed };
  return { mode, ...m, normalize: NORMALIZE_VERSION, documents, textFieldHash: murmur3x86_32(utf8(textField)) };
}

/** The flags that make files with these options ("--minhash --ngram 5 --bands 14 --rows 8 --seed 1, --documents jsonl"). */
export function describeOptions(o: DedupOptions): string {
  const what = o.mode === "exact" ? "--exact" : `--minhash --ngram ${o.ngram} --bands ${o.bands} --rows ${o.rows} --seed ${o.seed}`;
  return `${what}, --documents ${o.documents}${o.normalize === NORMALIZE_VERSION ? "" : `, normalisation version ${o.normalize}`}`;
}

export function sameOptions(a: DedupOptions, b: DedupOptions): boolean {
  return a.mode === b.mode && a.ngram === b.ngram && a.bands === b.bands && a.rows === b.rows && a.seed === b.seed &&
    a.normalize === b.normalize && a.documents === b.documents && a.textFieldHash === b.textFieldHash;
}

/** Why two files' options differ, naming both, or null when they agree. */
export function optionsMismatch(nameA: string, a: DedupOptions, nameB: string, b: DedupOptions): string | null {
  if (sameOptions(a, b)) return null;
  const da = describeOptions(a), db = describeOptions(b);
  const field = da === db ? " (a different --text-field)" : "";
  return `${nameB} was made with ${db} but ${nameA} with ${da}${field}: every file of one dedup must be made with the same options`;
}

export interface SignaturesHeader {
  kind: "signatures";
  options: DedupOptions;
  shard: number;
  docs: number;
  entries: number;
}

export interface PairsHeader {
  kind: "pairs";
  options: DedupOptions;
  band: number;
  shards: number;
  shardChecksum: number;
  pairs: number;
}

export interface RemovalsHeader {
  kind: "removals";
  options: DedupOptions;
  shards: number;
  shardChecksum: number;
  removals: number;
}

export type DedupHeader = SignaturesHeader | PairsHeader | RemovalsHeader;

/** Bytes of a signature file's per-document record. */
export function signatureRecordBytes(o: DedupOptions): number {
  return 4 + 4 * o.bands * o.rows;
}

/** The byte offset of band `band`'s sorted entries in a signature file. */
export function bandSectionOffset(h: SignaturesHeader, band: number): number {
  return HEADER_BYTES + h.docs * signatureRecordBytes(h.options) + band * h.entries * BAND_ENTRY_BYTES;
}

/** The size a file with this header must have. */
export function expectedFileBytes(h: DedupHeader): number {
  if (h.kind === "signatures") return bandSectionOffset(h, h.options.bands);
  if (h.kind === "pairs") return HEADER_BYTES + h.pairs * PAIR_BYTES;
  return HEADER_BYTES + 8 * h.shards + h.removals * REMOVAL_BYTES;
}

/** The checksum of a set of shards, each (shard id, documents), in any order. */
export function shardChecksum(shards: Array<{ shard: number; docs: number }>): number {
  const sorted = [...shards].sort((x, y) => x.shard - y.shard);
  return murmur3x86_32Words(sorted.flatMap((s) => [s.shard, s.docs]), 0, 2 * sorted.length);
}

export function encodeHeader(h: DedupHeader): Uint8Array {
  const bytes = new Uint8Array(HEADER_BYTES);
  const v = new DataView(bytes.buffer);
  const magic = MAGIC[h.kind];
  for (let i = 0; i < 8; i++) bytes[i] = magic.charCodeAt(i);
  const o = h.options;
  const words = [FORMAT_VERSION, o.mode === "exact" ? 1 : 2, o.ngram, o.bands, o.rows, o.seed, o.normalize, documentFormats.indexOf(o.documents), o.textFieldHash];
  words.forEach((w, i) => v.setUint32(8 + 4 * i, w >>> 0, true));
  const u64 = (at: number, n: number): void => {
    v.setUint32(at, n % 0x100000000, true);
    v.setUint32(at + 4, Math.floor(n / 0x100000000), true);
  };
  if (h.kind === "signatures") {
    v.setUint32(44, h.shard, true);
    v.setUint32(48, h.docs, true);
    v.setUint32(52, h.entries, true);
  } else if (h.kind === "pairs") {
    v.setUint32(44, h.band >>> 0, true);
    v.setUint32(48, h.shards, true);
    v.setUint32(52, h.shardChecksum >>> 0, true);
    u64(56, h.pairs);
  } else {
    v.setUint32(44, h.shards, true);
    v.setUint32(48, h.shardChecksum >>> 0, true);
    u64(56, h.removals);
  }
  return bytes;
}

/** A header read back, or an error naming `name` and what is wrong (not a dedup file, another version, …). */
export function decodeHeader(bytes: Uint8Array, name: string, fileBytes: number): DedupHeader {
  const magic = String.fromCharCode(...bytes.subarray(0, 8));
  const kind = (Object.keys(MAGIC) as DedupKind[]).find((k) => MAGIC[k] === magic);
  if (bytes.length < HEADER_BYTES || kind === undefined) throw new Error(`${name} is not a dedup signature, pairs or removal file (no BNSDD header)`);
  const v = new DataView(bytes.buffer, bytes.byteOffset, HEADER_BYTES);
  const u32 = (at: number): number => v.getUint32(at, true);
  if (u32(8) !== FORMAT_VERSION) throw new Error(`${name} is ${KIND_NAME[kind]} of format version ${u32(8)}; this bonsai reads version ${FORMAT_VERSION}`);
  const mode = u32(12), documents = documentFormats[u32(36)];
  if ((mode !== 1 && mode !== 2) || documents === undefined) throw new Error(`${name}: corrupt dedup header (mode ${mode}, documents ${u32(36)})`);
  const options: DedupOptions = {
    mode: mode === 1 ? "exact" : "minhash", ngram: u32(16), bands: u32(20), rows: u32(24), seed: u32(28),
    normalize: u32(32), documents, textFieldHash: u32(40),
  };
  const u64 = (at: number): number => u32(at) + u32(at + 4) * 0x100000000;
  const h: DedupHeader =
    kind === "signatures" ? { kind, options, shard: u32(44), docs: u32(48), entries: u32(52) }
    : kind === "pairs" ? { kind, options, band: u32(44), shards: u32(48), shardChecksum: u32(52), pairs: u64(56) }
    : { kind, options, shards: u32(44), shardChecksum: u32(48), removals: u64(56) };
  const expected = expectedFileBytes(h);
  if (fileBytes !== expected) throw new Error(`${name} is ${fileBytes} bytes but its header says ${expected}: the file is cut short or corrupt; make it again`);
  return h;
}

export function kindName(kind: DedupKind): string {
  return KIND_NAME[kind];
}
