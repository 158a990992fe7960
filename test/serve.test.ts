// `bonsai serve` through the official `openai` client and raw HTTP: completions and chat
// completions (streamed and not) give the text the library generates alone with the same seed,
// also when requests run concurrently; embeddings, models, health and metrics; OpenAI-shaped
// errors (400, 401, 404, 405, 413, 429); a client that disconnects frees its slot; SIGTERM lets
// a running stream finish and exits 0.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import OpenAI from "openai";
import { createBackend } from "../src/backend/index.js";
import { loadModel } from "../src/io/model-files-node.js";
import { stream, promptIds } from "../src/runtime/stream.js";
import { type BonsaiServer, createServer } from "../src/serve/server-node.js";
import { CLI, assertOneLineError, bonsai } from "./cli-helpers.js";

const tmp = mkdtempSync(join(tmpdir(), "bonsai-serve-"));
const corpus = join(tmp, "corpus.txt"), dir = join(tmp, "model");
writeFileSync(corpus, "the cat sat on the mat. the dog ran far. a cat and a dog sat on a mat.\n".repeat(40));
const trained = bonsai("train", "--data", corpus, "--layers", "2", "--heads", "2", "--dim", "32", "--block-size", "64", "--batch-size", "4", "--iters", "30", "--eval-interval", "30", "--eval-iters", "1", "--threads", "1", "--out", dir);
assert.equal(trained.code, 0, trained.stderr);

const be = await createBackend("wasm");
const { model, tokenizer } = loadModel(dir, be, undefined, { fuse: true });
const servers: BonsaiServer[] = [];
async function start(opts: Partial<Parameters<typeof createServer>[1]> = {}): Promise<{ url: string; client: OpenAI; server: BonsaiServer }> {
  // A chat template in the corpus' characters: the char tokenizer has no '<' for the ChatML default.
  const server = createServer(model, { tokenizer: tokenizer!, modelName: "tiny", parallel: 4, chatTemplate: "{% for m in messages %}{{ m.content }}. {% endfor %}", ...opts });
  servers.push(server);
  const url = await server.listen(0);
  return { url, server, client: new OpenAI({ baseURL: `${url}/v1`, apiKey: opts.apiKey ?? "unused", maxRetries: 0 }) };
}
after(async () => {
  for (const s of servers) await s.close(0);
  model.dispose();
});

/** The library's own text for a prompt: what the server must answer. */
async function alone(prompt: string, o: { maxTokens: number; temperature: number; seed: number }): Promise<string> {
  let text = "";
  for await (const p of stream(model, tokenizer!, promptIds(tokenizer!, prompt), o)) text += p.text;
  return text;
}

test("completions and chat through the openai client: the library's text, streamed or not, concurrent or not", async () => {
  const { client } = await start();
  const r = await client.completions.create({ model: "tiny", prompt: "the cat", max_tokens: 12, temperature: 0 });
  assert.equal(r.choices[0].text, await alone("the cat", { maxTokens: 12, temperature: 0, seed: 0 }));
  assert.equal(r.choices[0].finish_reason, "length");
  assert.deepEqual(r.usage, { prompt_tokens: promptIds(tokenizer!, "the cat").length, completion_tokens: 12, total_tokens: promptIds(tokenizer!, "the cat").length + 12 });
  // Six sampled requests at once on 4 slots (two wait): each is its sequential self with its seed.
  const prompts = ["the cat", "a dog", "the mat. the", "t", "a cat and a dog sat on", "the dog ran"];
  const got = await Promise.all(prompts.map((p, i) => client.completions.create({ model: "tiny", prompt: p, max_tokens: 16, temperature: 0.9, seed: 100 + i })));
  for (const [i, p] of prompts.entries()) assert.equal(got[i].choices[0].text, await alone(p, { maxTokens: 16, temperature: 0.9, seed: 100 + i }), p);
  // Chat: the streamed deltas make the unstreamed message; a stop string ends with finish_reason stop.
  const messages = [{ role: "user" as const, content: "the cat" }];
  const whole = await client.chat.completions.create({ model: "tiny", messages, max_tokens: 10, temperature: 0, seed: 1 });
  let streamed = "", finish: string | null = null;
  for await (const c of await client.chat.completions.create({ model: "tiny", messages, max_tokens: 10, temperature: 0, seed: 1, stream: true, stream_options: { include_usage: true } })) {
    streamed += c.choices[0]?.delta?.content ?? "";
    finish = c.choices[0]?.finish_reason ?? finish;
    if (c.usage) assert.equal(c.usage.completion_tokens, whole.usage!.completion_tokens);
  }
  assert.equal(streamed, whole.choices[0].message.content);
  assert.equal(finish, whole.choices[0].finish_reason);
  const text = r.choices[0].text, cut = text.slice(3, 5);
  const stopped = await client.completions.create({ model: "tiny", prompt: "the cat", max_tokens: 12, temperature: 0, stop: [cut] });
  assert.equal(stopped.choices[0].text, text.slice(0, text.indexOf(cut)));
  assert.equal(stopped.choices[0].finish_reason, "stop");
  // Log-probabilities: chat's per-token entries with alternatives; greedy picks the best.
  const lp = await client.chat.completions.create({ model: "tiny", messages, max_tokens: 4, temperature: 0, logprobs: true, top_logprobs: 3 });
  const entries = lp.choices[0].logprobs!.content!;
  assert.equal(entries.length, 4);
  for (const e of entries) assert.ok(e.logprob <= 0 && e.top_logprobs.length === 3 && e.top_logprobs[0].logprob === e.logprob);
});

