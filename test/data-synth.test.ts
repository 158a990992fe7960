// `bonsai data synth` and its parts: TinyStories prompts drawn deterministically with valid
// ingredients, the template format; the in-process teacher gives the library's own tokens and
// the CLI writes N records; the endpoint teacher against bonsai serve's server on loopback (chat
// and completions, an API key, usage); retries on 429 (Retry-After honoured) and 500, a per-request
// timeout, refusals; the token-rate limiter; exact deduplication with redraws; resume after SIGKILL.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { appendFileSync, existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { type IncomingMessage, type ServerResponse, createServer as createHttpServer } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createBackend } from "../src/backend/index.js";
import { Llama } from "../src/nn/llama.js";
import { CharTokenizer } from "../src/tokenizer/char-tokenizer.js";
import { modelFiles } from "../src/io/checkpoint.js";
import { loadModel, writeCheckpoint } from "../src/io/model-files-node.js";
import { promptIds, stream } from "../src/runtime/stream.js";
import { chatPromptIds, renderChat } from "../src/runtime/chat.js";
import { type BonsaiServer, createServer } from "../src/serve/server-node.js";
import { EndpointTeacher, ModelTeacher, TeacherError, TokenRateLimiter, endpointUrl, retryAfterMs } from "../src/data/teacher.js";
import { BUILTIN_TEMPLATES, TINYSTORIES_TEMPLATE } from "../src/data/synth/templates.js";
import { type Recipe, drawPrompt, makeRecipe, parseTemplate } from "../src/data/synth/template.js";
import { defaultWordLists, parseWordLists } from "../src/data/synth/words.js";
import { samplingSeed } from "../src/data/synth/synthesize.js";
import { CLI, assertOneLineError, bonsai } from "./cli-helpers.js";

const tmp = mkdtempSync(join(tmpdir(), "bonsai-synth-"));
// A random model over printable ASCII: every prompt is in its vocabulary (no training needed).
const chars = new CharTokenizer(["\n", ...Array.from({ length: 95 }, (_, i) => String.fromCharCode(32 + i))]);
const config = {
  vocab_size: chars.vocabSize, hidden_size: 32, intermediate_size: 64, num_hidden_layers: 2, num_attention_heads: 2, num_key_value_heads: 2,
  max_position_embeddings: 1024, rms_norm_eps: 1e-5, rope_theta: 10000, tie_word_embeddings: false,
};
const CHAT = "{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}assistant:";
const plainDir = join(tmp, "plain"), chatDir = join(tmp, "chat");
{
  const js = await createBackend("js");
  const m = Llama.init(js, config, 3);
  writeCheckpoint(plainDir, await modelFiles(m, chars));
  writeCheckpoint(chatDir, await modelFiles(m, chars, { chatTemplate: CHAT }));
}
const be = await createBackend("wasm", { threads: 1 });
const plain = loadModel(plainDir, be);
const chat = loadModel(chatDir, be);
const tinystories = (): Recipe => makeRecipe(parseTemplate(TINYSTORIES_TEMPLATE, "tinystories"), defaultWordLists());

const servers: { close(): Promise<void> }[] = [];
after(async () => {
  for (const s of servers) await s.close();
  plain.model.dispose();
});

/** The library's own completion of `prompt` ids: what a teacher of this model must answer. */
async function alone(ids: number[], o: { maxTokens: number; temperature: number; seed: number; stop?: string[] }): Promise<string> {
  let text = "";
  for await (const p of stream(plain.model, chars, ids, o)) text += p.text;
  return text;
}

/** Run the CLI without blocking this process (a server here must answer it). */
function bonsaiAsync(args: string[], env: Record<string, string> = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [CLI, ...args], { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, ...env } });
  let stdout = "", stderr = "";
  child.stdout.on("data", (d: Buffer) => (stdout += d));
  child.stderr.on("data", (d: Buffer) => (stderr += d));
  return new Promise((resolve) => child.on("close", (code) => resolve({ code, stdout, stderr })));
}

function readRecords(file: string): Record<string, any>[] {
  const text = readFileSync(file, "utf8");
  assert.ok(text === "" || text.endsWith("\n"), "the file ends with a whole line");
  return text.split("\n").filter((l) => l !== "").map((l) => JSON.parse(l));
}

