// Bonsai beside transformers.js (@huggingface/transformers 4.x, the peer that runs ONNX models
// in JavaScript) on the same model, prompt and number of greedy tokens. Each model is exported
// once (bonsai export --format onnx's files, plus model.safetensors beside them for Bonsai), so
// both load one folder. Prefill (time to the first generated token) and decode (the tokens
// after it) are timed by the clock at each token, for both alike; the table says whether the two
// produced the same tokens.
//   Node:     Bonsai wasm (1 and 2 threads) vs transformers.js on onnxruntime-node (CPU EP,
//             intra-op threads 1 and 2)
//   Chromium: Bonsai wasm vs transformers.js on onnxruntime-web wasm (1 and 2 threads; the page
//             is cross-origin isolated), and Bonsai webgpu vs transformers.js webgpu
//             (headless /usr/bin/chromium via playwright-core; everything served from 127.0.0.1)
//
// Run: npm run bench:tjs -- [--models 260k,15m] [--tokens N] [--repeat 3] [--no-browser] [--no-webgpu]
// Node runs start with an untimed warm-up run; in Chromium each run is a fresh page whose
// engine first generates two untimed tokens.
// Models: stories260K (../shared/data; its tokenizer gives the prompt) and a random model of
// llama2.c's stories15M shape (vocab 32000, tied, 15M parameters; weights ×10 so greedy
// decoding has clear winners to agree on).
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, relative, resolve, sep } from "node:path";
import { fileURLToPath } from "node:url";
import type { Browser, Page } from "playwright-core";
import { Flags } from "../src/cli/args.js";
import { createBackend } from "../src/backend/index.js";
import { JsBackend } from "../src/backend/js/js-backend.js";
import { modelTensors } from "../src/io/checkpoint.js";
import { loadModel } from "../src/io/model-files-node.js";
import { ONNX_SUBFOLDER, onnxModelDirectory } from "../src/io/onnx-dir.js";
import { serializeSafetensors } from "../src/format/safetensors.js";
import { Llama } from "../src/nn/llama.js";
import { generateTokens } from "../src/runtime/generate.js";
import { promptIds } from "../src/runtime/stream.js";
import { CHROMIUM_ARGS, serve, within } from "../test/static-server.js";
import { benchHeader } from "./machine.js";
import { stories15MShape } from "./shapes.js";

const f = Flags.parse(process.argv.slice(2), {
  models: { type: "string", help: "comma-separated: 260k, 15m (both)" },
  tokens: { type: "string", help: "greedy tokens per run (128 on 260k, 64 on 15m; a third of that on webgpu)" },
  repeat: { type: "string", help: "runs per case, the fastest decode kept (3)" },
  "no-browser": { type: "boolean", help: "Node only" },
  "no-webgpu": { type: "boolean", help: "skip the WebGPU cases in Chromium" },
});
const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const DATA = join(ROOT, "../shared/data/models");
const CHROMIUM = "/usr/bin/chromium";
const repeat = f.int("repeat", 3, 1);
const wanted = (f.str("models") ?? "260k,15m").split(",");

interface Run {
  tokens: number[];
  prefillMs: number;
  decodeMs: number;
  decoded: number;
  adapter?: string | null;
}
interface BenchModel {
  name: string;
  dir: string;
  prompt: number[];
  maxTokens: number;
  eos: number | null;
}

// ---- the models, exported into one folder each ----
const work = mkdtempSync(join(tmpdir(), "bonsai-tjs-"));
process.on("exit", () => rmSync(work, { recursive: true, force: true }));

async function exportBoth(name: string, model: Llama, tokenizer: Parameters<typeof onnxModelDirectory>[1]): Promise<string> {
  const dir = join(work, name);
  const files = await onnxModelDirectory(model, tokenizer);
  mkdirSync(join(dir, ONNX_SUBFOLDER), { recursive: true });
  for (const x of files.files) writeFileSync(join(dir, x.name), x.bytes);
  for (const x of files.onnxFiles) writeFileSync(join(dir, ONNX_SUBFOLDER, x.name), x.bytes);
  writeFileSync(join(dir, "model.safetensors"), serializeSafetensors(await modelTensors(model), { format: "pt" }));
  return dir;
}

