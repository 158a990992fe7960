// Mutation fuzzing of the GGUF and safetensors readers: start from valid files, apply random
// mutations (bit flips, bytes set to 0x00/0xFF/0x7F, truncations, insertions, length and count
// fields overwritten with huge values, numbers in the safetensors JSON replaced by extreme ones)
// and require that reading either succeeds or throws a one-line Error starting with "gguf:" or
// "safetensors:" — never a RangeError from a DataView, a TypeError, an allocation sized by an
// unchecked field, or a hang. The same holds for the other untrusted inputs (second half of this
// file): tokenizer.json and Bonsai's tokenizer JSON, GGUF tokenizer metadata, and whole GGUF
// models through the loader path. test/fuzz-formats.test.ts runs a few thousand cases per target;
// `npm run fuzz` runs fifty times as many (BONSAI_FUZZ_SCALE and BONSAI_FUZZ_SEED set others).
import { existsSync, readFileSync } from "node:fs";
import { MemorySource } from "../src/format/byte-source.js";
import { GgmlType, dequantize, ggmlBlockSize, ggmlTypeName, isKnownGgmlType, quantize } from "../src/format/ggml-quants.js";
import { GgufFile, ggufQuants, llamaConfigFromGguf, llamaTensorsFromGguf, llamaToGguf } from "../src/io/gguf-llama.js";
import {
  GgufNeedMoreBytes, GgufType, ggufMetadataEntries, ggufTensorBytes, parseGgufHeader, plainValue, serializeGguf, tensorByteSize, validateTensorInfos,
  type GgufArray, type GgufMetadataEntry, type GgufTensorToWrite, type GgufValue,
} from "../src/format/gguf.js";
import type { NamedTensors } from "../src/format/host-tensor.js";
import { parseSafetensors, serializeSafetensors } from "../src/format/safetensors.js";
import { normalizeConfig, parameterNames, parameterShape } from "../src/nn/config.js";
import type { ByteBpeTokenizer } from "../src/tokenizer/byte-bpe.js";
import { tokenizerFromGgufMetadata, tokenizerToGgufMetadata } from "../src/tokenizer/gguf-vocab.js";
import { tokenizerToHfJson } from "../src/tokenizer/hf-tokenizer-json.js";
import { tokenizerFromJSON, tokenizerFromJsonText } from "../src/tokenizer/load.js";
import type { SpmTokenizer } from "../src/tokenizer/spm.js";
import type { Tokenizer } from "../src/tokenizer/tokenizer.js";
import { trainTokenizer } from "../src/tokenizer/train-bpe.js";
import { Rng } from "../src/util/rng.js";

/** A file to mutate: its bytes, the offsets of its length/count fields, and the size it claims. */
interface Seed {
  format: "gguf" | "safetensors";
  bytes: Uint8Array;
  /** Offsets of u64 length/count/dimension/offset fields (mutated with huge values). */
  u64Fields: number[];
  /** For a header prefix: the size of the whole file (the prefix is shorter). */
  fileSize?: number;
}

export interface FuzzResult {
  cases: number;
  accepted: number;
  rejected: number;
  /** One line per misbehaviour: the mutation and what went wrong. */
  failures: string[];
  maxCaseMs: number;
  /** The slowest case's mutation (runs of the tokenizer and model targets). */
  slowest?: string;
}

/** A small GGUF with metadata of every kind and tensors of several types. */
export function sampleGguf(): Uint8Array {
  const rng = new Rng(11);
  const values = Float32Array.from({ length: 64 }, () => rng.normal());
  return serializeGguf(
    [
      { key: "general.architecture", type: GgufType.STRING, value: "llama" },
      { key: "llama.block_count", type: GgufType.UINT32, value: 2 },
      { key: "llama.rope.freq_base", type: GgufType.FLOAT32, value: 10000 },
      { key: "big", type: GgufType.UINT64, value: 2n ** 63n },
      { key: "flag", type: GgufType.BOOL, value: true },
      { key: "tokenizer.ggml.tokens", type: GgufType.ARRAY, elementType: GgufType.STRING, value: ["<s>", "a", "b", ""] },
      { key: "tokenizer.ggml.scores", type: GgufType.ARRAY, elementType: GgufType.FLOAT32, value: [0, -1, -2, -3] },
      { key: "nested", type: GgufType.ARRAY, value: { elementType: GgufType.ARRAY, values: [{ elementType: GgufType.INT16, values: [1, -2] }] } },
    ],
    [
      { name: "token_embd.weight", dims: [32, 2], type: GgmlType.Q8_0, data: quantize(GgmlType.Q8_0, values) },
      { name: "blk.0.attn_q.weight", dims: [32, 2], type: GgmlType.Q4_0, data: quantize(GgmlType.Q4_0, values) },
      { name: "output_norm.weight", dims: [8], type: GgmlType.F32, data: quantize(GgmlType.F32, values.subarray(0, 8)) },
      { name: "output.weight", dims: [4, 2], type: GgmlType.F16, data: quantize(GgmlType.F16, values.subarray(0, 8)) },
    ],
  );
}

/** A small safetensors file with metadata, an empty tensor and a scalar. */
export function sampleSafetensors(): Uint8Array {
  return serializeSafetensors(
    new Map([
      ["model.embed_tokens.weight", { shape: [4, 3], data: Float32Array.from({ length: 12 }, (_, i) => i / 7) }],
      ["model.norm.weight", { shape: [3], data: Float32Array.from([1, 1, 1]) }],
      ["empty", { shape: [0, 5], data: new Float32Array(0) }],
      ["scalar", { shape: [], data: Float32Array.from([2]) }],
    ]),
    { format: "pt" },
  );
}

