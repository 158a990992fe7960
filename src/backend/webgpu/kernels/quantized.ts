// Quantized weights (Q8_0, Q4_0, F16) on the GPU and the kernels that read them.
//
// WGSL has no 8- or 16-bit storage and WebGPU writes whole 4-byte words, so ggml's 34- and
// 18-byte blocks are de-interleaved on the host as rows are written (still quantized, same bytes):
//   Q8_0: quants [rows, cols] int8 (cols bytes a row) and scales [rows, nb] f16, nb = cols/32
//         rounded up to an even count so that every row starts on a word;
//   Q4_0: quants [rows, cols/2] bytes, each block's 16 bytes as ggml has them (byte j: element j in
//         the low nibble, element j + 16 in the high one), and scales as for Q8_0;
//   F16:  [rows, cols] binary16, rows padded to an even count of values.
// The kernels dequantize w = d·q (f16 d widened to f32) as they go and sum in f32.
import { type QBuf, type QuantType, QUANT_BLOCK_BYTES, quantRowBytes } from "../../backend.js";
import { checkQuantized, checkQuantizedWrite } from "../../quantized-blocks.js";
import { type Gpu, type GpuBuf, Params, Usage, groups1d } from "../gpu.js";
import { elementwiseShader, unaliased } from "./common.js";
import { TILE, gemmTile } from "./matmul.js";
import { checkIds } from "./embedding.js";

/** A quantized matrix in GPU memory (see the layout above). */
export class GpuQBuf implements QBuf {
  freed = false;
  constructor(
    readonly gpu: Gpu,
    readonly type: QuantType,
    readonly rows: number,
    readonly cols: number,
    /** Bytes of one row in `quants` and in `scales` (0 for f16). */
    readonly quantRow: number,
    readonly scaleRow: number,
    readonly quants: GPUBuffer,
    /** The f16 scales of the block formats; null for f16. */
    readonly scales: GPUBuffer | null,
  ) {}
}

/** Bytes per row of the GPU layout: quants and scales. */
function rowLayout(type: QuantType, cols: number): [quantRow: number, scaleRow: number] {
  if (type === "f16") return [4 * Math.ceil(cols / 2), 0];
  return [type === "q8_0" ? cols : cols / 2, 4 * Math.ceil(cols / 64)];
}

/** A weight buffer of exactly the bytes it needs (weights live long: no pool size classes). */
function weightBuffer(gpu: Gpu, bytes: number, shape: string): GPUBuffer {
  gpu.check();
  if (bytes > gpu.maxBinding)
    throw new RangeError(
      `webgpu backend: a quantized ${shape} matrix of ${(bytes / 2 ** 20).toFixed(1)} MiB exceeds this adapter's largest storage binding ` +
        `(${(gpu.maxBinding / 2 ** 20).toFixed(0)} MiB, ${gpu.adapterName}); use the wasm backend or place fewer layers on the GPU (--gpu-layers)`,
    );
  // Zero-filled by WebGPU; 16-byte multiples so that vec4 views of it have whole elements.
  return gpu.device.createBuffer({ size: Math.max(16, Math.ceil(bytes / 16) * 16), usage: Usage.STORAGE | Usage.COPY_DST | Usage.COPY_SRC });
}

export function allocQuantized(gpu: Gpu, type: QuantType, rows: number, cols: number, bytes?: Uint8Array): QBuf {
  const size = rows * quantRowBytes(type, cols);
  checkQuantized(type, rows, cols, bytes?.length ?? size);
  const [quantRow, scaleRow] = rowLayout(type, cols);
  const shape = `[${rows}, ${cols}] ${type}`;
  const quants = weightBuffer(gpu, rows * quantRow, shape);
  const scales = type === "f16" ? null : weightBuffer(gpu, rows * scaleRow, shape);
  const w = new GpuQBuf(gpu, type, rows, cols, quantRow, scaleRow, quants, scales);
  if (bytes !== undefined && size > 0) writeQuantized(gpu, w, 0, bytes.subarray(0, size));
  return w;
}

