// Synthetic data from a teacher: record i's prompt is drawn from the recipe with (seed, i), the
// teacher answers it, and the answer becomes a record — unless it is empty or duplicates one
// already kept (exactly after normalisation, or nearly by MinHash, as data/dedup/ compares
// documents), when it is dropped and the id asked again with another sampling seed, up to
// `retries` times. Requests run `concurrency` at a time; records are handed to `write` as they
// finish (so not in id order). Browser-safe: where records go is the caller's (the CLI appends
// them to a JSONL file it can resume from: src/cli/data-synth.ts).
import { deriveSeed } from "../../util/rng.js";
import { type Teacher, type TeacherPrompt, type TeacherUsage, TeacherError } from "../teacher.js";
import { type Ingredients, type Recipe, drawPrompt } from "./template.js";
import { ExactIndex, exactHash } from "../dedup/exact.js";
import { type MinHashOptions, MinHashIndex, minhashSignature } from "../dedup/minhash.js";

/** One line of `bonsai data synth`'s output. */
export interface SynthRecord {
  id: number;
  text: string;
  prompt: string;
  ingredients: Ingredients;
  /** The teacher's name (Teacher.name). */
  teacher: string;
  usage: TeacherUsage;
  finish_reason: string;
}

/**
 * A near-duplicate detector: `addOrMatch(key, text)` is the key of an earlier text that `text`
 * nearly duplicates (then `text` counts as that one's, as a cluster of near duplicates does),
 * else null; either way `text` is added under `key`. Keys are OutputDedup's, one per text checked.
 */
export interface NearDuplicateIndex {
  addOrMatch(key: number, text: string): number | null;
}

/** MinHash with banding (data/dedup/minhash.ts; datatrove's defaults: word 5-grams, 14 bands × 8 hashes) as a NearDuplicateIndex. */
export function minhashNearDuplicates(o: MinHashOptions = {}): NearDuplicateIndex {
  const index = new MinHashIndex(o);
  return { addOrMatch: (key, text) => index.addOrMatch(key, minhashSignature(text, o)) };
}

/**
 * The outputs kept so far, compared as `data dedup` compares documents: exactly, by the 128-bit
 * hash of the normalised text (data/dedup/exact.ts), and nearly through a NearDuplicateIndex
 * (MinHash, or none). A dropped text stays in the indexes as a member of the kept one's cluster,
 * so a text close to it is dropped too, as clustering removes it.
 */
export class OutputDedup {
  private readonly exact = new ExactIndex();
  /** Each checked text's record: its own id if kept, else the kept record it duplicates. */
  private readonly owner: number[] = [];
  private kept = 0;

  constructor(readonly near: NearDuplicateIndex | null = null) {}

  /** Keep `text` as record `id`'s, or say which kept record it duplicates. */
  check(id: number, text: string): { kind: "exact" | "near"; of: number } | null {
    const key = this.owner.length;
    const same = this.exact.addOrMatch(key, exactHash(text));
    if (same !== null) {
      this.owner.push(this.owner[same]);
      return { kind: "exact", of: this.owner[same] };
    }
    const close = this.near?.addOrMatch(key, text) ?? null;
    if (close !== null) {
      this.owner.push(this.owner[close]);
      return { kind: "near", of: this.owner[close] };
    }
    this.owner.push(id);
    this.kept++;
    return null;
  }

  /** Texts kept. */
  get size(): number {
    return this.kept;
  }
}

export interface SynthSummary {
  /** Records written by this run. */
  written: number;
  /** Ids skipped because they were already done. */
  skipped: number;
  /** Outputs dropped as duplicates of kept ones. */
  duplicates: { exact: number; near: number };
  /** Outputs dropped as empty. */
  empty: number;
  /** Ids given up after `retries` redraws that were all empty or duplicates. */
  givenUp: number;
  /** Ids whose request failed (after the teacher's own retries). */
  failures: number;
  /** Tokens of every request, dropped outputs' included. */
  promptTokens: number;
  completionTokens: number;
  seconds: number;
}

export type SynthEvent =
  | { kind: "duplicate"; id: number; attempt: number; of: number; how: "exact" | "near" }
  | { kind: "empty"; id: number; attempt: number }
  | { kind: "given-up"; id: number; attempts: number }
  | { kind: "failure"; id: number; message: string };

export interface SynthOptions {
  teacher: Teacher;
  recipe: Recipe;
  /** Ids 0 … count − 1. */
  count: number;
  /** Draws the prompts (with each id) and the sampling seeds (with each id and attempt). */
  seed: number;
  /** Requests at once (default 4). */
  concurrency?: number;
  maxTokens: number;
  temperature: number;
  topP?: number;
  /** Redraws of an id whose output was empty or a duplicate, each with another sampling seed (default 3). */
  retries?: number;
  /** Ids already written: skipped. */
  done?: ReadonlySet<number>;
  /** The kept outputs to compare with (give it the texts already written first); default: a fresh one, exact and MinHash. */
  dedup?: OutputDedup;
  /** Store a record; awaited. An error stops the run. */
  write: (r: SynthRecord) => void | Promise<void>;
  /** After each id (written, given up or failed). */
  onProgress?: (s: Readonly<SynthSummary>) => void;
  /** Dropped outputs, given-up and failed ids, for logs. */
  onEvent?: (e: SynthEvent) => void;
  signal?: AbortSignal;
  /** Stop when this many ids fail in a row (default max(10, 2 × concurrency)). */
  maxConsecutiveFailures?: number;
}

