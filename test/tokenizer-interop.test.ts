import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { GgufType, ggufMetadataEntries, parseGgufHeader, serializeGguf, type GgufMetadataEntry } from "../src/format/gguf.js";
import { ByteBpeTokenizer, PRE_TOKENIZER_NAMES, preTokenize, toByteChars } from "../src/tokenizer/byte-bpe.js";
import { spmFromLlama2c, tokenizerFromGgufMetadata, tokenizerToGgufMetadata } from "../src/tokenizer/gguf-vocab.js";
import { tokenizerFromHfJson, tokenizerToHfJson } from "../src/tokenizer/hf-tokenizer-json.js";
import { parseLlama2cTokenizer } from "../src/tokenizer/llama2c-tokenizer.js";
import { tokenizerFromJSON } from "../src/tokenizer/load.js";
import { SpmTokenizer, TokenType } from "../src/tokenizer/spm.js";
import type { Tokenizer } from "../src/tokenizer/tokenizer.js";

const DATA = "../shared/data";
const VOCABS = `${DATA}/tokenizers`;

type T = { skip(msg: string): void; diagnostic(msg: string): void };

function haveData(t: T): boolean {
  if (existsSync(DATA)) return true;
  t.skip("../shared/data absent");
  return false;
}

function bytesOf(path: string): Uint8Array {
  const b = readFileSync(path);
  return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
}

function ggufTokenizer(name: string): Tokenizer {
  return tokenizerFromGgufMetadata(parseGgufHeader(bytesOf(`${VOCABS}/${name}.gguf`)).metadata);
}

/** llama.cpp's test-tokenizer-0 files: texts separated by "\n__ggml_vocab_test__\n" (the file ends with one), one line of ids per text. */
function vectors(name: string): { text: string; ids: number[] }[] {
  const texts = readFileSync(`${VOCABS}/${name}.gguf.inp`, "utf8").split("\n__ggml_vocab_test__\n");
  const lines = readFileSync(`${VOCABS}/${name}.gguf.out`, "utf8").split("\n");
  assert.equal(texts.pop(), "", "the .inp ends with a separator");
  assert.equal(lines.pop(), "", "the .out ends with a newline");
  assert.equal(texts.length, lines.length);
  return texts.map((text, i) => ({ text, ids: lines[i]!.trim() === "" ? [] : lines[i]!.trim().split(/\s+/).map(Number) }));
}

/** Some varied texts: the llama.cpp inputs, stories, random strings over a mixed alphabet. */
function sampleTexts(): string[] {
  const texts = vectors("ggml-vocab-llama-spm").map((v) => v.text);
  const stories = readFileSync(`${DATA}/corpora/tinystories-2MiB.txt`, "utf8").slice(0, 60_000).split("<|endoftext|>");
  texts.push(...stories.slice(0, 40));
  const alphabet = [..."aeiou tnshrdl.,!'\"\n\tTOLé世🙂½３_-<>s/0x"];
  let seed = 7;
  const rand = (n: number) => ((seed = (seed * 1103515245 + 12345) % 2 ** 31), seed % n);
  for (let k = 0; k < 200; k++) {
    let s = "";
    for (let i = rand(30); i > 0; i--) s += alphabet[rand(alphabet.length)];
    texts.push(s);
  }
  return texts;
}

test("llama.cpp's test vectors: Llama SentencePiece vocabulary, exact ids", (t) => {
  if (!haveData(t)) return;
  const tok = ggufTokenizer("ggml-vocab-llama-spm");
  assert.ok(tok instanceof SpmTokenizer);
  const cases = vectors("ggml-vocab-llama-spm");
  const matched = cases.filter(({ text, ids }) => JSON.stringify(tok.encode(text)) === JSON.stringify(ids)).length;
  t.diagnostic(`ggml-vocab-llama-spm: ${matched}/${cases.length} exact`);
  for (const { text, ids } of cases) assert.deepEqual(tok.encode(text), ids, JSON.stringify(text));
  for (const { text } of cases) {
    assert.equal(tok.decode(tok.encode(text)), text);
    assert.equal(tok.decode(tok.encode(text, { addBos: true })), text);
  }
  assert.deepEqual(tok.encode("Hello world", { addSpecial: true }), [1, 15043, 3186], "llama adds BOS");
});

