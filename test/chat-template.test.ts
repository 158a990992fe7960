// Chat templates: rendering against the reference, the model files that carry a template, and
// `bonsai generate --chat`.
//
// The reference for rendering is not ours: test/fixtures/chat_templates.json holds twelve
// published templates (Llama 3.1/3.2, Gemma 2, Qwen 2.5/3, Phi-3.5, Mistral v0.2/Nemo, SmolLM3,
// DeepSeek-R1-Distill, Zephyr, ChatML) rendered by Jinja2 3.1.6 in the environment transformers'
// apply_chat_template builds (scripts/make_chat_fixtures.py copies its setup: sandboxed,
// trim_blocks, lstrip_blocks, raise_exception, tojson, strftime_now). transformers itself is not
// installed here; Jinja2 is the engine it renders with, so its output is apply_chat_template's.
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import {
  ChatInputError, ChatTemplateError, DEFAULT_CHAT_TEMPLATE, JsBackend, Llama, chatPromptIds, chatStops, chatTemplateFromTokenizerConfig, chatTemplateOfDirectory,
  checkMessages, llamaToGguf, modelFiles, modelTensors, renderChat, specialTokenTexts, trainTokenizer, tokenizerToGgufMetadata, CharTokenizer, ByteBpeTokenizer, type ChatMessage,
} from "../src/index.js";
import { loadModel, writeCheckpoint } from "../src/node.js";
import { strftimeNow } from "../src/runtime/jinja-env.js";
import { assertOneLineError, bonsai } from "./cli-helpers.js";

interface Fixture {
  strftime_now: Record<string, string>;
  conversations: Record<string, ChatMessage[]>;
  tools: unknown[];
  templates: { name: string; source: string; bos_token: string; eos_token: string; template: string; cases: { conversation: string; add_generation_prompt: boolean; tools?: boolean; expected?: string; error?: string }[] }[];
}
const fixture = JSON.parse(readFileSync(fileURLToPath(new URL("../../test/fixtures/chat_templates.json", import.meta.url)), "utf8")) as Fixture;
const fixedNow = (format: string): string => fixture.strftime_now[format] ?? assert.fail(`strftime_now("${format}") is not in the fixture`);

/** Throws one line, of this class, matching `pattern`. */
function assertThrowsOneLine(f: () => unknown, cls: new (...a: never[]) => Error, pattern: RegExp): void {
  assert.throws(f, (e: Error) => {
    assert.ok(e instanceof cls, `${e.name}: ${e.message}`);
    assert.doesNotMatch(e.message, /\n/);
    assert.match(e.message, pattern);
    return true;
  });
}

test("renderChat gives Jinja2's apply_chat_template output for twelve published templates", () => {
  let n = 0;
  for (const t of fixture.templates)
    for (const c of t.cases) {
      const render = () =>
        renderChat(t.template, fixture.conversations[c.conversation], {
          addGenerationPrompt: c.add_generation_prompt,
          bosToken: t.bos_token,
          eosToken: t.eos_token,
          extra: { strftime_now: fixedNow, ...(c.tools ? { tools: fixture.tools } : {}) },
        });
      const what = `${t.name} (${t.source}), ${c.conversation}, add_generation_prompt ${c.add_generation_prompt}${c.tools ? ", tools" : ""}`;
      if (c.error !== undefined) assertThrowsOneLine(render, ChatInputError, new RegExp(`rejects the conversation: ${c.error.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&")}`));
      else assert.equal(render(), c.expected, what);
      n++;
    }
  assert.equal(n, 125);
  // The cases reach what matters: raise_exception, tools through tojson, strip(chars), the default system prompts.
  assert.ok(fixture.templates.some((t) => t.cases.some((c) => c.error !== undefined)));
  assert.ok(fixture.templates.filter((t) => t.cases.some((c) => c.tools)).length >= 4);
});

