// The chat page (app/, built into dist/app) in real Chromium (headless, playwright-core), served
// by src/serve/app-routes-node.ts with llama2.c's stories260K exported to a GGUF: the page picks its
// in-browser mode (this server has no /v1 API) and runs the model in its inference worker
// (app/worker.ts), which downloads it once from /bonsai/model, caches it in OPFS under the
// server's sha256 and streams the CLI's greedy text on wasm kernel threads (the page is
// cross-origin isolated); after a reload it runs from OPFS without a second download, to run.c's
// greedy text from BOS; Stop ends a long generation after a few tokens; a ChatML turn is the one
// the library generates in Node; the server's file rewritten with other bytes of the same size is
// downloaded again after a reload (not served stale from OPFS); picked files (setInputFiles: the
// GGUF, then llama2.c's .bin with its tokenizer) give the CLI's greedy text and are found in OPFS
// after a reload; then webgpu. A second test runs the page against `bonsai serve`'s server
// (src/serve/server-node.ts): two streamed chat turns as the API answers them, then the same turn
// in the browser. Screenshots go to test-output/browser-app/.
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import type { Browser, Page } from "playwright-core";
import { createBackend } from "../src/backend/index.js";
import { JsBackend } from "../src/backend/js/js-backend.js";
import { modelTensors } from "../src/io/checkpoint.js";
import { llamaToGguf } from "../src/io/gguf-llama.js";
import { loadModel } from "../src/node.js";
import { type BonsaiServer, createServer as createBonsaiServer } from "../src/serve/server-node.js";
import { CROSS_ORIGIN_ISOLATION_HEADERS, DEFAULT_APP_DIR, createAppRoutes } from "../src/serve/app-routes-node.js";
import { DEFAULT_CHAT_TEMPLATE, chatPromptIds, chatStops, renderChat, specialTokenTexts } from "../src/runtime/chat.js";
import { stream } from "../src/runtime/stream.js";
import { tokenizerToGgufMetadata } from "../src/tokenizer/gguf-vocab.js";
import { bonsai } from "./cli-helpers.js";
import { CHROMIUM_ARGS, within } from "./static-server.js";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const MODELS = join(ROOT, "../shared/data/models");
const CHROMIUM = "/usr/bin/chromium";
const OUT = join(ROOT, "test-output/browser-app");
const PROMPT = "Once upon a time";
const MAX_TOKENS = 120;
const CHAT_PROMPT = "Tell me a story about a cat.";
const CHAT_TOKENS = 40;
const GPU_TOKENS = 16;
/** A generation Stop ends early: far more tokens than it gets to (past the context the window slides). */
const STOP_TOKENS = 1000;

const haveData = ["stories260K.bin", "tok512.bin", "stories260K.expected-greedy.txt"].every((f) => existsSync(join(MODELS, f)));
const skip = !haveData
  ? "../shared/data absent"
  : !existsSync(CHROMIUM)
    ? `${CHROMIUM} missing`
    : !existsSync(join(DEFAULT_APP_DIR, "index.html"))
      ? "dist/app not built (npm run build:app)"
      : false;

/** stories260K as `bonsai export --format gguf --quant f32` writes it (its tokenizer inside), in `dir`. */
async function exportGguf(dir: string): Promise<string> {
  const { model, tokenizer } = loadModel(join(MODELS, "stories260K.bin"), new JsBackend(), join(MODELS, "tok512.bin"));
  const gguf = join(dir, "stories260K.gguf");
  writeFileSync(gguf, llamaToGguf(model.config, await modelTensors(model), "f32", { name: "stories260K", tokenizer: tokenizerToGgufMetadata(tokenizer!) }));
  model.dispose();
  return gguf;
}

async function launch(problems: string[]): Promise<{ browser: Browser; page: Page }> {
  const { chromium } = await import("playwright-core");
  const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS, timeout: 60_000 });
  const page = await browser.newPage({ viewport: { width: 1000, height: 900 } });
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  page.on("console", (m) => {
    if (m.type() === "error" || m.type() === "warning") problems.push(`console.${m.type()}: ${m.text()}`);
  });
  return { browser, page };
}

/** What the page shows after a generation: the last reply, its meta line, the page's state. */
interface Shown {
  text: string;
  meta: string;
  stats: string;
  lengths: number[];
  /** With `stop`: the reply's length when Stop was clicked. */
  stoppedAt: number | null;
}

/**
 * Type a prompt, send it, wait for the reply to finish; `lengths` are the reply's lengths as it
 * streamed. `stop`: click Stop as soon as the reply shows its first text (from inside the page,
 * on the mutation that shows it).
 */
