// The ggml weights behind quantized matrices, read one block (or row) at a time: the readable
// statement of the formats that the wasm kernels (assembly/kernels.ts) decode with SIMD. Shared by
// the backends for their argument checks.
import { type BlockQuantType, type QBuf, type QuantType, QUANT_BLOCK_BYTES, quantRowBytes } from "./backend.js";
import { f16ToF32 } from "../format/float16.js";

/** Throw unless `byteLength` bytes can hold a [rows, cols] matrix of `type`. */
export function checkQuantized(type: QuantType, rows: number, cols: number, byteLength: number): void {
  if (type !== "f16" && !(type in QUANT_BLOCK_BYTES)) throw new Error(`quantized matrix: unknown type ${String(type)}`);
  if (!Number.isInteger(rows) || rows < 0 || !Number.isInteger(cols) || cols < 0)
    throw new RangeError(`quantized matrix: bad shape [${rows}, ${cols}]`);
  // f16 has no blocks: any row length will do.
  if (type !== "f16" && cols % 32 !== 0) throw new RangeError(`quantized matrix: bad shape [${rows}, ${cols}] (columns must be a multiple of 32)`);
  const need = rows * quantRowBytes(type, cols);
  if (byteLength < need) throw new RangeError(`quantized matrix: [${rows}, ${cols}] ${type} needs ${need} bytes, got ${byteLength}`);
}

/** Throw unless `byteLength` bytes are whole rows of `w` that fit from row `row` on. */
export function checkQuantizedWrite(w: QBuf, row: number, byteLength: number): void {
  const rowBytes = quantRowBytes(w.type, w.cols);
  const rows = rowBytes === 0 ? 0 : byteLength / rowBytes;
  if (!Number.isInteger(row) || row < 0 || !Number.isInteger(rows) || row + rows > w.rows)
    throw new RangeError(`quantized matrix: cannot write ${byteLength} bytes at row ${row} of [${w.rows}, ${w.cols}] ${w.type} (rows of ${rowBytes} bytes)`);
}

/**
 * The integer values of block `block` (q for Q8_0, q − 8 for Q4_0) into `out[0..32)`; returns
 * the block's scale d, so that element e is d·out[e].
 */
export function quantizedValues(type: BlockQuantType, bytes: Uint8Array, block: number, out: Float64Array): number {
  const p = block * QUANT_BLOCK_BYTES[type];
  const d = f16ToF32(bytes[p] | (bytes[p + 1] << 8));
  if (type === "q8_0") {
    for (let e = 0; e < 32; e++) out[e] = (bytes[p + 2 + e] << 24) >> 24;
  } else {
    for (let e = 0; e < 16; e++) {
      const byte = bytes[p + 2 + e];
      out[e] = (byte & 0x0f) - 8; // low nibble: element e
      out[e + 16] = (byte >>> 4) - 8; // high nibble: element e + 16
    }
  }
  return d;
}

/** Row `row` of an f16 matrix of `cols` columns (little-endian IEEE binary16) into `out[0..cols)`. */
export function f16Values(bytes: Uint8Array, row: number, cols: number, out: Float64Array): void {
  const p = row * cols * 2;
  for (let e = 0; e < cols; e++) out[e] = f16ToF32(bytes[p + 2 * e] | (bytes[p + 2 * e + 1] << 8));
}