test("DEFAULT_CHAT_TEMPLATE is ChatML: it renders every conversation as the published ChatML template does", () => {
  const chatml = fixture.templates.find((t) => t.name === "chatml")!;
  for (const c of chatml.cases) assert.equal(renderChat(DEFAULT_CHAT_TEMPLATE, fixture.conversations[c.conversation], { addGenerationPrompt: c.add_generation_prompt }), c.expected);
  assert.equal(renderChat(DEFAULT_CHAT_TEMPLATE, [{ role: "user", content: "hi" }]), "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n");
});

test("renderChat's variables: add_generation_prompt defaults to true, special tokens only when given, extra variables, strftime_now", () => {
  const t = "{% if bos_token is defined %}[{{ bos_token }}]{% endif %}{{ messages | length }}{{ add_generation_prompt }}{{ date_string | default('?') }}{{ tools is none }}";
  assert.equal(renderChat(t, [{ role: "user", content: "x" }]), "1true?true");
  assert.equal(renderChat(t, [{ role: "user", content: "x" }], { bosToken: "<s>", addGenerationPrompt: false, extra: { date_string: "1 Jan 2025" } }), "[<s>]1false1 Jan 2025true");
  // Llama 3.1 takes its date from a variable: HF's **kwargs reach the template.
  const llama = fixture.templates.find((x) => x.name === "llama-3.1")!.template;
  assert.match(renderChat(llama, [{ role: "user", content: "x" }], { extra: { date_string: "29 Nov 2026" } }), /Today Date: 29 Nov 2026\n/);
  // Messages' other fields reach the template as they are.
  assert.equal(renderChat("{{ messages[0].name }}", [{ role: "user", content: "x", name: "ann" } as ChatMessage]), "ann");
  // strftime_now is Python's strftime in the C locale.
  const d = new Date(2024, 6, 5, 9, 3, 7);
  assert.equal(strftimeNow("%d %b %Y, %A %B %H:%M:%S %j %y %%", d), "05 Jul 2024, Friday July 09:03:07 187 24 %");
  assert.match(renderChat("{{ strftime_now('%Y-%m-%d') }}", [{ role: "user", content: "x" }]), /^\d{4}-\d\d-\d\d$/);
});

test("bad messages and bad templates: one-line errors of their own class", () => {
  const ok: ChatMessage[] = [{ role: "user", content: "hi" }];
  const bad: [unknown, RegExp][] = [
    [undefined, /messages must be an array .* \(got undefined\)/],
    [{ role: "user", content: "x" }, /messages must be an array .* \(got object\)/],
    [[], /messages is empty/],
    [[ok[0], "hi"], /messages\[1\] must be an object with role and content \(got string\)/],
    [[null], /messages\[0\] must be an object .* \(got null\)/],
    [[{ content: "x" }], /messages\[0\] has no role/],
    [[{ role: 3, content: "x" }], /messages\[0\]\.role must be a string \(got number\)/],
    [[{ role: "", content: "x" }], /messages\[0\]\.role is empty/],
    [[{ role: "user" }], /messages\[0\] \(user\) has no content/],
    [[{ role: "user", content: [{ type: "text", text: "x" }] }], /messages\[0\]\.content must be a string \(got array\)/],
    [[{ role: "user", content: null }], /messages\[0\]\.content must be a string \(got null\)/],
  ];
  for (const [messages, pattern] of bad) {
    assertThrowsOneLine(() => checkMessages(messages), ChatInputError, pattern);
    assertThrowsOneLine(() => renderChat(DEFAULT_CHAT_TEMPLATE, messages as ChatMessage[]), ChatInputError, pattern);
  }
  assert.deepEqual(checkMessages(ok), ok);
  assertThrowsOneLine(() => renderChat("{% for m in messages %}{{ m.content }}", ok), ChatTemplateError, /^chat template does not parse: /);
  assertThrowsOneLine(() => renderChat("{{ messages[0].content + }}", ok), ChatTemplateError, /^chat template does not parse: /);
  assertThrowsOneLine(() => renderChat("{% if %}\n\nx{% endif %}", ok), ChatTemplateError, /^chat template does not parse: /);
  assertThrowsOneLine(() => renderChat("{{ messages[0].content.nope() }}", ok), ChatTemplateError, /^chat template failed: /);
  assertThrowsOneLine(() => renderChat(42 as unknown as string, ok), ChatTemplateError, /chat template must be a string \(got number\)/);
  assertThrowsOneLine(() => renderChat("{{ raise_exception('no\\nsystem here') }}", ok), ChatInputError, /^the chat template rejects the conversation: no system here$/);
});

