// The stages of the dedup pipeline over files (formats in dedup/format.ts), after datatrove
// 0.10.0's MinhashDedupSignature → MinhashDedupBuckets → MinhashDedupCluster → MinhashDedupFilter:
//   writeSignatures  one shard's documents → its signature file: each document's input line and
//                    signature, and per band the (key, index) entries sorted by key (datatrove
//                    writes one file per bucket; here one file holds every band's section);
//   findPairs        the signature files of every shard → candidate pairs: per band a k-way merge
//                    of the sorted sections (memory: one read buffer per file), a pair for every
//                    two documents with the same key whose band values are read back and equal;
//   findClusters     pairs (+ the signature files) → union-find, the lowest (shard, index) of each
//                    cluster kept, a removal list with each removed document's kept one, its line
//                    and the pair's estimated Jaccard (both signatures read back from their files);
//   readRemovals     one shard's part of the removal list, for filtering it.
// Memory is bounded by signatures, never text: writeSignatures holds 12 bytes a document per band
// (to sort the band keys), findPairs a buffer per file, findClusters the documents in pairs.
// Every output is written beside its name and renamed into place when complete (a killed stage
// leaves no partial file). Exact dedup runs through the same stages with the document's 128-bit
// hash as its one-band "signature".
import * as fs from "node:fs";
import * as path from "node:path";
import type { DataRecord } from "./records.js";
import { exactHash } from "./dedup/exact.js";
import {
  ALL_BANDS, BAND_ENTRY_BYTES, type DedupHeader, type DedupOptions, HEADER_BYTES, PAIR_BYTES, type PairsHeader, REMOVAL_BYTES,
  type RemovalsHeader, type SignaturesHeader, bandSectionOffset, decodeHeader, encodeHeader, kindName, optionsMismatch,
  shardChecksum, signatureRecordBytes,
} from "./dedup/format.js";
import { bandKey, estimatedJaccard, isEmptySignature, minhashSigner } from "./dedup/minhash.js";
import { UnionFind } from "./dedup/union-find.js";

/** Output written to `file.tmp-PID` in 1 MiB chunks, the header last, then renamed to `file`. */
class BinaryWriter {
  private readonly fd: number;
  private readonly tmp: string;
  private readonly buf = new Uint8Array(1 << 20);
  private readonly view = new DataView(this.buf.buffer);
  private pos = 0;
  private done = false;

  constructor(readonly file: string) {
    const dir = path.dirname(path.resolve(file));
    if (!fs.existsSync(dir)) throw new Error(`no such directory for ${file}: ${dir}`);
    if (fs.existsSync(file) && !fs.statSync(file).isFile()) throw new Error(`${file} is not a regular file: a dedup stage writes its binary output to a file`);
    this.tmp = `${file}.tmp-${process.pid}`;
    this.fd = fs.openSync(this.tmp, "w");
    fs.writeSync(this.fd, new Uint8Array(HEADER_BYTES));
  }

  u32(v: number): void {
    if (this.pos + 4 > this.buf.length) this.flush();
    this.view.setUint32(this.pos, v >>> 0, true);
    this.pos += 4;
  }

  f32(v: number): void {
    if (this.pos + 4 > this.buf.length) this.flush();
    this.view.setFloat32(this.pos, v, true);
    this.pos += 4;
  }

  words(w: ArrayLike<number>): void {
    for (let i = 0; i < w.length; i++) this.u32(w[i]);
  }

  private flush(): void {
    let off = 0;
    while (off < this.pos) off += fs.writeSync(this.fd, this.buf, off, this.pos - off);
    this.pos = 0;
  }

  finish(header: DedupHeader): void {
    this.flush();
    fs.writeSync(this.fd, encodeHeader(header), 0, HEADER_BYTES, 0);
    fs.fsyncSync(this.fd);
    fs.closeSync(this.fd);
    this.done = true;
    fs.renameSync(this.tmp, this.file);
  }

  abandon(): void {
    if (this.done) return;
    this.done = true;
    fs.closeSync(this.fd);
    fs.rmSync(this.tmp, { force: true });
  }
}

