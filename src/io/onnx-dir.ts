// The model directory transformers.js loads from a local folder: config.json (HF's LlamaConfig,
// plus `transformers.js_config`), generation_config.json, the tokenizer in HF form when it has
// one, and onnx/model.onnx (io/onnx-llama.ts's graph) with its external data files when the
// weights do not fit in one protobuf message. File contents only; writing them is the Node
// adapter's job, so this runs in a browser too.
import type { Llama } from "../nn/llama.js";
import type { Tokenizer } from "../tokenizer/tokenizer.js";
import { toHfConfigJson } from "../nn/config.js";
import { PROTOBUF_LIMIT, initializerBytes, serializeOnnx } from "../format/onnx.js";
import { type CheckpointFile, configWithTokenIds, generationConfigFile, hfTokenizerFiles, jsonFile, modelTensors } from "./checkpoint.js";
import { llamaToOnnx } from "./onnx-llama.js";

export const ONNX_SUBFOLDER = "onnx";
export const ONNX_MODEL_FILE = "model.onnx";

/** Room left in the model file for the graph itself when the weights stay inside it. */
const GRAPH_ROOM = 64 * 2 ** 20;

export interface OnnxDirectoryOptions {
  /** Weights in external data files: "auto" (default) when they would not fit in the model file. */
  externalData?: "auto" | "always" | "never";
  /** Most bytes per external data file (tests use small ones to get several). */
  maxDataFileBytes?: number;
  /** The chat template, written into tokenizer_config.json (where transformers.js reads it). */
  chatTemplate?: string | null;
}

export interface OnnxDirectory {
  /** config.json, generation_config.json, tokenizer files: for the directory itself. */
  files: CheckpointFile[];
  /** model.onnx and any model.onnx_data files: for its onnx/ folder. */
  onnxFiles: CheckpointFile[];
  /** Whether the tokenizer was written (false: none given, or a kind without an HF form). */
  tokenizerWritten: boolean;
}

export async function onnxModelDirectory(model: Llama, tokenizer: Tokenizer | null, opts: OnnxDirectoryOptions = {}): Promise<OnnxDirectory> {
  const config = configWithTokenIds(model.config, tokenizer);
  const graph = llamaToOnnx(config, await modelTensors(model));
  const mode = opts.externalData ?? "auto";
  const external = mode === "always" || (mode === "auto" && initializerBytes(graph.graph) > PROTOBUF_LIMIT - GRAPH_ROOM);
  const { model: bytes, dataFiles } = serializeOnnx(graph, external ? { modelName: ONNX_MODEL_FILE, maxFileBytes: opts.maxDataFileBytes } : undefined);
  const tokenizerFiles = tokenizer ? hfTokenizerFiles(tokenizer, opts.chatTemplate ?? null) : [];
  const files = [
    jsonFile("config.json", {
      ...toHfConfigJson(config),
      head_dim: config.hidden_size / config.num_attention_heads,
      // The fp32 file (transformers.js would otherwise look for model_quantized.onnx on wasm) and its data files.
      "transformers.js_config": { dtype: "fp32", ...(dataFiles.length > 0 ? { use_external_data_format: dataFiles.length } : {}) },
    }),
    generationConfigFile(config),
    ...tokenizerFiles,
  ];
  return { files, onnxFiles: [{ name: ONNX_MODEL_FILE, bytes }, ...dataFiles], tokenizerWritten: tokenizerFiles.length > 0 };
}
