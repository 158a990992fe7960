// `bonsai generate`: sample text from a model. Generated text only goes to stdout, streamed
// as it is produced; statistics go to stderr.
import { type FlagSpec, Flags, UsageError, backendFlags, describeModelPlace, expertCacheBytesFromFlags, expertCacheFlags, modelPlaceFromFlags, placementFlags } from "./args.js";
import { loadModel, readTextFile } from "../io/model-files-node.js";
import { type ChatMessage, DEFAULT_CHAT_TEMPLATE, chatPromptIds, chatStops, renderChat, specialTokenTexts } from "../runtime/chat.js";
import { type GenerationStats, emptyStats } from "../runtime/generate.js";
import type { SampleOptions } from "../runtime/sample.js";
import { type SpeculativeConfig, emptySpeculativeStats, summarizeSpeculative } from "../runtime/speculative.js";
import { draftFlags, draftFromFlags, speculativeFlags } from "./draft-flags.js";
import { promptIds, stream } from "../runtime/stream.js";
import type { Tokenizer } from "../tokenizer/tokenizer.js";
import type { Llama } from "../nn/llama.js";
import { isMoe, numExperts } from "../nn/config.js";
import { ExpertUsage } from "../nn/moe.js";

export const generateFlags: FlagSpec = {
  model: { type: "string", help: "model directory or llama2.c .bin" },
  tokenizer: { type: "string", help: "tokenizer file (tokenizer.bin, .json) overriding the model's" },
  prompt: { type: "string", help: "text to continue (default: start of a document); with --chat, the user's message" },
  chat: { type: "boolean", help: "chat: render --prompt as a user message with the model's chat template (default: ChatML) and stop at the end of the reply" },
  system: { type: "string", help: "--chat: a system message before the user's" },
  "chat-template": { type: "string", help: "--chat: a Jinja chat template file overriding the model's" },
  temperature: { type: "string", help: "sampling temperature; 0 = greedy (0.8)" },
  "top-k": { type: "string", help: "sample among the k most likely tokens; 0 = all (0)" },
  "top-p": { type: "string", help: "sample among the most likely tokens holding this probability mass; 1 = all (1)" },
  "min-p": { type: "string", help: "drop tokens less likely than min-p × the most likely one; 0 = off (0)" },
  "repeat-penalty": { type: "string", help: "divide positive / multiply negative logits of recent tokens; 1 = off (1)" },
  "repeat-last-n": { type: "string", help: "recent tokens the penalties look at; -1 = all (64)" },
  "frequency-penalty": { type: "string", help: "subtract count × this from a recent token's logit (0)" },
  "presence-penalty": { type: "string", help: "subtract this from the logit of any recent token (0)" },
  stop: { type: "string", multiple: true, help: "stop when the text contains STR (not printed); repeatable" },
  "max-tokens": { type: "string", help: "tokens to generate (256)" },
  seed: { type: "string", help: "sampling seed (1337)" },
  stats: { type: "boolean", help: "print one JSON line of speeds to stderr" },
  dequantize: { type: "boolean", help: "run a GGUF's Q8_0/Q4_0/F16 weights as f32 (default: kept as stored, quantized kernels)" },
  "f32-activations": { type: "boolean", help: "quantized weights: keep activations in f32 (float sums, as --dequantize's) instead of rounding them to Q8_0 for integer dot products as llama.cpp does (the default; faster)" },
  "no-fuse": { type: "boolean", help: "run the graph as trained: no stacked Q/K/V and gate/up, no folded norm gains" },
  ...draftFlags,
  ...backendFlags,
  ...placementFlags,
  ...expertCacheFlags,
};

export interface SampleRequest extends SampleOptions {
  prompt: string;
  /** The prompt as ids when the caller tokenized it (a rendered chat: special tokens parsed); else `prompt` is encoded by promptIds. */
  promptIds?: number[];
  maxTokens: number;
  seed: number;
  stop?: string[];
  /** Token ids that end generation (default: the tokenizer's EOS and BOS). */
  stopIds?: number[];
  stats?: GenerationStats;
  speculative?: SpeculativeConfig;
}

