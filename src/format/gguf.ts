// GGUF v3 (ggml's docs/gguf.md): the header — magic "GGUF", version, tensor count, metadata
// key/value pairs of typed values, tensor infos — then alignment padding and the tensor data.
// This file reads the header from the first bytes of a file (tensor data is read separately, on
// demand, by whoever owns the file: see the model loader), validates tensor infos against the
// file's size, and writes whole files laid out as llama.cpp's writer lays them out.

import { ggmlBlockSize, ggmlRowBytes, ggmlTypeName, isKnownGgmlType, type GgmlType } from "./ggml-quants.js";

export const GGUF_MAGIC = 0x46554747; // "GGUF" little-endian

export enum GgufType {
  UINT8 = 0,
  INT8 = 1,
  UINT16 = 2,
  INT16 = 3,
  UINT32 = 4,
  INT32 = 5,
  FLOAT32 = 6,
  BOOL = 7,
  STRING = 8,
  ARRAY = 9,
  UINT64 = 10,
  INT64 = 11,
  FLOAT64 = 12,
}

/** A metadata value. 64-bit integers are numbers when exact, bigint otherwise. Arrays keep their element type. */
export type GgufValue = number | bigint | boolean | string | GgufArray;
export interface GgufArray {
  readonly elementType: GgufType;
  readonly values: GgufValue[];
}

export interface GgufTensorInfo {
  name: string;
  /** ggml order: fastest-varying dimension first (a row-major [rows, cols] matrix is [cols, rows]). */
  dims: number[];
  /** ggml type id (F32 = 0, F16 = 1, Q4_0 = 2, …). */
  type: number;
  /** Byte offset from the start of the data section. */
  offset: number;
}

export interface GgufHeader {
  version: number;
  metadata: Map<string, GgufValue>;
  /** The type each metadata key was stored with (writers need it to round-trip). */
  metadataTypes: Map<string, GgufType>;
  tensors: GgufTensorInfo[];
  alignment: number;
  /** Absolute file offset of the data section. */
  dataOffset: number;
}

/** Thrown when the header needs more bytes than were given: read a larger prefix and retry. */
export class GgufNeedMoreBytes extends Error {
  constructor(readonly needed: number) {
    super(`gguf: header needs at least ${needed} bytes`);
  }
}

function fail(msg: string): never {
  throw new Error(`gguf: ${msg}`);
}

/** A name read from a file, quoted and escaped so that error messages stay on one line. */
function quote(s: string): string {
  const short = s.length > 80 ? `${s.slice(0, 80)}…` : s;
  return JSON.stringify(short).replace(/\u2028/g, "\\u2028").replace(/\u2029/g, "\\u2029");
}

/** The fewest bytes a value of each type takes, to bound array lengths before reading them. */
const MIN_VALUE_BYTES: Record<GgufType, number> = {
  [GgufType.UINT8]: 1, [GgufType.INT8]: 1, [GgufType.BOOL]: 1,
  [GgufType.UINT16]: 2, [GgufType.INT16]: 2,
  [GgufType.UINT32]: 4, [GgufType.INT32]: 4, [GgufType.FLOAT32]: 4,
  [GgufType.UINT64]: 8, [GgufType.INT64]: 8, [GgufType.FLOAT64]: 8,
  [GgufType.STRING]: 8, // the length
  [GgufType.ARRAY]: 12, // element type and length
};

// Limits against absurd values in malformed files (far above anything real).
const MAX_TENSORS = 1 << 20;
const MAX_KV = 1 << 20;
const MAX_DIMS = 8;

