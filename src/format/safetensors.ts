// safetensors, as specified by huggingface/safetensors: an 8-byte little-endian u64 N, N bytes
// of JSON {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {str: str}}, then
// the byte buffer that the offsets index (relative to its start). We read F32, F16 and BF16
// (widened to f32) and write F32. Validation follows the reference implementation: the
// tensors must tile the byte buffer exactly (no overlaps, no holes, no trailing bytes), which is
// also what makes a file unambiguous. Works on bytes only, so it runs in a browser as well.

import { f16Table } from "./float16.js";
import type { HostTensor, NamedTensors } from "./host-tensor.js";
import type { ByteSource } from "./byte-source.js";

/** The reference implementation's limit, against absurd allocations on malformed input. */
const MAX_HEADER_BYTES = 100_000_000;

/** Bytes per element of every dtype the format defines; only some can be read (see below). */
const DTYPE_SIZE: Record<string, number> = {
  BOOL: 1, U8: 1, I8: 1, F8_E5M2: 1, F8_E4M3: 1,
  I16: 2, U16: 2, F16: 2, BF16: 2,
  I32: 4, U32: 4, F32: 4,
  I64: 8, U64: 8, F64: 8,
};
const READABLE = new Set(["F32", "F16", "BF16"]);

export interface SafetensorsEntry {
  name: string;
  dtype: string;
  shape: number[];
  /** Byte range within the data buffer (not the file): [begin, end). */
  begin: number;
  end: number;
}

export interface SafetensorsHeader {
  /** Tensors in data-buffer order. */
  entries: SafetensorsEntry[];
  metadata: Record<string, string>;
  /** Where the data buffer starts in the file: 8 + N. */
  dataStart: number;
}

function fail(msg: string): never {
  throw new Error(`safetensors: ${msg}`);
}

/** A name from the file, quoted and escaped so that error messages stay on one line. */
function quote(s: string): string {
  return oneLine(JSON.stringify(s.length > 80 ? `${s.slice(0, 80)}…` : s));
}