/** A growing array of u32. */
class U32List {
  data = new Uint32Array(1024);
  length = 0;
  push(v: number): void {
    if (this.length === this.data.length) {
      const grown = new Uint32Array(2 * this.data.length);
      grown.set(this.data);
      this.data = grown;
    }
    this.data[this.length++] = v;
  }
}

/** The order of `n` 64-bit keys (hi, lo) ascending, equal keys in index order: LSD radix sort, 4 passes of 16 bits. */
export function sortByKey(lo: Uint32Array, hi: Uint32Array, n: number): Uint32Array {
  let perm = new Uint32Array(n), next = new Uint32Array(n);
  for (let i = 0; i < n; i++) perm[i] = i;
  const count = new Uint32Array(65536);
  for (let pass = 0; pass < 4; pass++) {
    const words = pass < 2 ? lo : hi, shift = (pass & 1) * 16;
    count.fill(0);
    for (let j = 0; j < n; j++) count[(words[perm[j]] >>> shift) & 0xffff]++;
    let sum = 0;
    for (let d = 0; d < 65536; d++) {
      const c = count[d];
      count[d] = sum;
      sum += c;
    }
    for (let j = 0; j < n; j++) {
      const p = perm[j];
      next[count[(words[p] >>> shift) & 0xffff]++] = p;
    }
    [perm, next] = [next, perm];
  }
  return perm;
}

/** A dedup file opened for reading: its header checked against its size. */
export interface DedupFile<H extends DedupHeader = DedupHeader> {
  name: string;
  fd: number;
  header: H;
}

export function openDedupFile(name: string): DedupFile {
  let fd: number;
  try {
    fd = fs.openSync(name, "r");
  } catch {
    throw new Error(`file not found: ${name}`);
  }
  try {
    const size = fs.fstatSync(fd).size;
    const head = new Uint8Array(HEADER_BYTES);
    const got = size >= HEADER_BYTES ? fs.readSync(fd, head, 0, HEADER_BYTES, 0) : 0;
    return { name, fd, header: decodeHeader(head.subarray(0, got), name, size) };
  } catch (e) {
    fs.closeSync(fd);
    throw e;
  }
}

function closeAll(files: DedupFile[]): void {
  for (const f of files) fs.closeSync(f.fd);
}

/** Exactly `bytes` bytes at `position`, as little-endian words. */
function readWords(fd: number, position: number, count: number, out = new Uint32Array(count)): Uint32Array {
  const bytes = new Uint8Array(4 * count);
  let off = 0;
  while (off < bytes.length) {
    const n = fs.readSync(fd, bytes, off, bytes.length - off, position + off);
    if (n === 0) throw new Error("unexpected end of a dedup file");
    off += n;
  }
  const v = new DataView(bytes.buffer);
  for (let i = 0; i < count; i++) out[i] = v.getUint32(4 * i, true);
  return out;
}

export interface SignatureStats {
  docs: number;
  /** Documents with band entries (MinHash: with at least one word). */
  entries: number;
}

/**
 * Stage 1: the signature file of one shard. `records` are its documents in order (their index
 * is their position in it); `onDocument` is called after each (for progress).
 */