test("llama.cpp's test vectors: GPT-2 byte-level vocabulary, exact ids", (t) => {
  if (!haveData(t)) return;
  const tok = ggufTokenizer("ggml-vocab-gpt-2");
  assert.ok(tok instanceof ByteBpeTokenizer);
  const cases = vectors("ggml-vocab-gpt-2");
  const matched = cases.filter(({ text, ids }) => JSON.stringify(tok.encode(text)) === JSON.stringify(ids)).length;
  t.diagnostic(`ggml-vocab-gpt-2: ${matched}/${cases.length} exact`);
  for (const { text, ids } of cases) assert.deepEqual(tok.encode(text), ids, JSON.stringify(text));
  for (const { text } of cases) assert.equal(tok.decode(tok.encode(text)), text);
});

test("special tokens: control tokens only with parseSpecial, as llama.cpp's parse_special", (t) => {
  if (!haveData(t)) return;
  const spm = ggufTokenizer("ggml-vocab-llama-spm") as SpmTokenizer;
  const plain = spm.encode("a</s>b");
  assert.ok(!plain.includes(2), "</s> in text is text by default");
  // After a special token the next fragment gets its own dummy-prefix space.
  assert.deepEqual(spm.encode("a</s>b", { parseSpecial: true }), [...spm.encode("a"), 2, ...spm.encode("b")]);
  const gpt2 = ggufTokenizer("ggml-vocab-gpt-2") as ByteBpeTokenizer;
  assert.ok(!gpt2.encode("x<|endoftext|>y").includes(50256));
  assert.deepEqual(gpt2.encode("x<|endoftext|>y", { parseSpecial: true }), [...gpt2.encode("x"), 50256, ...gpt2.encode("y")]);
  assert.equal(gpt2.decode([50256]), "", "control tokens decode to nothing");
  assert.equal(gpt2.detokenize([50256], { unparseSpecial: true }), "<|endoftext|>");
});

test("detokenize follows llama.cpp, including its leading-space rule", (t) => {
  if (!haveData(t)) return;
  const spm = ggufTokenizer("ggml-vocab-llama-spm") as SpmTokenizer;
  const ids = spm.encode("Hello world"); // ▁Hello ▁world
  assert.equal(spm.detokenize(ids), "Hello world");
  // llama.cpp strips the dummy-prefix space only from a first token that is text: after BOS it stays.
  assert.equal(spm.detokenize([1, ...ids]), " Hello world");
  assert.equal(spm.detokenize([1, ...ids], { removeSpecial: true }), " Hello world");
  assert.equal(spm.detokenize([1, ...ids], { unparseSpecial: true }), "<s> Hello world");
  assert.equal(spm.decode([1, ...ids]), "Hello world", "decode is SentencePiece's: the space goes");
  assert.equal(spm.decodeToken(1, ids[0]!), "Hello");
  assert.equal(spm.decodeToken(ids[0]!, ids[1]!), " world");
  // Byte tokens of one character, streamed.
  const emoji = spm.encode("🙂");
  const d = new TextDecoder();
  let s = "";
  for (let i = 0; i < emoji.length; i++) s += d.decode(spm.decodeTokenBytes(i > 0 ? emoji[i - 1]! : 1, emoji[i]!), { stream: true });
  assert.equal(s + d.decode(), "🙂");
  // GPT-2: llama.cpp's clean_spaces tidies " ," and " 's" in detokenize; decode does not.
  const gpt2 = ggufTokenizer("ggml-vocab-gpt-2") as ByteBpeTokenizer;
  const g = gpt2.encode("a , b 's c");
  assert.equal(gpt2.detokenize(g), "a, b's c");
  assert.equal(gpt2.decode(g), "a , b 's c");
});

