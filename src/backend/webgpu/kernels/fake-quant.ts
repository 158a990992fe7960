// Fake quantization for QAT: ggml Q8_0/Q4_0 round trips of weights, per-row int8 of activations,
// bit for bit the host reference (src/backend/fake-quant.ts). WGSL's f32 division may be off by
// 2.5 ulp and its f16 packing rounds as the implementation likes, so the divisions whose result
// matters to the bit and the f32 → f16 rounding of the scale are done with integer arithmetic
// (exact, ties to even); products feeding an addition go through max() so that no compiler fuses
// them into an fma (which would round once instead of twice).
import type { BlockQuantType } from "../../backend.js";
import { type Gpu, GpuBuf, Params, WG, groups1d } from "../gpu.js";

/** Most negative finite f32: max(v, LOWEST) is v, but no compiler can see that (it comes as a parameter). */
const LOWEST = -3.4028234663852886e38;

const EXACT = `
struct Fp { m: u32, e: i32 }
// |x| = m·2^e with 2^23 ≤ m < 2^24, for finite x ≠ 0 (subnormals normalised).
fn unpackF32(u: u32) -> Fp {
  let f = u & 0x7fffffu;
  let ex = i32((u >> 23u) & 0xffu);
  if (ex == 0) { let sh = countLeadingZeros(f) - 8u; return Fp(f << sh, -149 - i32(sh)); }
  return Fp(f | 0x800000u, ex - 150);
}
// a / b correctly rounded (ties to even), subnormal results included, for finite a and b ≠ 0:
// long division of the 24-bit significands gives 24 bits, a rounding bit and a sticky remainder.
fn divRne(a: f32, b: f32) -> f32 {
  let ua = bitcast<u32>(a);
  let ub = bitcast<u32>(b);
  let sign = (ua ^ ub) & 0x80000000u;
  if ((ua & 0x7fffffffu) == 0u) { return bitcast<f32>(sign); }
  let A = unpackF32(ua);
  let B = unpackF32(ub);
  var r = A.m;
  var e = A.e - B.e;
  if (r < B.m) { r <<= 1u; e -= 1; }
  var q = 0u;
  for (var k = 0; k < 25; k++) {
    q <<= 1u;
    if (r >= B.m) { r -= B.m; q |= 1u; }
    r <<= 1u;
  }
  // a/b = (q/2^24)·2^e with 2^24 ≤ q < 2^25: biased exponent e + 127.
  let field = e + 127;
  if (field >= 255) { return bitcast<f32>(sign | 0x7f800000u); }
  var sh = 1u; // low bits of q below the kept significand
  var base = 0u;
  if (field > 0) {
    base = u32(field - 1) << 23u; // + the 24-bit significand (implicit bit) makes the exponent field
  } else {
    if (field < -23) { return bitcast<f32>(sign); }
    sh = u32(2 - field);
  }
  let kept = q >> sh;
  let roundBit = (q >> (sh - 1u)) & 1u;
  let sticky = r != 0u || (q & ((1u << (sh - 1u)) - 1u)) != 0u;
  let bits = base + kept + select(0u, 1u, roundBit == 1u && (sticky || (kept & 1u) == 1u));
  return bitcast<f32>(sign | min(bits, 0x7f800000u));
}
// x rounded to f16 (ties to even, subnormals kept, overflow to ∞) and widened back: ggml's
// GGML_FP32_TO_FP16 then GGML_FP16_TO_FP32, as format/float16.ts's f32ToF16 writes it.
fn f16Round(x: f32) -> f32 {
  let w = bitcast<u32>(x);
  let sign = w & 0x80000000u;
  let ex = (w >> 23u) & 0xffu;
  let mant = w & 0x7fffffu;
  if (ex >= 113u) {
    var h = ((ex - 112u) << 10u) | (mant >> 13u);
    let rest = mant & 0x1fffu;
    if (rest > 0x1000u || (rest == 0x1000u && (h & 1u) == 1u)) { h += 1u; }
    if (h >= 0x7c00u) { return bitcast<f32>(sign | 0x7f800000u); }
    return bitcast<f32>(sign | ((((h >> 10u) + 112u) << 23u) | ((h & 0x3ffu) << 13u)));
  }
  if (ex < 102u) { return bitcast<f32>(sign); }
  let m = mant | 0x800000u;
  let sh = 126u - ex; // 14..24
  var h = m >> sh;
  let rest = m & ((1u << sh) - 1u);
  let half = 1u << (sh - 1u);
  if (rest > half || (rest == half && (h & 1u) == 1u)) { h += 1u; }
  // h units of 2^-24 (h ≤ 1024): exact in f32; the sign goes on by bits (no −0 arithmetic).
  return bitcast<f32>(sign | bitcast<u32>(f32(h) * 5.9604644775390625e-8));
}
// C's (int8_t) of an integral value: wraps modulo 256.
fn int8(q: i32) -> i32 { return (q << 24u) >> 24u; }`;