/** Offsets of every u64 field of a valid GGUF prefix (counts, string and array lengths, dims, offsets). */
export function ggufU64Fields(bytes: Uint8Array): number[] {
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const fields = [8, 16];
  let pos = 24;
  const u32 = (): number => ((pos += 4), v.getUint32(pos - 4, true));
  const u64 = (): number => {
    if (!(pos + 8 <= bytes.length)) throw new Error("end of prefix");
    fields.push(pos);
    pos += 8;
    return Number(v.getBigUint64(pos - 8, true));
  };
  const str = (): void => {
    const n = u64(); // before reading pos: u64() moves it
    pos += n;
  };
  const fixed: Partial<Record<GgufType, number>> = { 0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8 };
  const value = (type: GgufType): void => {
    if (type === GgufType.STRING) str();
    else if (type === GgufType.ARRAY) {
      const et = u32();
      const n = u64();
      // Long arrays of fixed-size values: skip them whole rather than walk them.
      if (fixed[et as GgufType] !== undefined) pos += n * fixed[et as GgufType]!;
      else for (let i = 0; i < n && pos < bytes.length; i++) value(et);
    } else pos += fixed[type]!;
  };
  try {
    const nTensors = Number(v.getBigUint64(8, true));
    const nKv = Number(v.getBigUint64(16, true));
    for (let i = 0; i < nKv; i++) {
      str();
      value(u32());
    }
    for (let i = 0; i < nTensors; i++) {
      str();
      const nDims = u32();
      for (let d = 0; d < nDims; d++) u64();
      u32();
      u64();
    }
  } catch {
    // A prefix ends inside the header: the fields found so far are enough.
  }
  return fields.filter((f) => f + 8 <= bytes.length);
}

const HUGE_U64 = [2n ** 64n - 1n, 2n ** 63n, 2n ** 53n + 1n, 2n ** 32n, 2n ** 32n - 1n, 2n ** 31n, 1n << 40n, 0n, 1n];

/** Read a (possibly mutated) file the way a loader does; returns nothing, throws on malformed input. */
function readGguf(bytes: Uint8Array, fileSize: number): void {
  const h = parseGgufHeader(bytes, fileSize);
  validateTensorInfos(h, fileSize);
  if (fileSize !== bytes.length) return;
  let elements = 0;
  const count = (x: GgufValue): void => {
    if (typeof x === "object") {
      elements += x.values.length;
      x.values.forEach(count);
    }
  };
  h.metadata.forEach(count);
  if (elements > fileSize) throw new Error(`fuzz: ${elements} array elements from a ${fileSize}-byte file`);
  for (const t of h.tensors) {
    if (!isKnownGgmlType(t.type) || !(t.type in GgmlType)) continue;
    const n = t.dims.reduce((a, b) => a * b, 1);
    dequantize(t.type, ggufTensorBytes(bytes, h, t), n);
  }
}

function mutate(rng: Rng, seed: Seed): { bytes: Uint8Array; fileSize: number; what: string } {
  let b = seed.bytes.slice();
  let fileSize = seed.fileSize ?? b.length;
  const steps: string[] = [];
  const nSteps = 1 + rng.int(3);
  for (let s = 0; s < nSteps; s++) {
    const kind = rng.int(7);
    const at = rng.int(Math.max(1, b.length));
    if (kind === 0 && b.length > 0) {
      const bit = rng.int(8);
      b[at] = b[at]! ^ (1 << bit);
      steps.push(`flip ${at}.${bit}`);
    } else if (kind === 1 && b.length > 0) {
      const value = [0x00, 0xff, 0x7f, 0x80][rng.int(4)]!;
      b[at] = value;
      steps.push(`set ${at}=0x${value.toString(16)}`);
    } else if (kind === 2) {
      const len = rng.int(b.length + 1);
      if (fileSize === b.length) fileSize = len;
      b = b.slice(0, len);
      steps.push(`truncate ${len}`);
    } else if (kind === 3) {
      const ins = Uint8Array.from({ length: 1 + rng.int(16) }, () => rng.int(256));
      const out = new Uint8Array(b.length + ins.length);
      out.set(b.subarray(0, at));
      out.set(ins, at);
      out.set(b.subarray(at), at + ins.length);
      if (fileSize === b.length) fileSize = out.length;
      b = out;
      steps.push(`insert ${ins.length} at ${at}`);
    } else if (kind === 4 || kind === 5) {
      // A length/count field (or, for safetensors, the header size) set to a huge or edge value.
      const fields = seed.u64Fields.filter((f) => f + 8 <= b.length);
      if (fields.length === 0) continue;
      const f = fields[rng.int(fields.length)]!;
      const options = [...HUGE_U64, BigInt(fileSize - f), BigInt(fileSize), BigInt(fileSize + 1)];
      const value = BigInt.asUintN(64, options[rng.int(options.length)]!);
      new DataView(b.buffer, b.byteOffset).setBigUint64(f, value, true);
      steps.push(`u64 @${f}=${value}`);
    } else if (seed.format === "safetensors" && b.length >= 8) {
      // A number in the JSON header replaced by an extreme one; the size field is kept right.
      const n = Number(new DataView(b.buffer, b.byteOffset).getBigUint64(0, true));
      if (8 + n > b.length) continue;
      const text = new TextDecoder().decode(b.subarray(8, 8 + n));
      const numbers = [...text.matchAll(/-?\d+(\.\d+)?([eE][+-]?\d+)?/g)];
      if (numbers.length === 0) continue;
      const m = numbers[rng.int(numbers.length)]!;
      const repl = ["-1", "1e308", "18446744073709551616", "9007199254740993", "0", "0.5", "1e400", "-0"][rng.int(8)]!;
      const header = new TextEncoder().encode(text.slice(0, m.index) + repl + text.slice(m.index! + m[0].length));
      const out = new Uint8Array(8 + header.length + (b.length - 8 - n));
      new DataView(out.buffer).setBigUint64(0, BigInt(header.length), true);
      out.set(header, 8);
      out.set(b.subarray(8 + n), 8 + header.length);
      if (fileSize === b.length) fileSize = out.length;
      b = out;
      steps.push(`json ${m[0]}→${repl}`);
    }
  }
  return { bytes: b, fileSize, what: steps.join(", ") || "none" };
}

/** Run `cases` mutations spread over the seeds; deterministic for a given `seed`. */
export function fuzzFormats(seeds: Seed[], cases: number, seed = 1): FuzzResult {
  const rng = new Rng(seed);
  const result: FuzzResult = { cases: 0, accepted: 0, rejected: 0, failures: [], maxCaseMs: 0 };
  for (let i = 0; i < cases; i++) {
    const s = seeds[i % seeds.length]!;
    const m = mutate(rng, s);
    const start = performance.now();
    try {
      if (s.format === "gguf") readGguf(m.bytes, m.fileSize);
      else parseSafetensors(m.bytes);
      result.accepted++;
    } catch (e) {
      result.rejected++;
      const prefix = `${s.format}:`;
      const ok =
        e instanceof Error &&
        (e.constructor === Error || e instanceof GgufNeedMoreBytes) &&
        e.message.startsWith(prefix) &&
        !/[\r\n\u2028\u2029]/.test(e.message);
      if (!ok) {
        const desc = e instanceof Error ? `${e.name}: ${e.message}` : String(e);
        result.failures.push(`${s.format} case ${i} (${m.what}): ${JSON.stringify(desc.slice(0, 300))}`);
      }
    }
    result.cases++;
    result.maxCaseMs = Math.max(result.maxCaseMs, performance.now() - start);
  }
  return result;
}

