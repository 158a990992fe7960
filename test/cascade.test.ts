// The serving cascade (serve/cascade.ts) on loopback: a small local model (30 training steps) in
// front of a larger upstream one (another seed, wider, 150 steps), both createServer in this
// process. Threshold −∞ answers locally, +∞ upstream with the upstream's own text; a middle
// threshold decides each request by the confidence of the logprobs the local model reports
// (mean-logprob and entropy); streamed or not, the client sees one model's answer, with the
// x-bonsai-answered-by header and the `bonsai` field; /metrics counts both. Upstream failures,
// against a tiny node:http upstream that hangs, stalls, breaks off or answers 500/400: with the
// local fallback the answer is exactly the local model's (the same generation, kept running), with
// `error` a 502/504 in OpenAI's shape; a 4xx is passed through; a stream that fails after its first
// chunk ends with an error event; /metrics counts each. The CLI's cascade flags give one-line usage errors.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync } from "node:fs";
import { type ServerResponse, createServer as createHttpServer } from "node:http";
import { createServer as createNetServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import OpenAI from "openai";
import { createBackend } from "../src/backend/index.js";
import { loadModel } from "../src/io/model-files-node.js";
import { BatchEngine } from "../src/runtime/batch.js";
import { promptIds } from "../src/runtime/stream.js";
import { type CascadeOptions, confidence, escalates } from "../src/serve/cascade.js";
import { type BonsaiServer, createServer } from "../src/serve/server-node.js";
import { assertOneLineError, bonsai } from "./cli-helpers.js";

const tmp = mkdtempSync(join(tmpdir(), "bonsai-cascade-"));
const corpus = join(tmp, "corpus.txt");
writeFileSync(corpus, "the cat sat on the mat. the dog ran far. a cat and a dog sat on a mat.\n".repeat(40));
const train = (out: string, ...flags: string[]): void => {
  const r = bonsai("train", "--data", corpus, "--layers", "2", "--heads", "2", "--block-size", "64", "--batch-size", "4", "--eval-iters", "1", "--threads", "1", "--out", out, ...flags);
  assert.equal(r.code, 0, r.stderr);
};
train(join(tmp, "small"), "--dim", "32", "--iters", "30", "--eval-interval", "30");
train(join(tmp, "large"), "--dim", "48", "--iters", "150", "--eval-interval", "150", "--seed", "7");

const be = await createBackend("wasm");
const small = loadModel(join(tmp, "small"), be, undefined, { fuse: true });
const large = loadModel(join(tmp, "large"), be, undefined, { fuse: true });
const tokenizer = small.tokenizer!;
const servers: BonsaiServer[] = [];
async function serve(which: "small" | "large", cascade?: Partial<CascadeOptions>): Promise<{ url: string; client: OpenAI; server: BonsaiServer }> {
  const m = which === "small" ? small : large;
  const server = createServer(m.model, {
    // A chat template in the characters' vocabulary (the default ChatML's markers are not in it).
    tokenizer: m.tokenizer!, modelName: which, parallel: 4, chatTemplate: "{% for m in messages %}{{ m.content }} {% endfor %}",
    cascade: cascade && { url: upstreamUrl, model: "large", confidence: "mean-logprob", threshold: 0, probeTokens: 4, ...cascade },
  });
  servers.push(server);
  const url = await server.listen(0);
  return { url, server, client: new OpenAI({ baseURL: `${url}/v1`, apiKey: "unused", maxRetries: 0 }) };
}
let upstreamUrl = "";
const upstream = await serve("large");
upstreamUrl = `${upstream.url}/v1`;
const plain = await serve("small"); // the local model without the cascade: its own answers and logprobs
after(async () => {
  for (const s of servers) await s.close(0);
  small.model.dispose();
  large.model.dispose();
});

const PROMPTS = ["the cat", "a dog", "the mat. the", "t", "a cat and a dog sat on", "the dog ran", "on", "far. a"];
const req = (prompt: string) => ({ prompt, max_tokens: 12, temperature: 0 });
type Tagged = { bonsai?: { answered_by: string; confidence: number | null; probe_tokens: number; fallback?: string } };

/** Streamed completion text, with every chunk's `bonsai` field and the header. */
async function streamed(url: string, body: object, chat = false): Promise<{ text: string; by: string | null; tags: string[]; fallbacks: (string | undefined)[] }> {
  const res = await fetch(`${url}/v1/${chat ? "chat/completions" : "completions"}`, { method: "POST", body: JSON.stringify({ ...body, stream: true }) });
  assert.equal(res.status, 200);
  let text = "";
  const tags: string[] = [], fallbacks: (string | undefined)[] = [];
  for (const line of (await res.text()).split("\n")) {
    if (!line.startsWith("data: ") || line === "data: [DONE]") continue;
    const c = JSON.parse(line.slice(6)) as Tagged & { choices: { text?: string; delta?: { content?: string } }[] };
    tags.push(c.bonsai?.answered_by ?? "none");
    fallbacks.push(c.bonsai?.fallback);
    text += c.choices[0]?.text ?? c.choices[0]?.delta?.content ?? "";
  }
  return { text, by: res.headers.get("x-bonsai-answered-by"), tags, fallbacks };
}

test("confidence functions: mean log-probability, least probability, negative mean entropy; −∞ without tokens", () => {
  const probes = [{ logprob: -1, entropy: 0.5 }, { logprob: -3, entropy: 1.5 }];
  assert.equal(confidence("mean-logprob", probes), -2);
  assert.equal(confidence("min-prob", probes), Math.exp(-3));
  assert.equal(confidence("entropy", probes), -1);
  for (const fn of ["mean-logprob", "min-prob", "entropy"] as const) assert.equal(confidence(fn, []), -Infinity);
  assert.throws(() => confidence("entropy", [{ logprob: -1 }]), /entropy/);
  assert.equal(escalates(-2, -1), true);
  assert.equal(escalates(-1, -1), false);
  assert.equal(escalates(-Infinity, -Infinity), false);
  assert.equal(escalates(0, Infinity), true);
});

test("the engine's entropy is the distribution's: −Σ p ln p over the whole vocabulary", async () => {
  const vocab = small.model.config.vocab_size;
  assert.ok(vocab <= 20, `vocab ${vocab}`);
  const engine = new BatchEngine(small.model);
  const withEntropy = [], without = [];
  for await (const e of engine.submit({ prompt: promptIds(tokenizer, "the cat"), maxTokens: 6, temperature: 0, logprobs: vocab, entropy: true })) withEntropy.push(e);
  for await (const e of engine.submit({ prompt: promptIds(tokenizer, "the cat"), maxTokens: 6, temperature: 0, logprobs: vocab })) without.push(e);
  assert.equal(withEntropy.length, 6);
  for (const [i, e] of withEntropy.entries()) {
    const h = -e.top!.reduce((s, t) => s + Math.exp(t.logprob) * t.logprob, 0);
    assert.ok(Math.abs(e.entropy! - h) < 1e-9, `${e.entropy} vs ${h}`);
    assert.deepEqual({ ...e, entropy: undefined }, { ...without[i], entropy: undefined }); // nothing else changes
    assert.equal("entropy" in without[i], false);
  }
});

test("threshold −∞ answers locally, +∞ upstream with the upstream's own text, streamed or not; metrics count both", async () => {
  const local = await serve("small", { threshold: -Infinity });
  const up = await serve("small", { threshold: Infinity });
  let ownTokens = 0;
  for (const p of PROMPTS.slice(0, 3)) {
    const own = await plain.client.completions.create({ model: "small", ...req(p) });
    ownTokens += 2 * own.usage!.completion_tokens; // answered unstreamed and streamed
    const big = await upstream.client.completions.create({ model: "large", ...req(p) });
    // The official client, with the response's headers.
    const l = await local.client.completions.create({ model: "small", ...req(p) }).withResponse();
    assert.equal(l.response.headers.get("x-bonsai-answered-by"), "local");
    assert.equal((l.data as Tagged).bonsai?.answered_by, "local");
    assert.equal(l.data.choices[0].text, own.choices[0].text);
    const u = await up.client.completions.create({ model: "small", ...req(p) }).withResponse();
    assert.equal(u.response.headers.get("x-bonsai-answered-by"), "upstream");
    assert.equal((u.data as Tagged).bonsai?.answered_by, "upstream");
    assert.equal(u.data.choices[0].text, big.choices[0].text);
    assert.equal(u.data.model, "large");
    // Streamed: one model's text, every chunk tagged.
    const ls = await streamed(local.url, req(p)), us = await streamed(up.url, req(p)), bs = await streamed(upstream.url, req(p));
    assert.deepEqual([ls.text, ls.by], [own.choices[0].text, "local"]);
    assert.deepEqual([us.text, us.by], [bs.text, "upstream"]);
    assert.ok(ls.tags.every((t) => t === "local") && us.tags.every((t) => t === "upstream"), `${ls.tags} ${us.tags}`);
  }
  // Chat, streamed: the upstream's chat answer.
  const messages = [{ role: "user" as const, content: "the cat" }];
  const bigChat = await upstream.client.chat.completions.create({ model: "large", messages, max_tokens: 8, temperature: 0 });
  const chat = await streamed(up.url, { model: "small", messages, max_tokens: 8, temperature: 0 }, true);
  assert.deepEqual([chat.text, chat.by], [bigChat.choices[0].message.content, "upstream"]);
  const localChat = await local.client.chat.completions.create({ model: "small", messages, max_tokens: 8, temperature: 0 });
  assert.equal((localChat as Tagged).bonsai?.answered_by, "local");
  // Metrics: 7 local answers (3 completions, 3 streamed, a chat), 7 upstream.
  const lm = await (await fetch(`${local.url}/metrics`)).text(), um = await (await fetch(`${up.url}/metrics`)).text();
  assert.match(lm, /bonsai_cascade_answered_total\{by="local"\} 7\n/);
  assert.match(lm, /bonsai_cascade_answered_total\{by="upstream"\} 0\n/);
  const saved = Number(/bonsai_cascade_tokens_saved_total (\d+)/.exec(lm)![1]);
  assert.equal(saved, ownTokens + localChat.usage!.completion_tokens);
  assert.match(um, /bonsai_cascade_answered_total\{by="upstream"\} 7\n/);
  assert.match(um, /bonsai_cascade_upstream_seconds_count 7\n/);
  assert.ok(Number(/bonsai_cascade_upstream_seconds_sum (\S+)/.exec(um)![1]) > 0);
  assert.match(um, /bonsai_cascade_tokens_saved_total 0\n/);
  assert.doesNotMatch(await (await fetch(`${plain.url}/metrics`)).text(), /cascade/);
});

test("a middle threshold decides each request by the confidence of the local model's logprobs", async () => {
  const vocab = small.model.config.vocab_size;
  const probe = 4;
  const meanLp: number[] = [], negEntropy: number[] = [];
  for (const p of PROMPTS) {
    const r = await plain.client.completions.create({ model: "small", ...req(p), logprobs: 0 });
    const lps = r.choices[0].logprobs!.token_logprobs!.slice(0, probe);
    meanLp.push(confidence("mean-logprob", lps.map((logprob) => ({ logprob }))));
    // The entropy from all the vocabulary's log-probabilities (chat's top_logprobs ≤ 20 covers it).
    const c = await plain.client.chat.completions.create({ model: "small", messages: [{ role: "user", content: p }], max_tokens: 12, temperature: 0, logprobs: true, top_logprobs: vocab });
    const probes = c.choices[0].logprobs!.content!.slice(0, probe).map((e) => ({ logprob: e.logprob, entropy: -e.top_logprobs.reduce((s, t) => s + Math.exp(t.logprob) * t.logprob, 0) }));
    negEntropy.push(confidence("entropy", probes));
  }
  const median = (xs: number[]): number => {
    const s = [...xs].sort((a, b) => a - b);
    return (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
  };
  const t1 = median(meanLp), t2 = median(negEntropy);
  const byLp = await serve("small", { threshold: t1, probeTokens: probe });
  const byH = await serve("small", { confidence: "entropy", threshold: t2, probeTokens: probe });
  const seen = new Set<string>();
  for (const [i, p] of PROMPTS.entries()) {
    const want = meanLp[i] < t1 ? "upstream" : "local";
    seen.add(want);
    const r = (await byLp.client.completions.create({ model: "small", ...req(p) })) as Tagged & { choices: { text: string }[] };
    assert.equal(r.bonsai?.answered_by, want, p);
    assert.ok(Math.abs(r.bonsai!.confidence! - meanLp[i]) < 1e-9, `${r.bonsai!.confidence} vs ${meanLp[i]}`);
    const truth = await (want === "local" ? plain : upstream).client.completions.create({ model: want === "local" ? "small" : "large", ...req(p) });
    assert.equal(r.choices[0].text, truth.choices[0].text);
    const s = await streamed(byLp.url, req(p));
    assert.deepEqual([s.text, s.by], [truth.choices[0].text, want]);
    const h = (await byH.client.chat.completions.create({ model: "small", messages: [{ role: "user", content: p }], max_tokens: 12, temperature: 0 })) as Tagged;
    assert.equal(h.bonsai?.answered_by, negEntropy[i] < t2 ? "upstream" : "local", p);
    assert.ok(Math.abs(h.bonsai!.confidence! - negEntropy[i]) < 1e-9);
  }
  assert.deepEqual([...seen].sort(), ["local", "upstream"]);
});

test("an upstream that is down: with fallback error a 502 in OpenAI's shape (streamed or not), with local the local answer; answers that stay local are unaffected", async () => {
  const port = await new Promise<number>((resolve) => {
    const s = createNetServer().listen(0, "127.0.0.1", () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => resolve(p));
    });
  });
  const down = await serve("small", { url: `http://127.0.0.1:${port}/v1`, threshold: Infinity, fallback: "error" });
  await assert.rejects(down.client.completions.create({ model: "small", ...req("the cat") }), (e: unknown) => {
    assert.ok(e instanceof OpenAI.APIError);
    assert.equal(e.status, 502);
    assert.equal(e.code, "upstream_unavailable");
    return true;
  });
  const s = await fetch(`${down.url}/v1/completions`, { method: "POST", body: JSON.stringify({ ...req("a dog"), stream: true }) });
  assert.equal(s.status, 502);
  assert.deepEqual(Object.keys(((await s.json()) as { error: object }).error), ["message", "type", "param", "code"]);
  assert.match(await (await fetch(`${down.url}/metrics`)).text(), /bonsai_cascade_upstream_failures_total 2\n/);
  const fallsBack = await serve("small", { url: `http://127.0.0.1:${port}/v1`, threshold: Infinity });
  const r = (await fallsBack.client.completions.create({ model: "small", ...req("the cat") })) as Tagged & { choices: { text: string }[] };
  assert.deepEqual(r.bonsai && [r.bonsai.answered_by, r.bonsai.fallback], ["local", "upstream_unavailable"]);
  assert.equal(r.choices[0].text, (await plain.client.completions.create({ model: "small", ...req("the cat") })).choices[0].text);
  assert.match(await (await fetch(`${fallsBack.url}/metrics`)).text(), /bonsai_cascade_fallbacks_total\{reason="upstream_unavailable"\} 1\n/);
  const stays = await serve("small", { url: `http://127.0.0.1:${port}/v1`, threshold: -Infinity });
  assert.equal((await stays.client.completions.create({ model: "small", ...req("the cat") })).choices[0].text, (await plain.client.completions.create({ model: "small", ...req("the cat") })).choices[0].text);
});

