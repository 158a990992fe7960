// Bonsai's chat page (app/index.html), bundled by scripts/build-app.mjs into dist/app/ and served
// by `bonsai serve` (src/serve/app-routes-node.ts). Two modes:
//   Server          — POST /v1/chat/completions with stream: true (OpenAI's SSE chunks), model id
//                     from GET /v1/models.
//   In this browser — the model file from GET /bonsai/model (+ /bonsai/tokenizer; both described,
//                     with their sha256, by GET /bonsai/model-info) or from a file picker, cached
//                     in OPFS under its content identity (the server's sha256; a picked file's
//                     name, size and lastModified), run by the library in a dedicated Web Worker
//                     (app/worker.ts): wasm with kernel threads when the page is cross-origin
//                     isolated, WebGPU when the browser has a hardware adapter (or when chosen).
//                     The page's main thread only renders the tokens the worker streams back;
//                     Stop ends the generation in the worker before its next token.
// The page's state is also written to <body data-*> (mode, busy, model-source, model-ready,
// backend) for tests and styling.
import { type ChatMessage, type FileSpec, type FromWorker, type ToWorker, errorText, megabytes } from "./protocol.js";
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

type Message = ChatMessage;
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

// ---- the in-browser mode: files, and the worker that runs them -----------------------------------

/** GET /bonsai/model-info (src/serve/app-routes-node.ts): each file's name, size, sha256 and URL. */
interface ServerFile {
  name: string;
  size: number;
  sha256?: string;
  url: string;
}
interface ModelInfo {
  model: ServerFile;
  tokenizer: ServerFile | null;
}

/** What the in-browser mode ran last (its files' OPFS keys): a picked file is found again after a reload. */
const LAST_FILES = "bonsai.localFiles";
interface LastFiles {
  origin: "server" | "file";
  model: FileSpec;
  tokenizer: FileSpec | null;
}

const safeName = (name: string): string => name.replace(/[^\w.-]/g, "_").slice(0, 120);
/**
 * A file's OPFS entry, named by what identifies its content: the server's sha256 (a changed model
 * of the same name and size is another entry, so it is downloaded again, not served stale); for
 * a picked file, its name, size and lastModified.
 */
const serverKey = (f: ServerFile): string => (f.sha256 ? `sha256-${f.sha256}-${safeName(f.name)}` : `size-${f.size}-${safeName(f.name)}`);
const fileKey = (f: File): string => `file-${f.size}-${f.lastModified}-${safeName(f.name)}`;
/** A spec without its blob or URL: what localStorage keeps, and what the worker then looks up in OPFS. */
const bare = (f: FileSpec): FileSpec => ({ name: f.name, size: f.size, key: f.key });

async function serverModelInfo(): Promise<ModelInfo | null> {
  try {
    const r = await fetch("/bonsai/model-info");
    return r.ok ? ((await r.json()) as ModelInfo) : null;
  } catch {
    return null;
  }
}

function lastFiles(): LastFiles | null {
  try {
    const last = JSON.parse(localStorage.getItem(LAST_FILES) ?? "null") as LastFiles | null;
    return last && typeof last.model?.key === "string" ? last : null; // an entry of an older page has no keys
  } catch {
    return null;
  }
}

function rememberFiles(origin: LastFiles["origin"], model: FileSpec, tokenizer: FileSpec | null): void {
  localStorage.setItem(LAST_FILES, JSON.stringify({ origin, model: bare(model), tokenizer: tokenizer ? bare(tokenizer) : null } satisfies LastFiles));
}

/** The shared word the page writes a generation's id into to stop it (cross-origin isolated pages only). */
const stopWord = self.crossOriginIsolated ? new Int32Array(new SharedArrayBuffer(4)) : null;

class WorkerError extends Error {
  constructor(
    message: string,
    readonly code?: string,
  ) {
    super(message);
  }
}

