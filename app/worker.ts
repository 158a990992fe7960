// The chat page's inference worker (a module Web Worker started by app/main.ts, bundled by
// scripts/build-app.mjs into dist/app/worker.js): everything heavy of the "in this browser" mode
// runs here, so the page's main thread only renders. It
//   - reads the model files: a picked file's blob (cloned from the page, read here), an OPFS
//     entry (named by the file's identity, FileSpec.key), or a download from the server (with
//     progress), and caches what it did not find in OPFS;
//   - opens them as `bonsai generate` does (quantized GGUF blocks kept, the graph fused) on wasm,
//     with kernel worker threads when the page is cross-origin isolated, or on WebGPU (which
//     Chromium exposes in workers too);
//   - streams each token's text back by postMessage, and checks between tokens whether the page
//     asked it to stop (a shared word the page writes the generation's id into, read with
//     Atomics.load, so a stop is seen at the next token without waiting for the event loop; a
//     `stop` message where the page is not isolated, with a macrotask turn per token to read it).
// Requests run one at a time, in the order they came (a backend change waits for the generation
// in progress); `stop` is handled at once.
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
import { type FileSpec, type FromWorker, type Source, type ToWorker, errorText, megabytes } from "./protocol.js";

/** The worker's global scope, as far as this file uses it (app/tsconfig.json types the DOM). */
const scope = self as unknown as {
  postMessage(message: FromWorker): void;
  addEventListener(type: "message", listener: (e: MessageEvent<ToWorker>) => void): void;
};
const post = (m: FromWorker): void => scope.postMessage(m);

class NotCached extends Error {}

// ---- files: blobs, OPFS, downloads -------------------------------------------------------------

const CACHE_DIR = "bonsai-models";

async function cacheDir(): Promise<FileSystemDirectoryHandle | null> {
  try {
    return await (await navigator.storage.getDirectory()).getDirectoryHandle(CACHE_DIR, { create: true });
  } catch {
    return null; // no OPFS here (an old browser, a locked-down profile): files are not cached
  }
}

async function readCached(dir: FileSystemDirectoryHandle | null, f: FileSpec): Promise<Uint8Array | null> {
  if (!dir) return null;
  try {
    const file = await (await dir.getFileHandle(f.key)).getFile();
    return file.size === f.size ? new Uint8Array(await file.arrayBuffer()) : null;
  } catch {
    return null;
  }
}

/** Store new entries (each write commits whole or not at all) and drop every entry not in `keep`. */
async function storeCached(dir: FileSystemDirectoryHandle | null, files: { key: string; bytes: Uint8Array }[], keep: Set<string>): Promise<boolean> {
  if (!dir) return false;
  try {
    for (const f of files) {
      const w = await (await dir.getFileHandle(f.key, { create: true })).createWritable();
      await w.write(f.bytes as Uint8Array<ArrayBuffer>);
      await w.close();
    }
    for await (const name of dir.keys()) if (!keep.has(name)) await dir.removeEntry(name).catch(() => {});
    return true;
  } catch (e) {
    console.warn(`OPFS: could not cache the model (${errorText(e)})`);
    return false;
  }
}

/** A file from the server, with download progress. */
async function download(f: FileSpec & { url: string }, progress: (done: number) => void): Promise<Uint8Array> {
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

interface Files {
  model: { name: string; bytes: Uint8Array };
  tokenizer: { name: string; bytes: Uint8Array } | null;
  source: Source;
  /** Whether OPFS holds them now. */
  cached: boolean;
}

/** Each file from its blob, else from OPFS, else downloaded; what did not come from OPFS is cached there. */
async function readFiles(id: number, specs: FileSpec[]): Promise<Files> {
  const dir = await cacheDir();
  const got: { name: string; bytes: Uint8Array }[] = [];
  const fresh: { key: string; bytes: Uint8Array }[] = [];
  let source: Source = "opfs";
  for (const f of specs) {
    let bytes: Uint8Array | null = null;
    if (f.blob) {
      bytes = new Uint8Array(await f.blob.arrayBuffer());
      source = "file";
    } else bytes = await readCached(dir, f);
    const fromCache = bytes !== null && !f.blob;
    if (bytes === null) {
      if (f.url === undefined) throw new NotCached(`${f.name} is no longer in this browser's storage`);
      const t0 = performance.now();
      const url = f.url;
      bytes = await download({ ...f, url }, (done) => post({ type: "status", id, text: `downloading ${f.name}: ${megabytes(done)} of ${megabytes(f.size)}` }));
      console.info(`bonsai: downloaded ${f.name} (${megabytes(f.size)}) in ${((performance.now() - t0) / 1000).toFixed(2)} s`);
      if (source === "opfs") source = "server";
    }
    if (bytes.length !== f.size) throw new Error(`${f.name}: ${bytes.length} bytes, not the ${f.size} expected`);
    if (!fromCache) fresh.push({ key: f.key, bytes });
    got.push({ name: f.name, bytes });
  }
  const cached = fresh.length === 0 ? dir !== null : await storeCached(dir, fresh, new Set(specs.map((f) => f.key)));
  return { model: got[0], tokenizer: got[1] ?? null, source, cached };
}

// ---- the engine --------------------------------------------------------------------------------

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

/** A GPU to use unasked: a hardware adapter (not a software fallback such as SwiftShader). */
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
  // Kernel threads share the wasm memory, which needs cross-origin isolation (COOP/COEP).
  const threads = self.crossOriginIsolated ? Math.max(1, Math.min(navigator.hardwareConcurrency || 1, 8)) : 1;
  // q8Activations: llama.cpp's numerics for quantized weights, as `bonsai generate` runs them.
  const backend = await createBackend("wasm", { threads, q8Activations: true });
  const flavour = (backend as { flavour?: string }).flavour;
  const why = self.crossOriginIsolated ? "" : ", no kernel threads: the page is not cross-origin isolated";
  return { backend, describe: `wasm, ${threads} thread${threads === 1 ? "" : "s"}${flavour ? ` (${flavour})` : ""}${why}` };
}

