// Bonsai's chat page (app/index.html), bundled by scripts/build-app.mjs into dist/app/ and served
// by `bonsai serve` (src/serve/app-routes-node.ts). Two modes:
//   Server          — POST /v1/chat/completions with stream: true (OpenAI's SSE chunks), model id
//                     from GET /v1/models.
//   In this browser — the model file from GET /bonsai/model (+ /bonsai/tokenizer; both described
//                     by GET /bonsai/model-info) or from a file picker, cached in OPFS by name and
//                     size, run by the library itself: wasm with worker threads when the page is
//                     cross-origin isolated, WebGPU when the browser has a hardware adapter.
// The page's state is also written to <body data-*> (mode, busy, model-source, model-ready,
// backend) for tests and styling.
import {
  GgufFile,
  MemorySource,
  createBackend,
  llamaConfigFromGguf,
  llamaFromGgufWeights,
  llamaWeightsFromGguf,
  modelFromTensors,
  parseLlama2cCheckpoint,
  parseLlama2cTokenizer,
  promptIds,
  stream,
  tokenizerFromGgufMetadata,
  tokenizerFromJSON,
  type Backend,
  type Llama,
  type Tokenizer,
} from "../src/index.js";
import { DEFAULT_CHAT_TEMPLATE, chatPromptIds, chatStops, renderChat, specialTokenTexts } from "../src/runtime/chat.js";
import "./style.css";

// ---- the page ---------------------------------------------------------------------------------

const $ = <T extends HTMLElement>(id: string): T => document.getElementById(id) as T;
const ui = {
  mode: $<HTMLSelectElement>("mode"),
  backend: $<HTMLSelectElement>("backend"),
  format: $<HTMLSelectElement>("format"),
  modelFile: $<HTMLInputElement>("model-file"),
  serverState: $("server-state"),
  modelState: $("model-state"),
  transcript: $("transcript"),
  composer: $<HTMLFormElement>("composer"),
  prompt: $<HTMLTextAreaElement>("prompt"),
  temperature: $<HTMLInputElement>("temperature"),
  maxTokens: $<HTMLInputElement>("max-tokens"),
  send: $<HTMLButtonElement>("send"),
  stop: $<HTMLButtonElement>("stop"),
  clear: $<HTMLButtonElement>("clear"),
  stats: $("stats"),
};
const body = document.body.dataset;

type Mode = "server" | "browser";
const saved = { mode: localStorage.getItem("bonsai.mode"), backend: localStorage.getItem("bonsai.backend") };

function setState(el: HTMLElement, text: string, error = false): void {
  el.textContent = text;
  el.classList.toggle("error", error);
}

const errorText = (e: unknown): string => (e instanceof Error ? e.message : String(e));
const megabytes = (n: number): string => `${(n / 1e6).toFixed(n < 1e7 ? 2 : 0)} MB`;

/** Give the browser a turn (paint, input events such as Stop) without setTimeout's clamping. */
function yieldToBrowser(): Promise<void> {
  return new Promise((resolve) => {
    const channel = new MessageChannel();
    channel.port1.onmessage = () => resolve();
    channel.port2.postMessage(null);
  });
}

/** Tokens counted as they stream, and the rates they came at. */
class Meter {
  readonly start = performance.now();
  first: number | null = null;
  last = this.start;
  tokens = 0;
  token(n = 1): void {
    this.last = performance.now();
    this.first ??= this.last;
    this.tokens += n;
  }
  toString(): string {
    if (this.first === null) return "no tokens";
    const seconds = (this.last - this.start) / 1000;
    const rate = seconds > 0 ? (this.tokens / seconds).toFixed(1) : "–";
    return `${this.tokens} tokens · ${rate} tokens/s · first token after ${(this.first - this.start).toFixed(0)} ms`;
  }
}

// ---- the transcript ----------------------------------------------------------------------------

interface Message {
  role: "user" | "assistant";
  content: string;
}
/**
 * Each mode's conversation: the server's (OpenAI messages), and the in-browser one in chat
 * format (a plain-text turn is a continuation of its prompt alone and joins no conversation).
 */
const history: Record<Mode, Message[]> = { server: [], browser: [] };