/** The sampling seed of an id's attempt: 31 bits, as every server takes. */
export function samplingSeed(seed: number, id: number, attempt: number): number {
  return deriveSeed(seed, id, attempt, 0x51e7) >>> 1;
}

/** What record `id` asks the teacher: its drawn prompt, after the template's system message if it has one. */
export function teacherPrompt(recipe: Recipe, prompt: string): TeacherPrompt {
  const system = recipe.template.system;
  return system === null ? prompt : [{ role: "system", content: system }, { role: "user", content: prompt }];
}

/**
 * Generate the records of ids 0 … count − 1 not in `done`. Resolves with the summary; rejects
 * (after the requests in flight are abandoned) on a refusal (TeacherError with `refused`), a
 * failed write, `maxConsecutiveFailures` failed ids in a row, or the signal.
 */
export async function synthesize(o: SynthOptions): Promise<SynthSummary> {
  const concurrency = o.concurrency ?? 4;
  const retries = o.retries ?? 3;
  if (!Number.isInteger(o.count) || o.count < 0) throw new Error(`count must be a whole number (got ${o.count})`);
  if (!Number.isInteger(concurrency) || concurrency < 1) throw new Error(`concurrency must be a whole number ≥ 1 (got ${concurrency})`);
  if (!Number.isInteger(retries) || retries < 0) throw new Error(`retries must be a whole number ≥ 0 (got ${retries})`);
  const limit = o.maxConsecutiveFailures ?? Math.max(10, 2 * concurrency);
  const dedup = o.dedup ?? new OutputDedup(minhashNearDuplicates());
  const done = o.done ?? new Set<number>();
  const t0 = globalThis.performance?.now() ?? Date.now();
  const s: SynthSummary = { written: 0, skipped: 0, duplicates: { exact: 0, near: 0 }, empty: 0, givenUp: 0, failures: 0, promptTokens: 0, completionTokens: 0, seconds: 0 };
  const elapsed = (): number => ((globalThis.performance?.now() ?? Date.now()) - t0) / 1000;
  for (let id = 0; id < o.count; id++) if (done.has(id)) s.skipped++;
  const stop = new AbortController();
  let failure: { error: unknown } | null = null;
  const fail = (error: unknown): void => {
    if (failure === null) failure = { error };
    stop.abort();
  };
  const onAbort = (): void => fail(o.signal!.reason ?? new DOMException("synthesis was aborted", "AbortError"));
  if (o.signal?.aborted) onAbort();
  o.signal?.addEventListener("abort", onAbort, { once: true });
  let next = 0, inARow = 0;
  const takeId = (): number | null => {
    while (next < o.count && done.has(next)) next++;
    return next < o.count ? next++ : null;
  };
  const { template } = o.recipe;

  async function one(id: number): Promise<void> {
    const { prompt, ingredients } = drawPrompt(o.recipe, o.seed, id);
    const ask = teacherPrompt(o.recipe, prompt);
    for (let attempt = 0; attempt <= retries; attempt++) {
      let c;
      try {
        c = await o.teacher.complete(ask, { maxTokens: o.maxTokens, temperature: o.temperature, topP: o.topP, seed: samplingSeed(o.seed, id, attempt), signal: stop.signal });
      } catch (e) {
        if (stop.signal.aborted) return;
        if (e instanceof TeacherError && !e.refused) {
          s.failures++;
          o.onEvent?.({ kind: "failure", id, message: e.message });
          if (++inARow >= limit) fail(new Error(`${inARow} requests in a row failed; the last: ${e.message}`));
          return;
        }
        fail(e);
        return;
      }
      if (stop.signal.aborted) return;
      inARow = 0;
      s.promptTokens += c.usage.prompt_tokens;
      s.completionTokens += c.usage.completion_tokens;
      if (c.text.trim() === "") {
        s.empty++;
        o.onEvent?.({ kind: "empty", id, attempt });
        continue;
      }
      const text = template.text === "prompt+completion" ? (prompt + c.text).trimEnd() : c.text.trim();
      const dup = dedup.check(id, text);
      if (dup) {
        s.duplicates[dup.kind]++;
        o.onEvent?.({ kind: "duplicate", id, attempt, of: dup.of, how: dup.kind });
        continue;
      }
      await o.write({ id, text, prompt, ingredients, teacher: o.teacher.name, usage: c.usage, finish_reason: c.finishReason });
      s.written++;
      return;
    }
    s.givenUp++;
    o.onEvent?.({ kind: "given-up", id, attempts: retries + 1 });
  }

  async function worker(): Promise<void> {
    for (let id = takeId(); id !== null && !stop.signal.aborted; id = takeId()) {
      try {
        await one(id);
      } catch (e) {
        fail(e); // a failed write
        return;
      }
      if (stop.signal.aborted) return;
      s.seconds = elapsed();
      o.onProgress?.(s);
    }
  }

  try {
    await Promise.all(Array.from({ length: concurrency }, worker));
  } finally {
    o.signal?.removeEventListener("abort", onAbort);
  }
  s.seconds = elapsed();
  if (failure !== null) throw (failure as { error: unknown }).error;
  return s;
}