// A misbehaving upstream on loopback, its behaviour chosen by the path's first segment.
const openSockets = new Set<import("node:net").Socket>();
const bad = createHttpServer((q, res: ServerResponse) => {
  const mode = (q.url ?? "").split("/")[1];
  q.resume();
  const event = `data: ${JSON.stringify({ id: "cmpl-bad", object: "text_completion", created: 0, model: "bad", choices: [{ index: 0, text: "UPSTREAM", logprobs: null, finish_reason: null }] })}\n\n`;
  if (mode === "hang") return; // never answers
  if (mode === "one-per-connection") {
    // Each connection answers once, then is reset at its next request (an idle close racing a reuse).
    const sock = q.socket as typeof q.socket & { served?: boolean };
    if (sock.served) return void sock.destroy();
    sock.served = true;
    return void res.writeHead(200, { "Content-Type": "application/json" }).end(JSON.stringify({ id: "cmpl-bad", object: "text_completion", created: 0, model: "bad", choices: [{ index: 0, text: "UPSTREAM", logprobs: null, finish_reason: "stop" }], usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 } }));
  }
  if (mode === "500") return void res.writeHead(500, { "Content-Type": "application/json" }).end('{"error":{"message":"boom"}}');
  if (mode === "400") return void res.writeHead(400, { "Content-Type": "application/json" }).end('{"error":{"message":"bad request upstream","type":"invalid_request_error","param":null,"code":"nope"}}');
  res.writeHead(200, { "Content-Type": "text/event-stream" });
  res.flushHeaders();
  if (mode === "headers-then-stall") return; // headers, then nothing
  res.write(event);
  if (mode === "event-then-break") setTimeout(() => res.socket?.destroy(), 20);
  // "event-then-stall": one event, then nothing
});
bad.on("connection", (s) => (openSockets.add(s), s.on("close", () => openSockets.delete(s))));
const badUrl = await new Promise<string>((resolve) => bad.listen(0, "127.0.0.1", () => resolve(`http://127.0.0.1:${(bad.address() as { port: number }).port}`)));
after(() => {
  for (const s of openSockets) s.destroy();
  bad.close();
});
const TIMEOUT_S = 0.2;
const viaBad = (mode: string, fallback: "local" | "error") => serve("small", { url: `${badUrl}/${mode}/v1`, threshold: Infinity, timeoutSeconds: TIMEOUT_S, fallback });
const metricOf = async (url: string, name: string): Promise<number> => Number(new RegExp(`^bonsai_${name.replace(/[{}]/g, "\\$&")} (\\S+)$`, "m").exec(await (await fetch(`${url}/metrics`)).text())?.[1]);