/** The seeds: the sample files, plus the real GGUF's header prefix when ../shared/data is present. */
export function fuzzSeeds(dataDir = "../shared/data"): { seeds: Seed[]; real: boolean } {
  const gguf = sampleGguf();
  const seeds: Seed[] = [
    { format: "gguf", bytes: gguf, u64Fields: ggufU64Fields(gguf) },
    { format: "safetensors", bytes: sampleSafetensors(), u64Fields: [0] },
  ];
  const path = `${dataDir}/models/llama-2-tiny-random.gguf`;
  const real = existsSync(path);
  if (real) {
    // The first 4 KiB, parsed as a loader parses a prefix: against the whole file's size.
    const file = readFileSync(path);
    const prefix = new Uint8Array(file.subarray(0, 4096));
    seeds.push({ format: "gguf", bytes: prefix, u64Fields: ggufU64Fields(prefix), fileSize: file.length });
  }
  return { seeds, real };
}

// ---- tokenizers and whole models ----------------------------------------------------------------
// The same discipline for the other untrusted inputs: HF tokenizer.json and Bonsai's tokenizer
// JSON (as objects and as text), GGUF tokenizer metadata, and whole GGUF models through the
// loader path. Mutations are structural (keys deleted, values of the wrong type or range, arrays
// of mismatched lengths, deep nesting) as well as byte-level. A tokenizer that loads must also
// encode and decode a few texts, returning ids inside its vocabulary; a model that loads must
// have every tensor in the shape its config says.

/** Thrown by the harness when an input was accepted but the result is wrong: always a failure. */
class FuzzInvariant extends Error {}

/** What is wrong with an exception (null: a one-line Error starting with one of the prefixes). */
function badError(e: unknown, prefixes: readonly string[]): string | null {
  if (e instanceof FuzzInvariant) return `accepted, but ${e.message}`;
  if (!(e instanceof Error)) return `threw a non-Error ${typeof e}`;
  const desc = `${e.name}: ${e.message.slice(0, 300)}`;
  if (e.constructor !== Error && !(e instanceof GgufNeedMoreBytes)) return desc;
  if (!prefixes.some((p) => e.message.startsWith(p))) return `unexpected prefix: ${desc}`;
  if (/[\r\n\u2028\u2029]/.test(e.message)) return `multi-line: ${desc}`;
  if (e.message.length > 2000) return `a ${e.message.length}-character message: ${desc}`;
  return null;
}

/** Run `cases` mutated inputs: `make` mutates a seed and returns the step list and the read to try. */
function runCases<S>(name: string, seeds: readonly S[], cases: number, seed: number, prefixes: readonly string[], make: (rng: Rng, s: S) => { what: string; read: () => void }): FuzzResult {
  const rng = new Rng(seed);
  const result: FuzzResult = { cases: 0, accepted: 0, rejected: 0, failures: [], maxCaseMs: 0 };
  for (let i = 0; i < cases; i++) {
    let m: { what: string; read: () => void };
    try {
      m = make(rng, seeds[i % seeds.length]!);
    } catch (e) {
      result.failures.push(`${name} case ${i}: the mutation itself threw ${String(e).slice(0, 200)}`);
      continue;
    }
    const start = performance.now();
    try {
      m.read();
      result.accepted++;
    } catch (e) {
      if (!(e instanceof FuzzInvariant)) result.rejected++;
      const bad = badError(e, prefixes);
      if (bad !== null) result.failures.push(`${name} case ${i} (${m.what.slice(0, 300)}): ${JSON.stringify(bad)}`);
    }
    result.cases++;
    const ms = performance.now() - start;
    if (ms > result.maxCaseMs) [result.maxCaseMs, result.slowest] = [ms, `${name} case ${i} (${m.what.slice(0, 200)})`];
  }
  return result;
}

const pick = <T>(rng: Rng, xs: readonly T[]): T => xs[rng.int(xs.length)]!;

// Error prefixes of the tokenizer loaders and of the tokenizers themselves (encode/decode).
const TOKENIZER_PREFIXES = ["tokenizer.json:", "tokenizer JSON:", "spm tokenizer:", "byte-level BPE tokenizer:", "char tokenizer:", "llama2.c tokenizer:"];

const PROBES = ["", "Hello world", "  two  spaces, then\ttab\nnewline ", "héllo wörld — 🌍 日本語 \u2028\u0000", "<s></s><|endoftext|><unk>", "x".repeat(200)];

/** Encode and decode a few texts; every id must be inside the vocabulary and decodable. */
function exerciseTokenizer(t: Tokenizer, rng: Rng): void {
  const n = t.vocabSize;
  if (!Number.isSafeInteger(n) || n < 0) throw new FuzzInvariant(`vocabSize ${n}`);
  for (const text of PROBES) {
    for (const opts of [{}, { addBos: true, addEos: true, parseSpecial: true }]) {
      const ids = t.encode(text, opts);
      const bad = ids.find((id) => !Number.isInteger(id) || id < 0 || id >= n);
      if (bad !== undefined) throw new FuzzInvariant(`encode(${JSON.stringify(text.slice(0, 20))}) gave id ${bad} outside the vocabulary of ${n}`);
      t.decode(ids);
      for (let i = 0; i < Math.min(ids.length, 4); i++) t.decodeToken?.(i > 0 ? ids[i - 1]! : -1, ids[i]!);
    }
  }
  if (n > 0) t.decode(Array.from({ length: 16 }, () => rng.int(n)));
}