class Cursor {
  pos = 0;
  private readonly view: DataView;
  constructor(
    private readonly bytes: Uint8Array,
    /** Size of the whole file, when known: lengths past it are errors, not "need more bytes". */
    private readonly fileSize: number,
  ) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }
  private need(n: number): void {
    const end = this.pos + n;
    if (end > this.fileSize) fail(`unexpected end of file at byte ${this.pos} (needs ${n} more bytes, file has ${this.fileSize})`);
    if (end > this.bytes.length) throw new GgufNeedMoreBytes(end);
  }
  u8(): number {
    this.need(1);
    return this.view.getUint8(this.pos++);
  }
  u32(): number {
    this.need(4);
    const v = this.view.getUint32(this.pos, true);
    this.pos += 4;
    return v;
  }
  u64(): bigint {
    this.need(8);
    const v = this.view.getBigUint64(this.pos, true);
    this.pos += 8;
    return v;
  }
  /** A u64 that must fit a JS number below `limit`. */
  count(what: string, limit: number): number {
    const v = this.u64();
    if (v > BigInt(limit)) fail(`${what} ${v} is beyond the limit ${limit}`);
    return Number(v);
  }
  value(type: GgufType, depth = 0): GgufValue {
    const v = this.view;
    const at = (n: number): number => {
      this.need(n);
      const p = this.pos;
      this.pos += n;
      return p;
    };
    switch (type) {
      case GgufType.UINT8: return v.getUint8(at(1));
      case GgufType.INT8: return v.getInt8(at(1));
      case GgufType.UINT16: return v.getUint16(at(2), true);
      case GgufType.INT16: return v.getInt16(at(2), true);
      case GgufType.UINT32: return v.getUint32(at(4), true);
      case GgufType.INT32: return v.getInt32(at(4), true);
      case GgufType.FLOAT32: return v.getFloat32(at(4), true);
      case GgufType.BOOL: {
        const b = v.getUint8(at(1));
        if (b > 1) fail(`bool value ${b} at byte ${this.pos - 1}`);
        return b === 1;
      }
      case GgufType.STRING: return this.string();
      case GgufType.UINT64: return exact(v.getBigUint64(at(8), true));
      case GgufType.INT64: return exact(v.getBigInt64(at(8), true));
      case GgufType.FLOAT64: return v.getFloat64(at(8), true);
      case GgufType.ARRAY: {
        if (depth > 4) fail("arrays nested too deeply");
        const elementType = this.u32();
        if (!(elementType in GgufType)) fail(`unknown array element type ${elementType}`);
        const n = this.count("array length", Math.floor((this.fileSize - this.pos - 8) / MIN_VALUE_BYTES[elementType as GgufType]));
        // Grown by push: a length that passes the bound may still exceed what the prefix holds.
        const values: GgufValue[] = [];
        for (let i = 0; i < n; i++) values.push(this.value(elementType, depth + 1));
        return { elementType, values };
      }
      default:
        fail(`unknown metadata value type ${type as number}`);
    }
  }
  string(): string {
    const n = this.count("string length", this.fileSize - this.pos - 8);
    this.need(n);
    const s = utf8.decode(this.bytes.subarray(this.pos, this.pos + n));
    this.pos += n;
    return s;
  }
}

// ignoreBOM keeps a leading U+FEFF: it is a real token in Llama's vocabulary, not a byte-order mark.
const utf8 = new TextDecoder("utf-8", { fatal: false, ignoreBOM: true });

function exact(v: bigint): number | bigint {
  return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
}

/**
 * Parse a GGUF header from the first bytes of a file of `fileSize` bytes. Throws
 * GgufNeedMoreBytes when `bytes` is too short (read more and retry) and a one-line Error for
 * malformed files.
 */
export function parseGgufHeader(bytes: Uint8Array, fileSize = bytes.length): GgufHeader {
  const c = new Cursor(bytes, fileSize);
  if (fileSize < 4 || (bytes.length >= 4 && new DataView(bytes.buffer, bytes.byteOffset, 4).getUint32(0, true) !== GGUF_MAGIC)) fail("not a GGUF file (bad magic)");
  c.u32();
  const version = c.u32();
  if (version !== 2 && version !== 3) fail(`unsupported version ${version} (Bonsai reads versions 2 and 3)`);
  const tensorCount = c.count("tensor count", MAX_TENSORS);
  const kvCount = c.count("metadata count", MAX_KV);
  const metadata = new Map<string, GgufValue>();
  const metadataTypes = new Map<string, GgufType>();
  for (let i = 0; i < kvCount; i++) {
    const key = c.string();
    const type = c.u32();
    if (!(type in GgufType)) fail(`metadata ${quote(key)}: unknown value type ${type}`);
    if (metadata.has(key)) fail(`metadata key ${quote(key)} appears twice`);
    metadata.set(key, c.value(type));
    metadataTypes.set(key, type);
  }
  const tensors: GgufTensorInfo[] = [];
  const names = new Set<string>();
  for (let i = 0; i < tensorCount; i++) {
    const name = c.string();
    const nDims = c.u32();
    if (nDims < 1 || nDims > MAX_DIMS) fail(`tensor ${quote(name)}: ${nDims} dimensions`);
    const dims: number[] = [];
    for (let d = 0; d < nDims; d++) dims.push(c.count(`tensor ${quote(name)} dimension`, 2 ** 40));
    const type = c.u32();
    const offset = c.count(`tensor ${quote(name)} offset`, fileSize);
    if (names.has(name)) fail(`tensor ${quote(name)} appears twice`);
    names.add(name);
    tensors.push({ name, dims, type, offset });
  }
  const alignValue = metadata.get("general.alignment") ?? 32;
  if (!isAlignment(alignValue)) fail(`general.alignment ${describe(alignValue)} is not a power of two up to 2^30`);
  const dataOffset = Math.ceil(c.pos / alignValue) * alignValue;
  for (const t of tensors) if (t.offset % alignValue !== 0) fail(`tensor ${quote(t.name)}: offset ${t.offset} is not aligned to ${alignValue}`);
  return { version, metadata, metadataTypes, tensors, alignment: alignValue, dataOffset };
}

