// Fake quantization on the host: the numbers the CPU backends' fakeQuantize kernels produce, and
// the reference for the GPU's. The arithmetic is ggml's quantizers' (Q8_0/Q4_0 weights) or
// torchao-style per-token int8 (activations), step by step in f32.
import type { QuantType } from "./backend.js";
import { f16Table, f32ToF16 } from "../format/float16.js";

const fr = Math.fround;

/** C's roundf (half away from zero) then conversion to int8_t, as ggml's quantizers do. */
const roundfToInt8 = (x: number): number => ((x < 0 ? -Math.floor(-x + 0.5) : Math.floor(x + 0.5)) << 24) >> 24;

/**
 * ggml's quantize → dequantize of `values` (a whole number of 32-blocks) into `out`: the numbers a
 * GGUF file of `type` holds for them. The arithmetic of quantize_row_q8_0_ref / _q4_0_ref step by
 * step in f32, as format/ggml-quants.ts (byte-exact with ggml's C) writes it, then the decode with the
 * f16-rounded scale; test/qat.test.ts checks it against quantize + dequantize bit for bit.
 */
export function fakeQuantizeValues(type: QuantType, values: Float32Array, out: Float32Array = new Float32Array(values.length)): Float32Array {
  const n = values.length;
  if (n % 32 !== 0) throw new Error(`fakeQuantize: ${n} values are not whole blocks of 32`);
  if (type !== "q8_0" && type !== "q4_0") throw new Error(`fakeQuantize: unknown type ${String(type)} (q8_0 or q4_0)`);
  const f16 = f16Table();
  for (let b = 0; b < n; b += 32) {
    if (type === "q8_0") {
      // d = amax/127; q = roundf(x·(1/d)); the file stores d as f16.
      let amax = 0;
      for (let j = 0; j < 32; j++) {
        const v = Math.abs(values[b + j]);
        amax = amax > v ? amax : v; // C's MAX, NaN included
      }
      const d = fr(amax / 127), id = d !== 0 ? fr(1 / d) : 0, dq = f16[f32ToF16(d)];
      for (let j = 0; j < 32; j++) out[b + j] = fr(roundfToInt8(fr(values[b + j] * id)) * dq);
    } else {
      // d = max/−8 (max: the value of largest magnitude, first on ties); q = min(15, trunc(x·(1/d) + 8.5)).
      let amax = 0, max = 0;
      for (let j = 0; j < 32; j++) {
        const v = values[b + j];
        if (amax < Math.abs(v)) {
          amax = Math.abs(v);
          max = v;
        }
      }
      const d = fr(max / -8), id = d !== 0 ? fr(1 / d) : 0, dq = f16[f32ToF16(d)];
      for (let j = 0; j < 32; j++) {
        const q = Math.min(15, (Math.trunc(fr(fr(values[b + j] * id) + 8.5)) << 24) >> 24);
        out[b + j] = fr(((q & 15) - 8) * dq); // the nibble the block stores
      }
    }
  }
  return out;
}

/**
 * Per-row dynamic int8 fake quantization of `values` [rows, dim] into `out` (may be `values`):
 * s = absmax/127, x̂ = clamp(rint(x/s), −127, 127)·s, round half to even, all in f32; a row of
 * zeros stays zero. torch's float32 `(x / s).round().clamp(-127, 127) * s` gives the same numbers.
 */
export function fakeQuantizeRowsValues(values: Float32Array, rows: number, dim: number, out: Float32Array = new Float32Array(values.length)): Float32Array {
  if (values.length !== rows * dim || out.length < rows * dim) throw new Error(`fakeQuantizeRows: ${values.length} values for ${rows} rows of ${dim}`);
  // Adding and subtracting 1.5·2^52 rounds a double of magnitude < 2^51 to an integer, ties to even.
  const RNE = 6755399441055744;
  for (let r = 0; r < rows; r++) {
    const o = r * dim;
    let amax = 0;
    for (let j = 0; j < dim; j++) amax = Math.max(amax, Math.abs(values[o + j]));
    const s = fr(amax / 127);
    if (s === 0) {
      out.fill(0, o, o + dim);
      continue;
    }
    for (let j = 0; j < dim; j++) {
      const t = fr(values[o + j] / s);
      let q = t + RNE - RNE;
      if (q === 0) q = t * 0; // keep the sign of zero, as rint does: −0.3 → −0
      out[o + j] = fr((q > 127 ? 127 : q < -127 ? -127 : q) * s);
    }
  }
  return out;
}