export async function writeSignatures(records: AsyncIterable<DataRecord>, options: DedupOptions, shard: number, out: string, onDocument?: (docs: number) => void): Promise<SignatureStats> {
  if (!Number.isInteger(shard) || shard < 0 || shard > 0xfffffffe) throw new Error(`shard id must be a whole number in [0, 2³² − 1) (got ${shard})`);
  const { bands, rows } = options;
  const sign = options.mode === "exact" ? exactHash : minhashSigner({ ngram: options.ngram, bands, rows, seed: options.seed });
  const lo = Array.from({ length: bands }, () => new U32List());
  const hi = Array.from({ length: bands }, () => new U32List());
  const index = new U32List();
  const w = new BinaryWriter(out);
  let docs = 0;
  try {
    for await (const r of records) {
      const sig = sign(r.text);
      w.u32(r.line);
      w.words(sig);
      if (options.mode === "exact" || !isEmptySignature(sig)) {
        for (let b = 0; b < bands; b++) {
          const [l, h] = bandKey(sig, b, rows);
          lo[b].push(l);
          hi[b].push(h);
        }
        index.push(docs);
      }
      docs++;
      if (docs > 0xffffffff - 1) throw new Error(`a shard holds at most 2³² − 1 documents; split ${out}'s input`);
      onDocument?.(docs);
    }
    const m = index.length;
    for (let b = 0; b < bands; b++) {
      const order = sortByKey(lo[b].data, hi[b].data, m);
      const l = lo[b].data, h = hi[b].data, ix = index.data;
      for (let k = 0; k < m; k++) {
        const i = order[k];
        w.u32(l[i]);
        w.u32(h[i]);
        w.u32(ix[i]);
      }
      lo[b] = hi[b] = new U32List();
    }
    w.finish({ kind: "signatures", options, shard, docs, entries: m });
    return { docs, entries: m };
  } catch (e) {
    w.abandon();
    throw e;
  }
}

/** Signature files opened, of the same options, distinct shards, sorted by shard id. */
function openSignatureSet(files: DedupFile[]): DedupFile<SignaturesHeader>[] {
  const sigs = files as DedupFile<SignaturesHeader>[];
  const seen = new Map<number, string>();
  for (const f of sigs) {
    const clash = optionsMismatch(sigs[0].name, sigs[0].header.options, f.name, f.header.options);
    if (clash) throw new Error(clash);
    const other = seen.get(f.header.shard);
    if (other !== undefined) throw new Error(`${other} and ${f.name} are both shard ${f.header.shard}: give each shard its own --shard-id`);
    seen.set(f.header.shard, f.name);
  }
  return [...sigs].sort((a, b) => a.header.shard - b.header.shard);
}

function byKind(files: DedupFile[], kind: DedupHeader["kind"], stage: string, allowed: DedupHeader["kind"][]): DedupFile[] {
  for (const f of files) if (!allowed.includes(f.header.kind)) throw new Error(`${f.name} is ${kindName(f.header.kind)}; ${stage} reads ${allowed.map(kindName).join(" and ")}s`);
  return files.filter((f) => f.header.kind === kind);
}

/** One file's sorted band section, read in chunks. */
class BandReader {
  private readonly chunk = new Uint8Array(BAND_ENTRY_BYTES * 8192);
  private readonly view = new DataView(this.chunk.buffer);
  private pos: number;
  private readonly end: number;
  private at = 0;
  private have = 0;
  lo = 0;
  hi = 0;
  index = 0;

  constructor(private readonly fd: number, start: number, entries: number) {
    this.pos = start;
    this.end = start + entries * BAND_ENTRY_BYTES;
  }

  /** Move to the next entry; false at the end. */
  next(): boolean {
    if (this.at === this.have) {
      const want = Math.min(this.chunk.length, this.end - this.pos);
      if (want <= 0) return false;
      let off = 0;
      while (off < want) {
        const n = fs.readSync(this.fd, this.chunk, off, want - off, this.pos + off);
        if (n === 0) throw new Error("unexpected end of a signature file");
        off += n;
      }
      this.pos += want;
      this.have = want;
      this.at = 0;
    }
    this.lo = this.view.getUint32(this.at, true);
    this.hi = this.view.getUint32(this.at + 4, true);
    this.index = this.view.getUint32(this.at + 8, true);
    this.at += BAND_ENTRY_BYTES;
    return true;
  }
}

export interface PairStats {
  shards: number;
  docs: number;
  pairs: number;
}

/**
 * Stage 2: candidate pairs from every shard's signature file, for band `band` or (null) all
 * bands. Equal keys are confirmed by the band's values themselves (read back from the signature
 * section), so a 64-bit key collision never makes a pair.
 */