function isAlignment(v: unknown): v is number {
  return typeof v === "number" && Number.isInteger(v) && v > 0 && v <= 2 ** 30 && (v & (v - 1)) === 0;
}

/** A metadata value for an error message, on one line. */
function describe(v: GgufValue): string {
  if (typeof v === "string") return quote(v);
  if (typeof v === "object") return `(an array of ${v.values.length})`;
  return String(v);
}

/** A metadata value as a plain JS value: arrays become arrays of their values. */
export function plainValue(v: GgufValue | undefined): unknown {
  if (v === undefined) return undefined;
  if (typeof v === "object" && v !== null && "values" in v) return v.values.map(plainValue);
  return v;
}

// ---- tensor sizes and validation --------------------------------------------------------------

/** Bytes of a tensor's data: whole rows of dims[0] elements (a whole number of blocks) times the other dims. */
export function tensorByteSize(info: { dims: readonly number[]; type: number }): number {
  const [first = 1, ...rest] = info.dims;
  let size = ggmlRowBytes(info.type, first);
  for (const d of rest) {
    if (!Number.isSafeInteger(d) || d < 0) fail(`bad dimension ${d}`);
    size *= d;
  }
  if (!Number.isSafeInteger(size)) fail(`tensor of dims [${info.dims.join(", ")}] is too large`);
  return size;
}

/**
 * Check every tensor info of a parsed header against the file: a known type, a first dimension
 * that is a whole number of blocks, an element count that fits, and data that lies inside the file
 * without overlapping another tensor's. Throws a one-line Error naming the tensor; returns each
 * tensor's byte size, in header order.
 */
export function validateTensorInfos(header: GgufHeader, fileSize: number): number[] {
  const sizes: number[] = [];
  for (const t of header.tensors) {
    const what = `tensor ${quote(t.name)}`;
    if (!isKnownGgmlType(t.type)) fail(`${what}: unknown ggml type ${t.type}`);
    const blockSize = ggmlBlockSize(t.type);
    const first = t.dims[0] ?? 1;
    if (first % blockSize !== 0)
      fail(`${what}: first dimension ${first} is not a multiple of the ${ggmlTypeName(t.type)} block size ${blockSize}`);
    let elements = 1;
    for (const d of t.dims) elements *= d;
    if (!Number.isSafeInteger(elements)) fail(`${what}: dims [${t.dims.join(", ")}] have too many elements`);
    let size = 0;
    try {
      size = tensorByteSize(t);
    } catch (e) {
      fail(`${what}: ${(e as Error).message.replace(/^gguf: /, "")}`);
    }
    const begin = header.dataOffset + t.offset;
    if (begin + size > fileSize)
      fail(`${what}: data at bytes ${begin}..${begin + size} runs past the end of the file (${fileSize} bytes)`);
    sizes.push(size);
  }
  // No two tensors may share bytes (empty tensors take none).
  const order = header.tensors.map((t, i) => ({ t, size: sizes[i]! })).filter((e) => e.size > 0);
  order.sort((a, b) => a.t.offset - b.t.offset);
  for (let i = 1; i < order.length; i++) {
    const prev = order[i - 1]!;
    if (order[i]!.t.offset < prev.t.offset + prev.size) fail(`tensors ${quote(prev.t.name)} and ${quote(order[i]!.t.name)} overlap`);
  }
  return sizes;
}

/** A tensor's data bytes within the whole file (a view, not a copy), checked to lie inside it. */
export function ggufTensorBytes(file: Uint8Array, header: GgufHeader, info: GgufTensorInfo): Uint8Array {
  const size = tensorByteSize(info);
  const begin = header.dataOffset + info.offset;
  if (begin + size > file.length) fail(`tensor ${quote(info.name)}: data at bytes ${begin}..${begin + size} runs past the end of the file (${file.length} bytes)`);
  return file.subarray(begin, begin + size);
}

// ---- writing ----------------------------------------------------------------------------------

