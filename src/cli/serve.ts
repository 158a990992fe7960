// `bonsai serve`: the OpenAI-compatible server (serve/server.ts) and the chat page over one model.
// SIGTERM or SIGINT stops accepting, lets running requests finish for --grace seconds, exits 0.
import { basename } from "node:path";
import { type FlagSpec, Flags, UsageError, backendFlags, describeModelPlace, expertCacheBytesFromFlags, expertCacheFlags, modelPlaceFromFlags } from "./args.js";
import { loadModel } from "../io/model-files-node.js";
import { createServer } from "../serve/server-node.js";
import { createAppRoutes } from "../serve/app-routes-node.js";

export const serveFlags: FlagSpec = {
  model: { type: "string", help: "model directory or file" },
  tokenizer: { type: "string", help: "tokenizer file overriding the model's" },
  host: { type: "string", help: "address to listen on (127.0.0.1)" },
  port: { type: "string", help: "port; 0 = any free one (8080)" },
  parallel: { type: "string", help: "sequences generating at once, batched together (4)" },
  "ctx-size": { type: "string", help: "positions per sequence: prompt + completion (the model's context)" },
  "max-queue": { type: "string", help: "requests waiting for a slot before 429 (64)" },
  "api-key-env": { type: "string", help: "require `Authorization: Bearer <key>`, the key read from this environment variable" },
  "model-name": { type: "string", help: "the model id /v1/models lists (the file's name)" },
  grace: { type: "string", help: "seconds running requests get to finish on SIGTERM (10)" },
  dequantize: { type: "boolean", help: "run a GGUF's Q8_0/Q4_0/F16 weights as f32" },
  ...backendFlags,
  ...expertCacheFlags,
};

export async function serveCommand(argv: string[]): Promise<void> {
  const f = Flags.parse(argv, serveFlags);
  const modelPath = f.required("model");
  let apiKey: string | undefined;
  if (f.has("api-key-env")) {
    apiKey = process.env[f.str("api-key-env")!];
    if (!apiKey) throw new UsageError(`--api-key-env ${f.str("api-key-env")}: the environment variable is empty or unset`);
  }
  const { where } = await modelPlaceFromFlags(f, { q8Activations: true });
  const loaded = loadModel(modelPath, where, f.str("tokenizer"), { quantized: !f.bool("dequantize"), fuse: true, lazy: true, expertCacheBytes: expertCacheBytesFromFlags(f) });
  if (!loaded.tokenizer) throw new UsageError("the model has no tokenizer; pass --tokenizer");
  let server;
  try {
    server = createServer(loaded.model, {
      tokenizer: loaded.tokenizer,
      modelName: f.str("model-name") ?? basename(modelPath),
      chatTemplate: (loaded as { chatTemplate?: string | null }).chatTemplate ?? null,
      parallel: f.int("parallel", 4, 1),
      ctxSize: f.int("ctx-size", loaded.model.config.max_position_embeddings, 1),
      maxQueue: f.int("max-queue", 64, 0),
      apiKey,
      app: createAppRoutes({ modelPath, tokenizerPath: f.str("tokenizer") }),
    });
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  const url = await server.listen(f.int("port", 8080, 0), f.str("host") ?? "127.0.0.1");
  process.stderr.write(`bonsai serve: ${basename(modelPath)} on ${describeModelPlace(loaded.model)}, ${server.engine.parallel} parallel × ${server.engine.ctxSize} positions; listening on ${url}\n`);
  const grace = f.num("grace", 10, { min: 0 }) * 1000;
  await new Promise<void>((resolve) => {
    const stop = (sig: string): void => {
      process.stderr.write(`bonsai serve: ${sig}: finishing running requests (up to ${grace / 1000} s)\n`);
      void server.close(grace).then(resolve);
    };
    process.once("SIGTERM", () => stop("SIGTERM"));
    process.once("SIGINT", () => stop("SIGINT"));
  });
  loaded.model.dispose();
}
