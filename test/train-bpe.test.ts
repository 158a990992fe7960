// BPE trainers: hand-computed merges on tiny corpora, the fast byte-level trainer against a
// naive one (minbpe's RegexTokenizer algorithm: recount every pair of every chunk per merge) on
// minbpe's own test text, round trips through the trained tokenizers, TinyStories, and the CLI.
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  learnMerges, spmBpeTokenizer, trainByteLevelBpe, trainSpmBpe, trainTokenizer,
} from "../src/tokenizer/train-bpe.js";
import { BYTE_CHARS } from "../src/tokenizer/byte-bpe.js";
import { SpmTokenizer, TokenType } from "../src/tokenizer/spm.js";
import type { Tokenizer } from "../src/tokenizer/tokenizer.js";
import { tokenizerFromHfJson } from "../src/tokenizer/hf-tokenizer-json.js";
import { tokenizerCommand } from "../src/cli/tokenizer.js";
import { UsageError } from "../src/cli/args.js";

const CORPORA = "../shared/data/corpora";

function corpus(t: { skip(msg: string): void }, name: string): string | null {
  const path = `${CORPORA}/${name}`;
  if (!existsSync(path)) {
    t.skip(`${path} absent`);
    return null;
  }
  return readFileSync(path, "utf8");
}

test("byte-level BPE: the classic aaabdaaabac example", () => {
  const m = trainByteLevelBpe("aaabdaaabac", 256 + 1 + 3);
  // (a,a)=4; then (aa,a)=2 ties (a,b)=2 and the smaller ids win: a < aa; then (aa,ab)=2.
  assert.deepEqual(m.merges, [["a", "a"], ["a", "b"], ["aa", "ab"]]);
  assert.deepEqual(m.vocab.slice(256), ["aa", "ab", "aaab", "<|endoftext|>"]);
  assert.deepEqual(m.specials, ["<|endoftext|>"]);
});

test("byte-level BPE: word counts, ties by (left id, right id), early stop when no pair is left", () => {
  // Words (GPT-2 pre-tokenizer): Ġhug×10 Ġpug×5 Ġpun×12 Ġbun×4 Ġhugs×5 (Hugging Face course's example).
  const text = " hug".repeat(10) + " pug".repeat(5) + " pun".repeat(12) + " bun".repeat(4) + " hugs".repeat(5);
  const m = trainByteLevelBpe(text, 1000);
  assert.deepEqual(m.merges, [
    ["u", "g"], // 20
    ["Ġ", "p"], // 17
    ["u", "n"], // 16
    ["h", "ug"], // 15, ties (Ġ,h): h (id 71) < Ġ (id 220)
    ["Ġ", "hug"], // 15
    ["Ġp", "un"], // 12
    ["Ġp", "ug"], // 5, ties (Ġhug,s): Ġp (257) < Ġhug (260)
    ["Ġhug", "s"], // 5
    ["b", "un"], // 4, ties (Ġ,b): b (65) < Ġ (220)
    ["Ġ", "bun"], // 4
  ]);
  assert.equal(m.vocab.length, 256 + 10 + 1);
});

test("merge loop: a merge spelling an existing symbol reuses its id, and that symbol's pairs gain counts", () => {
  // Symbols a, b and a ready-made "ab"; words abb ×3 and (ab)b ×1. (a,b)=3 ties (b,b)=3 and wins
  // on ids; it yields "ab" again (id 2), so (ab,b) rises from 1 to 4 and is merged next.
  const symbols = ["a", "b", "ab"];
  const words = [[0, 1, 1], [2, 1]];
  const merges = learnMerges(words, [3, 1], symbols, 1, { canMerge: () => true, before: (x, y) => x < y });
  assert.deepEqual(merges, [[0, 1, 2], [2, 1, 3]]);
  assert.deepEqual(symbols, ["a", "b", "ab", "abb"]);
  assert.deepEqual(words, [[3], [3]]);
});

