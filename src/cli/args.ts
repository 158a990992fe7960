// Flag parsing for the CLI: node's util.parseArgs (unknown flags are errors) plus typed,
// range-checked accessors whose errors name the flag.
import { availableParallelism } from "node:os";
import { parseArgs } from "node:util";
import { createBackend, type Backend } from "../backend/index.js";
import { kernelChoices, type KernelChoice } from "../backend/wasm/kernel-flavour.js";
import type { WasmNumericsOptions } from "../backend/wasm/wasm-backend.js";
import type { ModelPlace } from "../io/model-files-node.js";
import type { Llama } from "../nn/llama.js";
import { describePlacement, isSplit, splitLayers } from "../nn/placement.js";

/** A command's flags: each a string or a boolean switch, with a line of help; `multiple` strings may repeat. */
export type FlagSpec = Record<string, { type: "string" | "boolean"; help: string; multiple?: boolean }>;

/** `--flag VALUE  help` lines for a command's --help. */
export function flagHelp(spec: FlagSpec): string {
  const left = (name: string): string => `  --${name}${spec[name].type === "string" ? " X" : ""}`;
  const width = Math.max(...Object.keys(spec).map((n) => left(n).length)) + 2;
  return Object.keys(spec).map((n) => left(n).padEnd(width) + spec[n].help).join("\n");
}

export class UsageError extends Error {}

/** The `--threads` flag of commands that run a model (see threadCount). */
export const threadsFlag: FlagSpec[string] = {
  type: "string",
  help: "wasm: threads for matrix products and attention (default: the number of cores; 1 = no workers)",
};

/** `--threads N`, by default the machine's cores (results are the same for any N). */
export function threadCount(f: Flags): number {
  return f.int("threads", availableParallelism(), 1);
}

/** The flags of every command that runs a model: which backend, its threads and its kernels. */
export const backendFlags: FlagSpec = {
  backend: { type: "string", help: "wasm (default), webgpu (a GPU: navigator.gpu, or in Node the optional package `webgpu`) or js" },
  threads: threadsFlag,
  kernels: { type: "string", help: "wasm kernels: auto (default: relaxed SIMD where the engine runs it), simd (SIMD128, the same bits on every CPU) or relaxed" },
};

/**
 * The backend the flags of backendFlags ask for (`name`: another one, e.g. a speculative draft's
 * backend, configured by the same --threads and --kernels).
 */
export async function backendFromFlags(f: Flags, numerics: Omit<WasmNumericsOptions, "kernels"> = {}, name = f.str("backend") ?? "wasm"): Promise<Backend> {
  const kernels = f.str("kernels") ?? "auto";
  if (!(kernelChoices as readonly string[]).includes(kernels)) throw new UsageError(`--kernels must be ${kernelChoices.join(", ")}, got ${JSON.stringify(kernels)}`);
  // A wasm draft beside a GPU target, or layers left on the CPU, take --threads and --kernels;
  // a GPU-only run refuses them.
  const cpuLayers = f.has("gpu-layers") && f.str("gpu-layers") !== "all";
  const wasmSomewhere = cpuLayers || [name, f.str("backend") ?? "wasm", f.str("draft-backend")].includes("wasm");
  if (!wasmSomewhere && f.has("kernels")) throw new UsageError(`--kernels applies to the wasm backend, not ${name}`);
  if (name === "webgpu") {
    if (!wasmSomewhere && f.has("threads")) throw new UsageError("--threads applies to the wasm backend; webgpu runs on the GPU");
    return createBackend(name);
  }
  return createBackend(name, { ...numerics, threads: threadCount(f), kernels: kernels as KernelChoice });
}

/** Heterogeneous placement (llama.cpp's -ngl), for the commands that run a model without training it. */
export const placementFlags: FlagSpec = {
  "gpu-layers": {
    type: "string",
    help: "with --backend webgpu: the first N layers on the GPU, the rest with the embedding and head on wasm (--threads, --kernels); all (the default) puts everything on the GPU",
  },
};

/** Expert paging for MoE models, for the commands that run a model without training it. */
export const expertCacheFlags: FlagSpec = {
  "expert-cache-mb": {
    type: "string",
    help: "MoE models: keep at most N MiB of experts resident (each layer its most recently used ones) and read the others from the model file when routed to (default: all resident)",
  },
};

/** --expert-cache-mb in bytes, or undefined without it. */
export function expertCacheBytesFromFlags(f: Flags): number | undefined {
  return f.has("expert-cache-mb") ? f.num("expert-cache-mb", 0, { min: 0, exclusiveMin: true }) * 2 ** 20 : undefined;
}