/** A value of the wrong type, range or shape, for any JSON slot. */
function junkJson(rng: Rng): unknown {
  const k = rng.int(22);
  switch (k) {
    case 0: return null;
    case 1: return true;
    case 2: return -1;
    case 3: return 0;
    case 4: return 1.5;
    case 5: return 2 ** 31;
    case 6: return 2 ** 53 + 2;
    case 7: return 1e308;
    case 8: return Infinity; // JSON.parse("1e400")
    case 9: return "NaN";
    case 10: return "";
    case 11: return "line\nbreak\u2028sep";
    case 12: return "<0x41>";
    case 13: return [];
    case 14: return {};
    case 15: return { toString: 1, valueOf: 2 }; // String(x) throws on this
    case 16: return [1, "a", null, { x: [] }];
    case 17: return deepNest(rng);
    case 18: return { type: "Sequence", pretokenizers: deepNest(rng, "pretokenizers"), normalizers: deepNest(rng, "normalizers"), decoders: deepNest(rng, "decoders") };
    case 19: return "x".repeat(1 + rng.int(5000));
    case 20: return -0;
    default: return 12345;
  }
}

const deepNests = new Map<string, unknown>();

/**
 * Nesting deep enough to overflow a recursive walker; as Sequences of `list` when given. Built
 * once per shape and shared (loaders only read them): building and collecting 100,000 levels per
 * case would dominate the run.
 */
function deepNest(rng: Rng, list?: string): unknown {
  const depth = pick(rng, [50, 2000, 100_000]);
  const key = `${depth} ${list}`;
  if (!deepNests.has(key)) {
    let v: unknown = list ? { type: "Whitespace" } : 1;
    // Frozen, so that later mutations (randomSlot) leave the shared structure alone.
    for (let i = 0; i < depth; i++) v = Object.freeze(list ? { type: "Sequence", [list]: Object.freeze([v]) } : [v]);
    deepNests.set(key, v);
  }
  return deepNests.get(key);
}

type JsonObj = Record<string, unknown>;
const isObj = (v: unknown): v is JsonObj => typeof v === "object" && v !== null && !Array.isArray(v);

/** A random slot (container and key) on a random path down from the root, or null. */
function randomSlot(rng: Rng, root: unknown): { parent: JsonObj | unknown[]; key: string | number } | null {
  let cur = root;
  let slot: { parent: JsonObj | unknown[]; key: string | number } | null = null;
  for (let depth = 0; depth < 12; depth++) {
    let keys: (string | number)[];
    if (Object.isFrozen(cur)) break; // a shared deep nest
    if (Array.isArray(cur)) keys = cur.length > 0 ? [rng.int(cur.length)] : [];
    else if (isObj(cur)) keys = Object.keys(cur);
    else break;
    if (keys.length === 0) break;
    const key = pick(rng, keys);
    slot = { parent: cur as JsonObj | unknown[], key };
    cur = (cur as Record<string | number, unknown>)[key];
    if (rng.next() < 0.3) break;
  }
  return slot;
}

/** The SentencePiece-style and byte-level pre-tokenizer and normalizer shapes tokenizer.json files hold, and wrong ones. */
function junkComponent(rng: Rng): unknown {
  return pick(rng, [
    { type: "ByteLevel", add_prefix_space: true, use_regex: true },
    { type: "ByteLevel", add_prefix_space: false, use_regex: false },
    { type: "Sequence", pretokenizers: [{ type: "Split", pattern: { Regex: "\\p{L}+" }, behavior: "Isolated", invert: false }, { type: "ByteLevel", use_regex: false }] },
    { type: "Sequence", pretokenizers: [{ type: "Split", pattern: { String: " " }, behavior: "Removed" }, { type: "ByteLevel", use_regex: false }] },
    { type: "Sequence", pretokenizers: null },
    { type: "Sequence", pretokenizers: [null, 3, "x"] },
    { type: "Metaspace", replacement: "▁", prepend_scheme: "first" },
    { type: "Metaspace", replacement: "▁", add_prefix_space: false },
    { type: "Replace", pattern: { String: " " }, content: "▁" },
    { type: "Replace", pattern: { Regex: " " }, content: null },
    { type: "Prepend", prepend: "▁" },
    { type: "NFKC" },
    { type: "Whitespace" },
    { type: "BertPreTokenizer" },
    { type: "NoSuchType\nmultiline" },
    { type: 5 },
  ]);
}

