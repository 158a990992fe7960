// Chat templates: a conversation → the prompt text a chat model was trained on, rendered from the
// model's own Jinja template (tokenizer.chat_template in GGUF, chat_template in an HF directory;
// see io/chat-template-files.ts) exactly as Hugging Face's apply_chat_template renders it, with
// @huggingface/jinja (the engine transformers.js uses; jinja-env.ts). Also what a chat turn needs around that:
// checked messages, the prompt's token ids and where the model's reply ends. Browser-safe.
import type { Template } from "@huggingface/jinja";
import { RaisedByTemplate, parseTemplate, renderTemplate } from "./jinja-env.js";
import type { Tokenizer } from "../tokenizer/tokenizer.js";
import { TokenType } from "../tokenizer/special-tokens.js";

export interface ChatMessage {
  role: "system" | "user" | "assistant" | string;
  content: string;
}

/**
 * The template for models that have none: ChatML, `<|im_start|>role\ncontent<|im_end|>\n` per
 * message and `<|im_start|>assistant\n` as the generation prompt. It is the format most small
 * chat models are tuned on (Qwen, SmolLM, TinyLlama-chat, OpenHermes), the default Hugging Face
 * transformers shipped as `default_chat_template` and the one llama.cpp falls back to. A model
 * without those special tokens still reads and writes the markers as plain text, and the stop
 * string `<|im_end|>` (chatStops) ends its turn either way. This is transformers' text, verbatim.
 */
export const DEFAULT_CHAT_TEMPLATE =
  "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}" +
  "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

export interface RenderChatOptions {
  /** End with the template's opening of an assistant turn (HF's add_generation_prompt). Default true. */
  addGenerationPrompt?: boolean;
  /** The text of the tokenizer's BOS / EOS tokens, which templates write as bos_token / eos_token. */
  bosToken?: string;
  eosToken?: string;
  /** More template variables (HF's **kwargs of apply_chat_template), e.g. tools, date_string. */
  extra?: Record<string, unknown>;
}

/** The request's fault: malformed messages, or a conversation the template refuses (raise_exception). */
export class ChatInputError extends Error {
  override name = "ChatInputError";
}

/** The template's fault: it does not parse, or fails while rendering. */
export class ChatTemplateError extends Error {
  override name = "ChatTemplateError";
}

const oneLine = (s: string): string => s.replace(/\s+/g, " ").trim();

function typeName(v: unknown): string {
  return v === null ? "null" : Array.isArray(v) ? "array" : typeof v;
}

/**
 * `messages` checked: an array of objects with a non-empty string `role` and a string `content`
 * (other fields are passed to the template as they are). Throws ChatInputError, one line.
 */
export function checkMessages(messages: unknown): ChatMessage[] {
  if (!Array.isArray(messages)) throw new ChatInputError(`messages must be an array of {role, content} objects (got ${typeName(messages)})`);
  if (messages.length === 0) throw new ChatInputError("messages is empty: a chat needs at least one message");
  return messages.map((m: unknown, i) => {
    if (typeof m !== "object" || m === null || Array.isArray(m)) throw new ChatInputError(`messages[${i}] must be an object with role and content (got ${typeName(m)})`);
    const { role, content } = m as Record<string, unknown>;
    if (role === undefined) throw new ChatInputError(`messages[${i}] has no role`);
    if (typeof role !== "string") throw new ChatInputError(`messages[${i}].role must be a string (got ${typeName(role)})`);
    if (role === "") throw new ChatInputError(`messages[${i}].role is empty`);
    if (content === undefined) throw new ChatInputError(`messages[${i}] (${role}) has no content`);
    if (typeof content !== "string") throw new ChatInputError(`messages[${i}].content must be a string (got ${typeName(content)})`);
    return { ...(m as object), role, content };
  });
}

/** The last template compiled: a server renders the same one for every request. */
let cached: { text: string; template: Template } | null = null;

function compile(text: string): Template {
  if (typeof text !== "string") throw new ChatTemplateError(`chat template must be a string (got ${typeName(text)})`);
  if (cached?.text === text) return cached.template;
  let template: Template;
  try {
    template = parseTemplate(text);
  } catch (e) {
    throw new ChatTemplateError(`chat template does not parse: ${oneLine((e as Error).message)}`);
  }
  cached = { text, template };
  return template;
}

/**
 * Render `messages` with a Jinja chat template as Hugging Face's apply_chat_template does: the
 * variables messages, tools and documents (none), add_generation_prompt, bos_token / eos_token
 * (when given), the globals raise_exception and strftime_now, trim_blocks and lstrip_blocks.
 * Throws ChatInputError for bad messages and for the template's raise_exception (e.g. "roles
 * must alternate"), ChatTemplateError for a template that does not parse or fails; one line each.
 */