/** One request to the worker in flight: its answers go to `onMessage` until `done`, `opened` or `error`. */
interface Pending {
  onMessage: (m: FromWorker) => void;
  resolve: (m: FromWorker) => void;
  reject: (e: Error) => void;
}

let worker: Worker | null = null;
let nextId = 1;
const pending = new Map<number, Pending>();

function startWorker(): Worker {
  if (worker) return worker;
  const w = new Worker(new URL("./worker.js", import.meta.url), { type: "module", name: "bonsai-inference" });
  w.onmessage = (e: MessageEvent<FromWorker>) => {
    const m = e.data;
    const p = pending.get(m.id);
    if (!p) return;
    if (m.type === "error") {
      pending.delete(m.id);
      p.reject(new WorkerError(m.message, m.code));
    } else if (m.type === "done" || m.type === "opened") {
      pending.delete(m.id);
      p.resolve(m);
    } else p.onMessage(m);
  };
  // The worker failed to start, or died: every request in flight fails, the next one starts another.
  w.onerror = (e) => {
    e.preventDefault();
    worker = null;
    w.terminate();
    const why = new Error(`the inference worker failed: ${e.message || "it could not start"}`);
    for (const p of pending.values()) p.reject(why);
    pending.clear();
    opened = null;
    haveFiles = false;
  };
  w.postMessage({ type: "init", stop: stopWord } satisfies ToWorker);
  worker = w;
  return w;
}

/** Send a request to the worker (its id given by `make`); resolves with its last answer. */
function request<T extends FromWorker>(make: (id: number) => ToWorker, onMessage: (m: FromWorker) => void = () => {}): { id: number; done: Promise<T> } {
  const w = startWorker();
  const id = nextId++;
  const done = new Promise<T>((resolve, reject) => pending.set(id, { onMessage, resolve: resolve as (m: FromWorker) => void, reject }));
  w.postMessage(make(id));
  return { id, done };
}

/** The model the worker holds, as the page describes it. */
interface Opened {
  describe: string;
}
let opened: Opened | null = null;
/** Files the worker has been given (a backend change reopens them there). */
let haveFiles = false;
/** The one load in progress (mode switch, backend change, file pick), awaited by Send. */
let loading: Promise<Opened | null> = Promise.resolve(null);

type OpenedMessage = Extract<FromWorker, { type: "opened" }>;
const showStatus = (m: FromWorker) => {
  if (m.type === "status") setState(ui.modelState, m.text);
};

/** Open files in the worker on the selected backend. */
function openFiles(model: FileSpec, tokenizer: FileSpec | null): Promise<OpenedMessage> {
  return request<OpenedMessage>((id) => ({ type: "open", id, model, tokenizer, backend: ui.backend.value }), showStatus).done;
}

/** The model the in-browser mode starts with: the last one used if OPFS has it, else the server's. */
async function startingFiles(): Promise<OpenedMessage | null> {
  if (haveFiles) return request<OpenedMessage>((id) => ({ type: "reopen", id, backend: ui.backend.value }), showStatus).done;
  const info = await serverModelInfo();
  const last = lastFiles();
  if (last && (last.origin === "file" || info === null)) {
    try {
      return await openFiles(last.model, last.tokenizer);
    } catch (e) {
      if (!(e instanceof WorkerError && e.code === "not-cached")) throw e;
    }
  }
  if (info === null) return null;
  const spec = (f: ServerFile): FileSpec => ({ name: f.name, size: f.size, key: serverKey(f), url: f.url });
  const model = spec(info.model);
  const tokenizer = info.tokenizer ? spec(info.tokenizer) : null;
  const m = await openFiles(model, tokenizer);
  rememberFiles("server", model, tokenizer);
  return m;
}

