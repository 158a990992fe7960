// Node adapter: open any model Bonsai can load (a Bonsai/HF directory, a GGUF file, a llama2.c
// .bin) with its tokenizer, and write checkpoint directories atomically.
import { closeSync, existsSync, openSync, readFileSync, readSync, statSync } from "node:fs";
import { dirname, join } from "node:path";
import type { Backend } from "../backend/backend.js";
import type { Llama } from "../nn/llama.js";
import type { LlamaConfig } from "../nn/config.js";
import type { Placement } from "../nn/placement.js";
import type { Tokenizer } from "../tokenizer/tokenizer.js";
import { tokenizerFromJSON } from "../tokenizer/load.js";
import { parseLlama2cTokenizer } from "../tokenizer/llama2c-tokenizer.js";
import { parseLlama2cCheckpoint } from "./llama2c.js";
import { parseSafetensors } from "../format/safetensors.js";
import type { NamedTensors } from "../format/host-tensor.js";
import { TOKENIZER_FILE, llamaConfigFromJson, modelFromTensors, type CheckpointFile } from "./checkpoint.js";
import { openSafetensors } from "../format/safetensors.js";
import { type SafetensorsLocation, lazyModelFromSafetensors } from "./safetensors-lazy.js";
import { commitFiles, readBytes, recoverCheckpointDir } from "./fs-node.js";
import { FileSource } from "./byte-source-node.js";
import { GgufFile, llamaConfigFromGguf } from "./gguf-llama.js";
import { GGUF_MAGIC } from "../format/gguf.js";
import { lazyLlamaFromGguf } from "./gguf-llama-lazy.js";
import { QAT_FILE, applyQat, readQatFile } from "../train/qat.js";
import { tokenizerFromGgufMetadata } from "../tokenizer/gguf-vocab.js";
import { CHAT_TEMPLATE_FILE, chatTemplateFromGguf, chatTemplateOfDirectory } from "./chat-template-files.js";

export interface LoadedModel {
  model: Llama;
  tokenizer: Tokenizer | null;
  /** What was opened, for messages. */
  format: "hf-dir" | "gguf" | "llama2c";
  /**
   * The model's Jinja chat template (GGUF tokenizer.chat_template; an HF directory's
   * chat_template.jinja or tokenizer_config.json chat_template), or null: then chats use
   * DEFAULT_CHAT_TEMPLATE (runtime/chat.ts). llama2.c files have none.
   */
  chatTemplate: string | null;
}

function readJson(path: string): Record<string, unknown> {
  const text = new TextDecoder().decode(readBytes(path));
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw new Error(`${path} is not valid JSON: ${(e as Error).message.replace(/\s+/g, " ")}`);
  }
  if (typeof v !== "object" || v === null || Array.isArray(v)) throw new Error(`${path} must hold a JSON object`);
  return v as Record<string, unknown>;
}

/** Weights of an HF directory: model.safetensors, or shards listed in model.safetensors.index.json. */
function readDirectoryTensors(dir: string): NamedTensors {
  const all: NamedTensors = new Map();
  for (const file of safetensorsFiles(dir)) for (const [name, t] of parseSafetensors(readBytes(file)).tensors) all.set(name, t);
  return all;
}

/** The safetensors files of an HF directory (model.safetensors, or the shards an index lists). */
function safetensorsFiles(dir: string): string[] {
  const single = join(dir, "model.safetensors");
  if (existsSync(single)) return [single];
  const index = join(dir, "model.safetensors.index.json");
  if (!existsSync(index)) throw new Error(`${dir} has neither model.safetensors nor model.safetensors.index.json`);
  const weightMap = readJson(index).weight_map;
  if (typeof weightMap !== "object" || weightMap === null) throw new Error(`${index} lacks a weight_map`);
  return [...new Set(Object.values(weightMap as Record<string, string>))].map((shard) => join(dir, shard));
}

/** An HF directory's chat template, or null. */
function directoryChatTemplate(dir: string): string | null {
  const jinja = join(dir, CHAT_TEMPLATE_FILE);
  const config = join(dir, "tokenizer_config.json");
  try {
    return chatTemplateOfDirectory(existsSync(jinja) ? readFileSync(jinja, "utf8") : null, existsSync(config) ? readJson(config) : null);
  } catch (e) {
    throw new Error(`${dir}: ${(e as Error).message}`);
  }
}

/** A model of an HF directory whose tensors are read on first use (the files stay open until then). */
function lazyDirectoryModel(dir: string, where: ModelPlace, rawConfig: Record<string, unknown>, expertCacheBytes?: number): Llama {
  const config = llamaConfigFromJson(rawConfig);
  const sources: FileSource[] = [];
  try {
    const tensors = new Map<string, SafetensorsLocation>();
    for (const path of safetensorsFiles(dir)) {
      const source = new FileSource(path);
      sources.push(source);
      let header;
      try {
        header = openSafetensors(source);
      } catch (e) {
        throw new Error(`${path}: ${(e as Error).message}`);
      }
      for (const entry of header.entries) tensors.set(entry.name, { source, dataStart: header.dataStart, entry });
    }
    return lazyModelFromSafetensors(placeFor(where, config), config, tensors, sources, { expertCacheBytes });
  } catch (e) {
    for (const s of sources) s.close();
    throw e;
  }
}

