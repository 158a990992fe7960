// Lazy weights: a model opened from a file holds its weights allocated but unread; each part of
// the model (the embedding, a layer, the final norm with the head) is read from the file the
// first time the forward pass reaches it, straight into the backend buffer in bounded chunks.
// Tensors the model never uses are never read. A failed read poisons the model: every later use
// throws the same one-line error, so nothing runs silently on half-filled weights.
//
// Fusion (nn/fusion.ts) combines weights' values, so Llama.fuse() reads all parts first.
import { type ByteSource, readInto } from "./byte-source.js";
import type { DeferredWeights } from "../nn/weight.js";
import type { Tensor } from "../tensor/tensor.js";

export type Part = "embed" | "head" | number;

/** The part of the model an HF parameter name belongs to (lm_head and model.norm are "head"). */
export function partOf(name: string): Part {
  const m = /^model\.layers\.(\d+)\./.exec(name);
  if (m) return Number(m[1]);
  return name === "model.embed_tokens.weight" ? "embed" : "head";
}

/** Bytes read from the file per step when filling a float tensor: bounds the host staging copy. */
export const CHUNK_BYTES = 1 << 20;

/** Reused host buffers of the chunked fills: file bytes and decoded floats, one chunk each. */
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

export class LazyWeights implements DeferredWeights {
  /** The fills' staging buffers (garbage-free reads: a fresh buffer per chunk would pile up until GC). */
  staging = new Staging();
  private readonly pending = new Map<Part, { name: string; fill: () => void }[]>();
  private failure: Error | null = null;
  private closed = false;

  /** `sources`: the open files the fills read; closed once everything is read, or on close(). */
  constructor(private readonly sources: ByteSource[]) {}

  /** Register the fill of tensor `name` (its file name, for messages) under the part of `hfName`. */
  add(hfName: string, name: string, fill: () => void): void {
    const part = partOf(hfName);
    let fills = this.pending.get(part);
    if (fills === undefined) this.pending.set(part, (fills = []));
    fills.push({ name, fill });
  }

  /** Parts not yet read (for tests and reports). */
  get pendingParts(): number {
    return this.pending.size;
  }

  ensure(part: Part): void {
    if (this.failure) throw this.failure;
    const fills = this.pending.get(part);
    if (fills === undefined) return;
    for (const f of fills) {
      try {
        f.fill();
      } catch (e) {
        this.failure = new Error(`cannot read tensor ${f.name} from the model file: ${(e as Error).message.replace(/\s+/g, " ")}`);
        this.close();
        throw this.failure;
      }
    }
    this.pending.delete(part);
    if (this.pending.size === 0) this.close(); // everything is in memory: the files are not needed
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
 * Fill float tensor `t` from `rows` rows of `rowBytes` bytes each starting at file offset
 * `offset`, `decode` turning a run of whole rows into floats. Row r of the file lands in row
 * `dest(r)` of `t` (a RoPE permutation), by default row r. At most about CHUNK_BYTES are read at
 * a time, into `staging`'s reused buffers, so no host copy of the whole tensor exists.
 */
export function fillRows(source: ByteSource, offset: number, rows: number, rowBytes: number, decode: RowDecoder, t: Tensor, staging: Staging, dest?: (row: number) => number): void {
  const cols = t.size / rows;
  const step = Math.max(1, Math.floor(CHUNK_BYTES / rowBytes));
  for (let r0 = 0; r0 < rows; r0 += step) {
    const n = Math.min(step, rows - r0);
    const bytes = staging.bytes(n * rowBytes);
    readInto(source, offset + r0 * rowBytes, bytes);
    const values = decode(bytes, n, staging.floats(n * cols));
    if (dest === undefined) t.backend.write(t.data, values, r0 * cols);
    else for (let r = 0; r < n; r++) t.backend.write(t.data, values.subarray(r * cols, (r + 1) * cols), dest(r0 + r) * cols);
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
