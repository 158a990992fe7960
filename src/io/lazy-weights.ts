// Lazy weights: a model opened from a file holds its weights allocated but unread; each part of
// the model (the embedding, a layer, the final norm with the head) is read from the file the
// first time the forward pass reaches it, straight into backend memory in bounded chunks.
// Tensors the model never uses are never read. A failed read poisons the model: every later use
// throws the same one-line error, so nothing runs silently on half-filled weights.
//
// Fusion (nn/fusion.ts) stacks matrices: `stack` sends the parts' rows into the fused matrix as
// they are read, so the separate parts never fill backend memory and the fused model stays lazy.
import { type ByteSource, readInto } from "../format/byte-source.js";
import type { DeferredWeights, Weight } from "../nn/weight.js";
import { Tensor } from "../tensor/tensor.js";
import { type Part, partOf } from "../nn/placement.js";

/**
 * Bytes read from the file per step: bounds the host staging copies (bytes and decoded floats:
 * two such buffers at F32). 256 KiB reads cost nothing measurable in time.
 */
export const CHUNK_BYTES = 1 << 18;

/** Reused host buffers of the chunked fills: file bytes and decoded floats. */
export class Staging {
  private b = new Uint8Array(0);
  private f = new Float32Array(0);
  bytes(n: number): Uint8Array {
    if (this.b.length < n) this.b = new Uint8Array(n);
    return this.b.subarray(0, n);
  }
  floats(n: number): Float32Array {
    if (this.f.length < n) this.f = new Float32Array(n);
    return this.f.subarray(0, n);
  }
}

/**
 * Where a tensor's rows land: rows row0, row0 + 1, … of `weight` (a float tensor or a quantized
 * matrix); float values times the gain of their column (an RMSNorm gain fused into the matrix).
 * With `block`, in blocks of `rows` rows, block b from row row0 + b·stride (no gain).
 */
export interface RowTarget {
  weight: Weight;
  row0: number;
  gain: Tensor | null;
  block?: { rows: number; stride: number };
}

/** Reads one tensor of the file into a target. */
export type TensorReader = (target: RowTarget) => void;

interface Entry {
  /** The tensor's name in the file, for messages. */
  name: string;
  part: Part;
  read: TensorReader;
  target: RowTarget;
  done: boolean;
}

export class LazyWeights implements DeferredWeights {
  /** The fills' staging buffers (garbage-free reads: a fresh buffer per chunk would pile up until GC). */
  staging = new Staging();
  private readonly pending = new Map<Part, Entry[]>();
  /** Unread entries by the weight they fill (for stack and for gains). */
  private readonly byWeight = new Map<Weight, Entry>();
  private failure: Error | null = null;
  private closed = false;

  /**
   * `sources`: the open files the fills read; closed once everything is read, or on close().
   * `keepOpen`: only on close() (a model that pages experts from them reads them all its life).
   */
  constructor(
    private readonly sources: ByteSource[],
    private readonly opts: { keepOpen?: boolean } = {},
  ) {}

  /** Register tensor `name` of the file, which fills `weight` (HF name `hfName`, which gives its part). */
  add(hfName: string, name: string, weight: Weight, read: TensorReader): void {
    const part = partOf(hfName);
    let entries = this.pending.get(part);
    if (entries === undefined) this.pending.set(part, (entries = []));
    const entry = { name, part, read, target: { weight, row0: 0, gain: null }, done: false };
    entries.push(entry);
    this.byWeight.set(weight, entry);
  }

  /** Parts not yet read (for tests and reports). */
  get pendingParts(): number {
    return this.pending.size;
  }

  stack(parts: readonly Weight[], target: Weight, gain: Tensor | null, blockRows?: number): boolean {
    const entries = parts.map((w) => this.byWeight.get(w));
    // Only unread parts of one part of the model (read together, so the target fills at once).
    if (entries.some((e) => e === undefined || e.part !== entries[0]!.part)) return false;
    if (blockRows !== undefined && gain !== null) throw new Error("stack: interleaved blocks take no gain");
    let row0 = 0;
    parts.forEach((w, i) => {
      const block = blockRows === undefined ? undefined : { rows: blockRows, stride: parts.length * blockRows };
      entries[i]!.target = { weight: target, row0: block ? i * blockRows! : row0, gain, block };
      row0 += w.size / w.shape[w.shape.length - 1];
      this.byWeight.delete(w);
    });
    return true;
  }

