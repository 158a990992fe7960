// `bonsai convert`: any model Bonsai loads → a Bonsai / Hugging Face model directory.
import { type FlagSpec, Flags } from "./args.js";
import { JsBackend } from "../backend/js/js-backend.js";
import { loadModel, writeCheckpoint } from "../io/model-files-node.js";
import { modelFiles } from "../io/checkpoint.js";

export const convertFlags: FlagSpec = {
  model: { type: "string", help: "model directory or llama2.c .bin" },
  tokenizer: { type: "string", help: "tokenizer file to store with it" },
  out: { type: "string", help: "output directory" },
};

export async function convertCommand(argv: string[]): Promise<void> {
  const f = Flags.parse(argv, convertFlags);
  const out = f.required("out");
  // Conversion only moves numbers: the float32 reference backend keeps them bit-exact.
  const { model, tokenizer, format } = loadModel(f.required("model"), new JsBackend("f32"), f.str("tokenizer"));
  writeCheckpoint(out, modelFiles(model, tokenizer));
  process.stderr.write(`bonsai convert: ${format} → ${out} (${model.numParameters().toLocaleString("en-US")} parameters${tokenizer ? ", with tokenizer" : ", no tokenizer"})\n`);
}
