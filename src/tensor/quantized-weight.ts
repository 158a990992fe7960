// A weight matrix that stays quantized in backend memory (ggml Q8_0 / Q4_0 blocks, or F16): two
// to seven times smaller than f32, and inference-only — it has no gradient and no float copy.
import type { Backend, QBuf, QuantType } from "../backend/backend.js";

export class QuantizedWeight {
  private buf: QBuf | null;
  private disposed = false;

  constructor(
    readonly backend: Backend,
    readonly type: QuantType,
    /** [out, in], as a float weight of nn.Linear. */
    readonly shape: readonly [number, number],
    /**
     * The blocks; null defers them to writeRows (a lazily loaded model file, see io/lazy-weights.ts):
     * a weight that is never written never takes backend memory.
     */
    bytes: Uint8Array | null,
  ) {
    this.buf = bytes === null ? null : backend.allocQuantized(type, shape[0], shape[1], bytes);
  }

  /** Copy whole rows of blocks in from row `row` on; the first write of a deferred weight allocates it. */
  writeRows(row: number, bytes: Uint8Array): void {
    if (this.disposed) throw new Error("quantized weight used after dispose");
    this.buf ??= this.backend.allocQuantized(this.type, this.shape[0], this.shape[1]);
    this.backend.writeQuantized(this.buf, row, bytes);
  }

  get data(): QBuf {
    if (this.buf === null) throw new Error(this.disposed ? "quantized weight used after dispose" : "quantized weight used before it was loaded");
    return this.buf;
  }

  /** Number of weights it stands for. */
  get size(): number {
    return this.shape[0] * this.shape[1];
  }

  dispose(): void {
    this.disposed = true; // a deferred weight disposed unwritten is never written later
    if (this.buf === null) return;
    this.backend.freeQuantized(this.buf);
    this.buf = null;
  }
}