test("HF gpt2 tokenizer.json gives the GPT-2 GGUF's ids", (t) => {
  if (!haveData(t)) return;
  const hf = tokenizerFromHfJson(JSON.parse(readFileSync(`${VOCABS}/gpt2-tokenizer.json`, "utf8")));
  assert.ok(hf instanceof ByteBpeTokenizer);
  assert.equal(hf.pre, "gpt-2");
  assert.equal(hf.vocabSize, 50257);
  const gguf = ggufTokenizer("ggml-vocab-gpt-2");
  for (const { text, ids } of vectors("ggml-vocab-gpt-2")) assert.deepEqual(hf.encode(text), ids, JSON.stringify(text));
  for (const text of sampleTexts()) assert.deepEqual(hf.encode(text), gguf.encode(text), JSON.stringify(text));
});

test("tokenizer.json: save → load gives identical ids (byte-level and SentencePiece-style)", (t) => {
  if (!haveData(t)) return;
  const texts = sampleTexts();
  const gpt2 = ggufTokenizer("ggml-vocab-gpt-2") as ByteBpeTokenizer;
  const spm = ggufTokenizer("ggml-vocab-llama-spm") as SpmTokenizer;
  const tok512 = spmFromLlama2c(parseLlama2cTokenizer(bytesOf(`${DATA}/models/tok512.bin`)));
  for (const tok of [gpt2, spm, tok512]) {
    const json = JSON.parse(JSON.stringify(tokenizerToHfJson(tok)));
    assert.equal(json.model.type, "BPE");
    assert.equal(Object.keys(json.model.vocab).length, tok.vocabSize, "every token is in the vocab (\"constructor\" too)");
    const back = tokenizerFromJSON(json); // load.ts recognises tokenizer.json too
    assert.equal(back.kind, tok.kind);
    assert.equal(back.vocabSize, tok.vocabSize);
    for (const text of texts) assert.deepEqual(back.encode(text, { addBos: true }), tok.encode(text, { addBos: true }), `${tok.kind}: ${JSON.stringify(text)}`);
  }
  // The HF file itself survives a save → load.
  const hf = tokenizerFromHfJson(JSON.parse(readFileSync(`${VOCABS}/gpt2-tokenizer.json`, "utf8")));
  const again = tokenizerFromHfJson(JSON.parse(JSON.stringify(tokenizerToHfJson(hf))));
  for (const text of texts) assert.deepEqual(again.encode(text), hf.encode(text));
});

test("tok512 and its GGUF form agree (llama2.c run.c ids = llama.cpp SPM ids)", (t) => {
  if (!haveData(t)) return;
  const tok = parseLlama2cTokenizer(bytesOf(`${DATA}/models/tok512.bin`));
  const meta = tokenizerToGgufMetadata(tok);
  const get = (k: string) => meta.find((e) => e.key === `tokenizer.ggml.${k}`)?.value;
  assert.equal(get("model"), "llama");
  const tokens = (get("tokens") as { values: string[] }).values;
  const types = (get("token_type") as { values: number[] }).values;
  assert.deepEqual(tokens.slice(0, 4), ["<unk>", "<s>", "</s>", "<0x00>"]);
  assert.deepEqual(types.slice(0, 4), [TokenType.UNKNOWN, TokenType.CONTROL, TokenType.CONTROL, TokenType.BYTE]);
  assert.equal(types[258], TokenType.BYTE);
  assert.ok(tokens.every((s) => !s.includes(" ")), "spaces are ▁");
  // Through real GGUF bytes and back.
  const file = serializeGguf([{ key: "general.architecture", type: meta[0]!.type, value: "llama" }, ...meta], []);
  const gguf = tokenizerFromGgufMetadata(parseGgufHeader(file).metadata);
  assert.ok(gguf instanceof SpmTokenizer);
  for (const text of sampleTexts()) {
    const ids = tok.encode(text, { addBos: true });
    assert.deepEqual(gguf.encode(text, { addBos: true }), ids, JSON.stringify(text));
    assert.equal(gguf.decode(ids), text);
  }
  const story = readFileSync(`${DATA}/corpora/tinystories-2MiB.txt`, "utf8").slice(0, 200_000);
  assert.deepEqual(gguf.encode(story), tok.encode(story));
});

