// Hugging Face tokenizer.json (the `tokenizers` library's serialization) ↔ Bonsai tokenizers.
// Two shapes of model.type "BPE" are understood:
// - byte-level (GPT-2, Llama 3, Qwen2): pre_tokenizer ByteLevel (its own GPT-2 regex), or a
//   Sequence of Split regexes (behavior Isolated) then ByteLevel without regex; decoder ByteLevel.
//   The regexes must be those of one of llama.cpp's pre-tokenizers → ByteBpeTokenizer;
// - SentencePiece-style (Llama 2, Mistral): byte_fallback, spaces as "▁" (normalizer Prepend +
//   Replace, or pre_tokenizer Metaspace) → SpmTokenizer. tokenizer.json has merges but no scores;
//   SentencePiece's scores are only an order of merges, so a token made by merges gets minus the
//   rank of its first merge as its score. Saving writes every split of a piece into two pieces,
//   ordered by the piece's score, as transformers' SentencePieceExtractor does.
// added_tokens become control tokens (special: true) or user-defined ones (special: false).

import { ByteBpeTokenizer, preTokenizerName, preTokenizerRegexes, preTokenizerIgnoresMerges, splitMerge } from "./byte-bpe.js";
import { SpmTokenizer, TokenType } from "./spm.js";
import type { Tokenizer } from "./tokenizer.js";

function fail(msg: string): never {
  throw new Error(`tokenizer.json: ${msg}`);
}

type Json = Record<string, unknown>;

const isObject = (v: unknown): v is Json => typeof v === "object" && v !== null && !Array.isArray(v);

/** Any value from the file, short and on one line, for a message (never throws: no JSON.stringify of deep junk). */
function describe(v: unknown): string {
  if (typeof v === "string") {
    const s = JSON.stringify(v.length > 80 ? `${v.slice(0, 80)}…` : v);
    return s.replace(/\u2028/g, "\\u2028").replace(/\u2029/g, "\\u2029");
  }
  if (Array.isArray(v)) return `an array of ${v.length}`;
  if (isObject(v)) return typeof v.type === "string" ? `a ${describe(v.type)} object` : "an object";
  return String(v);
}

// Components nest as Sequences; deeper nesting than this is junk (and would overflow the stack).
const MAX_NESTING = 64;
// Ids may leave a few holes (filled with placeholders), but an id such as 2^31 must not make a
// two-billion-entry vocabulary.
const MAX_HOLES = 1024;

/** Whether `obj` looks like an HF tokenizer.json (rather than Bonsai's own tokenizer JSON). */
export function isHfTokenizerJson(obj: unknown): boolean {
  return isObject(obj) && isObject(obj.model) && !("type" in obj && typeof obj.type === "string");
}

/** The components of a Sequence (normalizers, pre_tokenizers, decoders), or the one component. */
function flatten(v: unknown, list: string, depth = 0): Json[] {
  if (!isObject(v)) return [];
  if (depth > MAX_NESTING) fail(`${list} nest deeper than ${MAX_NESTING} Sequences`);
  if (v.type === "Sequence" && Array.isArray(v[list])) return (v[list] as unknown[]).flatMap((x) => flatten(x, list, depth + 1));
  return [v];
}

// Token names llama.cpp's converter would take for BOS and EOS when tokenizer_config.json is not at hand.
const BOS_NAMES = ["<s>", "<|begin_of_text|>", "<bos>", "<|endoftext|>"];
const EOS_NAMES = ["</s>", "<|end_of_text|>", "<eos>", "<|endoftext|>", "<|im_end|>"];