test("--draft: speculative serving answers the library's text, with the draft counters in /metrics", async () => {
  const prompts = ["the cat", "a dog", "the mat. the", "a cat and a dog sat on"];
  const want = await Promise.all(prompts.map((p) => alone(p, { maxTokens: 16, temperature: 0, seed: 0 })));
  // A draft model (the target itself: every draft accepted) and prompt lookup.
  for (const speculative of [{ draft: model, draftTokens: 3 as const }, { draft: "ngram" as const, draftTokens: "auto" as const }]) {
    const { client, url } = await start({ speculative });
    const got = await Promise.all(prompts.map((p) => client.completions.create({ model: "tiny", prompt: p, max_tokens: 16, temperature: 0 })));
    got.forEach((r, i) => assert.equal(r.choices[0].text, want[i], prompts[i]));
    const metrics = await (await fetch(`${url}/metrics`)).text();
    const drafted = Number(/bonsai_draft_tokens_total (\d+)/.exec(metrics)![1]), accepted = Number(/bonsai_draft_accepted_total (\d+)/.exec(metrics)![1]);
    if (speculative.draft === model) assert.ok(drafted > 0 && accepted === drafted, metrics);
    else assert.ok(accepted <= drafted, metrics);
  }
  assertOneLineError(bonsai("serve", "--model", dir, "--draft-tokens", "3"), /--draft-tokens needs --draft/);
});

test("embeddings, models, health and metrics", async () => {
  const { client, url } = await start();
  const e = await client.embeddings.create({ model: "tiny", input: ["the cat", "a dog", "the cat"] });
  assert.equal(e.data.length, 3);
  for (const d of e.data) {
    assert.equal(d.embedding.length, model.config.hidden_size);
    assert.ok(Math.abs(Math.hypot(...d.embedding) - 1) < 1e-6);
  }
  assert.deepEqual(e.data[0].embedding, e.data[2].embedding);
  assert.notDeepEqual(e.data[0].embedding, e.data[1].embedding);
  assert.deepEqual((await client.models.list()).data.map((m) => m.id), ["tiny"]);
  assert.deepEqual(await (await fetch(`${url}/health`)).json(), { status: "ok" });
  await client.completions.create({ model: "tiny", prompt: "the", max_tokens: 3, temperature: 0 });
  const metrics = await (await fetch(`${url}/metrics`)).text();
  assert.match(metrics, /bonsai_requests_total\{route="POST \/v1\/completions",status="200"\} 1/);
  assert.match(metrics, /bonsai_generated_tokens_total 3\n/);
  assert.match(metrics, /bonsai_time_to_first_token_seconds_count 1\n/);
});