/** Stream a completion to `write`; returns the number of generated tokens. */
export async function streamCompletion(model: Llama, tokenizer: Tokenizer, r: SampleRequest, write: (s: string) => void): Promise<number> {
  let n = 0;
  for await (const piece of stream(model, tokenizer, r.promptIds ?? promptIds(tokenizer, r.prompt), r)) {
    if (piece.token !== null) n++;
    if (piece.text !== "") write(piece.text);
  }
  return n;
}

/** --chat's flags, checked, and the template file read (before the model loads); null without --chat. */
function chatFlags(f: Flags): { messages: ChatMessage[]; template: { text: string; from: string } | null } | null {
  if (!f.bool("chat")) {
    for (const n of ["system", "chat-template"]) if (f.has(n)) throw new UsageError(`--${n} needs --chat`);
    return null;
  }
  const prompt = f.str("prompt");
  if (prompt === undefined) throw new UsageError("--chat needs --prompt: the user's message");
  const system = f.str("system");
  const messages: ChatMessage[] = [...(system !== undefined ? [{ role: "system", content: system }] : []), { role: "user", content: prompt }];
  const file = f.str("chat-template");
  return { messages, template: file === undefined ? null : { text: readTextFile(file), from: file } };
}

/**
 * A chat turn's request: the messages rendered with the template (--chat-template's, the model's,
 * else the default) and tokenized with their special tokens; stops at the reply's end as well.
 */
function applyChat(r: SampleRequest, chat: NonNullable<ReturnType<typeof chatFlags>>, tokenizer: Tokenizer, modelPath: string, modelTemplate: string | null): void {
  const template = chat.template ?? (modelTemplate !== null ? { text: modelTemplate, from: modelPath } : { text: DEFAULT_CHAT_TEMPLATE, from: "the default chat template" });
  let rendered: string;
  try {
    rendered = renderChat(template.text, chat.messages, specialTokenTexts(tokenizer));
  } catch (e) {
    throw new Error(`${template.from}: ${(e as Error).message}`);
  }
  const stops = chatStops(tokenizer, template.text);
  r.prompt = rendered;
  r.promptIds = chatPromptIds(tokenizer, rendered);
  r.stop = [...(r.stop ?? []), ...stops.stop];
  r.stopIds = stops.stopIds;
}

function speculativeStatsJson(c: SpeculativeConfig): Record<string, number | null> {
  const s = c.stats ?? emptySpeculativeStats();
  const d = summarizeSpeculative(s);
  const round = (x: number | null, digits: number): number | null => (x === null ? null : Number(x.toFixed(digits)));
  return {
    acceptance_rate: round(d.acceptanceRate, 4),
    mean_accepted_per_pass: round(d.acceptedPerPass, 3),
    tokens_per_target_pass: round(d.tokensPerPass, 3),
    target_passes: s.targetPasses,
    draft_passes: s.draftPasses,
    drafted: s.drafted,
    accepted: s.accepted,
    target_seconds: round(s.targetSeconds, 4),
    draft_seconds: round(s.draftSeconds, 4),
  };
}

