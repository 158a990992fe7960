// The embedding lookup of a quantized table: the rows a batch of token ids picks, dequantized
// from the ggml blocks (or f16 values) as they are needed, so a quantized model keeps no float
// copy of its embedding. Each value is d·q (Q8_0, Q4_0) or the widened f16 — exact in f32, so
// the rows are bitwise those of the dequantized table.

import { dequantizeRowF16 } from "./f16-weights";
import { F16, Q8_0, dequantizeRow } from "./quant-blocks";

/**
 * out[i, :] = row ids[i] of the [rows, cols] matrix at w (type 0 = Q8_0, 1 = Q4_0, 2 = F16;
 * cols a multiple of 32 for the block formats). ids: `count` i32, checked by the caller.
 */
export function embeddingQuantized(out: usize, w: usize, ids: usize, count: i32, cols: i32, type: i32): void {
  const blockBytes: usize = type == Q8_0 ? 34 : 18;
  const rowBytes: usize = type == F16 ? <usize>cols << 1 : <usize>(cols >> 5) * blockBytes;
  const outRow = <usize>cols << 2;
  for (let i = 0; i < count; i++) {
    const src = w + <usize>load<i32>(ids + (<usize>i << 2)) * rowBytes;
    const dst = out + <usize>i * outRow;
    if (type == F16) dequantizeRowF16(dst, src, cols);
    else dequantizeRow(dst, src, cols >> 5, type, blockBytes);
  }
}
