// The serving cascade (`bonsai serve --escalate-to`) on held-out prompts: a small local model in
// front of a larger upstream one, each a `bonsai serve` child process on loopback (1 thread each),
// both trained here on TinyStories (runs/cascade/, if absent: a few minutes on 2 cores). For a sweep
// of --threshold (mean-logprob over the first 16 tokens; the thresholds are quantiles of the local
// model's own confidences), 48 story openings from the corpus' last 10% are completed greedily (48
// tokens), one request at a time after 3 warm-up requests (answered both ways) per server; reported: the fraction answered locally, quality = the mean
// loss (nats per token) of the returned answers under the large model given the prompt, and the
// mean latency per request, with always-local (−∞), always-upstream through the cascade (+∞) and
// the upstream asked directly. Prints a markdown table; writes runs/cascade/cascade.svg.
// Run: npx tsc && node dist/bench/cascade.js   (needs ../shared/data/corpora/tinystories-2MiB.txt)
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { createBackend } from "../src/backend/index.js";
import { loadModel } from "../src/io/model-files-node.js";
import { promptIds } from "../src/runtime/stream.js";
import { logSumExpOf } from "../src/runtime/sample.js";
import { confidence } from "../src/serve/cascade.js";
import { benchHeader } from "./machine.js";

const CORPUS = "../shared/data/corpora/tinystories-2MiB.txt";
const DIR = "runs/cascade";
const CLI = fileURLToPath(new URL("../src/cli/main.js", import.meta.url));
const N_PROMPTS = 48, MAX_TOKENS = 48, PROBE = 16;
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

interface Answer { text: string; by: string; seconds: number; logprobs?: number[] }
async function complete(url: string, prompt: string, logprobs = false): Promise<Answer> {
  const t0 = performance.now();
  const res = await fetch(`${url}/v1/completions`, { method: "POST", body: JSON.stringify({ prompt, max_tokens: MAX_TOKENS, temperature: 0, ...(logprobs && { logprobs: 0 }) }) });
  const body = (await res.json()) as { choices: { text: string; logprobs?: { token_logprobs: number[] } }[]; bonsai?: { answered_by: string } };
  const seconds = (performance.now() - t0) / 1000;
  if (res.status !== 200) throw new Error(`${url}: ${res.status} ${JSON.stringify(body)}`);
  return { text: body.choices[0].text, by: res.headers.get("x-bonsai-answered-by") ?? body.bonsai?.answered_by ?? "direct", seconds, logprobs: body.choices[0].logprobs?.token_logprobs };
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
  // The local model's own confidences give the thresholds (quantiles) and the always-local row.
  const rows: { label: string; answers: Answer[] }[] = [];
  const run = async (label: string, url: string): Promise<Answer[]> => {
    const answers: Answer[] = [];
    for (const p of ["Once upon a time", "Tom and Sue", "The big red"]) await complete(url, p); // warm-up (JIT, connections)
    for (const p of prompts) answers.push(await complete(url, p));
    rows.push({ label, answers });
    return answers;
  };
  const plain = await serve(`${DIR}/small`);
  const confs: number[] = [];
  for (const p of prompts) confs.push(confidence("mean-logprob", (await complete(plain.url, p, true)).logprobs!.slice(0, PROBE).map((logprob) => ({ logprob }))));
  await stop(plain.child);
  const sorted = [...confs].sort((a, b) => a - b);
  const q = (f: number): number => Number(sorted[Math.min(sorted.length - 1, Math.floor(f * sorted.length))].toFixed(3));
  const thresholds = [...new Set([q(0.125), q(0.25), q(0.5), q(0.75), q(0.875)])];
  for (const t of [-Infinity, ...thresholds, Infinity]) {
    const local = await serve(`${DIR}/small`, ["--escalate-to", upV1, "--escalate-model", "large", "--confidence", "mean-logprob", `--threshold=${t}`, "--probe-tokens", String(PROBE)]);
    await run(t === -Infinity ? "always local (−∞)" : t === Infinity ? "always upstream, via the cascade (+∞)" : `threshold ${t}`, local.url);
    await stop(local.child);
  }
  await run("upstream asked directly", up.url);
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
  const table: { label: string; local: number; loss: number; latency: number; byLocal: number; byUp: number }[] = [];
  const meanMs = (as: Answer[]): number => (as.length ? (1000 * as.reduce((s, a) => s + a.seconds, 0)) / as.length : NaN);
  for (const r of rows) {
    let sum = 0, n = 0;
    for (const [i, a] of r.answers.entries()) {
      const s = await score(prompts[i], a.text);
      sum += s.sum;
      n += s.n;
    }
    table.push({ label: r.label, local: r.answers.filter((a) => a.by === "local").length / r.answers.length, loss: sum / n, latency: r.answers.reduce((s, a) => s + a.seconds, 0) / r.answers.length, byLocal: meanMs(r.answers.filter((a) => a.by === "local")), byUp: meanMs(r.answers.filter((a) => a.by === "upstream")) });
  }
  model.dispose();

  console.log(`\n${prompts.length} held-out story openings, ${MAX_TOKENS} greedy tokens each, one request at a time; local ${MODELS.small.slice(0, 6).join(" ")} (300 steps), upstream ${MODELS.large.slice(0, 6).join(" ")} (400 steps); --confidence mean-logprob, --probe-tokens ${PROBE}\n`);
  console.log("| run | answered locally | loss of the answers under the large model (nats/token) | mean latency (ms) | local answers (ms) | escalated answers (ms) |");
  console.log("|---|---:|---:|---:|---:|---:|");
  const ms = (v: number): string => (Number.isNaN(v) ? "–" : v.toFixed(0));
  for (const t of table) console.log(`| ${t.label} | ${(100 * t.local).toFixed(0)}% | ${t.loss.toFixed(3)} | ${(1000 * t.latency).toFixed(0)} | ${ms(t.byLocal)} | ${ms(t.byUp)} |`);
  writeFileSync(`${DIR}/cascade.svg`, plot(table));
  console.log(`\nwrote ${DIR}/cascade.svg`);
}