async function generate(page: Page, prompt: string, maxTokens: number, o: { stop?: boolean } = {}): Promise<Shown> {
  await page.fill("#temperature", "0");
  await page.fill("#max-tokens", String(maxTokens));
  await page.fill("#prompt", prompt);
  await page.evaluate((stop) => {
    const w = window as unknown as { lengths: number[]; stoppedAt: number | null; observer?: MutationObserver };
    w.lengths = [];
    w.stoppedAt = null;
    w.observer?.disconnect();
    const before = document.querySelectorAll("#transcript .assistant").length;
    let stopped = false;
    w.observer = new MutationObserver(() => {
      const replies = document.querySelectorAll("#transcript .assistant .text");
      const last = replies[replies.length - 1];
      if (last) w.lengths.push(last.textContent?.length ?? 0);
      if (stop && !stopped && replies.length > before && (last.textContent ?? "") !== "") {
        stopped = true;
        w.stoppedAt = last.textContent?.length ?? 0;
        (document.getElementById("stop") as HTMLButtonElement).click();
      }
    });
    w.observer.observe(document.getElementById("transcript")!, { subtree: true, childList: true, characterData: true });
  }, o.stop === true);
  await page.click("#send");
  await page.waitForFunction(() => document.body.dataset.busy === "false", null, { timeout: 60_000 });
  return page.evaluate(() => {
    const replies = document.querySelectorAll("#transcript .assistant");
    const last = replies[replies.length - 1];
    return {
      text: last.querySelector(".text")?.textContent ?? "",
      meta: last.querySelector(".meta")?.textContent ?? "",
      stats: document.getElementById("stats")?.textContent ?? "",
      lengths: (window as unknown as { lengths: number[] }).lengths,
      stoppedAt: (window as unknown as { stoppedAt: number | null }).stoppedAt,
    };
  });
}

/**
 * Wait until the page has loaded its in-browser model (or failed to); returns the page's state.
 * `names`: wait for a model whose state line starts with these file names (a pick loads after
 * the `change` event, so the model loaded before it must not count).
 */
async function modelLoaded(page: Page, names?: string): Promise<{ ready: string; source: string; backend: string; state: string; isolated: boolean }> {
  await page.waitForFunction(
    (names) => {
      const ready = document.body.dataset.modelReady ?? "";
      if (ready === "error" || ready === "none") return true;
      return ready === "true" && (names === null || (document.getElementById("model-state")?.textContent ?? "").startsWith(`${names} (`));
    },
    names ?? null,
    { timeout: 30_000 },
  );
  return page.evaluate(() => ({
    ready: document.body.dataset.modelReady ?? "",
    source: document.body.dataset.modelSource ?? "",
    backend: document.body.dataset.backend ?? "",
    state: document.getElementById("model-state")?.textContent ?? "",
    isolated: self.crossOriginIsolated,
  }));
}