/** One metadata key/value pair to write. Arrays are a GgufArray, or plain values with `elementType`. */
export interface GgufMetadataEntry {
  key: string;
  type: GgufType;
  value: GgufValue | readonly GgufValue[];
  elementType?: GgufType;
}

export interface GgufTensorToWrite {
  name: string;
  /** ggml order: fastest-varying dimension first. */
  dims: readonly number[];
  type: GgmlType;
  /** Exactly tensorByteSize({dims, type}) bytes, already encoded (see ggml-quants.ts). */
  data: Uint8Array;
}

/** The metadata of a parsed header as entries, in file order (for rewriting a file). */
export function ggufMetadataEntries(header: GgufHeader): GgufMetadataEntry[] {
  return [...header.metadata].map(([key, value]) => ({ key, type: header.metadataTypes.get(key)!, value }));
}

/** llama.cpp's readers reject longer tensor names (GGML_MAX_NAME is 64 with the NUL). */
const MAX_NAME_BYTES = 63;
/** llama.cpp's readers reject tensors of more dimensions (GGML_MAX_DIMS). */
const MAX_WRITE_DIMS = 4;

const utf8Encoder = new TextEncoder();

/** A growable little-endian byte buffer. */
class Writer {
  bytes = new Uint8Array(1024);
  view = new DataView(this.bytes.buffer);
  pos = 0;
  private reserve(n: number): number {
    if (this.pos + n > this.bytes.length) {
      const next = new Uint8Array(Math.max(this.bytes.length * 2, this.pos + n));
      next.set(this.bytes.subarray(0, this.pos));
      this.bytes = next;
      this.view = new DataView(next.buffer);
    }
    const at = this.pos;
    this.pos += n;
    return at;
  }
  // reserve() may replace the buffer, so it runs before this.view is read.
  u8(v: number): void {
    const at = this.reserve(1);
    this.view.setUint8(at, v);
  }
  u32(v: number): void {
    const at = this.reserve(4);
    this.view.setUint32(at, v, true);
  }
  u64(v: number | bigint): void {
    const at = this.reserve(8);
    this.view.setBigUint64(at, BigInt(v), true);
  }
  raw(b: Uint8Array): void {
    const at = this.reserve(b.length);
    this.bytes.set(b, at);
  }
  string(s: string): void {
    const b = utf8Encoder.encode(s);
    this.u64(b.length);
    this.raw(b);
  }
  /** Zero bytes up to the next multiple of `alignment` (from the start of the file). */
  pad(alignment: number): void {
    this.reserve((alignment - (this.pos % alignment)) % alignment); // new bytes are already zero
  }
  result(): Uint8Array { return this.bytes.slice(0, this.pos); }
}

const INT_RANGES: Partial<Record<GgufType, readonly [number, number]>> = {
  [GgufType.UINT8]: [0, 0xff], [GgufType.INT8]: [-0x80, 0x7f],
  [GgufType.UINT16]: [0, 0xffff], [GgufType.INT16]: [-0x8000, 0x7fff],
  [GgufType.UINT32]: [0, 0xffffffff], [GgufType.INT32]: [-0x80000000, 0x7fffffff],
};

function writeValue(w: Writer, type: GgufType, value: unknown, where: string, elementType?: GgufType): void {
  const bad = (): never => fail(`${where}: ${describeInput(value)} is not a valid ${GgufType[type] ?? `type ${type}`} value`);
  const range = INT_RANGES[type];
  if (range !== undefined) {
    if (typeof value !== "number" || !Number.isInteger(value) || value < range[0] || value > range[1]) bad();
    const v = value as number;
    switch (type) {
      case GgufType.UINT8: w.u8(v); break;
      case GgufType.INT8: w.u8(v & 0xff); break;
      case GgufType.UINT16: case GgufType.INT16: w.raw(new Uint8Array([v & 0xff, (v >> 8) & 0xff])); break;
      default: w.u32(v >>> 0);
    }
    return;
  }
  switch (type) {
    case GgufType.FLOAT32:
    case GgufType.FLOAT64: {
      if (typeof value !== "number") bad();
      const n = type === GgufType.FLOAT32 ? 4 : 8;
      const b = new Uint8Array(n);
      if (n === 4) new DataView(b.buffer).setFloat32(0, value as number, true);
      else new DataView(b.buffer).setFloat64(0, value as number, true);
      w.raw(b);
      return;
    }
    case GgufType.BOOL:
      if (typeof value !== "boolean") bad();
      w.u8(value ? 1 : 0);
      return;
    case GgufType.STRING:
      if (typeof value !== "string") bad();
      w.string(value as string);
      return;
    case GgufType.UINT64:
    case GgufType.INT64: {
      const signed = type === GgufType.INT64;
      if (typeof value !== "bigint" && !(typeof value === "number" && Number.isSafeInteger(value))) bad();
      const v = BigInt(value as number | bigint);
      if (signed ? v !== BigInt.asIntN(64, v) : v !== BigInt.asUintN(64, v)) bad();
      w.u64(BigInt.asUintN(64, v));
      return;
    }
    case GgufType.ARRAY: {
      // A GgufArray carries its element type; a plain array takes it from the entry.
      let et = elementType;
      let values: unknown = value;
      if (typeof value === "object" && value !== null && !Array.isArray(value) && "values" in value) {
        et = (value as GgufArray).elementType;
        values = (value as GgufArray).values;
      }
      if (!Array.isArray(values) || et === undefined || !(et in GgufType)) bad();
      w.u32(et!);
      w.u64((values as unknown[]).length);
      (values as unknown[]).forEach((v, i) => writeValue(w, et!, v, `${where}[${i}]`));
      return;
    }
    default:
      fail(`${where}: unknown value type ${type as number}`);
  }
}