/** A byte-level BPE tokenizer with these special tokens (control), BOS and EOS among them. */
function bpeWith(specials: string[], bos: string | null, eos: string | null): ByteBpeTokenizer {
  const t = trainTokenizer("hello world, hello chat. ".repeat(20), { type: "bytelevel-bpe", vocabSize: 256 + 8 + specials.length, specialTokens: specials }) as ByteBpeTokenizer;
  const id = (s: string | null) => (s === null ? null : t.tokens.indexOf(s));
  return new ByteBpeTokenizer({ tokens: [...t.tokens], types: t.types, merges: t.merges, pre: t.pre, bosId: id(bos), eosId: id(eos) });
}

test("chatStops: EOS/BOS and the template's end-of-turn tokens as ids; markers the tokenizer lacks as stop strings", () => {
  const byName = (n: string) => fixture.templates.find((t) => t.name === n)!.template;
  // Llama 3: <|eot_id|> and <|eom_id|> are tokens; EOS is <|end_of_text|>.
  const llama = bpeWith(["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>", "<|eom_id|>"], "<|begin_of_text|>", "<|end_of_text|>");
  const ids = (...names: string[]) => names.map((n) => llama.tokens.indexOf(n)).sort((a, b) => a - b);
  let s = chatStops(llama, byName("llama-3.1"));
  assert.deepEqual([...s.stopIds].sort((a, b) => a - b), ids("<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>", "<|eom_id|>"));
  assert.deepEqual(s.stop, []);
  // Gemma's <end_of_turn>.
  const gemma = bpeWith(["<bos>", "<eos>", "<start_of_turn>", "<end_of_turn>"], "<bos>", "<eos>");
  s = chatStops(gemma, byName("gemma-2"));
  assert.ok(s.stopIds.includes(gemma.tokens.indexOf("<end_of_turn>")) && s.stopIds.includes(gemma.eosId!));
  // ChatML on a tokenizer with <|im_end|>: an id, no string.
  const qwen = bpeWith(["<|endoftext|>", "<|im_start|>", "<|im_end|>"], null, "<|endoftext|>");
  s = chatStops(qwen, DEFAULT_CHAT_TEMPLATE);
  assert.deepEqual(s, { stopIds: [qwen.tokens.indexOf("<|endoftext|>"), qwen.tokens.indexOf("<|im_end|>")], stop: [] });
  // The default template on a model trained on plain text: <|im_end|> is characters.
  const chars = CharTokenizer.fromText("<|im_start|>user\nhi<|im_end|>\n");
  assert.deepEqual(chatStops(chars, DEFAULT_CHAT_TEMPLATE), { stopIds: [], stop: ["<|im_end|>"] });
  // Zephyr ends turns with eos_token: EOS only.
  assert.deepEqual(chatStops(gemma, byName("zephyr")), { stopIds: [gemma.eosId!, gemma.bosId!], stop: [] });
});

