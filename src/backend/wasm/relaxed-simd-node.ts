// Node adapter: Node 20's V8 has relaxed SIMD behind a flag, which it accepts at run time for
// modules compiled afterwards (Node ≥ 22 has it on).
import { setFlagsFromString } from "node:v8";

export function enableRelaxedSimdFlag(): void {
  try {
    setFlagsFromString("--experimental-wasm-relaxed-simd");
  } catch {
    // an engine that refuses the flag simply keeps SIMD128
  }
}