/** Picked files: the model (GGUF or llama2.c .bin) and, for a .bin, its tokenizer; read in the worker. */
async function pickedFiles(list: FileList): Promise<OpenedMessage> {
  const picked = [...list];
  if (picked.length === 0 || picked.length > 2) throw new Error("pick one model file, or a llama2.c .bin and its tokenizer");
  // The model is the larger file; the other is the tokenizer.
  picked.sort((a, b) => b.size - a.size);
  const [model, tokenizer] = picked.map((f): FileSpec => ({ name: f.name, size: f.size, key: fileKey(f), blob: f }));
  const m = await openFiles(model, tokenizer ?? null);
  rememberFiles("file", model, tokenizer ?? null);
  return m;
}

/** Load files in the worker (`next`) and say where they came from; null: there is no model. */
function loadEngine(next: () => Promise<OpenedMessage | null>): Promise<Opened | null> {
  loading = loading.then(async () => {
    body.modelReady = "false";
    opened = null;
    try {
      setState(ui.modelState, "looking for the model…");
      const m = await next();
      if (m === null) {
        setState(ui.modelState, "no model: pick a model file (a GGUF, or a llama2.c .bin with its tokenizer)");
        body.modelReady = "none";
        return null;
      }
      haveFiles = true;
      const where = { opfs: "loaded from OPFS", server: "downloaded from the server", file: "from a local file" }[m.source] + (m.source !== "opfs" && m.cached ? ", cached in OPFS" : "");
      if (m.source !== "opfs" && m.cached) await navigator.storage.persist?.().catch(() => false);
      setState(ui.modelState, `${m.model}${m.tokenizer ? ` + ${m.tokenizer}` : ""} (${megabytes(m.bytes)}): ${where} · ${m.describe} · ready in ${m.ms.toFixed(0)} ms`);
      body.modelSource = m.source;
      body.backend = m.describe;
      body.modelReady = "true";
      opened = { describe: m.describe };
      return opened;
    } catch (e) {
      setState(ui.modelState, `could not load the model: ${errorText(e)}`, true);
      body.modelReady = "error";
      return null;
    }
  });
  return loading;
}

async function generateHere(prompt: string, o: RunOptions, onText: (s: string) => void, meter: Meter, signal: AbortSignal): Promise<{ chat: boolean; describe: string; stopped: boolean }> {
  const ready = opened ?? (await loading) ?? (await loadEngine(startingFiles));
  if (!ready) throw new Error("no model loaded");
  const { id, done } = request<Extract<FromWorker, { type: "done" }>>(
    (id) => ({ type: "generate", id, prompt, history: history.browser, format: ui.format.value, temperature: o.temperature, maxTokens: o.maxTokens }),
    (m) => {
      if (m.type !== "text") return;
      if (m.token) meter.token();
      if (m.text !== "") onText(m.text);
    },
  );
  // Stop: the shared word is read by the worker before its next token; the message is for a page
  // that is not cross-origin isolated (and costs nothing otherwise).
  const stop = () => {
    if (stopWord) Atomics.store(stopWord, 0, id);
    worker?.postMessage({ type: "stop", id } satisfies ToWorker);
  };
  signal.addEventListener("abort", stop, { once: true });
  if (signal.aborted) stop();
  try {
    const m = await done;
    meter.tokens = m.tokens;
    return { chat: m.chat, describe: m.describe, stopped: m.stopped };
  } finally {
    signal.removeEventListener("abort", stop);
  }
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
        ? { chat: true, describe: await chatOnServer([...history.server, { role: "user", content: prompt }], o, onText, meter, running.signal), stopped: running.signal.aborted }
        : await generateHere(prompt, o, onText, meter, running.signal);
    if (ran.chat) history[mode].push({ role: "user", content: prompt }, { role: "assistant", content: text });
    const ranOn = ran.describe;
    const line = `${meter} · ${ranOn}${ran.stopped ? " · stopped" : ""}`;
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
  if (mode === "browser" && !opened && body.modelReady !== "false") void loadEngine(startingFiles);
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
  // The same bytes, reopened in the worker on the chosen backend (after a load in progress).
  if (haveFiles || body.modelReady === "false") void loadEngine(startingFiles);
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