test("byte-level BPE: special tokens split the text and are never merged", () => {
  const m = trainByteLevelBpe("xy<|endoftext|>xy<|endoftext|><|pad|>xy", 300, { specialTokens: ["<|endoftext|>", "<|pad|>"] });
  assert.deepEqual(m.merges, [["x", "y"]]);
  assert.deepEqual(m.vocab.slice(-2), ["<|endoftext|>", "<|pad|>"]);
  assert.throws(() => trainByteLevelBpe("abc", 256), /vocab size must be an integer >= 257/);
  assert.throws(() => trainByteLevelBpe("abc", 300, { pre: "nope" }), /unknown pre-tokenizer "nope"/);
});

test("byte-level BPE: the 256 byte symbols come in GPT-2's vocabulary order", () => {
  const vocab = trainByteLevelBpe("", 257).vocab;
  assert.equal(vocab[0], "!");
  assert.equal(vocab[93], "~");
  assert.equal(vocab[94], "¡");
  assert.equal(vocab[188], "Ā"); // byte 0
  assert.equal(vocab[220], "Ġ"); // byte 32, the space
  assert.deepEqual(new Set(vocab.slice(0, 256)), new Set(BYTE_CHARS));
});

/**
 * minbpe's RegexTokenizer.train, with the tie rule of the fast trainer: every merge recounts
 * the pairs of every chunk (not of distinct words) and merges the most frequent, the smallest
 * (left id, right id) on ties, ids as in trainByteLevelBpe (GPT-2's byte order). The chunks lie
 * in one array, -1 between them, and counts in a dense table, so the O(merges × text) loop
 * stays quick.
 */
/** GPT-2's pre-tokenizer, written out independently of byte-bpe.ts for this reference. */
const GPT2_PATTERN = /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+/gu;

function naiveByteLevelBpe(text: string, vocabSize: number): [string, string][] {
  const symbols = [...BYTE_CHARS].sort();
  const idOfByte = BYTE_CHARS.map((c) => symbols.indexOf(c));
  const ids = new Map(symbols.map((s, i) => [s, i]));
  const encoder = new TextEncoder();
  const flat: number[] = [];
  for (const part of text.split("<|endoftext|>"))
    for (const m of part.matchAll(GPT2_PATTERN)) {
      for (const b of encoder.encode(m[0])) flat.push(idOfByte[b]!);
      flat.push(-1);
    }
  let seq = Int32Array.from(flat);
  const counts = new Int32Array(vocabSize * vocabSize);
  const merges: [string, string][] = [];
  while (symbols.length + 1 < vocabSize) {
    counts.fill(0);
    for (let i = 0; i + 1 < seq.length; i++) if (seq[i]! >= 0 && seq[i + 1]! >= 0) counts[seq[i]! * vocabSize + seq[i + 1]!]!++;
    let best = -1;
    for (let k = 0; k < counts.length; k++) if (counts[k]! > 0 && (best < 0 || counts[k]! > counts[best]!)) best = k; // first = smallest key
    if (best < 0) break;
    const left = Math.floor(best / vocabSize), right = best % vocabSize;
    const merged = symbols[left]! + symbols[right]!;
    let id = ids.get(merged);
    if (id === undefined) {
      id = symbols.push(merged) - 1;
      ids.set(merged, id);
    }
    merges.push([symbols[left]!, symbols[right]!]);
    const out = new Int32Array(seq.length);
    let n = 0;
    for (let i = 0; i < seq.length; i++) {
      if (seq[i] === left && seq[i + 1] === right) {
        out[n++] = id;
        i++;
      } else out[n++] = seq[i]!;
    }
    seq = out.subarray(0, n);
  }
  return merges;
}

test("byte-level BPE on taylorswift.txt: the fast trainer learns the naive trainer's merges", (t) => {
  const text = corpus(t, "taylorswift.txt");
  if (text === null) return;
  const fast = trainByteLevelBpe(text, 512);
  const naive = naiveByteLevelBpe(text, 512);
  assert.equal(fast.merges.length, 512 - 256 - 1);
  assert.deepEqual(fast.merges, naive);
});

