// ONNX model files: the protobuf wire encoding of onnx.proto's ModelProto and the messages under
// it that an inference graph needs (GraphProto, NodeProto, AttributeProto, TensorProto,
// ValueInfoProto/TypeProto/TensorShapeProto, OperatorSetIdProto, StringStringEntryProto). Only
// writing. Protobuf's wire format: every field is a key varint (field number << 3 | wire type)
// then a varint (type 0), or a varint length and that many bytes (type 2: strings, bytes,
// sub-messages). Messages are built as lists of byte chunks with
// their total length, so a weight's bytes are referenced, not copied, until the file is joined.
//
// A protobuf message cannot exceed 2 GiB, so big weights go to external data files: the
// TensorProto then carries data_location = EXTERNAL and (location, offset, length) entries, and
// the bytes live in `model.onnx_data` (and `model.onnx_data_1`, … when one file would pass the
// limit too: the chunk names transformers.js asks for).

export type OnnxElemType = "float32" | "int64" | "bool";

/** TensorProto.DataType numbers of the element types written here. */
const DATA_TYPE: Record<OnnxElemType, number> = { float32: 1, int64: 7, bool: 9 };

export interface OnnxTensor {
  name: string;
  type: OnnxElemType;
  dims: number[];
  /** Row-major values: Float32Array for float32, BigInt64Array for int64, Uint8Array (0/1) for bool. */
  data: Float32Array | BigInt64Array | Uint8Array;
}

export type OnnxAttribute =
  | { name: string; int: number }
  | { name: string; float: number }
  | { name: string; ints: number[] }
  | { name: string; tensor: OnnxTensor };

export interface OnnxNode {
  op: string;
  inputs: string[];
  outputs: string[];
  name?: string;
  domain?: string;
  attributes?: OnnxAttribute[];
}

/** A graph input or output: element type and shape, each dimension a size or a symbolic name. */
export interface OnnxValueInfo {
  name: string;
  type: OnnxElemType;
  shape: (number | string)[];
}

export interface OnnxGraph {
  name: string;
  nodes: OnnxNode[];
  initializers: OnnxTensor[];
  inputs: OnnxValueInfo[];
  outputs: OnnxValueInfo[];
}

export interface OnnxModel {
  irVersion: number;
  opsets: { domain: string; version: number }[];
  producerName: string;
  producerVersion?: string;
  graph: OnnxGraph;
  metadata?: Record<string, string>;
}

export interface ExternalDataOptions {
  /** The model file's name; data files are `${modelName}_data`, `${modelName}_data_1`, … */
  modelName: string;
  /** Tensors of at least this many bytes go to the data files (default 1024, as onnx's own converter). */
  minTensorBytes?: number;
  /** Most bytes in one data file before the next begins (default and maximum: 2 GiB − 1). */
  maxFileBytes?: number;
}

export interface SerializedOnnx {
  /** The model file's bytes. */
  model: Uint8Array;
  /** External data files in order (empty when every tensor is in the model file). */
  dataFiles: { name: string; bytes: Uint8Array }[];
}

/** The largest protobuf message (and the largest data file written here): 2 GiB − 1. */
export const PROTOBUF_LIMIT = 2 ** 31 - 1;
/** Data files' tensors start at multiples of this (onnx.proto: offsets SHOULD allow mmap). */
const DATA_ALIGNMENT = 4096;

const utf8 = new TextEncoder();

/** A message under construction: chunks in order and their total length. */
class Message {
  readonly chunks: Uint8Array[] = [];
  length = 0;