const models: BenchModel[] = [];
const host = new JsBackend("f32");
if (wanted.includes("260k")) {
  if (existsSync(join(DATA, "stories260K.bin"))) {
    const { model, tokenizer } = loadModel(join(DATA, "stories260K.bin"), host, join(DATA, "tok512.bin"));
    const dir = await exportBoth("stories260K", model, tokenizer);
    models.push({ name: "stories260K", dir, prompt: promptIds(tokenizer!, "Once upon a time, there was a little"), maxTokens: f.int("tokens", 128, 1), eos: model.config.eos_token_id ?? null });
  } else console.log(`bench:tjs: ${join(DATA, "stories260K.bin")} absent; stories260K skipped`);
}
if (wanted.includes("15m")) {
  const shape = stories15MShape({ vocabSize: 32000, maxPositions: 512, tied: true });
  const model = Llama.init(host, shape, 15);
  for (const [, p] of model.parameters()) if (p.shape.length === 2) host.write(p.data, Float32Array.from(await p.toArray(), (x) => x * 10));
  const dir = await exportBoth("random-15M", model, null);
  models.push({ name: "random-15M", dir, prompt: Array.from({ length: 16 }, (_, i) => (i * 7919 + 13) % 32000), maxTokens: f.int("tokens", 64, 1), eos: null });
}

// ---- timing ----
/** The fastest prefill and the fastest decode of several runs (of the same tokens: the first run's). */
function best(runs: Run[]): Run {
  const perToken = (r: Run) => r.decodeMs / Math.max(r.decoded, 1);
  const fastest = runs.reduce((a, b) => (perToken(b) < perToken(a) ? b : a));
  return { ...fastest, tokens: runs[0].tokens, prefillMs: Math.min(...runs.map((r) => r.prefillMs)) };
}
/** A warm-up run (loading, compiling, first allocations), then `repeat` timed ones. */
async function repeated(fn: () => Promise<Run>): Promise<Run> {
  await fn();
  const runs: Run[] = [];
  for (let i = 0; i < repeat; i++) runs.push(await fn());
  return best(runs);
}

async function bonsaiNode(m: BenchModel, threads: number): Promise<Run> {
  const backend = await createBackend("wasm", { threads });
  const { model } = loadModel(m.dir, backend, undefined, { fuse: true });
  try {
    return await repeated(async () => {
      const tokens: number[] = [], times: number[] = [];
      const t0 = performance.now();
      for await (const id of generateTokens(model, m.prompt, { temperature: 0, maxTokens: m.maxTokens, stopIds: m.eos === null ? [] : [m.eos] })) {
        times.push(performance.now());
        tokens.push(id);
      }
      return { tokens, prefillMs: times[0] - t0, decodeMs: times.at(-1)! - times[0], decoded: times.length - 1 };
    });
  } finally {
    model.dispose();
    backend.dispose?.();
  }
}

async function transformersNode(m: BenchModel, threads: number): Promise<Run> {
  const tjs = await import("@huggingface/transformers");
  tjs.env.allowRemoteModels = false;
  tjs.env.localModelPath = work + "/";
  const name = relative(work, m.dir);
  const model = await tjs.AutoModelForCausalLM.from_pretrained(name, {
    local_files_only: true,
    device: "cpu",
    session_options: { intraOpNumThreads: threads, interOpNumThreads: 1 },
  });
  try {
    return await repeated(async () => {
      const times: number[] = [];
      let puts = 0;
      // generate() puts the prompt first, then each new token.
      const streamer = { put: () => void (puts++ > 0 && times.push(performance.now())), end: () => {} } as unknown as InstanceType<typeof tjs.TextStreamer>;
      const input_ids = new tjs.Tensor("int64", BigInt64Array.from(m.prompt, BigInt), [1, m.prompt.length]);
      const t0 = performance.now();
      const out = (await model.generate({ input_ids, attention_mask: tjs.ones([1, m.prompt.length]), max_new_tokens: m.maxTokens, do_sample: false, streamer })) as InstanceType<typeof tjs.Tensor>;
      const tokens = Array.from(out.data as BigInt64Array, Number).slice(m.prompt.length);
      return { tokens, prefillMs: times[0] - t0, decodeMs: times.at(-1)! - times[0], decoded: times.length - 1 };
    });
  } finally {
    await model.dispose();
  }
}