/** The first four bytes of a file, as a little-endian u32 (0 for shorter files). */
function magic(path: string): number {
  const fd = openSync(path, "r");
  try {
    const b = new Uint8Array(4);
    return readSync(fd, b, 0, 4, 0) === 4 ? new DataView(b.buffer).getUint32(0, true) : 0;
  } finally {
    closeSync(fd);
  }
}

/** The tokenizer stored in a GGUF's metadata, or null for files without one. */
function ggufTokenizer(f: GgufFile): Tokenizer | null {
  return f.header.metadata.has("tokenizer.ggml.model") ? tokenizerFromGgufMetadata(f.header.metadata) : null;
}

/**
 * A tokenizer file: Bonsai's tokenizer JSON or HF tokenizer.json, a GGUF's vocabulary, or
 * llama2.c's tokenizer.bin (vocabSize tells how many entries to read, as llama2.c's run.c does).
 */
export function loadTokenizerFile(path: string, vocabSize?: number): Tokenizer {
  if (!existsSync(path)) throw new Error(`tokenizer not found: ${path}`);
  if (path.endsWith(".json")) return tokenizerFromJSON(readJson(path));
  if (magic(path) === GGUF_MAGIC) {
    const source = new FileSource(path);
    try {
      const tok = ggufTokenizer(GgufFile.open(source));
      if (!tok) throw new Error(`${path} holds no tokenizer (no tokenizer.ggml.model)`);
      return tok;
    } finally {
      source.close();
    }
  }
  return parseLlama2cTokenizer(readBytes(path), vocabSize);
}

/**
 * The library's `loadTokenizer(path)`: a tokenizer file (HF tokenizer.json, Bonsai's JSON, a GGUF
 * model or vocabulary, llama2.c's tokenizer.bin) or a model directory's tokenizer.
 */
export function loadTokenizer(path: string): Tokenizer {
  if (existsSync(path) && statSync(path).isDirectory()) {
    const file = [join(path, TOKENIZER_FILE), join(path, "tokenizer.json")].find((p) => existsSync(p));
    if (!file) throw new Error(`${path} holds no tokenizer (${TOKENIZER_FILE} or tokenizer.json)`);
    return loadTokenizerFile(file);
  }
  return loadTokenizerFile(path);
}

export interface LoadModelOptions {
  /**
   * Keep a GGUF's Q8_0 / Q4_0 / F16 matrices (projections and the embedding table) as they are
   * stored and run them through the backend's quantized kernels (inference only). Default false:
   * every tensor becomes f32.
   */
  quantized?: boolean;
  /**
   * Fold the graph for inference (Llama.fuse: stacked Q/K/V and gate/up, norm gains folded):
   * faster, but the model can then not be trained or saved. Default false.
   */
  fuse?: boolean;
  /**
   * Read a GGUF's tensors on first use instead of at open (io/lazy-weights.ts): opening reads the
   * header only, each layer's weights are read straight into backend memory the first time the
   * forward pass reaches it, and tensors the model does not use are never read. With `fuse`,
   * the stacked matrices are read into on first use the same way (the parts never exist
   * apart). HF directories read their safetensors tensors by range the same way. Default false:
   * a GGUF's tensors stream into backend memory at open. llama2.c .bin files are read at open
   * either way.
   */
  lazy?: boolean;
  /**
   * Page a MoE model's experts (inference only): each layer keeps the most recently used experts
   * resident, as many as fit this many bytes over all layers, and reads the others from the file
   * when the router picks them (the rest of the model is resident). Default: every expert resident.
   */
  expertCacheBytes?: number;
}

/**
 * Where a model goes: one backend, or a placement made for its layer count (which only the file
 * tells), e.g. `(n) => splitLayers(gpu, cpu, n, 4)`.
 */
export type ModelPlace = Backend | ((numLayers: number) => Placement);

function placeFor(where: ModelPlace, config: LlamaConfig): Backend | Placement {
  return typeof where === "function" ? where(config.num_hidden_layers) : where;
}