/** `w` as a live matrix of this GPU. */
export function live(gpu: Gpu, w: QBuf): GpuQBuf {
  if (!(w instanceof GpuQBuf) || w.gpu !== gpu) throw new TypeError("webgpu backend: not a quantized matrix of this backend");
  if (w.freed) throw new Error("webgpu backend: quantized matrix used after free");
  return w;
}

/** Host bytes converted per write: bounds the temporary arrays however many rows come at once. */
const CHUNK_BYTES = 1 << 20;

export function writeQuantized(gpu: Gpu, w: QBuf, row: number, bytes: Uint8Array): void {
  const q = live(gpu, w);
  checkQuantizedWrite(q, row, bytes.length);
  const rowBytes = quantRowBytes(q.type, q.cols);
  if (rowBytes === 0 || bytes.length === 0) return;
  const rows = bytes.length / rowBytes;
  const per = Math.max(1, Math.floor(CHUNK_BYTES / (q.quantRow + q.scaleRow)));
  if (q.type === "f16" && q.quantRow === rowBytes) {
    // Even columns: ggml's rows are already the GPU's (written in pieces all the same, so that no
    // staging copy of a whole large matrix is made).
    for (let r0 = 0; r0 < rows; r0 += per) gpu.writeBytes(q.quants, (row + r0) * rowBytes, bytes.subarray(r0 * rowBytes, Math.min(rows, r0 + per) * rowBytes));
    return;
  }
  const first = Math.min(per, rows);
  // Padding (the odd f16 value, the odd scale of a row) is never written: it stays zero.
  const qc = new Uint8Array(first * q.quantRow), sc = new Uint16Array((first * q.scaleRow) / 2);
  const qc32 = new Uint32Array(qc.buffer);
  for (let r0 = 0; r0 < rows; r0 += per) {
    const rc = Math.min(per, rows - r0);
    const src = bytes.subarray(r0 * rowBytes, (r0 + rc) * rowBytes);
    if (q.type === "f16") {
      for (let r = 0; r < rc; r++) qc.set(src.subarray(r * rowBytes, (r + 1) * rowBytes), r * q.quantRow);
    } else {
      // Word by word (a block's quants start 2 bytes in, at any alignment): no per-block subarrays.
      const bb = QUANT_BLOCK_BYTES[q.type], qw = (bb - 2) / 4, nb = q.cols / 32, sPer = q.scaleRow / 2, rowWords = q.quantRow / 4;
      const view = new DataView(src.buffer, src.byteOffset, src.byteLength);
      for (let r = 0; r < rc; r++)
        for (let b = 0; b < nb; b++) {
          const p = (r * nb + b) * bb, at = r * rowWords + b * qw;
          sc[r * sPer + b] = src[p] | (src[p + 1] << 8);
          for (let i = 0; i < qw; i++) qc32[at + i] = view.getUint32(p + 2 + 4 * i, true);
        }
      gpu.writeBytes(q.scales!, (row + r0) * q.scaleRow, new Uint8Array(sc.buffer, 0, rc * q.scaleRow));
    }
    gpu.writeBytes(q.quants, (row + r0) * q.quantRow, qc.subarray(0, rc * q.quantRow));
  }
}

export function freeQuantized(gpu: Gpu, w: QBuf): void {
  if (w instanceof GpuQBuf && w.gpu === gpu && w.freed) throw new Error("webgpu backend: double free of a quantized matrix");
  const q = live(gpu, w);
  q.freed = true;
  // Commands recorded with these buffers must reach the GPU before the buffers go.
  gpu.flush();
  q.quants.destroy();
  q.scales?.destroy();
}

// ---- WGSL pieces --------------------------------------------------------------------------------