test("chatPromptIds reads the template's special tokens as tokens and puts BOS first once; specialTokenTexts", () => {
  const tok = bpeWith(["<s>", "</s>", "<|im_start|>", "<|im_end|>"], "<s>", "</s>");
  const [bos, start, end] = ["<s>", "<|im_start|>", "<|im_end|>"].map((s) => tok.tokens.indexOf(s));
  const rendered = renderChat(DEFAULT_CHAT_TEMPLATE, [{ role: "user", content: "hello" }]);
  const ids = chatPromptIds(tok, rendered);
  assert.equal(ids[0], bos);
  assert.equal(ids[1], start);
  assert.equal(ids.filter((x) => x === end).length, 1);
  assert.equal(tok.decode(ids.slice(1)), rendered.replace(/<\|im_(start|end)\|>/g, ""));
  // A template that writes bos_token itself: BOS once.
  const withBos = renderChat("{{ bos_token }}{{ messages[0].content }}", [{ role: "user", content: "hello" }], specialTokenTexts(tok));
  assert.equal(withBos, "<s>hello");
  assert.deepEqual(chatPromptIds(tok, withBos), [bos, ...tok.encode("hello")]);
  assert.deepEqual(specialTokenTexts(tok), { bosToken: "<s>", eosToken: "</s>" });
  assert.deepEqual(specialTokenTexts(CharTokenizer.fromText("ab")), {});
});

test("tokenizer_config.json's chat_template: a string, the list form's \"default\", chat_template.jinja first; bad forms are one-line errors", () => {
  assert.equal(chatTemplateFromTokenizerConfig({}), null);
  assert.equal(chatTemplateFromTokenizerConfig({ chat_template: "A" }), "A");
  assert.equal(chatTemplateFromTokenizerConfig({ chat_template: [{ name: "tool_use", template: "T" }, { name: "default", template: "D" }] }), "D");
  assert.equal(chatTemplateOfDirectory("J", { chat_template: "A" }), "J");
  assert.equal(chatTemplateOfDirectory(null, { chat_template: "A" }), "A");
  assert.equal(chatTemplateOfDirectory(null, null), null);
  assert.throws(() => chatTemplateFromTokenizerConfig({ chat_template: [{ name: "rag", template: "R" }, { name: "tool_use", template: "T" }] }), /chat_template lists templates "rag", "tool_use" but none named "default"/);
  assert.throws(() => chatTemplateFromTokenizerConfig({ chat_template: 3 }), /chat_template must be a string or a list/);
  assert.throws(() => chatTemplateFromTokenizerConfig({ chat_template: [{ name: "default" }] }), /chat_template\[0\] must be an object with string name and template/);
});

const tmp = mkdtempSync(join(tmpdir(), "bonsai-chat-"));
const LLAMA31 = fixture.templates.find((t) => t.name === "llama-3.1")!.template;

