// The CLI as a user runs it: real processes, real files. Bad input must give one line naming
// the problem and a non-zero exit; the llama2.c reference model must reproduce its text.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CLI, assertOneLineError, bonsai } from "./cli-helpers.js";

const DATA = "../shared/data";
const tmp = mkdtempSync(join(tmpdir(), "bonsai-cli-"));



// A small corpus written by the test itself.
const corpus = join(tmp, "corpus.txt");
writeFileSync(corpus, "the quick brown fox jumps over the lazy dog. ".repeat(200));
const tiny = ["--layers", "1", "--heads", "2", "--dim", "16", "--block-size", "16", "--batch-size", "4", "--eval-iters", "2"];

test("bad input: one-line errors and non-zero exit", () => {
  assertOneLineError(bonsai("train", "--data", join(tmp, "missing.txt"), "--out", join(tmp, "o1")), /file not found: .*missing\.txt/);
  assertOneLineError(bonsai("train", "--data", corpus, "--out", join(tmp, "o2"), "--frobnicate", "3"), /Unknown option '--frobnicate'/);
  assertOneLineError(bonsai("train", "--data", corpus, "--out", join(tmp, "o3"), "--dim", "30", "--heads", "4"), /hidden_size 30 is not divisible by num_attention_heads 4/);
  assertOneLineError(bonsai("train", "--data", corpus, "--out", join(tmp, "o4"), "--heads", "4", "--kv-heads", "3"), /num_key_value_heads 3 does not divide num_attention_heads 4/);
  assertOneLineError(bonsai("train", "--data", corpus, "--out", join(tmp, "o5"), "--lr", "fast"), /--lr must be a number/);
  assertOneLineError(bonsai("train", "--data", corpus), /--out is required/);
  assertOneLineError(bonsai("frobnicate"), /unknown command "frobnicate"/);
  const garbage = join(tmp, "garbage.bin");
  writeFileSync(garbage, Buffer.from("this is not a model"));
  assertOneLineError(bonsai("generate", "--model", garbage, "--max-tokens", "1"), /llama2\.c|header|size/i);
  const badDir = join(tmp, "baddir");
  spawnSync("mkdir", ["-p", badDir]);
  writeFileSync(join(badDir, "config.json"), "{ not json");
  assertOneLineError(bonsai("generate", "--model", badDir), /config\.json is not valid JSON/);
  writeFileSync(join(badDir, "config.json"), JSON.stringify({ hidden_size: 16, num_attention_heads: 2, vocab_size: 5, intermediate_size: 8, num_hidden_layers: 1 }));
  writeFileSync(join(badDir, "model.safetensors"), Buffer.from([1, 2, 3]));
  assertOneLineError(bonsai("generate", "--model", badDir), /safetensors/);
  assertOneLineError(bonsai("generate", "--model", join(tmp, "nope")), /model not found/);
});

test("train, eval, generate, convert round trip on a tiny model", () => {
  const out = join(tmp, "run");
  const r = bonsai("train", "--data", corpus, "--out", out, "--iters", "30", "--eval-interval", "10", ...tiny);
  assert.equal(r.code, 0, r.stderr);
  for (const f of ["config.json", "model.safetensors", "generation_config.json", "bonsai-tokenizer.json", "optimizer.safetensors", "training_state.json", "metrics.jsonl"])
    assert.ok(existsSync(join(out, f)), `${f} written`);
  const config = JSON.parse(readFileSync(join(out, "config.json"), "utf8"));
  assert.deepEqual(config.architectures, ["LlamaForCausalLM"]);
  assert.equal(config.model_type, "llama");
  // Training on a running process refuses to overwrite an existing run.
  assertOneLineError(bonsai("train", "--data", corpus, "--out", out, ...tiny), /already holds a training run/);

  const e = bonsai("eval", "--model", out, "--data", corpus, "--split", "val");
  assert.equal(e.code, 0, e.stderr);
  const last = e.stdout.trim().split("\n").pop()!;
  assert.match(last, /^val_loss \d+\.\d+$/);
  const valLoss = Number(last.split(" ")[1]);
  assert.ok(valLoss > 0 && valLoss < Math.log(30), `val_loss ${valLoss}`);

  const g = bonsai("generate", "--model", out, "--prompt", "the ", "--temperature", "0.8", "--max-tokens", "40", "--seed", "3");
  assert.equal(g.code, 0, g.stderr);
  assert.equal(g.stdout.length, 41, "40 characters and a newline on stdout");
  const g2 = bonsai("generate", "--model", out, "--prompt", "the ", "--temperature", "0.8", "--max-tokens", "40", "--seed", "3");
  assert.equal(g2.stdout, g.stdout, "same seed, same text");
  // The folded graph (the default) and --no-fuse compute the same logits up to rounding.
  const greedy = ["generate", "--model", out, "--prompt", "the ", "--temperature", "0", "--max-tokens", "40"];
  const fused = bonsai(...greedy), plain = bonsai(...greedy, "--no-fuse");
  assert.equal(plain.code, 0, plain.stderr);
  assert.equal(plain.stdout, fused.stdout, "--no-fuse generates the same greedy text");

  const conv = join(tmp, "converted");
  assert.equal(bonsai("convert", "--model", out, "--out", conv).code, 0);
  const g3 = bonsai("generate", "--model", conv, "--prompt", "the ", "--temperature", "0.8", "--max-tokens", "40", "--seed", "3");
  assert.equal(g3.stdout, g.stdout, "converted model generates the same text");
});