test("an upstream that hangs: aborted after the timeout, then answered locally (fallback local) or a 504 (fallback error)", async () => {
  const local = await viaBad("hang", "local");
  // Sampled with a seed, with logprobs: the fallback is the very generation the decision looked at.
  for (const body of [{ ...req("the cat"), logprobs: 2 }, { prompt: "a dog", max_tokens: 12, temperature: 0.9, seed: 5, logprobs: 0 }]) {
    const own = await plain.client.completions.create({ model: "small", ...body });
    const r = await local.client.completions.create({ model: "small", ...body }).withResponse();
    assert.equal(r.response.headers.get("x-bonsai-answered-by"), "local");
    assert.deepEqual((r.data as Tagged).bonsai, { answered_by: "local", confidence: (r.data as Tagged).bonsai!.confidence, probe_tokens: 4, fallback: "upstream_timeout" });
    assert.deepEqual(r.data.choices, own.choices);
    assert.deepEqual(r.data.usage, own.usage);
  }
  const s = await streamed(local.url, req("the mat. the"));
  const own = await plain.client.completions.create({ model: "small", ...req("the mat. the") });
  assert.deepEqual([s.text, s.by], [own.choices[0].text, "local"]);
  assert.ok(s.fallbacks.length > 0 && s.fallbacks.every((f) => f === "upstream_timeout"), `${s.fallbacks}`);
  // A chat request too.
  const messages = [{ role: "user" as const, content: "the cat" }];
  const c = await local.client.chat.completions.create({ model: "small", messages, max_tokens: 8, temperature: 0 });
  assert.equal(c.choices[0].message.content, (await plain.client.chat.completions.create({ model: "small", messages, max_tokens: 8, temperature: 0 })).choices[0].message.content);
  assert.equal(await metricOf(local.url, 'cascade_fallbacks_total{reason="upstream_timeout"}'), 4);
  assert.equal(await metricOf(local.url, "cascade_upstream_failures_total"), 4);
  assert.equal(await metricOf(local.url, 'cascade_answered_total{by="local"}'), 4);
  assert.equal(await metricOf(local.url, 'cascade_answered_total{by="upstream"}'), 0);

  const error = await viaBad("hang", "error");
  await assert.rejects(error.client.completions.create({ model: "small", ...req("the cat") }), (e: unknown) => {
    assert.ok(e instanceof OpenAI.APIError);
    assert.equal(e.status, 504);
    assert.equal(e.code, "upstream_timeout");
    return true;
  });
  const se = await fetch(`${error.url}/v1/completions`, { method: "POST", body: JSON.stringify({ ...req("a dog"), stream: true }) });
  assert.equal(se.status, 504);
  assert.deepEqual(Object.keys(((await se.json()) as { error: object }).error), ["message", "type", "param", "code"]);
  assert.equal(await metricOf(error.url, "cascade_upstream_failures_total"), 2);
  assert.equal(await metricOf(error.url, 'cascade_fallbacks_total{reason="upstream_timeout"}'), 0);
});

