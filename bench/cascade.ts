// The serving cascade (`bonsai serve --escalate-to`) on held-out prompts: a small local model in
// front of a larger upstream one, each a `bonsai serve` child process on loopback (1 thread each),
// both trained here on TinyStories (runs/cascade/, if absent: a few minutes on 2 cores). For each
// confidence function (mean-logprob, min-prob, entropy; over the first 16 tokens) a sweep of
// --threshold over its own range — quantiles of the local model's confidences under that function,
// read from the `bonsai.confidence` field of an always-local run; the three sweeps interleaved —
// 48 story openings from the
// corpus' last 10% are completed greedily (48 tokens), one request at a time. Reported per run:
// the fraction answered locally, quality = the mean loss (nats per token) of the returned answers
// under the large model given the prompt, what choosing the same fraction at random would give
// (chance), and the mean latency per request, with always-local (−∞), always-upstream through the
// cascade (+∞) and the upstream asked directly.
// Warm-up: the upstream process first answers 16 requests directly (a fresh `bonsai serve` needs
// about 8 before its latency settles: lazy weights, JIT, wasm tier-up; before this the sweep's
// first, rarely-escalating runs met a cold upstream), and each local server 8 of its own plus 4
// of zero tokens, which escalate at any finite threshold and so warm its forwarding path.
// Prints a markdown table; writes runs/cascade/cascade.svg (quality and latency against the
// fraction answered locally, one curve per confidence function).
// Run: npx tsc && node dist/bench/cascade.js   (needs ../shared/data/corpora/tinystories-2MiB.txt)
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { createBackend } from "../src/backend/index.js";
import { loadModel } from "../src/io/model-files-node.js";
import { promptIds } from "../src/runtime/stream.js";
import { logSumExpOf } from "../src/runtime/sample.js";
import { CONFIDENCE_FUNCTIONS, type ConfidenceFunction } from "../src/serve/cascade.js";
import { benchHeader } from "./machine.js";

const CORPUS = "../shared/data/corpora/tinystories-2MiB.txt";
const DIR = "runs/cascade";
const CLI = fileURLToPath(new URL("../src/cli/main.js", import.meta.url));
const N_PROMPTS = 48, MAX_TOKENS = 48, PROBE = 16, UPSTREAM_WARMUP = 16, LOCAL_WARMUP = 8;
const MODELS = {
  small: ["--layers", "2", "--heads", "2", "--dim", "48", "--iters", "300", "--eval-interval", "300"],
  large: ["--layers", "4", "--heads", "4", "--dim", "128", "--iters", "400", "--eval-interval", "400"],
};

function trainIfAbsent(name: keyof typeof MODELS): void {
  const out = `${DIR}/${name}`;
  if (existsSync(`${out}/config.json`)) return;
  console.error(`bench:cascade: training ${out} …`);
  const r = spawnSync(process.execPath, [CLI, "train", "--data", CORPUS, ...MODELS[name], "--block-size", "128", "--batch-size", "8", "--eval-iters", "4", "--log-interval", "100", "--threads", "1", "--out", out], { stdio: ["ignore", "ignore", "inherit"] });
  if (r.status !== 0) throw new Error(`training ${name} failed`);
}

/** A `bonsai serve` child; resolves to its URL once it listens. */
async function serve(model: string, extra: string[] = []): Promise<{ url: string; child: ChildProcess }> {
  const child = spawn(process.execPath, [CLI, "serve", "--model", model, "--port", "0", "--threads", "1", "--parallel", "1", "--model-name", model.split("/").pop()!, ...extra], { stdio: ["ignore", "ignore", "pipe"] });
  let err = "";
  const url = await new Promise<string>((resolve, reject) => {
    child.stderr!.on("data", (d: Buffer) => {
      err += d;
      const m = /listening on (http:\/\/\S+)/.exec(err);
      if (m) resolve(m[1]);
    });
    child.on("exit", (code) => reject(new Error(`serve exited ${code}: ${err}`)));
  });
  return { url, child };
}
const stop = (c: ChildProcess): Promise<void> => new Promise((r) => (c.exitCode !== null ? r() : (c.once("exit", () => r()), c.kill("SIGTERM"))));

interface Answer { text: string; by: string; seconds: number; confidence: number | null }
async function complete(url: string, prompt: string, maxTokens = MAX_TOKENS): Promise<Answer> {
  const t0 = performance.now();
  const res = await fetch(`${url}/v1/completions`, { method: "POST", body: JSON.stringify({ prompt, max_tokens: maxTokens, temperature: 0 }) });
  const body = (await res.json()) as { choices: { text: string }[]; bonsai?: { answered_by: string; confidence: number | null } };
  const seconds = (performance.now() - t0) / 1000;
  if (res.status !== 200) throw new Error(`${url}: ${res.status} ${JSON.stringify(body)}`);
  return { text: body.choices[0].text, by: res.headers.get("x-bonsai-answered-by") ?? body.bonsai?.answered_by ?? "direct", seconds, confidence: body.bonsai?.confidence ?? null };
}