export function findPairs(sigFiles: string[], band: number | null, out: string): PairStats {
  if (sigFiles.length === 0) throw new Error("buckets needs the signature files of every shard");
  const opened: DedupFile[] = [];
  try {
    for (const name of sigFiles) opened.push(openDedupFile(name));
    byKind(opened, "signatures", "buckets", ["signatures"]);
    const files = openSignatureSet(opened);
    const o = files[0].header.options;
    if (band !== null && (band < 0 || band >= o.bands)) throw new Error(`--band ${band} is not a band of these signatures (0 to ${o.bands - 1})`);
    const shards = files.map((f) => ({ shard: f.header.shard, docs: f.header.docs }));
    const w = new BinaryWriter(out);
    let pairs = 0;
    try {
      for (const b of band === null ? Array.from({ length: o.bands }, (_, i) => i) : [band]) {
        mergeBand(files, b, (fa, ia, fb, ib) => {
          w.u32(files[fa].header.shard);
          w.u32(ia);
          w.u32(files[fb].header.shard);
          w.u32(ib);
          pairs++;
        });
      }
      w.finish({ kind: "pairs", options: o, band: band ?? ALL_BANDS, shards: files.length, shardChecksum: shardChecksum(shards), pairs });
    } catch (e) {
      w.abandon();
      throw e;
    }
    return { shards: files.length, docs: shards.reduce((s, x) => s + x.docs, 0), pairs };
  } finally {
    closeAll(opened);
  }
}

/** The k-way merge of band `band` over the files (sorted by shard): `emit` for each confirmed pair, earlier document first. */
function mergeBand(files: DedupFile<SignaturesHeader>[], band: number, emit: (fa: number, ia: number, fb: number, ib: number) => void): void {
  const readers = files.map((f) => new BandReader(f.fd, bandSectionOffset(f.header, band), f.header.entries));
  const { rows } = files[0].header.options;
  const recordBytes = signatureRecordBytes(files[0].header.options);
  const valuesOf = (f: number, index: number): Uint32Array => readWords(files[f].fd, HEADER_BYTES + index * recordBytes + 4 + 4 * band * rows, rows);
  const less = (a: number, b: number): boolean => {
    const x = readers[a], y = readers[b];
    if (x.hi !== y.hi) return x.hi < y.hi;
    if (x.lo !== y.lo) return x.lo < y.lo;
    return a !== b ? a < b : x.index < y.index;
  };
  // A binary min-heap of reader numbers.
  const heap: number[] = [];
  const siftDown = (i: number): void => {
    for (;;) {
      const l = 2 * i + 1, r = l + 1;
      let m = i;
      if (l < heap.length && less(heap[l], heap[m])) m = l;
      if (r < heap.length && less(heap[r], heap[m])) m = r;
      if (m === i) return;
      [heap[i], heap[m]] = [heap[m], heap[i]];
      i = m;
    }
  };
  for (let f = 0; f < readers.length; f++) if (readers[f].next()) heap.push(f);
  for (let i = (heap.length >> 1) - 1; i >= 0; i--) siftDown(i);

  let runLo = 0, runHi = 0, first = -1, firstIndex = 0;
  // The distinct band values of the current run of equal keys (almost always one), each with its first document.
  let groups: Array<{ values: Uint32Array; f: number; index: number }> | null = null;
  while (heap.length > 0) {
    const f = heap[0], r = readers[f];
    const lo = r.lo, hi = r.hi, index = r.index;
    if (first >= 0 && lo === runLo && hi === runHi) {
      if (groups === null) groups = [{ values: valuesOf(first, firstIndex), f: first, index: firstIndex }];
      const values = valuesOf(f, index);
      const g = groups.find((x) => x.values.every((v, k) => v === values[k]));
      if (g) emit(g.f, g.index, f, index);
      else groups.push({ values, f, index });
    } else {
      runLo = lo;
      runHi = hi;
      first = f;
      firstIndex = index;
      groups = null;
    }
    if (r.next()) siftDown(0);
    else {
      heap[0] = heap[heap.length - 1];
      heap.pop();
      if (heap.length > 0) siftDown(0);
    }
  }
}

export interface ClusterStats {
  shards: number;
  docs: number;
  pairs: number;
  /** Documents in some pair. */
  clustered: number;
  removed: number;
}

