// `bonsai quantize`: any loadable model → a Q8_0 or Q4_0 GGUF, which `bonsai generate` runs with
// its weights kept quantized (and llama.cpp loads). It is `export --format gguf --quant`.
import { type FlagSpec, Flags, UsageError } from "./args.js";
import { JsBackend } from "../backend/js/js-backend.js";
import { loadModel } from "../io/model-files-node.js";
import { modelTensors } from "../io/checkpoint.js";
import { type GgufQuant, llamaToGguf } from "../io/gguf-llama.js";
import { tokenizerToGgufMetadata } from "../tokenizer/gguf-vocab.js";
import { writeFileAtomic } from "../io/fs-node.js";

const QUANTS: readonly GgufQuant[] = ["q8_0", "q4_0"];

export const quantizeFlags: FlagSpec = {
  model: { type: "string", help: "model directory, GGUF file or llama2.c .bin" },
  tokenizer: { type: "string", help: "tokenizer file to include (tokenizer.json, GGUF, llama2.c tokenizer.bin)" },
  quant: { type: "string", help: "q8_0 or q4_0 (matrices whose rows are not whole 32-blocks stay f16)" },
  out: { type: "string", help: "output GGUF file" },
};

export async function quantizeCommand(argv: string[]): Promise<void> {
  const f = Flags.parse(argv, quantizeFlags);
  const quant = f.required("quant") as GgufQuant;
  if (!QUANTS.includes(quant)) throw new UsageError(`--quant must be one of ${QUANTS.join(", ")} (got "${quant}")`);
  const out = f.required("out");
  // Float32 on the reference backend: the quantizer sees the exact stored values.
  const { model, tokenizer, format, chatTemplate } = loadModel(f.required("model"), new JsBackend("f32"), f.str("tokenizer"));
  const meta = tokenizer ? tokenizerToGgufMetadata(tokenizer) : undefined;
  writeFileAtomic(out, llamaToGguf(model.config, await modelTensors(model), quant, { tokenizer: meta, chatTemplate }));
  process.stderr.write(`bonsai quantize: ${format} → gguf ${quant} ${out}${tokenizer ? " (with tokenizer)" : " (no tokenizer)"}\n`);
}
