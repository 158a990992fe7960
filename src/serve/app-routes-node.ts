// The chat page's routes for `bonsai serve` (Node only, node:http types, no framework): the page
// and its assets from dist/app/ (built by scripts/build-app.mjs from app/), and the model file the
// server runs, for the page's "in this browser" mode:
//
//   GET /bonsai/model-info  → {"model": {"name", "size", "url": "/bonsai/model"},
//                              "tokenizer": {"name", "size", "url": "/bonsai/tokenizer"} | null}
//   GET|HEAD /bonsai/model      the model file (a GGUF, or a llama2.c .bin)
//   GET|HEAD /bonsai/tokenizer  the separate tokenizer file, when the server was given one (else 404)
//
// Both files are sent as application/octet-stream with Content-Length, Accept-Ranges (a single
// `Range: bytes=a-b` gets 206), and `x-bonsai-model-name` / `x-bonsai-tokenizer-name`: the file's
// base name, percent-encoded (encodeURIComponent). The page caches them in OPFS by name and size.
//
// Every response is cross-origin isolated (CROSS_ORIGIN_ISOLATION_HEADERS): the page runs
// WebAssembly threads, which need SharedArrayBuffer, which needs COOP + COEP; the server sets
// the same headers on its own responses.
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
}

/** The chat page's routes: `/` and dist/app's files, /bonsai/model-info, /bonsai/model, /bonsai/tokenizer. */
export function createAppRoutes(opts: AppRoutesOptions): AppRouteHandler {
  const appDir = resolve(opts.appDir ?? DEFAULT_APP_DIR);
  const model: Served = { path: resolve(opts.modelPath), name: basename(opts.modelPath) };
  const tokenizer: Served | null = opts.tokenizerPath !== undefined ? { path: resolve(opts.tokenizerPath), name: basename(opts.tokenizerPath) } : null;

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
    const size = f ? await fileSize(f.path) : null;
    if (f === null || size === null) return sendText(req, res, 404, f === null ? "this server has no separate tokenizer file\n" : `model file not found: ${f.name}\n`);
    await sendFile(req, res, f.path, size, {
      "Content-Type": "application/octet-stream",
      [header]: encodeURIComponent(f.name),
      "Cache-Control": "no-cache",
    });
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
      if (path === "/bonsai/model") await modelFile(req, res, model, "x-bonsai-model-name");
      else if (path === "/bonsai/tokenizer") await modelFile(req, res, tokenizer, "x-bonsai-tokenizer-name");
      else {
        const describe = async (f: Served, url: string) => {
          const size = await fileSize(f.path);
          return size === null ? null : { name: f.name, size, url };
        };
        const info = { model: await describe(model, "/bonsai/model"), tokenizer: tokenizer ? await describe(tokenizer, "/bonsai/tokenizer") : null };
        if (info.model === null) sendText(req, res, 404, `model file not found: ${model.name}\n`);
        else {
          const json = JSON.stringify(info);
          setCrossOriginIsolation(res);
          res.writeHead(200, { "Content-Type": "application/json; charset=utf-8", "Content-Length": Buffer.byteLength(json), "Cache-Control": "no-store" });
          res.end(req.method === "HEAD" ? undefined : json);
        }
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

