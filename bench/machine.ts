// What every bench prints first: the machine and the kernels it ran, so that ratios from different
// runs can be told apart (these machines differ: AVX-512 or only AVX2, Zen 4 or Zen 5, ARM).
import { readFileSync } from "node:fs";
import { availableParallelism, cpus } from "node:os";
import { resolveKernels, type KernelChoice } from "../src/backend/wasm/kernel-flavour.js";

// The /proc/cpuinfo flags that decide how fast native peers and wasm run.
const FEATURES = ["sse4_2", "avx", "avx2", "fma", "f16c", "avx_vnni", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_int8", "asimd", "asimddp", "fphp", "asimdhp", "sve", "i8mm"];

/** The CPU's model and the features of FEATURES it has (from /proc/cpuinfo where there is one). */
export function cpuDescription(): string {
  let flags: string[] = [];
  try {
    const info = readFileSync("/proc/cpuinfo", "utf8");
    const line = info.split("\n").find((l) => /^(flags|Features)\s*:/.test(l));
    if (line !== undefined) {
      const have = new Set(line.split(":")[1].trim().split(/\s+/));
      flags = FEATURES.filter((f) => have.has(f));
    }
  } catch {
    // no /proc (macOS, Windows): the model name alone
  }
  const model = cpus()[0]?.model?.trim() ?? "unknown CPU";
  return `${model}, ${availableParallelism()} cores, ${process.arch}${flags.length ? `, ${flags.join(" ")}` : ""}`;
}

/** "machine: …" and "kernels: …" lines for a bench header. */
export async function benchHeader(choice: KernelChoice = "auto"): Promise<string> {
  return `machine: ${cpuDescription()}; Node ${process.version}\nkernels: ${await resolveKernels(choice)} (--kernels ${choice})`;
}