/** One structural mutation of a tokenizer JSON object (HF's or Bonsai's), in place; returns its description. */
function mutateTokenizerObject(rng: Rng, root: JsonObj): string {
  // Containers to mutate in place; frozen ones are shared deep nests (see deepNest), left alone.
  const open = <T>(v: T): T | null => (Object.isFrozen(v) ? null : v);
  const model = isObj(root.model) ? open(root.model) : null;
  const vocab = model && isObj(model.vocab) ? open(model.vocab) : null;
  const merges = model && Array.isArray(model.merges) ? open(model.merges) : Array.isArray(root.merges) ? open(root.merges) : null;
  const added = Array.isArray(root.added_tokens) ? open(root.added_tokens) : null;
  const tokens = Array.isArray(root.tokens) ? root.tokens : null;
  const badId = (n: number) => pick(rng, [-1, -5, 1.5, n, n + 1, n + 1000, 2 ** 31, 2 ** 32, 2 ** 53, 1e15, 1e308, Infinity, -0, "3", null, [1], { id: 1 }]);
  const badMerge = () => pick(rng, ["ab", "", " ", "a  b", " a b", "zz qq", "a b c", "\u2028 x", ["a"], ["a", "b", "c"], [1, 2], null, 5, ["Ġ", ""], ["", ""]]);
  const kind = rng.int(12);
  if (kind === 0 && vocab) {
    const keys = Object.keys(vocab);
    const n = keys.length;
    const k = rng.int(4);
    if (k === 0 && n > 0) {
      const key = pick(rng, keys);
      vocab[key] = badId(n);
      return `vocab[${JSON.stringify(key)}]=${String(vocab[key])}`;
    }
    if (k === 1 && n > 0) {
      const key = pick(rng, keys);
      delete vocab[key]; // a hole
      return `delete vocab[${JSON.stringify(key)}]`;
    }
    if (k === 2 && n > 1) {
      const [a, b] = [pick(rng, keys), pick(rng, keys)];
      vocab[a] = vocab[b]; // two tokens, one id
      return `vocab[${JSON.stringify(a)}]=vocab[${JSON.stringify(b)}]`;
    }
    const key = pick(rng, ["__proto__", "constructor", "", "new", "\u2028", "<0xZZ>", "<0x41>"]);
    // Defined, not assigned: "__proto__" must become a key, as JSON.parse makes it.
    Object.defineProperty(vocab, key, { value: rng.int(2) ? rng.int(n + 2) : badId(n), enumerable: true, writable: true, configurable: true });
    return `vocab[${JSON.stringify(key)}] added`;
  }
  if (kind === 1 && merges) {
    const k = rng.int(4);
    if (k === 0 && merges.length > 0) merges[rng.int(merges.length)] = badMerge();
    else if (k === 1 && merges.length > 0) merges.push(merges[rng.int(merges.length)]);
    else if (k === 2) {
      // Every "a b" merge as a pair (the newer tokenizers format).
      for (let i = 0; i < merges.length; i++) if (typeof merges[i] === "string") merges[i] = (merges[i] as string).split(" ");
    } else merges.splice(rng.int(merges.length + 1), 0, badMerge());
    return `merges op ${k}`;
  }
  if (kind === 2 && added) {
    const k = rng.int(4);
    if (k === 0 && added.length > 0) {
      const a = added[rng.int(added.length)];
      if (isObj(a) && !Object.isFrozen(a)) a[pick(rng, ["id", "content", "special"])] = rng.int(2) ? badId(1000) : junkJson(rng);
    } else if (k === 1 && added.length > 0) added.push(added[rng.int(added.length)]); // the same entry twice
    else if (k === 2) added.push({ id: badId(vocab ? Object.keys(vocab).length : 100), content: pick(rng, ["<x>", "", "a", "\n"]), special: rng.int(2) === 0 });
    else added.splice(rng.int(added.length + 1), 0, junkJson(rng));
    return `added_tokens op ${k}`;
  }
  if (kind === 3 && model) {
    const key = pick(rng, ["type", "unk_token", "byte_fallback", "ignore_merges", "vocab", "merges", "dropout"]);
    model[key] = rng.int(2) ? pick(rng, ["WordPiece", "Unigram", "BPE", "<unk>", "<s>", "Ġ", false, true]) : junkJson(rng);
    return `model.${key} mutated`;
  }
  if (kind === 4) {
    const key = pick(rng, ["pre_tokenizer", "normalizer", "decoder", "post_processor"]);
    root[key] = rng.int(3) ? junkComponent(rng) : junkJson(rng);
    return `${key} replaced`;
  }
  if (kind === 5) {
    // A post-processor naming a BOS that is not a token, or a malformed one.
    root.post_processor = { type: "TemplateProcessing", single: [pick(rng, [{ SpecialToken: { id: "<nope>" } }, { SpecialToken: null }, null, { SpecialToken: { id: 5 } }, { SpecialToken: { id: "<s>" } }, { SpecialToken: { id: "<|endoftext|>" } }])] };
    return "post_processor template";
  }
  if (kind === 6 && tokens) {
    // Bonsai's JSON: tokens, types, scores and ids.
    const key = pick(rng, ["tokens", "types", "scores", "merges", "bosId", "eosId", "unkId", "padId", "pre", "type", "addSpacePrefix"]);
    const v = root[key];
    if (Array.isArray(v) && !Object.isFrozen(v) && v.length > 0 && rng.int(2)) {
      const i = rng.int(v.length);
      if (rng.int(3) === 0) v.splice(i, 1); // lengths no longer match
      else v[i] = rng.int(2) ? badId(tokens.length) : junkJson(rng);
      return `${key}[${i}] mutated`;
    }
    root[key] = rng.int(2) ? badId(tokens.length) : junkJson(rng);
    return `${key} replaced`;
  }
  if (kind === 7) {
    const key = pick(rng, Object.keys(root));
    delete root[key];
    return `delete ${key}`;
  }
  // Anywhere: delete, replace by junk, or duplicate.
  const slot = randomSlot(rng, root);
  if (slot === null) return "none";
  const { parent, key } = slot;
  const k = rng.int(3);
  if (k === 0) {
    if (Array.isArray(parent)) parent.splice(key as number, 1);
    else delete parent[key as string];
    return `delete at ${String(key).slice(0, 40)}`;
  }
  if (k === 1) {
    (parent as Record<string | number, unknown>)[key] = junkJson(rng);
    return `junk at ${String(key).slice(0, 40)}`;
  }
  const v = (parent as Record<string | number, unknown>)[key];
  if (Array.isArray(parent)) parent.splice(key as number, 0, v);
  else (parent as JsonObj)[`${String(key)}_`] = v;
  return `duplicate at ${String(key).slice(0, 40)}`;
}

/** One mutation of JSON text: characters changed, inserted or deleted, or truncation. */
function mutateJsonText(rng: Rng, text: string): { text: string; what: string } {
  const at = rng.int(text.length + 1);
  const k = rng.int(5);
  if (k === 0) return { text: text.slice(0, at), what: `truncate ${at}` };
  if (k === 1) {
    const c = pick(rng, ['"', "\\", "{", "}", "[", "]", ",", ":", "\n", "\u2028", "\u0000", "9", "-", "e", "\ud800", "n", String.fromCharCode(rng.int(0x10000))]);
    return { text: text.slice(0, at) + c + text.slice(at + 1), what: `set ${at}=${JSON.stringify(c)}` };
  }
  if (k === 2) {
    const ins = pick(rng, ["1e400", "-1", "null", '"x"', "[".repeat(100_000), "{}", ",", '"a":1,', "\n\u2028"]);
    return { text: text.slice(0, at) + ins + text.slice(at), what: `insert ${ins.slice(0, 10)} at ${at}` };
  }
  if (k === 3) {
    const len = 1 + rng.int(64);
    return { text: text.slice(0, at) + text.slice(at + len), what: `delete ${len} at ${at}` };
  }
  // A bit flip in the UTF-8 bytes, decoded leniently as a reader of a damaged file would.
  const bytes = new TextEncoder().encode(text);
  if (bytes.length === 0) return { text, what: "none" };
  const i = rng.int(bytes.length), bit = rng.int(8);
  bytes[i] = bytes[i]! ^ (1 << bit);
  return { text: new TextDecoder().decode(bytes), what: `flip ${i}.${bit}` };
}

/** A tokenizer JSON seed: the object and its text. */
export interface TokenizerJsonSeed {
  name: string;
  obj: JsonObj;
  text: string;
}

