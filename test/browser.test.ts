// The library in a real browser: Chromium (headless, driven by playwright-core) loads
// dist/src/index.js as ES modules from a local server and runs llama2.c's stories260K to
// run.c's greedy text on webgpu (SwiftShader here), on wasm with two worker threads (the page is
// cross-origin isolated) and on plain wasm. It also reports what WebNN the browser offers, and
// renders a chat prompt (@huggingface/jinja, through the page's import map).
import { test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { dirname, join, relative, resolve, sep } from "node:path";
import { fileURLToPath } from "node:url";
import type { Browser, Page } from "playwright-core";
import { CHROMIUM_ARGS, serve, within } from "./static-server.js";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const MODELS = join(ROOT, "../shared/data/models");
const CHROMIUM = "/usr/bin/chromium";
const MODEL_FILES = ["stories260K.bin", "tok512.bin"];

/** What page.html defines on window. */
interface Greedy {
  text: string;
  tokens: number;
  loadMs: number;
  generateMs: number;
  backend: string;
  adapter: string | null;
  threads: number | null;
  crossOriginIsolated: boolean;
}
interface Probe {
  crossOriginIsolated: boolean;
  gpu: boolean;
  adapter: { vendor?: string; architecture?: string; description?: string } | string | null;
  ml: boolean;
  webnn: { context?: string; limits?: Record<string, unknown>; ops?: string[]; opSupportLimits?: unknown; error?: string } | null;
}
interface PageApi {
  bonsaiReady?: boolean;
  bonsaiLoadError?: string;
  bonsaiGreedy(name: string, options?: Record<string, unknown>): Promise<Greedy>;
  bonsaiProbe(): Promise<Probe>;
  bonsaiChat(): string;
}

const JINJA = "/node_modules/@huggingface/jinja/dist/index.js";

/** The file a URL path names: the compiled library (dist/src), its dependency, the page, the two model files; else null. */
function fileFor(urlPath: string): string | null {
  if (urlPath === "/" || urlPath === "/page.html") return join(ROOT, "test/browser/page.html");
  if (urlPath === JINJA) return join(ROOT, "." + JINJA);
  if (urlPath.startsWith("/models/")) {
    const name = urlPath.slice("/models/".length);
    return MODEL_FILES.includes(name) ? join(MODELS, name) : null;
  }
  if (urlPath.startsWith("/dist/src/")) {
    const file = resolve(ROOT, "." + urlPath);
    const rel = relative(join(ROOT, "dist/src"), file);
    return rel.startsWith("..") || rel.split(sep).includes("..") ? null : file;
  }
  return null;
}

const haveData = MODEL_FILES.every((f) => existsSync(join(MODELS, f))) && existsSync(join(MODELS, "stories260K.expected-greedy.txt"));
const skip = !haveData ? "../shared/data absent" : !existsSync(CHROMIUM) ? `${CHROMIUM} missing` : false;

test("stories260K in Chromium: run.c's greedy text on webgpu, wasm with 2 threads and wasm", { skip, timeout: 180_000 }, async (t) => {
  const expected = readFileSync(join(MODELS, "stories260K.expected-greedy.txt"), "utf8").replace(/\n$/, "");
  const { chromium } = await import("playwright-core");
  const server = await serve(fileFor);
  let browser: Browser | null = null;
  const problems: string[] = [];
  try {
    const t0 = performance.now();
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      // ../shared/NOTES.md's flags, plus WebNN's feature (off by default in Chromium 156: without
      // it `navigator.ml` is absent; with it createContext() says whether this platform has one).
      args: [...CHROMIUM_ARGS, "--enable-features=WebMachineLearningNeuralNetwork"],
      timeout: 60_000,
    });
    const b = browser;
    /** A fresh page with the library loaded (each backend runs in its own, closed after it). */
    const openPage = async (): Promise<Page> => {
      const page = await b.newPage();
      page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
      page.on("console", (m) => {
        if (m.type() === "error" || m.type() === "warning") problems.push(`console.${m.type()}: ${m.text()}`);
      });
      await page.goto(`${server.url}/page.html`);
      await page.waitForFunction(() => {
        const w = window as unknown as PageApi;
        return w.bonsaiReady === true || w.bonsaiLoadError !== undefined;
      }, null, { timeout: 30_000 });
      const loadError = await page.evaluate(() => (window as unknown as PageApi).bonsaiLoadError ?? null);
      assert.equal(loadError, null, `the library did not load in the page:\n${loadError}\n${problems.join("\n")}`);
      return page;
    };
    const page = await openPage();
    t.diagnostic(`Chromium ${browser.version()} up, library loaded in ${((performance.now() - t0) / 1000).toFixed(1)} s`);

    const probe = await within(30_000, "probe", page.evaluate(() => (window as unknown as PageApi).bonsaiProbe()));
    t.diagnostic(`navigator.gpu: ${probe.gpu}, adapter: ${JSON.stringify(probe.adapter)}, crossOriginIsolated: ${probe.crossOriginIsolated}`);
    t.diagnostic(`WebNN: 'ml' in navigator: ${probe.ml}${probe.webnn ? `, ${JSON.stringify(probe.webnn)}` : ""}`);
    const chat = await page.evaluate(() => (window as unknown as PageApi).bonsaiChat());
    await page.close();
    assert.equal(chat, "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
    assert.equal(probe.crossOriginIsolated, true, "the page is cross-origin isolated (COOP/COEP), as wasm threads need");

    const gpuSkip = !probe.gpu ? "the page has no navigator.gpu" : typeof probe.adapter !== "object" || probe.adapter === null ? `no WebGPU adapter (${probe.adapter})` : false;
    const cases: { name: string; backend: string; options: Record<string, unknown>; skip: string | false; limit: number }[] = [
      { name: "webgpu", backend: "webgpu", options: {}, skip: gpuSkip, limit: 120_000 },
      { name: "wasm, 2 threads", backend: "wasm", options: { threads: 2 }, skip: false, limit: 30_000 },
      { name: "wasm", backend: "wasm", options: {}, skip: false, limit: 30_000 },
    ];
    for (const c of cases) {
      await t.test(c.name, { skip: c.skip }, async (st: TestContext) => {
        const page = await openPage();
        let r: Greedy;
        try {
          r = await within(c.limit, c.name, page.evaluate(([name, o]) => (window as unknown as PageApi).bonsaiGreedy(name, o), [c.backend, c.options] as const));
        } finally {
          await page.close().catch(() => {}); // also stops a run that is still going
        }
        st.diagnostic(
          `${r.backend}${r.adapter ? ` (${r.adapter})` : ""}${r.threads ? `, ${r.threads} threads` : ""}: ${r.tokens} tokens in ${(r.generateMs / 1000).toFixed(2)} s ` +
            `(${((r.tokens * 1000) / r.generateMs).toFixed(1)} tok/s), load ${r.loadMs.toFixed(0)} ms`,
        );
        assert.equal(r.backend, c.backend);
        if (c.options.threads !== undefined) assert.equal(r.threads, c.options.threads);
        assert.equal(r.text, expected);
      });
    }
  } finally {
    // What the page said (errors, warnings) and what it asked for in vain, pass or fail.
    if (server.notFound.length > 0) problems.push(`the server answered 404 for ${server.notFound.join(", ")}`);
    if (problems.length > 0) t.diagnostic(`the page logged:\n${problems.join("\n")}`);
    await browser?.close().catch(() => {});
    await server.close();
  }
});