/**
 * Stage 3: the removal list. `files` are the signature files of every shard and the pairs files
 * of every band (each band exactly once), in any order.
 */
export function findClusters(files: string[], out: string): ClusterStats {
  const opened: DedupFile[] = [];
  try {
    for (const name of files) opened.push(openDedupFile(name));
    const sigOpened = byKind(opened, "signatures", "clusters", ["signatures", "pairs"]);
    const pairFiles = opened.filter((f) => f.header.kind === "pairs") as DedupFile<PairsHeader>[];
    if (sigOpened.length === 0) throw new Error("clusters needs the signature files of every shard as well as the pairs files (for the kept documents' lines and the Jaccard estimates)");
    if (pairFiles.length === 0) throw new Error("clusters needs the pairs files of every band (from buckets)");
    const sigs = openSignatureSet(sigOpened);
    const o = sigs[0].header.options;
    const shards = sigs.map((f) => ({ shard: f.header.shard, docs: f.header.docs }));
    const checksum = shardChecksum(shards);
    const covered: string[] = new Array(o.bands);
    for (const p of pairFiles) {
      const clash = optionsMismatch(sigs[0].name, o, p.name, p.header.options);
      if (clash) throw new Error(clash);
      if (p.header.shards !== sigs.length || p.header.shardChecksum !== checksum) {
        throw new Error(`${p.name} was made from other signature files (${p.header.shards} shards) than the ${sigs.length} given: give clusters the signature files buckets read`);
      }
      const bands = p.header.band === ALL_BANDS ? Array.from({ length: o.bands }, (_, i) => i) : [p.header.band];
      for (const b of bands) {
        if (b >= o.bands) throw new Error(`${p.name}: band ${b} of ${o.bands}: corrupt pairs file`);
        if (covered[b] !== undefined) throw new Error(`band ${b} is in both ${covered[b]} and ${p.name}: give each band's pairs once`);
        covered[b] = p.name;
      }
    }
    const missing = Array.from({ length: o.bands }, (_, b) => b).filter((b) => covered[b] === undefined);
    if (missing.length > 0) throw new Error(`no pairs for band${missing.length > 1 ? "s" : ""} ${missing.join(", ")} of ${o.bands}: run buckets --band for ${missing.length > 1 ? "them" : "it"} (or without --band for all)`);

    // Global ids in (shard, index) order.
    const offsets: number[] = [];
    const position = new Map<number, number>();
    let total = 0;
    sigs.forEach((f, i) => {
      offsets.push(total);
      position.set(f.header.shard, i);
      total += f.header.docs;
    });
    const globalId = (name: string, shard: number, index: number): number => {
      const i = position.get(shard);
      if (i === undefined || index >= sigs[i].header.docs) throw new Error(`${name}: document ${index} of shard ${shard} is not in the signature files: corrupt pairs file`);
      return offsets[i] + index;
    };
    const uf = new UnionFind();
    let pairs = 0;
    const chunk = new Uint8Array(PAIR_BYTES * 16384), view = new DataView(chunk.buffer);
    for (const p of pairFiles) {
      const end = HEADER_BYTES + p.header.pairs * PAIR_BYTES;
      for (let pos = HEADER_BYTES; pos < end;) {
        const want = Math.min(chunk.length, end - pos);
        const got = fs.readSync(p.fd, chunk, 0, want, pos);
        if (got !== want) throw new Error(`${p.name}: unexpected end of the file`);
        for (let k = 0; k < want; k += PAIR_BYTES) {
          const a = globalId(p.name, view.getUint32(k, true), view.getUint32(k + 4, true));
          const b = globalId(p.name, view.getUint32(k + 8, true), view.getUint32(k + 12, true));
          uf.union(a, b);
          pairs++;
        }
        pos += want;
      }
    }

    const locate = (g: number): { file: DedupFile<SignaturesHeader>; index: number } => {
      let lo = 0, hi = offsets.length - 1;
      while (lo < hi) {
        const mid = (lo + hi + 1) >> 1;
        if (offsets[mid] <= g) lo = mid;
        else hi = mid - 1;
      }
      return { file: sigs[lo], index: g - offsets[lo] };
    };
    const recordWords = signatureRecordBytes(o) / 4;
    const recordOf = (d: { file: DedupFile<SignaturesHeader>; index: number }): Uint32Array => readWords(d.file.fd, HEADER_BYTES + d.index * 4 * recordWords, recordWords);
    const removals = uf.removals();
    const w = new BinaryWriter(out);
    try {
      for (const s of shards) {
        w.u32(s.shard);
        w.u32(s.docs);
      }
      for (const [g, root] of removals) {
        const removed = locate(g), kept = locate(root);
        const keptRecord = recordOf(kept);
        w.u32(removed.file.header.shard);
        w.u32(removed.index);
        w.u32(kept.file.header.shard);
        w.u32(kept.index);
        w.u32(keptRecord[0]);
        w.f32(o.mode === "exact" ? NaN : estimatedJaccard(recordOf(removed).subarray(1), keptRecord.subarray(1)));
      }
      w.finish({ kind: "removals", options: o, shards: shards.length, shardChecksum: checksum, removals: removals.length });
    } catch (e) {
      w.abandon();
      throw e;
    }
    return { shards: shards.length, docs: total, pairs, clustered: uf.size, removed: removals.length };
  } finally {
    closeAll(opened);
  }
}

