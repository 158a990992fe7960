import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { CharTokenizer } from "../src/tokenizer/char-tokenizer.js";
import { Llama2cTokenizer, parseLlama2cTokenizer, serializeLlama2cTokenizer } from "../src/tokenizer/llama2c-tokenizer.js";
import { tokenizerFromJSON } from "../src/tokenizer/load.js";

const DATA = "../shared/data";
const enc = new TextEncoder();

function bytesOf(path: string): Uint8Array {
  const b = readFileSync(path);
  return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
}

function tok512(t: { skip(msg: string): void }): Llama2cTokenizer | null {
  if (!existsSync(DATA)) {
    t.skip("../shared/data absent");
    return null;
  }
  return parseLlama2cTokenizer(bytesOf(`${DATA}/models/tok512.bin`));
}

// ---- char ------------------------------------------------------------------------------------

test("char tokenizer: nanoGPT vocabulary, encode, decode, JSON", () => {
  const tok = CharTokenizer.fromText("hello world\n");
  assert.deepEqual(tok.chars, ["\n", " ", "d", "e", "h", "l", "o", "r", "w"]);
  assert.equal(tok.vocabSize, 9);
  assert.equal(tok.bosId, null);
  assert.equal(tok.eosId, null);
  assert.deepEqual(tok.encode("hold"), [4, 6, 5, 2]);
  assert.deepEqual(tok.encode("hold", { addBos: true }), [4, 6, 5, 2], "no BOS to add");
  assert.equal(tok.decode([4, 3, 5, 5, 6]), "hello");
  assert.equal(tok.decodeToken(0, 1), " ");
  assert.throws(() => tok.encode("hex"), /char tokenizer: character "x" \(U\+0078\) is not in the vocabulary/);
  assert.throws(() => tok.decode([9]), /token id 9 is outside the vocabulary \(size 9\)/);

  const json = tok.toJSON();
  assert.deepEqual(json, { type: "char", chars: tok.chars });
  const back = tokenizerFromJSON(JSON.parse(JSON.stringify(json)));
  assert.equal(back.kind, "char");
  assert.deepEqual(back.encode("world"), tok.encode("world"));
});

test("char tokenizer: code points, sorted by code point as Python does", () => {
  // UTF-16 order would put the emoji (0xD83D...) before U+FFFD; Python's sorted() does not.
  const tok = CharTokenizer.fromText("b\uFFFD🙂a🙂");
  assert.deepEqual(tok.chars, ["a", "b", "\uFFFD", "🙂"]);
  assert.deepEqual(tok.encode("🙂a"), [3, 0]);
  assert.equal(tok.decode([3, 2]), "🙂\uFFFD");
  assert.throws(() => tok.encode("😀"), /character "😀" \(U\+1F600\)/);
  assert.throws(() => new CharTokenizer(["a", "a"]), /appears twice/);
  assert.throws(() => new CharTokenizer(["ab"]), /not a single character/);
  assert.throws(() => CharTokenizer.fromJSON({ type: "char" }), /expected \{type: "char", chars: string\[\]\}/);
  assert.throws(() => tokenizerFromJSON({ type: "nope" }), /unknown type "nope" \(known: char, llama2c, spm, byte-bpe\)/);
  assert.throws(() => tokenizerFromJSON({ type: "constructor" }), /unknown type/);
  assert.throws(() => tokenizerFromJSON(null), /missing "type"/);
});

// ---- llama2.c -------------------------------------------------------------------------------

test("tok512.bin: layout, and byte-exact re-serialization through JSON", (t) => {
  const tok = tok512(t);
  if (!tok) return;
  assert.equal(tok.vocabSize, 512);
  assert.equal(tok.maxTokenLength, 7);
  assert.equal(tok.bosId, 1);
  assert.equal(tok.eosId, 2);
  const dec = new TextDecoder();
  assert.deepEqual([0, 1, 2, 3, 258, 259, 410].map((i) => dec.decode(tok.pieces[i])), ["<unk>", "\n<s>\n", "\n</s>\n", "<0x00>", "<0xFF>", " t", " "]);
  assert.equal(tok.scores[259], -0);
  assert.equal(tok.scores[260], -1);

  const file = bytesOf(`${DATA}/models/tok512.bin`);
  assert.deepEqual(serializeLlama2cTokenizer(tok), file);
  const json = JSON.parse(JSON.stringify(tok.toJSON()));
  assert.ok(json.pieces.every((p: unknown) => typeof p === "string"), "every tok512 piece is valid UTF-8");
  const back = tokenizerFromJSON(json) as Llama2cTokenizer;
  assert.equal(back.kind, "llama2c");
  assert.deepEqual(serializeLlama2cTokenizer(back), file);
  assert.deepEqual(parseLlama2cTokenizer(file, 512).pieces, tok.pieces);
  assert.throws(() => parseLlama2cTokenizer(file, 513), /file ends inside the header of token 512 of 513/);
  assert.throws(() => parseLlama2cTokenizer(file.subarray(0, file.length - 2)), /token 511 claims \d+ bytes but the file has \d+ left/);
  assert.throws(() => parseLlama2cTokenizer(file.subarray(0, 2)), /shorter than the 4-byte header/);
});

