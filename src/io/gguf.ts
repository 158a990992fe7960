// GGUF v3 (ggml's docs/gguf.md): the header — magic "GGUF", version, tensor count, metadata
// key/value pairs of typed values, tensor infos — then alignment padding and the tensor data.
// This file reads the header from the first bytes of a file; tensor data is read separately, on
// demand, by whoever owns the file (see the model loader).

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
        const n = this.count("array length", this.fileSize - this.pos);
        const values: GgufValue[] = new Array(n);
        for (let i = 0; i < n; i++) values[i] = this.value(elementType, depth + 1);
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

const utf8 = new TextDecoder("utf-8", { fatal: false });

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
    if (!(type in GgufType)) fail(`metadata ${key}: unknown value type ${type}`);
    if (metadata.has(key)) fail(`metadata key ${key} appears twice`);
    metadata.set(key, c.value(type));
    metadataTypes.set(key, type);
  }
  const tensors: GgufTensorInfo[] = [];
  const names = new Set<string>();
  for (let i = 0; i < tensorCount; i++) {
    const name = c.string();
    const nDims = c.u32();
    if (nDims < 1 || nDims > MAX_DIMS) fail(`tensor ${name}: ${nDims} dimensions`);
    const dims: number[] = [];
    for (let d = 0; d < nDims; d++) dims.push(c.count(`tensor ${name} dimension`, 2 ** 40));
    const type = c.u32();
    const offset = c.count(`tensor ${name} offset`, fileSize);
    if (names.has(name)) fail(`tensor ${name} appears twice`);
    names.add(name);
    tensors.push({ name, dims, type, offset });
  }
  const alignValue = metadata.get("general.alignment") ?? 32;
  if (typeof alignValue !== "number" || !Number.isInteger(alignValue) || alignValue <= 0 || (alignValue & (alignValue - 1)) !== 0)
    fail(`general.alignment ${String(alignValue)} is not a power of two`);
  const dataOffset = Math.ceil(c.pos / alignValue) * alignValue;
  for (const t of tensors) if (t.offset % alignValue !== 0) fail(`tensor ${t.name}: offset ${t.offset} is not aligned to ${alignValue}`);
  return { version, metadata, metadataTypes, tensors, alignment: alignValue, dataOffset };
}

/** A metadata value as a plain JS value: arrays become arrays of their values. */
export function plainValue(v: GgufValue | undefined): unknown {
  if (v === undefined) return undefined;
  if (typeof v === "object" && v !== null && "values" in v) return v.values.map(plainValue);
  return v;
}