const TRAIN_TEXT =
  "The quick brown fox jumps over the lazy dog. It's 2026, and the dog's owner didn't mind!\n" +
  "Über naïve café — 日本語のテキスト, emoji 🌍🚀, numbers 12345 67890, tabs\tand  double  spaces.\n";

let trained: { bpe: ByteBpeTokenizer | SpmTokenizer; spm: ByteBpeTokenizer | SpmTokenizer } | undefined;

/** Small trained tokenizers of both kinds (shared by the seeds of three targets; trained once). */
export function trainedTokenizers(): { bpe: ByteBpeTokenizer | SpmTokenizer; spm: ByteBpeTokenizer | SpmTokenizer } {
  const text = TRAIN_TEXT.repeat(8);
  trained ??= {
    bpe: trainTokenizer(text, { type: "bytelevel-bpe", vocabSize: 320, pre: "llama3", specialTokens: ["<|endoftext|>", "<|pad|>"] }),
    spm: trainTokenizer(text, { type: "spm-bpe", vocabSize: 330 }),
  };
  return trained;
}

/** A subsample of a real tokenizer.json: its first `k` ids, the merges among them, its added tokens renumbered after them. */
function subsampleHfJson(obj: JsonObj, k: number): JsonObj {
  const out = structuredClone(obj);
  const model = out.model as JsonObj;
  const vocab: JsonObj = {};
  for (const [t, id] of Object.entries(model.vocab as JsonObj)) if ((id as number) < k) vocab[t] = id;
  model.vocab = vocab;
  model.merges = (model.merges as (string | string[])[]).filter((m) => {
    const [l, r] = typeof m === "string" ? m.split(" ") : m;
    return l! in vocab && r! in vocab && l! + r! in vocab;
  });
  out.added_tokens = (out.added_tokens as JsonObj[]).map((a, i) => ({ ...a, id: k + i }));
  return out;
}

/** tokenizer.json seeds (HF byte-level and SentencePiece-style), Bonsai's own JSON, and a subsample of GPT-2's tokenizer.json. */
export function tokenizerJsonSeeds(dataDir = "../shared/data"): { seeds: TokenizerJsonSeed[]; real: boolean } {
  const { bpe, spm } = trainedTokenizers();
  const objs: [string, JsonObj][] = [
    ["hf-bpe", tokenizerToHfJson(bpe)],
    ["hf-spm", tokenizerToHfJson(spm)],
    ["bonsai-bpe", bpe.toJSON() as unknown as JsonObj],
    ["bonsai-spm", spm.toJSON() as unknown as JsonObj],
  ];
  const path = `${dataDir}/tokenizers/gpt2-tokenizer.json`;
  const real = existsSync(path);
  if (real) objs.push(["gpt2-subsample", subsampleHfJson(JSON.parse(readFileSync(path, "utf8")) as JsonObj, 700)]);
  // Plain objects, as JSON.parse gives them (the writers use null-prototype vocabularies).
  const seeds = objs.map(([name, o]) => {
    const text = JSON.stringify(o, null, name.startsWith("hf") ? 2 : undefined);
    return { name, obj: JSON.parse(text) as JsonObj, text };
  });
  return { seeds, real };
}

/** Fuzz tokenizer JSON: structural mutations of the object (most cases) or byte-level ones of the text. */
export function fuzzTokenizerJson(seeds: readonly TokenizerJsonSeed[], cases: number, seed = 1): FuzzResult {
  return runCases("tokenizer-json", seeds, cases, seed, TOKENIZER_PREFIXES, (rng, s) => {
    if (rng.int(4) === 0) {
      let text = s.text;
      const steps: string[] = [];
      for (let k = 1 + rng.int(2); k > 0; k--) {
        const m = mutateJsonText(rng, text);
        text = m.text;
        steps.push(m.what);
      }
      return { what: `${s.name}: ${steps.join(", ")}`, read: () => exerciseTokenizer(tokenizerFromJsonText(text), rng) };
    }
    const obj = structuredClone(s.obj);
    const steps: string[] = [];
    for (let k = 1 + rng.int(3); k > 0; k--) steps.push(mutateTokenizerObject(rng, obj));
    return { what: `${s.name}: ${steps.join(", ")}`, read: () => exerciseTokenizer(tokenizerFromJSON(obj), rng) };
  });
}

// ---- GGUF tokenizer metadata ----------------------------------------------------------------------

export interface GgufVocabSeed {
  name: string;
  metadata: Map<string, GgufValue>;
}

const arrayOf = (elementType: GgufType, values: GgufValue[]): GgufArray => ({ elementType, values });

function cloneMetadata(m: Map<string, GgufValue>): Map<string, GgufValue> {
  const copy = (v: GgufValue): GgufValue => (typeof v === "object" ? arrayOf(v.elementType, v.values.map(copy)) : v);
  return new Map([...m].map(([k, v]) => [k, copy(v)]));
}

/** A GGUF value of the wrong type or range. */
function junkGguf(rng: Rng, n: number): GgufValue {
  return pick(rng, [
    -1, 0, 1.5, n, n - 1, n + 1, 2 ** 32 - 1, 2 ** 53, NaN, Infinity, -Infinity, 1e38,
    2n ** 63n, 2n ** 64n - 1n, -(2n ** 63n),
    true, false,
    "", "llama", "gpt2", "bert", "t5", "default", "gpt-2", "llama3", "qwen2", "no-such-pre", "x\ny\u2028", "\u0000",
    arrayOf(GgufType.STRING, []),
    arrayOf(GgufType.UINT32, [1, 2, 3]),
    arrayOf(GgufType.STRING, ["a", "b"]),
    arrayOf(GgufType.ARRAY, [arrayOf(GgufType.STRING, ["a b"])]),
  ]);
}

