// A Bonsai checkpoint is a Hugging Face Llama model directory — config.json, model.safetensors
// (HF names, [out, in] layouts, rotate-half RoPE), generation_config.json — plus Bonsai's
// tokenizer and, for training runs, optimizer.safetensors and training_state.json beside it.
// This module turns models into file contents and back; writing them (atomically) is the job of
// the Node adapter, so this runs in a browser too.
import type { Backend } from "../backend/backend.js";
import { type Placement, backendOf, partOf, placementOf } from "../nn/placement.js";
import { Tensor } from "../tensor/tensor.js";
import { Llama } from "../nn/llama.js";
import { type LlamaConfig, normalizeConfig, parameterNames, toHfConfigJson } from "../nn/config.js";
import type { NamedTensors } from "../format/host-tensor.js";
import { parseSafetensors, serializeSafetensors } from "../format/safetensors.js";
import { splitExperts, stackExperts } from "./hf-experts.js";
import type { Tokenizer } from "../tokenizer/tokenizer.js";
import { Llama2cTokenizer } from "../tokenizer/llama2c-tokenizer.js";
import { SpmTokenizer } from "../tokenizer/spm.js";
import { ByteBpeTokenizer } from "../tokenizer/byte-bpe.js";
import { spmFromLlama2c } from "../tokenizer/gguf-vocab.js";
import { tokenizerToHfJson } from "../tokenizer/hf-tokenizer-json.js";
import { CHAT_TEMPLATE_FILE } from "./chat-template-files.js";

export interface CheckpointFile {
  name: string;
  bytes: Uint8Array;
}

export const TOKENIZER_FILE = "bonsai-tokenizer.json";

const utf8 = new TextEncoder();
export const jsonFile = (name: string, value: unknown): CheckpointFile => ({ name, bytes: utf8.encode(JSON.stringify(value, null, 2) + "\n") });

/** The model's parameters as host float32 tensors under their HF names (experts in Mixtral's per-expert layout). */
export async function modelTensors(model: Llama): Promise<NamedTensors> {
  if (model.fused) throw new Error("the model is fused for inference; load it without fusing to save or convert it");
  if (model.quantized.size > 0) throw new Error("the model holds quantized weights; load it dequantized to save or convert it");
  if (model.expertCaches.size > 0) throw new Error("the model pages its experts from the file; load it without an expert cache to save or convert it");
  const out: NamedTensors = new Map();
  for (const [name, t] of model.parameters()) out.set(name, { shape: [...t.shape], data: Float32Array.from(await t.toArray()) });
  return splitExperts(model.config, out);
}

/**
 * Hugging Face's files for a tokenizer — tokenizer.json and a tokenizer_config.json that
 * AutoTokenizer reads, with the chat template when there is one — for the kinds that have that
 * form (not the char-level one).
 */
export function hfTokenizerFiles(t: Tokenizer, chatTemplate: string | null = null): CheckpointFile[] {
  const hf = t instanceof Llama2cTokenizer ? spmFromLlama2c(t) : t instanceof SpmTokenizer || t instanceof ByteBpeTokenizer ? t : null;
  if (!hf) return [];
  const json = tokenizerToHfJson(hf) as { model: { vocab: Record<string, number> } };
  const piece = (id: number | null): string | null => (id === null ? null : (Object.entries(json.model.vocab).find(([, v]) => v === id)?.[0] ?? null));
  return [
    jsonFile("tokenizer.json", json),
    jsonFile("tokenizer_config.json", {
      tokenizer_class: "PreTrainedTokenizerFast",
      bos_token: piece(hf.bosId),
      eos_token: piece(hf.eosId),
      clean_up_tokenization_spaces: false,
      ...(chatTemplate !== null ? { chat_template: chatTemplate } : {}),
    }),
  ];
}

/**
 * The tokenizer's files with the chat template: in tokenizer_config.json where the tokenizer has
 * HF's form, else (a char-level tokenizer, or none) in chat_template.jinja, as newer transformers
 * saves it.
 */
export function tokenizerAndTemplateFiles(tokenizer: Tokenizer | null, chatTemplate: string | null): CheckpointFile[] {
  const hf = tokenizer ? hfTokenizerFiles(tokenizer, chatTemplate) : [];
  if (chatTemplate !== null && hf.length === 0) hf.push({ name: CHAT_TEMPLATE_FILE, bytes: utf8.encode(chatTemplate) });
  return hf;
}