export async function generateCommand(argv: string[]): Promise<void> {
  const f = Flags.parse(argv, generateFlags);
  const stats = emptyStats();
  const r: SampleRequest = {
    prompt: f.str("prompt") ?? "",
    temperature: f.num("temperature", 0.8, { min: 0 }),
    topK: f.int("top-k", 0, 0),
    topP: f.num("top-p", 1, { min: 0, exclusiveMin: true, max: 1 }),
    minP: f.num("min-p", 0, { min: 0, max: 1 }),
    repeatPenalty: f.num("repeat-penalty", 1, { min: 0, exclusiveMin: true }),
    repeatLastN: f.int("repeat-last-n", 64, -1),
    frequencyPenalty: f.num("frequency-penalty", 0),
    presencePenalty: f.num("presence-penalty", 0),
    stop: f.list("stop"),
    maxTokens: f.int("max-tokens", 256, 0),
    seed: f.int("seed", 1337, 0),
    stats,
  };
  const modelPath = f.required("model");
  const chat = chatFlags(f);
  const t0 = performance.now();
  if (f.bool("f32-activations") && f.bool("dequantize")) throw new UsageError("--f32-activations applies to quantized weights; drop --dequantize");
  const numerics = { q8Activations: !f.bool("f32-activations") };
  const { where, backend, cpu } = await modelPlaceFromFlags(f, numerics);
  // A quantized GGUF stays quantized in memory unless --dequantize; other formats are float anyway.
  // Lazy: tensors are read straight into backend memory (the same logits, a lower peak RSS: bench/memory.ts).
  const { model, tokenizer, chatTemplate } = loadModel(modelPath, where, f.str("tokenizer"), {
    quantized: !f.bool("dequantize"),
    fuse: !f.bool("no-fuse"),
    lazy: true,
    expertCacheBytes: expertCacheBytesFromFlags(f),
  });
  if (!tokenizer) throw new UsageError("the model has no tokenizer; pass --tokenizer");
  if (chat) applyChat(r, chat, tokenizer, modelPath, chatTemplate);
  const spec = speculativeFlags(f);
  if (spec) r.speculative = { ...spec, draft: await draftFromFlags(f, model, tokenizer, [backend, cpu], numerics) };
  if (f.bool("stats") && isMoe(model.config)) model.expertUsage = new ExpertUsage(numExperts(model.config));
  const loadSeconds = (performance.now() - t0) / 1000;
  const t1 = performance.now();
  const n = await streamCompletion(model, tokenizer, r, (s) => process.stdout.write(s));
  process.stdout.write("\n");
  const s = (performance.now() - t1) / 1000;
  if (!f.bool("stats")) {
    const d = r.speculative?.stats ? summarizeSpeculative(r.speculative.stats) : null;
    const accept = d ? `, draft acceptance ${d.acceptanceRate === null ? "-" : (100 * d.acceptanceRate).toFixed(1) + "%"}, ${d.tokensPerPass?.toFixed(2) ?? "-"} tokens per target pass` : "";
    process.stderr.write(`bonsai generate: ${n} tokens in ${s.toFixed(2)} s (${(n / s).toFixed(1)} tok/s)${accept}, load ${loadSeconds.toFixed(2)} s, backend ${describeModelPlace(model)}\n`);
  } else {
    // Machine-readable instead: prefill and decode timed separately (forward passes only).
    const rate = (tokens: number, seconds: number): number | null => (seconds > 0 ? Number((tokens / seconds).toFixed(1)) : null);
    const line = {
      prefill_tokens_per_s: rate(stats.prefillTokens, stats.prefillSeconds),
      decode_tokens_per_s: rate(stats.decodeTokens, stats.decodeSeconds),
      prefill_tokens: stats.prefillTokens,
      tokens: n,
      load_seconds: Number(loadSeconds.toFixed(3)),
      backend: backend.name,
      kernels: ((cpu ?? backend) as { flavour?: string }).flavour ?? null,
      threads: ((cpu ?? backend) as { threads?: number }).threads ?? 1,
      ...(cpu ? { placement: describeModelPlace(model) } : {}),
      ...(r.speculative ? { speculative: speculativeStatsJson(r.speculative) } : {}),
      ...(model.expertCaches.size > 0 ? { expert_cache: expertCacheStats(model) } : {}),
      ...(model.expertUsage ? { expert_usage: (await model.expertUsage.perLayer()).map((L) => ({ ...L, fractions: L.fractions.map((v) => Number(v.toFixed(4))) })) } : {}),
    };
    process.stderr.write(JSON.stringify(line) + "\n");
  }
}

/** Paged experts (--expert-cache-mb): slots per layer, and requests served from memory and from the file. */
function expertCacheStats(model: Llama): { slots: number; experts: number; hits: number; misses: number; hit_rate: number | null } {
  const caches = [...model.expertCaches.values()];
  const hits = caches.reduce((s, c) => s + c.counts.hits, 0), misses = caches.reduce((s, c) => s + c.counts.misses, 0);
  return { slots: caches[0].slots, experts: caches[0].experts, hits, misses, hit_rate: hits + misses > 0 ? Number((hits / (hits + misses)).toFixed(4)) : null };
}