// One thread per element, 8 blocks of 32 per workgroup: a tree over each block's 32 lanes finds
// amax (Q8_0) or the index of the first value of largest magnitude (Q4_0); the block's first
// lane turns it into d, id = 1/d and the f16-rounded d; then every lane writes its value.
const fakeQuantizeShader = (type: BlockQuantType, inPlace: boolean): string => `
struct P { n: u32, lowest: f32 } @group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
${inPlace ? "" : "@group(0) @binding(2) var<storage, read> x: array<f32>;"}
var<workgroup> mag: array<f32, ${WG}>;
var<workgroup> arg: array<u32, ${WG}>;
var<workgroup> val: array<f32, ${WG}>;
var<workgroup> scale: array<vec2f, ${WG / 32}>;
${EXACT}
@compute @workgroup_size(${WG})
fn main(@builtin(local_invocation_id) l: vec3u, @builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let lid = l.x;
  let i = (wid.x + wid.y * nwg.x) * ${WG}u + lid;
  let live = i < p.n; // n is whole blocks: a block is all live or all idle
  var v = 0.0;
  if (live) { v = ${inPlace ? "out" : "x"}[i]; }
  val[lid] = v;
  mag[lid] = abs(v);
  arg[lid] = lid;
  workgroupBarrier();
  for (var w = 16u; w > 0u; w >>= 1u) {
    if ((lid & 31u) < w) {
      ${
        type === "q8_0"
          ? "mag[lid] = max(mag[lid], mag[lid + w]);"
          : `let a = mag[lid]; let b = mag[lid + w];
      // On a tie the lower index wins: the reference keeps the first value of largest magnitude.
      if (b > a || (b == a && arg[lid + w] < arg[lid])) { mag[lid] = b; arg[lid] = arg[lid + w]; }`
      }
    }
    workgroupBarrier();
  }
  if ((lid & 31u) == 0u) {
    ${
      type === "q8_0"
        ? "let d = divRne(mag[lid], 127.0); // d = amax/127"
        : "let d = select(0.0, val[arg[lid]], mag[lid] > 0.0) * -0.125; // d = max/−8 (exact); max starts at +0, as in the reference"
    }
    var id = 0.0;
    if (d != 0.0) { id = divRne(1.0, d); }
    scale[lid >> 5u] = vec2f(id, f16Round(d));
  }
  workgroupBarrier();
  if (live) {
    let sc = scale[lid >> 5u];
    let t = max(v * sc.x, p.lowest); // x·id, rounded to f32 on its own
    ${
      type === "q8_0"
        ? `// q = roundf(t): half away from zero (t − trunc t is exact)
    let tr = trunc(t);
    let q = int8(i32(tr) + select(0, select(1, -1, t < 0.0), abs(t - tr) >= 0.5));
    out[i] = f32(q) * sc.y;`
        : `// q = min(15, (int8) trunc(t + 8.5)), stored as a nibble, value (q − 8)·d
    let q = min(15, int8(i32(trunc(t + 8.5))));
    out[i] = f32((q & 15) - 8) * sc.y;`
    }
  }
}`;

