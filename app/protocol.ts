// The messages between the chat page (app/main.ts) and its inference worker (app/worker.ts), and
// the few helpers both use. The page only renders; the worker holds the model: it reads the model
// files (handed over by the page, found in OPFS, or downloaded), opens them on a backend and
// streams the generated text back, one message per token.

/** A model or tokenizer file, as the page names it to the worker. */
export interface FileSpec {
  name: string;
  size: number;
  /**
   * The file's OPFS entry, named by its identity: the server's sha256 for a server file, name +
   * size + lastModified for a picked one (cacheKey in main.ts).
   */
  key: string;
  /** The server's URL for it: downloaded when OPFS does not have `key`. */
  url?: string;
  /** A picked file (a File, cloned into the worker without being read on the page), cached under `key`. */
  blob?: Blob;
}

export interface ChatMessage {
  role: "user" | "assistant";
  content: string;
}

export type Source = "opfs" | "server" | "file";

/** Page → worker. Requests carry an id that the answers repeat; `stop` names the generation it ends. */
export type ToWorker =
  /** The first message: a shared word the page writes a generation's id into to stop it (null: not cross-origin isolated). */
  | { type: "init"; stop: Int32Array | null }
  /** Read these files and open them on `backend` ("auto" | "wasm" | "webgpu"); answered by `opened`. */
  | { type: "open"; id: number; model: FileSpec; tokenizer: FileSpec | null; backend: string }
  /** The files already in the worker, opened again on another backend; answered by `opened`. */
  | { type: "reopen"; id: number; backend: string }
  /** Generate a reply; answered by `text` messages and then `done`. */
  | { type: "generate"; id: number; prompt: string; history: ChatMessage[]; format: string; temperature: number; maxTokens: number }
  /** End generation `id` after the token in progress (also said through the shared word, when there is one). */
  | { type: "stop"; id: number };

/** Worker → page. */
export type FromWorker =
  /** What the worker is doing for request `id` (downloading, opening), for the model's state line. */
  | { type: "status"; id: number; text: string }
  /** The model is ready: its files' names and bytes, where they came from, whether OPFS holds them now, the backend in words. */
  | { type: "opened"; id: number; model: string; tokenizer: string | null; bytes: number; source: Source; cached: boolean; describe: string; ms: number }
  /** A piece of generated text; `token` is false for the final flush of held-back characters. */
  | { type: "text"; id: number; text: string; token: boolean }
  | { type: "done"; id: number; chat: boolean; describe: string; tokens: number; stopped: boolean }
  /** A request failed; `code` "not-cached": OPFS lacks a file that came with no URL and no blob. */
  | { type: "error"; id: number; message: string; code?: "not-cached" };

export const errorText = (e: unknown): string => (e instanceof Error ? e.message : String(e));
export const megabytes = (n: number): string => `${(n / 1e6).toFixed(n < 1e7 ? 2 : 0)} MB`;