test("tok512: ids match llama2.c run.c's encode()", (t) => {
  const tok = tok512(t);
  if (!tok) return;
  // Produced by run.c's encode() (llama2.c master) compiled from C, with bos=1, eos=0.
  const cases: [string, number[]][] = [
    ["hello", [1, 281, 306, 414]],
    ["", [1]],
    ["Once upon a time, there was a little girl named Lily.", [1, 403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426]],
    ["héllo 世界 🙂", [1, 270, 485, 306, 414, 410, 231, 187, 153, 234, 152, 143, 410, 243, 162, 156, 133]],
    ["a  b\n\nc", [1, 261, 410, 268, 13, 13, 429]],
    ["<0x41>", [1, 410, 504, 477, 444, 484, 475, 505]],
  ];
  for (const [text, ids] of cases) assert.deepEqual(tok.encode(text, { addBos: true }), ids, JSON.stringify(text));
  assert.deepEqual(tok.encode(""), []);
  assert.deepEqual(tok.encode("hello"), [281, 306, 414]);
  assert.deepEqual(tok.encode("hello", { addBos: true, addEos: true }), [1, 281, 306, 414, 2]);
});

test("tok512: decode(encode(s)) === s, byte tokens reassembled into UTF-8", (t) => {
  const tok = tok512(t);
  if (!tok) return;
  const story = readFileSync(`${DATA}/models/stories260K.expected-greedy.txt`, "utf8");
  const texts = ["hello", "héllo 世界 🙂", " leading space", "tabs\tand\nnewlines\n", "\u0000nul", "<0x41> <s>", "It’s “quoted” — ok…", story];
  for (const s of texts) {
    const ids = tok.encode(s, { addBos: true });
    assert.equal(tok.decode(ids), s, JSON.stringify(s));
    // Streaming: per-token bytes through one streaming TextDecoder give the same text.
    const d = new TextDecoder();
    let streamed = "";
    for (let i = 0; i < ids.length; i++) streamed += d.decode(tok.decodeTokenBytes(i > 0 ? ids[i - 1]! : -1, ids[i]!), { stream: true });
    assert.equal(streamed + d.decode(), s);
  }
  // Without BOS the dummy-prefix space stays, as in run.c.
  assert.equal(tok.decode(tok.encode("hello")), " hello");
  assert.equal(tok.decodeToken(1, 281), "he", "after BOS the leading space goes");
  assert.equal(tok.decodeToken(0, 281), " he");
  assert.equal(tok.decodeToken(281, 410), " ");
  assert.equal(tok.decodeToken(0, 3 + 0x41), "A");
  assert.equal(tok.decodeToken(0, 3 + 0xe4), "\uFFFD", "a lone lead byte");
  assert.equal(tok.decode([1, 2]), "", "BOS and EOS render as nothing");
  assert.throws(() => tok.decode([512]), /token id 512 is outside the vocabulary \(size 512\)/);
});

/** run.c's quadratic merge loop, transliterated, to check the heap version against. */
function naiveEncode(tok: Llama2cTokenizer, text: string): number[] {
  const key = (id: number) => String.fromCharCode(...tok.pieces[id]!);
  const lookup = new Map<string, number>();
  tok.pieces.forEach((_, id) => lookup.has(key(id)) || lookup.set(key(id), id));
  const ids = [1];
  if (text !== "") ids.push(lookup.get(" ")!);
  for (const ch of text) {
    const b = enc.encode(ch);
    const id = lookup.get(String.fromCharCode(...b));
    if (id !== undefined) ids.push(id);
    else ids.push(...Array.from(b, (x) => x + 3));
  }
  for (;;) {
    let best = -1e10, bestId = -1, bestIdx = -1;
    for (let i = 0; i + 1 < ids.length; i++) {
      const id = lookup.get(key(ids[i]!) + key(ids[i + 1]!));
      if (id !== undefined && tok.scores[id]! > best) [best, bestId, bestIdx] = [tok.scores[id]!, id, i];
    }
    if (bestIdx < 0) return ids;
    ids.splice(bestIdx, 2, bestId);
  }
}