test("an upstream answering 500: the local fallback equals the always-local answer; 502 with fallback error; a 4xx is passed through", async () => {
  const local = await viaBad("500", "local");
  const always = await serve("small", { threshold: -Infinity });
  let tokens = 0;
  for (const p of PROMPTS.slice(0, 3)) {
    const a = await always.client.completions.create({ model: "small", ...req(p) });
    const r = (await local.client.completions.create({ model: "small", ...req(p) })) as Tagged & { choices: { text: string }[] };
    assert.equal(r.choices[0].text, a.choices[0].text);
    assert.deepEqual(r.bonsai && [r.bonsai.answered_by, r.bonsai.fallback], ["local", "upstream_unavailable"]);
    tokens += a.usage!.completion_tokens;
    const s = await streamed(local.url, req(p)), sa = await streamed(always.url, req(p));
    assert.deepEqual([s.text, s.by], [sa.text, "local"]);
    tokens += a.usage!.completion_tokens;
  }
  assert.equal(await metricOf(local.url, 'cascade_fallbacks_total{reason="upstream_unavailable"}'), 6);
  assert.equal(await metricOf(local.url, "cascade_upstream_failures_total"), 6);
  assert.equal(await metricOf(local.url, "cascade_tokens_saved_total"), tokens);

  const error = await viaBad("500", "error");
  const e = await fetch(`${error.url}/v1/completions`, { method: "POST", body: JSON.stringify(req("the cat")) });
  assert.equal(e.status, 502);
  assert.equal(((await e.json()) as { error: { code: string } }).error.code, "upstream_unavailable");

  const four = await viaBad("400", "local");
  const f = await fetch(`${four.url}/v1/completions`, { method: "POST", body: JSON.stringify(req("the cat")) });
  assert.equal(f.status, 400);
  assert.equal(f.headers.get("x-bonsai-answered-by"), "upstream");
  assert.equal(((await f.json()) as { error: { code: string } }).error.code, "nope");
  assert.equal(await metricOf(four.url, "cascade_upstream_failures_total"), 0);
});