export function renderChat(template: string, messages: ChatMessage[], opts: RenderChatOptions = {}): string {
  const checked = checkMessages(messages);
  const compiled = compile(template);
  const vars: Record<string, unknown> = {
    messages: checked,
    tools: null,
    documents: null,
    add_generation_prompt: opts.addGenerationPrompt ?? true,
  };
  // HF passes only the special tokens the tokenizer has: a template may test `bos_token is defined`.
  if (opts.bosToken !== undefined) vars.bos_token = opts.bosToken;
  if (opts.eosToken !== undefined) vars.eos_token = opts.eosToken;
  Object.assign(vars, opts.extra);
  try {
    return renderTemplate(compiled, vars);
  } catch (e) {
    if (e instanceof RaisedByTemplate) throw new ChatInputError(`the chat template rejects the conversation: ${oneLine(e.message)}`);
    throw new ChatTemplateError(`chat template failed: ${oneLine((e as Error).message)}`);
  }
}

/** Tokenizers whose vocabulary Bonsai can see (SentencePiece-style and byte-level BPE). */
interface WithVocabulary {
  tokens: readonly string[];
  types: ArrayLike<number>;
}

function vocabularyOf(t: Tokenizer): WithVocabulary | null {
  const v = t as Partial<WithVocabulary>;
  return Array.isArray(v.tokens) && v.types !== undefined ? (v as WithVocabulary) : null;
}

/** The id of a special (control or user-defined) token with this text, or null. */
export function specialTokenId(t: Tokenizer, text: string): number | null {
  const v = vocabularyOf(t);
  if (!v) return null;
  for (let id = v.tokens.length - 1; id >= 0; id--) {
    const type = v.types[id];
    if (v.tokens[id] === text && (type === TokenType.CONTROL || type === TokenType.USER_DEFINED)) return id;
  }
  return null;
}

/** The text of the tokenizer's BOS and EOS tokens (what templates write as bos_token / eos_token). */
export function specialTokenTexts(t: Tokenizer): { bosToken?: string; eosToken?: string } {
  const v = vocabularyOf(t);
  // llama2.c's tokenizer.bin stores them as "\n<s>\n" and "\n</s>\n"; they are SentencePiece's <s> and </s>.
  const text = (id: number | null, llama2c: string): string | undefined => (id === null ? undefined : v ? v.tokens[id] : t.kind === "llama2c" ? llama2c : undefined);
  const out: { bosToken?: string; eosToken?: string } = {};
  const bos = text(t.bosId, "<s>"), eos = text(t.eosId, "</s>");
  if (bos !== undefined) out.bosToken = bos;
  if (eos !== undefined) out.eosToken = eos;
  return out;
}

/**
 * End-of-turn markers of the common chat formats (llama.cpp counts the same tokens as end of
 * generation): ChatML, Llama 3, Gemma, Phi-3, GPT-2-style, DeepSeek, Command R, OpenChat,
 * DeepSeek Coder, SentencePiece's EOS.
 */
const END_OF_TURN = [
  "<|im_end|>", "<|eot_id|>", "<|eom_id|>", "<end_of_turn>", "<|end|>", "<|endoftext|>", "<|end_of_text|>",
  "<｜end▁of▁sentence｜>", "<|END_OF_TURN_TOKEN|>", "<|end_of_turn|>", "<|EOT|>", "</s>",
];

export interface ChatStops {
  /** Token ids that end the reply: EOS and BOS (as plain generation) and the template's end-of-turn tokens. */
  stopIds: number[];
  /** Texts that end the reply: end-of-turn markers the template writes that are no token of the tokenizer. */
  stop: string[];
}

/**
 * Where a chat reply ends, for stream()'s stopIds and stop: the tokenizer's EOS (and BOS), every
 * end-of-turn marker the template writes that is a special token of the tokenizer (Llama 3's
 * `<|eot_id|>`, Gemma's `<end_of_turn>`, ChatML's `<|im_end|>`), and as stop strings the markers
 * the template writes that the tokenizer does not have as tokens (the default template on a
 * model trained on plain text: its `<|im_end|>` is characters).
 */
export function chatStops(tokenizer: Tokenizer, template: string): ChatStops {
  const stopIds = new Set([tokenizer.eosId, tokenizer.bosId].filter((x): x is number => x !== null));
  const stop: string[] = [];
  for (const marker of END_OF_TURN) {
    if (!template.includes(marker)) continue;
    const id = specialTokenId(tokenizer, marker);
    if (id !== null) stopIds.add(id);
    else stop.push(marker);
  }
  return { stopIds: [...stopIds], stop };
}

/**
 * The token ids of a rendered chat prompt: special tokens written in it (`<|im_start|>`, the BOS
 * text) read as those tokens, as HF and llama.cpp tokenize chat prompts; BOS first when the
 * tokenizer has one and the template did not already write it (as for a plain prompt, promptIds).
 */
export function chatPromptIds(tokenizer: Tokenizer, rendered: string): number[] {
  const ids = tokenizer.encode(rendered, { parseSpecial: true });
  const bos = tokenizer.bosId;
  return bos !== null && ids[0] !== bos ? [bos, ...ids] : ids;
}
