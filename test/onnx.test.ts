// `bonsai export --format onnx` against the runtimes that load it: onnxruntime-node runs the
// exported graph to Bonsai's logits (a prompt, then tokens one by one through present → past,
// and a left-padded batch), and transformers.js 4.x (@huggingface/transformers, offline) loads
// the exported folder with AutoModelForCausalLM and generates Bonsai's greedy tokens.
import { test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as ort from "onnxruntime-node";
import type { FloatArray } from "../src/backend/backend.js";
import { createBackend } from "../src/backend/index.js";
import type { LlamaConfig } from "../src/nn/config.js";
import { Llama } from "../src/nn/llama.js";
import { loadModel } from "../src/io/model-files-node.js";
import { ONNX_MODEL_FILE, ONNX_SUBFOLDER, onnxModelDirectory } from "../src/io/onnx-dir.js";
import { pastName, presentName } from "../src/io/onnx-llama.js";
import { generateTokens } from "../src/runtime/generate.js";
import { Session } from "../src/runtime/session.js";
import { promptIds } from "../src/runtime/stream.js";
import { assertOneLineError, bonsai } from "./cli-helpers.js";

const MODELS = "../shared/data/models";
const STORIES = `${MODELS}/stories260K.bin`, STORIES_TOKENIZER = `${MODELS}/tok512.bin`;
const haveStories = existsSync(STORIES) && existsSync(STORIES_TOKENIZER);
const tmp = mkdtempSync(join(tmpdir(), "bonsai-onnx-"));
process.on("exit", () => rmSync(tmp, { recursive: true, force: true }));

const backend = await createBackend("wasm");

/**
 * Float agreement: |a − b| ≤ 1e-5 + 1e-4·|b| everywhere. Returns the largest |a − b| and the
 * largest share of that tolerance used (1 = at the limit).
 */
function assertClose(actual: ArrayLike<number>, expected: ArrayLike<number>, what: string): { abs: number; used: number } {
  assert.equal(actual.length, expected.length, `${what}: length`);
  let abs = 0, used = 0;
  for (let i = 0; i < expected.length; i++) {
    const d = Math.abs(actual[i] - expected[i]), tolerance = 1e-5 + 1e-4 * Math.abs(expected[i]);
    abs = Math.max(abs, d);
    used = Math.max(used, d / tolerance);
    if (!(d <= tolerance)) assert.fail(`${what}: element ${i} is ${actual[i]}, Bonsai's ${expected[i]}`);
  }
  return { abs, used };
}
const summary = (worst: { abs: number; used: number }[]) =>
  `max |Δ| ${Math.max(...worst.map((w) => w.abs)).toExponential(2)}, at most ${(100 * Math.max(...worst.map((w) => w.used))).toFixed(0)}% of the tolerance 1e-5 + 1e-4·|x|`;

/** Write an export into `dir` as the CLI lays it out. */
async function exportTo(dir: string, model: Llama, opts: Parameters<typeof onnxModelDirectory>[2] = {}): Promise<string> {
  const files = await onnxModelDirectory(model, null, opts);
  mkdirSync(join(dir, ONNX_SUBFOLDER), { recursive: true });
  for (const f of files.files) writeFileSync(join(dir, f.name), f.bytes);
  for (const f of files.onnxFiles) writeFileSync(join(dir, ONNX_SUBFOLDER, f.name), f.bytes);
  return join(dir, ONNX_SUBFOLDER, ONNX_MODEL_FILE);
}

const int64 = (values: number[], dims: number[]) => new ort.Tensor("int64", BigInt64Array.from(values, BigInt), dims);

/** The graph's feeds for one step: ids [batch, seq], mask [batch, past+seq], positions, and each layer's past. */
function feeds(c: LlamaConfig, ids: number[][], mask: number[][], positions: number[][], past: Record<string, ort.Tensor> | null): Record<string, ort.Tensor> {
  const batch = ids.length, hd = c.hidden_size / c.num_attention_heads;
  const f: Record<string, ort.Tensor> = {
    input_ids: int64(ids.flat(), [batch, ids[0].length]),
    attention_mask: int64(mask.flat(), [batch, mask[0].length]),
    position_ids: int64(positions.flat(), [batch, positions[0].length]),
  };
  for (let l = 0; l < c.num_hidden_layers; l++)
    for (const kind of ["key", "value"] as const)
      f[pastName(l, kind)] = past?.[presentName(l, kind)] ?? new ort.Tensor("float32", new Float32Array(0), [batch, c.num_key_value_heads, 0, hd]);
  return f;
}

const logitsOf = (out: Record<string, ort.Tensor>) => out.logits.data as Float32Array;
const range = (from: number, n: number) => Array.from({ length: n }, (_, i) => from + i);

/**
 * Prefill 8 tokens, then decode 3 one by one feeding present back as past: every position's
 * logits against Bonsai's Session doing the same.
 */
async function assertPrefillAndDecode(t: TestContext, model: Llama, onnxPath: string, tokens: number[]): Promise<void> {
  const c = model.config, V = c.vocab_size;
  const session = await ort.InferenceSession.create(onnxPath);
  const ref = new Session(model);
  const prompt = tokens.slice(0, 8);
  let out = await session.run(feeds(c, [prompt], [prompt.map(() => 1)], [range(0, 8)], null));
  assert.deepEqual(out.logits.dims, [1, 8, V]);
  assert.deepEqual(out[presentName(0, "key")].dims, [1, c.num_key_value_heads, 8, c.hidden_size / c.num_attention_heads]);
  const worst = [assertClose(logitsOf(out), await ref.prefill(prompt, { allLogits: true }), "prefill logits")];
  for (let i = 8; i < 11; i++) {
    out = await session.run(feeds(c, [[tokens[i]]], [range(0, i + 1).map(() => 1)], [[i]], out));
    worst.push(assertClose(logitsOf(out), await ref.decode(tokens[i]), `decode logits at position ${i}`));
  }
  ref.dispose();
  await session.release();
  t.diagnostic(`onnxruntime-node vs Bonsai (wasm): ${summary(worst)}`);
}

const shapes: { name: string; config: LlamaConfig }[] = [
  {
    name: "GQA 6/2 heads, untied",
    config: { vocab_size: 61, hidden_size: 48, intermediate_size: 80, num_hidden_layers: 2, num_attention_heads: 6, num_key_value_heads: 2, max_position_embeddings: 32, rms_norm_eps: 1e-5, rope_theta: 10000, tie_word_embeddings: false },
  },
  {
    name: "GQA 4/2 heads, tied",
    config: { vocab_size: 100, hidden_size: 64, intermediate_size: 96, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, max_position_embeddings: 64, rms_norm_eps: 1e-6, rope_theta: 500000, tie_word_embeddings: true },
  },
  {
    name: "MQA 4/1 heads, head_dim 6, tied",
    config: { vocab_size: 37, hidden_size: 24, intermediate_size: 40, num_hidden_layers: 3, num_attention_heads: 4, num_key_value_heads: 1, max_position_embeddings: 16, rms_norm_eps: 1e-5, rope_theta: 100, tie_word_embeddings: true },
  },
  {
    name: "MHA 2/2 heads, untied",
    config: { vocab_size: 50, hidden_size: 32, intermediate_size: 64, num_hidden_layers: 1, num_attention_heads: 2, num_key_value_heads: 2, max_position_embeddings: 16, rms_norm_eps: 1e-5, rope_theta: 10000, tie_word_embeddings: false },
  },
];
// Llama.init's N(0, 0.02) weights give nearly uniform logits; larger ones make the comparison bite.
async function randomModel(c: LlamaConfig, seed: number): Promise<Llama> {
  const m = Llama.init(backend, c, seed);
  for (const [name, p] of m.parameters()) {
    if (p.shape.length !== 2) continue;
    const by = name.includes("embed") || name.includes("lm_head") ? 25 : 10;
    backend.write(p.data, Float32Array.from(await p.toArray(), (x) => x * by));
  }
  return m;
}
const someTokens = (c: LlamaConfig) => range(0, 11).map((i) => (i * 7919 + 13) % c.vocab_size);

for (const [i, s] of shapes.entries()) {
  test(`ONNX export of a random ${s.name} model: onnxruntime-node's logits are Bonsai's, prompt and cached decode`, async (t) => {
    const model = await randomModel(s.config, 100 + i);
    await assertPrefillAndDecode(t, model, await exportTo(join(tmp, `shape${i}`), model), someTokens(s.config));
    model.dispose();
  });
}

test("ONNX export: a left-padded batch of two gets each sequence's own logits (padding mask, position_ids as transformers.js makes them)", async (t) => {
  const c = shapes[0].config;
  const model = await randomModel(c, 7);
  const session = await ort.InferenceSession.create(await exportTo(join(tmp, "padded"), model));
  const long = someTokens(c).slice(0, 8), short = [5, 9, 33, 2, 40];
  // transformers.js's positions: a running count of attended tokens, padding at position 1.
  const mask = [long.map(() => 1), [0, 0, 0, ...short.map(() => 1)]];
  const positions = [range(0, 8), [1, 1, 1, ...range(0, 5)]];
  let out = await session.run(feeds(c, [long, [0, 0, 0, ...short]], mask, positions, null));
  const V = c.vocab_size, logits = logitsOf(out);
  const refs = [new Session(model), new Session(model)];
  const worst = [
    assertClose(logits.subarray(0, 8 * V), await refs[0].prefill(long, { allLogits: true }), "sequence 0"),
    assertClose(logits.subarray((8 + 3) * V, 16 * V), await refs[1].prefill(short, { allLogits: true }), "sequence 1 (after its padding)"),
  ];
  // One more token each through the cache.
  out = await session.run(feeds(c, [[3], [4]], mask.map((m) => [...m, 1]), [[8], [5]], out));
  worst.push(assertClose(logitsOf(out).subarray(0, V), await refs[0].decode(3), "sequence 0, decoded"));
  worst.push(assertClose(logitsOf(out).subarray(V), await refs[1].decode(4), "sequence 1, decoded"));
  t.diagnostic(summary(worst));
  for (const r of refs) r.dispose();
  await session.release();
  model.dispose();
});

test("ONNX export with external data: weights in model.onnx_data, model.onnx_data_1, … give the in-file model's logits exactly", async () => {
  const c = shapes[1].config;
  const model = await randomModel(c, 8);
  const inFile = await exportTo(join(tmp, "in-file"), model);
  const external = await exportTo(join(tmp, "external"), model, { externalData: "always", maxDataFileBytes: 64 * 1024 });
  const dataFiles = readdirSync(join(tmp, "external", ONNX_SUBFOLDER)).filter((n) => n.startsWith("model.onnx_data")).sort();
  assert.ok(dataFiles.length >= 3, `several data files (got ${dataFiles.join(", ")})`);
  assert.ok(readFileSync(external).length < 64 * 1024, "the model file holds the graph, not the weights");
  const config = JSON.parse(readFileSync(join(tmp, "external", "config.json"), "utf8"));
  assert.deepEqual(config["transformers.js_config"], { dtype: "fp32", use_external_data_format: dataFiles.length });
  const tokens = someTokens(c).slice(0, 8);
  const run = async (path: string) => {
    const s = await ort.InferenceSession.create(path);
    const out = logitsOf(await s.run(feeds(c, [tokens], [tokens.map(() => 1)], [range(0, 8)], null)));
    await s.release();
    return out;
  };
  assert.deepEqual(await run(external), await run(inFile));
  model.dispose();
});

/** transformers.js, offline, reading models from `root`. */
async function transformersJs(root: string) {
  const tjs = await import("@huggingface/transformers");
  tjs.env.allowRemoteModels = false;
  tjs.env.localModelPath = root + "/";
  return tjs;
}

/** Bonsai's greedy continuation (stopping at EOS when the model has one). */
async function bonsaiGreedy(model: Llama, prompt: number[], n: number): Promise<number[]> {
  const out: number[] = [];
  const eos = model.config.eos_token_id;
  for await (const id of generateTokens(model, prompt, { temperature: 0, maxTokens: n, stopIds: eos === undefined ? [] : [eos] })) out.push(id);
  return out;
}

async function transformersGreedy(root: string, name: string, prompt: number[], n: number): Promise<number[]> {
  const tjs = await transformersJs(root);
  const model = await tjs.AutoModelForCausalLM.from_pretrained(name, { local_files_only: true, device: "cpu" });
  const ids = new tjs.Tensor("int64", BigInt64Array.from(prompt, BigInt), [1, prompt.length]);
  const out = (await model.generate({ input_ids: ids, attention_mask: tjs.ones([1, prompt.length]), max_new_tokens: n, do_sample: false })) as InstanceType<typeof tjs.Tensor>;
  await model.dispose();
  return Array.from(out.data as BigInt64Array, Number).slice(prompt.length);
}

test("transformers.js loads an exported random model (external data) and greedy-generates Bonsai's tokens", async () => {
  const c = shapes[0].config;
  const model = await randomModel(c, 9);
  await exportTo(join(tmp, "tjs-random"), model, { externalData: "always" });
  const prompt = [1, 5, 9, 14];
  const want = await bonsaiGreedy(model, prompt, 20);
  assert.equal(want.length, 20);
  assert.deepEqual(await transformersGreedy(tmp, "tjs-random", prompt, 20), want);
  model.dispose();
});

test("stories260K: bonsai export --format onnx, onnxruntime-node's logits, and transformers.js's greedy text with the exported tokenizer", { skip: haveStories ? false : `${STORIES} absent: skipped` }, async (t) => {
  const dir = join(tmp, "stories260K");
  const r = bonsai("export", "--model", STORIES, "--tokenizer", STORIES_TOKENIZER, "--format", "onnx", "--out", dir);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /llama2c → onnx .* \(with tokenizer\)/);
  for (const f of ["config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json", "onnx/model.onnx"]) assert.ok(existsSync(join(dir, f)), f);

  const { model, tokenizer } = loadModel(STORIES, backend, STORIES_TOKENIZER);
  const prompt = promptIds(tokenizer!, "Once upon a time");
  const tokens = [...prompt, ...(await bonsaiGreedy(model, prompt, 20))];
  await assertPrefillAndDecode(t, model, join(dir, "onnx/model.onnx"), tokens);

  const tjs = await transformersJs(tmp);
  const hfTokenizer = await tjs.AutoTokenizer.from_pretrained("stories260K", { local_files_only: true });
  assert.deepEqual(hfTokenizer.encode("Once upon a time"), prompt, "the exported tokenizer.json encodes as Bonsai's tokenizer does");
  const want = tokens.slice(prompt.length);
  assert.equal(want.length, 20);
  const got = await transformersGreedy(tmp, "stories260K", prompt, 20);
  assert.deepEqual(got, want);
  t.diagnostic(`transformers.js: ${JSON.stringify(hfTokenizer.decode(got))}`);
  model.dispose();
});

test("bonsai export --format onnx --quant q8_0 is a usage error (exit 2, one line)", () => {
  const r = bonsai("export", "--model", join(tmp, "none"), "--format", "onnx", "--quant", "q8_0", "--out", join(tmp, "never"));
  assert.equal(r.code, 2);
  assertOneLineError(r, /--quant applies to --format gguf only/);
  assert.equal(existsSync(join(tmp, "never")), false);
});