  private push(bytes: Uint8Array): void {
    if (bytes.length === 0) return;
    this.chunks.push(bytes);
    this.length += bytes.length;
  }
  private key(field: number, wireType: 0 | 2): void {
    this.push(varint(BigInt(field * 8 + wireType)));
  }
  /** An int32/int64/enum/bool field (negative numbers as 10-byte two's complement, as protobuf does). */
  int(field: number, value: number | bigint): this {
    this.key(field, 0);
    this.push(varint(BigInt.asUintN(64, BigInt(value))));
    return this;
  }
  bytes(field: number, value: Uint8Array): this {
    this.key(field, 2);
    this.push(varint(BigInt(value.length)));
    this.push(value);
    return this;
  }
  string(field: number, value: string): this {
    return this.bytes(field, utf8.encode(value));
  }
  /** A float field (wire type 5: four little-endian bytes). */
  float(field: number, value: number): this {
    this.push(varint(BigInt(field * 8 + 5)));
    const b = new Uint8Array(4);
    new DataView(b.buffer).setFloat32(0, value, true);
    this.push(b);
    return this;
  }
  message(field: number, m: Message): this {
    this.key(field, 2);
    this.push(varint(BigInt(m.length)));
    for (const c of m.chunks) this.push(c);
    return this;
  }
  join(): Uint8Array {
    return joinChunks(this.chunks, this.length);
  }
}