/**
 * Where the flags put a model: on --backend's backend, or with --gpu-layers N split between
 * webgpu (`backend`) and a wasm backend (`cpu`, configured by --threads and --kernels).
 */
export async function modelPlaceFromFlags(f: Flags, numerics: Omit<WasmNumericsOptions, "kernels"> = {}): Promise<{ where: ModelPlace; backend: Backend; cpu: Backend | null }> {
  const raw = f.str("gpu-layers");
  if (raw !== undefined && (f.str("backend") ?? "wasm") !== "webgpu") throw new UsageError(`--gpu-layers applies to --backend webgpu (got ${f.str("backend") ?? "wasm"})`);
  const n = raw === undefined || raw === "all" ? "all" : Number(raw);
  if (n !== "all" && (raw!.trim() === "" || !Number.isInteger(n) || n < 0)) throw new UsageError(`--gpu-layers must be a whole number ≥ 0 or all (got "${raw}")`);
  const backend = await backendFromFlags(f, numerics);
  if (n === "all") return { where: backend, backend, cpu: null };
  const cpu = await backendFromFlags(f, numerics, "wasm");
  return { where: (layers) => splitLayers(backend, cpu, layers, n), backend, cpu };
}

/** What a loaded model runs on: its backend, or where its parts went. */
export function describeModelPlace(model: Llama): string {
  return isSplit(model.placement) ? describePlacement(model.placement, describeBackend) : describeBackend(model.backend);
}

/** "wasm, relaxed kernels, 2 threads": what a command's first line says it runs on. */
export function describeBackend(backend: Backend): string {
  const b = backend as Backend & { flavour?: string; threads?: number; adapterName?: string };
  if (b.adapterName !== undefined) return `${backend.name} (${b.adapterName})`;
  if (b.flavour === undefined) return backend.name;
  return `${backend.name}, ${b.flavour} kernels, ${b.threads ?? 1} thread${(b.threads ?? 1) === 1 ? "" : "s"}`;
}

export class Flags {
  constructor(
    private readonly values: Record<string, string | string[] | boolean | undefined>,
    readonly positionals: string[],
  ) {}

  static parse(argv: string[], spec: FlagSpec): Flags {
    try {
      const options = Object.fromEntries(Object.entries(spec).map(([k, v]) => [k, { type: v.type, multiple: v.multiple ?? false }]));
      const { values, positionals } = parseArgs({ args: argv, options, strict: true, allowPositionals: true });
      return new Flags(values as Record<string, string | string[] | boolean | undefined>, positionals);
    } catch (e) {
      // parseArgs explains how to pass '-'-prefixed positionals in a second sentence; keep the first.
      throw new UsageError((e as Error).message.split(". ")[0].replace(/\.$/, ""));
    }
  }

  has(name: string): boolean {
    return this.values[name] !== undefined;
  }

  bool(name: string): boolean {
    return this.values[name] === true;
  }

  str(name: string): string | undefined {
    const v = this.values[name];
    return typeof v === "string" ? v : undefined;
  }

  /** Every value of a `multiple` flag, in order. */
  list(name: string): string[] {
    const v = this.values[name];
    return Array.isArray(v) ? v : typeof v === "string" ? [v] : [];
  }

  required(name: string): string {
    const v = this.str(name);
    if (v === undefined || v === "") throw new UsageError(`--${name} is required`);
    return v;
  }

  num(name: string, fallback: number, check: { min?: number; max?: number; integer?: boolean; exclusiveMin?: boolean } = {}): number {
    const raw = this.str(name);
    if (raw === undefined) return fallback;
    const v = Number(raw);
    if (raw.trim() === "" || !Number.isFinite(v)) throw new UsageError(`--${name} must be a number (got "${raw}")`);
    if (check.integer && !Number.isInteger(v)) throw new UsageError(`--${name} must be an integer (got ${raw})`);
    if (check.min !== undefined && (check.exclusiveMin ? v <= check.min : v < check.min))
      throw new UsageError(`--${name} must be ${check.exclusiveMin ? ">" : ">="} ${check.min} (got ${raw})`);
    if (check.max !== undefined && v > check.max) throw new UsageError(`--${name} must be <= ${check.max} (got ${raw})`);
    return v;
  }

  int(name: string, fallback: number, min = 0): number {
    return this.num(name, fallback, { integer: true, min });
  }
}