function addTurn(role: "user" | "assistant", text: string): { text: HTMLSpanElement; meta: HTMLSpanElement; el: HTMLDivElement } {
  const el = document.createElement("div");
  el.className = `turn ${role}`;
  const t = document.createElement("span");
  t.className = "text";
  t.textContent = text;
  const meta = document.createElement("span");
  meta.className = "meta";
  el.append(t, meta);
  ui.transcript.append(el);
  el.scrollIntoView({ block: "end" });
  return { text: t, meta, el };
}

// ---- server mode -------------------------------------------------------------------------------

let serverModel: string | null = null;

/** GET /v1/models: the id of the server's model (data[0].id), shown beside the mode. */
async function probeServer(): Promise<boolean> {
  try {
    const r = await fetch("/v1/models");
    if (!r.ok) throw new Error(`GET /v1/models: HTTP ${r.status}`);
    const json = (await r.json()) as { data?: { id?: string }[] };
    serverModel = json.data?.[0]?.id ?? null;
    if (serverModel === null) throw new Error("GET /v1/models lists no model");
    setState(ui.serverState, `server model: ${serverModel}`);
    return true;
  } catch (e) {
    serverModel = null;
    setState(ui.serverState, `no server model (${errorText(e)})`, true);
    return false;
  }
}

/** The `data:` payloads of a server-sent event stream. */
async function* sseData(stream: ReadableStream<Uint8Array>, signal: AbortSignal): AsyncGenerator<string> {
  const reader = stream.getReader();
  const decoder = new TextDecoder();
  const onAbort = () => void reader.cancel().catch(() => {});
  signal.addEventListener("abort", onAbort);
  try {
    let buffer = "";
    let data: string[] = [];
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let nl: number;
      while ((nl = buffer.indexOf("\n")) >= 0) {
        const line = buffer.slice(0, nl).replace(/\r$/, "");
        buffer = buffer.slice(nl + 1);
        if (line === "") {
          if (data.length > 0) yield data.join("\n");
          data = [];
        } else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
      }
    }
    if (data.length > 0) yield data.join("\n");
  } finally {
    signal.removeEventListener("abort", onAbort);
    reader.releaseLock();
  }
}

async function chatOnServer(messages: Message[], o: RunOptions, onText: (s: string) => void, meter: Meter, signal: AbortSignal): Promise<string> {
  if (serverModel === null && !(await probeServer())) throw new Error("the server has no model to chat with");
  const r = await fetch("/v1/chat/completions", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ model: serverModel, messages, stream: true, temperature: o.temperature, max_tokens: o.maxTokens, stream_options: { include_usage: true } }),
    signal,
  });
  if (!r.ok || r.body === null) {
    const text = await r.text().catch(() => "");
    let message = text.trim();
    try {
      message = (JSON.parse(text) as { error?: { message?: string } }).error?.message ?? message;
    } catch {
      // not JSON: the text as it is
    }
    throw new Error(`POST /v1/chat/completions: HTTP ${r.status}${message ? `: ${message}` : ""}`);
  }
  let usageTokens: number | null = null;
  for await (const data of sseData(r.body, signal)) {
    if (data === "[DONE]") break;
    const chunk = JSON.parse(data) as { choices?: { delta?: { content?: string } }[]; usage?: { completion_tokens?: number }; error?: { message?: string } };
    if (chunk.error) throw new Error(chunk.error.message ?? "the server reported an error");
    const content = chunk.choices?.[0]?.delta?.content;
    if (typeof content === "string" && content !== "") {
      meter.token(); // one chunk per token, as the server streams them
      onText(content);
    }
    if (typeof chunk.usage?.completion_tokens === "number") usageTokens = chunk.usage.completion_tokens;
  }
  if (usageTokens !== null) meter.tokens = usageTokens;
  return `server (${serverModel})`;
}

// ---- model files: the server, a file picker, OPFS -----------------------------------------------

interface FileInfo {
  name: string;
  size: number;
  url: string;
}
/** GET /bonsai/model-info (src/serve/app-routes-node.ts). */
interface ModelInfo {
  model: FileInfo;
  tokenizer: FileInfo | null;
}
interface LocalFile {
  name: string;
  bytes: Uint8Array;
}
interface LocalFiles {
  model: LocalFile;
  tokenizer: LocalFile | null;
  /** Where the bytes came from this time. */
  source: "opfs" | "server" | "file";
}

const CACHE_DIR = "bonsai-models";
/** What the in-browser mode ran last: a picked file is found again in OPFS after a reload. */
const LAST_FILES = "bonsai.localFiles";