function joinChunks(chunks: readonly Uint8Array[], length: number): Uint8Array {
  const out = new Uint8Array(length);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

function varint(v: bigint): Uint8Array {
  const out: number[] = [];
  do {
    let byte = Number(v & 0x7fn);
    v >>= 7n;
    if (v !== 0n) byte |= 0x80;
    out.push(byte);
  } while (v !== 0n);
  return Uint8Array.from(out);
}

/** The little-endian bytes of a tensor's values (a view, no copy, on little-endian hosts as every JS engine in use). */
function rawBytes(t: OnnxTensor): Uint8Array {
  const count = t.dims.reduce((a, b) => a * b, 1);
  if (t.data.length !== count) throw new Error(`onnx: tensor ${t.name} has ${t.data.length} values for dims [${t.dims}]`);
  const wanted = t.type === "float32" ? Float32Array : t.type === "int64" ? BigInt64Array : Uint8Array;
  if (!(t.data instanceof wanted)) throw new Error(`onnx: tensor ${t.name} is ${t.type} but holds a ${t.data.constructor.name}`);
  return new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
}

/** Where external data goes, tensor by tensor, in files of at most maxFileBytes. */
class DataFiles {
  readonly files: { name: string; chunks: Uint8Array[]; length: number }[] = [];
  constructor(private readonly opts: Required<ExternalDataOptions>) {}

  /** Place `bytes`; returns the file name and offset. */
  place(bytes: Uint8Array): { location: string; offset: number } {
    const max = this.opts.maxFileBytes;
    if (bytes.length > max) throw new Error(`onnx: a tensor of ${bytes.length} bytes exceeds the data file limit of ${max} bytes`);
    let file = this.files.at(-1);
    const aligned = (n: number) => Math.ceil(n / DATA_ALIGNMENT) * DATA_ALIGNMENT;
    if (file === undefined || aligned(file.length) + bytes.length > max) {
      const i = this.files.length;
      file = { name: `${this.opts.modelName}_data${i === 0 ? "" : `_${i}`}`, chunks: [], length: 0 };
      this.files.push(file);
    }
    const offset = aligned(file.length);
    if (offset > file.length) file.chunks.push(new Uint8Array(offset - file.length));
    file.chunks.push(bytes);
    file.length = offset + bytes.length;
    return { location: file.name, offset };
  }
}

function tensorProto(t: OnnxTensor, data: DataFiles | null, minExternal: number): Message {
  const m = new Message();
  for (const d of t.dims) m.int(1, d); // dims (proto2 `repeated int64`, not packed)
  m.int(2, DATA_TYPE[t.type]); // data_type
  m.string(8, t.name); // name
  const raw = rawBytes(t);
  if (data !== null && raw.length >= minExternal) {
    const { location, offset } = data.place(raw);
    for (const [key, value] of [["location", location], ["offset", String(offset)], ["length", String(raw.length)]]) {
      m.message(13, new Message().string(1, key).string(2, value)); // external_data: StringStringEntryProto
    }
    m.int(14, 1); // data_location = EXTERNAL
  } else m.bytes(9, raw); // raw_data
  return m;
}

function attributeProto(a: OnnxAttribute, data: DataFiles | null, minExternal: number): Message {
  // AttributeProto: name 1, f 2, i 3, t 5, ints 8, type 20 (FLOAT 1, INT 2, TENSOR 4, INTS 7).
  const m = new Message().string(1, a.name);
  if ("int" in a) m.int(3, a.int).int(20, 2);
  else if ("float" in a) m.float(2, a.float).int(20, 1);
  else if ("ints" in a) {
    for (const v of a.ints) m.int(8, v); // not packed: onnx.proto declares `repeated int64 ints` without [packed]
    m.int(20, 7);
  } else m.message(5, tensorProto(a.tensor, data, minExternal)).int(20, 4);
  return m;
}

function nodeProto(n: OnnxNode, data: DataFiles | null, minExternal: number): Message {
  const m = new Message();
  for (const i of n.inputs) m.string(1, i);
  for (const o of n.outputs) m.string(2, o);
  if (n.name !== undefined) m.string(3, n.name);
  m.string(4, n.op);
  for (const a of n.attributes ?? []) m.message(5, attributeProto(a, data, minExternal));
  if (n.domain !== undefined && n.domain !== "") m.string(7, n.domain);
  return m;
}

function valueInfoProto(v: OnnxValueInfo): Message {
  // TensorShapeProto.Dimension: dim_value 1 or dim_param 2.
  const shape = new Message();
  for (const d of v.shape) shape.message(1, typeof d === "number" ? new Message().int(1, d) : new Message().string(2, d));
  const tensorType = new Message().int(1, DATA_TYPE[v.type]).message(2, shape); // TypeProto.Tensor: elem_type 1, shape 2
  return new Message().string(1, v.name).message(2, new Message().message(1, tensorType)); // TypeProto: tensor_type 1
}

function graphProto(g: OnnxGraph, data: DataFiles | null, minExternal: number): Message {
  const m = new Message();
  for (const n of g.nodes) m.message(1, nodeProto(n, data, minExternal));
  m.string(2, g.name);
  for (const t of g.initializers) m.message(5, tensorProto(t, data, minExternal));
  for (const v of g.inputs) m.message(11, valueInfoProto(v));
  for (const v of g.outputs) m.message(12, valueInfoProto(v));
  return m;
}

/** Bytes of every initializer, the size that decides whether a model needs external data. */
export function initializerBytes(g: OnnxGraph): number {
  return g.initializers.reduce((s, t) => s + t.data.byteLength, 0);
}

/**
 * The model file, with every tensor inside it, or with tensors of at least minTensorBytes in
 * external data files when `external` is given. A model file that would pass protobuf's 2 GiB
 * limit is an error naming the remedy.
 */
export function serializeOnnx(model: OnnxModel, external?: ExternalDataOptions): SerializedOnnx {
  if (external && !(external.maxFileBytes === undefined || (external.maxFileBytes > 0 && external.maxFileBytes <= PROTOBUF_LIMIT)))
    throw new Error(`onnx: maxFileBytes must be in [1, ${PROTOBUF_LIMIT}] (got ${external.maxFileBytes})`);
  const data = external ? new DataFiles({ minTensorBytes: 1024, maxFileBytes: PROTOBUF_LIMIT, ...external }) : null;
  const minExternal = external?.minTensorBytes ?? 1024;
  // ModelProto: ir_version 1, producer_name 2, producer_version 3, graph 7, opset_import 8, metadata_props 14.
  const m = new Message().int(1, model.irVersion).string(2, model.producerName);
  if (model.producerVersion !== undefined) m.string(3, model.producerVersion);
  m.message(7, graphProto(model.graph, data, minExternal));
  for (const o of model.opsets) m.message(8, new Message().string(1, o.domain).int(2, o.version));
  for (const [key, value] of Object.entries(model.metadata ?? {})) m.message(14, new Message().string(1, key).string(2, value));
  if (m.length > PROTOBUF_LIMIT)
    throw new Error(`onnx: the model file would be ${m.length} bytes, over protobuf's 2 GiB limit; store the weights as external data`);
  const dataFiles = (data?.files ?? []).map((f) => ({ name: f.name, bytes: joinChunks(f.chunks, f.length) }));
  return { model: m.join(), dataFiles };
}
