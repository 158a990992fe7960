// `bonsai export`: any loadable model → a GGUF file that llama.cpp loads (f32, f16, q8_0, q4_0),
// or a Hugging Face model directory.
import { type FlagSpec, Flags, UsageError } from "./args.js";
import { JsBackend } from "../backend/js/js-backend.js";
import { loadModel, writeCheckpoint } from "../io/model-files-node.js";
import { modelFiles, modelTensors } from "../io/checkpoint.js";
import { type GgufQuant, ggufQuants, llamaToGguf } from "../io/gguf-llama.js";
import { tokenizerToGgufMetadata } from "../tokenizer/gguf-vocab.js";
import { writeFileAtomic } from "../io/fs-node.js";
import { qatFile, qatOf } from "../train/qat.js";

export const exportFlags: FlagSpec = {
  model: { type: "string", help: "model directory, GGUF file or llama2.c .bin" },
  tokenizer: { type: "string", help: "tokenizer file to include (tokenizer.json, GGUF, llama2.c tokenizer.bin)" },
  format: { type: "string", help: "gguf or hf" },
  quant: { type: "string", help: "GGUF tensor type: f32 (default), f16, q8_0 or q4_0" },
  out: { type: "string", help: "output file (gguf) or directory (hf)" },
};

export async function exportCommand(argv: string[]): Promise<void> {
  const f = Flags.parse(argv, exportFlags);
  const format = f.required("format");
  const out = f.required("out");
  if (format !== "gguf" && format !== "hf") throw new UsageError(`--format must be gguf or hf (got "${format}")`);
  const quant = (f.str("quant") ?? "f32") as GgufQuant;
  if (!ggufQuants.includes(quant)) throw new UsageError(`--quant must be one of ${ggufQuants.join(", ")} (got "${quant}")`);
  if (format === "hf" && f.has("quant")) throw new UsageError("--quant applies to --format gguf only");
  // Exporting only moves numbers: the float32 reference backend keeps them exact.
  const { model, tokenizer, format: from } = loadModel(f.required("model"), new JsBackend("f32"), f.str("tokenizer"));
  const qat = qatOf(model)?.toJSON();
  // A QAT checkpoint holds latent float weights; it was trained to run them fake-quantized. Its
  // qat.json goes along to an HF directory (Bonsai applies it on load); a GGUF file of another
  // type gets the latent weights, which is worth saying.
  if (format === "hf") writeCheckpoint(out, [...(await modelFiles(model, tokenizer)), ...(model.qat ? [qatFile(model)!] : [])]);
  else {
    if (qat && quant !== qat.weights)
      process.stderr.write(`bonsai export: warning: the model was trained with --qat ${qat.weights}; --quant ${quant} stores its latent float weights, not the ${qat.weights} weights it was trained to run with (--quant ${qat.weights} stores those)\n`);
    const meta = tokenizer ? tokenizerToGgufMetadata(tokenizer) : undefined;
    writeFileAtomic(out, llamaToGguf(model.config, await modelTensors(model), quant, { tokenizer: meta }));
  }
  process.stderr.write(`bonsai export: ${from} → ${format}${format === "gguf" ? ` ${quant}` : ""} ${out}${tokenizer ? " (with tokenizer)" : " (no tokenizer)"}\n`);
}