/** The OPFS name of a file: its size and name (a changed file of the same name is another entry). */
const cacheKey = (f: { name: string; size: number }): string => `${f.size}-${f.name.replace(/[^\w.-]/g, "_")}`;

async function cacheDir(): Promise<FileSystemDirectoryHandle | null> {
  try {
    return await (await navigator.storage.getDirectory()).getDirectoryHandle(CACHE_DIR, { create: true });
  } catch {
    return null; // no OPFS here (an old browser, a locked-down profile): files are not cached
  }
}

async function readCached(f: { name: string; size: number }): Promise<Uint8Array | null> {
  const dir = await cacheDir();
  if (!dir) return null;
  try {
    const file = await (await dir.getFileHandle(cacheKey(f))).getFile();
    return file.size === f.size ? new Uint8Array(await file.arrayBuffer()) : null;
  } catch {
    return null;
  }
}

/** Store files in OPFS (each write commits whole or not at all) and drop every other entry. */
async function storeCached(files: LocalFile[]): Promise<boolean> {
  const dir = await cacheDir();
  if (!dir) return false;
  try {
    const keep = new Set(files.map((f) => cacheKey({ name: f.name, size: f.bytes.length })));
    for (const f of files) {
      const handle = await dir.getFileHandle(cacheKey({ name: f.name, size: f.bytes.length }), { create: true });
      const w = await handle.createWritable();
      await w.write(f.bytes as Uint8Array<ArrayBuffer>);
      await w.close();
    }
    for await (const name of dir.keys()) if (!keep.has(name)) await dir.removeEntry(name).catch(() => {});
    await navigator.storage.persist?.().catch(() => false);
    return true;
  } catch (e) {
    console.warn(`OPFS: could not cache the model (${errorText(e)})`);
    return false;
  }
}

async function serverModelInfo(): Promise<ModelInfo | null> {
  try {
    const r = await fetch("/bonsai/model-info");
    return r.ok ? ((await r.json()) as ModelInfo) : null;
  } catch {
    return null;
  }
}

/** A file from the server, with download progress. */
async function download(f: FileInfo, progress: (done: number) => void): Promise<Uint8Array> {
  const r = await fetch(f.url);
  if (!r.ok || r.body === null) throw new Error(`GET ${f.url}: HTTP ${r.status}`);
  const out = new Uint8Array(f.size);
  const reader = r.body.getReader();
  let at = 0;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    if (at + value.length > out.length) throw new Error(`GET ${f.url}: more than the ${f.size} bytes announced`);
    out.set(value, at);
    at += value.length;
    progress(at);
  }
  if (at !== f.size) throw new Error(`GET ${f.url}: ${at} of ${f.size} bytes arrived`);
  return out;
}

/** The server's model files, from OPFS when cached there, else downloaded (and then cached). */
async function serverFiles(info: ModelInfo): Promise<LocalFiles> {
  const wanted = [info.model, ...(info.tokenizer ? [info.tokenizer] : [])];
  const got: LocalFile[] = [];
  let downloaded = false;
  for (const f of wanted) {
    let bytes = await readCached(f);
    if (bytes === null) {
      const t0 = performance.now();
      bytes = await download(f, (done) => setState(ui.modelState, `downloading ${f.name}: ${megabytes(done)} of ${megabytes(f.size)}`));
      console.info(`bonsai: downloaded ${f.name} (${megabytes(f.size)}) in ${((performance.now() - t0) / 1000).toFixed(2)} s`);
      downloaded = true;
    }
    got.push({ name: f.name, bytes });
  }
  if (downloaded) await storeCached(got);
  return { model: got[0], tokenizer: got[1] ?? null, source: downloaded ? "server" : "opfs" };
}

/** The files the in-browser mode ran last, if OPFS still has them. */
async function lastFiles(): Promise<LocalFiles | null> {
  const raw = localStorage.getItem(LAST_FILES);
  if (raw === null) return null;
  try {
    const last = JSON.parse(raw) as { model: { name: string; size: number }; tokenizer: { name: string; size: number } | null };
    const model = await readCached(last.model);
    const tokenizer = last.tokenizer ? await readCached(last.tokenizer) : null;
    if (model === null || (last.tokenizer && tokenizer === null)) return null;
    return { model: { name: last.model.name, bytes: model }, tokenizer: last.tokenizer && tokenizer ? { name: last.tokenizer.name, bytes: tokenizer } : null, source: "opfs" };
  } catch {
    return null;
  }
}

