// `bonsai demo`, shortened to a few steps: the tokenizer it trains, the model it leaves, resume,
// and the three commands it prints, run as printed.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CLI, assertOneLineError, bonsai } from "./cli-helpers.js";
import { nextCommands, shellWord } from "../src/cli/demo.js";

const tmp = mkdtempSync(join(tmpdir(), "bonsai demo-")); // a space, so the printed commands must quote

test("demo: BPE tokenizer, model, resume, and the next commands as printed", () => {
  const out = join(tmp, "demo");
  const first = bonsai("demo", "--out", out, "--iters", "12");
  assert.equal(first.code, 0, first.stderr);
  assert.match(first.stderr, /trained a byte-level BPE tokenizer of 2048 tokens/);
  assert.match(first.stderr, /relaxed kernels|simd kernels/);
  const tokenizer = JSON.parse(readFileSync(join(out, "tokenizer.json"), "utf8"));
  assert.equal(tokenizer.model.type, "BPE");
  assert.equal(JSON.parse(readFileSync(join(out, "config.json"), "utf8")).vocab_size, 2048);
  assert.ok(first.stdout.startsWith("It was"), first.stdout);
  const text = first.stdout.slice("It was".length).trimEnd();
  assert.ok(text.length > 0);

  // Run again: trained already, so the same text; a larger --iters resumes from the checkpoint.
  const again = bonsai("demo", "--out", out, "--iters", "12");
  assert.equal(again.code, 0, again.stderr);
  assert.match(again.stderr, /already trained \(12 steps\)/);
  assert.equal(again.stdout, first.stdout);
  const resumed = bonsai("demo", "--out", out, "--iters", "16");
  assert.equal(resumed.code, 0, resumed.stderr);
  assert.match(resumed.stderr, /resuming at iteration 12/);
  assert.equal(JSON.parse(readFileSync(join(out, "training_state.json"), "utf8")).iter, 16);

  // The three commands, printed in full and runnable by a shell as shown.
  const commands = nextCommands(out);
  for (const c of commands) assert.ok(resumed.stderr.includes(`  ${c}\n`), `printed: ${c}`);
  const run = (c: string) => spawnSync("sh", ["-c", c.replace(/^npx bonsai /, `${shellWord(process.execPath)} ${shellWord(CLI)} `)], { encoding: "utf8" });
  const generated = run(commands[0]);
  assert.equal(generated.status, 0, generated.stderr);
  assert.equal(generated.stdout.trimEnd(), resumed.stdout.slice("It was".length).trimEnd(), "generate gives the demo's text");
  const quantized = run(commands[1]);
  assert.equal(quantized.status, 0, quantized.stderr);
  assert.ok(existsSync(join(out, "model-q4_0.gguf")));
  const fromGguf = run(commands[2]);
  assert.equal(fromGguf.status, 0, fromGguf.stderr);
  assert.ok(fromGguf.stdout.trim().length > 0);
});

test("demo: a directory holding another model is refused, untouched", () => {
  const other = join(tmp, "other");
  mkdirSync(other);
  writeFileSync(join(other, "config.json"), "{}");
  assertOneLineError(bonsai("demo", "--out", other, "--iters", "2"), /not a demo run/);
  assert.equal(readFileSync(join(other, "config.json"), "utf8"), "{}");
});

test("shellWord quotes what a shell would split or expand", () => {
  assert.equal(shellWord("out/demo"), "out/demo");
  assert.equal(shellWord("my dir"), "'my dir'");
  assert.equal(shellWord("it's"), `'it'\\''s'`);
  const echoed = spawnSync("sh", ["-c", `printf %s ${shellWord("a $b 'c' \"d\"")}`], { encoding: "utf8" });
  assert.equal(echoed.stdout, "a $b 'c' \"d\"");
});