test("round trip: a GGUF and HF directories written with a template load with the same template; without one, null", async () => {
  const js = new JsBackend("f32");
  const tok = bpeWith(["<|endoftext|>", "<|im_start|>", "<|im_end|>"], null, "<|endoftext|>");
  const config = { vocab_size: tok.vocabSize, hidden_size: 32, intermediate_size: 64, num_hidden_layers: 1, num_attention_heads: 2, num_key_value_heads: 2, max_position_embeddings: 16, rms_norm_eps: 1e-5, rope_theta: 10000, tie_word_embeddings: false };
  const model = Llama.init(js, config, 1);
  const gguf = join(tmp, "t.gguf");
  writeFileSync(gguf, llamaToGguf(model.config, await modelTensors(model), "f32", { tokenizer: tokenizerToGgufMetadata(tok), chatTemplate: LLAMA31 }));
  assert.equal(loadModel(gguf, js).chatTemplate, LLAMA31);
  const plain = join(tmp, "plain.gguf");
  writeFileSync(plain, llamaToGguf(model.config, await modelTensors(model), "f32", { tokenizer: tokenizerToGgufMetadata(tok) }));
  assert.equal(loadModel(plain, js).chatTemplate, null);
  // HF directory with an HF tokenizer: the template goes into tokenizer_config.json.
  const hf = join(tmp, "hf");
  writeCheckpoint(hf, await modelFiles(model, tok, { chatTemplate: LLAMA31 }));
  assert.equal(JSON.parse(readFileSync(join(hf, "tokenizer_config.json"), "utf8")).chat_template, LLAMA31);
  assert.equal(existsSync(join(hf, "chat_template.jinja")), false);
  assert.equal(loadModel(hf, js).chatTemplate, LLAMA31);
  // A char-level tokenizer has no tokenizer_config.json: chat_template.jinja holds it.
  const chars = CharTokenizer.fromText("abcdefghijklmnop".repeat(2));
  const charModel = Llama.init(js, { ...config, vocab_size: chars.vocabSize }, 1);
  const charDir = join(tmp, "char");
  writeCheckpoint(charDir, await modelFiles(charModel, chars, { chatTemplate: DEFAULT_CHAT_TEMPLATE }));
  assert.equal(readFileSync(join(charDir, "chat_template.jinja"), "utf8"), DEFAULT_CHAT_TEMPLATE);
  assert.equal(loadModel(charDir, js).chatTemplate, DEFAULT_CHAT_TEMPLATE);
  // Saved again without a template: the old file goes, and so does the template.
  writeCheckpoint(charDir, await modelFiles(charModel, chars));
  assert.equal(existsSync(join(charDir, "chat_template.jinja")), false);
  assert.equal(loadModel(charDir, js).chatTemplate, null);
  // An HF directory as transformers writes them: the list form, and chat_template.jinja over it.
  const cfg = JSON.parse(readFileSync(join(hf, "tokenizer_config.json"), "utf8"));
  writeFileSync(join(hf, "tokenizer_config.json"), JSON.stringify({ ...cfg, chat_template: [{ name: "default", template: "D" }, { name: "tool_use", template: "T" }] }));
  assert.equal(loadModel(hf, js).chatTemplate, "D");
  writeFileSync(join(hf, "chat_template.jinja"), "J");
  assert.equal(loadModel(hf, js).chatTemplate, "J");
  // A bad chat_template fails the load in one line naming the directory.
  writeFileSync(join(hf, "chat_template.jinja"), "");
  writeFileSync(join(hf, "tokenizer_config.json"), JSON.stringify({ ...cfg, chat_template: [{ name: "rag", template: "R" }] }));
  rmSync(join(hf, "chat_template.jinja"));
  assert.throws(() => loadModel(hf, js), (e: Error) => e.message.startsWith(hf) && /none named "default"/.test(e.message) && !e.message.includes("\n"));
  model.dispose();
  charModel.dispose();
});