/** Load a tokenizer.json object (already JSON.parse'd). */
export function tokenizerFromHfJson(obj: unknown): Tokenizer {
  if (!isObject(obj) || !isObject(obj.model)) fail("not a tokenizer.json (no model)");
  const model = obj.model;
  if (model.type !== undefined && model.type !== "BPE") fail(`model type ${describe(model.type)} is not supported (Bonsai reads BPE)`);
  if (!isObject(model.vocab)) fail("model.vocab is missing");
  if (!Array.isArray(model.merges)) fail("model.merges is missing");
  const merges = (model.merges as unknown[]).map((m, i) => {
    if (typeof m === "string" && m.indexOf(" ", 1) > 0) return splitMerge(m);
    if (Array.isArray(m) && m.length === 2 && m.every((x) => typeof x === "string")) return splitMerge(m as [string, string]);
    fail(`merge ${i} (${describe(m)}) is neither "a b" nor [a, b]`);
  });

  // Tokens by id: the vocabulary, then added tokens (which may repeat vocabulary entries).
  const tokens: string[] = [];
  const types: number[] = [];
  const entries = Object.entries(model.vocab);
  const added = Array.isArray(obj.added_tokens) ? (obj.added_tokens as unknown[]) : [];
  const idLimit = entries.length + added.length + MAX_HOLES;
  const checkId = (what: string, id: unknown): number => {
    if (typeof id !== "number" || !Number.isInteger(id) || id < 0 || id >= idLimit)
      fail(`${what} has id ${describe(id)} (ids must be integers from 0, leaving at most ${MAX_HOLES} unused)`);
    return id;
  };
  for (const [text, id] of entries) {
    const i = checkId(`vocab entry ${describe(text)}`, id);
    tokens[i] = text;
    types[i] = TokenType.NORMAL;
  }
  for (const a of added) {
    if (!isObject(a) || typeof a.content !== "string") fail("an added_tokens entry lacks id or content");
    const id = checkId(`added token ${describe(a.content)}`, a.id);
    tokens[id] = a.content;
    types[id] = a.special === true ? TokenType.CONTROL : TokenType.USER_DEFINED;
  }
  for (let i = 0; i < tokens.length; i++) {
    if (tokens[i] === undefined) {
      // A hole in the ids: a placeholder, as llama.cpp's converter writes.
      tokens[i] = `[PAD${i}]`;
      types[i] = TokenType.UNUSED;
    }
  }
  const idOf = new Map<string, number>();
  tokens.forEach((t, i) => idOf.has(t) || idOf.set(t, i));
  const unkId = typeof model.unk_token === "string" ? (idOf.get(model.unk_token) ?? null) : null;
  if (unkId !== null) types[unkId] = TokenType.UNKNOWN;
  const special = (names: string[]) => {
    for (const n of names) {
      const id = idOf.get(n);
      if (id !== undefined && types[id] === TokenType.CONTROL) return id;
    }
    return null;
  };
  const bosId = special(BOS_NAMES), eosId = special(EOS_NAMES);
  // A TemplateProcessing post-processor that starts with BOS is HF's add_bos.
  const post = obj.post_processor;
  const single = isObject(post) && post.type === "TemplateProcessing" && Array.isArray(post.single) ? (post.single as unknown[]) : [];
  const first = isObject(single[0]) && isObject(single[0].SpecialToken) ? single[0].SpecialToken.id : undefined;
  const addBos = bosId !== null && first === tokens[bosId];

  const pres = flatten(obj.pre_tokenizer, "pretokenizers");
  const normalizers = flatten(obj.normalizer, "normalizers");
  const byteLevel = pres.find((p) => p.type === "ByteLevel");
  if (byteLevel) {
    let pre: string | undefined;
    if (byteLevel.add_prefix_space === true) fail("ByteLevel with add_prefix_space is not supported");
    if (byteLevel.use_regex !== false) {
      if (pres.length !== 1) fail("a ByteLevel pre-tokenizer with its regex must be the only pre-tokenizer");
      pre = "gpt-2";
    } else {
      const splits = pres.filter((p) => p !== byteLevel);
      const regexes = splits.map((p) => {
        const pattern = isObject(p.pattern) ? p.pattern.Regex : undefined;
        if (p.type !== "Split" || typeof pattern !== "string" || p.behavior !== "Isolated" || p.invert === true)
          fail(`pre-tokenizer ${describe(p)} is not a Split regex (Isolated)`);
        return pattern;
      });
      pre = preTokenizerName(regexes, model.ignore_merges === true);
      if (pre === undefined) fail(`the pre-tokenizer regexes ${regexes.map(describe).join(", ").slice(0, 300)} are not one of llama.cpp's`);
    }
    if (normalizers.length > 0) fail("normalizers before a byte-level BPE are not supported");
    return new ByteBpeTokenizer({ tokens, types, merges, pre, bosId, eosId, unkId, addBos, addEos: false });
  }

  // SentencePiece-style: "▁" for spaces, byte fallback.
  const metaspace = pres.find((p) => p.type === "Metaspace");
  const replaces = normalizers.some((n) => n.type === "Replace" && isObject(n.pattern) && n.pattern.String === " " && n.content === "▁");
  if (!metaspace && !replaces) fail("neither byte-level nor SentencePiece-style (no ByteLevel, Metaspace or Replace ' ' → '▁')");
  const prepends = normalizers.some((n) => n.type === "Prepend" && n.prepend === "▁") || (metaspace !== undefined && metaspace.prepend_scheme !== "never" && metaspace.add_prefix_space !== false);
  tokens.forEach((t, i) => {
    if (types[i] === TokenType.NORMAL && /^<0x[0-9A-F]{2}>$/.test(t)) types[i] = TokenType.BYTE;
  });
  // Pieces no merge makes rank below all others: HF would never make them by merging.
  const scores = new Array<number>(tokens.length).fill(-merges.length);
  const scored = new Set<number>();
  merges.forEach(([l, r], rank) => {
    const id = idOf.get(l + r);
    if (id !== undefined && !scored.has(id)) {
      scored.add(id);
      scores[id] = -rank;
    }
  });
  return new SpmTokenizer({ tokens, scores, types, bosId, eosId, unkId, addBos, addEos: false, addSpacePrefix: prepends });
}

