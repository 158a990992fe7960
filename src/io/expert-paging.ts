// Expert paging at load time (`--expert-cache-mb`): instead of every expert of every MoE layer,
// each layer holds `slots` experts' gate/up/down matrices and reads an expert from the model file
// when the router first picks it (nn/expert-cache.ts decides which stay). The lazy loaders
// (GGUF, safetensors) describe each stacked expert tensor — its rows, how the slots hold it, how
// to read one expert's rows — and this file sizes the slots to the budget and builds the caches.
import type { QuantizedHostTensor } from "../format/host-tensor.js";
import type { RowTarget } from "./lazy-weights.js";
import { type LlamaConfig, isMoe, numExperts } from "../nn/config.js";
import { type Placement, backendOf, partOf } from "../nn/placement.js";
import { ExpertCache } from "../nn/expert-cache.js";
import type { Weight } from "../nn/weight.js";
import { Tensor } from "../tensor/tensor.js";
import { QuantizedWeight } from "../tensor/quantized-weight.js";

/** One stacked expert tensor [E, rows, cols] of the file, as the slots hold it. */
export interface PagedMatrix {
  rows: number;
  cols: number;
  /** Kept as the file's blocks / f16 (quantized loading), else f32. */
  keep?: QuantizedHostTensor["type"];
  /** Bytes one expert of it takes in the slots. */
  bytes: number;
  /** Read expert `expert`'s rows into `target`. */
  read(expert: number, target: RowTarget): void;
}

type Kind = "gate" | "up" | "down";
const KIND: Record<string, Kind> = { w1: "gate", w3: "up", w2: "down" };

export class ExpertPaging {
  private readonly layers = new Map<number, Partial<Record<Kind, PagedMatrix>>>();

  /** `budgetBytes`: what every layer's slots hold together (the rest of the model is resident). */
  constructor(
    private readonly config: LlamaConfig,
    private readonly budgetBytes: number,
  ) {
    if (!isMoe(config)) throw new Error("expert cache: the model has no experts to page");
  }

  /** Take stacked expert tensor `name` (…block_sparse_moe.experts.w1.weight) as paged. */
  add(name: string, m: PagedMatrix): void {
    const kind = KIND[/\.experts\.(w[123])\.weight$/.exec(name)?.[1] ?? ""];
    if (kind === undefined) throw new Error(`expert cache: ${name} is not a stacked expert tensor`);
    const layer = partOf(name) as number;
    const mats = this.layers.get(layer) ?? {};
    mats[kind] = m;
    this.layers.set(layer, mats);
  }

  /**
   * One cache per MoE layer, the same number of slots in each: as many as the budget holds, at
   * most E, at least k (else an error saying the least budget that runs).
   */
  build(place: Placement): Map<number, ExpertCache> {
    const E = numExperts(this.config), k = this.config.num_experts_per_tok!;
    const layers = [...this.layers.entries()].map(([l, m]) => {
      if (!m.gate || !m.up || !m.down) throw new Error(`expert cache: layer ${l} lacks some of its expert tensors`);
      return [l, m as Record<Kind, PagedMatrix>] as const;
    });
    const perExpert = layers.reduce((s, [, m]) => s + m.gate.bytes + m.up.bytes + m.down.bytes, 0);
    const slots = Math.min(E, Math.floor(this.budgetBytes / perExpert));
    const mib = (b: number): string => (b / 2 ** 20).toFixed(2);
    if (slots < k)
      throw new Error(`expert cache: ${mib(this.budgetBytes)} MiB holds ${slots} of each layer's ${E} experts, a token needs ${k}: give at least ${mib(k * perExpert)} MiB`);
    const caches = new Map<number, ExpertCache>();
    try {
      for (const [l, mats] of layers) {
        const be = backendOf(place, l);
        if (!be.readSync) throw new Error(`expert cache: paging reads the routed experts on the host, which ${be.name} cannot do; run layer ${l} on wasm or js`);
        const weights = {} as Record<Kind, Weight>;
        for (const kind of ["gate", "up", "down"] as const) {
          const m = mats[kind];
          weights[kind] = m.keep !== undefined ? new QuantizedWeight(be, m.keep, [slots * m.rows, m.cols], null) : Tensor.zeros(be, [slots, m.rows, m.cols]);
        }
        const load = (e: number, slot: number): void => {
          for (const kind of ["gate", "up", "down"] as const) {
            try {
              mats[kind].read(e, { weight: weights[kind], row0: slot * mats[kind].rows, gain: null });
            } catch (err) {
              throw new Error(`cannot read expert ${e} of layer ${l} from the model file: ${(err as Error).message.replace(/\s+/g, " ")}`);
            }
          }
        };
        caches.set(l, new ExpertCache(E, slots, weights, load));
      }
      return caches;
    } catch (e) {
      for (const c of caches.values()) c.dispose();
      throw e;
    }
  }
}