function describeInput(v: unknown): string {
  if (typeof v === "string") return quote(v);
  if (typeof v === "bigint") return `${v}n`;
  if (Array.isArray(v)) return `an array of ${v.length}`;
  if (typeof v === "object" && v !== null) return "an object";
  return String(v);
}

/**
 * Write a GGUF v3 file, laid out as llama.cpp's gguf writer does: header, metadata in the given
 * order, tensor infos, zero padding to `alignment`, then each tensor's data padded with zeros to
 * `alignment` (the last one too), each tensor's offset being the padded end of the one before.
 * `general.alignment` (UINT32) is appended when `alignment` is not the default 32 and the
 * metadata does not already carry it.
 */
export function serializeGguf(meta: readonly GgufMetadataEntry[], tensors: readonly GgufTensorToWrite[], alignment = 32): Uint8Array {
  if (!isAlignment(alignment)) fail(`alignment ${alignment} is not a power of two up to 2^30`);
  const entries = [...meta];
  const given = entries.find((e) => e.key === "general.alignment");
  if (given !== undefined) {
    if (given.type !== GgufType.UINT32 || given.value !== alignment)
      fail(`metadata general.alignment (${describeInput(given.value)}) must be a UINT32 equal to the alignment ${alignment}`);
  } else if (alignment !== 32) {
    entries.push({ key: "general.alignment", type: GgufType.UINT32, value: alignment });
  }

  const w = new Writer();
  w.u32(GGUF_MAGIC);
  w.u32(3);
  w.u64(tensors.length);
  w.u64(entries.length);
  const keys = new Set<string>();
  for (const e of entries) {
    if (keys.has(e.key)) fail(`metadata key ${quote(e.key)} appears twice`);
    keys.add(e.key);
    w.string(e.key);
    w.u32(e.type);
    writeValue(w, e.type, e.value, `metadata ${quote(e.key)}`, e.elementType);
  }

  const names = new Set<string>();
  let offset = 0;
  for (const t of tensors) {
    const what = `tensor ${quote(t.name)}`;
    if (names.has(t.name)) fail(`${what} appears twice`);
    names.add(t.name);
    if (utf8Encoder.encode(t.name).length > MAX_NAME_BYTES) fail(`${what}: name is longer than ${MAX_NAME_BYTES} bytes`);
    if (t.dims.length < 1 || t.dims.length > MAX_WRITE_DIMS) fail(`${what}: ${t.dims.length} dimensions (1 to ${MAX_WRITE_DIMS} can be written)`);
    if (!t.dims.every((d) => Number.isSafeInteger(d) && d >= 0)) fail(`${what}: dims [${t.dims.join(", ")}] must be non-negative integers`);
    if (!isKnownGgmlType(t.type)) fail(`${what}: unknown ggml type ${t.type as number}`);
    const size = tensorByteSize(t);
    if (t.data.length !== size) fail(`${what}: dims [${t.dims.join(", ")}] of ${ggmlTypeName(t.type)} need ${size} bytes, data has ${t.data.length}`);
    w.string(t.name);
    w.u32(t.dims.length);
    for (const d of t.dims) w.u64(d);
    w.u32(t.type);
    w.u64(offset);
    offset += Math.ceil(size / alignment) * alignment;
  }

  w.pad(alignment);
  for (const t of tensors) {
    w.raw(t.data);
    w.pad(alignment);
  }
  return w.result();
}