const SHADERS = {
  q8_0: [fakeQuantizeShader("q8_0", false), fakeQuantizeShader("q8_0", true)],
  q4_0: [fakeQuantizeShader("q4_0", false), fakeQuantizeShader("q4_0", true)],
} as const;

export function fakeQuantize(gpu: Gpu, out: GpuBuf, x: GpuBuf, type: BlockQuantType, n: number): void {
  if (type !== "q8_0" && type !== "q4_0") throw new Error(`fakeQuantize: unknown type ${String(type)} (q8_0 or q4_0)`);
  if (n % 32 !== 0) throw new Error(`fakeQuantize: ${n} values are not whole blocks of 32`);
  if (n === 0) return;
  const params = new Params().u32(n).f32(LOWEST);
  // In place, each thread reads its element before any thread writes (a barrier lies between).
  if (out.buffer === x.buffer) gpu.dispatch(SHADERS[type][1], params, [out], groups1d(gpu, n));
  else gpu.dispatch(SHADERS[type][0], params, [out, x], groups1d(gpu, n));
}

// One workgroup per row: amax by a tree, s = amax/127, out = clamp(rint(x/s), −127, 127)·s with
// x/s exact; a zero row stays +0, a value that rounds to 0 keeps its sign (rint's −0).
const fakeQuantizeRowsShader = (inPlace: boolean): string => `
struct P { rows: u32, dim: u32 } @group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
${inPlace ? "" : "@group(0) @binding(2) var<storage, read> x: array<f32>;"}
var<workgroup> red: array<f32, ${WG}>;
${EXACT}
@compute @workgroup_size(${WG})
fn main(@builtin(local_invocation_id) l: vec3u, @builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let r = wid.x + wid.y * nwg.x;
  if (r >= p.rows) { return; }
  let lid = l.x;
  let o = r * p.dim;
  var m = 0.0;
  for (var j = lid; j < p.dim; j += ${WG}u) { m = max(m, abs(${inPlace ? "out" : "x"}[o + j])); }
  red[lid] = m;
  workgroupBarrier();
  for (var w = ${WG / 2}u; w > 0u; w >>= 1u) {
    if (lid < w) { red[lid] = max(red[lid], red[lid + w]); }
    workgroupBarrier();
  }
  let s = divRne(red[0], 127.0);
  for (var j = lid; j < p.dim; j += ${WG}u) {
    let v = ${inPlace ? "out" : "x"}[o + j];
    var y = 0.0;
    if (s != 0.0) {
      let q = round(divRne(v, s)); // ties to even
      y = clamp(q, -127.0, 127.0) * s;
      if (q == 0.0) { y = bitcast<f32>(bitcast<u32>(v) & 0x80000000u); }
    }
    out[o + j] = y;
  }
}`;

const ROWS = [fakeQuantizeRowsShader(false), fakeQuantizeRowsShader(true)] as const;

export function fakeQuantizeRows(gpu: Gpu, out: GpuBuf, x: GpuBuf, rows: number, dim: number): void {
  if (!(Number.isInteger(rows) && rows >= 0 && Number.isInteger(dim) && dim >= 0)) throw new RangeError(`fakeQuantizeRows: bad shape ${rows}×${dim}`);
  if (rows * dim === 0) return;
  // In place, each thread rewrites only the elements it read itself.
  const params = new Params().u32(rows, dim);
  if (out.buffer === x.buffer) gpu.dispatch(ROWS[1], params, [out], groups1d(gpu, rows, 1));
  else gpu.dispatch(ROWS[0], params, [out, x], groups1d(gpu, rows, 1));
}
