// The speculative-decoding flags of `generate` and `serve`: the drafter (a model over the same
// vocabulary, or prompt lookup) and how many tokens it drafts.
import { type FlagSpec, Flags, UsageError, backendFromFlags } from "./args.js";
import type { Backend } from "../backend/backend.js";
import type { WasmNumericsOptions } from "../backend/wasm/wasm-backend.js";
import { loadModel } from "../io/model-files-node.js";
import type { Llama } from "../nn/llama.js";
import { type AdaptiveRule, DEFAULT_ADAPTIVE_RULE, type SpeculativeConfig, checkDraftVocabulary, emptySpeculativeStats } from "../runtime/speculative.js";
import type { Tokenizer } from "../tokenizer/tokenizer.js";

export const draftFlags: FlagSpec = {
  draft: { type: "string", help: "speculative decoding: a draft model (same vocabulary), or 'ngram' for prompt lookup" },
  "draft-backend": { type: "string", help: "the draft model's backend (default: --backend's), e.g. wasm beside a webgpu target" },
  "draft-tokens": { type: "string", help: "tokens drafted per target pass, or 'auto' to adapt it (auto)" },
  "draft-adapt": { type: "string", help: "auto's rule: confidence (stop under --draft-p-min) or heuristic (+2/-1) (confidence)" },
  "draft-p-min": { type: "string", help: "confidence rule: stop drafting when the draft's top probability is below this (0.75)" },
  "ngram-max": { type: "string", help: "--draft ngram: longest context suffix looked up (4)" },
  "ngram-min": { type: "string", help: "--draft ngram: shortest context suffix looked up (1)" },
};

/** The speculative flags, checked (without the drafter, loaded later); null without --draft. */
export function speculativeFlags(f: Flags): Omit<SpeculativeConfig, "draft"> | null {
  const others = ["draft-tokens", "draft-adapt", "draft-p-min", "ngram-max", "ngram-min", "draft-backend"].filter((n) => f.has(n));
  if (!f.has("draft")) {
    if (others.length > 0) throw new UsageError(`--${others[0]} needs --draft`);
    return null;
  }
  const ngram = f.str("draft") === "ngram";
  for (const n of ngram ? ["draft-adapt", "draft-p-min"] : ["ngram-max", "ngram-min"])
    if (f.has(n)) throw new UsageError(`--${n} does not apply to --draft ${ngram ? "ngram" : "MODEL"}`);
  if (ngram && f.has("draft-backend")) throw new UsageError("--draft-backend does not apply to --draft ngram");
  const k = f.str("draft-tokens") ?? "auto";
  const adapt = f.str("draft-adapt") ?? DEFAULT_ADAPTIVE_RULE;
  if (adapt !== "confidence" && adapt !== "heuristic") throw new UsageError(`--draft-adapt must be confidence or heuristic (got "${adapt}")`);
  if (k !== "auto" && f.has("draft-adapt")) throw new UsageError("--draft-adapt applies to --draft-tokens auto");
  const nMin = f.int("ngram-min", 1, 1);
  const nMax = f.int("ngram-max", Math.max(4, nMin), nMin);
  return {
    draftTokens: k === "auto" ? "auto" : draftTokens(k),
    adaptive: adapt as AdaptiveRule,
    pMin: f.num("draft-p-min", 0.75, { min: 0, max: 1 }),
    nMin,
    nMax,
    stats: emptySpeculativeStats(),
  };
}

function draftTokens(raw: string): number {
  const k = Number(raw);
  if (raw.trim() === "" || !Number.isInteger(k) || k < 1) throw new UsageError(`--draft-tokens must be an integer >= 1 or auto (got "${raw}")`);
  return k;
}

/**
 * The drafter --draft names: "ngram", or the draft model loaded on --draft-backend (default:
 * backends[0], the target's), reusing one of `backends` of that name; its vocabulary is checked
 * against the target's.
 */
export async function draftFromFlags(f: Flags, target: Llama, tokenizer: Tokenizer, backends: (Backend | null)[], numerics: Omit<WasmNumericsOptions, "kernels">): Promise<Llama | "ngram"> {
  const draftPath = f.required("draft");
  if (draftPath === "ngram") return "ngram";
  // The draft may run on another device than the target (the CPU beside a GPU): the two only
  // exchange token ids and host logits.
  const draftName = f.str("draft-backend");
  const draftBackend = backends.find((b) => b?.name === (draftName ?? backends[0]?.name)) ?? (await backendFromFlags(f, numerics, draftName));
  const draft = loadModel(draftPath, draftBackend, undefined, { quantized: !f.bool("dequantize"), fuse: !f.bool("no-fuse") });
  try {
    checkDraftVocabulary(target, draft.model, tokenizer, draft.tokenizer);
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  return draft.model;
}