test("a kept-alive upstream connection reset at its reuse: the request is sent once more on a new connection", async () => {
  const local = await viaBad("one-per-connection", "error");
  for (const p of PROMPTS.slice(0, 3)) {
    const r = (await local.client.completions.create({ model: "small", ...req(p) })) as Tagged & { choices: { text: string }[] };
    assert.deepEqual([r.choices[0].text, r.bonsai?.answered_by, r.bonsai?.fallback], ["UPSTREAM", "upstream", undefined]);
  }
  assert.equal(await metricOf(local.url, "cascade_upstream_failures_total"), 0);
});

test("a streamed upstream that fails: before its first event it falls back; after it, the stream ends with an error event, counted", async () => {
  const early = await viaBad("headers-then-stall", "local");
  const s = await streamed(early.url, req("the cat"));
  assert.deepEqual([s.text, s.by], [(await plain.client.completions.create({ model: "small", ...req("the cat") })).choices[0].text, "local"]);
  assert.ok(s.fallbacks.length > 0 && s.fallbacks.every((f) => f === "upstream_timeout"));
  for (const [mode, code] of [["event-then-stall", "upstream_timeout"], ["event-then-break", "upstream_unavailable"]]) {
    const late = await viaBad(mode, "local");
    const res = await fetch(`${late.url}/v1/completions`, { method: "POST", body: JSON.stringify({ ...req("the cat"), stream: true }) });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("x-bonsai-answered-by"), "upstream");
    const events = (await res.text()).split("\n\n").filter((e) => e.startsWith("data: ")).map((e) => JSON.parse(e.slice(6)) as Tagged & { choices?: { text: string }[]; error?: Record<string, unknown> });
    assert.equal(events.length, 2, mode);
    assert.deepEqual([events[0].choices?.[0].text, events[0].bonsai?.answered_by], ["UPSTREAM", "upstream"]);
    assert.deepEqual(Object.keys(events[1].error ?? {}), ["message", "type", "param", "code"]);
    assert.equal(events[1].error!.code, code);
    assert.equal(await metricOf(late.url, "cascade_upstream_stream_errors_total"), 1);
    assert.equal(await metricOf(late.url, "cascade_upstream_failures_total"), 1);
    assert.equal(await metricOf(late.url, `cascade_fallbacks_total{reason="${code}"}`), 0);
  }
});