/** The f16 scale of block `blk` of weight row `row` (sw: scale words per row). */
const SCALE_FN = `
fn scale(row: u32, blk: u32) -> f32 {
  let pair = unpack2x16float(sc[row * p.sw + blk / 2u]);
  return select(pair.x, pair.y, (blk & 1u) == 1u);
}`;
/** Four int8 of a word (little-endian: byte t is element t), sign-extended by arithmetic shifts. */
const I8X4_FN = `
fn i8x4(w: u32) -> vec4f {
  let v = vec4i(bitcast<i32>(w));
  return vec4f((v << vec4u(24u, 16u, 8u, 0u)) >> vec4u(24u));
}`;
/** Q4_0 nibbles of a block's word t: low ones are elements 4t…4t+3, high ones 16+4t…16+4t+3; value q − 8. */
const NIBBLE_FNS = `
fn lo4(w: u32) -> vec4f { return vec4f((vec4u(w) >> vec4u(0u, 8u, 16u, 24u)) & vec4u(15u)) - 8.0; }
fn hi4(w: u32) -> vec4f { return vec4f((vec4u(w) >> vec4u(4u, 12u, 20u, 28u)) & vec4u(15u)) - 8.0; }`;

// ---- m = 1: one activation row (decode) ---------------------------------------------------------
// c[j] = Σ_blocks d_jb · Σ q·x: 8 weight rows per workgroup, 32 threads per row taking 16-byte
// pieces of it in turn (half a Q8_0 block, a whole Q4_0 block, 8 f16 values), then a tree reduction.
export const MV_ROWS = 8;

/**
 * The pieces of a matrix-vector product over one weight row (also the MoE kernels', moe.ts):
 * `decls` binds a (2), qs (3) and sc (4, block formats); `loop` adds lane `lane`'s share of the dot
 * of weight row `row` with the activations starting at a[a0] into `s` (p.k values, p.sw words a
 * row). `vec4`: a is read as vec4s, a0 counts them.
 */
export function matvecParts(type: QuantType, k: number): { decls: string; loop: string; vec4: boolean } {
  const f16Vec = type === "f16" && k % 8 === 0;
  let decls: string, loop: string;
  if (type === "q8_0") {
    decls = `@group(0) @binding(2) var<storage, read> a: array<vec4f>;
@group(0) @binding(3) var<storage, read> qs: array<vec4u>;
@group(0) @binding(4) var<storage, read> sc: array<u32>;${SCALE_FN}${I8X4_FN}`;
    // Piece h: 16 int8 = elements 16h…16h+15 of the row, block h/2.
    loop = `let hb = p.k / 16u; let base = row * hb;
    for (var h = lane; h < hb; h += 32u) {
      let q = qs[base + h]; let x = a0 + 4u * h;
      let t = dot(i8x4(q.x), a[x]) + dot(i8x4(q.y), a[x + 1u]) + dot(i8x4(q.z), a[x + 2u]) + dot(i8x4(q.w), a[x + 3u]);
      s = fma(scale(row, h / 2u), t, s);
    }`;
  } else if (type === "q4_0") {
    decls = `@group(0) @binding(2) var<storage, read> a: array<vec4f>;
@group(0) @binding(3) var<storage, read> qs: array<vec4u>;
@group(0) @binding(4) var<storage, read> sc: array<u32>;${SCALE_FN}${NIBBLE_FNS}`;
    // Piece b: block b, elements 32b…32b+31 = vec4s 8b…8b+7 of x.
    loop = `let nb = p.k / 32u; let base = row * nb;
    for (var b = lane; b < nb; b += 32u) {
      let q = qs[base + b]; let x = a0 + 8u * b;
      let t = (dot(lo4(q.x), a[x]) + dot(lo4(q.y), a[x + 1u])) + (dot(lo4(q.z), a[x + 2u]) + dot(lo4(q.w), a[x + 3u]))
            + (dot(hi4(q.x), a[x + 4u]) + dot(hi4(q.y), a[x + 5u])) + (dot(hi4(q.z), a[x + 6u]) + dot(hi4(q.w), a[x + 7u]));
      s = fma(scale(row, b), t, s);
    }`;
  } else if (f16Vec) {
    decls = `@group(0) @binding(2) var<storage, read> a: array<vec4f>;
@group(0) @binding(3) var<storage, read> qs: array<vec4u>;`;
    loop = `let hb = p.k / 8u; let base = row * hb;
    for (var h = lane; h < hb; h += 32u) {
      let q = qs[base + h];
      s += dot(vec4f(unpack2x16float(q.x), unpack2x16float(q.y)), a[a0 + 2u * h]) + dot(vec4f(unpack2x16float(q.z), unpack2x16float(q.w)), a[a0 + 2u * h + 1u]);
    }`;
  } else {
    // Any k: word w holds values 2w and 2w + 1 (the row's padding value is zero; x's is skipped).
    decls = `@group(0) @binding(2) var<storage, read> a: array<f32>;
@group(0) @binding(3) var<storage, read> qs: array<u32>;`;
    loop = `let base = row * p.sw;
    for (var w = lane; w < p.sw; w += 32u) {
      let f = unpack2x16float(qs[base + w]); let e = 2u * w;
      s += f.x * a[a0 + e] + select(0.0, f.y * a[a0 + e + 1u], e + 1u < p.k);
    }`;
  }
  return { decls, loop, vec4: type !== "f16" || f16Vec };
}

