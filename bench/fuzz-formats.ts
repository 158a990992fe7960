// Mutation fuzzing of the GGUF and safetensors readers: start from valid files, apply random
// mutations (bit flips, bytes set to 0x00/0xFF/0x7F, truncations, insertions, length and count
// fields overwritten with huge values, numbers in the safetensors JSON replaced by extreme ones)
// and require that reading either succeeds or throws a one-line Error starting with "gguf:" or
// "safetensors:" — never a RangeError from a DataView, a TypeError, an allocation sized by an
// unchecked field, or a hang. test/fuzz-formats.test.ts runs a few thousand cases; run many more
// with: npm run build && node dist/bench/fuzz-formats.js [cases=200000] [seed=1]
import { existsSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { GgmlType, dequantize, isKnownGgmlType, quantize } from "../src/io/ggml-quants.js";
import { GgufNeedMoreBytes, GgufType, ggufTensorBytes, parseGgufHeader, serializeGguf, validateTensorInfos, type GgufValue } from "../src/io/gguf.js";
import { parseSafetensors, serializeSafetensors } from "../src/io/safetensors.js";
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

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  const cases = Number(process.argv[2] ?? 200_000);
  const seed = Number(process.argv[3] ?? 1);
  const { seeds, real } = fuzzSeeds();
  const start = performance.now();
  const r = fuzzFormats(seeds, cases, seed);
  const s = ((performance.now() - start) / 1000).toFixed(1);
  console.log(`${r.cases} mutations (seed ${seed}; ${seeds.length} seed files${real ? ", incl. llama-2-tiny-random.gguf's header" : ""}) in ${s} s: ${r.accepted} read, ${r.rejected} rejected, ${r.failures.length} failures; slowest case ${r.maxCaseMs.toFixed(1)} ms`);
  for (const f of r.failures.slice(0, 20)) console.log(`  ${f}`);
  process.exitCode = r.failures.length === 0 ? 0 : 1;
}