test("errors in OpenAI's shape; a full queue is 429; a client that leaves frees its slot", async () => {
  const { client, url, server } = await start({ parallel: 1, maxQueue: 0, ctxSize: 64, maxBodyBytes: 4096 });
  const status = async (p: Promise<unknown>): Promise<number> => {
    try {
      await p;
      return 200;
    } catch (e) {
      assert.ok(e instanceof OpenAI.APIError, String(e));
      assert.equal(typeof (e.error as { message?: string }).message, "string");
      return e.status!;
    }
  };
  assert.equal(await status(client.completions.create({ model: "other", prompt: "a", max_tokens: 1 })), 404);
  assert.equal(await status(client.completions.create({ model: "tiny", prompt: "a", max_tokens: 1, temperature: 9 })), 400);
  assert.equal(await status(client.completions.create({ model: "tiny", prompt: "the cat ".repeat(20), max_tokens: 1 })), 400);
  assert.equal(await status(client.chat.completions.create({ model: "tiny", messages: [{ role: "user", content: 5 as unknown as string }] })), 400);
  const raw = (path: string, body: string, method = "POST") => fetch(url + path, { method, body: method === "GET" ? undefined : body, headers: { "content-type": "application/json" } });
  const bad = await raw("/v1/completions", "{not json");
  assert.equal(bad.status, 400);
  assert.deepEqual(Object.keys(((await bad.json()) as { error: object }).error), ["message", "type", "param", "code"]);
  assert.equal((await raw("/v1/completions", JSON.stringify({ prompt: "x".repeat(5000) }))).status, 413);
  assert.equal((await raw("/v1/completions", "", "GET")).status, 405);
  assert.equal((await raw("/nowhere", "", "GET")).status, 404);
  // One slot: a running stream makes the next request 429 (Retry-After); leaving frees the slot.
  const ctl = new AbortController();
  const running = await fetch(`${url}/v1/completions`, { method: "POST", signal: ctl.signal, body: JSON.stringify({ prompt: "the", max_tokens: 60, stream: true }) });
  const reader = running.body!.getReader();
  await reader.read();
  const busy = await raw("/v1/completions", JSON.stringify({ prompt: "a", max_tokens: 1 }));
  assert.equal(busy.status, 429, await busy.clone().text());
  assert.equal(busy.headers.get("retry-after"), "1");
  ctl.abort();
  for (let i = 0; i < 200 && server.engine.counts.active > 0; i++) await new Promise((r) => setTimeout(r, 10));
  assert.equal(server.engine.counts.active, 0, "the cancelled generation freed its slot");
  assert.equal(await status(client.completions.create({ model: "tiny", prompt: "a", max_tokens: 1 })), 200);
  // An API key: without it 401, with it 200; /health stays open.
  const keyed = await start({ apiKey: "sesame" });
  assert.equal((await fetch(`${keyed.url}/v1/models`)).status, 401);
  assert.equal((await fetch(`${keyed.url}/health`)).status, 200);
  assert.equal((await keyed.client.models.list()).data.length, 1);
});

test("bonsai serve: SIGTERM lets a running stream finish, then exits 0", async () => {
  const child = spawn(process.execPath, [CLI, "serve", "--model", dir, "--port", "0", "--threads", "1", "--draft", "ngram"], { stdio: ["ignore", "ignore", "pipe"] });
  let err = "";
  const url = await new Promise<string>((resolve, reject) => {
    child.stderr.on("data", (d: Buffer) => {
      err += d;
      const m = /listening on (http:\/\/\S+)/.exec(err);
      if (m) resolve(m[1]);
    });
    child.on("exit", (code) => reject(new Error(`serve exited ${code}: ${err}`)));
  });
  const res = await fetch(`${url}/v1/completions`, { method: "POST", body: JSON.stringify({ prompt: "the", max_tokens: 40, stream: true }) });
  const reader = res.body!.getReader();
  await reader.read();
  child.kill("SIGTERM");
  let body = "";
  for (let r = await reader.read(); !r.done; r = await reader.read()) body += new TextDecoder().decode(r.value);
  assert.ok(body.trimEnd().endsWith("data: [DONE]"), body.slice(-200));
  const code = await new Promise<number | null>((r) => child.on("exit", r));
  assert.equal(code, 0, err);
  assert.match(err, /drafting with ngram \(auto\)/);
});
