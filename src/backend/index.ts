// Backend selection by name. New backends (threaded WASM, WebGPU) register here; model code
// only ever sees the Backend interface.
import type { Backend } from "./backend.js";
import { JsBackend } from "./js/js-backend.js";
import type { WasmNumericsOptions } from "./wasm/wasm-backend.js";

export type BackendName = "js" | "wasm" | "webgpu";
export const backendNames: readonly BackendName[] = ["js", "wasm", "webgpu"];

/**
 * `js` is the float32 TypeScript reference (float64 with `{ precision: "f64" }`, for gradient
 * checks); `wasm` runs AssemblyScript SIMD kernels over WebAssembly memory (`q8Activations`:
 * quantized weights multiply decode activations rounded to Q8_0, as llama.cpp; see wasm-backend.ts).
 * `threads` > 1 (wasm only) splits matrix products and cached attention across worker threads
 * sharing the memory, with results bitwise identical to one thread; default 1, no workers.
 * Call the backend's `dispose()` to stop them (idle workers never keep a Node process alive).
 * `webgpu` runs WGSL kernels on a GPU (navigator.gpu, or in Node the optional package `webgpu`);
 * `dispose()` releases the device.
 */
export async function createBackend(name: string, opts: { precision?: "f32" | "f64"; threads?: number } & WasmNumericsOptions = {}): Promise<Backend> {
  const threads = opts.threads ?? 1;
  if (!Number.isInteger(threads) || threads < 1) throw new RangeError(`threads must be a positive integer, got ${threads}`);
  switch (name) {
    case "js":
      return new JsBackend(opts.precision ?? "f32");
    case "wasm":
      // Loaded on demand: the modules embed the compiled kernels.
      if (threads > 1) return (await import("./wasm/threaded-wasm-backend.js")).createThreadedWasmBackend({ ...opts, threads });
      return (await import("./wasm/wasm-backend.js")).createWasmBackend(opts);
    case "webgpu":
      return (await import("./webgpu/device.js")).createWebGpuBackend();
    default:
      throw new Error(`unknown backend "${name}" (choose ${backendNames.join(" or ")})`);
  }
}

export type { Backend, Buf } from "./backend.js";
