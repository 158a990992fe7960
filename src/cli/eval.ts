// `bonsai eval`: mean cross-entropy (nats per token) over a whole split, in consecutive
// non-overlapping windows of the model's context length.
import { type FlagSpec, Flags, UsageError, backendFlags, describeModelPlace, expertCacheBytesFromFlags, expertCacheFlags, modelPlaceFromFlags, placementFlags } from "./args.js";
import { loadModel, readTextFile } from "../io/model-files-node.js";
import { sequentialBatches, splitTrainVal } from "../data/batches.js";
import { noGrad, scope } from "../tensor/tensor.js";
import * as op from "../tensor/ops.js";
import type { Llama } from "../nn/llama.js";

export const evalFlags: FlagSpec = {
  model: { type: "string", help: "model directory or file" },
  tokenizer: { type: "string", help: "tokenizer file overriding the model's" },
  data: { type: "string", help: "text file" },
  split: { type: "string", help: "val (last 10%, default), train (first 90%) or all" },
  "block-size": { type: "string", help: "window length (the model's context)" },
  "batch-size": { type: "string", help: "windows per forward pass (16)" },
  ...backendFlags,
  ...placementFlags,
  ...expertCacheFlags,
};

/** Σ loss / tokens over every window of `tokens`. */
export async function meanLoss(model: Llama, tokens: Int32Array, blockSize: number, batchSize: number, onProgress?: (done: number) => void): Promise<number> {
  let sum = 0, count = 0;
  for (const b of sequentialBatches(tokens, batchSize, blockSize)) {
    // forwardAcross: the model may span backends (--gpu-layers).
    const logits = await model.forwardAcross(b.ids, b.batch, b.seq);
    try {
      sum += await noGrad(() => scope(() => logits.backend.sum(op.crossEntropy(logits, b.targets).data)));
    } finally {
      logits.dispose();
    }
    count += b.ids.length;
    onProgress?.(count);
  }
  return sum / count;
}

export async function evalCommand(argv: string[]): Promise<void> {
  const f = Flags.parse(argv, evalFlags);
  const split = f.str("split") ?? "val";
  if (!["train", "val", "all"].includes(split)) throw new UsageError(`--split must be train, val or all (got "${split}")`);
  const { where } = await modelPlaceFromFlags(f);
  const { model, tokenizer } = loadModel(f.required("model"), where, f.str("tokenizer"), { expertCacheBytes: expertCacheBytesFromFlags(f) });
  if (!tokenizer) throw new UsageError("the model has no tokenizer; pass --tokenizer");
  const text = readTextFile(f.required("data"));
  const tokens = Int32Array.from(tokenizer.encode(text, { parseSpecial: true }));
  const parts = splitTrainVal(tokens);
  const chosen = split === "all" ? tokens : parts[split as "train" | "val"];
  if (chosen.length < 2) throw new UsageError(`the ${split} split has fewer than 2 tokens`);
  const blockSize = f.int("block-size", model.config.max_position_embeddings, 1);
  if (blockSize > model.config.max_position_embeddings) throw new UsageError(`--block-size ${blockSize} exceeds the model's context ${model.config.max_position_embeddings}`);
  const t0 = performance.now();
  const loss = await meanLoss(model, chosen, blockSize, f.int("batch-size", 16, 1), (done) => {
    if (process.stderr.isTTY) process.stderr.write(`\r\x1b[Keval ${done}/${chosen.length - 1} tokens`);
  });
  if (process.stderr.isTTY) process.stderr.write("\n");
  process.stderr.write(`bonsai eval: ${chosen.length - 1} tokens of the ${split} split in windows of ${blockSize}, ${((performance.now() - t0) / 1000).toFixed(1)} s, ${describeModelPlace(model)}\n`);
  process.stdout.write(`${split}_loss ${loss.toFixed(4)}\n`);
}
