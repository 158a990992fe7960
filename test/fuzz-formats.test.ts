import { test } from "node:test";
import assert from "node:assert/strict";
import {
  fuzzFormats, fuzzGgufModel, fuzzGgufVocab, fuzzSeeds, fuzzTokenizerJson, ggufModelSeeds, ggufVocabSeeds, tokenizerJsonSeeds, trainedTokenizers, type FuzzResult,
} from "./fuzz-formats.js";
import { MemorySource } from "../src/format/byte-source.js";
import { GgufType, serializeGguf, type GgufMetadataEntry, type GgufTensorToWrite, type GgufValue } from "../src/format/gguf.js";
import { GgufFile, llamaConfigFromGguf, llamaTensorsFromGguf } from "../src/io/gguf-llama.js";
import { tokenizerFromGgufMetadata, tokenizerToGgufMetadata } from "../src/tokenizer/gguf-vocab.js";
import { tokenizerToHfJson } from "../src/tokenizer/hf-tokenizer-json.js";
import { tokenizerFromJSON, tokenizerFromJsonText } from "../src/tokenizer/load.js";

// A few thousand seeded mutations of valid GGUF and safetensors files (the engine is
// test/fuzz-formats.ts): every read either succeeds or throws a one-line Error that starts with
// "gguf:" / "safetensors:". Times are reported, not asserted (machines differ by more than any
// threshold would allow): a case that hangs fails by the test's timeout. Longer runs:
// BONSAI_FUZZ_SCALE=N multiplies every count (`npm run fuzz`: 50), BONSAI_FUZZ_SEED picks others.
function envInt(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined) return fallback;
  const v = Number(raw);
  if (!Number.isSafeInteger(v) || v < 1) throw new Error(`${name}=${raw}: expected a positive integer`);
  return v;
}
const SCALE = envInt("BONSAI_FUZZ_SCALE", 1), SEED = envInt("BONSAI_FUZZ_SEED", 20261129);
const cases = (n: number): number => n * SCALE;
const HANG = { timeout: 300_000 * SCALE };
test("mutated GGUF and safetensors files give one-line format errors, never crashes", HANG, (t) => {
  const { seeds, real } = fuzzSeeds();
  if (!real) t.diagnostic("../shared/data absent: fuzzing the sample files only, not llama-2-tiny-random.gguf's header");
  const start = performance.now();
  const r = fuzzFormats(seeds, cases(4000), SEED);
  const ms = performance.now() - start;
  t.diagnostic(`${r.cases} mutations over ${seeds.length} seed files: ${r.accepted} read, ${r.rejected} rejected; ${ms.toFixed(0)} ms, slowest case ${r.maxCaseMs.toFixed(1)} ms`);
  assert.deepEqual(r.failures, []);
  assert.ok(r.accepted > 0 && r.rejected > 0, "the mutations exercise both outcomes");
});

// The other untrusted inputs, with the same discipline (engine in test/fuzz-formats.ts): a load
// either succeeds or throws a one-line Error with the loader's prefix; a tokenizer that loads
// encodes and decodes a few texts to ids inside its vocabulary; a model that loads has every
// tensor in its config's shape.
function assertClean(t: { diagnostic(s: string): void }, what: string, r: FuzzResult, ms: number): void {
  t.diagnostic(`${what}: ${r.cases} mutations: ${r.accepted} loaded, ${r.rejected} rejected; ${ms.toFixed(0)} ms, slowest case ${r.maxCaseMs.toFixed(1)} ms${r.slowest ? ` (${r.slowest})` : ""}`);
  assert.deepEqual(r.failures, []);
  assert.ok(r.accepted > 0 && r.rejected > 0, "the mutations exercise both outcomes");
}

test("mutated tokenizer.json and tokenizer JSON give one-line errors; loaded tokenizers encode and decode", HANG, (t) => {
  const { seeds, real } = tokenizerJsonSeeds();
  if (!real) t.diagnostic("../shared/data absent: fuzzing trained tokenizers only, not gpt2-tokenizer.json");
  const start = performance.now();
  const r = fuzzTokenizerJson(seeds, cases(1500), SEED);
  assertClean(t, `${seeds.length} seeds`, r, performance.now() - start);
});

test("mutated GGUF tokenizer metadata gives one-line errors; loaded tokenizers encode and decode", HANG, (t) => {
  const { seeds, real } = ggufVocabSeeds();
  if (!real) t.diagnostic("../shared/data absent: fuzzing trained vocabularies only, not the vocab GGUFs");
  const start = performance.now();
  const r = fuzzGgufVocab(seeds, cases(2000), SEED);
  assertClean(t, `${seeds.length} seeds`, r, performance.now() - start);
});