const matvecShaders = new Map<string, string>();
function matvecShader(type: QuantType, k: number): string {
  const key = `${type}${+(type === "f16" && k % 8 === 0)}`;
  let code = matvecShaders.get(key);
  if (code !== undefined) return code;
  const { decls, loop } = matvecParts(type, k);
  code = `
struct P { n: u32, k: u32, sw: u32, acc: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> c: array<f32>;
${decls}
var<workgroup> part: array<f32, 256>;
@compute @workgroup_size(256)
fn main(@builtin(local_invocation_id) lid: vec3u, @builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let lane = lid.x % 32u;
  let row = (wid.x + wid.y * nwg.x) * ${MV_ROWS}u + lid.x / 32u;
  var s = 0.0;
  if (row < p.n) {
    let a0 = 0u;
    ${loop}
  }
  part[lid.x] = s;
  workgroupBarrier();
  for (var w = 16u; w > 0u; w >>= 1u) {
    if (lane < w) { part[lid.x] += part[lid.x + w]; }
    workgroupBarrier();
  }
  if (lane == 0u && row < p.n) { c[row] = select(0.0, c[row], p.acc != 0u) + part[lid.x]; }
}`;
  matvecShaders.set(key, code);
  return code;
}

// ---- m > 1: tiled (prefill) ---------------------------------------------------------------------
// The dense GEMM's 64×64 tiles (gemmTile in matmul.ts), K advancing half a block (16 values) at a
// time: the 64 weight rows' half block is dequantized once into workgroup memory and serves all 64
// activation rows. The xor masks match each tile's write pattern (see gemmTile).
export const QBK = 16;
const BK = QBK;

/** Which activation and weight rows a tile loads: WGSL expressions of the tile's row `gi` and weight column `gj` (gj < p.n). */
export interface TileRows {
  /** Whether activation row gi exists (the plain GEMM: gi < p.m). */
  aOk: string;
  /** The row of `a` that tile row gi reads. */
  aRow: string;
  /** The weight row that output column gj reads. */
  wRow: string;
}
const PLAIN_ROWS: TileRows = { aOk: "gi < p.m", aRow: "gi", wRow: "gj" };

/**
 * The pieces of the tiled quantized GEMM (also the MoE kernels', moe.ts): `decls` binds a (2),
 * qs (3) and sc (4, block formats); `loadA` and `loadW` fill the tiles of K step k0 (from t, row0,
 * col0; p.k, p.n, p.sw), `tile` is gemmTile with the matching xor masks.
 */