/** A vocabulary-only GGUF of a tokenizer, with the llama.* keys llama.cpp reads before the vocabulary. */
function vocabGguf(meta: GgufMetadataEntry[]): Uint8Array {
  const u32 = (key: string, value: number): GgufMetadataEntry => ({ key, type: GgufType.UINT32, value });
  return serializeGguf(
    [
      { key: "general.architecture", type: GgufType.STRING, value: "llama" },
      u32("llama.context_length", 512), u32("llama.embedding_length", 64), u32("llama.block_count", 1),
      u32("llama.feed_forward_length", 172), u32("llama.attention.head_count", 8), u32("llama.attention.head_count_kv", 4),
      { key: "llama.attention.layer_norm_rms_epsilon", type: GgufType.FLOAT32, value: 1e-5 },
      u32("llama.rope.dimension_count", 8),
      ...meta,
    ],
    [],
  );
}

test("llama.cpp itself (node-llama-cpp, vocabulary only) tokenizes and detokenizes as we do", async (t) => {
  if (!haveData(t)) return;
  let getLlama: typeof import("node-llama-cpp").getLlama;
  try {
    ({ getLlama } = await import("node-llama-cpp"));
  } catch {
    t.skip("node-llama-cpp is not installed");
    return;
  }
  const llama = await getLlama({ gpu: false, build: "never", skipDownload: true, logLevel: "disabled" as never, progressLogs: false });
  const dir = mkdtempSync(join(tmpdir(), "bonsai-vocab-"));
  try {
    const tok512 = parseLlama2cTokenizer(bytesOf(`${DATA}/models/tok512.bin`));
    writeFileSync(join(dir, "tok512.gguf"), vocabGguf(tokenizerToGgufMetadata(tok512)));
    const texts = [...sampleTexts(), "a</s>b<s>c", "<unk> x", "x<|endoftext|>y", "\u0000nul"];
    for (const path of [`${VOCABS}/ggml-vocab-llama-spm.gguf`, `${VOCABS}/ggml-vocab-gpt-2.gguf`, join(dir, "tok512.gguf")]) {
      const ours = tokenizerFromGgufMetadata(parseGgufHeader(bytesOf(path)).metadata) as SpmTokenizer | ByteBpeTokenizer;
      const model = await llama.loadModel({ modelPath: path, vocabOnly: true });
      try {
        for (const text of texts) {
          const ids = Array.from(model.tokenize(text, false)) as number[];
          assert.deepEqual(ours.encode(text), ids, `${path}: ${JSON.stringify(text)}`);
          assert.deepEqual(ours.encode(text, { parseSpecial: true }), Array.from(model.tokenize(text, true)), `${path} (special): ${JSON.stringify(text)}`);
          assert.equal(ours.detokenize(ids), model.detokenize(ids as never), `${path} detokenize: ${JSON.stringify(text)}`);
          const bos = [ours.bosId ?? 0, ...ids];
          assert.equal(ours.detokenize(bos), model.detokenize(bos as never), `${path} detokenize after BOS: ${JSON.stringify(text)}`);
        }
        t.diagnostic(`${path.split("/").pop()}: ${texts.length} texts agree with llama.cpp`);
      } finally {
        await model.dispose();
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("llama.cpp's pre-tokenizers: the GPT-2 vocabulary under each tokenizer.ggml.pre name agrees with llama.cpp", async (t) => {
  if (!haveData(t)) return;
  let getLlama: typeof import("node-llama-cpp").getLlama;
  try {
    ({ getLlama } = await import("node-llama-cpp"));
  } catch {
    t.skip("node-llama-cpp is not installed");
    return;
  }
  const llama = await getLlama({ gpu: false, build: "never", skipDownload: true, logLevel: "disabled" as never, progressLogs: false });
  const entries = ggufMetadataEntries(parseGgufHeader(bytesOf(`${VOCABS}/ggml-vocab-gpt-2.gguf`)));
  const texts = [
    ...vectors("ggml-vocab-gpt-2").map((v) => v.text),
    "Hello WORLD'S 12345 !!\n\n x",
    "a\u0085b\u00a0c\u3000d\ufeffe",
    "don'T I'LL 1,234,567.89 $100 <=> ^~| `x`",
    "Ελληνικά ΐΊ ῼ Ω K 中文字符 한국어 ｆｕｌｌ",
    "\r\n\r\n  \t x  \n",
    "ǅ µ ſ ₂ ½ ①",
  ];
  const dir = mkdtempSync(join(tmpdir(), "bonsai-pre-"));
  const distinct = new Set<string>();
  try {
    for (const pre of ["gpt-2", "llama-bpe", "qwen2", "starcoder", "falcon", "deepseek-llm", "deepseek-coder", "default", "poro-chat", "smaug-bpe"]) {
      const path = join(dir, `${pre}.gguf`);
      writeFileSync(path, serializeGguf(entries.map((e) => (e.key === "tokenizer.ggml.pre" ? { ...e, value: pre } : e)), []));
      const ours = tokenizerFromGgufMetadata(parseGgufHeader(bytesOf(path)).metadata);
      const model = await llama.loadModel({ modelPath: path, vocabOnly: true });
      try {
        for (const text of texts) assert.deepEqual(ours.encode(text), Array.from(model.tokenize(text, false)), `${pre}: ${JSON.stringify(text)}`);
      } finally {
        await model.dispose();
      }
      distinct.add(JSON.stringify(texts.map((x) => ours.encode(x))));
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  assert.ok(distinct.size >= 8, `the pre-tokenizers split differently (${distinct.size} distinct results)`);
});

test("toJSON round trips through tokenizerFromJSON", (t) => {
  if (!haveData(t)) return;
  const texts = sampleTexts().slice(0, 80);
  for (const name of ["ggml-vocab-llama-spm", "ggml-vocab-gpt-2"]) {
    const tok = ggufTokenizer(name);
    const back = tokenizerFromJSON(JSON.parse(JSON.stringify(tok.toJSON())));
    assert.deepEqual(back.toJSON(), tok.toJSON());
    for (const text of texts) assert.deepEqual(back.encode(text), tok.encode(text));
    // And GGUF metadata → tokenizer → metadata is stable.
    const meta = tokenizerToGgufMetadata(tok);
    assert.deepEqual(tokenizerToGgufMetadata(tokenizerFromGgufMetadata(new Map(meta.map((e) => [e.key, e.value])))), meta);
  }
});

test("encode speed on tinystories-2MiB (diagnostic)", (t) => {
  if (!haveData(t)) return;
  const text = readFileSync(`${DATA}/corpora/tinystories-2MiB.txt`, "utf8");
  const mib = Buffer.byteLength(text) / 2 ** 20;
  for (const name of ["ggml-vocab-llama-spm", "ggml-vocab-gpt-2"]) {
    const tok = ggufTokenizer(name);
    const t0 = performance.now();
    const n = tok.encode(text).length;
    const s = (performance.now() - t0) / 1000;
    t.diagnostic(`${name}: ${n} tokens in ${s.toFixed(2)} s = ${(mib / s).toFixed(2)} MiB/s, ${Math.round(n / s)} tokens/s`);
  }
});

// ---- without the shared data -----------------------------------------------------------------------

test("pre-tokenizers: every name compiles; GPT-2 and Llama 3 split as their regexes say", () => {
  for (const pre of PRE_TOKENIZER_NAMES) new ByteBpeTokenizer({ tokens: ["a"], types: [1], merges: [], pre, bosId: null, eosId: null });
  const split = (pre: string, s: string) => {
    const tok = new ByteBpeTokenizer({ tokens: ["a"], types: [1], merges: [], pre, bosId: null, eosId: null });
    return preTokenize(s, (tok as unknown as { regexes: RegExp[] }).regexes);
  };
  assert.deepEqual(split("gpt-2", "Hello world's  12345 !!\n\n x"), ["Hello", " world", "'s", " ", " 12345", " !!", "\n\n", " x"]);
  assert.deepEqual(split("llama-bpe", "Hello WORLD'S 12345 !!\n\n x"), ["Hello", " WORLD", "'S", " ", "123", "45", " !!\n\n", " x"]);
  // llama.cpp's \s is Unicode White_Space: U+0085 is a space, U+FEFF is not.
  assert.deepEqual(split("gpt-2", "a\u0085b"), ["a", "\u0085", "b"]);
  assert.deepEqual(split("gpt-2", "a\uFEFFb"), ["a", "\uFEFF", "b"]);
  assert.throws(() => split("nope", "x"), /unknown pre-tokenizer "nope"/);
});

test("byte-level BPE: ranks, leftmost ties, byte map, ignore_merges", () => {
  const chars = [..."abc"].map(toByteChars);
  const vocab = [...chars, "ab", "bc", "abc", toByteChars(" ") + "a"];
  const mk = (merges: string[], pre = "gpt-2") => new ByteBpeTokenizer({ tokens: vocab, types: vocab.map(() => 1), merges, pre, bosId: null, eosId: null });
  assert.deepEqual(mk(["a b", "b c"]).encode("abc"), [3, 2]);
  assert.deepEqual(mk(["b c", "a b"]).encode("abc"), [0, 4]);
  assert.deepEqual(mk(["a b", "ab c"]).encode("abc"), [5]);
  assert.equal(toByteChars(" "), "Ġ");
  assert.deepEqual(mk(["Ġ a"]).encode(" a"), [6]);
  // llama-bpe takes a word that is a token whole, even with no merges to build it.
  assert.deepEqual(mk([], "llama-bpe").encode("abc"), [5]);
  assert.deepEqual(mk([]).encode("abc"), [0, 1, 2]);
});

test("SentencePiece BPE: scores, leftmost ties, byte fallback, user-defined tokens", () => {
  const tokens = ["<unk>", "<s>", "</s>", "<0xE4>", "<0xB8>", "<0x96>", "▁", "a", "b", "ab", "ba", "▁a", "<X>"];
  const types = [2, 3, 3, 6, 6, 6, 1, 1, 1, 1, 1, 1, 4];
  const mk = (scores: Record<string, number>) =>
    new SpmTokenizer({ tokens, types, scores: tokens.map((t) => scores[t] ?? 0), bosId: 1, eosId: 2, unkId: 0, addBos: true, addEos: false });
  assert.deepEqual(mk({ ab: 1, ba: 1, "▁a": -5 }).encode("aba"), [6, 9, 7], "tie: leftmost");
  assert.deepEqual(mk({ ab: 1, ba: 2, "▁a": -5 }).encode("aba"), [11, 10], "higher score first, then the rest");
  assert.deepEqual(mk({ ab: 2, ba: 1, "▁a": -5 }).encode("aba"), [6, 9, 7]);
  assert.deepEqual(mk({ ab: 2, ba: 1, "▁a": 5 }).encode("aba"), [11, 10]);
  assert.deepEqual(mk({}).encode("世"), [6, 3, 4, 5], "no piece: UTF-8 bytes");
  assert.equal(mk({}).decode([1, 6, 3, 4, 5]), "世");
  assert.deepEqual(mk({ "▁a": 5 }).encode("a<X>a"), [11, 12, 11], "user-defined tokens split the text; a prefix space follows them");
  assert.equal(mk({}).decode([11, 12, 11]), "a<X> a");
  const json = JSON.parse(JSON.stringify(mk({ ab: Infinity }).toJSON()));
  assert.equal(json.scores[9], "Infinity");
  assert.deepEqual(tokenizerFromJSON(json).encode("ab"), [6, 9]);
});

test("tokenizer.json: Split regexes name llama.cpp's pre-tokenizer", () => {
  const tok = new ByteBpeTokenizer({ tokens: ["a", "b", "ab"], types: [1, 1, 1], merges: ["a b"], pre: "llama-bpe", bosId: null, eosId: null });
  const json = tokenizerToHfJson(tok) as { pre_tokenizer: { type: string; pretokenizers: { pattern: { Regex: string } }[] }; model: { ignore_merges: boolean } };
  assert.equal(json.pre_tokenizer.type, "Sequence");
  const pre = () => (tokenizerFromHfJson(json) as ByteBpeTokenizer).pre;
  assert.equal(pre(), "llama-bpe");
  // Llama 3's own file spells the contractions case-insensitively.
  json.pre_tokenizer.pretokenizers[0]!.pattern.Regex =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
  assert.equal(pre(), "llama-bpe");
  json.model.ignore_merges = false;
  assert.equal(pre(), "dbrx", "the same regex without ignore_merges");
  json.pre_tokenizer.pretokenizers[0]!.pattern.Regex = "\\w+";
  assert.throws(() => tokenizerFromHfJson(json), /not one of llama.cpp's/);
});