test("Ctrl-C saves a checkpoint and --resume continues exactly", async () => {
  const args = ["--data", corpus, "--iters", "3000", "--eval-interval", "1000", "--seed", "5", ...tiny];
  const full = join(tmp, "full"), cut = join(tmp, "cut");
  assert.equal(bonsai("train", ...args, "--out", full).code, 0);

  // Interrupt a second, identical run once it is under way.
  const child = spawn(process.execPath, [CLI, "train", ...args, "--out", cut, "--log-interval", "50"], { stdio: ["ignore", "ignore", "pipe"] });
  let stderr = "", signalled = false;
  const code = await new Promise<number | null>((resolve) => {
    child.stderr.on("data", (d: Buffer) => {
      stderr += d.toString();
      if (!signalled && /iter \d+\/3000/.test(stderr)) {
        signalled = true;
        child.kill("SIGINT");
      }
    });
    child.on("exit", (c) => resolve(c));
  });
  assert.equal(code, 130, `interrupted run exits 130:\n${stderr}`);
  const state = JSON.parse(readFileSync(join(cut, "training_state.json"), "utf8"));
  assert.ok(state.iter > 0 && state.iter < 3000, `stopped at ${state.iter}`);

  const r = bonsai("train", "--out", cut, "--resume");
  assert.equal(r.code, 0, r.stderr);
  const losses = (dir: string): string[] =>
    readFileSync(join(dir, "metrics.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l)).map((m) => `${m.iter}:${m.loss ?? m.val_loss}`);
  assert.deepEqual(losses(cut), losses(full));
  assert.deepEqual(readFileSync(join(cut, "model.safetensors")), readFileSync(join(full, "model.safetensors")));
});

const model260k = join(DATA, "models/stories260K.bin");
const tok512 = join(DATA, "models/tok512.bin");

for (const backend of ["wasm", "js"]) {
  test(`stories260K greedy output equals llama2.c's (${backend})`, (t) => {
    if (!existsSync(model260k)) return t.skip("../shared/data absent");
    const expected = readFileSync(join(DATA, "models/stories260K.expected-greedy.txt"), "utf8");
    const r = bonsai("generate", "--model", model260k, "--tokenizer", tok512, "--temperature", "0", "--max-tokens", "200", "--backend", backend);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.replace(/\n$/, ""), expected.replace(/\n$/, ""));
  });
}

test("stories260K after bonsai convert to a directory", (t) => {
  if (!existsSync(model260k)) return t.skip("../shared/data absent");
  const dir = join(tmp, "stories260K");
  const c = bonsai("convert", "--model", model260k, "--tokenizer", tok512, "--out", dir);
  assert.equal(c.code, 0, c.stderr);
  const expected = readFileSync(join(DATA, "models/stories260K.expected-greedy.txt"), "utf8");
  const r = bonsai("generate", "--model", dir, "--temperature", "0", "--max-tokens", "200");
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout.replace(/\n$/, ""), expected.replace(/\n$/, ""));
});

test("generate: --stop, --stats and sampling flags", (t) => {
  // Sampling flags are checked before the model is opened.
  assertOneLineError(bonsai("generate", "--model", join(tmp, "nope"), "--top-p", "1.5"), /--top-p must be <= 1/);
  if (!existsSync(model260k)) return t.skip("../shared/data absent");
  const expected = readFileSync(join(DATA, "models/stories260K.expected-greedy.txt"), "utf8");
  const r = bonsai("generate", "--model", model260k, "--tokenizer", tok512, "--temperature", "0", "--max-tokens", "200", "--stop", "Lily", "--stats");
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, expected.slice(0, expected.indexOf("Lily")) + "\n", "text up to the stop string, without it");
  const stats = JSON.parse(r.stderr.trim().split("\n").at(-1)!);
  assert.ok(stats.prefill_tokens_per_s > 0 && stats.decode_tokens_per_s > 0 && stats.load_seconds >= 0, JSON.stringify(stats));
  assert.ok(Number.isInteger(stats.tokens) && stats.tokens > 0, JSON.stringify(stats));
  const s = bonsai("generate", "--model", model260k, "--tokenizer", tok512, "--temperature", "0.9", "--top-p", "0.9", "--min-p", "0.05",
    "--repeat-penalty", "1.2", "--repeat-last-n", "32", "--frequency-penalty", "0.1", "--presence-penalty", "0.1", "--max-tokens", "60", "--seed", "4");
  assert.equal(s.code, 0, s.stderr);
  const again = bonsai("generate", "--model", model260k, "--tokenizer", tok512, "--temperature", "0.9", "--top-p", "0.9", "--min-p", "0.05",
    "--repeat-penalty", "1.2", "--repeat-last-n", "32", "--frequency-penalty", "0.1", "--presence-penalty", "0.1", "--max-tokens", "60", "--seed", "4");
  assert.equal(again.stdout, s.stdout, "same seed, same text");
});