test("bonsai generate --chat: the rendered prompt, stopped at the reply's end, as generate --prompt gives it; export keeps the template; one-line errors", () => {
  // A tiny model trained on ChatML conversations (byte-level BPE: GGUF export needs a tokenizer with a GGUF form).
  const corpus = join(tmp, "chats.txt"), tok = join(tmp, "bpe.json"), dir = join(tmp, "model");
  const turn = (q: string, a: string) => `<|im_start|>user\n${q}<|im_end|>\n<|im_start|>assistant\n${a}<|im_end|>\n`;
  writeFileSync(corpus, (turn("hi", "hello there") + turn("bye", "see you") + turn("cat?", "a cat sat")).repeat(30));
  let r = bonsai("tokenizer", "train", "--data", corpus, "--vocab-size", "300", "--type", "bytelevel-bpe", "--out", tok);
  assert.equal(r.code, 0, r.stderr);
  r = bonsai("train", "--data", corpus, "--tokenizer", tok, "--layers", "2", "--heads", "2", "--dim", "32", "--block-size", "32", "--batch-size", "8", "--iters", "150", "--lr", "3e-3", "--eval-iters", "1", "--eval-interval", "150", "--warmup", "5", "--threads", "1", "--out", dir);
  assert.equal(r.code, 0, r.stderr);
  const gen = (...args: string[]) => bonsai("generate", "--model", dir, "--temperature", "0", "--max-tokens", "24", "--threads", "1", ...args);

  // No template in the model: the default (ChatML); the reply ends at its <|im_end|>.
  const chat = gen("--chat", "--prompt", "hi");
  assert.equal(chat.code, 0, chat.stderr);
  const rendered = renderChat(DEFAULT_CHAT_TEMPLATE, [{ role: "user", content: "hi" }]);
  const plain = gen("--prompt", rendered, "--stop", "<|im_end|>");
  assert.equal(plain.code, 0, plain.stderr);
  assert.equal(chat.stdout, plain.stdout);
  assert.doesNotMatch(chat.stdout, /im_end/);
  const tokens = (stderr: string) => Number(/(\d+) tokens in/.exec(stderr)![1]);
  assert.ok(tokens(chat.stderr) < 24, `the reply stopped before --max-tokens: ${JSON.stringify(chat.stdout)}`);
  // --system goes before the user's message.
  const sys = gen("--chat", "--system", "be kind", "--prompt", "bye");
  const sysPlain = gen("--prompt", renderChat(DEFAULT_CHAT_TEMPLATE, [{ role: "system", content: "be kind" }, { role: "user", content: "bye" }]), "--stop", "<|im_end|>");
  assert.equal(sys.code, 0, sys.stderr);
  assert.equal(sys.stdout, sysPlain.stdout);

  // The model's own template (chat_template.jinja in its directory), and --chat-template over it.
  const own = "{% for m in messages %}<{{ m.role }}> {{ m.content }}\n{% endfor %}{% if add_generation_prompt %}<assistant> {% endif %}";
  writeFileSync(join(dir, "chat_template.jinja"), own);
  const withOwn = gen("--chat", "--prompt", "cat?");
  assert.equal(withOwn.code, 0, withOwn.stderr);
  assert.equal(withOwn.stdout, gen("--prompt", "<user> cat?\n<assistant> ").stdout);
  const file = join(tmp, "chatml.jinja");
  writeFileSync(file, DEFAULT_CHAT_TEMPLATE);
  assert.equal(gen("--chat", "--chat-template", file, "--prompt", "hi").stdout, chat.stdout);

  // Export carries the template: GGUF (tokenizer.chat_template) and HF (tokenizer_config.json).
  const gguf = join(tmp, "model.gguf"), hfOut = join(tmp, "converted");
  r = bonsai("export", "--model", dir, "--format", "gguf", "--out", gguf);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(loadModel(gguf, new JsBackend("f32")).chatTemplate, own);
  r = bonsai("convert", "--model", gguf, "--out", hfOut);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(JSON.parse(readFileSync(join(hfOut, "tokenizer_config.json"), "utf8")).chat_template, own);
  const fromGguf = bonsai("generate", "--model", gguf, "--temperature", "0", "--max-tokens", "24", "--threads", "1", "--chat", "--prompt", "cat?");
  assert.equal(fromGguf.code, 0, fromGguf.stderr);
  assert.equal(fromGguf.stdout, withOwn.stdout);

  // One-line errors.
  assertOneLineError(gen("--system", "x", "--prompt", "hi"), /--system needs --chat/);
  assertOneLineError(gen("--chat-template", file, "--prompt", "hi"), /--chat-template needs --chat/);
  assertOneLineError(gen("--chat"), /--chat needs --prompt/);
  assertOneLineError(gen("--chat", "--prompt", "hi", "--chat-template", join(tmp, "missing.jinja")), /file not found/);
  const broken = join(tmp, "broken.jinja");
  writeFileSync(broken, "{% for m in messages %}{{ m.content }}");
  const b = gen("--chat", "--prompt", "hi", "--chat-template", broken);
  assertOneLineError(b, /broken\.jinja: chat template does not parse/);
  assert.equal(b.code, 1);
  const picky = join(tmp, "picky.jinja");
  writeFileSync(picky, "{% if messages[0].role == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}{{ messages[0].content }}");
  assertOneLineError(gen("--chat", "--system", "s", "--prompt", "hi", "--chat-template", picky), /picky\.jinja: the chat template rejects the conversation: System role not supported/);
});