test("chat page in Chromium: the CLI's greedy text streamed from its worker on wasm threads, Stop, the model cached in OPFS by identity, picked files", { skip, timeout: 150_000 }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "bonsai-browser-app-"));
  let browser: Browser | null = null;
  const problems: string[] = [];
  const notFound: string[] = [];
  let downloads = 0;
  const server = createServer();
  try {
    const gguf = await exportGguf(dir);
    const cli = bonsai("generate", "--model", gguf, "--prompt", PROMPT, "--temperature", "0", "--max-tokens", String(MAX_TOKENS));
    assert.equal(cli.code, 0, cli.stderr);
    const expected = cli.stdout.replace(/\n$/, "");
    const bin = join(MODELS, "stories260K.bin");
    const tok = join(MODELS, "tok512.bin");
    const cliBin = bonsai("generate", "--model", bin, "--tokenizer", tok, "--prompt", PROMPT, "--temperature", "0", "--max-tokens", String(MAX_TOKENS));
    assert.equal(cliBin.code, 0, cliBin.stderr);
    const expectedBin = cliBin.stdout.replace(/\n$/, "");
    // A chat turn in ChatML (stories260K has no template of its own), by the library in Node.
    const wasm = await createBackend("wasm", { q8Activations: true });
    let chatExpected = "";
    try {
      const m = loadModel(gguf, wasm, undefined, { fuse: true });
      const tok = m.tokenizer!;
      const ids = chatPromptIds(tok, renderChat(DEFAULT_CHAT_TEMPLATE, [{ role: "user", content: CHAT_PROMPT }], specialTokenTexts(tok)));
      for await (const piece of stream(m.model, tok, ids, { temperature: 0, maxTokens: CHAT_TOKENS, seed: 1337, ...chatStops(tok, DEFAULT_CHAT_TEMPLATE) })) chatExpected += piece.text;
      m.model.dispose();
    } finally {
      wasm.dispose?.();
    }
    assert.ok(chatExpected.length > 0);
    const fromBos = readFileSync(join(MODELS, "stories260K.expected-greedy.txt"), "utf8").replace(/\n$/, "");

    const routes = createAppRoutes({ modelPath: gguf });
    server.on("request", (req: IncomingMessage, res: ServerResponse) => {
      if (req.method === "GET" && req.url === "/bonsai/model") downloads++;
      void routes(req, res).then((answered) => {
        if (answered) return;
        notFound.push(`${req.method} ${req.url}`);
        res.writeHead(404, { ...CROSS_ORIGIN_ISOLATION_HEADERS, "Content-Type": "text/plain" });
        res.end("not found\n");
      });
    });
    await new Promise<void>((ok) => server.listen(0, "127.0.0.1", ok));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;

    const launched = await launch(problems);
    browser = launched.browser;
    const page = launched.page;

    // First visit: no server API here, so the page starts in-browser; download, cache, generate.
    await page.goto(url);
    await page.waitForFunction(() => document.body.dataset.ready === "true", null, { timeout: 30_000 });
    assert.equal(await page.inputValue("#mode"), "browser", "without /v1/models the page starts in its in-browser mode");
    await page.selectOption("#mode", "browser");
    const first = await within(40_000, "first load", modelLoaded(page));
    t.diagnostic(`first visit: ${first.state}`);
    assert.equal(first.ready, "true", first.state);
    assert.equal(first.isolated, true, "the page is cross-origin isolated");
    assert.equal(first.source, "server");
    assert.equal(downloads, 1);
    // auto: SwiftShader's software adapter is no reason to leave the CPU; wasm on worker threads.
    assert.match(first.backend, /^wasm, ([2-8]) threads/);
    // The model runs in the page's inference worker, not on its main thread.
    const inference = page.workers().find((w) => new URL(w.url()).pathname === "/worker.js");
    assert.ok(inference, `the inference worker runs (workers: ${page.workers().map((w) => w.url()).join(", ")})`);
    assert.equal(await inference.evaluate(() => self.crossOriginIsolated), true, "the worker is cross-origin isolated too");

    const a = await within(60_000, "generation", generate(page, PROMPT, MAX_TOKENS));
    t.diagnostic(`"${PROMPT}": ${a.meta}`);
    assert.equal(a.text, expected, "the page's greedy text is the CLI's");
    assert.match(a.stats, /^\d+ tokens · [\d.]+ tokens\/s/);
    const steps = new Set(a.lengths.filter((n) => n > 0 && n < expected.length));
    assert.ok(steps.size >= 5, `the text streamed in (lengths seen: ${[...steps].join(", ")})`);

    // Reload: the mode is remembered, the model comes from OPFS, nothing is downloaded again.
    await page.reload();
    await page.waitForFunction(() => document.body.dataset.ready === "true", null, { timeout: 30_000 });
    const again = await within(40_000, "load after reload", modelLoaded(page));
    t.diagnostic(`after a reload: ${again.state}`);
    assert.equal(again.ready, "true", again.state);
    assert.equal(again.source, "opfs");
    assert.match(again.state, /loaded from OPFS/);
    assert.equal(downloads, 1, "no second download of /bonsai/model");

    const b = await within(60_000, "generation from BOS", generate(page, "", 200));
    t.diagnostic(`from BOS: ${b.meta}`);
    assert.equal(b.text, fromBos, "run.c's greedy text from BOS");

    // Stop, clicked when the first text shows: the worker ends the generation a few tokens later.
    const s = await within(60_000, "stopped generation", generate(page, "", STOP_TOKENS, { stop: true }));
    t.diagnostic(`stopped: ${s.meta} (Stop clicked at ${s.stoppedAt} characters shown, ${s.text.length} in the end)`);
    const made = Number(/^(\d+) tokens/.exec(s.meta)?.[1] ?? NaN);
    assert.ok(made >= 1 && made < STOP_TOKENS, `Stop ended the generation early (${made} of ${STOP_TOKENS} tokens)`);
    assert.match(s.meta, / · stopped$/);
    assert.equal(await page.evaluate(() => document.body.dataset.busy), "false");
    assert.equal(await page.isEnabled("#send"), true);
    assert.ok(s.text.length > 0 && (fromBos.startsWith(s.text) || s.text.startsWith(fromBos)), `the stopped text is the greedy text so far: ${JSON.stringify(s.text)}`);

    // The chat format: the same turn as the library renders and generates it in Node.
    await page.click("#clear");
    await page.selectOption("#format", "chat");
    const c = await within(60_000, "chat turn", generate(page, CHAT_PROMPT, CHAT_TOKENS));
    t.diagnostic(`chat "${CHAT_PROMPT}": ${c.meta}`);
    assert.match(c.meta, /chat \(ChatML\)/);
    assert.equal(c.text, chatExpected, "the chat turn as the library gives it in Node");

    // The server's model rewritten in place with other bytes of the same size (its name in the
    // metadata, one letter's case): a new sha256, so after a reload the page downloads it again
    // rather than run the stale copy in OPFS.
    const original = readFileSync(gguf);
    const changed = Buffer.from(original);
    const at = changed.indexOf("stories260K");
    assert.ok(at > 0);
    changed[at + "stories260K".length - 1] = "k".charCodeAt(0);
    writeFileSync(gguf, changed);
    await page.reload();
    await page.waitForFunction(() => document.body.dataset.ready === "true", null, { timeout: 30_000 });
    const stale = await within(40_000, "load of the changed model", modelLoaded(page));
    t.diagnostic(`the server's file changed, same size: ${stale.state}`);
    assert.equal(stale.ready, "true", stale.state);
    assert.equal(stale.source, "server", "downloaded again, not the stale OPFS copy");
    assert.equal(downloads, 2);
    writeFileSync(gguf, original);

    // The file picker: the GGUF, then llama2.c's .bin with its tokenizer, read in the worker.
    await page.setInputFiles("#model-file", gguf);
    const picked = await within(40_000, "picked GGUF", modelLoaded(page, "stories260K.gguf"));
    t.diagnostic(`picked: ${picked.state}`);
    assert.equal(picked.ready, "true", picked.state);
    assert.equal(picked.source, "file");
    assert.match(picked.state, /from a local file, cached in OPFS/);
    await page.selectOption("#format", "plain");
    const p1 = await within(60_000, "generation on the picked GGUF", generate(page, PROMPT, MAX_TOKENS));
    t.diagnostic(`picked GGUF, "${PROMPT}": ${p1.meta}`);
    assert.equal(p1.text, expected, "the picked GGUF's greedy text is the CLI's");
    await page.setInputFiles("#model-file", [bin, tok]);
    const pickedBin = await within(40_000, "picked .bin", modelLoaded(page, "stories260K.bin + tok512.bin"));
    t.diagnostic(`picked: ${pickedBin.state}`);
    assert.equal(pickedBin.ready, "true", pickedBin.state);
    assert.equal(pickedBin.source, "file");
    const p2 = await within(60_000, "generation on the picked .bin", generate(page, PROMPT, MAX_TOKENS));
    t.diagnostic(`picked .bin, "${PROMPT}": ${p2.meta}`);
    assert.equal(p2.text, expectedBin, "the picked .bin's greedy text is the CLI's");
    // A reload finds the picked files in OPFS (by name, size and lastModified).
    await page.reload();
    await page.waitForFunction(() => document.body.dataset.ready === "true", null, { timeout: 30_000 });
    const pickedAgain = await within(40_000, "picked files after a reload", modelLoaded(page));
    t.diagnostic(`picked, after a reload: ${pickedAgain.state}`);
    assert.equal(pickedAgain.ready, "true", pickedAgain.state);
    assert.equal(pickedAgain.source, "opfs");
    assert.match(pickedAgain.state, /^stories260K\.bin \+ tok512\.bin .*loaded from OPFS/);
    assert.equal(downloads, 2);

    // WebGPU (SwiftShader here: slow, so a few tokens), on the bytes already in the page.
    const gpu = await page.evaluate(async () => ("gpu" in navigator ? (await navigator.gpu.requestAdapter()) !== null : false));
    if (!gpu) t.diagnostic("no WebGPU adapter in this Chromium: the webgpu backend is not tried");
    else {
      await page.selectOption("#format", "plain");
      await page.selectOption("#backend", "webgpu");
      await page.waitForFunction(() => document.body.dataset.modelReady === "true" && document.body.dataset.backend?.startsWith("webgpu"), null, { timeout: 60_000 });
      const g = await within(90_000, "webgpu generation", generate(page, "", GPU_TOKENS));
      t.diagnostic(`webgpu from BOS: ${g.meta}`);
      assert.match(g.meta, new RegExp(`^${GPU_TOKENS} tokens .* webgpu`));
      assert.ok(g.text.length > 0 && fromBos.startsWith(g.text), `webgpu's greedy text starts run.c's: ${JSON.stringify(g.text)}`);
    }

    mkdirSync(OUT, { recursive: true });
    await page.screenshot({ path: join(OUT, "chat.png"), fullPage: true });
    t.diagnostic(`screenshot: ${join(OUT, "chat.png")}`);
  } finally {
    const unexpected = notFound.filter((r) => r !== "GET /v1/models");
    if (unexpected.length > 0) problems.push(`the server answered 404 for ${unexpected.join(", ")}`);
    if (problems.length > 0) t.diagnostic(`the page logged:\n${problems.join("\n")}`);
    await browser?.close().catch(() => {});
    server.closeAllConnections();
    await new Promise<void>((ok) => server.close(() => ok()));
    rmSync(dir, { recursive: true, force: true });
  }
});

