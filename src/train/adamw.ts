// AdamW with decoupled weight decay (Loshchilov & Hutter), exactly torch.optim.AdamW.
// Which parameters decay: matrices (projections and embeddings: ≥ 2 dimensions) decay, RMSNorm
// gains (1-D) do not — nanoGPT's choice, since shrinking a norm gain towards 0 is not a prior we want.
import type { Backend, Buf } from "../backend/backend.js";
import type { Tensor } from "../tensor/tensor.js";
import type { NamedTensors } from "../format/host-tensor.js";

export interface AdamWOptions {
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
}

export const defaultAdamW: AdamWOptions = { beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1 };

interface Slot {
  name: string;
  param: Tensor;
  m: Buf;
  v: Buf;
  decay: boolean;
}

export class AdamW {
  /** Number of steps taken; the next step is `step + 1`. */
  step = 0;
  private readonly slots: Slot[];
  private readonly backend: Backend;

  constructor(params: [string, Tensor][], readonly opts: AdamWOptions) {
    if (params.length === 0) throw new Error("AdamW: no parameters");
    this.backend = params[0][1].backend;
    this.slots = params.map(([name, param]) => ({
      name,
      param,
      m: this.backend.alloc(param.size),
      v: this.backend.alloc(param.size),
      decay: param.shape.length >= 2,
    }));
  }

  /** L2 norm of all gradients together. */
  async gradNorm(): Promise<number> {
    // Every slot's reduction is requested before any is awaited: one round trip on a GPU.
    const parts = await Promise.all(this.slots.filter((s) => s.param.grad).map((s) => this.backend.sumSquares(s.param.grad!)));
    let ss = 0;
    for (const x of parts) ss += x;
    return Math.sqrt(ss);
  }

  /** torch.nn.utils.clip_grad_norm_: scale gradients by min(1, maxNorm / (norm + 1e-6)); returns the norm before clipping. */
  async clipGradNorm(maxNorm: number): Promise<number> {
    const norm = await this.gradNorm();
    const coef = maxNorm / (norm + 1e-6);
    if (coef < 1) for (const s of this.slots) if (s.param.grad) this.backend.scale(s.param.grad, coef);
    return norm;
  }

  /** One update with learning rate `lr`. Parameters without a gradient are left alone. */
  update(lr: number): void {
    this.step++;
    const o = this.opts;
    for (const s of this.slots) {
      if (!s.param.grad) continue;
      this.backend.adamw(s.param.data, s.param.grad, s.m, s.v, lr, o.beta1, o.beta2, o.eps, s.decay ? o.weightDecay : 0, this.step);
    }
  }

  zeroGrad(): void {
    for (const s of this.slots) s.param.zeroGrad();
  }

  /** Moment buffers by name (`exp_avg.NAME`, `exp_avg_sq.NAME`, PyTorch's state names) for checkpoints. */
  async state(): Promise<NamedTensors> {
    const out: NamedTensors = new Map();
    for (const s of this.slots) {
      out.set(`exp_avg.${s.name}`, { shape: [...s.param.shape], data: Float32Array.from(await this.backend.read(s.m)) });
      out.set(`exp_avg_sq.${s.name}`, { shape: [...s.param.shape], data: Float32Array.from(await this.backend.read(s.v)) });
    }
    return out;
  }

  loadState(step: number, state: Map<string, { data: Float32Array }>): void {
    for (const s of this.slots) {
      const m = state.get(`exp_avg.${s.name}`), v = state.get(`exp_avg_sq.${s.name}`);
      if (!m || !v) throw new Error(`optimizer state lacks the moments of ${s.name}`);
      if (m.data.length !== s.param.size || v.data.length !== s.param.size) throw new Error(`optimizer state of ${s.name} has the wrong size`);
      this.backend.write(s.m, m.data);
      this.backend.write(s.v, v.data);
    }
    this.step = step;
  }

  dispose(): void {
    for (const s of this.slots) {
      this.backend.free(s.m);
      this.backend.free(s.v);
    }
  }
}