/** Two panels over the fraction answered locally: quality (loss) and mean latency. */
function plot(table: { label: string; local: number; loss: number; latency: number }[]): string {
  const W = 360, H = 260, M = { l: 58, r: 14, t: 30, b: 44 };
  const panel = (x0: number, title: string, ys: number[], unit: string): string => {
    const lo = Math.min(...ys), hi = Math.max(...ys), pad = (hi - lo) * 0.1 || Math.abs(hi) * 0.05 || 1;
    const y0 = lo - pad, y1 = hi + pad;
    const px = (f: number): number => x0 + M.l + f * (W - M.l - M.r);
    const py = (v: number): number => M.t + (1 - (v - y0) / (y1 - y0)) * (H - M.t - M.b);
    const pts = table.map((t, i) => ({ x: px(t.local), y: py(ys[i]), label: t.label }));
    const order = [...pts].sort((a, b) => a.x - b.x);
    let s = `<text x="${x0 + W / 2}" y="18" text-anchor="middle" font-size="13">${title}</text>`;
    s += `<rect x="${px(0)}" y="${M.t}" width="${px(1) - px(0)}" height="${H - M.t - M.b}" fill="none" stroke="#999"/>`;
    for (const f of [0, 0.25, 0.5, 0.75, 1]) s += `<text x="${px(f)}" y="${H - M.b + 14}" text-anchor="middle" font-size="10">${f * 100}%</text>`;
    for (let k = 0; k <= 4; k++) {
      const v = y0 + ((y1 - y0) * k) / 4;
      s += `<text x="${px(0) - 4}" y="${py(v) + 3}" text-anchor="end" font-size="10">${v.toFixed(unit === "ms" ? 0 : 2)}</text>`;
    }
    s += `<text x="${x0 + W / 2}" y="${H - 8}" text-anchor="middle" font-size="11">answered locally</text>`;
    s += `<text x="${x0 + 12}" y="${M.t + (H - M.t - M.b) / 2}" text-anchor="middle" font-size="11" transform="rotate(-90 ${x0 + 12} ${M.t + (H - M.t - M.b) / 2})">${unit}</text>`;
    s += `<polyline fill="none" stroke="#2a6fdb" stroke-width="1.5" points="${order.map((p) => `${p.x.toFixed(1)},${p.y.toFixed(1)}`).join(" ")}"/>`;
    for (const p of pts) s += `<circle cx="${p.x.toFixed(1)}" cy="${p.y.toFixed(1)}" r="3" fill="${p.label.startsWith("threshold") ? "#2a6fdb" : "#d33"}"><title>${p.label}</title></circle>`;
    return s;
  };
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${2 * W}" height="${H}" font-family="sans-serif">
<rect width="100%" height="100%" fill="white"/>
${panel(0, "Quality: loss under the large model (lower is better)", table.map((t) => t.loss), "nats/token")}
${panel(W, "Mean latency per request", table.map((t) => 1000 * t.latency), "ms")}
</svg>
`;
}

await main();