test("chat page in Chromium against bonsai serve's server: streamed chat turns as the API answers them", { skip, timeout: 120_000 }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "bonsai-browser-app-serve-"));
  let browser: Browser | null = null;
  const problems: string[] = [];
  const wasm = await createBackend("wasm", { q8Activations: true });
  let server: BonsaiServer | null = null;
  try {
    const gguf = await exportGguf(dir);
    const { model, tokenizer } = loadModel(gguf, wasm, undefined, { fuse: true });
    server = createBonsaiServer(model, { tokenizer: tokenizer!, modelName: "stories260K", app: createAppRoutes({ modelPath: gguf }) });
    const url = await server.listen(0, "127.0.0.1");
    /** The API's own answer to a conversation (not streamed), the reference for the page's streamed one. */
    const answer = async (messages: { role: string; content: string }[], maxTokens: number): Promise<string> => {
      const r = await fetch(`${url}/v1/chat/completions`, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ model: "stories260K", messages, temperature: 0, max_tokens: maxTokens }),
      });
      assert.equal(r.status, 200);
      return ((await r.json()) as { choices: { message: { content: string } }[] }).choices[0].message.content;
    };

    const launched = await launch(problems);
    browser = launched.browser;
    const page = launched.page;
    await page.goto(`${url}/`);
    await page.waitForFunction(() => document.body.dataset.ready === "true", null, { timeout: 30_000 });
    assert.equal(await page.inputValue("#mode"), "server", "with /v1/models the page starts in server mode");
    assert.match((await page.textContent("#server-state")) ?? "", /stories260K/);

    const first = await within(60_000, "first turn", generate(page, CHAT_PROMPT, CHAT_TOKENS));
    t.diagnostic(`server, turn 1: ${first.meta}`);
    const expected1 = await answer([{ role: "user", content: CHAT_PROMPT }], CHAT_TOKENS);
    assert.ok(expected1.length > 0);
    assert.equal(first.text, expected1);
    assert.match(first.stats, /^\d+ tokens · [\d.]+ tokens\/s/);
    assert.ok(new Set(first.lengths.filter((n) => n > 0 && n < expected1.length)).size >= 3, "the reply streamed in");

    // The second turn carries the conversation.
    const next = "What happened next?";
    const second = await within(60_000, "second turn", generate(page, next, CHAT_TOKENS));
    t.diagnostic(`server, turn 2: ${second.meta}`);
    const expected2 = await answer([{ role: "user", content: CHAT_PROMPT }, { role: "assistant", content: expected1 }, { role: "user", content: next }], CHAT_TOKENS);
    assert.equal(second.text, expected2);

    mkdirSync(OUT, { recursive: true });
    await page.screenshot({ path: join(OUT, "chat-server.png"), fullPage: true });
    t.diagnostic(`screenshot: ${join(OUT, "chat-server.png")}`);

    // Switched to this browser, the same first turn: the text the server gave.
    await page.click("#clear");
    await page.selectOption("#mode", "browser");
    await page.selectOption("#backend", "wasm");
    await page.selectOption("#format", "chat");
    const loaded = await within(40_000, "in-browser load", modelLoaded(page));
    assert.equal(loaded.ready, "true", loaded.state);
    const here = await within(60_000, "in-browser turn", generate(page, CHAT_PROMPT, CHAT_TOKENS));
    t.diagnostic(`in this browser: ${here.meta}`);
    assert.equal(here.text, expected1, "the in-browser chat turn is the server's");

  } finally {
    if (problems.length > 0) t.diagnostic(`the page logged:\n${problems.join("\n")}`);
    await browser?.close().catch(() => {});
    await server?.close(0);
    wasm.dispose?.();
    rmSync(dir, { recursive: true, force: true });
  }
});
