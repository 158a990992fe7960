// The chat page's routes for `bonsai serve` (Node only, node:http types, no framework): the page
// and its assets from dist/app/ (built by scripts/build-app.mjs from app/), and the model file the
// server runs, for the page's "in this browser" mode:
//
//   GET /bonsai/model-info  → {"model": {"name", "size", "sha256", "url": "/bonsai/model"},
//                              "tokenizer": {"name", "size", "sha256", "url": "/bonsai/tokenizer"} | null}
//   GET|HEAD /bonsai/model      the model file (a GGUF, or a llama2.c .bin)
//   GET|HEAD /bonsai/tokenizer  the separate tokenizer file, when the server was given one (else 404)
//
// Both files are sent as application/octet-stream with Content-Length, Accept-Ranges (a single
// `Range: bytes=a-b` gets 206), a strong `ETag: "sha256-<hex>"` (If-None-Match with it gets 304),
// and `x-bonsai-model-name` / `x-bonsai-tokenizer-name`: the file's base name, percent-encoded
// (encodeURIComponent). `sha256` is the hex SHA-256 of the file's bytes, its content identity: it
// is computed once (started when the routes are created) and kept while the file's size, inode,
// mtime and ctime stay the same, so a file rewritten in place, even to the same size, gets a new
// one. The page keys its OPFS cache by it, so a changed model is downloaded again, not served stale.
//
// Every response is cross-origin isolated (CROSS_ORIGIN_ISOLATION_HEADERS): the page runs
// WebAssembly threads, which need SharedArrayBuffer, which needs COOP + COEP; the server sets
// the same headers on its own responses.
import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { stat } from "node:fs/promises";
import type { IncomingMessage, ServerResponse } from "node:http";
import { basename, extname, isAbsolute, relative, resolve, sep } from "node:path";
import { pipeline } from "node:stream/promises";
import { fileURLToPath } from "node:url";

/** COOP + COEP (cross-origin isolation, for wasm threads) and CORP: for every response of the server. */
export const CROSS_ORIGIN_ISOLATION_HEADERS: Readonly<Record<string, string>> = Object.freeze({
  "Cross-Origin-Opener-Policy": "same-origin",
  "Cross-Origin-Embedder-Policy": "require-corp",
  "Cross-Origin-Resource-Policy": "same-origin",
});

/** Set CROSS_ORIGIN_ISOLATION_HEADERS on a response (before its head is written). */
export function setCrossOriginIsolation(res: ServerResponse): void {
  for (const [k, v] of Object.entries(CROSS_ORIGIN_ISOLATION_HEADERS)) res.setHeader(k, v);
}

/** dist/app/ beside this module's dist/src/serve/ (in the repository and in the npm package). */
export const DEFAULT_APP_DIR: string = fileURLToPath(new URL("../../app/", import.meta.url));

export interface AppRoutesOptions {
  /** The model file the server runs (GGUF or llama2.c .bin), offered at /bonsai/model. */
  modelPath: string;
  /** A separate tokenizer file (llama2.c's tokenizer.bin, a GGUF vocabulary, tokenizer.json), at /bonsai/tokenizer. */
  tokenizerPath?: string;
  /** The built page (default DEFAULT_APP_DIR, dist/app). */
  appDir?: string;
}

/** Answers a request it owns and resolves true; resolves false (nothing written) for any other. */
export type AppRouteHandler = (req: IncomingMessage, res: ServerResponse) => Promise<boolean>;

const CONTENT_TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".mjs": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".map": "application/json; charset=utf-8",
  ".json": "application/json; charset=utf-8",
  ".wasm": "application/wasm",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".ico": "image/x-icon",
  ".txt": "text/plain; charset=utf-8",
};

/** The request's path, percent-decoded; null when it does not decode. */
function requestPath(req: IncomingMessage): string | null {
  try {
    return decodeURIComponent(new URL(req.url ?? "/", "http://localhost").pathname);
  } catch {
    return null;
  }
}

function sendText(req: IncomingMessage, res: ServerResponse, status: number, text: string, headers: Record<string, string> = {}): void {
  setCrossOriginIsolation(res);
  res.writeHead(status, { "Content-Type": "text/plain; charset=utf-8", "Content-Length": Buffer.byteLength(text), ...headers });
  res.end(req.method === "HEAD" ? undefined : text);
}

