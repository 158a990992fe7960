// llama.cpp (node-llama-cpp, CPU build) as the referee for GGUF files: greedy tokens and
// next-token distributions at every position, computed in float32 (no flash attention, F32 KV
// cache, one thread) as the project's notes prescribe for exact agreement.
import { getLlama, type Llama as LlamaCpp } from "node-llama-cpp";
import type { F16Order } from "../src/backend/wasm/wasm-backend.js";

let instance: Promise<LlamaCpp> | undefined;

function llama(): Promise<LlamaCpp> {
  instance ??= getLlama({ gpu: false, build: "never", skipDownload: true, logLevel: "error" as never, progressLogs: false });
  return instance;
}

/** The CPU build of ggml that node-llama-cpp loaded (it picks one of several by the CPU's features). */
export interface LlamaCppCpu {
  /** Its features as llama.cpp prints them: "CPU : SSE3 = 1 | … | AVX2 = 1 | …". */
  systemInfo: string;
  /**
   * The ggml_vec_dot_f16 summation order of this build, where Bonsai's llama.cpp numerics
   * reproduce it: x86 builds with AVX-512 (16 lanes) or with AVX/AVX2 (8 lanes). Undefined for
   * the others — SSE-only and scalar x86 builds, ARM (NEON 4 lanes, SVE, or f16 arithmetic with
   * FP16_VA), and anything else.
   */
  f16Order: F16Order | undefined;
  /** Whether it accumulates F16 products in f16 (ARM builds with FP16_VA; see llama-cpp-numerics.ts). */
  f16Arithmetic: boolean;
}

export async function llamaCppCpu(): Promise<LlamaCppCpu> {
  const systemInfo = (await llama()).systemInfo;
  const has = (feature: string): boolean => new RegExp(`\\b${feature} = 1\\b`).test(systemInfo);
  let f16Order: F16Order | undefined;
  if (process.arch === "x64") f16Order = has("AVX512") ? "avx512" : has("AVX") ? "avx" : undefined;
  return { systemInfo, f16Order, f16Arithmetic: has("FP16_VA") };
}

export interface LlamaCppRun {
  /** Greedy continuation of `prompt` (stops at end-of-generation tokens unless `maxTokens` is reached first). */
  greedy(prompt: number[], maxTokens: number): Promise<number[]>;
  /** log-softmax of the next-token distribution after each prefix of `tokens` ([position][vocab]). */
  logProbs(tokens: number[], vocabSize: number): Promise<Float64Array[]>;
  tokenize(text: string): number[];
  detokenize(ids: number[]): string;
  dispose(): Promise<void>;
}

export async function openWithLlamaCpp(modelPath: string, contextSize = 256): Promise<LlamaCppRun> {
  const model = await (await llama()).loadModel({ modelPath });
  const context = await model.createContext({
    contextSize,
    batchSize: contextSize,
    threads: 1,
    flashAttention: false,
    experimentalKvCacheKeyType: "F32",
    experimentalKvCacheValueType: "F32",
  } as never);
  // One sequence, cleared before each use.
  const seq = context.getSequence();
  return {
    async greedy(prompt, maxTokens) {
      await seq.clearHistory();
      const out: number[] = [];
      if (maxTokens === 0) return out;
      for await (const t of seq.evaluate(prompt as never, { temperature: 0, yieldEogToken: true })) {
        out.push(t as number);
        if (out.length >= maxTokens) break;
      }
      return out;
    },
    async logProbs(tokens, vocabSize) {
      await seq.clearHistory();
      // Temperature 1 with every truncation off: the model's own softmax.
      const options = { temperature: 1, topK: 0, topP: 1, minP: 0 };
      const results = await seq.controlledEvaluate(tokens.map((t) => [t, { generateNext: { probabilities: true, options } }]) as never);
      return results.map((r, i) => {
        const probs = r?.next.probabilities;
        if (!probs) throw new Error(`llama.cpp returned no probabilities at position ${i}`);
        const lp = new Float64Array(vocabSize).fill(-Infinity);
        for (const [id, p] of probs) lp[id as number] = Math.log(p);
        return lp;
      });
    },
    tokenize: (text) => model.tokenize(text, false) as number[],
    detokenize: (ids) => model.detokenize(ids as never),
    async dispose() {
      await context.dispose();
      await model.dispose();
    },
  };
}
