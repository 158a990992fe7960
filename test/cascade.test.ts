// The serving cascade (serve/cascade.ts) on loopback: a small local model (30 training steps) in
// front of a larger upstream one (another seed, wider, 150 steps), both createServer in this
// process. Threshold −∞ answers locally, +∞ upstream with the upstream's own text; a middle
// threshold decides each request by the confidence of the logprobs the local model reports
// (mean-logprob and entropy); streamed or not, the client sees one model's answer, with the
// x-bonsai-answered-by header and the `bonsai` field; /metrics counts both; an upstream that is
// down is a 502 in OpenAI's shape; the CLI's cascade flags give one-line usage errors.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync } from "node:fs";
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
type Tagged = { bonsai?: { answered_by: string; confidence: number | null; probe_tokens: number } };

/** Streamed completion text, with every chunk's `bonsai` field and the header. */
async function streamed(url: string, body: object, chat = false): Promise<{ text: string; by: string | null; tags: string[] }> {
  const res = await fetch(`${url}/v1/${chat ? "chat/completions" : "completions"}`, { method: "POST", body: JSON.stringify({ ...body, stream: true }) });
  assert.equal(res.status, 200);
  let text = "";
  const tags: string[] = [];
  for (const line of (await res.text()).split("\n")) {
    if (!line.startsWith("data: ") || line === "data: [DONE]") continue;
    const c = JSON.parse(line.slice(6)) as Tagged & { choices: { text?: string; delta?: { content?: string } }[] };
    tags.push(c.bonsai?.answered_by ?? "none");
    text += c.choices[0]?.text ?? c.choices[0]?.delta?.content ?? "";
  }
  return { text, by: res.headers.get("x-bonsai-answered-by"), tags };
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

test("an upstream that is down: 502 in OpenAI's shape (streamed or not); answers that stay local are unaffected", async () => {
  const port = await new Promise<number>((resolve) => {
    const s = createNetServer().listen(0, "127.0.0.1", () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => resolve(p));
    });
  });
  const down = await serve("small", { url: `http://127.0.0.1:${port}/v1`, threshold: Infinity });
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
  const stays = await serve("small", { url: `http://127.0.0.1:${port}/v1`, threshold: -Infinity });
  assert.equal((await stays.client.completions.create({ model: "small", ...req("the cat") })).choices[0].text, (await plain.client.completions.create({ model: "small", ...req("the cat") })).choices[0].text);
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
});