test("tok512: heap-based merging equals run.c's scan on random text", (t) => {
  const tok = tok512(t);
  if (!tok) return;
  const alphabet = [..."aeiou tnshrdl.,!'\"\nTOLé世🙂"];
  let seed = 12345;
  const rand = (n: number) => ((seed = (seed * 1103515245 + 12345) % 2 ** 31), seed % n);
  for (let k = 0; k < 300; k++) {
    let s = "";
    const len = rand(40);
    for (let i = 0; i < len; i++) s += alphabet[rand(alphabet.length)];
    assert.deepEqual(tok.encode(s, { addBos: true }), naiveEncode(tok, s), JSON.stringify(s));
  }
});

// A tiny vocabulary: <unk>, BOS, EOS, 256 byte tokens, then a few pieces with chosen scores.
function tiny(extra: [string | number[], number][]): Llama2cTokenizer {
  const pieces: Uint8Array[] = ["<unk>", "\n<s>\n", "\n</s>\n"].map((s) => enc.encode(s));
  for (let b = 0; b < 256; b++) pieces.push(enc.encode(`<0x${b.toString(16).toUpperCase().padStart(2, "0")}>`));
  const scores: number[] = pieces.map(() => 0);
  for (const [p, s] of extra) {
    pieces.push(typeof p === "string" ? enc.encode(p) : Uint8Array.from(p));
    scores.push(s);
  }
  return new Llama2cTokenizer(pieces, scores, 8);
}

test("merge order: highest score first, leftmost on ties, nothing at or below -1e10", () => {
  const base: [string, number][] = [[" ", -10], ["a", -10], ["b", -10]]; // ids 259, 260, 261
  assert.deepEqual(tiny([...base, ["ab", 1], ["ba", 1]]).encode("aba"), [259, 262, 260], "tie: leftmost pair");
  assert.deepEqual(tiny([...base, ["ab", 1], ["ba", 2]]).encode("aba"), [259, 260, 263], "higher score wins");
  assert.deepEqual(tiny([...base, ["ab", -1e10]]).encode("ab"), [259, 260, 261], "-1e10 never merges");
  assert.deepEqual(tiny([...base, ["ab", 1], ["abab", 2]]).encode("abab"), [259, 263]);
  // A piece with an inner space: merges may cross words, so the whole text is merged at once.
  assert.deepEqual(tiny([...base, ["a ", 5], ["a b", 6]]).encode("a b a"), [259, 263, 259, 260]);
  assert.deepEqual(tiny([...base, ["a ", 5], ["a b", 6]]).encode("a b a", { addBos: true }), [1, 259, 263, 259, 260]);
  assert.deepEqual(tiny([...base, ["b ", 5]]).encode("a b a"), [259, 260, 259, 262, 260]);
  // No " " piece: the dummy prefix falls back to the byte token for 0x20.
  assert.deepEqual(tiny([["a", 0]]).encode("a"), [0x20 + 3, 259]);
  assert.throws(() => new Llama2cTokenizer([enc.encode("a")], [0], 1), /no room for <unk>, BOS and EOS/);
});

test("pieces that are not UTF-8 survive JSON as byte arrays", () => {
  const tok = tiny([[" ", 0], [[0xe4, 0xb8], 0], [[0x96], -1]]);
  const json = JSON.parse(JSON.stringify(tok.toJSON()));
  assert.deepEqual(json.pieces.slice(260), [[0xe4, 0xb8], [0x96]]);
  const back = tokenizerFromJSON(json) as Llama2cTokenizer;
  assert.deepEqual(serializeLlama2cTokenizer(back), serializeLlama2cTokenizer(tok));
  // "世" is E4 B8 96: no piece for the code point, so byte tokens, which never merge ("<0xE4><0xB8>"
  // is not a piece). The two raw pieces decode together into the character.
  assert.deepEqual(tok.encode("世"), [259, 0xe4 + 3, 0xb8 + 3, 0x96 + 3]);
  assert.equal(tok.decode(tok.encode("世", { addBos: true })), "世");
  assert.equal(tok.decode([260, 261]), "世");
  assert.throws(() => Llama2cTokenizer.fromJSON({ type: "llama2c", pieces: [{}], scores: [0], maxTokenLength: 1 }), /piece 0 is neither/);
});
