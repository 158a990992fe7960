// A weight matrix that stays quantized in backend memory (ggml Q8_0 / Q4_0 blocks): four to
// seven times smaller than f32, and inference-only — it has no gradient and no float copy.
import type { Backend, QBuf, QuantType } from "../backend/backend.js";

export class QuantizedWeight {
  private buf: QBuf | null;

  constructor(
    readonly backend: Backend,
    readonly type: QuantType,
    /** [out, in], as a float weight of nn.Linear. */
    readonly shape: readonly [number, number],
    bytes: Uint8Array,
  ) {
    this.buf = backend.allocQuantized(type, shape[0], shape[1], bytes);
  }

  get data(): QBuf {
    if (this.buf === null) throw new Error("quantized weight used after dispose");
    return this.buf;
  }

  /** Number of weights it stands for. */
  get size(): number {
    return this.shape[0] * this.shape[1];
  }

  dispose(): void {
    if (this.buf === null) return;
    this.backend.freeQuantized(this.buf);
    this.buf = null;
  }
}