  ensure(part: Part): void {
    if (this.failure) throw this.failure;
    const entries = this.pending.get(part);
    if (entries === undefined) return;
    for (const e of entries) this.fill(e);
    this.pending.delete(part);
    if (this.pending.size === 0 && !this.opts.keepOpen) this.close(); // everything is in memory: the files are not needed
  }

  private fill(e: Entry): void {
    if (e.done) return;
    // A gain is read before the rows it scales (it is a tensor of the same part).
    const gain = e.target.gain === null ? undefined : this.byWeight.get(e.target.gain);
    if (gain !== undefined) this.fill(gain);
    try {
      e.read(e.target);
    } catch (err) {
      this.failure = new Error(`cannot read tensor ${e.name} from the model file: ${(err as Error).message.replace(/\s+/g, " ")}`);
      this.close();
      throw this.failure;
    }
    e.done = true;
    this.byWeight.delete(e.target.weight);
  }

  ensureAll(): void {
    for (const part of [...this.pending.keys()]) this.ensure(part);
    if (this.failure) throw this.failure;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.staging = new Staging();
    for (const s of this.sources) s.close();
  }
}

/** Rows of file bytes to floats: `rows` whole rows of `bytes` decoded into `into`. */
export type RowDecoder = (bytes: Uint8Array, rows: number, into: Float32Array) => Float32Array;

/**
 * Read `rows` rows of `rowBytes` bytes each, starting at file offset `offset`, into `target`:
 * file row r lands in row target.row0 + dest(r) (a RoPE permutation; by default r). A quantized
 * target takes the bytes as they are; a float one takes `decode`'s floats, times the target's
 * gain. At most about CHUNK_BYTES are read at a time, into `staging`'s reused buffers, so no host
 * copy of the whole tensor exists.
 */
export function readRows(source: ByteSource, offset: number, rows: number, rowBytes: number, decode: RowDecoder | null, target: RowTarget, staging: Staging, dest?: (row: number) => number): void {
  const { weight, row0, block } = target;
  // The target row of file row r: moved by `dest`, then placed in its block.
  const mapped = dest !== undefined || block !== undefined;
  const rowOf = (r: number): number => {
    const q = dest === undefined ? r : dest(r);
    return row0 + (block === undefined ? q : Math.floor(q / block.rows) * block.stride + (q % block.rows));
  };
  const step = Math.max(1, Math.floor(CHUNK_BYTES / rowBytes));
  for (let r0 = 0; r0 < rows; r0 += step) {
    const n = Math.min(step, rows - r0);
    const bytes = staging.bytes(n * rowBytes);
    readInto(source, offset + r0 * rowBytes, bytes);
    if (!(weight instanceof Tensor)) {
      if (!mapped) weight.writeRows(row0 + r0, bytes);
      else for (let r = 0; r < n; r++) weight.writeRows(rowOf(r0 + r), bytes.subarray(r * rowBytes, (r + 1) * rowBytes));
      continue;
    }
    if (decode === null) throw new Error("readRows: a float target needs a decoder");
    const cols = weight.shape[weight.shape.length - 1];
    const values = decode(bytes, n, staging.floats(n * cols));
    if (!mapped) weight.backend.write(weight.data, values, (row0 + r0) * cols);
    else for (let r = 0; r < n; r++) weight.backend.write(weight.data, values.subarray(r * cols, (r + 1) * cols), rowOf(r0 + r) * cols);
  }
  // The gain (read before these rows) multiplies their columns on the backend.
  if (weight instanceof Tensor && target.gain !== null) {
    const cols = weight.shape[weight.shape.length - 1];
    weight.backend.scaleColumns(weight.data, target.gain.data, row0 * cols, rows, cols);
  }
}

/** The destination row of file row `r` when ggml's adjacent-pair RoPE rows become HF's halves (see permuteRopeToHalf). */
export function ropeRowToHalf(rows: number, nHeads: number): (r: number) => number {
  const hd = rows / nHeads, half = hd / 2;
  return (r) => {
    const h = Math.floor(r / hd), k = r % hd;
    return h * hd + (k % 2) * half + (k >> 1);
  };
}
