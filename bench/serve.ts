// `bonsai serve` under load, on loopback in one process tree: llama2.c's stories260K (shared data)
// served by createServer (wasm, 1 thread, --parallel 4) and driven by a fetch client.
// 1. Throughput: 64 completions of 64 sampled tokens each at 1, 4 and 16 concurrent requests,
//    against sequential generation of the same requests by the library in this process.
//    Then with --draft ngram (prompt lookup) at 1 and 4 concurrent, beside the same server without it.
// 2. A bounded load test: 1,000 requests at 32 concurrent (--parallel 4, queue 16): every request
//    is answered 200 or 429 (none lost, none other), and the server's RSS stays bounded.
// Run: npm run bench:serve   (needs ../shared/data/models)
import { existsSync } from "node:fs";
import { createBackend } from "../src/backend/index.js";
import { loadModel } from "../src/io/model-files-node.js";
import { generateTokens } from "../src/runtime/generate.js";
import { promptIds } from "../src/runtime/stream.js";
import { createServer } from "../src/serve/server-node.js";
import { benchHeader } from "./machine.js";

const MODELS = "../shared/data/models";
const PROMPTS = ["Once upon a time", "The little dog", "Lily and Ben went to the park", "One day, a big bird", "Tom had a red ball", "The sun was hot"];
const TOKENS = 64;

async function main(): Promise<void> {
  if (!existsSync(`${MODELS}/stories260K.bin`)) {
    console.log(`bench:serve: ${MODELS}/stories260K.bin is absent; skipped`);
    return;
  }
  console.log(await benchHeader());
  const be = await createBackend("wasm", { threads: 1 });
  const { model, tokenizer } = loadModel(`${MODELS}/stories260K.bin`, be, `${MODELS}/tok512.bin`, { fuse: true });
  const request = (i: number) => ({ prompt: PROMPTS[i % PROMPTS.length], max_tokens: TOKENS, temperature: 0.8, seed: i });

  // Sequential generation by the library: the baseline.
  const n = 64;
  let t0 = performance.now(), seqTokens = 0;
  for (let i = 0; i < n; i++) {
    const r = request(i);
    for await (const _ of generateTokens(model, promptIds(tokenizer!, r.prompt), { maxTokens: r.max_tokens, temperature: r.temperature, seed: r.seed, stopIds: [1, 2] })) seqTokens++;
  }
  const sequential = seqTokens / ((performance.now() - t0) / 1000);

  let server = createServer(model, { tokenizer: tokenizer!, parallel: 4, maxQueue: 16 });
  let url = await server.listen(0);
  const post = async (i: number): Promise<{ status: number; tokens: number }> => {
    const res = await fetch(`${url}/v1/completions`, { method: "POST", body: JSON.stringify(request(i)) });
    const body = (await res.json()) as { usage?: { completion_tokens: number } };
    return { status: res.status, tokens: body.usage?.completion_tokens ?? 0 };
  };
  /** `total` requests with `concurrent` in flight; returns each status and the tokens/s. */
  const drive = async (total: number, concurrent: number): Promise<{ statuses: Map<number, number>; tokensPerSecond: number; peakRss: number }> => {
    const statuses = new Map<number, number>();
    let next = 0, tokens = 0, peakRss = process.memoryUsage().rss;
    const sampler = setInterval(() => (peakRss = Math.max(peakRss, process.memoryUsage().rss)), 50);
    const start = performance.now();
    await Promise.all(
      Array.from({ length: concurrent }, async () => {
        while (next < total) {
          const r = await post(next++);
          statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1);
          tokens += r.tokens;
        }
      }),
    );
    clearInterval(sampler);
    return { statuses, tokensPerSecond: tokens / ((performance.now() - start) / 1000), peakRss };
  };

  console.log(`\nbench:serve — stories260K, wasm 1 thread, --parallel 4; ${n} completions of ${TOKENS} sampled tokens (temperature 0.8)\n`);
  console.log("| client concurrency | tokens/s | ÷ sequential library generation |");
  console.log("|---|---:|---:|");
  console.log(`| sequential (library, no HTTP) | ${sequential.toFixed(0)} | 1.00 |`);
  for (const c of [1, 4, 16]) {
    const r = await drive(n, c);
    console.log(`| ${c} | ${r.tokensPerSecond.toFixed(0)} | ${(r.tokensPerSecond / sequential).toFixed(2)} |`);
  }
  // Speculative serving: prompt lookup drafts for every sequence.
  const plain = [await drive(n, 1), await drive(n, 4)];
  await server.close(1000);
  server = createServer(model, { tokenizer: tokenizer!, parallel: 4, maxQueue: 16, speculative: { draft: "ngram" } });
  url = await server.listen(0);
  console.log("\n| --draft ngram (auto) | tokens/s | ÷ the same concurrency without a draft | drafts accepted |");
  console.log("|---|---:|---:|---:|");
  for (const [i, c] of [1, 4].entries()) {
    const before = server.engine.counts;
    const r = await drive(n, c);
    const after = server.engine.counts;
    const accepted = (after.acceptedDrafts - before.acceptedDrafts) / Math.max(1, after.draftedTokens - before.draftedTokens);
    console.log(`| ${c} | ${r.tokensPerSecond.toFixed(0)} | ${(r.tokensPerSecond / plain[i].tokensPerSecond).toFixed(2)} | ${(100 * accepted).toFixed(0)}% |`);
  }
  await server.close(1000);
  server = createServer(model, { tokenizer: tokenizer!, parallel: 4, maxQueue: 16 });
  url = await server.listen(0);

  const rss0 = process.memoryUsage().rss;
  const load = await drive(1000, 32);
  const answered = [...load.statuses.values()].reduce((a, b) => a + b, 0);
  const other = [...load.statuses.keys()].filter((s) => s !== 200 && s !== 429);
  console.log(
    `\nload: 1000 requests at 32 concurrent → ${[...load.statuses].map(([s, k]) => `${k} × ${s}`).join(", ")}; ${answered} answered` +
      `${other.length ? ` (unexpected statuses: ${other})` : ""}; RSS ${(rss0 / 2 ** 20).toFixed(0)} MiB before, peak ${(load.peakRss / 2 ** 20).toFixed(0)} MiB; ${load.tokensPerSecond.toFixed(0)} tok/s`,
  );
  await server.close(1000);
  if (answered !== 1000 || other.length > 0) process.exitCode = 1;
}

await main();