test("bonsai serve: the cascade flags' usage errors", () => {
  const m = ["serve", "--model", join(tmp, "small")];
  assertOneLineError(bonsai(...m, "--threshold", "1"), /--threshold needs --escalate-to/);
  assertOneLineError(bonsai(...m, "--escalate-to", "http://127.0.0.1:9/v1", "--threshold", "1"), /--escalate-to needs --escalate-model/);
  assertOneLineError(bonsai(...m, "--escalate-to", "http://127.0.0.1:9/v1", "--escalate-model", "x"), /--escalate-to needs --threshold/);
  assertOneLineError(bonsai(...m, "--escalate-to", "127.0.0.1:9", "--escalate-model", "x", "--threshold", "1"), /--escalate-to must be an http\(s\) URL/);
  assertOneLineError(bonsai(...m, "--escalate-to", "http://h/v1", "--escalate-model", "x", "--threshold", "1", "--confidence", "vibes"), /--confidence must be mean-logprob, min-prob, entropy/);
  assertOneLineError(bonsai(...m, "--escalate-to", "http://h/v1", "--escalate-model", "x", "--threshold", "low"), /--threshold must be a number/);
  assertOneLineError(bonsai(...m, "--escalate-to", "http://h/v1", "--escalate-model", "x", "--threshold=-2", "--probe-tokens", "0"), /--probe-tokens must be >= 1/);
  assertOneLineError(bonsai(...m, "--escalate-to", "http://h/v1", "--escalate-model", "x", "--threshold", "1", "--escalate-key-env", "BONSAI_NO_SUCH_VAR"), /BONSAI_NO_SUCH_VAR/);
  assertOneLineError(bonsai(...m, "--escalate-timeout", "5"), /--escalate-timeout needs --escalate-to/);
  assertOneLineError(bonsai(...m, "--escalate-to", "http://h/v1", "--escalate-model", "x", "--threshold", "1", "--escalate-timeout", "0"), /--escalate-timeout must be > 0/);
  assertOneLineError(bonsai(...m, "--escalate-to", "http://h/v1", "--escalate-model", "x", "--threshold", "1", "--escalate-fallback", "upstream"), /--escalate-fallback must be local or error/);
});
