// Where model files keep their chat template, read and written as the tools of the field do:
// GGUF's `tokenizer.chat_template` string (llama.cpp's convert_hf_to_gguf.py writes it), and in a
// Hugging Face directory `chat_template` of tokenizer_config.json — a string, or the list of
// {name, template} transformers writes for several templates — or, newer transformers, a
// chat_template.jinja file, which wins over tokenizer_config.json as transformers has it.
// llama2.c files have none. Browser-safe: file contents in, file contents out.
import { GgufType, type GgufMetadataEntry, type GgufValue } from "../format/gguf.js";

export const GGUF_CHAT_TEMPLATE_KEY = "tokenizer.chat_template";
export const CHAT_TEMPLATE_FILE = "chat_template.jinja";

/** The chat template of a GGUF's metadata, or null without one. */
export function chatTemplateFromGguf(metadata: ReadonlyMap<string, GgufValue>): string | null {
  const v = metadata.get(GGUF_CHAT_TEMPLATE_KEY);
  if (v === undefined) return null;
  if (typeof v !== "string") throw new Error(`GGUF metadata ${GGUF_CHAT_TEMPLATE_KEY} must be a string`);
  return v;
}

/** The GGUF metadata entry that stores a chat template. */
export function chatTemplateGgufEntry(template: string): GgufMetadataEntry {
  return { key: GGUF_CHAT_TEMPLATE_KEY, type: GgufType.STRING, value: template };
}

/**
 * The chat template of a tokenizer_config.json object, or null without one: the string, or from
 * the list form the template named "default" (the one apply_chat_template uses without tools).
 */
export function chatTemplateFromTokenizerConfig(config: Record<string, unknown>, where = "tokenizer_config.json"): string | null {
  const t = config.chat_template;
  if (t === undefined || t === null) return null;
  if (typeof t === "string") return t;
  if (!Array.isArray(t)) throw new Error(`${where}: chat_template must be a string or a list of {name, template} (got ${typeof t})`);
  const names: string[] = [];
  for (const [i, entry] of t.entries()) {
    const e = entry as { name?: unknown; template?: unknown } | null;
    if (typeof e !== "object" || e === null || typeof e.name !== "string" || typeof e.template !== "string")
      throw new Error(`${where}: chat_template[${i}] must be an object with string name and template`);
    if (e.name === "default") return e.template;
    names.push(e.name);
  }
  throw new Error(`${where}: chat_template lists ${names.length === 0 ? "no templates" : `templates ${names.map((n) => JSON.stringify(n)).join(", ")}`} but none named "default"`);
}

/** An HF directory's template: chat_template.jinja's text when there is one, else tokenizer_config.json's. */
export function chatTemplateOfDirectory(jinjaFile: string | null, tokenizerConfig: Record<string, unknown> | null): string | null {
  if (jinjaFile !== null) return jinjaFile;
  return tokenizerConfig ? chatTemplateFromTokenizerConfig(tokenizerConfig) : null;
}