export function tiledParts(type: QuantType, rows: TileRows = PLAIN_ROWS): { decls: string; loadA: string; loadW: string; tile: ReturnType<typeof gemmTile> } {
  let decls: string, loadA: string, loadW: string, fa: string, fb: string;
  if (type === "f16") {
    decls = `@group(0) @binding(2) var<storage, read> a: array<f32>;
@group(0) @binding(3) var<storage, read> qs: array<u32>;`;
    // 64 rows × 16 activations, 4 a thread.
    loadA = `for (var r = 0u; r < 4u; r++) {
      let e = t + 256u * r; let i = e / 16u; let pp = e % 16u;
      let gi = row0 + i; let gk = k0 + pp;
      var v = 0.0;
      if (${rows.aOk} && gk < p.k) { v = a[(${rows.aRow}) * p.k + gk]; }
      As[sa(pp, i)][i % 4u] = v;
    }`;
    // 64 rows × 8 words, 2 a thread: word wd holds values k0 + 2wd and k0 + 2wd + 1 (p.sw words a row).
    loadW = `for (var r = 0u; r < 2u; r++) {
      let e = t + 256u * r; let j = e / 8u; let wd = e % 8u;
      let gj = col0 + j; let gw = k0 / 2u + wd;
      var f = vec2f(0.0);
      if (gj < p.n && gw < p.sw) { f = unpack2x16float(qs[(${rows.wRow}) * p.sw + gw]); }
      Bs[sb(2u * wd, j)][j % 4u] = f.x; Bs[sb(2u * wd + 1u, j)][j % 4u] = f.y;
    }`;
    fa = "pp & 7u";
    fb = "(pp >> 1u) & 7u";
  } else {
    decls = `@group(0) @binding(2) var<storage, read> a: array<vec4f>;
@group(0) @binding(3) var<storage, read> qs: array<u32>;
@group(0) @binding(4) var<storage, read> sc: array<u32>;${SCALE_FN}${type === "q8_0" ? I8X4_FN : NIBBLE_FNS}`;
    // 64 rows × 4 vec4 of activations, 1 a thread.
    loadA = `{
      let i = t / 4u; let p4 = t % 4u;
      let gi = row0 + i;
      var v = vec4f(0.0);
      if (${rows.aOk}) { v = a[(${rows.aRow}) * (p.k / 4u) + k0 / 4u + p4]; }
      let x = i % 4u; let q0 = 4u * p4;
      As[sa(q0, i)][x] = v.x; As[sa(q0 + 1u, i)][x] = v.y; As[sa(q0 + 2u, i)][x] = v.z; As[sa(q0 + 3u, i)][x] = v.w;
    }`;
    // 64 rows × 4 words, 1 a thread: 4 int8 (Q8_0: words 4h…4h+3 of the block for half h), or
    // 4 nibbles (Q4_0: the block's 4 words hold both halves, low nibbles first).
    const dequant =
      type === "q8_0"
        ? "v = scale(wr, k0 / 32u) * i8x4(qs[wr * (p.k / 4u) + k0 / 4u + wq]);"
        : `let w = qs[wr * (p.k / 8u) + (k0 / 32u) * 4u + wq];
        v = scale(wr, k0 / 32u) * select(lo4(w), hi4(w), (k0 & 16u) != 0u);`;
    loadW = `{
      let j = t / 4u; let wq = t % 4u;
      let gj = col0 + j;
      var v = vec4f(0.0);
      if (gj < p.n) {
        let wr = ${rows.wRow};
        ${dequant}
      }
      let x = j % 4u; let q0 = 4u * wq;
      Bs[sb(q0, j)][x] = v.x; Bs[sb(q0 + 1u, j)][x] = v.y; Bs[sb(q0 + 2u, j)][x] = v.z; Bs[sb(q0 + 3u, j)][x] = v.w;
    }`;
    fa = fb = "(pp >> 1u) & 6u";
  }
  return { decls, loadA, loadW, tile: gemmTile(BK, fa, fb) };
}

const tiledShaders = new Map<QuantType, string>();
function tiledShader(type: QuantType): string {
  let code = tiledShaders.get(type);
  if (code !== undefined) return code;
  const { decls, loadA, loadW, tile } = tiledParts(type);
  code = `
struct P { m: u32, n: u32, k: u32, sw: u32, acc: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> c: array<f32>;
${decls}
${tile.decls}
@compute @workgroup_size(16, 16)
fn main(@builtin(local_invocation_id) lid: vec3u, @builtin(workgroup_id) wid: vec3u) {
  let tx = lid.x; let ty = lid.y; let t = ty * 16u + tx;
  let row0 = wid.y * ${TILE}u; let col0 = wid.x * ${TILE}u;
  var acc0 = vec4f(0.0); var acc1 = vec4f(0.0); var acc2 = vec4f(0.0); var acc3 = vec4f(0.0);
  for (var k0 = 0u; k0 < p.k; k0 += ${BK}u) {
    ${loadA}
    ${loadW}
    workgroupBarrier();
    ${tile.compute}
    workgroupBarrier();
  }
  ${tile.store}
}`;
  tiledShaders.set(type, code);
  return code;
}