/** One mutation of the tokenizer.ggml.* entries, in place. */
function mutateGgufVocab(rng: Rng, m: Map<string, GgufValue>): string {
  const keys = [...m.keys()].filter((k) => k.startsWith("tokenizer.ggml."));
  const tokens = m.get("tokenizer.ggml.tokens");
  const n = typeof tokens === "object" ? tokens.values.length : 0;
  const kind = rng.int(6);
  if (kind === 0 && keys.length > 0) {
    const k = pick(rng, keys);
    m.delete(k);
    return `delete ${k}`;
  }
  if (kind === 1) {
    const k = pick(rng, [...keys, "tokenizer.ggml.model", "tokenizer.ggml.pre", "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id", "tokenizer.ggml.unknown_token_id", "tokenizer.ggml.padding_token_id", "tokenizer.ggml.add_bos_token", "tokenizer.ggml.merges"]);
    const v = junkGguf(rng, n);
    m.set(k, v);
    return `${k}=${typeof v === "object" ? "array" : String(v)}`;
  }
  // An element of an array entry: changed, removed (lengths disagree), added or duplicated.
  const arrays = keys.filter((k) => typeof m.get(k) === "object");
  if (arrays.length === 0) return "none";
  const k = pick(rng, arrays);
  const a = m.get(k) as GgufArray;
  const values = a.values;
  const i = rng.int(values.length + 1);
  const op = rng.int(5);
  if (op === 0) values.splice(i, 1);
  else if (op === 1) values.splice(i, 0, values.length > 0 ? values[rng.int(values.length)]! : junkGguf(rng, n));
  else if (op === 2 && k.endsWith("merges")) values[i] = pick(rng, ["ab", "", " ", "a  b", " a b", "zz qq", "\u2028 x", "Ġ Ġ"]);
  else if (op === 3 && k.endsWith("token_type")) values[i] = pick(rng, [0, 7, 255, 256, -1, 1.5, NaN, 3, 4, 6]);
  else if (op === 3 && k.endsWith("tokens")) values[i] = pick(rng, ["", "<s>", "<0x41>", "▁", "Ġ", "\u2028", "x".repeat(10_000), values[0] ?? ""]);
  else values[Math.min(i, Math.max(0, values.length - 1))] = junkGguf(rng, n);
  return `${k} op ${op} at ${i}`;
}

/** A real vocabulary's first `k` tokens (and the merges among them): the same keys, faster to load. */
function subsampleVocab(m: Map<string, GgufValue>, k: number): Map<string, GgufValue> {
  const out = new Map<string, GgufValue>();
  const tokens = plainValue(m.get("tokenizer.ggml.tokens")) as string[];
  const kept = new Set(tokens.slice(0, k));
  for (const [key, v] of m) {
    if (!key.startsWith("tokenizer.ggml.")) continue;
    if (typeof v !== "object") out.set(key, v);
    else if (key === "tokenizer.ggml.merges")
      out.set(key, arrayOf(v.elementType, v.values.filter((x) => {
        const [l = "", r = ""] = String(x).split(" ");
        return kept.has(l) && kept.has(r) && kept.has(l + r);
      })));
    else out.set(key, arrayOf(v.elementType, v.values.slice(0, k)));
  }
  return out;
}

/** GGUF vocabulary seeds: trained spm and byte-level tokenizers, and subsamples of the two real vocab GGUFs. */
export function ggufVocabSeeds(dataDir = "../shared/data"): { seeds: GgufVocabSeed[]; real: boolean } {
  const { bpe, spm } = trainedTokenizers();
  const asMap = (t: Tokenizer) => new Map(tokenizerToGgufMetadata(t).map((e) => [e.key, e.value as GgufValue]));
  const seeds: GgufVocabSeed[] = [
    { name: "spm", metadata: asMap(spm) },
    { name: "bpe", metadata: asMap(bpe) },
  ];
  let real = true;
  for (const file of ["ggml-vocab-llama-spm.gguf", "ggml-vocab-gpt-2.gguf"]) {
    const path = `${dataDir}/tokenizers/${file}`;
    if (!existsSync(path)) {
      real = false;
      continue;
    }
    const bytes = new Uint8Array(readFileSync(path));
    seeds.push({ name: file, metadata: subsampleVocab(parseGgufHeader(bytes).metadata, 1200) });
  }
  return { seeds, real };
}

export function fuzzGgufVocab(seeds: readonly GgufVocabSeed[], cases: number, seed = 1): FuzzResult {
  return runCases("gguf-vocab", seeds, cases, seed, ["gguf tokenizer:", ...TOKENIZER_PREFIXES], (rng, s) => {
    const m = cloneMetadata(s.metadata);
    const steps: string[] = [];
    for (let k = 1 + rng.int(3); k > 0; k--) steps.push(mutateGgufVocab(rng, m));
    return { what: `${s.name}: ${steps.join(", ")}`, read: () => exerciseTokenizer(tokenizerFromGgufMetadata(m), rng) };
  });
}

// ---- whole GGUF models ----------------------------------------------------------------------------

export interface GgufModelSeed {
  name: string;
  bytes: Uint8Array;
  u64Fields: number[];
  /** The file's parts, to rewrite it with changed metadata or tensor infos. */
  metadata: GgufMetadataEntry[];
  tensors: GgufTensorToWrite[];
}

/** Small llama GGUFs (every quant llamaToGguf writes) with a trained SentencePiece vocabulary. */
export function ggufModelSeeds(): GgufModelSeed[] {
  const { spm } = trainedTokenizers();
  const config = normalizeConfig({
    vocab_size: spm.vocabSize, hidden_size: 64, intermediate_size: 96, num_hidden_layers: 2,
    num_attention_heads: 4, num_key_value_heads: 2, max_position_embeddings: 64,
  });
  const rng = new Rng(5);
  const tensors: NamedTensors = new Map(parameterNames(config).map((name) => {
    const shape = parameterShape(config, name);
    return [name, { shape, data: Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => rng.normal() * 0.1) }];
  }));
  return ggufQuants.map((quant) => {
    const bytes = llamaToGguf(config, tensors, quant, { tokenizer: tokenizerToGgufMetadata(spm) });
    const h = parseGgufHeader(bytes);
    const parts = h.tensors.map((t) => ({ name: t.name, dims: t.dims, type: t.type as GgmlType, data: ggufTensorBytes(bytes, h, t).slice() }));
    return { name: quant, bytes, u64Fields: ggufU64Fields(bytes), metadata: ggufMetadataEntries(h), tensors: parts };
  });
}

/** A model-metadata value of the wrong size or type, with a GGUF type that can hold it. */
function junkModelEntry(rng: Rng, key: string): GgufMetadataEntry {
  const v = pick(rng, [0, 1, 3, 5, 7, 48, 63, 65, 128, 2 ** 31, 2 ** 32 - 1, 1e9, -1, -64, 1.5, NaN, Infinity, 2n ** 63n, "64", true]);
  if (typeof v === "bigint") return { key, type: GgufType.UINT64, value: v };
  if (typeof v === "string") return { key, type: GgufType.STRING, value: v };
  if (typeof v === "boolean") return { key, type: GgufType.BOOL, value: v };
  if (!Number.isInteger(v)) return { key, type: GgufType.FLOAT32, value: v };
  return { key, type: v < 0 ? GgufType.INT32 : GgufType.UINT32, value: v };
}

