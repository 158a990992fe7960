// `bonsai export`: any loadable model → a GGUF file that llama.cpp loads (f32, f16, q8_0, q4_0),
// a Hugging Face model directory, or an ONNX model directory that transformers.js loads.
import { type FlagSpec, Flags, UsageError } from "./args.js";
import { JsBackend } from "../backend/js/js-backend.js";
import { loadModel, writeCheckpoint } from "../io/model-files-node.js";
import { modelFiles, modelTensors } from "../io/checkpoint.js";
import { type GgufQuant, ggufQuants, llamaToGguf } from "../io/gguf-llama.js";
import { tokenizerToGgufMetadata } from "../tokenizer/gguf-vocab.js";
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { commitFiles, writeFileAtomic } from "../io/fs-node.js";
import { ONNX_MODEL_FILE, ONNX_SUBFOLDER, onnxModelDirectory } from "../io/onnx-dir.js";
import { qatFile, qatOf } from "../train/qat.js";

export const exportFlags: FlagSpec = {
  model: { type: "string", help: "model directory, GGUF file or llama2.c .bin" },
  tokenizer: { type: "string", help: "tokenizer file to include (tokenizer.json, GGUF, llama2.c tokenizer.bin)" },
  format: { type: "string", help: "gguf, hf or onnx" },
  quant: { type: "string", help: "GGUF tensor type: f32 (default), f16, q8_0 or q4_0" },
  out: { type: "string", help: "output file (gguf) or directory (hf, onnx)" },
  "external-data": { type: "boolean", help: "onnx: weights in onnx/model.onnx_data even when they fit in model.onnx (over 2 GiB they always go there)" },
};

export async function exportCommand(argv: string[]): Promise<void> {
  const f = Flags.parse(argv, exportFlags);
  const format = f.required("format");
  const out = f.required("out");
  if (format !== "gguf" && format !== "hf" && format !== "onnx") throw new UsageError(`--format must be gguf, hf or onnx (got "${format}")`);
  const quant = (f.str("quant") ?? "f32") as GgufQuant;
  if (!ggufQuants.includes(quant)) throw new UsageError(`--quant must be one of ${ggufQuants.join(", ")} (got "${quant}")`);
  if (format !== "gguf" && f.has("quant")) throw new UsageError(`--quant applies to --format gguf only (--format ${format} stores f32 weights)`);
  if (format !== "onnx" && f.has("external-data")) throw new UsageError("--external-data applies to --format onnx only");
  // Exporting only moves numbers: the float32 reference backend keeps them exact.
  const { model, tokenizer, format: from, chatTemplate } = loadModel(f.required("model"), new JsBackend("f32"), f.str("tokenizer"));
  const qat = qatOf(model)?.toJSON();
  // A QAT checkpoint holds latent float weights; it was trained to run them fake-quantized. Its
  // qat.json goes along to an HF directory (Bonsai applies it on load); a GGUF file of another
  // type gets the latent weights, which is worth saying.
  let withTokenizer = tokenizer !== null;
  if (format === "hf") writeCheckpoint(out, [...(await modelFiles(model, tokenizer, { chatTemplate })), ...(model.qat ? [qatFile(model)!] : [])]);
  else if (format === "onnx") {
    // As the hf directory, the ONNX graph gets the latent float weights; it has no qat.json to carry.
    if (qat) process.stderr.write(`bonsai export: warning: the model was trained with --qat ${qat.weights}; the ONNX graph holds its latent float weights, not the ${qat.weights} weights it was trained to run with\n`);
    const dir = await onnxModelDirectory(model, tokenizer, { externalData: f.bool("external-data") ? "always" : "auto", chatTemplate });
    withTokenizer = dir.tokenizerWritten;
    if (tokenizer && !dir.tokenizerWritten)
      process.stderr.write(`bonsai export: warning: the ${tokenizer.kind} tokenizer has no Hugging Face tokenizer.json form; the directory has no tokenizer\n`);
    const onnxDir = join(out, ONNX_SUBFOLDER);
    // A re-export replaces the folder's model: data files of an earlier one that this one lacks go too.
    const written = new Set(dir.onnxFiles.map((x) => x.name));
    const stale = listDir(onnxDir).filter((n) => n.startsWith(`${ONNX_MODEL_FILE}_data`) && !written.has(n));
    commitFiles(onnxDir, dir.onnxFiles, { remove: stale });
    writeCheckpoint(out, dir.files);
  } else {
    if (qat && quant !== qat.weights)
      process.stderr.write(`bonsai export: warning: the model was trained with --qat ${qat.weights}; --quant ${quant} stores its latent float weights, not the ${qat.weights} weights it was trained to run with (--quant ${qat.weights} stores those)\n`);
    const meta = tokenizer ? tokenizerToGgufMetadata(tokenizer) : undefined;
    writeFileAtomic(out, llamaToGguf(model.config, await modelTensors(model), quant, { tokenizer: meta, chatTemplate }));
  }
  process.stderr.write(`bonsai export: ${from} → ${format}${format === "gguf" ? ` ${quant}` : ""} ${out}${withTokenizer ? " (with tokenizer)" : " (no tokenizer)"}\n`);
}

function listDir(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}
