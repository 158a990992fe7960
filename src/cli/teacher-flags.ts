// The teacher flags of the data steps that ask a model for answers (synth, label): a model in this
// process (--teacher) or any OpenAI-compatible server (--endpoint), data/teacher.ts's two Teachers.
import { loadModel } from "../io/model-files-node.js";
import { type Teacher, EndpointTeacher, ModelTeacher } from "../data/teacher.js";
import { type FlagSpec, Flags, UsageError, backendFlags, backendFromFlags } from "./args.js";

export const teacherFlags: FlagSpec = {
  teacher: { type: "string", help: "an in-process teacher: any model Bonsai loads (directory, GGUF, llama2.c .bin); chats through its chat template if it has one, else continues the prompt" },
  tokenizer: { type: "string", help: "--teacher: a tokenizer file overriding the model's" },
  endpoint: { type: "string", help: "an OpenAI-compatible server: its base URL (http://host:8080/v1) or the URL of /v1/chat/completions or /v1/completions" },
  model: { type: "string", help: "--endpoint: the model name the requests carry (required)" },
  api: { type: "string", help: "--endpoint: chat (default: /v1/chat/completions) or completions (/v1/completions)" },
  "api-key-env": { type: "string", help: "--endpoint: send Authorization: Bearer <key>, the key read from this environment variable" },
  "rate-limit": { type: "string", help: "--endpoint: at most this many tokens a minute, all requests together (prompt estimate + max tokens reserved, settled by usage)" },
  timeout: { type: "string", help: "--endpoint: seconds an attempt may take, answer included (120)" },
};

const ENDPOINT_ONLY = ["model", "api", "api-key-env", "rate-limit", "timeout"];
const TEACHER_ONLY = ["tokenizer", ...Object.keys(backendFlags)];

/**
 * The teacher the flags ask for, checked now (usage errors before anything is read or loaded);
 * made by the returned function (a model loads then).
 */
export function teacherFromFlags(f: Flags, o: { concurrency: number; retries: number; log: (line: string) => void; step: string }): () => Promise<Teacher> {
  const { concurrency, retries, log } = o;
  const path = f.str("teacher"), url = f.str("endpoint");
  if ((path === undefined) === (url === undefined)) throw new UsageError("give the teacher: --teacher PATH (a model in this process) or --endpoint URL --model NAME (a server)");
  if (path !== undefined) {
    const wrong = ENDPOINT_ONLY.find((n) => f.has(n));
    if (wrong) throw new UsageError(`--${wrong} applies to --endpoint, not --teacher`);
    return async () => {
      const backend = await backendFromFlags(f);
      const loaded = loadModel(path, backend, f.str("tokenizer"), { quantized: true, fuse: true, lazy: true });
      if (!loaded.tokenizer) throw new UsageError(`--teacher ${path} has no tokenizer; pass --tokenizer`);
      return new ModelTeacher({ model: loaded.model, tokenizer: loaded.tokenizer, chatTemplate: loaded.chatTemplate }, { name: path, parallel: concurrency });
    };
  }
  const wrong = TEACHER_ONLY.find((n) => f.has(n));
  if (wrong) throw new UsageError(`--${wrong} applies to --teacher, not --endpoint`);
  const api = f.str("api");
  if (api !== undefined && api !== "chat" && api !== "completions") throw new UsageError(`--api must be chat or completions (got "${api}")`);
  let apiKey: string | undefined;
  const keyVar = f.str("api-key-env");
  if (keyVar !== undefined) {
    apiKey = process.env[keyVar];
    if (!apiKey) throw new UsageError(`--api-key-env ${keyVar}: the environment variable is empty or unset`);
  }
  let teacher: EndpointTeacher;
  try {
    teacher = new EndpointTeacher({
      url: url!,
      model: f.required("model"),
      api: api as "chat" | "completions" | undefined,
      apiKey,
      timeoutMs: f.num("timeout", 120, { min: 0, exclusiveMin: true }) * 1000,
      retries,
      tokensPerMinute: f.has("rate-limit") ? f.num("rate-limit", 0, { min: 0, exclusiveMin: true }) : undefined,
      onRetry: ({ attempt, delayMs, reason }) => log(`bonsai data ${o.step}: ${reason}; retry ${attempt} of ${retries} in ${(delayMs / 1000).toFixed(1)} s`),
    });
  } catch (e) {
    if (e instanceof UsageError) throw e;
    throw new UsageError(`--endpoint: ${(e as Error).message}`);
  }
  return async () => teacher;
}

