// `bonsai train`'s curriculum, quantization-aware training and --init flags, as a user runs them:
// real processes and files. The algorithms have their own tests (curriculum, qat); these check
// the wiring: what is written, what a resume keeps, what the exported file holds, and the errors.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CLI, assertOneLineError, bonsai } from "./cli-helpers.js";

const tmp = mkdtempSync(join(tmpdir(), "bonsai-train-flags-"));



// Stories of different lengths separated by <|endoftext|>.
const words = ["the", "cat", "sat", "on", "a", "mat", "and", "dog", "ran", "far"];
const stories = Array.from({ length: 60 }, (_, i) => Array.from({ length: 3 + ((i * 7) % 23) }, (_, j) => words[(i + j * 3) % words.length]).join(" ") + ".");
const corpus = join(tmp, "stories.txt");
writeFileSync(corpus, stories.join("<|endoftext|>"));
const tiny = ["--layers", "1", "--heads", "2", "--dim", "32", "--block-size", "16", "--batch-size", "4", "--eval-iters", "2", "--threads", "1"];
const metrics = (dir: string): Record<string, number>[] =>
  readFileSync(join(dir, "metrics.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l) as Record<string, number>);

test("--curriculum: documents as samples, competence logged, Ctrl-C and --resume continue exactly", async () => {
  const full = join(tmp, "curr-full"), cut = join(tmp, "curr-cut");
  // self-paced: the scores come from the student itself and must be saved with the checkpoint.
  const flags = ["--data", corpus, "--iters", "200", "--curriculum", "self-paced", "--rescore-every", "7", "--score-tokens", "8", "--pacing", "linear",
    "--curriculum-mode", "soft", "--competence-start", "0.2", "--eval-interval", "100", ...tiny];
  const r = bonsai("train", ...flags, "--out", full);
  assert.equal(r.code, 0, r.stderr);
  const steps = metrics(full).filter((m) => "loss" in m);
  assert.equal(steps.length, 200);
  // linear pacing, c0 0.2, full competence at half of training: c(t) = 0.2 + 0.8·(t / 0.5)
  for (const m of steps) assert.ok(Math.abs(m.competence - Math.min(1, 0.2 + 0.8 * (m.iter / 200 / 0.5))) < 1e-12, `competence at ${m.iter}`);
  assert.ok(steps.every((m) => typeof m.w_mean === "number" && typeof m.w_p10 === "number" && typeof m.token_loss === "number"));
  assert.equal(steps.filter((m) => (m as Record<string, unknown>).rescored === true).length, Math.ceil(200 / 7));
  const state = JSON.parse(readFileSync(join(full, "training_state.json"), "utf8"));
  assert.equal(state.curriculum.options.scorer, "self-paced");
  assert.equal(state.curriculum.documents, "stories");
  assert.ok(existsSync(join(full, "curriculum_state.json")));

  const child = spawn(process.execPath, [CLI, "train", ...flags, "--out", cut, "--log-interval", "10"], { stdio: ["ignore", "ignore", "pipe"] });
  let stderr = "", signalled = false;
  const code = await new Promise<number | null>((resolve) => {
    child.stderr.on("data", (d: Buffer) => {
      stderr += d.toString();
      if (!signalled && /iter \d+\/200/.test(stderr)) {
        signalled = true;
        child.kill("SIGINT");
      }
    });
    child.on("exit", (c) => resolve(c));
  });
  assert.equal(code, 130, `interrupted run exits 130:\n${stderr}`);
  const stoppedAt = JSON.parse(readFileSync(join(cut, "training_state.json"), "utf8")).iter;
  assert.ok(stoppedAt > 0 && stoppedAt < 200, `stopped at ${stoppedAt}`);
  assertOneLineError(bonsai("train", "--out", cut, "--resume", "--pacing", "root"), /--pacing cannot be changed/);
  const resumed = bonsai("train", "--out", cut, "--resume");
  assert.equal(resumed.code, 0, resumed.stderr);
  assert.deepEqual(readFileSync(join(cut, "model.safetensors")), readFileSync(join(full, "model.safetensors")), "resumed == uninterrupted");
});

test("--qat q4_0: qat.json, eval of the checkpoint == eval of its Q4_0 GGUF; --init fine-tunes a model", () => {
  const base = join(tmp, "base"), qat = join(tmp, "qat"), tok = join(tmp, "bpe.json");
  // A GGUF needs a tokenizer with a GGUF form: byte-level BPE.
  let r = bonsai("tokenizer", "train", "--data", corpus, "--vocab-size", "280", "--type", "bytelevel-bpe", "--out", tok);
  assert.equal(r.code, 0, r.stderr);
  r = bonsai("train", "--data", corpus, "--tokenizer", tok, "--out", base, "--iters", "6", "--eval-interval", "6", ...tiny);
  assert.equal(r.code, 0, r.stderr);
  r = bonsai("train", "--data", corpus, "--init", base, "--out", qat, "--iters", "4", "--eval-interval", "4", "--qat", "q4_0",
    "--batch-size", "4", "--eval-iters", "2", "--threads", "1");
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(JSON.parse(readFileSync(join(qat, "qat.json"), "utf8")), { weights: "q4_0" });
  assert.equal(JSON.parse(readFileSync(join(qat, "config.json"), "utf8")).hidden_size, 32, "the configuration of --init");
  const gguf = join(tmp, "qat.gguf");
  r = bonsai("export", "--model", qat, "--format", "gguf", "--quant", "q4_0", "--out", gguf);
  assert.equal(r.code, 0, r.stderr);
  const evalOf = (model: string, ...extra: string[]): string => {
    const e = bonsai("eval", "--model", model, "--data", corpus, "--split", "all", "--threads", "1", ...extra);
    assert.equal(e.code, 0, e.stderr);
    return e.stdout.trim();
  };
  // The checkpoint runs with fake-quantized weights: the same network as the exported file.
  assert.equal(evalOf(qat), evalOf(gguf));
  // Without QAT the float checkpoint differs from its Q4_0 export.
  const baseGguf = join(tmp, "base.gguf");
  assert.equal(bonsai("export", "--model", base, "--format", "gguf", "--quant", "q4_0", "--out", baseGguf).code, 0);
  assert.notEqual(evalOf(base), evalOf(baseGguf));
  // An HF export keeps qat.json (and so evaluates the same); a GGUF of another type warns that it
  // holds the latent float weights.
  const hf = join(tmp, "qat-hf");
  assert.equal(bonsai("export", "--model", qat, "--format", "hf", "--out", hf).code, 0);
  assert.deepEqual(JSON.parse(readFileSync(join(hf, "qat.json"), "utf8")), { weights: "q4_0" });
  assert.equal(evalOf(hf), evalOf(qat));
  r = bonsai("export", "--model", qat, "--format", "gguf", "--quant", "f32", "--out", join(tmp, "qat-f32.gguf"));
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /warning: the model was trained with --qat q4_0; --quant f32 stores its latent float weights/);
  assert.doesNotMatch(bonsai("export", "--model", qat, "--format", "gguf", "--quant", "q4_0", "--out", gguf).stderr, /warning/);
  // A QAT run resumes with its setting from qat.json.
  r = bonsai("train", "--data", corpus, "--out", qat, "--resume", "--iters", "6");
  assert.equal(r.code, 0, r.stderr);
  assert.ok(existsSync(join(qat, "qat.json")));
});

test("training flags: one-line errors", () => {
  const out = join(tmp, "bad");
  assertOneLineError(bonsai("train", "--data", corpus, "--out", out, "--qat", "q5_0", ...tiny), /qat: weights must be q8_0 or q4_0/);
  assertOneLineError(bonsai("train", "--data", corpus, "--out", out, "--qat-activations", "int8", ...tiny), /--qat-activations needs --qat/);
  assertOneLineError(bonsai("train", "--data", corpus, "--out", out, "--pacing", "root", ...tiny), /--pacing needs --curriculum/);
  assertOneLineError(bonsai("train", "--data", corpus, "--out", out, "--curriculum", "hardness", ...tiny), /scorer/);
  assertOneLineError(bonsai("train", "--data", corpus, "--out", out, "--curriculum", "length", "--pacing", "cubic", ...tiny), /unknown pacing "cubic"/);
  assertOneLineError(bonsai("train", "--data", corpus, "--out", out, "--curriculum", "teacher-loss", ...tiny), /needs a reference model: --curriculum-model/);
  assertOneLineError(bonsai("train", "--data", corpus, "--out", out, "--init", join(tmp, "base"), "--dim", "64"), /--init takes the model's configuration; --dim/);
});