/** The model on a backend, as `bonsai generate` opens it: quantized GGUF blocks kept, the graph fused. */
async function openEngine(files: Files, choice: string): Promise<Engine> {
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

let files: Files | null = null;
let engine: Engine | null = null;

function closeEngine(): void {
  engine?.model.dispose();
  engine?.backend.dispose?.();
  engine = null;
}

async function open(id: number, next: Files, backend: string): Promise<void> {
  closeEngine();
  const t0 = performance.now();
  post({ type: "status", id, text: `opening ${next.model.name}…` });
  engine = await openEngine(next, backend);
  files = next;
  const bytes = next.model.bytes.length + (next.tokenizer?.bytes.length ?? 0);
  post({ type: "opened", id, model: next.model.name, tokenizer: next.tokenizer?.name ?? null, bytes, source: next.source, cached: next.cached, describe: engine.describe, ms: performance.now() - t0 });
}

// ---- generating, and stopping ------------------------------------------------------------------

/** The page's shared stop word (a generation's id), when it is cross-origin isolated. */
let stopWord: Int32Array | null = null;
/** The last generation a `stop` message named. */
let stopAsked = 0;
const stopped = (id: number): boolean => stopAsked === id || (stopWord !== null && Atomics.load(stopWord, 0) === id);

/** A macrotask turn (the `stop` message's chance to arrive) without setTimeout's clamping. */
function turn(): Promise<void> {
  return new Promise((resolve) => {
    const channel = new MessageChannel();
    channel.port1.onmessage = () => resolve();
    channel.port2.postMessage(null);
  });
}

async function generate(m: Extract<ToWorker, { type: "generate" }>): Promise<void> {
  const e = engine;
  if (!e) throw new Error("no model loaded");
  // Chat: the conversation rendered by the model's template (ChatML when it has none), ending
  // where the template's turn ends. Plain text: a continuation of the prompt, as `bonsai generate`.
  const chat = m.format === "chat" || (m.format === "auto" && e.chatTemplate !== null);
  let ids: number[];
  let stops: { stopIds?: number[]; stop?: string[] } = {};
  if (chat) {
    const template = e.chatTemplate ?? DEFAULT_CHAT_TEMPLATE;
    ids = chatPromptIds(e.tokenizer, renderChat(template, [...m.history, { role: "user", content: m.prompt }], specialTokenTexts(e.tokenizer)));
    stops = chatStops(e.tokenizer, template);
  } else ids = promptIds(e.tokenizer, m.prompt);
  let tokens = 0;
  let wasStopped = stopped(m.id);
  if (!wasStopped) {
    for await (const piece of stream(e.model, e.tokenizer, ids, { temperature: m.temperature, maxTokens: m.maxTokens, seed: 1337, ...stops })) {
      if (piece.token !== null) tokens++;
      if (piece.text !== "" || piece.token !== null) post({ type: "text", id: m.id, text: piece.text, token: piece.token !== null });
      if (stopWord === null) await turn();
      if (stopped(m.id)) {
        wasStopped = true;
        break; // leaving the loop ends the generator and frees its session
      }
    }
  }
  const describe = `${e.describe} · ${chat ? `chat (${e.chatTemplate !== null ? "the model's template" : "ChatML"})` : "plain text"}`;
  post({ type: "done", id: m.id, chat, describe, tokens, stopped: wasStopped });
}

// ---- requests ----------------------------------------------------------------------------------

async function handle(m: ToWorker): Promise<void> {
  if (m.type === "init" || m.type === "stop") return;
  try {
    if (m.type === "open") await open(m.id, await readFiles(m.id, [m.model, ...(m.tokenizer ? [m.tokenizer] : [])]), m.backend);
    else if (m.type === "reopen") {
      if (!files) throw new Error("no model files to reopen");
      await open(m.id, files, m.backend); // the same bytes, from where they came
    } else await generate(m);
  } catch (e) {
    if (m.type !== "generate") closeEngine();
    post({ type: "error", id: m.id, message: errorText(e), ...(e instanceof NotCached ? { code: "not-cached" as const } : {}) });
  }
}

let queue: Promise<void> = Promise.resolve();
scope.addEventListener("message", (e) => {
  const m = e.data;
  if (m.type === "init") stopWord = m.stop;
  else if (m.type === "stop") stopAsked = m.id;
  else queue = queue.then(() => handle(m));
});