test("SentencePiece BPE: hand-computed pieces, scores and types in Llama's layout", () => {
  // Words ▁ab ×3 and ▁abc ×1; characters by count then code point: a b ▁ (4 each), c.
  // (a,b)=4 ties (▁,a)=4: same length, "ab" < "▁a". Then (▁,ab)=4, then (▁ab,c)=1.
  const m = trainSpmBpe("ab ab ab\nabc\n", 1000);
  assert.deepEqual(m.pieces.slice(0, 4), ["<unk>", "<s>", "</s>", "<0x00>"]);
  assert.equal(m.pieces[258], "<0xFF>");
  assert.deepEqual(m.pieces.slice(259), ["ab", "▁ab", "▁abc", "a", "b", "▁", "c"]);
  assert.deepEqual(m.scores.slice(259), [0, -1, -2, -3, -4, -5, -6]);
  assert.deepEqual(m.scores.slice(0, 259), new Array(259).fill(0));
  assert.deepEqual(m.types.slice(0, 4), [TokenType.UNKNOWN, TokenType.CONTROL, TokenType.CONTROL, TokenType.BYTE]);
  assert.deepEqual(m.types.slice(258), [TokenType.BYTE, ...new Array(7).fill(TokenType.NORMAL)]);
  // A smaller vocabulary stops the merges early; the characters always stay.
  assert.deepEqual(trainSpmBpe("ab ab ab\nabc\n", 259 + 4 + 1).pieces.slice(259), ["ab", "a", "b", "▁", "c"]);
  assert.throws(() => trainSpmBpe("ab ab ab\nabc\n", 262), /vocab size must be an integer >= 263/);
});

test("SentencePiece BPE: pieces keep to one script, ▁ leads, and rare characters are left to bytes", () => {
  // Words ▁x. ×3: "x." mixes Latin with Common punctuation, so only ▁x and then nothing.
  // (The characters, equally frequent, follow in code point order.)
  assert.deepEqual(trainSpmBpe("x. x. x.", 1000).pieces.slice(259), ["▁x", ".", "x", "▁"]);
  // Without the script rule, (x,.) wins the tie with (▁,x) ("x." < "▁x"), then ▁ joins it.
  assert.deepEqual(trainSpmBpe("x. x. x.", 1000, { splitByScript: false }).pieces.slice(259), ["x.", "▁x.", ".", "x", "▁"]);
  // Digits alone with splitDigits (Llama's setting).
  assert.deepEqual(trainSpmBpe("12 12", 1000, { splitDigits: true }).pieces.slice(259), ["1", "2", "▁"]);
  // "é" is 1 of 31 characters: the others cover 96.8% ≥ 96%, so it is no piece and no merge crosses it.
  const text = "ab ab ab ab ab ab ab ab ab aéb";
  const m = trainSpmBpe(text, 1000, { characterCoverage: 0.96 });
  assert.ok(!m.pieces.includes("é") && !m.pieces.some((p) => p.includes("é")));
  const tok = spmBpeTokenizer(m);
  const ids = tok.encode(text);
  assert.deepEqual(ids.slice(-4), [m.pieces.indexOf("▁a"), 3 + 0xc3, 3 + 0xa9, m.pieces.indexOf("b")]);
  assert.equal(tok.decode(ids), text);
  // Separators and SentencePiece's meta pieces in the text are not learned: "<s>" becomes a
  // space, so the words are ▁hi ×3 and ▁ ×2.
  assert.deepEqual(trainSpmBpe("hi<|endoftext|>hi <s> hi", 1000).pieces.slice(259), ["hi", "▁hi", "▁", "h", "i"]);
});

function roundTrip(tok: Tokenizer, text: string): number {
  const ids = tok.encode(text);
  assert.equal(tok.decode(ids), text);
  return ids.length;
}