function rememberFiles(f: LocalFiles, origin: "server" | "file"): void {
  const entry = (x: LocalFile) => ({ name: x.name, size: x.bytes.length });
  localStorage.setItem(LAST_FILES, JSON.stringify({ origin, model: entry(f.model), tokenizer: f.tokenizer ? entry(f.tokenizer) : null }));
}

// ---- the in-browser engine ---------------------------------------------------------------------

interface Engine {
  backend: Backend;
  model: Llama;
  tokenizer: Tokenizer;
  /** The model's own chat template (a GGUF's tokenizer.chat_template), if it has one. */
  chatTemplate: string | null;
  /** The backend in words: "wasm, 4 threads (relaxed)", "webgpu (…)". */
  describe: string;
}

const isGguf = (b: Uint8Array): boolean => b.length >= 4 && b[0] === 0x47 && b[1] === 0x47 && b[2] === 0x55 && b[3] === 0x46; // "GGUF"

/** A tokenizer file: a GGUF's vocabulary, Bonsai's or HF's tokenizer JSON, or llama2.c's tokenizer.bin. */
function parseTokenizer(bytes: Uint8Array, vocabSize: number): Tokenizer {
  if (isGguf(bytes)) return tokenizerFromGgufMetadata(GgufFile.open(new MemorySource(bytes)).header.metadata);
  if (bytes[0] === 0x7b /* { */) return tokenizerFromJSON(JSON.parse(new TextDecoder().decode(bytes)));
  return parseLlama2cTokenizer(bytes, vocabSize);
}

/** A GPU the page should use on its own: a hardware adapter (not a software fallback such as SwiftShader). */
async function hardwareGpu(): Promise<boolean> {
  if (!("gpu" in navigator)) return false;
  try {
    const adapter = await navigator.gpu.requestAdapter();
    if (!adapter) return false;
    const info = adapter.info as GPUAdapterInfo & { isFallbackAdapter?: boolean };
    return !info.isFallbackAdapter && info.architecture !== "swiftshader";
  } catch {
    return false;
  }
}

async function createEngineBackend(choice: string): Promise<{ backend: Backend; describe: string }> {
  if (choice === "webgpu" || (choice === "auto" && (await hardwareGpu()))) {
    const backend = await createBackend("webgpu");
    const adapter = (backend as { adapterName?: string }).adapterName;
    return { backend, describe: `webgpu${adapter ? ` (${adapter})` : ""}` };
  }
  // Worker threads share the wasm memory, which needs cross-origin isolation (COOP/COEP).
  const threads = self.crossOriginIsolated ? Math.max(1, Math.min(navigator.hardwareConcurrency || 1, 8)) : 1;
  // q8Activations: llama.cpp's numerics for quantized weights, as `bonsai generate` runs them.
  const backend = await createBackend("wasm", { threads, q8Activations: true });
  const flavour = (backend as { flavour?: string }).flavour;
  const why = self.crossOriginIsolated ? "" : ", no worker threads: the page is not cross-origin isolated";
  return { backend, describe: `wasm, ${threads} thread${threads === 1 ? "" : "s"}${flavour ? ` (${flavour})` : ""}${why}` };
}

/** The model on a backend, as `bonsai generate` opens it: quantized GGUF blocks kept, the graph fused. */
async function openEngine(files: LocalFiles, choice: string): Promise<Engine> {
  const { backend, describe } = await createEngineBackend(choice);
  let model: Llama | null = null;
  try {
    let tokenizer: Tokenizer | null = null;
    let chatTemplate: string | null = null;
    const bytes = files.model.bytes;
    if (isGguf(bytes)) {
      const gguf = GgufFile.open(new MemorySource(bytes));
      const config = llamaConfigFromGguf(gguf);
      model = llamaFromGgufWeights(backend, config, llamaWeightsFromGguf(gguf, config));
      if (gguf.header.metadata.has("tokenizer.ggml.model")) tokenizer = tokenizerFromGgufMetadata(gguf.header.metadata);
      const template = gguf.metadata("tokenizer.chat_template");
      if (typeof template === "string" && template !== "") chatTemplate = template;
    } else {
      const { config, tensors } = parseLlama2cCheckpoint(bytes);
      model = modelFromTensors(backend, { ...config }, tensors);
    }
    model.fuse();
    if (files.tokenizer) tokenizer = parseTokenizer(files.tokenizer.bytes, model.config.vocab_size);
    if (!tokenizer) throw new Error(`${files.model.name} holds no tokenizer: pick its tokenizer file too`);
    return { backend, model, tokenizer, chatTemplate, describe };
  } catch (e) {
    model?.dispose();
    backend.dispose?.();
    throw e;
  }
}