/** The added_tokens entries of a tokenizer's special and user-defined tokens. */
function addedTokens(tokens: readonly string[], types: ArrayLike<number>): Json[] {
  const out: Json[] = [];
  tokens.forEach((content, id) => {
    const t = types[id];
    if (t === TokenType.CONTROL || t === TokenType.UNKNOWN || t === TokenType.USER_DEFINED)
      out.push({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: t === TokenType.USER_DEFINED, special: t !== TokenType.USER_DEFINED });
  });
  return out;
}

function vocabObject(tokens: readonly string[]): Json {
  // No prototype: tokens such as "constructor" or "__proto__" must be plain keys.
  const vocab: Json = Object.create(null) as Json;
  tokens.forEach((t, id) => {
    if (!Object.hasOwn(vocab, t)) vocab[t] = id;
  });
  return vocab;
}

/** Merges as "a b" strings (readable by every tokenizers version), or pairs when a piece has a space. */
function mergeList(merges: readonly (readonly [string, string])[]): (string | [string, string])[] {
  const pairs = merges.some(([l, r]) => l.includes(" ") || r.includes(" "));
  return merges.map(([l, r]) => (pairs ? [l, r] : `${l} ${r}`));
}

function template(t: { addBos: boolean; bosId: number | null; tokens: readonly string[] }): Json | null {
  if (!t.addBos || t.bosId === null) return null;
  const bos = t.tokens[t.bosId]!;
  return {
    type: "TemplateProcessing",
    single: [{ SpecialToken: { id: bos, type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }],
    pair: [{ SpecialToken: { id: bos, type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }, { SpecialToken: { id: bos, type_id: 1 } }, { Sequence: { id: "B", type_id: 1 } }],
    special_tokens: { [bos]: { id: bos, ids: [t.bosId], tokens: [bos] } },
  };
}

/** A tokenizer.json object that HF `tokenizers` loads and that tokenizerFromHfJson reads back. */
export function tokenizerToHfJson(t: Tokenizer): Json {
  const base = { version: "1.0", truncation: null, padding: null };
  if (t instanceof ByteBpeTokenizer) {
    const regexes = preTokenizerRegexes(t.pre)!;
    const pre_tokenizer =
      t.pre === "gpt-2"
        ? { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: true }
        : {
            type: "Sequence",
            pretokenizers: [
              ...regexes.map((r) => ({ type: "Split", pattern: { Regex: r }, behavior: "Isolated", invert: false })),
              { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: false },
            ],
          };
    const post = template(t);
    return {
      ...base,
      added_tokens: addedTokens(t.tokens, t.types),
      normalizer: null,
      pre_tokenizer,
      post_processor: post ?? { type: "ByteLevel", add_prefix_space: false, trim_offsets: false, use_regex: false },
      decoder: { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: true },
      model: {
        type: "BPE",
        dropout: null,
        unk_token: t.unkId !== null ? t.tokens[t.unkId] : null,
        continuing_subword_prefix: null,
        end_of_word_suffix: null,
        fuse_unk: false,
        byte_fallback: false,
        ignore_merges: preTokenizerIgnoresMerges(t.pre),
        vocab: vocabObject(t.tokens),
        merges: mergeList(t.merges),
      },
    };
  }
  if (t instanceof SpmTokenizer) {
    const post = template(t);
    return {
      ...base,
      added_tokens: addedTokens(t.tokens, t.types),
      normalizer: {
        type: "Sequence",
        normalizers: [...(t.addSpacePrefix ? [{ type: "Prepend", prepend: "▁" }] : []), { type: "Replace", pattern: { String: " " }, content: "▁" }],
      },
      pre_tokenizer: null,
      post_processor: post,
      decoder: {
        type: "Sequence",
        decoders: [
          { type: "Replace", pattern: { String: "▁" }, content: " " },
          { type: "ByteFallback" },
          { type: "Fuse" },
          ...(t.addSpacePrefix ? [{ type: "Strip", content: " ", start: 1, stop: 0 }] : []),
        ],
      },
      model: {
        type: "BPE",
        dropout: null,
        unk_token: t.unkId !== null ? t.tokens[t.unkId] : null,
        continuing_subword_prefix: null,
        end_of_word_suffix: null,
        fuse_unk: true,
        byte_fallback: true,
        ignore_merges: false,
        vocab: vocabObject(t.tokens),
        merges: mergeList(spmMerges(t)),
      },
    };
  }
  fail(`a "${t.kind}" tokenizer has no tokenizer.json form (Bonsai writes spm and byte-bpe tokenizers; convert llama2c with spmFromLlama2c)`);
}

/**
 * Every way to write a normal piece as two normal pieces, ordered by the piece's score (highest
 * first, stable in id order), then by the ids of the halves: transformers' SentencePieceExtractor.
 */
function spmMerges(t: SpmTokenizer): [string, string][] {
  const idOf = new Map<string, number>();
  t.tokens.forEach((s, i) => t.types[i] === TokenType.NORMAL && idOf.set(s, i));
  const found: { l: string; r: string; score: number; id: number; li: number; ri: number }[] = [];
  t.tokens.forEach((s, id) => {
    if (t.types[id] !== TokenType.NORMAL) return;
    const chars = [...s];
    for (let k = 1; k < chars.length; k++) {
      const l = chars.slice(0, k).join(""), r = chars.slice(k).join("");
      const li = idOf.get(l), ri = idOf.get(r);
      if (li !== undefined && ri !== undefined) found.push({ l, r, score: t.scores[id]!, id, li, ri });
    }
  });
  found.sort((a, b) => b.score - a.score || a.id - b.id || a.li - b.li || a.ri - b.ri);
  return found.map((m) => [m.l, m.r]);
}