/** A single byte range of a `Range` header over `size` bytes: [start, end] inclusive; null: the whole file; "invalid": 416. */
function byteRange(header: string | undefined, size: number): [number, number] | null | "invalid" {
  if (header === undefined) return null;
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!m || (m[1] === "" && m[2] === "")) return header.trim().startsWith("bytes=") ? "invalid" : null; // several ranges, or not bytes: the whole file
  let start: number, end: number;
  if (m[1] === "") {
    start = Math.max(0, size - Number(m[2])); // the last N bytes
    end = size - 1;
  } else {
    start = Number(m[1]);
    end = m[2] === "" ? size - 1 : Math.min(Number(m[2]), size - 1);
  }
  return start > end || start >= size ? "invalid" : [start, end];
}

/** Stream a file (whole, or the request's byte range) with `headers`. */
async function sendFile(req: IncomingMessage, res: ServerResponse, path: string, size: number, headers: Record<string, string>): Promise<void> {
  setCrossOriginIsolation(res);
  const range = byteRange(req.headers.range, size);
  if (range === "invalid") {
    res.writeHead(416, { ...headers, "Content-Range": `bytes */${size}`, "Content-Length": 0 });
    res.end();
    return;
  }
  const [start, end] = range ?? [0, size - 1];
  const length = size === 0 ? 0 : end - start + 1;
  res.writeHead(range ? 206 : 200, {
    ...headers,
    "Accept-Ranges": "bytes",
    "Content-Length": length,
    ...(range ? { "Content-Range": `bytes ${start}-${end}/${size}` } : {}),
  });
  if (req.method === "HEAD" || length === 0) {
    res.end();
    return;
  }
  try {
    await pipeline(createReadStream(path, { start, end }), res);
  } catch {
    res.destroy(); // the client went away, or the file could not be read mid-way
  }
}

interface Served {
  path: string;
  name: string;
  identity: FileIdentity;
}

/** What identifies a file's version without reading it: device, inode, size, mtime and ctime (ns). */
async function fileStamp(path: string): Promise<{ size: number; key: string } | null> {
  try {
    const s = await stat(path, { bigint: true });
    return s.isFile() ? { size: Number(s.size), key: `${s.dev}:${s.ino}:${s.size}:${s.mtimeNs}:${s.ctimeNs}` } : null;
  } catch {
    return null;
  }
}

/** The hex SHA-256 of a file's bytes. */
async function sha256File(path: string): Promise<string> {
  const hash = createHash("sha256");
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) hash.update(chunk as Buffer);
  return hash.digest("hex");
}

/**
 * A file's size and SHA-256, hashed once and kept while its stamp (fileStamp) stays the same: a
 * file rewritten in place, even to the same size, changes its ctime and is hashed again. A hash
 * whose file changed while it was read is thrown away and taken again.
 */
class FileIdentity {
  private cached: { key: string; sha256: Promise<string> } | null = null;
  constructor(private readonly path: string) {}

  /** The file's size and sha256 now; null when there is no such file. */
  async get(): Promise<{ size: number; sha256: string } | null> {
    for (let attempt = 0; ; attempt++) {
      const before = await fileStamp(this.path);
      if (before === null) return null;
      if (this.cached?.key !== before.key) this.cached = { key: before.key, sha256: sha256File(this.path) };
      const entry = this.cached;
      let sha256: string | null = null;
      let failed: unknown = null;
      try {
        sha256 = await entry.sha256;
      } catch (e) {
        failed = e; // unreadable, or gone mid-way: look again (a stat that fails then says "no file")
      }
      const after = await fileStamp(this.path);
      if (sha256 !== null && after?.key === before.key) return { size: before.size, sha256 };
      if (this.cached === entry) this.cached = null;
      if (attempt === 2) throw failed ?? new Error(`${this.path} changed while it was hashed, three times`);
    }
  }
}