/** Open a model file or directory on `where`. `tokenizerPath` overrides the model's own tokenizer. */
export function loadModel(path: string, where: ModelPlace, tokenizerPath?: string, opts: LoadModelOptions = {}): LoadedModel {
  if (!existsSync(path)) throw new Error(`model not found: ${path}`);
  let loaded: LoadedModel;
  if (statSync(path).isDirectory()) {
    recoverCheckpointDir(path);
    const configPath = join(path, "config.json");
    if (!existsSync(configPath)) throw new Error(`${path} is not a model directory: config.json is missing`);
    const raw = readJson(configPath);
    const chatTemplate = directoryChatTemplate(path);
    // Paged experts are read by range, as a lazy model reads its weights; eagerly, the rest at once.
    const paged = opts.expertCacheBytes !== undefined;
    const model = opts.lazy || paged ? lazyDirectoryModel(path, where, raw, opts.expertCacheBytes) : modelFromTensors(placeFor(where, llamaConfigFromJson(raw)), raw, readDirectoryTensors(path));
    if (paged && !opts.lazy)
      try {
        model.deferred!.ensureAll();
      } catch (e) {
        model.dispose();
        throw e;
      }
    // Bonsai's own tokenizer file keeps every detail (scores, llama2.c rules); else HF's.
    const own = [join(path, TOKENIZER_FILE), join(path, "tokenizer.json")].find((p) => existsSync(p));
    loaded = { model, tokenizer: own ? loadTokenizerFile(own) : null, format: "hf-dir", chatTemplate };
    // A quantization-aware checkpoint runs as it trained: with its weights fake-quantized.
    const qatPath = join(path, QAT_FILE);
    if (existsSync(qatPath)) applyQat(model, readQatFile(readFileSync(qatPath, "utf8")));
  } else if (magic(path) === GGUF_MAGIC) {
    // Only the header is read here; each tensor is read as the model takes it.
    const source = new FileSource(path);
    let owned = false; // a lazy model keeps the file open until it has read its weights
    try {
      const file = GgufFile.open(source);
      const config = llamaConfigFromGguf(file);
      const chatTemplate = chatTemplateFromGguf(file.header.metadata);
      // Eager or lazy, the tensors stream from the file into backend memory (no host copy of a
      // whole tensor), fused matrices filled in place; eagerly, all of them here.
      const model = lazyLlamaFromGguf(placeFor(where, config), file, config, { quantized: opts.quantized, expertCacheBytes: opts.expertCacheBytes });
      owned = true;
      try {
        if (opts.fuse) model.fuse();
        if (!opts.lazy) model.deferred!.ensureAll(); // closes the file
      } catch (e) {
        model.dispose(); // closes the file
        throw e;
      }
      loaded = { model, tokenizer: ggufTokenizer(file), format: "gguf", chatTemplate };
    } finally {
      if (!owned) source.close();
    }
  } else {
    if (opts.expertCacheBytes !== undefined) throw new Error("expert cache: a llama2c model has no experts to page");
    const { config, tensors } = parseLlama2cCheckpoint(readBytes(path));
    const model = modelFromTensors(placeFor(where, config), { ...config }, tensors);
    // run.c's default is a tokenizer.bin next to the program; we look next to the model.
    const sibling = join(dirname(path), "tokenizer.bin");
    loaded = { model, tokenizer: existsSync(sibling) ? loadTokenizerFile(sibling, config.vocab_size) : null, format: "llama2c", chatTemplate: null };
  }
  try {
    if (opts.fuse) loaded.model.fuse(); // a no-op when already fused
    if (tokenizerPath !== undefined) loaded.tokenizer = loadTokenizerFile(tokenizerPath, loaded.model.config.vocab_size);
    const tok = loaded.tokenizer;
    if (tok && tok.vocabSize > loaded.model.config.vocab_size)
      throw new Error(`the tokenizer has ${tok.vocabSize} tokens but the model's vocabulary is ${loaded.model.config.vocab_size}`);
  } catch (e) {
    loaded.model.dispose(); // its memory, and a lazy model's open files
    throw e;
  }
  return loaded;
}

/** Tokenizer files (and the chat template) a model directory may hold; a new commit without one removes the old one. */
const TOKENIZER_FILES = [TOKENIZER_FILE, "tokenizer.json", "tokenizer_config.json", CHAT_TEMPLATE_FILE];

/** Write checkpoint files into `dir` as one atomic commit (see fs-node.ts). */
export function writeCheckpoint(dir: string, files: CheckpointFile[]): void {
  const names = new Set(files.map((f) => f.name));
  const stale = TOKENIZER_FILES.filter((n) => !names.has(n) && existsSync(join(dir, n)));
  commitFiles(dir, files, { remove: stale });
}

/** Read a JSON file of a checkpoint directory, or null when absent. */
export function readCheckpointJson(dir: string, name: string): Record<string, unknown> | null {
  const p = join(dir, name);
  return existsSync(p) ? readJson(p) : null;
}

export function readCheckpointTensors(dir: string, name: string): NamedTensors {
  return parseSafetensors(readBytes(join(dir, name))).tensors;
}

export function readTextFile(path: string): string {
  if (!existsSync(path)) throw new Error(`file not found: ${path}`);
  if (statSync(path).isDirectory()) throw new Error(`${path} is a directory, expected a text file`);
  return readFileSync(path, "utf8");
}