test("mutated GGUF models give one-line errors through the loader; loaded models have the config's shapes", HANG, (t) => {
  const seeds = ggufModelSeeds();
  const start = performance.now();
  const r = fuzzGgufModel(seeds, cases(1500), SEED);
  assertClean(t, `${seeds.length} seeds (${seeds.map((s) => s.name).join(", ")})`, r, performance.now() - start);
});

/** Runs `f`, which must throw a one-line Error starting with `prefix`. */
function rejects(f: () => unknown, prefix: string): void {
  assert.throws(f, (e: unknown) => {
    assert.ok(e instanceof Error && e.constructor === Error, `an Error, not ${String(e)}`);
    assert.ok(e.message.startsWith(prefix), e.message);
    assert.ok(!/[\r\n\u2028\u2029]/.test(e.message), `one line: ${JSON.stringify(e.message)}`);
    return true;
  });
}

test("inputs the fuzzer found bad are rejected with one-line errors", HANG, () => {
  const { bpe } = trainedTokenizers();
  const hf = () => structuredClone(tokenizerToHfJson(bpe)) as { model: { vocab: Record<string, unknown> }; added_tokens: { id: unknown }[]; pre_tokenizer: unknown };
  // An id of 2^31 used to fill two billion placeholder tokens.
  let o = hf();
  o.model.vocab["Ġthe"] = 2 ** 31;
  rejects(() => tokenizerFromJSON(o), "tokenizer.json:");
  o = hf();
  o.added_tokens[0]!.id = 1.5;
  rejects(() => tokenizerFromJSON(o), "tokenizer.json:");
  // String() of this threw a TypeError inside the error message.
  o = hf();
  o.model.vocab["Ġthe"] = { toString: 1 };
  rejects(() => tokenizerFromJSON(o), "tokenizer.json:");
  // Deeply nested Sequences overflowed the stack.
  o = hf();
  let pre: unknown = { type: "Whitespace" };
  for (let i = 0; i < 100_000; i++) pre = { type: "Sequence", pretokenizers: [pre] };
  o.pre_tokenizer = pre;
  rejects(() => tokenizerFromJSON(o), "tokenizer.json:");
  // V8's syntax errors quote the text, line breaks included.
  rejects(() => tokenizerFromJsonText(JSON.stringify(tokenizerToHfJson(bpe), null, 2).slice(0, 100)), "tokenizer JSON: not valid JSON");
  rejects(() => tokenizerFromJSON({ ...bpe.toJSON(), type: "x\ny" }), "tokenizer JSON:");
  rejects(() => tokenizerFromJSON({ ...bpe.toJSON(), merges: [null] }), "byte-level BPE tokenizer:"); // was a TypeError

  // GGUF vocabularies: a 64-bit model value used to make JSON.stringify throw; a line break in pre.
  const vocab = new Map(tokenizerToGgufMetadata(bpe).map((e) => [e.key, e.value as GgufValue]));
  rejects(() => tokenizerFromGgufMetadata(new Map(vocab).set("tokenizer.ggml.model", 2n ** 63n)), "gguf tokenizer:");
  rejects(() => tokenizerFromGgufMetadata(new Map(vocab).set("tokenizer.ggml.pre", "x\ny")), "byte-level BPE tokenizer:");

  // GGUF models: a layer count sized parameterNames (2^31 layers); tensors of other dims loaded silently.
  const seed = ggufModelSeeds()[0]!;
  const load = (meta: GgufMetadataEntry[], tensors: GgufTensorToWrite[]) => () => {
    const f = GgufFile.open(new MemorySource(serializeGguf(meta, tensors)));
    return llamaTensorsFromGguf(f, llamaConfigFromGguf(f));
  };
  const withMeta = (key: string, value: number) => seed.metadata.map((e) => (e.key === key ? { key, type: GgufType.UINT32, value } : e));
  rejects(load(withMeta("llama.block_count", 2 ** 31), seed.tensors), "gguf: llama.block_count");
  rejects(load(withMeta("llama.attention.head_count", 3), seed.tensors), "gguf: config:");
  const transposed = seed.tensors.map((t) => (t.name === "blk.0.ffn_up.weight" ? { ...t, dims: [t.dims[1]!, t.dims[0]!] } : t));
  rejects(load(seed.metadata, transposed), "gguf: tensor blk.0.ffn_up.weight has dims");
});