/** Story openings from the last 10% of the corpus: a line's first ~40 characters, cut at a word. */
function heldOutPrompts(text: string): string[] {
  const lines = text.slice(Math.floor(text.length * 0.9)).split("\n").slice(1).filter((l) => l.length > 120 && /^[A-Z]/.test(l));
  const step = Math.max(1, Math.floor(lines.length / N_PROMPTS));
  return Array.from({ length: N_PROMPTS }, (_, i) => {
    const l = lines[i * step];
    return l.slice(0, l.lastIndexOf(" ", 40));
  });
}

const WARMUP_PROMPTS = ["Once upon a time", "Tom and Sue", "The big red", "One day, a little", "Lily wanted to", "The sun was", "Max had a", "In the park"];

interface Row { fn: ConfidenceFunction | null; label: string; threshold: number | null; answers: Answer[] }
interface TableRow { fn: ConfidenceFunction | null; label: string; local: number; loss: number; chance: number; latency: number; byLocal: number; byUp: number }

async function main(): Promise<void> {
  if (!existsSync(CORPUS)) {
    console.log(`bench:cascade: ${CORPUS} is absent; skipped`);
    return;
  }
  console.log(await benchHeader());
  mkdirSync(DIR, { recursive: true });
  trainIfAbsent("small");
  trainIfAbsent("large");
  const prompts = heldOutPrompts(readFileSync(CORPUS, "utf8"));

  const up = await serve(`${DIR}/large`);
  const upV1 = `${up.url}/v1`;
  const rows: Row[] = [];
  const run = async (url: string, warmup: number): Promise<Answer[]> => {
    for (let i = 0; i < warmup; i++) await complete(url, WARMUP_PROMPTS[i % WARMUP_PROMPTS.length]);
    // Zero-token requests: an empty answer has confidence −∞, so they escalate at any threshold
    // above −∞ and warm the local server's forwarding path (its first upstream call is slower).
    if (warmup === LOCAL_WARMUP) for (let i = 0; i < 4; i++) await complete(url, WARMUP_PROMPTS[i], 0);
    const answers: Answer[] = [];
    for (const p of prompts) answers.push(await complete(url, p));
    return answers;
  };
  const cascade = async (fn: ConfidenceFunction, t: number): Promise<Answer[]> => {
    const local = await serve(`${DIR}/small`, ["--escalate-to", upV1, "--escalate-model", "large", "--confidence", fn, `--threshold=${t}`, "--probe-tokens", String(PROBE)]);
    const answers = await run(local.url, LOCAL_WARMUP);
    await stop(local.child);
    return answers;
  };
  rows.push({ fn: null, label: "upstream asked directly", threshold: null, answers: await run(up.url, UPSTREAM_WARMUP) });
  // Always local: the answers, and each prompt's confidence under each function (the server's own).
  const thresholds = new Map<ConfidenceFunction, number[]>();
  for (const fn of CONFIDENCE_FUNCTIONS) {
    const always = await cascade(fn, -Infinity);
    if (fn === CONFIDENCE_FUNCTIONS[0]) rows.push({ fn: null, label: "always local (−∞)", threshold: -Infinity, answers: always });
    const sorted = always.map((a) => a.confidence ?? -Infinity).sort((a, b) => a - b);
    const q = (f: number): number => Number(sorted[Math.min(sorted.length - 1, Math.floor(f * sorted.length))].toPrecision(4));
    thresholds.set(fn, [q(0.125), q(0.25), q(0.5), q(0.75), q(0.875)]);
  }
  // The sweeps interleaved (each quantile for every function in turn), so that a machine busier
  // at one time than another does not load one function's runs only.
  for (let k = 0; k < 5; k++)
    for (const fn of CONFIDENCE_FUNCTIONS) {
      const t = thresholds.get(fn)![k];
      if (k === 0 || t !== thresholds.get(fn)![k - 1]) rows.push({ fn, label: `${fn} < ${t}`, threshold: t, answers: await cascade(fn, t) });
    }
  rows.push({ fn: null, label: "always upstream, via the cascade (+∞)", threshold: Infinity, answers: await cascade(CONFIDENCE_FUNCTIONS[0], Infinity) });
  await stop(up.child);

  // Quality: the large model's loss on each returned answer given its prompt.
  const be = await createBackend("wasm", { threads: 1 });
  const { model, tokenizer } = loadModel(`${DIR}/large`, be, undefined, { fuse: true });
  const vocab = model.config.vocab_size;
  const scoreCache = new Map<string, { sum: number; n: number }>();
  const score = async (prompt: string, answer: string): Promise<{ sum: number; n: number }> => {
    const key = `${prompt}\u0000${answer}`;
    const hit = scoreCache.get(key);
    if (hit) return hit;
    const p = promptIds(tokenizer!, prompt), a = tokenizer!.encode(answer);
    const ids = [...p, ...a].slice(0, model.config.max_position_embeddings);
    let sum = 0, n = 0;
    if (a.length > 0) {
      const logits = await model.forwardAcross(Int32Array.from(ids), 1, ids.length);
      const host = await logits.toArray();
      logits.dispose();
      for (let i = p.length - 1; i < ids.length - 1; i++) {
        sum += logSumExpOf(host, i * vocab, vocab) - host[i * vocab + ids[i + 1]];
        n++;
      }
    }
    const r = { sum, n };
    scoreCache.set(key, r);
    return r;
  };
  const scores = new Map<Row, { sum: number; n: number }[]>();
  for (const r of rows) scores.set(r, await Promise.all(r.answers.map((a, i) => score(prompts[i], a.text))));
  model.dispose();
  // Chance: the expected loss when the same number of requests, picked at random, goes upstream.
  const ends = (label: string): { sum: number; n: number }[] => scores.get(rows.find((r) => r.label === label)!)!;
  const allLocal = ends("always local (−∞)"), allUp = ends("always upstream, via the cascade (+∞)");
  const total = (xs: { sum: number; n: number }[]): { sum: number; n: number } => xs.reduce((a, b) => ({ sum: a.sum + b.sum, n: a.n + b.n }), { sum: 0, n: 0 });
  const L = total(allLocal), U = total(allUp);
  const chance = (f: number): number => (f * L.sum + (1 - f) * U.sum) / (f * L.n + (1 - f) * U.n);
  const meanMs = (as: Answer[]): number => (as.length ? (1000 * as.reduce((s, a) => s + a.seconds, 0)) / as.length : NaN);
  const table: TableRow[] = [];
  const sweeps = CONFIDENCE_FUNCTIONS.flatMap((fn) => rows.filter((r) => r.fn === fn));
  const order = [rows.find((r) => r.label.startsWith("always local"))!, ...sweeps, rows.find((r) => r.label.startsWith("always upstream"))!, rows[0]];
  for (const r of order) {
    const t = total(scores.get(r)!);
    const local = r.answers.filter((a) => a.by === "local").length / r.answers.length;
    table.push({ fn: r.fn, label: r.label, local, loss: t.sum / t.n, chance: r.label === "upstream asked directly" ? NaN : chance(local), latency: r.answers.reduce((s, a) => s + a.seconds, 0) / r.answers.length, byLocal: meanMs(r.answers.filter((a) => a.by === "local")), byUp: meanMs(r.answers.filter((a) => a.by === "upstream")) });
  }

  console.log(`\n${prompts.length} held-out story openings, ${MAX_TOKENS} greedy tokens each, one request at a time; local ${MODELS.small.slice(0, 6).join(" ")} (300 steps), upstream ${MODELS.large.slice(0, 6).join(" ")} (400 steps); --probe-tokens ${PROBE}; thresholds: each function's confidence quantiles 12.5/25/50/75/87.5%\n`);
  console.log("| run | answered locally | loss of the answers under the large model (nats/token) | at random (same fraction) | mean latency (ms) | local answers (ms) | escalated answers (ms) |");
  console.log("|---|---:|---:|---:|---:|---:|---:|");
  const ms = (v: number): string => (Number.isNaN(v) ? "–" : v.toFixed(0));
  for (const t of table) console.log(`| ${t.label} | ${(100 * t.local).toFixed(0)}% | ${t.loss.toFixed(3)} | ${Number.isNaN(t.chance) ? "–" : t.chance.toFixed(3)} | ${(1000 * t.latency).toFixed(0)} | ${ms(t.byLocal)} | ${ms(t.byUp)} |`);
  // The escalated answers' latency by their place in a run: the first against the others.
  const runs = rows.filter((r) => r.fn !== null).map((r) => r.answers.map((a) => a.seconds * 1000).filter((_, i) => r.answers[i].by === "upstream")).filter((e) => e.length > 1);
  const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;
  console.log(`\nescalated answers of the ${runs.length} threshold runs: the first of each ${mean(runs.map((e) => e[0])).toFixed(0)} ms on average, the others ${mean(runs.flatMap((e) => e.slice(1))).toFixed(0)} ms`);
  writeFileSync(`${DIR}/cascade.svg`, plot(table, chance));
  console.log(`\nwrote ${DIR}/cascade.svg`);
}