/** A node:http server whose answers `handle` decides (request bodies parsed), on loopback. */
async function httpServer(handle: (n: number, body: any, req: IncomingMessage, res: ServerResponse) => void): Promise<{ url: string; requests: { at: number; body: any }[] }> {
  const requests: { at: number; body: any }[] = [];
  const server = createHttpServer((req, res) => {
    let raw = "";
    req.on("data", (d: Buffer) => (raw += d));
    req.on("end", () => {
      const body = JSON.parse(raw);
      requests.push({ at: performance.now(), body });
      handle(requests.length, body, req, res);
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  servers.push({ close: () => new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()); }) });
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`, requests };
}

const answer = (res: ServerResponse, text: string): void => {
  res.writeHead(200, { "content-type": "application/json" });
  res.end(JSON.stringify({ choices: [{ index: 0, message: { role: "assistant", content: text }, finish_reason: "stop" }], usage: { prompt_tokens: 7, completion_tokens: 3, total_tokens: 10 } }));
};
const fail = (res: ServerResponse, status: number, message: string, headers: Record<string, string> = {}): void => {
  res.writeHead(status, { "content-type": "application/json", ...headers });
  res.end(JSON.stringify({ error: { message, type: "error", param: null, code: null } }));
};

test("TinyStories prompts: the paper's wording, deterministic for a seed, valid ingredients, every feature count", () => {
  const r = tinystories();
  const words = defaultWordLists();
  assert.deepEqual(Object.fromEntries(Object.entries(words).map(([k, v]) => [k, v.length])), { verb: 500, noun: 650, adjective: 350 });
  for (const list of Object.values(words)) for (const w of list) assert.match(w, /^[a-z]+$/);
  const phrases = new Map(r.template.features.map((f) => [f.name, f.phrase]));
  assert.deepEqual([...phrases.keys()], ["dialogue", "twist", "moral", "bad-ending", "foreshadowing", "conflict"]);
  const counts = new Set<number>(), seen = new Set<string>();
  for (let i = 0; i < 300; i++) {
    const d = drawPrompt(r, 7, i);
    assert.deepEqual(drawPrompt(r, 7, i), d, "the same seed and index draw the same prompt");
    const { verb, noun, adjective } = d.ingredients.words as Record<string, string>;
    assert.ok(words.verb.includes(verb) && words.noun.includes(noun) && words.adjective.includes(adjective), JSON.stringify(d.ingredients));
    assert.deepEqual(Object.keys(d.ingredients.words), ["verb", "noun", "adjective"]);
    const f = d.ingredients.features;
    assert.ok(f.length <= 3 && new Set(f).size === f.length && f.every((x) => phrases.has(x)), JSON.stringify(f));
    counts.add(f.length);
    for (const x of f) seen.add(x);
    const features = f.length === 0 ? "" : ` The story should have the following features: ${f.map((x) => phrases.get(x)).join(", ")}.`;
    assert.equal(
      d.prompt,
      "Write a short story (3-5 paragraphs) which only uses very simple words that a 3 year old child would likely understand. " +
        `The story should use the verb "${verb}", the noun "${noun}" and the adjective "${adjective}".${features} Remember to only use simple words!`,
    );
  }
  assert.deepEqual([...counts].sort(), [0, 1, 2, 3]);
  assert.equal(seen.size, 6);
  const other = Array.from({ length: 50 }, (_, i) => drawPrompt(r, 8, i).prompt);
  assert.ok(other.filter((p, i) => p !== drawPrompt(r, 7, i).prompt).length >= 45, "another seed draws other prompts");
  // Every shipped template parses, binds to the default vocabulary and draws.
  for (const [name, source] of Object.entries(BUILTIN_TEMPLATES)) {
    const d = drawPrompt(makeRecipe(parseTemplate(source, name), defaultWordLists()), 1, 0);
    assert.doesNotMatch(d.prompt, /[{}]|\[\[|\]\]/, name);
  }
  const ex = makeRecipe(parseTemplate(BUILTIN_TEMPLATES["textbook-exercise"]), defaultWordLists());
  const d = drawPrompt(ex, 1, 3);
  assert.ok(ex.lists.topic.includes(d.ingredients.words.topic as string) && ex.lists.audience.includes(d.ingredients.words.audience as string));
  assert.match(d.prompt, new RegExp(`^Write one exercise of a Python textbook for ${d.ingredients.words.audience}\\. The exercise is about ${d.ingredients.words.topic}, `));
});

test("the template format: tags, ranges, optional parts, escapes, @system and @text; errors name the problem", () => {
  const t = parseTemplate(
    ["# two animals and a colour", "@words colour: red, green", "@words colour: blue", "@feature rhyme: it rhymes", "@system Be brief.", "@text prompt+completion", "---",
      "The {noun#1} and the {noun#2} \\{{colour}\\} [[ ({features:0-1})]] ({colour}) [x]"].join("\n"),
    "t",
  );
  assert.deepEqual(t.words, { colour: ["red", "green", "blue"] });
  assert.equal(t.system, "Be brief.");
  assert.equal(t.text, "prompt+completion");
  const r = makeRecipe(t, { noun: ["cat", "dog"] });
  for (let i = 0; i < 20; i++) {
    const d = drawPrompt(r, 3, i);
    const w = d.ingredients.words as Record<string, string>;
    assert.notEqual(w["noun#1"], w["noun#2"]);
    assert.equal(d.prompt, `The ${w["noun#1"]} and the ${w["noun#2"]} {${w.colour}} ${d.ingredients.features.length ? " (it rhymes)" : ""} (${w.colour}) [x]`);
  }
  const lists = { noun: ["cat"] };
  const err = (body: string, re: RegExp, v = lists): void => assert.throws(() => makeRecipe(parseTemplate(body, "t"), v), re);
  err("a {verb}", /\{verb\} names no list "verb" \(lists: noun\)/);
  err("a {noun#1} {noun#2}", /"noun" may draw 2 distinct entries; the list has 1/);
  err("a {noun", /a \{ without its \}/);
  err("a noun}", /a \} without its \{/);
  err("a {no un}", /is not a placeholder/);
  err("[[ a {noun}", /a \[\[ without its \]\]/);
  err("{features}", /define features with @feature/);
  err("@words x: y\nno separator", /must end with a line ---/);
  err("@bogus\n---\nx", /unknown directive @bogus/);
  err("{noun:2-1}", /range 2-1 is empty/);
  assert.deepEqual(parseWordLists("# c\n[verb]\nrun, jump\n\n[noun]\nice cream, cat\n[verb]\nrun, hop"), { verb: ["run", "jump", "hop"], noun: ["ice cream", "cat"] });
  assert.deepEqual(parseWordLists('{"noun": ["cat", " dog "]}'), { noun: ["cat", "dog"] });
  assert.throws(() => parseWordLists("cat, dog", "w.txt"), /w\.txt line 1: entries before the first \[list\] header/);
});

test("in-process teacher: the library's own tokens, alone or concurrent, raw or through the chat template", async () => {
  const raw = new ModelTeacher({ model: plain.model, tokenizer: chars, chatTemplate: plain.chatTemplate }, { parallel: 3 });
  assert.equal(raw.format, "completion");
  const prompts = ["Once upon a time", "The cat", "A dog ran"];
  const got = await Promise.all(prompts.map((p, i) => raw.complete(p, { maxTokens: 20, temperature: 0.9, seed: 10 + i })));
  for (const [i, p] of prompts.entries()) {
    assert.equal(got[i].text, await alone(promptIds(chars, p), { maxTokens: 20, temperature: 0.9, seed: 10 + i }), p);
    assert.deepEqual(got[i].usage, { prompt_tokens: p.length, completion_tokens: 20 });
    assert.equal(got[i].finishReason, "length");
  }
  // A stop string ends the answer before it (greedy, so the answer is known).
  const full = await raw.complete("The cat", { maxTokens: 20, temperature: 0 });
  const cut = full.text.slice(5, 7);
  const stopped = await raw.complete("The cat", { maxTokens: 20, temperature: 0, stop: [cut] });
  assert.equal(stopped.text, full.text.slice(0, full.text.indexOf(cut)));
  assert.equal(stopped.finishReason, "stop");
  const chatting = new ModelTeacher({ model: chat.model, tokenizer: chars, chatTemplate: chat.chatTemplate });
  assert.equal(chatting.format, "chat");
  const messages = [{ role: "system", content: "Be kind." }, { role: "user", content: "Hi" }];
  const ids = chatPromptIds(chars, renderChat(CHAT, messages));
  const c = await chatting.complete(messages, { maxTokens: 8, temperature: 0.5, seed: 2 });
  assert.equal(c.text, await alone(ids, { maxTokens: 8, temperature: 0.5, seed: 2 }));
  assert.equal(c.usage.prompt_tokens, ids.length);
  // A prompt the tokenizer cannot take is a refusal.
  await assert.rejects(raw.complete("naïve", { maxTokens: 4, temperature: 0 }), (e: unknown) => e instanceof TeacherError && e.refused && /cannot be given to the model.*"ï"/.test(e.message));
  await assert.rejects(raw.complete(messages, { maxTokens: 4, temperature: 0 }), (e: unknown) => e instanceof TeacherError && e.refused);
});

test("bonsai data synth --teacher: N records with their prompts, ingredients, usage; the CLI's errors are one line", () => {
  const out = join(tmp, "inproc.jsonl");
  const r = bonsai("data", "synth", "--teacher", plainDir, "--count", "6", "--max-tokens", "16", "--concurrency", "3", "--seed", "5", "--threads", "1", "--out", out);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /bonsai data synth: 6 records written to .*inproc\.jsonl, 0 duplicates dropped \(exact 0, near 0\), 0 empty, 0 ids given up, 0 failed, [\d,]+ tokens/);
  const recs = readRecords(out);
  assert.deepEqual(recs.map((x) => x.id).sort((a, b) => a - b), [0, 1, 2, 3, 4, 5]);
  const recipe = tinystories();
  for (const x of recs) {
    assert.deepEqual(Object.keys(x), ["id", "text", "prompt", "ingredients", "teacher", "usage", "finish_reason"]);
    const d = drawPrompt(recipe, 5, x.id);
    assert.equal(x.prompt, d.prompt);
    assert.deepEqual(x.ingredients, d.ingredients);
    assert.equal(x.teacher, plainDir);
    assert.deepEqual(x.usage, { prompt_tokens: d.prompt.length, completion_tokens: 16 });
    assert.equal(x.finish_reason, "length");
    assert.ok(x.text.length > 0 && x.text === x.text.trim());
  }
  // Usage errors, and a resume with other settings, are refused in one line.
  assertOneLineError(bonsai("data", "synth", "--count", "1", "--out", out), /--teacher PATH .* or --endpoint URL --model NAME/);
  assertOneLineError(bonsai("data", "synth", "--teacher", plainDir, "--out", out), /--count is required/);
  assertOneLineError(bonsai("data", "synth", "--teacher", plainDir, "--count", "1", "--out", out, "--timeout", "3"), /--timeout applies to --endpoint/);
  assertOneLineError(bonsai("data", "synth", "--teacher", plainDir, "--count", "1", "--out", out, "--template", join(tmp, "none.txt")), /--template .*none\.txt: no such file \(shipped templates: tinystories, /);
  writeFileSync(join(tmp, "bad.txt"), "The {colour} one");
  assertOneLineError(bonsai("data", "synth", "--teacher", plainDir, "--count", "1", "--out", out, "--template", join(tmp, "bad.txt")), /\{colour\} names no list "colour"/);
  assertOneLineError(bonsai("data", "synth", "--teacher", plainDir, "--count", "8", "--threads", "1", "--out", out), /record \d's prompt is not the one this command draws for it \(written with another --seed/);
});

test("exact duplicates are dropped and redrawn with other seeds, also against the records of an earlier run", () => {
  // One fixed prompt at temperature 0: every answer is the same, so one record and the rest given up.
  const template = join(tmp, "fixed.txt"), out = join(tmp, "dups.jsonl");
  writeFileSync(template, "Tell me a story.\n");
  const args = ["data", "synth", "--teacher", plainDir, "--template", template, "--count", "4", "--max-tokens", "12", "--temperature", "0", "--retries", "1", "--threads", "1", "--out", out];
  const r = bonsai(...args);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /1 record written .* 6 duplicates dropped \(exact 6, near 0\), 0 empty, 3 ids given up, 0 failed/);
  assert.equal((r.stderr.match(/given up: 2 answers were all empty or duplicates/g) ?? []).length, 3);
  const again = bonsai(...args);
  assert.equal(again.code, 0, again.stderr);
  assert.match(again.stderr, /0 records written .*\(1 there before\), 6 duplicates dropped \(exact 6, near 0\)/);
  assert.equal(readRecords(out).length, 1);
});

test("exact and MinHash near duplicates are dropped and their id asked again; --dedup exact keeps the near one", async () => {
  const story = "Lily and Ben went to the park on a sunny day. They played on the swings and the slide. Then they saw a big dog with a red ball. " +
    "The dog wanted to play too. Lily threw the ball and the dog ran after it. Ben laughed and clapped his hands. They all had a lot of fun together until the sun went down.";
  const answers = [
    story,
    story.toUpperCase().replace(/\./g, "!"), // the same text once normalised: an exact duplicate
    story.replace(/down\.$/, "away."), // one word changed: a near duplicate
    "Tom had a small boat. He took it to the pond every morning and watched it float on the water while the ducks swam around it.",
  ];
  const run = async (dedup: string): Promise<{ stderr: string; texts: string[] }> => {
    const server = await httpServer((n, _b, _q, res) => answer(res, answers[n - 1]));
    const out = join(tmp, `near-${dedup}.jsonl`);
    const r = await bonsaiAsync(["data", "synth", "--endpoint", server.url, "--model", "m", "--count", "2", "--concurrency", "1", "--dedup", dedup, "--quiet", "--out", out]);
    assert.equal(r.code, 0, r.stderr);
    return { stderr: r.stderr, texts: readRecords(out).sort((a, b) => a.id - b.id).map((x) => x.text) };
  };
  const minhash = await run("minhash");
  assert.match(minhash.stderr, /2 records written .* 2 duplicates dropped \(exact 1, near 1\), 0 empty, 0 ids given up/);
  assert.deepEqual(minhash.texts, [answers[0], answers[3]]);
  const exact = await run("exact");
  assert.match(exact.stderr, /2 records written .* 1 duplicate dropped \(exact 1, near 0\)/);
  assert.deepEqual(exact.texts, [answers[0], answers[2]]);
});

test("the endpoint teacher against bonsai serve's server: records with usage, chat and completions, an API key; a refusal stops in one line", async () => {
  const server: BonsaiServer = createServer(plain.model, { tokenizer: chars, modelName: "tiny", parallel: 4, chatTemplate: CHAT, apiKey: "sesame" });
  servers.push({ close: () => server.close(0) });
  const url = await server.listen(0, "127.0.0.1");
  const out = join(tmp, "served.jsonl");
  const common = ["data", "synth", "--endpoint", `${url}/v1`, "--model", "tiny", "--count", "5", "--max-tokens", "12", "--concurrency", "3", "--rate-limit", "1000000", "--quiet"];
  const r = await bonsaiAsync([...common, "--api-key-env", "SYNTH_KEY", "--out", out], { SYNTH_KEY: "sesame" });
  assert.equal(r.code, 0, r.stderr);
  const recs = readRecords(out);
  assert.deepEqual(recs.map((x) => x.id).sort(), [0, 1, 2, 3, 4]);
  const recipe = tinystories();
  for (const x of recs) {
    assert.equal(x.teacher, `tiny@${url}/v1`);
    assert.equal(x.prompt, drawPrompt(recipe, 1337, x.id).prompt);
    // The chat template's rendering of the prompt as a user message, as the server counts it.
    assert.deepEqual(x.usage, { prompt_tokens: chatPromptIds(chars, renderChat(CHAT, [{ role: "user", content: x.prompt }])).length, completion_tokens: 12 });
    assert.equal(x.finish_reason, "length");
  }
  // The completions API: the raw prompt continued, exactly the library's text with the record's sampling seed.
  const raw = join(tmp, "served-raw.jsonl");
  const c = await bonsaiAsync([...common, "--api", "completions", "--api-key-env", "SYNTH_KEY", "--out", raw], { SYNTH_KEY: "sesame" });
  assert.equal(c.code, 0, c.stderr);
  for (const x of readRecords(raw)) {
    assert.equal(x.text, (await alone(promptIds(chars, x.prompt), { maxTokens: 12, temperature: 1, seed: samplingSeed(1337, x.id, 0) })).trim());
    assert.deepEqual(x.usage, { prompt_tokens: x.prompt.length, completion_tokens: 12 });
  }
  // Refusals: no key (401), an unknown model (404); nothing is retried, the file stays valid.
  const refused = join(tmp, "refused.jsonl");
  const noKey = await bonsaiAsync([...common, "--out", refused]);
  assertOneLineError(noKey, /tiny@http:\/\/127\.0\.0\.1:\d+\/v1: the server refused the request: POST .*\/v1\/chat\/completions: 401/);
  const wrongModel = await bonsaiAsync([...common.map((a) => (a === "tiny" ? "other" : a)), "--api-key-env", "SYNTH_KEY", "--out", refused], { SYNTH_KEY: "sesame" });
  assertOneLineError(wrongModel, /404 Not Found: the model 'other' does not exist/);
  assert.equal(readFileSync(refused, "utf8"), "");
});

test("endpoint retries: 429 waits for Retry-After, 500 backs off, a dead port and a silent server fail after their attempts; 4xx is a refusal", async () => {
  const limited = await httpServer((n, _b, _q, res) => (n === 1 ? fail(res, 429, "slow down", { "retry-after": "1" }) : answer(res, "ok")));
  const retried: string[] = [];
  const t = new EndpointTeacher({ url: limited.url, model: "m", retryDelayMs: 1, onRetry: (i) => retried.push(i.reason) });
  const a = await t.complete("hi", { maxTokens: 5, temperature: 0, seed: 4 });
  assert.deepEqual(a, { text: "ok", usage: { prompt_tokens: 7, completion_tokens: 3 }, finishReason: "stop" });
  assert.equal(limited.requests.length, 2);
  assert.ok(limited.requests[1].at - limited.requests[0].at >= 990, `Retry-After: 1 honoured (waited ${limited.requests[1].at - limited.requests[0].at} ms)`);
  assert.match(retried[0], /429 Too Many Requests: slow down/);
  assert.deepEqual(limited.requests[0].body, { model: "m", max_tokens: 5, temperature: 0, stream: false, messages: [{ role: "user", content: "hi" }], seed: 4 });

  const flaky = await httpServer((n, _b, _q, res) => (n <= 2 ? fail(res, 500, "oops") : answer(res, "fine")));
  assert.equal((await new EndpointTeacher({ url: flaky.url, model: "m", retryDelayMs: 1 }).complete("x", { maxTokens: 1, temperature: 1 })).text, "fine");
  assert.equal(flaky.requests.length, 3);
  const broken = await httpServer((_n, _b, _q, res) => fail(res, 503, "down"));
  await assert.rejects(new EndpointTeacher({ url: broken.url, model: "m", retries: 2, retryDelayMs: 1 }).complete("x", { maxTokens: 1, temperature: 1 }),
    (e: unknown) => e instanceof TeacherError && !e.refused && e.status === 503 && /503 Service Unavailable: down \(3 attempts\)$/.test(e.message));
  assert.equal(broken.requests.length, 3);

  const silent = await httpServer(() => {}); // takes the request and never answers
  await assert.rejects(new EndpointTeacher({ url: silent.url, model: "m", timeoutMs: 200, retries: 1, retryDelayMs: 1 }).complete("x", { maxTokens: 1, temperature: 1 }),
    (e: unknown) => e instanceof TeacherError && !e.refused && /no answer within 0\.2 s \(the request timed out\): POST http:\/\/127\.0\.0\.1:\d+\/v1\/chat\/completions \(2 attempts\)/.test(e.message));
  assert.equal(silent.requests.length, 2);
  const dead = await httpServer(() => {});
  const deadUrl = dead.url;
  await servers.pop()!.close();
  await assert.rejects(new EndpointTeacher({ url: deadUrl, model: "m", retries: 1, retryDelayMs: 1 }).complete("x", { maxTokens: 1, temperature: 1 }), /ECONNREFUSED \(2 attempts\)/);

  const refusing = await httpServer((_n, _b, _q, res) => fail(res, 400, "max_tokens is too large"));
  await assert.rejects(new EndpointTeacher({ url: refusing.url, model: "m", api: "completions" }).complete("x", { maxTokens: 1, temperature: 1 }),
    (e: unknown) => e instanceof TeacherError && e.refused && e.status === 400 && /refused the request: POST .*\/v1\/completions: 400 Bad Request: max_tokens is too large$/.test(e.message));
  assert.equal(refusing.requests.length, 1, "a refusal is not retried");
  assert.equal(refusing.requests[0].body.prompt, "x");

  // A server that never answers, through the CLI: each record fails after its attempts, the run says so.
  const out = join(tmp, "silent.jsonl");
  const r = await bonsaiAsync(["data", "synth", "--endpoint", silent.url, "--model", "m", "--count", "2", "--timeout", "0.2", "--retries", "0", "--out", out]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /record [01] failed: m@http:\S+: no answer within 0\.2 s \(the request timed out\)/);
  assert.match(r.stderr, /0 records written .* 2 failed/);
  assert.match(r.stderr.trim().split("\n").pop()!, /^bonsai: error: 2 records failed; run the same command again to make them$/);
});

test("endpoint URLs, Retry-After forms, and the token-rate limiter's reservations", async () => {
  assert.deepEqual(endpointUrl("http://h:8080"), { url: "http://h:8080/v1/chat/completions", api: "chat" });
  assert.deepEqual(endpointUrl("http://h:8080/v1/", "completions"), { url: "http://h:8080/v1/completions", api: "completions" });
  assert.deepEqual(endpointUrl("https://api.example.com/v1/chat/completions"), { url: "https://api.example.com/v1/chat/completions", api: "chat" });
  assert.throws(() => endpointUrl("http://h/v1/completions", "chat"), /is the completions API, not chat/);
  assert.throws(() => endpointUrl("ftp://h"), /must be http or https/);
  assert.equal(retryAfterMs(new Headers({ "retry-after": "2" })), 2000);
  assert.equal(retryAfterMs(new Headers({ "retry-after-ms": "150", "retry-after": "2" })), 150);
  assert.ok(retryAfterMs(new Headers({ "retry-after": new Date(Date.now() + 60_000).toUTCString() }))! > 50_000);
  assert.equal(retryAfterMs(new Headers({})), null);
  // 60 tokens a minute (one a second) in bursts of 10: the burst goes at once, the next waits.
  const lim = new TokenRateLimiter(60, { burst: 10 });
  await lim.acquire(10);
  let got = false;
  const waiting = lim.acquire(5).then(() => (got = true));
  await new Promise((r) => setImmediate(r));
  assert.equal(got, false, "the bucket is empty: the request waits");
  lim.settle(10, 2); // the answer used 2 of its 10: 8 come back, enough for the waiter
  await waiting;
  assert.equal(got, true);
  const ctl = new AbortController();
  const stuck = lim.acquire(10, ctl.signal);
  ctl.abort(new Error("gave up"));
  await assert.rejects(stuck, /gave up/);
  assert.ok(lim.tokens < 10);
});

test("resume after SIGKILL: the run restarts where it was killed, a cut line is truncated, N unique ids", async () => {
  const out = join(tmp, "killed.jsonl");
  const count = 60;
  const args = ["data", "synth", "--teacher", plainDir, "--count", String(count), "--max-tokens", "100", "--concurrency", "2", "--threads", "1", "--out", out];
  const child = spawn(process.execPath, [CLI, ...args], { stdio: "ignore" });
  let exited: number | null | undefined;
  const exit = new Promise<void>((r) => child.on("exit", (code) => ((exited = code), r())));
  const lines = (): number => (existsSync(out) ? readFileSync(out, "utf8").split("\n").length - 1 : 0);
  while (lines() < 3 && exited === undefined) await new Promise((r) => setTimeout(r, 5));
  assert.equal(exited, undefined, "the first run was still running");
  child.kill("SIGKILL");
  await exit;
  const first = readFileSync(out, "utf8");
  const kept = readRecords(out);
  assert.ok(kept.length < count, `killed mid-run (${kept.length} of ${count} written)`);
  // As a kill in the middle of a write would leave it: a cut final line.
  appendFileSync(out, '{"id":59,"text":"Once upon a ti');
  const r = bonsai(...args);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /killed\.jsonl: truncated a cut final line \(\d+ bytes\)/);
  assert.match(r.stderr, new RegExp(`resuming .*killed\\.jsonl: ${kept.length} records there, ${count - kept.length} of ${count} to make`));
  const text = readFileSync(out, "utf8");
  assert.ok(text.startsWith(first), "the records of the killed run stay as they were");
  const all = readRecords(out);
  assert.equal(all.length, count);
  assert.deepEqual(all.map((x) => x.id).sort((a, b) => a - b), Array.from({ length: count }, (_, i) => i));
  const recipe = tinystories();
  for (const x of all) assert.equal(x.prompt, drawPrompt(recipe, 1337, x.id).prompt);
  // Run again: nothing to do, nothing written.
  const done = bonsai(...args);
  assert.equal(done.code, 0, done.stderr);
  assert.match(done.stderr, new RegExp(`0 records written .*\\(${count} there before\\)`));
  assert.equal(readFileSync(out, "utf8"), text);
});
