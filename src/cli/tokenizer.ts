// `bonsai tokenizer train`: trains a BPE tokenizer on a text file and writes it as a Hugging Face
// tokenizer.json (which `tokenizers`, transformers and Bonsai's --tokenizer all read).
import { writeFileSync } from "node:fs";
import { type FlagSpec, Flags, UsageError } from "./args.js";
import { readTextFile } from "../io/model-files-node.js";
import { trainTokenizer } from "../tokenizer/train-bpe.js";
import { PRE_TOKENIZER_NAMES } from "../tokenizer/byte-bpe.js";
import { tokenizerToHfJson } from "../tokenizer/hf-tokenizer-json.js";

export const tokenizerFlags: FlagSpec = {
  data: { type: "string", help: "training text file" },
  "vocab-size": { type: "string", help: "tokens in the vocabulary, special and byte tokens included" },
  type: { type: "string", help: "bytelevel-bpe (GPT-2, default) or spm-bpe (SentencePiece BPE with byte fallback, Llama's layout)" },
  out: { type: "string", help: "output tokenizer.json" },
  pre: { type: "string", help: `bytelevel-bpe pre-tokenizer: ${PRE_TOKENIZER_NAMES.join(", ")} (default gpt-2)` },
  special: { type: "string", help: `bytelevel-bpe special tokens, comma-separated (default "<|endoftext|>")` },
  "character-coverage": { type: "string", help: "spm-bpe: share of the text's characters kept as pieces; rarer ones use bytes (0.9995)" },
};

const TYPES = ["bytelevel-bpe", "spm-bpe"] as const;

export async function tokenizerCommand(argv: string[]): Promise<void> {
  const f = Flags.parse(argv, tokenizerFlags);
  const [verb, ...extra] = f.positionals;
  if (verb !== "train") throw new UsageError(verb === undefined ? "usage: bonsai tokenizer train --data FILE --vocab-size N --out FILE.json" : `unknown tokenizer command "${verb}" (commands: train)`);
  if (extra.length > 0) throw new UsageError(`unexpected argument "${extra[0]}"`);
  const type = f.str("type") ?? "bytelevel-bpe";
  if (!(TYPES as readonly string[]).includes(type)) throw new UsageError(`--type must be ${TYPES.join(" or ")} (got "${type}")`);
  const pre = f.str("pre") ?? "gpt-2";
  if (!PRE_TOKENIZER_NAMES.includes(pre)) throw new UsageError(`--pre must be one of ${PRE_TOKENIZER_NAMES.join(", ")} (got "${pre}")`);
  if (type !== "bytelevel-bpe" && (f.has("pre") || f.has("special"))) throw new UsageError("--pre and --special apply to --type bytelevel-bpe");
  if (type !== "spm-bpe" && f.has("character-coverage")) throw new UsageError("--character-coverage applies to --type spm-bpe");
  f.required("vocab-size");
  const vocabSize = f.int("vocab-size", 0, 1);
  const data = f.required("data");
  const out = f.required("out");
  const specialTokens = f.has("special") ? f.str("special")!.split(",").filter((s) => s !== "") : undefined;
  const characterCoverage = f.num("character-coverage", 0.9995, { min: 0, max: 1, exclusiveMin: true });

  const text = readTextFile(data);
  const t0 = performance.now();
  let tokenizer;
  try {
    tokenizer = type === "bytelevel-bpe"
      ? trainTokenizer(text, { type, vocabSize, pre, specialTokens })
      : trainTokenizer(text, { type: "spm-bpe", vocabSize, characterCoverage });
  } catch (e) {
    // Vocabulary sizes too small for the bytes, specials or characters are usage errors.
    if (e instanceof Error && e.message.startsWith("vocab size")) throw new UsageError(`--vocab-size: ${e.message}`);
    throw e;
  }
  const seconds = (performance.now() - t0) / 1000;
  writeFileSync(out, JSON.stringify(tokenizerToHfJson(tokenizer), null, 2) + "\n");
  const short = tokenizer.vocabSize < vocabSize ? ` (the text allows no more than ${tokenizer.vocabSize})` : "";
  process.stderr.write(`bonsai tokenizer train: ${type}, vocab size ${tokenizer.vocabSize}${short}, trained in ${seconds.toFixed(2)} s on ${text.length.toLocaleString("en-US")} characters → ${out}\n`);
}