// ---- the table ----
interface Row {
  model: string;
  where: string;
  threads: string;
  bonsai: Run | string;
  tjs: Run | string;
}
const rows: Row[] = [];
const perS = (n: number, ms: number) => (ms > 0 ? (1000 * n) / ms : NaN);
const fmt = (x: number) => (Number.isFinite(x) ? (x >= 100 ? x.toFixed(0) : x.toFixed(1)) : "–");
function printTable(title: string, list: Row[]): void {
  console.log(`\n${title}`);
  console.log("| model | engine | threads | prefill tok/s Bonsai | prefill tok/s tjs | decode tok/s Bonsai | decode tok/s tjs | decode ratio (Bonsai ÷ tjs) | same tokens |");
  console.log("|---|---|---|---|---|---|---|---|---|");
  for (const r of list) {
    const b = typeof r.bonsai === "string" ? null : r.bonsai, t = typeof r.tjs === "string" ? null : r.tjs;
    const pre = (x: Run | null) => (x ? fmt(perS(m(r).prompt.length, x.prefillMs)) : "–");
    const dec = (x: Run | null) => (x ? fmt(perS(x.decoded, x.decodeMs)) : "–");
    const ratio = b && t ? (perS(b.decoded, b.decodeMs) / perS(t.decoded, t.decodeMs)).toFixed(2) + "×" : "–";
    const same = b && t ? (b.tokens.join(",") === t.tokens.join(",") ? `yes (${b.tokens.length})` : `NO (${b.tokens.length} vs ${t.tokens.length}; first difference at ${firstDifference(b.tokens, t.tokens)})`) : "–";
    console.log(`| ${r.model} | ${r.where} | ${r.threads} | ${pre(b)} | ${pre(t)} | ${dec(b)} | ${dec(t)} | ${ratio} | ${same} |`);
    for (const [who, x] of [["Bonsai", r.bonsai], ["transformers.js", r.tjs]] as const) if (typeof x === "string") console.log(`|  | ${who} failed: ${x.replace(/\s+/g, " ").slice(0, 300)} |`);
  }
}
const m = (r: Row) => models.find((x) => x.name === r.model)!;
const firstDifference = (a: number[], b: number[]) => a.findIndex((x, i) => x !== b[i]);
const attempt = async (fn: () => Promise<Run>): Promise<Run | string> => {
  try {
    return await fn();
  } catch (e) {
    return (e as Error).message;
  }
};

console.log(await benchHeader());
const ort = await import("onnxruntime-node");
console.log(`transformers.js 4.3.2 on onnxruntime-node ${ort.env.versions.node}; ${repeat} runs per case, the fastest decode kept`);
for (const x of models) console.log(`model ${x.name}: prompt ${x.prompt.length} tokens, up to ${x.maxTokens} greedy tokens`);

const nodeRows: Row[] = [];
for (const x of models)
  for (const threads of [1, 2])
    nodeRows.push({ model: x.name, where: "Node: Bonsai wasm / tjs onnxruntime-node CPU", threads: String(threads), bonsai: await attempt(() => bonsaiNode(x, threads)), tjs: await attempt(() => transformersNode(x, threads)) });
printTable("Node", nodeRows);
rows.push(...nodeRows);

// ---- Chromium ----
if (!f.bool("no-browser")) {
  if (!existsSync(CHROMIUM)) console.log(`\nChromium: ${CHROMIUM} missing; skipped`);
  else await browserBench();
}