export interface Removal {
  keptShard: number;
  keptIndex: number;
  keptLine: number;
  /** The estimated Jaccard of the removed and kept documents' signatures; NaN for exact. */
  jaccard: number;
}

/** Shard `shard`'s part of a removal list: its documents by index, and how many documents the shard had when signed. */
export function readRemovals(file: string, shard: number): { options: DedupOptions; docs: number; shards: number[]; removals: Map<number, Removal> } {
  const f = openDedupFile(file);
  try {
    if (f.header.kind !== "removals") throw new Error(`${file} is ${kindName(f.header.kind)}; filter's --remove reads the removal list that clusters writes`);
    const h = f.header as RemovalsHeader;
    const table = readWords(f.fd, HEADER_BYTES, 2 * h.shards);
    const shards: number[] = [];
    let docs = -1;
    for (let i = 0; i < h.shards; i++) {
      shards.push(table[2 * i]);
      if (table[2 * i] === shard) docs = table[2 * i + 1];
    }
    if (docs < 0) throw new Error(`shard ${shard} is not among the shards of ${file} (${shards.length > 12 ? `${shards.slice(0, 12).join(", ")}, …` : shards.join(", ")})`);
    const start = HEADER_BYTES + 8 * h.shards;
    const shardAt = (k: number): number => readWords(f.fd, start + k * REMOVAL_BYTES, 1)[0];
    // The records are sorted by (shard, index): find this shard's range.
    const lowerBound = (s: number): number => {
      let lo = 0, hi = h.removals;
      while (lo < hi) {
        const mid = Math.floor((lo + hi) / 2);
        if (shardAt(mid) < s) lo = mid + 1;
        else hi = mid;
      }
      return lo;
    };
    const from = lowerBound(shard), to = shard === 0xffffffff ? h.removals : lowerBound(shard + 1);
    const removals = new Map<number, Removal>();
    const bytes = new Uint8Array((to - from) * REMOVAL_BYTES);
    if (bytes.length > 0 && fs.readSync(f.fd, bytes, 0, bytes.length, start + from * REMOVAL_BYTES) !== bytes.length) throw new Error(`${file}: unexpected end of the file`);
    const v = new DataView(bytes.buffer);
    for (let k = 0; k < bytes.length; k += REMOVAL_BYTES) {
      removals.set(v.getUint32(k + 4, true), {
        keptShard: v.getUint32(k + 8, true), keptIndex: v.getUint32(k + 12, true), keptLine: v.getUint32(k + 16, true), jaccard: v.getFloat32(k + 20, true),
      });
    }
    return { options: h.options, docs, shards, removals };
  } finally {
    fs.closeSync(f.fd);
  }
}
