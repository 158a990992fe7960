// A static file server on 127.0.0.1 for pages driven in headless Chromium (test/browser.test.ts,
// bench/transformers-js.ts): a random port, cross-origin isolated responses (COOP/COEP, which
// WebAssembly threads in a page need), no caching, and a record of what it answered 404 for.
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import { readFile, stat } from "node:fs/promises";
import type { AddressInfo } from "node:net";
import { extname } from "node:path";

const TYPES: Record<string, string> = {
  ".js": "application/javascript",
  ".mjs": "application/javascript",
  ".html": "text/html; charset=utf-8",
  ".json": "application/json",
  ".map": "application/json",
  ".wasm": "application/wasm",
  ".bin": "application/octet-stream",
};

export interface StaticServer {
  url: string;
  notFound: string[];
  close(): Promise<void>;
}

/** Serve the file `fileFor` names for a URL path (null: 404). */
export async function serve(fileFor: (urlPath: string) => string | null): Promise<StaticServer> {
  const notFound: string[] = [];
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    void (async () => {
      const headers = {
        "Cross-Origin-Opener-Policy": "same-origin",
        "Cross-Origin-Embedder-Policy": "require-corp",
        "Cross-Origin-Resource-Policy": "same-origin",
        "Cache-Control": "no-store",
      };
      const path = decodeURIComponent(new URL(req.url ?? "/", "http://127.0.0.1").pathname);
      const file = req.method === "GET" || req.method === "HEAD" ? fileFor(path) : null;
      try {
        if (file === null || !(await stat(file)).isFile()) throw new Error("not found");
        const body = await readFile(file);
        res.writeHead(200, { ...headers, "Content-Type": TYPES[extname(file)] ?? "application/octet-stream", "Content-Length": body.byteLength });
        res.end(req.method === "HEAD" ? undefined : body);
      } catch {
        notFound.push(path);
        res.writeHead(404, { ...headers, "Content-Type": "text/plain" });
        res.end(`not found: ${path}\n`);
      }
    })();
  });
  await new Promise<void>((ok, fail) => {
    server.once("error", fail);
    server.listen(0, "127.0.0.1", ok);
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    notFound,
    close: () =>
      new Promise<void>((ok) => {
        server.closeAllConnections();
        server.close(() => ok());
      }),
  };
}

/** `p`, or a rejection naming `what` after `ms` (the caller then closes the browser, which ends `p`). */
export function within<T>(ms: number, what: string, p: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, fail) => {
    timer = setTimeout(() => fail(new Error(`${what}: no answer within ${ms / 1000} s`)), ms);
  });
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}

/** Chromium's flags for these pages (../shared/NOTES.md): WebGPU on, nothing fetched from the network. */
export const CHROMIUM_ARGS = ["--no-sandbox", "--enable-unsafe-webgpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"];