/** Words per row of the array a shader's `p.sw` counts: scales (block formats) or f16 values. */
export const swOf = (q: GpuQBuf): number => (q.type === "f16" ? q.quantRow : q.scaleRow) / 4;

export function matmulQuantized(gpu: Gpu, c: GpuBuf, a: GpuBuf, w: QBuf, m: number, n: number, k: number, accumulate: boolean): void {
  const q = live(gpu, w);
  if (q.rows !== n || q.cols !== k) throw new RangeError(`webgpu backend: quantized matrix is [${q.rows}, ${q.cols}], matmul needs [${n}, ${k}]`);
  if (m === 0 || n === 0) return;
  const x = unaliased(gpu, a, c);
  const bindings = q.scales === null ? [c, x.buf, q.quants] : [c, x.buf, q.quants, q.scales];
  if (m === 1) gpu.dispatch(matvecShader(q.type, k), new Params().u32(n, k, swOf(q), +accumulate), bindings, groups1d(gpu, n, MV_ROWS));
  else gpu.dispatch(tiledShader(q.type), new Params().u32(m, n, k, swOf(q), +accumulate), bindings, [Math.ceil(n / TILE), Math.ceil(m / TILE)]);
  x.done();
}

// ---- embedding rows -----------------------------------------------------------------------------
// out[r·cols + col] = w[ids[r], col] = d·q exactly (an f16 scale times a small integer is exact in f32).
const embedDecls = (blocks: boolean): string => `struct P { n: u32, cols: u32, sw: u32 } @group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> qs: array<u32>;
${blocks ? "@group(0) @binding(3) var<storage, read> sc: array<u32>;\n@group(0) @binding(4)" : "@group(0) @binding(3)"} var<storage, read> ids: array<i32>;${blocks ? SCALE_FN : ""}`;
const EMBED_HEAD = `let r = i / p.cols; let col = i - r * p.cols; let row = u32(ids[r]);`;
const EMBED: Record<QuantType, string> = {
  q8_0: elementwiseShader(
    embedDecls(true),
    `${EMBED_HEAD}
  let w = bitcast<i32>(qs[row * (p.cols / 4u) + col / 4u]);
  out[i] = scale(row, col / 32u) * f32((w << (24u - 8u * (col % 4u))) >> 24u);`,
  ),
  q4_0: elementwiseShader(
    embedDecls(true),
    `${EMBED_HEAD}
  let blk = col / 32u; let e = col % 32u;
  let w = qs[row * (p.cols / 8u) + blk * 4u + (e % 16u) / 4u];
  out[i] = scale(row, blk) * (f32((w >> (8u * (e % 4u) + 4u * (e / 16u))) & 15u) - 8.0);`,
  ),
  f16: elementwiseShader(
    embedDecls(false),
    `${EMBED_HEAD}
  let f = unpack2x16float(qs[row * p.sw + col / 2u]);
  out[i] = select(f.x, f.y, (col & 1u) == 1u);`,
  ),
};

export function embeddingQuantized(gpu: Gpu, out: GpuBuf, table: QBuf, ids: Int32Array): void {
  const q = live(gpu, table);
  checkIds(ids, q.rows);
  const n = ids.length * q.cols;
  if (n === 0) return;
  const params = new Params().u32(n, q.cols, swOf(q));
  const bindings = q.scales === null ? [out, q.quants, gpu.hostWords(ids)] : [out, q.quants, q.scales, gpu.hostWords(ids)];
  gpu.dispatch(EMBED[q.type], params, bindings, groups1d(gpu, n));
}
