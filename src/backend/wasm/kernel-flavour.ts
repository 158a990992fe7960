// Which build of the kernels runs: `simd` (WebAssembly SIMD128) or `relaxed` (SIMD128 plus the
// relaxed-SIMD instructions: fused multiply-add, int8 dot products). Relaxed SIMD lets an engine
// pick per CPU between results that differ in the last bits (FMA or multiply-then-add), so the
// relaxed build is deterministic on one machine, not across machines; SIMD128 is the same
// everywhere and stays the reference. `auto` takes relaxed where the engine validates it.
import { decodeBase64 } from "./base64.js";

export type KernelFlavour = "simd" | "relaxed";
export type KernelChoice = KernelFlavour | "auto";
export const kernelChoices: readonly KernelChoice[] = ["auto", "simd", "relaxed"];

let available: Promise<boolean> | undefined;

/**
 * Whether this engine runs relaxed SIMD, and runs it right (assembly/relaxed-probe.ts): Node ≥ 22,
 * Chrome, Firefox. Node 20 has it behind --experimental-wasm-relaxed-simd, which is switched on
 * here (before anything is compiled with it) where V8 accepts it at run time.
 */
export function relaxedSimdAvailable(): Promise<boolean> {
  available ??= (async () => {
    const probe = decodeBase64((await import("./relaxed-probe-wasm.js")).relaxedProbeWasmBase64);
    // Node has no global Worker (browsers, Deno and Bun do): only there is a V8 flag to set.
    if (!WebAssembly.validate(probe) && typeof Worker !== "function") (await import("./relaxed-simd-node.js")).enableRelaxedSimdFlag();
    if (!WebAssembly.validate(probe)) return false;
    const { exports } = await WebAssembly.instantiate(await WebAssembly.compile(probe));
    return (exports as { relaxedSimdWorks(): number }).relaxedSimdWorks() === 1;
  })();
  return available;
}

/** The flavour a choice resolves to here; `relaxed` where the engine has none is an error. */
export async function resolveKernels(choice: KernelChoice = "auto"): Promise<KernelFlavour> {
  if (!kernelChoices.includes(choice)) throw new RangeError(`kernels must be ${kernelChoices.join(", ")}, got ${JSON.stringify(choice)}`);
  if (choice === "simd") return "simd";
  const relaxed = await relaxedSimdAvailable();
  if (choice === "relaxed" && !relaxed)
    throw new Error("kernels relaxed: this JavaScript engine does not run relaxed SIMD (Node ≥ 22, Chrome and Firefox do); use --kernels simd or auto");
  return relaxed ? "relaxed" : "simd";
}

const compiled = new Map<string, Promise<WebAssembly.Module>>();

/** The compiled kernels of a flavour, for a plain or a shared memory (compiled once each). */
export function kernelModule(flavour: KernelFlavour, shared: boolean): Promise<WebAssembly.Module> {
  const key = `${flavour}-${shared ? "shared" : "plain"}`;
  let module = compiled.get(key);
  if (module === undefined) {
    module = embeddedKernels(flavour, shared).then((base64) => WebAssembly.compile(decodeBase64(base64)));
    compiled.set(key, module);
  }
  return module;
}

// Each build is its own generated file, loaded only when asked for.
async function embeddedKernels(flavour: KernelFlavour, shared: boolean): Promise<string> {
  if (flavour === "simd") return shared ? (await import("./kernels-shared-wasm.js")).kernelsSharedWasmBase64 : (await import("./kernels-wasm.js")).kernelsWasmBase64;
  return shared ? (await import("./kernels-relaxed-shared-wasm.js")).kernelsRelaxedSharedWasmBase64 : (await import("./kernels-relaxed-wasm.js")).kernelsRelaxedWasmBase64;
}