async function browserBench(): Promise<void> {
  const inside = (base: string, urlPath: string, prefix: string): string | null => {
    const file = resolve(base, "." + urlPath.slice(prefix.length - 1));
    const rel = relative(base, file);
    return rel.startsWith("..") || rel.split(sep).includes("..") ? null : file;
  };
  const fileFor = (p: string): string | null => {
    if (p === "/" || p === "/bench.html") return join(ROOT, "bench/transformers-js.html");
    if (p.startsWith("/dist/src/")) return inside(join(ROOT, "dist/src"), p, "/dist/src/");
    if (p.startsWith("/tjs/")) return inside(join(ROOT, "node_modules/@huggingface/transformers/dist"), p, "/tjs/");
    if (p.startsWith("/ort/")) return inside(join(ROOT, "node_modules/onnxruntime-web/dist"), p, "/ort/");
    if (p.startsWith("/models/")) return inside(work, p, "/models/");
    return null;
  };
  const { chromium } = await import("playwright-core");
  const server = await serve(fileFor);
  let browser: Browser | null = null;
  const problems: string[] = [];
  try {
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS, timeout: 60_000 });
    const b = browser;
    const openPage = async (): Promise<Page> => {
      const page = await b.newPage();
      page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
      page.on("console", (msg) => {
        if (msg.type() === "error") problems.push(`console.error: ${msg.text()}`);
      });
      await page.goto(`${server.url}/bench.html`);
      await page.waitForFunction(() => (window as unknown as { benchReady?: boolean; benchLoadError?: string }).benchReady === true || (window as unknown as { benchLoadError?: string }).benchLoadError !== undefined, null, { timeout: 60_000 });
      const err = await page.evaluate(() => (window as unknown as { benchLoadError?: string }).benchLoadError ?? null);
      if (err) throw new Error(`the bench page did not load: ${err}`);
      return page;
    };
    const probe = await openPage();
    const adapter = await probe.evaluate(() => (window as unknown as { adapterInfo(): Promise<string | null> }).adapterInfo());
    await probe.close();
    console.log(`\nChromium ${browser.version()} (headless); WebGPU adapter: ${adapter ?? "none"}`);
    /** One run in a fresh page (closed after it, which also stops a run past its limit). */
    const inPage = async (fn: "runBonsai" | "runTransformersJs", args: Record<string, unknown>, limitMs: number): Promise<Run> => {
      const page = await openPage();
      try {
        return await within(limitMs, `${fn} ${JSON.stringify(args.model)}`, page.evaluate(([name, a]) => (window as unknown as Record<string, (a: unknown) => Promise<Run>>)[name](a), [fn, args] as const));
      } finally {
        await page.close().catch(() => {});
      }
    };
    const pageRepeated = async (fn: "runBonsai" | "runTransformersJs", args: Record<string, unknown>, limitMs: number, times: number): Promise<Run> => {
      const runs: Run[] = [];
      for (let i = 0; i < times; i++) runs.push(await inPage(fn, args, limitMs));
      return best(runs);
    };
    const browserRows: Row[] = [];
    for (const x of models) {
      const common = { model: x.name, prompt: x.prompt, maxTokens: x.maxTokens, eos: x.eos };
      for (const threads of [1, 2])
        browserRows.push({
          model: x.name, where: "Chromium wasm", threads: String(threads),
          bonsai: await attempt(() => pageRepeated("runBonsai", { ...common, backend: "wasm", threads }, 300_000, repeat)),
          tjs: await attempt(() => pageRepeated("runTransformersJs", { ...common, device: "wasm", threads }, 300_000, repeat)),
        });
    }
    if (!f.bool("no-webgpu") && adapter !== null) {
      // SwiftShader runs WebGPU on the CPU: fewer tokens, one run, stories260K only unless asked.
      for (const x of models.filter((y) => y.name === "stories260K" || f.has("models"))) {
        const common = { model: x.name, prompt: x.prompt, maxTokens: Math.max(2, Math.round(x.maxTokens / 3)), eos: x.eos };
        browserRows.push({
          model: x.name, where: `Chromium webgpu (${adapter})`, threads: "–",
          bonsai: await attempt(() => pageRepeated("runBonsai", { ...common, backend: "webgpu" }, 300_000, 1)),
          tjs: await attempt(() => pageRepeated("runTransformersJs", { ...common, device: "webgpu", threads: 1 }, 300_000, 1)),
        });
      }
    }
    printTable(`Chromium ${browser.version()} (WebGPU adapter: ${adapter ?? "none"})`, browserRows);
    rows.push(...browserRows);
  } finally {
    if (server.notFound.length > 0) problems.push(`the server answered 404 for ${[...new Set(server.notFound)].join(", ")}`);
    if (problems.length > 0) console.log(`\nthe page logged:\n${[...new Set(problems)].join("\n")}`);
    await browser?.close().catch(() => {});
    await server.close();
  }
}