let files: LocalFiles | null = null;
let engine: Engine | null = null;
/** The one load in progress (mode switch, backend change, file pick), awaited by Send. */
let loading: Promise<Engine | null> = Promise.resolve(null);

function closeEngine(): void {
  engine?.model.dispose();
  engine?.backend.dispose?.();
  engine = null;
}

/** Load `next` files (or reopen the current ones on the selected backend) and say where they came from. */
function loadEngine(next: () => Promise<LocalFiles | null>): Promise<Engine | null> {
  loading = loading.then(async () => {
    body.modelReady = "false";
    try {
      setState(ui.modelState, "looking for the model…");
      const f = await next();
      if (f === null) {
        setState(ui.modelState, "no model: pick a model file (a GGUF, or a llama2.c .bin with its tokenizer)");
        body.modelReady = "none";
        return null;
      }
      closeEngine();
      setState(ui.modelState, `opening ${f.model.name}…`);
      const t0 = performance.now();
      engine = await openEngine(f, ui.backend.value);
      files = f;
      const where = { opfs: "loaded from OPFS", server: "downloaded from the server, cached in OPFS", file: "from a local file, cached in OPFS" }[f.source];
      const size = f.model.bytes.length + (f.tokenizer?.bytes.length ?? 0);
      setState(ui.modelState, `${f.model.name}${f.tokenizer ? ` + ${f.tokenizer.name}` : ""} (${megabytes(size)}): ${where} · ${engine.describe} · ready in ${(performance.now() - t0).toFixed(0)} ms`);
      body.modelSource = f.source;
      body.backend = engine.describe;
      body.modelReady = "true";
      return engine;
    } catch (e) {
      closeEngine();
      setState(ui.modelState, `could not load the model: ${errorText(e)}`, true);
      body.modelReady = "error";
      return null;
    }
  });
  return loading;
}

/** The model the in-browser mode starts with: the last one used if OPFS has it, else the server's. */
async function startingFiles(): Promise<LocalFiles | null> {
  if (files) return files;
  const info = await serverModelInfo();
  const lastOrigin = (JSON.parse(localStorage.getItem(LAST_FILES) ?? "{}") as { origin?: string }).origin;
  if (lastOrigin === "file" || info === null) {
    const last = await lastFiles();
    if (last) return last;
  }
  if (info === null) return null;
  const f = await serverFiles(info);
  rememberFiles(f, "server");
  return f;
}

/** Picked files: the model (GGUF or llama2.c .bin) and, for a .bin, its tokenizer. */
async function pickedFiles(list: FileList): Promise<LocalFiles> {
  const picked = await Promise.all([...list].map(async (f) => ({ name: f.name, bytes: new Uint8Array(await f.arrayBuffer()) })));
  if (picked.length === 0 || picked.length > 2) throw new Error("pick one model file, or a llama2.c .bin and its tokenizer");
  // The model is the larger file, or the GGUF that holds weights; the other is the tokenizer.
  picked.sort((a, b) => b.bytes.length - a.bytes.length);
  const f: LocalFiles = { model: picked[0], tokenizer: picked[1] ?? null, source: "file" };
  await storeCached(picked);
  rememberFiles(f, "file");
  return f;
}

async function generateHere(prompt: string, o: RunOptions, onText: (s: string) => void, meter: Meter, signal: AbortSignal): Promise<{ chat: boolean; describe: string }> {
  const e = engine ?? (await loading) ?? (await loadEngine(startingFiles));
  if (!e) throw new Error("no model loaded");
  // Chat: the conversation rendered by the model's template (ChatML when it has none), ending
  // where the template's turn ends. Plain text: a continuation of the prompt, as `bonsai generate`.
  const chat = ui.format.value === "chat" || (ui.format.value === "auto" && e.chatTemplate !== null);
  let ids: number[], stops: { stopIds?: number[]; stop?: string[] } = {};
  if (chat) {
    const template = e.chatTemplate ?? DEFAULT_CHAT_TEMPLATE;
    ids = chatPromptIds(e.tokenizer, renderChat(template, [...history.browser, { role: "user", content: prompt }], specialTokenTexts(e.tokenizer)));
    stops = chatStops(e.tokenizer, template);
  } else ids = promptIds(e.tokenizer, prompt);
  for await (const piece of stream(e.model, e.tokenizer, ids, { temperature: o.temperature, maxTokens: o.maxTokens, seed: 1337, ...stops })) {
    if (piece.token !== null) meter.token();
    if (piece.text !== "") onText(piece.text);
    if (signal.aborted) break; // leaving the loop ends the generator and frees its session
    await yieldToBrowser();
  }
  return { chat, describe: `${e.describe} · ${chat ? `chat (${e.chatTemplate !== null ? "the model's template" : "ChatML"})` : "plain text"}` };
}

