// `bonsai convert`: any loadable model → a Bonsai / Hugging Face model directory
// (the same as `bonsai export --format hf`).
import type { FlagSpec } from "./args.js";
import { exportCommand } from "./export.js";

export const convertFlags: FlagSpec = {
  model: { type: "string", help: "model directory, GGUF file or llama2.c .bin" },
  tokenizer: { type: "string", help: "tokenizer file to store with it" },
  out: { type: "string", help: "output directory" },
};

export async function convertCommand(argv: string[]): Promise<void> {
  await exportCommand([...argv, "--format", "hf"]);
}