/** Control characters and line separators escaped, as JSON.stringify would write them. */
function oneLine(s: string): string {
  return s.replace(/[\u0000-\u001f\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function elementCount(shape: number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/**
 * Read and validate the header against the file's size; the tensor bytes are not touched.
 * `bytes` is the whole file, or (with `fileSize`) a prefix of it that holds the header.
 */
export function readSafetensorsHeader(bytes: Uint8Array, fileSize = bytes.length): SafetensorsHeader {
  if (fileSize < 8) fail(`file is ${fileSize} bytes, shorter than the 8-byte header size field`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const n = view.getUint32(0, true) + view.getUint32(4, true) * 2 ** 32;
  if (n > MAX_HEADER_BYTES) fail(`header size ${n} exceeds the ${MAX_HEADER_BYTES}-byte limit`);
  if (8 + n > fileSize) fail(`header size ${n} runs past the end of the file (${fileSize} bytes)`);
  if (8 + n > bytes.length) throw new RangeError(`safetensors: the header needs ${8 + n} bytes, ${bytes.length} given`);

  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes.subarray(8, 8 + n));
  } catch {
    fail("header is not valid UTF-8");
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    fail(`header is not valid JSON (${oneLine((e as Error).message)})`);
  }
  if (!isPlainObject(json)) fail("header is not a JSON object");

  const dataStart = 8 + n;
  const dataLength = fileSize - dataStart;
  const metadata: Record<string, string> = {};
  const entries: SafetensorsEntry[] = [];

  for (const [name, info] of Object.entries(json)) {
    if (name === "__metadata__") {
      if (!isPlainObject(info)) fail(`"__metadata__" is not an object of strings`);
      for (const [k, v] of Object.entries(info)) {
        if (typeof v !== "string") fail(`"__metadata__" value of ${quote(k)} is not a string`);
        metadata[k] = v;
      }
      continue;
    }
    const what = `tensor ${quote(name)}`;
    if (!isPlainObject(info)) fail(`${what}: entry is not an object`);
    const { dtype, shape, data_offsets: offsets } = info;
    if (typeof dtype !== "string") fail(`${what}: dtype is missing or not a string`);
    const size = DTYPE_SIZE[dtype];
    if (size === undefined) fail(`${what}: unknown dtype ${quote(dtype)}`);
    if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0))
      fail(`${what}: shape must be an array of non-negative integers (got ${JSON.stringify(shape)})`);
    if (
      !Array.isArray(offsets) || offsets.length !== 2 ||
      !offsets.every((o) => Number.isSafeInteger(o) && o >= 0) || offsets[0] > offsets[1]
    )
      fail(`${what}: data_offsets must be [begin, end] with 0 <= begin <= end (got ${JSON.stringify(offsets)})`);
    const [begin, end] = offsets as [number, number];
    if (end > dataLength) fail(`${what}: data_offsets [${begin}, ${end}] run past the data buffer (${dataLength} bytes)`);
    const expected = elementCount(shape) * size;
    if (end - begin !== expected)
      fail(`${what}: data_offsets span ${end - begin} bytes but shape [${shape.join(", ")}] of ${dtype} needs ${expected}`);
    if (begin % size !== 0) fail(`${what}: data offset ${begin} is not aligned to its ${size}-byte ${dtype} elements`);
    entries.push({ name, dtype, shape: shape.slice(), begin, end });
  }

  // The tensors must tile the buffer: sorted by offset, each starts where the previous ended.
  entries.sort((a, b) => a.begin - b.begin || a.end - b.end);
  let pos = 0;
  let prev: SafetensorsEntry | null = null;
  for (const e of entries) {
    if (e.begin < pos) fail(`tensors ${quote(prev!.name)} and ${quote(e.name)} overlap in the data buffer`);
    if (e.begin > pos) fail(`bytes ${pos}..${e.begin} of the data buffer belong to no tensor`);
    pos = e.end;
    prev = e;
  }
  if (pos !== dataLength) fail(`bytes ${pos}..${dataLength} of the data buffer belong to no tensor`);
  return { entries, metadata, dataStart };
}

// The half-precision helpers live in float16.ts; re-exported here for existing importers.
export { bf16ToF32, f16ToF32 } from "./float16.js";

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** `count` elements of `dtype` (F32, F16 or BF16, little-endian) widened to f32 (into `into`'s first `count` when given). */
export function decodeTensor(bytes: Uint8Array, dtype: string, count: number, into?: Float32Array): Float32Array {
  const out = into === undefined ? new Float32Array(count) : into.subarray(0, count);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (dtype === "F32") {
    // Copy the bytes rather than aliasing the input: its offset may not be 4-aligned.
    if (LITTLE_ENDIAN) new Uint8Array(out.buffer, out.byteOffset, 4 * count).set(bytes.subarray(0, 4 * count));
    else for (let i = 0; i < count; i++) out[i] = view.getFloat32(4 * i, true);
  } else if (dtype === "F16") {
    const table = f16Table();
    for (let i = 0; i < count; i++) out[i] = table[view.getUint16(2 * i, true)]!;
  } else {
    // BF16: write the bits directly so NaN payloads survive.
    const u = new Uint32Array(out.buffer, out.byteOffset, count);
    for (let i = 0; i < count; i++) u[i] = view.getUint16(2 * i, true) << 16;
  }
  return out;
}

/** Open a file by its header (two reads: the size field, then the header); tensors stay unread. */
export function openSafetensors(source: ByteSource): SafetensorsHeader {
  if (source.size < 8) fail(`file is ${source.size} bytes, shorter than the 8-byte header size field`);
  const size = source.read(0, 8);
  const view = new DataView(size.buffer, size.byteOffset, 8);
  const n = view.getUint32(0, true) + view.getUint32(4, true) * 2 ** 32;
  if (n > MAX_HEADER_BYTES) fail(`header size ${n} exceeds the ${MAX_HEADER_BYTES}-byte limit`);
  if (8 + n > source.size) fail(`header size ${n} runs past the end of the file (${source.size} bytes)`);
  const prefix = new Uint8Array(8 + n);
  prefix.set(size);
  prefix.set(source.read(8, n), 8);
  return readSafetensorsHeader(prefix, source.size);
}

/** Whether Bonsai can decode a dtype (others are validated, not read). */
export function isReadableDtype(dtype: string): boolean {
  return READABLE.has(dtype);
}

/** Parse a whole file; every tensor is converted to f32. Tensors come in data-buffer order. */
export function parseSafetensors(bytes: Uint8Array): { tensors: NamedTensors; metadata: Record<string, string> } {
  const header = readSafetensorsHeader(bytes);
  const tensors: NamedTensors = new Map();
  for (const e of header.entries) {
    if (!READABLE.has(e.dtype))
      fail(`tensor ${quote(e.name)} has dtype ${e.dtype}; only F32, F16 and BF16 can be read`);
    const raw = bytes.subarray(header.dataStart + e.begin, header.dataStart + e.end);
    tensors.set(e.name, { shape: e.shape, data: decodeTensor(raw, e.dtype, elementCount(e.shape)) });
  }
  return { tensors, metadata: header.metadata };
}

/**
 * Write F32 tensors. Like the reference writer: tensors sorted by name, data contiguous in that
 * order, header padded with spaces so the data starts at a multiple of 8 bytes. The JSON is built
 * by hand because JSON.stringify would move integer-like keys (a tensor named "0") to the front.
 */
export function serializeSafetensors(tensors: NamedTensors, metadata?: Record<string, string>): Uint8Array {
  const names = [...tensors.keys()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  const parts: string[] = [];
  if (metadata !== undefined) {
    for (const [k, v] of Object.entries(metadata))
      if (typeof v !== "string") fail(`metadata value of ${quote(k)} is not a string`);
    parts.push(`"__metadata__":${JSON.stringify(metadata)}`);
  }
  let offset = 0;
  const placed: { t: HostTensor; at: number }[] = [];
  for (const name of names) {
    if (name === "__metadata__") fail(`"__metadata__" cannot be a tensor name`);
    const t = tensors.get(name)!;
    if (!t.shape.every((d) => Number.isSafeInteger(d) && d >= 0))
      fail(`tensor ${quote(name)}: shape must be non-negative integers (got [${t.shape.join(", ")}])`);
    const n = elementCount(t.shape);
    if (t.data.length !== n) fail(`tensor ${quote(name)}: shape [${t.shape.join(", ")}] needs ${n} values, data has ${t.data.length}`);
    const end = offset + 4 * n;
    parts.push(`${JSON.stringify(name)}:{"dtype":"F32","shape":${JSON.stringify(t.shape)},"data_offsets":[${offset},${end}]}`);
    placed.push({ t, at: offset });
    offset = end;
  }
  let header = new TextEncoder().encode(`{${parts.join(",")}}`);
  const pad = (8 - (header.length % 8)) % 8;
  if (pad > 0) {
    const padded = new Uint8Array(header.length + pad).fill(0x20);
    padded.set(header);
    header = padded;
  }

  const out = new Uint8Array(8 + header.length + offset);
  const view = new DataView(out.buffer);
  view.setUint32(0, header.length % 2 ** 32, true);
  view.setUint32(4, Math.floor(header.length / 2 ** 32), true);
  out.set(header, 8);
  const dataStart = 8 + header.length;
  for (const { t, at } of placed) {
    if (LITTLE_ENDIAN) out.set(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength), dataStart + at);
    else for (let i = 0; i < t.data.length; i++) view.setFloat32(dataStart + at + 4 * i, t.data[i]!, true);
  }
  return out;
}
