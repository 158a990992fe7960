// Where the parts of a model live when it spans backends (llama.cpp's --n-gpu-layers): each
// decoder layer on one backend, the embedding table with the final norm and the LM head on one.
// The table and the head share a backend because a tied head is the table itself; the lookup
// costs nothing on any backend. A forward pass over a split model runs each run of consecutive
// layers on its backend and hands the hidden state across at each boundary (Llama.forwardAcross).
import type { Backend } from "../backend/backend.js";

/** A part of the model: the embedding table, layer l, or the final norm with the LM head. */
export type Part = "embed" | "head" | number;

/** The part an HF parameter name belongs to (lm_head and model.norm are "head"). */
export function partOf(name: string): Part {
  const m = /^model\.layers\.(\d+)\./.exec(name);
  if (m) return Number(m[1]);
  return name === "model.embed_tokens.weight" ? "embed" : "head";
}

export interface Placement {
  /** The backend of each decoder layer. */
  readonly layers: readonly Backend[];
  /** The backend of the embedding table, the final norm and the LM head (where logits come out). */
  readonly ends: Backend;
}

/** Consecutive layers [from, to) on one backend: one stretch of a forward pass. */
export interface Stage {
  backend: Backend;
  from: number;
  to: number;
}

/** Every part on `backend`. */
export function onBackend(backend: Backend, numLayers: number): Placement {
  return { layers: Array.from({ length: numLayers }, () => backend), ends: backend };
}

/**
 * llama.cpp's -ngl over a GPU and a CPU backend, except that the GPU takes the first layers:
 * layers [0, n) on `gpu`, the rest on `cpu`; the embedding and the head stay on `cpu` unless
 * `n` exceeds the layer count ("all": everything on the GPU), as -ngl offloads the output layer
 * only past the last block.
 */
export function splitLayers(gpu: Backend, cpu: Backend, numLayers: number, n: number | "all"): Placement {
  const all = n === "all" || n > numLayers;
  const onGpu = all ? numLayers : n;
  if (!Number.isInteger(onGpu) || onGpu < 0) throw new Error(`placement: the number of GPU layers must be a whole number ≥ 0 or "all" (got ${n})`);
  if (all || onGpu === 0) return onBackend(all ? gpu : cpu, numLayers);
  return { layers: Array.from({ length: numLayers }, (_, l) => (l < onGpu ? gpu : cpu)), ends: cpu };
}

/** `where` as a placement: a single backend holds everything. */
export function placementOf(where: Backend | Placement, numLayers: number): Placement {
  if ("layers" in where) {
    if (where.layers.length !== numLayers) throw new Error(`placement: ${where.layers.length} layers placed, the model has ${numLayers}`);
    return where;
  }
  return onBackend(where, numLayers);
}

/** The backend that holds a part. */
export function backendOf(p: Placement, part: Part): Backend {
  return typeof part === "number" ? p.layers[part] : p.ends;
}

/** The runs of consecutive layers on one backend, in order. */
export function stages(p: Placement): Stage[] {
  const out: Stage[] = [];
  p.layers.forEach((backend, l) => {
    const last = out[out.length - 1];
    if (last?.backend === backend) last.to = l + 1;
    else out.push({ backend, from: l, to: l + 1 });
  });
  return out;
}

/** Whether the model spans more than one backend. */
export function isSplit(p: Placement): boolean {
  return p.layers.some((b) => b !== p.ends);
}

/** "layers 0–5 on webgpu; layers 6–7, embedding and head on wasm". */
export function describePlacement(p: Placement, name: (b: Backend) => string = (b) => b.name): string {
  const where = new Map<Backend, string[]>();
  const add = (b: Backend, what: string) => where.set(b, [...(where.get(b) ?? []), what]);
  for (const s of stages(p)) add(s.backend, s.to - s.from === 1 ? `layer ${s.from}` : `layers ${s.from}–${s.to - 1}`);
  add(p.ends, "embedding and head");
  return [...where].map(([b, parts]) => `${parts.join(", ")} on ${name(b)}`).join("; ");
}
