// Builds the browser chat app (app/) into dist/app/ with esbuild: index.html, main.js (the page:
// DOM only), main.css, worker.js (the page's inference worker, app/worker.ts: the library bundled
// from src/index.ts), thread-worker-browser.js (the wasm backend's kernel worker, which worker.js
// starts in turn) and code-split chunks loaded on demand (each wasm kernel build, the WebGPU
// backend). Run by `npm run build:app` (and `npm run build`), after `npm run build:wasm` has
// generated the embedded kernels. `bonsai serve` serves the result (src/serve/app-routes-node.ts).
//
// The wasm kernels are embedded in the library as base64 modules, so nothing needs copying; the
// files found by URL are the two workers: main.ts starts `new URL("./worker.js", import.meta.url)`
// and workers-browser.ts `new URL("./thread-worker-browser.js", import.meta.url)`, so those
// entries keep their plain names and every chunk sits beside them in dist/app/ (no subfolder:
// import.meta.url is the chunk's own).
// Node-only adapters (src/**/*-node.ts: worker_threads, node:v8, Dawn's Node binding) are
// reached only through runtime checks that are false in a browser; they become a stub that
// throws, so the bundle holds no node: imports.
import { build } from "esbuild";
import { copyFileSync, mkdirSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const out = join(root, "dist", "app");

const nodeOnlyStub = {
  name: "node-only-stub",
  setup(b) {
    b.onResolve({ filter: /-node\.js$/ }, (args) => (args.importer.startsWith(join(root, "src")) ? { path: args.path, namespace: "node-only" } : undefined));
    b.onLoad({ filter: /.*/, namespace: "node-only" }, (args) => ({
      contents: `throw new Error(${JSON.stringify(`${args.path} is Node-only and not part of the browser bundle`)});`,
      loader: "js",
    }));
  },
};

rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });
const result = await build({
  absWorkingDir: root,
  entryPoints: {
    main: "app/main.ts",
    worker: "app/worker.ts",
    "thread-worker-browser": "src/backend/wasm/thread-worker-browser.ts",
  },
  outdir: out,
  bundle: true,
  splitting: true,
  format: "esm",
  platform: "browser",
  target: ["es2022"],
  minify: true,
  sourcemap: true,
  entryNames: "[name]",
  chunkNames: "chunk-[hash]",
  plugins: [nodeOnlyStub],
  logLevel: "warning",
  metafile: true,
});
copyFileSync(join(root, "app", "index.html"), join(out, "index.html"));
const bytes = Object.entries(result.metafile.outputs).filter(([f]) => !f.endsWith(".map")).reduce((s, [, o]) => s + o.bytes, 0);
console.log(`build-app: ${Object.keys(result.metafile.outputs).length} files, ${(bytes / 1024).toFixed(0)} KiB (without maps) -> dist/app`);