const xml = (t: string): string => t.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");

const COLORS: Record<ConfidenceFunction, string> = { "mean-logprob": "#2a6fdb", "min-prob": "#d9822b", entropy: "#2b9e5a" };

/** Two panels over the fraction answered locally: quality (loss) and mean latency; one curve per confidence function, each through the two ends. */
function plot(table: TableRow[], chance: (fractionLocal: number) => number): string {
  const W = 380, H = 280, M = { l: 58, r: 14, t: 30, b: 62 };
  const ends = table.filter((t) => t.fn === null && !Number.isNaN(t.chance));
  const panel = (x0: number, title: string, y: (t: TableRow) => number, unit: string, withChance: boolean): string => {
    const ys = table.filter((t) => !Number.isNaN(t.chance)).map(y);
    const lo = Math.min(...ys), hi = Math.max(...ys), pad = (hi - lo) * 0.1 || Math.abs(hi) * 0.05 || 1;
    const y0 = lo - pad, y1 = hi + pad;
    const px = (f: number): number => x0 + M.l + f * (W - M.l - M.r);
    const py = (v: number): number => M.t + (1 - (v - y0) / (y1 - y0)) * (H - M.t - M.b);
    let s = `<text x="${x0 + W / 2}" y="18" text-anchor="middle" font-size="13">${title}</text>`;
    s += `<rect x="${px(0)}" y="${M.t}" width="${px(1) - px(0)}" height="${H - M.t - M.b}" fill="none" stroke="#999"/>`;
    for (const f of [0, 0.25, 0.5, 0.75, 1]) s += `<text x="${px(f)}" y="${H - M.b + 14}" text-anchor="middle" font-size="10">${f * 100}%</text>`;
    for (let k = 0; k <= 4; k++) {
      const v = y0 + ((y1 - y0) * k) / 4;
      s += `<text x="${px(0) - 4}" y="${py(v) + 3}" text-anchor="end" font-size="10">${v.toFixed(unit === "ms" ? 0 : 2)}</text>`;
    }
    s += `<text x="${x0 + M.l + (W - M.l - M.r) / 2}" y="${H - M.b + 30}" text-anchor="middle" font-size="11">answered locally</text>`;
    s += `<text x="${x0 + 12}" y="${M.t + (H - M.t - M.b) / 2}" text-anchor="middle" font-size="11" transform="rotate(-90 ${x0 + 12} ${M.t + (H - M.t - M.b) / 2})">${unit}</text>`;
    if (withChance) {
      const pts = Array.from({ length: 21 }, (_, i) => i / 20).map((f) => `${px(f).toFixed(1)},${py(chance(f)).toFixed(1)}`);
      s += `<polyline fill="none" stroke="#888" stroke-dasharray="4 3" points="${pts.join(" ")}"/>`;
    }
    for (const fn of CONFIDENCE_FUNCTIONS) {
      const pts = [...ends, ...table.filter((t) => t.fn === fn)].sort((a, b) => a.local - b.local);
      s += `<polyline fill="none" stroke="${COLORS[fn]}" stroke-width="1.5" points="${pts.map((t) => `${px(t.local).toFixed(1)},${py(y(t)).toFixed(1)}`).join(" ")}"/>`;
      for (const t of pts.filter((t) => t.fn === fn)) s += `<circle cx="${px(t.local).toFixed(1)}" cy="${py(y(t)).toFixed(1)}" r="3" fill="${COLORS[fn]}"><title>${xml(t.label)}</title></circle>`;
    }
    for (const t of ends) s += `<circle cx="${px(t.local).toFixed(1)}" cy="${py(y(t)).toFixed(1)}" r="3.5" fill="#d33"><title>${xml(t.label)}</title></circle>`;
    return s;
  };
  let legend = "";
  const entries: [string, string, "line" | "dashed" | "dot"][] = [...CONFIDENCE_FUNCTIONS.map((fn): [string, string, "line"] => [fn, COLORS[fn], "line"]), ["at random", "#888", "dashed"], ["always local / upstream", "#d33", "dot"]];
  entries.forEach(([name, color, mark], i) => {
    const x = 10 + i * 140, y = H - 12;
    legend += mark === "dot" ? `<circle cx="${x + 11}" cy="${y - 4}" r="3.5" fill="${color}"/>` : `<line x1="${x}" y1="${y - 4}" x2="${x + 22}" y2="${y - 4}" stroke="${color}" stroke-width="2"${mark === "dashed" ? ' stroke-dasharray="4 3"' : ""}/>`;
    legend += `<text x="${x + 27}" y="${y}" font-size="11">${name}</text>`;
  });
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${2 * W}" height="${H}" font-family="sans-serif">
<rect width="100%" height="100%" fill="white"/>
${panel(0, "Quality: loss under the large model (lower is better)", (t) => t.loss, "nats/token", true)}
${panel(W, "Mean latency per request", (t) => 1000 * t.latency, "ms", false)}
${legend}
</svg>
`;
}

await main();