/** The model's config with the tokenizer's BOS/EOS ids, when it has them. */
export function configWithTokenIds(c: LlamaConfig, tokenizer: Tokenizer | null): LlamaConfig {
  const config = { ...c };
  if (tokenizer?.bosId != null) config.bos_token_id = tokenizer.bosId;
  if (tokenizer?.eosId != null) config.eos_token_id = tokenizer.eosId;
  return config;
}

export const generationConfigFile = (c: LlamaConfig): CheckpointFile =>
  jsonFile("generation_config.json", { _from_model_config: true, bos_token_id: c.bos_token_id, eos_token_id: c.eos_token_id });

export interface ModelFilesOptions {
  /** The model's chat template (LoadedModel.chatTemplate), kept with the tokenizer's files. */
  chatTemplate?: string | null;
}

/** config.json, generation_config.json, model.safetensors and (if given) the tokenizer, in Bonsai's and HF's forms, and the chat template. */
export async function modelFiles(model: Llama, tokenizer: Tokenizer | null, opts: ModelFilesOptions = {}): Promise<CheckpointFile[]> {
  const config = configWithTokenIds(model.config, tokenizer);
  const files = [
    jsonFile("config.json", toHfConfigJson(config)),
    generationConfigFile(config),
    // transformers refuses safetensors files without format metadata.
    { name: "model.safetensors", bytes: serializeSafetensors(await modelTensors(model), { format: "pt" }) },
  ];
  if (tokenizer) files.push(jsonFile(TOKENIZER_FILE, tokenizer.toJSON()));
  files.push(...tokenizerAndTemplateFiles(tokenizer, opts.chatTemplate ?? null));
  return files;
}

/** The model config of a config.json object (the Llama architecture, or Mixtral: Llama with sparse MoE FFNs). */
export function llamaConfigFromJson(rawConfig: Record<string, unknown>): LlamaConfig {
  const arch = rawConfig.architectures;
  if (Array.isArray(arch) && arch.length > 0 && !arch.includes("LlamaForCausalLM") && !arch.includes("MixtralForCausalLM"))
    throw new Error(`config.json: architecture ${arch.join(", ")} is not supported (LlamaForCausalLM or MixtralForCausalLM)`);
  if (rawConfig.model_type !== undefined && rawConfig.model_type !== "llama" && rawConfig.model_type !== "mixtral")
    throw new Error(`config.json: model_type "${String(rawConfig.model_type)}" is not supported ("llama" or "mixtral")`);
  // Mixtral's sliding-window attention is not implemented: refuse a window the context could exceed.
  const window = rawConfig.sliding_window;
  if (typeof window === "number" && window < ((rawConfig.max_position_embeddings as number | undefined) ?? 2048))
    throw new Error(`config.json: sliding_window ${window} is shorter than the context; sliding-window attention is not supported`);
  return normalizeConfig(rawConfig);
}

/** Build a model on `where` (a backend, or a placement over several) from a config.json object and named tensors (validated against the config). */
export function modelFromTensors(where: Backend | Placement, rawConfig: Record<string, unknown>, files: NamedTensors): Llama {
  const config = llamaConfigFromJson(rawConfig);
  const tensors = stackExperts(config, files);
  // Checkpoints saved with tied embeddings by other tools sometimes still carry lm_head.weight.
  const params = new Map<string, Tensor>();
  const place = placementOf(where, config.num_hidden_layers);
  for (const name of parameterNames(config)) {
    const t = tensors.get(name);
    if (!t) throw new Error(`model weights lack tensor ${name}`);
    params.set(name, Tensor.from(backendOf(place, partOf(name)), t.shape, t.data, true));
  }
  return new Llama(place, config, params);
}

/** Parse a model.safetensors together with its config.json text. */
export function modelFromFiles(backend: Backend, configJson: string, safetensors: Uint8Array): Llama {
  let raw: unknown;
  try {
    raw = JSON.parse(configJson);
  } catch (e) {
    throw new Error(`config.json is not valid JSON: ${(e as Error).message.replace(/\s+/g, " ")}`);
  }
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) throw new Error("config.json must hold a JSON object");
  return modelFromTensors(backend, raw as Record<string, unknown>, parseSafetensors(safetensors).tensors);
}