/** One change to a model's metadata or tensor list (before rewriting the file). */
function mutateModelParts(rng: Rng, meta: GgufMetadataEntry[], tensors: GgufTensorToWrite[]): string {
  const kind = rng.int(8);
  if (kind <= 2) {
    const key = pick(rng, [
      "llama.context_length", "llama.embedding_length", "llama.block_count", "llama.feed_forward_length", "llama.rope.dimension_count",
      "llama.attention.head_count", "llama.attention.head_count_kv", "llama.attention.layer_norm_rms_epsilon", "llama.rope.freq_base",
      "llama.vocab_size", "llama.expert_count", "llama.rope.scaling.type", "general.alignment",
    ]);
    const i = meta.findIndex((e) => e.key === key);
    if (kind === 0 && i >= 0) {
      meta.splice(i, 1);
      return `delete ${key}`;
    }
    const e = junkModelEntry(rng, key);
    if (i >= 0) meta[i] = e;
    else meta.push(e);
    return `${key}=${String(e.value)}`;
  }
  if (kind === 3) {
    const e = { key: "general.architecture", type: GgufType.STRING, value: pick(rng, ["llama\n", "gpt2", "", "LLAMA"]) };
    meta[meta.findIndex((x) => x.key === e.key)] = e;
    return `architecture=${JSON.stringify(e.value)}`;
  }
  if (kind === 4) {
    // Tokenizer entries: the vocabulary mutator on a copy of them.
    const m = cloneMetadata(new Map(meta.filter((e) => e.key.startsWith("tokenizer.")).map((e) => [e.key, e.value as GgufValue])));
    const what = mutateGgufVocab(rng, m);
    const typeOf = (v: GgufValue): GgufType =>
      typeof v === "string" ? GgufType.STRING : typeof v === "boolean" ? GgufType.BOOL : typeof v === "bigint" ? GgufType.UINT64 : typeof v === "object" ? GgufType.ARRAY : Number.isInteger(v) && v >= 0 && v < 2 ** 32 ? GgufType.UINT32 : GgufType.FLOAT64;
    const rest = meta.filter((e) => !e.key.startsWith("tokenizer."));
    meta.length = 0;
    meta.push(...rest, ...[...m].map(([key, value]) => ({ key, type: typeOf(value), value })));
    return what;
  }
  if (tensors.length === 0) return "none";
  const i = rng.int(tensors.length);
  const t = tensors[i]!;
  if (kind === 5) {
    tensors.splice(i, 1);
    return `drop ${t.name}`;
  }
  if (kind === 6) {
    // Same data, other dims: transposed, or the rows split differently.
    const dims = t.dims.length === 2 && rng.int(2) ? [t.dims[1]!, t.dims[0]!] : t.dims.length === 2 ? [t.dims[0]! / 2, t.dims[1]! * 2] : [t.dims[0]! / 2, 2];
    const next = { ...t, dims };
    try {
      if (tensorByteSize(next) !== t.data.length) return "none";
    } catch {
      return "none";
    }
    tensors[i] = next;
    return `${t.name} dims [${dims.join(", ")}]`;
  }
  // Another ggml type, the data re-encoded (so the file stays self-consistent).
  const type = pick(rng, [GgmlType.F32, GgmlType.F16, GgmlType.BF16, GgmlType.Q8_0, GgmlType.Q4_0, GgmlType.Q4_1, GgmlType.Q5_0, GgmlType.Q5_1]);
  const n = t.dims.reduce((a, b) => a * b, 1);
  if (t.dims[0]! % ggmlBlockSize(type) !== 0) return "none";
  try {
    tensors[i] = { ...t, type, data: quantize(type, dequantize(t.type, t.data, n)) };
  } catch {
    return "none"; // a type Bonsai reads but does not write
  }
  return `${t.name} as ${ggmlTypeName(type)}`;
}

/** Load a model file as loadModel does: header, config, every tensor, the tokenizer; check the shapes. */
function readGgufModel(bytes: Uint8Array, rng: Rng): void {
  const f = GgufFile.open(new MemorySource(bytes));
  const config = llamaConfigFromGguf(f);
  const tensors = llamaTensorsFromGguf(f, config);
  for (const name of parameterNames(config)) {
    const t = tensors.get(name);
    const want = parameterShape(config, name);
    if (!t || t.shape.join() !== want.join() || t.data.length !== want.reduce((a, b) => a * b, 1))
      throw new FuzzInvariant(`${name} is [${t?.shape.join(", ")}] (${t?.data.length} values) where the config says [${want.join(", ")}]`);
  }
  if (f.header.metadata.has("tokenizer.ggml.model")) {
    const tok = tokenizerFromGgufMetadata(f.header.metadata);
    tok.decode(tok.encode(PROBES[3]!));
    if (rng.int(8) === 0) exerciseTokenizer(tok, rng);
  }
}

export function fuzzGgufModel(seeds: readonly GgufModelSeed[], cases: number, seed = 1): FuzzResult {
  return runCases("gguf-model", seeds, cases, seed, ["gguf:", "gguf tokenizer:", ...TOKENIZER_PREFIXES], (rng, s) => {
    if (rng.int(2) === 0) {
      // Bytes: mostly in the header, where a flip changes what the loader believes.
      const m = mutate(rng, { format: "gguf", bytes: s.bytes, u64Fields: s.u64Fields });
      return { what: `${s.name}: ${m.what}`, read: () => readGgufModel(m.bytes, rng) };
    }
    const meta = s.metadata.map((e) => ({ ...e }));
    const tensors = [...s.tensors];
    const steps: string[] = [];
    for (let k = 1 + rng.int(2); k > 0; k--) steps.push(mutateModelParts(rng, meta, tensors));
    let bytes: Uint8Array;
    try {
      bytes = serializeGguf(meta, tensors);
    } catch {
      bytes = s.bytes; // a change the writer refuses (e.g. general.alignment of the wrong type): read the seed
    }
    return { what: `${s.name}: ${steps.join(", ")}`, read: () => readGgufModel(bytes, rng) };
  });
}