// ---- sending -----------------------------------------------------------------------------------

interface RunOptions {
  temperature: number;
  maxTokens: number;
}

let running: AbortController | null = null;

function setBusy(busy: boolean): void {
  body.busy = String(busy);
  ui.send.disabled = busy;
  ui.stop.disabled = !busy;
}

async function send(): Promise<void> {
  if (running) return;
  const prompt = ui.prompt.value;
  const mode = ui.mode.value as Mode;
  const o: RunOptions = {
    temperature: Math.max(0, Number(ui.temperature.value) || 0),
    maxTokens: Math.max(1, Math.floor(Number(ui.maxTokens.value) || 256)),
  };
  // An empty prompt is a start from BOS, which only a plain in-browser continuation has.
  if (prompt.trim() === "" && (mode === "server" || ui.format.value === "chat")) return;
  ui.prompt.value = "";
  running = new AbortController();
  setBusy(true);
  addTurn("user", prompt === "" ? "(empty prompt: from the start of a text)" : prompt);
  const reply = addTurn("assistant", "");
  reply.el.classList.add("streaming");
  const meter = new Meter();
  let text = "";
  const onText = (s: string) => {
    text += s;
    reply.text.textContent = text;
    ui.stats.textContent = meter.toString();
  };
  try {
    const ran =
      mode === "server"
        ? { chat: true, describe: await chatOnServer([...history.server, { role: "user", content: prompt }], o, onText, meter, running.signal) }
        : await generateHere(prompt, o, onText, meter, running.signal);
    if (ran.chat) history[mode].push({ role: "user", content: prompt }, { role: "assistant", content: text });
    const ranOn = ran.describe;
    const line = `${meter} · ${ranOn}${running.signal.aborted ? " · stopped" : ""}`;
    reply.meta.textContent = line;
    setState(ui.stats, line);
  } catch (e) {
    if (!running.signal.aborted) {
      reply.el.classList.add("error");
      reply.meta.textContent = errorText(e);
      setState(ui.stats, errorText(e), true);
    } else reply.meta.textContent = `${meter} · stopped`;
  } finally {
    reply.el.classList.remove("streaming");
    running = null;
    setBusy(false);
  }
}

// ---- wiring ------------------------------------------------------------------------------------

function setMode(mode: Mode): void {
  ui.mode.value = mode;
  body.mode = mode;
  localStorage.setItem("bonsai.mode", mode);
  if (mode === "browser" && !engine && body.modelReady !== "false") void loadEngine(startingFiles);
}

ui.composer.addEventListener("submit", (e) => {
  e.preventDefault();
  void send();
});
ui.prompt.addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
    e.preventDefault();
    void send();
  }
});
ui.stop.addEventListener("click", () => running?.abort());
ui.clear.addEventListener("click", () => {
  history.server = [];
  history.browser = [];
  ui.transcript.replaceChildren();
  setState(ui.stats, "");
});
ui.mode.addEventListener("change", () => setMode(ui.mode.value as Mode));
ui.backend.addEventListener("change", () => {
  localStorage.setItem("bonsai.backend", ui.backend.value);
  const f = files;
  if (f) void loadEngine(async () => f); // the same bytes, reopened on the chosen backend
});
ui.modelFile.addEventListener("change", () => {
  const list = ui.modelFile.files;
  if (list && list.length > 0) void loadEngine(() => pickedFiles(list));
});

if (saved.backend && [...ui.backend.options].some((o) => o.value === saved.backend)) ui.backend.value = saved.backend;
setBusy(false);
const serverUp = await probeServer();
setMode(saved.mode === "server" || saved.mode === "browser" ? saved.mode : serverUp ? "server" : "browser");
body.ready = "true";
