// `bonsai serve`: the OpenAI-compatible server (serve/server.ts) and the chat page over one model.
// SIGTERM or SIGINT stops accepting, lets running requests finish for --grace seconds, exits 0.
// --draft: speculative decoding for every sequence (runtime/batch.ts).
// --escalate-to: the cascade (serve/cascade.ts), unconfident answers going to an upstream server.
import { basename } from "node:path";
import { type FlagSpec, Flags, UsageError, backendFlags, describeModelPlace, expertCacheBytesFromFlags, expertCacheFlags, modelPlaceFromFlags } from "./args.js";
import { loadModel } from "../io/model-files-node.js";
import { draftFlags, draftFromFlags, speculativeFlags } from "./draft-flags.js";
import { createServer } from "../serve/server-node.js";
import { createAppRoutes } from "../serve/app-routes-node.js";
import { CONFIDENCE_FUNCTIONS, FALLBACKS, type CascadeOptions, type ConfidenceFunction, type Fallback } from "../serve/cascade.js";

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
  "escalate-to": { type: "string", help: "cascade: send requests the model is unsure of to this OpenAI-compatible server (base URL, e.g. http://host:8080/v1)" },
  "escalate-model": { type: "string", help: "cascade: the model name sent upstream (required with --escalate-to)" },
  "escalate-key-env": { type: "string", help: "cascade: send `Authorization: Bearer <key>` upstream, the key read from this environment variable" },
  confidence: { type: "string", help: "cascade: mean-logprob (default), min-prob or entropy (−mean entropy) of the first --probe-tokens tokens" },
  threshold: { type: "string", help: "cascade: escalate when the confidence is below this (a number, inf or -inf; required with --escalate-to)" },
  "probe-tokens": { type: "string", help: "cascade: tokens the confidence looks at (16)" },
  "escalate-timeout": { type: "string", help: "cascade: seconds the upstream may take to answer (its headers) or stall mid-answer before it is aborted (60)" },
  "escalate-fallback": { type: "string", help: "cascade: an upstream that fails or times out: local (the local model answers; default) or error (502/504)" },
  ...draftFlags,
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
  const cascade = cascadeFromFlags(f);
  const numerics = { q8Activations: true };
  const { where, backend, cpu } = await modelPlaceFromFlags(f, numerics);
  const loaded = loadModel(modelPath, where, f.str("tokenizer"), { quantized: !f.bool("dequantize"), fuse: true, lazy: true, expertCacheBytes: expertCacheBytesFromFlags(f) });
  if (!loaded.tokenizer) throw new UsageError("the model has no tokenizer; pass --tokenizer");
  const spec = speculativeFlags(f);
  const speculative = spec ? { ...spec, draft: await draftFromFlags(f, loaded.model, loaded.tokenizer, [backend, cpu], numerics) } : undefined;
  let server;
  try {
    server = createServer(loaded.model, {
      tokenizer: loaded.tokenizer,
      modelName: f.str("model-name") ?? basename(modelPath),
      chatTemplate: loaded.chatTemplate,
      parallel: f.int("parallel", 4, 1),
      ctxSize: f.int("ctx-size", loaded.model.config.max_position_embeddings, 1),
      maxQueue: f.int("max-queue", 64, 0),
      apiKey,
      app: createAppRoutes({ modelPath, tokenizerPath: f.str("tokenizer") }),
      cascade,
      speculative,
    });
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  const url = await server.listen(f.int("port", 8080, 0), f.str("host") ?? "127.0.0.1");
  const drafting = spec ? `, drafting with ${f.str("draft")} (${spec.draftTokens === "auto" ? "auto" : `K=${spec.draftTokens}`})` : "";
  const escalating = cascade ? `, escalating to ${cascade.url} when ${cascade.confidence} < ${cascade.threshold} (timeout ${cascade.timeoutSeconds} s, fallback ${cascade.fallback})` : "";
  process.stderr.write(`bonsai serve: ${basename(modelPath)} on ${describeModelPlace(loaded.model)}, ${server.engine.parallel} parallel × ${server.engine.ctxSize} positions${drafting}${escalating}; listening on ${url}\n`);
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

/** The cascade's flags, checked: undefined without --escalate-to; its companions alone are errors. */
function cascadeFromFlags(f: Flags): CascadeOptions | undefined {
  const companions = ["escalate-model", "escalate-key-env", "confidence", "threshold", "probe-tokens", "escalate-timeout", "escalate-fallback"];
  if (!f.has("escalate-to")) {
    const stray = companions.find((c) => f.has(c));
    if (stray !== undefined) throw new UsageError(`--${stray} needs --escalate-to`);
    return undefined;
  }
  const url = f.str("escalate-to")!;
  if (!/^https?:\/\/[^/]/.test(url)) throw new UsageError(`--escalate-to must be an http(s) URL (got "${url}")`);
  for (const c of ["escalate-model", "threshold"]) if (!f.has(c)) throw new UsageError(`--escalate-to needs --${c}`);
  const fn = f.str("confidence") ?? "mean-logprob";
  if (!(CONFIDENCE_FUNCTIONS as readonly string[]).includes(fn)) throw new UsageError(`--confidence must be ${CONFIDENCE_FUNCTIONS.join(", ")} (got "${fn}")`);
  const raw = f.str("threshold")!.trim().toLowerCase();
  const threshold = ["inf", "+inf", "infinity", "+infinity"].includes(raw) ? Infinity : ["-inf", "-infinity"].includes(raw) ? -Infinity : Number(raw);
  if (raw === "" || Number.isNaN(threshold)) throw new UsageError(`--threshold must be a number, inf or -inf (got "${f.str("threshold")}")`);
  let apiKey: string | undefined;
  if (f.has("escalate-key-env")) {
    apiKey = process.env[f.str("escalate-key-env")!];
    if (!apiKey) throw new UsageError(`--escalate-key-env ${f.str("escalate-key-env")}: the environment variable is empty or unset`);
  }
  const fallback = f.str("escalate-fallback") ?? "local";
  if (!(FALLBACKS as readonly string[]).includes(fallback)) throw new UsageError(`--escalate-fallback must be ${FALLBACKS.join(" or ")} (got "${fallback}")`);
  const timeoutSeconds = f.num("escalate-timeout", 60, { min: 0, exclusiveMin: true });
  return { url, model: f.str("escalate-model")!, apiKey, confidence: fn as ConfidenceFunction, threshold, probeTokens: f.int("probe-tokens", 16, 1), timeoutSeconds, fallback: fallback as Fallback };
}