test("trained tokenizers round-trip taylorswift.txt and compress it", (t) => {
  const text = corpus(t, "taylorswift.txt");
  if (text === null) return;
  const bytes = new TextEncoder().encode(text).length;
  const bl = trainTokenizer(text, { type: "bytelevel-bpe", vocabSize: 1024 });
  assert.equal(bl.vocabSize, 1024);
  assert.equal(bl.encode("<|endoftext|>", { parseSpecial: true }).length, 1);
  const blTokens = roundTrip(bl, text);
  const spm = trainTokenizer(text, { type: "spm-bpe", vocabSize: 1024 });
  assert.ok(spm instanceof SpmTokenizer);
  assert.equal(spm.vocabSize, 1024);
  const spmTokens = roundTrip(spm, text);
  t.diagnostic(`${bytes} bytes → byte-level ${blTokens} tokens (${(bytes / blTokens).toFixed(2)} bytes/token), spm ${spmTokens} (${(bytes / spmTokens).toFixed(2)})`);
  assert.ok(blTokens < bytes / 2 && spmTokens < bytes / 2);
  // A text the vocabulary has never seen, with characters outside it (bytes for spm).
  for (const tok of [bl, spm]) roundTrip(tok, "Ünïcödé — 日本語, emoji 🎉 and\ttabs\n\n  spaces ");
});

test("TinyStories: both trainers to 4096 tokens (time reported); compression on held-out stories", (t) => {
  const text = corpus(t, "tinystories-2MiB.txt");
  if (text === null) return;
  const stories = text.split("<|endoftext|>").map((s) => s.trim()).filter((s) => s !== "");
  const cut = Math.floor(stories.length * 0.9);
  const train = stories.slice(0, cut).join("\n<|endoftext|>\n");
  const heldOut = stories.slice(cut);
  const heldOutBytes = heldOut.reduce((n, s) => n + new TextEncoder().encode(s).length, 0);
  for (const type of ["bytelevel-bpe", "spm-bpe"] as const) {
    const t0 = performance.now();
    const tok = trainTokenizer(train, { type, vocabSize: 4096 });
    const seconds = (performance.now() - t0) / 1000;
    let tokens = 0;
    for (const s of heldOut) tokens += roundTrip(tok, s);
    t.diagnostic(`${type}: trained in ${seconds.toFixed(2)} s; held-out ${heldOut.length} stories, ${(heldOutBytes / tokens).toFixed(2)} bytes/token`);
    assert.equal(tok.vocabSize, 4096);
    assert.ok(heldOutBytes / tokens > 3.5, `${type}: ${(heldOutBytes / tokens).toFixed(2)} bytes/token`);
  }
});

test("bonsai tokenizer train writes a tokenizer.json that loads back and encodes as the trained tokenizer", async () => {
  const dir = mkdtempSync(join(tmpdir(), "bonsai-tok-"));
  try {
    const text = Array.from({ length: 300 }, (_, i) => `Story ${i}: the cat sat on the mat, and the dog's ball rolled ${i % 7} times.\n`).join("<|endoftext|>");
    const data = join(dir, "corpus.txt");
    writeFileSync(data, text);
    const sample = "The dog sat on 42 mats, naïvely.\nthe end";
    for (const type of ["bytelevel-bpe", "spm-bpe"] as const) {
      const out = join(dir, `${type}.json`);
      await tokenizerCommand(["train", "--data", data, "--vocab-size", "400", "--type", type, "--out", out]);
      const loaded = tokenizerFromHfJson(JSON.parse(readFileSync(out, "utf8")));
      const trained = trainTokenizer(text, { type, vocabSize: 400 });
      assert.equal(loaded.vocabSize, trained.vocabSize);
      assert.deepEqual(loaded.encode(sample), trained.encode(sample));
      assert.equal(loaded.decode(loaded.encode(sample)), sample);
    }
    const run = (...args: string[]) => tokenizerCommand(["train", "--data", data, "--out", join(dir, "x.json"), ...args]);
    await assert.rejects(run("--vocab-size", "100"), (e: Error) => e instanceof UsageError && /257/.test(e.message));
    await assert.rejects(run("--vocab-size", "400", "--type", "wordpiece"), UsageError);
    await assert.rejects(run("--type", "spm-bpe"), /--vocab-size is required/);
    await assert.rejects(run("--vocab-size", "400", "--type", "spm-bpe", "--pre", "gpt-2"), UsageError);
    await assert.rejects(tokenizerCommand(["untrain"]), /unknown tokenizer command "untrain"/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