/** The chat page's routes: `/` and dist/app's files, /bonsai/model-info, /bonsai/model, /bonsai/tokenizer. */
export function createAppRoutes(opts: AppRoutesOptions): AppRouteHandler {
  const appDir = resolve(opts.appDir ?? DEFAULT_APP_DIR);
  const served = (path: string): Served => ({ path: resolve(path), name: basename(path), identity: new FileIdentity(resolve(path)) });
  const model = served(opts.modelPath);
  const tokenizer: Served | null = opts.tokenizerPath !== undefined ? served(opts.tokenizerPath) : null;
  // Hash the files now, so that the page's first request finds their identities ready.
  for (const f of [model, tokenizer]) void f?.identity.get().catch(() => null);

  const fileSize = async (path: string): Promise<number | null> => {
    try {
      const s = await stat(path);
      return s.isFile() ? s.size : null;
    } catch {
      return null;
    }
  };

  /** A file of the app for a URL path; null for a path that is not one (or leaves appDir). */
  const appFile = (urlPath: string): string | null => {
    const rel = urlPath === "/" ? "index.html" : urlPath.slice(1);
    if (rel.includes("\0")) return null;
    const file = resolve(appDir, rel);
    const r = relative(appDir, file);
    return r === "" || r.startsWith("..") || r.split(sep).includes("..") || isAbsolute(r) ? null : file;
  };

  const modelFile = async (req: IncomingMessage, res: ServerResponse, f: Served | null, header: string): Promise<void> => {
    const id = f ? await f.identity.get() : null;
    if (f === null || id === null) return sendText(req, res, 404, f === null ? "this server has no separate tokenizer file\n" : `model file not found: ${f.name}\n`);
    const headers = {
      "Content-Type": "application/octet-stream",
      [header]: encodeURIComponent(f.name),
      "Cache-Control": "no-cache",
      ETag: `"sha256-${id.sha256}"`,
    };
    const match = req.headers["if-none-match"];
    if (match !== undefined && (match.trim() === "*" || match.split(",").some((tag) => tag.trim() === headers.ETag))) {
      setCrossOriginIsolation(res);
      res.writeHead(304, { ETag: headers.ETag, "Cache-Control": "no-cache" });
      res.end();
      return;
    }
    await sendFile(req, res, f.path, id.size, headers);
  };

  /** GET /bonsai/model-info: each file's name, size, sha256 and URL. */
  const modelInfo = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const describe = async (f: Served, url: string) => {
      const id = await f.identity.get();
      return id === null ? null : { name: f.name, size: id.size, sha256: id.sha256, url };
    };
    const info = { model: await describe(model, "/bonsai/model"), tokenizer: tokenizer ? await describe(tokenizer, "/bonsai/tokenizer") : null };
    if (info.model === null) sendText(req, res, 404, `model file not found: ${model.name}\n`);
    else {
      const json = JSON.stringify(info);
      setCrossOriginIsolation(res);
      res.writeHead(200, { "Content-Type": "application/json; charset=utf-8", "Content-Length": Buffer.byteLength(json), "Cache-Control": "no-store" });
      res.end(req.method === "HEAD" ? undefined : json);
    }
  };

  return async (req, res) => {
    const path = requestPath(req);
    if (path === null) return false;
    const read = req.method === "GET" || req.method === "HEAD";
    if (path === "/bonsai/model-info" || path === "/bonsai/model" || path === "/bonsai/tokenizer") {
      if (!read) {
        sendText(req, res, 405, `${req.method} is not allowed on ${path}\n`, { Allow: "GET, HEAD" });
        return true;
      }
      try {
        if (path === "/bonsai/model") await modelFile(req, res, model, "x-bonsai-model-name");
        else if (path === "/bonsai/tokenizer") await modelFile(req, res, tokenizer, "x-bonsai-tokenizer-name");
        else await modelInfo(req, res);
      } catch (e) {
        // A file that could not be hashed (it kept changing): say so rather than leave the request hanging.
        if (!res.headersSent) sendText(req, res, 503, `${e instanceof Error ? e.message : String(e)}\n`, { "Retry-After": "1" });
        else res.destroy();
      }
      return true;
    }
    // The page's files: only GET/HEAD, only under appDir; the server answers everything else.
    if (!read || path.startsWith("/v1/") || path.startsWith("/bonsai/")) return false;
    const file = appFile(path);
    if (file === null) {
      sendText(req, res, 404, "not found\n");
      return true;
    }
    const size = await fileSize(file);
    if (size === null && path === "/") {
      sendText(req, res, 404, `the chat page is not built (no ${file}): run npm run build:app\n`);
      return true;
    }
    if (size === null) return false;
    await sendFile(req, res, file, size, {
      "Content-Type": CONTENT_TYPES[extname(file)] ?? "application/octet-stream",
      // Plain names (the worker's name is fixed): the browser revalidates rather than caching blindly.
      "Cache-Control": "no-cache",
    });
    return true;
  };
}

